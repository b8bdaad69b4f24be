//! Metrics: what each worker counts, and how a scrape sums it.
//!
//! Every worker owns its counters ([`counters`]): plain `Cell`s bumped on its
//! own thread, so the request path takes no lock and touches no shared cache
//! line. A scrape (the admin server) sends each worker a message; the worker
//! answers with a [`Snapshot`](snapshot::Snapshot) of its counters, and the
//! admin thread sums them and renders them ([`prometheus`]).

pub mod counters;
pub mod prometheus;
pub mod snapshot;

pub use counters::{Counter, Gauge, Histogram, ListenerStats, TlsStats, UpstreamStats, ERROR_LABELS};

use crate::error::ProxyError;

/// Room for per-protocol counters: every registered codec, HTTP's three,
/// and "other".
pub const MAX_PROTOCOLS: usize = 16;

/// Protocol names as the metrics label them: the registered RPC codecs, then
/// `http1`, `http2`, `grpc`; the last slot, "other", takes the rest.
pub fn protocols() -> &'static [&'static str] {
    static NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names: Vec<&'static str> = crate::protocol::registry::names();
        names.truncate(MAX_PROTOCOLS - 4);
        names.extend(["http1", "http2", "grpc", "other"]);
        names
    })
}

/// The slots of `http1`, `http2` and `grpc`, looked up once (HTTP requests
/// count under them per request).
pub fn http_slots() -> [usize; 3] {
    static SLOTS: std::sync::OnceLock<[usize; 3]> = std::sync::OnceLock::new();
    *SLOTS.get_or_init(|| [protocol_slot("http1"), protocol_slot("http2"), protocol_slot("grpc")])
}

/// The slot of a protocol name (a codec's or [`Protocol::name`]'s) in [`protocols`].
///
/// [`Protocol::name`]: crate::protocol::Protocol::name
pub fn protocol_slot(name: &str) -> usize {
    let names = protocols();
    names.iter().position(|p| p.eq_ignore_ascii_case(name)).unwrap_or(names.len() - 1)
}

/// What one worker counts for the whole proxy.
#[derive(Default, Debug)]
pub struct Stats {
    pub downstream_connections: Counter,
    pub downstream_requests: Counter,
    pub downstream_active: Gauge,
    pub requests_by_protocol: [Counter; MAX_PROTOCOLS],
    pub oneway_requests: Counter,
    pub heartbeats_answered: Counter,
    pub responses_ok: Counter,
    pub responses_error: Counter,
    /// Requests answered with an error of ferrymesh's own, by reason.
    pub proxy_errors: [Counter; ERROR_LABELS.len()],
    pub codec_errors: Counter,
    pub unknown_protocol: Counter,
    /// Times a worker polled for events instead of sleeping (`busy_poll`).
    /// The runtime's park hook counts them in a thread-local of its own
    /// (`runtime::busy_poll::spins`), which a snapshot copies in here; a
    /// worker's live `Stats` leaves it at zero.
    pub busy_polls: Counter,
    /// Nanoseconds a worker spent in those polls without finding input
    /// (`runtime::busy_poll::spun`, copied like `busy_polls`).
    pub busy_poll_nanos: Counter,
}

impl Stats {
    /// A request arrived, in the protocol of `slot` ([`protocol_slot`]).
    pub fn count_request(&self, slot: usize) {
        self.downstream_requests.inc();
        self.requests_by_protocol[slot].inc();
    }

    pub fn count_response(&self, class: u16) {
        if class == 200 {
            self.responses_ok.inc();
        } else {
            self.responses_error.inc();
        }
    }

    pub fn count_error(&self, err: &ProxyError) {
        self.proxy_errors[counters::error_slot(err)].inc();
    }

    /// Adds these counters into `acc`.
    pub fn add_to(&self, acc: &Stats) {
        acc.downstream_connections.add(self.downstream_connections.get());
        acc.downstream_requests.add(self.downstream_requests.get());
        acc.downstream_active.add(self.downstream_active.get());
        acc.oneway_requests.add(self.oneway_requests.get());
        acc.heartbeats_answered.add(self.heartbeats_answered.get());
        acc.responses_ok.add(self.responses_ok.get());
        acc.responses_error.add(self.responses_error.get());
        acc.codec_errors.add(self.codec_errors.get());
        acc.unknown_protocol.add(self.unknown_protocol.get());
        acc.busy_polls.add(self.busy_polls.get());
        acc.busy_poll_nanos.add(self.busy_poll_nanos.get());
        for (a, b) in acc.requests_by_protocol.iter().zip(&self.requests_by_protocol) {
            a.add(b.get());
        }
        for (a, b) in acc.proxy_errors.iter().zip(&self.proxy_errors) {
            a.add(b.get());
        }
    }

    /// One line for the log.
    pub fn summary(&self) -> String {
        let errors: Vec<String> = ERROR_LABELS
            .iter()
            .zip(&self.proxy_errors)
            .filter(|(_, n)| n.get() > 0)
            .map(|(l, n)| format!("{l}={}", n.get()))
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
