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
//! sleeps; and in the default mode only while an answer is owed, on credit,
//! and not while the worker is more than half busy (below).
//!
//! How: tokio runs the worker's `on_thread_park` hook ([`before_park`]) each
//! time the worker is about to sleep. Inside the window the hook wakes a task
//! that does nothing ([`spinner`]); with a task to run, tokio polls its
//! driver with a zero timeout instead of sleeping, runs the task, and comes
//! back to the hook. "Input" is the count of reads that brought bytes
//! ([`crate::network::transport::reads`]); the window restarts whenever it
//! moved. Everything here is the worker's own thread-local state.
//!
//! In the `awaiting` mode ([`BusyPollMode::Awaiting`], the default) the
//! window polls only while the worker awaits an answer from an upstream host
//! ([`crate::host::awaiting`]): the wait it spares is the answer's, the
//! one between the hops of a call, and a worker that owes every client its
//! answer sleeps until the next request. What polling for the next request
//! too would buy (the first hop's wake-up) costs the gaps between requests,
//! at a steady rate nearly the whole core.
//!
//! The `awaiting` mode also polls only on credit ([`Credit`]), which is what
//! makes it safe as the default. With a nearby upstream, most answers arrive
//! inside the window and each poll that catches one replaced a sleep and a
//! wake-up; with a slow upstream and input trickling in faster than the
//! window (requests, heartbeats), every input would reopen the window while
//! answers are owed, and the worker would spin its core for answers
//! milliseconds away. So each poll that caught answers earns about what
//! the sleep and wake-up it spared cost ([`EARNED_PER_CATCH_NANOS`]; once,
//! however many it caught: the stretch of polls it ended stood for one
//! sleep), each poll that found no input spends its time, and the worker
//! polls only while the balance is positive; 1% of the time passing is added
//! back, so that polling is tried again when answers speed up. The most
//! polling can cost is then what it spared plus 1% of the core. Nor does
//! the mode poll while the worker is more than half busy ([`Load`]). What it
//! costs and buys at fixed rates, and with a slow upstream, is measured by
//! `bench/busy_poll_cost.sh` (README, "Latency added at a fixed rate").

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
    /// When the hook last chose to poll, if its last call did, and the count
    /// of ended upstream requests then.
    static POLLED: Cell<Option<(Instant, u64)>> = const { Cell::new(None) };
    /// Time spent polling without finding input, over the worker's life.
    static SPUN: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    /// The `awaiting` mode's credit ([`Credit`]).
    static CREDIT: Cell<Credit> = const { Cell::new(Credit { nanos: CREDIT_CAP_NANOS, at: None }) };
    /// When the worker last went to sleep, until it wakes.
    static SLEPT_AT: Cell<Option<Instant>> = const { Cell::new(None) };
    /// How busy the worker has been ([`Load`]).
    static LOAD: Cell<Load> = const { Cell::new(Load { since: None, slept: Duration::ZERO, polled: Duration::ZERO, busy: false }) };
}

/// The span over which [`Load`] is counted.
const LOAD_PERIOD: Duration = Duration::from_millis(10);

/// How busy the worker was over its last [`LOAD_PERIOD`]: the time neither
/// slept nor spent in polls that found nothing. Above half, the `awaiting`
/// mode does not poll. A worker that busy has short gaps between its work,
/// and polling them, before this gate, cost bolt 13% more CPU per call at
/// full load (1.41 µs against 1.25) and bought no latency: the wake-ups
/// worth sparing are those of a mostly idle worker.
#[derive(Clone, Copy)]
struct Load {
    /// When the current period began.
    since: Option<Instant>,
    slept: Duration,
    polled: Duration,
    /// Whether the last whole period was more than half busy.
    busy: bool,
}

impl Load {
    /// Closes the period if it has run its length; returns whether the
    /// worker counts as busy.
    fn tally(&mut self, now: Instant) -> bool {
        let Some(since) = self.since else {
            self.since = Some(now);
            return self.busy;
        };
        let passed = now.saturating_duration_since(since);
        if passed >= LOAD_PERIOD {
            let busy = self.slept + self.polled < passed / 2;
            *self = Load { since: Some(now), slept: Duration::ZERO, polled: Duration::ZERO, busy };
        }
        self.busy
    }
}

/// What a poll that caught answers earns: about what the sleep and wake-up
/// it spared cost the worker here (CPU per call at 5,000 bolt calls a second,
/// two wake-ups a call, less the same call's CPU at full load).
const EARNED_PER_CATCH_NANOS: i64 = 25_000;
/// The credit regained per unit of time, as a divisor: 1% of the worker's
/// time, so that polling that has stopped paying is tried again.
const REFILL_DIVISOR: i64 = 100;
/// The most credit kept: one long wait's worth.
const CREDIT_CAP_NANOS: i64 = 1_000_000;

/// The `awaiting` mode polls only on credit: each poll that caught upstream
/// answers earns [`EARNED_PER_CATCH_NANOS`] (once: the polls before it stood
/// for one sleep, however many answers it found), time polled without
/// finding input costs its length, and 1% of the time passing is added back, up to
/// [`CREDIT_CAP_NANOS`]. Polling then costs at most what it spared plus 1% of
/// the core, whatever the upstreams' pace.
#[derive(Clone, Copy)]
struct Credit {
    nanos: i64,
    /// When the refill was last added.
    at: Option<Instant>,
}

