//! The guest's request body on its way out. If the request is refused or fails
//! before its body is sent, the guest may still be writing that body; dropping
//! the receiving end under it makes some guest runtimes (componentize-js) abort
//! instead of seeing the HTTP error, so a dropped body is drained for a while.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

/// A request body that, if dropped before it ended, keeps reading (and discarding)
/// what the guest still writes, up to a bound, so the guest's writes complete.
pub(super) struct DrainOnDrop(Option<WasiBody>);

impl DrainOnDrop {
    /// Wrap the guest's body.
    pub(super) fn new(body: WasiBody) -> Self {
        DrainOnDrop(Some(body))
    }
}

/// How much of an unsent body is read and discarded, and for how long.
const DRAIN_BYTES: usize = 4 * 1024 * 1024;
/// See [`DRAIN_BYTES`].
const DRAIN_TIME: Duration = Duration::from_secs(10);

impl Body for DrainOnDrop {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        match self.0.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.0.as_ref().map(|b| b.size_hint()).unwrap_or_default()
    }
}

impl Drop for DrainOnDrop {
    fn drop(&mut self) {
        let Some(mut body) = self.0.take() else {
            return;
        };
        if body.is_end_stream() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let drain = async {
                    let mut seen = 0usize;
                    while let Some(Ok(frame)) = body.frame().await {
                        seen += frame.data_ref().map_or(0, |d| d.len());
                        if seen > DRAIN_BYTES {
                            break;
                        }
                    }
                };
                let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::channel::Channel;

    #[tokio::test]
    async fn a_dropped_unfinished_body_keeps_accepting_the_guests_writes() {
        let (mut tx, body) = Channel::<Bytes, HttpError>::new(1);
        drop(DrainOnDrop::new(body.boxed_unsync()));
        // Far more than the channel buffers: each send waits for the drain task.
        for _ in 0..16 {
            tx.send_data(Bytes::from_static(b"chunk")).await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_finished_body_passes_through() {
        let mut body = DrainOnDrop::new(
            http_body_util::Full::new(Bytes::from_static(b"hi"))
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "hi"
        );
        assert!(body.frame().await.is_none());
        assert!(body.is_end_stream());
    }
}
