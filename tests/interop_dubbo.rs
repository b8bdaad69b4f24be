//! Real Dubbo 2 peers that we did not write, talking through ferrymesh's
//! `dubbo` codec:
//! - npm sofa-rpc-node 2.10.0 + dubbo-remoting 2.1.4 as client and server
//!   (`tests/interop/dubbo_{client,server}.js`);
//! - PyPI dubbo-py 0.2.2 as server and client, PyPI dubbo-ssl-python 0.9.6 as
//!   client (`tests/dubbo_py/{server,client}.py`).
//!
//! One listener carries every pairing (routes on the `service` and `group`
//! keys); a second test chains two ferrymesh processes as MOSN's
//! `examples/codes/dubbo` client_config.json / server_config.json do.
//!
//! Needs `node`, `npm ci --prefix tests/interop` and
//! `pip install -r tests/dubbo_py/requirements.txt` (`.ci/run` does all three).

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use support::peers::{root, Server};
use support::{free_port, Proxy};

const SERVICE: &str = "com.example.EchoService";

fn js_dir() -> PathBuf {
    let dir = root().join("tests/interop");
    assert!(
        dir.join("node_modules/dubbo-remoting").is_dir() && dir.join("node_modules/sofa-rpc-node").is_dir(),
        "dubbo-remoting is not installed: run `npm ci --prefix tests/interop` (bash .ci/run does)"
    );
    dir
}

