//! Parked connections: a client connection that owes nothing gives back
//! everything but its socket.
//!
//! An RPC connection's working state (its output buffer, frame reader, the
//! request path's state) lives in a boxed phase that is dropped as soon as
//! the connection owes nothing (no request in flight, no frame half read,
//! every answer written); the connection's task then waits in
//! [`Parking::park`] on the socket's readiness alone, and builds a fresh
//! phase when bytes arrive. The HTTP/1.1 pass-through does the same once a
//! keep-alive connection has waited a moment for its next request.
//! Parked connections share one idle timer per listener and worker: a slab
//! of 24-byte entries swept by one task ([`sweep`]), instead of a timer each. A
//! sidecar holds thousands of connections that carry a heartbeat now and
//! then; this is what each of them costs between two heartbeats.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use slab::Slab;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::transport::Transport;

/// Why a parked connection woke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// Bytes arrived, or the peer closed: the connection resumes.
    Readable,
    /// Its idle time ran out: close it.
    IdleTimeout,
    /// Its listener drains: close it (nothing is in flight).
    Drained,
}

/// The least time between two sweeps: an idle timeout fires up to this late.
const SWEEP_GAP: Duration = Duration::from_millis(100);

/// One parked connection, as the sweeper sees it (24 bytes).
struct Entry {
    waker: Option<Waker>,
    /// Its idle deadline, in milliseconds from [`Parking::epoch`]
    /// (`u32::MAX`: never, for the "a year" that stands for no timeout).
    due: u32,
    /// Set by the sweeper (or a drain) to end the park.
    end: Option<Wake>,
}

/// The parked connections of one listener on one worker.
pub struct Parking {
    entries: RefCell<Slab<Entry>>,
    epoch: Instant,
    /// When the sweeper wakes next, if it is running.
    sweep_at: Cell<Option<Instant>>,
    /// Wakes the sweeper when a park falls due before `sweep_at`.
    sooner: Notify,
    draining: Cell<bool>,
}

impl Default for Parking {
    fn default() -> Self {
        Parking {
            entries: RefCell::new(Slab::new()),
            epoch: Instant::now(),
            sweep_at: Cell::new(None),
            sooner: Notify::new(),
            draining: Cell::new(false),
        }
    }
}

impl Parking {
    /// Connections parked now.
    pub fn parked(&self) -> usize {
        self.entries.borrow().len()
    }

    /// Waits, holding nothing but `stream`, until it has bytes to read (or
    /// its peer closed), `idle_due` passes, or the listener drains.
    pub fn park<'a>(self: &'a Rc<Self>, stream: &'a mut Transport, idle_due: Instant) -> Parked<'a> {
        if self.draining.get() {
            return Parked { parking: self, stream, key: NO_ENTRY };
        }
        let due = u32::try_from(idle_due.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u32::MAX);
        let key = self.entries.borrow_mut().insert(Entry { waker: None, due, end: None });
        match self.sweep_at.get() {
            None => {
                self.sweep_at.set(Some(idle_due));
                tokio::task::spawn_local(sweep(self.clone()));
            }
            Some(at) if idle_due < at => self.sooner.notify_one(),
            Some(_) => {}
        }
        Parked { parking: self, stream, key }
    }

    /// Ends every park: the listener is draining, and a parked connection
    /// has nothing in flight, so it closes at once. Connections that try to
    /// park from now on are told the same.
    pub fn drain(&self) {
        self.draining.set(true);
        for (_, e) in self.entries.borrow_mut().iter_mut() {
            e.end = Some(Wake::Drained);
            if let Some(w) = e.waker.take() {
                w.wake();
            }
        }
    }

    /// Ends the parks whose deadline passed by `now`; returns the earliest
    /// deadline left, if any connection is still parked.
    fn expire(&self, now: Instant) -> Option<Instant> {
        let now_ms = u32::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u32::MAX);
        let mut next = None::<u32>;
        for (_, e) in self.entries.borrow_mut().iter_mut() {
            if e.end.is_some() {
                continue;
            }
            if e.due <= now_ms && e.due != u32::MAX {
                e.end = Some(Wake::IdleTimeout);
                if let Some(w) = e.waker.take() {
                    w.wake();
                }
            } else {
                next = Some(next.map_or(e.due, |n| n.min(e.due)));
            }
        }
        next.map(|ms| self.epoch + Duration::from_millis(u64::from(ms)))
    }
}

/// A parked connection's wait (a future of its own rather than an `async`
/// block: it is what a parked connection's task holds).
pub struct Parked<'a> {
    parking: &'a Parking,
    stream: &'a mut Transport,
    /// Its entry; [`NO_ENTRY`] when the listener was draining already (not
    /// an `Option`: eight bytes more in every parked connection's task).
    key: usize,
}

