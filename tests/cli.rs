//! The `ferrymesh` binary as an operator meets it: `check`, `version`, a bad
//! config refused with its JSON path, and logs written to `default_log_path`.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::*;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferrymesh"));
    c.stdin(Stdio::null());
    c
}

fn write_config(name: &str, cfg: &serde_json::Value) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("ferrymesh-cli-{}-{name}.json", std::process::id()));
    std::fs::write(&path, cfg.to_string()).unwrap();
    path
}

/// The example configurations load without a warning and run their admin
/// server on loopback.
#[test]
fn the_examples_check_clean_with_admin_on_loopback() {
    for ex in ["bolt", "http", "grpc"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{ex}/ferrymesh.json"));
        let out = bin().arg("check").arg("-c").arg(&path).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{ex}: {text}");
        assert!(!text.contains("warning:"), "{ex}: {text}");
        assert!(text.contains("admin: http://127.0.0.1:349"), "{ex}: {text}");
    }
}

#[test]
fn check_prints_what_the_config_defines() {
    let cfg = config(free_port(), vec![route_all("echo")], vec![cluster("echo", &["127.0.0.1:1".parse().unwrap()])]);
    let path = write_config("check", &cfg);
    let out = bin().arg("check").arg("-c").arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("configuration OK") && text.contains("bolt_in") && text.contains("echo lb=RoundRobin"),
        "{text}"
    );
    let out = bin().arg("version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ferrymesh "));
    let _ = std::fs::remove_file(path);
}

#[test]
fn a_wrong_field_refuses_to_start_with_its_path() {
    let mut cfg = config(free_port(), vec![route_all("echo")], vec![cluster("echo", &[])]);
    cfg["servers"][0]["listeners"][0]["bind_port"] = json!("yes");
    let path = write_config("bad", &cfg);
    for cmd in ["check", "start"] {
        let out = bin().arg(cmd).arg("-c").arg(&path).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(err.contains("servers[0].listeners[0].bind_port: invalid type"), "{cmd}: {err}");
    }
    let _ = std::fs::remove_file(path);
}

#[test]
fn logs_go_to_default_log_path() {
    let log = std::env::temp_dir().join(format!("ferrymesh-cli-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut cfg = config(free_port(), vec![route_all("echo")], vec![cluster("echo", &[])]);
    cfg["servers"][0]["default_log_path"] = json!(log.to_string_lossy());
    // The harness logs at WARN: an unknown field gives a warning to look for.
    cfg["servers"][0]["listeners"][0]["frobnicate"] = json!(1);
    let mut proxy = Proxy::start(&cfg, 1);
    proxy.signal("TERM");
    assert_eq!(proxy.wait_exit(Duration::from_secs(5)), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("servers[0].listeners[0].frobnicate: unknown field, ignored"), "{text}");
    let _ = std::fs::remove_file(log);
}

#[test]
fn json_logs_are_one_object_per_line() {
    let log = std::env::temp_dir().join(format!("ferrymesh-cli-json-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut cfg = config(free_port(), vec![route_all("echo")], vec![cluster("echo", &[])]);
    cfg["servers"][0]["default_log_path"] = json!(log.to_string_lossy());
    cfg["servers"][0]["listeners"][0]["frobnicate"] = json!(1);
    let mut proxy = Proxy::start_with(&cfg, &["--workers", "1", "--log-format", "json"]);
    proxy.signal("TERM");
    assert_eq!(proxy.wait_exit(Duration::from_secs(5)), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert!(
        lines.iter().any(|l| l["level"] == "WARN"
            && l["fields"]["message"].as_str().is_some_and(|m| m.contains("frobnicate: unknown field"))),
        "{text}"
    );
    let _ = std::fs::remove_file(log);
}
