//! HTTP/1.1 pass-through: the common HTTP/1.1 request proxied without
//! building hyper's messages.
//!
//! The client's head is parsed with httparse, checked, routed, and rewritten
//! straight into the bytes sent upstream (hop-by-hop headers dropped,
//! `x-forwarded-*` and `x-request-id`, the route's rewrites and header
//! operations); the upstream's head is rewritten the same way on its way back
//! and the body passes through unchanged, its end found from its framing so
//! that both connections are reused. A request costs two reads and two writes
//! and no allocation beyond the buffers a connection keeps.
//!
//! The decision a reader may question: this is a second HTTP/1.1 request path
//! beside hyper's (`super::http`). It handles only what it is sure of: an
//! HTTP/1.1 request with at most a 64 KiB body of known length, one Host, no
//! Transfer-Encoding, Upgrade or Expect, routed to a cluster that speaks
//! HTTP/1.1. Anything else (every malformed or ambiguous request, too) hands
//! the connection, with the bytes read so far, to hyper's path for the rest of
//! its life, so refusing requests, streaming, upgrades and conversion to
//! HTTP/2 stay written once. `http1_passthrough: false` on the listener's proxy
//! config turns this path off.

use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;

use crate::network::clock;
use crate::network::conn::WRITE_TIMEOUT;
use crate::network::tick::Tick;
use crate::network::transport::Transport;
use bytes::{Buf, BytesMut};
use httparse::Status;
use tokio::io::AsyncReadExt;

use crate::accesslog::Entry;
use crate::host::conn::HostConn;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::headers::{self, push_header, HostRule, Rules};
use super::http::{exhausted, strip_port, ConnCtx, REPLAY_LIMIT};
use super::tries::{Next, Tries};
use crate::config::DEFAULT_ROUTE_TIMEOUT;
use crate::error::ProxyError;
use crate::protocol::http::h1::{self, BodyCursor, ConnectionTokens, Framing, Name};
use crate::protocol::http::{http_error, valid_host, HttpError, MAX_HEADER_BYTES, MAX_HEAD_BYTES, MAX_URI_BYTES};
use crate::router::{HttpActions, RetryOn, RouteEntry, RouteInput, Target};
use crate::stream::http::raw::{self, Broken, Head, READ_SPACE};
use crate::stream::http::{HttpPool, SendError};
use crate::upstream::Cluster;

/// How long a connection waits for its next request before it parks. A
/// client sending one request after another (each within microseconds of
/// its answer) never pays for parking. The shorter it is, the fewer
/// connections are between two states at once when many arrive together,
/// and the less memory glibc keeps scattered after them: idle connections
/// held 776 bytes each at 20 ms, 586 at 5 (`bench/http_idle_mem.sh`).
/// A connection resumed soon after it parked waits `proxy::LINGER` instead.
pub(super) const PARK_GRACE: std::time::Duration = std::time::Duration::from_millis(5);
/// While requests keep coming, a connection looks at most this often whether
/// it has been waiting for its grace: under load its timer fires once
/// per check, not once per grace (64 busy connections' timers fired 12,800
/// times a second at 5 ms).
const BUSY_CHECK: std::time::Duration = std::time::Duration::from_millis(50);

/// How the pass-through left a connection.
pub(super) enum Outcome {
    /// Closed (by either side, a timeout, a drain, or a broken exchange).
    Closed,
    /// A request this path does not handle: the connection and the bytes read
    /// from it so far go to hyper.
    Hyper(Transport, BytesMut),
    /// Answered, and waiting for its next request for its grace with
    /// nothing owed: the caller may park it (`network::park`) until bytes
    /// arrive. With when it started waiting, from which its idle time runs.
    Quiet(Transport, Instant),
}

/// A request ready to go upstream, its head already rewritten into the
/// outgoing buffer.
struct Prepared {
    head_len: usize,
    body_len: usize,
    close: bool,
    head_method: bool,
    idempotent: bool,
    route: Arc<RouteEntry>,
    cluster: Rc<Cluster>,
    hash_key: Option<Vec<u8>>,
}

enum Prep {
    Ready(Prepared),
    NeedMore,
    Hyper,
}

