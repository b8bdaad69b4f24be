//! One connection's I/O: the shared output buffer and the driver loop.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::buf::Limit;
use bytes::{Buf, Bytes, BytesMut};

use super::clock;
use super::frames::{self, Frame, GATHER_MIN};
use super::tick::Stall;
use super::transport::Transport;
use crate::protocol::Codec;

/// Size of the per-thread read buffer.
const SCRATCH: usize = 64 * 1024;
/// Reads per wake-up before the task yields to its neighbours.
const READ_BUDGET: usize = 16;
/// An output buffer that grew beyond this is freed once flushed, so a
/// connection that once sent a large frame does not keep the memory while idle.
const KEEP_OUT_CAPACITY: usize = 16 * 1024;

/// Answers waiting to be written past which a client connection is read no
/// more until it takes them (Envoy's default per-connection buffer limit):
/// a client that sends requests and never reads would otherwise have its
/// answers pile up without bound (8,000 pipelined requests for 64 KiB
/// answers held 519 MB).
pub const OUTPUT_LIMIT: usize = 1024 * 1024;

/// How long output may wait with the peer taking none of it before the
/// connection is closed ([`Closed::Local`] with [`WRITE_TIMEOUT_REASON`]):
/// MOSN's write deadline. A peer that stops reading otherwise holds its
/// bounded buffers, and whatever waits on its answers, until its idle
/// timeout or heartbeats end it.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
/// Why a connection closed whose peer took no output for its write timeout.
pub const WRITE_TIMEOUT_REASON: &str = "write timeout";

thread_local! {
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; SCRATCH].into_boxed_slice());
}

/// Copied bytes go out in chunks of about this size: once the copied
/// bytes reach it, they join the buffers handed over and the next bytes go to
/// a fresh buffer. A burst of output (an upstream connection's, at full load,
/// is tens of KiB a wake-up) is then never copied again to grow its buffer,
/// as doubling one did (realloc's copies were 3% of the instructions per
/// call); the chunk that stays for the next burst is below
/// [`KEEP_OUT_CAPACITY`] and is kept.
const OUT_CHUNK: usize = 8 * 1024;

/// Buffers handed over whole (`writev` takes at most this many at once, with
/// the output buffer after them).
const MAX_IOV: usize = 16;

/// The writable side of a connection, shared by whoever answers on it.
#[derive(Default)]
pub struct ConnShared {
    out: RefCell<Output>,
    waker: Cell<Option<Waker>>,
    closed: Cell<bool>,
}

/// What waits to be written, in order: buffers handed over whole (large
/// frames, [`ConnShared::push_buf`]), then the bytes copied in.
#[derive(Default)]
struct Output {
    /// Each with whether it is a gathered frame's own buffer, to be kept for
    /// the next large frame once written (`frames::recycle`), or copied
    /// bytes set aside: a full chunk ([`OUT_CHUNK`]), or the piece before a
    /// buffer handed over.
    bufs: VecDeque<(Bytes, bool)>,
    copied: BytesMut,
}

impl Output {
    fn is_empty(&self) -> bool {
        self.bufs.is_empty() && self.copied.is_empty()
    }

    fn len(&self) -> usize {
        self.bufs.iter().map(|(b, _)| b.len()).sum::<usize>() + self.copied.len()
    }

    /// What to write next, in order, in `iov`; returns how many slices. The
    /// copied bytes come last, and only when every buffer before them fits.
    fn slices<'a>(&'a self, iov: &mut [IoSlice<'a>; MAX_IOV + 1]) -> usize {
        let mut n = 0;
        for (b, _) in self.bufs.iter().take(MAX_IOV) {
            iov[n] = IoSlice::new(b);
            n += 1;
        }
        if self.bufs.len() <= MAX_IOV && !self.copied.is_empty() {
            iov[n] = IoSlice::new(&self.copied);
            n += 1;
        }
        n
    }

