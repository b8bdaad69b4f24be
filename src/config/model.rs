//! MOSN's v2 configuration, as serde reads it (`pkg/config/v2/` in MOSN).
//!
//! Only what ferrymesh implements is modelled; every other field is reported
//! as ignored (with its path) by the loader, never silently dropped. Field
//! names are MOSN's. Where ferrymesh adds a knob MOSN lacks, it says so.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::duration::DurationStr;
use crate::tls::TlsContextSpec;

#[derive(Debug, Default, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub servers: Vec<ServerConfig>,
    #[serde(default)]
    pub cluster_manager: ClusterManager,
    /// The admin server (MOSN: none without this block).
    #[serde(default)]
    pub admin: Option<Admin>,
    #[serde(default)]
    pub disable_upgrade: Option<bool>,
    #[serde(default)]
    pub tracing: Option<serde_json::Value>,
    #[serde(default)]
    pub metrics: Option<serde_json::Value>,
    #[serde(default)]
    pub pprof: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Admin {
    #[serde(default)]
    pub address: Option<AdminAddress>,
}

#[derive(Debug, Default, Deserialize)]
pub struct AdminAddress {
    #[serde(default)]
    pub socket_address: Option<SocketAddress>,
}

#[derive(Debug, Default, Deserialize)]
pub struct SocketAddress {
    /// An IP; empty or absent: 127.0.0.1 (ferrymesh never listens beyond
    /// loopback unless told to).
    #[serde(default)]
    pub address: Option<String>,
    /// A number, or a string of one (protobuf JSON writes it so).
    #[serde(default, deserialize_with = "port_or_string")]
    pub port_value: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
pub struct AccessLog {
    /// A file, or "stdout"; empty: `<listener>_access.log` in the working directory.
    #[serde(default)]
    pub log_path: String,
    /// `%variable%` text; empty: MOSN's default format.
    #[serde(default)]
    pub log_format: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct ServerConfig {
    #[serde(default)]
    pub mosn_server_name: Option<String>,
    #[serde(default)]
    pub default_log_path: Option<String>,
    #[serde(default)]
    pub default_log_level: Option<String>,
    /// Drain time on SIGTERM (MOSN `graceful_timeout`, default 30 s).
    #[serde(default)]
    pub graceful_timeout: Option<DurationStr>,
    /// MOSN: number of processors; here the default worker count. `"auto"`
    /// (MOSN's word for one per core) is the same as leaving it out.
    #[serde(default, deserialize_with = "count_or_auto")]
    pub processor: Option<usize>,
    /// ferrymesh: how long a worker keeps polling for events without sleeping
    /// after its last input (haproxy's `busy-polling`, bounded). 250 µs when
    /// absent; off when zero.
    #[serde(default)]
    pub busy_poll: Option<DurationStr>,
    /// ferrymesh: when the `busy_poll` window polls: `awaiting` (the default:
    /// only while it awaits an answer from an upstream host, and only as
    /// long as its polls pay) or `after_input` (whenever the worker runs out
    /// of work).
    #[serde(default)]
    pub busy_poll_mode: Option<String>,
    #[serde(default)]
    pub routers: Vec<RouterConfiguration>,
    #[serde(default)]
    pub listeners: Vec<Listener>,
}

#[derive(Debug, Deserialize)]
pub struct Listener {
    /// Empty: the address, as MOSN names an unnamed listener.
    #[serde(default)]
    pub name: String,
    pub address: String,
    #[serde(default)]
    pub bind_port: Option<bool>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub connection_idle_timeout: Option<DurationStr>,
    #[serde(default)]
    pub filter_chains: Vec<FilterChain>,
    #[serde(default)]
    pub stream_filters: Vec<FilterConfig>,
    #[serde(default)]
    pub access_logs: Vec<AccessLog>,
    #[serde(default)]
    pub reuseport: Option<bool>,
    /// MOSN: a log file of the listener's own; ferrymesh has one process log.
    #[serde(default)]
    pub log_path: Option<String>,
    #[serde(default)]
    pub log_level: Option<String>,
    /// TLS and plaintext on one port, told apart by the first byte.
    #[serde(default)]
    pub inspector: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FilterChain {
    #[serde(default)]
    pub match_: Option<String>,
    #[serde(default)]
    pub filters: Vec<FilterConfig>,
    /// TLS termination: one context, or several chosen by SNI.
    #[serde(default)]
    pub tls_context: Option<TlsContextSpec>,
    #[serde(default)]
    pub tls_context_set: Option<Vec<TlsContextSpec>>,
}

#[derive(Debug, Deserialize)]
pub struct FilterConfig {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub config: serde_json::Value,
}

/// The `proxy` network filter's config (MOSN `pkg/config/v2/proxy.go`).
#[derive(Debug, Default, Deserialize)]
pub struct ProxyConfig {
    #[serde(default)]
    pub name: Option<String>,
    pub downstream_protocol: String,
    #[serde(default)]
    pub upstream_protocol: Option<String>,
    pub router_config_name: String,
    #[serde(default)]
    pub extend_config: Option<ExtendConfig>,
    #[serde(default)]
    pub fallback_for_unknown_protocol: Option<bool>,
    /// ferrymesh: the largest frame accepted from either side (default 16 MiB).
    #[serde(default)]
    pub max_frame_size: Option<usize>,
    /// ferrymesh: HTTP clients must send a whole request head within this (default 10s).
    #[serde(default)]
    pub header_read_timeout: Option<DurationStr>,
    /// ferrymesh: how long an HTTP request or response body, or an upgraded
    /// connection's tunnel, may make no progress before it is cut (default
    /// 5m, Envoy's `stream_idle_timeout`).
    #[serde(default)]
    pub stream_idle_timeout: Option<DurationStr>,
    /// ferrymesh: serve plain HTTP/1.1 requests on the pass-through path
    /// (default true); false sends every request through hyper.
    #[serde(default)]
    pub http1_passthrough: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ExtendConfig {
    #[serde(default)]
    pub sub_protocol: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RouterConfiguration {
    pub router_config_name: String,
    #[serde(default)]
    pub virtual_hosts: Vec<VirtualHost>,
}

#[derive(Debug, Deserialize)]
pub struct VirtualHost {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub routers: Vec<Router>,
}

#[derive(Debug, Deserialize)]
pub struct Router {
    #[serde(default, rename = "match")]
    pub match_: RouterMatch,
    #[serde(default)]
    pub route: Option<RouteAction>,
    #[serde(default)]
    pub direct_response: Option<DirectResponse>,
    #[serde(default)]
    pub redirect: Option<Redirect>,
}

#[derive(Debug, Deserialize)]
pub struct Redirect {
    /// 301 (default), 302, 303, 307 or 308.
    #[serde(default)]
    pub response_code: Option<u16>,
    #[serde(default)]
    pub path_redirect: Option<String>,
    #[serde(default)]
    pub host_redirect: Option<String>,
    #[serde(default)]
    pub scheme_redirect: Option<String>,
}

/// A header to add (MOSN `HeaderValueOption`).
#[derive(Debug, Clone, Deserialize)]
pub struct HeaderValueOption {
    pub header: HeaderKv,
    #[serde(default)]
    pub append: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HeaderKv {
    pub key: String,
    pub value: String,
}

/// ferrymesh (Envoy's `query_parameters`): match on a query parameter.
#[derive(Debug, Deserialize)]
pub struct QueryMatcher {
    pub name: String,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub regex: bool,
    #[serde(default)]
    pub present: bool,
}

#[derive(Debug, Deserialize)]
pub struct RetryBackOff {
    #[serde(default)]
    pub base_interval: Option<DurationStr>,
    #[serde(default)]
    pub max_interval: Option<DurationStr>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RouterMatch {
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub regex: Option<String>,
    #[serde(default)]
    pub headers: Vec<HeaderMatcher>,
    #[serde(default)]
    pub query_parameters: Vec<QueryMatcher>,
}

#[derive(Debug, Deserialize)]
pub struct HeaderMatcher {
    pub name: String,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub regex: bool,
    /// ferrymesh (Envoy's `present_match`): the header is there, any value.
    #[serde(default)]
    pub present: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct RouteAction {
    #[serde(default)]
    pub cluster_name: Option<String>,
    #[serde(default)]
    pub weighted_clusters: Vec<WeightedCluster>,
    #[serde(default)]
    pub timeout: Option<DurationStr>,
    #[serde(default)]
    pub retry_policy: Option<RetryPolicy>,
    #[serde(default)]
    pub hash_policy: Vec<HashPolicy>,
    #[serde(default)]
    pub prefix_rewrite: Option<String>,
    #[serde(default)]
    pub host_rewrite: Option<String>,
    #[serde(default)]
    pub request_headers_to_add: Vec<HeaderValueOption>,
    #[serde(default)]
    pub request_headers_to_remove: Vec<String>,
    #[serde(default)]
    pub response_headers_to_add: Vec<HeaderValueOption>,
    #[serde(default)]
    pub response_headers_to_remove: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct WeightedCluster {
    pub cluster: WeightedClusterEntry,
}

#[derive(Debug, Deserialize)]
pub struct WeightedClusterEntry {
    pub name: String,
    #[serde(default)]
    pub weight: u32,
}

#[derive(Debug, Default, Deserialize)]
pub struct RetryPolicy {
    /// MOSN: `true`; or Envoy's list, e.g. `"5xx,connect-failure,reset"`.
    #[serde(default)]
    pub retry_on: serde_json::Value,
    /// Per-try timeout.
    #[serde(default)]
    pub retry_timeout: Option<DurationStr>,
    #[serde(default)]
    pub num_retries: u32,
    /// Statuses retried with `retriable-status-codes`.
    #[serde(default)]
    pub status_codes: Vec<u16>,
    #[serde(default)]
    pub retry_back_off: Option<RetryBackOff>,
}

#[derive(Debug, Deserialize)]
pub struct HashPolicy {
    #[serde(default)]
    pub header: Option<HashHeader>,
}

#[derive(Debug, Deserialize)]
pub struct HashHeader {
    pub key: String,
}

#[derive(Debug, Deserialize)]
pub struct DirectResponse {
    pub status: u16,
    #[serde(default)]
    pub body: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct ClusterManager {
    #[serde(default)]
    pub clusters: Vec<Cluster>,
}

#[derive(Debug, Deserialize)]
pub struct Cluster {
    pub name: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub lb_type: Option<String>,
    #[serde(default)]
    pub hosts: Vec<Host>,
    #[serde(default)]
    pub connect_timeout: Option<DurationStr>,
    /// Upper bound of requests in flight on one upstream connection (0: none).
    #[serde(default)]
    pub max_request_per_conn: Option<u32>,
    #[serde(default)]
    pub conn_buffer_limit_bytes: Option<u32>,
    /// ferrymesh: multiplexed connections per host and worker (default 1).
    #[serde(default)]
    pub connections_per_host: Option<usize>,
    /// Upstream keep-alive (MOSN `keepalive`-like): heartbeats on idle connections.
    #[serde(default)]
    pub keepalive: Option<Keepalive>,
    #[serde(default)]
    pub idle_timeout: Option<DurationStr>,
    #[serde(default)]
    pub circuit_breakers: Option<serde_json::Value>,
    #[serde(default)]
    pub health_check: Option<serde_json::Value>,
    #[serde(default)]
    pub lb_subset_config: Option<serde_json::Value>,
    /// TLS origination to the cluster's hosts.
    #[serde(default)]
    pub tls_context: Option<TlsContextSpec>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Keepalive {
    /// Idle time before a heartbeat is sent (default 15 s).
    #[serde(default)]
    pub interval: Option<DurationStr>,
    /// How long to wait for the ack (default 1 s).
    #[serde(default)]
    pub timeout: Option<DurationStr>,
    /// Missed acks in a row before the connection is closed (default 6).
    #[serde(default)]
    pub max_failures: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub struct Host {
    pub address: String,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub weight: Option<u32>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, serde_json::Value>>,
    /// Plaintext to this host though its cluster has TLS.
    #[serde(default)]
    pub tls_disable: Option<bool>,
}

fn port_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("not a port number")),
        Some(serde_json::Value::String(s)) => {
            s.trim().parse().map(Some).map_err(|_| serde::de::Error::custom(format!("{s:?} is not a port number")))
        }
        Some(other) => Err(serde::de::Error::custom(format!("{other} is not a port number"))),
    }
}

fn count_or_auto<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("auto") => Ok(None),
        Some(serde_json::Value::Number(n)) => {
            n.as_u64().map(|n| Some(n as usize)).ok_or_else(|| serde::de::Error::custom("not a count"))
        }
        Some(other) => Err(serde::de::Error::custom(format!("{other} is not a count or \"auto\""))),
    }
}
