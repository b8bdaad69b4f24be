//! Route tables: virtual hosts, match rules and what a matched route does.
//!
//! RPC routes match on headers (MOSN's `match.headers`): every listed header
//! must match, exactly or by an anchored regex. MOSN's fast path is kept: a
//! value of `".*"` means "present and non-empty" and needs no regex engine.
//! HTTP routes add the path (exact, prefix, regex), headers including the
//! `:method` and `:authority` pseudo-headers, and query parameters. Cluster
//! names are resolved to indices when the table is compiled, so a route never
//! looks a cluster up by name on the hot path, and a route to an undefined
//! cluster is a configuration error rather than a runtime 404.

pub mod domains;
mod index;
#[cfg(test)]
mod linear;
pub mod retry;
mod trie;

use std::collections::HashMap;
use std::time::Duration;

use regex::bytes::Regex;

use crate::config::model::{HeaderValueOption, RouterConfiguration, RouterMatch};
use crate::config::ConfigError;
use domains::DomainIndex;
use index::RouteIndex;
pub use retry::{RetryOn, RetryPolicy};

/// How one header (or query parameter) is compared.
#[derive(Debug)]
pub enum ValueMatch {
    Exact(Vec<u8>),
    Regex(Regex),
    /// Present, any value (Envoy's `present_match`).
    Present,
    /// MOSN's `".*"`: present and non-empty.
    NonEmpty,
}

impl ValueMatch {
    fn matches(&self, v: Option<&[u8]>) -> bool {
        match (self, v) {
            (_, None) => false,
            (ValueMatch::Exact(want), Some(v)) => want == v,
            (ValueMatch::Regex(re), Some(v)) => re.is_match(v),
            (ValueMatch::Present, Some(_)) => true,
            (ValueMatch::NonEmpty, Some(v)) => !v.is_empty(),
        }
    }
}

#[derive(Debug)]
pub struct HeaderMatch {
    pub name: String,
    pub value: ValueMatch,
}

#[derive(Debug)]
enum PathMatch {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

impl PathMatch {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Regex(re) => re.is_match(path.as_bytes()),
        }
    }
}

/// Where a matched request goes.
#[derive(Debug)]
pub enum Target {
    /// One cluster, by index into the worker's cluster list.
    Cluster(usize),
    /// Clusters picked by weight; `total` is the sum of the weights.
    Weighted { clusters: Vec<(usize, u32)>, total: u32 },
    /// Answer at once with this (HTTP-like) status and body.
    Direct { status: u16, body: String },
    /// HTTP redirect (boxed: rare, and four times the size of the others).
    Redirect(Box<Redirect>),
}

#[derive(Debug, Clone)]
pub struct Redirect {
    pub code: u16,
    pub path: Option<String>,
    pub host: Option<String>,
    pub scheme: Option<String>,
}

/// A header to add: name, value, and whether to append to an existing value.
#[derive(Debug, Clone)]
pub struct AddHeader {
    pub name: http::HeaderName,
    pub value: http::HeaderValue,
    pub append: bool,
}

/// HTTP rewrites and header operations of a route.
#[derive(Debug, Default)]
pub struct HttpActions {
    /// The matched prefix is replaced by this.
    pub prefix_rewrite: Option<(String, String)>,
    pub host_rewrite: Option<http::HeaderValue>,
    pub request_add: Vec<AddHeader>,
    pub request_remove: Vec<http::HeaderName>,
    pub response_add: Vec<AddHeader>,
    pub response_remove: Vec<http::HeaderName>,
}

/// The actions of a route that has none (most RPC routes).
static NO_ACTIONS: HttpActions = HttpActions {
    prefix_rewrite: None,
    host_rewrite: None,
    request_add: Vec::new(),
    request_remove: Vec::new(),
    response_add: Vec::new(),
    response_remove: Vec::new(),
};

impl HttpActions {
    fn is_empty(&self) -> bool {
        self.prefix_rewrite.is_none()
            && self.host_rewrite.is_none()
            && self.request_add.is_empty()
            && self.request_remove.is_empty()
            && self.response_add.is_empty()
            && self.response_remove.is_empty()
    }
}

