use super::*;
use serde_json::json;

const MOSN_BOLT: &str = r#"{
  "disable_upgrade": true,
  "servers": [{"default_log_path": "stdout", "default_log_level": "INFO",
    "routers": [{"router_config_name": "client_router",
      "virtual_hosts": [{"name": "clientHost", "domains": ["*"],
        "routers": [{"match": {"headers": [{"name": "service", "value": ".*"}]},
                     "route": {"cluster_name": "clientCluster"}}]}]}],
    "listeners": [{"name": "clientListener", "address": "127.0.0.1:2045", "bind_port": true,
      "filter_chains": [{"filters": [{"type": "proxy", "config":
        {"downstream_protocol": "X", "extend_config": {"sub_protocol": "bolt"}, "router_config_name": "client_router"}}]}]}]}],
  "cluster_manager": {"clusters": [{"name": "clientCluster", "type": "SIMPLE", "lb_type": "LB_RANDOM",
    "max_request_per_conn": 1024, "conn_buffer_limit_bytes": 32768,
    "hosts": [{"address": "127.0.0.1:2046"}]}]},
  "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 34901}}}
}"#;

fn err(text: &str) -> ConfigError {
    load_str(text, false).expect_err("config should be refused")
}

#[test]
fn reads_mosns_sample_bolt_config() {
    let s = load_str(MOSN_BOLT, false).unwrap();
    assert_eq!(s.listeners.len(), 1);
    let l = &s.listeners[0];
    assert_eq!(l.addr.to_string(), "127.0.0.1:2045");
    assert_eq!(l.downstream.describe(), "bolt");
    assert_eq!(s.clusters[0].lb, LbKind::Random);
    assert_eq!(s.clusters[0].max_request_per_conn, 1024);
    assert!(s.warnings.is_empty(), "MOSN's own sample needs no warnings: {:?}", s.warnings);
}

#[test]
fn yaml_of_the_same_shape_is_accepted() {
    let yaml = r#"
servers:
  - routers:
      - router_config_name: r
        virtual_hosts:
          - name: all
            domains: ["*"]
            routers:
              - match: { headers: [{ name: service, value: "com.a:1.0" }] }
                route: { cluster_name: c, timeout: 500ms }
    listeners:
      - name: l
        address: 127.0.0.1:2045
        filter_chains:
          - filters:
              - type: proxy
                config: { downstream_protocol: bolt, router_config_name: r }
cluster_manager:
  clusters:
    - name: c
      lb_type: LB_WEIGHTED_ROUNDROBIN
      hosts: [{ address: "127.0.0.1:1", weight: 3 }]
"#;
    let s = load_str(yaml, true).unwrap();
    assert_eq!(s.clusters[0].lb, LbKind::WeightedRoundRobin);
    assert_eq!(s.clusters[0].hosts[0].weight, 3);
}

#[test]
fn cluster_idle_timeout_defaults_to_60s_and_zero_means_never() {
    let s = load_str(MOSN_BOLT, false).unwrap();
    assert_eq!(s.clusters[0].idle_timeout, Some(DEFAULT_UPSTREAM_IDLE_TIMEOUT));
    for (value, expected) in [("\"5s\"", Some(Duration::from_secs(5))), ("\"0s\"", None)] {
        let text = MOSN_BOLT.replace("\"max_request_per_conn\": 1024", &format!("\"idle_timeout\": {value}"));
        let s = load_str(&text, false).unwrap();
        assert_eq!(s.clusters[0].idle_timeout, expected, "{value}");
        let w = "cluster_manager.clusters[0].idle_timeout: applies to pooled HTTP/1.1 upstream connections; multiplexed bolt and HTTP/2 ones stay open";
        assert!(s.warnings.iter().any(|x| x == w), "{:?}", s.warnings);
    }
    let e = err(&MOSN_BOLT.replace("\"max_request_per_conn\": 1024", "\"idle_timeout\": \"soon\""));
    assert!(e.to_string().contains("idle_timeout"), "{e}");
}

#[test]
fn unknown_fields_are_warned_with_their_path() {
    let text = MOSN_BOLT.replace("\"bind_port\": true", "\"bind_port\": true, \"frobnicate\": 1");
    let s = load_str(&text, false).unwrap();
    assert!(
        s.warnings.iter().any(|w| w == "servers[0].listeners[0].frobnicate: unknown field, ignored"),
        "{:?}",
        s.warnings
    );
}

