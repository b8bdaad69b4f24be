//! The HTTP request path: one hyper server connection per client, and for each
//! request: checks against smuggling → route → cluster → host → upstream
//! request (rewrites, header operations, hop-by-hop headers removed,
//! `x-forwarded-*`, `x-request-id`) → tries with the route's retry policy →
//! the response streamed back. Bodies stream both ways with hyper's
//! back-pressure; nothing is buffered whole, except a small request body
//! (≤ 64 KiB, known length) kept so that a retry can send it again.
//!
//! Failures are answered in the client's terms: an HTTP status, or, for a
//! gRPC request, a trailers-only gRPC response with `grpc-status` (14
//! UNAVAILABLE, 4 DEADLINE_EXCEEDED, 12 UNIMPLEMENTED for no route).
//!
//! Timeouts bound the wait for the response headers (route `timeout`, cut to
//! the client's `grpc-timeout` if shorter, and the per-try `retry_timeout`); a response that
//! has started streams for as long as both sides keep it going, so long gRPC
//! streams are not cut.

use std::cell::Cell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::network::clock;
use crate::network::transport::Transport;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::deadline::{self, BodyClock, Deadline};
use super::head_timer::{HeadTimer, Reads};
use super::headers::{self, Framing, HostRule, Rules};
use super::tries::{Next, Tries};
use super::{ListenerCtx, WorkerCtx};
use crate::accesslog::Entry;
use crate::config::DEFAULT_ROUTE_TIMEOUT;
use crate::error::ProxyError;
use crate::network::conn::WriteDeadline;
use crate::network::counted::Counted;
use crate::network::prefixed::Prefixed;
use crate::network::tunnel::{self, Ended};
use crate::protocol::http::{
    drop_h2c_upgrade, grpc_error_status, grpc_timeout, is_grpc, is_upgrade, strip_hop_by_hop, validate_request,
    MAX_HEADER_COUNT, MAX_HEAD_BYTES,
};
use crate::protocol::Protocol;
use crate::router::{HttpActions, Redirect, RetryOn, RouteEntry, RouteInput, Target};
use crate::stream::http::{h2, raw};
use crate::stream::http::{Body, BoxError, HttpPool, SendError, Version};
use hyper::body::Body as _;

/// Request bodies up to this size (with a known length) are held whole: kept
/// for retries here, and the largest the HTTP/1.1 pass-through forwards.
pub(super) const REPLAY_LIMIT: usize = 64 * 1024;

fn full(body: impl Into<Bytes>) -> Body {
    Body::new(Full::new(body.into()).map_err(|never| match never {}))
}

fn empty() -> Body {
    Body::new(Empty::new().map_err(|never| match never {}))
}

fn incoming(body: Incoming) -> Body {
    Body::new(body.map_err(|e| Box::new(e) as BoxError))
}

/// One client connection.
pub(super) struct ConnCtx {
    pub(super) listener: Rc<ListenerCtx>,
    pub(super) worker: Rc<WorkerCtx>,
    pub(super) peer: SocketAddr,
    /// The client's address as a header value, made once per connection.
    pub(super) peer_ip: HeaderValue,
    /// The client's address as text for the access log, made on first use.
    pub(super) peer_text: std::cell::OnceCell<Box<str>>,
    /// What the upstream speaks for requests of this connection.
    upstream: Version,
    active: Cell<u32>,
    last_active: Cell<Instant>,
    /// What the connection's TLS handshake proved (the client's identity).
    pub(super) tls: Option<std::sync::Arc<crate::tls::TlsInfo>>,
}

impl ConnCtx {
    /// The client's address as text (access logs).
    pub(super) fn peer_text(&self) -> &str {
        self.peer_text.get_or_init(|| self.peer.to_string().into())
    }
}

/// What an HTTP connection leaves to park: its socket, when it fell quiet,
/// and for HTTP/2 the state its next burst continues from.
pub type QuietHttp = (Transport, Instant, Option<Box<h2::Parked>>);

