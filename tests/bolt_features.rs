//! Proxy features end to end: upstream keep-alive, stream filters, retries on
//! connect failure, overflow, weighted clusters and consistent hashing.

mod support;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ferrymesh::protocol::bolt::{status, RequestBuilder, BOLT_V1};
use ferrymesh::protocol::{Codec, FrameKind};
use serde_json::json;
use support::*;

fn request(id: u32, content: &str) -> Vec<u8> {
    RequestBuilder::new(id, SERVICE, content.as_bytes()).encode()
}

/// A request whose own timeout is `timeout_ms`.
fn timed(id: u32, timeout_ms: i32) -> Vec<u8> {
    let mut r = RequestBuilder::new(id, SERVICE, b"x");
    r.timeout_ms = timeout_ms;
    r.encode()
}

/// ferrymesh in front of a silent upstream with two requests allowed per
/// upstream connection, and a client whose first request (timed out) has
/// made that connection ready.
async fn two_slots_on_a_silent_upstream() -> (Upstream, Proxy, Client) {
    let up = Upstream::start("u", Mode::Silent).await;
    let mut c = cluster("c", &[up.addr]);
    c["max_request_per_conn"] = json!(2);
    let proxy = Proxy::start(&config(free_port(), vec![route_all("c")], vec![c]), 1);
    let mut cl = Client::connect(proxy.addr).await;
    cl.send(&timed(1, 50)).await;
    assert_eq!(cl.recv().await.status, status::TIMEOUT);
    (up, proxy, cl)
}

/// A request to the silent upstream finds a free slot (it times out rather
/// than overflow); on a loaded machine the proxy sees a close a little later,
/// so a few tries.
async fn expect_a_free_slot(proxy: &Proxy) {
    let mut cl = Client::connect(proxy.addr).await;
    let mut got = (0, 0);
    for attempt in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cl.send(&timed(7 + attempt, 100)).await;
        let r = cl.recv().await;
        got = (r.info.id, r.status);
        if r.status != status::SERVER_THREADPOOL_BUSY {
            break;
        }
    }
    assert_eq!(got.1, status::TIMEOUT, "a free slot (the upstream is silent), not an overflow: {got:?}");
}

fn keepalive(c: &mut serde_json::Value) {
    c["keepalive"] = json!({"interval": "150ms", "timeout": "100ms", "max_failures": 2});
}

