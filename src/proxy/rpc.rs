//! The RPC request path (bolt): DESIGN.md steps 2–7;
//! steps 8–12 run in the stream layer when the answer comes back).
//!
//! decode → heartbeat? answer it → request filters → route → cluster → host →
//! pooled connection → write with a fresh id. Everything up to the write runs
//! synchronously inside the downstream connection's read loop when the chosen
//! connection is ready, which is the common case; no task, no channel and no
//! frame copy other than the one into the upstream's output buffer. Only when
//! a connection must first be dialled does the request become a task
//! ([`wait_and_send`]) that owns a copy of the frame, waits for the dial, and
//! retries a failed connect on another host (bounded by the route).
//!
//! Every request ends in exactly one answer: either its [`ServerStream`] is
//! handed to an upstream connection (which answers it on response, timeout or
//! close), or it is failed here with the protocol's error response.

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::buf::Limit;
use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{ListenerCtx, ListenerGen, WorkerCtx, LINGER};
use crate::config::DEFAULT_ROUTE_TIMEOUT;
use crate::error::ProxyError;
use crate::network::clock;
use crate::network::conn::{drive, Closed, Handler, OUTPUT_LIMIT, WRITE_TIMEOUT_REASON};
use crate::network::frames::{Frame, FrameReader};
use crate::network::tick::Tick;
use crate::network::transport::Transport;
use crate::protocol::{Codec, CodecError, FrameHeaders, FrameInfo, FrameKind, Protocol};
use crate::router::{RouteEntry, RoutePos, RouteTable, Target};
use crate::stats::Stats;
use crate::stream::client::ClientConn;
use crate::stream::pool::Pick;
use crate::stream::server::{ServerConn, ServerStream};
use crate::upstream::Cluster;

/// Serves a client connection that speaks `codec` until it closes, or until
/// it owes nothing (no request in flight, no frame half read, every answer
/// written): then returns when it last read, and everything this phase built
/// (the output buffer, the reader, a timer) is dropped while the caller parks
/// the socket (`network::park`). `initial` holds bytes already read from it
/// (detection over TLS). A connection that `linger`s goes quiet only after
/// [`LINGER`] without a read.
pub(super) async fn serve(
    stream: &mut Transport,
    initial: BytesMut,
    peer: SocketAddr,
    codec: &'static dyn Codec,
    listener: &Rc<ListenerCtx>,
    worker: &WorkerCtx,
    linger: bool,
) -> Option<Quieted> {
    let gen = listener.now();
    // The local address is a syscall, asked only when a log line may name it.
    let local = if gen.access_logs.is_empty() { None } else { stream.tcp().local_addr().ok() };
    let observer = super::observer(listener, peer, local, codec.name(), stream.tls().cloned());
    let conn = Rc::new(ServerConn::new(codec, worker.stats.clone(), observer));
    let idle = gen.spec.idle_timeout;
    // Not held by the phase: a connection must not keep an old generation alive.
    drop(gen);
    let mut handler = DownstreamHandler {
        req: RequestPath {
            conn: &conn,
            listener,
            worker,
            peer,
            protocol: crate::stats::protocol_slot(codec.name()),
            memo: RefCell::default(),
        },
        reader: FrameReader::default(),
        held: Vec::new(),
        draining: listener.draining(),
        drain_signal: listener.drain_watch(),
        idle_timer: None,
        park_tick: None,
        linger,
        graced: true,
        read_any: false,
        last_active: Instant::now(),
        idle,
    };
    let why = if !initial.is_empty() && clock::reading(|| handler.on_read(&initial)).is_err() {
        Closed::Local("bad frame from client")
    } else {
        drive(stream, &conn.io, &mut handler).await
    };
    if let Closed::Quiet = why {
        return Some(Quieted { since: handler.last_active, read: handler.read_any });
    }
    let waiting = conn.inflight();
    if waiting > 0 {
        // Its requests still waiting upstream are nobody's now.
        let dropped = conn.drop_abandoned().unwrap_or_else(|| {
            let clusters = listener.now().clusters.clone();
            clusters.iter().flat_map(|c| &c.pools).map(|p| p.drop_abandoned()).sum()
        });
        debug!(%peer, waiting, dropped, "client connection closed with requests in flight");
    }
    if matches!(why, Closed::Local(WRITE_TIMEOUT_REASON)) {
        info!(%peer, listener = %listener.name, waiting, "client took no answers for the write timeout; closed");
    } else {
        debug!(%peer, listener = %listener.name, reason = ?why, "client connection closed");
    }
    None
}

