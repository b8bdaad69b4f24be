//! A worker thread: its own single-threaded runtime, its own copy of the
//! clusters and listeners, and a command queue from the control thread.
//!
//! Every change arrives as a command and is applied here, on the worker's
//! own thread, to the worker's own state: the request path never takes a
//! lock and never reads anything another thread writes (Envoy's thread-local
//! cluster manager is the model).

use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::busy_poll;
use crate::config::Settings;
use crate::proxy::{serve, ListenerCtx, ListenerGen, WorkerCtx};
use crate::stats::snapshot::{HostSnapshot, Snapshot};
use crate::stats::{ListenerStats, Stats, UpstreamStats};
use crate::upstream::Cluster;

/// What the control thread asks of a worker.
pub enum Command {
    /// Serve generation `version` of the configuration. `sockets` holds this
    /// worker's socket for each listener that is new or moved.
    Apply {
        version: u64,
        settings: Arc<Settings>,
        sockets: Vec<(String, std::net::TcpListener)>,
        done: oneshot::Sender<()>,
    },
    /// Copy the counters out.
    Snapshot(oneshot::Sender<Snapshot>),
    /// Stop accepting, answer what is in flight, and exit.
    Drain,
}

/// How often buffered access-log lines go to the writer thread.
const LOG_FLUSH: Duration = Duration::from_millis(100);

/// Runs worker `n` until told to drain; returns its counters.
pub fn main(n: usize, mut commands: mpsc::UnboundedReceiver<Command>, drain_timeout: Duration) -> io::Result<Stats> {
    // A LocalRuntime rather than a LocalSet: a task woken from its own thread
    // goes straight onto the local queue, where a LocalSet wake-up goes through
    // the runtime's unpark and costs an eventfd write (0.6 per HTTP request,
    // counted with strace).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(busy_poll::before_park)
        .on_thread_unpark(busy_poll::after_unpark)
        .build_local(tokio::runtime::LocalOptions::default())?;
    rt.block_on(async {
        let worker = Rc::new(WorkerCtx::new(n));
        let mut accepts: HashMap<String, JoinHandle<()>> = HashMap::new();
        let flusher = tokio::task::spawn_local(flush_logs(worker.clone()));
        let spinner = tokio::task::spawn_local(busy_poll::spinner());
        let deadlines = tokio::task::spawn_local(crate::network::timeouts::driver());
        let trimmer = tokio::task::spawn_local(crate::network::spares::trimmer());
        while let Some(cmd) = commands.recv().await {
            match cmd {
                Command::Apply { version, settings, sockets, done } => {
                    let stopped = apply(&worker, &mut accepts, version, &settings, sockets);
                    // A removed listener's socket is closed before the change
                    // counts as applied: its port is free when reload returns.
                    for task in stopped {
                        let _ = task.await;
                    }
                    let _ = done.send(());
                }
                Command::Snapshot(reply) => {
                    let _ = reply.send(snapshot(&worker));
                }
                Command::Drain => break,
            }
        }
        worker.start_drain();
        for (_, a) in accepts.drain() {
            a.abort();
        }
        let gone = worker.conns_gone.notified();
        tokio::pin!(gone);
        gone.as_mut().enable();
        if worker.live_conns.get() > 0 && tokio::time::timeout(drain_timeout, gone).await.is_err() {
            warn!(worker = n, open = worker.live_conns.get(), "drain timeout: closing remaining connections");
        }
        flusher.abort();
        spinner.abort();
        deadlines.abort();
        trimmer.abort();
        for l in worker.listeners.borrow().iter() {
            l.flush_logs();
        }
        let stats = Stats::default();
        worker.stats.add_to(&stats);
        Ok(stats)
    })
}

