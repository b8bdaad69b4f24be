//! One connection's I/O: the shared output buffer and the driver loop.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BytesMut};

use super::clock;
use super::transport::Transport;
use crate::protocol::{Codec, CodecError, FrameInfo};

/// Size of the per-thread read buffer.
const SCRATCH: usize = 64 * 1024;
/// Reads per wake-up before the task yields to its neighbours.
const READ_BUDGET: usize = 16;
/// An output buffer that grew beyond this is freed once flushed, so a
/// connection that once sent a large frame does not keep the memory while idle.
const KEEP_OUT_CAPACITY: usize = 16 * 1024;

thread_local! {
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; SCRATCH].into_boxed_slice());
}

/// The writable side of a connection, shared by whoever answers on it.
#[derive(Default)]
pub struct ConnShared {
    out: RefCell<BytesMut>,
    waker: Cell<Option<Waker>>,
    closed: Cell<bool>,
}

impl ConnShared {
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Appends to the output buffer through `f`, waking the connection's task
    /// when the buffer was empty. Returns false (and drops nothing written yet)
    /// when the connection is closed.
    pub fn push(&self, f: impl FnOnce(&mut BytesMut)) -> bool {
        if self.closed.get() {
            return false;
        }
        let was_empty = {
            let mut out = self.out.borrow_mut();
            let was_empty = out.is_empty();
            f(&mut out);
            was_empty
        };
        if was_empty {
            self.wake();
        }
        true
    }

    /// Bytes waiting to be written.
    pub fn pending(&self) -> usize {
        self.out.borrow().len()
    }

    /// Takes everything queued for writing (for tests that run no driver).
    #[doc(hidden)]
    pub fn take_output(&self) -> BytesMut {
        std::mem::take(&mut *self.out.borrow_mut())
    }

    /// Asks the connection's task to close the connection.
    pub fn close(&self) {
        self.closed.set(true);
        self.wake();
    }

    /// Wakes the connection's task (e.g. after a state change it must see).
    pub fn wake(&self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    fn register(&self, cx: &Context<'_>) {
        match self.waker.take() {
            Some(w) if w.will_wake(cx.waker()) => self.waker.set(Some(w)),
            _ => self.waker.set(Some(cx.waker().clone())),
        }
    }
}

/// Splits a byte stream into whole frames. Holds only the unfinished tail.
#[derive(Default)]
pub struct FrameReader {
    tail: BytesMut,
}

impl FrameReader {
    /// Feeds newly read bytes; calls `on_frame` for every whole frame.
    pub fn feed(
        &mut self,
        data: &[u8],
        codec: &dyn Codec,
        max_frame: usize,
        mut on_frame: impl FnMut(&[u8], FrameInfo),
    ) -> Result<(), CodecError> {
        if self.tail.is_empty() {
            let used = split_frames(data, codec, max_frame, &mut on_frame)?;
            if used < data.len() {
                self.tail.extend_from_slice(&data[used..]);
            }
        } else {
            self.tail.extend_from_slice(data);
            let used = split_frames(&self.tail, codec, max_frame, &mut on_frame)?;
            self.tail.advance(used);
            if self.tail.is_empty() {
                // Give the memory back: idle connections hold no read buffer.
                self.tail = BytesMut::new();
            }
        }
        Ok(())
    }

