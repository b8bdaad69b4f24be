//! Round robin from a random start (as MOSN) over the healthy hosts.

use std::cell::Cell;

use super::{step_from, Candidates, LbContext};

pub struct RoundRobin {
    next: Cell<usize>,
}

impl RoundRobin {
    pub fn new(hosts: usize) -> RoundRobin {
        // A random start keeps workers (and restarts) from all hitting host 0 first.
        RoundRobin { next: Cell::new(if hosts == 0 { 0 } else { fastrand::usize(..hosts) }) }
    }

    pub fn choose(&self, candidates: &Candidates, ctx: &LbContext) -> Option<usize> {
        let n = candidates.len();
        let at = self.next.get() % n;
        self.next.set(at + 1);
        step_from(candidates, ctx, at)
    }
}