/// The buffers of one exchange.
#[derive(Default)]
struct Bufs {
    /// The request as it goes upstream (kept whole for retries).
    req: Vec<u8>,
    /// The response head (and first body bytes) as it goes to the client.
    resp: Vec<u8>,
    /// Bytes read from the upstream: empty (no room) until the answer
    /// arrives.
    up: BytesMut,
}

/// Buffers are lent to a connection only while it has a request in hand, and
/// come back to the worker's spares when it goes idle: an idle HTTP/1.1
/// connection holds no buffer, as an idle bolt connection holds none.
mod spare {
    use super::Bufs;
    use crate::network::spares::{thread_spares, Spares};
    use crate::stream::http::raw;
    use crate::stream::http::raw::spare::{KEEP, MAX_KEPT};

    thread_spares! { static EXCHANGE: Bufs = KEEP; }

    #[inline]
    pub(super) fn bufs() -> Bufs {
        EXCHANGE.with(Spares::take).unwrap_or_default()
    }

    /// The upstream read buffer goes back on its own: `raw::send` borrows
    /// one only once the answer is there, so an exchange awaiting its
    /// upstream holds none.
    #[inline]
    pub(super) fn give_bufs(mut b: Bufs) {
        raw::spare::give(std::mem::take(&mut b.up));
        if b.req.capacity().max(b.resp.capacity()) <= MAX_KEPT {
            EXCHANGE.with(|e| e.give(b));
        }
    }
}

/// `buf` holds bytes already read from it (detection over TLS).
/// `grace`: how long an answered connection waits for its next request
/// before it parks ([`PARK_GRACE`], or `proxy::LINGER` for one that calls often).
/// Each wake-up reads the clock once ([`clock::per_poll`]): the times below
/// are [`clock::now`], the time of the bytes that woke it.
pub(super) fn serve(
    client: Transport,
    buf: BytesMut,
    ctx: &Rc<ConnCtx>,
    grace: std::time::Duration,
) -> clock::PerPoll<impl std::future::Future<Output = Outcome> + '_> {
    clock::per_poll(serve_requests(client, buf, ctx, grace))
}

