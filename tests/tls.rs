//! TLS end to end: termination (SNI over a context set, ALPN, client
//! certificates), the inspector, origination with mutual TLS between two
//! ferrymesh hops as MOSN's TLS examples set it up, each refusal an operator
//! must be able to act on (logged with its reason, counted), and rotation of
//! a certificate under load. Certificates are made by the tests (rcgen);
//! `openssl s_client` and `curl` are the clients we did not write.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ferrymesh::protocol::bolt::{status, RequestBuilder};
use serde_json::{json, Value};
use support::tls::*;
use support::*;

fn request(id: u32, content: &str) -> Vec<u8> {
    RequestBuilder::new(id, SERVICE, content.as_bytes()).encode()
}

/// A bolt config on `port` to `cluster`, with an admin port and a log file.
fn bolt_config(port: u16, cluster: Value, admin_port: u16, log: &Path) -> Value {
    let mut cfg = config(port, vec![route_all("c")], vec![cluster]);
    cfg["admin"] = admin(admin_port);
    cfg["servers"][0]["default_log_path"] = json!(log.to_str().unwrap());
    cfg
}

fn counter(m: &std::collections::HashMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

// Multi-threaded: openssl and curl block a thread while in-process upstreams serve.

/// MOSN's TLS example, for bolt: a client → ferrymesh "client" (plaintext
/// listener) → mutual TLS → ferrymesh "server" (TLS listener, client
/// certificates required and held to a SPIFFE id) → a plaintext upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hops_with_mutual_tls_carry_bolt_and_prove_the_client() {
    let pki = Pki::new("hops");
    let server_leaf = pki.leaf(
        "server",
        &LeafSpec { uris: &["spiffe://mesh.test/ns/default/sa/server"], serial: 11, ..Default::default() },
    );
    let client_leaf = pki.leaf(
        "client",
        &LeafSpec { uris: &["spiffe://mesh.test/ns/default/sa/client"], serial: 12, ..Default::default() },
    );
    let up = Upstream::start("up", Mode::Echo).await;

    let (b_port, b_admin) = (free_port(), free_port());
    let b_log = pki.path("b.log");
    let mut b_cfg = bolt_config(b_port, cluster("c", &[up.addr]), b_admin, &b_log);
    let mut ctx = server_context(&server_leaf, Some(&pki.ca_path));
    ctx["match_subject_alt_names"] = json!(["spiffe://mesh.test/ns/default/*"]);
    b_cfg["servers"][0]["listeners"][0]["filter_chains"][0]["tls_context"] = ctx;
    let access = pki.path("b-access.log");
    b_cfg["servers"][0]["listeners"][0]["access_logs"] = json!([{
        "log_path": access.to_str().unwrap(),
        "log_format": "%downstream_peer_uri_san% %downstream_tls_version% %response_code%"
    }]);
    let _b = Proxy::start(&b_cfg, 1);

    let (a_port, a_admin) = (free_port(), free_port());
    let mut to_b = cluster("c", &[format!("127.0.0.1:{b_port}").parse().unwrap()]);
    to_b["tls_context"] = client_context(&pki.ca_path, Some(&client_leaf), "127.0.0.1");
    let a = Proxy::start(&bolt_config(a_port, to_b, a_admin, &pki.path("a.log")), 1);

    let mut cl = Client::connect(a.addr).await;
    for i in 1..=20u32 {
        cl.send(&request(i, &format!("hello {i}"))).await;
    }
    for _ in 1..=20 {
        let r = cl.recv().await;
        assert_eq!(r.status, status::SUCCESS);
        assert_eq!(r.content, format!("hello {}", r.info.id).into_bytes(), "every answer to its own request");
    }
    // Both hops' connections owe nothing now and park (over TLS on B's
    // side); the next request resumes them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    cl.send(&request(21, "after a pause")).await;
    let r = cl.recv().await;
    assert_eq!((r.status, r.content), (status::SUCCESS, b"after a pause".to_vec()));
    // Large frames cross both TLS hops whole: gathered from rustls into
    // buffers of their own, handed on, sealed from them.
    let big: Vec<String> = (0..3).map(|k| format!("{k}").repeat(300_000 + k * 70_001)).collect();
    for (k, text) in big.iter().enumerate() {
        cl.send(&request(30 + k as u32, text)).await;
    }
    for _ in &big {
        let r = cl.recv().await;
        assert_eq!(r.status, status::SUCCESS);
        assert!(r.content == big[r.info.id as usize - 30].as_bytes(), "request {} came back changed", r.info.id);
    }
    let a_stats = scrape(a_admin);
    assert_eq!(counter(&a_stats, "ferrymesh_upstream_tls_handshakes_total{cluster=\"c\"}"), 1.0, "{a_stats:?}");
    let b_stats = scrape(b_admin);
    assert!(counter(&b_stats, "ferrymesh_downstream_tls_handshakes_total{listener=\"bolt_in\"}") >= 1.0, "{b_stats:?}");
    // The server side knows who called: the access log prints the client's SPIFFE id.
    drop(cl);
    let logged = wait_for_log(&access, "sa/client");
    assert!(logged.contains("spiffe://mesh.test/ns/default/sa/client TLSv1.3 200"), "{logged}");
}

