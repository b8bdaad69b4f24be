//! HTTP/2 server connections on our own frame layer (RFC 9113).
//!
//! One task per connection reads and parses frames, keeps every stream's
//! state and windows, and writes what the streams queue. Each request's work
//! (the service, then its response streamed back through the connection's
//! output) is a future in that same task's [`TaskSet`], not a task of its
//! own. Both sides of a stream live in one map behind an
//! `Rc<RefCell<_>>`: everything runs on the worker's thread, so nothing here
//! locks. (`h2`, under hyper, keeps its stream store behind a mutex that
//! every frame and every body poll takes.)
//!
//! What the connection refuses, and how (RFC 9113 §5.4): a frame that breaks
//! the connection's framing or state gets GOAWAY and a close; one that breaks
//! only a stream's gets RST_STREAM. Abuse is held to bounded work:
//! - a header block (HEADERS and its CONTINUATIONs) past `max_block` bytes
//!   closes the connection (CONTINUATION floods);
//! - decoded fields past the header list limit get 431, however small the
//!   block was; past `BOMB_FACTOR` times the limit they close the connection
//!   (HPACK bombs);
//! - streams beyond `max_concurrent` are refused with REFUSED_STREAM;
//! - streams the client resets before their answer spend a budget that
//!   answered streams refill; when it runs out the connection is closed with
//!   ENHANCE_YOUR_CALM (rapid reset, CVE-2023-44487);
//! - runs of empty DATA and CONTINUATION frames are counted the same way;
//! - nothing more is read while the output waits for a client that does not
//!   read (SETTINGS and PING floods);
//! - a response is polled from upstream only when the client's windows have
//!   room (zero-window readers).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, CONTENT_LENGTH, EXPECT, TE};
use http::{Method, Request, Response, Uri};
use http_body_util::BodyExt as _;
use hyper::body::{Body as _, Frame};
use tokio::time::Instant;
use tracing::{debug, info};

use super::header_maps;
use super::raw::{spare, RawFields};
use super::{Body, BoxError};
use crate::network::clock;
use crate::network::conn::WRITE_TIMEOUT;
use crate::network::counted::IoBytes;
use crate::network::taskset::TaskSet;
use crate::network::tick::Tick;
use crate::network::transport::Transport;
use crate::protocol::http::h2::hpack::{self, Decoder, Kept, Name, Pseudo, Value};
use crate::protocol::http::h2::{self as wire, flag, kind, setting, Head, Reason, HEAD_LEN, PREFACE};

/// What a server connection announces and enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_concurrent: u32,
    /// The receive window of each stream (SETTINGS_INITIAL_WINDOW_SIZE);
    /// at least 65,535, so that it holds before the client acknowledges it.
    pub stream_window: u32,
    /// The connection's receive window, raised from 65,535 at the start.
    pub conn_window: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE: decoded fields past it get 431.
    pub max_header_list: usize,
    /// SETTINGS_HEADER_TABLE_SIZE for the client's encoder.
    pub header_table: usize,
}

/// How a server connection runs.
pub struct ServerConf {
    pub limits: Limits,
    /// With no stream open this long, the connection is closed (GOAWAY).
    pub idle: Duration,
    /// Where the connection's bytes in and out are counted.
    pub bytes: Arc<IoBytes>,
}

/// Header blocks (HEADERS plus CONTINUATION, still compressed) past this
/// close the connection: twice what any accepted header list could compress to.
const fn max_block(limits: &Limits) -> usize {
    limits.max_header_list * 2
}

/// Output queued past this stops reading and stalls responses until the
/// client takes some.
const HIGH_WATER: usize = 256 * 1024;

/// A header list this many times past the limit closes the connection
/// rather than getting 431: no client sends one, and decoding it is work an
/// attacker gets for a few bytes (HPACK bombs).
const BOMB_FACTOR: usize = 4;

/// Reads a connection takes before it lets the worker's other tasks run.
const READS_PER_POLL: u32 = 4;

/// Streams reset by the client before their answer, in excess of those
/// answered; past it the connection is closed.
const RESET_BUDGET: u32 = 1024;

/// Empty DATA / CONTINUATION frames in a row before the connection is closed.
const EMPTY_FRAMES: u32 = 1024;

/// A stream the connection knows.
struct Stream {
    /// Request body not yet taken by the service.
    recv: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    /// END_STREAM came from the client.
    recv_end: bool,
    /// The body reader gave up (or there is none): data is dropped and its
    /// window given back at once.
    recv_dropped: bool,
    /// Bytes the client may still send on this stream.
    recv_window: i64,
    /// Taken by the reader and not yet given back by WINDOW_UPDATE.
    recv_release: u32,
    /// content-length and what arrived against it.
    expected: Option<u64>,
    received: u64,
    body_waker: Option<Waker>,
    /// Bytes we may send on this stream.
    send_window: i64,
    send_waker: Option<Waker>,
    /// The response's END_STREAM is out.
    send_end: bool,
    /// Set once the stream is reset (by either side): the body reader sees
    /// an error, the responder stops.
    reset: bool,
    /// The waker of the stream's work (`Guarded`), to end it at once when
    /// the stream is reset.
    task: Option<Waker>,
}

impl Stream {
    fn new(send_window: i64, recv_window: i64) -> Stream {
        Stream {
            recv: VecDeque::new(),
            trailers: None,
            recv_end: false,
            recv_dropped: false,
            recv_window,
            recv_release: 0,
            expected: None,
            received: 0,
            body_waker: None,
            send_window,
            send_waker: None,
            send_end: false,
            reset: false,
            task: None,
        }
    }

    /// Wakes everything that waits on the stream: its body reader, its
    /// responder, and its work (`Guarded`), which then ends.
    fn wake(&mut self) {
        for w in [self.body_waker.take(), self.send_waker.take(), self.task.take()].into_iter().flatten() {
            w.wake();
        }
    }
}

/// A connection error: GOAWAY with this reason, then close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ConnError(Reason, &'static str);

/// What the connection task and the stream tasks share.
struct Shared {
    limits: Limits,
    /// Frames waiting to be written.
    out: BytesMut,
    conn_waker: Option<Waker>,
    streams: HashMap<u32, Stream, foldhash::fast::FixedState>,
    /// Stream tasks waiting for `out` to drain below `HIGH_WATER`.
    waiting: Vec<Waker>,
    /// Stream tasks waiting for the client to open the connection's window.
    /// Apart from `waiting`: a client that keeps the window shut while
    /// `out` is empty would otherwise have them woken on every pass, each
    /// wake bringing on the next pass (a worker spun at 100%).
    window_waiting: Vec<Waker>,
    send_window: i64,
    /// The client's SETTINGS.
    peer_initial_window: i64,
    peer_max_frame: usize,
    recv_window: i64,
    recv_release: u32,
    /// The connection is gone: readers and responders stop.
    closed: bool,
    reset_budget: u32,
    /// When the last stream ended (for the idle timeout).
    last_active: Instant,
    /// The connection task is inside `Conn::poll`, which writes what is
    /// queued and looks at the streams after running them.
    polling: bool,
    /// The streams we reset last: the client may have sent their trailers
    /// before it saw the reset, and those are ignored ([`Shared::rst`]).
    recent_resets: VecDeque<u32>,
}

/// How many reset streams [`Shared::recent_resets`] remembers.
const RECENT_RESETS: usize = 32;

impl Shared {
    /// Wakes the connection task for output queued or a stream ended. Not
    /// from inside its own poll (the stream tasks run there): the pass goes
    /// on to write and look, and the wake only had tokio poll it once more
    /// for nothing, two or three times per request at a steady rate.
    fn wake_conn(&mut self) {
        if self.polling {
            return;
        }
        if let Some(w) = self.conn_waker.take() {
            w.wake();
        }
    }

    fn wake_waiting(&mut self) {
        for w in self.waiting.drain(..) {
            w.wake();
        }
    }

    fn wake_window_waiting(&mut self) {
        for w in self.window_waiting.drain(..) {
            w.wake();
        }
    }

    /// Gives `n` received bytes of `id` back to the client's windows, in
    /// WINDOW_UPDATEs once half a window is owed.
    fn release(&mut self, id: u32, n: u32) {
        if n == 0 {
            return;
        }
        self.recv_release += n;
        if self.recv_release >= self.limits.conn_window / 2 {
            wire::write_window_update(&mut self.out, 0, self.recv_release);
            self.recv_window += i64::from(self.recv_release);
            self.recv_release = 0;
            self.wake_conn();
        }
        let half = self.limits.stream_window / 2;
        if let Some(s) = self.streams.get_mut(&id) {
            if s.recv_end {
                return;
            }
            s.recv_release += n;
            if s.recv_release >= half {
                let inc = s.recv_release;
                s.recv_window += i64::from(inc);
                s.recv_release = 0;
                wire::write_window_update(&mut self.out, id, inc);
                self.wake_conn();
            }
        }
    }

