//! Configuration: MOSN's v2 schema read from JSON or YAML, checked, and turned
//! into the [`Settings`] every worker builds its state from.
//!
//! Two passes. serde reads the file into [`model`] types; unknown fields are
//! collected as warnings with their paths, and a field of the wrong type fails
//! with its path (`serde_path_to_error`). Then [`Settings::from_model`] checks
//! what serde cannot (addresses, protocol names, references between routers,
//! listeners and clusters, regexes) and reports the same kind of path. YAML is
//! read into a JSON value first, so both formats share one path-aware pass.

pub mod duration;
pub mod model;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::protocol::Protocol;
use crate::proxy::filter::FilterSpec;
use crate::router::RouteTable;
use crate::tls::client::ClientTls;
use crate::tls::server::ServerTls;

/// A configuration problem, located by its JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError { path: path.into(), reason: reason.into() }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Defaults that MOSN users expect.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// `connection_idle_timeout: 0`: a year stands for never (a timer must end).
pub const NO_IDLE_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A cluster's `idle_timeout` when unset: pooled HTTP/1.1 upstream connections
/// close before nginx's default keep-alive timeout (75 s) would close them.
/// (MOSN keeps them forever when unset.)
pub const DEFAULT_UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an HTTP body may make no progress (Envoy's default
/// `stream_idle_timeout`).
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_GRACEFUL_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest `busy_poll` accepted: past a few hundred microseconds it buys
/// no latency and only burns the core.
pub const MAX_BUSY_POLL: Duration = Duration::from_millis(10);
/// `busy_poll` when unset: long enough to cover a nearby upstream's answer
/// (a loopback or same-zone hop answers in tens to a couple of hundred
/// microseconds), spent only on credit in the default mode
/// ([`BusyPollMode::Awaiting`]).
pub const DEFAULT_BUSY_POLL: Duration = Duration::from_micros(250);

/// When a worker's `busy_poll` window polls instead of sleeping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BusyPollMode {
    /// Whenever it runs out of work inside the window (haproxy's way, bounded
    /// by the window only).
    AfterInput,
    /// Only while it awaits an answer from an upstream host (the wait between
    /// a call's hops, not the one for the next request), and only on the
    /// credit that the answers its polls caught earned
    /// (`runtime::busy_poll`).
    #[default]
    Awaiting,
}

impl BusyPollMode {
    pub fn name(self) -> &'static str {
        match self {
            BusyPollMode::AfterInput => "after_input",
            BusyPollMode::Awaiting => "awaiting",
        }
    }
}

/// What a listener speaks to its clients.
#[derive(Debug, Clone)]
pub enum DownstreamProtocol {
    Fixed(Protocol),
    /// Detected per connection from its first bytes, among these (MOSN `Auto`
    /// or a comma-separated list).
    Detect(Vec<Protocol>),
}

impl DownstreamProtocol {
    pub fn describe(&self) -> String {
        match self {
            DownstreamProtocol::Fixed(c) => c.name().to_string(),
            DownstreamProtocol::Detect(list) => {
                format!("Auto({})", list.iter().map(|c| c.name()).collect::<Vec<_>>().join(","))
            }
        }
    }
}

/// A validated listener.
#[derive(Debug, Clone)]
pub struct ListenerSpec {
    pub name: String,
    pub addr: SocketAddr,
    pub downstream: DownstreamProtocol,
    /// `None`: the upstream speaks what the client spoke (`Auto`). An RPC
    /// client always goes upstream in its own codec family.
    pub upstream: Option<Protocol>,
    pub router: Arc<RouteTable>,
    pub router_name: String,
    pub idle_timeout: Duration,
    pub max_frame: usize,
    /// HTTP: time allowed for a request head.
    pub header_read_timeout: Duration,
    /// HTTP: how long a request or response body may make no progress.
    pub stream_idle_timeout: Duration,
    /// HTTP/1.1 requests may take the pass-through path (`proxy::http1`).
    pub http1_passthrough: bool,
    pub filters: Vec<FilterSpec>,
    pub access_logs: Vec<AccessLogSpec>,
    /// TLS termination (a filter chain's `tls_context` or `tls_context_set`).
    pub tls: Option<Arc<ServerTls>>,
}

/// One access log of a listener.
#[derive(Debug, Clone)]
pub struct AccessLogSpec {
    pub path: String,
    pub format: Arc<crate::accesslog::Format>,
}

