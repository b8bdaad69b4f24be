//! Route tables: virtual hosts, match rules and what a matched route does.
//!
//! RPC routes match on headers (MOSN's `match.headers`): every listed header
//! must match, exactly or by an anchored regex. MOSN's fast path is kept: a
//! value of `".*"` means "present and non-empty" and needs no regex engine.
//! Cluster names are resolved to indices when the table is compiled, so a
//! route never looks a cluster up by name on the hot path, and a route to an
//! undefined cluster is a configuration error rather than a runtime 404.

use std::collections::HashMap;
use std::time::Duration;

use regex::bytes::Regex;

use crate::config::model::{RouterConfiguration, RouterMatch};
use crate::config::ConfigError;

/// How one header is compared.
#[derive(Debug)]
pub enum HeaderMatch {
    Exact {
        name: String,
        value: Vec<u8>,
    },
    Regex {
        name: String,
        re: Regex,
    },
    /// MOSN's `".*"`: present and non-empty.
    Present {
        name: String,
    },
}

impl HeaderMatch {
    fn matches<'a>(&self, header: &dyn Fn(&str) -> Option<&'a [u8]>) -> bool {
        match self {
            HeaderMatch::Exact { name, value } => header(name) == Some(value.as_slice()),
            HeaderMatch::Regex { name, re } => header(name).is_some_and(|v| re.is_match(v)),
            HeaderMatch::Present { name } => header(name).is_some_and(|v| !v.is_empty()),
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
}

/// What a matched route does.
#[derive(Debug)]
pub struct RouteEntry {
    pub target: Target,
    /// The route timeout; the frame's own timeout wins when it has one.
    pub timeout: Option<Duration>,
    /// Extra attempts after a failed connect (on other hosts).
    pub connect_retries: u32,
    /// Header whose value feeds consistent-hash load balancers.
    pub hash_header: Option<String>,
}

impl RouteEntry {
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
            Target::Direct { .. } => None,
        }
    }
}

#[derive(Debug)]
struct Route {
    headers: Vec<HeaderMatch>,
    entry: RouteEntry,
}

#[derive(Debug)]
struct VirtualHost {
    name: String,
    domains: Vec<String>,
    routes: Vec<Route>,
}

/// A compiled `routers[]` entry.
#[derive(Debug)]
pub struct RouteTable {
    name: String,
    vhosts: Vec<VirtualHost>,
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
        let mut vhosts = Vec::new();
        for (v, vh) in cfg.virtual_hosts.iter().enumerate() {
            let vpath = format!("{path}.virtual_hosts[{v}]");
            let mut routes = Vec::new();
            for (r, rc) in vh.routers.iter().enumerate() {
                let rpath = format!("{vpath}.routers[{r}]");
                routes.push(compile_route(rc, &rpath, clusters)?);
            }
            let domains = if vh.domains.is_empty() { vec!["*".to_string()] } else { vh.domains.clone() };
            vhosts.push(VirtualHost { name: vh.name.clone(), domains, routes });
        }
        Ok(RouteTable { name: cfg.router_config_name.clone(), vhosts })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of routes over all virtual hosts.
    pub fn route_count(&self) -> usize {
        self.vhosts.iter().map(|v| v.routes.len()).sum()
    }

    /// The virtual host for `host` (exact, `*.suffix`, then `*`); RPC traffic
    /// has no host and gets the `*` host, or the first one.
    fn vhost(&self, host: Option<&str>) -> Option<&VirtualHost> {
        if let Some(host) = host {
            let host = host.to_ascii_lowercase();
            if let Some(v) = self.vhosts.iter().find(|v| v.domains.iter().any(|d| d.eq_ignore_ascii_case(&host))) {
                return Some(v);
            }
            let suffix = self
                .vhosts
                .iter()
                .flat_map(|v| v.domains.iter().map(move |d| (v, d)))
                .filter(|(_, d)| d.starts_with("*.") || (d.starts_with('*') && d.len() > 1))
                .filter(|(_, d)| host.ends_with(&d[1..].to_ascii_lowercase()))
                .max_by_key(|(_, d)| d.len());
            if let Some((v, _)) = suffix {
                return Some(v);
            }
        }
        self.vhosts.iter().find(|v| v.domains.iter().any(|d| d == "*")).or_else(|| self.vhosts.first())
    }

    /// The first route whose rules all match. `header` looks a header up.
    pub fn route<'a>(&self, host: Option<&str>, header: &dyn Fn(&str) -> Option<&'a [u8]>) -> Option<&RouteEntry> {
        let vh = self.vhost(host)?;
        vh.routes.iter().find(|r| r.headers.iter().all(|m| m.matches(header))).map(|r| &r.entry)
    }

    /// Virtual host names, for `ferrymesh check`.
    pub fn vhost_names(&self) -> impl Iterator<Item = &str> {
        self.vhosts.iter().map(|v| v.name.as_str())
    }
}

fn compile_headers(m: &RouterMatch, path: &str) -> Result<Vec<HeaderMatch>, ConfigError> {
    for (field, set) in [("prefix", &m.prefix), ("path", &m.path), ("regex", &m.regex)] {
        if set.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(ConfigError::new(
                format!("{path}.{field}"),
                "path matching needs an HTTP listener, which is not implemented yet",
            ));
        }
    }
    let mut out = Vec::new();
    for (h, hm) in m.headers.iter().enumerate() {
        let name = hm.name.to_ascii_lowercase();
        let matcher = if hm.value == ".*" {
            HeaderMatch::Present { name }
        } else if hm.regex {
            let re = Regex::new(&format!("^(?:{})$", hm.value))
                .map_err(|e| ConfigError::new(format!("{path}.headers[{h}].value"), format!("invalid regex: {e}")))?;
            HeaderMatch::Regex { name, re }
        } else {
            HeaderMatch::Exact { name, value: hm.value.as_bytes().to_vec() }
        };
        out.push(matcher);
    }
    Ok(out)
}

fn compile_route(
    rc: &crate::config::model::Router,
    path: &str,
    clusters: &HashMap<String, usize>,
) -> Result<Route, ConfigError> {
    let headers = compile_headers(&rc.match_, &format!("{path}.match"))?;
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
    } else {
        let action = action.ok_or_else(|| ConfigError::new(path, "a router needs \"route\" or \"direct_response\""))?;
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
    let retry = action.and_then(|a| a.retry_policy.as_ref());
    let connect_retries = match retry {
        Some(p) if p.retry_on => p.num_retries,
        _ => DEFAULT_CONNECT_RETRIES,
    };
    Ok(Route {
        headers,
        entry: RouteEntry {
            target,
            timeout: action.and_then(|a| a.timeout).map(|d| d.0).filter(|d| !d.is_zero()),
            connect_retries,
            hash_header: action
                .and_then(|a| a.hash_policy.iter().find_map(|h| h.header.as_ref().map(|h| h.key.clone()))),
        },
    })
}

#[cfg(test)]
mod tests;
