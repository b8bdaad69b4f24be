//! The RPC codecs ferrymesh knows, found by name.
//!
//! Adding a protocol is one line in [`CODECS`]: configuration finds it by
//! name (`downstream_protocol`, `upstream_protocol`, `sub_protocol`), `Auto`
//! listeners try its [`Codec::detect`] on the first bytes of a connection,
//! and clusters keep a pool per host for its family. Nothing else names it.

use super::{bolt, dubbo, tars, toy, Codec, Protocol};

/// Every RPC codec, in the order `Auto` tries them. A codec whose family an
/// earlier one shares (bolt v2 beside bolt v1) is not tried again: the first
/// of a family reads every version of it.
pub static CODECS: &[&dyn Codec] = &[
    &bolt::BOLT_V1,
    &bolt::BOLT_V2,
    &dubbo::DUBBO,
    &tars::TARS,
    &toy::TOY, // the worked example of docs/adding-a-protocol.md
];

/// The codec configured as `name` (case-insensitive, MOSN's spelling).
pub fn by_name(name: &str) -> Option<&'static dyn Codec> {
    CODECS.iter().copied().find(|c| c.name().eq_ignore_ascii_case(name))
}

/// The names, for error messages.
pub fn names() -> Vec<&'static str> {
    CODECS.iter().map(|c| c.name()).collect()
}

/// What `Auto` tries, in order: one codec per RPC family, then HTTP/2 prior
/// knowledge, then HTTP/1.x.
pub fn auto_protocols() -> Vec<Protocol> {
    let mut out: Vec<Protocol> = Vec::new();
    for &c in CODECS {
        if !out.iter().any(|p| matches!(p, Protocol::Rpc(o) if o.family() == c.family())) {
            out.push(Protocol::Rpc(c));
        }
    }
    out.extend([Protocol::Http2, Protocol::Http1]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_find_their_codecs_and_auto_tries_each_family_once() {
        assert_eq!(by_name("BOLT").map(|c| c.name()), Some("bolt"));
        assert_eq!(by_name("boltv2").map(|c| c.name()), Some("boltv2"));
        assert!(by_name("nope").is_none());
        let auto: Vec<&str> = auto_protocols().iter().map(|p| p.name()).collect();
        assert_eq!(auto, ["bolt", "dubbo", "tars", "toy", "Http2", "Http1"]);
        let mut names = names();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CODECS.len(), "each name once");
    }
}
