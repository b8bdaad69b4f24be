//! Client side: one multiplexed upstream connection, its id map, its request
//! timers and its keep-alive heartbeats.
//!
//! A [`ClientConn`] is created `Connecting` by its pool, which spawns
//! [`ClientConn::run`]: dial with the cluster's connect timeout, then drive the
//! socket until it closes. Requests are written by [`ClientConn::send`] straight
//! into the output buffer (id patched on the copy) from whatever code runs on
//! the worker thread; the connection's task flushes them.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::buf::Limit;
use bytes::BytesMut;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::idmap::IdMap;
use super::server::ServerStream;
use crate::config::KeepaliveSpec;
use crate::error::ProxyError;
use crate::host::Host;
use crate::network::clock;
use crate::network::conn::{drive, ConnShared, Handler};
use crate::network::deadlines::Deadlines;
use crate::network::frames::{Frame, FrameReader};
use crate::network::tick::Tick;
use crate::protocol::{Codec, CodecError, FrameInfo, FrameKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    Connecting,
    Ready,
    /// The dial failed; the reason.
    Failed(String),
    /// The upstream sent a GOAWAY: no new requests; the connection closes
    /// once the answers in flight are in (MOSN reconnects the same way).
    Draining,
    Closed,
}

/// What an id-map entry waits for.
enum Waiting {
    Request(ServerStream),
    Heartbeat,
}

struct ClientStream {
    waiting: Waiting,
    deadline: Instant,
}

/// Mutable state of the connection, touched only on its worker thread.
struct Inner {
    streams: IdMap<ClientStream>,
    deadlines: Deadlines,
    missed_heartbeats: u32,
    heartbeat_in_flight: bool,
}

impl Inner {
    /// Files request `id` until `deadline`. True when the connection's task
    /// must re-arm its timer earlier.
    fn set_deadline(&mut self, id: u64, deadline: Instant, waiting: Waiting) -> bool {
        self.streams.insert(id, ClientStream { waiting, deadline });
        let rearm = self.deadlines.insert(id, deadline);
        let Inner { streams, deadlines, .. } = self;
        deadlines.compact(streams.len(), |id, at| waits_until(streams, id, at));
        rearm
    }
}

/// Whether request `id` is still waiting, with deadline `at`.
fn waits_until(streams: &IdMap<ClientStream>, id: u64, at: Instant) -> bool {
    streams.get(id).is_some_and(|s| s.deadline == at)
}

/// One upstream connection.
pub struct ClientConn {
    pub io: ConnShared,
    codec: &'static dyn Codec,
    host: Rc<Host>,
    state: RefCell<ConnState>,
    state_changed: Notify,
    inner: RefCell<Inner>,
    last_active: Cell<Instant>,
    max_frame: usize,
    /// The cluster's `max_request_per_conn` (0: no limit).
    max_in_flight: u32,
}

/// Request bytes waiting to be written upstream past which a connection
/// takes no more requests (they fail with an overflow): an upstream that
/// stops reading would otherwise have them pile up until its heartbeats
/// fail (2,000 requests of 64 KiB held 133 MB for 95 s). Generous, as one
/// frame may be 16 MiB.
pub const OUTPUT_LIMIT: usize = 32 * 1024 * 1024;