fn py_dir() -> PathBuf {
    let ok = Command::new("python3")
        .args(["-c", "import dubbo.server, dubbo.client, dubbo_ssl.client"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "dubbo-py / dubbo-ssl-python are not installed: run \
         `python3 -m pip install -r tests/dubbo_py/requirements.txt` (bash .ci/run does)"
    );
    root().join("tests/dubbo_py")
}

/// sofa-rpc-node + dubbo-remoting provider.
fn js_server(name: &str) -> Server {
    Server::start(Command::new("node").arg(js_dir().join("dubbo_server.js")).args(["--port", "0", "--name", name]))
}

/// dubbo-py provider.
fn py_server(name: &str) -> Server {
    Server::start(Command::new("python3").arg(py_dir().join("server.py")).args(["--port", "0", "--name", name]))
}

#[derive(Clone, Copy, Debug)]
enum Client {
    /// sofa-rpc-node + dubbo-remoting.
    Js,
    /// PyPI dubbo-py.
    DubboPy,
    /// PyPI dubbo-ssl-python over plain TCP.
    DubboSsl,
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

/// Runs one client against `addr`; it must exit 0 (every outcome as expected).
fn run(client: Client, addr: SocketAddr, args: &[&str]) -> Run {
    let mut cmd = match client {
        Client::Js => {
            let mut c = Command::new("node");
            c.arg(js_dir().join("dubbo_client.js"));
            c
        }
        Client::DubboPy | Client::DubboSsl => {
            let mut c = Command::new("python3");
            c.arg(py_dir().join("client.py"));
            c.args(["--lib", if matches!(client, Client::DubboPy) { "dubbo-py" } else { "dubbo-ssl" }]);
            c
        }
    };
    let out = cmd.arg(addr.to_string()).args(args).stdin(Stdio::null()).output().expect("run the client");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{client:?} client {args:?} through ferrymesh failed ({:?}):\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let run = Run { lines, text };
    assert_eq!(run.summary()["ok"], true, "{}", run.text);
    run
}

/// A proxy filter for Dubbo on both sides.
fn dubbo_listener(name: &str, port: u16, router: &str) -> Value {
    json!({
        "name": name,
        "address": format!("127.0.0.1:{port}"),
        "bind_port": true,
        "filter_chains": [{"filters": [{"type": "proxy", "config": {
            "downstream_protocol": "dubbo", "upstream_protocol": "dubbo", "router_config_name": router
        }}]}]
    })
}

fn cluster(name: &str, host: SocketAddr) -> Value {
    json!({"name": name, "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "connect_timeout": "1s",
           "hosts": [{"address": host.to_string()}]})
}

/// All pairings through one listener. The `group` attachment picks the
/// Python provider (ferrymesh reads attachments on every listener; the name
/// `egress_dubbo` is where MOSN reads them too); any other request for the
/// service goes to the JS provider; other services match no route.
#[test]
fn dubbo_js_and_python_peers_through_one_listener() {
    let js = js_server("js");
    let py = py_server("py");
    let port = free_port();
    let cfg = json!({
        "servers": [{
            "default_log_level": "WARN",
            "routers": [{"router_config_name": "dubbo_routes", "virtual_hosts": [{"name": "all", "domains": ["*"], "routers": [
                {"match": {"headers": [{"name": "service", "value": SERVICE}, {"name": "group", "value": "py"}]},
                 "route": {"cluster_name": "py_provider"}},
                {"match": {"headers": [{"name": "service", "value": SERVICE}]},
                 "route": {"cluster_name": "js_provider"}}
            ]}]}],
            "listeners": [dubbo_listener("egress_dubbo", port, "dubbo_routes")]
        }],
        "cluster_manager": {"clusters": [cluster("js_provider", js.addr()), cluster("py_provider", py.addr())]}
    });
    let proxy = Proxy::start(&cfg, 1);
    let fm = proxy.addr;

    // --- JS client -> ferrymesh -> JS server -------------------------------------------------
    let r = run(Client::Js, fm, &["--count", "3", "--expect-server", "js"]);
    assert_eq!(r.calls().len(), 3);
    assert!(r.calls().iter().all(|c| c["status"] == 20), "{}", r.text);
    // The provider's exception comes back as its own Dubbo error answer (status 80).
    let r = run(Client::Js, fm, &["--method", "fail", "--expect-status", "80", "--expect-message", "fail:hello"]);
    assert_eq!(r.calls()[0]["error"], "fail:hello");
    // No route for the service: ferrymesh's own Dubbo error answer, as MOSN's.
    let r = run(
        Client::Js,
        fm,
        &["--service", "com.example.Nope", "--expect-status", "60", "--expect-message", "404|router unavailable"],
    );
    assert_eq!(r.calls()[0]["error"], "404|router unavailable");
    // A heartbeat is answered (event response, status 20, same id), and the connection goes on.
    let r = run(Client::Js, fm, &["--method", "heartbeat", "--then-echo"]);
    assert_eq!(r.calls()[0]["ack_status"], 20);
    assert_eq!(r.calls()[0]["ack_flag"], 0x22);
    assert_eq!(r.events("then_echo")[0]["server"], "js");
    // slow(1500 ms) with a 300 ms client timeout: the client gives up; echoes on the same
    // connection work right away and again after the late answer came (the client drops it).
    let r = run(
        Client::Js,
        fm,
        &["--method", "slow", "--slow-ms", "1500", "--timeout-ms", "300", "--expect-timeout", "--then-echo"],
    );
    assert_eq!(r.calls()[0]["timeout"], true);
    assert_eq!(r.events("then_echo").len(), 2, "{}", r.text);

    // --- Python clients -> ferrymesh -> JS server ---------------------------------------------
    for client in [Client::DubboPy, Client::DubboSsl] {
        let r = run(client, fm, &["--count", "3", "--expect-server", "js"]);
        assert_eq!(r.calls().len(), 3, "{client:?}");
        run(client, fm, &["--method", "fail", "--expect-status", "80", "--expect-message", "fail:hello"]);
        run(
            client,
            fm,
            &["--service", "com.example.Nope", "--expect-status", "60", "--expect-message", "404|router unavailable"],
        );
        let r = run(client, fm, &["--method", "heartbeat", "--then-echo"]);
        assert_eq!(r.calls()[0]["ack_status"], 20, "{client:?}");
    }
    // dubbo-py (answers matched by id) also gets past a timed-out call on its connection.
    run(
        Client::DubboPy,
        fm,
        &["--method", "slow", "--slow-ms", "1000", "--timeout-ms", "300", "--expect-timeout", "--then-echo"],
    );

    // --- JS client -> ferrymesh -> Python (dubbo-py) server -----------------------------------
    let r = run(Client::Js, fm, &["--group", "py", "--count", "3", "--expect-server", "py"]);
    assert_eq!(r.calls().len(), 3);
    // dubbo-py reports a raised exception with status 90.
    run(
        Client::Js,
        fm,
        &["--group", "py", "--method", "fail", "--expect-status", "90", "--expect-message", "fail:hello"],
    );
    // dubbo-py itself would answer a heartbeat with status 0 (which dubbo-remoting rejects);
    // ferrymesh answers the client's heartbeat itself, with status 20.
    let r = run(Client::Js, fm, &["--group", "py", "--method", "heartbeat", "--then-echo"]);
    assert_eq!(r.calls()[0]["ack_status"], 20);
    assert_eq!(r.events("then_echo")[0]["server"], "py");
    // A Python client to the Python server, through the same listener.
    run(Client::DubboSsl, fm, &["--group", "py", "--count", "3", "--expect-server", "py"]);
    drop(proxy);
}

/// MOSN's `examples/codes/dubbo` client_config.json (listener "clientListener",
/// downstream dubbo, no upstream protocol, route on `service` ".*") in front of
/// its server_config.json ("serverListener" -> the provider), as two ferrymesh
/// processes: client -> A -> B -> server. Ports are free ones instead of 2045 /
/// 2046 / 20880, the client listener binds 127.0.0.1 instead of 0.0.0.0 and
/// logs are at WARN instead of DEBUG; everything else is as in the example.
#[test]
fn dubbo_two_hop_as_mosn_example() {
    let js = js_server("provider");
    let (a_port, b_port) = (free_port(), free_port());
    let mosn_config = |side: &str, listen: String, upstream: SocketAddr| {
        json!({
            "disable_upgrade": true,
            "servers": [{
                "default_log_path": "stdout",
                "default_log_level": "WARN",
                "routers": [{
                    "router_config_name": format!("{side}_router"),
                    "virtual_hosts": [{
                        "name": format!("{side}Host"),
                        "domains": ["*"],
                        "routers": [{
                            "match": {"headers": [{"name": "service", "value": ".*"}]},
                            "route": {"cluster_name": format!("{side}Cluster")}
                        }]
                    }]
                }],
                "listeners": [{
                    "name": format!("{side}Listener"),
                    "address": listen,
                    "bind_port": true,
                    "log_path": "stdout",
                    "filter_chains": [{
                        "tls_context": {},
                        "filters": [{"type": "proxy", "config": {
                            "downstream_protocol": "dubbo",
                            "router_config_name": format!("{side}_router")
                        }}]
                    }]
                }]
            }],
            "cluster_manager": {"clusters": [{
                "Name": format!("{side}Cluster"),
                "type": "SIMPLE",
                "lb_type": "LB_RANDOM",
                "max_request_per_conn": 1024,
                "conn_buffer_limit_bytes": 32768,
                "hosts": [{"address": upstream.to_string()}]
            }]},
            "tracing": {"enable": true, "driver": "SOFATracer"}
        })
    };
    let b = Proxy::start(&mosn_config("server", format!("127.0.0.1:{b_port}"), js.addr()), 1);
    let a = Proxy::start(&mosn_config("client", format!("127.0.0.1:{a_port}"), b.addr), 1);
    let fm = a.addr;

    let r = run(Client::Js, fm, &["--count", "3", "--expect-server", "provider"]);
    assert!(r.calls().iter().all(|c| c["status"] == 20), "{}", r.text);
    run(Client::Js, fm, &["--method", "fail", "--expect-status", "80", "--expect-message", "fail:hello"]);
    // The example routes every service: an unknown one reaches the provider, whose
    // "not found" error comes back over both hops.
    run(
        Client::Js,
        fm,
        &["--service", "com.example.Nope", "--expect-status", "80", "--expect-message", "not found service"],
    );
    let r = run(Client::Js, fm, &["--method", "heartbeat", "--then-echo"]);
    assert_eq!(r.calls()[0]["ack_status"], 20);
    run(
        Client::Js,
        fm,
        &["--method", "slow", "--slow-ms", "1500", "--timeout-ms", "300", "--expect-timeout", "--then-echo"],
    );
    for client in [Client::DubboPy, Client::DubboSsl] {
        run(client, fm, &["--count", "3", "--expect-server", "provider"]);
        run(client, fm, &["--method", "fail", "--expect-status", "80", "--expect-message", "fail:hello"]);
    }
    // An error ferrymesh makes on the far hop reaches the client through the near one:
    // with the provider stopped, B answers "no healthy upstream" and A relays it.
    drop(js);
    let r = run(Client::Js, fm, &["--expect-error", "--timeout-ms", "3000"]);
    let status = r.calls()[0]["status"].as_u64();
    assert_eq!(status, Some(60), "B's 502|no health upstream answer: {}", r.text);
    assert!(r.calls()[0]["error"].as_str().unwrap_or("").contains("502|no health upstream"), "{}", r.text);
    drop(a);
    drop(b);
}

/// PyPI dubbo-ssl-python over TLS: ferrymesh terminates it on a Dubbo
/// listener (a certificate made here with openssl, IP SAN 127.0.0.1, as
/// MOSN's example certificates have) and forwards in plaintext to dubbo-py.
#[test]
fn dubbo_ssl_python_over_tls() {
    let py = py_server("py-tls");
    let dir = std::env::temp_dir().join(format!("ferrymesh-dubbo-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30"])
        .args(["-subj", "/CN=ferrymesh dubbo", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(made.success());
    let port = free_port();
    let mut listener = dubbo_listener("dubbo_tls", port, "r");
    listener["filter_chains"][0]["tls_context"] =
        json!({"status": true, "cert_chain": cert.to_str().unwrap(), "private_key": key.to_str().unwrap()});
    let cfg = json!({
        "servers": [{
            "default_log_level": "WARN",
            "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "all", "domains": ["*"], "routers": [
                {"match": {"headers": [{"name": "service", "value": SERVICE}]}, "route": {"cluster_name": "py"}}
            ]}]}],
            "listeners": [listener]
        }],
        "cluster_manager": {"clusters": [cluster("py", py.addr())]}
    });
    let proxy = Proxy::start(&cfg, 1);
    let r = run(
        Client::DubboSsl,
        proxy.addr,
        &["--tls-ca", cert.to_str().unwrap(), "--count", "3", "--expect-server", "py-tls"],
    );
    assert_eq!(r.calls().len(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}
