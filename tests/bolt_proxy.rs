//! End-to-end behaviour of the bolt proxy through real sockets: ferrymesh runs as
//! a child process between our bolt client and bolt upstreams on 127.0.0.1.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use ferrymesh::protocol::bolt::{status, RequestBuilder};
use ferrymesh::protocol::FrameKind;
use serde_json::json;
use support::*;

fn request(id: u32, content: &str) -> Vec<u8> {
    RequestBuilder::new(id, SERVICE, content.as_bytes()).encode()
}

/// (a) 200 client connections send ids 1..=N at once, colliding across
/// connections; ferrymesh multiplexes them onto at most 2 connections per host
/// over 3 hosts. Every response must reach the connection that sent its
/// request, with that request's id and its own payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiplexes_colliding_ids_without_mixing_responses() {
    let ups = [
        Upstream::start("u0", Mode::Echo).await,
        Upstream::start("u1", Mode::Echo).await,
        Upstream::start("u2", Mode::Echo).await,
    ];
    let port = free_port();
    let mut c = cluster("echo", &ups.iter().map(|u| u.addr).collect::<Vec<_>>());
    c["connections_per_host"] = json!(2);
    let proxy = Proxy::start(&config(port, vec![route_all("echo")], vec![c]), 1);

    const CONNS: usize = 200;
    const N: u32 = 25;
    let mut tasks = Vec::new();
    for conn in 0..CONNS {
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move {
            let mut cl = Client::connect(addr).await;
            let mut all = Vec::new();
            for id in 1..=N {
                all.extend(request(id, &format!("conn{conn}-id{id}")));
            }
            cl.send(&all).await;
            let mut got = HashMap::new();
            for _ in 1..=N {
                let r = cl.recv().await;
                assert_eq!(r.status, status::SUCCESS);
                let expected = format!("conn{conn}-id{}", r.info.id);
                assert_eq!(String::from_utf8_lossy(&r.content), expected, "response reached the wrong request");
                assert!(got.insert(r.info.id, r.server.clone()).is_none(), "id {} answered twice", r.info.id);
            }
            assert_eq!(got.len(), N as usize);
            got
        }));
    }
    let mut servers = HashSet::new();
    for t in tasks {
        for (_, s) in t.await.unwrap() {
            servers.insert(s.unwrap());
        }
    }
    assert_eq!(servers.len(), 3, "requests spread over all three hosts");
    for u in &ups {
        let conns = u.conns.load(std::sync::atomic::Ordering::SeqCst);
        assert!((1..=2).contains(&conns), "{} saw {conns} upstream connections, want 1..=2", u.name);
        // Upstream ids are unique per upstream connection at any moment.
        let seen = u.seen();
        assert!(seen.iter().all(|s| s.kind == FrameKind::Request));
    }
    let total: usize = ups.iter().map(|u| u.requests_seen()).sum();
    assert_eq!(total, CONNS * N as usize);
}

/// (b) A frame split at every byte offset, and many frames in one write.
#[tokio::test]
async fn decodes_frames_split_anywhere_and_batched() {
    let up = Upstream::start("u", Mode::Echo).await;
    let port = free_port();
    let proxy = Proxy::start(&config(port, vec![route_all("echo")], vec![cluster("echo", &[up.addr])]), 1);
    let mut cl = Client::connect(proxy.addr).await;
    let frame = request(7, "split-me");
    for cut in 1..frame.len() {
        cl.send(&frame[..cut]).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
        cl.send(&frame[cut..]).await;
        let r = cl.recv().await;
        assert_eq!((r.info.id, r.status, r.content.as_slice()), (7, 0, &b"split-me"[..]), "cut at {cut}");
    }
    // Byte by byte.
    for b in &frame {
        cl.send(std::slice::from_ref(b)).await;
    }
    assert_eq!(cl.recv().await.info.id, 7);
    // 100 frames in one write.
    let mut batch = Vec::new();
    for id in 1..=100u32 {
        batch.extend(request(id, &format!("b{id}")));
    }
    cl.send(&batch).await;
    let mut ids = HashSet::new();
    for _ in 0..100 {
        let r = cl.recv().await;
        assert_eq!(String::from_utf8_lossy(&r.content), format!("b{}", r.info.id));
        ids.insert(r.info.id);
    }
    assert_eq!(ids.len(), 100);
}