    /// Takes `id` out of the map as reset (by either side): whatever waits
    /// on it wakes to find it gone, and the request body it held goes back to
    /// the connection's window.
    fn drop_stream(&mut self, id: u32) -> Option<Stream> {
        let mut s = self.streams.remove(&id)?;
        s.reset = true;
        s.wake();
        let owed = take_held(&mut s.recv);
        self.release(0, owed);
        Some(s)
    }

    /// Resets `id` from our side with `reason`.
    fn reset(&mut self, id: u32, reason: Reason) {
        self.drop_stream(id);
        self.rst(id, reason);
        self.wake_conn();
    }

    /// Writes RST_STREAM for `id` and remembers it among the recent resets.
    fn rst(&mut self, id: u32, reason: Reason) {
        wire::write_rst(&mut self.out, id, reason);
        if self.recent_resets.len() == RECENT_RESETS {
            self.recent_resets.pop_front();
        }
        self.recent_resets.push_back(id);
    }

    /// Drops `id` once both directions are done. A body the answer came
    /// before (an upstream that answered without reading it) may still hold
    /// received bytes: they go back to the connection's window, else each
    /// such stream would keep them from it for good, and uploads on the
    /// connection would stall once the window was gone.
    fn finish_if_done(&mut self, id: u32) {
        let done = self.streams.get(&id).is_some_and(|s| s.send_end && (s.recv_end || s.recv_dropped));
        if done {
            if let Some(mut s) = self.streams.remove(&id) {
                let owed = take_held(&mut s.recv);
                self.release(0, owed);
            }
            self.reset_budget = (self.reset_budget + 1).min(RESET_BUDGET);
            self.last_active = clock::now();
            self.wake_conn();
        }
    }
}

/// A request body read from the connection's frames.
struct RecvBody {
    id: u32,
    shared: Rc<RefCell<Shared>>,
    size: Option<u64>,
    done: bool,
}

impl hyper::body::Body for RecvBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let id = self.id;
        let mut sh = self.shared.borrow_mut();
        let closed = sh.closed;
        let Some(s) = sh.streams.get_mut(&id) else {
            drop(sh);
            self.done = true;
            return Poll::Ready(Some(Err("HTTP/2 stream reset by the client".into())));
        };
        if let Some(data) = s.recv.pop_front() {
            let n = data.len() as u32;
            sh.release(id, n);
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if s.reset || closed {
            drop(sh);
            self.done = true;
            return Poll::Ready(Some(Err("HTTP/2 stream reset".into())));
        }
        if s.recv_end {
            let trailers = s.trailers.take();
            drop(sh);
            self.done = true;
            return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
        }
        if !s.body_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.body_waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.done
            || self
                .shared
                .borrow()
                .streams
                .get(&self.id)
                .is_some_and(|s| s.recv_end && s.recv.is_empty() && s.trailers.is_none())
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self.size {
            Some(n) => hyper::body::SizeHint::with_exact(n),
            None => hyper::body::SizeHint::default(),
        }
    }
}

impl Drop for RecvBody {
    fn drop(&mut self) {
        let Ok(mut sh) = self.shared.try_borrow_mut() else { return };
        let id = self.id;
        let Some(s) = sh.streams.get_mut(&id) else { return };
        s.recv_dropped = true;
        s.body_waker = None;
        if s.send_end && !s.recv_end {
            // Answered, and the rest of the body is not wanted.
            stop_request_body(&mut sh, id);
        } else {
            let owed = take_held(&mut s.recv);
            // Given back to the connection only: the stream takes no more.
            sh.release(0, owed);
        }
        sh.finish_if_done(id);
        sh.wake_conn();
    }
}

/// The connection task's own state. `W` is a stream's work ([`stream_work`]),
/// `M` what makes it.
struct Conn<S, M, W> {
    io: Transport,
    read: BytesMut,
    bytes: Arc<IoBytes>,
    shared: Rc<RefCell<Shared>>,
    decoder: Decoder,
    /// Called once per request; its future runs in `tasks`.
    service: Rc<S>,
    /// Makes a stream's work: [`stream_work`], whose future's type `W` is
    /// named (for [`WorkSlot`]) only through this. A fn item, not a fn
    /// pointer, so the call is direct and the work is built where it goes.
    make_work: M,
    /// Each open stream's work (the service, then writing its response),
    /// run inside the connection's own task: no task spawned per request.
    tasks: TaskSet<Guarded<W>>,
    /// 0: waiting for the preface; 1: for the client's first SETTINGS; 2: greeted.
    greeting: u8,
    last_stream: u32,
    /// A header block in pieces: stream, END_STREAM, the block so far.
    partial: Option<(u32, bool, Vec<u8>)>,
    empty_frames: u32,
    /// GOAWAY sent (with the last stream we take) or received.
    going_away: Option<u32>,
    /// A connection error: nothing more is read, and the connection closes
    /// once the GOAWAY is out.
    failed: bool,
    read_closed: bool,
    uris: UriCache,
    /// The last request header block that decoded without touching the
    /// HPACK table, with the table's generation then and what it decoded
    /// to. A client that sends the same request again (same fields, all
    /// indexed or literals without indexing, as h2load and curl do, and gRPC
    /// stubs calling one method without a deadline) sends the same bytes,
    /// and the repeat then costs a compare and a copy into a pooled map
    /// instead of a decode (about 870 instructions of an h2c request).
    /// Dropped when the connection parks.
    last_block: Option<Box<Kept<(u64, Decoded)>>>,
    /// A block has been decoded since the connection (un)parked: blocks are
    /// kept from the second on, so one that serves a request and idles
    /// allocates nothing for repeats.
    decoded_one: bool,
    /// Since when output has waited with the client taking none of it; the
    /// connection's tick closes it past [`WRITE_TIMEOUT`].
    stalled_since: Option<Instant>,
}

/// Longer blocks are decoded every time rather than kept.
const MAX_KEPT_BLOCK: usize = 1024;

/// The last `:authority` and `:path` a connection's requests carried,
/// parsed. A client sends the same ones again and again (one origin, often
/// one method), and a repeat then costs a compare instead of a parse
/// (about 220 instructions of an h2c request). Dropped with the connection
/// state when it parks.
#[derive(Default)]
struct UriCache {
    authority: Option<http::uri::Authority>,
    path: Option<http::uri::PathAndQuery>,
}

impl UriCache {
    fn authority(&mut self, raw: Bytes) -> Option<http::uri::Authority> {
        reuse(&mut self.authority, raw, http::uri::Authority::as_str, |b| {
            http::uri::Authority::from_maybe_shared(b).ok()
        })
    }

    fn path(&mut self, raw: Bytes) -> Option<http::uri::PathAndQuery> {
        reuse(&mut self.path, raw, http::uri::PathAndQuery::as_str, |b| {
            http::uri::PathAndQuery::from_maybe_shared(b).ok()
        })
    }
}

/// The value in `kept` if it was made from the same bytes as `raw`, else
/// `raw` parsed, and kept for next time.
fn reuse<T: Clone>(
    kept: &mut Option<T>,
    raw: Bytes,
    text: impl Fn(&T) -> &str,
    parse: impl FnOnce(Bytes) -> Option<T>,
) -> Option<T> {
    if let Some(v) = kept.as_ref().filter(|v| text(v).as_bytes() == raw) {
        return Some(v.clone());
    }
    let v = parse(raw)?;
    *kept = Some(v.clone());
    Some(v)
}

/// Pinned room for one stream's work, reused: the work is dropped in place
/// when it ends (`Pin::set(None)`), and the next stream's is put there.
type WorkSlot<W> = Pin<Box<Option<W>>>;

/// Room for streams' work, left by streams that ended, for the worker's
/// next streams on any connection (as `raw::spare` keeps read buffers). The
/// work is kilobytes (the proxy's whole request path), too large for the
/// allocator's per-thread cache: allocated and freed per request it cost
/// about 1,600 instructions of an h2c request's 23,500. Kept by the worker
/// rather than by each connection, so an idle connection holds none.
mod spare_work {
    use std::any::Any;
    use std::cell::RefCell;

    use super::WorkSlot;
    use crate::network::spares::Spares;

    /// Slots kept per worker: as many as a burst of streams ends at once
    /// (`network::spares`; the unused are let go within two seconds).
    const KEEP: usize = 1024;

    thread_local! {
        // A `Spares<WorkSlot<W>>` for the one `W` a program serves with (the
        // proxy's); a second type's slots are simply not kept.
        static SLOTS: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    }