/// Upstream keep-alive settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepaliveSpec {
    pub interval: Duration,
    pub timeout: Duration,
    pub max_failures: u32,
}

impl Default for KeepaliveSpec {
    fn default() -> Self {
        KeepaliveSpec { interval: Duration::from_secs(15), timeout: Duration::from_secs(1), max_failures: 6 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    pub addr: SocketAddr,
    pub weight: u32,
    /// Dialled in plaintext though the cluster has TLS (MOSN's `tls_disable`).
    pub tls_disable: bool,
}

/// The balancer a cluster is configured with (`lb_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbKind {
    RoundRobin,
    Random,
    WeightedRoundRobin,
    LeastRequest,
    Maglev,
}

impl LbKind {
    /// MOSN names (`LB_ROUNDROBIN`) and Envoy-style names (`ROUND_ROBIN`).
    pub fn from_name(name: &str) -> Option<LbKind> {
        let n = name.to_ascii_uppercase();
        let n = n.strip_prefix("LB_").unwrap_or(&n).replace('_', "");
        Some(match n.as_str() {
            // MOSN's request round robin turns per request, as ours does.
            "ROUNDROBIN" | "REQUESTROUNDROBIN" => LbKind::RoundRobin,
            "RANDOM" => LbKind::Random,
            "WEIGHTEDROUNDROBIN" => LbKind::WeightedRoundRobin,
            "LEASTREQUEST" | "LEASTACTIVEREQUEST" | "LEASTCONNECTION" => LbKind::LeastRequest,
            "MAGLEV" | "CONSISTENTHASH" => LbKind::Maglev,
            _ => return None,
        })
    }

    /// The name MOSN's configuration uses.
    pub fn mosn_name(self) -> &'static str {
        match self {
            LbKind::RoundRobin => "LB_ROUNDROBIN",
            LbKind::Random => "LB_RANDOM",
            LbKind::WeightedRoundRobin => "LB_WEIGHTED_ROUNDROBIN",
            LbKind::LeastRequest => "LB_LEAST_REQUEST",
            LbKind::Maglev => "LB_MAGLEV",
        }
    }
}

/// A validated cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    pub name: String,
    pub lb: LbKind,
    pub hosts: Vec<HostSpec>,
    pub connect_timeout: Duration,
    /// 0 means no limit.
    pub max_request_per_conn: u32,
    pub connections_per_host: usize,
    pub keepalive: KeepaliveSpec,
    /// How long a pooled HTTP/1.1 upstream connection may sit idle before it
    /// is closed; `None` (`"0s"`, as in MOSN): never.
    pub idle_timeout: Option<Duration>,
    /// The largest RPC frame read from this cluster's hosts: the largest
    /// `max_frame_size` of the listeners (an upstream connection serves them
    /// all), and at least the default.
    pub max_frame: usize,
    /// TLS origination (`tls_context` with `status: true`).
    pub tls: Option<Arc<ClientTls>>,
}

impl ClusterSpec {
    /// Whether pools built for `self` serve `other` as they are: every
    /// setting of a connection is the same (hosts and balancer aside).
    pub fn same_pools(&self, other: &ClusterSpec) -> bool {
        self.connect_timeout == other.connect_timeout
            && self.max_request_per_conn == other.max_request_per_conn
            && self.connections_per_host == other.connections_per_host
            && self.keepalive == other.keepalive
            && self.idle_timeout == other.idle_timeout
            && self.max_frame == other.max_frame
            && self.tls == other.tls
    }
}

/// Everything a worker needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listeners: Vec<ListenerSpec>,
    pub clusters: Vec<ClusterSpec>,
    pub routers: Vec<(String, Arc<RouteTable>)>,
    pub log_level: Option<String>,
    /// `default_log_path`: "stdout", "stderr" or a file.
    pub log_path: Option<String>,
    pub graceful_timeout: Duration,
    pub workers: Option<usize>,
    /// How long a worker polls without sleeping after its last input (zero:
    /// it sleeps as soon as it has nothing to run).
    pub busy_poll: Duration,
    pub busy_poll_mode: BusyPollMode,
    /// The admin server's address (`admin` block); none without the block.
    pub admin: Option<SocketAddr>,
    /// The document as read, keys folded, as compact JSON text (for
    /// `config_dump` and one-resource changes, which parse it again; kept as
    /// text because a parsed document costs several times the route table
    /// it describes). Secrets are still in it.
    pub document: Arc<str>,
    /// Fields that were present but are not understood, by path.
    pub warnings: Vec<String>,
}

