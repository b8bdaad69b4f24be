//! The admin server: MOSN's `/api/v1/` endpoints with MOSN's answers,
//! Envoy's where MOSN has none (`/stats/prometheus`, `/ready`, `/clusters`,
//! `/listeners`, `/server_info`), and a live dashboard.
//!
//! It runs on the control thread, beside the signals, and reaches the
//! workers only through their command queues ([`Control`]): a scrape costs
//! the workers one message each, never a lock on their request path. There
//! is no admin server without the config's `admin` block (as in MOSN), and
//! an empty address there means 127.0.0.1.

mod json;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::runtime::{logging, Control, Trigger};
use crate::stats::prometheus;

type Answer = Response<Full<Bytes>>;

/// Request bodies the admin API reads are small.
const MAX_BODY: usize = 4 << 20;

/// The paths the help page lists, MOSN's first.
const PATHS: &[&str] = &[
    "/api/v1/version",
    "/api/v1/config_dump",
    "/api/v1/stats",
    "/api/v1/stats_glob",
    "/api/v1/update_loglevel",
    "/api/v1/get_loglevel",
    "/api/v1/states",
    "/api/v1/features",
    "/api/v1/env",
    "/api/v1/reload",
    "/api/v1/update_config",
    "/stats/prometheus",
    "/ready",
    "/clusters",
    "/listeners",
    "/server_info",
    "/dashboard",
    "/dashboard/data",
];

/// Binds the admin address and serves it on the current (control) thread.
pub async fn start(addr: SocketAddr, control: Rc<Control>) -> std::io::Result<SocketAddr> {
    if !addr.ip().is_loopback() {
        warn!(%addr, "admin server on a non-loopback address, as configured: anyone who reaches it can change the configuration");
    }
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::task::spawn_local(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let control = control.clone();
            tokio::task::spawn_local(async move {
                let service = service_fn(move |req| {
                    let control = control.clone();
                    async move { Ok::<_, Infallible>(route(&control, req).await) }
                });
                if let Err(e) =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await
                {
                    debug!(%peer, error = %e, "admin connection ended with an error");
                }
            });
        }
    });
    Ok(bound)
}

async fn route(control: &Control, req: Request<Incoming>) -> Answer {
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let method = req.method().clone();
    let get = method == Method::GET || method == Method::HEAD;
    match path.as_str() {
        "/api/v1/version" => text(StatusCode::OK, format!("ferrymesh version: {}", env!("CARGO_PKG_VERSION"))),
        "/api/v1/config_dump" if get => config_dump(control, &query),
        "/api/v1/stats" if get => stats_json(control, &query).await,
        "/api/v1/stats_glob" if get => stats_glob(control).await,
        "/api/v1/update_loglevel" if method == Method::POST => update_loglevel(req).await,
        "/api/v1/get_loglevel" if get => {
            let levels: serde_json::Map<String, Value> =
                logging::current().into_iter().map(|(path, level)| (path, Value::String(level))).collect();
            json_answer(StatusCode::OK, &Value::Object(levels))
        }
        "/api/v1/states" => {
            // MOSN's stage numbers: 6 Running; ferrymesh says 7 (Closing) while it drains.
            let state = if control.draining() { 7 } else { 6 };
            text(StatusCode::OK, format!("pid={}&state={state}\n", std::process::id()))
        }
        "/api/v1/features" if get => features(&query),
        "/api/v1/env" if get => env(&query),
        "/api/v1/reload" if method == Method::POST => match control.reload(Trigger::Admin).await {
            Ok(version) => text(StatusCode::OK, format!("reloaded: version {version}\n")),
            Err(refused) => json_answer(
                StatusCode::BAD_REQUEST,
                &json!({"error": "configuration refused", "reason": refused.reason, "version": control.version()}),
            ),
        },
        "/api/v1/update_config" | "/debug/update_config" if method == Method::POST => update_config(control, req).await,
        "/stats/prometheus" | "/metrics" if get => {
            let totals = control.totals().await;
            let mut resp = Response::new(Full::new(Bytes::from(prometheus::render(&totals))));
            resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(prometheus::CONTENT_TYPE));
            resp
        }
        "/ready" => {
            if control.draining() {
                text(StatusCode::SERVICE_UNAVAILABLE, "DRAINING\n".into())
            } else {
                text(StatusCode::OK, "LIVE\n".into())
            }
        }
        "/clusters" if get => {
            json::clusters(&control.totals().await, &control.settings(), query_has(&query, "format", "json"))
        }
        "/listeners" if get => json::listeners(&control.settings(), query_has(&query, "format", "json")),
        "/server_info" if get => json_answer(StatusCode::OK, &json::server_info(control)),
        "/dashboard" if get => {
            let mut resp = Response::new(Full::new(Bytes::from_static(include_bytes!("dashboard.html"))));
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/html; charset=utf-8"));
            resp
        }
        "/dashboard/data" if get => json_answer(StatusCode::OK, &json::dashboard(control, &control.totals().await)),
        p if PATHS.contains(&p) => empty(StatusCode::METHOD_NOT_ALLOWED),
        // MOSN answers any other path with the help page.
        _ => {
            let mut body = String::from("supported APIs:\n");
            for p in PATHS {
                body.push_str(p);
                body.push('\n');
            }
            text(StatusCode::OK, body)
        }
    }
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_has(query: &[(String, String)], key: &str, value: &str) -> bool {
    query.iter().any(|(k, v)| k == key && v == value)
}

