//! The linear matcher, kept as the oracle for the indexed one: every virtual
//! host and every route looked at in configuration order, as the router did
//! before it was indexed (with prefix wildcards and the one-character rule for
//! wildcards added, as the index has them). Only the tests use it.

use std::sync::Arc;

use super::{RouteEntry, RouteInput, RouteTable, VirtualHost};

impl RouteTable {
    /// What [`RouteTable::find`] must answer, found by scanning.
    pub(crate) fn find_linear(&self, input: &RouteInput<'_, '_>) -> Option<&Arc<RouteEntry>> {
        let vh = self.vhost_linear(input.host)?;
        vh.routes.iter().find(|r| r.matches(input)).map(|r| &r.entry)
    }

    fn vhost_linear(&self, host: Option<&str>) -> Option<&VirtualHost> {
        let any = || self.vhosts.iter().find(|v| v.domains.iter().any(|d| &**d == "*"));
        let Some(host) = host else { return any().or_else(|| self.vhosts.first()) };
        let host = host.to_ascii_lowercase();
        let domains = || self.vhosts.iter().flat_map(|v| v.domains.iter().map(move |d| (v, d.to_ascii_lowercase())));
        if let Some((v, _)) =
            domains().find(|(_, d)| d != "*" && !d.starts_with('*') && !d.ends_with('*') && *d == host)
        {
            return Some(v);
        }
        // The longest wildcard that leaves at least one character to match.
        let suffix = domains()
            .filter(|(_, d)| d.len() > 1 && d.starts_with('*'))
            .filter(|(_, d)| host.len() > d.len() - 1 && host.ends_with(&d[1..]))
            .max_by_key(|(_, d)| d.len());
        if let Some((v, _)) = suffix {
            return Some(v);
        }
        let prefix = domains()
            .filter(|(_, d)| d.len() > 1 && !d.starts_with('*') && d.ends_with('*'))
            .filter(|(_, d)| host.len() > d.len() - 1 && host.starts_with(&d[..d.len() - 1]))
            .max_by_key(|(_, d)| d.len());
        if let Some((v, _)) = prefix {
            return Some(v);
        }
        any()
    }
}