/// Reads a configuration file (JSON, or YAML by extension or content).
pub fn load_file(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))?;
    let yaml = matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
    load_str(&text, yaml)
}

/// Parses configuration text. `yaml` selects YAML; JSON otherwise.
pub fn load_str(text: &str, yaml: bool) -> Result<Settings, ConfigError> {
    let value: serde_json::Value = if yaml {
        serde_saphyr::from_str(text).map_err(|e| ConfigError::new("", format!("invalid YAML: {e}")))?
    } else {
        serde_json::from_str(text).map_err(|e| ConfigError::new("", format!("invalid JSON: {e}")))?
    };
    load_value(value)
}

/// Checks a configuration document already parsed.
pub fn load_value(mut value: serde_json::Value) -> Result<Settings, ConfigError> {
    fold_keys(&mut value);
    let mut warnings = Vec::new();
    let model: model::Config = from_value(value.clone(), "", &mut warnings)?;
    let mut settings = Settings::from_model(model, &mut warnings)?;
    settings.warnings = warnings;
    settings.document = value.to_string().into();
    Ok(settings)
}

/// Fields whose keys are the user's own data, not MOSN's schema: their keys
/// keep their case.
const FREE_FORM: [&str; 3] = ["metadata", "extend_config", "filter_metadata"];

/// Lowercases every key of the document, as MOSN's Go `encoding/json` matches
/// keys to its (lowercase) field names without regard to case: configs in
/// the wild write `"Name"` for a cluster's name. Where two keys of an object
/// fold to one, the one already lowercase wins (Go prefers an exact match).
/// Maps of the user's own keys ([`FREE_FORM`]) are left as they are.
pub fn fold_keys(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            if map.keys().any(|k| k.bytes().any(|b| b.is_ascii_uppercase())) {
                let old = std::mem::take(map);
                for (k, val) in old {
                    let lower = k.to_ascii_lowercase();
                    let exact = lower == k;
                    if exact || !map.contains_key(&lower) {
                        map.insert(lower, val);
                    }
                }
            }
            for (k, val) in map.iter_mut() {
                if !FREE_FORM.contains(&k.as_str()) {
                    fold_keys(val);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(fold_keys),
        _ => {}
    }
}

/// The kinds of resource [`replace_resource`] replaces, with where they live
/// in the document and the field that names them.
const RESOURCES: [(&str, &str, &str); 3] = [
    ("cluster", "cluster_manager.clusters", "name"),
    ("router", "servers[0].routers", "router_config_name"),
    ("listener", "servers[0].listeners", "name"),
];

/// `doc` with one resource of `kind` replaced by `config` (matched by its
/// name), added when no resource has that name, or removed when `config` is
/// `{"name": ..., "remove": true}`.
pub fn replace_resource(
    doc: &serde_json::Value,
    kind: &str,
    config: serde_json::Value,
) -> Result<serde_json::Value, ConfigError> {
    let Some(&(_, at, key)) = RESOURCES.iter().find(|(k, _, _)| *k == kind) else {
        return Err(ConfigError::new("type", format!("unknown resource type {kind:?} (cluster, router, listener)")));
    };
    let name = config
        .get(key)
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| ConfigError::new(format!("config.{key}"), "the resource needs its name"))?
        .to_string();
    let remove = config.get("remove").and_then(serde_json::Value::as_bool).unwrap_or(false);
    let mut doc = doc.clone();
    if !doc.is_object() {
        doc = serde_json::json!({});
    }
    let list = match kind {
        "cluster" => doc
            .as_object_mut()
            .map(|o| o.entry("cluster_manager").or_insert_with(|| serde_json::json!({})))
            .and_then(|cm| cm.as_object_mut())
            .map(|cm| cm.entry("clusters").or_insert_with(|| serde_json::json!([]))),
        _ => doc
            .as_object_mut()
            .map(|o| o.entry("servers").or_insert_with(|| serde_json::json!([{}])))
            .and_then(|servers| servers.as_array_mut())
            .and_then(|servers| {
                if servers.is_empty() {
                    servers.push(serde_json::json!({}));
                }
                servers[0].as_object_mut()
            })
            .map(|server| {
                server
                    .entry(if kind == "router" { "routers" } else { "listeners" })
                    .or_insert_with(|| serde_json::json!([]))
            }),
    };
    let list = list.and_then(serde_json::Value::as_array_mut).ok_or_else(|| ConfigError::new(at, "is not a list"))?;
    let found = list.iter().position(|r| r.get(key).and_then(serde_json::Value::as_str) == Some(&name));
    match (found, remove) {
        (Some(i), true) => {
            list.remove(i);
        }
        (None, true) => return Err(ConfigError::new(at, format!("no {kind} named {name:?} to remove"))),
        (Some(i), false) => list[i] = config,
        (None, false) => list.push(config),
    }
    Ok(doc)
}

