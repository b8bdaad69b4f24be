//! The process: worker threads, the control thread that changes what they
//! serve, signals, the admin server, and the drain.
//!
//! Each worker is a thread with its own single-threaded tokio runtime, its own
//! SO_REUSEPORT socket per listener and its own clusters and pools, so a
//! request never crosses a thread and the hot path takes no lock
//! ([`worker`]). The main thread is the control thread. It owns the
//! configuration in generations: a new one (SIGHUP, `POST /api/v1/reload`,
//! a changed file with `--watch`, or one resource through
//! `/api/v1/update_config`) is loaded and checked, the sockets of new
//! listeners are bound, and only then is it sent to every worker, which
//! applies it to its own state. A configuration that fails any step is
//! refused whole and the running one keeps serving.
//!
//! SIGTERM or SIGINT start a graceful drain (stop accepting, stop reading new
//! requests, answer those in flight, close), bounded by the drain timeout; a
//! second signal exits at once. SIGUSR1 reopens the access logs.

pub mod busy_poll;
pub mod logging;
pub mod worker;

use std::cell::{Cell, RefCell};
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::config::{self, ConfigError, Settings};
use crate::network::listener::{bind_reuseport, ensure_free};
use crate::stats::snapshot::{ControlCounts, Totals};
use crate::stats::Stats;
use worker::Command;

/// How the process was started.
pub struct Options {
    /// The configuration file (reloaded from here).
    pub path: PathBuf,
    pub workers: usize,
    pub drain_timeout: Duration,
    /// Reload when the file changes.
    pub watch: bool,
}

/// Where a change came from (for the log).
#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    Start,
    Signal,
    Admin,
    FileChange,
    Resource,
    /// A certificate or key file of the running configuration changed.
    CertificateChange,
}

/// A change that was not applied, and why.
#[derive(Debug, Clone)]
pub struct Refused {
    pub version: u64,
    pub reason: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// The control thread's state: the configuration serving now and the
/// workers' command queues.
pub struct Control {
    pub options: Options,
    started: Instant,
    workers: Vec<mpsc::UnboundedSender<Command>>,
    settings: RefCell<Arc<Settings>>,
    version: Cell<u64>,
    applied: Cell<u64>,
    refused: Cell<u64>,
    draining: Cell<bool>,
    /// One change at a time.
    busy: tokio::sync::Mutex<()>,
}

impl Control {
    /// The configuration serving now.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.borrow().clone()
    }

