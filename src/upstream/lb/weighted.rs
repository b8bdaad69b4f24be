//! Weighted round robin as an earliest-deadline-first schedule, as Envoy and
//! MOSN schedule weights.
//!
//! Each host is due every `1/weight` of virtual time; a pick takes the host
//! due first and moves its deadline on by its period. Over any stretch each
//! host gets picks in proportion to its weight, exactly over a whole cycle,
//! and a pick costs O(log n) (a binary heap) where the smooth weighted round
//! robin it replaces walked every host. The first deadline is half a period
//! in, so a light host's first turn falls mid-cycle instead of bunching every
//! host's first turn at the end of the first heavy run.
//!
//! The schedule holds the candidates (the healthy hosts, or all of them in
//! panic mode) and is rebuilt, in O(n), when that list changes: health
//! changes at connect rate, picks at request rate. Hosts this request already
//! tried are set aside for the pick and put back with their deadlines.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Rc;

use smallvec::SmallVec;

use super::{Candidates, LbContext};
use crate::host::Host;

/// Virtual time for one cycle; a host of weight w is due every `CYCLE / w`.
const CYCLE: u64 = 1 << 40;

pub struct Edf {
    state: RefCell<State>,
    /// Picks to skip when the schedule is first built, so workers do not all
    /// start on the same host.
    start: usize,
}

struct State {
    /// (deadline, host), earliest first; ties go to the lower host index.
    heap: BinaryHeap<Reverse<(u64, u32)>>,
    /// Which candidate list the heap was built from.
    version: Option<(bool, u64)>,
}

fn period(host: &Host) -> u64 {
    CYCLE / u64::from(host.weight().max(1))
}

impl Edf {
    pub fn new(start: usize) -> Edf {
        Edf { state: RefCell::new(State { heap: BinaryHeap::new(), version: None }), start }
    }

    pub fn choose(&self, hosts: &[Rc<Host>], candidates: &Candidates, ctx: &LbContext) -> Option<usize> {
        let mut state = self.state.borrow_mut();
        if state.version != Some(candidates.version()) {
            let first = state.version.is_none();
            // Virtual time goes on from where the old schedule was.
            let now = state.heap.peek().map_or(0, |Reverse((t, _))| *t);
            state.heap = (0..candidates.len())
                .map(|k| {
                    let i = candidates.get(k);
                    Reverse((now + period(&hosts[i]) / 2, i as u32))
                })
                .collect();
            state.version = Some(candidates.version());
            if first {
                for _ in 0..self.start {
                    pop_push(&mut state.heap, hosts);
                }
            }
        }
        let mut set_aside: SmallVec<[Reverse<(u64, u32)>; 4]> = SmallVec::new();
        let mut pick = None;
        while let Some(&Reverse((t, i))) = state.heap.peek() {
            if ctx.tried(i as usize) {
                set_aside.push(state.heap.pop().expect("peeked"));
                continue;
            }
            state.heap.peek_mut().expect("peeked").0 = (t + period(&hosts[i as usize]), i);
            pick = Some(i as usize);
            break;
        }
        state.heap.extend(set_aside);
        pick
    }
}

/// Takes the host due first and moves its deadline on.
fn pop_push(heap: &mut BinaryHeap<Reverse<(u64, u32)>>, hosts: &[Rc<Host>]) {
    if let Some(mut top) = heap.peek_mut() {
        let (t, i) = top.0;
        top.0 = (t + period(&hosts[i as usize]), i);
    }
}
