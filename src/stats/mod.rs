//! Per-worker counters. Plain `Cell`s: each worker counts on its own thread
//! and the totals are summed when reported (at shutdown, and by the admin API
//! when it lands).

use std::cell::Cell;

use crate::error::ProxyError;

#[derive(Default, Debug)]
pub struct Stats {
    pub downstream_connections: Cell<u64>,
    pub downstream_requests: Cell<u64>,
    pub downstream_active: Cell<u64>,
    pub oneway_requests: Cell<u64>,
    pub heartbeats_answered: Cell<u64>,
    pub responses_ok: Cell<u64>,
    pub responses_error: Cell<u64>,
    pub proxy_errors: Cell<[u64; ERROR_LABELS.len()]>,
    pub codec_errors: Cell<u64>,
    pub unknown_protocol: Cell<u64>,
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

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

impl Stats {
    pub fn count_request(&self) {
        bump(&self.downstream_requests);
    }

    pub fn count_response(&self, class: u16) {
        if class == 200 {
            bump(&self.responses_ok);
        } else {
            bump(&self.responses_error);
        }
    }

    pub fn count_error(&self, err: &ProxyError) {
        let label = err.label();
        if let Some(i) = ERROR_LABELS.iter().position(|l| *l == label) {
            let mut all = self.proxy_errors.get();
            all[i] += 1;
            self.proxy_errors.set(all);
        }
    }

    /// Adds another worker's counters into this one.
    pub fn merge(&self, other: &Stats) {
        let add = |a: &Cell<u64>, b: &Cell<u64>| a.set(a.get() + b.get());
        add(&self.downstream_connections, &other.downstream_connections);
        add(&self.downstream_requests, &other.downstream_requests);
        add(&self.oneway_requests, &other.oneway_requests);
        add(&self.heartbeats_answered, &other.heartbeats_answered);
        add(&self.responses_ok, &other.responses_ok);
        add(&self.responses_error, &other.responses_error);
        add(&self.codec_errors, &other.codec_errors);
        add(&self.unknown_protocol, &other.unknown_protocol);
        let mut all = self.proxy_errors.get();
        for (a, b) in all.iter_mut().zip(other.proxy_errors.get()) {
            *a += b;
        }
        self.proxy_errors.set(all);
    }

    /// One line for the log.
    pub fn summary(&self) -> String {
        let errors: Vec<String> = ERROR_LABELS
            .iter()
            .zip(self.proxy_errors.get())
            .filter(|(_, n)| *n > 0)
            .map(|(l, n)| format!("{l}={n}"))
            .collect();
        format!(
            "connections={} requests={} oneway={} heartbeats={} upstream_ok={} upstream_error_status={} codec_errors={} unknown_protocol={} proxy_errors=[{}]",
            self.downstream_connections.get(),
            self.downstream_requests.get(),
            self.oneway_requests.get(),
            self.heartbeats_answered.get(),
            self.responses_ok.get(),
            self.responses_error.get(),
            self.codec_errors.get(),
            self.unknown_protocol.get(),
            errors.join(" ")
        )
    }
}