/// Serves an HTTP/1.x or HTTP/2 (prior knowledge) client connection.
/// `initial` holds bytes already read from it (detection over TLS), `resume`
/// the state of an HTTP/2 connection that was parked. Returns the connection
/// when it falls quiet between requests (the HTTP/1.1 pass-through) or
/// between bursts of streams (HTTP/2), for the caller to park. `linger`:
/// an HTTP/1.1 connection that calls often waits [`super::LINGER`] before it
/// parks rather than its usual 5 ms.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    stream: Transport,
    initial: bytes::BytesMut,
    peer: SocketAddr,
    proto: Protocol,
    listener: Rc<ListenerCtx>,
    worker: Rc<WorkerCtx>,
    resume: Option<Box<h2::Parked>>,
    linger: bool,
) -> Option<QuietHttp> {
    let downstream = if matches!(proto, Protocol::Http2) { Version::Http2 } else { Version::Http1 };
    let gen = listener.now();
    let upstream = match gen.spec.upstream {
        Some(Protocol::Http1) => Version::Http1,
        Some(Protocol::Http2) => Version::Http2,
        _ => downstream,
    };
    let ctx = Rc::new(ConnCtx {
        listener: listener.clone(),
        worker: worker.clone(),
        peer,
        peer_ip: HeaderValue::from_str(&peer.ip().to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown")),
        peer_text: std::cell::OnceCell::new(),
        upstream,
        active: Cell::new(0),
        last_active: Cell::new(Instant::now()),
        tls: stream.tls().cloned(),
    });
    if downstream == Version::Http2 {
        // Boxed, like hyper's below: it would otherwise size every
        // pass-through connection too.
        return Box::pin(serve_h2(stream, initial, ctx, resume))
            .await
            .map(|(s, parked, since)| (s, since, Some(parked)));
    }
    // The common HTTP/1.1 request takes the pass-through; the first one it
    // leaves alone hands the connection to hyper from there on.
    let (stream, read) = if upstream == Version::Http1 && gen.spec.http1_passthrough {
        let grace = if linger { super::LINGER } else { super::http1::PARK_GRACE };
        match super::http1::serve(stream, initial, &ctx, grace).await {
            super::http1::Outcome::Closed => return None,
            super::http1::Outcome::Quiet(stream, since) => return Some((stream, since, None)),
            super::http1::Outcome::Hyper(stream, read) => (stream, read),
        }
    } else {
        (stream, initial)
    };
    // Boxed: hyper's connection state would otherwise size every
    // pass-through connection too.
    if let Err(e) = Box::pin(serve_hyper(stream, read, ctx)).await {
        debug!(%peer, error = %e, "client HTTP connection ended with an error");
    }
    None
}

/// Serves an HTTP/2 connection on our own frame layer (`stream::http::h2`).
async fn serve_h2(
    stream: Transport,
    read: bytes::BytesMut,
    ctx: Rc<ConnCtx>,
    resume: Option<Box<h2::Parked>>,
) -> Option<(Transport, Box<h2::Parked>, Instant)> {
    let gen = ctx.listener.now();
    let limits = h2::Limits {
        max_concurrent: 1024,
        stream_window: H2_STREAM_WINDOW,
        conn_window: H2_CONN_WINDOW,
        // As large as an HTTP/1.1 head may be; `validate_request` then holds
        // the header section to MAX_HEADER_BYTES, as for HTTP/1.1.
        max_header_list: MAX_HEAD_BYTES,
        header_table: 4096,
    };
    let conf = h2::ServerConf { limits, idle: gen.spec.idle_timeout, bytes: ctx.listener.hyper_bytes.clone() };
    drop(gen);
    let svc_ctx = ctx.clone();
    let service = move |req| handle(svc_ctx.clone(), req, true);
    let (drained, draining) = (ctx.listener.drain_watch(), ctx.listener.draining());
    h2::serve(stream, read, conf, service, drained, draining, resume, Instant::now()).await
}

/// Receive windows of a client HTTP/2 connection: what a client may send
/// before the request body is read upstream.
const H2_STREAM_WINDOW: u32 = 256 * 1024;
const H2_CONN_WINDOW: u32 = 1024 * 1024;

/// Serves the rest of an HTTP/1.x connection with hyper; `read` holds the
/// bytes already read from it.
async fn serve_hyper(stream: Transport, read: bytes::BytesMut, ctx: Rc<ConnCtx>) -> Result<(), hyper::Error> {
    let svc_ctx = ctx.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let ctx = svc_ctx.clone();
        let req = req.map(incoming);
        // Boxed: the request path's future is kilobytes, and unboxed it
        // would be moved with, and size, hyper's dispatch future.
        async move { Ok::<_, Infallible>(Box::pin(handle(ctx, req, false)).await) }
    });
    let gen = ctx.listener.now();
    let spec = &gen.spec;
    let idle = spec.idle_timeout;
    let drain = ctx.listener.drain_watch();
    tokio::pin!(drain);
    // The header-read time counts from a head's first byte, not through the
    // keep-alive wait before it (`head_timer`).
    let reads = Reads::default();
    let stream =
        Counted::new(WriteDeadline::new(stream, ctx.peer, "HTTP/1.1 client"), ctx.listener.hyper_bytes.clone());
    let io = Prefixed::new(read, stream).on_bytes({
        let reads = reads.clone();
        move || reads.note()
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(HeadTimer { reads })
        .header_read_timeout(spec.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADER_COUNT)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    drive(conn.as_mut(), &ctx, drain.as_mut(), idle, |c| c.graceful_shutdown()).await
}

/// Drives a hyper server connection; shuts it down gracefully on drain or
/// after `idle` with no request in flight.
async fn drive<C, F>(
    mut conn: std::pin::Pin<&mut C>,
    ctx: &ConnCtx,
    mut drain: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    idle: Duration,
    shutdown: F,
) -> Result<(), hyper::Error>
where
    C: std::future::Future<Output = Result<(), hyper::Error>>,
    F: Fn(std::pin::Pin<&mut C>),
{
    let mut closing = ctx.listener.draining();
    if closing {
        // Draining already: hyper would close a connection it has read
        // nothing from yet, so it first takes in the request the
        // pass-through may have handed over; that one is answered (with
        // `connection: close`), as on the pass-through.
        let first = std::future::poll_fn(|cx| std::task::Poll::Ready(conn.as_mut().poll(cx))).await;
        if let std::task::Poll::Ready(r) = first {
            return r;
        }
        shutdown(conn.as_mut());
    }
    let tick = tokio::time::sleep(idle);
    tokio::pin!(tick);
    loop {
        tokio::select! {
            // The connection first: drain and idle checks only matter when it is idle.
            biased;
            r = conn.as_mut() => return r,
            _ = drain.as_mut(), if !closing => {
                closing = true;
                shutdown(conn.as_mut());
            }
            _ = tick.as_mut(), if !closing => {
                let due = ctx.last_active.get() + idle;
                if ctx.active.get() == 0 && Instant::now() >= due {
                    debug!(peer = %ctx.peer, "closing idle client HTTP connection");
                    closing = true;
                    shutdown(conn.as_mut());
                } else {
                    tick.as_mut().reset(due.max(Instant::now() + Duration::from_millis(10)));
                }
            }
        }
    }
}

/// A request of a connection in flight, counted on its connection and its
/// listener until dropped: also when the request's future is dropped
/// unfinished (an HTTP/2 stream reset, a client gone), or the connection
/// would never count as idle again, and the listener's `requests_active`
/// would only grow.
struct Busy<'c>(&'c ConnCtx);