/// A context set chooses by SNI (exact, then wildcard), without SNI the
/// first context; ALPN is negotiated; read with `openssl s_client`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_context_and_alpn_is_negotiated() {
    let pki = Pki::new("sni");
    let a = pki.leaf("a", &LeafSpec { cn: "a.example", dns: &["a.example"], serial: 0xa1, ..Default::default() });
    let b = pki.leaf("b", &LeafSpec { cn: "wild", dns: &["*.b.example"], serial: 0xb2, ..Default::default() });
    let up = Upstream::start("up", Mode::Echo).await;
    let port = free_port();
    let mut cfg = config(port, vec![route_all("c")], vec![cluster("c", &[up.addr])]);
    let mut second = server_context(&b, None);
    second["alpn"] = json!("h2,http/1.1");
    cfg["servers"][0]["listeners"][0]["filter_chains"][0]["tls_context_set"] =
        json!([server_context(&a, None), second]);
    let p = Proxy::start(&cfg, 1);
    let addr: SocketAddr = p.addr;

    let (serial, out) = served_serial(addr, &["-servername", "x.b.example"]);
    assert_eq!(serial.as_deref(), Some("b2"), "{out}");
    let (serial, out) = served_serial(addr, &["-servername", "a.example"]);
    assert_eq!(serial.as_deref(), Some("a1"), "{out}");
    let (serial, out) = served_serial(addr, &["-noservername"]);
    assert_eq!(serial.as_deref(), Some("a1"), "no SNI: the first context; {out}");
    // No name matches: the first context whose ALPN the client offers.
    let (serial, out) = served_serial(addr, &["-servername", "other.example", "-alpn", "h2"]);
    assert_eq!(serial.as_deref(), Some("b2"), "{out}");
    let out = openssl_client(addr, &["-servername", "y.b.example", "-alpn", "h2"]);
    assert!(out.contains("ALPN protocol: h2"), "{out}");
    // A client offering only protocols the context lacks is still served, as MOSN serves it.
    let out = openssl_client(addr, &["-servername", "y.b.example", "-alpn", "foo"]);
    assert!(out.contains("No ALPN negotiated"), "{out}");
}

