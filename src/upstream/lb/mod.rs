//! Load balancers: pick one host of a cluster for one request.
//!
//! Every balancer picks in constant or logarithmic time, whatever the number
//! of hosts: they draw from [`Candidates`], the cluster's list of healthy
//! hosts that passive health keeps up to date (`host::health`), or from
//! every host in panic mode, never from a list built per request. The hosts a
//! request already tried (`exclude`, a handful at most) are skipped by drawing
//! again a bounded number of times. `None` only when no candidate is left.
//! State (cursors, schedules) is per worker, in `Cell`s.

mod least_request;
mod maglev;
mod round_robin;
mod weighted;

use std::rc::Rc;

use crate::host::{HealthSet, Host};

pub use maglev::Maglev;

/// The balancer kinds are configuration's (a plain spec it hands down).
pub use crate::config::LbKind;

/// The hosts a pick may land on.
pub enum Candidates<'a> {
    /// The healthy hosts, as the cluster's health set lists them.
    Healthy(&'a [u32], &'a HealthSet),
    /// Every host `0..n`: panic mode, when none is healthy.
    All(usize),
}

impl Candidates<'_> {
    pub fn len(&self) -> usize {
        match self {
            Candidates::Healthy(list, _) => list.len(),
            Candidates::All(n) => *n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `k`th candidate's host index.
    pub fn get(&self, k: usize) -> usize {
        match self {
            Candidates::Healthy(list, _) => list[k] as usize,
            Candidates::All(_) => k,
        }
    }

    /// Whether host `i` is a candidate.
    pub fn contains(&self, i: usize) -> bool {
        match self {
            Candidates::Healthy(_, set) => set.is_up(i),
            Candidates::All(n) => i < *n,
        }
    }

    /// Which list this is, so that state built from it can tell a change.
    fn version(&self) -> (bool, u64) {
        match self {
            Candidates::Healthy(_, set) => (true, set.epoch()),
            Candidates::All(_) => (false, 0),
        }
    }
}

/// What a balancer may know about the request.
pub struct LbContext<'a> {
    /// The value of the route's hash header, for consistent hashing.
    pub hash_key: Option<&'a [u8]>,
    /// Host indices this request already tried.
    pub exclude: &'a [usize],
}

impl LbContext<'_> {
    fn tried(&self, i: usize) -> bool {
        self.exclude.contains(&i)
    }
}

/// How many random draws a balancer makes before it steps through the list:
/// only hosts this request already tried make a draw miss, so a few suffice.
const DRAWS: usize = 4;

/// A configured balancer with its per-worker state.
pub enum LoadBalancer {
    RoundRobin(round_robin::RoundRobin),
    Random,
    Weighted(weighted::Edf),
    LeastRequest,
    Maglev(Maglev),
}

impl LoadBalancer {
    pub fn new(kind: LbKind, hosts: &[Rc<Host>]) -> LoadBalancer {
        match kind {
            LbKind::RoundRobin => LoadBalancer::RoundRobin(round_robin::RoundRobin::new(hosts.len())),
            LbKind::Random => LoadBalancer::Random,
            LbKind::WeightedRoundRobin => LoadBalancer::Weighted(weighted::Edf::new(fastrand::usize(..=hosts.len()))),
            LbKind::LeastRequest => LoadBalancer::LeastRequest,
            LbKind::Maglev => LoadBalancer::Maglev(Maglev::new(hosts, maglev::DEFAULT_TABLE_SIZE)),
        }
    }

    /// Picks among the healthy hosts of `health`, or among all of them when
    /// none is healthy (panic mode).
    pub fn pick(&self, hosts: &[Rc<Host>], health: &HealthSet, ctx: &LbContext) -> Option<usize> {
        health.refresh(|i| hosts[i as usize].unhealthy_until());
        if hosts.len() == 1 {
            // Whatever the balancer, healthy or in panic mode, one host is the
            // choice (a sidecar's inbound cluster, its own application).
            return (!ctx.tried(0)).then_some(0);
        }
        let healthy = health.healthy();
        let candidates =
            if healthy.is_empty() { Candidates::All(hosts.len()) } else { Candidates::Healthy(&healthy, health) };
        self.choose(hosts, &candidates, ctx)
    }

    fn choose(&self, hosts: &[Rc<Host>], candidates: &Candidates, ctx: &LbContext) -> Option<usize> {
        if candidates.is_empty() {
            return None;
        }
        match self {
            LoadBalancer::RoundRobin(rr) => rr.choose(candidates, ctx),
            LoadBalancer::Random => random(candidates, ctx),
            LoadBalancer::Weighted(w) => w.choose(hosts, candidates, ctx),
            LoadBalancer::LeastRequest => least_request::choose(hosts, candidates, ctx),
            LoadBalancer::Maglev(m) => match ctx.hash_key {
                Some(key) => m.choose(candidates, ctx, key),
                None => random(candidates, ctx),
            },
        }
    }
}

/// A uniformly random candidate not yet tried.
fn random(candidates: &Candidates, ctx: &LbContext) -> Option<usize> {
    let n = candidates.len();
    for _ in 0..DRAWS {
        let host = candidates.get(fastrand::usize(..n));
        if !ctx.tried(host) {
            return Some(host);
        }
    }
    step_from(candidates, ctx, fastrand::usize(..n))
}

/// The first candidate not yet tried at or after position `start`, wrapping;
/// at most `exclude.len() + 1` steps find one if there is one.
fn step_from(candidates: &Candidates, ctx: &LbContext, start: usize) -> Option<usize> {
    let n = candidates.len();
    (0..n.min(ctx.exclude.len() + 1)).map(|k| candidates.get((start + k) % n)).find(|&i| !ctx.tried(i))
}

#[cfg(test)]
mod tests;