/// (c) An upstream killed in flight: its requests get the upstream-reset
/// answer at once; later requests go to the live host.
#[tokio::test]
async fn upstream_killed_in_flight_fails_its_requests_and_traffic_moves_on() {
    let slow = Upstream::start("slow", Mode::Delay(Duration::from_secs(20))).await;
    let live = Upstream::start("live", Mode::Echo).await;
    let port = free_port();
    let proxy = Proxy::start(&config(port, vec![route_all("echo")], vec![cluster("echo", &[slow.addr, live.addr])]), 1);
    let mut cl = Client::connect(proxy.addr).await;
    for id in 1..=10 {
        cl.send(&request(id, "x")).await;
    }
    // The live host answers its half at once.
    let mut answered = 0;
    while let Some(r) = cl.recv_within(Duration::from_millis(500)).await {
        assert_eq!(r.status, 0);
        answered += 1;
    }
    let pending = 10 - answered;
    assert!(pending > 0 && slow.requests_seen() == pending, "some requests wait on the slow host");
    let killed_at = Instant::now();
    slow.kill();
    for _ in 0..pending {
        let r = cl.recv_within(Duration::from_secs(2)).await.expect("reset answer");
        assert_eq!(r.status, status::NO_PROCESSOR, "upstream reset is answered with status 6");
    }
    assert!(killed_at.elapsed() < Duration::from_secs(1), "answers came promptly");
    // Later requests all succeed on the live host: connects to the dead one fail and are retried.
    for id in 100..120 {
        cl.send(&request(id, "after")).await;
        let r = cl.recv().await;
        assert_eq!((r.info.id, r.status, r.server.as_deref()), (u64::from(id), 0, Some("live")));
    }
}

/// (d) An upstream that never answers: the timeout answer comes at the route
/// timeout, and the late answer of a slow host never reaches anyone.
#[tokio::test]
async fn route_timeout_answers_and_late_responses_are_dropped() {
    let silent = Upstream::start("silent", Mode::Silent).await;
    let slow = Upstream::start("slow", Mode::Delay(Duration::from_millis(600))).await;
    let port = free_port();
    let routes = vec![
        json!({"match": {"headers": [{"name": "service", "value": "silent"}]}, "route": {"cluster_name": "silent", "timeout": "300ms"}}),
        json!({"match": {"headers": [{"name": "service", "value": "slow"}]}, "route": {"cluster_name": "slow", "timeout": "200ms"}}),
    ];
    let proxy =
        Proxy::start(&config(port, routes, vec![cluster("silent", &[silent.addr]), cluster("slow", &[slow.addr])]), 1);
    let mut cl = Client::connect(proxy.addr).await;
    // No timeout in the frame (-1): the route's 300 ms applies.
    let mut r = RequestBuilder::new(1, "silent", b"x");
    r.timeout_ms = -1;
    let t0 = Instant::now();
    cl.send(&r.encode()).await;
    let resp = cl.recv().await;
    let took = t0.elapsed();
    assert_eq!((resp.info.id, resp.status), (1, status::TIMEOUT));
    assert!(took >= Duration::from_millis(290) && took < Duration::from_millis(1500), "took {took:?}");
    // The frame's own timeout wins over the route's.
    let mut r = RequestBuilder::new(2, "silent", b"x");
    r.timeout_ms = 100;
    let t0 = Instant::now();
    cl.send(&r.encode()).await;
    assert_eq!(cl.recv().await.status, status::TIMEOUT);
    assert!(t0.elapsed() < Duration::from_millis(290));

    // A slow answer after the timeout is dropped, and the next request gets its own answer.
    let mut r = RequestBuilder::new(3, "slow", b"late");
    r.timeout_ms = -1;
    cl.send(&r.encode()).await;
    assert_eq!(cl.recv().await.status, status::TIMEOUT);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut r = RequestBuilder::new(3, "slow", b"second");
    r.timeout_ms = 2000;
    cl.send(&r.encode()).await;
    let resp = cl.recv().await;
    assert_eq!((resp.info.id, resp.status, resp.content.as_slice()), (3, 0, &b"second"[..]));
    assert!(cl.recv_within(Duration::from_millis(300)).await.is_none(), "nothing else arrives");
}