    /// `f` on this worker's kept slots of type `W`, if it keeps any.
    fn with_kept<W: 'static, R>(f: impl FnOnce(&Spares<WorkSlot<W>>) -> R) -> Option<R> {
        SLOTS.with(|s| Some(f(s.borrow().as_ref()?.downcast_ref::<Spares<WorkSlot<W>>>()?)))
    }

    pub fn take<W: 'static>() -> Option<WorkSlot<W>> {
        with_kept(Spares::take).flatten()
    }

    fn trim<W: 'static>() {
        with_kept::<W, _>(Spares::trim);
    }

    /// Keeps an emptied slot.
    pub fn give<W: 'static>(slot: WorkSlot<W>) {
        SLOTS.with(|s| {
            let mut s = s.borrow_mut();
            let kept = s.get_or_insert_with(|| Box::new(Spares::<WorkSlot<W>>::new(KEEP, trim::<W>)));
            if let Some(kept) = kept.downcast_ref::<Spares<WorkSlot<W>>>() {
                kept.give(slot);
            }
        });
    }
}

/// A stream's work: the service's answer, then writing it on the stream.
async fn stream_work<S, F>(service: Rc<S>, shared: Rc<RefCell<Shared>>, req: Request<Body>, id: u32, head_request: bool)
where
    S: Fn(Request<Body>) -> F + 'static,
    F: Future<Output = Response<Body>> + 'static,
{
    let resp = service(req).await;
    respond(&shared, id, resp, head_request).await;
}

/// A stream's work, ended as soon as the stream is reset (it is then gone
/// from the map): its future is dropped, and with it the upstream request.
/// Ends with its slot, emptied, for the worker to reuse ([`spare_work`]).
struct Guarded<W> {
    id: u32,
    shared: Rc<RefCell<Shared>>,
    slot: Option<WorkSlot<W>>,
}

impl<W: Future<Output = ()>> Future for Guarded<W> {
    type Output = Option<WorkSlot<W>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Unpin: the work itself is behind the slot's `Pin<Box<_>>`.
        let this = self.get_mut();
        let gone = {
            let mut sh = this.shared.borrow_mut();
            match sh.streams.get_mut(&this.id) {
                Some(s) => {
                    if !s.task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        s.task = Some(cx.waker().clone());
                    }
                    false
                }
                None => true,
            }
        };
        if !gone {
            let polled = this.slot.as_mut().and_then(|slot| slot.as_mut().as_pin_mut()).map(|work| work.poll(cx));
            if let Some(Poll::Pending) = polled {
                return Poll::Pending;
            }
        }
        let mut slot = this.slot.take();
        if let Some(slot) = &mut slot {
            slot.as_mut().set(None);
        }
        Poll::Ready(slot)
    }
}

/// What a connection keeps while parked (`network::park`) between bursts:
/// no buffers, no streams, no task; the client's HPACK table and the
/// connection-level state the next burst continues from.
pub struct Parked {
    decoder: Decoder,
    last_stream: u32,
    peer_initial_window: i64,
    peer_max_frame: usize,
    send_window: i64,
    recv_window: i64,
    recv_release: u32,
}

/// How long a connection with no stream open waits before it parks. Longer
/// than HTTP/1.1's 5 ms: an HTTP/2 client (a gRPC channel) spreads its calls
/// over one connection, and at 5 ms the 64 connections of the fixed-rate
/// benchmark (5,000 req/s, a call every 13 ms each) parked and resumed for
/// nearly every call: 46.4 µs of CPU per request against haproxy's 36.9, and a
/// p99 of +75 µs against +41 (`MODE=h2c bash bench/http_rate.sh`). At 1 s both
/// were at haproxy's level, but connections opened in a burst then sit unparked
/// long enough for the allocator to scatter them. 100 ms holds an idle h2c
/// connection to 1,210 bytes (636 at 5 ms; `MODE=h2c N=9000 bash
/// bench/http_idle_mem.sh`).
const PARK_GRACE: Duration = Duration::from_millis(100);

/// How often a busy connection looks whether it has gone idle.
const BUSY_TICK: Duration = Duration::from_millis(50);

/// Serves one client connection. `read` holds bytes already read from it
/// (the preface, usually); `resume` the state of a connection that was
/// parked. Returns when the connection is closed, or, with its state, when it
/// has had no stream open for [`PARK_GRACE`] and may park until the client
/// sends again. `drain` resolving starts a graceful close (GOAWAY, in-flight
/// streams finish), as does `idle` passing with no stream open.
#[allow(clippy::too_many_arguments)]
pub async fn serve<S, F>(
    io: Transport,
    read: BytesMut,
    conf: ServerConf,
    service: S,
    drain: impl Future<Output = ()>,
    draining: bool,
    resume: Option<Box<Parked>>,
    idle_since: Instant,
) -> Option<(Transport, Box<Parked>, Instant)>
where
    S: Fn(Request<Body>) -> F + 'static,
    F: Future<Output = Response<Body>> + 'static,
{
    let ServerConf { limits, idle, bytes } = conf;
    let mut out = BytesMut::new();
    // A resumed connection was greeted before it parked; a new one is sent
    // our SETTINGS and waits for the client's preface.
    let (state, greeting) = match resume {
        Some(parked) => (parked, 2),
        None => {
            out.reserve(64);
            wire::write_settings(
                &mut out,
                &[
                    (setting::MAX_CONCURRENT_STREAMS, limits.max_concurrent),
                    (setting::INITIAL_WINDOW_SIZE, limits.stream_window),
                    (setting::MAX_HEADER_LIST_SIZE, limits.max_header_list as u32),
                    (setting::HEADER_TABLE_SIZE, limits.header_table as u32),
                ],
            );
            if limits.conn_window > wire::DEFAULT_WINDOW {
                wire::write_window_update(&mut out, 0, limits.conn_window - wire::DEFAULT_WINDOW);
            }
            let fresh = Box::new(Parked {
                decoder: Decoder::new(limits.header_table),
                last_stream: 0,
                peer_initial_window: i64::from(wire::DEFAULT_WINDOW),
                peer_max_frame: wire::DEFAULT_MAX_FRAME as usize,
                send_window: i64::from(wire::DEFAULT_WINDOW),
                recv_window: i64::from(limits.conn_window),
                recv_release: 0,
            });
            (fresh, 0)
        }
    };
    let Parked { decoder, last_stream, peer_initial_window, peer_max_frame, send_window, recv_window, recv_release } =
        *state;
    let shared = Rc::new(RefCell::new(Shared {
        limits,
        out,
        conn_waker: None,
        streams: HashMap::default(),
        waiting: Vec::new(),
        window_waiting: Vec::new(),
        send_window,
        peer_initial_window,
        peer_max_frame,
        recv_window,
        recv_release,
        closed: false,
        reset_budget: RESET_BUDGET,
        last_active: idle_since,
        polling: false,
        recent_resets: VecDeque::new(),
    }));
    let _closer = Closer(shared.clone());
    let service = Rc::new(service);
    // The connection is polled only when something it waits on woke it,
    // not when the task woke for its tick alone.
    let woken = Arc::new(ConnWake::default());
    let conn_waker = Waker::from(woken.clone());
    let tasks = TaskSet::new(conn_waker.clone());
    let mut conn = Conn {
        io,
        bytes,
        read,
        shared,
        decoder,
        service,
        make_work: stream_work::<S, F>,
        tasks,
        greeting,
        last_stream,
        partial: None,
        empty_frames: 0,
        going_away: None,
        failed: false,
        read_closed: false,
        uris: UriCache::default(),
        last_block: None,
        decoded_one: false,
        stalled_since: None,
    };
    if draining {
        conn.go_away(Reason::NO_ERROR, u32::MAX >> 1);
    }
    tokio::pin!(drain);
    // Polled only when armed or fired (`Tick`), not on each of the
    // connection's wake-ups: six a request at a fixed rate.
    let mut tick = Tick::at(idle_since + PARK_GRACE);
    loop {
        tokio::select! {
            biased;
            // One clock read for all a pass handles (`network::clock`).
            r = poll_fn(|cx| {
                woken.task.register(cx.waker());
                if !woken.take() {
                    return Poll::Pending;
                }
                clock::reading(|| conn.poll(&mut Context::from_waker(&conn_waker)))
            }) => {
                if let Err(e) = r {
                    debug!(error = %e, "client HTTP/2 connection ended with an error");
                }
                return None;
            }
            _ = drain.as_mut(), if conn.going_away.is_none() => {
                conn.go_away(Reason::NO_ERROR, conn.last_stream);
            }
            _ = &mut tick => {
                let now = Instant::now();
                if conn.stalled_since.is_some_and(|since| now >= since + WRITE_TIMEOUT) {
                    let streams = conn.shared.borrow().streams.len();
                    info!(streams, "HTTP/2 client took no output for the write timeout; closed");
                    return None;
                }
                let (busy, last_active) = {
                    let sh = conn.shared.borrow();
                    (!sh.streams.is_empty(), sh.last_active)
                };
                if busy || conn.going_away.is_some() {
                    // Going away, it only waits for its output to be taken.
                    tick.reset(now + BUSY_TICK);
                } else if now >= last_active + idle {
                    debug!("closing idle client HTTP/2 connection");
                    conn.go_away(Reason::NO_ERROR, conn.last_stream);
                } else if now >= last_active + PARK_GRACE && conn.parkable() {
                    return Some(conn.park(last_active));
                } else {
                    let next = if conn.parkable() { last_active + PARK_GRACE } else { now + PARK_GRACE };
                    tick.reset(next.min(last_active + idle).max(now + Duration::from_millis(1)));
                }
            }
        }
    }
}

