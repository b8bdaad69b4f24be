//! ferrymesh: a service-mesh data plane (MOSN-compatible sidecar and gateway).
//!
//! Layers, each a module (see `docs/architecture.md`):
//! - [`network`]: sockets, the per-connection I/O loop, buffers;
//! - [`protocol`]: codecs (bolt, bolt v2);
//! - [`stream`]: server and client streams, the request-id map, pools;
//! - [`proxy`]: the request path: filters, routing, host choice, retries;
//!
//! beside them [`upstream`] (clusters, hosts, load balancers), [`router`]
//! (route tables), [`config`] (MOSN's v2 schema), [`runtime`] (workers,
//! configuration generations, signals, drain), [`stats`] (per-worker
//! counters, Prometheus), [`accesslog`] and [`admin`] (the admin API and
//! dashboard).
#![forbid(unsafe_code)]

pub mod accesslog;
pub mod admin;
pub mod config;
pub mod error;
pub mod host;
pub mod network;
pub mod protocol;
pub mod proxy;
pub mod router;
pub mod runtime;
pub mod stats;
pub mod stream;
pub mod tls;
pub mod upstream;

/// Maps MOSN log level names to tracing levels (FATAL is ERROR).
pub fn parse_log_level(name: &str) -> Option<tracing::Level> {
    Some(match name.to_ascii_uppercase().as_str() {
        "TRACE" => tracing::Level::TRACE,
        "DEBUG" => tracing::Level::DEBUG,
        "INFO" => tracing::Level::INFO,
        "WARN" | "WARNING" => tracing::Level::WARN,
        "ERROR" | "FATAL" | "CRITICAL" => tracing::Level::ERROR,
        _ => return None,
    })
}