/// Each refusal an operator must act on is refused, logged with the
/// listener or cluster, the peer and the reason, and counted by reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_logged_and_counted_by_reason() {
    let pki = Pki::new("refuse");
    let other = Pki::new("stranger");
    let server_leaf = pki.leaf("server", &LeafSpec { serial: 1, ..Default::default() });
    let good = pki.leaf("good", &LeafSpec { uris: &["spiffe://mesh.test/sa/good"], serial: 2, ..Default::default() });
    let expired = pki.leaf("expired", &LeafSpec { valid: (2001, 2002), serial: 3, ..Default::default() });
    let early = pki.leaf("early", &LeafSpec { valid: (2080, 2090), serial: 4, ..Default::default() });
    let stranger = other.leaf("stranger", &LeafSpec { serial: 5, ..Default::default() });
    let wrong_id =
        pki.leaf("wrong", &LeafSpec { uris: &["spiffe://mesh.test/sa/evil"], serial: 6, ..Default::default() });
    let up = Upstream::start("up", Mode::Echo).await;
    let (port, admin_port) = (free_port(), free_port());
    let log = pki.path("server.log");
    let mut cfg = bolt_config(port, cluster("c", &[up.addr]), admin_port, &log);
    let mut ctx = server_context(&server_leaf, Some(&pki.ca_path));
    ctx["match_subject_alt_names"] = json!(["spiffe://mesh.test/sa/good"]);
    cfg["servers"][0]["listeners"][0]["filter_chains"][0]["tls_context"] = ctx;
    let p = Proxy::start(&cfg, 1);
    let ca = pki.ca_path.to_str().unwrap().to_owned();
    let with = |leaf: &Leaf| {
        openssl_client(
            p.addr,
            &["-CAfile", &ca, "-cert", leaf.cert.to_str().unwrap(), "-key", leaf.key.to_str().unwrap()],
        )
    };
    let out = with(&good);
    assert!(out.contains("Verify return code: 0"), "the good client is served: {out}");
    with(&expired);
    with(&early);
    with(&stranger);
    with(&wrong_id);
    openssl_client(p.addr, &["-CAfile", &ca]);
    // Plaintext on the TLS port.
    let mut plain = Client::connect(p.addr).await;
    plain.send(&request(1, "x")).await;
    assert!(plain.closed_within(Duration::from_secs(5)).await);
    let text = wait_for_log(&log, "reason=no_client_cert");
    let m = scrape(admin_port);
    for reason in ["expired", "not_yet_valid", "unknown_ca", "san_mismatch", "no_client_cert", "not_tls"] {
        let key =
            format!("ferrymesh_downstream_tls_handshake_failures_total{{listener=\"bolt_in\",reason=\"{reason}\"}}");
        assert_eq!(counter(&m, &key), 1.0, "{reason}: {m:?}");
        assert!(text.contains(&format!("reason={reason}")), "{reason} not logged: {text}");
    }
    assert!(text.contains("listener=bolt_in") && text.contains("peer=127.0.0.1:"), "{text}");

    // Origination: the upstream's certificate is not valid for the name asked,
    // or signed by a CA the cluster does not trust.
    let (a_port, a_admin) = (free_port(), free_port());
    let a_log = pki.path("client.log");
    let mut to_p = cluster("c", &[p.addr]);
    to_p["tls_context"] = client_context(&pki.ca_path, Some(&good), "wrong.example");
    let a = Proxy::start(&bolt_config(a_port, to_p, a_admin, &a_log), 1);
    let mut cl = Client::connect(a.addr).await;
    cl.send(&request(1, "x")).await;
    assert_ne!(cl.recv().await.status, status::SUCCESS);
    let text = wait_for_log(&a_log, "reason=bad_name");
    assert!(text.contains("cluster=c") && text.contains("reason=bad_name"), "{text}");
    assert_eq!(
        counter(&scrape(a_admin), "ferrymesh_upstream_tls_handshake_failures_total{cluster=\"c\",reason=\"bad_name\"}"),
        1.0
    );
    drop(a);

    // A key that does not match its certificate is refused at load, by path.
    let mut bad = cfg.clone();
    bad["servers"][0]["listeners"][0]["filter_chains"][0]["tls_context"]["private_key"] =
        json!(good.key.to_str().unwrap());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrymesh"))
        .args(["check", "-c"])
        .arg({
            let f = pki.path("bad.json");
            std::fs::write(&f, bad.to_string()).unwrap();
            f
        })
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("filter_chains[0].tls_context.private_key") && err.contains("does not match"), "{err}");
}

