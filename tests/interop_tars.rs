//! A real Tars client and server that we did not write (npm @tars/rpc 2.0.15 with
//! @tars/stream 2.0.3; `tests/tars/{client,server}.js`) talking through
//! ferrymesh's `tars` codec, without the Tars registry: the client dials
//! `Test.HelloServer.HelloObj@tcp -h 127.0.0.1 -p <ferrymesh>` and the server
//! is started from an explicit endpoint, no tarsnode config.
//!
//! Echo calls (sequential, and concurrent over several client connections
//! whose ids collide), ferrymesh's own error answers (no route: iRet -4; no
//! healthy host: -8; route timeout: -7, after which the connection keeps
//! working and the server's late answer is dropped), and request ids whose
//! JCE width differs between the downstream and the upstream side (0, which
//! JCE writes as a zero-length field, and ids near `i32::MAX`, 4 bytes, while
//! ferrymesh's own upstream ids are small).
//!
//! Needs `node` and `npm ci --prefix tests/tars` (`.ci/run` does both).

mod support;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use support::peers::Server;
use support::{free_port, DeadHost, Proxy};

const SERVANT: &str = "Test.HelloServer.HelloObj";

fn tars_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tars");
    assert!(
        dir.join("node_modules/@tars/rpc").is_dir() && dir.join("node_modules/@tars/stream").is_dir(),
        "@tars/rpc is not installed: run `npm ci --prefix tests/tars` (bash .ci/run does)"
    );
    dir
}

/// The @tars/rpc server on a free port; it prints `READY <port>` once listening.
fn start_server(name: &str) -> Server {
    Server::start(Command::new("node").arg(tars_dir().join("server.js")).args(["--port", "0", "--name", name]))
}

/// What a client run printed: its JSON lines.
struct Run {
    lines: Vec<Value>,
    text: String,
}

impl Run {
    fn events(&self, event: &str) -> Vec<&Value> {
        self.lines.iter().filter(|l| l["event"] == event).collect()
    }

    fn calls(&self) -> Vec<&Value> {
        self.events("call")
    }

    fn summary(&self) -> &Value {
        self.events("summary").pop().unwrap_or_else(|| panic!("no summary line in:\n{}", self.text))
    }
}

/// Runs the @tars/rpc client against `addr`; it must exit 0 (every outcome as expected).
fn run(addr: SocketAddr, args: &[&str]) -> Run {
    let out = Command::new("node")
        .arg(tars_dir().join("client.js"))
        .arg(addr.to_string())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run tars client.js");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "tars client {args:?} through ferrymesh failed ({:?}):\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let run = Run { lines, text };
    assert_eq!(run.summary()["ok"], true, "{}", run.text);
    run
}

/// Bytes JCE spends on an int's value: 0 is a bare head (ZERO_TAG), then 1, 2 or 4.
fn jce_width(v: i64) -> u8 {
    match v {
        0 => 0,
        -128..=127 => 1,
        -32768..=32767 => 2,
        _ => 4,
    }
}

fn int(v: &Value, key: &str) -> i64 {
    v[key].as_i64().unwrap_or_else(|| panic!("no integer {key} in {v}"))
}