#[test]
fn wrong_fields_are_refused_with_path_and_reason() {
    let e = err(&MOSN_BOLT.replace("\"bind_port\": true", "\"bind_port\": \"yes\""));
    assert_eq!(e.path, "servers[0].listeners[0].bind_port");
    assert!(e.reason.contains("expected a boolean"), "{e}");

    let e = err(&MOSN_BOLT.replace("127.0.0.1:2046", "localhost"));
    assert_eq!(e.path, "cluster_manager.clusters[0].hosts[0].address");

    let e = err(&MOSN_BOLT.replace("\"cluster_name\": \"clientCluster\"", "\"cluster_name\": \"nope\""));
    assert_eq!(e.path, "servers[0].routers[0].virtual_hosts[0].routers[0].route.cluster_name");
    assert!(e.reason.contains("no cluster named \"nope\""));

    let e = err(&MOSN_BOLT.replace("LB_RANDOM", "LB_FANCY"));
    assert_eq!(e.path, "cluster_manager.clusters[0].lb_type");

    let e = err(&MOSN_BOLT.replace("\"sub_protocol\": \"bolt\"", "\"sub_protocol\": \"thrift\""));
    assert_eq!(e.path, "servers[0].listeners[0].filter_chains[0].filters[0].config.extend_config.sub_protocol");

    let e = err(&MOSN_BOLT.replace("\"router_config_name\": \"client_router\"}", "\"router_config_name\": \"other\"}"));
    assert_eq!(e.path, "servers[0].listeners[0].filter_chains[0].filters[0].config.router_config_name");

    let e = err(&MOSN_BOLT.replace("\"value\": \".*\"", "\"value\": \"(\", \"regex\": true"));
    assert_eq!(e.path, "servers[0].routers[0].virtual_hosts[0].routers[0].match.headers[0].value");

    let e = err(&MOSN_BOLT
        .replace("\"cluster_name\": \"clientCluster\"}", "\"cluster_name\": \"clientCluster\", \"timeout\": \"3\"}"));
    assert_eq!(e.path, "servers[0].routers[0].virtual_hosts[0].routers[0].route.timeout");
    assert!(e.reason.contains("missing unit"), "{e}");

    let e = err("{not json");
    assert!(e.reason.starts_with("invalid JSON"));
}

#[test]
fn stream_filters_are_checked_and_unknown_ones_skipped() {
    let text = MOSN_BOLT.replace(
        "\"bind_port\": true,",
        "\"bind_port\": true, \"stream_filters\": [{\"type\": \"ip_access\", \"config\": {\"allow\": [\"10.0.0.0/33\"]}}],",
    );
    let e = err(&text);
    assert_eq!(e.path, "servers[0].listeners[0].stream_filters[0].config.allow[0]");

    let text = MOSN_BOLT
        .replace("\"bind_port\": true,", "\"bind_port\": true, \"stream_filters\": [{\"type\": \"healthcheck\"}],");
    let s = load_str(&text, false).unwrap();
    assert!(s.warnings.iter().any(|w| w.contains("unknown stream filter \"healthcheck\"")));
}