/// Moves the worker to a new generation. Clusters whose spec is unchanged are
/// kept as they are; a changed one keeps the hosts (pools, health, counters)
/// still in its list. A listener that stays keeps its socket and its
/// connections and serves its next requests from the new generation; a new
/// one starts accepting; a removed one stops accepting and drains.
fn apply(
    worker: &Rc<WorkerCtx>,
    accepts: &mut HashMap<String, JoinHandle<()>>,
    version: u64,
    settings: &Settings,
    sockets: Vec<(String, std::net::TcpListener)>,
) -> Vec<JoinHandle<()>> {
    let mut stopped = Vec::new();
    busy_poll::set_window(settings.busy_poll, settings.busy_poll_mode);
    let old: HashMap<String, Rc<Cluster>> =
        worker.clusters.borrow().iter().map(|c| (c.spec.name.clone(), c.clone())).collect();
    let clusters: Rc<[Rc<Cluster>]> = settings
        .clusters
        .iter()
        .map(|spec| match old.get(&spec.name) {
            Some(c) if c.spec == *spec => c.clone(),
            Some(c) => Rc::new(c.update(spec)),
            None => Rc::new(Cluster::new(spec)),
        })
        .collect();
    *worker.clusters.borrow_mut() = clusters.clone();

    let mut sockets: HashMap<String, std::net::TcpListener> = sockets.into_iter().collect();
    let current: Vec<Rc<ListenerCtx>> = worker.listeners.borrow().clone();
    let mut next = Vec::with_capacity(settings.listeners.len());
    for spec in &settings.listeners {
        let gen = ListenerGen::new(version, spec.clone(), clusters.clone());
        let existing = current.iter().find(|l| l.name == spec.name);
        match sockets.remove(&spec.name) {
            Some(sock) => {
                if let Some(old) = existing {
                    stopped.extend(stop(old, accepts));
                }
                let ctx = Rc::new(ListenerCtx::new(gen, worker));
                match TcpListener::from_std(sock) {
                    Ok(l) => {
                        let task = tokio::task::spawn_local(accept_loop(l, ctx.clone(), worker.clone()));
                        accepts.insert(spec.name.clone(), task);
                    }
                    Err(e) => warn!(listener = %spec.name, error = %e, "cannot register listening socket"),
                }
                next.push(ctx);
            }
            None => match existing {
                Some(l) => {
                    l.replace(gen);
                    next.push(l.clone());
                }
                None => warn!(listener = %spec.name, "bug: new listener without a socket"),
            },
        }
    }
    for l in &current {
        if !settings.listeners.iter().any(|s| s.name == l.name) {
            stopped.extend(stop(l, accepts));
        }
    }
    *worker.listeners.borrow_mut() = next;
    debug!(worker = worker.index, version, "configuration applied");
    stopped
}

/// Stops a listener: no more accepts; its connections drain. Returns its
/// accept task, aborted, to be awaited until its socket is closed.
fn stop(l: &ListenerCtx, accepts: &mut HashMap<String, JoinHandle<()>>) -> Option<JoinHandle<()>> {
    l.flush_logs();
    l.start_drain();
    let task = accepts.remove(&l.name)?;
    task.abort();
    Some(task)
}

async fn accept_loop(listener: TcpListener, ctx: Rc<ListenerCtx>, worker: Rc<WorkerCtx>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::task::spawn_local(serve(stream, peer, ctx.clone(), worker.clone()));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(listener = %ctx.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn flush_logs(worker: Rc<WorkerCtx>) {
    let mut tick = tokio::time::interval(LOG_FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for l in worker.listeners.borrow().iter() {
            l.flush_logs();
        }
    }
}

/// The worker's counters, copied.
fn snapshot(worker: &WorkerCtx) -> Snapshot {
    let mut s = Snapshot::default();
    worker.stats.add_to(&s.worker);
    s.worker.busy_polls.add(busy_poll::spins());
    s.worker.busy_poll_nanos.add(busy_poll::spun().as_nanos() as u64);
    for l in worker.listeners.borrow().iter() {
        let copy = ListenerStats::default();
        l.stats.add_to(&copy);
        copy.bytes_received.add(l.hyper_bytes.read());
        copy.bytes_sent.add(l.hyper_bytes.written());
        copy.connections_parked.add(l.parking.parked() as u64);
        s.listeners.push((l.name.clone(), copy));
    }
    let now = tokio::time::Instant::now();
    for c in worker.clusters.borrow().iter() {
        let copy = UpstreamStats::default();
        c.stats.add_to(&copy);
        s.clusters.push((c.spec.name.clone(), copy));
        for h in &c.hosts {
            let stats = UpstreamStats::default();
            h.stats.add_to(&stats);
            s.hosts.push(HostSnapshot {
                cluster: c.spec.name.clone(),
                addr: h.addr,
                weight: h.weight(),
                healthy: h.is_healthy(now),
                stats,
            });
        }
    }
    s
}
