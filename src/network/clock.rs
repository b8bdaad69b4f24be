//! The time of the bytes being handled.
//!
//! A read hands a handler a batch of frames, often dozens, and each request
//! wants a time: when it started, when its timeout falls due, when its
//! connection was last active. The clock is read once per batch
//! ([`reading`]); [`now`] gives that time inside it and the real time
//! outside, so a timer or task that runs on its own never sees a stale one.
//! It is tokio's clock, so tests that pause time see the same time here.

use std::cell::Cell;
use std::future::Future;
use tokio::time::Instant;

thread_local! {
    static READ_AT: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs `f` with the clock read once for everything it handles.
pub fn reading<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(Option<Instant>);
    impl Drop for Reset {
        fn drop(&mut self) {
            READ_AT.set(self.0);
        }
    }
    let _reset = Reset(READ_AT.replace(Some(Instant::now())));
    f()
}

/// `fut`, each poll of it run inside [`reading`]: for a task that handles one
/// connection's bytes between its awaits (the HTTP/1.1 pass-through), so
/// the request path's several times (arrival, the pool's idle marks, the
/// answer's latency, the idle timer) cost one clock read per wake-up.
pub fn per_poll<F: Future>(fut: F) -> PerPoll<F> {
    PerPoll { fut }
}

pin_project_lite::pin_project! {
    /// The future of [`per_poll`]: a plain struct, so the future it wraps is
    /// held once (an `async fn` holding it pinned kept a second copy, and
    /// every connection's task is as large as its largest protocol's path).
    pub struct PerPoll<F> {
        #[pin]
        fut: F,
    }
}

impl<F: Future> Future for PerPoll<F> {
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        let fut = self.project().fut;
        reading(|| fut.poll(cx))
    }
}

/// The time the bytes being handled were read; outside a read, the time now.
pub fn now() -> Instant {
    READ_AT.get().unwrap_or_else(Instant::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_time_inside_a_read_and_the_real_time_outside() {
        let (a, b) = reading(|| {
            let a = now();
            std::thread::sleep(std::time::Duration::from_millis(2));
            (a, now())
        });
        assert_eq!(a, b, "one read, one time");
        assert!(now() > b, "outside a read the clock is read again");
        // Nested reads restore the outer time.
        reading(|| {
            let outer = now();
            reading(|| ());
            assert_eq!(now(), outer);
        });
    }

    #[tokio::test]
    async fn one_time_per_poll() {
        let pause = std::time::Duration::from_millis(2);
        let (a, b) = per_poll(async {
            let a = now();
            std::thread::sleep(pause);
            (a, now())
        })
        .await;
        assert_eq!(a, b, "one poll, one time");
        let (a, b) = per_poll(async {
            let a = now();
            std::thread::sleep(pause);
            tokio::task::yield_now().await;
            (a, now())
        })
        .await;
        assert!(b >= a + pause, "the next poll reads the clock again");
    }
}
