//! Access logs in MOSN's format: a line per request, per listener
//! (`access_logs: [{log_path, log_format}]`), to a file or to stdout.
//!
//! A worker formats the line into a buffer of its own ([`AccessLog::log`]);
//! the buffer goes to the writer thread every 100 ms, or at once when it
//! passes 32 KiB. Only that thread touches the files, so a slow disk never
//! stalls a request. SIGUSR1 makes it close and reopen every file, which is
//! what logrotate's `postrotate` expects.

mod format;
mod writer;

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

pub use format::{Format, FormatError, DEFAULT_FORMAT};
pub use writer::reopen_all;

/// Bytes a worker buffers before it hands them to the writer at once.
const FLUSH_AT: usize = 32 << 10;

/// One finished request, as the access log sees it. Addresses come as text
/// made once (per connection, per host), not formatted per line.
pub struct Entry<'a> {
    /// When the request arrived.
    pub start: std::time::Instant,
    /// From arrival to the end of the answer.
    pub duration: Duration,
    /// From arrival until the request went upstream, if it did.
    pub request_sent: Option<Duration>,
    pub protocol: &'a str,
    /// The client's request id (RPC) or stream id (HTTP/2), if any.
    pub request_id: Option<u64>,
    pub upstream: Option<&'a str>,
    pub cluster: Option<&'a str>,
    /// HTTP-like status of the answer; 0 when there was none.
    pub status: u16,
    /// Why ferrymesh answered itself, if it did (a `ProxyError` label).
    pub error: Option<&'a str>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub downstream_remote: &'a str,
    pub downstream_local: Option<&'a str>,
    /// What the client connection's TLS handshake settled, if it was TLS.
    pub tls: Option<&'a crate::tls::TlsInfo>,
}

/// A listener's access log on one worker.
pub struct AccessLog {
    path: Arc<str>,
    format: Arc<Format>,
    buf: RefCell<Vec<u8>>,
}

impl AccessLog {
    pub fn new(path: &str, format: Arc<Format>) -> AccessLog {
        AccessLog { path: path.into(), format, buf: RefCell::new(Vec::new()) }
    }

    /// Formats one line into this worker's buffer.
    pub fn log(&self, e: &Entry<'_>) {
        let mut buf = self.buf.borrow_mut();
        self.format.write(e, &mut buf);
        buf.push(b'\n');
        if buf.len() >= FLUSH_AT {
            writer::send(&self.path, std::mem::take(&mut *buf));
        }
    }

    /// Hands what is buffered to the writer thread.
    pub fn flush(&self) {
        let mut buf = self.buf.borrow_mut();
        if !buf.is_empty() {
            writer::send(&self.path, std::mem::take(&mut *buf));
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Waits until the writer thread has written everything sent before this
/// call (for a clean exit).
pub fn sync() {
    writer::sync();
}