/// With the inspector on, TLS and plaintext share a port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inspector_serves_tls_and_plaintext_on_one_port() {
    let pki = Pki::new("inspect");
    let leaf = pki.leaf("server", &LeafSpec::default());
    let up = Upstream::start("up", Mode::Echo).await;
    let (port, admin_port) = (free_port(), free_port());
    let mut cfg = bolt_config(port, cluster("c", &[up.addr]), admin_port, &pki.path("p.log"));
    cfg["servers"][0]["listeners"][0]["inspector"] = json!(true);
    cfg["servers"][0]["listeners"][0]["filter_chains"][0]["tls_context"] = server_context(&leaf, None);
    let p = Proxy::start(&cfg, 1);
    // Plaintext bolt.
    let mut cl = Client::connect(p.addr).await;
    cl.send(&request(7, "plain")).await;
    assert_eq!(cl.recv().await.content, b"plain");
    // TLS through a second ferrymesh that originates it.
    let mut to_p = cluster("c", &[p.addr]);
    to_p["tls_context"] = client_context(&pki.ca_path, None, "127.0.0.1");
    let a = Proxy::start(&config(free_port(), vec![route_all("c")], vec![to_p]), 1);
    let mut cl2 = Client::connect(a.addr).await;
    cl2.send(&request(8, "sealed")).await;
    assert_eq!(cl2.recv().await.content, b"sealed");
    let m = scrape(admin_port);
    assert!(counter(&m, "ferrymesh_downstream_tls_handshakes_total{listener=\"bolt_in\"}") >= 1.0, "{m:?}");
    assert!(counter(&m, "ferrymesh_downstream_tls_plaintext_total{listener=\"bolt_in\"}") >= 1.0, "{m:?}");
}

/// A certificate rotated under load: no request fails, and new handshakes
/// see the new serial while the connections already open live on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_reaches_new_handshakes_without_a_failed_request() {
    let pki = Pki::new("rotate");
    let leaf = pki.leaf("server", &LeafSpec { serial: 0x100, ..Default::default() });
    let up = Upstream::start("up", Mode::Echo).await;
    let (port, admin_port) = (free_port(), free_port());
    let log = pki.path("p.log");
    let mut cfg = bolt_config(port, cluster("c", &[up.addr]), admin_port, &log);
    cfg["servers"][0]["listeners"][0]["filter_chains"][0]["tls_context"] = server_context(&leaf, None);
    let p = Proxy::start(&cfg, 2);
    assert_eq!(served_serial(p.addr, &[]).0.as_deref(), Some("100"));

    // Load: a second ferrymesh originating TLS to it, one client sending.
    let mut to_p = cluster("c", &[p.addr]);
    to_p["tls_context"] = client_context(&pki.ca_path, None, "127.0.0.1");
    let a = Proxy::start(&config(free_port(), vec![route_all("c")], vec![to_p]), 1);
    let addr = a.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut cl = Client::connect(addr).await;
            let (mut ok, mut failed, mut i) = (0u32, Vec::new(), 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                cl.send(&request(i, "r")).await;
                let r = cl.recv().await;
                if r.status == status::SUCCESS {
                    ok += 1
                } else {
                    // Which request, and what it got: the log tells when.
                    failed.push((i, r.status, String::from_utf8_lossy(&r.content).into_owned()));
                }
            }
            (ok, failed)
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A bad key first: refused, the old certificate stays.
    let other = pki.leaf("unrelated", &LeafSpec { serial: 0x300, ..Default::default() });
    std::fs::copy(&other.key, &leaf.key).unwrap();
    let text = wait_for_log(&log, "configuration refused");
    assert!(text.contains("does not match"), "{text}");
    assert_eq!(served_serial(p.addr, &[]).0.as_deref(), Some("100"), "the old certificate keeps serving");
    // Then the new pair.
    pki.leaf("server", &LeafSpec { serial: 0x200, ..Default::default() });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if served_serial(p.addr, &[]).0.as_deref() == Some("200") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the new certificate never reached a handshake");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = load.await.unwrap();
    assert!(
        failed.is_empty(),
        "failed requests (id, status, body): {failed:?}\nlog:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(ok > 10, "{ok} requests went through");
    let m = scrape(admin_port);
    assert!(counter(&m, "ferrymesh_config_generations_total{result=\"refused\"}") >= 1.0, "{m:?}");
}

