//! The proxy's request header rules, written once for both HTTP paths. The
//! pass-through hands in httparse's borrowed fields and hyper's path a
//! `HeaderMap`'s; [`request_fields`] yields the upstream's fields one by one,
//! which [`write_request_head`] writes as HTTP/1.1 bytes and
//! [`request_header_map`] collects for hyper's client.
//!
//! What the upstream gets:
//! - no hop-by-hop header (RFC 9110 §7.6.1) and none that `Connection` names;
//!   `te: trailers` stays (gRPC needs it end to end), and an upgrade keeps
//!   `Upgrade` with `Connection: upgrade`. `Expect` is the proxy's to answer
//!   and goes no further;
//! - `Host` as the client sent it, unless [`HostRule`] replaces it;
//! - for an HTTP/1.1 upstream, one `cookie` field: several (an HTTP/2
//!   client may split its cookies) are joined with `; `;
//! - `x-forwarded-for`: the values the client sent, joined, then the client's
//!   address; `x-forwarded-proto: http` and a generated `x-request-id` when
//!   the client sent none;
//! - the route's removals and additions: a header the route removes or sets
//!   is not forwarded as the client sent it. A route adds nothing that frames
//!   the request or belongs to the connection (Content-Length,
//!   Transfer-Encoding, hop-by-hop headers); a `host` it adds acts as its
//!   `host_rewrite`, and Host cannot be removed (the config refuses such
//!   routes at load, and these rules hold whatever built the route);
//! - framing headers as sent, or ([`Framing::Whole`]) only a Content-Length
//!   for the body in hand, so that nothing a route or client wrote can make
//!   the request's end ambiguous.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::error::ProxyError;
use crate::protocol::http::h1::{self, ConnectionTokens, Name};
use crate::router::{AddHeader, HttpActions};

/// What becomes of the client's `Host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HostRule<'a> {
    /// Forwarded as sent.
    AsSent,
    /// Replaced by this value, written first (a host rewrite; an
    /// absolute-form target's or HTTP/2's authority; a request without one).
    Set(&'a [u8]),
    /// Not sent: an HTTP/2 upstream gets the authority in the URI.
    Drop,
}

/// How the upstream learns where the request body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// Content-Length as the client sent it (Transfer-Encoding is hop-by-hop,
    /// and the sender of the body frames it).
    AsSent,
    /// The whole body, this many bytes, is in hand: it alone decides the
    /// Content-Length.
    Whole(usize),
}

/// Everything besides the client's fields that decides the upstream's.
pub(super) struct Rules<'a> {
    pub http: &'a HttpActions,
    pub method: &'a str,
    /// The client's address, appended to `x-forwarded-for`.
    pub peer_ip: &'a [u8],
    pub host: HostRule<'a>,
    pub framing: Framing,
    /// A protocol upgrade (WebSocket) goes through.
    pub upgrade: bool,
    /// Several `cookie` fields become one, joined with `; ` (RFC 9113
    /// §8.2.3: an HTTP/2 client may split its cookies, and an HTTP/1.1
    /// upstream expects one field).
    pub join_cookies: bool,
}