async fn serve_requests(
    mut client: Transport,
    mut buf: BytesMut,
    ctx: &Rc<ConnCtx>,
    grace: std::time::Duration,
) -> Outcome {
    let listener = &ctx.listener;
    let gen = listener.now();
    let spec = &gen.spec;
    // The client's bytes: no buffer while the connection is idle.
    let mut drain = listener.drain_watch();
    let mut draining = listener.draining();
    // One timer for the connection, re-armed only when it fires, and never
    // further than the header-read time ahead: the deadline it checks is the
    // idle time while no request has started, the header-read time once a
    // head has, and the idle time again since the last bytes of a body.
    let mut tick = Tick::at(clock::now() + spec.idle_timeout.min(spec.header_read_timeout));
    let mut since = Since::new();
    let mut served = 0u64;
    // When to look next whether the connection has waited out its grace.
    let mut park_check: Option<Instant> = None;
    // Where to look for the end of the head from, and how many bytes the
    // request needs before it is looked at again (a head with a body still
    // coming): neither a head nor a body arriving a byte at a time is parsed
    // again for every byte.
    let mut scanned = 0;
    let mut need = 0;
    // When the last read came in, until a request it completed takes it as
    // its start (one clock read per request; a request pipelined behind
    // another reads the clock when its turn comes).
    let mut read_at: Option<Instant> = None;
    loop {
        if buf.len() >= need && has_head_end(&buf, scanned) {
            let mut bufs = spare::bufs();
            match prepare(ctx, &buf, &mut bufs.req) {
                Prep::Hyper => {
                    spare::give_bufs(bufs);
                    return Outcome::Hyper(client, buf);
                }
                Prep::NeedMore => {
                    spare::give_bufs(bufs);
                    scanned = buf.len().saturating_sub(3);
                }
                Prep::Ready(request) => {
                    let whole = request.head_len + request.body_len;
                    if buf.len() < whole {
                        spare::give_bufs(bufs);
                        need = whole;
                        since.body = clock::now();
                    } else {
                        bufs.req.extend_from_slice(&buf[request.head_len..whole]);
                        buf.advance(whole);
                        (scanned, need) = (0, 0);
                        served += 1;
                        let close = request.close;
                        let arrived = read_at.take().unwrap_or_else(clock::now);
                        let timer = ConnTimer { tick: &mut tick, step: spec.header_read_timeout };
                        let open = exchange(ctx, &mut client, request, &mut bufs, arrived, timer).await;
                        spare::give_bufs(bufs);
                        if buf.is_empty() {
                            raw::spare::give(std::mem::take(&mut buf));
                        }
                        if !open || close || listener.draining() {
                            return Outcome::Closed;
                        }
                        since = Since::new();
                        continue;
                    }
                }
            }
        } else if need == 0 {
            scanned = buf.len().saturating_sub(3);
        }
        if buf.len() >= MAX_HEAD_BYTES && need == 0 {
            // hyper answers an oversized head with 431.
            return Outcome::Hyper(client, buf);
        }
        // Draining: an idle connection closes; a new one still gets its
        // first request answered (with `connection: close`), as hyper does.
        if draining && buf.is_empty() && served > 0 {
            return Outcome::Closed;
        }
        let was_empty = buf.is_empty();
        // After its grace, a connection waiting for its next request parks.
        if served > 0 && park_check.is_none() {
            park_check = Some(since.waiting + grace);
        }
        if let Some(at) = park_check.filter(|at| !draining && buf.capacity() == 0 && *at < tick.deadline()) {
            tick.reset(at);
        }
        if buf.capacity() == 0 {
            // Idle: wait for bytes holding no buffer, then borrow one to read them.
            tokio::select! {
                biased;
                r = client.readable() => {
                    if r.is_err() {
                        return Outcome::Closed;
                    }
                    buf = raw::spare::take();
                }
                _ = &mut drain, if !draining => draining = true,
                _ = &mut tick => {
                    let now = clock::now();
                    if !draining && park_check.is_some_and(|at| now >= at) {
                        if now >= since.waiting + grace {
                            return Outcome::Quiet(client, since.waiting);
                        }
                        // Requests came since: look again later.
                        park_check = Some(now + BUSY_CHECK);
                    }
                    if rearm(&mut tick, since.due(0, 0, spec), spec.header_read_timeout) {
                        debug!(peer = %ctx.peer, "closing idle HTTP/1.1 connection");
                        return Outcome::Closed;
                    }
                }
            }
            if buf.capacity() == 0 {
                continue;
            }
        }
        if buf.capacity() - buf.len() < READ_SPACE {
            buf.reserve(2 * READ_SPACE);
        }
        tokio::select! {
            biased;
            r = client.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => return Outcome::Closed,
                Ok(n) => {
                    listener.stats.bytes_received.add(n as u64);
                    let now = clock::now();
                    read_at = Some(now);
                    if was_empty {
                        since.head = now;
                    } else if need > 0 {
                        since.body = now;
                    }
                }
            },
            _ = &mut drain, if !draining => draining = true,
            _ = &mut tick => {
                if rearm(&mut tick, since.due(buf.len(), need, spec), spec.header_read_timeout) {
                    debug!(peer = %ctx.peer, partial = buf.len(), "closing HTTP/1.1 connection: idle, slow head or stalled body");
                    return Outcome::Closed;
                }
            }
        }
    }
}

/// Since when a connection has been waiting: for a request (idle), for the
/// rest of a head, for more of a body.
struct Since {
    waiting: Instant,
    head: Instant,
    body: Instant,
}

impl Since {
    fn new() -> Since {
        let now = clock::now();
        Since { waiting: now, head: now, body: now }
    }

    /// When waiting gives up, with `buffered` bytes of a request read and
    /// `need` bytes needed for its body: the idle time with none, the idle
    /// time since the last bytes of a body, the header-read time for a head.
    fn due(&self, buffered: usize, need: usize, spec: &crate::config::ListenerSpec) -> Instant {
        if buffered == 0 {
            self.waiting + spec.idle_timeout
        } else if need > 0 {
            self.body + spec.idle_timeout
        } else {
            self.head + spec.header_read_timeout
        }
    }
}

