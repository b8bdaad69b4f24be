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
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::tls::{TlsConn, TlsInfo};

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
            Transport::Tcp(s) => retry(cx, s, TcpStream::poll_read_ready, |s| s.try_read(buf)),
            Transport::Tls(t) => {
                let mut rb = ReadBuf::new(buf);
                std::task::ready!(Pin::new(&mut t.stream).poll_read(cx, &mut rb))?;
                Poll::Ready(Ok(rb.filled().len()))
            }
        }
    }

    /// Reads what has arrived into the spare room of `buf` (no more than it
    /// offers), without zeroing it first. `Ready(Ok(0))` is the end of input.
    pub fn poll_read_buf(&mut self, cx: &mut Context<'_>, buf: &mut impl BufMut) -> Poll<io::Result<usize>> {
        match self {
            Transport::Tcp(s) => retry(cx, s, TcpStream::poll_read_ready, |s| s.try_read_buf(buf)),
            Transport::Tls(t) => tokio_util::io::poll_read_buf(Pin::new(&mut t.stream), cx, buf),
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

    /// Pushes out what TLS still holds (records sealed but not yet written).
    /// Plain TCP holds nothing.
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
    pub fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Transport::Tcp(s) => s.poll_read_ready(cx),
            Transport::Tls(t) => tokio::io::AsyncBufRead::poll_fill_buf(Pin::new(&mut t.stream), cx).map_ok(|_| ()),
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
            Transport::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(t) => Pin::new(&mut t.stream).poll_read(cx, buf),
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
