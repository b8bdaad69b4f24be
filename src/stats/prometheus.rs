//! The Prometheus text format (version 0.0.4) of the summed counters.
//!
//! Names follow Prometheus's conventions (`_total` on counters, seconds and
//! bytes as units) under MOSN's families: `downstream` per listener,
//! `upstream` per cluster and `upstream_host` per host, all prefixed
//! `ferrymesh_`. Hosts get families of their own so that a `sum()` over a
//! cluster family never counts a request twice.

use std::fmt::{Display, Write};

use super::counters::{CLASSES, LATENCY_BOUNDS};
use super::snapshot::Totals;
use super::{TlsStats, UpstreamStats, ERROR_LABELS};

/// The content type of the format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

struct Encoder {
    out: String,
}

impl Encoder {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP ferrymesh_{name} {help}\n# TYPE ferrymesh_{name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str("ferrymesh_");
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape(&mut self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with one sample per item of `items`.
    fn each<'a, T: 'a>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        items: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, T)>,
        value: impl Fn(T) -> u64,
    ) {
        self.family(name, kind, help);
        for (labels, item) in items {
            self.sample(name, &labels, value(item));
        }
    }
}

fn escape(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Renders everything.
pub fn render(t: &Totals) -> String {
    let mut e = Encoder { out: String::with_capacity(16 << 10) };
    let c = &t.control;
    e.family("config_version", "gauge", "Version of the configuration serving now (1 is the one started with).");
    e.sample("config_version", &[], c.version);
    e.family("config_generations_total", "counter", "Configuration changes, by result.");
    e.sample("config_generations_total", &[("result", "applied")], c.applied);
    e.sample("config_generations_total", &[("result", "refused")], c.refused);
    e.family("workers", "gauge", "Worker threads.");
    e.sample("workers", &[], c.workers);
    e.family("uptime_seconds", "gauge", "Seconds since the process started.");
    e.sample("uptime_seconds", &[], format_args!("{:.3}", c.uptime_seconds));

    let w = &t.worker;
    e.each(
        "requests_total",
        "counter",
        "Downstream requests, by protocol.",
        super::protocols().iter().zip(&w.requests_by_protocol).map(|(p, n)| (vec![("protocol", *p)], n)),
        |n| n.get(),
    );
    e.each(
        "proxy_errors_total",
        "counter",
        "Requests ferrymesh answered with an error of its own, by reason.",
        ERROR_LABELS.iter().zip(&w.proxy_errors).map(|(r, n)| (vec![("reason", *r)], n)),
        |n| n.get(),
    );
    e.family("oneway_requests_total", "counter", "Oneway RPC requests (no answer expected).");
    e.sample("oneway_requests_total", &[], w.oneway_requests.get());
    e.family("heartbeats_answered_total", "counter", "RPC heartbeats answered by ferrymesh.");
    e.sample("heartbeats_answered_total", &[], w.heartbeats_answered.get());
    e.family("codec_errors_total", "counter", "Client connections closed for a malformed frame.");
    e.sample("codec_errors_total", &[], w.codec_errors.get());
    e.family("unknown_protocol_total", "counter", "Client connections whose protocol was not recognised.");
    e.sample("unknown_protocol_total", &[], w.unknown_protocol.get());
    e.family("busy_polls_total", "counter", "Times a worker polled for events instead of sleeping (busy_poll).");
    e.sample("busy_polls_total", &[], w.busy_polls.get());
    e.family(
        "busy_poll_seconds_total",
        "counter",
        "Time workers spent polling for events without finding any (busy_poll): the price of the window.",
    );
    e.sample("busy_poll_seconds_total", &[], format_args!("{:.6}", w.busy_poll_nanos.get() as f64 / 1e9));

    let listeners = || t.listeners.iter().map(|(n, l)| (vec![("listener", n.as_str())], l));
    e.each("downstream_connections_total", "counter", "Client connections accepted.", listeners(), |l| {
        l.connections.get()
    });
    e.each("downstream_connections_active", "gauge", "Client connections open.", listeners(), |l| {
        l.connections_active.get()
    });
    e.each(
        "downstream_connections_parked",
        "gauge",
        "Client connections open and owing nothing: they hold only their socket.",
        listeners(),
        |l| l.connections_parked.get(),
    );
    e.each(
        "downstream_connection_resumes_total",
        "counter",
        "Parked client connections woken by bytes or a close.",
        listeners(),
        |l| l.connection_resumes.get(),
    );
    e.each("downstream_received_bytes_total", "counter", "Bytes read from clients.", listeners(), |l| {
        l.bytes_received.get()
    });
    e.each("downstream_sent_bytes_total", "counter", "Bytes written to clients.", listeners(), |l| l.bytes_sent.get());
    e.each("downstream_requests_total", "counter", "Client requests.", listeners(), |l| l.requests.get());
    e.each("downstream_requests_active", "gauge", "Client requests waiting for their answer.", listeners(), |l| {
        l.requests_active.get()
    });

    let listener_tls: Vec<_> = t.listeners.iter().map(|(n, l)| (vec![("listener", n.as_str())], &l.tls)).collect();
    tls(&mut e, "downstream_tls", "clients", &listener_tls, true);

    let clusters: Vec<_> = t.clusters.iter().map(|(n, s)| (vec![("cluster", n.as_str())], s)).collect();
    upstream(&mut e, "upstream", "cluster", &clusters);
    let addrs: Vec<String> = t.hosts.keys().map(|(_, a)| a.to_string()).collect();
    let hosts: Vec<_> = t
        .hosts
        .iter()
        .zip(&addrs)
        .map(|(((cluster, _), h), addr)| (vec![("cluster", cluster.as_str()), ("host", addr.as_str())], &h.stats))
        .collect();
    upstream(&mut e, "upstream_host", "host", &hosts);
    e.family("upstream_host_healthy", "gauge", "1 when every worker counts the host healthy (passive health), else 0.");
    for (labels, ((_, h), _)) in hosts.iter().map(|(l, _)| l).zip(t.hosts.iter().zip(&addrs)) {
        e.sample("upstream_host_healthy", labels, u8::from(h.healthy_in == h.workers));
    }
    e.family("upstream_host_weight", "gauge", "The host's load-balancing weight.");
    for (labels, h) in hosts.iter().map(|(l, _)| l).zip(t.hosts.values()) {
        e.sample("upstream_host_weight", labels, h.weight);
    }
    e.out
}

/// The TLS families of listeners (`what`: clients; `inspector`: they have
/// one) or upstreams.
fn tls(e: &mut Encoder, family: &str, what: &str, items: &[(Vec<(&str, &str)>, &TlsStats)], inspector: bool) {
    let f = |suffix: &str| format!("{family}_{suffix}");
    if items
        .iter()
        .all(|(_, s)| s.handshakes.get() == 0 && s.failures.iter().all(|c| c.get() == 0) && s.plaintext.get() == 0)
    {
        return;
    }
    let each = |e: &mut Encoder, suffix: &str, help: String, value: &dyn Fn(&TlsStats) -> u64| {
        e.each(&f(suffix), "counter", &help, items.iter().map(|(l, s)| (l.clone(), *s)), value);
    };
    each(e, "handshakes_total", format!("TLS handshakes completed with {what}."), &|s| s.handshakes.get());
    each(e, "resumed_total", format!("TLS handshakes with {what} that resumed a session."), &|s| s.resumed.get());
    if inspector {
        each(
            e,
            "plaintext_total",
            format!("Connections with {what} the TLS inspector let through as plaintext."),
            &|s| s.plaintext.get(),
        );
    }
    let name = f("handshake_failures_total");
    e.family(&name, "counter", &format!("TLS handshakes with {what} that failed, by reason."));
    for (labels, s) in items {
        for (reason, n) in crate::tls::failure::REASONS.iter().zip(&s.failures) {
            if n.get() > 0 {
                let mut l = labels.clone();
                l.push(("reason", reason));
                e.sample(&name, &l, n.get());
            }
        }
    }
}

/// The upstream families, per cluster or per host (`what`).
fn upstream(e: &mut Encoder, family: &str, what: &str, items: &[(Vec<(&str, &str)>, &UpstreamStats)]) {
    let f = |suffix: &str| format!("{family}_{suffix}");
    let each = |e: &mut Encoder, suffix: &str, kind: &str, help: String, value: &dyn Fn(&UpstreamStats) -> u64| {
        e.each(&f(suffix), kind, &help, items.iter().map(|(l, s)| (l.clone(), *s)), value);
    };
    each(e, "requests_total", "counter", format!("Requests sent to the {what} (each try counts)."), &|s| {
        s.requests.get()
    });
    each(e, "requests_active", "gauge", format!("Requests in flight to the {what}."), &|s| s.active.get());
    each(e, "request_timeouts_total", "counter", format!("Requests to the {what} that timed out."), &|s| {
        s.failures[4].get()
    });
    each(e, "retries_total", "counter", format!("Tries after the first sent to the {what}."), &|s| s.retries.get());
    each(e, "connections_total", "counter", format!("Connections opened to the {what}."), &|s| s.connections.get());
    each(e, "connections_active", "gauge", format!("Connections open to the {what}."), &|s| s.connections_active.get());
    each(e, "connect_failures_total", "counter", format!("Failed connects to the {what}."), &|s| {
        s.connect_failures.get()
    });
    each(e, "sent_bytes_total", "counter", format!("Bytes written to the {what}."), &|s| s.bytes_sent.get());
    each(e, "received_bytes_total", "counter", format!("Bytes read from the {what}."), &|s| s.bytes_received.get());

    let with_tls: Vec<_> = items.iter().map(|(l, s)| (l.clone(), &s.tls)).collect();
    tls(e, &f("tls"), &format!("the {what}"), &with_tls, false);
    let name = f("responses_total");
    e.family(&name, "counter", &format!("Responses from the {what}, by class."));
    for (labels, s) in items {
        for (class, n) in CLASSES.iter().zip(&s.responses) {
            let mut l = labels.clone();
            l.push(("class", class));
            e.sample(&name, &l, n.get());
        }
    }
    let name = f("request_failures_total");
    e.family(&name, "counter", &format!("Requests to the {what} that failed, by reason."));
    for (labels, s) in items {
        for (reason, n) in ERROR_LABELS.iter().zip(&s.failures) {
            if n.get() > 0 || matches!(*reason, "timeout" | "upstream_reset" | "connect_failed") {
                let mut l = labels.clone();
                l.push(("reason", reason));
                e.sample(&name, &l, n.get());
            }
        }
    }
    let name = f("request_duration_seconds");
    e.family(&name, "histogram", &format!("Time from sending a request to the {what} to its response."));
    let bounds: Vec<String> = LATENCY_BOUNDS.iter().map(|b| b.to_string()).collect();
    for (labels, s) in items {
        let buckets = s.latency.buckets();
        let mut cumulative = 0;
        let bucket = format!("{name}_bucket");
        for (i, n) in buckets.iter().enumerate() {
            cumulative += n;
            let le = bounds.get(i).map_or("+Inf", String::as_str);
            let mut l = labels.clone();
            l.push(("le", le));
            e.sample(&bucket, &l, cumulative);
        }
        e.sample(&format!("{name}_sum"), labels, format_args!("{:.6}", s.latency.sum_us() as f64 / 1e6));
        e.sample(&format!("{name}_count"), labels, cumulative);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::snapshot::{HostSnapshot, Snapshot};
    use std::time::Duration;

    #[test]
    fn workers_sum_and_the_text_is_prometheus_format() {
        let mut totals = Totals::default();
        for _ in 0..2 {
            let mut s = Snapshot::default();
            s.worker.count_request(0);
            let c = UpstreamStats::default();
            c.requests.inc();
            c.response(200, Duration::from_micros(300));
            s.clusters.push(("svc \"a\"".into(), c));
            let h = UpstreamStats::default();
            h.response(503, Duration::from_secs(2));
            s.hosts.push(HostSnapshot {
                cluster: "svc".into(),
                addr: "127.0.0.1:1".parse().unwrap(),
                weight: 3,
                healthy: true,
                stats: h,
            });
            totals.add(&s);
        }
        let text = render(&totals);
        assert!(text.contains("ferrymesh_requests_total{protocol=\"bolt\"} 2\n"), "{text}");
        assert!(text.contains("ferrymesh_upstream_requests_total{cluster=\"svc \\\"a\\\"\"} 2\n"), "{text}");
        assert!(text.contains(
            "ferrymesh_upstream_request_duration_seconds_bucket{cluster=\"svc \\\"a\\\"\",le=\"0.00025\"} 0\n"
        ));
        assert!(text.contains(
            "ferrymesh_upstream_request_duration_seconds_bucket{cluster=\"svc \\\"a\\\"\",le=\"0.0005\"} 2\n"
        ));
        assert!(text.contains("ferrymesh_upstream_request_duration_seconds_count{cluster=\"svc \\\"a\\\"\"} 2\n"));
        assert!(text.contains(
            "ferrymesh_upstream_host_responses_total{cluster=\"svc\",host=\"127.0.0.1:1\",class=\"5xx\"} 2\n"
        ));
        assert!(text.contains("ferrymesh_upstream_host_request_duration_seconds_bucket{cluster=\"svc\",host=\"127.0.0.1:1\",le=\"+Inf\"} 2\n"));
        assert!(text.contains("ferrymesh_upstream_host_healthy{cluster=\"svc\",host=\"127.0.0.1:1\"} 1\n"));
        // Every sample line is `name{labels} value` under a TYPE line.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            let family = name.split('{').next().unwrap();
            let base = family.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
            assert!(
                text.contains(&format!("# TYPE {family} ")) || text.contains(&format!("# TYPE {base} histogram")),
                "{line}"
            );
        }
    }
}