/// Requests of one client connection in flight past which what it sends
/// waits ([`HOLD_LIMIT`] read ahead, then not read) until answers go out
/// (with 64 KiB answers, 64 MiB owed at most).
pub const MAX_IN_FLIGHT: u32 = 1024;

/// How an RPC connection's phase ended quiet: when it last read, and
/// whether it read anything (a wake-up may find nothing to read).
pub(super) struct Quieted {
    pub since: Instant,
    pub read: bool,
}

struct DownstreamHandler<'a> {
    req: RequestPath<'a>,
    reader: FrameReader,
    draining: bool,
    drain_signal: super::DrainWatch<'a>,
    /// Armed only while a frame is half read: a connection that owes
    /// nothing parks, and parked ones share their listener's idle timer.
    idle_timer: Option<Tick>,
    /// Armed while nothing is owed: when it finds the connection has read
    /// nothing for [`LINGER`], the connection is `graced` and parks (the
    /// timer fires at most once per grace while calls come: it is re-armed
    /// from the last read only when it fires).
    park_tick: Option<Tick>,
    /// Whether the connection waits out [`LINGER`] after a read before
    /// it parks...
    linger: bool,
    /// ...and whether it may park now: from the start of a phase that has
    /// read nothing (a wake-up with nothing to read), and once it has waited
    /// out the grace.
    graced: bool,
    read_any: bool,
    last_active: Instant,
    idle: Duration,
    /// Bytes read while [`MAX_IN_FLIGHT`] requests are owed, not yet handed
    /// on (at most about [`HOLD_LIMIT`]): read only so that the client's
    /// close is still seen, which drops its requests waiting upstream.
    held: Vec<u8>,
}

/// How much a connection with [`MAX_IN_FLIGHT`] requests owed reads ahead.
const HOLD_LIMIT: usize = 64 * 1024;

impl DownstreamHandler<'_> {
    /// Whether what is read now waits in `held`: requests are owed to the
    /// limit, or earlier bytes wait there already.
    fn holding(&self) -> bool {
        !self.held.is_empty() || self.req.conn.inflight() >= MAX_IN_FLIGHT
    }

    /// Hands the whole frames of `data`, bytes read, to the request path.
    fn feed(&mut self, data: &[u8]) -> Result<(), &'static str> {
        self.on_bytes(data.len(), |reader, max, req| {
            reader.feed(data, req.conn.codec, max, |frame, info| req.on_frame(frame, info))
        })
    }

    /// `n` bytes arrived; `read` hands their whole frames to the request path.
    fn on_bytes(
        &mut self,
        n: usize,
        read: impl FnOnce(&mut FrameReader, usize, &RequestPath<'_>) -> Result<(), CodecError>,
    ) -> Result<(), &'static str> {
        self.last_active = clock::now();
        self.read_any = true;
        self.graced = !self.linger;
        let req = &self.req;
        req.listener.stats.bytes_received.add(n as u64);
        let max_frame = req.listener.now().spec.max_frame;
        read(&mut self.reader, max_frame, req).map_err(|e| {
            req.worker.stats.codec_errors.inc();
            warn!(peer = %req.peer, listener = %req.listener.name, error = %e, "bad frame from client, closing its connection");
            "bad frame from client"
        })
    }

    /// Marks the connection `graced` once it has read nothing for
    /// [`LINGER`]; until then its timer waits for that, re-armed from the
    /// last read each time it fires early.
    fn poll_grace(&mut self, cx: &mut Context<'_>) {
        let last_active = self.last_active;
        let tick = self.park_tick.get_or_insert_with(|| Tick::at(last_active + LINGER));
        while tick.poll(cx).is_ready() {
            let due = self.last_active + LINGER;
            if Instant::now() >= due {
                self.graced = true;
                return;
            }
            tick.reset(due);
        }
    }
}

