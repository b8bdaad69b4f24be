use std::net::SocketAddr;

use super::*;
use crate::protocol::bolt::{RequestBuilder, BOLT_V1};

fn peer(ip: &str) -> SocketAddr {
    format!("{ip}:5000").parse().unwrap()
}

#[test]
fn cidr_blocks() {
    let b = Cidr::parse("10.1.0.0/16").unwrap();
    assert!(b.contains("10.1.200.3".parse().unwrap()));
    assert!(!b.contains("10.2.0.1".parse().unwrap()));
    assert!(Cidr::parse("127.0.0.1").unwrap().contains("::ffff:127.0.0.1".parse().unwrap()));
    assert!(Cidr::parse("::/0").unwrap().contains("2001:db8::1".parse().unwrap()));
    assert!(Cidr::parse("10.0.0.0/33").is_err());
    assert!(Cidr::parse("nope").is_err());
}

#[test]
fn ip_access_in_mosns_schema() {
    let mut w = Vec::new();
    let f = IpAccess::parse(
        serde_json::json!({"default_action": "deny", "ips": [
            {"action": "deny", "addrs": ["10.1.0.0/16"]},
            {"action": "allow", "addrs": ["10.0.0.0/8", "127.0.0.1"]}
        ]}),
        "f",
        &mut w,
    )
    .unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert!(!f.permits(peer("10.1.2.3")), "the first rule that holds it decides");
    assert!(f.permits(peer("10.2.2.3")));
    assert!(f.permits(peer("127.0.0.1")));
    assert!(!f.permits(peer("192.168.0.1")), "no rule: the default");
    let open = IpAccess::parse(serde_json::json!({"ips": [{"action": "deny", "addrs": ["10.0.0.0/8"]}]}), "f", &mut w)
        .unwrap();
    assert!(open.permits(peer("192.168.0.1")), "no default_action: allow");
    let err = IpAccess::parse(serde_json::json!({"ips": [{"action": "maybe", "addrs": []}]}), "f", &mut w).unwrap_err();
    assert_eq!(err.path, "f.ips[0].action");
    let err =
        IpAccess::parse(serde_json::json!({"ips": [{"action": "allow", "addrs": ["nope"]}]}), "f", &mut w).unwrap_err();
    assert_eq!(err.path, "f.ips[0].addrs[0]");
    // The address from a header, when the request carries one.
    let by_header = IpAccess::parse(
        serde_json::json!({"header": "x-real-ip", "default_action": "allow", "ips": [{"action": "deny", "addrs": ["10.0.0.0/8"]}]}),
        "f",
        &mut w,
    )
    .unwrap();
    let chain = FilterChain::new(&[FilterSpec::IpAccess(by_header)]);
    let from_10 = RequestBuilder::new(1, "svc", b"").header("x-real-ip", "10.9.9.9").encode();
    assert_eq!(chain.on_request(&BOLT_V1, &from_10, peer("127.0.0.1")).unwrap_err(), ProxyError::Forbidden);
    let plain = RequestBuilder::new(2, "svc", b"").encode();
    assert!(chain.on_request(&BOLT_V1, &plain, peer("127.0.0.1")).unwrap().is_none());
    assert_eq!(chain.on_request(&BOLT_V1, &plain, peer("10.0.0.1")).unwrap_err(), ProxyError::Forbidden);
}

#[test]
fn ip_access_earlier_form_still_reads_with_a_warning() {
    let mut w = Vec::new();
    let allow = IpAccess::parse(serde_json::json!({"allow": ["10.0.0.0/8"]}), "f", &mut w).unwrap();
    assert!(allow.permits(peer("10.3.4.5")));
    assert!(!allow.permits(peer("192.168.1.1")));
    let deny = IpAccess::parse(serde_json::json!({"deny": ["10.0.0.0/8"]}), "f", &mut w).unwrap();
    assert!(!deny.permits(peer("10.3.4.5")));
    assert!(deny.permits(peer("192.168.1.1")));
    assert!(IpAccess::parse(serde_json::json!({"allow": [], "deny": []}), "f", &mut w).is_err());
    assert!(w.iter().all(|m| m.contains("earlier form")), "{w:?}");
}

#[test]
fn unchanged_requests_are_not_reencoded_and_changed_ones_are() {
    let frame = RequestBuilder::new(3, "svc", b"body").header("a", "1").encode();
    let chain = FilterChain::new(&[FilterSpec::IpAccess(
        IpAccess::parse(serde_json::json!({"deny": ["10.0.0.0/8"]}), "f", &mut Vec::new()).unwrap(),
    )]);
    assert!(chain.on_request(&BOLT_V1, &frame, peer("127.0.0.1")).unwrap().is_none());
    assert_eq!(chain.on_request(&BOLT_V1, &frame, peer("10.0.0.1")).unwrap_err(), ProxyError::Forbidden);

    let hm: HeaderMutation = serde_json::from_value(serde_json::json!({
        "request_headers_to_add": [{"key": "a", "value": "2"}, {"key": "b", "value": "3"}],
        "request_headers_to_remove": ["service"]
    }))
    .unwrap();
    let chain = FilterChain::new(&[FilterSpec::HeaderMutation(hm)]);
    let out = chain.on_request(&BOLT_V1, &frame, peer("127.0.0.1")).unwrap().expect("re-encoded");
    let info = BOLT_V1.decode(&out, 1 << 20).unwrap().unwrap();
    assert_eq!(info.len, out.len());
    assert_eq!(info.id, 3);
    let headers = BOLT_V1.headers(&out).unwrap();
    assert_eq!(headers, vec![(&b"a"[..], &b"2"[..]), (&b"b"[..], &b"3"[..])]);
    assert_eq!(BOLT_V1.split(&out).2, b"body");
}