fn text(status: StatusCode, body: String) -> Answer {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

fn empty(status: StatusCode) -> Answer {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

fn json_answer(status: StatusCode, v: &Value) -> Answer {
    let body = serde_json::to_vec_pretty(v).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    resp
}

fn mosn_error(status: StatusCode, what: &str) -> Answer {
    json_answer(status, &json!({ "error": what }))
}

/// `/api/v1/config_dump`: the configuration serving now, secrets redacted.
/// No query: MOSN's whole dump; one key: that part; more: 400.
fn config_dump(control: &Control, query: &[(String, String)]) -> Answer {
    let settings = control.settings();
    let dump = json::dump(&settings.document());
    if query.len() > 1 {
        return text(StatusCode::BAD_REQUEST, "only support one parameter".into());
    }
    let Some((key, value)) = query.first() else {
        return json_answer(StatusCode::OK, &dump);
    };
    let part = match key.as_str() {
        "mosnconfig" => dump.get("mosn_config").cloned(),
        "allrouters" => dump.get("routers").cloned(),
        "allclusters" => dump.get("cluster").cloned(),
        "alllisteners" => dump.get("listener").cloned(),
        // As MOSN: a name that is not there gives an empty object.
        "router" => Some(dump.get("routers").and_then(|r| r.get(value)).cloned().unwrap_or_else(|| json!({}))),
        "cluster" => Some(dump.get("cluster").and_then(|r| r.get(value)).cloned().unwrap_or_else(|| json!({}))),
        "listener" => Some(dump.get("listener").and_then(|r| r.get(value)).cloned().unwrap_or_else(|| json!({}))),
        _ => None,
    };
    match part {
        Some(v) => json_answer(StatusCode::OK, &v),
        None => mosn_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    }
}

/// `/api/v1/stats`: MOSN's JSON, `{type: {labels: {metric: "value"}}}`;
/// `?key=<type>.<labels>` gives one object.
async fn stats_json(control: &Control, query: &[(String, String)]) -> Answer {
    if query.len() > 1 {
        return text(StatusCode::BAD_REQUEST, "only support one parameter".into());
    }
    let all = json::mosn_stats(&control.totals().await);
    match query.first() {
        None => json_answer(StatusCode::OK, &all),
        Some((k, key)) if k == "key" => {
            let found = key.split_once('.').and_then(|(kind, labels)| all.get(kind)?.get(labels));
            match found {
                Some(v) => json_answer(StatusCode::OK, v),
                None => text(StatusCode::OK, format!("no metrics key: {key}")),
            }
        }
        Some(_) => text(StatusCode::BAD_REQUEST, "unknown parameter".into()),
    }
}

/// `/api/v1/stats_glob`: the proxy-wide totals as `name:value` lines.
async fn stats_glob(control: &Control) -> Answer {
    let all = json::mosn_stats(&control.totals().await);
    let mut body = String::new();
    if let Some(global) = all.get("downstream").and_then(|d| d.get("proxy.global")).and_then(Value::as_object) {
        for (k, v) in global {
            body.push_str(&format!("{k}:{}\n", v.as_str().unwrap_or("0")));
        }
    }
    text(StatusCode::OK, body)
}

async fn body_of(req: Request<Incoming>) -> Result<Bytes, Answer> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(_) => Err(mosn_error(StatusCode::BAD_REQUEST, "cannot read the request body")),
    }
}

