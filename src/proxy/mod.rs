//! Proxy layer: what happens to one downstream request.
//!
//! [`serve`] owns a client connection: it finds the protocol (fixed, or
//! detected from the first bytes for `Auto`), then hands the connection to the
//! request path of that protocol: [`rpc`] for bolt (and the codecs to come),
//! [`http`] for HTTP/1.1, HTTP/2 and gRPC. Beside them, [`filter`] holds the
//! stream filters, and this module the per-worker and per-listener state both
//! paths share.

mod deadline;
pub mod filter;
mod head_timer;
mod headers;
pub mod http;
pub mod http1;
pub mod rpc;
pub mod tries;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::accesslog::{AccessLog, Entry};
use crate::config::{DownstreamProtocol, ListenerSpec};
use crate::error::ProxyError;
use crate::network;
use crate::network::clock;
use crate::network::park::{Parking, Wake};
use crate::network::transport::Transport;
use crate::protocol::{Detect, Protocol, ProtocolId};
use crate::stats::{ListenerStats, Stats};
use crate::stream::server::{ResponseHook, StreamEnd, StreamObserver};
use crate::tls::server::ServerTls;
use crate::upstream::Cluster;
use filter::FilterChain;

/// State shared by everything on one worker thread.
pub struct WorkerCtx {
    pub index: usize,
    pub stats: Rc<Stats>,
    pub draining: Cell<bool>,
    pub live_conns: Cell<usize>,
    /// Woken when the last downstream connection closes during a drain.
    pub conns_gone: Notify,
    /// The newest generation's clusters, in the order its route tables number
    /// them. A request uses those of its listener's generation
    /// ([`ListenerGen::clusters`]), which are these unless a change is landing.
    pub clusters: RefCell<Rc<[Rc<Cluster>]>>,
    /// The listeners this worker runs now.
    pub listeners: RefCell<Vec<Rc<ListenerCtx>>>,
}

impl WorkerCtx {
    pub fn new(index: usize) -> WorkerCtx {
        WorkerCtx {
            index,
            stats: Rc::new(Stats::default()),
            draining: Cell::new(false),
            live_conns: Cell::new(0),
            conns_gone: Notify::new(),
            clusters: RefCell::new(Rc::from(Vec::new())),
            listeners: RefCell::new(Vec::new()),
        }
    }

    /// Stops reading new requests everywhere; connections close once answered.
    pub fn start_drain(&self) {
        self.draining.set(true);
        for l in self.listeners.borrow().iter() {
            l.start_drain();
        }
    }

    /// A connection closed: wakes the shutdown when it was the last.
    fn conn_closed(&self) {
        self.live_conns.set(self.live_conns.get() - 1);
        if self.live_conns.get() == 0 && self.draining.get() {
            self.conns_gone.notify_waiters();
        }
    }
}

/// A listener as one worker runs it, from the generation that added it to
/// the one that removes it. A connection holds this and reads
/// [`ListenerCtx::now`] per request, so a route change reaches connections
/// that are already open while each request keeps the generation it started
/// on.
pub struct ListenerCtx {
    pub name: String,
    current: RefCell<Rc<ListenerGen>>,
    pub stats: ListenerStats,
    /// Bytes of the connections hyper serves (counted in its IO).
    pub hyper_bytes: std::sync::Arc<crate::network::counted::IoBytes>,
    draining: Cell<bool>,
    drain: Notify,
    /// Its quiet client connections (RPC; HTTP/1.1 between requests; HTTP/2
    /// between bursts, with its HPACK table), holding only their sockets.
    pub parking: Rc<Parking<Quiet>>,
    /// The worker it runs on (which holds it: hence weak).
    worker: Weak<WorkerCtx>,
}

impl ListenerCtx {
    pub fn new(gen: ListenerGen, worker: &Rc<WorkerCtx>) -> ListenerCtx {
        ListenerCtx {
            name: gen.spec.name.clone(),
            current: RefCell::new(Rc::new(gen)),
            stats: ListenerStats::default(),
            hyper_bytes: Default::default(),
            draining: Cell::new(false),
            drain: Notify::new(),
            parking: Rc::default(),
            worker: Rc::downgrade(worker),
        }
    }

