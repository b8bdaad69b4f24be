//! Timeouts of a worker's HTTP requests in flight ([`by`]): one queue of
//! [`Deadlines`] and one timer for all of them.
//!
//! Nearly every request ends long before its deadline. tokio's own timeout
//! files each one in the time driver's wheel at its first wait and takes it
//! out again when dropped, each time under the driver's lock: about 540
//! instructions of an h2c request, against about 230 here. A deadline takes
//! a slot (its waker, whether it passed) and a line in the worker's queue; a
//! request that ends first only frees its slot, and its line is dropped when
//! it reaches the front or when dead lines outnumber the live ones. After a
//! burst, once nothing waits, slots beyond 1,024 are let go. One task per worker
//! ([`driver`]) waits for the earliest live line, wakes the requests whose
//! deadline passed, and is woken itself only when a deadline comes in
//! earlier than the one it waits for.
//!
//! Without the driver on the thread (a test's runtime), [`by`] falls back
//! to a tokio timer of its own.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::time::{Instant, Sleep};

use super::clock;
use super::deadlines::Deadlines;

/// Slots kept while nothing waits; more, left by a burst, are let go.
const KEPT_SLOTS: usize = 1024;

thread_local! {
    static WAITS: RefCell<Waits> = const { RefCell::new(Waits::new()) };
}

/// The wait ran out before the future ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Elapsed;

/// `fut`'s output, unless `at` passes first.
pub fn by<F: Future>(at: Instant, fut: F) -> By<F> {
    By { fut, at, timer: Timer::Unset }
}

pin_project_lite::pin_project! {
    /// The future of [`by`].
    pub struct By<F> {
        #[pin]
        fut: F,
        at: Instant,
        timer: Timer,
    }
}

enum Timer {
    /// Not waited yet: nothing filed.
    Unset,
    /// A slot of the worker's [`Waits`] (its key: slot and generation).
    Filed(u64),
    /// No driver on this thread.
    Tokio(Pin<Box<Sleep>>),
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Timer::Filed(key) = *self {
            // At thread exit the waits may be gone already, and the slot with them.
            let _ = WAITS.try_with(|w| w.borrow_mut().cancel(key));
        }
    }
}

impl<F: Future> Future for By<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        let elapsed = match this.timer {
            Timer::Filed(key) => WAITS.with(|w| w.borrow_mut().passed(*key, cx.waker())),
            Timer::Tokio(sleep) => sleep.as_mut().poll(cx).is_ready(),
            Timer::Unset => {
                let at = *this.at;
                if at <= clock::now() {
                    return Poll::Ready(Err(Elapsed));
                }
                match WAITS.with(|w| w.borrow_mut().file(at, cx.waker())) {
                    Some(key) => {
                        *this.timer = Timer::Filed(key);
                        false
                    }
                    None => {
                        let mut sleep = Box::pin(tokio::time::sleep_until(at));
                        let elapsed = sleep.as_mut().poll(cx).is_ready();
                        *this.timer = Timer::Tokio(sleep);
                        elapsed
                    }
                }
            }
        };
        if elapsed {
            Poll::Ready(Err(Elapsed))
        } else {
            Poll::Pending
        }
    }
}

/// Times the worker's requests until dropped (with the worker).
pub async fn driver() {
    struct Stop;
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = WAITS.try_with(|w| {
                let mut w = w.borrow_mut();
                w.running = false;
                w.driver = None;
            });
        }
    }
    let _stop = Stop;
    WAITS.with(|w| w.borrow_mut().running = true);
    poll_fn(|cx| loop {
        let due = WAITS.with(|w| {
            let mut w = w.borrow_mut();
            if !w.driver.as_ref().is_some_and(|d| d.will_wake(cx.waker())) {
                w.driver = Some(cx.waker().clone());
            }
            let Waits { lines, slots, .. } = &mut *w;
            match lines.poll_expired(cx, |key, _| live(slots, key)) {
                Poll::Ready(key) => {
                    let s = &mut slots[slot_of(key)];
                    s.passed = true;
                    Some(s.waker.take())
                }
                Poll::Pending => None,
            }
        });
        match due {
            // Woken outside the borrow: a waker may run anything.
            Some(waker) => waker.into_iter().for_each(Waker::wake),
            None => return Poll::Pending,
        }
    })
    .await
}

struct Slot {
    generation: u32,
    passed: bool,
    waker: Option<Waker>,
}

/// The worker's waits with a deadline.
struct Waits {
    lines: Deadlines,
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    running: bool,
    driver: Option<Waker>,
}

fn key(slot: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(slot)
}

fn slot_of(key: u64) -> usize {
    (key & u64::from(u32::MAX)) as usize
}

