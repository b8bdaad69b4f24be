//! HTTP upstream connections, on hyper's client connection API.
//!
//! hyper frames the messages; this module owns the connections, per host and
//! per worker like the bolt pools: HTTP/1.1 connections are kept alive and
//! carry one request at a time (a connection goes back to the pool when hyper
//! says it is ready for the next request), HTTP/2 uses one multiplexed
//! connection, dialled once however many requests wait for it.
//!
//! The decision a reader may question: hyper-util's pooled `Client` would do
//! much of this, but it dials whatever the request URI names and derives
//! `:authority` from it. A proxy must dial the host its balancer chose while
//! keeping the client's Host / `:authority`, and must know whether a failure
//! happened before the request left (safe to try another host) or after.
//! Dialling is therefore separate from sending: [`HttpPool::connect`] fails
//! with the request still in the caller's hands.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use crate::host::conn::HostConn;
use crate::network::clock;
use crate::network::transport::Transport;
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::debug;

use crate::host::Host;
use crate::protocol::http::MAX_HEAD_BYTES;

pub mod h2;
pub mod header_maps;
pub mod raw;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every body ferrymesh hands to hyper, in either direction: boxed, and not
/// `Send`, since a request stays on its worker thread (a body read from a
/// pooled raw connection holds its pool, an `Rc`).
pub struct Body {
    inner: std::pin::Pin<Box<dyn hyper::body::Body<Data = Bytes, Error = BoxError>>>,
    /// The head fields of a raw upstream answer, for the HTTP/2 server to
    /// encode as they came instead of the response's (then empty) `HeaderMap`
    /// ([`raw::RawFields`]); only a response for that server carries them.
    fields: Option<Box<raw::RawFields>>,
}

impl Body {
    pub fn new(body: impl hyper::body::Body<Data = Bytes, Error = BoxError> + 'static) -> Body {
        Body { inner: Box::pin(body), fields: None }
    }

    /// A body whose response's head fields, if `fields` holds them, are
    /// those (and not its `HeaderMap`'s).
    pub fn with_fields(
        body: impl hyper::body::Body<Data = Bytes, Error = BoxError> + 'static,
        fields: Option<Box<raw::RawFields>>,
    ) -> Body {
        Body { inner: Box::pin(body), fields }
    }

    /// The head fields this body's response carries outside its `HeaderMap`.
    pub fn take_fields(&mut self) -> Option<Box<raw::RawFields>> {
        self.fields.take()
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        self.inner.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Most idle HTTP/1.1 connections kept per host and worker, in each of the
/// two lists (raw sockets, hyper's client). As many as a burst of answers can
/// hand back at once: with 512 requests in flight (64 h2c connections of 8
/// streams) a cap of 256 closed and redialled up to one connection every 25
/// requests. MOSN keeps every idle connection; nginx's benchmark config keeps
/// 1024; the sweeper closes those idle past the cluster's `idle_timeout`.
const MAX_IDLE_H1: usize = 1024;

/// Runs hyper's background futures on the worker's own thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalExec;

impl<F: std::future::Future + 'static> hyper::rt::Executor<F> for LocalExec {
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

/// Why a request did not get a response.
#[derive(Debug)]
pub enum SendError {
    /// The connection could not be made; the request never left.
    Connect(String),
    /// The request was (perhaps partly) sent and the exchange broke.
    Reset(String),
    /// An HTTP/2 upstream turned the request away unprocessed (RFC 9113
    /// §8.7: a `REFUSED_STREAM` reset; a GOAWAY, for an idempotent request):
    /// it may go again (after a GOAWAY, on a new connection).
    Refused(String),
}

impl SendError {
    /// What went wrong, whatever the kind.
    pub fn why(self) -> String {
        match self {
            SendError::Connect(why) | SendError::Reset(why) | SendError::Refused(why) => why,
        }
    }
}

/// A connection ready to carry one request.
pub enum Sender {
    H1(http1::SendRequest<Body>),
    /// The HTTP/2 connection and its generation.
    H2(http2::SendRequest<Body>, u64),
}

/// Which HTTP version to speak upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http1,
    Http2,
}

pub struct HttpPool {
    host: Rc<Host>,
    connect_timeout: Duration,
    /// How long an HTTP/1.1 connection may sit idle in the pool (`None`: no limit).
    idle_timeout: Option<Duration>,
    /// hyper's idle HTTP/1.1 connections, with when each was last busy.
    h1_idle: RefCell<Vec<(http1::SendRequest<Body>, Instant)>>,
    /// The HTTP/2 connection, with its generation (one per dial), so that a
    /// failure on an older one never drops a newer one.
    h2: RefCell<Option<(u64, http2::SendRequest<Body>)>>,
    h2_gen: Cell<u64>,
    h2_dialing: Cell<bool>,
    h2_dialed: Notify,
    h2_last_error: RefCell<Option<String>>,
    /// Idle HTTP/1.1 connections of the pass-through path (`proxy::http1`),
    /// which frames messages itself: plain sockets, no hyper task behind them.
    raw_idle: RefCell<Vec<(HostConn, Instant)>>,
    /// A task sweeps `h1_idle` and `raw_idle` while they hold connections.
    sweeping: Cell<bool>,
}

impl HttpPool {
    pub fn new(host: Rc<Host>, connect_timeout: Duration, idle_timeout: Option<Duration>) -> Rc<HttpPool> {
        Rc::new(HttpPool {
            host,
            connect_timeout,
            idle_timeout,
            h1_idle: RefCell::new(Vec::new()),
            h2: RefCell::new(None),
            h2_gen: Cell::new(0),
            h2_dialing: Cell::new(false),
            h2_dialed: Notify::new(),
            h2_last_error: RefCell::new(None),
            raw_idle: RefCell::new(Vec::new()),
            sweeping: Cell::new(false),
        })
    }

