//! The request-id map of one upstream connection.
//!
//! Clients choose their own ids and reuse them, so two client connections may
//! both send id 1 at once. Every request written upstream gets a fresh id that
//! is unique on that upstream connection; the map takes it back to the request's
//! entry. Ids come from a counter at the wire's width (bolt: u32, MOSN #2404),
//! skip 0 and any id still in use (or whose slot is), and wrap.

/// Entries live in a table of a power-of-two size, at slot `id & mask`: a
/// lookup is an index and one compare, no hashing and no probing. The table
/// is kept at least twice the entries, and [`IdMap::next_free`] skips an id
/// whose slot another request still holds, so no two live ids share a slot.
/// Doubling the table keeps them apart (their low bits already differ).
pub struct IdMap<T> {
    slots: Vec<Option<(u64, T)>>,
    len: usize,
    next: u64,
    max: u64,
    /// No shrink is tried again until at most this many entries are left
    /// (the last try found live ids that would share a slot).
    shrink_below: usize,
}

/// The smallest table, once there is an entry.
const MIN_SLOTS: usize = 8;

/// A table up to this size keeps the size of its busiest moment (as the
/// `HashMap` it replaced did): a connection that falls idle between bursts
/// would otherwise grow it again on each one. A larger one, left by a burst
/// of many thousands in flight, gives the room back once it is nearly empty
/// ([`IdMap::shrink_if_sparse`]): a client that closes with requests in
/// flight has them found by a walk of the table, which a burst of 200,000
/// had left costing 1.2 ms per close for as long as the connection lived.
const KEEP_SLOTS: usize = 1024;

impl<T> IdMap<T> {
    /// A map whose ids run from 1 to `max` inclusive.
    pub fn new(max: u64) -> Self {
        IdMap { slots: Vec::new(), len: 0, next: 1, max: max.max(1), shrink_below: usize::MAX }
    }

    fn slot(&self, id: u64) -> usize {
        (id & (self.slots.len() as u64 - 1)) as usize
    }

    /// The next id not in use, without reserving it.
    pub fn next_free(&mut self) -> Option<u64> {
        if self.len as u64 >= self.max {
            return None;
        }
        self.room_for_one();
        // The table is at most half full, so a free slot is near: ids below
        // the table's size each have a slot of their own, and a counter at
        // or past it visits every slot within one table's length.
        loop {
            let id = self.next;
            self.next = if id >= self.max { 1 } else { id + 1 };
            if self.slots[self.slot(id)].is_none() {
                return Some(id);
            }
        }
    }

    /// Stores `entry` under `id` (from [`Self::next_free`]).
    pub fn insert(&mut self, id: u64, entry: T) {
        self.room_for_one();
        while self.slots[self.slot(id)].as_ref().is_some_and(|(other, _)| *other != id) {
            // Not from next_free: make room rather than lose either.
            self.grow();
        }
        let i = self.slot(id);
        let old = self.slots[i].replace((id, entry));
        debug_assert!(old.is_none(), "id {id} reused while in flight");
        if old.is_none() {
            self.len += 1;
        }
    }

    pub fn remove(&mut self, id: u64) -> Option<T> {
        let i = self.find(id)?;
        self.len -= 1;
        if self.slots.len() > KEEP_SLOTS {
            let entry = self.slots[i].take().map(|(_, e)| e);
            self.shrink_if_sparse();
            return entry;
        }
        // Returned straight from the slot: an entry is a whole request's
        // state, and holding it across the check above cost a copy of it.
        self.slots[i].take().map(|(_, e)| e)
    }

    fn find(&self, id: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let i = self.slot(id);
        match &self.slots[i] {
            Some((k, _)) if *k == id => Some(i),
            _ => None,
        }
    }

