//! Routing at the scale of a real mesh, through real sockets: a bolt router
//! with 10,000 service routes, an HTTP virtual host with 10,000 prefix routes,
//! and 10,000 Istio-style virtual hosts. Each check names the route (or
//! virtual host) it expects and proves it by what the upstream saw or answered,
//! so a matcher that finds *a* route but not *the first matching* one fails.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrymesh::protocol::bolt::{status, RequestBuilder, HEADER_METHOD};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use support::http::HttpUpstream;
use support::{cluster, config, free_port, Client, Mode, Proxy, Upstream};

const N: usize = 10_000;

fn service(i: usize) -> String {
    format!("com.example.S{i}:1.0")
}

/// A bolt route: every `(header, value)` must match exactly.
fn bolt_route(headers: &[(&str, &str)], cluster: &str) -> Value {
    let headers: Vec<Value> = headers.iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
    json!({"match": {"headers": headers}, "route": {"cluster_name": cluster}})
}

/// The bolt routes of [`bolt_routes_are_matched_first_match_in_a_table_of_10000_services`]:
/// route i sends `com.example.S<i>:1.0` to `first` (i = 0), `last` (i = N-1),
/// or `even` / `odd`. Two routes also require a method, to cluster `method`:
/// one for S5000 placed before S5000's plain route (it wins when the method
/// is sent), one for S4999 placed after S4999's plain route (it never wins).
fn bolt_routes() -> Vec<Value> {
    let mut routes = Vec::with_capacity(N + 2);
    for i in 0..N {
        let s = service(i);
        if i == N / 2 {
            routes.push(bolt_route(&[("service", &s), (HEADER_METHOD, "special")], "method"));
        }
        let c = match i {
            0 => "first",
            i if i == N - 1 => "last",
            i if i % 2 == 0 => "even",
            _ => "odd",
        };
        routes.push(bolt_route(&[("service", &s)], c));
        if i == N / 2 - 1 {
            routes.push(bolt_route(&[("service", &s), (HEADER_METHOD, "shadowed")], "method"));
        }
    }
    routes
}

/// Sends one bolt request (`service`, and the method if any) and returns the
/// answer's status and the name of the upstream that answered.
async fn call(cl: &mut Client, id: u32, service: &str, method: Option<&str>) -> (u16, Option<String>) {
    let mut r = RequestBuilder::new(id, service, format!("req{id}").as_bytes());
    if let Some(m) = method {
        r.headers.push((HEADER_METHOD.as_bytes().to_vec(), m.as_bytes().to_vec()));
    }
    cl.send(&r.encode()).await;
    let resp = cl.recv().await;
    assert_eq!(resp.info.id, u64::from(id), "answer to request {id}");
    (resp.status, resp.server)
}

#[tokio::test]
async fn bolt_routes_are_matched_first_match_in_a_table_of_10000_services() {
    let names = ["first", "last", "even", "odd", "method"];
    let mut ups = Vec::new();
    for n in names {
        ups.push(Upstream::start(n, Mode::Echo).await);
    }
    let clusters = names.iter().zip(&ups).map(|(n, u)| cluster(n, &[u.addr])).collect();
    let proxy = Proxy::start(&config(free_port(), bolt_routes(), clusters), 1);
    let mut cl = Client::connect(proxy.addr).await;

    let s = service;
    let cases: [(String, Option<&str>, Option<&str>); 12] = [
        (s(0), None, Some("first")),
        (s(N - 1), None, Some("last")),
        (s(N - 2), None, Some("even")),
        (s(N / 2 + 1), None, Some("odd")),
        // The combined route before S5000's plain one wins with its method only.
        (s(N / 2), Some("special"), Some("method")),
        (s(N / 2), None, Some("even")),
        (s(N / 2), Some("other"), Some("even")),
        // The combined route after S4999's plain one is never reached.
        (s(N / 2 - 1), Some("shadowed"), Some("odd")),
        // Exact matches only: no route for a neighbour, a prefix or an extension.
        (s(N), None, None),
        ("com.example.S1".to_string(), None, None),
        (format!("{}x", s(1)), None, None),
        ("com.example.Unknown:1.0".to_string(), None, None),
    ];
    let started = Instant::now();
    for (id, (svc, method, want)) in cases.iter().enumerate() {
        let got = call(&mut cl, id as u32 + 1, svc, *method).await;
        let want = match want {
            Some(up) => (status::SUCCESS, Some(up.to_string())),
            None => (status::NO_PROCESSOR, None), // MOSN answers no route with 6
        };
        assert_eq!(got, want, "service {svc} method {method:?}");
    }
    eprintln!("bolt: {} requests over {} routes in {:?}", cases.len(), N + 2, started.elapsed());
    let reached: usize = ups.iter().map(Upstream::requests_seen).sum();
    assert_eq!(reached, cases.iter().filter(|c| c.2.is_some()).count(), "unrouted requests reached no upstream");
}

