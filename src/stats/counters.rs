//! The counters one worker keeps for a listener, a cluster or a host.
//!
//! Plain `Cell`s: a worker counts on its own thread, so a request pays an add,
//! never a lock or an atomic. A scrape asks every worker for a
//! [`snapshot`](super::snapshot) and sums them.

use std::cell::Cell;
use std::time::Duration;

use crate::error::ProxyError;

/// A count that only goes up.
#[derive(Default, Debug)]
pub struct Counter(Cell<u64>);

impl Counter {
    pub fn inc(&self) {
        self.0.set(self.0.get() + 1);
    }

    pub fn add(&self, n: u64) {
        self.0.set(self.0.get() + n);
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A count that goes up and down (connections or requests open now).
#[derive(Default, Debug)]
pub struct Gauge(Cell<u64>);

impl Gauge {
    pub fn inc(&self) {
        self.0.set(self.0.get() + 1);
    }

    pub fn dec(&self) {
        self.0.set(self.0.get().saturating_sub(1));
    }

    pub fn add(&self, n: u64) {
        self.0.set(self.0.get() + n);
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// Upper bounds of the latency histogram's buckets, in seconds (Prometheus's
/// defaults, with 100 µs and 250 µs in front: a proxy's answers are fast).
pub const LATENCY_BOUNDS: [f64; 13] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
/// The same bounds in microseconds, for the hot path's comparison.
const LATENCY_BOUNDS_US: [u64; 13] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000];

/// A latency histogram: a count per bucket (not cumulative; the last one
/// holds everything above the largest bound) and the sum.
#[derive(Default, Debug)]
pub struct Histogram {
    buckets: [Counter; LATENCY_BOUNDS.len() + 1],
    sum_us: Counter,
}

impl Histogram {
    pub fn record(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let i = LATENCY_BOUNDS_US.partition_point(|&b| b < us);
        self.buckets[i].inc();
        self.sum_us.add(us);
    }

    pub fn buckets(&self) -> [u64; LATENCY_BOUNDS.len() + 1] {
        std::array::from_fn(|i| self.buckets[i].get())
    }

    pub fn sum_us(&self) -> u64 {
        self.sum_us.get()
    }

    pub fn add_to(&self, acc: &Histogram) {
        add_all(&acc.buckets, &self.buckets);
        acc.sum_us.add(self.sum_us.get());
    }
}

fn add_all(acc: &[Counter], from: &[Counter]) {
    for (a, b) in acc.iter().zip(from) {
        a.add(b.get());
    }
}

/// The labels of [`ProxyError`], in counter order.
pub const ERROR_LABELS: [&str; 11] = [
    "no_route",
    "no_healthy_host",
    "connect_failed",
    "upstream_reset",
    "timeout",
    "overflow",
    "codec_error",
    "malformed",
    "forbidden",
    "direct_response",
    "internal",
];

/// The slot of `err` in [`ERROR_LABELS`].
pub fn error_slot(err: &ProxyError) -> usize {
    match err {
        ProxyError::NoRoute => 0,
        ProxyError::NoHealthyHost => 1,
        ProxyError::ConnectFailed(_) => 2,
        ProxyError::UpstreamReset => 3,
        ProxyError::Timeout => 4,
        ProxyError::Overflow => 5,
        ProxyError::Codec => 6,
        ProxyError::Malformed { .. } => 7,
        ProxyError::Forbidden => 8,
        ProxyError::DirectResponse { .. } => 9,
        ProxyError::Internal(_) => 10,
    }
}

/// Response classes: 1xx to 5xx by the HTTP-like status (an RPC codec maps
/// its own status to one: bolt's success is 200).
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn class_slot(status: u16) -> usize {
    usize::from(status / 100).clamp(1, 5) - 1
}

/// TLS handshakes of a listener or an upstream.
#[derive(Default, Debug)]
pub struct TlsStats {
    pub handshakes: Counter,
    /// Handshakes that resumed a session.
    pub resumed: Counter,
    /// Connections the inspector let through as plaintext.
    pub plaintext: Counter,
    pub failures: [Counter; crate::tls::failure::REASONS.len()],
}

impl TlsStats {
    pub fn failed(&self, reason: &str) {
        self.failures[crate::tls::failure::slot(reason)].inc();
    }

    pub fn add_to(&self, acc: &TlsStats) {
        acc.handshakes.add(self.handshakes.get());
        acc.resumed.add(self.resumed.get());
        acc.plaintext.add(self.plaintext.get());
        add_all(&acc.failures, &self.failures);
    }
}

/// What a worker counts for one cluster, and again for each of its hosts.
#[derive(Default, Debug)]
pub struct UpstreamStats {
    pub requests: Counter,
    pub active: Gauge,
    pub responses: [Counter; CLASSES.len()],
    pub failures: [Counter; ERROR_LABELS.len()],
    pub retries: Counter,
    pub connections: Counter,
    pub connections_active: Gauge,
    pub connect_failures: Counter,
    pub bytes_sent: Counter,
    pub bytes_received: Counter,
    pub latency: Histogram,
    pub tls: TlsStats,
}

impl UpstreamStats {
    pub fn response(&self, status: u16, took: Duration) {
        self.responses[class_slot(status)].inc();
        self.latency.record(took);
    }

    pub fn failure(&self, err: &ProxyError) {
        self.failures[error_slot(err)].inc();
    }

    /// Adds these counters into `acc`.
    pub fn add_to(&self, acc: &UpstreamStats) {
        acc.requests.add(self.requests.get());
        acc.active.add(self.active.get());
        add_all(&acc.responses, &self.responses);
        add_all(&acc.failures, &self.failures);
        acc.retries.add(self.retries.get());
        acc.connections.add(self.connections.get());
        acc.connections_active.add(self.connections_active.get());
        acc.connect_failures.add(self.connect_failures.get());
        acc.bytes_sent.add(self.bytes_sent.get());
        acc.bytes_received.add(self.bytes_received.get());
        self.latency.add_to(&acc.latency);
        self.tls.add_to(&acc.tls);
    }
}

/// What a worker counts for one listener.
#[derive(Default, Debug)]
pub struct ListenerStats {
    pub connections: Counter,
    pub connections_active: Gauge,
    /// Open connections that owe nothing and hold only their socket: read
    /// from the listener's `Parking` when a snapshot is taken.
    pub connections_parked: Gauge,
    /// Parked connections woken by bytes (or a close): how often parking
    /// pays a resume.
    pub connection_resumes: Counter,
    pub bytes_received: Counter,
    pub bytes_sent: Counter,
    pub requests: Counter,
    pub requests_active: Gauge,
    pub tls: TlsStats,
}

impl ListenerStats {
    /// Adds these counters into `acc`.
    pub fn add_to(&self, acc: &ListenerStats) {
        acc.connections.add(self.connections.get());
        acc.connections_active.add(self.connections_active.get());
        acc.connections_parked.add(self.connections_parked.get());
        acc.connection_resumes.add(self.connection_resumes.get());
        acc.bytes_received.add(self.bytes_received.get());
        acc.bytes_sent.add(self.bytes_sent.get());
        acc.requests.add(self.requests.get());
        acc.requests_active.add(self.requests_active.get());
        self.tls.add_to(&acc.tls);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_fall_in_their_bucket() {
        let h = Histogram::default();
        h.record(Duration::from_micros(100)); // on the bound: that bucket
        h.record(Duration::from_micros(101));
        h.record(Duration::from_secs(3)); // above every bound
        let b = h.buckets();
        assert_eq!(b[0], 1);
        assert_eq!(b[1], 1);
        assert_eq!(b[LATENCY_BOUNDS.len()], 1);
        assert_eq!(b.iter().sum::<u64>(), 3);
        assert_eq!(h.sum_us(), 3_000_201);
    }

    #[test]
    fn every_error_has_its_own_slot() {
        let errs = [
            ProxyError::NoRoute,
            ProxyError::NoHealthyHost,
            ProxyError::ConnectFailed(String::new()),
            ProxyError::UpstreamReset,
            ProxyError::Timeout,
            ProxyError::Overflow,
            ProxyError::Codec,
            ProxyError::Malformed { status: 400, reason: "" },
            ProxyError::Forbidden,
            ProxyError::DirectResponse { status: 200, body: String::new() },
            ProxyError::Internal(""),
        ];
        for e in &errs {
            assert_eq!(ERROR_LABELS[error_slot(e)], e.label());
        }
    }

    #[test]
    fn statuses_map_to_classes() {
        assert_eq!(CLASSES[class_slot(200)], "2xx");
        assert_eq!(CLASSES[class_slot(404)], "4xx");
        assert_eq!(CLASSES[class_slot(503)], "5xx");
        assert_eq!(CLASSES[class_slot(0)], "1xx");
        assert_eq!(CLASSES[class_slot(999)], "5xx");
    }
}