#[tokio::test]
async fn idle_upstream_connections_get_heartbeats() {
    let up = Upstream::start("u", Mode::Echo).await;
    let port = free_port();
    let mut c = cluster("echo", &[up.addr]);
    keepalive(&mut c);
    let proxy = Proxy::start(&config(port, vec![route_all("echo")], vec![c]), 1);
    let mut cl = Client::connect(proxy.addr).await;
    cl.send(&request(1, "warm")).await;
    assert_eq!(cl.recv().await.status, 0);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let beats = up.seen().iter().filter(|s| s.kind == FrameKind::Heartbeat).count();
    assert!(beats >= 2, "idle connection got {beats} heartbeats");
    // Acked heartbeats keep the same connection alive.
    cl.send(&request(2, "again")).await;
    assert_eq!(cl.recv().await.status, 0);
    assert_eq!(up.conns.load(Ordering::SeqCst), 1);
    assert_eq!(up.closed.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn unanswered_heartbeats_close_the_upstream_connection() {
    let up = Upstream::start("u", Mode::Silent).await;
    let port = free_port();
    let mut c = cluster("silent", &[up.addr]);
    keepalive(&mut c);
    let proxy = Proxy::start(&config(port, vec![route_all("silent")], vec![c]), 1);
    let mut cl = Client::connect(proxy.addr).await;
    cl.send(&timed(1, 50)).await;
    assert_eq!(cl.recv().await.status, status::TIMEOUT);
    tokio::time::timeout(Duration::from_secs(3), async {
        while up.closed.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("ferrymesh closed the connection after missed heartbeat acks");
    assert!(up.seen().iter().filter(|s| s.kind == FrameKind::Heartbeat).count() >= 2);
}

#[tokio::test]
async fn filters_answer_directly_or_change_headers() {
    let up = Upstream::start("u", Mode::Echo).await;
    let port = free_port();
    let mut cfg = config(port, vec![route_all("echo")], vec![cluster("echo", &[up.addr])]);
    cfg["servers"][0]["listeners"][0]["stream_filters"] = json!([
        {"type": "header_mutation", "config": {
            "request_headers_to_add": [{"key": "x-mesh", "value": "ferrymesh"}],
            "request_headers_to_remove": ["secret"],
            "response_headers_to_add": [{"key": "x-served-by", "value": "ferrymesh"}]
        }},
        {"type": "no_such_filter", "config": {}}
    ]);
    let proxy = Proxy::start(&cfg, 1);
    let mut cl = Client::connect(proxy.addr).await;
    cl.send(&RequestBuilder::new(5, SERVICE, b"payload").header("secret", "s3cr3t").encode()).await;
    let r = cl.recv().await;
    assert_eq!((r.info.id, r.status, r.content.as_slice()), (5, 0, &b"payload"[..]));
    let hdrs = ferrymesh::protocol::bolt::BOLT_V1.header(&r.frame, "x-served-by").map(<[u8]>::to_vec);
    assert_eq!(hdrs.as_deref(), Some(&b"ferrymesh"[..]), "response header added");
    let seen = &up.seen()[0];
    let get = |k: &str| seen.headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("x-mesh"), Some("ferrymesh"));
    assert_eq!(get("secret"), None);
    assert_eq!(get("service"), Some(SERVICE));
    assert_eq!(seen.content, b"payload");
    drop(proxy);

    let port = free_port();
    let mut cfg = config(port, vec![route_all("echo")], vec![cluster("echo", &[up.addr])]);
    cfg["servers"][0]["listeners"][0]["stream_filters"] = json!([{"type": "ip_access", "config": {"default_action": "allow", "ips": [{"action": "deny", "addrs": ["127.0.0.0/8"]}]}}]);
    let proxy = Proxy::start(&cfg, 1);
    let mut cl = Client::connect(proxy.addr).await;
    cl.send(&request(6, "denied")).await;
    let r = cl.recv().await;
    assert_eq!((r.info.id, r.status), (6, status::SERVER_EXCEPTION), "ip_access answers MOSN's 403 (bolt 2)");
    assert_eq!(up.requests_seen(), 1, "the denied request never left ferrymesh");
}

#[tokio::test]
async fn connect_failures_are_retried_on_another_host() {
    let live = Upstream::start("live", Mode::Echo).await;
    let dead_host = DeadHost::new();
    let dead = dead_host.addr();
    let port = free_port();
    let proxy = Proxy::start(&config(port, vec![route_all("c")], vec![cluster("c", &[dead, live.addr])]), 1);
    let mut cl = Client::connect(proxy.addr).await;
    for id in 1..=10 {
        cl.send(&request(id, "r")).await;
        let r = cl.recv().await;
        assert_eq!((r.status, r.server.as_deref()), (0, Some("live")), "request {id}");
    }
}

#[tokio::test]
async fn requests_beyond_max_request_per_conn_overflow() {
    // The limit applies to a ready connection.
    let (_up, _proxy, mut cl) = two_slots_on_a_silent_upstream().await;
    for id in 2..=4 {
        cl.send(&timed(id, 400)).await;
    }
    let first = cl.recv().await;
    assert_eq!(
        (first.info.id, first.status),
        (4, status::SERVER_THREADPOOL_BUSY),
        "third concurrent request overflows"
    );
    for _ in 0..2 {
        assert_eq!(cl.recv().await.status, status::TIMEOUT);
    }
}

/// `max_request_per_conn` holds for requests that waited for the connection
/// to be dialled too: they were all sent once it was up.
#[tokio::test]
async fn max_request_per_conn_holds_while_the_connection_dials() {
    let up = Upstream::start("u", Mode::Delay(Duration::from_millis(300))).await;
    let mut c = cluster("c", &[up.addr]);
    c["max_request_per_conn"] = json!(5);
    let proxy = Proxy::start(&config(free_port(), vec![route_all("c")], vec![c]), 1);
    let mut cl = Client::connect(proxy.addr).await;
    // Sent at once, on a cold pool: all wait for the same dial.
    let burst: Vec<u8> = (1..=20).flat_map(|id| request(id, "x")).collect();
    cl.send(&burst).await;
    let mut statuses = HashMap::new();
    for _ in 0..20 {
        *statuses.entry(cl.recv().await.status).or_insert(0) += 1;
    }
    assert_eq!(statuses.get(&status::SUCCESS), Some(&5), "{statuses:?}");
    assert_eq!(statuses.get(&status::SERVER_THREADPOOL_BUSY), Some(&15), "{statuses:?}");
    assert_eq!(up.requests_seen(), 5);
}

/// A client that sends and does not read its answers is read no more once
/// they pile up (1 MiB unwritten), rather than have the worker hold every
/// answer it asked for (8,000 answers of 64 KiB held 519 MB). The kernel's
/// socket buffers take up to 36 MiB here (`tcp_rmem` 32 MiB, `tcp_wmem` 4
/// MiB), so the client asks for 125 MiB: held by ferrymesh, that was 90 MiB
/// more RSS. Nothing is lost: once it reads, every answer comes.
#[tokio::test]
async fn a_client_that_does_not_read_is_read_no_more() {
    let up = Upstream::start("u", Mode::Echo).await;
    let proxy = Proxy::start(&config(free_port(), vec![route_all("c")], vec![cluster("c", &[up.addr])]), 1);
    let rss_kb = || {
        std::fs::read_to_string(format!("/proc/{}/status", proxy.pid()))
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = rss_kb();
    let cl = Client::connect(proxy.addr).await;
    let (mut rd, mut wr) = cl.sock.into_split();
    let body = "b".repeat(16 * 1024);
    const N: u32 = 8000;
    let writer = tokio::spawn(async move {
        for id in 1..=N {
            use tokio::io::AsyncWriteExt;
            wr.write_all(&request(id, &body)).await.expect("write");
        }
        wr
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let grown = rss_kb().saturating_sub(before);
    assert!(grown < 32 * 1024, "ferrymesh grew by {grown} KiB for a client that reads nothing");
    assert!(up.requests_seen() < N as usize, "not every request was read");
    // Now it reads: every answer, once.
    let mut buf = bytes::BytesMut::new();
    let mut ids = std::collections::HashSet::new();
    while ids.len() < N as usize {
        use tokio::io::AsyncReadExt;
        while let Some(info) = BOLT_V1.decode(&buf, 64 << 20).unwrap() {
            let frame = buf.split_to(info.len);
            assert_eq!(BOLT_V1.response_status(&frame), status::SUCCESS);
            assert!(ids.insert(info.id), "answer {} twice", info.id);
        }
        if ids.len() == N as usize {
            break;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), rd.read_buf(&mut buf)).await.expect("answers").unwrap();
        assert!(n > 0, "closed after {} answers", ids.len());
    }
    drop(writer.await.unwrap());
    assert_eq!(up.requests_seen(), N as usize);
}

/// A client that stops taking its answers is closed once 15 s pass with
/// none of them written (MOSN's write deadline), rather than held with its
/// answers until its idle timeout: the requests it is still writing fail.
#[tokio::test]
async fn a_client_that_takes_no_answers_is_closed_after_the_write_timeout() {
    let up = Upstream::start("u", Mode::Echo).await;
    let proxy = Proxy::start(&config(free_port(), vec![route_all("c")], vec![cluster("c", &[up.addr])]), 1);
    let cl = Client::connect(proxy.addr).await;
    let (_rd, mut wr) = cl.sock.into_split();
    let body = "b".repeat(16 * 1024);
    let start = std::time::Instant::now();
    let writer = tokio::spawn(async move {
        // More than ferrymesh holds unwritten plus both sides' socket
        // buffers: the writes block, until the connection is closed.
        for id in 1..=20_000 {
            use tokio::io::AsyncWriteExt;
            if let Err(e) = wr.write_all(&request(id, &body)).await {
                return Some((id, e));
            }
        }
        None
    });
    let ended =
        tokio::time::timeout(Duration::from_secs(40), writer).await.expect("the connection was closed").unwrap();
    let (id, e) = ended.expect("the writes ended with an error");
    let after = start.elapsed();
    assert!(after >= Duration::from_secs(15), "closed after {after:?} (request {id}: {e})");
    assert!(up.requests_seen() < 20_000, "it was read no more once its answers piled up");
}

/// A client that leaves with requests in flight frees their upstream slots:
/// they held `max_request_per_conn` until the upstream answered or their
/// timeout (chosen by the client, up to 24 days) ran out.
#[tokio::test]
async fn a_departed_clients_requests_free_their_upstream_slots() {
    // Both slots filled for a long time, then the client leaves.
    let (_up, proxy, mut gone) = two_slots_on_a_silent_upstream().await;
    for id in 2..=3 {
        gone.send(&timed(id, i32::MAX)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(gone);
    expect_a_free_slot(&proxy).await;
}

/// An upstream that accepts and never reads takes requests only until 32 MiB
/// wait unwritten on its connection; past that they fail at once with the
/// overflow answer, rather than pile up until heartbeats give up on it.
#[tokio::test]
async fn an_upstream_that_does_not_read_takes_no_more_past_the_bound() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let proxy = Proxy::start(&config(free_port(), vec![route_all("c")], vec![cluster("c", &[up])]), 1);
    let mut cl = Client::connect(proxy.addr).await;
    let body = "b".repeat(1 << 20);
    const N: u32 = 48;
    // ferrymesh reads on (what it owes the client is small): the writes end.
    for id in 1..=N {
        let mut r = RequestBuilder::new(id, SERVICE, body.as_bytes());
        r.timeout_ms = 3000;
        cl.send(&r.encode()).await;
    }
    let mut statuses = HashMap::new();
    for _ in 0..N {
        let r = cl.recv_within(Duration::from_secs(10)).await.expect("every request answered");
        *statuses.entry(r.status).or_insert(0) += 1;
    }
    let busy = statuses.get(&status::SERVER_THREADPOOL_BUSY).copied().unwrap_or(0);
    assert!(busy >= 4, "requests past 32 MiB unwritten overflow: {statuses:?}");
    assert_eq!(busy + statuses.get(&status::TIMEOUT).copied().unwrap_or(0), N as usize, "{statuses:?}");
    holder.abort();
}

/// A client with more requests in flight than the cap on unread answers
/// (1,024), none answered yet, is still read: its close is seen at once, and
/// its requests give their upstream slots back.
#[tokio::test]
async fn a_client_with_many_requests_owed_is_heard_when_it_leaves() {
    let up = Upstream::start("u", Mode::Silent).await;
    let mut c = cluster("c", &[up.addr]);
    c["max_request_per_conn"] = json!(1100);
    let proxy = Proxy::start(&config(free_port(), vec![route_all("c")], vec![c]), 1);
    let mut gone = Client::connect(proxy.addr).await;
    let burst: Vec<u8> = (1..=1100).flat_map(|id| timed(id, i32::MAX)).collect();
    gone.send(&burst).await;
    for _ in 0..50 {
        if up.requests_seen() == 1100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(up.requests_seen(), 1100, "all forwarded");
    drop(gone);
    expect_a_free_slot(&proxy).await;
}

/// An upstream's GOAWAY drains its connection: the answer in flight still
/// comes back on it, the next request goes on a new connection, and the old
/// one is closed.
#[tokio::test]
async fn an_upstream_goaway_moves_requests_to_a_new_connection() {
    let up = Upstream::start("u", Mode::Echo).await;
    let port = free_port();
    let proxy = Proxy::start(&config(port, vec![route_all("c")], vec![cluster("c", &[up.addr])]), 1);
    let mut cl = Client::connect(proxy.addr).await;
    cl.send(&RequestBuilder::new(1, SERVICE, b"goaway").encode()).await;
    let r = cl.recv().await;
    assert_eq!((r.info.id, r.status, r.content.as_slice()), (1, 0, &b"goaway"[..]));
    cl.send(&request(2, "after")).await;
    let r = cl.recv().await;
    assert_eq!((r.info.id, r.status), (2, 0));
    let conns: Vec<usize> = up.seen().iter().filter(|s| s.kind.is_request()).map(|s| s.conn).collect();
    assert_eq!(conns.len(), 2);
    assert_ne!(conns[0], conns[1], "the request after the GOAWAY went on a new connection");
    assert_eq!(up.conns.load(Ordering::SeqCst), 2);
    // The drained connection is closed by ferrymesh.
    let t0 = std::time::Instant::now();
    while up.closed.load(Ordering::SeqCst) < 1 && t0.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(up.closed.load(Ordering::SeqCst), 1, "the old connection closed once drained");
}

#[tokio::test]
async fn weighted_clusters_split_traffic() {
    let a = Upstream::start("a", Mode::Echo).await;
    let b = Upstream::start("b", Mode::Echo).await;
    let port = free_port();
    let route = json!({"match": {"headers": [{"name": "service", "value": ".*"}]}, "route": {"weighted_clusters": [
        {"cluster": {"name": "a", "weight": 80}}, {"cluster": {"name": "b", "weight": 20}}
    ]}});
    let proxy = Proxy::start(&config(port, vec![route], vec![cluster("a", &[a.addr]), cluster("b", &[b.addr])]), 1);
    let mut cl = Client::connect(proxy.addr).await;
    let mut count: HashMap<String, u32> = HashMap::new();
    for id in 1..=500 {
        cl.send(&request(id, "w")).await;
        *count.entry(cl.recv().await.server.unwrap()).or_default() += 1;
    }
    let share_a = f64::from(count["a"]) / 500.0;
    assert!((0.7..0.9).contains(&share_a), "cluster a got {share_a} of the traffic, want about 0.8");
}

#[tokio::test]
async fn maglev_keeps_a_key_on_one_host() {
    let ups = [
        Upstream::start("h0", Mode::Echo).await,
        Upstream::start("h1", Mode::Echo).await,
        Upstream::start("h2", Mode::Echo).await,
    ];
    let port = free_port();
    let mut c = cluster("c", &ups.iter().map(|u| u.addr).collect::<Vec<_>>());
    c["lb_type"] = json!("LB_MAGLEV");
    let route = json!({"match": {"headers": [{"name": "service", "value": ".*"}]},
        "route": {"cluster_name": "c", "hash_policy": [{"header": {"key": "uid"}}]}});
    let proxy = Proxy::start(&config(port, vec![route], vec![c]), 2);
    let mut owners: HashMap<String, String> = HashMap::new();
    let mut hosts_used = std::collections::HashSet::new();
    for round in 0..3 {
        // A new connection each round: the key, not the connection, decides.
        let mut cl = Client::connect(proxy.addr).await;
        for u in 0..30 {
            let uid = format!("user-{u}");
            cl.send(&RequestBuilder::new(u, SERVICE, b"k").header("uid", &uid).encode()).await;
            let server = cl.recv().await.server.unwrap();
            hosts_used.insert(server.clone());
            let owner = owners.entry(uid.clone()).or_insert(server.clone());
            assert_eq!(*owner, server, "{uid} moved hosts in round {round}");
        }
    }
    assert_eq!(hosts_used.len(), 3, "keys spread over all hosts");
}