impl Handler for DownstreamHandler<'_> {
    fn on_read(&mut self, data: &[u8]) -> Result<(), &'static str> {
        if self.holding() {
            self.held.extend_from_slice(data);
            return Ok(());
        }
        self.feed(data)
    }

    fn read_space(&mut self) -> Option<Limit<&mut BytesMut>> {
        if self.holding() {
            return None;
        }
        self.reader.space()
    }

    fn on_read_space(&mut self, n: usize) -> Result<(), &'static str> {
        self.on_bytes(n, |reader, max, req| reader.filled(req.conn.codec, max, |frame, info| req.on_frame(frame, info)))
    }

    fn on_written(&mut self, n: usize) {
        self.req.listener.stats.bytes_sent.add(n as u64);
    }

    fn on_eof(&mut self) -> Option<&'static str> {
        // The client closed (as in MOSN, an end of input is the remote's
        // close): its requests still waiting upstream are dropped (`serve`),
        // rather than hold their slots until the upstream answers or their
        // timeout, which the client chose, runs out.
        Some("")
    }

    fn poll_events(&mut self, cx: &mut Context<'_>) -> Poll<&'static str> {
        if !self.held.is_empty() && self.req.conn.inflight() < MAX_IN_FLIGHT {
            // Answers made room: what waited goes on, and the socket is read
            // again (reading stopped while `held` was full).
            let held = std::mem::take(&mut self.held);
            if let Err(why) = self.feed(&held) {
                return Poll::Ready(why);
            }
            cx.waker().wake_by_ref();
        }
        if !self.draining && Pin::new(&mut self.drain_signal).poll(cx).is_ready() {
            self.draining = true;
        }
        if !self.reader.has_partial() {
            if !self.graced && self.req.conn.inflight() == 0 {
                self.poll_grace(cx);
            }
            return Poll::Pending;
        }
        // A frame half read: the idle time runs from its last bytes.
        let (last_active, idle) = (self.last_active, self.idle);
        let timer = self.idle_timer.get_or_insert_with(|| Tick::at(last_active + idle));
        while timer.poll(cx).is_ready() {
            let now = Instant::now();
            let due = self.last_active + self.idle;
            if now >= due && self.req.conn.inflight() == 0 {
                debug!(peer = %self.req.peer, partial = true, "closing idle client connection");
                return Poll::Ready("idle timeout");
            }
            timer.reset(if now >= due { now + self.idle.min(Duration::from_secs(1)) } else { due });
        }
        Poll::Pending
    }

    /// Draining, or the client has not taken its answers: answers past
    /// [`OUTPUT_LIMIT`] unwritten, or [`MAX_IN_FLIGHT`] requests owed and
    /// [`HOLD_LIMIT`] bytes read ahead. Both bound what a client that sends
    /// and never reads can make the worker hold: requests already read are
    /// answered, and answers wait for it. The read-ahead lets a client with
    /// requests owed to a slow upstream be heard when it closes (unless it
    /// sent more than that after them), to drop them.
    fn read_paused(&self) -> bool {
        self.draining || self.req.conn.io.pending_at_least(OUTPUT_LIMIT) || self.held.len() >= HOLD_LIMIT
    }

    fn idle_close(&self) -> Option<&'static str> {
        (self.draining && self.req.conn.inflight() == 0).then_some("drained")
    }

    fn quiet(&self) -> bool {
        self.graced && self.req.conn.inflight() == 0 && !self.reader.has_partial() && self.held.is_empty()
    }
}

/// The per-connection part of request handling.
struct RequestPath<'a> {
    conn: &'a Rc<ServerConn>,
    listener: &'a Rc<ListenerCtx>,
    worker: &'a WorkerCtx,
    peer: SocketAddr,
    /// The connection's protocol, as the metrics number it.
    protocol: usize,
    memo: RefCell<RouteMemo>,
}

/// A connection's last route, kept for a table whose RPC routes depend on
/// one header alone ([`RouteTable::rpc_key`]): a client sends the same
/// service again and again, and the next request that sends it needs no
/// index lookup (at full load, about 250 of 2,850 user-space
/// instructions per call on an exact-service route). A new generation or
/// another value misses.
#[derive(Default)]
struct RouteMemo {
    /// The generation the answer came from. Weak, so an old generation is
    /// not kept alive; but its allocation is, so no newer generation can
    /// take its address while this is held.
    gen: Weak<ListenerGen>,
    /// The key header's value (`None`: absent).
    value: Option<SmallVec<[u8; 64]>>,
    pos: Option<RoutePos>,
}