    /// The generation that new requests of this listener use.
    pub fn now(&self) -> Rc<ListenerGen> {
        self.current.borrow().clone()
    }

    /// Moves the listener to a new generation.
    pub fn replace(&self, gen: ListenerGen) {
        *self.current.borrow_mut() = Rc::new(gen);
    }

    /// Whether the listener is draining (removed, or the process stopping).
    pub fn draining(&self) -> bool {
        self.draining.get()
    }

    /// Completes once the listener starts to drain; for the task of one
    /// connection, which polls it on every wake-up (see [`DrainWatch`]).
    pub fn drain_watch(&self) -> DrainWatch<'_> {
        DrainWatch { listener: self, signal: None }
    }

    /// Stops reading new requests on this listener's connections; each one
    /// closes once its answers are out.
    pub fn start_drain(&self) {
        self.draining.set(true);
        self.drain.notify_waiters();
        self.parking.drain();
    }
}

/// What one generation of the configuration says about a listener.
pub struct ListenerGen {
    pub version: u64,
    pub spec: ListenerSpec,
    pub filters: Rc<FilterChain>,
    hook: Option<Rc<dyn ResponseHook>>,
    /// The clusters this generation's route table numbers.
    pub clusters: Rc<[Rc<Cluster>]>,
    pub access_logs: Vec<AccessLog>,
}

impl ListenerGen {
    pub fn new(version: u64, spec: ListenerSpec, clusters: Rc<[Rc<Cluster>]>) -> ListenerGen {
        let filters = Rc::new(FilterChain::new(&spec.filters));
        let hook = filter::response_hook(&filters);
        let access_logs = spec.access_logs.iter().map(|a| AccessLog::new(&a.path, a.format.clone())).collect();
        ListenerGen { version, spec, filters, hook, clusters, access_logs }
    }
}

impl ListenerCtx {
    /// Whether the listener writes access logs: what only a log line reads
    /// is worked out only then.
    pub fn logs(&self) -> bool {
        !self.current.borrow().access_logs.is_empty()
    }

    /// Writes `e` to the listener's access logs, if it has any.
    pub fn log<'a>(&self, e: impl FnOnce() -> Entry<'a>) {
        let gen = self.current.borrow();
        if gen.access_logs.is_empty() {
            return;
        }
        let e = e();
        for log in &gen.access_logs {
            log.log(&e);
        }
    }

    /// Hands buffered access-log lines to the writer thread.
    pub fn flush_logs(&self) {
        for log in &self.current.borrow().access_logs {
            log.flush();
        }
    }
}

/// Hears the end of each request of one RPC connection: the listener's
/// counters and access logs.
struct ConnObserver {
    listener: Rc<ListenerCtx>,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    /// The addresses as text, made on the first line logged.
    texts: std::cell::OnceCell<(Box<str>, Option<Box<str>>)>,
    protocol: &'static str,
    /// What the connection's TLS handshake proved (the client's identity).
    tls: Option<std::sync::Arc<crate::tls::TlsInfo>>,
}

impl StreamObserver for ConnObserver {
    fn on_end(&self, end: &StreamEnd<'_>) {
        self.listener.stats.requests_active.dec();
        self.listener.log(|| {
            let (peer, local) =
                self.texts.get_or_init(|| (self.peer.to_string().into(), self.local.map(|l| l.to_string().into())));
            Entry {
                start: end.started,
                duration: clock::now().into_std().saturating_duration_since(end.started),
                request_sent: None,
                protocol: self.protocol,
                request_id: Some(end.info.id),
                upstream: end.upstream,
                cluster: None,
                status: end.status,
                error: end.error.map(ProxyError::label),
                bytes_received: end.bytes_received as u64,
                bytes_sent: end.bytes_sent as u64,
                downstream_remote: peer,
                downstream_local: local.as_deref(),
                tls: self.tls.as_deref(),
            }
        });
    }
}

