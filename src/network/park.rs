//! Parked connections: a client connection that owes nothing gives back
//! everything but its socket, its task included.
//!
//! An RPC connection's working state (its output buffer, frame reader, the
//! request path's state) lives in a phase that ends as soon as the connection
//! owes nothing (no request in flight, no frame half read, every answer
//! written). The HTTP/1.1 pass-through does the same once a keep-alive
//! connection has waited a moment for its next request. The connection's
//! task then ends too: what is left (the socket, the peer's address, the
//! protocol) is handed to its listener's [`Parking`], which holds it in a
//! slab and asks the runtime to wake a small waker of its own when the socket
//! turns readable. Bytes, or a close, take the connection out and start a
//! task for it again ([`Resume::resume`]).
//!
//! Why not a task that waits: a tokio task is 128-byte aligned, so a waiting
//! connection's task cost 256 bytes plus what glibc's `memalign` wastes
//! around it, half of what an idle connection held. A sidecar holds
//! thousands of connections that carry a heartbeat now and then; this is
//! what each of them costs between two heartbeats.
//!
//! Parked connections also share one idle timer per listener and worker,
//! swept by one task ([`sweep`]), instead of a timer each.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake as WakeFn, Waker};
use std::time::Duration;

use slab::Slab;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::transport::Transport;

/// Why a parked connection leaves its park without bytes to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// Its idle time ran out: close it.
    IdleTimeout,
    /// Its listener drains: close it (nothing is in flight).
    Drained,
}

/// A parked connection, as its owner (the proxy) defines it.
pub trait Resume: Sized + 'static {
    /// The socket it waits on.
    fn transport(&mut self) -> &mut Transport;
    /// Bytes arrived (or the peer closed): serve them.
    fn resume(self);
    /// It will not be resumed; dropping it closes it.
    fn close(self, why: Wake);
}

/// The least time between two sweeps: an idle timeout fires up to this late.
const SWEEP_GAP: Duration = Duration::from_millis(100);

/// A deadline that never comes.
const NEVER: u32 = u32::MAX;

/// Deadlines are kept in 32 bits of milliseconds that wrap every 49.7 days
/// and are compared as distances from now, so none may be further away than
/// this; an idle timeout longer than 24 days is taken as none.
const FURTHEST: u32 = i32::MAX as u32;

/// One parked connection.
struct Entry<C> {
    /// Boxed: the slab's spare room then costs a pointer per slot, not a
    /// connection.
    conn: Box<C>,
    /// Its idle deadline ([`Parking::millis`]; [`NEVER`] for the "a year"
    /// that stands for no timeout).
    due: u32,
    /// Tells this park from a later one in the same slot, for a wake that
    /// comes late.
    park: u32,
}

/// The parks whose sockets turned readable, filled by their wakers (which
/// the runtime may call from any thread, hence the lock; it is taken once
/// per wake of a parked connection, never for an active one).
#[derive(Default)]
struct Woken {
    parks: Mutex<Vec<(usize, u32)>>,
    notify: Notify,
}

/// What the runtime wakes when a parked socket turns readable.
struct ParkWaker {
    key: usize,
    park: u32,
    woken: Arc<Woken>,
}

impl WakeFn for ParkWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Ok(mut parks) = self.woken.parks.lock() {
            parks.push((self.key, self.park));
        }
        self.woken.notify.notify_one();
    }
}

/// The parked connections of one listener on one worker.
pub struct Parking<C> {
    entries: RefCell<Slab<Entry<C>>>,
    epoch: Instant,
    parks: Cell<u32>,
    woken: Arc<Woken>,
    /// Whether the task that resumes woken parks runs.
    resuming: Cell<bool>,
    /// When the sweeper wakes next, if it is running.
    sweep_at: Cell<Option<Instant>>,
    /// Wakes the sweeper when a park falls due before `sweep_at`.
    sooner: Notify,
    draining: Cell<bool>,
}

