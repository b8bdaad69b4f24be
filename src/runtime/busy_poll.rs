//! Bounded busy polling: a worker that has just handled input keeps asking
//! the kernel for events, without sleeping, for up to `busy_poll`.
//!
//! At a moderate rate a worker runs out of work between the hops of one call
//! (the request is forwarded, its answer is tens of microseconds away) and
//! sleeps in `epoll_wait`; the answer then pays the wake-up of an idle core,
//! which in a virtual machine is an exit to the hypervisor and back. Measured
//! here at 5,000 bolt calls a second, always polling cut the added p50 from
//! about +40 to +16..26 µs; the price is the core, spun while it waits.
//! haproxy's `busy-polling` spins for as long as the process runs; this one
//! spins only for a window after the worker's last input, so an idle worker
//! sleeps, and a loaded one never parks anyway (the window costs nothing at
//! full load).
//!
//! How: tokio runs the worker's `on_thread_park` hook ([`before_park`]) each
//! time the worker is about to sleep. Inside the window the hook wakes a task
//! that does nothing ([`spinner`]); with a task to run, tokio polls its
//! driver with a zero timeout instead of sleeping, runs the task, and comes
//! back to the hook. "Input" is the count of reads that brought bytes
//! ([`crate::network::transport::reads`]); the window restarts whenever it
//! moved. Everything here is the worker's own thread-local state.

use std::cell::Cell;
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::network::transport;

thread_local! {
    /// How long to keep polling after the last input; zero: off.
    static WINDOW: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    /// The read count when the hook last looked, and when it last moved.
    static SEEN: Cell<(u64, Option<Instant>)> = const { Cell::new((0, None)) };
    /// The spinner's waker, once it has been polled.
    static SPINNER: Cell<Option<Waker>> = const { Cell::new(None) };
    /// Zero-timeout polls made instead of sleeping.
    static SPINS: Cell<u64> = const { Cell::new(0) };
}

/// Sets this worker's window (zero turns busy polling off).
pub fn set_window(window: Duration) {
    WINDOW.set(window);
}

/// How many times this worker polled instead of sleeping.
pub fn spins() -> u64 {
    SPINS.get()
}

/// The worker runtime's `on_thread_park` hook: inside the window, give the
/// scheduler a task to run so that it polls instead of sleeping.
pub fn before_park() {
    let window = WINDOW.get();
    if window.is_zero() {
        return;
    }
    let reads = transport::reads();
    let now = Instant::now();
    let (seen, last) = SEEN.get();
    let last = if reads != seen {
        SEEN.set((reads, Some(now)));
        now
    } else {
        match last {
            Some(t) => t,
            None => return,
        }
    };
    if now.saturating_duration_since(last) < window {
        if let Some(w) = SPINNER.take() {
            SPINS.set(SPINS.get() + 1);
            w.wake_by_ref();
            SPINNER.set(Some(w));
        }
    }
}

/// The task [`before_park`] wakes: it only hands out its waker.
pub async fn spinner() {
    poll_fn(|cx| {
        let waker = match SPINNER.take() {
            Some(w) if w.will_wake(cx.waker()) => w,
            _ => cx.waker().clone(),
        };
        SPINNER.set(Some(waker));
        Poll::<()>::Pending
    })
    .await
}