impl ClientConn {
    pub fn new(codec: &'static dyn Codec, host: Rc<Host>, max_frame: usize, max_in_flight: u32) -> Rc<ClientConn> {
        Rc::new(ClientConn {
            io: ConnShared::default(),
            codec,
            host,
            state: RefCell::new(ConnState::Connecting),
            state_changed: Notify::new(),
            inner: RefCell::new(Inner {
                streams: IdMap::new(codec.max_id()),
                deadlines: Deadlines::new(),
                missed_heartbeats: 0,
                heartbeat_in_flight: false,
            }),
            last_active: Cell::new(Instant::now()),
            max_frame,
            max_in_flight,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.host.addr
    }

    /// The host this connection goes to.
    pub fn host(&self) -> &Rc<Host> {
        &self.host
    }

    pub fn state(&self) -> ConnState {
        self.state.borrow().clone()
    }

    pub fn is_ready(&self) -> bool {
        *self.state.borrow() == ConnState::Ready
    }

    /// Whether the upstream asked this connection to go away.
    pub fn is_draining(&self) -> bool {
        *self.state.borrow() == ConnState::Draining
    }

    /// Takes the connection out of service: no new requests; it closes once
    /// the answers in flight are in (its pool left the configuration).
    pub fn retire(&self) {
        if self.is_ready() {
            self.set_state(ConnState::Draining);
            self.io.wake();
        }
    }

    /// Requests (and heartbeats) waiting for an answer on this connection.
    pub fn in_flight(&self) -> usize {
        self.inner.borrow().streams.len()
    }

    fn set_state(&self, s: ConnState) {
        *self.state.borrow_mut() = s;
        self.state_changed.notify_waiters();
    }

    /// Drops the requests whose client connection has closed (MOSN resets
    /// them): their map entries, timers and in-flight counts would otherwise
    /// stay until the upstream answers or the client's own timeout (up to
    /// 2^31 ms) runs out, holding `max_request_per_conn` slots meanwhile. A
    /// late answer is then dropped as an unknown id. Returns how many.
    pub fn drop_abandoned(&self) -> usize {
        let mut inner = self.inner.borrow_mut();
        let gone = inner
            .streams
            .remove_where(|s| matches!(&s.waiting, Waiting::Request(stream) if stream.downstream_closed()));
        drop(inner);
        let n = gone.len();
        for (_, s) in gone {
            if let Waiting::Request(stream) = s.waiting {
                self.host.dec_active();
                stream.abandon();
            }
        }
        if n > 0 {
            // A draining connection may have nothing left to wait for.
            self.io.wake();
        }
        n
    }

    /// Waits until the connection is ready, or fails with why it never will be.
    pub async fn ready(&self) -> Result<(), ProxyError> {
        loop {
            let changed = self.state_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match &*self.state.borrow() {
                ConnState::Ready => return Ok(()),
                ConnState::Failed(why) => return Err(ProxyError::ConnectFailed(why.clone())),
                ConnState::Closed | ConnState::Draining => return Err(ProxyError::UpstreamReset),
                ConnState::Connecting => {}
            }
            changed.await;
        }
    }

    /// Writes a request frame with a fresh id. `stream` is `None` for a oneway
    /// request, which gets an id but no map entry. On failure the stream is
    /// handed back unanswered, so the caller can try elsewhere or fail it.
    pub fn send(
        self: &Rc<Self>,
        frame: Frame<'_>,
        stream: Option<ServerStream>,
        timeout: Duration,
    ) -> Result<(), Box<(Option<ServerStream>, ProxyError)>> {
        if stream.as_ref().is_some_and(ServerStream::downstream_closed) {
            // Its client left while it waited for this connection: nothing to send.
            if let Some(s) = stream {
                s.abandon();
            }
            return Ok(());
        }
        if !self.is_ready() || self.io.is_closed() {
            return Err(Box::new((stream, ProxyError::UpstreamReset)));
        }
        let mut inner = self.inner.borrow_mut();
        // No id, `max_request_per_conn` reached (checked here alone, for a
        // request the pool picked a ready connection for and one that
        // waited for the dial alike), or too much unwritten: one overflow
        // path, as each path that hands the request back costs every
        // request a few dozen instructions in moves of it.
        let full = (self.max_in_flight > 0 && inner.streams.len() >= self.max_in_flight as usize)
            || self.io.pending_at_least(OUTPUT_LIMIT);
        let Some(id) = (if full { None } else { inner.streams.next_free() }) else {
            return Err(Box::new((stream, ProxyError::Overflow)));
        };
        if let Some(mut stream) = stream {
            stream.set_upstream(self);
            let deadline = clock::now() + timeout;
            if inner.set_deadline(id, deadline, Waiting::Request(stream)) {
                // Its task arms the earlier timer.
                self.io.wake();
            }
            self.host.inc_active();
        }
        drop(inner);
        self.io.push_frame(self.codec, frame, id);
        Ok(())
    }

    /// Dials the host, then drives the connection until it closes. On close
    /// every request in flight is failed with the upstream-reset error.
    pub async fn run(self: Rc<Self>, connect_timeout: Duration, keepalive: KeepaliveSpec, on_close: impl FnOnce()) {
        let addr = self.host.addr;
        let mut stream = match self.host.connect(connect_timeout, false).await {
            Ok(s) => s,
            Err(why) => return self.connect_failed(why, on_close),
        };
        debug!(%addr, "upstream connected");
        self.last_active.set(Instant::now());
        self.set_state(ConnState::Ready);
        let mut handler = ClientHandler {
            conn: &self,
            reader: FrameReader::default(),
            keepalive,
            tick: Tick::at(Instant::now() + keepalive.interval),
        };
        let why = drive(&mut stream, &self.io, &mut handler).await;
        self.host.connection_closed();
        let failed = self.inner.borrow_mut().streams.drain();
        let n = failed.len();
        self.set_state(ConnState::Closed);
        on_close();
        if n > 0 {
            warn!(%addr, reason = ?why, in_flight = n, "upstream connection closed with requests in flight");
        } else {
            debug!(%addr, reason = ?why, "upstream connection closed");
        }
        for (_, s) in failed {
            if let Waiting::Request(stream) = s.waiting {
                self.host.dec_active();
                self.host.record_failure(&ProxyError::UpstreamReset);
                stream.fail(ProxyError::UpstreamReset);
            }
        }
        self.inner.borrow_mut().deadlines.clear();
    }

    fn connect_failed(&self, why: String, on_close: impl FnOnce()) {
        info!(reason = %why, "upstream connect failed");
        self.io.close();
        self.set_state(ConnState::Failed(why));
        on_close();
    }

    fn on_frame(&self, frame: Frame<'_>, info: FrameInfo) {
        match info.kind {
            FrameKind::Response | FrameKind::HeartbeatAck => {
                let mut inner = self.inner.borrow_mut();
                let Some(entry) = inner.streams.remove(info.id) else {
                    // A late answer: its request already timed out.
                    debug!(addr = %self.host.addr, id = info.id, "response for unknown id dropped");
                    return;
                };
                match entry.waiting {
                    Waiting::Heartbeat => {
                        inner.missed_heartbeats = 0;
                        inner.heartbeat_in_flight = false;
                    }
                    Waiting::Request(stream) => {
                        drop(inner);
                        self.host.dec_active();
                        let class = self.codec.response_class(&frame);
                        self.host.record_response(
                            class,
                            clock::now().into_std().saturating_duration_since(stream.started()),
                        );
                        stream.respond(frame, class);
                    }
                }
            }
            FrameKind::Heartbeat => {
                // The upstream probes us: answer it.
                self.io.push(|out| self.codec.heartbeat_reply(&frame, &info, out));
            }
            FrameKind::Control => {
                // Bolt's only control frame is GOAWAY.
                if self.is_ready() {
                    info!(addr = %self.host.addr, in_flight = self.in_flight(), "upstream sent GOAWAY: draining the connection");
                    self.set_state(ConnState::Draining);
                    self.io.wake();
                }
            }
            FrameKind::Request | FrameKind::Oneway => {
                debug!(addr = %self.host.addr, kind = ?info.kind, "unexpected frame from upstream dropped");
            }
        }
    }

    /// Expired timers: requests time out, missed heartbeats count up.
    fn poll_timers(&self, cx: &mut Context<'_>, keepalive: &KeepaliveSpec) -> Poll<&'static str> {
        loop {
            let mut inner = self.inner.borrow_mut();
            let Inner { streams, deadlines, .. } = &mut *inner;
            let Poll::Ready(id) = deadlines.poll_expired(cx, |id, at| waits_until(streams, id, at)) else {
                return Poll::Pending;
            };
            let Some(entry) = inner.streams.remove(id) else {
                continue;
            };
            match entry.waiting {
                Waiting::Request(stream) => {
                    drop(inner);
                    self.host.dec_active();
                    self.host.record_failure(&ProxyError::Timeout);
                    stream.fail(ProxyError::Timeout);
                }
                Waiting::Heartbeat => {
                    inner.heartbeat_in_flight = false;
                    inner.missed_heartbeats += 1;
                    let missed = inner.missed_heartbeats;
                    warn!(addr = %self.host.addr, missed, "upstream heartbeat not answered");
                    if missed >= keepalive.max_failures {
                        return Poll::Ready("heartbeats not answered");
                    }
                }
            }
        }
    }

    fn send_heartbeat(&self, keepalive: &KeepaliveSpec) {
        let mut inner = self.inner.borrow_mut();
        if inner.heartbeat_in_flight {
            return;
        }
        let Some(id) = inner.streams.next_free() else {
            return;
        };
        let mut frame = BytesMut::new();
        if !self.codec.heartbeat_request(id, &mut frame) {
            return;
        }
        if inner.set_deadline(id, Instant::now() + keepalive.timeout, Waiting::Heartbeat) {
            self.io.wake();
        }
        inner.heartbeat_in_flight = true;
        drop(inner);
        self.io.push(|out| out.extend_from_slice(&frame));
    }
}

struct ClientHandler<'a> {
    conn: &'a ClientConn,
    reader: FrameReader,
    keepalive: KeepaliveSpec,
    tick: Tick,
}

impl ClientHandler<'_> {
    /// `n` bytes arrived; `read` hands their whole frames to the connection.
    fn on_bytes(
        &mut self,
        n: usize,
        read: impl FnOnce(&mut FrameReader) -> Result<(), CodecError>,
    ) -> Result<(), &'static str> {
        let conn = self.conn;
        conn.host.count(|s| s.bytes_received.add(n as u64));
        conn.last_active.set(clock::now());
        read(&mut self.reader).map_err(|e| {
            warn!(addr = %conn.host.addr, error = %e, "bad frame from upstream, closing");
            "bad frame from upstream"
        })
    }
}