/// Calls `emit` with each field of the upstream request, in order. `fields`
/// walks the client's fields (name, value) from the start at each call.
pub(super) fn request_fields<'f, I>(fields: impl Fn() -> I, rules: &Rules<'_>, emit: &mut impl FnMut(&str, &[u8]))
where
    I: Iterator<Item = (&'f str, &'f [u8])>,
{
    let http = rules.http;
    let mut connection = ConnectionTokens::default();
    for (name, value) in fields() {
        if h1::classify(name) == Name::Connection {
            connection.add(value);
        }
    }
    let named_by_connection = |name: &str| connection.others && h1::named_by_connection(fields(), name);

    if let HostRule::Set(host) = rules.host {
        emit("host", host);
    }
    // Whether the client's own x-forwarded-proto / x-request-id go on (one
    // its `Connection` names does not).
    let (mut has_proto, mut has_id) = (false, false);
    let mut xff: Option<Vec<u8>> = None;
    // The first cookie as sent; more are joined in `cookies`.
    let (mut cookie, mut cookies): (Option<&[u8]>, Vec<u8>) = (None, Vec::new());
    for (name, value) in fields() {
        let forward = match h1::classify(name) {
            Name::Connection | Name::HopByHop | Name::TransferEncoding | Name::Expect => false,
            Name::Upgrade => rules.upgrade,
            Name::Te => value.trim_ascii().eq_ignore_ascii_case(b"trailers"),
            // Host is settled by the rule alone: a route removes none.
            Name::Host => {
                if rules.host == HostRule::AsSent {
                    emit(name, value);
                }
                continue;
            }
            Name::ContentLength => rules.framing == Framing::AsSent,
            Name::XForwardedFor => {
                let v = value.trim_ascii();
                if !v.is_empty() && !named_by_connection(name) {
                    let joined = xff.get_or_insert_with(Vec::new);
                    if !joined.is_empty() {
                        joined.extend_from_slice(b", ");
                    }
                    joined.extend_from_slice(v);
                }
                false
            }
            Name::Cookie if rules.join_cookies => {
                if !named_by_connection(name) {
                    match cookie {
                        None => cookie = Some(value),
                        Some(first) => {
                            if cookies.is_empty() {
                                cookies.extend_from_slice(first);
                            }
                            cookies.extend_from_slice(b"; ");
                            cookies.extend_from_slice(value);
                        }
                    }
                }
                false
            }
            Name::XForwardedProto => {
                let keep = !named_by_connection(name);
                has_proto |= keep;
                keep
            }
            Name::XRequestId => {
                let keep = !named_by_connection(name);
                has_id |= keep;
                keep
            }
            _ => !named_by_connection(name),
        };
        if forward && !replaced(http, name) {
            emit(name, value);
        }
    }
    if let Some(first) = cookie.filter(|_| !replaced(http, "cookie")) {
        emit("cookie", if cookies.is_empty() { first } else { &cookies });
    }
    if rules.upgrade {
        emit("connection", b"upgrade");
    }
    if !replaced(http, "x-forwarded-for") {
        match xff.as_mut() {
            Some(joined) => {
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(rules.peer_ip);
                emit("x-forwarded-for", joined);
            }
            None => emit("x-forwarded-for", rules.peer_ip),
        }
    }
    if !has_proto && !replaced(http, "x-forwarded-proto") {
        emit("x-forwarded-proto", b"http");
    }
    if !has_id && !replaced(http, "x-request-id") {
        emit("x-request-id", &request_id_bytes());
    }
    for a in &http.request_add {
        // What frames the request or concerns one hop is not a route's to
        // add, and a route's Host is the rule's (`route_host`).
        let kind = h1::classify(a.name.as_str());
        if kind != Name::Host && !kind.is_per_hop() {
            emit(a.name.as_str(), a.value.as_bytes());
        }
    }
    if let Framing::Whole(len) = rules.framing {
        let body_expected = !matches!(rules.method, "GET" | "HEAD" | "DELETE" | "OPTIONS" | "TRACE");
        if len > 0 || body_expected {
            let mut digits = [0u8; 20];
            emit("content-length", decimal(len as u64, &mut digits));
        }
    }
}

/// Writes the upstream's HTTP/1.1 request head into `out`: the request line
/// (the route's prefix rewrite applied to `target`) and the fields.
pub(super) fn write_request_head<'f, I>(out: &mut Vec<u8>, target: &str, fields: impl Fn() -> I, rules: &Rules<'_>)
where
    I: Iterator<Item = (&'f str, &'f [u8])>,
{
    out.extend_from_slice(rules.method.as_bytes());
    out.push(b' ');
    let (front, rest) = upstream_target(rules.http, target);
    out.extend_from_slice(front.as_bytes());
    out.extend_from_slice(rest.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    request_fields(fields, rules, &mut |name, value| push_header(out, name.as_bytes(), value));
    out.extend_from_slice(b"\r\n");
}

/// The upstream's fields as a `HeaderMap`, for hyper's client.
pub(super) fn request_header_map<'f, I>(fields: impl Fn() -> I, rules: &Rules<'_>) -> Result<HeaderMap, ProxyError>
where
    I: Iterator<Item = (&'f str, &'f [u8])>,
{
    let mut map = HeaderMap::with_capacity(fields().count() + 4);
    let mut invalid = false;
    request_fields(fields, rules, &mut |name, value| match (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_bytes(value),
    ) {
        (Ok(n), Ok(v)) => {
            map.append(n, v);
        }
        _ => invalid = true,
    });
    if invalid {
        return Err(ProxyError::Codec);
    }
    Ok(map)
}

/// The upstream's request target, in two pieces to be joined: the route's
/// prefix rewrite and the rest of `target`, or `("", target)`.
pub(super) fn upstream_target<'a, 't>(http: &'a HttpActions, target: &'t str) -> (&'a str, &'t str) {
    match &http.prefix_rewrite {
        Some((prefix, with)) if target.starts_with(prefix.as_str()) => (with, &target[prefix.len()..]),
        _ => ("", target),
    }
}

