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
//!
//! In the `awaiting` mode ([`BusyPollMode::Awaiting`]) the window polls only
//! while the worker awaits an answer from an upstream host
//! ([`crate::upstream::awaiting`]): the wait it spares is the answer's, the
//! one between the hops of a call, and a worker that owes every client its
//! answer sleeps until the next request. What polling for the next request
//! too would buy (the first hop's wake-up) costs the gaps between requests,
//! at a steady rate nearly the whole core.

use std::cell::Cell;
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::config::BusyPollMode;
use crate::network::transport;

thread_local! {
    /// How long to keep polling after the last input; zero: off.
    static WINDOW: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    /// Whether the window polls only while an upstream answer is awaited.
    static AWAITING_ONLY: Cell<bool> = const { Cell::new(false) };
    /// The read count when the hook last looked, and when it last moved.
    static SEEN: Cell<(u64, Option<Instant>)> = const { Cell::new((0, None)) };
    /// The spinner's waker, once it has been polled.
    static SPINNER: Cell<Option<Waker>> = const { Cell::new(None) };
    /// Zero-timeout polls made instead of sleeping.
    static SPINS: Cell<u64> = const { Cell::new(0) };
}

/// Sets this worker's window (zero turns busy polling off) and mode.
pub fn set_window(window: Duration, mode: BusyPollMode) {
    WINDOW.set(window);
    AWAITING_ONLY.set(mode == BusyPollMode::Awaiting);
}

/// How many times this worker polled instead of sleeping.
pub fn spins() -> u64 {
    SPINS.get()
}

/// The worker runtime's `on_thread_park` hook: inside the window, give the
/// scheduler a task to run so that it polls instead of sleeping.
pub fn before_park() {
    let window = WINDOW.get();
    if window.is_zero() || (AWAITING_ONLY.get() && crate::upstream::awaiting() == 0) {
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