impl Handler for ClientHandler<'_> {
    fn on_written(&mut self, n: usize) {
        self.conn.host.count(|s| s.bytes_sent.add(n as u64));
    }

    fn on_read(&mut self, data: &[u8]) -> Result<(), &'static str> {
        let conn = self.conn;
        self.on_bytes(data.len(), |reader| {
            reader.feed(data, conn.codec, conn.max_frame, |frame, info| conn.on_frame(frame, info))
        })
    }

    fn read_space(&mut self) -> Option<Limit<&mut BytesMut>> {
        self.reader.space()
    }

    fn on_read_space(&mut self, n: usize) -> Result<(), &'static str> {
        let conn = self.conn;
        self.on_bytes(n, |reader| reader.filled(conn.codec, conn.max_frame, |frame, info| conn.on_frame(frame, info)))
    }

    fn on_eof(&mut self) -> Option<&'static str> {
        Some("")
    }

    fn poll_events(&mut self, cx: &mut Context<'_>) -> Poll<&'static str> {
        if let Poll::Ready(why) = self.conn.poll_timers(cx, &self.keepalive) {
            return Poll::Ready(why);
        }
        // Keep-alive: one timer, re-armed from the last read rather than reset on
        // every read, so a busy connection costs no timer work per frame.
        while self.tick.poll(cx).is_ready() {
            let idle_since = self.conn.last_active.get();
            let due = idle_since + self.keepalive.interval;
            let now = Instant::now();
            if now >= due {
                self.conn.send_heartbeat(&self.keepalive);
                self.conn.last_active.set(now);
                self.tick.reset(now + self.keepalive.interval);
            } else {
                self.tick.reset(due);
            }
        }
        Poll::Pending
    }

    fn read_paused(&self) -> bool {
        false
    }

    fn idle_close(&self) -> Option<&'static str> {
        (self.conn.is_draining() && self.conn.in_flight() == 0).then_some("drained after GOAWAY")
    }
}