/// The Host a route sets: its `host_rewrite`, else a `host` among the
/// headers it adds (which then acts as one).
pub(super) fn route_host(http: &HttpActions) -> Option<&HeaderValue> {
    http.host_rewrite
        .as_ref()
        .or_else(|| http.request_add.iter().rev().find(|a| a.name == http::header::HOST).map(|a| &a.value))
}

/// Whether the route removes the request header `name` or sets it anew.
fn replaced(http: &HttpActions, name: &str) -> bool {
    removed_or_set(&http.request_remove, &http.request_add, name)
}

/// Whether header `name` is among `remove`, or set anew (not appended to) by
/// `add`: a route's operations on a request's or a response's headers.
#[inline]
pub(super) fn removed_or_set(remove: &[HeaderName], add: &[AddHeader], name: &str) -> bool {
    // Asked of every field of every message: most routes have no rules.
    if remove.is_empty() && add.is_empty() {
        return false;
    }
    remove.iter().any(|n| n.as_str().eq_ignore_ascii_case(name))
        || add.iter().any(|a| !a.append && a.name.as_str().eq_ignore_ascii_case(name))
}

pub(super) fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal, written at the end of `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// The bytes of a random UUID v4.
pub(super) fn request_id_bytes() -> [u8; 36] {
    let a = (fastrand::u64(..) & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
    let b = (fastrand::u64(..) & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    uuid_text((u128::from(a) << 64) | u128::from(b))
}

/// `bits` as a UUID's text. This runs for most requests: the hex digits are
/// made eight at a time in a word ([`hex8`]), which costs a fifth of a loop
/// over the bytes, and a small fraction of `format!`.
fn uuid_text(bits: u128) -> [u8; 36] {
    let mut hex = [0u8; 32];
    for (i, chunk) in hex.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&hex8((bits >> (96 - 32 * i)) as u32));
    }
    let mut out = [b'-'; 36];
    out[..8].copy_from_slice(&hex[..8]);
    out[9..13].copy_from_slice(&hex[8..12]);
    out[14..18].copy_from_slice(&hex[12..16]);
    out[19..23].copy_from_slice(&hex[16..20]);
    out[24..].copy_from_slice(&hex[20..]);
    out
}

/// The eight lowercase hex digits of `x`: its nibbles spread one to a byte
/// of a word, most significant first, then turned to ASCII together ('0' is
/// added to each, and 'a' - '0' - 10 more to those above 9).
fn hex8(x: u32) -> [u8; 8] {
    let x = u64::from(x);
    let v = (x & 0xffff_0000) << 16 | (x & 0xffff);
    let v = (v & 0x0000_ff00_0000_ff00) << 8 | (v & 0x0000_00ff_0000_00ff);
    let v = (v & 0x00f0_00f0_00f0_00f0) << 4 | (v & 0x000f_000f_000f_000f);
    // 1 in each byte whose nibble is 10 or more (n + 6 carries into bit 4).
    let above_nine = ((v + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (v + 0x3030_3030_3030_3030 + above_nine * (b'a' - b'0' - 10) as u64).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules<'a>(http: &'a HttpActions, method: &'a str, host: HostRule<'a>, framing: Framing) -> Rules<'a> {
        Rules { http, method, peer_ip: b"10.0.0.9", host, framing, upgrade: false, join_cookies: true }
    }

    fn head(target: &str, fields: &[(&str, &str)], rules: &Rules<'_>) -> String {
        let mut out = Vec::new();
        write_request_head(&mut out, target, || fields.iter().map(|(n, v)| (*n, v.as_bytes())), rules);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_stay_behind() {
        let http = HttpActions::default();
        let fields = [
            ("Host", "e"),
            ("Connection", "keep-alive, x-private"),
            ("Keep-Alive", "timeout=5"),
            ("X-Private", "1"),
            ("TE", "gzip"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "websocket"),
            ("Expect", "100-continue"),
            ("Proxy-Authorization", "x"),
            ("X-Request-Id", "given"),
            ("X-Keep", "1"),
        ];
        let out = head("/a", &fields, &rules(&http, "GET", HostRule::AsSent, Framing::AsSent));
        assert_eq!(
            out,
            "GET /a HTTP/1.1\r\nHost: e\r\nX-Request-Id: given\r\nX-Keep: 1\r\n\
             x-forwarded-for: 10.0.0.9\r\nx-forwarded-proto: http\r\n\r\n"
        );
        // `te: trailers` is end to end.
        let out = head("/", &[("te", "trailers")], &rules(&http, "GET", HostRule::AsSent, Framing::AsSent));
        assert!(out.contains("te: trailers\r\n"), "{out}");
    }

    #[test]
    fn an_upgrade_keeps_its_two_headers() {
        let http = HttpActions::default();
        let mut r = rules(&http, "GET", HostRule::AsSent, Framing::AsSent);
        r.upgrade = true;
        let out = head("/ws", &[("connection", "Upgrade"), ("upgrade", "websocket")], &r);
        assert!(out.contains("upgrade: websocket\r\nconnection: upgrade\r\n"), "{out}");
    }

    #[test]
    fn forwarded_for_joins_every_value_then_the_peer() {
        let http = HttpActions::default();
        let fields = [("x-forwarded-for", "1.1.1.1"), ("x-forwarded-for", " 2.2.2.2 "), ("x-forwarded-for", "")];
        let out = head("/", &fields, &rules(&http, "GET", HostRule::AsSent, Framing::AsSent));
        assert!(out.contains("x-forwarded-for: 1.1.1.1, 2.2.2.2, 10.0.0.9\r\n"), "{out}");
        assert_eq!(out.matches("x-forwarded-for").count(), 1);
        let id = out.lines().find_map(|l| l.strip_prefix("x-request-id: ")).expect("a generated request id");
        assert_eq!(id.len(), 36);
    }

    #[test]
    fn host_rules_and_route_operations() {
        let http = HttpActions {
            prefix_rewrite: Some(("/old".into(), "/new".into())),
            request_add: vec![
                AddHeader {
                    name: HeaderName::from_static("x-set"),
                    value: HeaderValue::from_static("s"),
                    append: false,
                },
                AddHeader {
                    name: HeaderName::from_static("x-app"),
                    value: HeaderValue::from_static("a"),
                    append: true,
                },
            ],
            request_remove: vec![HeaderName::from_static("x-gone"), HeaderName::from_static("x-request-id")],
            ..HttpActions::default()
        };
        let fields = [("host", "client"), ("x-set", "old"), ("x-app", "mine"), ("x-gone", "1")];
        let out = head("/old/p?q", &fields, &rules(&http, "GET", HostRule::Set(b"up"), Framing::AsSent));
        assert_eq!(
            out,
            "GET /new/p?q HTTP/1.1\r\nhost: up\r\nx-app: mine\r\n\
             x-forwarded-for: 10.0.0.9\r\nx-forwarded-proto: http\r\nx-set: s\r\nx-app: a\r\n\r\n"
        );
        let out = head("/other", &fields, &rules(&http, "GET", HostRule::Drop, Framing::AsSent));
        assert!(out.starts_with("GET /other HTTP/1.1\r\nx-app: mine\r\n"), "{out}");
    }

    #[test]
    fn a_whole_body_alone_frames_the_request() {
        let http = HttpActions::default();
        let fields = [("host", "e"), ("content-length", "99"), ("transfer-encoding", "chunked"), ("x-a", "1")];
        let out = head("/p", &fields, &rules(&http, "POST", HostRule::AsSent, Framing::Whole(5)));
        assert!(out.starts_with("POST /p HTTP/1.1\r\nhost: e\r\nx-a: 1\r\n"), "{out}");
        assert!(out.ends_with("content-length: 5\r\n\r\n"), "{out}");
        assert_eq!(out.matches("content-length").count(), 1);
        let out = head("/", &[("host", "e")], &rules(&http, "GET", HostRule::AsSent, Framing::Whole(0)));
        assert!(!out.contains("content-length"), "no length for a bodiless GET: {out}");
        let out = head("/", &[("host", "e")], &rules(&http, "POST", HostRule::AsSent, Framing::Whole(0)));
        assert!(out.ends_with("content-length: 0\r\n\r\n"), "{out}");
        // As sent, the client's length stays and no other is made up.
        let out = head("/", &fields, &rules(&http, "POST", HostRule::AsSent, Framing::AsSent));
        assert!(out.contains("content-length: 99\r\n") && !out.contains("transfer-encoding"), "{out}");
    }

    #[test]
    fn the_header_map_matches_the_bytes() {
        let http = HttpActions::default();
        let r = rules(&http, "GET", HostRule::Set(b"h"), Framing::AsSent);
        let fields = [("x-forwarded-proto", "https"), ("x-a", "1"), ("x-a", "2"), ("connection", "close")];
        let map = request_header_map(|| fields.iter().map(|(n, v)| (*n, v.as_bytes())), &r).unwrap();
        assert_eq!(map.get("host").unwrap(), "h");
        assert_eq!(map.get_all("x-a").iter().count(), 2);
        assert_eq!(map.get("x-forwarded-proto").unwrap(), "https");
        assert!(map.get("connection").is_none());
        assert_eq!(map.get("x-request-id").map(HeaderValue::len), Some(36));
    }

    #[test]
    fn a_route_touches_neither_framing_nor_host() {
        let add = |name: &'static str, value: &'static str| AddHeader {
            name: HeaderName::from_static(name),
            value: HeaderValue::from_static(value),
            append: false,
        };
        let http = HttpActions {
            request_add: vec![add("transfer-encoding", "chunked"), add("content-length", "0"), add("host", "routed")],
            request_remove: vec![HeaderName::from_static("host")],
            ..HttpActions::default()
        };
        let fields = [("host", "client"), ("content-length", "5")];
        let out = head("/", &fields, &rules(&http, "POST", HostRule::AsSent, Framing::Whole(5)));
        assert!(!out.contains("transfer-encoding"), "{out}");
        assert_eq!(out.matches("content-length").count(), 1, "{out}");
        assert!(out.ends_with("content-length: 5\r\n\r\n"), "{out}");
        // Host is never removed, and a route's `host` is the caller's rule to apply.
        assert_eq!(out.matches("host:").count(), 1, "{out}");
        assert!(out.contains("host: client\r\n"), "{out}");
        assert_eq!(route_host(&http).map(HeaderValue::as_bytes), Some(&b"routed"[..]));
        let out = head("/", &fields, &rules(&http, "POST", HostRule::Set(b"routed"), Framing::Whole(5)));
        assert_eq!(out.matches("host:").count(), 1, "{out}");
        assert!(out.contains("host: routed\r\n"), "{out}");
    }

    #[test]
    fn headers_named_by_connection_are_not_the_clients_own() {
        let http = HttpActions::default();
        let fields = [
            ("connection", "x-request-id, x-forwarded-for, x-forwarded-proto"),
            ("x-request-id", "client-id"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
        ];
        let out = head("/", &fields, &rules(&http, "GET", HostRule::Set(b"h"), Framing::AsSent));
        assert!(!out.contains("client-id") && !out.contains("6.6.6.6") && !out.contains("https"), "{out}");
        assert!(out.contains("x-forwarded-for: 10.0.0.9\r\nx-forwarded-proto: http\r\nx-request-id: "), "{out}");
    }

    #[test]
    fn split_cookies_are_joined_for_http1_only() {
        let http = HttpActions::default();
        let fields = [("cookie", "a=1"), ("x-a", "1"), ("Cookie", "b=2"), ("cookie", "c=3")];
        let mut r = rules(&http, "GET", HostRule::Set(b"h"), Framing::AsSent);
        let out = head("/", &fields, &r);
        assert_eq!(out.matches("ookie").count(), 1, "{out}");
        assert!(out.contains("cookie: a=1; b=2; c=3\r\n"), "{out}");
        let one = head("/", &fields[..2], &r);
        assert!(one.contains("cookie: a=1\r\n"), "{one}");
        r.join_cookies = false;
        let out = head("/", &fields, &r);
        assert_eq!(out.matches("ookie: ").count(), 3, "{out}");
    }

    #[test]
    fn decimals() {
        let mut b = [0u8; 20];
        assert_eq!(decimal(0, &mut b), b"0");
        assert_eq!(decimal(1234567, &mut b), b"1234567");
        assert_eq!(decimal(u64::MAX, &mut b), u64::MAX.to_string().as_bytes());
    }

    #[test]
    fn uuid_text_is_the_hex_of_the_bits_in_groups() {
        for bits in [0, u128::MAX, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210, fastrand::u128(..)] {
            let hex = format!("{bits:032x}");
            let want = format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]);
            assert_eq!(std::str::from_utf8(&uuid_text(bits)).unwrap(), want);
        }
    }

    #[test]
    fn hex8_is_every_word_in_lowercase_hex() {
        for x in [0, 9, 10, 15, 0x0123_4567, 0x89ab_cdef, 0xa0b1_c2d3, u32::MAX]
            .into_iter()
            .chain((0..1000).map(|_| fastrand::u32(..)))
        {
            assert_eq!(hex8(x), *format!("{x:08x}").as_bytes(), "{x:#x}");
        }
    }

    #[test]
    fn request_ids_are_uuid_v4() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let id = request_id_bytes();
            let s = std::str::from_utf8(&id).unwrap();
            let parts: Vec<&str> = s.split('-').collect();
            assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), vec![8, 4, 4, 4, 12], "{s}");
            assert!(s.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()));
            assert!(parts[2].starts_with('4'), "version 4: {s}");
            assert!(matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'), "RFC 4122 variant: {s}");
            assert!(seen.insert(s.to_string()));
        }
    }
}