/// The observer of an RPC connection's requests.
fn observer(
    listener: &Rc<ListenerCtx>,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    protocol: &'static str,
    tls: Option<std::sync::Arc<crate::tls::TlsInfo>>,
) -> Option<Rc<dyn StreamObserver>> {
    Some(Rc::new(ConnObserver { listener: listener.clone(), peer, local, texts: Default::default(), protocol, tls }))
}

/// Serves one accepted client connection until it closes.
///
/// The task this future is lives while the connection is active: the
/// opening (TLS handshake, protocol detection), then each phase, boxed. A
/// connection that falls quiet leaves its task and parks with its listener
/// (`network::park`), holding its socket and what it needs to resume; bytes
/// start a task for it again ([`resumed`]).
pub fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    listener: Rc<ListenerCtx>,
    worker: Rc<WorkerCtx>,
) -> impl std::future::Future<Output = ()> {
    // Not an `async fn`: its arguments would stay in the task for its life.
    lifetime(Box::pin(open(stream, peer, Open::new(listener, &worker), worker)))
}

async fn lifetime(opening: Pin<Box<impl std::future::Future<Output = Option<Opened>>>>) {
    let Some(Opened { conn, initial }) = opening.await else {
        return;
    };
    // Until its first bytes arrive, an RPC connection is parked too, unless
    // TLS holds records of the handshake still to write. Bytes already
    // there are served at once: parked, it would be resumed at once.
    let mut conn = conn;
    if matches!(conn.protocol.protocol(), Protocol::Rpc(_))
        && initial.is_none()
        && !conn.stream.holds_output()
        && !conn.stream.has_first_bytes()
    {
        return conn.park(Instant::now());
    }
    let initial = initial.map(|b| *b).unwrap_or_default();
    conn.serve(initial, false).await;
}

/// Completes once its listener starts to drain. It takes the listener's
/// `Notify` lock only on its first poll, which registers the polling task's
/// waker (the waker of one task does not change); later polls read the
/// listener's flag, which a drain sets before it wakes anyone. Polling a
/// `Notified` on every wake-up of a connection took that lock each time
/// (with it, 12.2k instructions per bolt call at 1,000 calls a second;
/// 11.2k without, `bench/bolt_instructions.sh`). For a future
/// that stays in one task.
pub struct DrainWatch<'a> {
    listener: &'a ListenerCtx,
    signal: Option<Pin<Box<tokio::sync::futures::Notified<'a>>>>,
}

impl std::future::Future for DrainWatch<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.listener.draining() {
            return std::task::Poll::Ready(());
        }
        if self.signal.is_none() {
            let listener = self.listener;
            let signal = self.signal.insert(Box::pin(listener.drain.notified()));
            return signal.as_mut().poll(cx);
        }
        std::task::Poll::Pending
    }
}

/// [`Quiet::quiet_since`] of a connection that has served nothing yet.
const NOT_SERVED: u32 = u32::MAX;

/// How long a connection that calls often waits for its next request
/// before it parks, as an HTTP/2 one does. A connection parks as soon as it
/// owes nothing (an HTTP/1.1 one after 5 ms); one resumed within this of
/// falling quiet calls often, and from then on waits this long first. So a
/// client calling every few milliseconds (a steady rate spread over
/// connections) keeps its phase, with no park and resume per call: at a
/// fixed 1,000 bolt calls a second over 64 connections those were a quarter
/// of the proxy's instructions per call (16.1k in all, 12.2k without). A
/// client that calls less often, or once, parks at once as before: waiting
/// would cost it a timer per call, and a crowd of new connections waiting at
/// once leaves glibc's heap scattered (idle bolt connections held 1,277
/// bytes each, 460 without).
const LINGER: Duration = Duration::from_millis(100);

/// A parked connection's task, started when its socket turned readable.
async fn resumed(conn: Quiet) {
    let linger = lingers(conn.quiet_since, conn.open.listener.parking.millis(Instant::now()));
    conn.serve(BytesMut::new(), linger).await;
}

