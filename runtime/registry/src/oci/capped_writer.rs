//! Where a pulled layer's bytes go: a buffer that refuses to grow past the size
//! the manifest declared. Without it a registry (or anything between it and us)
//! could stream far more than the declared, already-checked size before the
//! digest check at the end ever ran — memory the host would spend first.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;

/// A `Vec<u8>` sink holding at most `cap` bytes; a write past it fails.
pub(super) struct CappedWriter {
    pub(super) bytes: Vec<u8>,
    cap: usize,
    /// A write was refused for going past the cap.
    pub(super) overflowed: bool,
}

impl CappedWriter {
    /// An empty buffer for at most `cap` bytes (allocated as they arrive, up
    /// to `cap` at once: the declared size has been checked against the limit).
    pub(super) fn new(cap: usize) -> Self {
        CappedWriter {
            bytes: Vec::with_capacity(cap),
            cap,
            overflowed: false,
        }
    }
}

/// The message of the error a write past the cap returns.
pub(super) const OVER_DECLARED_SIZE: &str = "the layer is larger than its declared size";

impl AsyncWrite for CappedWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.bytes.len() + buf.len() > self.cap {
            self.overflowed = true;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                OVER_DECLARED_SIZE,
            )));
        }
        self.bytes.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test]
    async fn writes_up_to_the_cap_and_refuses_one_byte_more() {
        let mut w = CappedWriter::new(8);
        w.write_all(b"12345678").await.unwrap();
        let err = w.write_all(b"9").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(err.to_string(), OVER_DECLARED_SIZE);
        assert_eq!(w.bytes, b"12345678");
        assert!(w.overflowed);
    }
}
