//! When a try stops waiting for its response head. A request whose body is
//! in hand is complete when it is sent, and the route's timeout counts from
//! then. A streamed body (a client-streaming gRPC call, a slow upload) is
//! complete only when its last byte is through: as in Envoy, the route's
//! timeout counts from there, so an upstream that answers when the client's
//! stream ends is not cut while the client still sends. It counts from the
//! body's last frame taken, so a body that stalls (a client gone quiet, an
//! upstream that stops reading), or whose end hyper never polls for, is cut
//! after the same time without progress. A gRPC client's own deadline
//! (`grpc-timeout`) stays counted from the request's arrival, since it bounds
//! the whole call.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::time::Instant;

use crate::stream::http::{Body, BoxError};

/// When a streamed request body last made progress: wrapped, then each
/// frame taken, then its end.
pub struct BodyClock {
    last: Cell<Instant>,
}

impl BodyClock {
    pub fn new() -> BodyClock {
        BodyClock { last: Cell::new(Instant::now()) }
    }

    fn tick(&self) {
        self.last.set(Instant::now());
    }
}

/// `body`, noting its progress on `clock`.
pub fn watched(body: Body, clock: Rc<BodyClock>) -> Body {
    Body::new(Ticking { body, clock })
}

struct Ticking {
    body: Body,
    clock: Rc<BodyClock>,
}

impl hyper::body::Body for Ticking {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if polled.is_ready() {
            self.clock.tick();
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
    /// Until `timeout` after the streamed body's last progress, and never
    /// past `hard`.
    AfterBody { clock: Rc<BodyClock>, timeout: Duration, hard: Option<Instant> },
}

/// The wait for a response head ran out.
pub struct TimedOut;

impl Deadline {
    /// `fut`'s output, unless the deadline comes first.
    pub async fn wait<T>(&self, fut: impl Future<Output = T>) -> Result<T, TimedOut> {
        match self {
            Deadline::At(at) => tokio::time::timeout_at(*at, fut).await.map_err(|_| TimedOut),
            Deadline::AfterBody { clock, timeout, hard } => {
                tokio::pin!(fut);
                loop {
                    let after_body = clock.last.get() + *timeout;
                    let limit = hard.map_or(after_body, |h| h.min(after_body));
                    if Instant::now() >= limit {
                        return Err(TimedOut);
                    }
                    tokio::select! {
                        out = &mut fut => return Ok(out),
                        // The body may have moved on meanwhile: look again.
                        () = tokio::time::sleep_until(limit) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    /// The clock runs from the body's last progress: a body that keeps
    /// coming is waited for, its end starts the timeout, a stall is cut, and
    /// a hard deadline holds throughout.
    #[tokio::test(start_paused = true)]
    async fn the_timeout_counts_from_the_bodys_last_progress() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let clock = Rc::new(BodyClock::new());
        let mut body = watched(Body::new(StreamBody::new(receiver_stream(rx))), clock.clone());
        let deadline = Deadline::AfterBody { clock: clock.clone(), timeout: Duration::from_secs(1), hard: None };
        let t0 = Instant::now();
        // A frame every 800 ms for 4 s, then the end; the "upstream" answers
        // 1.5 s after the end: cut 1 s after the end.
        let answer = async {
            while body.frame().await.is_some() {}
            tokio::time::sleep(Duration::from_millis(1500)).await;
        };
        let sender = async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(800)).await;
                let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"x")))).await;
            }
        };
        let (waited, ()) = tokio::join!(deadline.wait(answer), sender);
        assert!(waited.is_err());
        assert_eq!(Instant::now() - t0, Duration::from_secs(5), "1 s after the end at 4 s");

        // A body that never moves (or whose end is never polled) is cut a
        // timeout after it was wrapped.
        let stalled =
            Deadline::AfterBody { clock: Rc::new(BodyClock::new()), timeout: Duration::from_secs(1), hard: None };
        let t1 = Instant::now();
        assert!(stalled.wait(std::future::pending::<()>()).await.is_err());
        assert_eq!(Instant::now() - t1, Duration::from_secs(1));

        let hard = Deadline::AfterBody {
            clock: Rc::new(BodyClock::new()),
            timeout: Duration::from_secs(10),
            hard: Some(Instant::now() + Duration::from_secs(2)),
        };
        let t2 = Instant::now();
        assert!(hard.wait(std::future::pending::<()>()).await.is_err());
        assert_eq!(Instant::now() - t2, Duration::from_secs(2), "the hard deadline");
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
