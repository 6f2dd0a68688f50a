//! Streams of [`StreamChunk`]s returned by [`Provider::stream`](crate::Provider::stream).

use std::collections::VecDeque;

use crate::{ProviderError, StreamChunk};

/// A streamed completion in progress.
///
/// The host calls [`next`](ChunkStream::next) until it returns `Ok(None)` (normal end)
/// or an error (failure part way). The SDK never calls `next` again after either.
pub trait ChunkStream: 'static {
    /// The next chunk, `Ok(None)` at the end, or an error.
    fn next(&mut self) -> Result<Option<StreamChunk>, ProviderError>;
}

/// A stream over chunks computed up front.
#[derive(Debug, Default)]
pub struct VecStream {
    chunks: VecDeque<StreamChunk>,
}

impl VecStream {
    /// A stream yielding `chunks` in order.
    pub fn new(chunks: Vec<StreamChunk>) -> Self {
        VecStream {
            chunks: chunks.into(),
        }
    }

    /// The stream, boxed, ready to return from `Provider::stream`.
    pub fn boxed(chunks: Vec<StreamChunk>) -> Box<dyn ChunkStream> {
        Box::new(VecStream::new(chunks))
    }
}

impl From<Vec<StreamChunk>> for VecStream {
    fn from(chunks: Vec<StreamChunk>) -> Self {
        VecStream::new(chunks)
    }
}

impl ChunkStream for VecStream {
    fn next(&mut self) -> Result<Option<StreamChunk>, ProviderError> {
        Ok(self.chunks.pop_front())
    }
}

/// A stream over an iterator of `Result<StreamChunk, ProviderError>`, evaluated lazily.
pub struct IterStream<I>(pub I);

impl<I> IterStream<I>
where
    I: Iterator<Item = Result<StreamChunk, ProviderError>> + 'static,
{
    /// The stream, boxed, ready to return from `Provider::stream`.
    pub fn boxed(iter: I) -> Box<dyn ChunkStream> {
        Box::new(IterStream(iter))
    }
}

impl<I> ChunkStream for IterStream<I>
where
    I: Iterator<Item = Result<StreamChunk, ProviderError>> + 'static,
{
    fn next(&mut self) -> Result<Option<StreamChunk>, ProviderError> {
        self.0.next().transpose()
    }
}

/// A stream driven by a closure returning the next chunk, `Ok(None)` at the end.
pub struct FnStream<F>(pub F);

impl<F> FnStream<F>
where
    F: FnMut() -> Result<Option<StreamChunk>, ProviderError> + 'static,
{
    /// The stream, boxed, ready to return from `Provider::stream`.
    pub fn boxed(f: F) -> Box<dyn ChunkStream> {
        Box::new(FnStream(f))
    }
}

impl<F> ChunkStream for FnStream<F>
where
    F: FnMut() -> Result<Option<StreamChunk>, ProviderError> + 'static,
{
    fn next(&mut self) -> Result<Option<StreamChunk>, ProviderError> {
        (self.0)()
    }
}