    pub fn version(&self) -> u64 {
        self.version.get()
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn draining(&self) -> bool {
        self.draining.get()
    }

    /// Reads the file again and applies it.
    pub async fn reload(&self, trigger: Trigger) -> Result<u64, Refused> {
        let _one = self.busy.lock().await;
        let loaded = config::load_file(&self.options.path);
        self.settle(loaded, trigger).await
    }

    /// Builds the running configuration again from its document, reading
    /// the files it names anew (certificates and keys).
    pub async fn rebuild(&self, trigger: Trigger) -> Result<u64, Refused> {
        let _one = self.busy.lock().await;
        let loaded = config::load_value(self.settings().document());
        self.settle(loaded, trigger).await
    }

    /// Replaces one resource of the running configuration: a `cluster`, a
    /// `router` (route table) or a `listener`, by its name, or adds it; with
    /// `"remove": true` in `config`, removes it. The rest of the configuration stays as it
    /// is, and so does everything the change does not touch. This is the
    /// path a control plane (xDS) feeds.
    pub async fn update_resource(&self, kind: &str, config: serde_json::Value) -> Result<u64, Refused> {
        let _one = self.busy.lock().await;
        let current = self.settings();
        let changed = config::replace_resource(&current.document(), kind, config);
        let loaded = changed.and_then(config::load_value);
        self.settle(loaded, Trigger::Resource).await
    }

    async fn settle(&self, loaded: Result<Settings, ConfigError>, trigger: Trigger) -> Result<u64, Refused> {
        let next = self.version.get() + 1;
        let outcome = match loaded {
            Ok(settings) => self.apply(settings, next).await,
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => {
                self.version.set(next);
                self.applied.set(self.applied.get() + 1);
                info!(version = next, ?trigger, "configuration applied");
                Ok(next)
            }
            Err(reason) => {
                self.refused.set(self.refused.get() + 1);
                error!(version = next, ?trigger, %reason, "configuration refused; the running one keeps serving");
                Err(Refused { version: next, reason })
            }
        }
    }

    /// Binds what the new configuration needs, then hands it to every
    /// worker and waits until each has applied it.
    async fn apply(&self, settings: Settings, version: u64) -> Result<(), String> {
        let old = self.settings();
        for w in &settings.warnings {
            warn!(version, "config {w}");
        }
        // A listener that is new, or moved to another address, needs its
        // sockets; one whose address ferrymesh already holds (it moved
        // between names) binds beside itself through SO_REUSEPORT.
        let mut sockets: Vec<Vec<(String, std::net::TcpListener)>> =
            (0..self.workers.len()).map(|_| Vec::new()).collect();
        for l in &settings.listeners {
            if old.listeners.iter().any(|o| o.name == l.name && o.addr == l.addr) {
                continue;
            }
            let ours = old.listeners.iter().any(|o| o.addr == l.addr);
            if !ours {
                ensure_free(l.addr).map_err(|e| format!("listener {} on {}: {e}", l.name, l.addr))?;
            }
            for per_worker in &mut sockets {
                let s = bind_reuseport(l.addr, 4096).map_err(|e| format!("listener {} on {}: {e}", l.name, l.addr))?;
                per_worker.push((l.name.clone(), s));
            }
        }
        if settings.admin != old.admin && version > 1 {
            warn!(version, "admin: a changed admin address takes effect at the next start");
        }
        if settings.busy_poll != old.busy_poll
            || settings.busy_poll_mode != old.busy_poll_mode
            || (version == 1 && !settings.busy_poll.is_zero())
        {
            info!(version, window = ?settings.busy_poll, mode = settings.busy_poll_mode.name(), "busy_poll: each worker polls without sleeping for this long after its last input (0s: off; mode awaiting, the default: only while it awaits an upstream answer, on the credit its catches earned)");
        }
        let settings = Arc::new(settings);
        let mut acks = Vec::with_capacity(self.workers.len());
        for (tx, sockets) in self.workers.iter().zip(sockets) {
            let (done, ack) = oneshot::channel();
            let cmd = Command::Apply { version, settings: settings.clone(), sockets, done };
            if tx.send(cmd).is_err() {
                return Err("a worker has exited".into());
            }
            acks.push(ack);
        }
        // Served from here on (the admin server's dumps and lists), before
        // the first await: this thread also runs the admin server, and the
        // new listeners' sockets, bound above, already take connections, so
        // whoever sees a port open sees the configuration that opened it.
        // Set after the workers' acks, a config dump could still show the
        // empty one of the start (a test saw it once).
        *self.settings.borrow_mut() = settings.clone();
        for ack in acks {
            let _ = ack.await;
        }
        for l in &settings.listeners {
            if !old.listeners.iter().any(|o| o.name == l.name) {
                info!(listener = %l.name, addr = %l.addr, protocol = %l.downstream.describe(), workers = self.workers.len(), "listening");
            }
        }
        for o in &old.listeners {
            if !settings.listeners.iter().any(|l| l.name == o.name) {
                info!(listener = %o.name, addr = %o.addr, "listener removed: draining its connections");
            }
        }
        Ok(())
    }

    /// Every worker's counters, summed.
    pub async fn totals(&self) -> Totals {
        let mut replies = Vec::with_capacity(self.workers.len());
        for tx in &self.workers {
            let (reply, rx) = oneshot::channel();
            if tx.send(Command::Snapshot(reply)).is_ok() {
                replies.push(rx);
            }
        }
        let mut totals = Totals::default();
        for rx in replies {
            if let Ok(s) = rx.await {
                totals.add(&s);
            }
        }
        totals.control = ControlCounts {
            version: self.version.get(),
            applied: self.applied.get(),
            refused: self.refused.get(),
            workers: self.workers.len(),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
        };
        totals
    }
}

/// Runs ferrymesh until a signal has drained it. Returns the process exit code.
pub fn run(settings: Settings, options: Options) -> io::Result<i32> {
    let workers = options.workers;
    let drain_timeout = options.drain_timeout;
    let mut senders = Vec::with_capacity(workers);
    let mut threads = Vec::with_capacity(workers);
    for n in 0..workers {
        let (tx, rx) = mpsc::unbounded_channel();
        senders.push(tx);
        let t = std::thread::Builder::new()
            .name(format!("worker-{n}"))
            .spawn(move || worker::main(n, rx, drain_timeout))?;
        threads.push(t);
    }
    let admin_addr = settings.admin;
    let first_stamp = if options.watch { file_stamp(&options.path) } else { None };
    let control = Rc::new(Control {
        options,
        started: Instant::now(),
        workers: senders,
        settings: RefCell::new(Arc::new(Settings::empty())),
        version: Cell::new(0),
        applied: Cell::new(0),
        refused: Cell::new(0),
        draining: Cell::new(false),
        busy: tokio::sync::Mutex::new(()),
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build_local(tokio::runtime::LocalOptions::default())?;
    let signal_set = rt.block_on(async { Signals::install() })?;
    // The admin server is bound before the first listener accepts: whoever
    // sees the proxy's port open can reach its admin API.
    let started = rt.block_on(async {
        if let Some(addr) = admin_addr {
            match crate::admin::start(addr, control.clone()).await {
                Ok(bound) => info!(addr = %bound, "admin server listening"),
                Err(e) => {
                    error!(%addr, error = %e, "cannot start the admin server");
                    return Err(e);
                }
            }
        }
        let _one = control.busy.lock().await;
        control.settle(Ok(settings), Trigger::Start).await.map_err(|refused| io::Error::other(refused.reason))
    });
    if let Err(e) = started {
        stop_workers(&control, threads);
        return Err(e);
    }
    let code = rt.block_on(async {
        if control.options.watch {
            tokio::task::spawn_local(watch_file(control.clone(), first_stamp));
        }
        tokio::task::spawn_local(watch_certificates(control.clone()));
        signals(&control, signal_set).await;
        Ok(())
    });
    if let Err(e) = code {
        stop_workers(&control, threads);
        return Err(e);
    }
    control.draining.set(true);
    info!(timeout = ?control.options.drain_timeout, "shutting down: draining in-flight requests");
    std::thread::spawn(|| {
        // A second signal exits at once.
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
        if let Ok(rt) = rt {
            rt.block_on(wait_stop());
            warn!("second signal: exiting now");
            std::process::exit(1);
        }
    });
    Ok(stop_workers(&control, threads))
}

/// Tells every worker to drain, waits for them, logs the totals.
fn stop_workers(control: &Control, threads: Vec<std::thread::JoinHandle<io::Result<Stats>>>) -> i32 {
    for tx in &control.workers {
        let _ = tx.send(Command::Drain);
    }
    let total = Stats::default();
    let mut code = 0;
    for t in threads {
        match t.join() {
            Ok(Ok(stats)) => stats.add_to(&total),
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
    crate::accesslog::sync();
    info!(stats = %total.summary(), "stopped");
    code
}

/// The signals the process handles, installed before the first listener
/// accepts: a SIGTERM that arrives during the start drains instead of
/// killing the process with the signal's default action.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
        })
    }
}

/// Serves signals until SIGTERM or SIGINT: SIGHUP reloads, SIGUSR1 reopens
/// the access logs.
async fn signals(control: &Rc<Control>, mut s: Signals) {
    loop {
        tokio::select! {
            _ = s.term.recv() => return info!("SIGTERM received"),
            _ = s.int.recv() => return info!("SIGINT received"),
            _ = s.hup.recv() => {
                info!("SIGHUP received: reloading the configuration");
                let control = control.clone();
                tokio::task::spawn_local(async move {
                    let _ = control.reload(Trigger::Signal).await;
                });
            }
            _ = s.usr1.recv() => {
                info!("SIGUSR1 received: reopening the access logs");
                crate::accesslog::reopen_all();
            }
        }
    }
}

async fn wait_stop() {
    let Ok(mut s) = Signals::install() else {
        error!("cannot install signal handlers");
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = s.term.recv() => info!("SIGTERM received"),
        _ = s.int.recv() => info!("SIGINT received"),
    }
}

/// Certificate rotation: the certificate, key and CA files the running
/// generation read are polled each second; when one changes, the
/// configuration is built again, so new handshakes use the new files while
/// open connections live on. Files that do not load (a key that does not
/// match, half a PEM) are refused with the reason logged, the old generation
/// keeps serving, and the same files are not tried again until they change.
async fn watch_certificates(control: Rc<Control>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_tried = Vec::new();
    loop {
        tick.tick().await;
        let settings = control.settings();
        let mut changed: Vec<(PathBuf, Option<crate::tls::load::Stamp>)> = settings
            .tls_files()
            .flat_map(|f| f.changed())
            .map(|p| (p.to_path_buf(), crate::tls::load::stamp(p)))
            .collect();
        changed.sort_by(|a, b| a.0.cmp(&b.0));
        changed.dedup();
        if changed.is_empty() || changed == last_tried {
            continue;
        }
        info!(files = ?changed.iter().map(|(p, _)| p.display().to_string()).collect::<Vec<_>>(),
            "certificate files changed: building a new generation");
        last_tried = changed;
        let _ = control.rebuild(Trigger::CertificateChange).await;
    }
}

/// The configuration file's modification time and length, as the watcher
/// compares them.
type FileStamp = Option<(Option<std::time::SystemTime>, u64)>;

fn file_stamp(path: &PathBuf) -> FileStamp {
    std::fs::metadata(path).ok().map(|m| (m.modified().ok(), m.len()))
}

/// `--watch`: reloads when the file's modification time or size changes
/// (polled each second: no inotify dependency, and it sees an editor's
/// rename-over as well as an in-place write). `last`: the file's stamp taken
/// before its first configuration opened any port, so a change made as soon
/// as a port opens is still seen (taken when this task started, after every
/// worker had applied it, such a change was missed).
async fn watch_file(control: Rc<Control>, mut last: FileStamp) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = file_stamp(&control.options.path);
        if now != last && now.is_some() {
            last = now;
            info!(path = %control.options.path.display(), "configuration file changed: reloading");
            let _ = control.reload(Trigger::FileChange).await;
        }
    }
}
