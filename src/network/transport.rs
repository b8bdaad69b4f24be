//! What a connection's bytes travel over: plain TCP, or TLS on TCP.
//!
//! The connection loop, protocol detection and the HTTP paths take a
//! [`Transport`] and run the same over both. An enum rather than a type
//! parameter: hyper's server and client are built once, not once per
//! transport, and the TCP arm keeps the readiness-based read and write
//! (`try_read` into the worker's scratch buffer) that the plaintext paths
//! were measured with. A TLS connection carries what its handshake proved
//! ([`TlsInfo`], defined with the rest of TLS in `crate::tls`): the SNI, the
//! ALPN protocol and the peer's verified identity.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BufMut;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::tls::{TlsConn, TlsInfo};

thread_local! {
    static READS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many reads on this thread have brought bytes (or an end of input):
/// a worker's sign of input, for busy polling (`crate::runtime::busy_poll`).
pub fn reads() -> u64 {
    READS.get()
}

/// Counts `read` if it completed.
fn counted<T>(read: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
    if let Poll::Ready(Ok(_)) = read {
        READS.set(READS.get() + 1);
    }
    read
}

pub enum Transport {
    Tcp(TcpStream),
    Tls(Box<TlsConn>),
}

/// Runs the non-blocking `op` on `s` until it does not answer `WouldBlock`,
/// waiting on `ready` (the socket's readiness for it) between tries.
fn retry<T>(
    cx: &mut Context<'_>,
    s: &TcpStream,
    ready: fn(&TcpStream, &mut Context<'_>) -> Poll<io::Result<()>>,
    mut op: impl FnMut(&TcpStream) -> io::Result<T>,
) -> Poll<io::Result<T>> {
    loop {
        std::task::ready!(ready(s, cx))?;
        match op(s) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return Poll::Ready(other),
        }
    }
}

/// Reads into the spare room of `buf` once `s` is readable. A read that
/// leaves room took everything the kernel held, so it clears the socket's
/// readiness as it returns: the next poll waits for epoll's next edge instead
/// of paying a `recv` that answers `WouldBlock` (on a proxied call, one on
/// each side of every hop). Nothing is missed: edge-triggered epoll reports
/// every byte that arrives after the read, tokio keeps a readiness whose
/// event came in while the read ran (its tick), and a close seen with the
/// data stays ready, so the next read returns the end of input.
fn poll_recv(cx: &mut Context<'_>, s: &TcpStream, buf: &mut impl BufMut) -> Poll<io::Result<usize>> {
    loop {
        std::task::ready!(s.poll_read_ready(cx))?;
        let mut short = None;
        // The read inside is tokio's own (it clears nothing unless it sees
        // `WouldBlock`); the outer `try_io` clears the readiness it observed
        // before the read when the read came back short.
        let read = s.try_io(Interest::READABLE, || {
            let room = buf.chunk_mut().len();
            let n = s.try_read_buf(buf)?;
            if n > 0 && n < room {
                short = Some(n);
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        if let Some(n) = short {
            return Poll::Ready(Ok(n));
        }
        match read {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return Poll::Ready(other),
        }
    }
}

impl Transport {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Tcp(s) => s,
            Transport::Tls(t) => t.stream.get_ref().0,
        }
    }

    /// What the TLS handshake settled; `None` on plain TCP.
    pub fn tls(&self) -> Option<&Arc<TlsInfo>> {
        match self {
            Transport::Tcp(_) => None,
            Transport::Tls(t) => Some(&t.info),
        }
    }

    /// Reads into `buf` what has arrived. `Ready(Ok(0))` is the end of input.
    pub fn poll_read_some(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self {
            Transport::Tcp(s) => counted(poll_recv(cx, s, &mut &mut buf[..])),
            Transport::Tls(t) => {
                let mut rb = ReadBuf::new(buf);
                std::task::ready!(counted(Pin::new(&mut t.stream).poll_read(cx, &mut rb)))?;
                Poll::Ready(Ok(rb.filled().len()))
            }
        }
    }

    /// Reads what has arrived into the spare room of `buf` (no more than it
    /// offers), without zeroing it first. `Ready(Ok(0))` is the end of input.
    pub fn poll_read_buf(&mut self, cx: &mut Context<'_>, buf: &mut impl BufMut) -> Poll<io::Result<usize>> {
        match self {
            Transport::Tcp(s) => counted(poll_recv(cx, s, buf)),
            Transport::Tls(t) => counted(tokio_util::io::poll_read_buf(Pin::new(&mut t.stream), cx, buf)),
        }
    }

    /// Writes what the connection takes of `bufs`, in order, now.
    pub fn poll_write_vectored(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        match self {
            Transport::Tcp(s) => retry(cx, s, TcpStream::poll_write_ready, |s| s.try_write_vectored(bufs)),
            Transport::Tls(t) => Pin::new(&mut t.stream).poll_write_vectored(cx, bufs),
        }
    }

    /// Writes what the connection takes of `buf` now.
    pub fn poll_write_some(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self {
            Transport::Tcp(s) => retry(cx, s, TcpStream::poll_write_ready, |s| s.try_write(buf)),
            Transport::Tls(t) => Pin::new(&mut t.stream).poll_write(cx, buf),
        }
    }

    /// Writes `buf` from `*at` on, moving `at` past what the connection
    /// takes, then pushes out what TLS holds: ready once all is written.
    pub fn poll_write_all(&mut self, cx: &mut Context<'_>, buf: &[u8], at: &mut usize) -> Poll<io::Result<()>> {
        while *at < buf.len() {
            match std::task::ready!(self.poll_write_some(cx, &buf[*at..])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => *at += n,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        self.poll_flush_held(cx)
    }

    /// Pushes out what TLS still holds (records sealed but not yet written).
    /// Plain TCP holds nothing.
    #[inline]
    pub fn poll_flush_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Transport::Tcp(_) => Poll::Ready(Ok(())),
            Transport::Tls(t) => Pin::new(&mut t.stream).poll_flush(cx),
        }
    }

    /// Whether TLS holds records not yet written to the socket.
    pub fn holds_output(&self) -> bool {
        match self {
            Transport::Tcp(_) => false,
            Transport::Tls(t) => t.stream.get_ref().1.wants_write(),
        }
    }

    /// Waits until there is something to read (or the end of input),
    /// consuming nothing and holding no buffer of ours: on TCP the socket's
    /// readiness; on TLS, decrypted bytes rustls holds or a record arriving.
    pub async fn readable(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_readable(cx)).await
    }

    /// [`Transport::readable`] as a poll.
    #[inline]
    pub fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Transport::Tcp(s) => s.poll_read_ready(cx),
            Transport::Tls(t) => tokio::io::AsyncBufRead::poll_fill_buf(Pin::new(&mut t.stream), cx).map_ok(|_| ()),
        }
    }

    /// Whether a connection just accepted has bytes (or a close, or an error)
    /// waiting. tokio reports a socket readable from its registration until
    /// a read finds it empty, so a connection parked at once would be resumed
    /// at once, to read nothing; on TCP this looks with a one-byte `peek`,
    /// which leaves the bytes and, finding none, clears that readiness, so a
    /// park then waits for real bytes. Over TLS it answers false: the park's
    /// own look reads the records that are there.
    pub fn has_first_bytes(&mut self) -> bool {
        match self {
            Transport::Tcp(s) => {
                let mut byte = [0u8; 1];
                let mut cx = Context::from_waker(std::task::Waker::noop());
                s.poll_peek(&mut cx, &mut ReadBuf::new(&mut byte)).is_ready()
            }
            Transport::Tls(_) => false,
        }
    }

    /// Whether an idle connection is still quiet: nothing arrived, no close.
    /// Costs no syscall on TCP unless the reactor saw the socket become
    /// readable, which for an idle connection means a close or junk. On TLS
    /// a session ticket that arrives after the handshake is consumed and the
    /// connection stays quiet; anything else means it is not.
    pub fn is_quiet(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self {
            Transport::Tcp(s) => match s.poll_read_ready(&mut cx) {
                Poll::Pending => true,
                Poll::Ready(Err(_)) => false,
                Poll::Ready(Ok(())) => {
                    let mut byte = [0u8; 1];
                    matches!(s.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
                }
            },
            Transport::Tls(_) => {
                let mut byte = [0u8; 1];
                self.poll_read_some(&mut cx, &mut byte).is_pending()
            }
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => counted(poll_recv(cx, s, buf)).map_ok(|_| ()),
            Transport::Tls(t) => counted(Pin::new(&mut t.stream).poll_read(cx, buf)),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(t) => Pin::new(&mut t.stream).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Tls(t) => Pin::new(&mut t.stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Tcp(s) => s.is_write_vectored(),
            Transport::Tls(t) => t.stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(t) => Pin::new(&mut t.stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(t) => Pin::new(&mut t.stream).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;
    use tokio::io::AsyncWriteExt;

    async fn pair() -> (Transport, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Transport::Tcp(server), client)
    }

    /// Polls one read with a waker that only counts; `None` is `Pending`.
    fn poll_once(t: &mut Transport, buf: &mut [u8]) -> Option<io::Result<usize>> {
        let mut cx = Context::from_waker(Waker::noop());
        match t.poll_read_some(&mut cx, buf) {
            Poll::Ready(r) => Some(r),
            Poll::Pending => None,
        }
    }

    async fn read_when_ready(t: &mut Transport, buf: &mut [u8]) -> usize {
        std::future::poll_fn(|cx| t.poll_read_some(cx, buf)).await.unwrap()
    }

    #[tokio::test]
    async fn a_fresh_socket_is_not_taken_for_readable_and_its_first_bytes_stay() {
        let (mut t, mut peer) = pair().await;
        let mut cx = Context::from_waker(Waker::noop());
        // tokio calls a socket it has just registered readable...
        assert!(t.poll_readable(&mut cx).is_ready(), "tokio's start changed: has_first_bytes may be needless");
        // ...until a look finds nothing: then a park waits for real bytes.
        assert!(!t.has_first_bytes());
        assert!(t.poll_readable(&mut cx).is_pending());
        peer.write_all(b"abc").await.unwrap();
        std::future::poll_fn(|cx| t.poll_readable(cx)).await.unwrap();
        assert!(t.has_first_bytes());
        let mut buf = [0u8; 8];
        assert_eq!(read_when_ready(&mut t, &mut buf).await, 3, "the look took nothing");
        // A close is something to read too.
        drop(peer);
        std::future::poll_fn(|cx| t.poll_readable(cx)).await.unwrap();
        assert!(t.has_first_bytes());
    }

    #[tokio::test]
    async fn a_short_read_clears_readiness_and_the_next_bytes_wake_the_reader() {
        let (mut t, mut peer) = pair().await;
        let mut buf = [0u8; 64];
        peer.write_all(b"hello").await.unwrap();
        assert_eq!(read_when_ready(&mut t, &mut buf).await, 5);
        // The short read cleared the readiness itself (`try_io` runs its
        // closure only on a socket tokio believes readable).
        let believed_readable = t.tcp().try_io(Interest::READABLE, || Ok(())).is_ok();
        assert!(!believed_readable, "readiness left set: the next poll would pay a recv");
        assert!(poll_once(&mut t, &mut buf).is_none());
        peer.write_all(b"again").await.unwrap();
        assert_eq!(read_when_ready(&mut t, &mut buf).await, 5);
        assert_eq!(&buf[..5], b"again");
    }

    #[tokio::test]
    async fn a_close_that_came_with_the_last_bytes_is_still_seen() {
        let (mut t, mut peer) = pair().await;
        peer.write_all(b"bye").await.unwrap();
        peer.shutdown().await.unwrap();
        drop(peer);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let mut buf = [0u8; 64];
        assert_eq!(read_when_ready(&mut t, &mut buf).await, 3);
        assert_eq!(read_when_ready(&mut t, &mut buf).await, 0, "the end of input");
    }

    #[tokio::test]
    async fn a_read_that_fills_the_buffer_keeps_readiness_for_the_rest() {
        let (mut t, mut peer) = pair().await;
        peer.write_all(&[7u8; 100]).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let mut buf = [0u8; 64];
        assert_eq!(read_when_ready(&mut t, &mut buf).await, 64);
        // Still ready: the rest is read without waiting for another edge.
        assert!(t.tcp().try_io(Interest::READABLE, || Ok(())).is_ok());
        assert!(matches!(poll_once(&mut t, &mut buf), Some(Ok(36))));
        assert!(poll_once(&mut t, &mut buf).is_none());
        // The AsyncRead path (hyper, the HTTP/1.1 paths) reads the same way.
        peer.write_all(b"xyz").await.unwrap();
        let mut v = Vec::new();
        assert_eq!(tokio::io::AsyncReadExt::read_buf(&mut t, &mut v).await.unwrap(), 3);
    }
}