/// What a matched route does.
#[derive(Debug)]
pub struct RouteEntry {
    pub target: Target,
    /// The route timeout; the frame's own timeout wins when it has one.
    pub timeout: Option<Duration>,
    /// Extra attempts after a failed connect (on other hosts).
    pub connect_retries: u32,
    /// When and how often HTTP requests are tried again.
    pub retry: RetryPolicy,
    /// Header whose value feeds consistent-hash load balancers.
    pub hash_header: Option<String>,
    /// `None` when the route has no HTTP actions, which saves most of a
    /// route's memory in a table of 10,000 RPC routes ([`RouteEntry::http`]).
    http: Option<Box<HttpActions>>,
}

impl RouteEntry {
    /// A plain route to one cluster: no timeout, retries or actions.
    #[cfg(test)]
    pub fn to_cluster(cluster: usize) -> RouteEntry {
        RouteEntry {
            target: Target::Cluster(cluster),
            timeout: None,
            connect_retries: 0,
            retry: RetryPolicy::default(),
            hash_header: None,
            http: None,
        }
    }

    /// The route's HTTP rewrites and header operations.
    pub fn http(&self) -> &HttpActions {
        self.http.as_deref().unwrap_or(&NO_ACTIONS)
    }

    /// The cluster for a request: a random draw only among weighted
    /// clusters (a plain route reads no random number).
    pub fn choose_cluster(&self) -> Option<usize> {
        match &self.target {
            Target::Cluster(c) => Some(*c),
            _ => self.pick_cluster(fastrand::u32(..)),
        }
    }

    /// The cluster for this request; `roll` is a random number.
    pub fn pick_cluster(&self, roll: u32) -> Option<usize> {
        match &self.target {
            Target::Cluster(c) => Some(*c),
            Target::Weighted { clusters, total } => {
                let mut point = roll % (*total).max(1);
                for &(c, w) in clusters {
                    if point < w {
                        return Some(c);
                    }
                    point -= w;
                }
                clusters.last().map(|&(c, _)| c)
            }
            Target::Direct { .. } | Target::Redirect(_) => None,
        }
    }
}

#[derive(Debug)]
struct Route {
    path: Option<PathMatch>,
    headers: Vec<HeaderMatch>,
    query: Vec<(String, ValueMatch)>,
    /// Shared, so an HTTP request can hold its route across awaits.
    entry: std::sync::Arc<RouteEntry>,
}

impl Route {
    /// Whether every rule of the route matches.
    fn matches(&self, input: &RouteInput<'_, '_>) -> bool {
        self.path.as_ref().is_none_or(|p| input.path.is_some_and(|path| p.matches(path)))
            && self.headers.iter().all(|m| m.value.matches((input.header)(&m.name)))
            && self.query.iter().all(|(name, m)| m.matches(query_param(input.query, name)))
    }
}

#[derive(Debug)]
struct VirtualHost {
    name: Box<str>,
    /// Only the linear oracle reads them; the requests find a virtual host
    /// through the table's [`DomainIndex`].
    #[cfg(test)]
    domains: Box<[Box<str>]>,
    routes: Vec<Route>,
    index: RouteIndex,
}

/// A compiled `routers[]` entry.
#[derive(Debug)]
pub struct RouteTable {
    name: String,
    vhosts: Vec<VirtualHost>,
    domains: DomainIndex,
    /// The one header an RPC request's route depends on ([`Self::rpc_key`]).
    rpc_key: Option<Box<str>>,
    /// How long `compile` took, for `ferrymesh check` and the logs.
    built_in: Duration,
}

/// A route's place in its table, for [`RouteTable::entry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutePos {
    vhost: u32,
    route: u32,
}

/// What a request offers the matcher.
pub struct RouteInput<'a, 'h> {
    /// The Host / :authority, without port; `None` for RPC.
    pub host: Option<&'a str>,
    /// The path, without the query; `None` for RPC.
    pub path: Option<&'a str>,
    pub query: Option<&'a str>,
    pub header: &'a dyn Fn(&str) -> Option<&'h [u8]>,
}

