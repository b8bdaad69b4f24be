//! Server side: the downstream connection as the stream layer sees it, and the
//! server stream that answers one request on it.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Instant;

use bytes::BytesMut;
use tracing::{debug, error};

use crate::error::ProxyError;
use crate::host::Host;
use crate::network::clock;
use crate::network::conn::ConnShared;
use crate::network::frames::Frame;
use crate::protocol::{Codec, FrameInfo};
use crate::stats::Stats;

use super::client::ClientConn;
use smallvec::SmallVec;

/// What a response hook (the proxy's response filters) decides.
pub enum HookResult {
    Forward,
    /// Send this frame instead (e.g. with headers changed).
    Replace(BytesMut),
    /// Answer with this error instead.
    Fail(ProxyError),
}

/// Called on every upstream response before it is written downstream.
pub trait ResponseHook {
    fn on_response(&self, codec: &dyn Codec, frame: &[u8]) -> HookResult;
}

/// How one request ended, for whoever watches a connection's requests (the
/// proxy's listener counters and access log).
pub struct StreamEnd<'a> {
    pub info: &'a FrameInfo,
    pub started: Instant,
    /// The host that answered (or failed), as text, if the request got that far.
    pub upstream: Option<&'a str>,
    /// The HTTP-like status of the answer (`Codec::response_class`, or the
    /// error's code).
    pub status: u16,
    pub error: Option<&'a ProxyError>,
    /// Bytes of the request frame and of the answer written.
    pub bytes_received: usize,
    pub bytes_sent: usize,
}

/// Watches the requests of a connection: told once of each request that
/// expects an answer (not of oneway requests).
pub trait StreamObserver {
    /// A request was answered, or abandoned (`status` 0) with its client gone.
    fn on_end(&self, end: &StreamEnd<'_>);
}

/// A downstream (client) connection.
pub struct ServerConn {
    pub io: ConnShared,
    pub codec: &'static dyn Codec,
    pub stats: Rc<Stats>,
    observer: Option<Rc<dyn StreamObserver>>,
    inflight: Cell<u32>,
    /// The upstream connections its requests went to: a few at most, as
    /// requests multiplex onto a pool's connections. When it closes with
    /// requests in flight, only these are asked to forget them.
    upstreams: RefCell<SmallVec<[Weak<ClientConn>; 2]>>,
    /// Its requests went to more connections than `upstreams` keeps.
    lost_track: Cell<bool>,
    /// The last of `upstreams` a request went to, compared by address: the
    /// `Weak` kept for it holds its allocation, so no other connection can
    /// come to have that address while it is here.
    last_upstream: Cell<*const ClientConn>,
}

/// How many upstream connections a client connection keeps track of.
const TRACKED_UPSTREAMS: usize = 8;

impl ServerConn {
    pub fn new(codec: &'static dyn Codec, stats: Rc<Stats>, observer: Option<Rc<dyn StreamObserver>>) -> ServerConn {
        ServerConn {
            io: ConnShared::default(),
            codec,
            stats,
            observer,
            inflight: Cell::new(0),
            upstreams: RefCell::new(SmallVec::new()),
            lost_track: Cell::new(false),
            last_upstream: Cell::new(std::ptr::null()),
        }
    }

    pub fn observer(&self) -> Option<&Rc<dyn StreamObserver>> {
        self.observer.as_ref()
    }

    /// Requests of this connection still waiting for their answer.
    pub fn inflight(&self) -> u32 {
        self.inflight.get()
    }

    /// Notes that a request went to `upstream`: nearly always the one the
    /// last went to, a compare.
    #[inline]
    fn went_to(&self, upstream: &Rc<ClientConn>) {
        if !std::ptr::eq(self.last_upstream.get(), Rc::as_ptr(upstream)) {
            self.note_upstream(upstream);
        }
    }

    #[cold]
    fn note_upstream(&self, upstream: &Rc<ClientConn>) {
        let mut ups = self.upstreams.borrow_mut();
        if ups.iter().any(|u| std::ptr::eq(u.as_ptr(), Rc::as_ptr(upstream))) {
            self.last_upstream.set(Rc::as_ptr(upstream));
            return;
        }
        // Gone ones make room; the last may be among them.
        self.last_upstream.set(std::ptr::null());
        ups.retain(|u| u.strong_count() > 0);
        if ups.len() < TRACKED_UPSTREAMS {
            ups.push(Rc::downgrade(upstream));
            self.last_upstream.set(Rc::as_ptr(upstream));
        } else {
            self.lost_track.set(true);
        }
    }

    /// Has the upstream connections this (closed) connection's requests
    /// went to forget those still waiting ([`ClientConn::drop_abandoned`]):
    /// how many, or `None` when it lost track of where they went, and every
    /// pool must look. The cost is that of the few tables its requests are
    /// in, not of every upstream connection of every cluster of the listener.
    pub fn drop_abandoned(&self) -> Option<usize> {
        if self.lost_track.get() {
            return None;
        }
        let ups: SmallVec<[Rc<ClientConn>; 2]> = self.upstreams.borrow().iter().filter_map(Weak::upgrade).collect();
        Some(ups.iter().map(|c| c.drop_abandoned()).sum())
    }

