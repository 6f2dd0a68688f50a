//! The [`Provider`] trait and the glue between it and the generated bindings.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::marker::PhantomData;

use crate::bindings::exports::tamma::provider::embeddings::Guest as EmbeddingsGuest;
use crate::bindings::exports::tamma::provider::provider_api::{
    CompletionStream, Guest, GuestCompletionStream,
};
use crate::stream::{ChunkStream, VecStream};
use crate::{
    Capabilities, CompletionRequest, CompletionResponse, Config, EmbeddingModelInfo,
    EmbeddingRequest, EmbeddingResponse, Health, ModelInfo, ProviderError, StreamChunk,
};

/// An AI provider. Implement it and export it with [`export_provider!`](crate::export_provider).
///
/// One value is created per component instance by [`initialize`](Provider::initialize);
/// the SDK keeps it and routes every later call to it. A guest is single-threaded and
/// the component model forbids re-entering an instance, so methods that change state
/// simply take `&mut self`.
pub trait Provider: Sized + 'static {
    /// Creates the provider from its configuration. Called once per instance, before
    /// any other function (calling it again replaces the instance after disposing it).
    fn initialize(config: Config) -> Result<Self, ProviderError>;

    /// What this provider offers. Should be cheap: hosts may call it often.
    fn capabilities(&self) -> Capabilities;

    /// The models served now. Defaults to `capabilities().models`.
    fn list_models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        Ok(self.capabilities().models)
    }

    /// Produces a whole completion.
    fn complete(&mut self, request: CompletionRequest)
        -> Result<CompletionResponse, ProviderError>;

    /// Starts a streamed completion. Defaults to a stream of ONE chunk built from
    /// [`complete`](Provider::complete) with [`StreamChunk::from_response`]: the
    /// content as delta, tool calls as deltas, finish reason and usage set.
    fn stream(
        &mut self,
        request: CompletionRequest,
    ) -> Result<Box<dyn ChunkStream>, ProviderError> {
        let response = self.complete(request)?;
        Ok(VecStream::boxed(vec![StreamChunk::from_response(response)]))
    }

    /// The embedding models it serves, listed apart from the chat models.
    /// Defaults to none.
    fn embedding_models(&self) -> Vec<EmbeddingModelInfo> {
        Vec::new()
    }

    /// Embeds every input of the request, one vector per input, in order.
    /// Defaults to [`ProviderError::embeddings_not_supported`].
    fn embed(&mut self, request: EmbeddingRequest) -> Result<EmbeddingResponse, ProviderError> {
        let _ = request;
        Err(ProviderError::embeddings_not_supported())
    }

    /// Checks that the provider can serve. Defaults to healthy.
    fn health_check(&self) -> Health {
        Health::healthy("ok")
    }

    /// Releases what the provider holds. No call follows on this instance; the SDK
    /// drops the provider right after.
    fn dispose(&mut self) {}
}

thread_local! {
    // The provider instance. A component instance is single-threaded, so a
    // thread-local `RefCell` is the whole synchronisation story. `dyn Any` because
    // the concrete type is only known to the `export_provider!` call site.
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// Runs `f` on the provider, or returns `None` when there is none (not initialised,
/// disposed, or – impossible under the component model – re-entered).
fn with_provider<P: Provider, R>(f: impl FnOnce(&mut P) -> R) -> Option<R> {
    INSTANCE.with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        let provider = slot.as_mut()?.downcast_mut::<P>()?;
        Some(f(provider))
    })
}

fn take_provider<P: Provider>() -> Option<P> {
    INSTANCE.with(|cell| {
        let boxed = cell.try_borrow_mut().ok()?.take()?;
        boxed.downcast::<P>().ok().map(|b| *b)
    })
}

/// Implements the generated `Guest` trait for any [`Provider`]. Used by
/// [`export_provider!`](crate::export_provider); not part of the public API.
#[doc(hidden)]
pub struct Adapter<P>(PhantomData<P>);

impl<P: Provider> Guest for Adapter<P> {
    type CompletionStream = StreamResource;

    fn initialize(config: Vec<(String, String)>) -> Result<(), ProviderError> {
        if let Some(mut old) = take_provider::<P>() {
            old.dispose();
        }
        let provider = P::initialize(Config::new(config))?;
        INSTANCE.with(|cell| *cell.borrow_mut() = Some(Box::new(provider)));
        Ok(())
    }

    fn capabilities() -> Capabilities {
        with_provider::<P, _>(|p| p.capabilities()).unwrap_or_else(Capabilities::empty)
    }

    fn list_models() -> Result<Vec<ModelInfo>, ProviderError> {
        with_provider::<P, _>(|p| p.list_models())
            .unwrap_or_else(|| Err(ProviderError::not_initialized()))
    }

    fn complete(request: CompletionRequest) -> Result<CompletionResponse, ProviderError> {
        with_provider::<P, _>(|p| p.complete(request))
            .unwrap_or_else(|| Err(ProviderError::not_initialized()))
    }

    fn stream(request: CompletionRequest) -> Result<CompletionStream, ProviderError> {
        let stream = with_provider::<P, _>(|p| p.stream(request))
            .unwrap_or_else(|| Err(ProviderError::not_initialized()))?;
        Ok(CompletionStream::new(StreamResource {
            inner: RefCell::new(stream),
            finished: Cell::new(false),
        }))
    }

    fn health_check() -> Health {
        with_provider::<P, _>(|p| p.health_check())
            .unwrap_or_else(|| Health::unhealthy("not initialized"))
    }

    fn dispose() {
        if let Some(mut provider) = take_provider::<P>() {
            provider.dispose();
        }
    }
}

impl<P: Provider> EmbeddingsGuest for Adapter<P> {
    fn models() -> Vec<EmbeddingModelInfo> {
        with_provider::<P, _>(|p| p.embedding_models()).unwrap_or_default()
    }

    fn embed(request: EmbeddingRequest) -> Result<EmbeddingResponse, ProviderError> {
        with_provider::<P, _>(|p| p.embed(request))
            .unwrap_or_else(|| Err(ProviderError::not_initialized()))
    }
}

/// The `completion-stream` resource: wraps a provider's [`ChunkStream`].
#[doc(hidden)]
pub struct StreamResource {
    inner: RefCell<Box<dyn ChunkStream>>,
    finished: Cell<bool>,
}

impl GuestCompletionStream for StreamResource {
    fn next(&self) -> Result<Option<StreamChunk>, ProviderError> {
        if self.finished.get() {
            return Ok(None);
        }
        let result = match self.inner.try_borrow_mut() {
            Ok(mut stream) => stream.next(),
            Err(_) => Err(ProviderError::provider("stream re-entered")),
        };
        if !matches!(result, Ok(Some(_))) {
            self.finished.set(true);
        }
        result
    }
}