    pub fn host(&self) -> &Rc<Host> {
        &self.host
    }

    /// A connection for one request: an idle HTTP/1.1 one or a new one; the
    /// HTTP/2 one (dialled if there is none).
    pub async fn connect(self: &Rc<Self>, version: Version) -> Result<Sender, SendError> {
        match version {
            Version::Http1 => {
                if let Some(s) = self.take_idle_h1() {
                    return Ok(Sender::H1(s));
                }
                self.dial_h1().await.map(Sender::H1)
            }
            Version::Http2 => self.h2_sender().await.map(|(s, generation)| Sender::H2(s, generation)),
        }
    }

    /// A connection usable at once, without dialling: an idle HTTP/1.1 one, or
    /// the open HTTP/2 one. The common case, so it costs no timer.
    pub fn ready_now(&self, version: Version) -> Option<Sender> {
        match version {
            Version::Http1 => self.take_idle_h1().map(Sender::H1),
            Version::Http2 => self.open_h2().map(|(s, generation)| Sender::H2(s, generation)),
        }
    }

    fn take_idle_h1(&self) -> Option<http1::SendRequest<Body>> {
        // From the most recently returned; closed and expired ones met on
        // the way are dropped. Not every idle one is ready: the body of its
        // last response may still be streaming.
        let mut idle = self.h1_idle.borrow_mut();
        if idle.is_empty() {
            return None;
        }
        let now = Instant::now();
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            let s = &idle[i].0;
            if s.is_closed() {
                idle.swap_remove(i);
            } else if s.is_ready() {
                let (s, since) = idle.swap_remove(i);
                if !self.expired(since, now) {
                    return Some(s);
                }
            }
        }
        None
    }

    /// Whether a connection idle since `since` is past `idle_timeout` at `now`.
    fn expired(&self, since: Instant, now: Instant) -> bool {
        self.idle_timeout.is_some_and(|t| now.duration_since(since) >= t)
    }