/// Origination reuses sessions: a cluster's second connection to a host
/// resumes the first one's session (one client config per cluster, shared by
/// its pools); a host with `tls_disable` is dialled in plaintext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_sessions_resume_and_tls_disable_dials_plaintext() {
    let pki = Pki::new("resume");
    let leaf = pki.leaf("server", &LeafSpec::default());
    let up = Upstream::start("plain-up", Mode::Echo).await;
    let (b_port, b_admin) = (free_port(), free_port());
    let mut b_cfg = bolt_config(b_port, cluster("c", &[up.addr]), b_admin, &pki.path("b.log"));
    b_cfg["servers"][0]["listeners"][0]["filter_chains"][0]["tls_context"] = server_context(&leaf, None);
    let _b = Proxy::start(&b_cfg, 1);

    let (a_port, a_admin) = (free_port(), free_port());
    let mut to_b = cluster("c", &[format!("127.0.0.1:{b_port}").parse().unwrap()]);
    to_b["tls_context"] = client_context(&pki.ca_path, None, "127.0.0.1");
    to_b["connections_per_host"] = json!(2);
    let a = Proxy::start(&bolt_config(a_port, to_b, a_admin, &pki.path("a.log")), 1);
    let mut cl = Client::connect(a.addr).await;
    for i in 1..=6u32 {
        cl.send(&request(i, "r")).await;
        assert_eq!(cl.recv().await.status, status::SUCCESS);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = scrape(a_admin);
    assert_eq!(counter(&m, "ferrymesh_upstream_tls_handshakes_total{cluster=\"c\"}"), 2.0, "{m:?}");
    assert_eq!(counter(&m, "ferrymesh_upstream_tls_resumed_total{cluster=\"c\"}"), 1.0, "{m:?}");
    assert_eq!(counter(&scrape(b_admin), "ferrymesh_downstream_tls_resumed_total{listener=\"bolt_in\"}"), 1.0);
    drop(a);

    // Two hosts: B over TLS, the plain upstream with tls_disable.
    let mut mixed = cluster("c", &[format!("127.0.0.1:{b_port}").parse().unwrap(), up.addr]);
    mixed["tls_context"] = client_context(&pki.ca_path, None, "127.0.0.1");
    mixed["hosts"][1]["tls_disable"] = json!(true);
    let c_admin = free_port();
    let c = Proxy::start(&bolt_config(free_port(), mixed, c_admin, &pki.path("c.log")), 1);
    let mut cl = Client::connect(c.addr).await;
    for i in 1..=10u32 {
        cl.send(&request(i, "m")).await;
        assert_eq!(cl.recv().await.status, status::SUCCESS, "request {i}");
    }
    let m = scrape(c_admin);
    let plain = format!("ferrymesh_upstream_host_connections_total{{cluster=\"c\",host=\"{}\"}}", up.addr);
    assert_eq!(counter(&m, &plain), 1.0, "{m:?}");
    assert_eq!(
        counter(&m, "ferrymesh_upstream_tls_handshakes_total{cluster=\"c\"}"),
        1.0,
        "only B's connection is TLS: {m:?}"
    );
    assert!(up.requests_seen() >= 5, "the plain host served its share");
}

