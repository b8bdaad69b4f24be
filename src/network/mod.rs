//! Network layer: listeners, connections, and the loop that moves bytes.
//!
//! Every connection, accepted or dialled, is driven by one task that owns both
//! halves of the socket ([`conn::drive`]). Reads go into one 64 KiB scratch
//! buffer per worker thread; only the tail of a frame split across reads is kept
//! by the connection ([`frames`]), so an idle connection holds no read buffer at
//! all, and a large frame is gathered into one buffer of its size that is
//! handed on whole. Writes are appended by anyone on the worker thread to the
//! connection's output buffer ([`conn::ConnShared`]) and flushed by the task in
//! one `write` per wake-up, which coalesces the frames of many requests into
//! one syscall; handed-on frames go out with it in one `writev`. A client
//! connection quiet for a while parks ([`park`]): it keeps its socket and
//! nothing else until bytes arrive.

pub mod clock;
pub mod conn;
pub mod counted;
pub mod deadlines;
pub mod dial;
pub mod frames;
pub mod listener;
pub mod park;
pub mod prefixed;
pub mod spares;
pub mod taskset;
pub mod tick;
pub mod timeouts;
pub mod transport;
pub mod tunnel;