/// The shape of MOSN's `configs/mosn_rpc_config_bolt.json`: two listeners with
/// `Auto` protocols (and the legacy sub_protocol), a `healthcheck` stream filter
/// MOSN no longer registers, LB_RANDOM clusters and an admin block.
#[test]
fn mosn_rpc_config_bolt_shape_starts() {
    let text = r#"{"servers": [{"default_log_path": "stdout",
      "routers": [
        {"router_config_name": "server_router", "virtual_hosts": [{"name": "serverHost", "domains": ["*"],
          "routers": [{"match": {"headers": [{"name": "service", "value": ".*"}]}, "route": {"cluster_name": "serverCluster"}}]}]},
        {"router_config_name": "client_router", "virtual_hosts": [{"name": "clientHost", "domains": ["*"],
          "routers": [{"match": {"headers": [{"name": "service", "value": ".*"}]}, "route": {"cluster_name": "clientCluster"}}]}]}],
      "listeners": [
        {"name": "serverListener", "address": "127.0.0.1:2046", "bind_port": true,
         "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "Auto", "upstream_protocol": "Auto",
           "router_config_name": "server_router", "extend_config": {"sub_protocol": "bolt"}}}]}],
         "stream_filters": [{"type": "healthcheck", "config": {}}]},
        {"name": "clientListener", "address": "127.0.0.1:2045", "bind_port": true,
         "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "Auto", "upstream_protocol": "Auto",
           "router_config_name": "client_router", "extend_config": {"sub_protocol": "bolt"}}}]}]}]}],
      "cluster_manager": {"clusters": [
        {"name": "serverCluster", "type": "SIMPLE", "lb_type": "LB_RANDOM", "max_request_per_conn": 1024,
         "conn_buffer_limit_bytes": 32768, "hosts": [{"address": "127.0.0.1:12199"}]},
        {"name": "clientCluster", "type": "SIMPLE", "lb_type": "LB_RANDOM", "max_request_per_conn": 1024,
         "conn_buffer_limit_bytes": 32768, "hosts": [{"address": "127.0.0.1:2046"}]}]},
      "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 34901}}}}"#;
    let s = load_str(text, false).unwrap();
    assert_eq!(s.listeners.len(), 2);
    assert!(matches!(s.listeners[0].downstream, DownstreamProtocol::Detect(_)));
    assert!(s.listeners[0].upstream.is_none());
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert!(s.warnings[0].contains("healthcheck"));
    let s = load_str(
        &text.replace("\"Auto\", \"upstream_protocol\": \"Auto\"", "\"bolt,boltv2\", \"upstream_protocol\": \"bolt\""),
        false,
    )
    .unwrap();
    assert_eq!(s.listeners[0].downstream.describe(), "Auto(bolt,boltv2)");
}

#[test]
fn upstream_frame_limit_is_the_largest_listeners_and_never_below_the_default() {
    let s = load_str(MOSN_BOLT, false).unwrap();
    assert_eq!(s.clusters[0].max_frame, DEFAULT_MAX_FRAME);
    let with = |limit: usize| {
        let text = MOSN_BOLT.replace(
            "\"router_config_name\": \"client_router\"}",
            &format!("\"router_config_name\": \"client_router\", \"max_frame_size\": {limit}}}"),
        );
        let s = load_str(&text, false).unwrap();
        assert_eq!(s.listeners[0].max_frame, limit, "the listener takes its own");
        s.clusters[0].max_frame
    };
    assert_eq!(with(32 << 20), 32 << 20, "a larger listener limit holds upstream too");
    assert_eq!(with(1 << 20), DEFAULT_MAX_FRAME, "a smaller one caps only its clients");
}

/// Shaped after MOSN's Dubbo example: keys in any case (Go's encoding/json
/// matches them without regard to case), an unnamed listener, the dubbo
/// protocol through `X`/`sub_protocol`, and routes on the service header.
#[test]
fn mosns_dubbo_shape_loads_with_capitalised_keys_and_an_unnamed_listener() {
    let text = r#"{
      "Servers": [{"Default_Log_Level": "INFO", "Processor": "auto",
        "Routers": [{"Router_Config_Name": "dubbo", "Virtual_Hosts": [{"Name": "all", "Domains": ["*"],
          "Routers": [{"Match": {"Headers": [{"Name": "service", "Value": "com.pkg.test.TestService"}]},
                       "Route": {"Cluster_Name": "test_dubbo"}}]}]}],
        "Listeners": [{"Address": "127.0.0.1:2045", "Bind_Port": true, "Connection_Idle_Timeout": 0,
          "Filter_Chains": [{"Filters": [{"Type": "proxy", "Config": {"Downstream_Protocol": "X", "Upstream_Protocol": "X",
            "Extend_Config": {"sub_protocol": "dubbo"}, "Router_Config_Name": "dubbo"}}]}]}]}],
      "Cluster_Manager": {"Clusters": [{"Name": "test_dubbo", "Type": "SIMPLE", "Lb_Type": "LB_REQUEST_ROUNDROBIN",
        "Hosts": [{"Address": "127.0.0.1:20880", "metadata": {"filter_metadata": {"mosn.lb": {"Label": "Blue"}}}}]}]},
      "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": "34901"}}}
    }"#;
    let s = load_str(text, false).unwrap();
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    let l = &s.listeners[0];
    assert_eq!(l.name, "127.0.0.1:2045", "MOSN names an unnamed listener after its address");
    assert_eq!(l.downstream.describe(), "dubbo");
    assert_eq!(l.idle_timeout, NO_IDLE_TIMEOUT, "MOSN's 0 keeps idle connections");
    assert_eq!(s.clusters[0].name, "test_dubbo");
    assert_eq!(s.clusters[0].lb, LbKind::RoundRobin);
    assert_eq!(s.workers, None, "\"auto\": one worker per core");
    assert_eq!(s.admin.map(|a| a.port()), Some(34901));
    // The user's own keys keep their case; the dump shows MOSN's field names.
    let doc = s.document();
    let host = &doc["cluster_manager"]["clusters"][0]["hosts"][0];
    assert_eq!(host["metadata"]["filter_metadata"]["mosn.lb"]["Label"], "Blue");
    assert_eq!(doc["servers"][0]["listeners"][0]["address"], "127.0.0.1:2045");
}