/// The origination options and the listener's limits, each through sockets:
/// `insecure_skip` trusts a server nobody vouches for; MOSN's `sni_verify`
/// lets a URI SAN decide instead of the name; `fall_back` retries a failed
/// handshake in plaintext; `require_client_cert` alone asks for a
/// certificate and takes a stranger's; `max_version` and `cipher_suites`
/// hold what a client gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origination_options_and_listener_limits() {
    let pki = Pki::new("options");
    let other = Pki::new("options-stranger");
    let leaf = pki.leaf("server", &LeafSpec { uris: &["spiffe://mesh.test/sa/server"], ..Default::default() });
    let up = Upstream::start("up", Mode::Echo).await;
    let mut b_cfg = config(free_port(), vec![route_all("c")], vec![cluster("c", &[up.addr])]);
    let mut ctx = server_context(&leaf, None);
    ctx["require_client_cert"] = json!(true);
    ctx["max_version"] = json!("TLSv1_2");
    ctx["cipher_suites"] = json!("ECDHE-ECDSA-AES128-GCM-SHA256");
    b_cfg["servers"][0]["listeners"][0]["filter_chains"][0]["tls_context"] = ctx;
    let b = Proxy::start(&b_cfg, 1);

    // Each origination option against B, through a ferrymesh in front.
    let through = |tls: Value, to: std::net::SocketAddr| {
        let mut c = cluster("c", &[to]);
        c["tls_context"] = tls;
        Proxy::start(&config(free_port(), vec![route_all("c")], vec![c]), 1)
    };
    let ask = |addr: std::net::SocketAddr| async move {
        let mut cl = Client::connect(addr).await;
        cl.send(&request(1, "opt")).await;
        cl.recv().await.status
    };
    let strangers_ca = other.ca_path.to_str().unwrap();
    let a = through(json!({"status": true, "insecure_skip": true}), b.addr);
    assert_eq!(ask(a.addr).await, status::SUCCESS, "insecure_skip trusts B's certificate without its CA");
    let a = through(json!({"status": true, "ca_cert": strangers_ca, "server_name": "127.0.0.1"}), b.addr);
    assert_ne!(ask(a.addr).await, status::SUCCESS, "without insecure_skip, an unknown CA is refused");
    let ca = pki.ca_path.to_str().unwrap();
    let sni_verify = |uri: &str| {
        json!({"status": true, "ca_cert": ca, "server_name": "not-its-name.example", "type": "sni_verify",
               "extend_verify": {"match_subject_alt_names": uri}})
    };
    let a = through(sni_verify("spiffe://mesh.test/sa/server"), b.addr);
    assert_eq!(ask(a.addr).await, status::SUCCESS, "sni_verify: the URI SAN decides, not the name");
    let a = through(sni_verify("spiffe://mesh.test/sa/other"), b.addr);
    assert_ne!(ask(a.addr).await, status::SUCCESS, "sni_verify: another URI is refused");
    let a = through(json!({"status": true, "ca_cert": ca, "server_name": "127.0.0.1", "fall_back": true}), up.addr);
    assert_eq!(
        ask(a.addr).await,
        status::SUCCESS,
        "fall_back: a plaintext upstream is reached after the failed handshake"
    );

    // B asks for a certificate and takes a stranger's; TLS 1.3 is not offered; one suite.
    let stranger = other.leaf("stranger", &LeafSpec::default());
    let out = openssl_client(
        b.addr,
        &["-cert", stranger.cert.to_str().unwrap(), "-key", stranger.key.to_str().unwrap(), "-CAfile", ca],
    );
    assert!(out.contains("Protocol  : TLSv1.2") || out.contains("Protocol: TLSv1.2"), "{out}");
    assert!(out.contains("ECDHE-ECDSA-AES128-GCM-SHA256"), "{out}");
    assert!(out.contains("Verify return code: 0"), "{out}");
    let out = openssl_client(b.addr, &["-tls1_3", "-CAfile", ca]);
    assert!(out.contains("no peer certificate available"), "TLS 1.3 was served though max_version is TLSv1_2: {out}");
}
