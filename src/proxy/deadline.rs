//! When a try stops waiting for its response head. A request whose body is
//! in hand is complete when it is sent, and the route's timeout counts from
//! then. A streamed body (a client-streaming gRPC call, a slow upload) is
//! complete only when its last byte is through: as in Envoy, the route's
//! timeout counts from there, so an upstream that answers when the client's
//! stream ends is not cut while the client still sends. The body's end is
//! its last frame, or its drop (hyper stops polling a body once its length is
//! written, and drops it). Until then, a body that stalls (a client gone
//! quiet, an upstream that stops reading) is cut after the listener's
//! `stream_idle_timeout` without progress (5 minutes, Envoy's default), or
//! the route's timeout if that is longer. A gRPC client's own deadline
//! (`grpc-timeout`) stays counted from the request's arrival, since it bounds
//! the whole call.
//!
//! The answer's body is held to the same bound ([`cut_when_idle`]): once its
//! head is in, the route's timeout is spent, and an upstream that stops in
//! the middle of a body would otherwise hold the exchange until it closes.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body as _, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::network::tick::Stall;
use crate::stream::http::{Body, BoxError};

/// When a streamed request body last made progress (wrapped, then each
/// frame taken), and whether it has ended.
pub struct BodyClock {
    /// How long it may make no progress (`stream_idle_timeout`).
    idle: Duration,
    last: Cell<Instant>,
    ended: Cell<bool>,
    /// The client's body broke (a malformed chunk, a reset): what the
    /// upstream exchange then fails with is the client's doing.
    failed: Cell<bool>,
    /// Wakes the wait, whose deadline the end brings forward.
    end_signal: Notify,
}

impl BodyClock {
    pub fn new(idle: Duration) -> BodyClock {
        BodyClock {
            idle,
            last: Cell::new(Instant::now()),
            ended: Cell::new(false),
            failed: Cell::new(false),
            end_signal: Notify::new(),
        }
    }

    /// Whether the body ended in an error of the client's side.
    pub fn failed(&self) -> bool {
        self.failed.get()
    }

    fn tick(&self) {
        self.last.set(Instant::now());
    }

    fn end(&self) {
        if !self.ended.replace(true) {
            self.tick();
            // A permit, should the wait not be registered yet.
            self.end_signal.notify_one();
        }
    }
}

/// `body`, noting its progress and end on `clock`.
pub fn watched(body: Body, clock: Rc<BodyClock>) -> Body {
    if body.is_end_stream() {
        clock.end();
    }
    Body::new(Ticking { body, clock })
}

struct Ticking {
    body: Body,
    clock: Rc<BodyClock>,
}

impl Drop for Ticking {
    fn drop(&mut self) {
        self.clock.end();
    }
}

impl hyper::body::Body for Ticking {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.clock.end(),
            Poll::Ready(Some(Err(_))) => {
                self.clock.failed.set(true);
                self.clock.end();
            }
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.clock.end(),
            Poll::Ready(Some(Ok(_))) => self.clock.tick(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// How long a try waits for its response head.
pub enum Deadline {
    /// Until this instant.
    At(Instant),
    /// Until `timeout` after the streamed body's end (while it streams,
    /// the clock's idle bound or `timeout` without progress), and never
    /// past `hard`.
    AfterBody { clock: Rc<BodyClock>, timeout: Duration, hard: Option<Instant> },
}

/// The wait for a response head ran out.
pub use crate::network::timeouts::Elapsed as TimedOut;

/// `fut`'s output, unless `at` comes first: `Deadline::At`'s wait, as a
/// plain future on the worker's timeout queue (through `Deadline::wait`, an
/// `async fn`, the raw path's exchange future was moved twice more on its
/// way in: about 350 instructions of an h2c request).
pub use crate::network::timeouts::by;

impl Deadline {
    /// `fut`'s output, unless the deadline comes first.
    pub async fn wait<T>(&self, fut: impl Future<Output = T>) -> Result<T, TimedOut> {
        match self {
            Deadline::At(at) => by(*at, fut).await,
            Deadline::AfterBody { clock, timeout, hard } => {
                tokio::pin!(fut);
                loop {
                    let quiet = if clock.ended.get() { *timeout } else { (*timeout).max(clock.idle) };
                    let after_body = clock.last.get() + quiet;
                    let limit = hard.map_or(after_body, |h| h.min(after_body));
                    if Instant::now() >= limit {
                        return Err(TimedOut);
                    }
                    tokio::select! {
                        out = &mut fut => return Ok(out),
                        // The body may have moved on meanwhile: look again.
                        () = tokio::time::sleep_until(limit) => {}
                        () = clock.end_signal.notified(), if !clock.ended.get() => {}
                    }
                }
            }
        }
    }
}

/// `body`, ended with an error once it makes no progress for `idle`: an
/// upstream that stops in the middle of its answer.
pub fn cut_when_idle(mut body: Body, idle: Duration) -> Body {
    let fields = body.take_fields();
    Body::with_fields(Idle { body, idle, stall: Stall::default() }, fields)
}

struct Idle {
    body: Body,
    idle: Duration,
    /// Since when the body has given no frame.
    stall: Stall,
}

impl hyper::body::Body for Idle {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if polled.is_ready() {
            this.stall.progress();
            return polled;
        }
        if this.stall.stalled(cx, this.idle) {
            return Poll::Ready(Some(Err("the upstream's answer made no progress for stream_idle_timeout".into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    const STREAM_IDLE: Duration = crate::config::DEFAULT_STREAM_IDLE_TIMEOUT;

    /// The timeout counts from the body's end: gaps longer than it while the
    /// body streams are waited out, the end starts it, a body dropped unpolled
    /// (hyper, once a length is written) has ended, a stall is cut after
    /// the idle bound, and a hard deadline holds throughout.
    #[tokio::test(start_paused = true)]
    async fn the_timeout_counts_from_the_end_of_the_body() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let clock = Rc::new(BodyClock::new(STREAM_IDLE));
        let mut body = watched(Body::new(StreamBody::new(receiver_stream(rx))), clock.clone());
        let deadline = Deadline::AfterBody { clock: clock.clone(), timeout: Duration::from_secs(1), hard: None };
        let t0 = Instant::now();
        // A frame every 3 s for 15 s, then the end; the "upstream" answers
        // 1.5 s after the end: cut 1 s after the end.
        let answer = async {
            while body.frame().await.is_some() {}
            tokio::time::sleep(Duration::from_millis(1500)).await;
        };
        let sender = async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"x")))).await;
            }
        };
        let (waited, ()) = tokio::join!(deadline.wait(answer), sender);
        assert!(waited.is_err());
        assert_eq!(Instant::now() - t0, Duration::from_secs(16), "1 s after the end at 15 s");

