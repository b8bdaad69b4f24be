//! HTTP/1.1 and HTTP/2 facts ferrymesh needs beside hyper, which does the
//! parsing and framing: protocol detection from the first bytes, the
//! hop-by-hop headers a proxy must not forward, the checks that stop request
//! smuggling, and how proxy failures are said in HTTP and in gRPC.
//!
//! The decision a reader may question: hyper already rejects most malformed
//! messages, but it is a server library, not a proxy, so it accepts some
//! requests whose framing another hop could read differently (both
//! Content-Length and Transfer-Encoding; repeated Content-Length; a
//! Transfer-Encoding in HTTP/1.0). [`validate_request`] refuses those before
//! anything is forwarded.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Version};

use super::Detect;
use crate::error::ProxyError;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The longest method detection waits for (`BASELINE-CONTROL` is 16).
const MAX_METHOD: usize = 20;

/// Whether `buf` starts an HTTP/1.x request: a method (any token, RFC 9110
/// §9.1: WebDAV's `PROPFIND`, a cache's `PURGE`) and a space, after the
/// empty lines a server ignores before a request line (RFC 9112 §2.2). The
/// HTTP/2 preface starts with one (`PRI *`) and is not one.
pub fn detect_http1(buf: &[u8]) -> Detect {
    let blank = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    let line = &buf[blank..];
    if line.starts_with(H2_PREFACE) {
        return Detect::NoMatch;
    }
    if H2_PREFACE.starts_with(line) && !line.is_empty() {
        return Detect::NeedMore;
    }
    let method = line.iter().take(MAX_METHOD + 1).take_while(|&&b| is_tchar(b)).count();
    match line.get(method) {
        None if method <= MAX_METHOD => Detect::NeedMore,
        Some(b' ') if (1..=MAX_METHOD).contains(&method) => Detect::Match,
        _ => Detect::NoMatch,
    }
}

/// A byte of an HTTP token (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `buf` starts with the HTTP/2 preface (prior knowledge, h2c).
pub fn detect_http2(buf: &[u8]) -> Detect {
    if buf.len() >= H2_PREFACE.len() {
        if buf.starts_with(H2_PREFACE) {
            Detect::Match
        } else {
            Detect::NoMatch
        }
    } else if H2_PREFACE.starts_with(buf) {
        Detect::NeedMore
    } else {
        Detect::NoMatch
    }
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1),
/// plus `proxy-connection`, which some clients still send.
pub const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, and those the `Connection` header names.
/// `keep_upgrade` keeps `Connection: upgrade` and `Upgrade` for a tunnel;
/// `te: trailers` is kept, as gRPC needs it end to end.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages carry none: one pass over the names says so, cheaper
    // than eight removals that find nothing.
    if !headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    let te_trailers = headers.get(header::TE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    let upgrade = headers.get(header::UPGRADE).cloned();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if keep_upgrade {
        if let Some(u) = upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, u);
        }
    }
}

/// Takes `h2c` out of a request's Upgrade, and HTTP2-Settings with it.
/// ferrymesh does not switch a client to HTTP/2 by Upgrade, and an upstream
/// that did would turn the connection into a tunnel whose HTTP/2 requests no
/// route ever sees (h2c smuggling past a route's rules); Envoy drops these
/// headers too. Another protocol named beside it (a WebSocket) may still
/// upgrade. Returns whether the request still asks for an upgrade.
pub fn drop_h2c_upgrade(headers: &mut HeaderMap) -> bool {
    let is_h2c = |t: &[u8]| t.trim_ascii().eq_ignore_ascii_case(b"h2c");
    let tokens = |v: &HeaderValue| v.as_bytes().split(|&b| b == b',').map(<[u8]>::to_vec).collect::<Vec<_>>();
    let all: Vec<Vec<u8>> = headers.get_all(header::UPGRADE).iter().flat_map(tokens).collect();
    if !all.iter().any(|t| is_h2c(t)) {
        return !all.is_empty();
    }
    headers.remove(HeaderName::from_static("http2-settings"));
    headers.remove(header::UPGRADE);
    let others: Vec<&[u8]> = all.iter().map(|t| t.trim_ascii()).filter(|t| !t.is_empty() && !is_h2c(t)).collect();
    if others.is_empty() {
        return false;
    }
    match HeaderValue::from_bytes(&others.join(&b", "[..])) {
        Ok(v) => {
            headers.insert(header::UPGRADE, v);
            true
        }
        Err(_) => false,
    }
}