/// Re-arms the connection's timer toward `due`, never more than `step` ahead
/// (so a deadline that moves closer is still met); true once `due` has passed.
fn rearm(tick: &mut Tick, due: Instant, step: std::time::Duration) -> bool {
    let now = clock::now();
    if now >= due {
        return true;
    }
    tick.reset(due.min(now + step));
    false
}

/// Whether `buf` holds the empty line ending a head, looking from `from` on
/// (so that a head arriving a byte at a time is not parsed again each time).
fn has_head_end(buf: &[u8], from: usize) -> bool {
    // The common read: one bodiless request, ending with its empty line.
    if buf.len() > from && buf.ends_with(b"\r\n\r\n") {
        return true;
    }
    let mut rest = &buf[from.min(buf.len())..];
    while let Some(i) = rest.iter().position(|&b| b == b'\n') {
        rest = &rest[i + 1..];
        if rest.starts_with(b"\n") || rest.starts_with(b"\r\n") {
            return true;
        }
    }
    false
}

/// Parses, checks and routes the request at the start of `buf`, and writes
/// its upstream head into `out`. `Prep::Hyper` for anything this path leaves
/// to hyper's.
fn prepare(ctx: &ConnCtx, buf: &[u8], out: &mut Vec<u8>) -> Prep {
    let mut slots = h1::header_slots();
    let mut req = httparse::Request::new(&mut []);
    let head_len = match h1::parse_request(&mut req, buf, &mut slots) {
        Ok(Status::Complete(n)) => n,
        Ok(Status::Partial) => return Prep::NeedMore,
        Err(_) => return Prep::Hyper,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Prep::Hyper;
    };
    // An origin-form target of plain RFC 3986 bytes only: a fragment, a quote
    // or anything else the `http` crate reads differently is hyper's to judge.
    if !target.starts_with('/')
        || target.len() > MAX_URI_BYTES
        || !target.bytes().all(h1::is_target_byte)
        || method == "CONNECT"
    {
        return Prep::Hyper;
    }
    let fields = &*req.headers;

    // One pass over the headers: what this path needs to know, and whether it
    // may handle the request at all.
    let (mut host, mut hosts, mut length, mut lengths, mut size) = (None, 0, 0usize, 0, 0);
    let mut connection = ConnectionTokens::default();
    for f in fields {
        size += f.name.len() + f.value.len() + 4;
        if h1::has_control(f.value) {
            return Prep::Hyper;
        }
        match h1::classify(f.name) {
            Name::Host => {
                hosts += 1;
                host = Some(f.value);
            }
            Name::ContentLength => {
                lengths += 1;
                match h1::content_length(f.value) {
                    // A larger body goes to hyper's path, which streams it.
                    Some(n) if n <= REPLAY_LIMIT as u64 => length = n as usize,
                    _ => return Prep::Hyper,
                }
            }
            Name::TransferEncoding | Name::Upgrade | Name::Expect => return Prep::Hyper,
            Name::Connection => connection.add(f.value),
            Name::ContentType if f.value.starts_with(b"application/grpc") => return Prep::Hyper,
            _ => {}
        }
    }
    if size > MAX_HEADER_BYTES || hosts != 1 || lengths > 1 || connection.others {
        return Prep::Hyper;
    }
    // An invalid Host goes to hyper's path, which refuses it (`validate_request`).
    let Some(authority) = host.filter(|h| valid_host(h)).and_then(|h| std::str::from_utf8(h).ok()) else {
        return Prep::Hyper;
    };
    let host = strip_port(authority);

    // Route.
    // A byte loop: a short path costs less than `split_once`'s searcher.
    let (path, query) = match target.bytes().position(|b| b == b'?') {
        Some(q) => (&target[..q], Some(&target[q + 1..])),
        None => (target, None),
    };
    let header = |name: &str| -> Option<&[u8]> {
        match name {
            ":method" => Some(method.as_bytes()),
            ":authority" => Some(host.as_bytes()),
            ":path" => Some(path.as_bytes()),
            other => fields.iter().find(|f| f.name.eq_ignore_ascii_case(other)).map(|f| f.value),
        }
    };
    let input = RouteInput { host: Some(host), path: Some(path), query, header: &header };
    let gen = ctx.listener.now();
    let Some(route) = gen.spec.router.find(&input) else {
        return Prep::Hyper;
    };
    if matches!(route.target, Target::Direct { .. } | Target::Redirect(_)) || touches_framing(route.http()) {
        return Prep::Hyper;
    }
    let Some(cluster) = route.choose_cluster().map(|i| gen.clusters[i].clone()) else {
        return Prep::Hyper;
    };
    let hash_key = route.hash_header.as_deref().and_then(header).map(<[u8]>::to_vec);

    // The upstream head.
    let http = route.http();
    let rules = Rules {
        http,
        method,
        peer_ip: ctx.peer_ip.as_bytes(),
        host: headers::route_host(http).map_or(HostRule::AsSent, |h| HostRule::Set(h.as_bytes())),
        framing: headers::Framing::AsSent,
        upgrade: false,
        join_cookies: true,
    };
    out.clear();
    headers::write_request_head(out, target, || fields.iter().map(|f| (f.name, f.value)), &rules);

    Prep::Ready(Prepared {
        head_len,
        body_len: length,
        close: connection.close,
        head_method: method == "HEAD",
        idempotent: matches!(method, "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"),
        route: route.clone(),
        cluster,
        hash_key,
    })
}

