//! `ip_access`: allow or deny requests by the client's address, in MOSN's
//! schema: `{"header": "", "default_action": "allow" | "deny", "ips":
//! [{"action": "allow" | "deny", "addrs": ["10.0.0.0/8", "127.0.0.1"]}]}`.
//! The address is the named request header's value when `header` is set and
//! present, else the connection's. Rules are tried in order; the first whose
//! addresses hold it decides; with none, the request passes unless
//! `default_action` is `deny`. A refused request is answered at once with
//! the protocol's "forbidden" error (bolt: status 2, as MOSN's 403).

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

use super::{FilterStatus, RequestCtx, StreamFilter};
use crate::config::{from_value, ConfigError};
use crate::error::ProxyError;

/// An address block, `addr/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip.trim().parse().map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                p.trim().parse::<u8>().ok().filter(|&p| p <= max).ok_or_else(|| format!("bad prefix in {s:?}"))?
            }
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// One rule: what happens to an address in `blocks`.
#[derive(Debug, Clone)]
struct Rule {
    allow: bool,
    blocks: Vec<Cidr>,
}

#[derive(Debug, Clone)]
pub struct IpAccess {
    /// Read the client's address from this request header when present.
    header: Option<String>,
    rules: Vec<Rule>,
    /// When no rule decides: MOSN lets the request through unless this is
    /// `deny`.
    default_allow: bool,
}

/// MOSN's schema (`pkg/filter/stream/ipaccess`).
#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    header: String,
    #[serde(default)]
    default_action: String,
    #[serde(default)]
    ips: Vec<RawRule>,
    /// ferrymesh's earlier form, still read: `{"allow": [..]}` or `{"deny": [..]}`.
    #[serde(default)]
    allow: Option<Vec<String>>,
    #[serde(default)]
    deny: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawRule {
    action: String,
    #[serde(default)]
    addrs: Vec<String>,
}

fn blocks(list: &[String], path: &str) -> Result<Vec<Cidr>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, s)| Cidr::parse(s).map_err(|e| ConfigError::new(format!("{path}[{i}]"), e)))
        .collect()
}

fn action(s: &str, path: &str) -> Result<bool, ConfigError> {
    match s.to_ascii_lowercase().as_str() {
        "allow" => Ok(true),
        "deny" => Ok(false),
        other => Err(ConfigError::new(path, format!("{other:?} is not \"allow\" or \"deny\""))),
    }
}

impl IpAccess {
    /// MOSN's `{"header", "default_action", "ips": [{"action", "addrs"}]}`;
    /// an address that does not parse is refused with its path (MOSN skips
    /// it at match time).
    pub fn parse(config: serde_json::Value, path: &str, warnings: &mut Vec<String>) -> Result<IpAccess, ConfigError> {
        let raw: Raw = from_value(config, path, warnings)?;
        let legacy = match (&raw.allow, &raw.deny) {
            (None, None) => None,
            (Some(a), None) => Some((true, blocks(a, &format!("{path}.allow"))?)),
            (None, Some(d)) => Some((false, blocks(d, &format!("{path}.deny"))?)),
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(path, "give \"ips\" rules, or one of \"allow\" or \"deny\""))
            }
        };
        if let Some((allow, list)) = legacy {
            if !raw.ips.is_empty() {
                return Err(ConfigError::new(path, "give \"ips\" rules, or one of \"allow\" or \"deny\""));
            }
            warnings.push(format!(
                "{path}: {{\"{0}\": [...]}} is ferrymesh's earlier form; MOSN's is {{\"default_action\": \"{1}\", \"ips\": [{{\"action\": \"{0}\", \"addrs\": [...]}}]}}",
                if allow { "allow" } else { "deny" },
                if allow { "deny" } else { "allow" }
            ));
            return Ok(IpAccess { header: None, rules: vec![Rule { allow, blocks: list }], default_allow: !allow });
        }
        let mut rules = Vec::with_capacity(raw.ips.len());
        for (i, r) in raw.ips.iter().enumerate() {
            let rpath = format!("{path}.ips[{i}]");
            rules.push(Rule {
                allow: action(&r.action, &format!("{rpath}.action"))?,
                blocks: blocks(&r.addrs, &format!("{rpath}.addrs"))?,
            });
        }
        let default_allow =
            raw.default_action.is_empty() || action(&raw.default_action, &format!("{path}.default_action"))?;
        Ok(IpAccess { header: Some(raw.header).filter(|h| !h.is_empty()), rules, default_allow })
    }

    /// Whether a request from `ip` gets through: the first rule whose blocks
    /// hold it decides, else the default.
    pub fn permits_ip(&self, ip: IpAddr) -> bool {
        self.rules.iter().find(|r| r.blocks.iter().any(|b| b.contains(ip))).map_or(self.default_allow, |r| r.allow)
    }

    pub fn permits(&self, peer: SocketAddr) -> bool {
        self.permits_ip(peer.ip())
    }
}

impl StreamFilter for IpAccess {
    fn name(&self) -> &'static str {
        "ip_access"
    }

    fn on_request(&self, req: &mut RequestCtx<'_>) -> FilterStatus {
        // The named header's address when it is present and parses; else the connection's.
        let from_header = self.header.as_deref().and_then(|h| {
            let v = req.headers.get(h)?;
            std::str::from_utf8(v).ok()?.trim().parse::<IpAddr>().ok()
        });
        if self.permits_ip(from_header.unwrap_or(req.peer.ip())) {
            FilterStatus::Continue
        } else {
            FilterStatus::Respond(ProxyError::Forbidden)
        }
    }
}