/// Values longer than this are looked up each time rather than kept.
const MEMO_MAX_VALUE: usize = 256;

impl RouteMemo {
    fn holds(&self, gen: &Rc<ListenerGen>, value: Option<&[u8]>) -> bool {
        std::ptr::eq(self.gen.as_ptr(), Rc::as_ptr(gen)) && self.value.as_deref() == value
    }
}

impl RequestPath<'_> {
    /// The request's route in `table` (of generation `gen`), from the
    /// connection's [`RouteMemo`] when its key header's value is the last one's.
    fn route<'t, 'h>(
        &self,
        table: &'t RouteTable,
        gen: &Rc<ListenerGen>,
        header: &dyn Fn(&str) -> Option<&'h [u8]>,
    ) -> Option<&'t RouteEntry> {
        let look_up = || table.rpc_route(header).map(|p| table.entry(p));
        let Some(key) = table.rpc_key() else { return look_up() };
        let value = header(key);
        if value.is_some_and(|v| v.len() > MEMO_MAX_VALUE) {
            return look_up();
        }
        let mut memo = self.memo.borrow_mut();
        if !memo.holds(gen, value) {
            *memo = RouteMemo {
                gen: Rc::downgrade(gen),
                value: value.map(SmallVec::from_slice),
                pos: table.rpc_route(header),
            };
        }
        memo.pos.map(|p| table.entry(p))
    }

    fn on_frame(&self, frame: Frame<'_>, info: FrameInfo) {
        let codec = self.conn.codec;
        match info.kind {
            FrameKind::Request | FrameKind::Oneway => self.on_request(frame, info),
            FrameKind::Heartbeat => {
                self.worker.stats.heartbeats_answered.inc();
                self.conn.io.push(|out| codec.heartbeat_reply(&frame, &info, out));
            }
            FrameKind::Response | FrameKind::HeartbeatAck | FrameKind::Control => {
                debug!(peer = %self.peer, kind = ?info.kind, "frame from client ignored");
            }
        }
    }

    fn on_request(&self, frame: Frame<'_>, info: FrameInfo) {
        let stats = &self.worker.stats;
        stats.count_request(self.protocol);
        let lstats = &self.listener.stats;
        lstats.requests.inc();
        let oneway = info.kind == FrameKind::Oneway;
        if oneway {
            stats.oneway_requests.inc();
        } else {
            // Until the observer hears of its end (`super::ConnObserver`).
            lstats.requests_active.inc();
        }
        let refuse = |err: ProxyError| {
            if oneway {
                stats.count_error(&err);
                debug!(peer = %self.peer, error = %err, "oneway request dropped");
            } else {
                self.conn.reply_error(&info, &err);
            }
        };
        // The generation this request lives in, to its end.
        let gen = self.listener.now();
        let spec = &gen.spec;
        let codec = self.conn.codec;

        let frame = if gen.filters.is_empty() {
            frame
        } else {
            match gen.filters.on_request(codec, &frame, self.peer) {
                Err(err) => return refuse(err),
                Ok(None) => frame,
                Ok(Some(edited)) => Frame::Owned(edited),
            }
        };

        // The header map is read once, whatever the route table holds.
        let headers = FrameHeaders::new(codec, &frame);
        let header = |name: &str| headers.get(name);
        let Some(route) = self.route(&spec.router, &gen, &header) else {
            debug!(peer = %self.peer, service = ?header("service").map(String::from_utf8_lossy), "no route");
            return refuse(ProxyError::NoRoute);
        };
        if let Target::Direct { status, body } = &route.target {
            return refuse(ProxyError::DirectResponse { status: *status, body: body.clone() });
        }
        let Some(cluster) = route.choose_cluster().map(|i| &gen.clusters[i]) else {
            return refuse(ProxyError::NoRoute);
        };
        // The client's own timeout wins over the route's (MOSN); none means the
        // route's, and a request never waits without bound.
        let timeout = info
            .timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms)))
            .or(route.timeout)
            .unwrap_or(DEFAULT_ROUTE_TIMEOUT);
        let hash_key = route.hash_header.as_deref().and_then(header);
        // What routing read of the frame is done with; the frame may go.
        drop(headers);
        let stream = (!oneway).then(|| self.conn.stream(info, frame.len(), gen.hook.clone()));
        // The upstream speaks the listener's upstream protocol, else the client's.
        let upstream = match spec.upstream {
            Some(Protocol::Rpc(c)) => c,
            _ => codec,
        };
        let attempt = Attempt { cluster, codec: upstream, hash_key, tried: &[] };
        match attempt.pick() {
            Err(err) => fail(stream, err, stats),
            Ok((_, Pick::Ready(conn))) => {
                if let Err(refused) = conn.send(frame, stream, timeout) {
                    let (stream, err) = *refused;
                    fail(stream, err, stats);
                }
            }
            Ok((host, Pick::Wait(conn))) => {
                let hash_key = hash_key.map(<[u8]>::to_vec);
                let waiting = Waiting {
                    cluster: cluster.clone(),
                    codec: upstream,
                    frame: frame.into_bytes(),
                    stream,
                    hash_key,
                    retries: route.connect_retries,
                    deadline: Instant::now() + timeout,
                    stats: stats.clone(),
                };
                tokio::task::spawn_local(wait_and_send(waiting, host, conn));
            }
        }
    }
}

