//! `ip_access`: allow or deny requests by the client's address.
//!
//! Config: `{"allow": ["127.0.0.1", "10.0.0.0/8"]}` lets only those in;
//! `{"deny": [...]}` keeps those out. A refused request is answered at once
//! with the protocol's "forbidden" error (bolt: status 2, as MOSN's 403).

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

#[derive(Debug, Clone)]
pub struct IpAccess {
    allow: bool,
    blocks: Vec<Cidr>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    allow: Option<Vec<String>>,
    #[serde(default)]
    deny: Option<Vec<String>>,
}

impl IpAccess {
    pub fn parse(config: serde_json::Value, path: &str, warnings: &mut Vec<String>) -> Result<IpAccess, ConfigError> {
        let raw: Raw = from_value(config, path, warnings)?;
        let (allow, list, field) = match (raw.allow, raw.deny) {
            (Some(a), None) => (true, a, "allow"),
            (None, Some(d)) => (false, d, "deny"),
            _ => return Err(ConfigError::new(path, "needs exactly one of \"allow\" or \"deny\"")),
        };
        let mut blocks = Vec::new();
        for (i, s) in list.iter().enumerate() {
            blocks.push(Cidr::parse(s).map_err(|e| ConfigError::new(format!("{path}.{field}[{i}]"), e))?);
        }
        Ok(IpAccess { allow, blocks })
    }

    pub fn permits(&self, peer: SocketAddr) -> bool {
        let listed = self.blocks.iter().any(|b| b.contains(peer.ip()));
        listed == self.allow
    }
}

impl StreamFilter for IpAccess {
    fn name(&self) -> &'static str {
        "ip_access"
    }

    fn on_request(&self, req: &mut RequestCtx<'_>) -> FilterStatus {
        if self.permits(req.peer) {
            FilterStatus::Continue
        } else {
            FilterStatus::Respond(ProxyError::Forbidden)
        }
    }
}
