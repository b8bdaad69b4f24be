//! HTTP through ferrymesh, end to end over real sockets: routing, rewrites,
//! header handling, errors (HTTP and gRPC forms), retries, streaming bodies,
//! trailers, HTTP/1.1 ⇄ HTTP/2, upgrades, limits and a smuggling table.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use support::http::*;
use support::{free_port, BlackHole, DeadHost, Proxy};

/// A config with one HTTP listener (`downstream`, `upstream` protocols).
fn http_config(port: u16, downstream: &str, upstream: &str, vhosts: Value, clusters: Vec<Value>) -> Value {
    json!({
        "servers": [{
            "default_log_level": "WARN",
            "routers": [{"router_config_name": "web", "virtual_hosts": vhosts}],
            "listeners": [{
                "name": "http", "address": format!("127.0.0.1:{port}"), "bind_port": true,
                "filter_chains": [{"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": downstream, "upstream_protocol": upstream, "router_config_name": "web",
                    "header_read_timeout": "500ms"
                }}]}]
            }]
        }],
        "cluster_manager": {"clusters": clusters}
    })
}

fn cluster(name: &str, hosts: &[SocketAddr]) -> Value {
    json!({"name": name, "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "connect_timeout": "500ms",
           "hosts": hosts.iter().map(|h| json!({"address": h.to_string()})).collect::<Vec<_>>()})
}

fn all_to(cluster: &str) -> Value {
    json!([{"name": "all", "domains": ["*"], "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": cluster}}]}])
}

struct Resp {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
    trailers: Option<http::HeaderMap>,
}

/// A new HTTP/2 (prior knowledge) client connection to `addr`, and the task
/// driving it, which ends when the connection does.
async fn h2_client<B>(
    addr: SocketAddr,
) -> (hyper::client::conn::http2::SendRequest<B>, tokio::task::JoinHandle<hyper::Result<()>>)
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let (s, c) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .max_header_list_size(1 << 20)
        .handshake(io)
        .await
        .unwrap();
    (s, tokio::spawn(c))
}

/// A request body sent as `count` frames of `chunk`, `gap` apart.
fn streamed(chunk: Bytes, count: usize, gap: Duration) -> http_body_util::combinators::BoxBody<Bytes, std::io::Error> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::io::Error>>(4);
    tokio::spawn(async move {
        for _ in 0..count {
            if tx.send(Ok(hyper::body::Frame::data(chunk.clone()))).await.is_err() {
                return;
            }
            if !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
        }
    });
    http_body_util::StreamBody::new(tokio_stream_from(rx)).boxed()
}

/// Sends one request over a new connection (HTTP/2 prior knowledge if `h2`).
async fn send(addr: SocketAddr, h2: bool, req: Request<Full<Bytes>>) -> Resp {
    let resp = if h2 {
        let (mut s, _) = h2_client(addr).await;
        s.send_request(req).await.unwrap()
    } else {
        let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        let (mut s, c) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(c);
        s.send_request(req).await.unwrap()
    };
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    Resp { status: parts.status, headers: parts.headers, body: collected.to_bytes(), trailers }
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path).header("host", "example.com").body(Full::new(Bytes::new())).unwrap()
}

/// An HTTP/2 request: the authority, not the socket's address, is what
/// ferrymesh routes on.
fn get_h2(path: &str) -> Request<Full<Bytes>> {
    Request::get(format!("http://example.com{path}")).body(Full::new(Bytes::new())).unwrap()
}

fn server_of(r: &Resp) -> String {
    r.headers.get("x-server").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

#[tokio::test]
async fn routes_on_domain_path_method_headers_and_query() {
    let names = ["exact", "prefix", "regex", "method", "header", "regexhdr", "present", "query", "wild", "dflt"];
    let mut ups = Vec::new();
    for n in names {
        ups.push(HttpUpstream::start(n, false).await);
    }
    let clusters: Vec<Value> = names.iter().zip(&ups).map(|(n, u)| cluster(n, &[u.addr])).collect();
    let route = |m: Value, c: &str| json!({"match": m, "route": {"cluster_name": c}});
    let vhosts = json!([
        {"name": "api", "domains": ["api.example.com"], "routers": [
            route(json!({"path": "/exact"}), "exact"),
            route(json!({"regex": "/items/[0-9]+"}), "regex"),
            route(json!({"prefix": "/", "headers": [{"name": ":method", "value": "DELETE"}]}), "method"),
            route(json!({"prefix": "/", "headers": [{"name": "x-tenant", "value": "blue"}]}), "header"),
            route(json!({"prefix": "/", "headers": [{"name": "x-tenant", "value": "gr(e|a)y", "regex": true}]}), "regexhdr"),
            route(json!({"prefix": "/", "headers": [{"name": "x-debug", "present": true}]}), "present"),
            route(json!({"prefix": "/", "query_parameters": [{"name": "v", "value": "2"}]}), "query"),
            route(json!({"prefix": "/p"}), "prefix")
        ]},
        {"name": "wild", "domains": ["*.example.com"], "routers": [route(json!({"prefix": "/"}), "wild")]},
        {"name": "any", "domains": ["*"], "routers": [route(json!({"prefix": "/"}), "dflt")]}
    ]);
    let port = free_port();
    let proxy = Proxy::start(&http_config(port, "Http1", "Http1", vhosts, clusters), 1);
    let req = |method: &str, path: &str, host: &str, hdrs: &[(&str, &str)]| {
        let mut b = Request::builder().method(method).uri(path).header("host", host);
        for (k, v) in hdrs {
            b = b.header(*k, *v);
        }
        b.body(Full::new(Bytes::new())).unwrap()
    };
    let cases = [
        (req("GET", "/exact", "api.example.com", &[]), "exact"),
        (req("GET", "/pages/more", "api.example.com:8080", &[]), "prefix"),
        (req("GET", "/items/42", "api.example.com", &[]), "regex"),
        (req("GET", "/items/4x", "api.example.com", &[("x-tenant", "blue")]), "header"),
        (req("DELETE", "/x", "api.example.com", &[]), "method"),
        (req("GET", "/x", "api.example.com", &[("x-tenant", "gray")]), "regexhdr"),
        (req("GET", "/x", "api.example.com", &[("x-debug", "")]), "present"),
        (req("GET", "/x?a=1&v=2", "api.example.com", &[]), "query"),
        (req("GET", "/x?v=3", "api.example.com", &[]), "dflt_404"),
        (req("GET", "/", "www.example.com", &[]), "wild"),
        (req("GET", "/", "other.org", &[]), "dflt"),
    ];
    for (r, want) in cases {
        let desc = format!("{} {} host={:?}", r.method(), r.uri(), r.headers().get("host"));
        let resp = send(proxy.addr, false, r).await;
        if want == "dflt_404" {
            assert_eq!(resp.status, StatusCode::NOT_FOUND, "{desc}: no route in the api host");
        } else {
            assert_eq!((resp.status, server_of(&resp)), (StatusCode::OK, want.to_string()), "{desc}");
        }
    }
}

#[tokio::test]
async fn rewrites_header_operations_direct_and_redirect() {
    let up = HttpUpstream::start("up", false).await;
    let vhosts = json!([{"name": "all", "domains": ["*"], "routers": [
        {"match": {"prefix": "/api/"}, "route": {"cluster_name": "c", "prefix_rewrite": "/v2/", "host_rewrite": "internal.svc",
            "request_headers_to_add": [{"header": {"key": "x-added", "value": "1"}}],
            "request_headers_to_remove": ["x-secret"],
            "response_headers_to_add": [{"header": {"key": "x-resp", "value": "yes"}}],
            "response_headers_to_remove": ["x-server"]}},
        {"match": {"path": "/teapot"}, "direct_response": {"status": 418, "body": "short and stout"}},
        {"match": {"prefix": "/old"}, "redirect": {"path_redirect": "/new", "response_code": 308}},
        {"match": {"prefix": "/"}, "route": {"cluster_name": "c"}}
    ]}]);
    let port = free_port();
    let proxy = Proxy::start(&http_config(port, "Http1", "Http1", vhosts, vec![cluster("c", &[up.addr])]), 1);
    let r = Request::get("/api/users?id=7")
        .header("host", "example.com")
        .header("x-secret", "s")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send(proxy.addr, false, r).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.headers.get("x-resp").unwrap(), "yes");
    assert!(resp.headers.get("x-server").is_none(), "response header removed");
    let seen = up.seen().pop().unwrap();
    assert_eq!(seen.uri, "/v2/users?id=7");
    assert_eq!(seen.header("host"), Some("internal.svc"));
    assert_eq!(seen.header("x-added"), Some("1"));
    assert_eq!(seen.header("x-secret"), None);

    let resp = send(proxy.addr, false, get("/teapot")).await;
    assert_eq!((resp.status.as_u16(), &resp.body[..]), (418, &b"short and stout"[..]));
    let resp = send(proxy.addr, false, get("/old/page")).await;
    assert_eq!(resp.status.as_u16(), 308);
    assert_eq!(resp.headers.get("location").unwrap(), "http://example.com/new");
    assert_eq!(up.seen().len(), 1, "direct and redirect answers never reach the upstream");
}

