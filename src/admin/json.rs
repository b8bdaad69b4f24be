//! The admin server's documents: the config dump (redacted), MOSN's stats
//! JSON, Envoy's `/clusters`, `/listeners` and `/server_info`, and the
//! dashboard's data.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Map, Value};

use super::Answer;
use crate::config::Settings;
use crate::runtime::Control;
use crate::stats::counters::{CLASSES, LATENCY_BOUNDS};
use crate::stats::snapshot::Totals;
use crate::stats::{UpstreamStats, ERROR_LABELS};

/// What replaces a secret in a dump (MOSN's marker).
pub const REDACTED: &str = "***REDACTED***";

/// Whether a field holds a secret: private keys, passwords, tokens.
fn secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["private_key", "password", "passwd", "secret", "token", "credential", "sds_secret"].iter().any(|s| k.contains(s))
        || k == "key"
}

/// `v` with every secret's value replaced by [`REDACTED`].
pub fn redact(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| {
                    let v = if secret(k) && !v.is_null() { Value::String(REDACTED.into()) } else { redact(v) };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(redact).collect()),
        other => other.clone(),
    }
}

/// MOSN's dump: `mosn_config` (the document without its listeners, routers
/// and clusters), then `listener`, `cluster` and `routers` keyed by name.
pub fn dump(document: &Value) -> Value {
    let doc = redact(document);
    let by_name = |list: Option<&Value>, key: &str| -> Map<String, Value> {
        list.and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|item| Some((item.get(key)?.as_str()?.to_string(), item.clone()))).collect())
            .unwrap_or_default()
    };
    let server = doc.get("servers").and_then(|s| s.get(0));
    let listeners = by_name(server.and_then(|s| s.get("listeners")), "name");
    let routers = by_name(server.and_then(|s| s.get("routers")), "router_config_name");
    let clusters = by_name(doc.get("cluster_manager").and_then(|c| c.get("clusters")), "name");
    let mut base = doc.clone();
    if let Some(s) = base.get_mut("servers").and_then(|s| s.get_mut(0)).and_then(Value::as_object_mut) {
        s.remove("listeners");
        s.remove("routers");
    }
    if let Some(cm) = base.get_mut("cluster_manager").and_then(Value::as_object_mut) {
        cm.remove("clusters");
    }
    json!({
        "mosn_config": base,
        "listener": listeners,
        "cluster": clusters,
        "routers": routers,
        "extends": [],
    })
}

fn upstream_object(s: &UpstreamStats) -> Map<String, Value> {
    let n = |v: u64| Value::String(v.to_string());
    let mut m = Map::new();
    m.insert("request_total".into(), n(s.requests.get()));
    m.insert("request_active".into(), n(s.active.get()));
    m.insert("request_timeout".into(), n(s.failures[4].get()));
    m.insert("request_retry".into(), n(s.retries.get()));
    m.insert("connection_total".into(), n(s.connections.get()));
    m.insert("connection_active".into(), n(s.connections_active.get()));
    m.insert("connection_con_fail".into(), n(s.connect_failures.get()));
    m.insert("connection_bytes_write_total".into(), n(s.bytes_sent.get()));
    m.insert("connection_bytes_read_total".into(), n(s.bytes_received.get()));
    let ok: u64 = s.responses[..4].iter().map(|c| c.get()).sum();
    m.insert("response_success".into(), n(ok));
    m.insert("response_failed".into(), n(s.responses[4].get() + s.failures.iter().map(|c| c.get()).sum::<u64>()));
    for (label, c) in ERROR_LABELS.iter().zip(&s.failures) {
        if c.get() > 0 {
            m.insert(format!("request_failure_{label}"), n(c.get()));
        }
    }
    m
}

