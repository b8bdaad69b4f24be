//! The admin server's live dashboard in a real browser: ferrymesh runs with
//! bolt traffic flowing through it while headless Chromium loads `/dashboard`
//! and polls for a few seconds of real time; then the page's DOM must show the
//! cluster, its healthy host and charts that moved, and a screenshot is saved
//! to `target/dashboard.png`.
//!
//! Chromium is driven over the DevTools protocol by `tests/dashboard/cdp.py`
//! (python3, stdlib only): the test starts Chromium itself, in its own process
//! group, and kills that group by PID when done. Needs `chromium` (Debian
//! package; `bash .ci/run` installs it) or `CHROMIUM=/path/to/chrome`.

mod support;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrymesh::protocol::bolt::{status, RequestBuilder};
use serde_json::Value;
use support::*;

/// Real time the page polls for before the DOM is read.
const POLL_SECONDS: u64 = 6;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Chromium binary: `$CHROMIUM`, else the first of the usual names on PATH.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "CHROMIUM={} is not a file", p.display());
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "Chromium is not installed, so the dashboard cannot be tested: \
         `apt-get install -y --no-install-recommends chromium` (bash .ci/run does), or set CHROMIUM=/path/to/chrome"
    );
}

/// Headless Chromium with a throwaway profile. Dropping it kills Chromium's
/// whole process group (browser, zygote, renderers) by PID.
struct Browser {
    child: Child,
    profile: PathBuf,
}

impl Browser {
    fn launch(log: &std::path::Path) -> Browser {
        let bin = chromium();
        let profile = std::env::temp_dir().join(format!(
            "ferrymesh-dashboard-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(&profile).expect("profile dir");
        let log = std::fs::File::create(log).expect("chromium log");
        let child = Command::new(&bin)
            .args([
                "--headless=new",
                "--no-sandbox", // tests run as root in CI
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--no-proxy-server",
                "--disable-extensions",
                "--disable-sync",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows",
                "--mute-audio",
                "--hide-scrollbars",
                "--window-size=1280,900",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start Chromium ({}): {e}", bin.display()));
        Browser { child, profile }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The group's id is the browser's PID (process_group(0) above).
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Bolt requests through the proxy in a loop until `stop`; counts successes.
fn traffic(addr: std::net::SocketAddr, stop: Arc<AtomicBool>, ok: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut client = Client::connect(addr).await;
        let mut id = 1u32;
        while !stop.load(Ordering::SeqCst) {
            client.send(&RequestBuilder::new(id, SERVICE, format!("dash-{id}").as_bytes()).encode()).await;
            let r = client.recv().await;
            assert_eq!(r.status, status::SUCCESS, "request {id} through the proxy failed");
            ok.fetch_add(1, Ordering::SeqCst);
            id += 1;
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_live_traffic_in_chromium() {
    let bin = chromium(); // fail fast, before anything starts
    let up = Upstream::start("dash", Mode::Echo).await;
    let (port, admin_port) = (free_port(), free_port());
    let mut cfg = config(port, vec![route_all("echo")], vec![cluster("echo", &[up.addr])]);
    cfg["admin"] = admin(admin_port);
    let proxy = Proxy::start(&cfg, 1);

    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", admin_port)).is_err() {
        assert!(Instant::now() < deadline, "the admin server did not listen on {admin_port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, page) = admin_get(admin_port, "/dashboard");
    assert_eq!(code, 200, "GET /dashboard: {page}");
    assert!(page.contains("chart-rate"), "/dashboard is not the dashboard page");
    let (code, data) = admin_get(admin_port, "/dashboard/data");
    assert_eq!(code, 200, "GET /dashboard/data: {data}");
    let data: Value =
        serde_json::from_str(&data).unwrap_or_else(|e| panic!("/dashboard/data is not JSON ({e}): {data}"));
    for key in ["ferrymesh_version", "config_version", "uptime_seconds", "state", "requests_total", "errors_total"] {
        assert!(data.get(key).is_some(), "/dashboard/data lacks {key}: {data}");
    }
    let bounds = data["latency_bounds_seconds"].as_array().map_or(0, |a| a.len());
    let buckets = data["latency_buckets"].as_array().map_or(0, |a| a.len());
    assert!(bounds > 0 && buckets == bounds + 1, "want N bounds and N+1 buckets: {data}");

    // Traffic for the whole time the page polls.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let loops: Vec<_> = (0..2).map(|_| traffic(proxy.addr, stop.clone(), ok.clone())).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ok.load(Ordering::SeqCst) < 20 {
        assert!(Instant::now() < deadline, "bolt traffic does not flow through the proxy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let out_dir = root().join("target");
    std::fs::create_dir_all(&out_dir).expect("target dir");
    let png = out_dir.join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    let log = out_dir.join("dashboard-chromium.log");
    let browser = Browser::launch(&log);
    let url = format!("http://127.0.0.1:{admin_port}/dashboard");
    let cdp = tokio::process::Command::new("python3")
        .arg(root().join("tests/dashboard/cdp.py"))
        .arg("--profile")
        .arg(&browser.profile)
        .args(["--url", &url, "--seconds", &POLL_SECONDS.to_string(), "--min-points", "3", "--extra", "10"])
        .arg("--screenshot")
        .arg(&png)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), cdp)
        .await
        .expect("cdp.py did not finish within 90 s")
        .expect("python3 runs (needed for tests/dashboard/cdp.py)");
    drop(browser);
    stop.store(true, Ordering::SeqCst);
    for l in loops {
        l.await.expect("traffic loop");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "driving Chromium ({}) failed: {stderr}\n(Chromium's output: {})",
        bin.display(),
        log.display()
    );
    let dom: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("cdp.py printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    let dump = serde_json::to_string_pretty(&dom).unwrap();
    assert_eq!(dom["problems"], serde_json::json!([]), "the page reported errors: {dump}");

    // The configured cluster, and its host, healthy.
    let clusters: Vec<&str> = dom["clusters"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(clusters.contains(&"echo"), "cluster `echo` missing from the page: {dump}");
    let host = up.addr.to_string();
    let row = dom["hosts"].as_array().unwrap().iter().find(|h| h["address"] == host.as_str());
    let row = row.unwrap_or_else(|| panic!("host {host} missing from the page: {dump}"));
    assert_eq!(row["healthy"], "true", "host {host} is not shown healthy: {dump}");

    // The page polled and its request-rate chart moved while traffic ran.
    let polls = dom["polls"].as_u64().unwrap_or(0);
    assert!(polls >= 3, "only {polls} successful polls: {dump}");
    let rate = &dom["charts"]["rate"];
    assert!(rate["points"].as_u64().unwrap_or(0) >= 3, "chart-rate drew fewer than 3 points: {dump}");
    assert!(rate["max"].as_f64().unwrap_or(0.0) > 0.0, "chart-rate stayed at 0 under traffic: {dump}");

    // The screenshot: a PNG of the 1280x900 viewport with something on it.
    let shot = std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
    assert_eq!(&shot[..8.min(shot.len())], b"\x89PNG\r\n\x1a\n", "{} is not a PNG", png.display());
    assert!(shot.len() > 20_000, "{} is only {} bytes", png.display(), shot.len());
    let (w, h) =
        (u32::from_be_bytes(shot[16..20].try_into().unwrap()), u32::from_be_bytes(shot[20..24].try_into().unwrap()));
    assert_eq!((w, h), (1280, 900), "screenshot size");
    println!("dashboard: {polls} polls, rate {rate}, screenshot {} ({} bytes)", png.display(), shot.len());
}