    pub fn get(&self, id: u64) -> Option<&T> {
        let i = self.find(id)?;
        self.slots[i].as_ref().map(|(_, e)| e)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut T> {
        let i = self.find(id)?;
        self.slots[i].as_mut().map(|(_, e)| e)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps the table at least twice the entries, one more included.
    fn room_for_one(&mut self) {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
    }

    /// Doubles the table, each entry moving to its slot under the new mask.
    fn grow(&mut self) {
        self.resize((self.slots.len() * 2).max(MIN_SLOTS));
    }

    /// Moves every entry to its slot in a table of `size` slots, where no
    /// two live ids may share one.
    fn resize(&mut self, size: usize) {
        let old = std::mem::replace(&mut self.slots, (0..size).map(|_| None).collect());
        for (id, e) in old.into_iter().flatten() {
            let i = self.slot(id);
            debug_assert!(self.slots[i].is_none(), "two live ids in one slot");
            self.slots[i] = Some((id, e));
        }
        self.shrink_below = usize::MAX;
    }

    /// A large table with fewer entries than an eighth of its slots goes to
    /// the smallest size that keeps them under a quarter of it and each live
    /// id in a slot of its own (or stays). Each try walks the table once per
    /// size tried, paid for by the removals that brought the table this low;
    /// after a failed one, the next waits for half the entries to go.
    #[cold]
    fn shrink_if_sparse(&mut self) {
        let size = self.slots.len();
        if size <= KEEP_SLOTS || self.len * 8 >= size || self.len > self.shrink_below {
            return;
        }
        // The smallest size that keeps the entries under a quarter of it,
        // then larger ones while live ids would share a slot.
        let mut smaller = (self.len * 4).next_power_of_two().max(KEEP_SLOTS);
        while smaller < size {
            let mask = smaller as u64 - 1;
            let mut taken = vec![false; smaller];
            let apart =
                self.slots.iter().flatten().all(|(id, _)| !std::mem::replace(&mut taken[(id & mask) as usize], true));
            if apart {
                self.resize(smaller);
                return;
            }
            smaller *= 2;
        }
        self.shrink_below = self.len / 2;
    }

    /// Removes the entries `abandoned` picks. Their ids stay out of use until
    /// the counter comes round again (after `max` more requests), so a late
    /// answer to one is dropped as unknown, never taken for another request.
    pub fn remove_where(&mut self, mut abandoned: impl FnMut(&T) -> bool) -> Vec<(u64, T)> {
        let mut out = Vec::new();
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(|(_, e)| abandoned(e)) {
                out.extend(slot.take());
            }
        }
        self.len -= out.len();
        self.shrink_if_sparse();
        out
    }

    /// Removes every entry (the connection closed).
    pub fn drain(&mut self) -> Vec<(u64, T)> {
        self.len = 0;
        std::mem::take(&mut self.slots).into_iter().flatten().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_while_in_flight_and_wrap() {
        let mut m = IdMap::new(4);
        let a = m.next_free().unwrap();
        m.insert(a, "a");
        let b = m.next_free().unwrap();
        m.insert(b, "b");
        assert_eq!((a, b), (1, 2));
        assert_eq!(m.remove(1), Some("a"));
        let c = m.next_free().unwrap();
        m.insert(c, "c");
        let d = m.next_free().unwrap();
        m.insert(d, "d");
        // Wrapped past 4 to 1, which is free again; 2 is still in use.
        let e = m.next_free().unwrap();
        assert_eq!((c, d, e), (3, 4, 1));
        m.insert(e, "e");
        assert_eq!(m.next_free(), None, "all four ids in flight");
        assert_eq!(m.remove(2), Some("b"));
        assert_eq!(m.next_free(), Some(2));
    }

    proptest::proptest! {
        /// Against a HashMap under any mix of calls, answers, abandons and
        /// closes: every id handed out is unused, every lookup agrees, and
        /// the count is right; with a small `max` the ids wrap.
        #[test]
        fn behaves_as_a_map_whose_ids_are_never_shared(
            max in proptest::prop_oneof![1u64..40, proptest::strategy::Just(u64::from(u32::MAX))],
            ops in proptest::collection::vec((0u8..10, 0usize..1000), 1..600),
        ) {
            let mut m = IdMap::new(max);
            let mut model = std::collections::HashMap::new();
            let mut n = 0u64;
            for (op, pick) in ops {
                match op {
                    0..=4 => match m.next_free() {
                        Some(id) => {
                            proptest::prop_assert!((1..=max).contains(&id));
                            proptest::prop_assert!(!model.contains_key(&id), "id {} handed out twice", id);
                            n += 1;
                            m.insert(id, n);
                            model.insert(id, n);
                        }
                        None => proptest::prop_assert_eq!(model.len() as u64, max),
                    },
                    5..=7 => {
                        let id = model.keys().nth(pick % model.len().max(1)).copied().unwrap_or(pick as u64 + 1);
                        proptest::prop_assert_eq!(m.remove(id), model.remove(&id));
                    }
                    8 => {
                        let mut got: Vec<_> = m.remove_where(|v| v % 3 == 0);
                        got.sort();
                        let mut want: Vec<_> = model.iter().filter(|(_, v)| *v % 3 == 0).map(|(&k, &v)| (k, v)).collect();
                        want.sort();
                        model.retain(|_, v| *v % 3 != 0);
                        proptest::prop_assert_eq!(got, want);
                    }
                    _ => {
                        if pick % 50 == 0 {
                            let mut got = m.drain();
                            got.sort();
                            let mut want: Vec<_> = model.drain().collect();
                            want.sort();
                            proptest::prop_assert_eq!(got, want);
                        }
                    }
                }
                proptest::prop_assert_eq!(m.len(), model.len());
                for (&id, &v) in &model {
                    proptest::prop_assert_eq!(m.get(id), Some(&v));
                }
                proptest::prop_assert_eq!(m.get(pick as u64 + 1_000_000), None);
            }
        }
    }

    /// After a burst, a large table shrinks once nearly empty, unless live
    /// ids would share a slot; either way every entry is still found.
    #[test]
    fn a_burst_leaves_no_large_table_behind() {
        let mut m = IdMap::new(u64::from(u32::MAX));
        let ids: Vec<u64> = (0..100_000)
            .map(|_| {
                let id = m.next_free().unwrap();
                m.insert(id, id);
                id
            })
            .collect();
        assert!(m.slots.len() >= 200_000);
        for &id in &ids[..99_990] {
            assert_eq!(m.remove(id), Some(id));
        }
        assert!(m.slots.len() <= KEEP_SLOTS, "{} slots for 10 entries", m.slots.len());
        for &id in &ids[99_990..] {
            assert_eq!(m.get(id), Some(&id));
        }
        // Two live ids that share their low bits hold a large table: a
        // smaller one would put them in one slot.
        let mut m = IdMap::new(u64::from(u32::MAX));
        for id in 1..=65_537u64 {
            m.insert(id, id);
        }
        for id in 2..=65_536u64 {
            m.remove(id);
        }
        assert_eq!((m.get(1), m.get(65_537)), (Some(&1), Some(&65_537)));
        let after = m.remove_where(|&v| v == 1);
        assert_eq!(after, vec![(1, 1)]);
        assert_eq!(m.get(65_537), Some(&65_537));
        assert!(m.slots.len() <= KEEP_SLOTS, "alone, the last id lets the table shrink");
        // Its id and new ones keep slots of their own.
        for _ in 0..5000 {
            let id = m.next_free().unwrap();
            m.insert(id, id);
        }
        assert_eq!(m.len(), 5001);
        assert_eq!(m.get(65_537), Some(&65_537));
    }

    #[test]
    fn unknown_ids_are_not_found() {
        let mut m: IdMap<u8> = IdMap::new(u64::from(u32::MAX));
        assert!(m.remove(77).is_none());
        assert!(m.is_empty());
    }
}
