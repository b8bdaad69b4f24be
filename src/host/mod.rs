//! An upstream host as one worker sees it: its address, weight, counters,
//! requests in flight, passive health, and the dial of its connections.
//!
//! Below the stream layer: a stream pool counts its requests and connections
//! against its host, and a cluster (`upstream::Cluster`) holds hosts and pools.
//!
//! Health is passive for now: a failed connect marks the host unhealthy for a
//! backoff that doubles on each failure in a row (1 s up to 30 s); the first
//! request after the backoff is a probe. Each change lands in the cluster's
//! [`HealthSet`], the list the balancers draw from. When no host is healthy the
//! balancer ignores health (panic mode, as Envoy does) rather than fail every
//! request. Active health checks come later.

pub mod conn;
pub mod health;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use crate::network::transport::Transport;
use crate::stats::UpstreamStats;
use crate::tls::client::ClientTls;
pub use health::HealthSet;

const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One upstream host, as one worker sees it. A host outlives a change of its
/// cluster's configuration when its address stays in the list: its pool, its
/// counters and its passive health carry over (`upstream::Cluster::update`).
#[derive(Debug)]
pub struct Host {
    pub addr: SocketAddr,
    /// The address as text, made once (access logs print it per request).
    addr_text: Box<str>,
    weight: Cell<u32>,
    /// Requests this worker has in flight to the host.
    active: Cell<u32>,
    unhealthy_until: Cell<Option<Instant>>,
    fail_streak: Cell<u32>,
    /// The cluster's health list and this host's place in it.
    health: RefCell<Rc<HealthSet>>,
    index: Cell<u32>,
    /// This host's counters, and its cluster's (each event counts in both).
    pub stats: UpstreamStats,
    cluster_stats: Rc<UpstreamStats>,
    /// The TLS its connections are dialled with (`None`: plaintext, or the
    /// host's `tls_disable`).
    tls: RefCell<Option<Arc<ClientTls>>>,
    /// The cluster's name, for the logs of a failed handshake.
    cluster: RefCell<Rc<str>>,
}

thread_local! {
    /// Requests (tries) this worker has sent to any host and not yet seen
    /// end: what `busy_poll`'s `awaiting` mode polls for.
    static AWAITING: Cell<u32> = const { Cell::new(0) };
    /// Requests (tries) this worker has seen end, over its life: what
    /// `busy_poll`'s `awaiting` mode counts its polls' catches by.
    static ENDED: Cell<u64> = const { Cell::new(0) };
}

/// How many requests this worker awaits from upstream hosts, over them all.
pub fn awaiting() -> u32 {
    AWAITING.get()
}

