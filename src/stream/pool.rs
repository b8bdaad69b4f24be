//! The multiplexed connection pool of one host on one worker.
//!
//! Up to `connections_per_host` connections, dialled lazily: the first request
//! dials one and waits for it; while fewer than the maximum exist, a request
//! that finds a ready connection uses it and dials one more in the background.
//! Requests go to the ready connection with the fewest in flight. A connection
//! leaves the pool when it closes or fails to connect; the next request dials
//! again.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use crate::config::{ClusterSpec, KeepaliveSpec};
use crate::host::Host;
use crate::protocol::Codec;

use super::client::ClientConn;

/// Where a request can go now.
pub enum Pick {
    /// A connected connection (the one with the fewest requests in flight:
    /// at `max_request_per_conn`, it refuses the request, `ClientConn::send`).
    Ready(Rc<ClientConn>),
    /// A connection being dialled: wait for it.
    Wait(Rc<ClientConn>),
}

/// The multiplexed pools of one host on one worker, one per protocol family
/// (as MOSN's cluster manager keeps a pool per host and protocol), each made
/// when a request of its protocol first needs it: one cluster serves bolt
/// and Dubbo listeners alike, and a frame only ever meets connections of its
/// own codec.
#[derive(Default)]
pub struct RpcPools(RefCell<smallvec::SmallVec<[Rc<HostPool>; 1]>>);

impl RpcPools {
    /// A connection of `codec`'s family to `host` for one request
    /// ([`HostPool::pick`]); the pool is made when a request of its
    /// protocol first needs it.
    pub fn pick(&self, host: &Rc<Host>, spec: &ClusterSpec, codec: &'static dyn Codec) -> Pick {
        if let Some(p) = self.0.borrow().iter().find(|p| same_family(p.codec, codec)) {
            return p.pick();
        }
        let pool = HostPool::new(host.clone(), spec, codec);
        self.0.borrow_mut().push(pool.clone());
        pool.pick()
    }

    /// [`HostPool::drop_abandoned`] on every pool.
    pub fn drop_abandoned(&self) -> usize {
        self.0.borrow().iter().map(|p| p.drop_abandoned()).sum()
    }
}

/// Whether two codecs share a pool: nearly always the same codec, a pointer
/// compare, before the family names are asked of them.
fn same_family(a: &'static dyn Codec, b: &'static dyn Codec) -> bool {
    std::ptr::addr_eq(a, b) || a.family() == b.family()
}

pub struct HostPool {
    host: Rc<Host>,
    codec: &'static dyn Codec,
    max_conns: usize,
    max_per_conn: u32,
    connect_timeout: std::time::Duration,
    keepalive: KeepaliveSpec,
    max_frame: usize,
    conns: RefCell<Vec<Rc<ClientConn>>>,
}

impl HostPool {
    pub fn new(host: Rc<Host>, spec: &ClusterSpec, codec: &'static dyn Codec) -> Rc<HostPool> {
        Rc::new(HostPool {
            host,
            codec,
            max_conns: spec.connections_per_host,
            max_per_conn: spec.max_request_per_conn,
            connect_timeout: spec.connect_timeout,
            keepalive: spec.keepalive,
            max_frame: spec.max_frame,
            conns: RefCell::new(Vec::new()),
        })
    }

    pub fn host(&self) -> &Rc<Host> {
        &self.host
    }

    /// Connections currently in the pool (connecting or ready).
    pub fn len(&self) -> usize {
        self.conns.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.borrow().is_empty()
    }

    /// Drops, on every connection, the requests whose client has gone
    /// ([`ClientConn::drop_abandoned`]); how many.
    pub fn drop_abandoned(&self) -> usize {
        self.conns.borrow().iter().map(|c| c.drop_abandoned()).sum()
    }

    /// Chooses a connection for one request.
    pub fn pick(self: &Rc<Self>) -> Pick {
        let conns = self.conns.borrow();
        // The usual pool: one connection, ready, and no room for another.
        if let [only] = &conns[..] {
            if self.max_conns <= 1 && only.is_ready() {
                return Pick::Ready(only.clone());
            }
        }
        // One pass: the ready connection with the fewest requests in flight
        // (the first of equals), the first one not ready, and whether any is
        // draining.
        let (mut best, mut first_connecting, mut draining) = (None::<&Rc<ClientConn>>, None, 0);
        for c in conns.iter() {
            if c.is_ready() {
                if best.is_none_or(|b| c.in_flight() < b.in_flight()) {
                    best = Some(c);
                }
            } else if c.is_draining() {
                draining += 1;
            } else if first_connecting.is_none() {
                first_connecting = Some(c);
            }
        }
        let room = conns.len() - draining < self.max_conns;
        let (best, first_connecting) = (best.cloned(), first_connecting.cloned());
        drop(conns);
        if draining > 0 {
            // A connection the upstream sent away from drains on its own; it
            // holds no slot here (a new one is dialled in its place).
            self.conns.borrow_mut().retain(|c| !c.is_draining());
        }
        match best {
            Some(c) => {
                if room {
                    self.dial();
                }
                Pick::Ready(c)
            }
            None if room => Pick::Wait(self.dial()),
            None => match first_connecting {
                Some(c) => Pick::Wait(c),
                None => Pick::Wait(self.dial()),
            },
        }
    }

    /// Starts dialling a new connection and adds it to the pool.
    fn dial(self: &Rc<Self>) -> Rc<ClientConn> {
        let conn = ClientConn::new(self.codec, self.host.clone(), self.max_frame, self.max_per_conn);
        self.conns.borrow_mut().push(conn.clone());
        let pool: Weak<HostPool> = Rc::downgrade(self);
        let weak_conn = Rc::downgrade(&conn);
        let on_close = move || {
            if let (Some(pool), Some(conn)) = (pool.upgrade(), weak_conn.upgrade()) {
                pool.conns.borrow_mut().retain(|c| !Rc::ptr_eq(c, &conn));
            }
        };
        tokio::task::spawn_local(conn.clone().run(self.connect_timeout, self.keepalive, on_close));
        conn
    }
}

impl Drop for HostPool {
    /// A pool leaves with its host or cluster (a configuration change): its
    /// connections finish the requests they carry, then close.
    fn drop(&mut self) {
        for c in self.conns.get_mut().drain(..) {
            c.retire();
        }
    }
}