    /// `n` bytes were written.
    fn consume(&mut self, mut n: usize) {
        while let Some((front, _)) = self.bufs.front_mut() {
            if n < front.len() {
                front.advance(n);
                return;
            }
            n -= front.len();
            if let Some((done, gathered)) = self.bufs.pop_front() {
                if gathered {
                    frames::recycle(done);
                }
            }
        }
        self.copied.advance(n);
    }
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
            if out.copied.len() >= OUT_CHUNK {
                let full = std::mem::replace(&mut out.copied, BytesMut::with_capacity(KEEP_OUT_CAPACITY));
                out.bufs.push_back((full.freeze(), false));
            }
            f(&mut out.copied);
            was_empty
        };
        if was_empty {
            self.wake();
        }
        true
    }

    /// Queues a whole frame with its request id set to `id`. A large frame
    /// in a buffer of its own is handed over as it is; any other is copied
    /// in. Returns the bytes queued, or `None` when the connection is closed.
    pub fn push_frame(&self, codec: &dyn Codec, frame: Frame<'_>, id: u64) -> Option<usize> {
        match frame {
            Frame::Owned(buf) if buf.len() >= GATHER_MIN => {
                let buf = codec.with_id(buf, id);
                let n = buf.len();
                self.push_buf(buf).then_some(n)
            }
            frame => {
                let mut n = 0;
                let queued = self.push(|out| {
                    let at = out.len();
                    codec.write_with_id(&frame, id, out);
                    n = out.len() - at;
                });
                queued.then_some(n)
            }
        }
    }

    /// Queues `buf` to be written as it is, after everything queued before
    /// it. Returns false when the connection is closed.
    fn push_buf(&self, buf: BytesMut) -> bool {
        if self.closed.get() {
            return false;
        }
        let was_empty = {
            let mut out = self.out.borrow_mut();
            let was_empty = out.is_empty();
            if !out.copied.is_empty() {
                let before = out.copied.split().freeze();
                out.bufs.push_back((before, false));
            }
            out.bufs.push_back((buf.freeze(), true));
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

    /// Whether at least `n` bytes wait to be written: on every request, so
    /// the handed-over frames are summed only when there are any.
    #[inline]
    pub fn pending_at_least(&self, n: usize) -> bool {
        let out = self.out.borrow();
        out.copied.len() >= n || (!out.bufs.is_empty() && out.len() >= n)
    }

    /// Takes everything queued for writing (for tests that run no driver).
    #[doc(hidden)]
    pub fn take_output(&self) -> BytesMut {
        let out = std::mem::take(&mut *self.out.borrow_mut());
        let mut all = BytesMut::with_capacity(out.len());
        out.bufs.iter().for_each(|(b, _)| all.extend_from_slice(b));
        all.extend_from_slice(&out.copied);
        all
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
    /// Where the next read goes instead of the worker's scratch buffer: the
    /// rest of a large frame's own buffer (`FrameReader::space`).
    fn read_space(&mut self) -> Option<Limit<&mut BytesMut>> {
        None
    }
    /// `n` bytes were read into [`Handler::read_space`]. An error closes the
    /// connection.
    fn on_read_space(&mut self, _n: usize) -> Result<(), &'static str> {
        Ok(())
    }
    /// The peer closed its writing side. Return `None` to keep the connection
    /// open (to flush answers still owed), or why it must close now.
    fn on_eof(&mut self) -> Option<&'static str>;
    /// Timers and other events. `Ready` closes the connection.
    fn poll_events(&mut self, cx: &mut Context<'_>) -> Poll<&'static str>;
    /// Whether reading is paused (draining, or answers piled up unread:
    /// [`OUTPUT_LIMIT`]). The drive reads again once it is not, after a write.
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
    /// How long output may wait unwritten, the peer taking none of it,
    /// before the connection closes.
    fn write_timeout(&self) -> Duration {
        WRITE_TIMEOUT
    }
}

/// Drives `stream` until it closes or the handler lets it go quiet: reads go
/// to `handler`, output from `shared` is written. Returns why it ended.
/// `shared` is marked closed, unless the connection went quiet: then
/// nothing is left to write, and the caller may drive it again.
pub async fn drive<H: Handler>(stream: &mut Transport, shared: &ConnShared, handler: &mut H) -> Closed {
    let mut eof = false;
    let mut stall = Stall::default();
    let why = poll_fn(|cx| poll_conn(cx, stream, shared, handler, &mut eof, &mut stall)).await;
    if !matches!(why, Closed::Quiet) {
        shared.closed.set(true);
        // Drop what can no longer be sent, and the waker.
        *shared.out.borrow_mut() = Output::default();
    }
    shared.waker.take();
    why
}

fn poll_conn<H: Handler>(
    cx: &mut Context<'_>,
    stream: &mut Transport,
    shared: &ConnShared,
    handler: &mut H,
    eof: &mut bool,
    stall: &mut Stall,
) -> Poll<Closed> {
    let mut reads = 0;
    let mut held = false;
    while !*eof {
        if handler.read_paused() {
            held = true;
            break;
        }
        let step = if let Some(mut space) = handler.read_space() {
            match stream.poll_read_buf(cx, &mut space) {
                Poll::Pending => Ok(false),
                Poll::Ready(Ok(0)) => Err(None),
                Poll::Ready(Ok(n)) => {
                    clock::reading(|| handler.on_read_space(n)).map(|()| true).map_err(|why| Some(Closed::Local(why)))
                }
                Poll::Ready(Err(e)) => Err(Some(Closed::Io(e))),
            }
        } else {
            SCRATCH_BUF.with(|s| {
                let mut s = s.borrow_mut();
                match stream.poll_read_some(cx, &mut s[..]) {
                    Poll::Pending => Ok(false),
                    Poll::Ready(Ok(0)) => Err(None),
                    Poll::Ready(Ok(n)) => clock::reading(|| handler.on_read(&s[..n]))
                        .map(|()| true)
                        .map_err(|why| Some(Closed::Local(why))),
                    Poll::Ready(Err(e)) => Err(Some(Closed::Io(e))),
                }
            })
        };
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
    let wrote = match flush(cx, stream, shared, handler) {
        Ok(n) => n,
        Err(e) => return Poll::Ready(Closed::Io(e)),
    };
    // The write deadline: touched only when a write left output waiting
    // (the socket's buffer full), not per request.
    let waiting = !shared.out.borrow().is_empty();
    if !waiting || wrote > 0 {
        stall.progress();
    }
    if waiting && stall.stalled(cx, handler.write_timeout()) {
        return Poll::Ready(Closed::Local(WRITE_TIMEOUT_REASON));
    }
    if held && !*eof && !handler.read_paused() {
        // The write let reading go on (the client took its answers): no
        // read readiness will come for bytes already waiting, so look now.
        cx.waker().wake_by_ref();
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

/// Writes as much of the output as the socket takes; returns how much.
fn flush<H: Handler>(
    cx: &mut Context<'_>,
    stream: &mut Transport,
    shared: &ConnShared,
    handler: &mut H,
) -> io::Result<usize> {
    let mut out = shared.out.borrow_mut();
    let mut wrote = 0;
    while !out.is_empty() {
        let step = if out.bufs.is_empty() {
            stream.poll_write_some(cx, &out.copied)
        } else {
            let mut iov = [IoSlice::new(&[]); MAX_IOV + 1];
            let n = out.slices(&mut iov);
            stream.poll_write_vectored(cx, &iov[..n])
        };
        match step {
            Poll::Pending => return Ok(wrote),
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => {
                out.consume(n);
                handler.on_written(n);
                wrote += n;
            }
        }
    }
    // TLS seals what it took into records it may not have written yet.
    if let Poll::Ready(Err(e)) = stream.poll_flush_held(cx) {
        return Err(e);
    }
    if out.copied.capacity() > KEEP_OUT_CAPACITY {
        out.copied = BytesMut::new();
    }
    Ok(wrote)
}

/// A socket whose writes fail with `TimedOut` once the peer has taken none
/// of them for [`WRITE_TIMEOUT`]: for the connections hyper drives (HTTP/1.1
/// requests the pass-through leaves to it) and a tunnel's upstream end,
/// which have no loop of ours to keep the deadline. Reads pass through
/// untouched.
pub struct WriteDeadline<S> {
    inner: S,
    /// Since when the socket has refused writes.
    stall: Stall,
    /// The last flush was pending: bytes held below (by TLS) were waiting.
    flushing: bool,
    peer: std::net::SocketAddr,
    /// Who the peer is, for the log line of the close.
    who: &'static str,
}

impl<S> WriteDeadline<S> {
    pub fn new(inner: S, peer: std::net::SocketAddr, who: &'static str) -> WriteDeadline<S> {
        WriteDeadline { inner, stall: Stall::default(), flushing: false, peer, who }
    }

    /// After a write or flush that returned `polled` (and took bytes:
    /// `wrote`).
    fn note<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>, wrote: bool) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            if wrote {
                self.stall.progress();
            }
            return polled;
        }
        if self.stall.stalled(cx, WRITE_TIMEOUT) {
            let (peer, who) = (self.peer, self.who);
            tracing::info!(%peer, who, "peer took no bytes for the write timeout; closed");
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, WRITE_TIMEOUT_REASON)));
        }
        Poll::Pending
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteDeadline<S> {
    fn poll_write(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        let wrote = matches!(polled, Poll::Ready(Ok(n)) if n > 0);
        self.note(cx, polled, wrote)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        let wrote = matches!(polled, Poll::Ready(Ok(n)) if n > 0);
        self.note(cx, polled, wrote)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A ready flush is no sign the peer takes anything (on TCP it is
        // always ready, and hyper flushes between writes the socket
        // refused), unless the flush before it was pending: then what TLS
        // held went out.
        let polled = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        let flushed = polled.is_ready() && self.flushing;
        self.flushing = polled.is_pending();
        self.note(cx, polled, flushed)
    }

    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::bolt::{RequestBuilder, BOLT_V1};
    use tokio::time::Instant;

    fn frame(id: u32, len: usize) -> Vec<u8> {
        RequestBuilder::new(id, "svc", "x".repeat(len).as_bytes()).encode()
    }

    #[test]
    fn handed_over_frames_keep_their_place_among_copied_ones() {
        let shared = ConnShared::default();
        let (small, big) = (frame(1, 10), frame(2, GATHER_MIN));
        let mut want = Vec::new();
        for (i, f) in [&small, &big, &small, &big, &big, &small].into_iter().enumerate() {
            let owned = Frame::Owned(BytesMut::from(&f[..]));
            let queued = shared.push_frame(&BOLT_V1, owned, 100 + i as u64).unwrap();
            assert_eq!(queued, f.len());
            let mut f = f.clone();
            BOLT_V1.patch_id(&mut f, 100 + i as u64);
            want.extend(f);
        }
        assert_eq!(shared.out.borrow().bufs.len(), 5, "the large frames go whole, between the copied ones");
        assert_eq!(shared.pending(), want.len());

        // Written as `flush` writes: the slices in order, taken in pieces that
        // end inside buffers and across them.
        assert_eq!(write_out(&shared, &[5, big.len(), 3, 2 * big.len() + 40]), want);
    }

    /// Writes everything queued as `flush` would, the socket taking `steps`
    /// bytes at a time (then 7 at a time); returns the bytes in write order.
    fn write_out(shared: &ConnShared, steps: &[usize]) -> Vec<u8> {
        let mut written = Vec::new();
        let mut out = shared.out.borrow_mut();
        for step in steps.iter().copied().chain(std::iter::repeat(7)) {
            if out.is_empty() {
                break;
            }
            let mut iov = [IoSlice::new(&[]); MAX_IOV + 1];
            let k = out.slices(&mut iov);
            let mut took = 0;
            for s in &iov[..k] {
                let n = s.len().min(step - took);
                written.extend_from_slice(&s[..n]);
                took += n;
            }
            out.consume(took);
        }
        written
    }

    #[test]
    fn more_buffers_than_one_writev_takes_keep_their_order() {
        let shared = ConnShared::default();
        let (small, big) = (frame(1, 10), frame(2, GATHER_MIN));
        let mut want = Vec::new();
        for i in 0..3 * MAX_IOV {
            let f = if i % 2 == 0 { &small } else { &big };
            let queued = Frame::Owned(BytesMut::from(&f[..]));
            shared.push_frame(&BOLT_V1, queued, i as u64).unwrap();
            let mut f = f.clone();
            BOLT_V1.patch_id(&mut f, i as u64);
            want.extend(f);
        }
        shared.push_frame(&BOLT_V1, Frame::Read(&small), 999).unwrap();
        let mut tail = small.clone();
        BOLT_V1.patch_id(&mut tail, 999);
        want.extend(tail);
        assert!(shared.out.borrow().bufs.len() > MAX_IOV);
        assert_eq!(write_out(&shared, &[usize::MAX, 3 * big.len() + 1]), want);
    }

    #[test]
    fn a_burst_of_small_frames_goes_out_in_chunks_without_regrowing_a_buffer() {
        let shared = ConnShared::default();
        let small = frame(1, 100);
        let mut want = Vec::new();
        for i in 0..1000u64 {
            shared.push_frame(&BOLT_V1, Frame::Read(&small), i).unwrap();
            let mut f = small.clone();
            BOLT_V1.patch_id(&mut f, i);
            want.extend(f);
            let out = shared.out.borrow();
            assert!(out.copied.capacity() <= KEEP_OUT_CAPACITY, "the copied bytes' buffer never grows past a chunk");
        }
        let chunks = shared.out.borrow().bufs.len();
        assert!(chunks >= want.len() / KEEP_OUT_CAPACITY, "{chunks} chunks for {} bytes", want.len());
        assert_eq!(write_out(&shared, &[5, OUT_CHUNK, 3, 3 * OUT_CHUNK + 17]), want);
    }

    /// Writes what is queued until the peer has taken it all, with a short
    /// write timeout.
    struct Writer(Duration);

    impl Handler for Writer {
        fn on_read(&mut self, _: &[u8]) -> Result<(), &'static str> {
            Ok(())
        }
        fn on_eof(&mut self) -> Option<&'static str> {
            Some("")
        }
        fn poll_events(&mut self, _: &mut Context<'_>) -> Poll<&'static str> {
            Poll::Pending
        }
        fn read_paused(&self) -> bool {
            false
        }
        fn idle_close(&self) -> Option<&'static str> {
            Some("all written")
        }
        fn write_timeout(&self) -> Duration {
            self.0
        }
    }

    /// A connection with `out` bytes queued whose socket buffers are small
    /// (64 KiB each way), and its peer's end.
    async fn queued(out: usize) -> (Transport, ConnShared, tokio::net::TcpStream) {
        let listener = tokio::net::TcpSocket::new_v4().unwrap();
        listener.set_recv_buffer_size(64 * 1024).unwrap();
        listener.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = listener.listen(1).unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(64 * 1024).unwrap();
        let ours = socket.connect(listener.local_addr().unwrap()).await.unwrap();
        let (peer, _) = listener.accept().await.unwrap();
        let shared = ConnShared::default();
        shared.push(|b| b.resize(out, b'x'));
        (Transport::Tcp(ours), shared, peer)
    }

    #[tokio::test]
    async fn a_peer_that_takes_nothing_is_closed_after_the_write_timeout() {
        let (mut stream, shared, _peer) = queued(4 << 20).await;
        let t = Instant::now();
        let why = tokio::time::timeout(
            Duration::from_secs(10),
            drive(&mut stream, &shared, &mut Writer(Duration::from_millis(300))),
        )
        .await
        .expect("the drive ended");
        assert!(matches!(why, Closed::Local(WRITE_TIMEOUT_REASON)), "{why:?}");
        assert!(t.elapsed() >= Duration::from_millis(300), "closed after {:?}", t.elapsed());
        assert!(shared.is_closed() && shared.pending() == 0, "what could not be sent is dropped");
    }

    #[tokio::test]
    async fn a_peer_that_reads_slowly_is_not_cut_while_it_takes_bytes() {
        let (mut stream, shared, mut peer) = queued(1 << 20).await;
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let (mut got, mut buf) = (0, vec![0u8; 256 * 1024]);
            loop {
                // A pause of most of the write timeout before each read,
                // which empties the socket's small buffer (a smaller read
                // may leave too little room for loopback's 64 KiB segments,
                // and the window shut): the whole takes many timeouts.
                tokio::time::sleep(Duration::from_millis(250)).await;
                match peer.read(&mut buf).await {
                    Ok(0) | Err(_) => return got,
                    Ok(n) => got += n,
                }
            }
        });
        let t = Instant::now();
        let why = drive(&mut stream, &shared, &mut Writer(Duration::from_millis(400))).await;
        assert!(matches!(why, Closed::Local("all written")), "{why:?} after {:?}", t.elapsed());
        assert!(t.elapsed() > Duration::from_millis(1200), "the peer took it all in {:?}", t.elapsed());
        drop(stream);
        assert_eq!(reader.await.unwrap(), 1 << 20);
    }

    #[test]
    fn nothing_is_queued_on_a_closed_connection() {
        let shared = ConnShared::default();
        shared.close();
        let big = Frame::Owned(BytesMut::from(&frame(1, GATHER_MIN)[..]));
        assert_eq!(shared.push_frame(&BOLT_V1, big, 1), None);
        assert_eq!(shared.push_frame(&BOLT_V1, Frame::Read(&frame(2, 1)), 2), None);
        assert_eq!(shared.pending(), 0);
    }
}
