//! The header-read timer of an HTTP/1.x client connection on hyper.
//!
//! hyper (1.12) arms its header-read timer whenever it starts reading a
//! request head, and after each response it starts reading the next one at
//! once, so its timer also runs while a kept-alive connection waits for the
//! next request: a client idle for `header_read_timeout` (10 s) would be cut,
//! where the pass-through waits `connection_idle_timeout` (90 s). The timer
//! given to hyper here starts counting only at the first byte read after it
//! was armed: the keep-alive wait is the idle timeout's to bound
//! (`proxy::http::drive`), a head's own arrival is this one's. hyper still
//! owns the rest: it arms the timer only while it reads a head (never during
//! a body or after an upgrade; during a drain only for a head already begun),
//! drops it once the head is parsed, and ends the connection when it fires.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

/// Counts the reads that brought bytes from the client (see
/// `network::prefixed::Prefixed::on_bytes`).
#[derive(Clone, Default)]
pub struct Reads(Arc<AtomicU64>);

impl Reads {
    pub fn note(&self) {
        self.0.fetch_add(1, Relaxed);
    }

    fn count(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A hyper [`Timer`] whose sleeps start at the first read after they are armed.
#[derive(Clone)]
pub struct HeadTimer {
    pub reads: Reads,
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(HeadSleep { reads: self.reads.clone(), armed_at: self.reads.count(), limit: duration, running: None })
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        self.sleep(deadline.saturating_duration_since(Instant::now()))
    }
}

/// Pending until bytes have arrived since it was armed, then `limit` long.
struct HeadSleep {
    reads: Reads,
    armed_at: u64,
    limit: Duration,
    running: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // hyper polls this after each read attempt that left the head
        // incomplete, so the first poll after a byte arrived starts the clock.
        // Before that nothing needs waking: a byte wakes hyper through the socket.
        if self.running.is_none() && self.reads.count() == self.armed_at {
            return Poll::Pending;
        }
        let limit = self.limit;
        self.running.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit))).as_mut().poll(cx)
    }
}

impl Sleep for HeadSleep {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn counts_from_the_first_read_after_arming() {
        let reads = Reads::default();
        reads.note(); // a read before arming (the last body's) does not count
        let timer = HeadTimer { reads: reads.clone() };
        let mut sleep = timer.sleep(Duration::from_millis(500));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(sleep.as_mut().poll(&mut cx).is_pending(), "idle time is not head time");
        reads.note();
        assert!(sleep.as_mut().poll(&mut cx).is_pending(), "starts now");
        tokio::time::advance(Duration::from_millis(499)).await;
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(sleep.as_mut().poll(&mut cx).is_ready(), "fires 500ms after the first byte");
    }
}
