//! Least active requests by the power of two choices: draw two candidates at
//! random and take the one with fewer requests in flight for its weight. Near
//! the quality of a full scan at O(1), and no herd onto one idle host.

use std::rc::Rc;

use super::{step_from, Candidates, LbContext, DRAWS};
use crate::host::Host;

pub fn choose(hosts: &[Rc<Host>], candidates: &Candidates, ctx: &LbContext) -> Option<usize> {
    let n = candidates.len();
    // Active counts weighted by the inverse of the host weight.
    let score = |i: usize| u64::from(hosts[i].active()) * 128 / u64::from(hosts[i].weight().max(1));
    for _ in 0..DRAWS {
        let first = fastrand::usize(..n);
        let a = candidates.get(first);
        if ctx.tried(a) {
            continue;
        }
        if n == 1 {
            return Some(a);
        }
        // A second, different position.
        let mut second = fastrand::usize(..n - 1);
        if second >= first {
            second += 1;
        }
        let b = candidates.get(second);
        return Some(if !ctx.tried(b) && score(b) < score(a) { b } else { a });
    }
    step_from(candidates, ctx, fastrand::usize(..n))
}
