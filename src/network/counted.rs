//! A stream that counts the bytes read from and written to it, for IO that
//! leaves ferrymesh's own loops (hyper's connections), and to tell whether an
//! upgraded connection's tunnel moves (`tunnel`).
//!
//! The counters are atomics because hyper wants its IO `Send`; each set
//! belongs to one worker's listener and only that worker's thread adds to it,
//! so the atomics are never contended (a scrape only reads them).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes in and out.
#[derive(Default, Debug)]
pub struct IoBytes {
    read: AtomicU64,
    written: AtomicU64,
}

impl IoBytes {
    pub fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// For loops that count their own IO (the HTTP/2 server's).
    pub fn add(&self, read: usize, written: usize) {
        if read > 0 {
            self.read.fetch_add(read as u64, Ordering::Relaxed);
        }
        if written > 0 {
            self.written.fetch_add(written as u64, Ordering::Relaxed);
        }
    }
}

pub struct Counted<S> {
    inner: S,
    bytes: Arc<IoBytes>,
}

impl<S> Counted<S> {
    pub fn new(inner: S, bytes: Arc<IoBytes>) -> Counted<S> {
        Counted { inner, bytes }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.bytes.read.fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.bytes.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            self.bytes.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_and_writes_are_counted() {
        let (a, mut b) = tokio::io::duplex(64);
        let bytes = Arc::new(IoBytes::default());
        let mut c = Counted::new(a, bytes.clone());
        c.write_all(b"hello").await.unwrap();
        b.write_all(b"abc").await.unwrap();
        let mut buf = [0u8; 3];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!((bytes.read(), bytes.written()), (3, 5));
    }
}