impl<C> Default for Parking<C> {
    fn default() -> Self {
        Parking {
            entries: RefCell::new(Slab::new()),
            epoch: Instant::now(),
            parks: Cell::new(0),
            woken: Arc::default(),
            resuming: Cell::new(false),
            sweep_at: Cell::new(None),
            sooner: Notify::new(),
            draining: Cell::new(false),
        }
    }
}

impl<C: Resume> Parking<C> {
    /// Connections parked now.
    pub fn parked(&self) -> usize {
        self.entries.borrow().len()
    }

    /// Holds `conn` until its socket has bytes to read (or its peer closed),
    /// then resumes it; closes it when `idle_due` passes or the listener
    /// drains first.
    pub fn park(self: &Rc<Self>, mut conn: C, idle_due: Instant) {
        if self.draining.get() {
            return conn.close(Wake::Drained);
        }
        let key = self.entries.borrow().vacant_key();
        let park = self.parks.get().wrapping_add(1);
        self.parks.set(park);
        if self.readable(&mut conn, key, park) {
            return conn.resume();
        }
        let due = self.deadline(idle_due);
        self.entries.borrow_mut().insert(Entry { conn: Box::new(conn), due, park });
        if !self.resuming.replace(true) {
            tokio::task::spawn_local(resume_woken(self.clone()));
        }
        match self.sweep_at.get() {
            None => {
                self.sweep_at.set(Some(idle_due));
                tokio::task::spawn_local(sweep(self.clone()));
            }
            Some(at) if idle_due < at => self.sooner.notify_one(),
            Some(_) => {}
        }
    }

    /// `at` in wrapping milliseconds since [`Parking::epoch`]: the stamp of
    /// a parked entry's deadline, and of when its connection fell quiet
    /// (`proxy::Quiet`).
    pub fn millis(&self, at: Instant) -> u32 {
        at.saturating_duration_since(self.epoch).as_millis() as u32
    }

    /// The entry's deadline for `at`: [`NEVER`] if it is further away than
    /// [`FURTHEST`].
    fn deadline(&self, at: Instant) -> u32 {
        let now = Instant::now();
        let ahead = at.saturating_duration_since(now).as_millis();
        if ahead >= u128::from(FURTHEST) {
            return NEVER;
        }
        match self.millis(now).wrapping_add(ahead as u32) {
            NEVER => NEVER - 1,
            due => due,
        }
    }

    /// Whether `conn`'s socket is readable now; if not, the runtime wakes
    /// park `park` in slot `key` when it is.
    fn readable(&self, conn: &mut C, key: usize, park: u32) -> bool {
        let waker = Waker::from(Arc::new(ParkWaker { key, park, woken: self.woken.clone() }));
        // An error is readable too: the resumed connection reads it.
        conn.transport().poll_readable(&mut Context::from_waker(&waker)).is_ready()
    }

    /// Resumes the woken parks whose sockets are readable.
    fn resume_woken(&self) {
        let woken = match self.woken.parks.lock() {
            Ok(mut parks) => std::mem::take(&mut *parks),
            Err(_) => return,
        };
        for (key, park) in woken {
            let mut entries = self.entries.borrow_mut();
            let Some(e) = entries.get_mut(key).filter(|e| e.park == park) else {
                continue;
            };
            if !self.readable(&mut e.conn, key, park) {
                continue;
            }
            let conn = entries.remove(key).conn;
            drop(entries);
            conn.resume();
        }
    }

    /// Closes every parked connection: the listener is draining, and a
    /// parked connection has nothing in flight. Connections that try to park
    /// from now on are closed at once.
    pub fn drain(&self) {
        self.draining.set(true);
        let all: Vec<Entry<C>> = self.entries.borrow_mut().drain().collect();
        for e in all {
            e.conn.close(Wake::Drained);
        }
        self.woken.notify.notify_one();
        // The sweeper ends at its next look, rather than at the drained
        // parks' deadlines.
        self.sooner.notify_one();
    }

