//! The request-id map of one upstream connection.
//!
//! Clients choose their own ids and reuse them, so two client connections may
//! both send id 1 at once. Every request written upstream gets a fresh id that
//! is unique on that upstream connection; the map takes it back to the request's
//! entry. Ids come from a counter at the wire's width (bolt: u32, MOSN #2404),
//! skip 0 and any id still in use, and wrap.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Ids are already well spread counters: a multiply is all the hashing needed.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub struct IdMap<T> {
    entries: HashMap<u64, T, BuildHasherDefault<IdHasher>>,
    next: u64,
    max: u64,
}

impl<T> IdMap<T> {
    /// A map whose ids run from 1 to `max` inclusive.
    pub fn new(max: u64) -> Self {
        IdMap { entries: HashMap::default(), next: 1, max: max.max(1) }
    }

    /// The next id not in use, without reserving it.
    pub fn next_free(&mut self) -> Option<u64> {
        if self.entries.len() as u64 >= self.max {
            return None;
        }
        loop {
            let id = self.next;
            self.next = if id >= self.max { 1 } else { id + 1 };
            if !self.entries.contains_key(&id) {
                return Some(id);
            }
        }
    }

    /// Stores `entry` under `id` (from [`Self::next_free`]).
    pub fn insert(&mut self, id: u64, entry: T) {
        let old = self.entries.insert(id, entry);
        debug_assert!(old.is_none(), "id {id} reused while in flight");
    }

    pub fn remove(&mut self, id: u64) -> Option<T> {
        self.entries.remove(&id)
    }

    pub fn get(&self, id: u64) -> Option<&T> {
        self.entries.get(&id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut T> {
        self.entries.get_mut(&id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes the entries `abandoned` picks. Their ids stay out of use until
    /// the counter comes round again (after `max` more requests), so a late
    /// answer to one is dropped as unknown, never taken for another request.
    pub fn remove_where(&mut self, mut abandoned: impl FnMut(&T) -> bool) -> Vec<(u64, T)> {
        let ids: Vec<u64> = self.entries.iter().filter(|(_, e)| abandoned(e)).map(|(&id, _)| id).collect();
        ids.into_iter().filter_map(|id| self.entries.remove(&id).map(|e| (id, e))).collect()
    }

    /// Removes every entry (the connection closed).
    pub fn drain(&mut self) -> Vec<(u64, T)> {
        let out = self.entries.drain().collect();
        self.entries.shrink_to_fit();
        out
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

    #[test]
    fn unknown_ids_are_not_found() {
        let mut m: IdMap<u8> = IdMap::new(u64::from(u32::MAX));
        assert!(m.remove(77).is_none());
        assert!(m.is_empty());
    }
}
