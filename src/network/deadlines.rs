//! Request deadlines, set once and never removed: those of one upstream
//! RPC connection (`stream::client`), and those of a worker's HTTP requests
//! ([`super::timeouts`]).
//!
//! Nearly every answer comes long before its deadline, so a deadline is set
//! once and never removed: it is a line in a queue, and a line whose request
//! has been answered is dropped when it reaches the front (the owner tells
//! which are still live). Requests of one route share a timeout, so deadlines
//! usually arrive in order and the queue is a `VecDeque`; one that falls
//! before the newest goes to a heap beside it. One timer (a [`Tick`], polled
//! only when it has fired) is armed no later than the earliest live deadline
//! and re-armed only when it fires early or an earlier deadline arrives, so
//! a busy connection costs the timer wheel nothing per request.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::task::{Context, Poll};

use tokio::time::Instant;

use crate::network::tick::Tick;

pub struct Deadlines {
    in_order: VecDeque<(Instant, u64)>,
    early: BinaryHeap<Reverse<(Instant, u64)>>,
    sleep: Option<Tick>,
    /// When `sleep` fires, if it is armed.
    armed: Option<Instant>,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self::new()
    }
}

impl Deadlines {
    pub const fn new() -> Self {
        Deadlines { in_order: VecDeque::new(), early: BinaryHeap::new(), sleep: None, armed: None }
    }

    /// Sets request `id`'s deadline. True when the timer must be re-armed
    /// earlier: the owner's task must poll [`Self::poll_expired`] soon.
    pub fn insert(&mut self, id: u64, at: Instant) -> bool {
        match self.in_order.back() {
            Some(&(last, _)) if at < last => self.early.push(Reverse((at, id))),
            _ => self.in_order.push_back((at, id)),
        }
        self.armed.is_none_or(|armed| at < armed)
    }

    /// Lines held, live or not.
    pub fn len(&self) -> usize {
        self.in_order.len() + self.early.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the lines of answered requests when they outnumber the live
    /// ones (a slow request at the front holds the rest back), so memory
    /// follows the requests in flight, not the request rate.
    pub fn compact(&mut self, live_count: usize, live: impl Fn(u64, Instant) -> bool) {
        if self.len() <= 2 * live_count + 64 {
            return;
        }
        self.in_order.retain(|&(at, id)| live(id, at));
        self.early.retain(|&Reverse((at, id))| live(id, at));
        if self.in_order.capacity() > 4 * self.in_order.len() + 64 {
            self.in_order.shrink_to_fit();
        }
    }

    /// Forgets every deadline (the connection closed).
    pub fn clear(&mut self) {
        *self = Deadlines::new();
    }

    /// The earliest line, and which list holds it.
    fn first(&self) -> Option<((Instant, u64), bool)> {
        let a = self.in_order.front().copied();
        let b = self.early.peek().map(|r| r.0);
        match (a, b) {
            (Some(a), Some(b)) if b < a => Some((b, true)),
            (Some(a), _) => Some((a, false)),
            (None, Some(b)) => Some((b, true)),
            (None, None) => None,
        }
    }

    fn pop(&mut self, early: bool) {
        if early {
            self.early.pop();
        } else {
            self.in_order.pop_front();
        }
    }

    /// The next request whose deadline has passed, among those `live` says
    /// are still waiting. Registers the task's waker when there is none.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>, live: impl Fn(u64, Instant) -> bool) -> Poll<u64> {
        loop {
            let Some(((at, id), early)) = self.first() else {
                return Poll::Pending;
            };
            if !live(id, at) {
                self.pop(early);
                continue;
            }
            let sleep = match (&mut self.sleep, self.armed) {
                (Some(sleep), Some(armed)) if armed <= at => sleep,
                (slot, _) => {
                    self.armed = Some(at);
                    match slot {
                        Some(sleep) => {
                            sleep.reset(at);
                            sleep
                        }
                        None => slot.insert(Tick::at(at)),
                    }
                }
            };
            if sleep.poll(cx).is_pending() {
                return Poll::Pending;
            }
            if self.armed == Some(at) {
                self.pop(early);
                return Poll::Ready(id);
            }
            // It fired for a line answered since: wait for this one.
            self.armed = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use super::*;

    fn poll(d: &mut Deadlines, live: &HashSet<u64>, at: &std::collections::HashMap<u64, Instant>) -> Poll<u64> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        d.poll_expired(&mut cx, |id, when| live.contains(&id) && at.get(&id) == Some(&when))
    }

    #[tokio::test(start_paused = true)]
    async fn live_lines_expire_in_deadline_order_and_answered_ones_never() {
        let start = Instant::now();
        let mut d = Deadlines::new();
        let mut live = HashSet::new();
        let mut at = std::collections::HashMap::new();
        // In order, then two earlier ones (to the heap), one answered.
        for (id, ms) in [(1, 100), (2, 200), (3, 300), (4, 50), (5, 150)] {
            let when = start + Duration::from_millis(ms);
            d.insert(id, when);
            live.insert(id);
            at.insert(id, when);
        }
        live.remove(&2);
        let mut fired = Vec::new();
        for _ in 0..40 {
            tokio::time::advance(Duration::from_millis(10)).await;
            while let Poll::Ready(id) = poll(&mut d, &live, &at) {
                assert!(Instant::now() >= at[&id], "request {id} fired before its deadline");
                live.remove(&id);
                fired.push(id);
            }
        }
        assert_eq!(fired, vec![4, 1, 5, 3]);
        assert!(d.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn memory_follows_the_requests_in_flight() {
        let start = Instant::now();
        let mut d = Deadlines::new();
        let slow = start + Duration::from_secs(60);
        d.insert(0, slow);
        // 10,000 requests answered at once behind one slow request.
        for id in 1..=10_000u64 {
            d.insert(id, start + Duration::from_secs(60) + Duration::from_micros(id));
            d.compact(1, |id, when| id == 0 && when == slow);
        }
        assert!(d.len() <= 66, "{} lines held", d.len());
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_asks_for_a_re_arm() {
        let start = Instant::now();
        let mut d = Deadlines::new();
        assert!(d.insert(1, start + Duration::from_secs(10)), "nothing armed yet");
        let live: HashSet<u64> = [1, 2, 3].into();
        let at = [
            (1, start + Duration::from_secs(10)),
            (2, start + Duration::from_secs(20)),
            (3, start + Duration::from_secs(1)),
        ]
        .into();
        assert!(poll(&mut d, &live, &at).is_pending());
        assert!(!d.insert(2, start + Duration::from_secs(20)), "a later deadline needs no re-arm");
        assert!(d.insert(3, start + Duration::from_secs(1)), "an earlier one does");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(poll(&mut d, &live, &at), Poll::Ready(3));
    }
}
