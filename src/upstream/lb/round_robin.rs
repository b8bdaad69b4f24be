//! Round robin from a random start (as MOSN), skipping ineligible hosts.

use std::cell::Cell;
use std::rc::Rc;

use super::{scan_from, LbContext};
use crate::upstream::Host;

pub struct RoundRobin {
    next: Cell<usize>,
}

impl RoundRobin {
    pub fn new(hosts: usize) -> RoundRobin {
        // A random start keeps workers (and restarts) from all hitting host 0 first.
        RoundRobin { next: Cell::new(if hosts == 0 { 0 } else { fastrand::usize(..hosts) }) }
    }

    pub fn choose(&self, hosts: &[Rc<Host>], ctx: &LbContext) -> Option<usize> {
        let pick = scan_from(hosts, ctx, self.next.get() % hosts.len())?;
        self.next.set(pick + 1);
        Some(pick)
    }
}
