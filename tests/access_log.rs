//! Access logs: each variable of a line checked against a known request,
//! MOSN's default format, and SIGUSR1 after a rename (logrotate) opening a
//! new file.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrymesh::protocol::bolt::{status, RequestBuilder};
use serde_json::json;
use support::*;

const FORMAT: &str = "%start_time%|%duration%|%request_received_duration%|%protocol%|%stream_id%|%upstream_host%|%upstream_local_address%|%response_code%|%response_flag%|%bytes_received%|%bytes_sent%|%downstream_remote_address%|%downstream_local_address%|%no_such_variable%";

/// Lines of `path` once it has `n` of them (the writer flushes every 100 ms).
async fn lines(path: &std::path::Path, n: usize) -> Vec<String> {
    for _ in 0..100 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(String::from).collect();
        if lines.len() >= n {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} never had {n} lines: {:?}", path.display(), std::fs::read_to_string(path));
}

/// Seconds since the epoch of `2006/01/02 15:04:05.000` (UTC).
fn parse_start(s: &str) -> f64 {
    let (date, time) = s.split_once(' ').expect("date and time");
    let d: Vec<i64> = date.split('/').map(|p| p.parse().unwrap()).collect();
    let t: Vec<f64> = time.split(':').map(|p| p.parse().unwrap()).collect();
    // Days from the civil date (the inverse of the writer's conversion).
    let (y, m) = if d[1] <= 2 { (d[0] - 1, d[1] + 9) } else { (d[0], d[1] - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days as f64 * 86_400.0 + t[0] * 3600.0 + t[1] * 60.0 + t[2]
}

/// Go's duration text in seconds (`12.5µs`, `3.1ms`, `1.2s`).
fn parse_go_duration(s: &str) -> f64 {
    for (unit, scale) in [("ns", 1e-9), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0)] {
        if let Some(v) = s.strip_suffix(unit) {
            if let Ok(v) = v.parse::<f64>() {
                return v * scale;
            }
        }
    }
    panic!("not a Go duration: {s:?}")
}

#[tokio::test]
async fn each_variable_matches_the_request_and_sigusr1_reopens_after_a_rename() {
    let echo = Upstream::start("echo", Mode::Echo).await;
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("ferrymesh-access-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("access.log");
    let default_path = dir.join("default.log");
    let mut cfg = config(
        port,
        vec![json!({"match": {"headers": [{"name": "service", "value": SERVICE}]}, "route": {"cluster_name": "echo"}})],
        vec![cluster("echo", &[echo.addr])],
    );
    cfg["servers"][0]["listeners"][0]["access_logs"] = json!([
        {"log_path": path.to_str().unwrap(), "log_format": FORMAT},
        {"log_path": default_path.to_str().unwrap()}
    ]);
    let proxy = Proxy::start(&cfg, 1);

    let mut cl = Client::connect(proxy.addr).await;
    let me: SocketAddr = cl.sock.local_addr().unwrap();
    let request = RequestBuilder::new(77, SERVICE, b"hello access log").encode();
    let sent_at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    cl.send(&request).await;
    let answer = cl.recv().await;
    assert_eq!(answer.status, status::SUCCESS);
    let refused = RequestBuilder::new(78, "no.such.Service", b"x").encode();
    cl.send(&refused).await;
    let no_route = cl.recv().await;
    assert_eq!(no_route.status, status::NO_PROCESSOR);

    let got = lines(&path, 2).await;
    let f: Vec<&str> = got[0].split('|').collect();
    assert_eq!(f.len(), 14, "{}", got[0]);
    assert!((parse_start(f[0]) - sent_at).abs() < 2.0, "start_time {} vs {sent_at}", f[0]);
    assert!(parse_go_duration(f[1]) < 2.0, "duration {}", f[1]);
    assert_eq!(f[2], "-", "request_received_duration is not kept yet");
    assert_eq!(f[3], "bolt");
    assert_eq!(f[4], "77");
    assert_eq!(f[5], echo.addr.to_string());
    assert_eq!(f[6], echo.addr.to_string(), "MOSN prints the chosen host here");
    assert_eq!(f[7], "200");
    assert_eq!(f[8], "false");
    assert_eq!(f[9], request.len().to_string());
    assert_eq!(f[10], answer.frame.len().to_string());
    assert_eq!(f[11], me.to_string());
    assert_eq!(f[12], proxy.addr.to_string());
    assert_eq!(f[13], "-");
    let f: Vec<&str> = got[1].split('|').collect();
    assert_eq!((f[4], f[5], f[7], f[8]), ("78", "-", "404", "true"), "{}", got[1]);
    assert_eq!(f[10], no_route.frame.len().to_string());

    // MOSN's default format: 17 variables, start_time two words of them.
    let default = lines(&default_path, 2).await;
    let fields: Vec<&str> = default[0].split_whitespace().collect();
    assert_eq!(fields.len(), 18, "{}", default[0]);
    assert_eq!((fields[9], fields[10], fields[13]), ("bolt", "200", "200"), "{}", default[0]);
    assert_eq!(fields[fields.len() - 2], me.to_string());

    // logrotate: rename, SIGUSR1, and the next line goes to a new file.
    let rotated = dir.join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    proxy.signal("USR1");
    tokio::time::sleep(Duration::from_millis(200)).await;
    cl.send(&RequestBuilder::new(79, SERVICE, b"after rotation").encode()).await;
    assert_eq!(cl.recv().await.status, status::SUCCESS);
    let fresh = lines(&path, 1).await;
    assert_eq!(fresh.len(), 1, "{fresh:?}");
    assert!(fresh[0].contains("|79|"), "{}", fresh[0]);
    assert_eq!(std::fs::read_to_string(&rotated).unwrap().lines().count(), 2, "the rotated file got nothing more");
    let _ = std::fs::remove_dir_all(&dir);
}
