//! The core's multiplexing guarantees, proven once per RPC protocol from one
//! suite: colliding ids from many connections never mix answers up, an
//! upstream killed in flight fails its requests with the protocol's own
//! error, an upstream that never answers times out, and garbage closes only
//! its own connection.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use support::rpc::*;
use support::{cluster, free_port, Proxy};

const SERVICE: &str = "com.example.EchoService";

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// 40 connections send ids 1..=25 at once, colliding across connections,
/// onto three hosts: every answer reaches the connection that asked, with
/// that request's id and its own text.
async fn colliding_ids_never_mix(wire: &'static dyn Wire) {
    let ups = [
        RpcUpstream::start(wire, "u0", Answer::Echo).await,
        RpcUpstream::start(wire, "u1", Answer::Echo).await,
        RpcUpstream::start(wire, "u2", Answer::After(Duration::from_millis(5))).await,
    ];
    let port = free_port();
    let hosts: Vec<SocketAddr> = ups.iter().map(|u| u.addr).collect();
    let _proxy = Proxy::start(&rpc_config(wire, port, SERVICE, "5s", vec![cluster("c", &hosts)]), 2);
    let mut tasks = Vec::new();
    for c in 0..40 {
        tasks.push(tokio::spawn(async move {
            let mut cl = RpcClient::connect(wire, addr(port)).await;
            for id in 1..=25u64 {
                cl.send(&wire.request(id, SERVICE, &format!("c{c}-r{id}"))).await;
            }
            let mut got = HashMap::new();
            for _ in 0..25 {
                let (info, frame) = cl.recv().await;
                let text = wire
                    .ok_text(&frame)
                    .unwrap_or_else(|| panic!("{}: an error answer for id {}", wire.name(), info.id));
                assert!(got.insert(info.id, text).is_none(), "{}: id {} answered twice", wire.name(), info.id);
            }
            for id in 1..=25u64 {
                let text = &got[&id];
                assert!(
                    text.starts_with(&format!("c{c}-r{id}|u")),
                    "{}: connection {c} id {id} got {text:?}",
                    wire.name()
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let served: usize = ups.iter().map(|u| u.requests.load(Ordering::SeqCst)).sum();
    assert_eq!(served, 40 * 25);
}

/// An upstream killed with requests in flight: they get the protocol's error
/// answer at once; later requests go to the live host.
async fn a_killed_upstream_fails_its_requests_in_the_protocols_words(wire: &'static dyn Wire) {
    let slow = RpcUpstream::start(wire, "slow", Answer::After(Duration::from_secs(20))).await;
    let live = RpcUpstream::start(wire, "live", Answer::Echo).await;
    let port = free_port();
    let _proxy = Proxy::start(&rpc_config(wire, port, SERVICE, "30s", vec![cluster("c", &[slow.addr, live.addr])]), 1);
    let mut cl = RpcClient::connect(wire, addr(port)).await;
    for id in 1..=10 {
        cl.send(&wire.request(id, SERVICE, "x")).await;
    }
    let mut answered = 0;
    while let Some((_, frame)) = cl.recv_within(Duration::from_millis(500)).await {
        assert!(wire.ok_text(&frame).is_some_and(|t| t.ends_with("|live")));
        answered += 1;
    }
    let pending = 10 - answered;
    assert!(
        pending > 0 && slow.requests.load(Ordering::SeqCst) == pending,
        "{}: some requests wait on the slow host",
        wire.name()
    );
    let killed = Instant::now();
    slow.kill();
    for _ in 0..pending {
        let (info, frame) = cl.recv_within(Duration::from_secs(2)).await.expect("the reset answer");
        assert!(wire.ok_text(&frame).is_none(), "{}: id {} must get an error answer", wire.name(), info.id);
        assert_eq!(info.kind, ferrymesh::protocol::FrameKind::Response);
    }
    assert!(killed.elapsed() < Duration::from_secs(1), "{}: the answers came promptly", wire.name());
    for id in 100..110 {
        cl.send(&wire.request(id, SERVICE, "after")).await;
        let (info, frame) = cl.recv().await;
        assert_eq!((info.id, wire.ok_text(&frame).as_deref()), (id, Some("after|live")), "{}", wire.name());
    }
}

/// An upstream that never answers: the route timeout answers, in the
/// protocol's words, and the connection goes on serving.
async fn a_silent_upstream_times_out(wire: &'static dyn Wire) {
    let silent = RpcUpstream::start(wire, "silent", Answer::Never).await;
    let port = free_port();
    let _proxy = Proxy::start(&rpc_config(wire, port, SERVICE, "300ms", vec![cluster("c", &[silent.addr])]), 1);
    let mut cl = RpcClient::connect(wire, addr(port)).await;
    let t0 = Instant::now();
    cl.send(&wire.request(7, SERVICE, "x")).await;
    let (info, frame) = cl.recv().await;
    let took = t0.elapsed();
    assert_eq!(info.id, 7);
    assert!(wire.ok_text(&frame).is_none(), "{}: a timeout is an error answer", wire.name());
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{}: answered after {took:?}",
        wire.name()
    );
    // No route for another service: answered at once, same connection.
    cl.send(&wire.request(8, "no.such.Service", "x")).await;
    let (info, frame) = cl.recv().await;
    assert_eq!(info.id, 8);
    assert!(wire.ok_text(&frame).is_none());
}

/// Text of `len` bytes that differs at every position and between
/// requests, so a byte out of place, dropped or doubled shows.
fn pattern(seed: usize, len: usize) -> String {
    (0..len).map(|i| char::from(b'a' + ((i * 7 + seed * 13 + i / 26) % 26) as u8)).collect()
}

/// Large frames (gathered across reads and handed on whole, not copied)
/// pipelined between small ones, on several connections at once: every
/// answer comes back whole, byte for byte, to the request that asked.
async fn large_frames_cross_whole_and_in_order(wire: &'static dyn Wire) {
    let up = RpcUpstream::start(wire, "u", Answer::Echo).await;
    let port = free_port();
    let _proxy = Proxy::start(&rpc_config(wire, port, SERVICE, "10s", vec![cluster("c", &[up.addr])]), 1);
    const SIZES: [usize; 5] = [10, 300 << 10, 20 << 10, 1 << 20, 10];
    let mut tasks = Vec::new();
    for c in 0..6 {
        tasks.push(tokio::spawn(async move {
            let mut cl = RpcClient::connect(wire, addr(port)).await;
            let mut all = Vec::new();
            for (k, size) in SIZES.iter().enumerate() {
                all.extend(wire.request(k as u64 + 1, SERVICE, &pattern(c * 10 + k, *size)));
            }
            cl.send(&all).await;
            let mut got = HashMap::new();
            for _ in SIZES {
                let (info, frame) = cl.recv_within(Duration::from_secs(10)).await.expect("an answer");
                let text = wire.ok_text(&frame).unwrap_or_else(|| panic!("{}: error answer", wire.name()));
                got.insert(info.id, text);
            }
            for (k, size) in SIZES.iter().enumerate() {
                let text = &got[&(k as u64 + 1)];
                let want = format!("{}|u", pattern(c * 10 + k, *size));
                assert!(*text == want, "{}: connection {c} request {k} ({size} B) came back changed", wire.name());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Garbage closes only the connection that sent it.
async fn garbage_closes_only_its_connection(wire: &'static dyn Wire) {
    let up = RpcUpstream::start(wire, "u", Answer::Echo).await;
    let port = free_port();
    let _proxy = Proxy::start(&rpc_config(wire, port, SERVICE, "5s", vec![cluster("c", &[up.addr])]), 1);
    let mut good = RpcClient::connect(wire, addr(port)).await;
    good.send(&wire.request(1, SERVICE, "before")).await;
    assert!(wire.ok_text(&good.recv().await.1).is_some());
    let mut bad = RpcClient::connect(wire, addr(port)).await;
    bad.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(bad.closed_within(Duration::from_secs(2)).await, "{}: garbage closes its connection", wire.name());
    good.send(&wire.request(2, SERVICE, "after")).await;
    let (info, frame) = good.recv().await;
    assert_eq!((info.id, wire.ok_text(&frame).as_deref()), (2, Some("after|u")));
    assert_eq!(up.requests.load(Ordering::SeqCst), 2, "nothing of the garbage reached the upstream");
}

macro_rules! suite {
    ($($proto:ident => $wire:expr),* $(,)?) => {$(
        mod $proto {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn colliding_ids_never_mix() {
                super::colliding_ids_never_mix($wire).await
            }

            #[tokio::test]
            async fn a_killed_upstream_fails_its_requests_in_the_protocols_words() {
                super::a_killed_upstream_fails_its_requests_in_the_protocols_words($wire).await
            }

            #[tokio::test]
            async fn a_silent_upstream_times_out() {
                super::a_silent_upstream_times_out($wire).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn large_frames_cross_whole_and_in_order() {
                super::large_frames_cross_whole_and_in_order($wire).await
            }

            #[tokio::test]
            async fn garbage_closes_only_its_connection() {
                super::garbage_closes_only_its_connection($wire).await
            }
        }
    )*};
}

suite!(bolt => &BOLT, dubbo => &DUBBO, tars => &TARS, toy => &TOY);

/// A Dubbo request whose argument nests 20,000 lists deep, on a listener
/// whose route needs an attachment (so the argument is skipped to reach
/// them): it overflowed the worker's stack and aborted the process. Now the
/// request is answered (no route: its attachments cannot be read) and the
/// proxy goes on serving.
#[tokio::test]
async fn a_dubbo_argument_nested_past_the_bound_is_answered_not_a_crash() {
    use ferrymesh::protocol::dubbo::hessian::write_string;
    let up = RpcUpstream::start(&DUBBO, "u", Answer::Echo).await;
    let port = free_port();
    let mut config = rpc_config(&DUBBO, port, SERVICE, "5s", vec![cluster("c", &[up.addr])]);
    config["servers"][0]["routers"][0]["virtual_hosts"][0]["routers"][0]["match"]["headers"][0]["name"] =
        serde_json::json!("interface");
    let mut proxy = Proxy::start(&config, 1);
    let mut body: Vec<u8> = Vec::new();
    for s in ["2.0.2", SERVICE, "1.0", "echo", "Ljava/lang/Object;"] {
        write_string(&mut body, s);
    }
    body.extend(std::iter::repeat_n(0x79, 19_999));
    body.push(b'N');
    body.push(b'H');
    for s in ["interface", SERVICE] {
        write_string(&mut body, s);
    }
    body.push(b'Z');
    // Dubbo's head: magic, request + two-way + hessian2, status, id, length.
    let mut deep = vec![0xda, 0xbb, 0x80 | 0x40 | 2, 0];
    deep.extend_from_slice(&7u64.to_be_bytes());
    deep.extend_from_slice(&(body.len() as u32).to_be_bytes());
    deep.extend(body);
    let mut c = RpcClient::connect(&DUBBO, addr(port)).await;
    c.send(&deep).await;
    let (info, frame) = c.recv().await;
    assert_eq!(info.id, 7);
    assert!(DUBBO.ok_text(&frame).is_none(), "an error answer, not the upstream's");
    assert!(proxy.child.try_wait().unwrap().is_none(), "the process lives");
    c.send(&DUBBO.request(8, SERVICE, "fine")).await;
    let (info, frame) = c.recv().await;
    assert_eq!((info.id, DUBBO.ok_text(&frame).as_deref()), (8, Some("fine|u")));
}

/// A bolt listener and a Dubbo listener on one cluster, with HTTP beside
/// them, all under load at once: each frame meets only connections of its
/// own protocol (a pool per host and protocol), and no answer is mixed up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bolt_and_dubbo_share_a_cluster_beside_http_under_load() {
    let hosts = [
        RpcUpstream::start_any(&[&BOLT, &DUBBO], "h0", Answer::Echo).await,
        RpcUpstream::start_any(&[&BOLT, &DUBBO], "h1", Answer::Echo).await,
    ];
    let web = support::http::HttpUpstream::start("web", false).await;
    let (bolt_port, dubbo_port, http_port) = (free_port(), free_port(), free_port());
    let addrs: Vec<SocketAddr> = hosts.iter().map(|h| h.addr).collect();
    let mut cfg = rpc_config(&BOLT, bolt_port, SERVICE, "5s", vec![cluster("c", &addrs), cluster("web", &[web.addr])]);
    let dubbo = rpc_config(&DUBBO, dubbo_port, SERVICE, "5s", vec![]);
    let listeners = cfg["servers"][0]["listeners"].as_array_mut().unwrap();
    listeners.push(dubbo["servers"][0]["listeners"][0].clone());
    listeners.push(serde_json::json!({"name": "http_in", "address": format!("127.0.0.1:{http_port}"),
        "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "Http1", "upstream_protocol": "Http1", "router_config_name": "web"}}]}]}));
    cfg["servers"][0]["routers"].as_array_mut().unwrap().push(serde_json::json!({"router_config_name": "web",
        "virtual_hosts": [{"name": "all", "domains": ["*"], "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "web"}}]}]}));
    let _proxy = Proxy::start(&cfg, 2);

    let mut tasks = Vec::new();
    for (wire, port) in [(&BOLT as &'static dyn Wire, bolt_port), (&DUBBO, dubbo_port)] {
        for c in 0..8 {
            tasks.push(tokio::spawn(async move {
                let mut cl = RpcClient::connect(wire, addr(port)).await;
                for round in 0..50u64 {
                    for k in 1..=4u64 {
                        cl.send(&wire.request(k, SERVICE, &format!("{}-{c}-{round}-{k}", wire.name()))).await;
                    }
                    let mut got = HashMap::new();
                    for _ in 0..4 {
                        let (info, frame) = cl.recv().await;
                        got.insert(
                            info.id,
                            wire.ok_text(&frame).unwrap_or_else(|| panic!("{}: error answer", wire.name())),
                        );
                    }
                    for k in 1..=4u64 {
                        let want = format!("{}-{c}-{round}-{k}|h", wire.name());
                        assert!(got[&k].starts_with(&want), "{} got {:?} for {want}", wire.name(), got[&k]);
                    }
                }
            }));
        }
    }
    let http = tokio::task::spawn_blocking(move || {
        for i in 0..200 {
            let (status, _) = support::admin_call(http_port, "GET", &format!("/r{i}"), "");
            assert_eq!(status, 200);
        }
    });
    for t in tasks {
        t.await.unwrap();
    }
    http.await.unwrap();
    let served: usize = hosts.iter().map(|h| h.requests.load(Ordering::SeqCst)).sum();
    assert_eq!(served, 2 * 8 * 50 * 4, "every request reached a host once, in its own protocol");
}