impl<'c> Busy<'c> {
    fn new(ctx: &'c ConnCtx) -> Busy<'c> {
        ctx.active.set(ctx.active.get() + 1);
        ctx.last_active.set(clock::now());
        ctx.listener.stats.requests_active.inc();
        Busy(ctx)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get().saturating_sub(1));
        self.0.last_active.set(clock::now());
        self.0.listener.stats.requests_active.dec();
    }
}

async fn handle(ctx: Rc<ConnCtx>, req: Request<Body>, h2_server: bool) -> Response<Body> {
    let busy = Busy::new(&ctx);
    let started = clock::now().into_std();
    let stats = &ctx.worker.stats;
    let grpc = is_grpc(req.headers());
    let h1 = req.version() != http::Version::HTTP_2;
    let [h1_slot, h2_slot, grpc_slot] = crate::stats::http_slots();
    let (protocol, slot) = if grpc {
        ("grpc", grpc_slot)
    } else if h1 {
        ("http1", h1_slot)
    } else {
        ("http2", h2_slot)
    };
    stats.count_request(slot);
    let lstats = &ctx.listener.stats;
    lstats.requests.inc();
    let received = if ctx.listener.logs() {
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0)
    } else {
        0
    };
    let mut failed = None;
    let http10 = req.version() == http::Version::HTTP_10;
    let with_body = h1 && !req.body().is_end_stream();
    let (mut resp, route_ops) = match forward(&ctx, req, grpc, h2_server).await {
        Ok(pair) => pair,
        Err(err) => {
            stats.count_error(&err);
            failed = Some(err.label());
            let mut resp = error_response(&err, grpc);
            // Framing can no longer be trusted, or a body may be left unread
            // (hyper then closes the connection after the answer): the
            // client is told that nothing more is read on this connection.
            if h1 && (with_body || matches!(err, ProxyError::Malformed { .. })) {
                resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            (resp, None)
        }
    };
    if http10 && resp.body().size_hint().exact().is_none() && !resp.headers().contains_key(header::CONTENT_LENGTH) {
        // An HTTP/1.0 client cannot read chunks: the body ends with the
        // connection. hyper announces a kept-alive connection to a 1.0
        // client unless the answer is a 1.0 one without keep-alive, which
        // it closes after the answer.
        *resp.version_mut() = http::Version::HTTP_10;
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Some(entry) = route_ops {
        for name in &entry.http().response_remove {
            resp.headers_mut().remove(name);
        }
        add_headers(resp.headers_mut(), &entry.http().response_add);
    }
    ctx.listener.log(|| {
        let duration = started.elapsed();
        // A raw answer's fields are in its body, which knows its length.
        let sent = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .or_else(|| resp.body().size_hint().exact());
        Entry {
            start: started,
            duration,
            request_sent: None,
            protocol,
            request_id: None,
            upstream: None,
            cluster: None,
            status: resp.status().as_u16(),
            error: failed,
            bytes_received: received,
            bytes_sent: sent.unwrap_or(0),
            downstream_remote: ctx.peer_text(),
            downstream_local: None,
            tls: ctx.tls.as_deref(),
        }
    });
    drop(busy);
    resp
}

fn add_headers(h: &mut HeaderMap, list: &[crate::router::AddHeader]) {
    for a in list {
        if a.append {
            h.append(a.name.clone(), a.value.clone());
        } else {
            h.insert(a.name.clone(), a.value.clone());
        }
    }
}

/// A proxy failure in the client's terms.
fn error_response(err: &ProxyError, grpc: bool) -> Response<Body> {
    if grpc {
        let message = err.client_message();
        // Trailers-only: the status rides in the headers of an empty 200.
        let mut resp = Response::new(empty());
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        h.insert("grpc-status", HeaderValue::from(grpc_error_status(err)));
        if let Ok(v) = HeaderValue::from_str(&message) {
            h.insert("grpc-message", v);
        }
        return resp;
    }
    let crate::protocol::http::HttpError { status, labelled, body } = crate::protocol::http::http_error(err);
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    if labelled {
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        resp.headers_mut().insert("x-ferrymesh-error", HeaderValue::from_static(err.label()));
    }
    resp
}

/// Host (without port) of a request: the URI authority, else the Host header.
fn request_host<'r>(uri: &'r Uri, headers: &'r HeaderMap) -> Option<&'r str> {
    let raw = match uri.authority() {
        Some(a) => without_userinfo(a),
        None => headers.get(header::HOST)?.to_str().ok()?,
    };
    Some(strip_port(raw))
}

/// An authority without the `user:password@` an absolute-form target may
/// carry: credentials never become a Host (RFC 9112 §3.2.2).
fn without_userinfo(a: &http::uri::Authority) -> &str {
    let s = a.as_str();
    // A byte loop: an authority is a few dozen bytes, and `rsplit_once`'s
    // `memrchr` cost 150 instructions on one (an h2c request reads it twice).
    match s.bytes().rposition(|b| b == b'@') {
        // '@' is ASCII, so the byte after it starts a char.
        Some(at) => &s[at + 1..],
        None => s,
    }
}

pub(super) fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| h).trim_start_matches('[');
    }
    // A run of digits at the end, after a colon, is a port. Read from the
    // end a byte at a time: `rsplit_once` searched the whole host for the
    // colon (150 instructions of an HTTP/1.1 request's 12,800).
    let b = host.as_bytes();
    let digits = b.iter().rev().take_while(|c| c.is_ascii_digit()).count();
    match b.len().checked_sub(digits + 1) {
        // The colon is ASCII, so cutting before it is a char boundary.
        Some(colon) if b[colon] == b':' => &host[..colon],
        _ => host,
    }
}