/// Default retries after a connect failure when a route has no retry policy:
/// MOSN retries connection failures even without one.
pub const DEFAULT_CONNECT_RETRIES: u32 = 2;

impl RouteTable {
    pub fn compile(
        cfg: &RouterConfiguration,
        path: &str,
        clusters: &HashMap<String, usize>,
    ) -> Result<RouteTable, ConfigError> {
        let started = std::time::Instant::now();
        let mut vhosts = Vec::with_capacity(cfg.virtual_hosts.len());
        // Each domain once, as MOSN and Envoy require: which host a request
        // meant must not depend on the order of the list.
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut all_domains = Vec::with_capacity(cfg.virtual_hosts.len());
        for (v, vh) in cfg.virtual_hosts.iter().enumerate() {
            let vpath = format!("{path}.virtual_hosts[{v}]");
            let mut routes = Vec::with_capacity(vh.routers.len());
            for (r, rc) in vh.routers.iter().enumerate() {
                routes.push(compile_route(rc, &format!("{vpath}.routers[{r}]"), clusters)?);
            }
            let domains: Box<[Box<str>]> = if vh.domains.is_empty() {
                Box::new(["*".into()])
            } else {
                vh.domains.iter().map(|d| d.as_str().into()).collect()
            };
            for (d, domain) in domains.iter().enumerate() {
                if domain.is_empty() {
                    return Err(ConfigError::new(format!("{vpath}.domains[{d}]"), "empty domain"));
                }
                if let Some(first) = seen.insert(domain.to_ascii_lowercase(), v) {
                    return Err(ConfigError::new(
                        format!("{vpath}.domains[{d}]"),
                        format!("{domain:?} is also a domain of {path}.virtual_hosts[{first}]; each domain belongs to one virtual host"),
                    ));
                }
            }
            let index = RouteIndex::build(&routes);
            vhosts.push(VirtualHost {
                name: vh.name.as_str().into(),
                #[cfg(test)]
                domains: domains.clone(),
                routes,
                index,
            });
            all_domains.push(domains);
        }
        let domains = DomainIndex::build(all_domains.iter().map(|d| &**d));
        let rpc_key = match domains.find(None) {
            Some(v) => only_header(&vhosts[v as usize].routes),
            // No virtual host for RPC: every request misses alike.
            None => Some(NO_KEY.into()),
        };
        Ok(RouteTable { name: cfg.router_config_name.clone(), vhosts, domains, rpc_key, built_in: started.elapsed() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of routes over all virtual hosts.
    pub fn route_count(&self) -> usize {
        self.vhosts.iter().map(|v| v.routes.len()).sum()
    }

    /// Number of virtual hosts.
    pub fn vhost_count(&self) -> usize {
        self.vhosts.len()
    }

    /// How long compiling the table took.
    pub fn built_in(&self) -> Duration {
        self.built_in
    }

    /// The first route whose rules all match, for a request that has only
    /// headers (and maybe a host): the tests' way in. RPC requests go
    /// through [`Self::rpc_route`], which the connection's memo can keep.
    #[cfg(test)]
    pub fn route<'h>(&self, host: Option<&str>, header: &dyn Fn(&str) -> Option<&'h [u8]>) -> Option<&RouteEntry> {
        self.find(&RouteInput { host, path: None, query: None, header }).map(|e| &**e)
    }

    /// Where the first RPC route (no host) whose rules all match is.
    pub fn rpc_route<'h>(&self, header: &dyn Fn(&str) -> Option<&'h [u8]>) -> Option<RoutePos> {
        let input = RouteInput { host: None, path: None, query: None, header };
        let vhost = self.domains.find(None)?;
        let vh = &self.vhosts[vhost as usize];
        vh.index.find(&vh.routes, &input).map(|r| RoutePos { vhost, route: r as u32 })
    }

    /// The route at `pos`, which [`Self::rpc_route`] of this table gave.
    pub fn entry(&self, pos: RoutePos) -> &RouteEntry {
        &self.vhosts[pos.vhost as usize].routes[pos.route as usize].entry
    }

    /// The one header whose value alone decides an RPC request's route,
    /// when the routes RPC requests meet test no other (bolt's `service`,
    /// nearly always): [`Self::rpc_route`] is then a function of that
    /// value, and a connection may keep its last answer for the next
    /// request that sends the same value (`proxy::rpc`). A path or query
    /// rule never matches an RPC request, so it does not count.
    pub fn rpc_key(&self) -> Option<&str> {
        self.rpc_key.as_deref()
    }

    /// The first route whose rules all match, in the virtual host the
    /// request's host selects ([`domains`]), found through the virtual host's
    /// [`index`].
    pub fn find(&self, input: &RouteInput<'_, '_>) -> Option<&std::sync::Arc<RouteEntry>> {
        let vh = &self.vhosts[self.domains.find(input.host)? as usize];
        vh.index.find(&vh.routes, input).map(|r| &vh.routes[r].entry)
    }

    /// Virtual host names, for `ferrymesh check`.
    pub fn vhost_names(&self) -> impl Iterator<Item = &str> {
        self.vhosts.iter().map(|v| &*v.name)
    }
}

/// The key of a table whose RPC routes test no header (its answer is the
/// same for every request; any name serves).
const NO_KEY: &str = "service";

/// The one header name the routes of `routes` that an RPC request can meet
/// test, if they test at most one. A route with a path or query rule never
/// matches an RPC request (it has neither).
fn only_header(routes: &[Route]) -> Option<Box<str>> {
    let rpc = routes.iter().filter(|r| r.path.is_none() && r.query.is_empty());
    let mut names = rpc.flat_map(|r| &r.headers).map(|h| h.name.as_str());
    let first = names.next().unwrap_or(NO_KEY);
    names.all(|n| n == first).then(|| first.into())
}

/// The raw value of query parameter `name` (not percent-decoded).
fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a [u8]> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v.as_bytes())
    })
}

