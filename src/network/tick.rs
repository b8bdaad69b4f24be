//! A connection's timer, polled only when it can have news.
//!
//! A connection's task polls its timers on every wake-up (a grace before
//! parking, a keep-alive, the earliest request deadline), and polling a
//! `Sleep` registers the task's waker with it again: about 110 user-space
//! instructions each, and a bolt call at 1,000 a second woke its two tasks
//! into six such polls (an HTTP/1.1 request, four). A `Tick` polls its `Sleep` once after it is armed,
//! which leaves the waker with the timer, and after that only once the timer
//! has fired (`Sleep::is_elapsed`, a load of its state).
//!
//! The waker kept is the one of the task that polled it last with effect: a
//! poll from another task (a socket handed on, as hyper hands an upgraded
//! connection to the tunnel's task) polls the `Sleep` again, which moves the
//! timer to the new task. Kept as a flag, the registration of a `Tick`
//! polled by hyper's connection task and then, after an upgrade, by the
//! tunnel's would have woken only the first, which had ended.
//!
//! A poll counts as the registering one only if the task had coop budget
//! left: tokio's `Sleep` answers a task out of budget with `Pending` without
//! keeping its waker (it wakes the task to run again instead). Counted as
//! registered, such a poll left the timer dead: a write deadline kept on a
//! `Tick` around hyper's socket (hyper streaming 64 MB to a client that read
//! nothing spends the budget) missed its close in about half the runs.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

pub struct Tick {
    sleep: Pin<Box<Sleep>>,
    /// The waker `sleep` holds, named by its data and vtable pointers
    /// (`Waker::will_wake`'s test) once polled since it was last armed;
    /// `None` until then. A task's address cannot be another's while the
    /// sleep holds a waker of it.
    registered: Option<(usize, usize)>,
}

/// What names a waker: `Waker::will_wake` compares these two pointers.
fn waker_id(cx: &Context<'_>) -> (usize, usize) {
    let w = cx.waker();
    (w.data() as usize, w.vtable() as *const _ as usize)
}

impl Tick {
    pub fn at(deadline: Instant) -> Tick {
        Tick { sleep: Box::pin(tokio::time::sleep_until(deadline)), registered: None }
    }

    /// Ready once the deadline has passed; until then pending, with the
    /// task's waker left with the timer.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let waker = waker_id(cx);
        if self.registered == Some(waker) && !self.sleep.is_elapsed() {
            return Poll::Pending;
        }
        let budget = tokio::task::coop::has_budget_remaining();
        let ready = self.sleep.as_mut().poll(cx);
        self.registered = (ready.is_pending() && budget).then_some(waker);
        ready
    }

    /// Arms the timer for `deadline`; the next [`Tick::poll`] registers it.
    pub fn reset(&mut self, deadline: Instant) {
        self.sleep.as_mut().reset(deadline);
        self.registered = None;
    }

    /// When the timer is armed for.
    pub fn deadline(&self) -> Instant {
        self.sleep.deadline()
    }
}

/// How long something has made no progress (a peer that takes no bytes, a
/// body that gives no frames), timed on a [`Tick`] armed once per wait and
/// moved only when it fires: progress costs a store, never the timer wheel.
#[derive(Default)]
pub struct Stall {
    /// Since when nothing could go on; `None` after progress.
    since: Option<Instant>,
    tick: Option<Tick>,
    armed: bool,
}

impl Stall {
    /// Something went on: a wait, if there was one, is over.
    pub fn progress(&mut self) {
        self.since = None;
    }

    /// Nothing could go on: whether that has been so for `timeout`, counted
    /// from the first such call since the last progress. Until then the
    /// task is woken when it may be.
    pub fn stalled(&mut self, cx: &mut Context<'_>, timeout: Duration) -> bool {
        let due = *self.since.get_or_insert_with(Instant::now) + timeout;
        let tick = self.tick.get_or_insert_with(|| Tick::at(due));
        if !self.armed {
            tick.reset(due);
            self.armed = true;
        }
        while tick.poll(cx).is_ready() {
            if Instant::now() >= due {
                self.armed = false;
                return true;
            }
            // Armed for an earlier wait: progress came since.
            tick.reset(due);
        }
        false
    }
}

/// Awaiting a `Tick` (`&mut tick` in a `select!`) is [`Tick::poll`].
impl Future for Tick {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Tick::poll(self.get_mut(), cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;
    use std::time::Duration;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A `Tick` registered by one task and then polled by another (a
    /// socket handed on) wakes the second.
    #[tokio::test(start_paused = true)]
    async fn a_tick_polled_by_another_task_wakes_that_one() {
        let mut tick = Tick::at(Instant::now() + Duration::from_millis(50));
        let first = tokio::spawn(async move {
            std::future::poll_fn(|cx| Poll::Ready(tick.poll(cx).is_pending())).await.then_some(tick)
        });
        let tick = first.await.unwrap().expect("pending when first polled");
        let second = tokio::spawn(tick);
        tokio::time::timeout(Duration::from_secs(2), second).await.expect("the second task was never woken").unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn wakes_once_due_and_after_each_reset() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut tick = Tick::at(Instant::now() + Duration::from_millis(10));
        // Polled once, then left alone: not due, so pending without a poll.
        assert!(tick.poll(&mut cx).is_pending());
        assert!(tick.poll(&mut cx).is_pending());
        tokio::time::sleep(Duration::from_millis(11)).await;
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "the first poll's waker was woken");
        assert!(tick.poll(&mut cx).is_ready());
        // Re-armed: pending again, and it wakes again when due.
        tick.reset(Instant::now() + Duration::from_millis(10));
        assert!(tick.poll(&mut cx).is_pending());
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(tick.poll(&mut cx).is_pending());
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(6)).await;
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert!(tick.poll(&mut cx).is_ready());
        // A reset to an earlier time while registered is seen too.
        tick.reset(Instant::now() + Duration::from_secs(60));
        assert!(tick.poll(&mut cx).is_pending());
        tick.reset(Instant::now() + Duration::from_millis(1));
        assert!(tick.poll(&mut cx).is_pending());
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert_eq!(count.0.load(Ordering::SeqCst), 3);
        assert!(tick.poll(&mut cx).is_ready());
    }

    /// A task that arms a `Tick` after spending its coop budget (a busy
    /// connection's poll) still hears it fire: the poll without budget did
    /// not leave the task's waker with the sleep, so the next one does.
    #[tokio::test]
    async fn a_tick_armed_out_of_budget_still_fires() {
        let mut tick = Tick::at(Instant::now() + Duration::from_millis(50));
        let mut first = true;
        let fired = std::future::poll_fn(|cx| {
            if std::mem::take(&mut first) {
                // Spend the budget as a busy poll does, then arm the timer.
                while tokio::task::coop::has_budget_remaining() {
                    let spend = std::pin::pin!(tokio::task::coop::consume_budget());
                    let _ = spend.poll(cx);
                }
            }
            tick.poll(cx)
        });
        tokio::time::timeout(Duration::from_secs(2), fired).await.expect("the tick fired");
    }
}