    /// Closes the parks whose deadline passed by `now`; returns the earliest
    /// deadline left, if any connection is still parked.
    fn expire(&self, now: Instant) -> Option<Instant> {
        let now_ms = self.millis(now);
        // Milliseconds until the nearest deadline left; `None`: none left, or
        // only parks without one.
        let mut next = None::<u32>;
        let mut undated = false;
        let mut expired = Vec::new();
        let mut entries = self.entries.borrow_mut();
        for (key, e) in entries.iter() {
            if e.due == NEVER {
                undated = true;
                continue;
            }
            let ahead = e.due.wrapping_sub(now_ms);
            if ahead == 0 || ahead > FURTHEST {
                expired.push(key);
            } else {
                next = Some(next.map_or(ahead, |n| n.min(ahead)));
            }
        }
        let expired: Vec<Entry<C>> = expired.into_iter().map(|k| entries.remove(k)).collect();
        drop(entries);
        for e in expired {
            e.conn.close(Wake::IdleTimeout);
        }
        match next {
            Some(ms) => Some(now + Duration::from_millis(u64::from(ms))),
            // Parks without a deadline: look again at the furthest one's distance.
            None if undated => Some(now + Duration::from_millis(u64::from(FURTHEST))),
            None => None,
        }
    }
}

/// Resumes parked connections as their sockets turn readable, until the
/// listener drains.
async fn resume_woken<C: Resume>(parking: Rc<Parking<C>>) {
    while !parking.draining.get() {
        parking.woken.notify.notified().await;
        parking.resume_woken();
    }
}

