//! Quiet client connections park (`network::park`): between requests they
//! hold only their socket, resume when bytes arrive, close at their idle
//! timeout, and close at once when their listener drains.

mod support;

use std::time::{Duration, Instant};

use ferrymesh::protocol::bolt::RequestBuilder;
use serde_json::{json, Value};
use support::*;

fn request(id: u32, content: &str) -> Vec<u8> {
    RequestBuilder::new(id, SERVICE, content.as_bytes()).encode()
}

/// One listener with `idle` as its connection idle timeout, an echo cluster,
/// and the admin server on `admin_port`.
fn parking_config(port: u16, admin_port: u16, up: std::net::SocketAddr, idle: &str) -> Value {
    let mut cfg = config(port, vec![route_all("echo")], vec![cluster("echo", &[up])]);
    cfg["servers"][0]["listeners"][0]["connection_idle_timeout"] = json!(idle);
    cfg["admin"] = admin(admin_port);
    cfg
}

/// The metric `name`, summed over the listener's series.
fn summed(admin_port: u16, name: &str) -> f64 {
    scrape(admin_port).iter().filter(|(k, _)| k.starts_with(name)).map(|(_, v)| v).sum()
}

fn parked(admin_port: u16) -> f64 {
    summed(admin_port, "ferrymesh_downstream_connections_parked")
}

fn resumes(admin_port: u16) -> f64 {
    summed(admin_port, "ferrymesh_downstream_connection_resumes_total")
}