/// Whether the route's header operations touch the headers that frame a
/// message. The pass-through forwards bodies as they are, so such a route is
/// left to hyper, which frames messages itself.
fn touches_framing(http: &HttpActions) -> bool {
    let framing =
        |name: &str| matches!(h1::classify(name), Name::ContentLength | Name::TransferEncoding | Name::Connection);
    http.request_remove.iter().chain(&http.response_remove).any(|n| framing(n.as_str()))
        || http.request_add.iter().chain(&http.response_add).any(|a| framing(a.name.as_str()))
}

/// A response head, rewritten for the client in `Bufs::resp`.
struct Answer {
    head_len: usize,
    status: u16,
    framing: Framing,
    /// The upstream keeps the connection open after this response.
    reusable: bool,
}

/// Sends the prepared request upstream with the route's tries and relays the
/// answer. Returns whether the client connection stays open.
async fn exchange(
    ctx: &ConnCtx,
    client: &mut Transport,
    request: Prepared,
    bufs: &mut Bufs,
    // When its last bytes were read: its timeout and its first try start then.
    arrived: Instant,
    mut timer: ConnTimer<'_>,
) -> bool {
    let stats = &ctx.worker.stats;
    stats.count_request(crate::stats::http_slots()[0]);
    ctx.listener.stats.requests.inc();
    let close = request.close || ctx.listener.draining();
    let started = arrived.into_std();
    let received = bufs.req.len() as u64;
    let tries = send_with_tries(ctx, &request, bufs, arrived, timer.reborrow(), close).await;
    let (open, status, upstream, error) = match tries {
        Ok((answer, conn, pool)) => {
            stats.count_response(if answer.status >= 500 { 500 } else { 200 });
            let open = relay_body(ctx, client, conn, &pool, &answer, bufs, timer).await
                && answer.framing != Framing::UntilClose;
            (open, answer.status, Some(pool.host().clone()), None)
        }
        Err(err) => {
            stats.count_error(&err);
            let to = Out { ctx, client, timer };
            let open = write_error(to, &err, close, &mut bufs.resp).await;
            (open, err.code(), None, Some(err.label()))
        }
    };
    ctx.listener.log(|| {
        let duration = started.elapsed();
        Entry {
            start: started,
            duration,
            request_sent: None,
            protocol: "http1",
            request_id: None,
            upstream: upstream.as_ref().map(|h| h.addr_text()),
            cluster: Some(request.cluster.spec.name.as_str()),
            status,
            error,
            bytes_received: received,
            bytes_sent: 0,
            downstream_remote: ctx.peer_text(),
            downstream_local: None,
            tls: ctx.tls.as_deref(),
        }
    });
    open
}

