//! A set of futures run inside one task: an HTTP/2 connection's streams,
//! each one's work polled from the connection's own pass rather than spawned
//! as a task of its own.
//!
//! This is the job `futures_util`'s `FuturesUnordered` does, shaped for it.
//! `FuturesUnordered` allocates a task node per future pushed, hands each
//! poll a waker it counts references to, and links woken futures into a
//! queue made for any number of threads: about 700 instructions of an h2c
//! request's 14,500. Here a stream's room is a slot kept for the next
//! stream when its work ends, with its waker made once for the slot, so a
//! poll takes no reference and a push allocates nothing once the connection
//! has had as many streams at once before. A wake sets the slot's bit in a
//! word of 64 and that word's bit in a summary, and wakes the one task the
//! set belongs to (given when it is made): a run reads only the words the
//! summary names, so its cost follows the futures woken, not the futures
//! held.
//!
//! Wakers may be used from any thread (the bits are atomics), though on a
//! worker they are used from its own thread. A waker kept past its future's
//! end, whose slot holds another future by then, costs that future a
//! spurious poll, which a future takes in its stride.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// Futures polled in their owner's task; see the module doc.
pub struct TaskSet<F> {
    slots: Vec<Slot<F>>,
    /// One per 64 slots: slot `i`'s bit is `1 << (i % 64)` in word `i / 64`.
    words: Vec<Arc<Word>>,
    top: Arc<Top>,
    /// Slots whose future ended, the last freed on top (its memory is the
    /// warmest).
    free: Vec<u32>,
    /// Slots pushed since the last run: polled first by the next one. Kept
    /// here rather than marked in the words, which costs two atomic
    /// read-modify-writes per push.
    pushed: Vec<u32>,
    live: usize,
}

struct Slot<F> {
    future: Option<F>,
    waker: Waker,
}

/// What every waker of the set shares.
struct Top {
    /// Bit `w % 64` is set when word `w` may have bits set.
    summary: AtomicU64,
    /// The task the set runs in.
    owner: Waker,
}

/// The woken bits of 64 slots.
struct Word {
    bits: AtomicU64,
    /// This word's bit in the summary (word `w`: `1 << (w % 64)`).
    summary_bit: u64,
    top: Arc<Top>,
}

impl Word {
    /// Marks the slots in `mask` woken; true if one of them was not yet.
    fn mark(&self, mask: u64) -> bool {
        if self.bits.fetch_or(mask, Ordering::AcqRel) & mask == mask {
            return false;
        }
        self.top.summary.fetch_or(self.summary_bit, Ordering::AcqRel);
        true
    }
}

/// A slot's waker.
struct SlotWake {
    word: Arc<Word>,
    mask: u64,
}

impl Wake for SlotWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // A slot already marked has woken the owner since its last run.
        if self.word.mark(self.mask) {
            self.word.top.owner.wake_by_ref();
        }
    }
}

impl<F: Future + Unpin> TaskSet<F> {
    /// An empty set run by the task `owner` wakes: each wake of a future in
    /// it wakes `owner`, whose poll is then to call [`TaskSet::run`].
    pub fn new(owner: Waker) -> TaskSet<F> {
        TaskSet {
            slots: Vec::new(),
            words: Vec::new(),
            top: Arc::new(Top { summary: AtomicU64::new(0), owner }),
            free: Vec::new(),
            pushed: Vec::new(),
            live: 0,
        }
    }

    /// How many futures the set holds.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Adds a future, to be polled first by the next [`TaskSet::run`] (the
    /// owner is not woken: the caller is the owner, about to run the set).
    /// Pushed futures are polled in the order pushed.
    pub fn push(&mut self, future: F) {
        let index = match self.free.pop() {
            Some(i) => i as usize,
            None => self.grow(),
        };
        self.slots[index].future = Some(future);
        self.live += 1;
        self.pushed.push(index as u32);
    }

    /// A new slot, with its waker (and its word, every 64 slots).
    fn grow(&mut self) -> usize {
        let index = self.slots.len();
        if index % 64 == 0 {
            let word = Word { bits: AtomicU64::new(0), summary_bit: 1 << (index / 64 % 64), top: self.top.clone() };
            self.words.push(Arc::new(word));
        }
        let wake = SlotWake { word: self.words[index / 64].clone(), mask: 1 << (index % 64) };
        self.slots.push(Slot { future: None, waker: Waker::from(Arc::new(wake)) });
        index
    }