/// `/api/v1/update_loglevel`: `{"log_path": ..., "log_level": ...}`.
async fn update_loglevel(req: Request<Incoming>) -> Answer {
    let failed = || mosn_error(StatusCode::BAD_REQUEST, "update logger failed");
    let body = match body_of(req).await {
        Ok(b) => b,
        Err(a) => return a,
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else { return failed() };
    let Some(level) = v.get("log_level").and_then(Value::as_str).and_then(crate::parse_log_level) else {
        return failed();
    };
    let path = v.get("log_path").and_then(Value::as_str).unwrap_or("");
    let ours = logging::current().map(|(p, _)| p).unwrap_or_default();
    if !path.is_empty() && path != ours {
        return failed();
    }
    match logging::set_level(level) {
        Ok(()) => {
            info!(level = %level, "log level changed through the admin API");
            text(StatusCode::OK, "update logger success".into())
        }
        Err(_) => failed(),
    }
}

/// `/api/v1/update_config`: `{"type": "cluster"|"router"|"listener", "config": {...}}`
/// replaces (or adds, or with `"remove": true` in config removes) one
/// resource; the answer says which version serves it, or why it was refused.
async fn update_config(control: &Control, req: Request<Incoming>) -> Answer {
    let body = match body_of(req).await {
        Ok(b) => b,
        Err(a) => return a,
    };
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return json_answer(StatusCode::BAD_REQUEST, &json!({"error": "invalid request", "reason": e.to_string()}))
        }
    };
    let (Some(kind), Some(config)) = (v.get("type").and_then(Value::as_str), v.get("config")) else {
        return json_answer(
            StatusCode::BAD_REQUEST,
            &json!({"error": "invalid request", "reason": "needs \"type\" and \"config\""}),
        );
    };
    match control.update_resource(kind, config.clone()).await {
        Ok(version) => text(StatusCode::OK, format!("success: version {version}\n")),
        Err(refused) => {
            json_answer(StatusCode::BAD_REQUEST, &json!({"error": "configuration refused", "reason": refused.reason}))
        }
    }
}

/// MOSN's feature gates. ferrymesh has none of them switched on.
fn features(query: &[(String, String)]) -> Answer {
    const GATES: [(&str, bool); 4] =
        [("MultiTenantMode", false), ("PayLoadLimitEnable", false), ("XdsMtlsEnable", false), ("auto_config", false)];
    match query.iter().find(|(k, _)| k == "key") {
        Some((_, key)) => match GATES.iter().find(|(g, _)| g == key) {
            Some((_, on)) => text(StatusCode::OK, on.to_string()),
            None => text(StatusCode::OK, "false".into()),
        },
        None => json_answer(
            StatusCode::OK,
            &Value::Object(GATES.iter().map(|(g, on)| ((*g).to_string(), Value::Bool(*on))).collect()),
        ),
    }
}

/// `/api/v1/env?key=A&key=B`: those environment variables.
fn env(query: &[(String, String)]) -> Answer {
    let keys: Vec<&str> = query.iter().filter(|(k, _)| k == "key").map(|(_, v)| v.as_str()).collect();
    if keys.is_empty() {
        return mosn_error(StatusCode::BAD_REQUEST, "no env key");
    }
    let mut found = serde_json::Map::new();
    let mut missing = Vec::new();
    for k in keys {
        match std::env::var(k) {
            Ok(v) => {
                found.insert(k.to_string(), Value::String(v));
            }
            Err(_) => missing.push(Value::String(k.to_string())),
        }
    }
    json_answer(StatusCode::OK, &json!({"env": found, "not_found": missing}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode() {
        assert_eq!(parse_query("cluster=a%20b&x"), vec![("cluster".into(), "a b".into()), ("x".into(), String::new())]);
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("a+b%2Fc"), "a b/c");
    }
}