/// Route, then send with retries. Returns the response and the route whose
/// response header operations still apply.
/// `h2_server`: the request came to our HTTP/2 server, which takes a raw
/// answer's head fields as they came (`raw::RawFields`); hyper's server
/// needs them in the response's `HeaderMap`.
async fn forward(
    ctx: &Rc<ConnCtx>,
    mut req: Request<Body>,
    grpc: bool,
    h2_server: bool,
) -> Result<(Response<Body>, Option<Arc<RouteEntry>>), ProxyError> {
    if let Err(why) = validate_request(&req) {
        info!(peer = %ctx.peer, reason = why.0, status = why.1, "malformed request refused");
        return Err(ProxyError::Malformed { status: why.1, reason: why.0 });
    }
    // Taken while the request is whole (a request not forwarded drops it,
    // and with it the upgrade).
    let upgrade = is_upgrade(&req) && drop_h2c_upgrade(req.headers_mut());
    let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let host = request_host(&parts.uri, &parts.headers);
    // The generation this request lives in, to its end.
    let gen = ctx.listener.now();
    let table = &gen.spec.router;
    let idle = gen.spec.stream_idle_timeout;
    let route: Arc<RouteEntry> = {
        let method = parts.method.as_str();
        let path = parts.uri.path();
        let headers = &parts.headers;
        let host_ref = host;
        let header = |name: &str| -> Option<&[u8]> {
            match name {
                ":method" => Some(method.as_bytes()),
                ":authority" => host_ref.map(str::as_bytes),
                ":path" => Some(path.as_bytes()),
                other => headers.get(other).map(HeaderValue::as_bytes),
            }
        };
        let input = RouteInput { host: host_ref, path: Some(path), query: parts.uri.query(), header: &header };
        match table.find(&input) {
            Some(entry) => entry.clone(),
            None => {
                debug!(peer = %ctx.peer, host = ?host, path = %path, "no route");
                return Err(ProxyError::NoRoute);
            }
        }
    };
    let entry = &*route;
    match &entry.target {
        Target::Direct { status, body } => {
            return Err(ProxyError::DirectResponse { status: *status, body: body.clone() });
        }
        Target::Redirect(r) => return Ok((redirect(&parts, host, r), Some(route.clone()))),
        _ => {}
    }
    let Some(cluster) = entry.choose_cluster().map(|i| gen.clusters[i].clone()) else {
        return Err(ProxyError::NoRoute);
    };
    // A gRPC client's deadline may shorten the route's timeout, never extend it.
    let route_timeout = entry.timeout.unwrap_or(DEFAULT_ROUTE_TIMEOUT);
    let client_timeout = grpc.then(|| grpc_timeout(&parts.headers)).flatten();
    let timeout = client_timeout.map_or(route_timeout, |client| client.min(route_timeout));
    let arrived = clock::now();
    let deadline = arrived + timeout;
    let grpc_deadline = client_timeout.map(|t| arrived + t);

    let hash_key = entry.hash_header.as_deref().and_then(|h| parts.headers.get(h)).map(|v| v.as_bytes().to_vec());

    // A small body of known length is kept so a retry can send it again.
    // A body already at its end needs no length looked up (most requests:
    // HTTP/2 refuses a stream that ends short of its Content-Length, and
    // hyper's body ends early only at a length of 0).
    let ended = body.is_end_stream();
    let length = if ended {
        None
    } else {
        parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    };
    let version = parts.version;
    let no_body = ended || length == Some(0);
    let replayable = !entry.retry.on.is_empty() && (no_body || length.is_some_and(|l| l <= REPLAY_LIMIT as u64));
    let mut body_clock = None;
    let mut body = Some(if replayable && !no_body {
        let bytes = body
            .collect()
            .await
            .map_err(|e| {
                debug!(error = %e, "malformed request body refused");
                ProxyError::Malformed { status: 400, reason: "malformed body" }
            })?
            .to_bytes();
        ReqBody::Replay(bytes)
    } else if no_body {
        ReqBody::Replay(Bytes::new())
    } else {
        // A streamed body's end starts the route's timeout (`deadline`).
        let clock = Rc::new(BodyClock::new(idle));
        let streamed = deadline::watched(first_frame_checked(body, version).await?, clock.clone());
        body_clock = Some(clock);
        ReqBody::Stream(streamed)
    });

    // A request whose whole body is in hand goes to an HTTP/1.1 upstream on a
    // raw pooled connection (`stream::http::raw`, the pass-through's), its
    // bytes written straight from the client's head: no hyper client task,
    // no dispatch channel, no upstream `HeaderMap`. Streaming bodies and
    // upgrades stay on hyper's client.
    let raw_request = match &body {
        Some(ReqBody::Replay(b)) if ctx.upstream == Version::Http1 && !upgrade => {
            Some(raw_request_bytes(ctx, &parts, entry.http(), host, b))
        }
        _ => None,
    };
    // For hyper's client, the head is built once (so every try carries the
    // same x-request-id, and a head that cannot be built fails before any
    // dial) and cloned while another try may need it.
    let mut upstream_head = match raw_request {
        None => Some(upstream_request(ctx, &parts, entry, host, upgrade)?),
        Some(_) => None,
    };
    if raw_request.is_some() {
        // Written out: the client's fields go back to the worker.
        crate::stream::http::header_maps::give(std::mem::take(&mut parts.headers));
    }
    let idempotent = parts.method.is_idempotent();
    let head_request = parts.method == http::Method::HEAD;
    // The HTTP/2 server encodes a raw answer's head fields as they came,
    // unless the route edits them (its response header operations work on a
    // `HeaderMap`).
    let raw_head = h2_server && entry.http().response_remove.is_empty() && entry.http().response_add.is_empty();
    let mut downstream_upgrade = downstream_upgrade;

    let mut tries = Tries::new(entry, &cluster, hash_key.as_deref(), deadline);
    let mut last_err = ProxyError::NoHealthyHost;
    loop {
        let h = match tries.next().await {
            Next::Host(h) => h,
            Next::NoHost => return Err(ProxyError::NoHealthyHost),
            Next::Over => break,
        };
        let pool = cluster.http_pools[h].clone();
        let try_started = clock::now();
        let try_deadline = tries.try_deadline();
        // Once the request is sent, only a retry policy or a per-try timeout retries.
        let policy_retries = !tries.policy.on.is_empty() || tries.policy.per_try_timeout.is_some();
        let (sent, can_retry) = if let Some(request) = &raw_request {
            let in_flight = pool.host().in_flight();
            let sent =
                deadline::by(try_deadline, raw_exchange(&pool, request, idempotent, head_request, raw_head, idle))
                    .await;
            drop(in_flight);
            (sent, tries.more_left() && policy_retries)
        } else {
            let dialled = match pool.ready_now(ctx.upstream) {
                Some(s) => Ok(Ok(s)),
                None => tokio::time::timeout_at(try_deadline, Box::pin(pool.connect(ctx.upstream))).await,
            };
            let sender = match dialled {
                Err(_) => {
                    last_err = ProxyError::Timeout;
                    continue;
                }
                Ok(Err(e)) => {
                    let why = e.why();
                    warn!(peer = %ctx.peer, upstream = %pool.host().addr, error = %why, "upstream connect failed");
                    last_err = ProxyError::ConnectFailed(why);
                    // The request never left: another host is always worth a try.
                    continue;
                }
                Ok(Ok(s)) => s,
            };
            let req_body = match body.take() {
                Some(ReqBody::Replay(b)) => {
                    body = Some(ReqBody::Replay(b.clone()));
                    if b.is_empty() {
                        empty()
                    } else {
                        full(b)
                    }
                }
                Some(ReqBody::Stream(s)) => s,
                None => break,
            };
            let can_retry = body.is_some() && tries.more_left() && policy_retries;
            // A copy of the head stays for another try whenever the body is in
            // hand: a stream the upstream refuses unprocessed goes again
            // whatever the retry policy.
            let keep_head = body.is_some();
            let head = if keep_head { upstream_head.as_ref().map(clone_head) } else { upstream_head.take() };
            let Some(head) = head else { break };
            let upstream_req = Request::from_parts(head, req_body);
            let in_flight = pool.host().in_flight();
            let wait = match &body_clock {
                Some(clock) => Deadline::AfterBody {
                    clock: clock.clone(),
                    timeout: tries.policy.per_try_timeout.map_or(route_timeout, |t| t.min(route_timeout)),
                    hard: grpc_deadline,
                },
                None => Deadline::At(try_deadline),
            };
            // Boxed: hyper's send is 8 KiB of state that the raw path's
            // requests would otherwise carry and copy too.
            let sent = wait.wait(Box::pin(pool.send(sender, upstream_req))).await;
            drop(in_flight);
            let upstream = pool.host().addr;
            let sent =
                sent.map(|r| r.map(|resp| downstream_response(resp, &mut downstream_upgrade, ctx, upstream, idle)));
            (sent, can_retry)
        };
        match sent {
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                pool.host().record_response(status, try_started.elapsed());
                if can_retry && tries.policy.retry_status(status) {
                    debug!(peer = %ctx.peer, upstream = %pool.host().addr, status, "retrying on status");
                    last_err = ProxyError::DirectResponse { status, body: String::new() };
                    continue;
                }
                ctx.worker.stats.count_response(if status >= 500 { 500 } else { 200 });
                return Ok((resp, Some(route.clone())));
            }
            Ok(Err(SendError::Connect(why))) => {
                warn!(peer = %ctx.peer, upstream = %pool.host().addr, error = %why, "upstream connect failed");
                last_err = ProxyError::ConnectFailed(why);
                pool.host().record_failure(&last_err);
                // A head that went with a try (no retry was planned) has no
                // copy left for another.
                if raw_request.is_none() && upstream_head.is_none() {
                    break;
                }
            }
            Ok(Err(SendError::Refused(why))) => {
                // RFC 9113 §8.7: not processed, so safe to send again, like a
                // failed connect.
                debug!(peer = %ctx.peer, upstream = %pool.host().addr, error = %why, "upstream refused the stream unprocessed");
                last_err = ProxyError::UpstreamReset;
                if upstream_head.is_none() || body.is_none() || !tries.refused() {
                    break;
                }
            }
            Ok(Err(SendError::Reset(_))) if body_clock.as_ref().is_some_and(|c| c.failed()) => {
                // The client's body broke mid-stream (hyper's client reports
                // it as the exchange's failure): the client's fault, not the
                // upstream's, and not worth another try.
                info!(peer = %ctx.peer, upstream = %pool.host().addr, "malformed request body: request abandoned");
                return Err(ProxyError::Malformed { status: 400, reason: "malformed body" });
            }
            Ok(Err(SendError::Reset(why))) => {
                warn!(peer = %ctx.peer, upstream = %pool.host().addr, error = %why, "upstream reset");
                last_err = ProxyError::UpstreamReset;
                pool.host().record_failure(&last_err);
                if !(can_retry && tries.policy.on.contains(RetryOn::RESET)) {
                    break;
                }
            }
            Err(_) => {
                last_err = ProxyError::Timeout;
                pool.host().record_failure(&last_err);
                if !(can_retry && tries.timed_out_per_try()) {
                    break;
                }
            }
        }
    }
    Err(exhausted(last_err))
}

