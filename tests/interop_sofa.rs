//! A real SOFARPC client and server that we did not write (npm sofa-rpc-node
//! 2.10.0) talking through ferrymesh: echo calls, a service error, a client
//! timeout with the late answer dropped by ferrymesh, and a heartbeat.
//!
//! Needs `node` and `npm ci --prefix tests/interop` (`.ci/run` does both).

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::*;

fn interop_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    assert!(
        dir.join("node_modules/sofa-rpc-node").is_dir(),
        "sofa-rpc-node is not installed: run `npm ci --prefix tests/interop` (bash .ci/run does)"
    );
    dir
}

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

/// Starts the sofa-rpc-node echo server on a free port; returns it and the port.
fn start_server(name: &str) -> (Node, u16) {
    let dir = interop_dir();
    let mut child = Command::new("node")
        .arg(dir.join("server.js"))
        .args(["--port", "0", "--name", name])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("node is installed");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line
        .trim()
        .strip_prefix("READY ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("server said {line:?}"));
    (Node(child), port)
}

fn run_client(addr: std::net::SocketAddr, extra: &[&str]) -> String {
    let out = Command::new("node")
        .arg(interop_dir().join("client.js"))
        .arg(addr.to_string())
        .args(["--deadline-ms", "20000"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("run client.js");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "sofa client failed through ferrymesh ({:?}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn proxy_to(server_port: u16, protocol: &str) -> Proxy {
    let port = free_port();
    let upstream = format!("127.0.0.1:{server_port}").parse().unwrap();
    let mut cfg = config(port, vec![route_all("sofa")], vec![cluster("sofa", &[upstream])]);
    let proxy_cfg = &mut cfg["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["config"];
    proxy_cfg["downstream_protocol"] = json!(protocol);
    proxy_cfg["upstream_protocol"] = json!(protocol);
    Proxy::start(&cfg, 1)
}

fn scenario(out: &str, name: &str) -> serde_json::Value {
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["scenario"] == name)
        .unwrap_or_else(|| panic!("no {name} line in:\n{out}"))
}

#[test]
fn sofa_rpc_node_through_ferrymesh_bolt_v1() {
    let (_server, sport) = start_server("s1");
    let proxy = proxy_to(sport, "bolt");
    let out = run_client(proxy.addr, &["--no-late", "--expect-server", "s1", "--rounds", "5"]);
    assert_eq!(scenario(&out, "echo")["calls"], 100);
    assert_eq!(scenario(&out, "service_error")["resp_status"], 2, "the service's exception passes through");
    let t = scenario(&out, "client_timeout");
    assert_eq!(t["ok"], true);
    assert_eq!(t["late_reply_reached_client"], false, "ferrymesh dropped the late answer");
    assert_eq!(scenario(&out, "heartbeat")["ack_status"], 0);
    assert_eq!(scenario(&out, "summary")["ok"], true);
}

#[test]
fn sofa_rpc_node_through_ferrymesh_bolt_v2_with_and_without_crc() {
    let (_server, sport) = start_server("s2");
    let proxy = proxy_to(sport, "boltv2");
    for extra in [&["--bolt2"][..], &["--bolt2", "--ver2"][..], &["--bolt2", "--crc"][..]] {
        let mut args = vec!["--no-late", "--expect-server", "s2"];
        args.extend_from_slice(extra);
        let out = run_client(proxy.addr, &args);
        assert_eq!(scenario(&out, "echo")["proto"], 2, "{extra:?}");
        assert_eq!(scenario(&out, "heartbeat")["ack_status"], 0, "{extra:?}: our ack passes the client's CRC check");
        assert_eq!(scenario(&out, "summary")["ok"], true);
    }
}

/// Two real servers behind one cluster: calls spread over both, and when one
/// dies the client keeps working through the other.
#[test]
fn sofa_rpc_node_failover_between_two_servers() {
    let (a, pa) = start_server("a");
    let (_b, pb) = start_server("b");
    let port = free_port();
    let hosts = [format!("127.0.0.1:{pa}").parse().unwrap(), format!("127.0.0.1:{pb}").parse().unwrap()];
    let proxy = Proxy::start(&config(port, vec![route_all("sofa")], vec![cluster("sofa", &hosts)]), 1);
    let out = run_client(proxy.addr, &["--no-late", "--rounds", "3"]);
    let servers = &scenario(&out, "echo")["servers"];
    assert!(servers["a"].as_u64().unwrap_or(0) > 0 && servers["b"].as_u64().unwrap_or(0) > 0, "{servers}");
    drop(a);
    std::thread::sleep(Duration::from_millis(200));
    let out = run_client(proxy.addr, &["--no-late", "--expect-server", "b"]);
    assert_eq!(scenario(&out, "summary")["ok"], true);
}