/// Deserializes `value` into `T`, recording unknown fields under `prefix`.
pub fn from_value<T: DeserializeOwned>(
    value: serde_json::Value,
    prefix: &str,
    warnings: &mut Vec<String>,
) -> Result<T, ConfigError> {
    let join = |p: &str| -> String {
        match (prefix.is_empty(), p.is_empty() || p == ".") {
            (true, _) => p.to_string(),
            (false, true) => prefix.to_string(),
            (false, false) => format!("{prefix}.{p}"),
        }
    };
    let mut ignored: Vec<String> = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| ignored.push(ignored_path(&path));
    let de = serde_ignored::Deserializer::new(value, &mut record);
    let out = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ConfigError::new(join(&path), e.into_inner().to_string())
    })?;
    warnings.extend(ignored.into_iter().map(|p| format!("{}: unknown field, ignored", join(&p))));
    Ok(out)
}

/// Formats a serde_ignored path the way serde_path_to_error does: `a[0].b`.
fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => {
            let p = ignored_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => {
            ignored_path(parent)
        }
    }
}

fn parse_addr(s: &str, path: &str) -> Result<SocketAddr, ConfigError> {
    s.parse().map_err(|_| ConfigError::new(path, format!("{s:?} is not an IP:port address")))
}

impl Settings {
    /// Nothing: no listener, no cluster (what runs before the first generation).
    pub fn empty() -> Settings {
        Settings {
            listeners: Vec::new(),
            clusters: Vec::new(),
            routers: Vec::new(),
            log_level: None,
            log_path: None,
            graceful_timeout: DEFAULT_GRACEFUL_TIMEOUT,
            workers: None,
            busy_poll: DEFAULT_BUSY_POLL,
            busy_poll_mode: BusyPollMode::Awaiting,
            admin: None,
            document: Arc::from("{}"),
            warnings: Vec::new(),
        }
    }

    /// The document, parsed.
    /// The TLS files every listener and cluster read.
    pub fn tls_files(&self) -> impl Iterator<Item = &crate::tls::TlsFiles> {
        let listeners = self.listeners.iter().filter_map(|l| l.tls.as_ref()).map(|t| &t.files);
        listeners.chain(self.clusters.iter().filter_map(|c| c.tls.as_ref()).map(|t| &t.files))
    }

    pub fn document(&self) -> serde_json::Value {
        serde_json::from_str(&self.document).unwrap_or_default()
    }

