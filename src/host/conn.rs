//! A connection to a host, counted open in the host's (and its cluster's)
//! `connections_active` until it drops, whichever path holds it.

use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Host;
use crate::network::transport::Transport;

pub struct HostConn {
    stream: Transport,
    host: Rc<Host>,
}

impl HostConn {
    /// `stream`, just connected to `host` ([`Host::connect`] counted it open).
    pub fn new(stream: Transport, host: Rc<Host>) -> HostConn {
        HostConn { stream, host }
    }

    /// Whether the idle connection is still quiet ([`Transport::is_quiet`]).
    pub fn is_quiet(&mut self) -> bool {
        self.stream.is_quiet()
    }

    /// Waits until there is something to read ([`Transport::readable`]).
    pub async fn readable(&mut self) -> io::Result<()> {
        self.stream.readable().await
    }
}

impl Drop for HostConn {
    fn drop(&mut self) {
        self.host.connection_closed();
    }
}

impl AsyncRead for HostConn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for HostConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