/// The waker a connection's pass is polled with: it notes that the pass has
/// something to do, then wakes the connection's task. The task also wakes
/// for its idle tick, which alone used to cost a pass for nothing (one per
/// request at 1,000 requests a second over 64 connections).
struct ConnWake {
    woken: std::sync::atomic::AtomicBool,
    task: futures_util::task::AtomicWaker,
}

impl Default for ConnWake {
    fn default() -> ConnWake {
        // The first pass always runs.
        ConnWake { woken: std::sync::atomic::AtomicBool::new(true), task: Default::default() }
    }
}

impl ConnWake {
    /// Whether the pass was woken since it last ran; clears the mark, so a
    /// wake during the pass runs it again.
    fn take(&self) -> bool {
        self.woken.swap(false, std::sync::atomic::Ordering::AcqRel)
    }
}

impl std::task::Wake for ConnWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, std::sync::atomic::Ordering::Release);
        self.task.wake();
    }
}

/// Ends what a connection's streams wait on when the connection goes: body
/// readers and responders (in other tasks, for a body streaming upstream)
/// see it closed.
struct Closer(Rc<RefCell<Shared>>);

impl Drop for Closer {
    fn drop(&mut self) {
        let mut sh = self.0.borrow_mut();
        if sh.streams.is_empty() && sh.waiting.is_empty() && sh.window_waiting.is_empty() {
            return;
        }
        sh.closed = true;
        for (_, mut s) in sh.streams.drain() {
            s.wake();
        }
        sh.wake_waiting();
        sh.wake_window_waiting();
    }
}