    /// Sends `req` on `sender`. A stale keep-alive connection (closed by the
    /// upstream while idle) hands the request back unsent, and it is sent
    /// again on a fresh connection. Every failure is a [`SendError::Reset`]
    /// (the request is consumed, so even a failed redial leaves the caller
    /// nothing to send elsewhere), but an HTTP/2 stream the upstream turned
    /// away unprocessed, a [`SendError::Refused`].
    pub async fn send(self: &Rc<Self>, sender: Sender, req: Request<Body>) -> Result<Response<Incoming>, SendError> {
        match sender {
            Sender::H1(mut s) => {
                let mut req = req;
                for _ in 0..3 {
                    match s.try_send_request(req).await {
                        Ok(resp) => {
                            if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
                                self.return_h1(s);
                            }
                            return Ok(resp);
                        }
                        Err(mut e) => match e.take_message() {
                            Some(unsent) => {
                                debug!(addr = %self.host.addr, error = %e.error(), "stale upstream connection, redialling");
                                req = unsent;
                                s = self.dial_h1().await.map_err(|e| SendError::Reset(e.why()))?;
                            }
                            None => return Err(SendError::Reset(e.into_error().to_string())),
                        },
                    }
                }
                Err(SendError::Reset("upstream closed three connections in a row".into()))
            }
            Sender::H2(mut s, generation) => {
                let idempotent = req.method().is_idempotent();
                s.send_request(req).await.map_err(|e| {
                    let (refused, going_away) = refusal(&e, idempotent);
                    if going_away || s.is_closed() {
                        // A GOAWAY'd connection still finishes its streams,
                        // but new ones go to a fresh connection.
                        let mut h2 = self.h2.borrow_mut();
                        if h2.as_ref().is_some_and(|(g, _)| *g == generation) {
                            h2.take();
                        }
                    }
                    if refused {
                        SendError::Refused(e.to_string())
                    } else {
                        SendError::Reset(e.to_string())
                    }
                })
            }
        }
    }

    /// An idle pass-through connection that nothing arrived on while it
    /// waited (a close, or bytes the upstream had no business sending) and
    /// that is not past `idle_timeout`.
    pub fn take_raw(&self) -> Option<HostConn> {
        let mut idle = self.raw_idle.borrow_mut();
        if idle.is_empty() {
            return None;
        }
        let now = clock::now();
        while let Some((mut s, since)) = idle.pop() {
            if !self.expired(since, now) && s.is_quiet() {
                return Some(s);
            }
        }
        None
    }

    /// Gives back a pass-through connection whose last exchange ended
    /// cleanly. While any are idle, a task closes those the upstream closed
    /// and those idle longer than the cluster's `idle_timeout`.
    pub fn put_raw(self: &Rc<Self>, s: HostConn) {
        let mut idle = self.raw_idle.borrow_mut();
        if idle.len() < MAX_IDLE_H1 {
            idle.push((s, clock::now()));
        }
        self.start_sweeping();
    }

    /// Dials a connection for the pass-through path.
    pub async fn dial_raw(&self) -> Result<HostConn, SendError> {
        let stream = self.host.connect(self.connect_timeout, false).await.map_err(SendError::Connect)?;
        Ok(HostConn::new(stream, self.host.clone()))
    }

    fn return_h1(self: &Rc<Self>, s: http1::SendRequest<Body>) {
        let mut idle = self.h1_idle.borrow_mut();
        if idle.len() < MAX_IDLE_H1 {
            idle.push((s, Instant::now()));
        }
        self.start_sweeping();
    }

    fn start_sweeping(self: &Rc<Self>) {
        if !self.sweeping.replace(true) {
            tokio::task::spawn_local(sweep(Rc::downgrade(self)));
        }
    }

    /// Drops the idle connections that the upstream closed or that sat idle
    /// past `idle_timeout`; whether any are left.
    fn sweep_once(&self, now: Instant) -> bool {
        let expired = |since: Instant| self.expired(since, now);
        let mut raw = self.raw_idle.borrow_mut();
        raw.retain_mut(|(s, since)| !expired(*since) && s.is_quiet());
        let mut h1 = self.h1_idle.borrow_mut();
        h1.retain_mut(|(s, since)| {
            if s.is_closed() {
                return false;
            }
            if !s.is_ready() {
                // The body of its last response is still streaming: busy.
                *since = now;
            }
            !expired(*since)
        });
        !raw.is_empty() || !h1.is_empty()
    }

    /// Dials a connection for hyper. Not a [`HostConn`]: hyper's upgrades
    /// need an IO that is `Send`; the connection's task counts the close.
    async fn dial(&self, http2: bool) -> Result<TokioIo<Transport>, SendError> {
        self.host.connect(self.connect_timeout, http2).await.map(TokioIo::new).map_err(SendError::Connect)
    }

    async fn dial_h1(&self) -> Result<http1::SendRequest<Body>, SendError> {
        let io = self.dial(false).await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| SendError::Connect(format!("{}: {e}", self.host.addr)))?;
        let host = self.host.clone();
        tokio::task::spawn_local(async move {
            if let Err(e) = conn.with_upgrades().await {
                debug!(addr = %host.addr, error = %e, "upstream HTTP/1.1 connection ended");
            }
            host.connection_closed();
        });
        Ok(sender)
    }

    /// The open HTTP/2 connection, or one dialled for it. The dial runs as
    /// the pool's own task, not inside the request that started it: a request
    /// that stops waiting (its timeout, a reset stream) would otherwise cancel
    /// it half-way, leaving `h2_dialing` set and every later request waiting
    /// for a dial that never ends.
    async fn h2_sender(self: &Rc<Self>) -> Result<(http2::SendRequest<Body>, u64), SendError> {
        // A connection may go (a GOAWAY, a close) before this request gets
        // to it; a few times, and the upstream is not taking connections.
        for _ in 0..3 {
            if let Some(open) = self.open_h2() {
                return Ok(open);
            }
            let dialed = self.h2_dialed.notified();
            tokio::pin!(dialed);
            dialed.as_mut().enable();
            if !self.h2_dialing.get() {
                self.h2_dialing.set(true);
                let pool = self.clone();
                tokio::task::spawn_local(async move {
                    match pool.dial_h2().await {
                        Ok(s) => {
                            let generation = pool.h2_gen.get() + 1;
                            pool.h2_gen.set(generation);
                            *pool.h2.borrow_mut() = Some((generation, s));
                            pool.h2_last_error.borrow_mut().take();
                        }
                        Err(e) => {
                            pool.h2.borrow_mut().take();
                            *pool.h2_last_error.borrow_mut() = Some(e.why());
                        }
                    }
                    pool.h2_dialing.set(false);
                    pool.h2_dialed.notify_waiters();
                });
            }
            dialed.await;
            if let Some(open) = self.open_h2() {
                return Ok(open);
            }
            if let Some(why) = self.h2_last_error.borrow().clone() {
                return Err(SendError::Connect(why));
            }
            // Dialled, then already gone (a GOAWAY) before this request ran:
            // dial again.
        }
        Err(SendError::Connect(format!("{}: closed each new HTTP/2 connection at once", self.host.addr)))
    }

    /// The HTTP/2 connection and its generation, if one is open.
    fn open_h2(&self) -> Option<(http2::SendRequest<Body>, u64)> {
        self.h2.borrow().as_ref().filter(|(_, s)| !s.is_closed()).map(|(g, s)| (s.clone(), *g))
    }

    async fn dial_h2(&self) -> Result<http2::SendRequest<Body>, SendError> {
        let io = self.dial(true).await?;
        let (sender, conn) = http2::Builder::new(LocalExec)
            .timer(TokioTimer::new())
            // Response heads as large as an HTTP/1.1 upstream's may be.
            .max_header_list_size(MAX_HEAD_BYTES as u32)
            .handshake(io)
            .await
            .map_err(|e| SendError::Connect(format!("{}: {e}", self.host.addr)))?;
        let host = self.host.clone();
        tokio::task::spawn_local(async move {
            if let Err(e) = conn.await {
                debug!(addr = %host.addr, error = %e, "upstream HTTP/2 connection ended");
            }
            host.connection_closed();
        });
        Ok(sender)
    }
}

