use std::collections::HashMap;

use super::*;
use crate::config::model::RouterConfiguration;

fn table(json: serde_json::Value) -> RouteTable {
    let cfg: RouterConfiguration = serde_json::from_value(json).unwrap();
    let clusters: HashMap<String, usize> = [("a".to_string(), 0), ("b".to_string(), 1)].into_iter().collect();
    RouteTable::compile(&cfg, "r", &clusters).unwrap()
}

fn lookup<'a>(headers: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a [u8]> {
    move |name| headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_bytes())
}

fn cluster_of(t: &RouteTable, headers: &[(&str, &str)]) -> Option<usize> {
    let h = lookup(headers);
    t.route(None, &h).and_then(|r| r.pick_cluster(0))
}

#[test]
fn header_rules_exact_regex_and_present() {
    let t = table(
        serde_json::json!({"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routers": [
            {"match": {"headers": [{"name": "service", "value": "com.a:1.0"}, {"name": "method", "value": "get.*", "regex": true}]}, "route": {"cluster_name": "a"}},
            {"match": {"headers": [{"name": "service", "value": "com\\.b:.*", "regex": true}]}, "route": {"cluster_name": "b"}},
            {"match": {"headers": [{"name": "zone", "value": ".*"}]}, "route": {"cluster_name": "a"}}
        ]}]}),
    );
    assert_eq!(cluster_of(&t, &[("service", "com.a:1.0"), ("method", "getUser")]), Some(0));
    assert_eq!(cluster_of(&t, &[("service", "com.a:1.0"), ("method", "putUser")]), None);
    assert_eq!(cluster_of(&t, &[("service", "com.b:2.0")]), Some(1));
    // Regexes are anchored: a prefix match is not enough.
    assert_eq!(cluster_of(&t, &[("service", "xcom.b:2.0")]), None);
    // ".*" means present and non-empty.
    assert_eq!(cluster_of(&t, &[("zone", "gz")]), Some(0));
    assert_eq!(cluster_of(&t, &[("zone", "")]), None);
    assert_eq!(cluster_of(&t, &[]), None);
}

#[test]
fn weighted_clusters_follow_the_roll() {
    let t = table(serde_json::json!({"router_config_name": "r", "virtual_hosts": [{"name": "v", "routers": [
        {"match": {"headers": []}, "route": {"weighted_clusters": [{"cluster": {"name": "a", "weight": 3}}, {"cluster": {"name": "b", "weight": 1}}]}}
    ]}]}));
    let h = lookup(&[]);
    let r = t.route(None, &h).unwrap();
    let picks: Vec<usize> = (0..8).map(|roll| r.pick_cluster(roll).unwrap()).collect();
    assert_eq!(picks, vec![0, 0, 0, 1, 0, 0, 0, 1]);
}

#[test]
fn virtual_hosts_by_domain() {
    let t = table(serde_json::json!({"router_config_name": "r", "virtual_hosts": [
        {"name": "exact", "domains": ["api.example.com"], "routers": [{"match": {"headers": []}, "route": {"cluster_name": "a"}}]},
        {"name": "wild", "domains": ["*.example.com"], "routers": [{"match": {"headers": []}, "route": {"cluster_name": "b"}}]},
        {"name": "any", "domains": ["*"], "routers": [{"match": {"headers": []}, "direct_response": {"status": 404}}]}
    ]}));
    let h = lookup(&[]);
    let pick = |host| t.route(Some(host), &h).and_then(|r| r.pick_cluster(0));
    assert_eq!(pick("api.example.com"), Some(0));
    assert_eq!(pick("API.example.com"), Some(0));
    assert_eq!(pick("web.example.com"), Some(1));
    assert_eq!(pick("other.org"), None);
    assert!(matches!(t.route(None, &h).unwrap().target, Target::Direct { status: 404, .. }));
}

#[test]
fn a_prefix_rewrite_must_be_a_plain_path() {
    let clusters: HashMap<String, usize> = [("a".to_string(), 0)].into_iter().collect();
    for (rewrite, ok) in [("/v2/", true), ("/", true), ("v2", false), ("/a b", false), ("/a\"b", false)] {
        let cfg: RouterConfiguration = serde_json::from_value(serde_json::json!({"router_config_name": "r",
            "virtual_hosts": [{"name": "v", "routers": [
                {"match": {"prefix": "/old/"}, "route": {"cluster_name": "a", "prefix_rewrite": rewrite}}]}]}))
        .unwrap();
        match RouteTable::compile(&cfg, "r", &clusters) {
            Ok(_) => assert!(ok, "{rewrite:?} accepted"),
            Err(e) => {
                assert!(!ok, "{rewrite:?} refused: {e}");
                assert!(e.to_string().contains("prefix_rewrite"), "the field's path: {e}");
            }
        }
    }
}

#[test]
fn routes_may_not_touch_framing_hop_by_hop_or_remove_host() {
    let clusters: HashMap<String, usize> = [("a".to_string(), 0)].into_iter().collect();
    let refused = |route: serde_json::Value, field: &str| {
        let mut r = serde_json::json!({"cluster_name": "a"});
        r.as_object_mut().unwrap().extend(route.as_object().unwrap().clone());
        let cfg: RouterConfiguration = serde_json::from_value(serde_json::json!({"router_config_name": "r",
            "virtual_hosts": [{"name": "v", "routers": [{"match": {"prefix": "/"}, "route": r}]}]}))
        .unwrap();
        match RouteTable::compile(&cfg, "r", &clusters) {
            Ok(_) => panic!("accepted: {field}"),
            Err(e) => assert!(e.to_string().contains(field), "{field}: {e}"),
        }
    };
    let add = |k: &str, v: &str| serde_json::json!({"request_headers_to_add": [{"header": {"key": k, "value": v}}]});
    refused(add("Content-Length", "0"), "request_headers_to_add[0].header.key");
    refused(add("transfer-encoding", "chunked"), "request_headers_to_add[0].header.key");
    refused(add("connection", "close"), "request_headers_to_add[0].header.key");
    refused(add("host", "a b"), "request_headers_to_add[0].header.value");
    refused(serde_json::json!({"request_headers_to_remove": ["x", "Host"]}), "request_headers_to_remove[1]");
    refused(serde_json::json!({"host_rewrite": "api.internal/v1"}), "host_rewrite");
    refused(serde_json::json!({"host_rewrite": "user@api.internal"}), "host_rewrite");
    // What stays allowed: a host to set, another header, removing Content-Length.
    let cfg: RouterConfiguration = serde_json::from_value(serde_json::json!({"router_config_name": "r",
        "virtual_hosts": [{"name": "v", "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "a",
            "host_rewrite": "api.internal:8080",
            "request_headers_to_add": [{"header": {"key": "host", "value": "b.internal"}}, {"header": {"key": "x-a", "value": "1"}}],
            "request_headers_to_remove": ["content-length"]}}]}]}))
    .unwrap();
    assert!(RouteTable::compile(&cfg, "r", &clusters).is_ok());
}