/// [`Quiet::quiet_since`] for a connection of `listener` quiet since
/// `since` (never [`NOT_SERVED`]).
fn quiet_stamp(listener: &ListenerCtx, since: Instant) -> u32 {
    listener.parking.millis(since).min(NOT_SERVED - 1)
}

/// Whether a connection quiet since `quiet_since` and resumed at `now`
/// (both [`Parking::millis`] of its listener) came back within [`LINGER`].
fn lingers(quiet_since: u32, now: u32) -> bool {
    quiet_since != NOT_SERVED && u128::from(now.wrapping_sub(quiet_since)) < LINGER.as_millis()
}

/// A connection ready to serve, and the bytes detection read.
struct Opened {
    conn: Quiet,
    /// Boxed, and only when there are some (detection over TLS reads them).
    initial: Option<Box<BytesMut>>,
}

/// A client connection between its phases: what it needs to serve its
/// next bytes, and all a parked one holds.
///
/// Kept to 96 bytes (a 112-byte block from the allocator, for each parked
/// connection): the protocol as one byte, the worker reached through the
/// listener, an HTTP/2 connection's own state behind one pointer.
pub struct Quiet {
    stream: Transport,
    peer: SocketAddr,
    open: Open,
    protocol: ProtocolId,
    /// When it last fell quiet after serving (its listener's
    /// [`Parking::millis`]), or
    /// [`NOT_SERVED`]: a connection parked from its accept has not shown how
    /// often it calls. In what would otherwise be padding.
    quiet_since: u32,
    /// An HTTP/2 connection's HPACK table and connection state.
    h2: Option<Box<crate::stream::http::h2::Parked>>,
}

impl Quiet {
    /// Serves the connection until it closes or falls quiet, then parks it.
    /// `linger`: an RPC or HTTP/1.1 connection waits out [`LINGER`] first.
    async fn serve(self, initial: BytesMut, linger: bool) {
        let Quiet { mut stream, peer, protocol, open, quiet_since, h2 } = self;
        let listener = &open.listener;
        let Some(worker) = listener.worker.upgrade() else {
            return;
        };
        let worker = &worker;
        let quiet = match protocol.protocol() {
            Protocol::Rpc(codec) => {
                Box::pin(rpc::serve(&mut stream, initial, peer, codec, listener, worker, linger)).await.map(|q| {
                    // A wake-up that read nothing tells nothing of how often it calls.
                    let quiet_since = if q.read { quiet_stamp(listener, q.since) } else { quiet_since };
                    (stream, q.since, quiet_since, None)
                })
            }
            http_version => {
                let (l, w) = (listener.clone(), worker.clone());
                Box::pin(http::serve(stream, initial, peer, http_version, l, w, h2, linger))
                    .await
                    .map(|(stream, since, h2)| (stream, since, quiet_stamp(listener, since), h2))
            }
        };
        if let Some((stream, since, quiet_since, h2)) = quiet {
            Quiet { stream, peer, open, protocol, quiet_since, h2 }.park(since);
        }
    }

    /// Parks the connection, idle since `since`, until bytes arrive, its
    /// idle time runs out or its listener drains.
    fn park(self, since: Instant) {
        let listener = &self.open.listener;
        let parking = listener.parking.clone();
        let due = since + listener.now().spec.idle_timeout;
        parking.park(self, due);
    }
}

impl network::park::Resume for Quiet {
    fn transport(&mut self) -> &mut Transport {
        &mut self.stream
    }

    fn resume(self) {
        self.open.listener.stats.connection_resumes.inc();
        tokio::task::spawn_local(resumed(self));
    }

    fn close(self, why: Wake) {
        debug!(peer = %self.peer, listener = %self.open.listener.name, reason = ?why, "parked client connection closed");
    }
}

/// An accepted connection, counted open until dropped (however it ends:
/// its task returned, its park closed, or the runtime dropped at exit).
struct Open {
    listener: Rc<ListenerCtx>,
}

