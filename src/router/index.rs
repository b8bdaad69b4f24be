//! The routes of a virtual host, found by index instead of a scan.
//!
//! Semantics are the linear scan's: the first route in configuration order
//! whose rules all match wins. The index only narrows which routes are
//! checked. Each route is filed under one key that every request it matches
//! must have: an exact path, a path prefix, or an exact value of one header
//! (bolt's `service`, `:authority`, any header). A request looks its own path
//! and header values up in those maps, which yields short lists of candidate
//! routes, ascending; every candidate is still checked against all its rules.
//! Routes with no such key (regexes, `present`, query parameters alone, no
//! rules at all) stay in one ascending list that is checked only up to the
//! best candidate found so far, so a catch-all route at the end of a large
//! table costs nothing until the indexed routes before it have missed.
//!
//! The one choice to question: a route with several keys (an exact `service`
//! and an exact `method`, say) is filed under the key that fewest other routes
//! share, so that a lookup meets few candidates that fail their other rules.
//! The number of header names used as keys is a property of the schema
//! (`service`, `method`, `:authority`…), not of the table size: a request
//! looks up each of them once.

use std::collections::HashMap;

use smallvec::SmallVec;

use super::trie::Trie;
use super::{PathMatch, Route, RouteInput, ValueMatch};

type Hasher = foldhash::fast::RandomState;

/// Route numbers in configuration order; most keys hold one route.
type Ids = SmallVec<[u32; 2]>;

/// Routes by the exact value one header must have.
type ByValue = HashMap<Box<[u8]>, Ids, Hasher>;

#[derive(Debug, Default)]
pub struct RouteIndex {
    paths: HashMap<Box<str>, Ids, Hasher>,
    prefixes: Trie<Ids>,
    /// Per header name (lowercase), routes by the exact value they want.
    headers: Vec<(Box<str>, ByValue)>,
    /// Routes without an index key, ascending.
    rest: Vec<u32>,
}

/// The key a route is filed under.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Key<'a> {
    Path(&'a str),
    Prefix(&'a str),
    Header(&'a str, &'a [u8]),
}

fn keys(route: &Route) -> impl Iterator<Item = Key<'_>> {
    let path = match &route.path {
        Some(PathMatch::Exact(p)) => Some(Key::Path(p)),
        Some(PathMatch::Prefix(p)) => Some(Key::Prefix(p)),
        _ => None,
    };
    let headers = route.headers.iter().filter_map(|h| match &h.value {
        ValueMatch::Exact(v) => Some(Key::Header(&h.name, v)),
        _ => None,
    });
    path.into_iter().chain(headers)
}

impl RouteIndex {
    pub fn build(routes: &[Route]) -> RouteIndex {
        let mut shared: HashMap<Key, u32, Hasher> = HashMap::default();
        for route in routes {
            for key in keys(route) {
                *shared.entry(key).or_default() += 1;
            }
        }
        let mut index = RouteIndex::default();
        for (id, route) in routes.iter().enumerate() {
            let id = id as u32;
            // Fewest routes under the same key; an exact path before a
            // header before a prefix when they tie (the order of `keys`,
            // and a prefix also meets the candidates of shorter prefixes).
            let best = keys(route).min_by_key(|k| (shared[k], matches!(k, Key::Prefix(_))));
            match best {
                None => index.rest.push(id),
                Some(Key::Path(p)) => index.paths.entry(p.into()).or_default().push(id),
                Some(Key::Prefix(p)) => index.prefixes.entry(p.as_bytes(), Ids::new).push(id),
                Some(Key::Header(name, value)) => {
                    let at = match index.headers.iter().position(|(n, _)| &**n == name) {
                        Some(at) => at,
                        None => {
                            index.headers.push((name.into(), HashMap::default()));
                            index.headers.len() - 1
                        }
                    };
                    index.headers[at].1.entry(value.into()).or_default().push(id);
                }
            }
        }
        index
    }

    /// The first route (by configuration order) whose rules all match.
    pub fn find(&self, routes: &[Route], input: &RouteInput<'_, '_>) -> Option<usize> {
        let mut best = u32::MAX;
        // Candidates come ascending: the first that matches is this list's
        // best, and none at or past the best so far can win.
        let mut consider = |ids: &[u32]| {
            for &id in ids {
                if id >= best {
                    break;
                }
                if routes[id as usize].matches(input) {
                    best = id;
                    break;
                }
            }
        };
        if let Some(path) = input.path {
            if let Some(ids) = self.paths.get(path) {
                consider(ids);
            }
            self.prefixes.walk(path.as_bytes(), |ids, _| consider(ids));
        }
        for (name, values) in &self.headers {
            if let Some(ids) = (input.header)(name).and_then(|v| values.get(v)) {
                consider(ids);
            }
        }
        consider(&self.rest);
        (best != u32::MAX).then_some(best as usize)
    }
}