/// The connection's timer, which times the tries and the writes of the
/// answer ([`within`])...
struct ConnTimer<'t> {
    tick: &'t mut Tick,
    /// ...never re-armed more than this ahead (the connection's own checks
    /// need it back no later).
    step: std::time::Duration,
}

impl ConnTimer<'_> {
    fn reborrow(&mut self) -> ConnTimer<'_> {
        ConnTimer { tick: self.tick, step: self.step }
    }
}

/// Where an answer goes: the client (whose listener counts the bytes sent),
/// and the timer that holds its writes to the write deadline.
struct Out<'a, 't> {
    ctx: &'a ConnCtx,
    client: &'a mut Transport,
    timer: ConnTimer<'t>,
}

impl Out<'_, '_> {
    /// Writes and flushes `bytes`; false when that fails or the client has
    /// not taken them within [`WRITE_TIMEOUT`] (MOSN's write deadline). The
    /// connection's timer is moved only when the first attempt leaves some
    /// unwritten: a small answer costs it nothing.
    async fn write(&mut self, bytes: &[u8]) -> bool {
        let (client, mut at) = (&mut *self.client, 0);
        let write = std::pin::pin!(std::future::poll_fn(|cx| client.poll_write_all(cx, bytes, &mut at)));
        let done = match at_once_or_within(self.timer.reborrow(), WRITE_TIMEOUT, write).await {
            Ok(r) => r.is_ok(),
            Err(()) => {
                let (peer, pending) = (&self.ctx.peer, bytes.len() - at);
                info!(%peer, pending, "HTTP/1.1 client took no answer bytes for the write timeout; closed");
                false
            }
        };
        if done {
            self.ctx.listener.stats.bytes_sent.add(bytes.len() as u64);
        }
        done
    }
}

async fn send_with_tries(
    ctx: &ConnCtx,
    request: &Prepared,
    bufs: &mut Bufs,
    arrived: Instant,
    mut timer: ConnTimer<'_>,
    close: bool,
) -> Result<(Answer, HostConn, Rc<HttpPool>), ProxyError> {
    let deadline = arrived + request.route.timeout.unwrap_or(DEFAULT_ROUTE_TIMEOUT);
    let mut tries = Tries::new(&request.route, &request.cluster, request.hash_key.as_deref(), deadline);
    let mut last_err = ProxyError::NoHealthyHost;
    let mut first = true;
    loop {
        let h = match tries.next().await {
            Next::Host(h) => h,
            Next::NoHost => return Err(ProxyError::NoHealthyHost),
            Next::Over => return Err(exhausted(last_err)),
        };
        let pool = request.cluster.http_pools[h].clone();
        let can_retry = tries.more_left();
        let try_started = if std::mem::take(&mut first) { arrived } else { clock::now() };
        let in_flight = pool.host().in_flight();
        let Bufs { req, resp, up } = &mut *bufs;
        let mut parse = |b: &[u8]| response_head(b, request, close, resp);
        let sent = {
            let send = std::pin::pin!(raw::send(&pool, req, request.idempotent, up, &mut parse));
            within(timer.reborrow(), tries.try_deadline(), send).await
        };
        drop(in_flight);
        let upstream = pool.host().addr;
        match sent {
            Ok(Ok((answer, conn))) => {
                pool.host().record_response(answer.status, clock::now().saturating_duration_since(try_started));
                if can_retry && tries.policy.retry_status(answer.status) {
                    debug!(peer = %ctx.peer, %upstream, status = answer.status, "retrying on status");
                    last_err = ProxyError::DirectResponse { status: answer.status, body: String::new() };
                    continue;
                }
                return Ok((answer, conn, pool));
            }
            Ok(Err(SendError::Connect(why))) => {
                warn!(peer = %ctx.peer, %upstream, error = %why, "upstream connect failed");
                // The request never left: another host is always worth a try.
                last_err = ProxyError::ConnectFailed(why);
                pool.host().record_failure(&last_err);
            }
            // (Refused is HTTP/2's; this path speaks HTTP/1.1.)
            Ok(Err(SendError::Reset(why) | SendError::Refused(why))) => {
                warn!(peer = %ctx.peer, %upstream, error = %why, "upstream reset");
                last_err = ProxyError::UpstreamReset;
                pool.host().record_failure(&last_err);
                if !(can_retry && tries.policy.on.contains(RetryOn::RESET)) {
                    return Err(last_err);
                }
            }
            Err(_) => {
                last_err = ProxyError::Timeout;
                pool.host().record_failure(&last_err);
                if !(can_retry && tries.timed_out_per_try()) {
                    return Err(last_err);
                }
            }
        }
    }
}

