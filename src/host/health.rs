//! Which hosts of a cluster are healthy, kept up to date as health changes
//! rather than worked out on each request.
//!
//! Passive health (a failed connect backs a host off, a successful one brings
//! it back) reports each change here, and a host whose back-off ran out comes
//! back at the next pick after that moment, through a heap of due times. The
//! balancers then draw from [`HealthSet::healthy`], a plain list, in O(1): no
//! per-request scan over the hosts, however many there are, and no draw that
//! lands on a dead host and hands its share to its neighbour.
//!
//! One set per cluster and worker, like the hosts themselves: `RefCell`s on
//! one thread, no lock.

use std::cell::{Cell, Ref, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use tokio::time::Instant;

const OUT: u32 = u32::MAX;

#[derive(Debug)]
pub struct HealthSet {
    /// The hosts that are up, in no particular order.
    healthy: RefCell<Vec<u32>>,
    /// Each host's place in `healthy`, or `OUT`.
    slot: RefCell<Vec<u32>>,
    /// When backed-off hosts are due back.
    due: RefCell<BinaryHeap<Reverse<(Instant, u32)>>>,
    /// Bumped on every change, so state built from the list (the weighted
    /// balancer's schedule) knows to rebuild.
    epoch: Cell<u64>,
}

impl HealthSet {
    /// A set of `hosts` hosts, all healthy.
    pub fn new(hosts: usize) -> HealthSet {
        HealthSet {
            healthy: RefCell::new((0..hosts as u32).collect()),
            slot: RefCell::new((0..hosts as u32).collect()),
            due: RefCell::new(BinaryHeap::new()),
            epoch: Cell::new(0),
        }
    }

    /// Host `i` is backed off until `until`.
    pub fn down(&self, i: u32, until: Instant) {
        self.due.borrow_mut().push(Reverse((until, i)));
        let mut slot = self.slot.borrow_mut();
        let at = slot[i as usize];
        if at == OUT {
            return;
        }
        let mut healthy = self.healthy.borrow_mut();
        healthy.swap_remove(at as usize);
        if let Some(&moved) = healthy.get(at as usize) {
            slot[moved as usize] = at;
        }
        slot[i as usize] = OUT;
        self.bump();
    }

    /// Host `i` is healthy again.
    pub fn up(&self, i: u32) {
        let mut slot = self.slot.borrow_mut();
        if slot[i as usize] != OUT {
            return;
        }
        let mut healthy = self.healthy.borrow_mut();
        slot[i as usize] = healthy.len() as u32;
        healthy.push(i);
        self.bump();
    }

    fn bump(&self) {
        self.epoch.set(self.epoch.get() + 1);
    }

    /// Brings back the hosts whose back-off has run out. `back_off_until`
    /// tells a host's current back-off, which a later failure may have
    /// extended past the due time that was queued. Reads the clock only when
    /// some host is backed off.
    #[inline]
    pub fn refresh(&self, back_off_until: impl Fn(u32) -> Option<Instant>) {
        // Asked on every pick: the common answer (none backed off) inline.
        if !self.due.borrow().is_empty() {
            self.bring_back(back_off_until);
        }
    }

    fn bring_back(&self, back_off_until: impl Fn(u32) -> Option<Instant>) {
        let now = Instant::now();
        loop {
            let mut due = self.due.borrow_mut();
            match due.peek() {
                Some(&Reverse((t, i))) if t <= now => {
                    due.pop();
                    drop(due);
                    if back_off_until(i).is_none_or(|until| until <= now) {
                        self.up(i);
                    }
                }
                _ => return,
            }
        }
    }

    /// The healthy hosts.
    pub fn healthy(&self) -> Ref<'_, Vec<u32>> {
        self.healthy.borrow()
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.slot.borrow()[i] != OUT
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_follows_each_change() {
        let set = HealthSet::new(5);
        let later = Instant::now() + std::time::Duration::from_secs(60);
        set.down(1, later);
        set.down(3, later);
        set.down(3, later);
        let mut up: Vec<u32> = set.healthy().clone();
        up.sort();
        assert_eq!(up, vec![0, 2, 4]);
        assert!(!set.is_up(1) && set.is_up(4));
        set.up(1);
        set.up(1);
        let mut up: Vec<u32> = set.healthy().clone();
        up.sort();
        assert_eq!(up, vec![0, 1, 2, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_host_comes_back_when_its_back_off_runs_out() {
        let set = HealthSet::new(2);
        let t0 = Instant::now();
        let until = t0 + std::time::Duration::from_secs(1);
        set.down(0, until);
        set.refresh(|_| Some(until));
        assert!(!set.is_up(0));
        tokio::time::advance(std::time::Duration::from_millis(1001)).await;
        // A later failure extended the back-off: not back yet.
        let extended = t0 + std::time::Duration::from_secs(3);
        set.refresh(|_| Some(extended));
        assert!(!set.is_up(0));
        set.down(0, extended);
        tokio::time::advance(std::time::Duration::from_secs(2)).await;
        set.refresh(|_| Some(extended));
        assert!(set.is_up(0));
    }
}