/// Waits until `want` connections are parked; false if they never are.
async fn until_parked(admin_port: u16, want: f64) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let port = admin_port;
        if tokio::task::spawn_blocking(move || parked(port)).await.unwrap() == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn quiet_connections_park_and_resume_with_their_answers_intact() {
    let up = Upstream::start("u", Mode::Echo).await;
    let (port, admin_port) = (free_port(), free_port());
    let proxy = Proxy::start(&parking_config(port, admin_port, up.addr, "60s"), 1);
    let mut clients = Vec::new();
    for c in 0..20 {
        let mut cl = Client::connect(proxy.addr).await;
        cl.send(&request(1, &format!("c{c}first"))).await;
        let r = cl.recv().await;
        assert_eq!((r.status, r.content), (0, format!("c{c}first").into_bytes()));
        clients.push(cl);
    }
    assert!(until_parked(admin_port, 20.0).await, "every answered connection parks: {}", parked(admin_port));
    // Each resumes on its next bytes: a pipeline of three, answered in full.
    for (c, cl) in clients.iter_mut().enumerate() {
        let mut pipeline = Vec::new();
        for id in 2..=4 {
            pipeline.extend(request(id, &format!("c{c}i{id}")));
        }
        cl.send(&pipeline).await;
        for _ in 2..=4 {
            let r = cl.recv().await;
            assert_eq!(r.status, 0);
            assert_eq!(String::from_utf8_lossy(&r.content), format!("c{c}i{}", r.info.id));
        }
    }
    assert!(until_parked(admin_port, 20.0).await, "and parks again: {}", parked(admin_port));
    // A frame split across two writes, the pause long enough for the
    // connection to look at the first half: a half-read frame is owed, so
    // the connection does not park with it.
    let frame = request(9, "split");
    let cl = &mut clients[0];
    cl.send(&frame[..10]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    cl.send(&frame[10..]).await;
    let r = cl.recv().await;
    assert_eq!((r.info.id, r.content), (9, b"split".to_vec()));
}

/// A connection accepted before its first bytes parks and is resumed only
/// when they come (tokio calls a socket readable from its accept until a
/// read finds it empty: every such connection was resumed once, to read
/// nothing, and parked again).
#[tokio::test]
async fn connections_accepted_before_their_bytes_are_resumed_only_by_them() {
    let up = Upstream::start("u", Mode::Echo).await;
    let (port, admin_port) = (free_port(), free_port());
    let proxy = Proxy::start(&parking_config(port, admin_port, up.addr, "60s"), 1);
    // The start's probe (a connect, then a close) may have parked; its close
    // is something to read, and resumes it: count from its end.
    let probe_done = move || {
        summed(admin_port, "ferrymesh_downstream_connections_total") >= 1.0
            && summed(admin_port, "ferrymesh_downstream_connections_active") == 0.0
    };
    let until = Instant::now() + Duration::from_secs(5);
    while !tokio::task::spawn_blocking(probe_done).await.unwrap() {
        assert!(Instant::now() < until, "the start's probe connection never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let start = tokio::task::spawn_blocking(move || resumes(admin_port)).await.unwrap();
    let mut clients = Vec::new();
    for _ in 0..30 {
        clients.push(Client::connect(proxy.addr).await);
    }
    assert!(until_parked(admin_port, 30.0).await, "each parks from its accept: {}", parked(admin_port));
    let before = tokio::task::spawn_blocking(move || resumes(admin_port)).await.unwrap();
    assert_eq!(before, start, "nothing arrived, nothing resumed");
    for (c, cl) in clients.iter_mut().enumerate() {
        cl.send(&request(1, &format!("c{c}"))).await;
        let r = cl.recv().await;
        assert_eq!((r.status, r.content), (0, format!("c{c}").into_bytes()));
    }
    let after = tokio::task::spawn_blocking(move || resumes(admin_port)).await.unwrap();
    assert_eq!(after - start, 30.0, "one resume each, by its request");
}

#[tokio::test]
async fn a_connection_calling_often_waits_for_its_next_call_instead_of_parking() {
    let up = Upstream::start("u", Mode::Echo).await;
    let (port, admin_port) = (free_port(), free_port());
    let proxy = Proxy::start(&parking_config(port, admin_port, up.addr, "60s"), 1);
    let mut cl = Client::connect(proxy.addr).await;
    for id in 1..=20 {
        cl.send(&request(id, "often")).await;
        let r = cl.recv().await;
        assert_eq!((r.info.id, r.content), (u64::from(id), b"often".to_vec()));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // It parks after its first call (a new connection has not shown how
    // often it calls); its second call resumes it, and from then on it waits
    // out the grace instead of parking and resuming for every call.
    let resumed = tokio::task::spawn_blocking(move || resumes(admin_port)).await.unwrap();
    assert!(resumed <= 10.0, "a connection calling every 10 ms was resumed {resumed} times in 20 calls");
    // Once its calls stop, it parks after the grace, and answers on its next.
    assert!(until_parked(admin_port, 1.0).await, "{}", parked(admin_port));
    cl.send(&request(21, "later")).await;
    assert_eq!(cl.recv().await.content, b"later".to_vec());
}

#[tokio::test]
async fn a_parked_connection_closes_at_its_idle_timeout() {
    let up = Upstream::start("u", Mode::Echo).await;
    let (port, admin_port) = (free_port(), free_port());
    let proxy = Proxy::start(&parking_config(port, admin_port, up.addr, "1s"), 1);
    let mut answered = Client::connect(proxy.addr).await;
    answered.send(&request(1, "once")).await;
    assert_eq!(answered.recv().await.status, 0);
    // One that never sends a byte is parked from its accept on.
    let mut silent = Client::connect(proxy.addr).await;
    assert!(until_parked(admin_port, 2.0).await, "both park: {}", parked(admin_port));
    assert!(!answered.closed_within(Duration::from_millis(300)).await, "closed before its idle timeout");
    assert!(answered.closed_within(Duration::from_secs(3)).await, "a parked connection outlived its idle timeout");
    assert!(silent.closed_within(Duration::from_secs(3)).await, "a silent connection outlived its idle timeout");
    assert!(until_parked(admin_port, 0.0).await);
}

#[tokio::test]
async fn a_drain_closes_parked_and_waiting_connections_at_once() {
    let up = Upstream::start("u", Mode::Echo).await;
    let (port, admin_port) = (free_port(), free_port());
    let mut proxy = Proxy::start(&parking_config(port, admin_port, up.addr, "60s"), 1);
    let mut clients = Vec::new();
    for c in 0..5 {
        let mut cl = Client::connect(proxy.addr).await;
        cl.send(&request(1, &format!("c{c}"))).await;
        assert_eq!(cl.recv().await.status, 0);
        clients.push(cl);
    }
    assert!(until_parked(admin_port, 5.0).await, "{}", parked(admin_port));
    // One more that calls often: it is waiting for its next call, not parked.
    let mut often = Client::connect(proxy.addr).await;
    for id in 1..=3 {
        often.send(&request(id, "often")).await;
        assert_eq!(often.recv().await.status, 0);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.signal("TERM");
    for cl in &mut clients {
        assert!(cl.closed_within(Duration::from_secs(2)).await, "a parked connection was left open by the drain");
    }
    assert!(often.closed_within(Duration::from_secs(2)).await, "a waiting connection was left open by the drain");
    let code = tokio::task::spawn_blocking(move || proxy.wait_exit(Duration::from_secs(5))).await.unwrap();
    assert_eq!(code, Some(0));
}

/// Reads one HTTP/1.1 answer whose body is `body_len` bytes long.
async fn read_answer(s: &mut tokio::net::TcpStream, body_len: usize) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            if got.len() >= end + 4 + body_len {
                return String::from_utf8_lossy(&got).into_owned();
            }
        }
        let n =
            tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await.expect("answer in time").unwrap();
        assert!(n > 0, "closed before the answer: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
}

/// An HTTP listener (`downstream` from the client, HTTP/1.1 upstream) with a
/// 60 s idle timeout and the admin server, in front of an HTTP upstream:
/// the client port, the admin port, and what must live as long as the test.
async fn http_proxy(downstream: &str) -> (u16, u16, (support::http::HttpUpstream, Proxy)) {
    let up = support::http::HttpUpstream::start("up", false).await;
    let (port, admin_port) = (free_port(), free_port());
    let mut cfg = support::http::proxy_config(port, downstream, "Http1", &[up.addr]);
    cfg["servers"][0]["listeners"][0]["connection_idle_timeout"] = json!("60s");
    cfg["admin"] = admin(admin_port);
    let proxy = Proxy::start(&cfg, 1);
    (port, admin_port, (up, proxy))
}

#[tokio::test]
async fn http1_keep_alive_connections_park_between_requests() {
    use tokio::io::AsyncWriteExt;
    let (port, admin_port, _running) = http_proxy("Http1").await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(b"GET /bytes/10 HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        assert!(read_answer(&mut s, 10).await.starts_with("HTTP/1.1 200"));
        clients.push(s);
    }
    assert!(until_parked(admin_port, 5.0).await, "answered keep-alive connections park: {}", parked(admin_port));
    // Each resumes on its next request, on the same connection.
    for s in &mut clients {
        s.write_all(b"GET /bytes/20 HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let answer = read_answer(s, 20).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    assert!(until_parked(admin_port, 5.0).await, "{}", parked(admin_port));
}

#[tokio::test]
async fn a_busy_http1_connection_parks_once_its_requests_stop() {
    use tokio::io::AsyncWriteExt;
    let (port, admin_port, _running) = http_proxy("Http1").await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // Requests back to back for longer than several busy checks: the
    // connection's park check keeps finding it busy and looks again later.
    let busy_until = std::time::Instant::now() + Duration::from_millis(300);
    let mut sent = 0;
    while std::time::Instant::now() < busy_until {
        s.write_all(b"GET /bytes/10 HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        assert!(read_answer(&mut s, 10).await.starts_with("HTTP/1.1 200"));
        sent += 1;
    }
    assert!(sent > 10, "only {sent} requests in 300 ms");
    // Then it stops: it parks at its next check.
    assert!(until_parked(admin_port, 1.0).await, "a connection quiet after a busy run parks: {}", parked(admin_port));
    s.write_all(b"GET /bytes/20 HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(read_answer(&mut s, 20).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn an_http1_connection_calling_often_waits_for_its_next_request_instead_of_parking() {
    use tokio::io::AsyncWriteExt;
    let (port, admin_port, _running) = http_proxy("Http1").await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // A request every 10 ms, twice the usual 5 ms grace apart.
    for _ in 0..20 {
        s.write_all(b"GET /bytes/10 HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        assert!(read_answer(&mut s, 10).await.starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let resumed = tokio::task::spawn_blocking(move || resumes(admin_port)).await.unwrap();
    assert!(resumed <= 10.0, "a connection requesting every 10 ms was resumed {resumed} times in 20 requests");
    assert!(until_parked(admin_port, 1.0).await, "it parks once its requests stop: {}", parked(admin_port));
}

/// Reads HTTP/2 frames until stream `id` ends; its status byte (the HPACK
/// static index our encoder uses for 200 is 0x88).
async fn h2_answer(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>, id: u32) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut head_block = Vec::new();
    loop {
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]);
            let payload = buf[9..9 + len].to_vec();
            buf.drain(..9 + len);
            if stream == id && kind == 1 {
                head_block = payload;
            } else if stream == id && kind == 0 && flags & 1 != 0 {
                return head_block;
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "closed before stream {id} ended");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A prior-knowledge HTTP/2 connection to `port` whose first request
/// (stream 1, the HPACK block `headers`) was answered 200; with the bytes
/// read past that answer.
async fn h2_first_request(port: u16, headers: &[u8]) -> (tokio::net::TcpStream, Vec<u8>) {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(support::h2::frame(4, 0, 0, &[]));
    hello.extend(support::h2::frame(1, 0x5, 1, headers));
    s.write_all(&hello).await.unwrap();
    let mut buf = Vec::new();
    assert_eq!(h2_answer(&mut s, &mut buf, 1).await.first(), Some(&0x88), "200");
    (s, buf)
}

/// An HTTP/2 connection with no stream open parks like the others, keeping
/// what its next burst needs: the client's HPACK table (the second request
/// names its header only by the index the first one gave it).
#[tokio::test]
async fn h2_connections_park_between_bursts_keeping_their_hpack_table() {
    use tokio::io::AsyncWriteExt;
    let (port, admin_port, (up, _proxy)) = http_proxy("Http2").await;
    // GET / http, :authority x (indexed, 62 after the next one), and
    // x-keep: kept (literal with incremental indexing: it becomes 62).
    let mut first = vec![0x82, 0x86, 0x84, 0x41, 0x01, b'x', 0x40, 0x06];
    first.extend_from_slice(b"x-keep");
    first.push(0x04);
    first.extend_from_slice(b"kept");
    let (mut s, mut buf) = h2_first_request(port, &first).await;
    assert!(until_parked(admin_port, 1.0).await, "the quiet HTTP/2 connection parks: {}", parked(admin_port));
    // Resumed by the next burst: indexes 62 (x-keep: kept) and 63 (:authority x).
    s.write_all(&support::h2::frame(1, 0x5, 3, &[0x82, 0x86, 0x84, 0xbf, 0xbe])).await.unwrap();
    assert_eq!(h2_answer(&mut s, &mut buf, 3).await.first(), Some(&0x88), "200 after the resume");
    let seen = up.seen();
    let kept = seen.last().and_then(|r| r.headers.iter().find(|(k, _)| k == "x-keep").map(|(_, v)| v.clone()));
    assert_eq!(kept.as_deref(), Some("kept"), "the table came through the park");
    assert!(until_parked(admin_port, 1.0).await, "and parks again: {}", parked(admin_port));
}

#[tokio::test]
async fn a_drain_ends_an_http2_connection_between_its_requests() {
    use tokio::io::AsyncReadExt;
    let (port, _admin_port, (_up, proxy)) = http_proxy("Http2").await;
    // GET / http, :authority x.
    let (mut s, _) = h2_first_request(port, &[0x82, 0x86, 0x84, 0x41, 0x01, b'x']).await;
    // Answered and waiting for its next request (or parked, if slow): the
    // drain ends it either way, with GOAWAY when it is still in its task.
    proxy.signal("TERM");
    let ended = tokio::time::timeout(Duration::from_secs(2), async {
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "an HTTP/2 connection was left open by the drain");
}