#[tokio::test]
async fn weighted_clusters_split_http_traffic() {
    let a = HttpUpstream::start("a", false).await;
    let b = HttpUpstream::start("b", false).await;
    let vhosts = json!([{"name": "all", "domains": ["*"], "routers": [{"match": {"prefix": "/"}, "route": {"weighted_clusters": [
        {"cluster": {"name": "a", "weight": 3}}, {"cluster": {"name": "b", "weight": 1}}]}}]}]);
    let port = free_port();
    let proxy = Proxy::start(
        &http_config(port, "Http1", "Http1", vhosts, vec![cluster("a", &[a.addr]), cluster("b", &[b.addr])]),
        1,
    );
    let mut count: HashMap<String, u32> = HashMap::new();
    for _ in 0..400 {
        *count.entry(server_of(&send(proxy.addr, false, get("/")).await)).or_default() += 1;
    }
    let share = f64::from(count["a"]) / 400.0;
    assert!((0.65..0.85).contains(&share), "{count:?}");
}

#[tokio::test]
async fn proxy_headers_hop_by_hop_and_keepalive_pool() {
    let up = HttpUpstream::start("up", false).await;
    let port = free_port();
    let proxy = Proxy::start(&http_config(port, "Http1", "Http1", all_to("c"), vec![cluster("c", &[up.addr])]), 1);
    let r = Request::get("/h")
        .header("host", "example.com:8080")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("x-forwarded-for", "10.0.0.1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(proxy.addr, false, r).await.status, StatusCode::OK);
    let seen = up.seen().pop().unwrap();
    assert_eq!(seen.header("host"), Some("example.com:8080"), "Host kept");
    for hop in ["x-hop", "keep-alive", "proxy-connection"] {
        assert_eq!(seen.header(hop), None, "{hop} removed");
    }
    assert_ne!(seen.header("connection"), Some("keep-alive, x-hop"));
    assert_eq!(seen.header("x-forwarded-for"), Some("10.0.0.1, 127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    let rid = seen.header("x-request-id").unwrap();
    assert_eq!(rid.len(), 36, "generated x-request-id {rid}");
    // An incoming x-request-id is kept.
    let r =
        Request::get("/h").header("host", "e").header("x-request-id", "abc-123").body(Full::new(Bytes::new())).unwrap();
    send(proxy.addr, false, r).await;
    assert_eq!(up.seen().pop().unwrap().header("x-request-id"), Some("abc-123"));
    // Sequential requests reuse the pooled upstream connection.
    for _ in 0..20 {
        send(proxy.addr, false, get("/again")).await;
    }
    assert!(up.conns.load(std::sync::atomic::Ordering::SeqCst) <= 2, "keep-alive pool reuses connections");
}

#[tokio::test]
async fn errors_in_http_and_grpc_form() {
    let up = HttpUpstream::start("up", true).await;
    let dead_host = DeadHost::new();
    let dead = dead_host.addr();
    let vhosts = json!([{"name": "all", "domains": ["*"], "routers": [
        {"match": {"prefix": "/nohost"}, "route": {"cluster_name": "empty"}},
        {"match": {"prefix": "/dead"}, "route": {"cluster_name": "dead"}},
        {"match": {"prefix": "/slow"}, "route": {"cluster_name": "up", "timeout": "200ms"}},
        {"match": {"prefix": "/reset"}, "route": {"cluster_name": "up"}}
    ]}]);
    let clusters = vec![cluster("empty", &[]), cluster("dead", &[dead]), cluster("up", &[up.addr])];
    let port = free_port();
    let proxy = Proxy::start(&http_config(port, "Http2", "Http2", vhosts, clusters), 1);
    let cases =
        [("/none", 404, 12), ("/nohost", 503, 14), ("/dead", 502, 14), ("/slow/2000", 504, 4), ("/reset", 502, 14)];
    for (path, http_status, grpc_status) in cases {
        let t0 = Instant::now();
        let resp = send(proxy.addr, true, get_h2(path)).await;
        assert_eq!(resp.status.as_u16(), http_status, "{path}");
        if path.starts_with("/slow") {
            assert!(t0.elapsed() < Duration::from_millis(1500), "timeout answered at the route timeout");
        }
        let g = Request::post(format!("http://example.com{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
            .unwrap();
        let resp = send(proxy.addr, true, g).await;
        assert_eq!(resp.status, StatusCode::OK, "{path}: gRPC errors are trailers-only 200s");
        assert_eq!(resp.headers.get("content-type").unwrap(), "application/grpc");
        assert_eq!(resp.headers.get("grpc-status").unwrap().to_str().unwrap(), grpc_status.to_string(), "{path}");
        assert!(resp.headers.contains_key("grpc-message"));
    }
}

#[tokio::test]
async fn retries_5xx_on_another_host_and_respects_policy() {
    let bad = HttpUpstream::start("bad", false).await;
    let good = HttpUpstream::start("good", false).await;
    let dead_host = DeadHost::new();
    let dead = dead_host.addr();
    let vhosts = json!([{"name": "all", "domains": ["*"], "routers": [
        {"match": {"prefix": "/status/"}, "route": {"cluster_name": "mixed", "retry_policy": {"retry_on": "5xx", "num_retries": 2}}},
        {"match": {"prefix": "/codes/"}, "route": {"cluster_name": "bad_only", "prefix_rewrite": "/status/",
            "retry_policy": {"retry_on": "retriable-status-codes", "status_codes": [409], "num_retries": 2}}},
        {"match": {"prefix": "/slow/"}, "route": {"cluster_name": "mixed", "timeout": "3s",
            "retry_policy": {"retry_on": "5xx", "num_retries": 1, "retry_timeout": "200ms"}}},
        {"match": {"prefix": "/"}, "route": {"cluster_name": "deadfirst"}}
    ]}]);
    let mut mixed = cluster("mixed", &[bad.addr, good.addr]);
    mixed["lb_type"] = json!("LB_ROUNDROBIN");
    let clusters = vec![mixed, cluster("bad_only", &[bad.addr]), cluster("deadfirst", &[dead, good.addr])];
    let port = free_port();
    let proxy = Proxy::start(&http_config(port, "Http1", "Http1", vhosts, clusters), 1);
    // "bad" answers 503 to /status/503 and "good" too: but only the bad host is
    // tried once per request, then the other (never the same host twice).
    for _ in 0..6 {
        let resp = send(proxy.addr, false, get("/status/200")).await;
        assert_eq!(resp.status, StatusCode::OK);
    }
    let before = bad.seen().len() + good.seen().len();
    let resp = send(proxy.addr, false, get("/status/503")).await;
    assert_eq!(resp.status.as_u16(), 503, "5xx on every try is passed on");
    let tries = bad.seen().len() + good.seen().len() - before;
    assert_eq!(tries, 3, "1 try + 2 retries");
    // Listed status codes.
    let before = bad.seen().len();
    assert_eq!(send(proxy.addr, false, get("/codes/409")).await.status.as_u16(), 409);
    assert_eq!(bad.seen().len() - before, 3);
    let before = bad.seen().len();
    assert_eq!(send(proxy.addr, false, get("/codes/418")).await.status.as_u16(), 418);
    assert_eq!(bad.seen().len() - before, 1, "unlisted status is not retried");
    // Per-try timeout: a slow first try is abandoned, the retry answers.
    let t0 = Instant::now();
    let resp = send(proxy.addr, false, get("/slow/1000")).await;
    assert!(resp.status == StatusCode::OK || resp.status == StatusCode::GATEWAY_TIMEOUT);
    assert!(t0.elapsed() < Duration::from_millis(900), "per-try timeout cut the slow try");
    // Connect failures go to another host even without a policy.
    for _ in 0..4 {
        let resp = send(proxy.addr, false, get("/x")).await;
        assert_eq!((resp.status, server_of(&resp)), (StatusCode::OK, "good".to_string()));
    }
}

/// Every try of a request carries the same x-request-id: on the HTTP/1.1
/// pass-through and on hyper's HTTP/2 client, whose head is cloned per try.
#[tokio::test]
async fn every_try_carries_the_same_request_id() {
    for h2 in [false, true] {
        let a = HttpUpstream::start("a", h2).await;
        let b = HttpUpstream::start("b", h2).await;
        let vhosts = json!([{"name": "all", "domains": ["*"], "routers": [{"match": {"prefix": "/"},
            "route": {"cluster_name": "c", "retry_policy": {"retry_on": "5xx", "num_retries": 2}}}]}]);
        let port = free_port();
        let upstream = if h2 { "Http2" } else { "Http1" };
        let proxy =
            Proxy::start(&http_config(port, "Http1", upstream, vhosts, vec![cluster("c", &[a.addr, b.addr])]), 1);
        let resp = send(proxy.addr, false, get("/status/503")).await;
        assert_eq!(resp.status.as_u16(), 503, "h2 upstream: {h2}");
        let ids: Vec<String> = a
            .seen()
            .iter()
            .chain(b.seen().iter())
            .filter_map(|r| r.header("x-request-id").map(str::to_string))
            .collect();
        assert_eq!(ids.len(), 3, "1 try + 2 retries, each with an id (h2 upstream: {h2}): {ids:?}");
        assert!(ids.iter().all(|id| id == &ids[0] && id.len() == 36), "h2 upstream: {h2}: {ids:?}");
    }
}

#[tokio::test]
async fn streams_large_bodies_with_bounded_memory() {
    let up = HttpUpstream::start("up", false).await;
    let port = free_port();
    let proxy = Proxy::start(&http_config(port, "Http1", "Http1", all_to("c"), vec![cluster("c", &[up.addr])]), 1);
    // 1 GiB upload, streamed in 1 MiB chunks.
    const TOTAL: usize = 1 << 30;
    let body = streamed(Bytes::from(vec![b'z'; 1 << 20]), TOTAL >> 20, Duration::ZERO);
    let req = Request::post("/upload").header("host", "e").header("transfer-encoding", "chunked").body(body).unwrap();
    let io = TokioIo::new(tokio::net::TcpStream::connect(proxy.addr).await.unwrap());
    let (mut s, c) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(c);
    let resp = s.send_request(req).await.unwrap();
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(text, format!("up got {TOTAL}").as_bytes());
    let hwm = peak_rss_kib(proxy.pid());
    assert!(hwm < 64 * 1024, "ferrymesh peak RSS {hwm} KiB while a 1 GiB body passed");
    // A streamed response arrives in order.
    let resp = send(proxy.addr, false, get("/stream/50")).await;
    let expected: String = (0..50).map(|i| format!("chunk{i};")).collect();
    assert_eq!(resp.body, expected.as_bytes());
}

fn tokio_stream_from<T>(rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_core::Stream<Item = T> {
    struct S<T>(tokio::sync::mpsc::Receiver<T>);
    impl<T> futures_core::Stream for S<T> {
        type Item = T;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
    S(rx)
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn trailers_pass_and_versions_convert() {
    let h2_up = HttpUpstream::start("h2up", true).await;
    let h1_up = HttpUpstream::start("h1up", false).await;
    // HTTP/1.1 in, HTTP/2 out.
    let port = free_port();
    let proxy = Proxy::start(&http_config(port, "Http1", "Http2", all_to("c"), vec![cluster("c", &[h2_up.addr])]), 1);
    let resp = send(proxy.addr, false, get("/hello")).await;
    assert_eq!((resp.status, server_of(&resp)), (StatusCode::OK, "h2up".to_string()));
    assert_eq!(h2_up.seen().pop().unwrap().version, http::Version::HTTP_2);
    drop(proxy);
    // HTTP/2 in, HTTP/1.1 out.
    let port = free_port();
    let proxy = Proxy::start(&http_config(port, "Http2", "Http1", all_to("c"), vec![cluster("c", &[h1_up.addr])]), 1);
    let resp = send(proxy.addr, true, get_h2("/hello")).await;
    assert_eq!((resp.status, server_of(&resp)), (StatusCode::OK, "h1up".to_string()));
    let seen = h1_up.seen().pop().unwrap();
    assert_eq!((seen.version, seen.header("host")), (http::Version::HTTP_11, Some("example.com")));
    drop(proxy);
    // HTTP/2 end to end: trailers arrive.
    let port = free_port();
    let proxy = Proxy::start(&http_config(port, "Http2", "Http2", all_to("c"), vec![cluster("c", &[h2_up.addr])]), 1);
    let resp = send(proxy.addr, true, get_h2("/trailers")).await;
    assert_eq!(&resp.body[..], b"with trailers");
    let t = resp.trailers.expect("trailers passed through");
    assert_eq!(
        (t.get("grpc-status").unwrap().to_str().unwrap(), t.get("x-trailer").unwrap().to_str().unwrap()),
        ("0", "yes")
    );
}

/// An HTTP/2 client is sent a raw HTTP/1.1 upstream's answer fields as the
/// upstream wrote them but lowercased, without the hop-by-hop ones (those
/// named by `Connection` too); a route's response header operations still
/// apply over HTTP/2.
#[tokio::test]
async fn an_http2_client_gets_an_http1_answers_fields_lowercased_without_hop_by_hop() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let raw_up = raw_upstream(|mut s| async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let Ok(n) = s.read(&mut chunk).await else { return };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                buf.drain(..end + 4);
                let answer = "HTTP/1.1 200 OK\r\nServer: Raw\r\nX-Mixed-Case: Yes\r\nConnection: X-Hop\r\n\
                              X-Hop: secret\r\nKeep-Alive: timeout=5\r\nX-Empty:\r\nContent-Length: 2\r\n\r\nok";
                if s.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    let port = free_port();
    let proxy = Proxy::start(&http_config(port, "Http2", "Http1", all_to("c"), vec![cluster("c", &[raw_up])]), 1);
    for _ in 0..3 {
        let resp = send(proxy.addr, true, get_h2("/fields")).await;
        assert_eq!((resp.status, &resp.body[..]), (StatusCode::OK, &b"ok"[..]));
        let h = &resp.headers;
        assert_eq!(h.get("server").unwrap(), "Raw");
        assert_eq!(h.get("x-mixed-case").unwrap(), "Yes");
        assert_eq!(h.get("x-empty").unwrap(), "");
        assert_eq!(h.get("content-length").unwrap(), "2");
        for hop in ["connection", "x-hop", "keep-alive"] {
            assert!(h.get(hop).is_none(), "{hop} passed on: {h:?}");
        }
    }
    drop(proxy);

    let up = HttpUpstream::start("up", false).await;
    let vhosts = json!([{"name": "all", "domains": ["*"], "routers": [
        {"match": {"prefix": "/"}, "route": {"cluster_name": "c",
            "response_headers_to_add": [{"header": {"key": "x-resp", "value": "yes"}}],
            "response_headers_to_remove": ["x-server"]}}]}]);
    let port = free_port();
    let proxy = Proxy::start(&http_config(port, "Http2", "Http1", vhosts, vec![cluster("c", &[up.addr])]), 1);
    let resp = send(proxy.addr, true, get_h2("/ops")).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.headers.get("x-resp").unwrap(), "yes");
    assert!(resp.headers.get("x-server").is_none(), "response header removed over HTTP/2");
}

/// h2c in, HTTP/1.1 out (the raw path, whose tries wait on the worker's
/// deadline queue): the route timeout answers 504 at its time while requests
/// that answer in time on the same connection are left alone, and a
/// per-try timeout cuts a slow try and tries again.
#[tokio::test]
async fn h2c_to_http1_tries_are_timed() {
    let a = HttpUpstream::start("a", false).await;
    let b = HttpUpstream::start("b", false).await;
    let vhosts = json!([{"name": "all", "domains": ["*"], "routers": [
        {"match": {"prefix": "/slow/"}, "route": {"cluster_name": "one", "timeout": "200ms"}},
        {"match": {"prefix": "/try/"}, "route": {"cluster_name": "two", "timeout": "3s", "prefix_rewrite": "/slow/",
            "retry_policy": {"retry_on": "5xx", "num_retries": 1, "retry_timeout": "150ms"}}},
        {"match": {"prefix": "/"}, "route": {"cluster_name": "one"}}
    ]}]);
    let mut two = cluster("two", &[a.addr, b.addr]);
    two["lb_type"] = json!("LB_ROUNDROBIN");
    let port = free_port();
    let proxy = Proxy::start(&http_config(port, "Http2", "Http1", vhosts, vec![cluster("one", &[a.addr]), two]), 1);
    let (client, _) = h2_client(proxy.addr).await;
    let call = |path: &'static str| {
        let mut c = client.clone();
        async move {
            let t0 = Instant::now();
            let resp = c.send_request(get_h2(path)).await.unwrap();
            (resp.status().as_u16(), t0.elapsed())
        }
    };
    let (slow, quick, slow_too, timed_out_twice) =
        tokio::join!(call("/slow/2000"), call("/x"), call("/slow/50"), call("/try/1000"));
    assert_eq!(slow.0, 504);
    assert!(slow.1 >= Duration::from_millis(190) && slow.1 < Duration::from_millis(1500), "{slow:?}");
    assert_eq!(quick.0, 200);
    assert_eq!(slow_too.0, 200, "answered within the route timeout");
    assert_eq!(timed_out_twice.0, 504, "both tries cut at the per-try timeout");
    assert!(timed_out_twice.1 >= Duration::from_millis(290) && timed_out_twice.1 < Duration::from_millis(1000));
    assert_eq!(a.seen().iter().chain(b.seen().iter()).filter(|r| r.uri.ends_with("/slow/1000")).count(), 2);
    // The connection serves on.
    assert_eq!(call("/y").await.0, 200);
}

#[tokio::test]
async fn websocket_upgrade_is_tunnelled() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = HttpUpstream::start("up", false).await;
    let port = free_port();
    let proxy = Proxy::start(&http_config(port, "Http1", "Http1", all_to("c"), vec![cluster("c", &[up.addr])]), 1);
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: e\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"));
    for msg in [&b"ping one"[..], b"second message"] {
        // A tunnel quiet for longer than the header-read timeout (500ms) lives on.
        tokio::time::sleep(Duration::from_millis(800)).await;
        s.write_all(msg).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await.unwrap().unwrap();
        assert_eq!(&buf[..n], msg, "bytes flow both ways through the tunnel");
    }
    assert_eq!(up.seen()[0].header("upgrade"), Some("websocket"));
}

/// A tunnel lives while bytes move and is cut once nothing moves either way
/// for `stream_idle_timeout`; and an upstream that stops reading, or a client
/// that does, is cut at the write timeout (15 s) whatever the idle bound.
#[tokio::test]
async fn a_tunnel_is_cut_when_idle_or_when_its_upstream_takes_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: e\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    #[derive(Clone, Copy)]
    enum Then {
        Echo,
        /// Never reads.
        Deaf,
        /// Writes without end.
        Flood,
    }
    // Answers the upgrade, then does what `then` says.
    async fn serve(mut s: tokio::net::TcpStream, then: Then) {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let _ =
            s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n").await;
        match then {
            Then::Deaf => return tokio::time::sleep(Duration::from_secs(60)).await,
            Then::Flood => {
                let chunk = vec![b'f'; 64 * 1024];
                while s.write_all(&chunk).await.is_ok() {}
                return;
            }
            Then::Echo => {}
        }
        while let Ok(n @ 1..) = s.read(&mut buf).await {
            if s.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }
    let echo = raw_upstream(|s| serve(s, Then::Echo)).await;
    let deaf = raw_upstream(|s| serve(s, Then::Deaf)).await;
    let flood = raw_upstream(|s| serve(s, Then::Flood)).await;
    let start = |up, idle: &str| {
        let mut cfg = http_config(free_port(), "Http1", "Http1", all_to("c"), vec![cluster("c", &[up])]);
        cfg["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["config"]["stream_idle_timeout"] =
            json!(idle);
        Proxy::start(&cfg, 1)
    };
    let (quick, patient, flooded) = (start(echo, "2s"), start(deaf, "5m"), start(flood, "5m"));
    let upgrade = |addr| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(UPGRADE).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&buf[..n]));
        s
    };

    let deaf_client = async {
        // Writes until the proxy gives up on the upstream and closes.
        let mut s = upgrade(patient.addr).await;
        let t = Instant::now();
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0usize;
        while tokio::time::timeout(Duration::from_secs(40), s.write_all(&chunk)).await.is_ok_and(|w| w.is_ok()) {
            sent += chunk.len();
            assert!(sent < 256 << 20, "the tunnel took {sent} bytes its upstream never read");
        }
        t.elapsed()
    };
    let reader_that_stops = async {
        // Reads nothing after the 101: the upstream's flood fills the way to
        // it, and only the client's write deadline, kept on its socket
        // through the upgrade, can end the tunnel before 5 minutes.
        let mut s = upgrade(flooded.addr).await;
        tokio::time::sleep(Duration::from_secs(17)).await;
        // What the kernel's buffers held, then the end; with the tunnel
        // still open the flood goes on once read, so stop after 256 MB.
        let (mut buf, mut got) = (vec![0u8; 64 * 1024], 0usize);
        while got < 256 << 20 {
            match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(n)) => got += n,
                Err(_) => return false,
            }
        }
        false
    };
    let echo_client = async {
        let mut s = upgrade(quick.addr).await;
        let mut buf = [0u8; 64];
        let mut quiet = Instant::now();
        for msg in [&b"one"[..], b"two", b"three", b"four", b"five", b"six"] {
            // 0.5 s apart, under the 2 s bound: the tunnel lives.
            tokio::time::sleep(Duration::from_millis(500)).await;
            s.write_all(msg).await.unwrap();
            // The tunnel's last bytes move after this.
            quiet = Instant::now();
            let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await.unwrap().unwrap();
            assert_eq!(&buf[..n], msg);
        }
        let end = tokio::time::timeout(Duration::from_secs(8), s.read(&mut buf)).await;
        assert!(matches!(end, Ok(Ok(0)) | Ok(Err(_))), "an idle tunnel stays open: {end:?}");
        quiet.elapsed()
    };
    let (deaf_after, idle_after, flood_cut) = tokio::join!(deaf_client, echo_client, reader_that_stops);
    assert!(flood_cut, "a tunnel whose client reads nothing stays open past the write timeout");
    assert!(idle_after >= Duration::from_secs(2) && idle_after < Duration::from_secs(7), "{idle_after:?}");
    assert!(deaf_after >= Duration::from_secs(14) && deaf_after < Duration::from_secs(35), "{deaf_after:?}");
}

#[tokio::test]
async fn limits_and_slow_clients() {
    let up = HttpUpstream::start("up", false).await;
    let port = free_port();
    let proxy = Proxy::start(&http_config(port, "Http1", "Http1", all_to("c"), vec![cluster("c", &[up.addr])]), 1);
    let q = Duration::from_millis(700);
    let big = format!("GET / HTTP/1.1\r\nHost: e\r\nX-Big: {}\r\n\r\n", "a".repeat(70 * 1024));
    let (out, _) = raw_exchange(proxy.addr, big.as_bytes(), q).await;
    assert_eq!(first_status(&out), Some(431), "{}", &out[..out.len().min(100)]);
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let (out, _) = raw_exchange(proxy.addr, format!("GET / HTTP/1.1\r\nHost: e\r\n{many}\r\n").as_bytes(), q).await;
    assert_eq!(first_status(&out), Some(431));
    // A client that never finishes its head is cut off at header_read_timeout (500ms here).
    let t0 = Instant::now();
    let (_, closed) = raw_exchange(proxy.addr, b"GET / HTTP/1.1\r\nHost: e\r\nX-Slow: ", Duration::from_secs(3)).await;
    assert!(closed && t0.elapsed() < Duration::from_secs(2), "slow header closed after {:?}", t0.elapsed());
    // Expect: 100-continue gets its 100 and the body goes through.
    let (out, _) = raw_exchange(
        proxy.addr,
        b"POST /e HTTP/1.1\r\nHost: e\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
        q,
    )
    .await;
    assert!(out.contains("200 OK") && out.contains("up got 5"), "{out}");
    assert!(up.seen().iter().all(|s| s.header("expect").is_none()), "Expect handled here, not forwarded");
}

/// Malformed or ambiguous requests are refused with 400 (431 for oversized
/// heads) and the upstream receives nothing.
#[tokio::test]
async fn smuggling_table() {
    let up = HttpUpstream::start("up", false).await;
    let port = free_port();
    let proxy = Proxy::start(&http_config(port, "Http1", "Http1", all_to("c"), vec![cluster("c", &[up.addr])]), 1);
    let cases: &[(&str, &[u8])] = &[
        ("two content-lengths", b"POST /s1 HTTP/1.1\r\nHost: e\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        ("te gzip", b"POST /s4 HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: gzip\r\n\r\nabc"),
        ("te chunked, gzip", b"POST /s5 HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
        ("te xchunked", b"POST /s6 HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
        ("te twice", b"POST /s7 HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("obs-fold", b"GET /s8 HTTP/1.1\r\nHost: e\r\nX-A: a\r\n  folded\r\n\r\n"),
        ("space before colon", b"POST /s9 HTTP/1.1\r\nHost: e\r\nContent-Length : 5\r\n\r\nhello"),
        ("bad chunk size", b"POST /s10 HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
        ("chunk size overflow", b"POST /s11 HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nx\r\n0\r\n\r\n"),
        ("negative content-length", b"POST /s12 HTTP/1.1\r\nHost: e\r\nContent-Length: -5\r\n\r\nhello"),
        ("plus content-length", b"POST /s13 HTTP/1.1\r\nHost: e\r\nContent-Length: +5\r\n\r\nhello"),
        ("control char in value", b"GET /s14 HTTP/1.1\r\nHost: e\r\nX-A: a\x01b\r\n\r\n"),
        ("del in value", b"GET /s15 HTTP/1.1\r\nHost: e\r\nX-A: a\x7fb\r\n\r\n"),
        ("nul in value", b"GET /s16 HTTP/1.1\r\nHost: e\r\nX-A: a\x00b\r\n\r\n"),
        ("bare cr", b"GET /s17 HTTP/1.1\r\nHost: e\r\nX-A: a\rb\r\n\r\n"),
        ("no host", b"GET /s18 HTTP/1.1\r\n\r\n"),
        ("two hosts", b"GET /s19 HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        ("http/1.0 with te", b"POST /s20 HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("leading space header", b"POST /s21 HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: e\r\n\r\n0\r\n\r\n"),
    ];
    for (name, bytes) in cases {
        let (out, _) = raw_exchange(proxy.addr, bytes, Duration::from_millis(500)).await;
        let status = first_status(&out);
        assert!(matches!(status, Some(400 | 431)), "{name}: got {:?}", out.lines().next());
    }
    let long_line = format!("GET /s22/{} HTTP/1.1\r\nHost: e\r\n\r\n", "u".repeat(80 * 1024));
    let (out, _) = raw_exchange(proxy.addr, long_line.as_bytes(), Duration::from_millis(500)).await;
    assert!(matches!(first_status(&out), Some(400 | 414 | 431)), "long request line");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen: Vec<String> = up.seen().iter().map(|s| s.uri.clone()).collect();
    assert!(seen.is_empty(), "the upstream received: {seen:?}");
    // Identical repeated Content-Length values may be folded into one (RFC 9110
    // §8.6): hyper does, and the upstream then gets exactly that body.
    let (out, _) = raw_exchange(
        proxy.addr,
        b"POST /cl2 HTTP/1.1\r\nHost: e\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        Duration::from_millis(500),
    )
    .await;
    assert!(first_status(&out) == Some(400) || out.contains("up got 5"), "{out}");
    // Content-Length with Transfer-Encoding: RFC 9112 §6.3 lets an intermediary
    // drop the Content-Length and forward the chunked body; hyper does, and
    // closes the connection after the answer, so a request smuggled behind the
    // body is never read. The upstream gets a re-framed, unambiguous request.
    let (out, closed) = raw_exchange(
        proxy.addr,
        b"POST /clte HTTP/1.1\r\nHost: e\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: e\r\n\r\n",
        Duration::from_millis(500),
    )
    .await;
    assert!(first_status(&out) == Some(400) || (out.contains("up got 0") && closed), "{out}");
    assert!(!up.seen().iter().any(|s| s.uri.contains("smuggled")), "the smuggled request never reached the upstream");
    // A well-formed chunked request still passes.
    let (out, _) = raw_exchange(
        proxy.addr,
        b"POST /ok HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Duration::from_millis(500),
    )
    .await;
    assert!(out.contains("up got 5"), "{out}");
}

#[tokio::test]
async fn one_port_serves_bolt_http1_and_h2() {
    let bolt = support::Upstream::start("bolt", support::Mode::Echo).await;
    let web = HttpUpstream::start("web", false).await;
    let web2 = HttpUpstream::start("web2", true).await;
    let port = free_port();
    let cfg = json!({
        "servers": [{"routers": [
            {"router_config_name": "r", "virtual_hosts": [{"name": "all", "domains": ["*"], "routers": [
                {"match": {"headers": [{"name": "service", "value": ".*"}]}, "route": {"cluster_name": "bolt"}},
                {"match": {"prefix": "/"}, "route": {"cluster_name": "web"}}]}]}],
         "listeners": [{"name": "auto", "address": format!("127.0.0.1:{port}"), "filter_chains": [{"filters": [{"type": "proxy",
            "config": {"downstream_protocol": "Auto", "upstream_protocol": "Auto", "router_config_name": "r"}}]}]}]}],
        "cluster_manager": {"clusters": [cluster("bolt", &[bolt.addr]), cluster("web", &[web.addr])]}
    });
    let proxy = Proxy::start(&cfg, 1);
    let mut cl = support::Client::connect(proxy.addr).await;
    cl.send(&ferrymesh::protocol::bolt::RequestBuilder::new(3, support::SERVICE, b"rpc").encode()).await;
    assert_eq!(cl.recv().await.content, b"rpc");
    let r = send(proxy.addr, false, get("/page")).await;
    assert_eq!(server_of(&r), "web");
    // h2 prior knowledge on the same port; the upstream speaks what the client spoke.
    drop(web2);
    let r = send(proxy.addr, true, get_h2("/page")).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "h2 client → h2 upstream, which web (HTTP/1.1) is not");
    let (out, closed) = raw_exchange(proxy.addr, b"\x16\x03\x01\x00\x05hello", Duration::from_secs(1)).await;
    assert!(out.is_empty() && closed, "unknown first bytes close the connection");
}

#[tokio::test]
async fn idle_client_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = HttpUpstream::start("up", false).await;
    let port = free_port();
    let mut cfg = http_config(port, "Http1", "Http1", all_to("c"), vec![cluster("c", &[up.addr])]);
    cfg["servers"][0]["listeners"][0]["connection_idle_timeout"] = json!("300ms");
    let proxy = Proxy::start(&cfg, 1);
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: e\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Kept alive between requests...
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.write_all(b"GET /b HTTP/1.1\r\nHost: e\r\n\r\n").await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // ...and closed once idle past connection_idle_timeout.
    let t0 = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await.expect("closed in time").unwrap_or(0);
    assert_eq!(n, 0, "EOF from ferrymesh");
    assert!(t0.elapsed() >= Duration::from_millis(200), "not before the idle timeout");
}

/// A request its HTTP/2 client resets mid-flight stops counting as in
/// flight: the connection still goes idle and is closed after
/// connection_idle_timeout (it stayed open for good when the count leaked).
#[tokio::test]
async fn a_reset_stream_leaves_its_connection_idle() {
    let up = HttpUpstream::start("up", false).await;
    let port = free_port();
    let mut cfg = http_config(port, "Http2", "Http1", all_to("c"), vec![cluster("c", &[up.addr])]);
    cfg["servers"][0]["listeners"][0]["connection_idle_timeout"] = json!("500ms");
    let proxy = Proxy::start(&cfg, 1);
    let (mut sender, conn) = h2_client(proxy.addr).await;
    // The upstream answers after 3 s; the client gives up after 200 ms (its
    // response future dropped: hyper resets the stream).
    let gave_up = tokio::time::timeout(Duration::from_millis(200), sender.send_request(get_h2("/slow/3000"))).await;
    assert!(gave_up.is_err(), "answered before the client gave up");
    let t0 = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(2), conn).await;
    assert!(closed.is_ok(), "connection still open 2 s after its only request was reset");
    assert!(t0.elapsed() >= Duration::from_millis(250), "closed before the idle timeout: {:?}", t0.elapsed());
}

/// A dial to an HTTP/2 upstream that a request's timeout cuts short is the
/// pool's, not the request's: it still ends, and once the host answers again
/// requests get through (they all waited for good on a dial nobody finished).
#[tokio::test]
async fn an_http2_dial_cut_by_a_timeout_does_not_wedge_the_pool() {
    let hole = BlackHole::new();
    let addr = hole.addr();
    let port = free_port();
    let vhosts = json!([{"name": "all", "domains": ["*"],
        "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "c", "timeout": "300ms"}}]}]);
    let proxy = Proxy::start(&http_config(port, "Http2", "Http2", vhosts, vec![cluster("c", &[addr])]), 1);
    let r = send(proxy.addr, true, get_h2("/a")).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "the dial hangs past the route timeout");
    // The host comes back on the same address; the cut dial has given up
    // by then (connect_timeout 500 ms).
    let _up = HttpUpstream::start_on(hole.reopen(), "back", true);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let r = send(proxy.addr, true, get_h2("/b")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body, "back got 0");
}

/// HTTP/2 takes headers as large as HTTP/1.1 does (hyper's 16 KiB default
/// answered a 20 KB header 431 from a client, and 502 from an upstream).
#[tokio::test]
async fn http2_carries_headers_as_large_as_http1() {
    let up1 = HttpUpstream::start("h1", false).await;
    let up2 = HttpUpstream::start("h2", true).await;
    let big = "b".repeat(20_000);
    for (upstream, up) in [("Http1", &up1), ("Http2", &up2)] {
        let port = free_port();
        let proxy = Proxy::start(&http_config(port, "Http2", upstream, all_to("c"), vec![cluster("c", &[up.addr])]), 1);
        let mut req = get_h2("/a");
        req.headers_mut().insert("x-big", big.parse().unwrap());
        let r = send(proxy.addr, true, req).await;
        assert_eq!(r.status, StatusCode::OK, "{upstream}: a 20 KB request header");
        let seen = up.seen();
        let sent = seen.last().and_then(|s| s.headers.iter().find(|(k, _)| k == "x-big").map(|(_, v)| v.len()));
        assert_eq!(sent, Some(20_000), "{upstream}");
        let r = send(proxy.addr, true, get_h2("/big-header/20000")).await;
        assert_eq!(r.status, StatusCode::OK, "{upstream}: a 20 KB response header");
        assert_eq!(r.headers.get("x-big").map(|v| v.len()), Some(20_000), "{upstream}");
    }
}

/// An HTTP/2 client's cookies, split over several fields (RFC 9113 §8.2.3),
/// reach an HTTP/1.1 upstream as one `cookie` field, on the raw exchange
/// (a GET) and on hyper's client (a streamed POST); an HTTP/2 upstream gets
/// them as sent.
#[tokio::test]
async fn split_cookies_reach_an_http1_upstream_joined() {
    let up1 = HttpUpstream::start("h1", false).await;
    let up2 = HttpUpstream::start("h2", true).await;
    for (upstream, up, want) in [("Http1", &up1, vec!["a=1; b=2"]), ("Http2", &up2, vec!["a=1", "b=2"])] {
        let port = free_port();
        let proxy = Proxy::start(&http_config(port, "Http2", upstream, all_to("c"), vec![cluster("c", &[up.addr])]), 1);
        for post in [false, true] {
            let mut req = if post {
                // Over the 64 KiB kept for retries: it streams, through hyper's client.
                let body = streamed(Bytes::from(vec![b'p'; 70_000]), 1, Duration::ZERO);
                Request::post("http://example.com/p").body(body).unwrap()
            } else {
                get_h2("/g").map(|b| b.map_err(|e| match e {}).boxed())
            };
            req.headers_mut().append("cookie", "a=1".parse().unwrap());
            req.headers_mut().append("cookie", "b=2".parse().unwrap());
            let (mut s, _) = h2_client(proxy.addr).await;
            let resp = s.send_request(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{upstream} post={post}");
            let seen = up.seen();
            let cookies: Vec<String> =
                seen.last().unwrap().headers.iter().filter(|(k, _)| k == "cookie").map(|(_, v)| v.clone()).collect();
            assert_eq!(cookies, want, "{upstream} post={post}");
            assert_eq!(seen.last().unwrap().body_len, if post { 70_000 } else { 0 });
        }
    }
}

/// The route's timeout counts from the end of a streamed request body, as in
/// Envoy: an upload (a client-streaming gRPC call) that takes longer than the
/// timeout is not cut while the client still sends; the wait for the answer
/// after it is.
#[tokio::test]
async fn the_route_timeout_counts_from_the_end_of_a_streamed_body() {
    let up1 = HttpUpstream::start("h1", false).await;
    let up2 = HttpUpstream::start("h2", true).await;
    for (upstream, up) in [("Http1", &up1), ("Http2", &up2)] {
        let port = free_port();
        let vhosts = json!([{"name": "all", "domains": ["*"],
            "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "c", "timeout": "400ms"}}]}]);
        let proxy = Proxy::start(&http_config(port, "Auto", upstream, vhosts, vec![cluster("c", &[up.addr])]), 1);
        // Five chunks 200 ms apart: the body takes 800 ms, twice the timeout.
        let body = streamed(Bytes::from(vec![b'u'; 1000]), 5, Duration::from_millis(200));
        let req = Request::post("http://example.com/upload").body(body).unwrap();
        let (mut s, _) = h2_client(proxy.addr).await;
        let t0 = Instant::now();
        let resp = s.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{upstream}: answered after the whole upload");
        assert!(t0.elapsed() >= Duration::from_millis(800), "{upstream}: {:?}", t0.elapsed());
        assert_eq!(up.seen().last().unwrap().body_len, 5000, "{upstream}");
        // An upstream slower than the timeout after the body is still cut.
        let r = send(
            proxy.addr,
            true,
            Request::post("http://example.com/slow/1500").body(Full::new(Bytes::from("x"))).unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{upstream}");
        // So is an empty chunked body, whose end hyper never polls for.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let t0 = Instant::now();
        let mut c = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        c.write_all(b"POST /slow/3000 HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await.expect("an answer").unwrap();
        let out = String::from_utf8_lossy(&buf[..n]);
        assert!(out.starts_with("HTTP/1.1 504"), "{upstream}: {out}");
        assert!(t0.elapsed() < Duration::from_millis(1500), "{upstream}: {:?}", t0.elapsed());
    }
}

/// An answer whose body stops coming is cut once the listener's
/// `stream_idle_timeout` passes with no progress (Envoy's stream idle
/// timeout), on each path an answer's body takes: the HTTP/1.1
/// pass-through, the raw exchange behind the HTTP/2 server, and hyper's
/// client (a chunked upload). The upstream sends its head and 1,000 of the
/// 100,000 bytes it announces, then nothing for 20 s; without the bound
/// each client waited for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_stops_midway_is_cut_after_the_stream_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = raw_upstream(|mut s| async move {
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        // The head, and a chunked body's last chunk when there is one.
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                if !head.contains("transfer-encoding: chunked") || got.ends_with(b"0\r\n\r\n") {
                    break;
                }
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
        let mut answer = b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n".to_vec();
        answer.extend_from_slice(&[b'a'; 1000]);
        let _ = s.write_all(&answer).await;
        tokio::time::sleep(Duration::from_secs(20)).await;
    })
    .await;
    let with_idle = |downstream: &str| {
        let mut cfg = proxy_config(free_port(), downstream, "Http1", &[up]);
        cfg["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["config"]["stream_idle_timeout"] =
            json!("1s");
        Proxy::start(&cfg, 1)
    };
    let (h1, h2) = (with_idle("Http1"), with_idle("Http2"));

    // Reads until the connection ends (true) or 6 s pass with nothing (false).
    async fn read_until_end(s: &mut tokio::net::TcpStream) -> (Vec<u8>, bool) {
        let (mut got, mut buf) = (Vec::new(), [0u8; 16384]);
        loop {
            match tokio::time::timeout(Duration::from_secs(6), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                Err(_) => return (got, false),
            }
        }
    }
    let requests: [&[u8]; 2] = [
        b"GET /stalls HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /stalls HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ];
    for request in requests {
        let t = Instant::now();
        let mut s = tokio::net::TcpStream::connect(h1.addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let (got, ended) = read_until_end(&mut s).await;
        let text = String::from_utf8_lossy(&got[..got.len().min(40)]).into_owned();
        assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
        assert!(ended && got.len() < 100_000, "{:?}: {} bytes, ended: {ended}", request[0] as char, got.len());
        assert!(t.elapsed() < Duration::from_secs(5), "cut after {:?}", t.elapsed());
    }

    // HTTP/2: the stream is reset (or the connection closed), not left open.
    use support::h2::kind::{HEADERS, RST_STREAM, SETTINGS};
    use support::h2::{frame, END_HEADERS, END_STREAM, PREFACE};
    let t = Instant::now();
    let mut s = tokio::net::TcpStream::connect(h2.addr).await.unwrap();
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    // GET, http, :authority x, :path /stalls as a literal without indexing.
    let mut block = vec![0x82, 0x86, 0x41, 0x01, b'x', 0x04, 7];
    block.extend_from_slice(b"/stalls");
    hello.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &block));
    s.write_all(&hello).await.unwrap();
    let mut buf = Vec::new();
    let reset = loop {
        let mut chunk = [0u8; 16384];
        match tokio::time::timeout(Duration::from_secs(6), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break false,
        }
        // Frames so far: a RST_STREAM on stream 1 ends the wait.
        let (mut at, mut seen) = (0, false);
        while buf.len() >= at + 9 {
            let len = u32::from_be_bytes([0, buf[at], buf[at + 1], buf[at + 2]]) as usize;
            let (kind, flags, stream) =
                (buf[at + 3], buf[at + 4], u32::from_be_bytes(buf[at + 5..at + 9].try_into().unwrap()));
            assert!(
                !(stream == 1 && flags & END_STREAM != 0 && kind != RST_STREAM),
                "the cut answer ended as if whole"
            );
            seen |= kind == RST_STREAM && stream == 1;
            at += 9 + len;
        }
        if seen {
            break true;
        }
    };
    assert!(reset, "HTTP/2: the stream was neither reset nor closed");
    assert!(t.elapsed() < Duration::from_secs(5), "HTTP/2 cut after {:?}", t.elapsed());
}
