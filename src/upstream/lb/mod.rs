//! Load balancers: pick one host of a cluster for one request.
//!
//! Each balancer skips hosts that are unhealthy or already tried by this
//! request (`exclude`), and returns `None` only when no host is eligible. State
//! (cursors, smooth weights) is per worker, in `Cell`s.

mod least_request;
mod maglev;
mod round_robin;
mod weighted;

use std::rc::Rc;

use tokio::time::Instant;

use super::Host;

pub use maglev::Maglev;

/// The balancer a cluster is configured with (`lb_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbKind {
    RoundRobin,
    Random,
    WeightedRoundRobin,
    LeastRequest,
    Maglev,
}

impl LbKind {
    /// MOSN names (`LB_ROUNDROBIN`) and Envoy-style names (`ROUND_ROBIN`).
    pub fn from_name(name: &str) -> Option<LbKind> {
        let n = name.to_ascii_uppercase();
        let n = n.strip_prefix("LB_").unwrap_or(&n).replace('_', "");
        Some(match n.as_str() {
            "ROUNDROBIN" => LbKind::RoundRobin,
            "RANDOM" => LbKind::Random,
            "WEIGHTEDROUNDROBIN" => LbKind::WeightedRoundRobin,
            "LEASTREQUEST" | "LEASTACTIVEREQUEST" | "LEASTCONNECTION" => LbKind::LeastRequest,
            "MAGLEV" | "CONSISTENTHASH" => LbKind::Maglev,
            _ => return None,
        })
    }
}

/// What a balancer may know about the request.
pub struct LbContext<'a> {
    /// The value of the route's hash header, for consistent hashing.
    pub hash_key: Option<&'a [u8]>,
    /// Host indices this request already tried.
    pub exclude: &'a [usize],
    pub now: Instant,
    /// Panic mode: no host is healthy, so health is ignored (Envoy's panic
    /// threshold at its limit): better to try a host than to fail for sure.
    pub ignore_health: bool,
}

impl LbContext<'_> {
    pub fn eligible(&self, hosts: &[Rc<Host>], i: usize) -> bool {
        !self.exclude.contains(&i) && (self.ignore_health || hosts[i].is_healthy(self.now))
    }
}

/// A configured balancer with its per-worker state.
pub enum LoadBalancer {
    RoundRobin(round_robin::RoundRobin),
    Random,
    Weighted(weighted::SmoothWeighted),
    LeastRequest,
    Maglev(Maglev),
}

impl LoadBalancer {
    pub fn new(kind: LbKind, hosts: &[Rc<Host>]) -> LoadBalancer {
        match kind {
            LbKind::RoundRobin => LoadBalancer::RoundRobin(round_robin::RoundRobin::new(hosts.len())),
            LbKind::Random => LoadBalancer::Random,
            LbKind::WeightedRoundRobin => LoadBalancer::Weighted(weighted::SmoothWeighted::new(hosts.len())),
            LbKind::LeastRequest => LoadBalancer::LeastRequest,
            LbKind::Maglev => LoadBalancer::Maglev(Maglev::new(hosts, maglev::DEFAULT_TABLE_SIZE)),
        }
    }

    pub fn choose(&self, hosts: &[Rc<Host>], ctx: &LbContext) -> Option<usize> {
        if hosts.is_empty() {
            return None;
        }
        match self {
            LoadBalancer::RoundRobin(rr) => rr.choose(hosts, ctx),
            LoadBalancer::Random => random(hosts, ctx),
            LoadBalancer::Weighted(w) => w.choose(hosts, ctx),
            LoadBalancer::LeastRequest => least_request::choose(hosts, ctx),
            LoadBalancer::Maglev(m) => match ctx.hash_key {
                Some(key) => m.choose(hosts, ctx, key),
                None => random(hosts, ctx),
            },
        }
    }
}

/// A uniformly random eligible host: one random draw, then a scan from there.
fn random(hosts: &[Rc<Host>], ctx: &LbContext) -> Option<usize> {
    let start = fastrand::usize(..hosts.len());
    scan_from(hosts, ctx, start)
}

/// The first eligible host at or after `start`, wrapping around.
fn scan_from(hosts: &[Rc<Host>], ctx: &LbContext, start: usize) -> Option<usize> {
    (0..hosts.len()).map(|k| (start + k) % hosts.len()).find(|&i| ctx.eligible(hosts, i))
}

#[cfg(test)]
mod tests;