impl Open {
    fn new(listener: Rc<ListenerCtx>, worker: &WorkerCtx) -> Open {
        worker.stats.downstream_connections.inc();
        listener.stats.connections.inc();
        listener.stats.connections_active.inc();
        worker.live_conns.set(worker.live_conns.get() + 1);
        Open { listener }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.listener.stats.connections_active.dec();
        if let Some(worker) = self.listener.worker.upgrade() {
            worker.conn_closed();
        }
    }
}

/// Opens an accepted connection: the TLS handshake if the listener has TLS,
/// then the protocol (fixed, or detected). `None`: the connection is done.
async fn open(stream: TcpStream, peer: SocketAddr, conn: Open, worker: Rc<WorkerCtx>) -> Option<Opened> {
    let _ = stream.set_nodelay(true);
    let listener = &conn.listener;
    let gen = listener.now();
    let mut stream = match gen.spec.tls.clone() {
        None => Transport::Tcp(stream),
        Some(tls) => handshake(stream, &tls, peer, listener, gen.spec.idle_timeout).await?,
    };
    let mut initial = BytesMut::new();
    let protocol = match &gen.spec.downstream {
        DownstreamProtocol::Fixed(p) => *p,
        DownstreamProtocol::Detect(candidates) => {
            match detect(&mut stream, &mut initial, candidates, gen.spec.idle_timeout).await {
                Ok(p) => p,
                Err(Sniff::Silent(why)) => {
                    debug!(%peer, listener = %listener.name, reason = why, "connection closed before detection");
                    return None;
                }
                Err(Sniff::Unknown(first)) => {
                    worker.stats.unknown_protocol.inc();
                    let hex: String = first.iter().map(|b| format!("{b:02x}")).collect();
                    warn!(%peer, listener = %listener.name, first_bytes = %hex, "protocol not recognised, closing");
                    return None;
                }
            }
        }
    };
    let initial = (!initial.is_empty()).then(|| Box::new(initial));
    Some(Opened {
        conn: Quiet { stream, peer, open: conn, protocol: protocol.id(), quiet_since: NOT_SERVED, h2: None },
        initial,
    })
}

/// TLS on an accepted connection: the inspector's look at the first byte
/// when it is on, then the handshake. `None`: the connection is done (a
/// failed handshake is logged and counted with its reason).
async fn handshake(
    stream: TcpStream,
    tls: &ServerTls,
    peer: SocketAddr,
    listener: &ListenerCtx,
    idle: Duration,
) -> Option<Transport> {
    // The first byte tells a TLS record (0x16, a handshake) from plaintext:
    // the inspector serves both; without it, plaintext is refused by name,
    // and a connection closed before any byte (a port probe) is no failure.
    let mut first = [0u8; 1];
    match tokio::time::timeout(idle, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == 0x16 => {}
        Ok(Ok(1)) if tls.inspector => {
            listener.stats.tls.plaintext.inc();
            return Some(Transport::Tcp(stream));
        }
        Ok(Ok(1)) => {
            listener.stats.tls.failed("not_tls");
            warn!(%peer, listener = %listener.name, reason = %"not_tls", first_byte = first[0],
                "plaintext on a TLS listener (no inspector): closing");
            return None;
        }
        _ => {
            debug!(%peer, listener = %listener.name, "connection closed before its first byte");
            return None;
        }
    }
    match tls.accept(stream, crate::tls::server::HANDSHAKE_TIMEOUT).await {
        Ok(conn) => {
            listener.stats.tls.handshakes.inc();
            if conn.info.resumed {
                listener.stats.tls.resumed.inc();
            }
            debug!(%peer, listener = %listener.name, sni = ?conn.info.sni, version = conn.info.version,
                peer_id = ?conn.info.peer.as_ref().and_then(|p| p.spiffe_id()), resumed = conn.info.resumed, "TLS handshake done");
            Some(Transport::Tls(Box::new(conn)))
        }
        Err(e) => {
            let (reason, text) = crate::tls::failure::describe(&e);
            listener.stats.tls.failed(reason);
            warn!(%peer, listener = %listener.name, reason = %reason, error = %text, "TLS handshake with a client failed");
            None
        }
    }
}