/// Runs `fut` until `deadline` on the connection's own timer instead of a
/// timer of its own: the timer is moved only when it would fire after the
/// deadline, and re-armed (toward the deadline, at most `step` ahead) only
/// when it fires first, so a request costs the timer wheel nothing. The
/// caller's checks that the timer served (idle time, parking) look at the
/// clock when it next fires, and re-arm it themselves. `Err` when the
/// deadline passed. `fut` is pinned where the caller made it: moved in by
/// value, it was copied twice more on its way (about 120 instructions of an
/// HTTP/1.1 request).
async fn within<F: std::future::Future>(
    timer: ConnTimer<'_>,
    deadline: Instant,
    mut fut: std::pin::Pin<&mut F>,
) -> Result<F::Output, ()> {
    let ConnTimer { tick, step } = timer;
    if tick.deadline() > deadline {
        tick.reset(deadline);
    }
    loop {
        tokio::select! {
            biased;
            out = &mut fut => return Ok(out),
            _ = &mut *tick => {
                if rearm(tick, deadline, step) {
                    return Err(());
                }
            }
        }
    }
}

/// `fut`'s output if it is ready at once; else `fut` goes on under the
/// connection's timer ([`within`]) for at most `wait` more. The timer is
/// touched only by what must wait: an answer's write that the socket takes
/// whole, a body's read that finds bytes, cost it nothing.
async fn at_once_or_within<F: std::future::Future>(
    timer: ConnTimer<'_>,
    wait: std::time::Duration,
    mut fut: std::pin::Pin<&mut F>,
) -> Result<F::Output, ()> {
    let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(out) => Ok(out),
        Poll::Pending => within(timer, Instant::now() + wait, fut).await,
    }
}

/// Parses the response head at the start of `up` and writes the client's
/// version of it into `out`. `None` while the head is incomplete.
fn response_head(
    up: &[u8],
    request: &Prepared,
    close: bool,
    out: &mut Vec<u8>,
) -> Result<Option<Head<Answer>>, Broken> {
    let mut slots = h1::header_slots();
    let mut resp = httparse::Response::new(&mut []);
    let facts = match raw::parse_head(up, request.head_method, &mut resp, &mut slots)? {
        Some(Head::Final(facts)) => facts,
        Some(Head::Interim(n)) => return Ok(Some(Head::Interim(n))),
        None => return Ok(None),
    };
    let fields = &*resp.headers;
    let http = request.route.http();
    let status = facts.status;
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&[
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ]);
    out.push(b' ');
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for f in fields {
        // The body passes through as it came, so Transfer-Encoding stays;
        // the connection's own headers do not.
        let kind = h1::classify(f.name);
        let drop = facts.hop_by_hop(f.name, kind, fields)
            || facts.stale_framing(kind)
            || headers::removed_or_set(&http.response_remove, &http.response_add, f.name);
        if !drop {
            push_header(out, f.name.as_bytes(), f.value);
        }
    }
    for a in &http.response_add {
        push_header(out, a.name.as_str().as_bytes(), a.value.as_bytes());
    }
    if close || facts.framing == Framing::UntilClose {
        push_header(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some(Head::Final(Answer { head_len: facts.head_len, status, framing: facts.framing, reusable: facts.reusable })))
}

