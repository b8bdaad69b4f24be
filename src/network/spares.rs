//! A worker's spare values of one kind: buffers, header maps, the room of a
//! stream's work, given back when a request or connection is done with them
//! and taken by the next one, so that the request path does not allocate
//! what the last request freed. One per kind, in a `thread_local!` (each
//! worker is one thread), each bounded; what a caller keeps (cleared, and
//! not too large) is the caller's to decide before [`Spares::give`].

use std::cell::RefCell;

pub struct Spares<T> {
    kept: RefCell<Vec<T>>,
    /// The most kept at once.
    keep: usize,
}

impl<T> Spares<T> {
    pub const fn new(keep: usize) -> Spares<T> {
        Spares { kept: RefCell::new(Vec::new()), keep }
    }

    /// The last one given back, if any.
    pub fn take(&self) -> Option<T> {
        self.kept.borrow_mut().pop()
    }

    /// Keeps `t` for a later [`Spares::take`], unless as many as `keep` are
    /// kept already (then it is dropped).
    pub fn give(&self, t: T) {
        let mut kept = self.kept.borrow_mut();
        if kept.len() < self.keep {
            kept.push(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_at_most_its_bound_and_gives_the_last_back_first() {
        let s = Spares::new(2);
        s.give(1);
        s.give(2);
        s.give(3);
        assert_eq!(s.take(), Some(2));
        assert_eq!(s.take(), Some(1));
        assert_eq!(s.take(), None);
    }
}