/// The error of a request whose tries are all spent: the last try's, and a
/// status the policy retried that stayed bad is passed on as the upstream's.
pub(super) fn exhausted(last_err: ProxyError) -> ProxyError {
    match last_err {
        ProxyError::DirectResponse { status, .. } => {
            ProxyError::DirectResponse { status, body: format!("upstream answered {status} on every try\n") }
        }
        e => e,
    }
}

enum ReqBody {
    Replay(Bytes),
    Stream(Body),
}

/// A chunked HTTP/1.1 body is read up to its first chunk before anything is
/// forwarded, so that a malformed chunk size is refused with 400 and never
/// reaches the upstream. Other bodies stream as they come.
async fn first_frame_checked(body: Body, version: http::Version) -> Result<Body, ProxyError> {
    if version != http::Version::HTTP_11 || body.size_hint().exact().is_some() {
        return Ok(body);
    }
    let mut body = body;
    match body.frame().await {
        None => Ok(empty()),
        Some(Err(e)) => {
            debug!(error = %e, "malformed request body refused");
            Err(ProxyError::Malformed { status: 400, reason: "malformed body" })
        }
        Some(Ok(frame)) => Ok(Body::new(Prepend { first: Some(frame), rest: body })),
    }
}

/// A body whose first frame was already read (to check it) and is put back.
struct Prepend {
    first: Option<hyper::body::Frame<Bytes>>,
    rest: Body,
}