/// Sends the response head and the body to the client; the upstream
/// connection goes back to the pool if the response ended cleanly. Returns
/// whether the client connection is still good.
async fn relay_body(
    ctx: &ConnCtx,
    client: &mut Transport,
    mut conn: HostConn,
    pool: &Rc<HttpPool>,
    answer: &Answer,
    bufs: &mut Bufs,
    timer: ConnTimer<'_>,
) -> bool {
    let Bufs { resp, up, .. } = bufs;
    let mut to = Out { ctx, client, timer };
    let mut reusable = answer.reusable;
    let mut body = BodyCursor::new(answer.framing);
    // The body bytes that came with the head go out in the same write.
    let first = &up[answer.head_len..];
    let Ok(take) = body.feed(first) else {
        // Nothing has gone to the client yet: it gets a 502, then the close.
        warn!(peer = %ctx.peer, upstream = %pool.host().addr, "malformed chunked response body");
        ctx.worker.stats.count_error(&ProxyError::UpstreamReset);
        let _ = write_error(to, &ProxyError::UpstreamReset, true, resp).await;
        return false;
    };
    reusable &= take == first.len();
    resp.extend_from_slice(&first[..take]);
    if !to.write(resp).await {
        return false;
    }
    let idle = ctx.listener.now().spec.stream_idle_timeout;
    while !body.is_done() {
        up.clear();
        up.reserve(2 * READ_SPACE);
        let read = at_once_or_within(to.timer.reborrow(), idle, std::pin::pin!(conn.read_buf(up))).await;
        let Ok(read) = read else {
            let (peer, upstream) = (&ctx.peer, pool.host().addr);
            info!(%peer, %upstream, "upstream's answer made no progress for stream_idle_timeout; cut");
            return false;
        };
        match read {
            Ok(0) if body.close() => break,
            Ok(0) | Err(_) => {
                warn!(peer = %ctx.peer, upstream = %pool.host().addr, "upstream closed inside a response body");
                return false;
            }
            Ok(_) => {}
        }
        let Ok(take) = body.feed(up) else {
            warn!(peer = %ctx.peer, upstream = %pool.host().addr, "malformed chunked response body");
            return false;
        };
        reusable &= take == up.len();
        if !to.write(&up[..take]).await {
            return false;
        }
    }
    if reusable {
        pool.put_raw(conn);
    }
    true
}

/// Answers a failed request (HTTP's form of a proxy error, as hyper's path
/// writes it). Returns whether the client connection stays usable.
async fn write_error(mut to: Out<'_, '_>, err: &ProxyError, close: bool, out: &mut Vec<u8>) -> bool {
    use std::io::Write as _;
    let HttpError { status, labelled, body } = http_error(err);
    out.clear();
    let _ = write!(out, "HTTP/1.1 {} {}\r\n", status.as_u16(), status.canonical_reason().unwrap_or(""));
    if labelled {
        push_header(out, b"content-type", b"text/plain");
        push_header(out, b"x-ferrymesh-error", err.label().as_bytes());
    }
    let _ = write!(out, "content-length: {}\r\n", body.len());
    if close {
        push_header(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
    to.write(out).await
}

#[cfg(test)]
mod tests {
    use super::has_head_end;

    /// Whether `buf` holds a line ending followed by an empty line, by a
    /// plain search: what `has_head_end` answers, whatever it skips.
    fn naive(buf: &[u8]) -> bool {
        buf.windows(2).any(|w| w == b"\n\n") || buf.windows(3).any(|w| w == b"\n\r\n")
    }

    proptest::proptest! {
        #[test]
        fn the_end_of_a_head_is_found_however_it_arrives(
            head in proptest::collection::vec(proptest::sample::select(b"GET / HTTP/1.1\r\nab:c\n".to_vec()), 0..60),
            cut in 0usize..64,
        ) {
            let mut buf = head.clone();
            buf.extend_from_slice(b"\r\n\r\n");
            // Scanned once up to a cut (as the pass-through does), then whole.
            let cut = cut.min(buf.len());
            let early = has_head_end(&buf[..cut], 0);
            proptest::prop_assert_eq!(early, naive(&buf[..cut]));
            let from = if early { 0 } else { cut.saturating_sub(3) };
            proptest::prop_assert!(has_head_end(&buf, from));
            proptest::prop_assert_eq!(has_head_end(&head, 0), naive(&head));
        }
    }
}