/// How many requests to upstream hosts this worker has seen end.
pub fn ended() -> u64 {
    ENDED.get()
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
        Host::counted(addr, weight, health, index, Rc::default())
    }

    /// A member that also counts into `cluster_stats`.
    pub(crate) fn counted(
        addr: SocketAddr,
        weight: u32,
        health: Rc<HealthSet>,
        index: usize,
        cluster_stats: Rc<UpstreamStats>,
    ) -> Host {
        Host {
            addr,
            addr_text: addr.to_string().into(),
            weight: Cell::new(weight),
            active: Cell::new(0),
            unhealthy_until: Cell::new(None),
            fail_streak: Cell::new(0),
            health: RefCell::new(health),
            index: Cell::new(index as u32),
            stats: UpstreamStats::default(),
            cluster_stats,
            tls: RefCell::new(None),
            cluster: RefCell::new(Rc::from("")),
        }
    }

    pub fn weight(&self) -> u32 {
        self.weight.get()
    }

    pub fn addr_text(&self) -> &str {
        &self.addr_text
    }

    /// Moves the host to place `index` of a new health list with a new weight,
    /// bringing its passive health along.
    /// Sets the TLS its connections are dialled with and its cluster's name
    /// (a cluster built or changed); whether the TLS is what it was.
    pub(crate) fn set_dial(&self, tls: Option<Arc<ClientTls>>, cluster: Rc<str>) -> bool {
        let same = *self.tls.borrow() == tls;
        *self.tls.borrow_mut() = tls;
        *self.cluster.borrow_mut() = cluster;
        same
    }

    pub(crate) fn reseat(&self, weight: u32, health: Rc<HealthSet>, index: usize) {
        self.weight.set(weight);
        self.index.set(index as u32);
        if let Some(until) = self.unhealthy_until.get() {
            health.down(index as u32, until);
        }
        *self.health.borrow_mut() = health;
    }

    /// Counts an event in the host's counters and its cluster's.
    pub fn count(&self, f: impl Fn(&UpstreamStats)) {
        f(&self.stats);
        f(&self.cluster_stats);
    }

    /// The host answered after `took`, with this HTTP-like status.
    pub fn record_response(&self, status: u16, took: std::time::Duration) {
        self.count(|s| s.response(status, took));
    }

    /// A request to the host failed.
    pub fn record_failure(&self, err: &crate::error::ProxyError) {
        self.count(|s| s.failure(err));
    }

    /// A connection to the host closed.
    pub fn connection_closed(&self) {
        self.count(|s| s.connections_active.dec());
    }

    pub fn active(&self) -> u32 {
        self.active.get()
    }

    /// A request (one try) goes to the host.
    pub fn inc_active(&self) {
        self.active.set(self.active.get() + 1);
        AWAITING.set(AWAITING.get() + 1);
        self.count(|s| {
            s.requests.inc();
            s.active.inc();
        });
    }

    pub fn dec_active(&self) {
        if self.active.get() > 0 {
            AWAITING.set(AWAITING.get().saturating_sub(1));
            ENDED.set(ENDED.get() + 1);
        }
        self.active.set(self.active.get().saturating_sub(1));
        self.count(|s| s.active.dec());
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
    pub fn health(&self) -> Rc<HealthSet> {
        self.health.borrow().clone()
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
        self.health.borrow().down(self.index.get(), until);
        self.count(|s| s.connect_failures.inc());
    }

    /// Dials the host, and with TLS shakes hands, within `timeout`;
    /// records the outcome in its passive health. `http2`: the connection
    /// will carry HTTP/2 (TLS offers ALPN `h2` unless the cluster names its own).
    pub async fn connect(&self, timeout: Duration, http2: bool) -> Result<Transport, String> {
        let started = Instant::now();
        let tls = self.tls.borrow().clone();
        let Some(tls) = tls else {
            return self.dial(timeout).await;
        };
        let tcp = match crate::network::dial::dial(self.addr, timeout).await {
            Ok(s) => s,
            Err(e) => {
                self.mark_connect_failure();
                return Err(e);
            }
        };
        let left = timeout.saturating_sub(started.elapsed()).max(Duration::from_millis(100));
        match tls.connect(tcp, self.addr, http2, left).await {
            Ok(conn) => {
                self.count(|s| {
                    s.tls.handshakes.inc();
                    if conn.info.resumed {
                        s.tls.resumed.inc();
                    }
                });
                self.mark_connected();
                Ok(Transport::Tls(Box::new(conn)))
            }
            Err(e) => {
                let (reason, text) = crate::tls::failure::describe(&e);
                self.count(|s| s.tls.failed(reason));
                let cluster = self.cluster.borrow().clone();
                if tls.fallback {
                    warn!(cluster = %cluster, host = %self.addr, reason = %reason, error = %text, "upstream TLS handshake failed: falling back to plaintext (fall_back)");
                    return self.dial(timeout).await;
                }
                warn!(cluster = %cluster, host = %self.addr, reason = %reason, error = %text, "upstream TLS handshake failed");
                self.mark_connect_failure();
                Err(format!("{}: TLS handshake failed: {text}", self.addr))
            }
        }
    }

    /// A plaintext dial, recorded in the host's passive health.
    async fn dial(&self, timeout: Duration) -> Result<Transport, String> {
        let dialled = crate::network::dial::dial(self.addr, timeout).await;
        match &dialled {
            Ok(_) => self.mark_connected(),
            Err(_) => self.mark_connect_failure(),
        }
        dialled.map(Transport::Tcp)
    }

    /// A connect succeeded: the host is healthy again.
    pub fn mark_connected(&self) {
        self.fail_streak.set(0);
        self.unhealthy_until.set(None);
        self.health.borrow().up(self.index.get());
        self.count(|s| {
            s.connections.inc();
            s.connections_active.inc();
        });
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