#[test]
fn an_exact_key_wins_over_one_that_folds_to_it_and_names_stay_unique() {
    let mut v = serde_json::json!({"NAME": "loud", "name": "quiet", "Inner": [{"KEY": 1}]});
    fold_keys(&mut v);
    assert_eq!(v, serde_json::json!({"name": "quiet", "inner": [{"key": 1}]}));
    let twice = MOSN_BOLT.replace(r#""listeners": [{"name": "clientListener", "address": "127.0.0.1:2045","#, r#""listeners": [{"name": "l", "address": "127.0.0.1:2046", "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "bolt", "router_config_name": "client_router"}}]}]}, {"name": "l", "address": "127.0.0.1:2045","#);
    assert_eq!(err(&twice).path, "servers[0].listeners[1].name");
}

/// MOSN's older form: the route table inline, as a `connection_manager`
/// network filter beside the proxy.
#[test]
fn an_inline_connection_manager_route_table_is_read() {
    let text = r#"{"servers": [{"listeners": [{"name": "l", "address": "127.0.0.1:2045", "filter_chains": [{"filters": [
        {"type": "proxy", "config": {"downstream_protocol": "Auto", "upstream_protocol": "Auto", "router_config_name": "inline"}},
        {"type": "connection_manager", "config": {"router_config_name": "inline", "virtual_hosts": [{"name": "h", "domains": ["*"],
          "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "c"}}]}]}}]}]}]}],
      "cluster_manager": {"clusters": [{"name": "c", "hosts": [{"address": "127.0.0.1:1"}]}]}}"#;
    let s = load_str(text, false).unwrap();
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert_eq!(s.listeners[0].router.route_count(), 1);
    let bad = text.replace(r#""cluster_name": "c""#, r#""cluster_name": "nope""#);
    assert!(err(&bad).path.starts_with("servers[0].listeners[0].filter_chains[0].filters[1].config.virtual_hosts[0]"));
}

/// MOSN's TLS shapes: `"tls_context": {}` and `status: false` are plaintext
/// without a warning; both `tls_context` and `tls_context_set` are refused as
/// MOSN refuses them; TLS errors name the field; inline PEM is accepted.
#[test]
fn mosn_tls_shapes_load_and_bad_ones_are_refused_by_path() {
    let with_chain = |chain: serde_json::Value| {
        let mut v: serde_json::Value = serde_json::from_str(MOSN_BOLT).unwrap();
        for (k, val) in chain.as_object().unwrap() {
            v["servers"][0]["listeners"][0]["filter_chains"][0][k] = val.clone();
        }
        v.to_string()
    };
    for off in [json!({"tls_context": {}}), json!({"tls_context": {"status": false, "cert_chain": "/nope"}})] {
        let s = load_str(&with_chain(off), false).unwrap();
        assert!(s.listeners[0].tls.is_none());
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    }
    let both = with_chain(json!({"tls_context": {"status": true}, "tls_context_set": [{"status": true}]}));
    assert!(err(&both).to_string().contains("tls_context and tls_context_set"));
    let missing = with_chain(
        json!({"tls_context": {"status": true, "cert_chain": "/no/such.pem", "private_key": "/no/key.pem"}}),
    );
    let e = err(&missing).to_string();
    assert!(
        e.contains("servers[0].listeners[0].filter_chains[0].tls_context.cert_chain") && e.contains("/no/such.pem"),
        "{e}"
    );
    // Inline PEM (an rcgen-made pair), TLS 1.0 raised with a warning, a CBC suite skipped, an unknown curve refused.
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["a.example".to_string()]).unwrap().self_signed(&key).unwrap();
    let ctx = json!({"status": true, "cert_chain": cert.pem(), "private_key": key.serialize_pem(),
        "min_version": "TLSv1_0", "cipher_suites": "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-CBC-SHA",
        "ecdh_curves": "X25519,P256", "alpn": "h2,http/1.1,spdy"});
    let s = load_str(&with_chain(json!({"tls_context": ctx.clone()})), false).unwrap();
    assert!(s.listeners[0].tls.is_some());
    let w = s.warnings.join("\n");
    assert!(
        w.contains("tls_context.min_version")
            && w.contains("tls_context.cipher_suites")
            && w.contains("tls_context.alpn"),
        "{w}"
    );
    let mut bad = ctx;
    bad["ecdh_curves"] = json!("brainpool");
    assert!(err(&with_chain(json!({"tls_context": bad}))).to_string().contains("tls_context.ecdh_curves"));
}

#[test]
fn a_zero_header_read_or_stream_idle_timeout_is_refused_by_path() {
    for field in ["header_read_timeout", "stream_idle_timeout"] {
        let with = |value: &str| {
            MOSN_BOLT.replace(
                "\"router_config_name\": \"client_router\"}",
                &format!("\"router_config_name\": \"client_router\", \"{field}\": \"{value}\"}}"),
            )
        };
        let e = err(&with("0s")).to_string();
        assert!(
            e.contains(&format!("filter_chains[0].filters[0].config.{field}")) && e.contains("must be positive"),
            "{e}"
        );
        let spec = load_str(&with("2s"), false).unwrap();
        let l = &spec.listeners[0];
        let got = if field == "header_read_timeout" { l.header_read_timeout } else { l.stream_idle_timeout };
        assert_eq!(got, Duration::from_secs(2), "{field}");
    }
    let defaults = load_str(MOSN_BOLT, false).unwrap();
    assert_eq!(defaults.listeners[0].stream_idle_timeout, crate::config::DEFAULT_STREAM_IDLE_TIMEOUT);
}

#[test]
fn busy_poll_is_read_and_a_window_past_the_limit_is_refused_by_path() {
    let with = |v: &str| MOSN_BOLT.replacen("\"servers\": [{", &format!("\"servers\": [{{\"busy_poll\": \"{v}\", "), 1);
    assert_ne!(with("50us"), MOSN_BOLT, "the field went in");
    assert_eq!(load_str(MOSN_BOLT, false).unwrap().busy_poll, Duration::from_micros(250), "the default");
    assert_eq!(load_str(&with("50us"), false).unwrap().busy_poll, Duration::from_micros(50));
    assert_eq!(load_str(&with("0s"), false).unwrap().busy_poll, Duration::ZERO, "off");
    let e = err(&with("20ms")).to_string();
    assert!(e.contains("servers[0].busy_poll") && e.contains("10ms"), "{e}");
}

#[test]
fn busy_poll_mode_is_read_and_an_unknown_one_is_refused_by_path() {
    let with =
        |v: &str| MOSN_BOLT.replacen("\"servers\": [{", &format!("\"servers\": [{{\"busy_poll_mode\": \"{v}\", "), 1);
    assert_eq!(load_str(MOSN_BOLT, false).unwrap().busy_poll_mode, BusyPollMode::Awaiting, "the default");
    assert_eq!(load_str(&with("awaiting"), false).unwrap().busy_poll_mode, BusyPollMode::Awaiting);
    assert_eq!(load_str(&with("after_input"), false).unwrap().busy_poll_mode, BusyPollMode::AfterInput);
    let e = err(&with("always")).to_string();
    assert!(e.contains("servers[0].busy_poll_mode") && e.contains("awaiting"), "{e}");
}
