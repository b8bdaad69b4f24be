//! A worker's spare values of one kind: buffers, header maps, the room of a
//! stream's work, given back when a request or connection is done with them
//! and taken by the next one, so that the request path does not allocate
//! what the last request freed. One per kind, in a `thread_local!` (each
//! worker is one thread), each bounded; what a caller keeps (cleared, and
//! not too large) is the caller's to decide before [`Spares::give`].
//!
//! The bound is as many as a burst of answers hands back at once, not as
//! many as stay idle: with 512 h2c streams in flight, a bound of 64 let the
//! rest of each burst go back to glibc, whose per-thread cache holds seven
//! blocks a size and none above 1 KiB, and the next burst's allocations took
//! its slow paths (about 1,500 of an h2c request's 15,600 instructions).
//! What a burst leaves behind is let go once the load is gone: [`trimmer`]
//! runs each kind's [`Spares::trim`] on every worker once a second, which
//! lets go of all a kind keeps if nothing was taken since the last trim, and
//! of the older half otherwise (a steady load takes back what it needs).

use std::cell::{Cell, RefCell};
use std::time::Duration;

pub struct Spares<T> {
    kept: RefCell<Vec<T>>,
    /// The most kept at once.
    keep: usize,
    /// Something was taken since the last trim.
    used: Cell<bool>,
    /// This kind's trim, for [`trim_all`] (registered by the first give).
    trim: fn(),
    registered: Cell<bool>,
}

/// Declares a worker's spares of one kind: a `thread_local!` [`Spares`]
/// whose trim is its own (`|| NAME.with(Spares::trim)`), so that a kind
/// cannot be wired to another's.
macro_rules! thread_spares {
    ($vis:vis static $name:ident: $t:ty = $keep:expr;) => {
        thread_local! {
            $vis static $name: $crate::network::spares::Spares<$t> = const {
                $crate::network::spares::Spares::new($keep, || $name.with($crate::network::spares::Spares::trim))
            };
        }
    };
}
pub(crate) use thread_spares;

thread_local! {
    /// The trims of the kinds this thread has kept any of.
    static TRIMS: RefCell<Vec<fn()>> = const { RefCell::new(Vec::new()) };
}

/// How often a worker lets go of spares that went unused.
const TRIM_EVERY: Duration = Duration::from_secs(1);

impl<T> Spares<T> {
    /// `trim` is the kind's own [`Spares::trim`] through its
    /// `thread_local!` key ([`thread_spares`] declares one so).
    pub const fn new(keep: usize, trim: fn()) -> Spares<T> {
        Spares { kept: RefCell::new(Vec::new()), keep, used: Cell::new(false), trim, registered: Cell::new(false) }
    }

    /// The last one given back, if any.
    pub fn take(&self) -> Option<T> {
        self.used.set(true);
        self.kept.borrow_mut().pop()
    }

    /// Keeps `t` for a later [`Spares::take`], unless as many as `keep` are
    /// kept already (then it is dropped).
    pub fn give(&self, t: T) {
        let mut kept = self.kept.borrow_mut();
        if kept.is_empty() && !self.registered.replace(true) {
            let _ = TRIMS.try_with(|r| r.borrow_mut().push(self.trim));
        }
        if kept.len() < self.keep {
            kept.push(t);
        }
    }

    /// Lets go of all kept if nothing was taken since the last trim, else
    /// of the older half (the first given back, at the front).
    pub fn trim(&self) {
        let mut kept = self.kept.borrow_mut();
        let go = if self.used.replace(false) { kept.len() / 2 } else { kept.len() };
        // Dropped outside the borrow.
        let dropped: Vec<T> = kept.drain(..go).collect();
        drop(kept);
        drop(dropped);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.kept.borrow().len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Runs the trim of every kind this thread keeps.
pub fn trim_all() {
    let trims = TRIMS.with(|r| r.borrow().clone());
    for trim in trims {
        trim();
    }
}

/// A worker's task: [`trim_all`] every [`TRIM_EVERY`].
pub async fn trimmer() {
    let mut tick = tokio::time::interval(TRIM_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        trim_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_trim() {}

    #[test]
    fn keeps_at_most_its_bound_and_gives_the_last_back_first() {
        let s = Spares::new(2, no_trim);
        s.give(1);
        s.give(2);
        s.give(3);
        assert_eq!(s.take(), Some(2));
        assert_eq!(s.take(), Some(1));
        assert_eq!(s.take(), None);
    }

    #[test]
    fn a_trim_halves_what_is_in_use_and_empties_what_is_not() {
        let s = Spares::new(100, no_trim);
        for i in 0..10 {
            s.give(i);
        }
        assert_eq!(s.take(), Some(9));
        s.trim();
        // In use: the older half went, the last given back stay.
        assert_eq!(s.len(), 5);
        assert_eq!(s.take(), Some(8));
        s.give(8);
        s.trim();
        assert_eq!(s.len(), 3);
        // Nothing taken since: all go.
        s.trim();
        assert!(s.is_empty());
    }

    thread_spares! { static KIND: Vec<u8> = 8; }

    #[test]
    fn trim_all_reaches_each_kind_this_thread_kept() {
        KIND.with(|k| k.give(vec![1]));
        KIND.with(|k| k.give(vec![2]));
        trim_all();
        assert_eq!(KIND.with(Spares::len), 0, "nothing was taken: all go");
    }
}