    fn from_model(cfg: model::Config, warnings: &mut Vec<String>) -> Result<Settings, ConfigError> {
        let mut clusters = Vec::new();
        let mut cluster_index = HashMap::new();
        for (i, c) in cfg.cluster_manager.clusters.iter().enumerate() {
            let path = format!("cluster_manager.clusters[{i}]");
            if cluster_index.insert(c.name.clone(), i).is_some() {
                return Err(ConfigError::new(format!("{path}.name"), format!("duplicate cluster {:?}", c.name)));
            }
            clusters.push(cluster_spec(c, &path, warnings)?);
        }
        if cfg.servers.len() > 1 {
            warnings.push("servers: only the first server is used, as in MOSN".into());
        }
        let admin = admin_addr(cfg.admin.as_ref())?;
        let Some(server) = cfg.servers.into_iter().next() else {
            return Ok(Settings { clusters, admin, ..Settings::empty() });
        };

        let mut routers: Vec<(String, Arc<RouteTable>)> = Vec::new();
        for (i, r) in server.routers.iter().enumerate() {
            let path = format!("servers[0].routers[{i}]");
            if routers.iter().any(|(n, _)| *n == r.router_config_name) {
                return Err(ConfigError::new(
                    format!("{path}.router_config_name"),
                    format!("duplicate router {:?}", r.router_config_name),
                ));
            }
            let table = RouteTable::compile(r, &path, &cluster_index)?;
            routers.push((r.router_config_name.clone(), Arc::new(table)));
        }
        // MOSN's older form: a route table inline in a listener, as a
        // `connection_manager` network filter beside the proxy.
        for (i, l) in server.listeners.iter().enumerate() {
            for (k, f) in l.filter_chains.first().map_or(&[][..], |c| &c.filters[..]).iter().enumerate() {
                if f.kind != "connection_manager" {
                    continue;
                }
                let path = format!("servers[0].listeners[{i}].filter_chains[0].filters[{k}].config");
                let r: model::RouterConfiguration = from_value(f.config.clone(), &path, warnings)?;
                if routers.iter().any(|(n, _)| *n == r.router_config_name) {
                    continue;
                }
                let table = RouteTable::compile(&r, &path, &cluster_index)?;
                routers.push((r.router_config_name.clone(), Arc::new(table)));
            }
        }

        let mut listeners = Vec::new();
        for (i, l) in server.listeners.iter().enumerate() {
            let path = format!("servers[0].listeners[{i}]");
            listeners.push(listener_spec(l, &path, &routers, warnings)?);
        }
        for (i, l) in listeners.iter().enumerate() {
            if listeners[..i].iter().any(|o| o.name == l.name) {
                return Err(ConfigError::new(
                    format!("servers[0].listeners[{i}].name"),
                    format!("duplicate listener {:?}", l.name),
                ));
            }
            if listeners[..i].iter().any(|o| o.addr == l.addr) {
                return Err(ConfigError::new(
                    format!("servers[0].listeners[{i}].address"),
                    format!("{} is used by another listener", l.addr),
                ));
            }
        }

        // Never below the default: a listener's smaller limit caps what its
        // clients send, not the answers an upstream shared by all gives.
        let upstream_max_frame = listeners.iter().map(|l| l.max_frame).fold(DEFAULT_MAX_FRAME, usize::max);
        for c in &mut clusters {
            c.max_frame = upstream_max_frame;
        }

        let log_level = server.default_log_level.clone();
        if let Some(level) = &log_level {
            if crate::parse_log_level(level).is_none() {
                return Err(ConfigError::new(
                    "servers[0].default_log_level",
                    format!("unknown level {level:?} (TRACE, DEBUG, INFO, WARN, ERROR, FATAL)"),
                ));
            }
        }
        let busy_poll = server.busy_poll.map_or(DEFAULT_BUSY_POLL, |d| d.0);
        if busy_poll > MAX_BUSY_POLL {
            return Err(ConfigError::new(
                "servers[0].busy_poll",
                format!(
                    "{busy_poll:?} is more than {MAX_BUSY_POLL:?}: a worker spins its core that long after each input"
                ),
            ));
        }
        let busy_poll_mode = match server.busy_poll_mode.as_deref() {
            None | Some("awaiting") => BusyPollMode::Awaiting,
            Some("after_input") => BusyPollMode::AfterInput,
            Some(other) => {
                return Err(ConfigError::new(
                    "servers[0].busy_poll_mode",
                    format!("unknown mode {other:?} (after_input, awaiting)"),
                ))
            }
        };
        Ok(Settings {
            listeners,
            clusters,
            routers,
            log_level,
            log_path: server.default_log_path.clone(),
            graceful_timeout: server.graceful_timeout.map_or(DEFAULT_GRACEFUL_TIMEOUT, |d| d.0),
            workers: server.processor.filter(|&n| n > 0),
            busy_poll,
            busy_poll_mode,
            admin,
            document: Arc::from("{}"),
            warnings: Vec::new(),
        })
    }
}

