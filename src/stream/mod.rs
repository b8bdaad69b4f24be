//! Stream layer: server streams (one per downstream request), client streams
//! (one per request sent upstream), the request-id map of every upstream
//! connection, the multiplexed connection pools and upstream keep-alive.
//!
//! The decision a reader may question: a request waiting for its upstream
//! answer is not a parked task. It is an entry in the id map of the upstream
//! connection it was written to ([`idmap::IdMap`]), holding the
//! [`server::ServerStream`] that will answer the client, plus its deadline
//! (a line in the connection's [`crate::network::deadlines::Deadlines`]).
//! Whoever removes the entry (the response, the timer, or the connection's
//! close) answers the client, and removal happens once, so a request ends in
//! exactly one response by construction. A task is spawned only on the slow
//! path, when a request must wait for a connection to be dialled.

pub mod client;
pub mod http;
pub mod idmap;
pub mod pool;
pub mod server;