/// MOSN's `/api/v1/stats` shape: `{type: {"k.v": {metric: "value"}}}`.
pub fn mosn_stats(t: &Totals) -> Value {
    let n = |v: u64| Value::String(v.to_string());
    let w = &t.worker;
    let mut global = Map::new();
    global.insert("connection_total".into(), n(w.downstream_connections.get()));
    global.insert("request_total".into(), n(w.downstream_requests.get()));
    global.insert("request_active".into(), n(w.downstream_active.get()));
    global.insert("request_failed".into(), n(w.proxy_errors.iter().map(|c| c.get()).sum()));
    for (p, c) in crate::stats::protocols().iter().zip(&w.requests_by_protocol) {
        global.insert(format!("request_total_{p}"), n(c.get()));
    }
    for (label, c) in ERROR_LABELS.iter().zip(&w.proxy_errors) {
        global.insert(format!("request_failed_{label}"), n(c.get()));
    }
    let mut downstream = Map::new();
    downstream.insert("proxy.global".into(), Value::Object(global));
    for (name, l) in &t.listeners {
        let mut m = Map::new();
        m.insert("connection_total".into(), n(l.connections.get()));
        m.insert("connection_active".into(), n(l.connections_active.get()));
        m.insert("connection_parked".into(), n(l.connections_parked.get()));
        m.insert("connection_resumes".into(), n(l.connection_resumes.get()));
        m.insert("bytes_read_total".into(), n(l.bytes_received.get()));
        m.insert("bytes_write_total".into(), n(l.bytes_sent.get()));
        m.insert("request_total".into(), n(l.requests.get()));
        m.insert("request_active".into(), n(l.requests_active.get()));
        downstream.insert(format!("listener.{name}"), Value::Object(m));
    }
    let mut upstream = Map::new();
    for (name, c) in &t.clusters {
        upstream.insert(format!("cluster.{name}"), Value::Object(upstream_object(c)));
    }
    for ((cluster, addr), h) in &t.hosts {
        upstream.insert(format!("cluster.{cluster}.host.{addr}"), Value::Object(upstream_object(&h.stats)));
    }
    json!({ "downstream": downstream, "upstream": upstream })
}

fn answer(body: String, json: bool) -> Answer {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::OK;
    let ct = if json { "application/json" } else { "text/plain; charset=utf-8" };
    resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(ct));
    resp
}

/// Envoy's `/clusters`: `cluster::host::stat::value` lines, or JSON.
pub fn clusters(t: &Totals, settings: &Settings, as_json: bool) -> Answer {
    if as_json {
        let statuses: Vec<Value> = settings
            .clusters
            .iter()
            .map(|c| {
                let hosts: Vec<Value> = c
                    .hosts
                    .iter()
                    .filter_map(|spec| Some((spec.addr, t.hosts.get(&(c.name.clone(), spec.addr))?)))
                    .map(|(addr, h)| {
                        let stats = upstream_object(&h.stats);
                        json!({
                            "address": {"socket_address": {"address": addr.ip().to_string(), "port_value": addr.port()}},
                            "weight": h.weight,
                            "health_status": {"eds_health_status": if h.healthy_in == h.workers { "HEALTHY" } else { "UNHEALTHY" },
                                              "failed_passive_health_check": h.healthy_in < h.workers},
                            "stats": stats,
                        })
                    })
                    .collect();
                json!({"name": c.name, "lb_type": c.lb.mosn_name(), "host_statuses": hosts})
            })
            .collect();
        return answer(
            serde_json::to_string_pretty(&json!({ "cluster_statuses": statuses })).unwrap_or_default(),
            true,
        );
    }
    let mut out = String::new();
    for c in &settings.clusters {
        out.push_str(&format!(
            "{}::default_priority::max_requests_per_connection::{}\n",
            c.name, c.max_request_per_conn
        ));
        out.push_str(&format!("{}::lb_type::{}\n", c.name, c.lb.mosn_name()));
    }
    for ((cluster, addr), h) in &t.hosts {
        let s = &h.stats;
        let p = format!("{cluster}::{addr}");
        let flags = if h.healthy_in == h.workers { "healthy" } else { "/failed_passive_health_check" };
        let failed: u64 = s.failures.iter().map(|c| c.get()).sum::<u64>() + s.responses[4].get();
        let success: u64 = s.responses[..4].iter().map(|c| c.get()).sum();
        for (k, v) in [
            ("cx_total", s.connections.get()),
            ("cx_active", s.connections_active.get()),
            ("cx_connect_fail", s.connect_failures.get()),
            ("rq_total", s.requests.get()),
            ("rq_active", s.active.get()),
            ("rq_success", success),
            ("rq_error", failed),
            ("rq_timeout", s.failures[4].get()),
        ] {
            out.push_str(&format!("{p}::{k}::{v}\n"));
        }
        out.push_str(&format!("{p}::weight::{}\n{p}::health_flags::{flags}\n", h.weight));
    }
    answer(out, false)
}

/// Envoy's `/listeners`: `name::address` lines, or JSON.
pub fn listeners(settings: &Settings, as_json: bool) -> Answer {
    if as_json {
        let list: Vec<Value> = settings
            .listeners
            .iter()
            .map(|l| {
                json!({
                    "name": l.name,
                    "local_address": {"socket_address": {"address": l.addr.ip().to_string(), "port_value": l.addr.port()}},
                    "protocol": l.downstream.describe(),
                })
            })
            .collect();
        return answer(serde_json::to_string_pretty(&json!({ "listener_statuses": list })).unwrap_or_default(), true);
    }
    answer(settings.listeners.iter().map(|l| format!("{}::{}\n", l.name, l.addr)).collect(), false)
}