    /// Polls the futures woken (or pushed) since the last run, handing each
    /// one's output to `done` as it ends. Those woken again during the run
    /// are polled again in it, up to as many polls as the set held futures
    /// when it started: a future that wakes itself on every poll (as tokio's
    /// cooperative budget makes one do) then waits for the owner's next
    /// poll, for which the owner has been woken.
    pub fn run(&mut self, mut done: impl FnMut(F::Output)) {
        let mut budget = self.live.max(1);
        // In the order pushed (the budget holds them all: each is held).
        for i in 0..self.pushed.len() {
            budget -= 1;
            self.poll_slot(self.pushed[i] as usize, &mut done);
        }
        self.pushed.clear();
        loop {
            // A load first: a run with nothing woken (most of a pass's) then
            // writes nothing.
            if self.top.summary.load(Ordering::Acquire) == 0 {
                return;
            }
            let summary = self.top.summary.swap(0, Ordering::AcqRel);
            if summary == 0 {
                return;
            }
            let mut groups = summary;
            while groups != 0 {
                let group = groups.trailing_zeros() as usize;
                groups &= groups - 1;
                // Words `group`, `group + 64`, ...: the summary has one bit
                // for every 64th word.
                for w in (group..self.words.len()).step_by(64) {
                    let mut bits = self.words[w].bits.swap(0, Ordering::AcqRel);
                    while bits != 0 {
                        if budget == 0 {
                            // Left for the owner's next poll.
                            self.words[w].mark(bits);
                            self.top.summary.fetch_or(groups, Ordering::AcqRel);
                            self.top.owner.wake_by_ref();
                            return;
                        }
                        let bit = bits.trailing_zeros() as usize;
                        bits &= bits - 1;
                        budget -= 1;
                        self.poll_slot(w * 64 + bit, &mut done);
                    }
                }
            }
        }
    }

