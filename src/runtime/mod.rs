//! The process: worker threads, their listeners, signals and the drain.
//!
//! Each worker is a thread with its own single-threaded tokio runtime, its own
//! SO_REUSEPORT socket per listener and its own clusters and pools, so a request
//! never crosses a thread and the hot path takes no lock. The main thread only
//! waits for SIGTERM/SIGINT: the first starts a graceful drain (stop accepting,
//! stop reading new requests, answer those in flight, close), bounded by the
//! drain timeout; a second signal exits at once.

use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tracing::{error, info, warn};

use crate::config::Settings;
use crate::network::listener::{bind_reuseport, ensure_free};
use crate::proxy::{serve, ListenerCtx, WorkerCtx};
use crate::stats::Stats;
use crate::upstream::Cluster;

/// Tells workers to drain.
#[derive(Default)]
pub struct Shutdown {
    flag: AtomicBool,
    notify: Notify,
}

impl Shutdown {
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub async fn wait(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !self.flag.load(Ordering::SeqCst) {
            notified.await;
        }
    }
}

/// Runs ferrymesh until a signal has drained it. Returns the process exit code.
pub fn run(settings: Settings, workers: usize, drain_timeout: Duration) -> io::Result<i32> {
    for l in &settings.listeners {
        ensure_free(l.addr).map_err(|e| io::Error::new(e.kind(), format!("listener {} on {}: {e}", l.name, l.addr)))?;
    }
    // Bind every socket before starting, so a bad address fails the start.
    let mut sockets = Vec::new();
    for _ in 0..workers {
        let mut per_worker = Vec::new();
        for l in &settings.listeners {
            let s = bind_reuseport(l.addr, 4096)
                .map_err(|e| io::Error::new(e.kind(), format!("listener {} on {}: {e}", l.name, l.addr)))?;
            per_worker.push(s);
        }
        sockets.push(per_worker);
    }
    let shutdown = Arc::new(Shutdown::default());
    let settings = Arc::new(settings);
    let mut threads = Vec::new();
    for (n, socks) in sockets.into_iter().enumerate() {
        let settings = settings.clone();
        let shutdown = shutdown.clone();
        let t = std::thread::Builder::new()
            .name(format!("worker-{n}"))
            .spawn(move || worker_main(n, &settings, socks, &shutdown, drain_timeout))?;
        threads.push(t);
    }
    for l in &settings.listeners {
        info!(listener = %l.name, addr = %l.addr, protocol = %l.downstream.describe(), workers, "listening");
    }

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        wait_signal().await;
        info!(timeout = ?drain_timeout, "shutting down: draining in-flight requests");
        shutdown.trigger();
        let sh = shutdown.clone();
        tokio::spawn(async move {
            wait_signal().await;
            warn!("second signal: exiting now");
            drop(sh);
            std::process::exit(1);
        });
    });
    let total = Stats::default();
    let mut code = 0;
    for t in threads {
        match t.join() {
            Ok(Ok(stats)) => total.merge(&stats),
            Ok(Err(e)) => {
                error!(error = %e, "worker failed");
                code = 1;
            }
            Err(_) => {
                error!("worker panicked");
                code = 1;
            }
        }
    }
    info!(stats = %total.summary(), "stopped");
    Ok(code)
}

async fn wait_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        error!("cannot install signal handlers");
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
}

fn worker_main(
    n: usize,
    settings: &Settings,
    sockets: Vec<std::net::TcpListener>,
    shutdown: &Shutdown,
    drain_timeout: Duration,
) -> io::Result<Stats> {
    // A LocalRuntime rather than a LocalSet: a task woken from its own thread
    // goes straight onto the local queue, where a LocalSet wake-up goes through
    // the runtime's unpark and costs an eventfd write (0.6 per HTTP request,
    // counted with strace).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build_local(tokio::runtime::LocalOptions::default())?;
    let stats = rt.block_on(async {
        // Clusters speak bolt for now: the bolt codec reads v1 and v2 frames
        // alike, so one upstream connection carries both. Its own version only
        // sets the version of the keep-alive heartbeats ferrymesh sends.
        let upstream: &'static dyn crate::protocol::Codec = settings
            .listeners
            .iter()
            .find_map(|l| match l.upstream {
                Some(crate::protocol::Protocol::Rpc(c)) => Some(c),
                _ => None,
            })
            .unwrap_or(&crate::protocol::bolt::BOLT_V1);
        let clusters = settings.clusters.iter().map(|c| Rc::new(Cluster::new(c, upstream))).collect();
        let worker = Rc::new(WorkerCtx::new(clusters));
        let mut accepts = Vec::new();
        for (sock, spec) in sockets.into_iter().zip(&settings.listeners) {
            let listener = TcpListener::from_std(sock)?;
            let ctx = Rc::new(ListenerCtx::new(spec.clone()));
            accepts.push(tokio::task::spawn_local(accept_loop(listener, ctx, worker.clone())));
        }
        shutdown.wait().await;
        worker.start_drain();
        for a in &accepts {
            a.abort();
        }
        let gone = worker.conns_gone.notified();
        tokio::pin!(gone);
        gone.as_mut().enable();
        if worker.live_conns.get() > 0 && tokio::time::timeout(drain_timeout, gone).await.is_err() {
            warn!(worker = n, open = worker.live_conns.get(), "drain timeout: closing remaining connections");
        }
        let stats = Stats::default();
        stats.merge(&worker.stats);
        Ok::<_, io::Error>(stats)
    })?;
    Ok(stats)
}

async fn accept_loop(listener: TcpListener, ctx: Rc<ListenerCtx>, worker: Rc<WorkerCtx>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::task::spawn_local(serve(stream, peer, ctx.clone(), worker.clone()));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(listener = %ctx.spec.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