/// (e) No route, no hosts, hosts that refuse connections, direct responses.
#[tokio::test]
async fn proxy_failures_get_mosn_statuses() {
    let dead_host = DeadHost::new();
    let dead = dead_host.addr().port();
    let port = free_port();
    let routes = vec![
        json!({"match": {"headers": [{"name": "service", "value": "empty"}]}, "route": {"cluster_name": "empty"}}),
        json!({"match": {"headers": [{"name": "service", "value": "dead"}]}, "route": {"cluster_name": "dead"}}),
        json!({"match": {"headers": [{"name": "service", "value": "busy"}]}, "direct_response": {"status": 503, "body": "busy"}}),
    ];
    let clusters = vec![cluster("empty", &[]), cluster("dead", &[format!("127.0.0.1:{dead}").parse().unwrap()])];
    let proxy = Proxy::start(&config(port, routes, clusters), 1);
    let mut cl = Client::connect(proxy.addr).await;
    let cases = [
        ("nothing-matches", status::NO_PROCESSOR),
        ("empty", status::NO_PROCESSOR),
        ("dead", status::NO_PROCESSOR),
        ("busy", status::SERVER_THREADPOOL_BUSY),
    ];
    for (i, (service, want)) in cases.iter().enumerate() {
        let id = 40 + i as u32;
        cl.send(&RequestBuilder::new(id, service, b"x").encode()).await;
        let r = cl.recv().await;
        assert_eq!((r.info.id, r.status), (u64::from(id), *want), "service {service}");
    }
    // A request without any service header matches no route either.
    let mut r = RequestBuilder::new(50, "", b"x");
    r.headers.clear();
    cl.send(&r.encode()).await;
    assert_eq!(cl.recv().await.status, status::NO_PROCESSOR);
}

