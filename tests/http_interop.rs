//! Real HTTP and gRPC peers that we did not write, through ferrymesh: Python
//! grpcio client and server (unary, the three streaming kinds, a deadline, an
//! error with trailing metadata) and ferrymesh's own errors as gRPC statuses;
//! curl (HTTP/1.1 and h2c prior knowledge) and h2load against a real nginx
//! upstream.
//!
//! Needs python3 with grpcio (`pip install -r tests/grpc/requirements.txt`),
//! curl, h2load and nginx (`bash tests/http/install.sh`); `.ci/run` installs
//! them.

mod support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use support::peers::{grpc_client, grpc_server, root, start_ready};
use support::{free_port, DeadHost, Proxy};

fn need(tool: &str) {
    let found = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().map(|o| o.status.success());
    assert!(found.unwrap_or(false), "{tool} is not installed: run `bash tests/http/install.sh` (bash .ci/run does)");
}

fn cluster(name: &str, hosts: &[SocketAddr]) -> Value {
    json!({"name": name, "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "connect_timeout": "500ms",
           "hosts": hosts.iter().map(|h| json!({"address": h.to_string()})).collect::<Vec<_>>()})
}

fn config(port: u16, downstream: &str, upstream: &str, routes: Value, clusters: Vec<Value>) -> Value {
    json!({
        "servers": [{"default_log_level": "WARN",
            "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "all", "domains": ["*"], "routers": routes}]}],
            "listeners": [{"name": "l", "address": format!("127.0.0.1:{port}"), "filter_chains": [{"filters": [{"type": "proxy",
                "config": {"downstream_protocol": downstream, "upstream_protocol": upstream, "router_config_name": "r"}}]}]}]}],
        "cluster_manager": {"clusters": clusters}
    })
}

#[test]
fn grpcio_client_and_server_through_ferrymesh() {
    let (_server, addr) = grpc_server("alpha");
    let dead_host = DeadHost::new();
    let dead = dead_host.addr();
    let routes = json!([
        {"match": {"prefix": "/echo.Echo/Slow"}, "route": {"cluster_name": "grpc", "timeout": "300ms"}},
        {"match": {"prefix": "/echo.Echo/"}, "route": {"cluster_name": "grpc"}},
        {"match": {"prefix": "/down.Svc/"}, "route": {"cluster_name": "dead"}}
    ]);
    let port = free_port();
    let proxy = Proxy::start(
        &config(port, "Http2", "Http2", routes, vec![cluster("grpc", &[addr]), cluster("dead", &[dead])]),
        1,
    );

    let (ok, out) = grpc_client(proxy.addr, &["--expect-server", "alpha"]);
    assert!(ok, "grpcio scenarios through ferrymesh:\n{out}");
    for scenario in ["unary", "server_streaming", "client_streaming", "bidi", "deadline", "error", "big", "concurrent"]
    {
        assert!(
            out.contains(&format!("\"scenario\": \"{scenario}\""))
                || out.contains(&format!("\"scenario\":\"{scenario}\"")),
            "{scenario} ran:\n{out}"
        );
    }
    // ferrymesh's own failures, as gRPC statuses from the peer (not made up by grpcio).
    let cases: [(&str, &[&str]); 3] = [
        ("14", &["--method", "/down.Svc/Call"]),
        ("12", &["--method", "/nope.Svc/Call"]),
        ("4", &["--method", "/echo.Echo/Slow", "--request", "3000", "--timeout", "5"]),
    ];
    for (code, extra) in cases {
        let mut args = vec!["--expect-status", code, "--from-peer"];
        args.extend_from_slice(extra);
        let (ok, out) = grpc_client(proxy.addr, &args);
        assert!(ok, "expected gRPC status {code} from ferrymesh:\n{out}");
    }
}