impl Credit {
    /// After a poll: `caught` (the poll found one or more answers, and so
    /// ended a stretch of polls that stood for one sleep) earns once, `idle`
    /// (a poll that found no input) spends.
    fn settle(mut self, caught: bool, idle: Duration) -> Credit {
        let earned = if caught { EARNED_PER_CATCH_NANOS } else { 0 };
        self.nanos = self.nanos.saturating_add(earned).saturating_sub(nanos(idle));
        self
    }

    /// Adds back 1% of the time since the last refill, up to the cap.
    fn refill(mut self, now: Instant) -> Credit {
        if let Some(at) = self.at {
            self.nanos = self.nanos.saturating_add(nanos(now.saturating_duration_since(at)) / REFILL_DIVISOR);
        }
        self.nanos = self.nanos.min(CREDIT_CAP_NANOS);
        self.at = Some(now);
        self
    }
}

/// `d` in nanoseconds, as the credit counts them (saturating: 292 years).
fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
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

/// How long this worker has polled without finding input.
pub fn spun() -> Duration {
    SPUN.get()
}

/// The worker runtime's `on_thread_park` hook: inside the window, give the
/// scheduler a task to run so that it polls instead of sleeping.
pub fn before_park() {
    let polled = POLLED.take();
    let window = WINDOW.get();
    if window.is_zero() {
        return;
    }
    let now = Instant::now();
    if poll_now(now, window, polled) {
        if let Some(w) = SPINNER.take() {
            SPINS.set(SPINS.get() + 1);
            POLLED.set(Some((now, crate::host::ended())));
            w.wake_by_ref();
            SPINNER.set(Some(w));
            return;
        }
    }
    SLEPT_AT.set(Some(now));
}

/// The worker runtime's `on_thread_unpark` hook: counts the time slept, for
/// [`Load`].
pub fn after_unpark() {
    if let Some(at) = SLEPT_AT.take() {
        let mut load = LOAD.get();
        load.slept += at.elapsed();
        LOAD.set(load);
    }
}

/// Whether the worker, out of work at `now`, should poll rather than sleep;
/// settles the last poll's account (`polled`) on the way.
fn poll_now(now: Instant, window: Duration, polled: Option<(Instant, u64)>) -> bool {
    let reads = transport::reads();
    let (seen, last) = SEEN.get();
    let mut credit = CREDIT.get();
    let mut load = LOAD.get();
    if let Some((at, ended)) = polled {
        // The last call polled: the answers it caught earn credit, and a
        // poll that found no input costs its time, at most the window's: a
        // poll that took longer was the hypervisor's doing (the vCPU taken
        // away), not the worker's, and charged whole it would leave the
        // credit spent for a hundred times as long.
        let idle = if reads == seen { now.saturating_duration_since(at).min(window) } else { Duration::ZERO };
        SPUN.set(SPUN.get() + idle);
        load.polled += idle;
        credit = credit.settle(crate::host::ended() != ended, idle);
    }
    let busy = load.tally(now);
    LOAD.set(load);
    if AWAITING_ONLY.get() {
        credit = credit.refill(now);
        CREDIT.set(credit);
        if crate::host::awaiting() == 0 || credit.nanos <= 0 || busy {
            return false;
        }
    }
    let last = if reads != seen {
        SEEN.set((reads, Some(now)));
        now
    } else {
        match last {
            Some(t) => t,
            None => return false,
        }
    };
    now.saturating_duration_since(last) < window
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_idle_less_than_half_of_a_period_counts_as_busy() {
        let t0 = Instant::now();
        let mut load = Load { since: None, slept: Duration::ZERO, polled: Duration::ZERO, busy: false };
        assert!(!load.tally(t0), "no period yet");
        // 4 ms asleep and 2 ms polling for nothing in 10 ms: 40% busy.
        load.slept = Duration::from_millis(4);
        load.polled = Duration::from_millis(2);
        assert!(!load.tally(t0 + Duration::from_millis(5)), "the period is not over");
        assert!(!load.tally(t0 + LOAD_PERIOD));
        // 1 ms asleep and 3 ms polling in the next 10 ms: 60% busy.
        load.slept = Duration::from_millis(1);
        load.polled = Duration::from_millis(3);
        assert!(load.tally(t0 + LOAD_PERIOD * 2));
        assert_eq!((load.slept, load.polled), (Duration::ZERO, Duration::ZERO), "a new period starts empty");
        // A long sleep ends it.
        load.slept = Duration::from_secs(1);
        assert!(!load.tally(t0 + LOAD_PERIOD * 2 + Duration::from_secs(1)));
    }

    #[test]
    fn credit_is_earned_by_catches_spent_by_idle_polls_and_refilled_up_to_its_cap() {
        let t0 = Instant::now();
        let full = Credit { nanos: CREDIT_CAP_NANOS, at: Some(t0) };
        // Idle polls spend it, and below zero the worker stops polling.
        let spent = full.settle(false, Duration::from_nanos(CREDIT_CAP_NANOS as u64 + 1));
        assert!(spent.nanos < 0);
        // A poll that caught answers earns what a sleep and a wake-up cost,
        // once however many it caught: it stood for one sleep.
        assert_eq!(spent.settle(true, Duration::ZERO).nanos, spent.nanos + EARNED_PER_CATCH_NANOS);
        // Time gives back 1% of itself: 10 ms gives 100 µs.
        let later = spent.refill(t0 + Duration::from_millis(10));
        assert_eq!(later.nanos, spent.nanos + 100_000);
        // Never past the cap, however many catches or however long idle.
        assert_eq!(full.settle(true, Duration::ZERO).refill(t0 + Duration::from_secs(60)).nanos, CREDIT_CAP_NANOS);
    }
}