fn value_match(value: &str, regex: bool, present: bool, path: &str) -> Result<ValueMatch, ConfigError> {
    Ok(if present {
        ValueMatch::Present
    } else if value == ".*" {
        ValueMatch::NonEmpty
    } else if regex {
        ValueMatch::Regex(
            Regex::new(&format!("^(?:{value})$"))
                .map_err(|e| ConfigError::new(format!("{path}.value"), format!("invalid regex: {e}")))?,
        )
    } else {
        ValueMatch::Exact(value.as_bytes().to_vec())
    })
}

/// A compiled `match`: path rule, header rules, query rules.
type Matchers = (Option<PathMatch>, Vec<HeaderMatch>, Vec<(String, ValueMatch)>);

fn compile_match(m: &RouterMatch, path: &str) -> Result<Matchers, ConfigError> {
    let set = |s: &Option<String>| s.as_deref().filter(|s| !s.is_empty()).map(str::to_string);
    let kinds = [set(&m.path), set(&m.prefix), set(&m.regex)];
    if kinds.iter().filter(|k| k.is_some()).count() > 1 {
        return Err(ConfigError::new(path, "use only one of path, prefix and regex"));
    }
    let path_match = match kinds {
        [Some(p), _, _] => Some(PathMatch::Exact(p)),
        [_, Some(p), _] => Some(PathMatch::Prefix(p)),
        [_, _, Some(r)] => Some(PathMatch::Regex(
            Regex::new(&format!("^(?:{r})$"))
                .map_err(|e| ConfigError::new(format!("{path}.regex"), format!("invalid regex: {e}")))?,
        )),
        _ => None,
    };
    let mut headers = Vec::new();
    for (h, hm) in m.headers.iter().enumerate() {
        let value = value_match(&hm.value, hm.regex, hm.present, &format!("{path}.headers[{h}]"))?;
        headers.push(HeaderMatch { name: hm.name.to_ascii_lowercase(), value });
    }
    let mut query = Vec::new();
    for (q, qm) in m.query_parameters.iter().enumerate() {
        let value = value_match(&qm.value, qm.regex, qm.present, &format!("{path}.query_parameters[{q}]"))?;
        query.push((qm.name.clone(), value));
    }
    Ok((path_match, headers, query))
}