impl hyper::body::Body for Prepend {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        if let Some(f) = self.first.take() {
            return std::task::Poll::Ready(Some(Ok(f)));
        }
        std::pin::Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }
}

/// A copy of a request head, for a try that may be followed by another.
fn clone_head(head: &http::request::Parts) -> http::request::Parts {
    let mut req = Request::new(());
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = head.uri.clone();
    *req.version_mut() = head.version;
    *req.headers_mut() = head.headers.clone();
    req.into_parts().0
}

/// A `HeaderMap` entry as the header rules take it.
fn pair<'a>((name, value): (&'a http::HeaderName, &'a HeaderValue)) -> (&'a str, &'a [u8]) {
    (name.as_str(), value.as_bytes())
}

/// What an HTTP/1.1 upstream gets as `Host`: the route's rewrite; else an
/// absolute-form target's or HTTP/2's authority, which wins over any Host
/// header (RFC 9112 §3.2.2); else the client's Host; else the routed host.
fn http1_host<'a>(parts: &'a http::request::Parts, http: &'a HttpActions, host: Option<&'a str>) -> HostRule<'a> {
    if let Some(h) = headers::route_host(http) {
        return HostRule::Set(h.as_bytes());
    }
    match parts.uri.authority() {
        Some(a) => HostRule::Set(without_userinfo(a).as_bytes()),
        None if parts.headers.contains_key(header::HOST) => HostRule::AsSent,
        None => HostRule::Set(host.unwrap_or("localhost").as_bytes()),
    }
}

