//! Upstream: clusters, their hosts, and the load balancers that pick a host.
//!
//! Every worker builds its own [`Cluster`] objects from the shared
//! [`ClusterSpec`]s, so host state (requests in flight, health, balancer
//! cursors) lives in `Cell`s on one thread and the hot path takes no lock.
//! The cost: least-request balancing sees only its own worker's requests, and
//! a host found dead by one worker is found dead again by the others.
//!
//! Health is passive for now: a failed connect marks the host unhealthy for a
//! backoff that doubles on each failure in a row (1 s up to 30 s); the first
//! request after the backoff is a probe. Each change lands in the cluster's
//! [`HealthSet`], the list the balancers draw from. When no host is healthy the
//! balancer ignores health (panic mode, as Envoy does) rather than fail every
//! request. Active health checks come later.

pub mod health;
pub mod lb;

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::ClusterSpec;
use crate::stream::http::HttpPool;
use crate::stream::pool::HostPool;
pub use health::HealthSet;
use lb::{LbContext, LoadBalancer};

const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One upstream host, as one worker sees it.
#[derive(Debug)]
pub struct Host {
    pub addr: SocketAddr,
    pub weight: u32,
    /// Requests this worker has in flight to the host.
    active: Cell<u32>,
    unhealthy_until: Cell<Option<Instant>>,
    fail_streak: Cell<u32>,
    /// The cluster's health list and this host's place in it.
    health: Rc<HealthSet>,
    index: u32,
}

/// One request in flight to a host ([`Host::in_flight`]).
#[must_use = "the request counts as in flight only while this lives"]
pub struct InFlight<'h>(&'h Host);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec_active();
    }
}

impl Host {
    /// A host on its own (a cluster of one).
    pub fn new(addr: SocketAddr, weight: u32) -> Host {
        Host::member(addr, weight, Rc::new(HealthSet::new(1)), 0)
    }

    /// Host `index` of the cluster whose health list is `health`.
    pub fn member(addr: SocketAddr, weight: u32, health: Rc<HealthSet>, index: usize) -> Host {
        Host {
            addr,
            weight,
            active: Cell::new(0),
            unhealthy_until: Cell::new(None),
            fail_streak: Cell::new(0),
            health,
            index: index as u32,
        }
    }

    pub fn active(&self) -> u32 {
        self.active.get()
    }

    pub fn inc_active(&self) {
        self.active.set(self.active.get() + 1);
    }

    pub fn dec_active(&self) {
        self.active.set(self.active.get().saturating_sub(1));
    }

    /// Counts one request in flight to this host until the guard drops, also
    /// when the request's future is dropped mid-flight (an HTTP/2 stream
    /// reset, a client gone), which a decrement after an `.await` misses.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.inc_active();
        InFlight(self)
    }

    /// Until when a failed connect backs the host off, if it does.
    pub fn unhealthy_until(&self) -> Option<Instant> {
        self.unhealthy_until.get()
    }

    /// The cluster's health list this host reports to.
    pub fn health(&self) -> &Rc<HealthSet> {
        &self.health
    }

    pub fn is_healthy(&self, now: Instant) -> bool {
        self.unhealthy_until.get().is_none_or(|t| now >= t)
    }

    /// A connect to this host failed: back off from it.
    pub fn mark_connect_failure(&self) {
        let streak = self.fail_streak.get().saturating_add(1);
        self.fail_streak.set(streak);
        let backoff = MIN_BACKOFF.saturating_mul(1 << (streak - 1).min(5)).min(MAX_BACKOFF);
        let until = Instant::now() + backoff;
        self.unhealthy_until.set(Some(until));
        self.health.down(self.index, until);
    }

    /// Dials the host, recording the outcome in its passive health.
    pub async fn connect(&self, timeout: Duration) -> Result<tokio::net::TcpStream, String> {
        let dialled = crate::network::dial::dial(self.addr, timeout).await;
        match &dialled {
            Ok(_) => self.mark_connected(),
            Err(_) => self.mark_connect_failure(),
        }
        dialled
    }

    /// A connect succeeded: the host is healthy again.
    pub fn mark_connected(&self) {
        self.fail_streak.set(0);
        self.unhealthy_until.set(None);
        self.health.up(self.index);
    }
}

/// A cluster as one worker runs it: hosts, a balancer, and a pool per host.
pub struct Cluster {
    pub spec: ClusterSpec,
    pub hosts: Vec<Rc<Host>>,
    pub pools: Vec<Rc<HostPool>>,
    /// HTTP pools, one per host.
    pub http_pools: Vec<Rc<HttpPool>>,
    health: Rc<HealthSet>,
    lb: LoadBalancer,
}

impl Cluster {
    pub fn new(spec: &ClusterSpec, upstream: &'static dyn crate::protocol::Codec) -> Cluster {
        let health = Rc::new(HealthSet::new(spec.hosts.len()));
        let hosts: Vec<Rc<Host>> = spec
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| Rc::new(Host::member(h.addr, h.weight, health.clone(), i)))
            .collect();
        let pools = hosts.iter().map(|h| HostPool::new(h.clone(), spec, upstream)).collect();
        let http_pools =
            hosts.iter().map(|h| HttpPool::new(h.clone(), spec.connect_timeout, spec.idle_timeout)).collect();
        let lb = LoadBalancer::new(spec.lb, &hosts);
        Cluster { spec: spec.clone(), hosts, pools, http_pools, health, lb }
    }

    /// Picks a host index, skipping unhealthy hosts and those in `exclude`.
    /// When no host is healthy, health is ignored (panic mode); `None` only
    /// when the cluster is empty or every host was tried.
    pub fn choose(&self, hash_key: Option<&[u8]>, exclude: &[usize]) -> Option<usize> {
        self.lb.pick(&self.hosts, &self.health, &LbContext { hash_key, exclude })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_counts_as_in_flight_until_its_guard_drops() {
        let host = Host::new("127.0.0.1:1".parse().unwrap(), 1);
        let one = host.in_flight();
        let two = host.in_flight();
        assert_eq!(host.active(), 2);
        drop(one);
        assert_eq!(host.active(), 1);
        // A future dropped mid-flight drops its guard too.
        let fut = async move {
            let _guard = two;
            std::future::pending::<()>().await;
        };
        drop(fut);
        assert_eq!(host.active(), 0);
    }
}
