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

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::config::{DownstreamProtocol, ListenerSpec};
use crate::protocol::{Detect, Protocol};
use crate::stats::Stats;
use crate::stream::server::ResponseHook;
use crate::upstream::Cluster;
use filter::FilterChain;

/// State shared by everything on one worker thread.
pub struct WorkerCtx {
    pub clusters: Vec<Rc<Cluster>>,
    pub stats: Rc<Stats>,
    pub draining: Cell<bool>,
    /// Woken once when draining starts.
    pub drain: Notify,
    pub live_conns: Cell<usize>,
    /// Woken when the last downstream connection closes during a drain.
    pub conns_gone: Notify,
}

impl WorkerCtx {
    pub fn new(clusters: Vec<Rc<Cluster>>) -> WorkerCtx {
        WorkerCtx {
            clusters,
            stats: Rc::new(Stats::default()),
            draining: Cell::new(false),
            drain: Notify::new(),
            live_conns: Cell::new(0),
            conns_gone: Notify::new(),
        }
    }

    /// Stops reading new requests everywhere; connections close once answered.
    pub fn start_drain(&self) {
        self.draining.set(true);
        self.drain.notify_waiters();
    }
}

/// A listener as one worker runs it.
pub struct ListenerCtx {
    pub spec: ListenerSpec,
    pub filters: Rc<FilterChain>,
    hook: Option<Rc<dyn ResponseHook>>,
}

impl ListenerCtx {
    pub fn new(spec: ListenerSpec) -> ListenerCtx {
        let filters = Rc::new(FilterChain::new(&spec.filters));
        let hook = filter::response_hook(&filters);
        ListenerCtx { spec, filters, hook }
    }
}

/// Serves one accepted client connection until it closes.
pub async fn serve(stream: TcpStream, peer: SocketAddr, listener: Rc<ListenerCtx>, worker: Rc<WorkerCtx>) {
    let _ = stream.set_nodelay(true);
    let stats = &worker.stats;
    stats.downstream_connections.set(stats.downstream_connections.get() + 1);
    let protocol = match &listener.spec.downstream {
        DownstreamProtocol::Fixed(p) => *p,
        DownstreamProtocol::Detect(candidates) => match sniff(&stream, candidates, listener.spec.idle_timeout).await {
            Ok(p) => p,
            Err(Sniff::Silent(why)) => {
                debug!(%peer, listener = %listener.spec.name, reason = why, "connection closed before detection");
                return;
            }
            Err(Sniff::Unknown(first)) => {
                stats.unknown_protocol.set(stats.unknown_protocol.get() + 1);
                let hex: String = first.iter().map(|b| format!("{b:02x}")).collect();
                warn!(%peer, listener = %listener.spec.name, first_bytes = %hex, "protocol not recognised, closing");
                return;
            }
        },
    };
    worker.live_conns.set(worker.live_conns.get() + 1);
    match protocol {
        Protocol::Rpc(codec) => rpc::serve(stream, peer, codec, &listener, &worker).await,
        // Boxed: an HTTP connection's state is large, and inline it would size
        // every connection's task, bolt ones included (1.5 KiB idle vs 3 KiB).
        http_version => Box::pin(http::serve(stream, peer, http_version, listener.clone(), worker.clone())).await,
    }
    worker.live_conns.set(worker.live_conns.get() - 1);
    if worker.live_conns.get() == 0 && worker.draining.get() {
        worker.conns_gone.notify_waiters();
    }
}

/// Reads the first bytes of a connection without consuming them and picks the
/// codec that recognises them. One `peek` decides for bolt (one byte); a codec
/// that needs more bytes is asked again as they arrive.
async fn sniff(stream: &TcpStream, candidates: &[Protocol], within: Duration) -> Result<Protocol, Sniff> {
    let mut buf = [0u8; 32];
    let deadline = Instant::now() + within;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Err(_) => return Err(Sniff::Silent("no bytes before the idle timeout")),
            Ok(Err(_)) => return Err(Sniff::Silent("read error")),
            Ok(Ok(0)) => return Err(Sniff::Silent("closed before sending anything")),
            Ok(Ok(n)) => n,
        };
        let mut need_more = false;
        for &c in candidates {
            match c.detect(&buf[..n]) {
                Detect::Match => return Ok(c),
                Detect::NeedMore => need_more = true,
                Detect::NoMatch => {}
            }
        }
        if !need_more || n == buf.len() {
            return Err(Sniff::Unknown(buf[..n.min(16)].to_vec()));
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
