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
fn rpc_key_is_the_one_header_rpc_routes_test() {
    let key = |routers: serde_json::Value| {
        let t =
            table(serde_json::json!({"router_config_name": "r", "virtual_hosts": [{"name": "v", "routers": routers}]}));
        t.rpc_key().map(String::from)
    };
    let by_service = serde_json::json!([
        {"match": {"headers": [{"name": "service", "value": "com.a:1.0"}]}, "route": {"cluster_name": "a"}},
        {"match": {"headers": [{"name": "service", "value": "com\\.b:.*", "regex": true}]}, "route": {"cluster_name": "b"}},
        // Never met by RPC: no path.
        {"match": {"prefix": "/x", "headers": [{"name": "zone", "value": "gz"}]}, "route": {"cluster_name": "a"}},
        {"match": {"headers": [{"name": "service", "value": ".*"}]}, "route": {"cluster_name": "a"}}
    ]);
    assert_eq!(key(by_service.clone()).as_deref(), Some("service"));
    let mut two = by_service.as_array().unwrap().clone();
    two.push(
        serde_json::json!({"match": {"headers": [{"name": "method", "value": "get"}]}, "route": {"cluster_name": "b"}}),
    );
    assert_eq!(key(serde_json::Value::Array(two)), None);
    // No header rule: one answer for every request.
    assert_eq!(
        key(serde_json::json!([{"match": {"headers": []}, "route": {"cluster_name": "a"}}])).as_deref(),
        Some("service")
    );
    // A query rule never matches RPC either.
    let mut query = by_service.as_array().unwrap().clone();
    query.push(serde_json::json!({"match": {"query_parameters": [{"name": "v", "value": "1"}], "headers": [{"name": "zone", "value": "gz"}]}, "route": {"cluster_name": "b"}}));
    assert_eq!(key(serde_json::Value::Array(query)).as_deref(), Some("service"));
    // The virtual host RPC requests meet (`*`) is the one that counts, wherever it is.
    let hosts = |any_routes: serde_json::Value| {
        let t = table(serde_json::json!({"router_config_name": "r", "virtual_hosts": [
            {"name": "x", "domains": ["x.com"], "routers": [{"match": {"headers": [{"name": "method", "value": "get"}]}, "route": {"cluster_name": "a"}}]},
            {"name": "any", "domains": ["*"], "routers": any_routes}]}));
        t.rpc_key().map(String::from)
    };
    assert_eq!(hosts(by_service.clone()).as_deref(), Some("service"));
    let mut any_two = by_service.as_array().unwrap().clone();
    any_two.push(
        serde_json::json!({"match": {"headers": [{"name": "method", "value": "get"}]}, "route": {"cluster_name": "b"}}),
    );
    assert_eq!(hosts(serde_json::Value::Array(any_two)), None);
    // Without `*`, RPC requests meet the first virtual host.
    let first = table(serde_json::json!({"router_config_name": "r", "virtual_hosts": [
        {"name": "x", "domains": ["x.com"], "routers": [{"match": {"headers": [{"name": "method", "value": "get"}]}, "route": {"cluster_name": "a"}}]},
        {"name": "y", "domains": ["y.com"], "routers": [{"match": {"headers": [{"name": "zone", "value": "gz"}]}, "route": {"cluster_name": "b"}}]}]}));
    assert_eq!(first.rpc_key(), Some("method"));
    assert!(first.rpc_route(&lookup(&[("method", "get")])).is_some());
    // No virtual host at all: every request misses, whatever it sends.
    let none = table(serde_json::json!({"router_config_name": "r", "virtual_hosts": []}));
    assert!(none.rpc_key().is_some());
    assert_eq!(none.rpc_route(&lookup(&[("method", "get")])), None);

    // Where there is a key, the route follows its value alone, and
    // `rpc_route` agrees with `route`.
    let t =
        table(serde_json::json!({"router_config_name": "r", "virtual_hosts": [{"name": "v", "routers": by_service}]}));
    for service in ["com.a:1.0", "com.b:2.0", "com.c:3.0", ""] {
        for extra in [&[][..], &[("zone", "gz"), ("method", "get")][..]] {
            let mut headers = vec![("service", service)];
            headers.extend_from_slice(extra);
            let h = lookup(&headers);
            let alone = [("service", service)];
            let only = lookup(&alone);
            let pos = t.rpc_route(&h);
            assert_eq!(pos, t.rpc_route(&only), "{service} {extra:?}");
            let via_pos = pos.map(|p| t.entry(p) as *const RouteEntry);
            assert_eq!(via_pos, t.route(None, &h).map(|r| r as *const RouteEntry), "{service}");
        }
    }
    assert_eq!(t.rpc_route(&lookup(&[])), None);
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

/// Random route tables and requests: the indexed matcher must pick exactly
/// the route the linear oracle (`linear.rs`) picks.
mod oracle {
    use std::collections::HashSet;

    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;
    use crate::protocol::bolt::{RequestBuilder, BOLT_V1};
    use crate::protocol::Codec;

    const DOMAINS: &[&str] = &[
        "a.com",
        "API.a.com",
        "b.org",
        "x.a.com",
        "*.a.com",
        "*a.com",
        "*.com",
        "*-b.org",
        "api.*",
        "a.*",
        "x.a.*",
        "*",
    ];
    const HOSTS: &[&str] = &[
        "a.com",
        "api.a.com",
        "API.A.COM",
        "x.a.com",
        "y.x.a.com",
        ".a.com",
        "ba.com",
        "b.org",
        "c-b.org",
        "-b.org",
        "api.z",
        "api.",
        "a.b",
        "x.a.com.cn",
        "other.net",
        "",
    ];
    const PATHS: &[&str] = &["/", "/a", "/a/", "/a/b", "/a/b/c", "/ab", "/b", "/b/", "/api/v1", "/api/v1/x", "/A"];
    const NAMES: &[&str] = &["service", "method", "x-a", ":method", ":authority", ":path"];
    const VALUES: &[&str] = &["s1", "s2", "GET", "POST", "a.com", "/a", ""];

    fn one(pool: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
        proptest::sample::select(pool)
    }

    fn value_matcher() -> impl Strategy<Value = Value> {
        prop_oneof![
            4 => one(VALUES).prop_map(|v| json!({"value": v})),
            1 => Just(json!({"value": "s.*|GE.", "regex": true})),
            1 => Just(json!({"value": ".*"})),
            1 => Just(json!({"present": true})),
        ]
    }

    fn route(id: usize) -> impl Strategy<Value = Value> {
        let path = prop_oneof![
            3 => Just(None),
            2 => one(PATHS).prop_map(|p| Some(("path", p.to_string()))),
            3 => one(PATHS).prop_map(|p| Some(("prefix", p.to_string()))),
            1 => Just(Some(("regex", "/a.*".to_string()))),
        ];
        let header = (one(NAMES), value_matcher()).prop_map(|(n, mut m)| {
            m["name"] = json!(n);
            m
        });
        let query = (one(&["q", "v"]), value_matcher()).prop_map(|(n, mut m)| {
            m["name"] = json!(n);
            m
        });
        (path, proptest::collection::vec(header, 0..3), proptest::collection::vec(query, 0..2)).prop_map(
            move |(path, headers, query)| {
                let mut m = json!({"headers": headers, "query_parameters": query});
                if let Some((kind, p)) = path {
                    m[kind] = json!(p);
                }
                // Each route answers with its own status, so picks can be told apart.
                json!({"match": m, "direct_response": {"status": 200 + id}})
            },
        )
    }

    fn vhost(v: usize) -> impl Strategy<Value = Value> {
        let routes = (0..12usize).prop_flat_map(move |n| (0..n).map(move |r| route(v * 100 + r)).collect::<Vec<_>>());
        (proptest::collection::vec(one(DOMAINS), 0..4), routes)
            .prop_map(|(domains, routes)| json!({"name": "v", "domains": domains, "routers": routes}))
    }

    fn table_json() -> impl Strategy<Value = Value> {
        (1..5usize).prop_flat_map(|n| (0..n).map(vhost).collect::<Vec<_>>()).prop_map(|mut vhosts| {
            // Each domain in one virtual host only (compile refuses the rest).
            let mut seen = HashSet::new();
            for (v, vh) in vhosts.iter_mut().enumerate() {
                let domains: Vec<Value> = vh["domains"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|d| seen.insert(d.as_str().unwrap().to_ascii_lowercase()))
                    .cloned()
                    .collect();
                if domains.is_empty() && !seen.insert("*".into()) {
                    vh["domains"] = json!([format!("unused{v}.example")]);
                } else {
                    vh["domains"] = json!(domains);
                }
            }
            json!({"router_config_name": "r", "virtual_hosts": vhosts})
        })
    }

    #[derive(Debug)]
    struct Request {
        host: Option<&'static str>,
        path: Option<&'static str>,
        query: Option<&'static str>,
        headers: Vec<(&'static str, &'static str)>,
    }

    fn request() -> impl Strategy<Value = Request> {
        (
            proptest::option::of(one(HOSTS)),
            proptest::option::of(one(PATHS)),
            proptest::option::of(one(&["q=s1", "q=", "v=GET&q=s2", "q", "x=1"])),
            proptest::collection::vec((one(NAMES), one(VALUES)), 0..5),
        )
            .prop_map(|(host, path, query, headers)| Request { host, path, query, headers })
    }

    fn compiled(json: Value) -> RouteTable {
        let cfg: RouterConfiguration = serde_json::from_value(json).unwrap();
        RouteTable::compile(&cfg, "r", &HashMap::new()).unwrap()
    }

    fn same(a: Option<&std::sync::Arc<RouteEntry>>, b: Option<&std::sync::Arc<RouteEntry>>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn http_picks_what_the_linear_scan_picks(json in table_json(), reqs in proptest::collection::vec(request(), 1..40)) {
            let t = compiled(json);
            for r in &reqs {
                let header = |name: &str| r.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_bytes());
                let input = RouteInput { host: r.host, path: r.path, query: r.query, header: &header };
                prop_assert!(same(t.find(&input), t.find_linear(&input)),
                    "host {:?} path {:?} query {:?} headers {:?}", r.host, r.path, r.query, r.headers);
            }
        }

        /// bolt: the header list parsed once answers as lookups in the frame did.
        #[test]
        fn bolt_picks_what_the_linear_scan_picks(json in table_json(), reqs in proptest::collection::vec(request(), 1..40)) {
            let t = compiled(json);
            for r in &reqs {
                let mut b = RequestBuilder::new(1, "s1", b"x");
                for (k, v) in &r.headers {
                    b = b.header(k, v);
                }
                let frame = b.encode();
                let list = BOLT_V1.header_list(&frame);
                let once = |name: &str| BOLT_V1.header_in(&list, name);
                let lazy = |name: &str| BOLT_V1.header(&frame, name);
                let a = t.find(&RouteInput { host: None, path: None, query: None, header: &once });
                let b = t.find_linear(&RouteInput { host: None, path: None, query: None, header: &lazy });
                prop_assert!(same(a, b), "headers {:?}", r.headers);
            }
        }
    }
}