/// The admin server's address: `admin.address.socket_address`, where an
/// empty address is 127.0.0.1. Port 0 is refused (a port the operator
/// cannot know).
fn admin_addr(admin: Option<&model::Admin>) -> Result<Option<SocketAddr>, ConfigError> {
    let Some(admin) = admin else { return Ok(None) };
    const PATH: &str = "admin.address.socket_address";
    let sa = admin
        .address
        .as_ref()
        .and_then(|a| a.socket_address.as_ref())
        .ok_or_else(|| ConfigError::new(PATH, "the admin block needs an address"))?;
    let port = sa
        .port_value
        .filter(|&p| p != 0)
        .ok_or_else(|| ConfigError::new(format!("{PATH}.port_value"), "a port between 1 and 65535 is required"))?;
    let ip = match sa.address.as_deref().map(str::trim) {
        None | Some("") => std::net::IpAddr::from([127, 0, 0, 1]),
        Some(ip) => ip
            .parse()
            .map_err(|_| ConfigError::new(format!("{PATH}.address"), format!("{ip:?} is not an IP address")))?,
    };
    Ok(Some(SocketAddr::new(ip, port)))
}

/// A TLS build error (`path: reason`) as a configuration error.
fn tls_error(e: String) -> ConfigError {
    match e.split_once(": ") {
        Some((path, reason)) => ConfigError::new(path, reason),
        None => ConfigError::new("", e),
    }
}

fn cluster_spec(c: &model::Cluster, path: &str, warnings: &mut Vec<String>) -> Result<ClusterSpec, ConfigError> {
    match c.kind.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("SIMPLE" | "STATIC") => {}
        Some(other) => {
            return Err(ConfigError::new(
                format!("{path}.type"),
                format!("cluster type {other:?} is not supported (SIMPLE, STATIC)"),
            ))
        }
    }
    let lb = match &c.lb_type {
        None => LbKind::RoundRobin,
        Some(name) => LbKind::from_name(name).ok_or_else(|| {
            ConfigError::new(
                format!("{path}.lb_type"),
                format!(
                    "unknown load balancer {name:?} (LB_ROUNDROBIN, LB_RANDOM, LB_WEIGHTED_ROUNDROBIN, LB_LEAST_REQUEST, LB_MAGLEV)"
                ),
            )
        })?,
    };
    let mut hosts = Vec::new();
    for (j, h) in c.hosts.iter().enumerate() {
        let hpath = format!("{path}.hosts[{j}]");
        let addr = parse_addr(&h.address, &format!("{hpath}.address"))?;
        // MOSN clamps weights to 1..=128.
        let weight = h.weight.unwrap_or(1).clamp(1, 128);
        hosts.push(HostSpec { addr, weight, tls_disable: h.tls_disable.unwrap_or(false) });
    }
    let tls = match &c.tls_context {
        Some(t) if t.enabled() => {
            Some(Arc::new(ClientTls::build(t, &format!("{path}.tls_context"), warnings).map_err(tls_error)?))
        }
        _ => None,
    };
    for (field, present) in [
        ("circuit_breakers", c.circuit_breakers.is_some()),
        ("health_check", c.health_check.is_some()),
        ("lb_subset_config", c.lb_subset_config.is_some()),
    ] {
        if present {
            warnings.push(format!("{path}.{field}: not implemented yet, ignored"));
        }
    }
    let mut keepalive = KeepaliveSpec::default();
    if let Some(k) = &c.keepalive {
        if let Some(d) = k.interval {
            keepalive.interval = d.0;
        }
        if let Some(d) = k.timeout {
            keepalive.timeout = d.0;
        }
        if let Some(n) = k.max_failures {
            keepalive.max_failures = n.max(1);
        }
    }
    if keepalive.interval.is_zero() || keepalive.timeout.is_zero() {
        return Err(ConfigError::new(format!("{path}.keepalive"), "interval and timeout must be positive"));
    }
    if c.idle_timeout.is_some() {
        warnings.push(format!(
            "{path}.idle_timeout: applies to pooled HTTP/1.1 upstream connections; multiplexed bolt and HTTP/2 ones stay open"
        ));
    }
    let connections_per_host = c.connections_per_host.unwrap_or(1);
    if connections_per_host == 0 {
        return Err(ConfigError::new(format!("{path}.connections_per_host"), "must be at least 1"));
    }
    Ok(ClusterSpec {
        name: c.name.clone(),
        lb,
        hosts,
        connect_timeout: c.connect_timeout.map_or(DEFAULT_CONNECT_TIMEOUT, |d| d.0),
        max_request_per_conn: c.max_request_per_conn.unwrap_or(0),
        connections_per_host,
        keepalive,
        idle_timeout: match c.idle_timeout {
            None => Some(DEFAULT_UPSTREAM_IDLE_TIMEOUT),
            Some(d) if d.0.is_zero() => None,
            Some(d) => Some(d.0),
        },
        max_frame: DEFAULT_MAX_FRAME,
        tls,
    })
}