    /// True when part of a frame has been read.
    pub fn has_partial(&self) -> bool {
        !self.tail.is_empty()
    }
}

fn split_frames(
    buf: &[u8],
    codec: &dyn Codec,
    max_frame: usize,
    on_frame: &mut impl FnMut(&[u8], FrameInfo),
) -> Result<usize, CodecError> {
    let mut at = 0;
    while at < buf.len() {
        match codec.decode(&buf[at..], max_frame)? {
            Some(info) => {
                on_frame(&buf[at..at + info.len], info);
                at += info.len;
            }
            None => break,
        }
    }
    Ok(at)
}

/// Why a connection ended.
#[derive(Debug)]
pub enum Closed {
    /// The peer closed its side.
    Eof,
    /// A socket error.
    Io(io::Error),
    /// The handler asked to close (bad frame, drained, idle, ...).
    Local(&'static str),
    /// The handler found the connection quiet (nothing in flight, nothing
    /// half read, nothing left to write) and lets it go: the socket stays
    /// open, and its owner may park it.
    Quiet,
}

/// What a connection handler does with the bytes and events of its socket.
pub trait Handler {
    /// New bytes arrived. An error closes the connection.
    fn on_read(&mut self, data: &[u8]) -> Result<(), &'static str>;
    /// The peer closed its writing side. Return `None` to keep the connection
    /// open (to flush answers still owed), or why it must close now.
    fn on_eof(&mut self) -> Option<&'static str>;
    /// Timers and other events. `Ready` closes the connection.
    fn poll_events(&mut self, cx: &mut Context<'_>) -> Poll<&'static str>;
    /// Whether reading is paused (draining, after EOF).
    fn read_paused(&self) -> bool;
    /// Called once nothing is left to write: `Some` closes the connection.
    fn idle_close(&self) -> Option<&'static str>;
    /// `n` bytes were written to the socket (for the byte counters).
    fn on_written(&mut self, _n: usize) {}
    /// Called once nothing is left to write, after [`Handler::idle_close`]:
    /// true ends the drive with [`Closed::Quiet`].
    fn quiet(&self) -> bool {
        false
    }
}

/// Drives `stream` until it closes or the handler lets it go quiet: reads go
/// to `handler`, output from `shared` is written. Returns why it ended;
/// `shared` is marked closed either way.
pub async fn drive<H: Handler>(stream: &mut Transport, shared: &ConnShared, handler: &mut H) -> Closed {
    let mut eof = false;
    let why = poll_fn(|cx| poll_conn(cx, stream, shared, handler, &mut eof)).await;
    shared.closed.set(true);
    // Drop what can no longer be sent, and the waker.
    *shared.out.borrow_mut() = BytesMut::new();
    shared.waker.take();
    why
}

fn poll_conn<H: Handler>(
    cx: &mut Context<'_>,
    stream: &mut Transport,
    shared: &ConnShared,
    handler: &mut H,
    eof: &mut bool,
) -> Poll<Closed> {
    let mut reads = 0;
    while !*eof && !handler.read_paused() {
        let step = SCRATCH_BUF.with(|s| {
            let mut s = s.borrow_mut();
            match stream.poll_read_some(cx, &mut s[..]) {
                Poll::Pending => Ok(false),
                Poll::Ready(Ok(0)) => Err(None),
                Poll::Ready(Ok(n)) => {
                    clock::reading(|| handler.on_read(&s[..n])).map(|()| true).map_err(|why| Some(Closed::Local(why)))
                }
                Poll::Ready(Err(e)) => Err(Some(Closed::Io(e))),
            }
        });
        match step {
            Ok(false) => break,
            Ok(true) => {}
            Err(Some(closed)) => return Poll::Ready(closed),
            Err(None) => {
                *eof = true;
                if let Some(why) = handler.on_eof() {
                    let _ = flush(cx, stream, shared, handler);
                    return Poll::Ready(if why.is_empty() { Closed::Eof } else { Closed::Local(why) });
                }
            }
        }
        reads += 1;
        if reads >= READ_BUDGET {
            // Let the other connections of this worker run; come back at once.
            cx.waker().wake_by_ref();
            break;
        }
    }
    if let Poll::Ready(why) = handler.poll_events(cx) {
        let _ = flush(cx, stream, shared, handler);
        return Poll::Ready(Closed::Local(why));
    }
    if let Err(e) = flush(cx, stream, shared, handler) {
        return Poll::Ready(Closed::Io(e));
    }
    if shared.closed.get() {
        return Poll::Ready(Closed::Local("closed"));
    }
    if shared.out.borrow().is_empty() && !stream.holds_output() {
        if let Some(why) = handler.idle_close() {
            return Poll::Ready(if *eof { Closed::Eof } else { Closed::Local(why) });
        }
        if !*eof && handler.quiet() {
            return Poll::Ready(Closed::Quiet);
        }
    }
    shared.register(cx);
    Poll::Pending
}

/// Writes as much of the output buffer as the socket takes.
fn flush<H: Handler>(
    cx: &mut Context<'_>,
    stream: &mut Transport,
    shared: &ConnShared,
    handler: &mut H,
) -> io::Result<()> {
    let mut out = shared.out.borrow_mut();
    while !out.is_empty() {
        match stream.poll_write_some(cx, &out) {
            Poll::Pending => return Ok(()),
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => {
                out.advance(n);
                handler.on_written(n);
            }
        }
    }
    // TLS seals what it took into records it may not have written yet.
    if let Poll::Ready(Err(e)) = stream.poll_flush_held(cx) {
        return Err(e);
    }
    if out.capacity() > KEEP_OUT_CAPACITY {
        *out = BytesMut::new();
    }
    Ok(())
}