impl<S, F, M, W> Conn<S, M, W>
where
    S: Fn(Request<Body>) -> F + 'static,
    F: Future<Output = Response<Body>> + 'static,
    M: Fn(Rc<S>, Rc<RefCell<Shared>>, Request<Body>, u32, bool) -> W,
    W: Future<Output = ()> + 'static,
{
    /// Nothing in flight, owed or half-read: the connection may park.
    fn parkable(&mut self) -> bool {
        let sh = self.shared.borrow();
        self.greeting == 2
            && sh.streams.is_empty()
            && self.tasks.is_empty()
            && sh.out.is_empty()
            && self.read.is_empty()
            && self.partial.is_none()
            && self.going_away.is_none()
            && !self.failed
            && !self.read_closed
            && !self.io.holds_output()
    }

    /// The connection's socket and what its next burst needs.
    fn park(mut self, since: Instant) -> (Transport, Box<Parked>, Instant) {
        self.decoder.forget_repeats();
        let sh = self.shared.borrow();
        let parked = Box::new(Parked {
            decoder: self.decoder,
            last_stream: self.last_stream,
            peer_initial_window: sh.peer_initial_window,
            peer_max_frame: sh.peer_max_frame,
            send_window: sh.send_window,
            recv_window: sh.recv_window,
            recv_release: sh.recv_release,
        });
        drop(sh);
        (self.io, parked, since)
    }

    fn go_away(&mut self, reason: Reason, last: u32) {
        let mut sh = self.shared.borrow_mut();
        wire::write_goaway(&mut sh.out, last, reason, reason.name().as_bytes());
        self.going_away = Some(last);
        if reason != Reason::NO_ERROR {
            self.failed = true;
        }
        sh.wake_conn();
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.shared.borrow_mut().polling = true;
        let polled = self.poll_pass(cx);
        self.shared.borrow_mut().polling = false;
        polled
    }

    /// One pass: parse what was read, run the streams that can go on, write,
    /// read more; again while reads bring bytes.
    fn poll_pass(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut reads = 0;
        loop {
            // Handle the frames read so far.
            if !self.failed && !self.read_closed {
                if let Err(ConnError(reason, why)) = self.parse() {
                    debug!(reason = %reason, why, "HTTP/2 connection error");
                    self.go_away(reason, self.last_stream);
                }
            }
            // Run the streams whose work can go on; what they answer is
            // written below, in the same pass.
            self.tasks.run(|slot| {
                if let Some(slot) = slot {
                    spare_work::give(slot);
                }
            });
            // Write what is queued.
            let mut sh = self.shared.borrow_mut();
            let mut wrote = false;
            while !sh.out.is_empty() {
                match self.io.poll_write_some(cx, &sh.out) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => {
                        sh.out.advance(n);
                        self.bytes.add(0, n);
                        wrote = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        if wrote || self.stalled_since.is_none() {
                            self.stalled_since = Some(clock::now());
                        }
                        break;
                    }
                }
            }
            if sh.out.is_empty() {
                self.stalled_since = None;
                if let Poll::Ready(Err(e)) = self.io.poll_flush_held(cx) {
                    return Poll::Ready(Err(e));
                }
                if sh.streams.is_empty() && sh.out.capacity() > 4096 {
                    // Idle connections hold no output buffer.
                    sh.out = BytesMut::new();
                }
            }
            if sh.out.len() < HIGH_WATER && !sh.waiting.is_empty() {
                sh.wake_waiting();
            }
            let written = sh.out.is_empty() && !self.io.holds_output();
            if self.read_closed {
                // The client is gone: nothing it asked for can reach it.
                return Poll::Ready(Ok(()));
            }
            if written && (self.failed || (self.going_away.is_some() && sh.streams.is_empty())) {
                drop(sh);
                let _ = tokio::io::AsyncWrite::poll_shutdown(Pin::new(&mut self.io), cx);
                return Poll::Ready(Ok(()));
            }
            if !sh.conn_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                sh.conn_waker = Some(cx.waker().clone());
            }
            if sh.out.len() >= HIGH_WATER || self.failed {
                // Nothing more is read until the client takes its answers.
                return Poll::Pending;
            }
            drop(sh);
            // Read more.
            if self.read.capacity() == 0 {
                self.read = spare::take();
            }
            if self.read.capacity() - self.read.len() < 4096 {
                self.read.reserve(16 * 1024);
            }
            match self.io.poll_read_buf(cx, &mut self.read) {
                Poll::Ready(Ok(0)) => {
                    self.read_closed = true;
                    self.shared.borrow_mut().closed = true;
                }
                Poll::Ready(Ok(n)) => {
                    self.bytes.add(n, 0);
                    reads += 1;
                    if reads >= READS_PER_POLL {
                        // A client that always has more to send shares the
                        // worker with the others.
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if self.read.is_empty() && self.shared.borrow().streams.is_empty() {
                        // Idle connections hold no read buffer: it goes back
                        // to the worker's spares (`raw::spare`, which the
                        // HTTP/1.1 connections share), for the next
                        // connection with bytes to read to take without an
                        // allocation.
                        spare::give(std::mem::take(&mut self.read));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// Handles every whole frame in `read`.
    fn parse(&mut self) -> Result<(), ConnError> {
        if self.greeting == 0 {
            let n = self.read.len().min(PREFACE.len());
            if self.read[..n] != PREFACE[..n] {
                return Err(ConnError(Reason::PROTOCOL_ERROR, "bad connection preface"));
            }
            if n < PREFACE.len() {
                return Ok(());
            }
            self.read.advance(PREFACE.len());
            self.greeting = 1;
        }
        while let Some(head) = Head::parse(&self.read) {
            if head.len > wire::DEFAULT_MAX_FRAME {
                return Err(ConnError(Reason::FRAME_SIZE_ERROR, "frame larger than SETTINGS_MAX_FRAME_SIZE"));
            }
            let end = HEAD_LEN + head.len as usize;
            if self.read.len() < end {
                break;
            }
            if self.greeting == 1 {
                if head.kind != kind::SETTINGS || head.has(flag::ACK) {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "first frame is not SETTINGS"));
                }
                self.greeting = 2;
            }
            if head.kind == kind::DATA && self.partial.is_none() {
                // A body's bytes are handed on as they are, without a copy.
                let frame = self.read.split_to(end).freeze();
                self.data(head, frame)?;
            } else {
                // Every other frame is read in place: the buffer is not
                // split, so it stays the connection's own, and is reused
                // rather than reallocated once a split-off frame lives on.
                let read = std::mem::take(&mut self.read);
                let handled = self.frame(head, &read[HEAD_LEN..end]);
                self.read = read;
                self.read.advance(end);
                handled?;
            }
            if self.failed {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Handles a frame other than an uninterrupted DATA frame (`parse`).
    fn frame(&mut self, head: Head, payload: &[u8]) -> Result<(), ConnError> {
        if let Some((id, _, _)) = &self.partial {
            if head.kind != kind::CONTINUATION || head.stream != *id {
                return Err(ConnError(Reason::PROTOCOL_ERROR, "header block interrupted"));
            }
        }
        match head.kind {
            kind::HEADERS => self.headers(head, payload),
            kind::CONTINUATION => self.continuation(head, payload),
            kind::PRIORITY => {
                if head.stream == 0 {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "PRIORITY on stream 0"));
                }
                if payload.len() != 5 {
                    self.shared.borrow_mut().reset(head.stream, Reason::FRAME_SIZE_ERROR);
                } else if u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & wire::MAX_WINDOW
                    == head.stream
                {
                    self.shared.borrow_mut().reset(head.stream, Reason::PROTOCOL_ERROR);
                }
                Ok(())
            }
            kind::RST_STREAM => self.rst(head, payload),
            kind::SETTINGS => self.settings(head, payload),
            kind::PUSH_PROMISE => Err(ConnError(Reason::PROTOCOL_ERROR, "PUSH_PROMISE from a client")),
            kind::PING => {
                if head.stream != 0 {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "PING on a stream"));
                }
                if payload.len() != 8 {
                    return Err(ConnError(Reason::FRAME_SIZE_ERROR, "PING payload is not 8 bytes"));
                }
                if !head.has(flag::ACK) {
                    let mut sh = self.shared.borrow_mut();
                    wire::write_frame(&mut sh.out, kind::PING, flag::ACK, 0, payload);
                }
                Ok(())
            }
            kind::GOAWAY => {
                if head.stream != 0 {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "GOAWAY on a stream"));
                }
                if payload.len() < 8 {
                    return Err(ConnError(Reason::FRAME_SIZE_ERROR, "GOAWAY shorter than 8 bytes"));
                }
                // The client leaves: streams in flight finish, no new ones come.
                self.going_away.get_or_insert(self.last_stream);
                Ok(())
            }
            kind::WINDOW_UPDATE => self.window_update(head, payload),
            // Unknown frame types are ignored (RFC 9113 §4.1).
            _ => Ok(()),
        }
    }

    fn data(&mut self, head: Head, frame: Bytes) -> Result<(), ConnError> {
        let id = head.stream;
        if id == 0 {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "DATA on stream 0"));
        }
        let len = head.len;
        let payload = &frame[HEAD_LEN..];
        let Some(data) = wire::unpad(head.flags, payload) else {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "padding longer than the frame"));
        };
        let data_len = data.len();
        let start = HEAD_LEN + usize::from(head.has(flag::PADDED));
        let mut sh = self.shared.borrow_mut();
        sh.recv_window -= i64::from(len);
        if sh.recv_window < 0 {
            return Err(ConnError(Reason::FLOW_CONTROL_ERROR, "DATA past the connection window"));
        }
        if data_len == 0 && !head.has(flag::END_STREAM) {
            self.empty_frames += 1;
            if self.empty_frames > EMPTY_FRAMES {
                return Err(ConnError(Reason::ENHANCE_YOUR_CALM, "too many empty frames"));
            }
        } else {
            self.empty_frames = 0;
        }
        let Some(s) = sh.streams.get_mut(&id) else {
            if id > self.last_stream {
                return Err(ConnError(Reason::PROTOCOL_ERROR, "DATA on an idle stream"));
            }
            // A stream already closed: its bytes still count for the connection.
            sh.release(0, len);
            wire::write_rst(&mut sh.out, id, Reason::STREAM_CLOSED);
            return Ok(());
        };
        if s.recv_end {
            sh.release(0, len);
            sh.reset(id, Reason::STREAM_CLOSED);
            return Ok(());
        }
        s.recv_window -= i64::from(len);
        if s.recv_window < 0 {
            sh.release(0, len);
            sh.reset(id, Reason::FLOW_CONTROL_ERROR);
            return Ok(());
        }
        s.received += data_len as u64;
        let end = head.has(flag::END_STREAM);
        if s.expected.is_some_and(|want| s.received > want || (end && s.received != want)) {
            sh.release(0, len);
            sh.reset(id, Reason::PROTOCOL_ERROR);
            return Ok(());
        }
        // Padding is given back at once; data once the reader takes it.
        let padding = len - data_len as u32;
        if s.recv_dropped {
            s.recv_end |= end;
            sh.release(0, len);
            sh.finish_if_done(id);
            return Ok(());
        }
        if data_len > 0 {
            s.recv.push_back(frame.slice(start..start + data_len));
        }
        s.recv_end |= end;
        if let Some(w) = s.body_waker.take() {
            w.wake();
        }
        sh.release(0, padding);
        if end {
            sh.finish_if_done(id);
        }
        Ok(())
    }

    fn headers(&mut self, head: Head, payload: &[u8]) -> Result<(), ConnError> {
        let id = head.stream;
        if id == 0 {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "HEADERS on stream 0"));
        }
        let Some(mut block) = wire::unpad(head.flags, payload) else {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "padding longer than the frame"));
        };
        let mut self_dependent = false;
        if head.has(flag::PRIORITY) {
            let Some((dep, rest)) = block.split_first_chunk::<5>() else {
                return Err(ConnError(Reason::FRAME_SIZE_ERROR, "HEADERS too short for its priority"));
            };
            self_dependent = u32::from_be_bytes([dep[0], dep[1], dep[2], dep[3]]) & wire::MAX_WINDOW == id;
            block = rest;
        }
        let end_stream = head.has(flag::END_STREAM);
        if !head.has(flag::END_HEADERS) {
            if block.is_empty() {
                self.count_empty()?;
            }
            self.partial = Some((id, end_stream, block.to_vec()));
            return Ok(());
        }
        self.block(id, end_stream, block)?;
        if self_dependent {
            self.shared.borrow_mut().reset(id, Reason::PROTOCOL_ERROR);
        }
        Ok(())
    }

    fn count_empty(&mut self) -> Result<(), ConnError> {
        self.empty_frames += 1;
        if self.empty_frames > EMPTY_FRAMES {
            return Err(ConnError(Reason::ENHANCE_YOUR_CALM, "too many empty frames"));
        }
        Ok(())
    }

    fn continuation(&mut self, head: Head, payload: &[u8]) -> Result<(), ConnError> {
        let Some((id, end_stream, mut block)) = self.partial.take() else {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "CONTINUATION without HEADERS"));
        };
        if payload.is_empty() && !head.has(flag::END_HEADERS) {
            self.count_empty()?;
        }
        block.extend_from_slice(payload);
        if block.len() > max_block(&self.shared.borrow().limits) {
            return Err(ConnError(Reason::ENHANCE_YOUR_CALM, "header block too large"));
        }
        if !head.has(flag::END_HEADERS) {
            self.partial = Some((id, end_stream, block));
            return Ok(());
        }
        self.block(id, end_stream, &block)
    }

    /// A complete header block for stream `id`.
    fn block(&mut self, id: u32, end_stream: bool, block: &[u8]) -> Result<(), ConnError> {
        let known = self.shared.borrow().streams.contains_key(&id);
        if known {
            // Trailers.
            let fields = self.decode(block)?;
            let mut sh = self.shared.borrow_mut();
            let Some(s) = sh.streams.get_mut(&id) else { return Ok(()) };
            if s.recv_end {
                sh.reset(id, Reason::STREAM_CLOSED);
                return Ok(());
            }
            if !end_stream || fields.malformed || fields.too_large || !fields.pseudo.is_empty() {
                sh.reset(id, Reason::PROTOCOL_ERROR);
                return Ok(());
            }
            let trailers = fields.headers;
            if s.expected.is_some_and(|want| want != s.received) {
                sh.reset(id, Reason::PROTOCOL_ERROR);
                return Ok(());
            }
            s.trailers = Some(trailers);
            s.recv_end = true;
            if let Some(w) = s.body_waker.take() {
                w.wake();
            }
            sh.finish_if_done(id);
            return Ok(());
        }
        if id % 2 == 0 {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "even stream id from a client"));
        }
        if id <= self.last_stream {
            if end_stream && self.shared.borrow().recent_resets.contains(&id) {
                // Trailers the client had sent before it saw our reset (a
                // refused stream, a body we stopped): ignored, as RFC 9113
                // §5.1 asks of frames on a stream we reset, but decoded, as
                // the table they may change is the connection's. Counted as
                // an empty frame: a flood of them creates nothing, and is
                // stopped as one.
                self.count_empty()?;
                self.decode(block)?;
                return Ok(());
            }
            return Err(ConnError(Reason::STREAM_CLOSED, "HEADERS on a closed stream"));
        }
        self.last_stream = id;
        let fields = self.decode(block)?;
        if self.going_away.is_some_and(|last| id > last) {
            // After our GOAWAY: ignored (RFC 9113 §6.8), refused so the client knows.
            self.shared.borrow_mut().reset(id, Reason::REFUSED_STREAM);
            return Ok(());
        }
        let mut sh = self.shared.borrow_mut();
        if sh.streams.len() >= sh.limits.max_concurrent as usize {
            sh.rst(id, Reason::REFUSED_STREAM);
            return Ok(());
        }
        let (send_window, recv_window) = (sh.peer_initial_window, i64::from(sh.limits.stream_window));
        let mut stream = Stream::new(send_window, recv_window);
        stream.recv_end = end_stream;
        if fields.too_large {
            // 431, then the stream is done; its body is not wanted.
            let mut block = BytesMut::new();
            hpack::encode(Some(431), &HeaderMap::new(), &mut block);
            let max = sh.peer_max_frame;
            wire::write_headers(&mut sh.out, id, &block, true, max);
            if !end_stream {
                sh.rst(id, Reason::NO_ERROR);
            }
            sh.wake_conn();
            return Ok(());
        }
        let continue_expected = fields.continue_expected && !end_stream;
        let request = if fields.malformed { None } else { request(fields, &mut self.uris) };
        let Some((parts, expected)) = request else {
            sh.rst(id, Reason::PROTOCOL_ERROR);
            return Ok(());
        };
        stream.expected = expected;
        if expected.is_some_and(|n| end_stream && n != 0) {
            sh.rst(id, Reason::PROTOCOL_ERROR);
            return Ok(());
        }
        let head_request = parts.method == Method::HEAD;
        let body = if end_stream {
            stream.recv_dropped = true;
            Body::new(http_body_util::Empty::new().map_err(|never| match never {}))
        } else {
            Body::new(RecvBody { id, shared: self.shared.clone(), size: expected, done: false })
        };
        sh.streams.insert(id, stream);
        if continue_expected {
            // Answered here, as Envoy does: a client waiting for the 100
            // sends its body now, not after its own wait (curl: a second).
            write_head(&mut sh, id, Some(100), &HeaderMap::new(), None, false);
        }
        drop(sh);
        let req = Request::from_parts(parts, body);
        let (service, shared) = (self.service.clone(), self.shared.clone());
        // Built in its slot: a kept one, or a new one made empty first.
        let mut slot = spare_work::take().unwrap_or_else(|| Box::pin(None));
        slot.as_mut().set(Some((self.make_work)(service, shared, req, id, head_request)));
        self.tasks.push(Guarded { id, shared: self.shared.clone(), slot: Some(slot) });
        Ok(())
    }

    /// Decodes a block; an HPACK failure is a connection error.
    fn decode(&mut self, block: &[u8]) -> Result<Decoded, ConnError> {
        let generation = self.decoder.generation();
        if let Some(last) = self.last_block.as_deref() {
            if last.value.0 == generation && last.bytes() == block {
                return Ok(last.value.1.replay());
            }
        }
        let decoded = self.decode_fresh(block)?;
        if std::mem::replace(&mut self.decoded_one, true)
            && self.decoder.generation() == generation
            && !decoded.malformed
            && !decoded.too_large
            && block.len() <= MAX_KEPT_BLOCK
        {
            Kept::keep(&mut self.last_block, block, (generation, decoded.clone()));
        }
        Ok(decoded)
    }

    fn decode_fresh(&mut self, block: &[u8]) -> Result<Decoded, ConnError> {
        let limit = self.shared.borrow().limits.max_header_list;
        let mut size = 0usize;
        let mut pseudo = Pseudos::default();
        let mut headers = header_maps::take();
        let mut malformed = false;
        let mut length = None;
        let mut continue_expected = false;
        self.decoder
            .decode(block, |f| {
                size += f.size();
                if size > limit {
                    // Past the limit nothing is kept; far past it (HPACK
                    // bombs), nothing more is decoded.
                    return size <= limit * BOMB_FACTOR;
                }
                match (f.name, f.value) {
                    (Name::Pseudo(p), Value::Pseudo(v)) => {
                        let slot = pseudo.slot(p);
                        if !headers.is_empty() || slot.is_some() {
                            malformed = true;
                        }
                        *slot = Some(v);
                    }
                    (Name::Header(h), Value::Header(v)) => {
                        // RFC 9113 §8.2.1: no value starts or ends with
                        // whitespace (HTTP/1.1 would strip it, so the two
                        // hops could read it differently).
                        let edges = v.as_bytes().first().zip(v.as_bytes().last());
                        let padded = edges.is_some_and(|(a, z)| matches!(a, b' ' | b'\t') || matches!(z, b' ' | b'\t'));
                        if padded || hpack::is_connection_specific(&h) || (h == TE && v != "trailers") {
                            malformed = true;
                        }
                        if h == CONTENT_LENGTH && length.is_none() {
                            length = Some(v.to_str().ok().and_then(|v| v.parse::<u64>().ok()));
                        }
                        if h == EXPECT && v.as_bytes().eq_ignore_ascii_case(b"100-continue") {
                            continue_expected = true;
                        }
                        headers.append(h, v);
                    }
                    _ => malformed = true,
                }
                true
            })
            .map_err(|_| ConnError(Reason::COMPRESSION_ERROR, "header block cannot be decoded"))?;
        if size > limit * BOMB_FACTOR {
            return Err(ConnError(Reason::ENHANCE_YOUR_CALM, "header list far past SETTINGS_MAX_HEADER_LIST_SIZE"));
        }
        if size > limit {
            return Ok(Decoded {
                pseudo: Pseudos::default(),
                headers: HeaderMap::new(),
                length: None,
                malformed,
                too_large: true,
                continue_expected: false,
            });
        }
        Ok(Decoded { pseudo, headers, length, malformed, too_large: false, continue_expected })
    }

    fn rst(&mut self, head: Head, payload: &[u8]) -> Result<(), ConnError> {
        if head.stream == 0 {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "RST_STREAM on stream 0"));
        }
        if payload.len() != 4 {
            return Err(ConnError(Reason::FRAME_SIZE_ERROR, "RST_STREAM payload is not 4 bytes"));
        }
        if head.stream > self.last_stream {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "RST_STREAM on an idle stream"));
        }
        let mut sh = self.shared.borrow_mut();
        if let Some(s) = sh.drop_stream(head.stream) {
            if !s.send_end {
                sh.reset_budget = sh.reset_budget.saturating_sub(1);
                if sh.reset_budget == 0 {
                    return Err(ConnError(Reason::ENHANCE_YOUR_CALM, "too many streams reset by the client"));
                }
            }
        }
        Ok(())
    }

    fn settings(&mut self, head: Head, payload: &[u8]) -> Result<(), ConnError> {
        if head.stream != 0 {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "SETTINGS on a stream"));
        }
        if head.has(flag::ACK) {
            if !payload.is_empty() {
                return Err(ConnError(Reason::FRAME_SIZE_ERROR, "SETTINGS ACK with a payload"));
            }
            return Ok(());
        }
        if payload.len() % 6 != 0 {
            return Err(ConnError(Reason::FRAME_SIZE_ERROR, "SETTINGS length not a multiple of 6"));
        }
        let mut sh = self.shared.borrow_mut();
        for entry in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([entry[0], entry[1]]);
            let value = u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]);
            match id {
                setting::ENABLE_PUSH if value > 1 => {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH not 0 or 1"));
                }
                setting::INITIAL_WINDOW_SIZE => {
                    if value > wire::MAX_WINDOW {
                        return Err(ConnError(Reason::FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE too large"));
                    }
                    let delta = i64::from(value) - sh.peer_initial_window;
                    sh.peer_initial_window = i64::from(value);
                    for s in sh.streams.values_mut() {
                        s.send_window += delta;
                        if s.send_window > i64::from(wire::MAX_WINDOW) {
                            return Err(ConnError(Reason::FLOW_CONTROL_ERROR, "stream window overflow"));
                        }
                        if delta > 0 {
                            if let Some(w) = s.send_waker.take() {
                                w.wake();
                            }
                        }
                    }
                }
                setting::MAX_FRAME_SIZE => {
                    if !(wire::DEFAULT_MAX_FRAME..=wire::MAX_MAX_FRAME).contains(&value) {
                        return Err(ConnError(Reason::PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of range"));
                    }
                    sh.peer_max_frame = value as usize;
                }
                // The encoder keeps no table; the rest is for servers' pushes.
                _ => {}
            }
        }
        wire::write_frame(&mut sh.out, kind::SETTINGS, flag::ACK, 0, &[]);
        Ok(())
    }

    fn window_update(&mut self, head: Head, payload: &[u8]) -> Result<(), ConnError> {
        if payload.len() != 4 {
            return Err(ConnError(Reason::FRAME_SIZE_ERROR, "WINDOW_UPDATE payload is not 4 bytes"));
        }
        let inc = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & wire::MAX_WINDOW;
        let mut sh = self.shared.borrow_mut();
        if head.stream == 0 {
            if inc == 0 {
                return Err(ConnError(Reason::PROTOCOL_ERROR, "WINDOW_UPDATE of 0"));
            }
            sh.send_window += i64::from(inc);
            if sh.send_window > i64::from(wire::MAX_WINDOW) {
                return Err(ConnError(Reason::FLOW_CONTROL_ERROR, "connection window overflow"));
            }
            sh.wake_window_waiting();
            return Ok(());
        }
        if head.stream > self.last_stream {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream"));
        }
        let Some(s) = sh.streams.get_mut(&head.stream) else { return Ok(()) };
        if inc == 0 {
            sh.reset(head.stream, Reason::PROTOCOL_ERROR);
            return Ok(());
        }
        s.send_window += i64::from(inc);
        if s.send_window > i64::from(wire::MAX_WINDOW) {
            sh.reset(head.stream, Reason::FLOW_CONTROL_ERROR);
            return Ok(());
        }
        if let Some(w) = s.send_waker.take() {
            w.wake();
        }
        Ok(())
    }
}

/// A decoded header block: its fields, whether any was malformed, and
/// whether the list was too large to keep (its fields then dropped).
#[derive(Clone)]
struct Decoded {
    pseudo: Pseudos,
    headers: HeaderMap,
    /// The first `content-length` field, read as a number (`Some(None)`
    /// when it is not one), noted while decoding.
    length: Option<Option<u64>>,
    malformed: bool,
    too_large: bool,
    /// `expect: 100-continue`: the client waits for a 100 before its body.
    continue_expected: bool,
}

impl Decoded {
    /// The same fields again, in a pooled header map: a clone of the map
    /// would allocate two buffers that the pool already has.
    fn replay(&self) -> Decoded {
        let mut headers = header_maps::take();
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        Decoded { pseudo: self.pseudo.clone(), headers, ..*self }
    }
}

/// A request's pseudo-headers, each at most once.
#[derive(Clone, Default)]
struct Pseudos {
    method: Option<Bytes>,
    scheme: Option<Bytes>,
    authority: Option<Bytes>,
    path: Option<Bytes>,
    /// `:status` or `:protocol`: not taken in a request.
    other: Option<Bytes>,
}

impl Pseudos {
    fn slot(&mut self, p: Pseudo) -> &mut Option<Bytes> {
        match p {
            Pseudo::Method => &mut self.method,
            Pseudo::Scheme => &mut self.scheme,
            Pseudo::Authority => &mut self.authority,
            Pseudo::Path => &mut self.path,
            Pseudo::Status | Pseudo::Protocol => &mut self.other,
        }
    }

    fn is_empty(&self) -> bool {
        self.method.is_none()
            && self.scheme.is_none()
            && self.authority.is_none()
            && self.path.is_none()
            && self.other.is_none()
    }
}

/// A request head from its fields (RFC 9113 §8.3.1), and its content-length;
/// `None` if malformed.
fn request(fields: Decoded, uris: &mut UriCache) -> Option<(http::request::Parts, Option<u64>)> {
    let Decoded { pseudo, headers, length, .. } = fields;
    // Responses' and extended CONNECT's pseudo-headers are not taken.
    if pseudo.other.is_some() {
        return None;
    }
    let method = Method::from_bytes(&pseudo.method?).ok()?;
    let mut uri = http::uri::Parts::default();
    if method == Method::CONNECT {
        if pseudo.scheme.is_some() || pseudo.path.is_some() {
            return None;
        }
        uri.authority = Some(uris.authority(pseudo.authority?)?);
    } else {
        let path = pseudo.path?;
        if path.is_empty() {
            return None;
        }
        let scheme = http::uri::Scheme::try_from(&pseudo.scheme?[..]).ok()?;
        if let Some(a) = pseudo.authority {
            // A URI with a scheme needs an authority; without one only the path is kept.
            uri.authority = Some(uris.authority(a)?);
            uri.scheme = Some(scheme);
        }
        uri.path_and_query = Some(uris.path(path)?);
    }
    let expected = match length {
        Some(n) => Some(n?),
        None => None,
    };
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = Uri::from_parts(uri).ok()?;
    *req.version_mut() = http::Version::HTTP_2;
    *req.headers_mut() = headers;
    Some((req.into_parts().0, expected))
}

/// Room to send on stream `id`: at most `want` bytes, once both windows
/// and the output have some. `None` once the stream is gone.
async fn capacity(shared: &Rc<RefCell<Shared>>, id: u32, want: usize) -> Option<usize> {
    poll_fn(|cx| {
        let mut sh = shared.borrow_mut();
        if sh.closed {
            return Poll::Ready(None);
        }
        let conn = sh.send_window;
        let max_frame = sh.peer_max_frame;
        let out_full = sh.out.len() >= HIGH_WATER;
        let Some(s) = sh.streams.get_mut(&id) else { return Poll::Ready(None) };
        if s.reset {
            return Poll::Ready(None);
        }
        let room = s.send_window.min(conn).min(max_frame as i64);
        if room > 0 && !out_full {
            return Poll::Ready(Some((room as usize).min(want.max(1))));
        }
        if s.send_window <= 0 {
            s.send_waker = Some(cx.waker().clone());
        } else if conn <= 0 {
            // Once per task: a stream reset while it waits leaves its waker
            // here until the window opens, and its slot's next stream has
            // the same waker.
            if !sh.window_waiting.iter().any(|w| w.will_wake(cx.waker())) {
                sh.window_waiting.push(cx.waker().clone());
            }
        } else {
            sh.waiting.push(cx.waker().clone());
        }
        Poll::Pending
    })
    .await
}

/// Waits until the output has room for more of stream `id`'s frames (below
/// `HIGH_WATER`); `None` once the stream or the connection is gone.
async fn output_room(shared: &Rc<RefCell<Shared>>, id: u32) -> Option<()> {
    poll_fn(|cx| {
        let mut sh = shared.borrow_mut();
        if sh.closed || sh.streams.get(&id).is_none_or(|s| s.reset) {
            return Poll::Ready(None);
        }
        if sh.out.len() < HIGH_WATER {
            return Poll::Ready(Some(()));
        }
        sh.waiting.push(cx.waker().clone());
        Poll::Pending
    })
    .await
}

/// Writes `resp` on stream `id`: its head, then its body as the windows
/// allow, then trailers or END_STREAM.
async fn respond(shared: &Rc<RefCell<Shared>>, id: u32, resp: Response<Body>, head_request: bool) {
    let (parts, mut body) = resp.into_parts();
    let end = head_request || body.is_end_stream();
    let fields = body.take_fields();
    {
        let mut sh = shared.borrow_mut();
        if sh.closed || !sh.streams.contains_key(&id) {
            return;
        }
        write_head(&mut sh, id, Some(parts.status.as_u16()), &parts.headers, fields.as_deref(), end);
        header_maps::give(parts.headers);
        if let Some(f) = fields {
            RawFields::give(f);
        }
        if end {
            close_send(&mut sh, id);
            return;
        }
    }
    loop {
        // The next frame is taken once the output has room, not the window:
        // END_STREAM and trailers take none (RFC 9113 §6.9, §6.9.1), and a
        // client that opens the window only once the stream ends would wait
        // for them for ever. Data waits for its window below, one frame held.
        if output_room(shared, id).await.is_none() {
            return;
        }
        match body.frame().await {
            None => {
                let mut sh = shared.borrow_mut();
                if !sh.streams.contains_key(&id) {
                    return;
                }
                wire::write_frame(&mut sh.out, kind::DATA, flag::END_STREAM, id, &[]);
                close_send(&mut sh, id);
                return;
            }
            Some(Err(e)) => {
                debug!(stream = id, error = %e, "response body failed; resetting the stream");
                shared.borrow_mut().reset(id, Reason::INTERNAL_ERROR);
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(mut data) => {
                    while !data.is_empty() {
                        let Some(room) = capacity(shared, id, data.len()).await else { return };
                        let chunk = data.split_to(room.min(data.len()));
                        let last = data.is_empty() && body.is_end_stream();
                        let mut sh = shared.borrow_mut();
                        sh.send_window -= chunk.len() as i64;
                        if let Some(s) = sh.streams.get_mut(&id) {
                            s.send_window -= chunk.len() as i64;
                        }
                        wire::write_frame(&mut sh.out, kind::DATA, if last { flag::END_STREAM } else { 0 }, id, &chunk);
                        if last {
                            close_send(&mut sh, id);
                            return;
                        }
                        sh.wake_conn();
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        let mut sh = shared.borrow_mut();
                        if !sh.streams.contains_key(&id) {
                            return;
                        }
                        write_head(&mut sh, id, None, &trailers, None, true);
                        close_send(&mut sh, id);
                        return;
                    }
                }
            },
        }
    }
}

fn write_head(
    sh: &mut Shared,
    id: u32,
    status: Option<u16>,
    headers: &HeaderMap,
    fields: Option<&RawFields>,
    end: bool,
) {
    let max = sh.peer_max_frame;
    let at = sh.out.len();
    // The head goes straight into the output: a placeholder frame head,
    // the block after it, then the length patched in.
    Head { len: 0, kind: kind::HEADERS, flags: 0, stream: id }.write(&mut sh.out);
    hpack::encode(status, headers, &mut sh.out);
    if let Some(fields) = fields {
        hpack::encode_fields(fields.iter(), &mut sh.out);
    }
    let len = sh.out.len() - at - HEAD_LEN;
    if len <= max {
        let flags = flag::END_HEADERS | if end { flag::END_STREAM } else { 0 };
        Head { len: len as u32, kind: kind::HEADERS, flags, stream: id }.write_at(&mut sh.out[at..]);
    } else {
        let block = sh.out.split_off(at + HEAD_LEN);
        sh.out.truncate(at);
        wire::write_headers(&mut sh.out, id, &block, end, max);
    }
    sh.wake_conn();
}

/// The response's END_STREAM is out. A request body still coming that
/// nobody reads is not wanted (RST_STREAM NO_ERROR, RFC 9113 §8.1); one
/// still being read (streamed upstream, whose answer came first) is let
/// finish, and its reader's drop stops it if it does not. Resetting it at
/// once failed the upload of a client that had not sent its body yet (curl:
/// "Stream error in the HTTP/2 framing layer") and the upstream exchange
/// that was streaming it.
fn close_send(sh: &mut Shared, id: u32) {
    let Some(s) = sh.streams.get_mut(&id) else { return };
    s.send_end = true;
    s.task = None;
    if !s.recv_end && s.recv_dropped {
        stop_request_body(sh, id);
    }
    sh.finish_if_done(id);
    sh.wake_conn();
}

/// Asks the client to stop sending `id`'s request body (RST_STREAM
/// NO_ERROR) after a complete response; what it held goes back to the
/// connection's window.
fn stop_request_body(sh: &mut Shared, id: u32) {
    let Some(s) = sh.streams.get_mut(&id) else { return };
    s.recv_end = true;
    s.recv_dropped = true;
    let owed = take_held(&mut s.recv);
    sh.rst(id, Reason::NO_ERROR);
    sh.release(0, owed);
}

/// Empties a stream's received bytes, which no reader will take: how many,
/// for the connection's window ([`Shared::release`] on stream 0).
fn take_held(recv: &mut VecDeque<Bytes>) -> u32 {
    recv.drain(..).map(|b| b.len()).sum::<usize>() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_authority_or_path_is_the_one_parsed_before() {
        let mut uris = UriCache::default();
        let a = uris.authority(Bytes::from_static(b"example.com:8080")).unwrap();
        assert_eq!(a.port_u16(), Some(8080));
        assert_eq!(uris.authority(Bytes::copy_from_slice(b"example.com:8080")), Some(a));
        assert_eq!(uris.authority(Bytes::from_static(b"other.example")).unwrap().host(), "other.example");
        // A bad one is refused and leaves the last good one cached.
        assert_eq!(uris.authority(Bytes::from_static(b"bad host")), None);
        assert_eq!(uris.authority.as_ref().map(|a| a.as_str()), Some("other.example"));
        let p = uris.path(Bytes::from_static(b"/a?x=1")).unwrap();
        assert_eq!(uris.path(Bytes::from_static(b"/a?x=1")), Some(p));
        assert_eq!(uris.path(Bytes::from_static(b"/a?x=2")).unwrap().query(), Some("x=2"));
        assert_eq!(uris.path(Bytes::from_static(b"/a b")), None);
    }

    /// A connection's pass runs first, then only once something it waits on
    /// woke it (a wake of the task for its tick alone leaves it be); a wake
    /// during the pass runs it again, and each wake reaches the task.
    #[test]
    fn a_pass_runs_when_woken_and_the_task_hears_every_wake() {
        struct Count(std::sync::atomic::AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let task = Arc::new(Count(Default::default()));
        let task_waker = Waker::from(task.clone());
        let woken = Arc::new(ConnWake::default());
        let conn_waker = Waker::from(woken.clone());
        assert!(woken.take(), "the first pass runs");
        assert!(!woken.take(), "and not again unwoken");
        woken.task.register(&task_waker);
        conn_waker.wake_by_ref();
        assert_eq!(task.0.load(std::sync::atomic::Ordering::Relaxed), 1, "the wake reached the task");
        assert!(woken.take(), "a woken pass runs");
        assert!(!woken.take());
        woken.task.register(&task_waker);
        conn_waker.wake_by_ref();
        conn_waker.wake_by_ref();
        assert!(woken.take(), "two wakes before the pass: one pass");
        assert!(!woken.take());
    }

    /// A connection's shared state with 64 KiB windows, no stream open.
    fn shared() -> Shared {
        let limits = Limits {
            max_concurrent: 8,
            stream_window: 65_535,
            conn_window: 65_535,
            max_header_list: 1024,
            header_table: 0,
        };
        Shared {
            limits,
            out: BytesMut::new(),
            conn_waker: None,
            streams: HashMap::default(),
            waiting: Vec::new(),
            window_waiting: Vec::new(),
            send_window: 0,
            peer_initial_window: 0,
            peer_max_frame: 16_384,
            recv_window: 0,
            recv_release: 0,
            closed: false,
            reset_budget: RESET_BUDGET,
            last_active: Instant::now(),
            polling: false,
            recent_resets: VecDeque::new(),
        }
    }

    /// A stream answered before its whole body was read (the upstream
    /// answered without reading it) ends with bytes still held: they go back
    /// to the connection's window, which lost them for good before.
    #[test]
    fn a_body_the_answer_came_before_gives_its_window_back() {
        let mut sh = shared();
        let mut s = Stream::new(0, 0);
        s.recv.push_back(Bytes::from(vec![0u8; 40_000]));
        s.recv_end = true;
        s.send_end = true;
        sh.streams.insert(1, s);
        sh.finish_if_done(1);
        assert!(sh.streams.is_empty());
        // 40,000 is past half the 65,535 window: a WINDOW_UPDATE at once.
        let mut update = BytesMut::new();
        wire::write_window_update(&mut update, 0, 40_000);
        assert_eq!(&sh.out[..], &update[..], "WINDOW_UPDATE 40,000 on stream 0");
    }

    /// Streams waiting for the connection's window are not woken when the
    /// output drains (each pass would wake them, and their wake bring on the
    /// next pass), only when the window opens.
    #[test]
    fn a_stream_waiting_for_the_connection_window_waits_for_it_alone() {
        struct Count(std::sync::atomic::AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: std::sync::Arc<Self>) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let count = std::sync::Arc::new(Count(std::sync::atomic::AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let shared = Rc::new(RefCell::new(shared()));
        shared.borrow_mut().streams.insert(1, Stream::new(1000, 0));
        let mut wait = Box::pin(capacity(&shared, 1, 100));
        let mut cx = Context::from_waker(&waker);
        assert!(wait.as_mut().poll(&mut cx).is_pending(), "the connection window is 0");
        shared.borrow_mut().wake_waiting();
        assert_eq!(count.0.load(std::sync::atomic::Ordering::Relaxed), 0, "not woken by the output draining");
        shared.borrow_mut().send_window = 500;
        shared.borrow_mut().wake_window_waiting();
        assert_eq!(count.0.load(std::sync::atomic::Ordering::Relaxed), 1, "woken by the window");
        assert_eq!(wait.as_mut().poll(&mut cx), Poll::Ready(Some(100)));
    }

    #[test]
    fn an_ended_streams_slot_is_reused_and_its_work_dropped_in_place() {
        struct Work(Rc<Cell<u32>>);
        impl Future for Work {
            type Output = ();
            fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
                Poll::Ready(())
            }
        }
        impl Drop for Work {
            fn drop(&mut self) {
                self.0.set(self.0.get() + 1);
            }
        }
        use std::cell::Cell;
        let dropped = Rc::new(Cell::new(0));
        let shared = Rc::new(RefCell::new(shared()));
        shared.borrow_mut().streams.insert(1, Stream::new(0, 0));
        let slot: WorkSlot<Work> = Box::pin(Some(Work(dropped.clone())));
        let at = &*slot as *const Option<Work>;
        let mut guarded = Guarded { id: 1, shared: shared.clone(), slot: Some(slot) };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let Poll::Ready(Some(slot)) = Pin::new(&mut guarded).poll(&mut cx) else { panic!("work not done") };
        assert_eq!(dropped.get(), 1, "the ended work is dropped when its stream ends");
        assert!(slot.is_none());
        spare_work::give(slot);
        let mut again = spare_work::take::<Work>().expect("the slot was kept");
        assert_eq!(&*again as *const Option<Work>, at, "the same room");
        again.as_mut().set(Some(Work(dropped.clone())));
        // A stream gone (reset) ends its work without polling it.
        shared.borrow_mut().streams.clear();
        let mut guarded = Guarded { id: 1, shared, slot: Some(again) };
        let Poll::Ready(Some(slot)) = Pin::new(&mut guarded).poll(&mut cx) else { panic!("not ended") };
        assert_eq!(dropped.get(), 2);
        assert!(slot.is_none());
        // Slots of another type are not mixed in.
        assert!(spare_work::take::<std::future::Ready<()>>().is_none());
    }
}
