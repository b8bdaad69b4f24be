//! The tries of one request under its route's retry policy: how many, the
//! pause before each retry (the policy's backoff, never past the deadline),
//! and the host of each (another one while an untried host is left). Both
//! HTTP paths, hyper's and the HTTP/1.1 pass-through, drive their loops with
//! it; what counts as retryable stays with them.

use smallvec::SmallVec;
use tokio::time::Instant;

use crate::network::clock;
use crate::router::{RetryPolicy, RouteEntry};
use crate::upstream::Cluster;

pub struct Tries<'a> {
    cluster: &'a Cluster,
    hash_key: Option<&'a [u8]>,
    pub policy: &'a RetryPolicy,
    max: u32,
    /// The hosts tried, in order: inline for the usual few (no allocation
    /// per request).
    tried: SmallVec<[usize; 4]>,
    /// Tries the upstream refused unprocessed and that were given back.
    refused: u32,
    deadline: Instant,
}

/// How many refused tries ([`Tries::refused`]) one request gets back.
const MAX_REFUSED: u32 = 8;

/// What the next try is.
pub enum Next {
    /// Send to this host of the cluster.
    Host(usize),
    /// The cluster has no host to try at all.
    NoHost,
    /// No try is left (count or deadline).
    Over,
}

impl<'a> Tries<'a> {
    pub fn new(entry: &'a RouteEntry, cluster: &'a Cluster, hash_key: Option<&'a [u8]>, deadline: Instant) -> Self {
        let policy = &entry.retry;
        // Without a retry policy a failed connect is still tried elsewhere (`connect_retries`).
        let max = 1 + policy.num_retries.max(if policy.on.is_empty() { entry.connect_retries } else { 0 });
        Tries { cluster, hash_key, policy, max, tried: SmallVec::new(), refused: 0, deadline }
    }

    /// Waits out the backoff before a retry, then picks the next host.
    pub async fn next(&mut self) -> Next {
        let attempt = self.tried.len() as u32;
        if attempt >= self.max {
            return Next::Over;
        }
        // Refused tries do not count, but are paused for like retries, so
        // that an upstream shedding load is not sent everything again at once.
        let paused = attempt + self.refused;
        if paused > 0 {
            let pause = self.policy.backoff(paused);
            if Instant::now() + pause >= self.deadline {
                return Next::Over;
            }
            tokio::time::sleep(pause).await;
        }
        let host = self.cluster.choose(self.hash_key, &self.tried).or_else(|| {
            // Every host tried: try one again rather than give up early.
            (!self.tried.is_empty()).then(|| self.cluster.choose(self.hash_key, &[])).flatten()
        });
        match host {
            Some(h) => {
                if attempt + self.refused > 0 {
                    self.cluster.hosts[h].count(|s| s.retries.inc());
                }
                self.tried.push(h);
                Next::Host(h)
            }
            None if self.tried.is_empty() => Next::NoHost,
            None => Next::Over,
        }
    }

    /// The current try was refused unprocessed (an HTTP/2 upstream's
    /// GOAWAY or `REFUSED_STREAM`): it does not count as a try, so the
    /// request goes again, after the backoff, even without a retry policy,
    /// up to [`MAX_REFUSED`] times. Whether it was given back.
    pub fn refused(&mut self) -> bool {
        if self.refused >= MAX_REFUSED || self.tried.pop().is_none() {
            return false;
        }
        self.refused += 1;
        true
    }

    /// Whether another try may follow the current one.
    pub fn more_left(&self) -> bool {
        (self.tried.len() as u32) < self.max
    }

    /// When the current try gives up: the per-try timeout, within the request's deadline.
    pub fn try_deadline(&self) -> Instant {
        self.policy.per_try_timeout.map_or(self.deadline, |t| self.deadline.min(clock::now() + t))
    }

    /// Whether a try that timed out leaves time for another (a per-try
    /// timeout passed, not the request's).
    pub fn timed_out_per_try(&self) -> bool {
        self.policy.per_try_timeout.is_some() && Instant::now() < self.deadline
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{ClusterSpec, HostSpec, KeepaliveSpec, DEFAULT_MAX_FRAME};
    use crate::upstream::lb::LbKind;

    fn one_host_cluster() -> Cluster {
        let spec = ClusterSpec {
            name: "c".into(),
            lb: LbKind::RoundRobin,
            hosts: vec![HostSpec { addr: "127.0.0.1:1".parse().unwrap(), weight: 1, tls_disable: false }],
            connect_timeout: Duration::from_secs(1),
            max_request_per_conn: 0,
            connections_per_host: 1,
            keepalive: KeepaliveSpec::default(),
            idle_timeout: None,
            max_frame: DEFAULT_MAX_FRAME,
            tls: None,
        };
        Cluster::new(&spec)
    }

    /// A refused try is given back (the one host again, after a backoff
    /// pause), up to MAX_REFUSED times; a request without a retry policy
    /// still gets a single counted try.
    #[tokio::test(start_paused = true)]
    async fn refused_tries_are_given_back_a_bounded_number_of_times() {
        let cluster = one_host_cluster();
        let entry = RouteEntry::to_cluster(0);
        let mut tries = Tries::new(&entry, &cluster, None, Instant::now() + Duration::from_secs(60));
        assert!(matches!(tries.next().await, Next::Host(0)));
        assert!(!tries.more_left(), "no retry policy: one try");
        for given_back in 1..=MAX_REFUSED {
            assert!(tries.refused(), "refusal {given_back} given back");
            let t0 = Instant::now();
            assert!(matches!(tries.next().await, Next::Host(0)));
            assert!(Instant::now() - t0 <= Duration::from_millis(250), "the backoff is bounded");
        }
        assert!(!tries.refused(), "the ninth refusal is not given back");
        assert!(matches!(tries.next().await, Next::Over));
    }
}
