//! Smooth weighted round robin (nginx's algorithm).
//!
//! Each pick adds every eligible host's weight to its running score, takes the
//! host with the highest score and subtracts the total weight from it. Over a
//! cycle each host is picked in proportion to its weight, and picks of a heavy
//! host are spread out rather than bunched (weights 5,1,1 give a a b a c a a).

use std::cell::Cell;
use std::rc::Rc;

use super::LbContext;
use crate::upstream::Host;

pub struct SmoothWeighted {
    current: Vec<Cell<i64>>,
}

impl SmoothWeighted {
    pub fn new(hosts: usize) -> SmoothWeighted {
        SmoothWeighted { current: (0..hosts).map(|_| Cell::new(0)).collect() }
    }

    pub fn choose(&self, hosts: &[Rc<Host>], ctx: &LbContext) -> Option<usize> {
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, host) in hosts.iter().enumerate() {
            if !ctx.eligible(hosts, i) {
                continue;
            }
            let w = i64::from(host.weight);
            let c = self.current[i].get() + w;
            self.current[i].set(c);
            total += w;
            if best.is_none_or(|b| c > self.current[b].get()) {
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b].set(self.current[b].get() - total);
        Some(b)
    }
}