/// The HTTP/1.1 bytes of a request whose whole body is in hand, for a raw
/// upstream connection.
fn raw_request_bytes(
    ctx: &ConnCtx,
    parts: &http::request::Parts,
    http: &HttpActions,
    host: Option<&str>,
    body: &[u8],
) -> raw::spare::RequestBuf {
    let rules = Rules {
        http,
        method: parts.method.as_str(),
        peer_ip: ctx.peer_ip.as_bytes(),
        host: http1_host(parts, http, host),
        framing: Framing::Whole(body.len()),
        upgrade: false,
        join_cookies: true,
    };
    let mut out = raw::spare::RequestBuf::take(512 + body.len());
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    headers::write_request_head(&mut out, target, || parts.headers.iter().map(pair), &rules);
    out.extend_from_slice(body);
    out
}

/// The request head for hyper's client, made from the client's.
fn upstream_request(
    ctx: &ConnCtx,
    parts: &http::request::Parts,
    entry: &RouteEntry,
    host: Option<&str>,
    upgrade: bool,
) -> Result<http::request::Parts, ProxyError> {
    let http = entry.http();
    let pq = match headers::upstream_target(http, parts.uri.path_and_query().map_or("/", |p| p.as_str())) {
        ("", _) => parts.uri.path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        (front, rest) => format!("{front}{rest}").parse().map_err(|_| ProxyError::Codec)?,
    };
    let (host_rule, uri, version) = match ctx.upstream {
        Version::Http1 => (http1_host(parts, http, host), Uri::from(pq), http::Version::HTTP_11),
        Version::Http2 => {
            // The authority rides in the URI (`:authority`), never as Host.
            let authority = match headers::route_host(http) {
                Some(h) => h.to_str().map_err(|_| ProxyError::Codec)?.to_string(),
                None => parts
                    .uri
                    .authority()
                    .map(|a| without_userinfo(a).to_string())
                    .or_else(|| parts.headers.get(header::HOST).and_then(|v| v.to_str().ok()).map(str::to_string))
                    .or_else(|| host.map(str::to_string))
                    .unwrap_or_else(|| ctx.peer.to_string()),
            };
            let mut up = http::uri::Parts::default();
            up.scheme = Some(http::uri::Scheme::HTTP);
            up.authority = Some(authority.parse().map_err(|_| ProxyError::Codec)?);
            up.path_and_query = Some(pq);
            (HostRule::Drop, Uri::from_parts(up).map_err(|_| ProxyError::Codec)?, http::Version::HTTP_2)
        }
    };
    let rules = Rules {
        http,
        method: parts.method.as_str(),
        peer_ip: ctx.peer_ip.as_bytes(),
        host: host_rule,
        framing: Framing::AsSent,
        upgrade,
        join_cookies: ctx.upstream == Version::Http1,
    };
    let mut req = Request::new(());
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = headers::request_header_map(|| parts.headers.iter().map(pair), &rules)?;
    Ok(req.into_parts().0)
}