    fn poll_slot(&mut self, index: usize, done: &mut impl FnMut(F::Output)) {
        let slot = &mut self.slots[index];
        // None: a stale wake of a slot whose future has ended.
        let Some(future) = slot.future.as_mut() else { return };
        if let Poll::Ready(out) = Pin::new(future).poll(&mut Context::from_waker(&slot.waker)) {
            slot.future = None;
            self.free.push(index as u32);
            self.live -= 1;
            done(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;
    use std::sync::atomic::AtomicUsize;

    /// The owner's waker: counts its wakes.
    #[derive(Default)]
    struct Owner(AtomicUsize);

    impl Wake for Owner {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Owner {
        fn wakes(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// A future that keeps its waker where the test can reach it and ends
    /// with `value` once `open` is set.
    struct Gate {
        value: u32,
        open: Rc<Cell<bool>>,
        waker: Rc<Cell<Option<Waker>>>,
        polls: Rc<Cell<u32>>,
    }

    impl Future for Gate {
        type Output = u32;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            self.polls.set(self.polls.get() + 1);
            if self.open.get() {
                return Poll::Ready(self.value);
            }
            self.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    }

    struct Handle {
        open: Rc<Cell<bool>>,
        waker: Rc<Cell<Option<Waker>>>,
        polls: Rc<Cell<u32>>,
    }

    impl Handle {
        fn open_and_wake(&self) {
            self.open.set(true);
            self.waker.take().expect("polled once, so its waker is kept").wake();
        }
    }

    fn gate(value: u32) -> (Gate, Handle) {
        let (open, waker, polls) = (Rc::new(Cell::new(false)), Rc::new(Cell::new(None)), Rc::new(Cell::new(0)));
        let handle = Handle { open: open.clone(), waker: waker.clone(), polls: polls.clone() };
        (Gate { value, open, waker, polls }, handle)
    }

    fn set() -> (TaskSet<Gate>, Arc<Owner>) {
        let owner = Arc::new(Owner::default());
        (TaskSet::new(Waker::from(owner.clone())), owner)
    }

    fn run(set: &mut TaskSet<Gate>) -> Vec<u32> {
        let mut out = Vec::new();
        set.run(|v| out.push(v));
        out
    }

    /// A set holding one gate, polled once, and the waker it kept.
    fn one_waiting(value: u32) -> (TaskSet<Gate>, Arc<Owner>, Handle, Waker) {
        let (mut set, owner) = set();
        let (g, h) = gate(value);
        set.push(g);
        run(&mut set);
        let waker = h.waker.take().expect("polled once, so its waker is kept");
        (set, owner, h, waker)
    }

    #[test]
    fn pushed_futures_are_polled_once_and_then_only_when_woken() {
        let (mut set, owner) = set();
        let handles: Vec<Handle> = (0..3)
            .map(|v| {
                let (g, h) = gate(v);
                set.push(g);
                h
            })
            .collect();
        assert!(run(&mut set).is_empty());
        assert!(handles.iter().all(|h| h.polls.get() == 1));
        // Nothing woken: nothing polled.
        assert!(run(&mut set).is_empty());
        assert!(handles.iter().all(|h| h.polls.get() == 1));
        assert_eq!(owner.wakes(), 0);

        handles[1].open_and_wake();
        assert_eq!(owner.wakes(), 1);
        assert_eq!(run(&mut set), vec![1]);
        assert_eq!((handles[0].polls.get(), handles[2].polls.get()), (1, 1));
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn a_second_wake_before_the_run_wakes_the_owner_once() {
        let (mut set, owner, h, waker) = one_waiting(7);
        waker.wake_by_ref();
        waker.wake_by_ref();
        assert_eq!(owner.wakes(), 1);
        run(&mut set);
        assert_eq!(h.polls.get(), 2);
    }

    #[test]
    fn an_ended_futures_slot_is_reused_and_a_stale_wake_only_costs_a_poll() {
        let (mut set, _owner, h, stale) = one_waiting(1);
        h.open.set(true);
        stale.wake_by_ref();
        assert_eq!(run(&mut set), vec![1]);
        assert!(set.is_empty());

        let (g2, h2) = gate(2);
        set.push(g2);
        run(&mut set);
        assert_eq!(set.slots.len(), 1, "the freed slot was reused");
        // The old waker now names the new future: a spurious poll, no end.
        stale.wake_by_ref();
        assert!(run(&mut set).is_empty());
        assert_eq!(h2.polls.get(), 2);
        h2.open_and_wake();
        assert_eq!(run(&mut set), vec![2]);
    }

    #[test]
    fn wakes_from_another_thread_are_seen() {
        let (mut set, owner, h, waker) = one_waiting(5);
        h.open.set(true);
        std::thread::spawn(move || waker.wake()).join().expect("the waking thread ended");
        assert_eq!(owner.wakes(), 1);
        assert_eq!(run(&mut set), vec![5]);
    }

    /// More slots than the summary has bits: words 3 and 67 share its bit 3.
    #[test]
    fn thousands_of_futures_each_end_when_woken() {
        let (mut set, _owner) = set();
        let n = 64 * 70;
        let handles: Vec<Handle> = (0..n)
            .map(|v| {
                let (g, h) = gate(v);
                set.push(g);
                h
            })
            .collect();
        assert!(run(&mut set).is_empty());
        let picks = [3 * 64 + 5, 67 * 64 + 5, 0, n as usize - 1, 64 * 64];
        for &i in &picks {
            handles[i].open_and_wake();
        }
        let mut ended = run(&mut set);
        ended.sort_unstable();
        let mut want: Vec<u32> = picks.iter().map(|&i| i as u32).collect();
        want.sort_unstable();
        assert_eq!(ended, want);
        assert_eq!(set.len(), n as usize - picks.len());
        // Only the woken were polled again.
        let polled_twice = handles.iter().filter(|h| h.polls.get() == 2).count();
        assert_eq!(polled_twice, picks.len());
    }

    /// Wakes itself on every poll, as a future out of tokio's budget does.
    struct Spinner(Rc<Cell<u32>>);

    impl Future for Spinner {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.0.set(self.0.get() + 1);
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    #[test]
    fn a_future_that_wakes_itself_yields_to_the_owner() {
        let owner = Arc::new(Owner::default());
        let mut set = TaskSet::new(Waker::from(owner.clone()));
        let polls = Rc::new(Cell::new(0));
        set.push(Spinner(polls.clone()));
        set.push(Spinner(polls.clone()));
        set.run(|()| {});
        // Two held: two polls, then the owner is woken to go on.
        assert_eq!(polls.get(), 2);
        assert!(owner.wakes() >= 1);
        set.run(|()| {});
        assert_eq!(polls.get(), 4);
    }
}