#[test]
fn curl_and_h2load_through_ferrymesh_to_nginx() {
    need("curl");
    need("h2load");
    need("nginx");
    let dir = std::env::temp_dir().join(format!("ferrymesh-nginx-{}", std::process::id()));
    let up_port = free_port();
    let (_nginx, _) = start_ready(
        Command::new("bash").arg(root().join("tests/http/start-nginx.sh")).arg(up_port.to_string()).arg(&dir),
    );
    let up: SocketAddr = format!("127.0.0.1:{up_port}").parse().unwrap();
    let port = free_port();
    let routes = json!([
        {"match": {"prefix": "/r/"}, "route": {"cluster_name": "nginx", "prefix_rewrite": "/",
            "retry_policy": {"retry_on": "5xx", "num_retries": 1}}},
        {"match": {"prefix": "/"}, "route": {"cluster_name": "nginx"}}
    ]);
    let proxy = Proxy::start(&config(port, "Auto", "Http1", routes, vec![cluster("nginx", &[up])]), 1);
    let base = format!("http://{}", proxy.addr);

    let curl = |args: &[&str]| -> String {
        let out = Command::new("curl").args(["-sS", "--max-time", "10"]).args(args).output().expect("curl runs");
        assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for version in ["--http1.1", "--http2-prior-knowledge"] {
        let status =
            curl(&[version, "-o", "/dev/null", "-w", "%{http_code} %{http_version}", &format!("{base}/small")]);
        let want = if version == "--http1.1" { "200 1.1" } else { "200 2" };
        assert_eq!(status, want, "{version}");
        let echoed = curl(&[version, "-H", "x-request-id: rid-1", &format!("{base}/echo-headers")]);
        assert!(echoed.contains("xff=127.0.0.1"), "{version}: {echoed}");
        assert!(echoed.contains("xfp=http"), "{version}: {echoed}");
        assert!(echoed.contains("xrid=rid-1"), "{version}: {echoed}");
    }
    // A small POST from an HTTP/2 client reaches nginx as HTTP/1.1 framed by
    // its length alone: streamed on hyper's client (no retry policy), and
    // written whole on a raw connection (a retry policy keeps the body).
    for path in ["/echo-headers", "/r/echo-headers"] {
        let echoed = curl(&["--http2-prior-knowledge", "--data-binary", "hello", &format!("{base}{path}")]);
        assert!(echoed.contains("method=POST") && echoed.contains("proto=HTTP/1.1"), "{path}: {echoed}");
        assert!(echoed.contains("uri=/echo-headers ") && echoed.contains("host=127.0.0.1 "), "{path}: {echoed}");
        assert!(echoed.contains("cl=5 tenc= "), "{path}: {echoed}");
    }
    // A 3 MiB upload: curl sends Expect: 100-continue, ferrymesh answers it and streams the body.
    let file = dir.join("upload.bin");
    std::fs::write(&file, vec![b'u'; 3 << 20]).unwrap();
    let got = curl(&["--http1.1", "--data-binary", &format!("@{}", file.display()), &format!("{base}/upload")]);
    assert!(got.contains(&(3u64 << 20).to_string()), "nginx read the whole body: {got}");

    let out = Command::new("h2load")
        .args(["-n", "2000", "-c", "8", "-m", "10", &format!("{base}/small")])
        .output()
        .expect("h2load runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2000 succeeded, 0 failed, 0 errored"), "h2load through ferrymesh:\n{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// nginx as an HTTP/2 upstream ends each connection with a GOAWAY after
/// `keepalive_requests`: the streams it turned away unprocessed go again on a
/// fresh connection, and no client sees an error (882 of 20,000 did, with
/// nginx's default of 1000, before they were sent again).
#[test]
fn an_http2_upstreams_goaway_fails_no_request() {
    need("h2load");
    need("nginx");
    let dir = std::env::temp_dir().join(format!("ferrymesh-nginx-goaway-{}", std::process::id()));
    let (up_port, h2c_port) = (free_port(), free_port());
    let (_nginx, _) = start_ready(
        Command::new("bash")
            .arg(root().join("tests/http/start-nginx.sh"))
            .arg(up_port.to_string())
            .arg(&dir)
            .env("H2C_PORT", h2c_port.to_string())
            .env("KEEPALIVE_REQUESTS", "50")
            .env("ACCESS_LOG", "off"),
    );
    let up: SocketAddr = format!("127.0.0.1:{h2c_port}").parse().unwrap();
    let port = free_port();
    let routes = json!([{"match": {"prefix": "/"}, "route": {"cluster_name": "nginx"}}]);
    let proxy = Proxy::start(&config(port, "Http2", "Http2", routes, vec![cluster("nginx", &[up])]), 1);
    let out = Command::new("h2load")
        .args(["-n", "3000", "-c", "4", "-m", "10", &format!("http://{}/small", proxy.addr)])
        .output()
        .expect("h2load runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3000 succeeded, 0 failed, 0 errored"), "h2load through ferrymesh:\n{text}");
    assert!(text.contains("status codes: 3000 2xx"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The 43-case smuggling probe (tests/http/smuggling.py) through ferrymesh in
/// front of a real nginx, whose access log proves nothing refused was forwarded.
#[test]
fn smuggling_probe_through_ferrymesh_to_nginx() {
    need("nginx");
    // Three ports below the kernel's ephemeral range (32768 up), where the
    // other tests' own sockets could already hold one.
    let base = 25000 + (std::process::id() % 2500) as u16 * 3;
    let out = Command::new("bash")
        .arg(root().join("tests/http/smuggle-through.sh"))
        .args(["ferrymesh", "--summary"])
        .env("FERRYMESH_BIN", env!("CARGO_BIN_EXE_ferrymesh"))
        .env("BASE_PORT", base.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("smuggle-through.sh runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("43/43 ok"), "smuggling probe through ferrymesh:\n{text}");
}
