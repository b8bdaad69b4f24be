use super::*;

fn req(version: Version, headers: &[(&str, &str)]) -> Request<()> {
    let mut b = Request::builder().uri("/x").version(version);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap()
}

#[test]
fn detects_http1_and_h2_preface() {
    assert_eq!(detect_http1(b"GET / HTTP/1.1\r\n"), Detect::Match);
    assert_eq!(detect_http1(b"PO"), Detect::NeedMore);
    assert_eq!(detect_http1(b"\x01\x01"), Detect::NoMatch);
    // Any method, after the empty lines a server ignores.
    assert_eq!(detect_http1(b"PROPFIND /dav/ HTTP/1.1\r\n"), Detect::Match);
    assert_eq!(detect_http1(b"PURGE /x HTTP/1.1\r\n"), Detect::Match);
    assert_eq!(detect_http1(b"\r\nGET / HTTP/1.1\r\n"), Detect::Match);
    assert_eq!(detect_http1(b"\r\n"), Detect::NeedMore);
    assert_eq!(detect_http1(b"VERSION-CONTR"), Detect::NeedMore);
    assert_eq!(detect_http1(b"GET\t/"), Detect::NoMatch);
    assert_eq!(detect_http1(b" GET /"), Detect::NoMatch);
    assert_eq!(detect_http1(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ /"), Detect::NoMatch, "no method is that long");
    // The HTTP/2 preface is not an HTTP/1.1 request, however it arrives.
    assert_eq!(detect_http1(b"PRI "), Detect::NeedMore);
    assert_eq!(detect_http1(H2_PREFACE), Detect::NoMatch);
    assert_eq!(detect_http1(b"PRI /x HTTP/1.1\r\n"), Detect::Match);
    assert_eq!(detect_http2(H2_PREFACE), Detect::Match);
    assert_eq!(detect_http2(b"PRI * HT"), Detect::NeedMore);
    assert_eq!(detect_http2(b"GET / HTTP/1.1\r\n\r\nxxxxxxxxxx"), Detect::NoMatch);
}

#[test]
fn strips_hop_by_hop_and_connection_named_headers() {
    let mut h = HeaderMap::new();
    h.insert("connection", HeaderValue::from_static("keep-alive, x-private"));
    h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    h.insert("x-private", HeaderValue::from_static("1"));
    h.insert("te", HeaderValue::from_static("trailers"));
    h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
    h.insert("x-keep", HeaderValue::from_static("1"));
    strip_hop_by_hop(&mut h, false);
    let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, vec!["x-keep", "te"]);
}

#[test]
fn refuses_ambiguous_framing() {
    let ok = req(Version::HTTP_11, &[("host", "a"), ("content-length", "5")]);
    assert_eq!(validate_request(&ok), Ok(()));
    assert!(!valid_host("caf\u{e9}.example".as_bytes()));
    for host in ["a.example:8080", "127.0.0.1", "[::1]:80", "xn--caf-dma.example", "a_b.example", ""] {
        assert_eq!(validate_request(&req(Version::HTTP_11, &[("host", host)])), Ok(()), "{host}");
    }
    let big = req(Version::HTTP_11, &[("host", "a"), ("x-big", &"b".repeat(70 * 1024))]);
    assert_eq!(validate_request(&big).unwrap_err().1, 431);
    let cases: &[(&str, Request<()>)] = &[
        ("no host", req(Version::HTTP_11, &[])),
        ("two hosts", req(Version::HTTP_11, &[("host", "a"), ("host", "b")])),
        ("two hosts in HTTP/2", req(Version::HTTP_2, &[("host", "a"), ("host", "b")])),
        ("cl+te", req(Version::HTTP_11, &[("host", "a"), ("content-length", "5"), ("transfer-encoding", "chunked")])),
        ("two cl", req(Version::HTTP_11, &[("host", "a"), ("content-length", "5"), ("content-length", "5")])),
        ("te 1.0", req(Version::HTTP_10, &[("transfer-encoding", "chunked")])),
        ("te gzip", req(Version::HTTP_11, &[("host", "a"), ("transfer-encoding", "gzip")])),
        ("te chunked,gzip", req(Version::HTTP_11, &[("host", "a"), ("transfer-encoding", "chunked, gzip")])),
        ("te chunked,chunked", req(Version::HTTP_11, &[("host", "a"), ("transfer-encoding", "chunked, chunked")])),
        ("te xfoo,chunked", req(Version::HTTP_11, &[("host", "a"), ("transfer-encoding", "xfoo, chunked")])),
        ("cl +5", req(Version::HTTP_11, &[("host", "a"), ("content-length", "+5")])),
        ("host with a space", req(Version::HTTP_11, &[("host", "evil.com .internal.example")])),
        ("host list", req(Version::HTTP_11, &[("host", "evil.com, x.internal.example")])),
        ("host with a slash", req(Version::HTTP_11, &[("host", "evil.com/.internal.example")])),
        ("host with a fragment", req(Version::HTTP_11, &[("host", "evil.com#.internal.example")])),
        ("host with userinfo", req(Version::HTTP_11, &[("host", "user@internal.example")])),
        ("host with a quote", req(Version::HTTP_11, &[("host", "a\"b")])),
    ];
    for (name, r) in cases {
        assert!(validate_request(r).is_err(), "{name}");
    }
}

#[test]
fn grpc_mappings_and_timeouts() {
    assert_eq!(grpc_error_status(&ProxyError::NoHealthyHost), 14);
    assert_eq!(grpc_error_status(&ProxyError::Timeout), 4);
    assert_eq!(grpc_error_status(&ProxyError::NoRoute), 12);
    let mut h = HeaderMap::new();
    h.insert("grpc-timeout", HeaderValue::from_static("250m"));
    assert_eq!(grpc_timeout(&h), Some(std::time::Duration::from_millis(250)));
    h.insert("grpc-timeout", HeaderValue::from_static("2S"));
    assert_eq!(grpc_timeout(&h), Some(std::time::Duration::from_secs(2)));
    h.insert("grpc-timeout", HeaderValue::from_static("x"));
    assert_eq!(grpc_timeout(&h), None);
}

#[test]
fn an_h2c_upgrade_is_taken_out_and_others_stay() {
    let headers = |pairs: &[(&str, &str)]| {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    };
    let mut h2c =
        headers(&[("upgrade", "h2c"), ("http2-settings", "AAEAAEAA"), ("connection", "Upgrade, HTTP2-Settings")]);
    assert!(!drop_h2c_upgrade(&mut h2c));
    assert!(h2c.get("upgrade").is_none() && h2c.get("http2-settings").is_none());
    let mut both = headers(&[("upgrade", "H2C, websocket"), ("http2-settings", "AAEAAEAA")]);
    assert!(drop_h2c_upgrade(&mut both));
    assert_eq!(both.get("upgrade").unwrap(), "websocket");
    assert!(both.get("http2-settings").is_none());
    let mut ws = headers(&[("upgrade", "websocket"), ("connection", "upgrade")]);
    assert!(drop_h2c_upgrade(&mut ws));
    assert_eq!(ws.get("upgrade").unwrap(), "websocket");
}