        // Dropped without its end polled: ended then.
        let clock = Rc::new(BodyClock::new(STREAM_IDLE));
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        drop(watched(Body::new(StreamBody::new(receiver_stream(rx))), clock.clone()));
        let dropped = Deadline::AfterBody { clock, timeout: Duration::from_secs(1), hard: None };
        let t1 = Instant::now();
        assert!(dropped.wait(std::future::pending::<()>()).await.is_err());
        assert_eq!(Instant::now() - t1, Duration::from_secs(1));

        // A body that never moves is cut after the idle bound.
        let clock = Rc::new(BodyClock::new(STREAM_IDLE));
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let _stalled_body = watched(Body::new(StreamBody::new(receiver_stream(rx))), clock.clone());
        let stalled = Deadline::AfterBody { clock, timeout: Duration::from_secs(1), hard: None };
        let t2 = Instant::now();
        assert!(stalled.wait(std::future::pending::<()>()).await.is_err());
        assert_eq!(Instant::now() - t2, STREAM_IDLE);

        let hard = Deadline::AfterBody {
            clock: Rc::new(BodyClock::new(STREAM_IDLE)),
            timeout: Duration::from_secs(10),
            hard: Some(Instant::now() + Duration::from_secs(2)),
        };
        let t3 = Instant::now();
        assert!(hard.wait(std::future::pending::<()>()).await.is_err());
        assert_eq!(Instant::now() - t3, Duration::from_secs(2), "the hard deadline");
    }

    /// An answer's body that gives a frame every 0.8 s is not cut by a 1 s
    /// idle bound, however long it runs; once it stops, it is cut 1 s after
    /// its last frame, with an error rather than an end.
    #[tokio::test(start_paused = true)]
    async fn an_answer_body_is_cut_only_when_it_stops() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let mut body = cut_when_idle(Body::new(StreamBody::new(receiver_stream(rx))), Duration::from_secs(1));
        let sender = async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(800)).await;
                let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"x")))).await;
            }
            tx
        };
        let t0 = Instant::now();
        let reader = async {
            let mut frames = 0;
            loop {
                match body.frame().await {
                    Some(Ok(_)) => frames += 1,
                    Some(Err(_)) => return (frames, true),
                    None => return (frames, false),
                }
            }
        };
        let ((frames, cut), _tx) = tokio::join!(reader, sender);
        assert_eq!((frames, cut), (5, true), "every frame, then the cut");
        assert_eq!(Instant::now() - t0, Duration::from_millis(5 * 800 + 1000), "1 s after the last frame");
    }

    fn receiver_stream<T>(rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_core::Stream<Item = T> {
        struct Rx<T>(tokio::sync::mpsc::Receiver<T>);
        impl<T> futures_core::Stream for Rx<T> {
            type Item = T;
            fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
                self.0.poll_recv(cx)
            }
        }
        Rx(rx)
    }
}