fn header_name(name: &str, path: &str) -> Result<http::HeaderName, ConfigError> {
    http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
        .map_err(|_| ConfigError::new(path, format!("{name:?} is not a valid header name")))
}

fn add_headers(list: &[HeaderValueOption], path: &str) -> Result<Vec<AddHeader>, ConfigError> {
    let mut out = Vec::new();
    for (i, h) in list.iter().enumerate() {
        let p = format!("{path}[{i}].header");
        out.push(AddHeader {
            name: header_name(&h.header.key, &format!("{p}.key"))?,
            value: http::HeaderValue::from_str(&h.header.value)
                .map_err(|_| ConfigError::new(format!("{p}.value"), "not a valid header value"))?,
            append: h.append,
        });
    }
    Ok(out)
}

/// A host (and port) as Host and `:authority` carry it.
fn authority(value: &str, path: &str) -> Result<http::HeaderValue, ConfigError> {
    let valid = value.parse::<http::uri::Authority>().is_ok_and(|a| !a.as_str().contains('@'));
    match http::HeaderValue::from_str(value) {
        Ok(v) if valid => Ok(v),
        _ => Err(ConfigError::new(path, format!("{value:?} is not a valid host[:port]"))),
    }
}

fn remove_headers(list: &[String], path: &str) -> Result<Vec<http::HeaderName>, ConfigError> {
    list.iter().enumerate().map(|(i, n)| header_name(n, &format!("{path}[{i}]"))).collect()
}