/// (f) Garbage and oversized frames close that connection only.
#[tokio::test]
async fn bad_frames_close_only_their_connection() {
    let up = Upstream::start("u", Mode::Echo).await;
    let port = free_port();
    let mut cfg = config(port, vec![route_all("echo")], vec![cluster("echo", &[up.addr])]);
    cfg["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["config"]["max_frame_size"] = json!(4096);
    let proxy = Proxy::start(&cfg, 1);
    let mut good = Client::connect(proxy.addr).await;
    good.send(&request(1, "before")).await;
    assert_eq!(good.recv().await.status, 0);

    let mut garbage = Client::connect(proxy.addr).await;
    garbage.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(garbage.closed_within(Duration::from_secs(2)).await, "garbage closes the connection");

    let mut bad_cmd = Client::connect(proxy.addr).await;
    let mut f = request(1, "x");
    f[3] = 0x33; // unknown command code
    bad_cmd.send(&f).await;
    assert!(bad_cmd.closed_within(Duration::from_secs(2)).await, "unknown command closes the connection");

    let mut big = Client::connect(proxy.addr).await;
    big.send(&request(1, &"y".repeat(5000))).await;
    assert!(big.closed_within(Duration::from_secs(2)).await, "oversized frame closes the connection");

    good.send(&request(2, "after")).await;
    let r = good.recv().await;
    assert_eq!((r.info.id, r.status, r.content.as_slice()), (2, 0, &b"after"[..]));
    assert_eq!(up.requests_seen(), 2, "nothing from the bad connections reached the upstream");
}

/// A listener's `max_frame_size` holds for the answers too: upstream
/// connections read frames up to the largest limit of the listeners (they
/// kept the 16 MiB default, so a 17 MiB answer closed the shared upstream
/// connection and failed every request on it).
#[tokio::test]
async fn answers_are_held_to_the_listeners_max_frame_size() {
    let up = Upstream::start("u", Mode::Echo).await;
    let port = free_port();
    let mut cfg = config(port, vec![route_all("echo")], vec![cluster("echo", &[up.addr])]);
    cfg["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["config"]["max_frame_size"] = json!(24 << 20);
    let proxy = Proxy::start(&cfg, 1);
    let mut cl = Client::connect(proxy.addr).await;
    let content = "z".repeat(17 << 20);
    cl.send(&request(1, &content)).await;
    let r = cl.recv().await;
    assert_eq!((r.info.id, r.status, r.content.len()), (1, 0, content.len()), "a 17 MiB echo under a 24 MiB limit");
}

/// (g) Heartbeats are answered by ferrymesh itself; oneway requests are delivered
/// and get no answer.
#[tokio::test]
async fn heartbeats_answered_locally_and_oneway_delivered() {
    let up = Upstream::start("u", Mode::Echo).await;
    let port = free_port();
    let proxy = Proxy::start(&config(port, vec![route_all("echo")], vec![cluster("echo", &[up.addr])]), 1);
    let mut cl = Client::connect(proxy.addr).await;
    cl.send(&RequestBuilder::heartbeat(0x7f00_0001).encode()).await;
    let r = cl.recv().await;
    assert_eq!((r.info.kind, r.info.id), (FrameKind::HeartbeatAck, 0x7f00_0001));
    assert_eq!(r.frame, hex("01000000017f0000010100000000000000000000"));

    let mut ow = RequestBuilder::new(9, SERVICE, b"fire-and-forget");
    ow.oneway = true;
    cl.send(&ow.encode()).await;
    cl.send(&request(10, "two-way")).await;
    let r = cl.recv().await;
    assert_eq!(r.info.id, 10, "the oneway request got no answer");
    let seen = up.seen();
    assert!(seen.iter().any(|s| s.kind == FrameKind::Oneway && s.content == b"fire-and-forget"), "oneway delivered");
    assert!(!seen.iter().any(|s| s.kind == FrameKind::Heartbeat), "client heartbeat not forwarded");
}

/// (h) SIGTERM: in-flight requests are answered, then the process exits 0.
#[tokio::test]
async fn sigterm_drains_in_flight_requests() {
    let up = Upstream::start("u", Mode::Delay(Duration::from_millis(700))).await;
    let port = free_port();
    let mut proxy = Proxy::start(&config(port, vec![route_all("echo")], vec![cluster("echo", &[up.addr])]), 2);
    let mut clients = Vec::new();
    for c in 0..4 {
        let mut cl = Client::connect(proxy.addr).await;
        for id in 1..=5 {
            cl.send(&request(id, &format!("c{c}i{id}"))).await;
        }
        clients.push(cl);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.signal("TERM");
    for (c, cl) in clients.iter_mut().enumerate() {
        for _ in 1..=5 {
            let r = cl.recv().await;
            assert_eq!(r.status, 0);
            assert_eq!(String::from_utf8_lossy(&r.content), format!("c{c}i{}", r.info.id));
        }
        assert!(cl.closed_within(Duration::from_secs(2)).await, "drained connection is closed");
    }
    let code = tokio::task::spawn_blocking(move || proxy.wait_exit(Duration::from_secs(5))).await.unwrap();
    assert_eq!(code, Some(0));
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// MOSN's `Auto`: the protocol is detected per connection; bolt v1 and v2
/// clients share the listener and the upstream connection; bytes of no known
/// protocol close the connection.
#[tokio::test]
async fn auto_detects_bolt_v1_and_v2_per_connection() {
    let up = Upstream::start("u", Mode::Echo).await;
    let port = free_port();
    let mut cfg = config(port, vec![route_all("echo")], vec![cluster("echo", &[up.addr])]);
    let p = &mut cfg["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["config"];
    p["downstream_protocol"] = json!("Auto");
    p["upstream_protocol"] = json!("Auto");
    let proxy = Proxy::start(&cfg, 1);

    let mut v1 = Client::connect(proxy.addr).await;
    v1.send(&request(1, "one")).await;
    let r = v1.recv().await;
    assert_eq!((r.frame[0], r.info.id, r.content.as_slice()), (1, 1, &b"one"[..]));

    let mut v2 = Client::connect(proxy.addr).await;
    let mut req = RequestBuilder::new(1, SERVICE, b"two");
    req.version = 2;
    v2.send(&req.encode()).await;
    let r = v2.recv().await;
    assert_eq!((r.frame[0], r.info.id, r.content.as_slice()), (2, 1, &b"two"[..]), "answered in v2");
    assert_eq!(up.conns.load(std::sync::atomic::Ordering::SeqCst), 1, "one upstream connection carries both");

    let mut junk = Client::connect(proxy.addr).await;
    junk.send(b"\x16\x03\x01 not bolt").await;
    assert!(junk.closed_within(Duration::from_secs(2)).await);
}