/// An HTTP/1.1 listener routing with the virtual hosts `vhosts`.
fn http_config(port: u16, vhosts: Vec<Value>, clusters: Vec<Value>) -> Value {
    json!({
        "servers": [{
            "default_log_level": "WARN",
            "routers": [{"router_config_name": "web", "virtual_hosts": vhosts}],
            "listeners": [{
                "name": "http", "address": format!("127.0.0.1:{port}"), "bind_port": true,
                "filter_chains": [{"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": "Http1", "upstream_protocol": "Http1", "router_config_name": "web"
                }}]}]
            }]
        }],
        "cluster_manager": {"clusters": clusters}
    })
}

/// A route action to `cluster` that tags the request with `x-route: <tag>`.
fn tagged(cluster: &str, tag: &str) -> Value {
    json!({"cluster_name": cluster, "request_headers_to_add": [{"header": {"key": "x-route", "value": tag}}]})
}

/// One GET over a new HTTP/1.1 connection: the status and the upstream that
/// answered (`x-server`), if one did.
async fn get(addr: SocketAddr, host: &str, path: &str) -> (StatusCode, Option<String>) {
    let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let req = Request::get(path).header("host", host).body(Empty::<Bytes>::new()).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    let status = resp.status();
    let server = resp.headers().get("x-server").map(|v| v.to_str().unwrap().to_string());
    resp.into_body().collect().await.unwrap();
    (status, server)
}

/// What `up` saw of its latest request: the target and the `x-route` tag.
fn last_seen(up: &HttpUpstream) -> (String, String) {
    let seen = up.seen().pop().expect("the upstream saw a request");
    let tag = seen.header("x-route").unwrap_or_default().to_string();
    (seen.uri, tag)
}

#[tokio::test]
async fn http_prefix_routes_are_matched_in_a_virtual_host_of_10000_routes() {
    let (even, odd) = (HttpUpstream::start("even", false).await, HttpUpstream::start("odd", false).await);
    let routes: Vec<Value> = (0..N)
        .map(|i| {
            let mut action = tagged(if i % 2 == 0 { "even" } else { "odd" }, &i.to_string());
            action["prefix_rewrite"] = json!(format!("/r{i}/"));
            json!({"match": {"prefix": format!("/svc{i}/")}, "route": action})
        })
        .collect();
    let vhosts = vec![json!({"name": "all", "domains": ["*"], "routers": routes})];
    let clusters = vec![cluster("even", &[even.addr]), cluster("odd", &[odd.addr])];
    let proxy = Proxy::start(&http_config(free_port(), vhosts, clusters), 1);

    let started = Instant::now();
    // Path, the upstream of its route, the rewritten target and the route's tag.
    let cases = [
        ("/svc0/a?x=1", "even", "/r0/a?x=1", "0"),
        ("/svc9999/z", "odd", "/r9999/z", "9999"),
        ("/svc9998/", "even", "/r9998/", "9998"),
        ("/svc1/b", "odd", "/r1/b", "1"),
        ("/svc10/c", "even", "/r10/c", "10"),
    ];
    for (path, name, uri, tag) in cases {
        let (status, server) = get(proxy.addr, "example.com", path).await;
        assert_eq!((status, server.as_deref()), (StatusCode::OK, Some(name)), "{path} reached its route's upstream");
        let up = if name == "even" { &even } else { &odd };
        assert_eq!(last_seen(up), (uri.to_string(), tag.to_string()), "{path} took route {tag}");
    }
    // No route: ferrymesh answers 404 itself.
    let unrouted = ["/nomatch/", "/svc10000/", "/svc1", "/"];
    for path in unrouted {
        assert_eq!(get(proxy.addr, "example.com", path).await, (StatusCode::NOT_FOUND, None), "{path}");
    }
    eprintln!("http prefixes: {} requests over {N} routes in {:?}", cases.len() + unrouted.len(), started.elapsed());
    assert_eq!(even.seen().len() + odd.seen().len(), cases.len(), "unrouted requests reached no upstream");
}

