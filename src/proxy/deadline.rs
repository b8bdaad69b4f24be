//! When a try stops waiting for its response head. A request whose body is
//! in hand is complete when it is sent, and the route's timeout counts from
//! then. A streamed body (a client-streaming gRPC call, a slow upload) is
//! complete only when its last byte is through: as in Envoy, the route's
//! timeout counts from that end, so an upstream that answers when the
//! client's stream ends is not cut while the client still sends. A gRPC
//! client's own deadline (`grpc-timeout`) stays counted from the request's
//! arrival, since it bounds the whole call.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::stream::http::{Body, BoxError};

/// When a streamed request body ended (its last frame, or an error), told to
/// whoever waits for the response.
#[derive(Default)]
pub struct BodyEnd {
    at: Cell<Option<Instant>>,
    ended: Notify,
}

impl BodyEnd {
    fn mark(&self) {
        if self.at.get().is_none() {
            self.at.set(Some(Instant::now()));
            // A permit, should the waiter not be registered yet.
            self.ended.notify_one();
        }
    }
}

/// `body`, noting its end in `end`.
pub fn watched(body: Body, end: Rc<BodyEnd>) -> Body {
    Body::new(Ending { body, end })
}

struct Ending {
    body: Body,
    end: Rc<BodyEnd>,
}

impl hyper::body::Body for Ending {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None | Some(Err(_))) => this.end.mark(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.end.mark(),
            _ => {}
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
    /// Until `timeout` after the streamed body's end, and never past `hard`.
    AfterBody { end: Rc<BodyEnd>, timeout: Duration, hard: Option<Instant> },
}

/// The wait for a response head ran out.
pub struct TimedOut;

impl Deadline {
    /// `fut`'s output, unless the deadline comes first.
    pub async fn wait<T>(&self, fut: impl Future<Output = T>) -> Result<T, TimedOut> {
        match self {
            Deadline::At(at) => tokio::time::timeout_at(*at, fut).await.map_err(|_| TimedOut),
            Deadline::AfterBody { end, timeout, hard } => {
                tokio::pin!(fut);
                loop {
                    let after_body = end.at.get().map(|t| t + *timeout);
                    let limit = match (after_body, *hard) {
                        (Some(a), Some(h)) => Some(a.min(h)),
                        (a, h) => a.or(h),
                    };
                    let sleep = async {
                        match limit {
                            Some(t) => tokio::time::sleep_until(t).await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        out = &mut fut => return Ok(out),
                        () = sleep => return Err(TimedOut),
                        () = end.ended.notified(), if after_body.is_none() => {}
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

    /// The clock starts when the body ends, not when the wait does; a hard
    /// deadline holds throughout.
    #[tokio::test(start_paused = true)]
    async fn the_timeout_counts_from_the_end_of_the_body() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let stream = receiver_stream(rx);
        let end = Rc::new(BodyEnd::default());
        let mut body = watched(Body::new(StreamBody::new(stream)), end.clone());
        let deadline = Deadline::AfterBody { end: end.clone(), timeout: Duration::from_secs(1), hard: None };
        let t0 = Instant::now();
        // The "upstream" answers 1.5 s after the body ends, which comes at 5 s.
        let answer = async {
            while body.frame().await.is_some() {}
            tokio::time::sleep(Duration::from_millis(1500)).await;
        };
        let sender = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(tx);
        };
        let (waited, ()) = tokio::join!(deadline.wait(answer), sender);
        assert!(waited.is_err(), "cut 1 s after the body's end");
        assert_eq!(Instant::now() - t0, Duration::from_secs(6));

        let hard = Deadline::AfterBody {
            end: Rc::new(BodyEnd::default()),
            timeout: Duration::from_secs(1),
            hard: Some(Instant::now() + Duration::from_secs(2)),
        };
        let t1 = Instant::now();
        assert!(hard.wait(std::future::pending::<()>()).await.is_err());
        assert_eq!(Instant::now() - t1, Duration::from_secs(2), "the hard deadline, body or not");
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
