//! An upgraded connection (after a 101): its two ends copied into each other
//! until both close, and cut when neither moves a byte for the stream idle
//! timeout.
//!
//! A tunnel is the client's and the upstream's own protocol (a WebSocket,
//! say); ferrymesh sees only bytes. Without a bound, two peers that both went
//! quiet, or an upstream that stopped reading while its client waits, held
//! the tunnel's buffers and both sockets until one of them closed. Each end
//! keeps its own write deadline: the client's socket is wrapped where hyper
//! serves it ([`super::conn::WriteDeadline`]), the upstream's here.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::conn::WriteDeadline;
use super::counted::{Counted, IoBytes};
use super::tick::Stall;

/// How a tunnel ended.
#[derive(Debug)]
pub enum Ended {
    /// Both ends closed (each may half-close first): the bytes carried to
    /// the upstream and to the client.
    Closed { to_up: u64, to_down: u64 },
    /// No byte moved either way for the idle timeout.
    Idle,
    /// An end failed: reset, or a write deadline (`TimedOut`).
    Failed(io::Error),
}

/// Copies `down` (the client) and `up` (the upstream, at `upstream`) into
/// each other until both have closed (a half-close passes through) or one
/// fails. Cut once no byte has moved either way for `idle`; the upstream
/// end fails once it has taken no bytes for the write timeout (the client's
/// socket keeps its own, where hyper serves it).
pub async fn relay<D, U>(down: D, up: U, upstream: SocketAddr, idle: Duration) -> Ended
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    // Both ends count into one tally: any byte either way is progress.
    let bytes = Arc::new(IoBytes::default());
    let mut down = Counted::new(down, bytes.clone());
    let mut up = Counted::new(WriteDeadline::new(up, upstream, "tunnel's upstream"), bytes.clone());
    let mut copy = pin!(tokio::io::copy_bidirectional(&mut down, &mut up));
    let moved = || bytes.read() + bytes.written();
    let (mut stall, mut seen) = (Stall::default(), 0);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(done) = copy.as_mut().poll(cx) {
            return Poll::Ready(match done {
                Ok((to_up, to_down)) => Ended::Closed { to_up, to_down },
                Err(e) => Ended::Failed(e),
            });
        }
        if moved() != seen {
            seen = moved();
            stall.progress();
        }
        if stall.stalled(cx, idle) {
            return Poll::Ready(Ended::Idle);
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Paused time: a tunnel carrying a message every 0.8 s under a 1 s
    /// bound lives on; once both ends go quiet it is cut 1 s later.
    #[tokio::test(start_paused = true)]
    async fn a_tunnel_is_cut_only_when_nothing_moves() {
        let (client, down) = tokio::io::duplex(1024);
        let (up, upstream) = tokio::io::duplex(1024);
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let relay = async {
            let ended = relay(down, up, addr, Duration::from_secs(1)).await;
            (ended, tokio::time::Instant::now())
        };
        let (mut client, mut upstream) = (client, upstream);
        let talk = async {
            let mut buf = [0u8; 16];
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(800)).await;
                // Fails should the tunnel have been cut.
                client.write_all(b"ping").await.unwrap();
                let n = upstream.read(&mut buf).await.unwrap();
                assert_eq!(&buf[..n], b"ping");
            }
            tokio::time::Instant::now()
        };
        let both = async { tokio::join!(relay, talk) };
        let ((ended, at), quiet) =
            tokio::time::timeout(Duration::from_secs(10), both).await.expect("an idle tunnel was never cut");
        assert!(matches!(ended, Ended::Idle), "{ended:?}");
        let waited = at - quiet;
        assert!(waited >= Duration::from_secs(1) && waited < Duration::from_millis(1100), "cut after {waited:?}");
    }
}