/// How an HTTP/2 exchange failed: whether before the upstream processed
/// the request (hyper dropped it unsent; the upstream reset its stream with
/// `REFUSED_STREAM`; a GOAWAY ended it, for an `idempotent` request), and
/// whether the connection is going away (a GOAWAY, or closed). h2 reports the
/// streams above a GOAWAY's last id, which were not processed, with the same
/// error as those below it that the connection's close cut, so only a request
/// that may be repeated anyway counts those. A `REFUSED_STREAM` leaves the
/// connection usable.
fn refusal(e: &hyper::Error, idempotent: bool) -> (bool, bool) {
    if e.is_canceled() {
        return (true, true);
    }
    let Some(h2) = std::error::Error::source(e).and_then(|s| s.downcast_ref::<::h2::Error>()) else {
        return (false, false);
    };
    let refused_stream = h2.is_reset() && h2.reason() == Some(::h2::Reason::REFUSED_STREAM);
    let going_away = h2.is_go_away();
    (h2.is_remote() && (refused_stream || (idempotent && going_away)), going_away)
}

/// How often idle connections are checked at most. A connection past
/// `idle_timeout` is never handed out (the take checks), and the sweep closes
/// it within half the timeout (at least 50 ms) or this, whichever is smaller.
/// A hyper connection counts as idle from its last response head, or from the
/// last sweep that found its response body still streaming.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

async fn sweep(pool: std::rc::Weak<HttpPool>) {
    let every = pool
        .upgrade()
        .and_then(|p| p.idle_timeout)
        .map_or(SWEEP_EVERY, |t| (t / 2).clamp(Duration::from_millis(50), SWEEP_EVERY));
    loop {
        tokio::time::sleep(every).await;
        let Some(pool) = pool.upgrade() else { return };
        if !pool.sweep_once(Instant::now()) {
            pool.sweeping.set(false);
            return;
        }
    }
}