    /// Opens a server stream for request `info` (not for oneway requests),
    /// `len` bytes long, whose response passes through `hook`.
    pub fn stream(self: &Rc<Self>, info: FrameInfo, len: usize, hook: Option<Rc<dyn ResponseHook>>) -> ServerStream {
        self.inflight.set(self.inflight.get() + 1);
        self.stats.downstream_active.inc();
        ServerStream {
            conn: self.clone(),
            info,
            answered: false,
            hook,
            started: clock::now().into_std(),
            upstream: None,
            request_len: len as u32,
        }
    }

    /// Answers a request that never got a server stream (refused up front).
    pub fn reply_error(&self, info: &FrameInfo, err: &ProxyError) {
        self.reply_error_from(info, err, clock::now().into_std(), None, 0);
    }

    /// Writes the error answer and tells the observer.
    fn reply_error_from(
        &self,
        info: &FrameInfo,
        err: &ProxyError,
        started: Instant,
        upstream: Option<&str>,
        received: usize,
    ) {
        self.stats.count_error(err);
        let mut sent = 0;
        self.io.push(|out| {
            let at = out.len();
            self.codec.error_response(info, info.id, err, out);
            sent = out.len() - at;
        });
        if let Some(o) = &self.observer {
            o.on_end(&StreamEnd {
                info,
                started,
                upstream,
                status: err.code(),
                error: Some(err),
                bytes_received: received,
                bytes_sent: sent,
            });
        }
    }
}

/// One downstream request waiting for its answer. It must be answered exactly
/// once: [`ServerStream::respond`] or [`ServerStream::fail`] consume it, and a
/// stream dropped without either answers with an internal error and logs a bug.
pub struct ServerStream {
    conn: Rc<ServerConn>,
    info: FrameInfo,
    answered: bool,
    request_len: u32,
    hook: Option<Rc<dyn ResponseHook>>,
    started: Instant,
    upstream: Option<Rc<Host>>,
}

impl ServerStream {
    pub fn info(&self) -> &FrameInfo {
        &self.info
    }

    /// When the request arrived.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The request is written on `conn` (its host for the access log).
    #[inline(always)]
    pub fn set_upstream(&mut self, conn: &Rc<ClientConn>) {
        self.upstream = Some(conn.host().clone());
        self.conn.went_to(conn);
    }

    fn upstream_text(&self) -> Option<&str> {
        self.upstream.as_ref().map(|h| h.addr_text())
    }

    /// Writes the upstream's response `frame` with the client's id restored.
    /// `class` is the frame's [`Codec::response_class`], which the upstream
    /// connection has already read for its host's counters; a response hook
    /// that replaces the frame has it read again.
    pub fn respond(mut self, frame: Frame<'_>, class: u16) {
        let conn = &self.conn;
        let codec = conn.codec;
        let (frame, status) = match self.hook.as_ref().map(|h| h.on_response(codec, &frame)) {
            None | Some(HookResult::Forward) => (frame, class),
            Some(HookResult::Replace(f)) => {
                let f = Frame::Owned(f);
                let status = codec.response_class(&f);
                (f, status)
            }
            Some(HookResult::Fail(err)) => return self.fail(err),
        };
        conn.stats.count_response(status);
        let id = self.info.id;
        let written = conn.io.push_frame(codec, frame, id);
        if written.is_none() {
            debug!(id, "client connection closed before its response");
        }
        let written = written.unwrap_or(0);
        if let Some(o) = &conn.observer {
            o.on_end(&StreamEnd {
                info: &self.info,
                started: self.started,
                upstream: self.upstream_text(),
                status,
                error: None,
                bytes_received: self.request_len as usize,
                bytes_sent: written,
            });
        }
        self.finish();
    }

    /// Whether the client connection this request came on has closed.
    pub fn downstream_closed(&self) -> bool {
        self.conn.io.is_closed()
    }

    /// Lets a request go unanswered because its client connection is gone:
    /// there is no one left to answer.
    pub fn abandon(mut self) {
        debug!(id = self.info.id, "client connection gone: request abandoned");
        if let Some(o) = &self.conn.observer {
            o.on_end(&StreamEnd {
                info: &self.info,
                started: self.started,
                upstream: self.upstream_text(),
                status: 0,
                error: None,
                bytes_received: self.request_len as usize,
                bytes_sent: 0,
            });
        }
        self.finish();
    }

    /// Answers with the protocol's error response for `err`.
    pub fn fail(mut self, err: ProxyError) {
        let conn = &self.conn;
        debug!(id = self.info.id, error = %err, status = conn.codec.error_status(&err, self.info.reply_tag), "request failed");
        conn.reply_error_from(&self.info, &err, self.started, self.upstream_text(), self.request_len as usize);
        self.finish();
    }

    fn finish(&mut self) {
        self.answered = true;
        let conn = &self.conn;
        conn.inflight.set(conn.inflight.get() - 1);
        conn.stats.downstream_active.dec();
        if conn.inflight.get() == 0 {
            // A draining connection may close now.
            conn.io.wake();
        }
    }
}

impl Drop for ServerStream {
    fn drop(&mut self) {
        if !self.answered {
            error!(id = self.info.id, "bug: request dropped without an answer");
            self.conn.reply_error(&self.info, &ProxyError::Internal("request dropped without an answer"));
            self.finish();
        }
    }
}