#[test]
fn tars_rpc_node_through_ferrymesh() {
    let server = start_server("s1");
    let dead = DeadHost::new();
    let port = free_port();
    let mut cfg = json!({
        "servers": [{
            "default_log_level": "WARN",
            "routers": [{"router_config_name": "tars_routes", "virtual_hosts": [{"name": "all", "domains": ["*"], "routers": [
                {"match": {"headers": [{"name": "service", "value": SERVANT}]},
                 "route": {"cluster_name": "hello", "timeout": "500ms"}},
                {"match": {"headers": [{"name": "service", "value": "Test.DeadServer.DeadObj"}]},
                 "route": {"cluster_name": "dead"}}
            ]}]}],
            "listeners": [{
                "name": "tars_in",
                "address": format!("127.0.0.1:{port}"),
                "bind_port": true,
                "filter_chains": [{"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": "tars", "upstream_protocol": "tars", "router_config_name": "tars_routes"
                }}]}]
            }]
        }],
        "cluster_manager": {"clusters": [
            support::cluster("hello", &[server.addr()]),
            support::cluster("dead", &[dead.addr()])
        ]}
    });
    // One worker and one connection to the server (the default, said here because the id
    // checks below count on it): every upstream id comes from one counter.
    cfg["cluster_manager"]["clusters"][0]["connections_per_host"] = json!(1);
    let proxy = Proxy::start(&cfg, 1);
    let fm = proxy.addr;

    // --- echoes ----------------------------------------------------------------------------------
    let r = run(fm, &["--count", "3", "--expect-server", "s1"]);
    assert_eq!(r.calls().len(), 3);
    assert!(r.calls().iter().all(|c| c["ret"] == 0 && c["resp_id"] == c["id"]), "{}", r.text);

    // 200 calls, 30 in flight at once over 3 client connections that each count ids from 2:
    // the same id is in flight on several downstream connections at once, so ferrymesh must give
    // them distinct upstream ids and map each answer back to its own connection and id.
    let r = run(fm, &["--count", "200", "--concurrency", "30", "--connections", "3", "--expect-server", "s1"]);
    let calls = r.calls();
    assert_eq!(calls.len(), 200);
    let mut by_id: HashMap<i64, usize> = HashMap::new();
    for c in &calls {
        *by_id.entry(int(c, "id")).or_default() += 1;
    }
    assert!(by_id.values().any(|n| *n >= 3), "downstream ids collide across the 3 connections: {by_id:?}");
    let upstream: HashSet<i64> = calls.iter().map(|c| int(c, "upstream_id")).collect();
    assert_eq!(upstream.len(), 200, "every call had its own upstream id:\n{}", r.text);
    assert!(calls.iter().any(|c| c["id"] != c["upstream_id"]), "ids were rewritten:\n{}", r.text);

    // --- ferrymesh's own Tars error answers ------------------------------------------------------
    // No route for the servant: a ResponsePacket with iRet -4 (NO_SERVANT), for the client's id.
    let r = run(fm, &["--servant", "Test.HelloServer.NopeObj", "--count", "2", "--expect-ret", "-4"]);
    assert!(
        r.calls().iter().all(|c| c["code"] == -4 && c["desc"].as_str().is_some_and(|d| !d.is_empty())),
        "{}",
        r.text
    );
    // The route's only host refuses connections: iRet -8 (PROXY_CONNECT_ERROR).
    run(fm, &["--servant", "Test.DeadServer.DeadObj", "--expect-ret", "-8"]);

    // slow(1500) beyond the route's 500 ms timeout: ferrymesh answers iRet -7 (INVOKE_TIMEOUT)
    // long before the server would, the connection keeps working at once and after the
    // server's late answer came (which ferrymesh drops: the client sees one answer per id).
    let r = run(
        fm,
        &["--method", "slow", "--slow-ms", "1500", "--timeout-ms", "5000", "--expect-ret", "-7", "--then-echo"],
    );
    let slow = r.calls()[0];
    assert!(int(slow, "ms") < 1400, "the -7 answer came from ferrymesh's timer: {slow}");
    assert_eq!(r.events("then_echo").len(), 2, "{}", r.text);
    assert!(r.events("then_echo").iter().all(|e| e["server"] == "s1"), "{}", r.text);
    assert_eq!(r.summary()["duplicate_answers"], json!([]), "the late answer was dropped: {}", r.text);

    // --- request ids of another JCE width on each side -------------------------------------------
    // Id 0 is a zero-length JCE field downstream; ferrymesh's upstream ids start at 1.
    let r = run(fm, &["--first-id", "0", "--count", "3", "--expect-server", "s1"]);
    let c0 = r.calls()[0];
    assert_eq!(int(c0, "id"), 0);
    assert_ne!(jce_width(0), jce_width(int(c0, "upstream_id")), "{c0}");
    // After the 200+ calls above the upstream counter is past 127 (2-byte ids) while these
    // client ids take 1 byte.
    assert!(
        r.calls().iter().skip(1).all(|c| jce_width(int(c, "id")) == 1 && jce_width(int(c, "upstream_id")) == 2),
        "{}",
        r.text
    );
    // Ids near i32::MAX take 4 bytes downstream, 2 upstream; concurrent, on two connections.
    let r = run(fm, &["--first-id", "2147483000", "--count", "40", "--concurrency", "20", "--connections", "2"]);
    assert_eq!(r.calls().len(), 40);
    assert!(r.calls().iter().all(|c| c["server"] == "s1"), "{}", r.text);
    assert!(r.calls().iter().all(|c| int(c, "id") >= 2147483000 && jce_width(int(c, "upstream_id")) < 4), "{}", r.text);
    drop(proxy);
}