fn listener_spec(
    l: &model::Listener,
    path: &str,
    routers: &[(String, Arc<RouteTable>)],
    warnings: &mut Vec<String>,
) -> Result<ListenerSpec, ConfigError> {
    let addr = parse_addr(&l.address, &format!("{path}.address"))?;
    // MOSN names an unnamed listener after its address.
    let name = if l.name.is_empty() { addr.to_string() } else { l.name.clone() };
    if l.log_path.as_deref().is_some_and(|p| !p.is_empty()) || l.log_level.is_some() {
        warnings.push(format!(
            "{path}.log_path: a log of the listener's own is not implemented; it logs to the process log (default_log_path)"
        ));
    }
    if l.filter_chains.len() > 1 {
        warnings.push(format!("{path}.filter_chains: only the first chain is used, as in MOSN"));
    }
    let chain = l
        .filter_chains
        .first()
        .ok_or_else(|| ConfigError::new(format!("{path}.filter_chains"), "a listener needs a filter chain"))?;
    let cpath = format!("{path}.filter_chains[0]");
    let contexts: Vec<(crate::tls::TlsContextSpec, String)> = match (&chain.tls_context, &chain.tls_context_set) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                cpath,
                "tls_context and tls_context_set can only exists one at the same time (MOSN's rule)",
            ))
        }
        (Some(t), None) => vec![(t.clone(), format!("{cpath}.tls_context"))],
        (None, Some(set)) => {
            set.iter().enumerate().map(|(i, t)| (t.clone(), format!("{cpath}.tls_context_set[{i}]"))).collect()
        }
        (None, None) => Vec::new(),
    };
    let contexts: Vec<_> = contexts.into_iter().filter(|(t, _)| t.enabled()).collect();
    let inspector = l.inspector.unwrap_or(false);
    let tls = if contexts.is_empty() {
        if inspector {
            warnings
                .push(format!("{path}.inspector: the listener has no TLS context on: every connection is plaintext"));
        }
        None
    } else {
        Some(Arc::new(ServerTls::build(&contexts, inspector, warnings).map_err(tls_error)?))
    };
    let mut proxy = None;
    for (k, f) in chain.filters.iter().enumerate() {
        let fpath = format!("{path}.filter_chains[0].filters[{k}]");
        match f.kind.as_str() {
            // A route table, read with the routers above.
            "connection_manager" => {}
            "proxy" => {
                let cfg: model::ProxyConfig = from_value(f.config.clone(), &format!("{fpath}.config"), warnings)?;
                proxy = Some((cfg, format!("{fpath}.config")));
            }
            other => {
                return Err(ConfigError::new(
                    format!("{fpath}.type"),
                    format!("network filter {other:?} is not supported yet (proxy)"),
                ))
            }
        }
    }
    let (proxy, ppath) = proxy.ok_or_else(|| {
        ConfigError::new(format!("{path}.filter_chains[0].filters"), "a listener needs a \"proxy\" filter")
    })?;
    let sub_protocol = || -> Result<&str, ConfigError> {
        proxy.extend_config.as_ref().and_then(|e| e.sub_protocol.as_deref()).ok_or_else(|| {
            ConfigError::new(format!("{ppath}.extend_config.sub_protocol"), "protocol X needs a sub_protocol")
        })
    };
    let protocol = |name: &str, field: &str| -> Result<Protocol, ConfigError> {
        Protocol::by_name(name).ok_or_else(|| {
            ConfigError::new(
                format!("{ppath}.{field}"),
                format!(
                    "unknown or unsupported protocol {name:?} ({}, Http1, Http2, Auto)",
                    crate::protocol::registry::names().join(", ")
                ),
            )
        })
    };
    let downstream_name = proxy.downstream_protocol.trim();
    let downstream = if downstream_name.eq_ignore_ascii_case("auto") {
        DownstreamProtocol::Detect(crate::protocol::registry::auto_protocols())
    } else if downstream_name.contains(',') {
        let mut list = Vec::new();
        for name in downstream_name.split(',').map(str::trim) {
            list.push(protocol(name, "downstream_protocol")?);
        }
        DownstreamProtocol::Detect(list)
    } else if downstream_name.eq_ignore_ascii_case("x") {
        DownstreamProtocol::Fixed(protocol(sub_protocol()?, "extend_config.sub_protocol")?)
    } else {
        DownstreamProtocol::Fixed(protocol(downstream_name, "downstream_protocol")?)
    };
    let upstream = match proxy.upstream_protocol.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(p) if p.eq_ignore_ascii_case("auto") => None,
        Some(p) if p.eq_ignore_ascii_case("x") => Some(protocol(sub_protocol()?, "extend_config.sub_protocol")?),
        Some(p) => Some(protocol(p, "upstream_protocol")?),
    };
    if let (Some(up), DownstreamProtocol::Fixed(down)) = (upstream, &downstream) {
        let same_family = match (up, down) {
            (Protocol::Rpc(u), Protocol::Rpc(d)) => u.family() == d.family(),
            (u, d) => u.is_http() && d.is_http(),
        };
        if !same_family {
            return Err(ConfigError::new(
                format!("{ppath}.upstream_protocol"),
                format!("converting {} to {} is not supported", down.name(), up.name()),
            ));
        }
    }
    let router =
        routers.iter().find(|(n, _)| *n == proxy.router_config_name).map(|(_, t)| t.clone()).ok_or_else(|| {
            ConfigError::new(
                format!("{ppath}.router_config_name"),
                format!("no router named {:?} in servers[0].routers", proxy.router_config_name),
            )
        })?;
    let max_frame = proxy.max_frame_size.unwrap_or(DEFAULT_MAX_FRAME);
    if max_frame < 64 {
        return Err(ConfigError::new(format!("{ppath}.max_frame_size"), "must be at least 64 bytes"));
    }
    // The HTTP/1.1 connection timer is re-armed at most this far ahead: zero
    // would make it fire without end (and cut every head at once).
    if proxy.header_read_timeout.as_ref().is_some_and(|d| d.0.is_zero()) {
        return Err(ConfigError::new(format!("{ppath}.header_read_timeout"), "must be positive"));
    }
    if proxy.stream_idle_timeout.as_ref().is_some_and(|d| d.0.is_zero()) {
        return Err(ConfigError::new(format!("{ppath}.stream_idle_timeout"), "must be positive"));
    }
    let mut filters = Vec::new();
    for (k, f) in l.stream_filters.iter().enumerate() {
        let fpath = format!("{path}.stream_filters[{k}]");
        match FilterSpec::parse(&f.kind, f.config.clone(), &fpath, warnings)? {
            Some(spec) => filters.push(spec),
            None => warnings.push(format!("{fpath}.type: unknown stream filter {:?}, skipped (as MOSN does)", f.kind)),
        }
    }
    Ok(ListenerSpec {
        name: name.clone(),
        addr,
        downstream,
        upstream,
        router,
        router_name: proxy.router_config_name.clone(),
        idle_timeout: match l.connection_idle_timeout {
            None => DEFAULT_IDLE_TIMEOUT,
            // MOSN: zero keeps idle connections open.
            Some(d) if d.0.is_zero() => NO_IDLE_TIMEOUT,
            Some(d) => d.0,
        },
        max_frame,
        header_read_timeout: proxy.header_read_timeout.map_or(Duration::from_secs(10), |d| d.0),
        stream_idle_timeout: proxy.stream_idle_timeout.map_or(DEFAULT_STREAM_IDLE_TIMEOUT, |d| d.0),
        http1_passthrough: proxy.http1_passthrough.unwrap_or(true),
        filters,
        access_logs: access_logs(l, &name, path)?,
        tls,
    })
}

fn access_logs(l: &model::Listener, name: &str, path: &str) -> Result<Vec<AccessLogSpec>, ConfigError> {
    let mut out = Vec::new();
    for (i, a) in l.access_logs.iter().enumerate() {
        let format = crate::accesslog::Format::parse(&a.log_format)
            .map_err(|e| ConfigError::new(format!("{path}.access_logs[{i}].log_format"), e.0))?;
        let path = if a.log_path.is_empty() { format!("{name}_access.log") } else { a.log_path.clone() };
        out.push(AccessLogSpec { path, format: Arc::new(format) });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