/// Whether the wait `key` is still filed and its deadline not yet passed.
fn live(slots: &[Slot], key: u64) -> bool {
    slots.get(slot_of(key)).is_some_and(|s| u64::from(s.generation) == key >> 32 && !s.passed)
}

impl Waits {
    const fn new() -> Waits {
        Waits { lines: Deadlines::new(), slots: Vec::new(), free: Vec::new(), live: 0, running: false, driver: None }
    }

    /// Files `at` for the task of `waker`; `None` without a driver.
    fn file(&mut self, at: Instant, waker: &Waker) -> Option<u64> {
        if !self.running {
            return None;
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot { generation: 0, passed: false, waker: None });
                (self.slots.len() - 1) as u32
            }
        };
        let s = &mut self.slots[slot as usize];
        s.waker = Some(waker.clone());
        let key = key(slot, s.generation);
        self.live += 1;
        let slots = &self.slots;
        self.lines.compact(self.live, |k, _| live(slots, k));
        if self.lines.insert(key, at) {
            if let Some(d) = &self.driver {
                d.wake_by_ref();
            }
        }
        Some(key)
    }

    /// Whether the deadline of `key` passed; if not, `waker` hears when it does.
    fn passed(&mut self, key: u64, waker: &Waker) -> bool {
        let s = &mut self.slots[slot_of(key)];
        if s.passed {
            return true;
        }
        if !s.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            s.waker = Some(waker.clone());
        }
        false
    }

    fn cancel(&mut self, key: u64) {
        let slot = slot_of(key);
        let s = &mut self.slots[slot];
        s.generation = s.generation.wrapping_add(1);
        s.passed = false;
        s.waker = None;
        self.free.push(slot as u32);
        self.live -= 1;
        if self.live == 0 && self.slots.len() > KEPT_SLOTS {
            // After a burst, nothing waits: let its room go. The lines go
            // too, as none is live and a slot number may be given again.
            self.slots = Vec::new();
            self.free = Vec::new();
            self.lines.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn lines() -> usize {
        WAITS.with(|w| w.borrow().lines.len())
    }

    /// A deadline that passes ends the wait at its time, whatever order the
    /// deadlines came in; one not reached leaves the output alone; the lines
    /// of waits that ended first do not pile up.
    #[tokio::test(start_paused = true)]
    async fn deadlines_on_the_worker_queue() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let driver = tokio::task::spawn_local(driver());
                tokio::task::yield_now().await;
                let t0 = Instant::now();
                let ms = Duration::from_millis;
                let pending = std::future::pending::<()>;
                let late = tokio::task::spawn_local(by(t0 + ms(300), pending()));
                let early = tokio::task::spawn_local(by(t0 + ms(100), pending()));
                let answered = tokio::task::spawn_local(by(t0 + ms(200), tokio::time::sleep(ms(50))));
                assert_eq!(early.await.unwrap(), Err(Elapsed));
                assert_eq!(Instant::now() - t0, ms(100), "the earlier deadline, filed second");
                assert_eq!(answered.await.unwrap(), Ok(()));
                assert_eq!(late.await.unwrap(), Err(Elapsed));
                assert_eq!(Instant::now() - t0, ms(300));
                assert_eq!(by(t0, pending()).await, Err(Elapsed), "already past");

                // Thousands of requests answered first leave a bounded queue.
                for i in 0..5000u64 {
                    let at = Instant::now() + Duration::from_secs(15) + ms(i);
                    assert_eq!(by(at, tokio::time::sleep(Duration::from_micros(10))).await, Ok(()));
                }
                assert!(lines() <= 66, "{} lines", lines());
                assert_eq!(WAITS.with(|w| w.borrow().live), 0);

                // A burst of waits at once: its room is let go once all end,
                // and deadlines are kept as before afterwards.
                let burst: Vec<_> = (0..3000)
                    .map(|_| tokio::task::spawn_local(by(Instant::now() + ms(500), tokio::time::sleep(ms(5)))))
                    .collect();
                let live = || WAITS.with(|w| w.borrow().live);
                for _ in 0..1000 {
                    if live() == 3000 {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                assert_eq!(live(), 3000, "all waiting at once");
                for b in burst {
                    assert_eq!(b.await.unwrap(), Ok(()));
                }
                assert_eq!(WAITS.with(|w| (w.borrow().slots.len(), lines())), (0, 0));
                let t2 = Instant::now();
                assert_eq!(by(t2 + ms(30), pending()).await, Err(Elapsed));
                assert_eq!(Instant::now() - t2, ms(30));

                driver.abort();
                let _ = driver.await;
                // Without a driver, a tokio timer of its own.
                let t1 = Instant::now();
                assert_eq!(by(t1 + ms(40), pending()).await, Err(Elapsed));
                assert_eq!(Instant::now() - t1, ms(40));
            })
            .await;
    }
}