/// Whether the request asks to switch protocols (WebSocket and the like).
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
}

/// Whether a Host value or a URI's authority (past any userinfo) is one:
/// a registered name, an IPv4 address or a bracketed IP literal, and an
/// optional port: RFC 3986's bytes for those, the set Envoy checks too
/// (nghttp2's `check_authority`, without the `@` of userinfo, which a Host
/// never carries). A Host with a space, a slash or a `#` names no host, yet
/// a domain match on its end would route it (`evil.com/.internal.example`
/// matched `*.internal.example`) and the upstream would receive it as sent.
pub fn valid_host(host: &[u8]) -> bool {
    host_bytes(host, false)
}

/// Whether every byte of `b` is one of [`valid_host`]'s, or, with
/// `userinfo`, the `@` a URI's authority may carry (the upstream never sees it).
fn host_bytes(b: &[u8], userinfo: bool) -> bool {
    b.iter().all(|&c| HOST_BYTES[usize::from(c)] || (userinfo && c == b'@'))
}

/// The bytes of [`valid_host`], as a table: the HTTP/1.1 pass-through
/// checks every request's Host, a few instructions a byte.
const HOST_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let extra = b"-._~%!$&'()*+,;=:[]";
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric();
        i += 1;
    }
    let mut j = 0;
    while j < extra.len() {
        t[extra[j] as usize] = true;
        j += 1;
    }
    t
};

/// Why a request is refused before it is forwarded, and with which status.
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid(pub &'static str, pub u16);

/// Largest header section (names and values) accepted: Envoy's 60 KiB.
pub const MAX_HEADER_BYTES: usize = 60 * 1024;
/// Largest request target accepted.
pub const MAX_URI_BYTES: usize = 16 * 1024;
/// Largest HTTP/1.1 head read, request or response (a request head beyond it
/// is answered 431; `validate_request` holds the header section to 60 KiB).
pub const MAX_HEAD_BYTES: usize = 96 * 1024;
/// Most header fields parsed in an HTTP/1.1 head (a request with more: 431).
pub const MAX_HEADER_COUNT: usize = 100;

/// Checks a parsed request for ambiguous framing, bad header bytes and size
/// limits.
pub fn validate_request<B>(req: &Request<B>) -> Result<(), Invalid> {
    let h = req.headers();
    // No value holds a control byte: each was checked where it was made
    // (hyper's parser and `HeaderValue::from_maybe_shared` in our HPACK
    // decoder refuse the same bytes), so only the tests look again.
    debug_assert!(!h.values().any(|v| v.as_bytes().iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)));
    let size: usize = h.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if size > MAX_HEADER_BYTES {
        return Err(Invalid("header section too large", 431));
    }
    let uri = req.uri();
    let target = uri.path_and_query().map_or(0, |p| p.as_str().len()) + uri.authority().map_or(0, |a| a.as_str().len());
    if target > MAX_URI_BYTES {
        return Err(Invalid("request target too long", 414));
    }
    let version = req.version();
    // Two Hosts are ambiguous in any version (an HTTP/2 request may carry
    // `host` fields beside, or instead of, `:authority`).
    let mut host_fields = h.get_all(header::HOST).iter();
    let host = host_fields.next();
    if host_fields.next().is_some() {
        return Err(Invalid("more than one Host header", 400));
    }
    if !host.is_none_or(|v| valid_host(v.as_bytes()))
        || !uri.authority().is_none_or(|a| host_bytes(a.as_str().as_bytes(), true))
    {
        return Err(Invalid("invalid Host", 400));
    }
    if version == Version::HTTP_11 || version == Version::HTTP_10 {
        if version == Version::HTTP_11 && host.is_none() && req.uri().authority().is_none() {
            return Err(Invalid("HTTP/1.1 request without Host", 400));
        }
        let te = h.get_all(header::TRANSFER_ENCODING).iter().count();
        let cl = h.get_all(header::CONTENT_LENGTH).iter().count();
        if te > 0 && cl > 0 {
            return Err(Invalid("both Transfer-Encoding and Content-Length", 400));
        }
        if cl > 1 {
            return Err(Invalid("more than one Content-Length header", 400));
        }
        if te > 0 && version == Version::HTTP_10 {
            return Err(Invalid("Transfer-Encoding in an HTTP/1.0 request", 400));
        }
        // Only a single `chunked` is accepted: a proxy forwards the body re-framed,
        // so another coding could only be passed through opaquely, and
        // `chunked, chunked` or a coding list read differently by the next hop is
        // how requests get smuggled.
        if te > 0 {
            let only_chunked = te == 1
                && h.get(header::TRANSFER_ENCODING).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
            if !only_chunked {
                return Err(Invalid("Transfer-Encoding other than a single chunked", 400));
            }
        }
    }
    if let Some(cl) = h.get(header::CONTENT_LENGTH) {
        if !cl.as_bytes().iter().all(u8::is_ascii_digit) || cl.is_empty() {
            return Err(Invalid("Content-Length is not a number", 400));
        }
    }
    if req.method() == Method::CONNECT {
        return Err(Invalid("CONNECT is not proxied", 400));
    }
    Ok(())
}