/// The protocol of a connection among `candidates`. Plain TCP is peeked at,
/// so nothing is consumed; over TLS, ALPN decides when it names a protocol,
/// else the decrypted bytes are read into `initial` and handed on.
async fn detect(
    stream: &mut Transport,
    initial: &mut BytesMut,
    candidates: &[Protocol],
    within: Duration,
) -> Result<Protocol, Sniff> {
    let alpn = match &*stream {
        Transport::Tcp(s) => return sniff(s, candidates, within).await,
        Transport::Tls(t) => t.info.alpn.clone(),
    };
    let by_alpn = match alpn.as_deref() {
        Some(b"h2") => Some(Protocol::Http2),
        Some(b"http/1.1") => Some(Protocol::Http1),
        _ => None,
    };
    if let Some(p) = by_alpn.filter(|p| candidates.iter().any(|c| c.name() == p.name())) {
        return Ok(p);
    }
    let deadline = Instant::now() + within;
    loop {
        use tokio::io::AsyncReadExt;
        got(tokio::time::timeout_at(deadline, stream.read_buf(initial)).await)?;
        if let Some(decided) = decide(candidates, &initial[..initial.len().min(SNIFF_BYTES)]) {
            return decided;
        }
    }
}

/// How many first bytes detection looks at, at most.
const SNIFF_BYTES: usize = 32;

/// What a connection's first bytes say among `candidates`: a protocol, that
/// none knows them, or (`None`) that more bytes are needed.
fn decide(candidates: &[Protocol], head: &[u8]) -> Option<Result<Protocol, Sniff>> {
    let mut need_more = false;
    for &c in candidates {
        match c.detect(head) {
            Detect::Match => return Some(Ok(c)),
            Detect::NeedMore => need_more = true,
            Detect::NoMatch => {}
        }
    }
    (!need_more || head.len() >= SNIFF_BYTES).then(|| Err(Sniff::Unknown(head[..head.len().min(16)].to_vec())))
}

/// The outcome of one read detection waits on: bytes, or why it gave up.
fn got(read: Result<std::io::Result<usize>, tokio::time::error::Elapsed>) -> Result<usize, Sniff> {
    match read {
        Err(_) => Err(Sniff::Silent("no bytes before the idle timeout")),
        Ok(Err(_)) => Err(Sniff::Silent("read error")),
        Ok(Ok(0)) => Err(Sniff::Silent("closed before sending anything")),
        Ok(Ok(n)) => Ok(n),
    }
}

/// Reads the first bytes of a connection without consuming them and picks the
/// codec that recognises them. One `peek` decides for bolt (one byte); a codec
/// that needs more bytes is asked again as they arrive.
async fn sniff(stream: &TcpStream, candidates: &[Protocol], within: Duration) -> Result<Protocol, Sniff> {
    let mut buf = [0u8; SNIFF_BYTES];
    let deadline = Instant::now() + within;
    loop {
        let n = got(tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await)?;
        if let Some(decided) = decide(candidates, &buf[..n]) {
            return decided;
        }
        // peek returns at once while bytes are buffered: give more a moment to arrive.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Why detection gave up.
enum Sniff {
    /// The client sent nothing (a port probe, a slow client).
    Silent(&'static str),
    /// The client sent bytes no configured protocol recognises: the first of them.
    Unknown(Vec<u8>),
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_parked_connection_fits_a_112_byte_block() {
        // Each parked connection is one boxed `Quiet`; glibc hands a 96-byte
        // value a 112-byte block, and a larger one the next size up.
        assert!(std::mem::size_of::<super::Quiet>() <= 96, "{}", std::mem::size_of::<super::Quiet>());
    }

    #[test]
    fn a_connection_back_within_the_grace_lingers_and_no_other() {
        use super::{lingers, NOT_SERVED};
        assert!(lingers(1_000, 1_010), "back after 10 ms");
        assert!(!lingers(1_000, 1_150), "back after 150 ms: parks at once again");
        assert!(!lingers(NOT_SERVED, 5), "parked from its accept: it has not shown how often it calls");
        assert!(lingers(u32::MAX - 5, 4), "the clock wrapped between");
    }
}
