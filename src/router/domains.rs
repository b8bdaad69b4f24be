//! Virtual hosts found by domain without a scan, with Envoy's and MOSN's
//! precedence: an exact domain, then the longest suffix wildcard
//! (`*.example.com`), then the longest prefix wildcard (`example.*`), then
//! `*`. Domains match without regard to ASCII case; a wildcard matches at
//! least one character (`*.example.com` is not `.example.com`). Where two
//! virtual hosts list the same domain, the first in the configuration wins.
//!
//! Exact domains are a hash map; each kind of wildcard is a [`Trie`], suffixes
//! stored reversed, so a lookup costs the length of the host, whatever the
//! number of virtual hosts.

use std::collections::HashMap;

use super::trie::Trie;

/// The longest host name looked up without an allocation (DNS allows 253).
const STACK_HOST: usize = 256;

#[derive(Debug, Default)]
pub struct DomainIndex {
    /// Lowercase domains, as bytes: a lowered host is looked up as it is.
    exact: HashMap<Box<[u8]>, u32, foldhash::fast::RandomState>,
    /// `*.example.com` as `moc.elpmaxe.`.
    suffixes: Trie<u32>,
    /// `example.*` as `example.`.
    prefixes: Trie<u32>,
    /// The first virtual host with the domain `*`.
    any: Option<u32>,
    /// What traffic without a host (RPC) gets: `any`, else the first one.
    no_host: Option<u32>,
}

/// What a domain string is.
pub enum Domain<'a> {
    Any,
    /// `*` + suffix: the suffix, with its leading dot if it has one.
    Suffix(&'a str),
    /// prefix + `*`.
    Prefix(&'a str),
    Exact(&'a str),
}

impl Domain<'_> {
    pub fn parse(d: &str) -> Domain<'_> {
        if d == "*" {
            Domain::Any
        } else if let Some(s) = d.strip_prefix('*') {
            Domain::Suffix(s)
        } else if let Some(p) = d.strip_suffix('*') {
            Domain::Prefix(p)
        } else {
            Domain::Exact(d)
        }
    }
}

impl DomainIndex {
    /// Indexes the domains of each virtual host, in configuration order.
    pub fn build<'a>(vhosts: impl Iterator<Item = &'a [Box<str>]>) -> DomainIndex {
        let mut index = DomainIndex::default();
        let mut count = 0u32;
        for (v, domains) in vhosts.enumerate() {
            let v = v as u32;
            count += 1;
            for d in domains {
                let lower = d.to_ascii_lowercase();
                match Domain::parse(&lower) {
                    Domain::Any => {
                        index.any.get_or_insert(v);
                    }
                    Domain::Suffix(s) => {
                        let key: Vec<u8> = s.bytes().rev().collect();
                        index.suffixes.entry(&key, || v);
                    }
                    Domain::Prefix(p) => {
                        index.prefixes.entry(p.as_bytes(), || v);
                    }
                    Domain::Exact(e) => {
                        index.exact.entry(e.as_bytes().into()).or_insert(v);
                    }
                }
            }
        }
        index.no_host = index.any.or((count > 0).then_some(0));
        index
    }

    /// The virtual host for `host` (without its port); `None` for RPC.
    pub fn find(&self, host: Option<&str>) -> Option<u32> {
        let Some(host) = host else { return self.no_host };
        if self.exact.is_empty() && self.suffixes.is_empty() && self.prefixes.is_empty() {
            // Only `*`, if anything (a sidecar's usual table): nothing to read.
            return self.any;
        }
        let mut stack = [0u8; STACK_HOST];
        let mut heap = Vec::new();
        let lower: &mut [u8] = if host.len() <= STACK_HOST {
            &mut stack[..host.len()]
        } else {
            heap.resize(host.len(), 0);
            &mut heap
        };
        lower.copy_from_slice(host.as_bytes());
        lower.make_ascii_lowercase();
        if let Some(&v) = self.exact.get(&*lower) {
            return Some(v);
        }
        // The longest wildcard that leaves at least one character to match:
        // the walk yields matches shortest first, so the last one wins.
        let longest = |trie: &Trie<u32>, key: &[u8]| {
            let mut found = None;
            trie.walk(key, |&v, len| {
                if len < key.len() {
                    found = Some(v);
                }
            });
            found
        };
        if !self.suffixes.is_empty() {
            lower.reverse();
            if let Some(v) = longest(&self.suffixes, lower) {
                return Some(v);
            }
            lower.reverse();
        }
        if !self.prefixes.is_empty() {
            if let Some(v) = longest(&self.prefixes, lower) {
                return Some(v);
            }
        }
        self.any
    }
}