/// Whether a request is gRPC (`content-type: application/grpc[+proto|…]`).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The HTTP status for a proxy failure (Envoy's and MOSN's choices).
pub fn error_status(err: &ProxyError) -> StatusCode {
    match err {
        ProxyError::NoRoute => StatusCode::NOT_FOUND,
        ProxyError::NoHealthyHost | ProxyError::Overflow => StatusCode::SERVICE_UNAVAILABLE,
        ProxyError::ConnectFailed(_) | ProxyError::UpstreamReset => StatusCode::BAD_GATEWAY,
        ProxyError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ProxyError::Codec => StatusCode::BAD_REQUEST,
        ProxyError::Malformed { status, .. } => StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST),
        ProxyError::Forbidden => StatusCode::FORBIDDEN,
        ProxyError::DirectResponse { status, .. } => {
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        }
        ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A proxy failure as an HTTP answer: its status, its body, and whether it
/// is labelled as ferrymesh's own (`content-type: text/plain` and
/// `x-ferrymesh-error`); a route's direct response is sent as configured.
pub struct HttpError {
    pub status: StatusCode,
    pub labelled: bool,
    pub body: String,
}

pub fn http_error(err: &ProxyError) -> HttpError {
    match err {
        ProxyError::DirectResponse { body, .. } => {
            HttpError { status: error_status(err), labelled: false, body: body.clone() }
        }
        _ => HttpError { status: error_status(err), labelled: true, body: format!("{}\n", err.client_message()) },
    }
}

/// gRPC status codes (grpc/doc/statuscodes.md).
pub mod grpc_status {
    pub const OK: u32 = 0;
    pub const DEADLINE_EXCEEDED: u32 = 4;
    pub const PERMISSION_DENIED: u32 = 7;
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    pub const UNIMPLEMENTED: u32 = 12;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
    pub const UNKNOWN: u32 = 2;
}

/// The gRPC status for a proxy failure: what Envoy answers for each.
pub fn grpc_error_status(err: &ProxyError) -> u32 {
    use grpc_status::*;
    match err {
        ProxyError::NoRoute => UNIMPLEMENTED,
        ProxyError::NoHealthyHost | ProxyError::ConnectFailed(_) | ProxyError::UpstreamReset => UNAVAILABLE,
        ProxyError::Overflow => UNAVAILABLE,
        ProxyError::Timeout => DEADLINE_EXCEEDED,
        ProxyError::Codec | ProxyError::Malformed { .. } => INTERNAL,
        ProxyError::Forbidden => PERMISSION_DENIED,
        ProxyError::DirectResponse { status, .. } => http_to_grpc(*status),
        ProxyError::Internal(_) => INTERNAL,
    }
}

/// gRPC's mapping of HTTP statuses (grpc/doc/http-grpc-status-mapping.md).
pub fn http_to_grpc(status: u16) -> u32 {
    use grpc_status::*;
    match status {
        200 => OK,
        400 => INTERNAL,
        401 => 16,
        403 => PERMISSION_DENIED,
        404 => UNIMPLEMENTED,
        429 | 502 | 503 | 504 => UNAVAILABLE,
        _ => UNKNOWN,
    }
}

/// Parses a `grpc-timeout` header (`1S`, `500m`, `100u`, …) into a duration.
pub fn grpc_timeout(headers: &HeaderMap) -> Option<std::time::Duration> {
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    let (num, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    use std::time::Duration;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

pub mod h1;
pub mod h2;

#[cfg(test)]
mod tests;