/// Istio's domains for service i in namespace `ns`, and one route tagging
/// requests with `i`.
fn istio_vhost(i: usize, cluster: &str) -> Value {
    json!({
        "name": format!("svc{i}.ns.svc.cluster.local:80"),
        "domains": [format!("svc{i}.ns.svc.cluster.local"), format!("svc{i}.ns"), format!("svc{i}")],
        "routers": [{"match": {"prefix": "/"}, "route": tagged(cluster, &i.to_string())}]
    })
}

/// `N` Istio-style virtual hosts, then `*.wild.example.com`, then (if
/// `catch_all`) `*`; all on `up`'s cluster `c`, tagged by virtual host.
fn istio_config(up: &HttpUpstream, catch_all: bool) -> Value {
    let mut vhosts: Vec<Value> = (0..N).map(|i| istio_vhost(i, "c")).collect();
    vhosts.push(json!({"name": "wild", "domains": ["*.wild.example.com"],
        "routers": [{"match": {"prefix": "/"}, "route": tagged("c", "wild")}]}));
    if catch_all {
        vhosts.push(json!({"name": "default", "domains": ["*"],
            "routers": [{"match": {"prefix": "/"}, "route": tagged("c", "default")}]}));
    }
    http_config(free_port(), vhosts, vec![cluster("c", &[up.addr])])
}

/// Sends a request with each Host and checks the upstream saw the tag of the
/// virtual host expected.
async fn expect_vhosts(proxy: &Proxy, up: &HttpUpstream, cases: &[(&str, &str)]) {
    for (host, tag) in cases {
        let (status, server) = get(proxy.addr, host, "/").await;
        assert_eq!((status, server.as_deref()), (StatusCode::OK, Some("u")), "Host {host}");
        assert_eq!(last_seen(up).1, *tag, "Host {host} picks virtual host {tag}");
    }
}

#[tokio::test]
async fn http_virtual_hosts_are_found_among_10000_istio_style_domains() {
    let up = HttpUpstream::start("u", false).await;
    let proxy = Proxy::start(&istio_config(&up, true), 1);
    let started = Instant::now();
    let cases = [
        ("svc0.ns.svc.cluster.local", "0"),
        ("svc0", "0"),
        ("svc9999.ns.svc.cluster.local", "9999"),
        ("svc9999", "9999"),
        ("svc9999.ns:8080", "9999"),
        ("SVC9999.NS.SVC.CLUSTER.LOCAL", "9999"),
        ("Svc4242.Ns", "4242"),
        ("a.wild.example.com", "wild"),
        ("deep.b.wild.example.com:443", "wild"),
        ("A.WILD.EXAMPLE.COM", "wild"),
        // `*.wild.example.com` needs something before its dot.
        ("wild.example.com", "default"),
        ("svc10000", "default"),
        ("svc9999.other", "default"),
        ("unknown.example.org", "default"),
    ];
    expect_vhosts(&proxy, &up, &cases).await;
    eprintln!("http vhosts: {} requests over {} virtual hosts in {:?}", cases.len(), N + 2, started.elapsed());
}

#[tokio::test]
async fn http_unknown_host_gets_404_among_10000_virtual_hosts_without_a_catch_all() {
    let up = HttpUpstream::start("u", false).await;
    let proxy = Proxy::start(&istio_config(&up, false), 1);
    expect_vhosts(&proxy, &up, &[("svc9999.ns:8080", "9999"), ("x.wild.example.com", "wild")]).await;
    for host in ["unknown.example.org", "svc10000", "wild.example.com"] {
        assert_eq!(get(proxy.addr, host, "/").await, (StatusCode::NOT_FOUND, None), "Host {host}");
    }
    assert_eq!(up.seen().len(), 2, "unrouted requests reached no upstream");
}