impl Future for Parked<'_> {
    type Output = Wake;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Wake> {
        let this = self.get_mut();
        let key = this.key;
        if key == NO_ENTRY {
            return Poll::Ready(Wake::Drained);
        }
        let mut entries = this.parking.entries.borrow_mut();
        let entry = &mut entries[key];
        if let Some(why) = entry.end {
            return Poll::Ready(why);
        }
        // An error is readable too: the resumed connection reads it.
        if this.stream.poll_readable(cx).is_ready() {
            return Poll::Ready(Wake::Readable);
        }
        match &entry.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => entry.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Parked<'_> {
    /// Leaves the park however the wait ends (woken, or the task dropped).
    fn drop(&mut self) {
        if self.key != NO_ENTRY {
            self.parking.entries.borrow_mut().remove(self.key);
        }
    }
}

const NO_ENTRY: usize = usize::MAX;

/// The idle timer of a listener's parked connections: sleeps until the
/// earliest deadline (or a sooner one parks), then ends the parks that
/// reached it, scanning them all, at most once per [`SWEEP_GAP`]. Ends once
/// none is parked; the next park starts it again.
async fn sweep(parking: Rc<Parking>) {
    loop {
        let now = Instant::now();
        let Some(due) = parking.expire(now) else {
            parking.sweep_at.set(None);
            return;
        };
        let at = due.max(now + SWEEP_GAP);
        parking.sweep_at.set(Some(at));
        tokio::select! {
            () = tokio::time::sleep_until(at) => {}
            () = parking.sooner.notified() => tokio::time::sleep(SWEEP_GAP).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connected pair of sockets on 127.0.0.1, the server's side read
    /// until it would block (a new socket may first report itself readable).
    async fn pair() -> (Transport, tokio::net::TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        let mut byte = [0u8; 1];
        while server.try_read(&mut byte).map_err(|e| e.kind()) != Err(std::io::ErrorKind::WouldBlock) {
            server.readable().await.unwrap();
        }
        (Transport::Tcp(server), client)
    }

    /// Lets the spawned tasks run.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    fn local<F: std::future::Future>(f: F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        tokio::task::LocalSet::new().block_on(&rt, f)
    }

    #[test]
    fn bytes_wake_a_parked_connection() {
        local(async {
            let parking = Rc::new(Parking::default());
            let (mut server, mut client) = pair().await;
            let p = parking.clone();
            let waiter = tokio::task::spawn_local(async move {
                let why = p.park(&mut server, Instant::now() + Duration::from_secs(60)).await;
                (why, p.parked())
            });
            settle().await;
            assert_eq!(parking.parked(), 1);
            tokio::io::AsyncWriteExt::write_all(&mut client, b"x").await.unwrap();
            let (why, _) = waiter.await.unwrap();
            assert_eq!(why, Wake::Readable);
            assert_eq!(parking.parked(), 0);
        });
    }

    #[test]
    fn the_idle_deadline_ends_a_park_and_the_sweeper_stops() {
        local(async {
            let parking = Rc::new(Parking::default());
            let (mut server, _client) = pair().await;
            let started = Instant::now();
            let why = parking.park(&mut server, started + Duration::from_millis(50)).await;
            assert_eq!(why, Wake::IdleTimeout);
            assert!(started.elapsed() >= Duration::from_millis(50));
            tokio::time::sleep(SWEEP_GAP + Duration::from_millis(10)).await;
            assert!(parking.sweep_at.get().is_none(), "the sweeper ends with the last park");
            assert_eq!(parking.parked(), 0);
        });
    }

    #[test]
    fn a_drain_ends_every_park_and_refuses_new_ones() {
        local(async {
            let parking = Rc::new(Parking::default());
            let mut waiters = Vec::new();
            let mut clients = Vec::new();
            for _ in 0..3 {
                let (mut server, client) = pair().await;
                clients.push(client);
                let p = parking.clone();
                waiters.push(tokio::task::spawn_local(async move {
                    p.park(&mut server, Instant::now() + Duration::from_secs(60)).await
                }));
            }
            settle().await;
            assert_eq!(parking.parked(), 3);
            parking.drain();
            for w in waiters {
                assert_eq!(w.await.unwrap(), Wake::Drained);
            }
            let (mut server, _client) = pair().await;
            assert_eq!(parking.park(&mut server, Instant::now() + Duration::from_secs(60)).await, Wake::Drained);
        });
    }

    #[test]
    fn a_connection_that_leaves_gives_its_entry_back() {
        local(async {
            let parking = Rc::new(Parking::default());
            let (mut server, mut client) = pair().await;
            let mut byte = [0u8; 1];
            for _ in 0..1000 {
                tokio::io::AsyncWriteExt::write_all(&mut client, b"x").await.unwrap();
                let why = parking.park(&mut server, Instant::now() + Duration::from_secs(60)).await;
                assert_eq!(why, Wake::Readable);
                let Transport::Tcp(s) = &server else { unreachable!() };
                s.try_read(&mut byte).unwrap();
                assert!(s.try_read(&mut byte).is_err(), "nothing more to read");
            }
            assert!(parking.entries.borrow().capacity() <= 4, "{} entries kept", parking.entries.borrow().capacity());
        });
    }
}