/// Envoy's `/server_info`, in ferrymesh's terms.
pub fn server_info(control: &Control) -> Value {
    let o = &control.options;
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "state": if control.draining() { "DRAINING" } else { "LIVE" },
        "uptime_current_epoch": format!("{}s", control.uptime().as_secs()),
        "config_version": control.version(),
        "command_line_options": {
            "config_path": o.path.display().to_string(),
            "concurrency": o.workers,
            "drain_time": format!("{}s", o.drain_timeout.as_secs_f64()),
            "watch": o.watch,
        },
    })
}

/// The dashboard's data (`/dashboard/data`).
pub fn dashboard(control: &Control, t: &Totals) -> Value {
    let settings = control.settings();
    let w = &t.worker;
    let ferrymesh_errors: u64 = w.proxy_errors.iter().map(|c| c.get()).sum();
    let upstream_5xx: u64 = t.clusters.values().map(|c| c.responses[4].get()).sum();
    let mut buckets = [0u64; LATENCY_BOUNDS.len() + 1];
    for c in t.clusters.values() {
        for (a, b) in buckets.iter_mut().zip(c.latency.buckets()) {
            *a += b;
        }
    }
    let listeners: Vec<Value> = settings
        .listeners
        .iter()
        .map(|l| {
            let s = t.listeners.get(&l.name);
            json!({
                "name": l.name,
                "address": l.addr.to_string(),
                "protocol": l.downstream.describe(),
                "connections_active": s.map_or(0, |s| s.connections_active.get()),
                "requests_total": s.map_or(0, |s| s.requests.get()),
            })
        })
        .collect();
    let failures = |s: &UpstreamStats| s.failures.iter().map(|c| c.get()).sum::<u64>() + s.responses[4].get();
    let clusters: Vec<Value> = settings
        .clusters
        .iter()
        .map(|c| {
            let s = t.clusters.get(&c.name);
            let hosts: Vec<Value> = c
                .hosts
                .iter()
                .filter_map(|spec| Some((spec.addr, t.hosts.get(&(c.name.clone(), spec.addr))?)))
                .map(|(addr, h)| {
                    json!({
                        "address": addr.to_string(),
                        "weight": h.weight,
                        "healthy": h.healthy_in == h.workers,
                        "requests_total": h.stats.requests.get(),
                        "requests_active": h.stats.active.get(),
                        "failures_total": failures(&h.stats),
                        "connections_active": h.stats.connections_active.get(),
                    })
                })
                .collect();
            json!({
                "name": c.name,
                "lb": c.lb.mosn_name(),
                "requests_total": s.map_or(0, |s| s.requests.get()),
                "requests_active": s.map_or(0, |s| s.active.get()),
                "failures_total": s.map_or(0, failures),
                "responses": s.map(|s| CLASSES.iter().zip(&s.responses).map(|(k, v)| ((*k).to_string(), json!(v.get()))).collect::<Map<_, _>>()),
                "hosts": hosts,
            })
        })
        .collect();
    json!({
        "ferrymesh_version": env!("CARGO_PKG_VERSION"),
        "config_version": control.version(),
        "uptime_seconds": control.uptime().as_secs_f64(),
        "state": if control.draining() { "DRAINING" } else { "LIVE" },
        "requests_total": w.downstream_requests.get(),
        "errors_total": ferrymesh_errors + upstream_5xx,
        "latency_bounds_seconds": LATENCY_BOUNDS,
        "latency_buckets": buckets,
        "listeners": listeners,
        "clusters": clusters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_wherever_they_are() {
        let doc = json!({
            "servers": [{"listeners": [{"name": "l", "filter_chains": [{"tls_context": {"private_key": "-----BEGIN", "cert_chain": "pub"}}]}]}],
            "cluster_manager": {"clusters": [{"name": "c", "tls_context": {"private_key": "k2"}, "metadata": {"password": "p", "api_token": "t"}}]},
        });
        let dump = dump(&doc);
        let text = dump.to_string();
        for secret in ["-----BEGIN", "k2", "\"p\"", "\"t\""] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert!(text.contains("\"cert_chain\":\"pub\""), "non-secrets stay");
        assert_eq!(dump["listener"]["l"]["filter_chains"][0]["tls_context"]["private_key"], REDACTED);
        assert_eq!(dump["cluster"]["c"]["metadata"]["password"], REDACTED);
        assert!(dump["mosn_config"]["servers"][0].get("listeners").is_none());
    }
}
