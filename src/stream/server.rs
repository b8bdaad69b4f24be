//! Server side: the downstream connection as the stream layer sees it, and the
//! server stream that answers one request on it.

use std::cell::Cell;
use std::rc::Rc;

use bytes::BytesMut;
use tracing::{debug, error};

use crate::error::ProxyError;
use crate::network::conn::ConnShared;
use crate::protocol::{Codec, FrameInfo};
use crate::stats::Stats;

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

/// A downstream (client) connection.
pub struct ServerConn {
    pub io: ConnShared,
    pub codec: &'static dyn Codec,
    pub stats: Rc<Stats>,
    hook: Option<Rc<dyn ResponseHook>>,
    inflight: Cell<u32>,
}

impl ServerConn {
    pub fn new(codec: &'static dyn Codec, stats: Rc<Stats>, hook: Option<Rc<dyn ResponseHook>>) -> ServerConn {
        ServerConn { io: ConnShared::default(), codec, stats, hook, inflight: Cell::new(0) }
    }

    /// Requests of this connection still waiting for their answer.
    pub fn inflight(&self) -> u32 {
        self.inflight.get()
    }

    /// Opens a server stream for request `info` (not for oneway requests).
    pub fn stream(self: &Rc<Self>, info: FrameInfo) -> ServerStream {
        self.inflight.set(self.inflight.get() + 1);
        self.stats.downstream_active.set(self.stats.downstream_active.get() + 1);
        ServerStream { conn: self.clone(), info, answered: false }
    }

    /// Answers a request that never got a server stream (refused up front).
    pub fn reply_error(&self, info: &FrameInfo, err: &ProxyError) {
        self.stats.count_error(err);
        self.io.push(|out| self.codec.error_response(info, info.id, err, out));
    }
}

/// One downstream request waiting for its answer. It must be answered exactly
/// once: [`ServerStream::respond`] or [`ServerStream::fail`] consume it, and a
/// stream dropped without either answers with an internal error and logs a bug.
pub struct ServerStream {
    conn: Rc<ServerConn>,
    info: FrameInfo,
    answered: bool,
}

impl ServerStream {
    pub fn info(&self) -> &FrameInfo {
        &self.info
    }

    /// Writes the upstream's response `frame` with the client's id restored.
    pub fn respond(mut self, frame: &[u8]) {
        let conn = &self.conn;
        let codec = conn.codec;
        let replaced;
        let frame = match conn.hook.as_ref().map(|h| h.on_response(codec, frame)) {
            None | Some(HookResult::Forward) => frame,
            Some(HookResult::Replace(f)) => {
                replaced = f;
                &replaced[..]
            }
            Some(HookResult::Fail(err)) => return self.fail(err),
        };
        conn.stats.count_response(codec.response_class(frame));
        let id = self.info.id;
        let sent = conn.io.push(|out| {
            let start = out.len();
            out.extend_from_slice(frame);
            codec.patch_id(&mut out[start..], id);
        });
        if !sent {
            debug!(id, "client connection closed before its response");
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
        self.finish();
    }

    /// Answers with the protocol's error response for `err`.
    pub fn fail(mut self, err: ProxyError) {
        let conn = &self.conn;
        debug!(id = self.info.id, error = %err, status = conn.codec.error_status(&err, self.info.reply_tag), "request failed");
        conn.reply_error(&self.info, &err);
        self.finish();
    }

    fn finish(&mut self) {
        self.answered = true;
        let conn = &self.conn;
        conn.inflight.set(conn.inflight.get() - 1);
        conn.stats.downstream_active.set(conn.stats.downstream_active.get().saturating_sub(1));
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
