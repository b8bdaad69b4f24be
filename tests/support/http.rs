//! An HTTP upstream we control (hyper, HTTP/1.1 or HTTP/2) and client helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Body = http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// An upstream on a real socket whose every connection `serve` handles as
/// it likes: for answers hyper would not write (mixed-case names, an answer
/// before the request has all come).
pub async fn raw_upstream<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve(s));
        }
    });
    addr
}

/// What an HTTP upstream saw of one request.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub method: String,
    pub uri: String,
    pub version: http::Version,
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

pub struct HttpUpstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<SeenRequest>>>,
    pub conns: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HttpUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpUpstream {
    /// An upstream named `name`, speaking HTTP/2 (prior knowledge) if `h2`.
    ///
    /// Paths: `/status/N` answers N; `/slow/MS` answers after MS ms;
    /// `/big-header/N` answers with an `x-big` header N bytes long; `/reset`
    /// drops the connection without an answer; `/bytes/N` answers N bytes; `/stream/N` streams N chunks;
    /// `/trailers` answers with trailers; `/ws` upgrades and echoes bytes;
    /// anything else answers 200 `name`, echoing the body length.
    pub async fn start(name: &'static str, h2: bool) -> HttpUpstream {
        let l = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        HttpUpstream::start_on(l, name, h2)
    }

    /// As [`HttpUpstream::start`], on a listener already bound (a host
    /// that comes back on the same address: binding the address again can
    /// fail while another test's connection holds it as its local port).
    pub fn start_on(l: TcpListener, name: &'static str, h2: bool) -> HttpUpstream {
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let conns = Arc::new(AtomicUsize::new(0));
        let (s2, c2) = (seen.clone(), conns.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = l.accept().await else { return };
                c2.fetch_add(1, Ordering::SeqCst);
                let seen = s2.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(name, seen.clone(), req));
                    let io = TokioIo::new(sock);
                    if h2 {
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .max_header_list_size(1 << 20)
                            .serve_connection(io, svc)
                            .await;
                    } else {
                        let _ =
                            hyper::server::conn::http1::Builder::new().serve_connection(io, svc).with_upgrades().await;
                    }
                });
            }
        });
        HttpUpstream { addr, seen, conns, task }
    }

    pub fn seen(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }
}

fn boxed(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

async fn handle(
    name: &'static str,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Box<dyn std::error::Error + Send + Sync>> {
    let path = req.uri().path().to_string();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let (method, uri, version) = (req.method().to_string(), req.uri().to_string(), req.version());
    let upgrade = if path == "/ws" { Some(hyper::upgrade::on(&mut req)) } else { None };
    // Count the body as it streams: never hold it whole.
    let mut body = req.into_body();
    let mut body_len = 0usize;
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame?.into_data() {
            body_len += d.len();
        }
    }
    seen.lock().unwrap().push(SeenRequest { method, uri, version, headers, body_len });
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let resp = match (parts.next().unwrap_or(""), parts.next()) {
        ("status", Some(n)) => {
            let mut r = Response::new(boxed(format!("{name} status {n}")));
            *r.status_mut() = StatusCode::from_u16(n.parse().unwrap_or(500)).unwrap();
            r
        }
        ("slow", Some(ms)) => {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(1000))).await;
            Response::new(boxed(format!("{name} slow")))
        }
        ("reset", _) => return Err("reset on purpose".into()),
        ("big-header", Some(n)) => {
            let mut r = Response::new(boxed(format!("{name} big header")));
            r.headers_mut().insert("x-big", "a".repeat(n.parse().unwrap_or(20_000)).parse().unwrap());
            r
        }
        ("bytes", Some(n)) => Response::new(boxed(vec![b'b'; n.parse().unwrap_or(1024)])),
        ("stream", Some(n)) => {
            let n: usize = n.parse().unwrap_or(10);
            let stream = futures_stream(n);
            Response::new(StreamBody::new(stream).boxed())
        }
        ("trailers", _) => {
            let mut t = http::HeaderMap::new();
            t.insert("grpc-status", "0".parse().unwrap());
            t.insert("x-trailer", "yes".parse().unwrap());
            let frames = vec![Ok(Frame::data(Bytes::from_static(b"with trailers"))), Ok(Frame::trailers(t))];
            Response::new(StreamBody::new(VecStream(frames.into())).boxed())
        }
        ("ws", _) => {
            let on = upgrade.unwrap();
            tokio::spawn(async move {
                if let Ok(up) = on.await {
                    let mut io = TokioIo::new(up);
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            let mut r = Response::new(boxed(Bytes::new()));
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut().insert("upgrade", "websocket".parse().unwrap());
            r.headers_mut().insert("connection", "upgrade".parse().unwrap());
            r
        }
        _ => Response::new(boxed(format!("{name} got {body_len}"))),
    };
    let mut resp = resp;
    resp.headers_mut().insert("x-server", name.parse().unwrap());
    Ok(resp)
}

type FrameResult = Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>;

/// A stream of frames from a list.
struct VecStream(std::collections::VecDeque<FrameResult>);

impl futures_like::Stream for VecStream {
    type Item = FrameResult;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<FrameResult>> {
        std::task::Poll::Ready(self.0.pop_front())
    }
}

fn futures_stream(n: usize) -> impl futures_like::Stream<Item = FrameResult> {
    VecStream((0..n).map(|i| Ok(Frame::data(Bytes::from(format!("chunk{i};"))))).collect())
}

/// `StreamBody` takes a `futures_core::Stream`; re-export it under a short name.
mod futures_like {
    pub use futures_core::Stream;
}

/// Sends raw bytes and returns everything the server sends back before it
/// closes or goes quiet for `quiet`.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], quiet: Duration) -> (String, bool) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut closed = false;
    loop {
        match tokio::time::timeout(quiet, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// The status code of the first response in `raw`, if any.
pub fn first_status(raw: &str) -> Option<u16> {
    raw.strip_prefix("HTTP/1.1 ").or_else(|| raw.strip_prefix("HTTP/1.0 "))?.get(..3)?.parse().ok()
}

/// A config with one HTTP listener on `port` (`downstream`, `upstream`
/// protocols) sending every path to cluster `c` of `hosts`.
pub fn proxy_config(port: u16, downstream: &str, upstream: &str, hosts: &[SocketAddr]) -> serde_json::Value {
    serde_json::json!({
        "servers": [{
            "default_log_level": "WARN",
            "routers": [{"router_config_name": "web", "virtual_hosts": [{"name": "all", "domains": ["*"],
                "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "c"}}]}]}],
            "listeners": [{
                "name": "http", "address": format!("127.0.0.1:{port}"), "bind_port": true,
                "filter_chains": [{"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": downstream, "upstream_protocol": upstream, "router_config_name": "web"
                }}]}]
            }]
        }],
        "cluster_manager": {"clusters": [{"name": "c", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
            "connect_timeout": "2s", "hosts": hosts.iter().map(|h| serde_json::json!({"address": h.to_string()})).collect::<Vec<_>>()}]}
    })
}