fn redirect(req: &http::request::Parts, host: Option<&str>, r: &Redirect) -> Response<Body> {
    let scheme = r.scheme.as_deref().unwrap_or("http");
    let host = r
        .host
        .as_deref()
        .or_else(|| req.headers.get(header::HOST).and_then(|v| v.to_str().ok()))
        .or(host)
        .unwrap_or("localhost");
    let path = match &r.path {
        Some(p) => p.clone(),
        None => req.uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
    };
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::from_u16(r.code).unwrap_or(StatusCode::MOVED_PERMANENTLY);
    if let Ok(v) = HeaderValue::from_str(&format!("{scheme}://{host}{path}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// The upstream response as the client gets it, its body cut should it make
/// no progress for `idle`; a 101 from `upstream` becomes a tunnel, cut when
/// nothing moves through it for `idle` (`network::tunnel`).
fn downstream_response(
    mut resp: Response<Incoming>,
    downstream_upgrade: &mut Option<hyper::upgrade::OnUpgrade>,
    ctx: &ConnCtx,
    upstream: std::net::SocketAddr,
    idle: Duration,
) -> Response<Body> {
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        if let Some(down) = downstream_upgrade.take() {
            let up = hyper::upgrade::on(&mut resp);
            let peer = ctx.peer;
            tokio::task::spawn_local(async move {
                match tokio::try_join!(down, up) {
                    Ok((down, up)) => match tunnel::relay(TokioIo::new(down), TokioIo::new(up), upstream, idle).await {
                        Ended::Closed { to_up, to_down } => debug!(%peer, %upstream, to_up, to_down, "tunnel closed"),
                        Ended::Idle => {
                            info!(%peer, %upstream, ?idle, "tunnel cut: nothing moved for the stream idle timeout")
                        }
                        // A write deadline's close is logged where it fires.
                        Ended::Failed(e) => debug!(%peer, %upstream, error = %e, "tunnel ended"),
                    },
                    Err(e) => warn!(%peer, error = %e, "upgrade failed"),
                }
            });
        }
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, switching);
    // The client hears its own HTTP version (hyper writes HTTP/1.1 or HTTP/2).
    parts.version = http::Version::default();
    Response::from_parts(parts, deadline::cut_when_idle(incoming(body), idle))
}

/// One try of a request whose whole body is in hand, on a raw HTTP/1.1
/// connection of `pool`.
/// With `raw_head`, the answer's head fields stay as they came, in its body
/// (`Body::with_fields`), for the HTTP/2 server to encode. A body still to
/// be read is cut should it make no progress for `idle`.
async fn raw_exchange(
    pool: &Rc<HttpPool>,
    request: &[u8],
    idempotent: bool,
    head_request: bool,
    raw_head: bool,
    idle: Duration,
) -> Result<Response<Body>, SendError> {
    // Borrowed from the worker's spares once the answer arrives (`raw::send`).
    let mut up = bytes::BytesMut::new();
    let ((head, facts), fields, conn) = if raw_head {
        let mut parse = |b: &[u8]| raw::response_raw(b, head_request);
        let ((head, fields), conn) = raw::send(pool, request, idempotent, &mut up, &mut parse).await?;
        (head, Some(fields), conn)
    } else {
        let mut parse = |b: &[u8]| raw::response_parts(b, head_request);
        let (head, conn) = raw::send(pool, request, idempotent, &mut up, &mut parse).await?;
        (head, None, conn)
    };
    let body = raw::RawBody::new(pool.clone(), conn, up, &facts);
    // Most answers came whole with their head: nothing to wait for.
    let reading = body.reading();
    let body = Body::with_fields(body, fields);
    Ok(head.map(|()| if reading { deadline::cut_when_idle(body, idle) } else { body }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_become_a_host() {
        let (parts, ()) = Request::get("http://user:pw@example.com:8080/x").body(()).unwrap().into_parts();
        let http = HttpActions::default();
        assert_eq!(http1_host(&parts, &http, None), HostRule::Set(b"example.com:8080"));
        let req = Request::get("http://user@example.com/").body(()).unwrap();
        assert_eq!(request_host(req.uri(), req.headers()), Some("example.com"));
    }

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "::1");
        // As `rsplit_once(':')` with an all-digit port read it.
        for (h, want) in
            [("h:", "h"), (":80", ""), ("a:b:80", "a:b"), ("a:8x", "a:8x"), ("80", "80"), ("", ""), ("é:1", "é")]
        {
            assert_eq!(strip_port(h), want, "{h:?}");
        }
    }
}