fn compile_route(
    rc: &crate::config::model::Router,
    path: &str,
    clusters: &HashMap<String, usize>,
) -> Result<Route, ConfigError> {
    let (path_match, headers, query) = compile_match(&rc.match_, &format!("{path}.match"))?;
    let lookup = |name: &str, field: String| -> Result<usize, ConfigError> {
        clusters
            .get(name)
            .copied()
            .ok_or_else(|| ConfigError::new(field, format!("no cluster named {name:?} in cluster_manager.clusters")))
    };
    let action = rc.route.as_ref();
    let target = if let Some(d) = &rc.direct_response {
        if !(100..=999).contains(&d.status) {
            return Err(ConfigError::new(format!("{path}.direct_response.status"), "must be 100..999"));
        }
        Target::Direct { status: d.status, body: d.body.clone() }
    } else if let Some(r) = &rc.redirect {
        let code = r.response_code.unwrap_or(301);
        if ![301, 302, 303, 307, 308].contains(&code) {
            return Err(ConfigError::new(
                format!("{path}.redirect.response_code"),
                "must be 301, 302, 303, 307 or 308",
            ));
        }
        Target::Redirect(Box::new(Redirect {
            code,
            path: r.path_redirect.clone().filter(|s| !s.is_empty()),
            host: r.host_redirect.clone().filter(|s| !s.is_empty()),
            scheme: r.scheme_redirect.clone().filter(|s| !s.is_empty()),
        }))
    } else {
        let action = action
            .ok_or_else(|| ConfigError::new(path, "a router needs \"route\", \"direct_response\" or \"redirect\""))?;
        if !action.weighted_clusters.is_empty() {
            let mut list = Vec::new();
            for (w, wc) in action.weighted_clusters.iter().enumerate() {
                let idx = lookup(&wc.cluster.name, format!("{path}.route.weighted_clusters[{w}].cluster.name"))?;
                list.push((idx, wc.cluster.weight));
            }
            let total: u32 = list.iter().map(|(_, w)| *w).sum();
            if total == 0 {
                return Err(ConfigError::new(format!("{path}.route.weighted_clusters"), "weights add up to 0"));
            }
            Target::Weighted { clusters: list, total }
        } else {
            let name =
                action.cluster_name.as_deref().filter(|n| !n.is_empty()).ok_or_else(|| {
                    ConfigError::new(format!("{path}.route"), "needs cluster_name or weighted_clusters")
                })?;
            Target::Cluster(lookup(name, format!("{path}.route.cluster_name"))?)
        }
    };
    let retry = match action.and_then(|a| a.retry_policy.as_ref()) {
        Some(p) => RetryPolicy::compile(p, &format!("{path}.route.retry_policy"))?,
        None => RetryPolicy::default(),
    };
    let connect_retries = if retry.on.is_empty() { DEFAULT_CONNECT_RETRIES } else { retry.num_retries };
    let mut http_actions = HttpActions::default();
    if let Some(a) = action {
        let rpath = format!("{path}.route");
        if let Some(rewrite) = a.prefix_rewrite.as_ref().filter(|s| !s.is_empty()) {
            let Some(PathMatch::Prefix(prefix) | PathMatch::Exact(prefix)) = &path_match else {
                return Err(ConfigError::new(format!("{rpath}.prefix_rewrite"), "needs a prefix or path match"));
            };
            // It becomes the front of every request target: a path of
            // plain bytes, so that no rewritten request line is malformed.
            if !rewrite.starts_with('/') || !rewrite.bytes().all(crate::protocol::http::h1::is_target_byte) {
                return Err(ConfigError::new(format!("{rpath}.prefix_rewrite"), "not a valid path (starting with /)"));
            }
            http_actions.prefix_rewrite = Some((prefix.clone(), rewrite.clone()));
        }
        if let Some(h) = a.host_rewrite.as_ref().filter(|s| !s.is_empty()) {
            http_actions.host_rewrite = Some(authority(h, &format!("{rpath}.host_rewrite"))?);
        }
        http_actions.request_add = add_headers(&a.request_headers_to_add, &format!("{rpath}.request_headers_to_add"))?;
        // What the proxy's header rules (`proxy::headers`) keep for
        // themselves: the request's framing, the connection's own fields, and
        // Host, which a route sets (as `host_rewrite` does) but never removes.
        for (i, add) in http_actions.request_add.iter().enumerate() {
            let p = format!("{rpath}.request_headers_to_add[{i}].header");
            if crate::protocol::http::h1::classify(add.name.as_str()).is_per_hop() {
                return Err(ConfigError::new(
                    format!("{p}.key"),
                    "frames the request or concerns only one hop (hop-by-hop, Expect): not a route's to add",
                ));
            }
            if add.name == http::header::HOST {
                authority(add.value.to_str().unwrap_or(""), &format!("{p}.value"))?;
            }
        }
        http_actions.response_add =
            add_headers(&a.response_headers_to_add, &format!("{rpath}.response_headers_to_add"))?;
        http_actions.request_remove =
            remove_headers(&a.request_headers_to_remove, &format!("{rpath}.request_headers_to_remove"))?;
        if let Some(i) = http_actions.request_remove.iter().position(|n| n == http::header::HOST) {
            return Err(ConfigError::new(
                format!("{rpath}.request_headers_to_remove[{i}]"),
                "Host cannot be removed (HTTP/1.1 requires it); use host_rewrite to change it",
            ));
        }
        http_actions.response_remove =
            remove_headers(&a.response_headers_to_remove, &format!("{rpath}.response_headers_to_remove"))?;
    }
    Ok(Route {
        path: path_match,
        headers,
        query,
        entry: std::sync::Arc::new(RouteEntry {
            target,
            timeout: action.and_then(|a| a.timeout).map(|d| d.0).filter(|d| !d.is_zero()),
            connect_retries,
            retry,
            hash_header: action
                .and_then(|a| a.hash_policy.iter().find_map(|h| h.header.as_ref().map(|h| h.key.clone()))),
            http: (!http_actions.is_empty()).then(|| Box::new(http_actions)),
        }),
    })
}

#[cfg(test)]
mod tests;