/// Answers a request with `err`, or counts it if it was oneway.
fn fail(stream: Option<ServerStream>, err: ProxyError, stats: &Stats) {
    match stream {
        Some(s) => s.fail(err),
        None => {
            stats.count_error(&err);
            debug!(error = %err, "oneway request dropped");
        }
    }
}

/// One choice of host and connection for a request.
struct Attempt<'a> {
    cluster: &'a Rc<Cluster>,
    /// What the upstream speaks: the pool of this codec's family is used.
    codec: &'static dyn Codec,
    hash_key: Option<&'a [u8]>,
    tried: &'a [usize],
}

impl Attempt<'_> {
    fn pick(&self) -> Result<(usize, Pick), ProxyError> {
        let host = self.cluster.choose(self.hash_key, self.tried).ok_or(ProxyError::NoHealthyHost)?;
        Ok((host, self.cluster.rpc_pick(host, self.codec)))
    }
}

/// A request that waits for a connection to be dialled.
struct Waiting {
    cluster: Rc<Cluster>,
    codec: &'static dyn Codec,
    frame: Bytes,
    stream: Option<ServerStream>,
    hash_key: Option<Vec<u8>>,
    retries: u32,
    deadline: Instant,
    stats: Rc<Stats>,
}

/// The slow path: wait for `conn`, send, and on a failed connect try the
/// other hosts, at most `retries` more times, never past the deadline.
async fn wait_and_send(mut w: Waiting, first_host: usize, mut conn: Rc<ClientConn>) {
    let mut tried = vec![first_host];
    loop {
        let err = match tokio::time::timeout_at(w.deadline, conn.ready()).await {
            Err(_) => {
                conn.host().record_failure(&ProxyError::Timeout);
                return fail(w.stream, ProxyError::Timeout, &w.stats);
            }
            Ok(Ok(())) => {
                let left = w.deadline.saturating_duration_since(Instant::now());
                match conn.send(Frame::Read(&w.frame), w.stream.take(), left) {
                    Ok(()) => return,
                    // Not written: the connection closed between ready and send.
                    Err(refused) => {
                        let (stream, err) = *refused;
                        w.stream = stream;
                        err
                    }
                }
            }
            Ok(Err(err)) => {
                conn.host().record_failure(&err);
                err
            }
        };
        let retryable = matches!(err, ProxyError::ConnectFailed(_) | ProxyError::UpstreamReset);
        if !retryable || w.retries == 0 {
            return fail(w.stream, err, &w.stats);
        }
        w.retries -= 1;
        let attempt = Attempt { cluster: &w.cluster, codec: w.codec, hash_key: w.hash_key.as_deref(), tried: &tried };
        match attempt.pick() {
            // No other host to try: the client hears about the failed connect.
            Err(_) => return fail(w.stream, err, &w.stats),
            Ok((host, Pick::Ready(c) | Pick::Wait(c))) => {
                info!(from = %conn.addr(), to = %c.addr(), error = %err, "retrying request on another host");
                c.host().count(|s| s.retries.inc());
                tried.push(host);
                conn = c;
            }
        }
    }
}
