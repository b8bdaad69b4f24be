//! The thread that owns the access-log files.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex, OnceLock};

enum Msg {
    Lines(Arc<str>, Vec<u8>),
    Reopen,
    Sync(Sender<()>),
}

/// The writer's queue. The Mutex only guards the `Sender` clone a worker
/// takes once ([`LOCAL`]); lines themselves go through the channel.
static WRITER: OnceLock<Mutex<Sender<Msg>>> = OnceLock::new();

thread_local! {
    static LOCAL: Sender<Msg> = writer().lock().map(|s| s.clone()).unwrap_or_else(|p| p.into_inner().clone());
}

fn writer() -> &'static Mutex<Sender<Msg>> {
    WRITER.get_or_init(|| {
        let (tx, rx) = channel::<Msg>();
        let spawned = std::thread::Builder::new().name("access-log".into()).spawn(move || {
            let mut files: HashMap<Arc<str>, File> = HashMap::new();
            for msg in rx {
                match msg {
                    Msg::Lines(path, bytes) => write(&mut files, &path, &bytes),
                    Msg::Reopen => files.clear(),
                    Msg::Sync(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the access-log writer thread: access logs are lost");
        }
        Mutex::new(tx)
    })
}

fn write(files: &mut HashMap<Arc<str>, File>, path: &Arc<str>, bytes: &[u8]) {
    if matches!(&**path, "stdout" | "/dev/stdout") {
        let _ = std::io::stdout().lock().write_all(bytes);
        return;
    }
    if !files.contains_key(path) {
        match OpenOptions::new().create(true).append(true).open(&**path) {
            Ok(f) => {
                files.insert(path.clone(), f);
            }
            Err(e) => {
                tracing::warn!(path = %path, error = %e, lines = bytes.iter().filter(|b| **b == b'\n').count(), "cannot open access log: lines dropped");
                return;
            }
        }
    }
    if let Some(f) = files.get_mut(path) {
        if let Err(e) = f.write_all(bytes) {
            tracing::warn!(path = %path, error = %e, "access log write failed");
            files.remove(path);
        }
    }
}

pub(super) fn send(path: &Arc<str>, bytes: Vec<u8>) {
    LOCAL.with(|tx| {
        let _ = tx.send(Msg::Lines(path.clone(), bytes));
    });
}

/// Closes every access-log file; the next line opens it again (SIGUSR1).
pub fn reopen_all() {
    LOCAL.with(|tx| {
        let _ = tx.send(Msg::Reopen);
    });
}

pub(super) fn sync() {
    let (done, wait) = channel();
    LOCAL.with(|tx| {
        let _ = tx.send(Msg::Sync(done));
    });
    let _ = wait.recv_timeout(std::time::Duration::from_secs(5));
}