/// The idle timer of a listener's parked connections: sleeps until the
/// earliest deadline (or a sooner one parks), then closes the parks that
/// reached it, scanning them all, at most once per [`SWEEP_GAP`]. Ends once
/// none is parked; the next park starts it again.
async fn sweep<C: Resume>(parking: Rc<Parking<C>>) {
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

    /// How each test connection left its park: resumed (`None`) or closed.
    type Log = Rc<RefCell<Vec<(usize, Option<Wake>)>>>;

    /// A parked test connection: records how it left its park.
    struct Conn {
        name: usize,
        stream: Transport,
        log: Log,
    }

    impl Resume for Conn {
        fn transport(&mut self) -> &mut Transport {
            &mut self.stream
        }
        fn resume(self) {
            self.log.borrow_mut().push((self.name, None));
        }
        fn close(self, why: Wake) {
            self.log.borrow_mut().push((self.name, Some(why)));
        }
    }

    async fn conn(name: usize, log: &Log) -> (Conn, tokio::net::TcpStream) {
        let (stream, client) = pair().await;
        (Conn { name, stream, log: log.clone() }, client)
    }

    /// Parks connections 0, 1 and 2; returns their clients' ends.
    async fn park_three(parking: &Rc<Parking<Conn>>, log: &Log) -> Vec<tokio::net::TcpStream> {
        let mut clients = Vec::new();
        for name in 0..3 {
            let (c, client) = conn(name, log).await;
            parking.park(c, far());
            clients.push(client);
        }
        clients
    }

    /// Lets the spawned tasks run.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    fn local<F: std::future::Future>(f: F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        tokio::task::LocalSet::new().block_on(&rt, f)
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn bytes_resume_a_parked_connection_and_only_it() {
        local(async {
            let parking = Rc::new(Parking::default());
            let log = Log::default();
            let mut clients = park_three(&parking, &log).await;
            settle().await;
            assert_eq!(parking.parked(), 3);
            tokio::io::AsyncWriteExt::write_all(&mut clients[1], b"x").await.unwrap();
            settle().await;
            assert_eq!(*log.borrow(), vec![(1, None)]);
            assert_eq!(parking.parked(), 2);
            // A peer that closes is readable too: the connection resumes to read the end.
            drop(clients.remove(2));
            settle().await;
            assert_eq!(*log.borrow(), vec![(1, None), (2, None)]);
        });
    }

    #[test]
    fn a_socket_readable_already_resumes_at_once() {
        local(async {
            let parking = Rc::new(Parking::default());
            let log = Log::default();
            let (c, mut client) = conn(0, &log).await;
            tokio::io::AsyncWriteExt::write_all(&mut client, b"x").await.unwrap();
            settle().await;
            parking.park(c, far());
            assert_eq!((log.borrow().clone(), parking.parked()), (vec![(0, None)], 0));
        });
    }

    #[test]
    fn the_idle_deadline_closes_a_park_and_the_sweeper_stops() {
        local(async {
            let parking = Rc::new(Parking::default());
            let log = Log::default();
            let (c, _client) = conn(0, &log).await;
            parking.park(c, Instant::now() + Duration::from_millis(50));
            tokio::time::sleep(Duration::from_millis(40)).await;
            assert!(log.borrow().is_empty());
            tokio::time::sleep(SWEEP_GAP + Duration::from_millis(30)).await;
            assert_eq!(*log.borrow(), vec![(0, Some(Wake::IdleTimeout))]);
            tokio::time::sleep(SWEEP_GAP + Duration::from_millis(10)).await;
            assert!(parking.sweep_at.get().is_none(), "the sweeper ends with the last park");
            assert_eq!(parking.parked(), 0);
        });
    }

    #[test]
    fn a_drain_closes_every_park_and_refuses_new_ones() {
        local(async {
            let parking = Rc::new(Parking::default());
            let log = Log::default();
            let _clients = park_three(&parking, &log).await;
            parking.drain();
            let (c, _client) = conn(3, &log).await;
            parking.park(c, far());
            let mut got = log.borrow().clone();
            got.sort_by_key(|(n, _)| *n);
            assert_eq!(got, (0..4).map(|n| (n, Some(Wake::Drained))).collect::<Vec<_>>());
            assert_eq!(parking.parked(), 0);
            settle().await;
            assert!(!parking.resuming.get() || parking.draining.get());
        });
    }

    #[test]
    fn a_late_wake_does_not_resume_the_next_park_in_its_slot() {
        local(async {
            let parking = Rc::new(Parking::default());
            let log = Log::default();
            let (c, mut client) = conn(0, &log).await;
            parking.park(c, far());
            // Its socket turns readable and it resumes; a second park takes its slot.
            tokio::io::AsyncWriteExt::write_all(&mut client, b"x").await.unwrap();
            settle().await;
            let (c, _client) = conn(1, &log).await;
            parking.park(c, far());
            // A wake for the first park, arriving late, is ignored.
            parking.woken.parks.lock().unwrap().push((0, parking.parks.get() - 1));
            parking.resume_woken();
            assert_eq!(*log.borrow(), vec![(0, None)]);
            assert_eq!(parking.parked(), 1);
        });
    }

    #[test]
    fn deadlines_hold_across_the_wrap_of_their_milliseconds() {
        local(async {
            // A parking whose clock started 49.7 days ago: its milliseconds
            // wrap around now.
            let wrap = Duration::from_millis(u64::from(u32::MAX));
            let Some(epoch) = Instant::now().checked_sub(wrap - Duration::from_millis(30)) else {
                return; // a clock too young to go back that far
            };
            let parking = Rc::new(Parking { epoch, ..Parking::default() });
            let log = Log::default();
            let (soon, _a) = conn(0, &log).await;
            let (later, _b) = conn(1, &log).await;
            let (never, _c) = conn(2, &log).await;
            let now = Instant::now();
            parking.park(soon, now + Duration::from_millis(60));
            parking.park(later, now + Duration::from_secs(3600));
            parking.park(never, now + Duration::from_secs(365 * 24 * 3600));
            let first = parking.expire(now).unwrap().duration_since(now);
            assert!(first.abs_diff(Duration::from_millis(60)) <= Duration::from_millis(2), "{first:?}");
            assert!(log.borrow().is_empty());
            let next = parking.expire(now + Duration::from_millis(62));
            assert_eq!(*log.borrow(), vec![(0, Some(Wake::IdleTimeout))]);
            let left = next.unwrap().duration_since(now);
            assert!(left > Duration::from_secs(3500) && left <= Duration::from_secs(3601), "{left:?}");
            parking.drain();
        });
    }
}
