//! The HTTP/1.1 pass-through (`proxy::http1`), over real sockets, against a
//! scripted upstream that answers with exact bytes: every response framing
//! passes through unchanged on one kept-alive connection, pipelined requests
//! are answered in order, a pooled connection the upstream closed is redialled
//! for idempotent requests only, a broken response becomes 502, a request
//! the pass-through leaves alone moves the connection to hyper mid-stream,
//! and a burst of 300 answers at once keeps all 300 upstream connections.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::http::*;
use support::{free_port, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Barrier;

fn config(port: u16, upstream: SocketAddr, passthrough: bool) -> Value {
    config_for(port, upstream, passthrough, "Http1")
}

fn config_for(port: u16, upstream: SocketAddr, passthrough: bool, downstream: &str) -> Value {
    json!({
        "servers": [{
            "default_log_level": "WARN",
            "routers": [{"router_config_name": "web", "virtual_hosts": [{"name": "all", "domains": ["*"], "routers": [
                {"match": {"prefix": "/v1/"}, "route": {"cluster_name": "up", "prefix_rewrite": "/",
                    "request_headers_to_add": [{"header": {"key": "x-added", "value": "yes"}}],
                    "response_headers_to_add": [{"header": {"key": "x-resp-added", "value": "yes"}}],
                    "response_headers_to_remove": ["x-internal"]}},
                {"match": {"path": "/admin"}, "direct_response": {"status": 403, "body": "no"}},
                {"match": {"prefix": "/t300/"}, "route": {"cluster_name": "up", "prefix_rewrite": "/", "timeout": "300ms"}},
                {"match": {"prefix": "/t1200/"}, "route": {"cluster_name": "up", "prefix_rewrite": "/", "timeout": "1200ms"}},
                {"match": {"prefix": "/framing/"}, "route": {"cluster_name": "up",
                    "request_headers_to_remove": ["content-length"]}},
                {"match": {"prefix": "/"}, "route": {"cluster_name": "up"}}
            ]}]}],
            "listeners": [{
                "name": "http", "address": format!("127.0.0.1:{port}"), "bind_port": true,
                "filter_chains": [{"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": downstream, "upstream_protocol": "Http1", "router_config_name": "web",
                    "http1_passthrough": passthrough, "header_read_timeout": "500ms"
                }}]}]
            }]
        }],
        "cluster_manager": {"clusters": [{"name": "up", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
            "connect_timeout": "500ms", "hosts": [{"address": upstream.to_string()}]}]}
    })
}

/// An upstream that answers each request with fixed bytes chosen by its path,
/// or by default 200 with the request head it received as the body.
struct Scripted {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a scripted connection behaves after its first answer.
#[derive(Clone, Copy, PartialEq)]
enum After {
    KeepServing,
    /// Reads the next request and closes without answering it.
    DropNext,
    /// Answers once, closes its sending side, then notes (as a head
    /// `<closed by proxy>`) when ferrymesh closes the connection too.
    HalfCloseAfterAnswer,
}

impl Scripted {
    async fn start(after: After) -> Scripted {
        Scripted::start_gated(after, None).await
    }

    /// As [`Scripted::start`]; a request for `/gather` is answered only once
    /// `gate` has gathered all its parties, so that many answers go back at once.
    async fn start_gated(after: After, gate: Option<Arc<Barrier>>) -> Scripted {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (a, h) = (accepted.clone(), heads.clone());
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = l.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_scripted(sock, h.clone(), after, gate.clone()));
            }
        });
        Scripted { addr, accepted, heads, task }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// A scripted upstream behaving as `after`, and ferrymesh in front of it
/// with the pass-through on or off.
async fn scripted(after: After, passthrough: bool) -> (Scripted, Proxy) {
    let up = Scripted::start(after).await;
    let proxy = Proxy::start(&config(free_port(), up.addr, passthrough), 1);
    (up, proxy)
}

async fn serve_scripted(mut sock: TcpStream, heads: Arc<Mutex<Vec<String>>>, after: After, gate: Option<Arc<Barrier>>) {
    let mut buf = Vec::new();
    let mut answered = 0;
    loop {
        // One request: its head, then a Content-Length body.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let length = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + length);
        heads.lock().unwrap().push(head.clone());
        if answered > 0 && after == After::DropNext {
            return;
        }
        answered += 1;
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        if let (Some(gate), "/gather") = (&gate, path.as_str()) {
            gate.wait().await;
        }
        if path == "/never" {
            // Holds the request unanswered until ferrymesh gives up on it.
            let mut rest = [0u8; 64];
            while matches!(sock.read(&mut rest).await, Ok(n) if n > 0) {}
            return;
        }
        if path == "/slow-answer" {
            // The body's second half comes a byte a second, over 5 s.
            if sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello").await.is_err() {
                return;
            }
            for b in b"world" {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if sock.write_all(&[*b]).await.is_err() {
                    return;
                }
            }
            continue;
        }
        let (reply, then_close): (Vec<u8>, bool) = match path.as_str() {
            "/chunked" => (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Internal: 1\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nx-trailer: t\r\n\r\n"
                    .to_vec(),
                false,
            ),
            "/interim" => (
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
                false,
            ),
            "/no-content" => (b"HTTP/1.1 204 No Content\r\nX-Internal: 1\r\n\r\n".to_vec(), false),
            "/head" => (b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n".to_vec(), false),
            "/conn-named" => (
                b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok"
                    .to_vec(),
                false,
            ),
            "/conn-named-length" => {
                (b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 2\r\n\r\nok".to_vec(), false)
            }
            "/conn-named-chunked" => (
                b"HTTP/1.1 200 OK\r\nConnection: transfer-encoding, x-secret\r\nX-Secret: 1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
                    .to_vec(),
                false,
            ),
            "/garbage" => (b"HTTP/1.1 2x0 Nope\r\n\r\n".to_vec(), true),
            "/bad-chunk" => (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".to_vec(), true),
            "/until-close" => (b"HTTP/1.1 200 OK\r\n\r\nuntil the end".to_vec(), true),
            // Framed twice: the coding decides, the length is stale.
            "/coded-and-length" => (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL"
                    .to_vec(),
                true,
            ),
            "/no-content-framed" => {
                (b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(), false)
            }
            "/big" => {
                let mut r = b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n".to_vec();
                r.extend(std::iter::repeat_n(b'b', 300_000));
                (r, false)
            }
            _ => {
                let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", head.len()).into_bytes();
                r.extend_from_slice(head.as_bytes());
                (r, false)
            }
        };
        if sock.write_all(&reply).await.is_err() || then_close {
            return;
        }
        if after == After::HalfCloseAfterAnswer {
            let _ = sock.shutdown().await;
            let mut rest = [0u8; 64];
            while matches!(sock.read(&mut rest).await, Ok(n) if n > 0) {}
            heads.lock().unwrap().push("<closed by proxy>".into());
            return;
        }
    }
}

/// A client connection that reads whole responses (Content-Length, chunked,
/// or to the close).
struct Conn {
    sock: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        Conn { sock: TcpStream::connect(addr).await.unwrap(), buf: Vec::new() }
    }

    async fn send(&mut self, raw: &[u8]) {
        self.sock.write_all(raw).await.unwrap();
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(Duration::from_secs(5), self.sock.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    }

    /// The next response: (head, body bytes exactly as they came).
    async fn response(&mut self, head_request: bool) -> (String, Vec<u8>) {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(self.fill().await, "no response head: {:?}", String::from_utf8_lossy(&self.buf));
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end);
        let lower = head.to_ascii_lowercase();
        let status: u16 = head[9..12].parse().unwrap();
        let body_len = if head_request || status == 204 || status == 304 {
            Some(0)
        } else if lower.contains("transfer-encoding: chunked") {
            loop {
                if let Some(i) = self.buf.windows(5).position(|w| w == b"\r\n\r\n\r" || w.starts_with(b"0\r\n\r\n")) {
                    // Good enough for the bodies here: the last chunk plus an optional trailer.
                    let tail = &self.buf[i..];
                    if let Some(j) = tail.windows(4).position(|w| w == b"\r\n\r\n") {
                        break Some(i + j + 4);
                    }
                }
                if !self.fill().await {
                    break Some(self.buf.len());
                }
            }
        } else {
            lower.lines().find_map(|l| l.strip_prefix("content-length:")).map(|v| v.trim().parse().unwrap())
        };
        let n = match body_len {
            Some(n) => {
                while self.buf.len() < n {
                    assert!(self.fill().await, "body cut short");
                }
                n
            }
            None => {
                while self.fill().await {}
                self.buf.len()
            }
        };
        let body = self.buf.drain(..n).collect();
        (head, body)
    }

    async fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(tokio::time::timeout(Duration::from_secs(2), self.sock.read(&mut b)).await, Ok(Ok(0)) | Ok(Err(_)))
    }
}

#[tokio::test]
async fn every_framing_passes_through_on_one_kept_alive_connection() {
    let (up, proxy) = scripted(After::KeepServing, true).await;
    let mut c = Conn::open(proxy.addr).await;

    // Proxy headers, hop-by-hop removal, rewrites; client header case kept.
    c.send(
        b"GET /v1/echo?q=1 HTTP/1.1\r\nHost: example.com:8080\r\nX-Custom: 1\r\nConnection: keep-alive\r\n\
Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: gzip\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n",
    )
    .await;
    let (head, body) = c.response(false).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.to_ascii_lowercase().contains("x-resp-added: yes"), "{head}");
    let seen = String::from_utf8(body).unwrap();
    let lower = seen.to_ascii_lowercase();
    assert!(seen.starts_with("GET /echo?q=1 HTTP/1.1\r\n"), "prefix rewritten: {seen}");
    assert!(seen.contains("Host: example.com:8080\r\n") && seen.contains("X-Custom: 1\r\n"), "{seen}");
    assert!(lower.contains("x-forwarded-for: 10.0.0.1, 127.0.0.1\r\n"), "{seen}");
    assert!(lower.contains("x-forwarded-proto: http\r\n") && lower.contains("x-request-id: "), "{seen}");
    assert!(lower.contains("x-added: yes\r\n"), "{seen}");
    for gone in ["connection:", "keep-alive:", "proxy-connection:", "te:"] {
        assert!(!lower.contains(gone), "{gone} forwarded: {seen}");
    }

    // Chunked: the body (extensions, trailer) arrives byte for byte; route removes a header.
    c.send(b"GET /v1/chunked HTTP/1.1\r\nHost: e\r\nTE: trailers\r\n\r\n").await;
    let (head, body) = c.response(false).await;
    assert!(head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("x-internal"), "{head}");
    assert_eq!(body, b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nx-trailer: t\r\n\r\n");
    assert!(up.heads().last().unwrap().contains("TE: trailers\r\n"), "te: trailers is end to end");

    // A 103 is skipped; the final answer follows.
    c.send(b"GET /interim HTTP/1.1\r\nHost: e\r\n\r\n").await;
    let (head, body) = c.response(false).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"ok");

    // No body: 204, and HEAD with a Content-Length.
    c.send(b"GET /no-content HTTP/1.1\r\nHost: e\r\n\r\n").await;
    assert!(c.response(false).await.0.starts_with("HTTP/1.1 204"));
    c.send(b"HEAD /head HTTP/1.1\r\nHost: e\r\n\r\n").await;
    let (head, body) = c.response(true).await;
    assert!(head.contains("Content-Length: 1234"), "{head}");
    assert!(body.is_empty());

    // Headers the upstream's Connection names are dropped with it.
    c.send(b"GET /conn-named HTTP/1.1\r\nHost: e\r\n\r\n").await;
    let (head, body) = c.response(false).await;
    let lower = head.to_ascii_lowercase();
    assert!(!lower.contains("x-secret") && !lower.contains("keep-alive"), "{head}");
    assert_eq!(body, b"ok");
    // ...but never the framing ones: the body still comes framed, and the
    // connection goes on.
    c.send(b"GET /conn-named-length HTTP/1.1\r\nHost: e\r\n\r\n").await;
    let (head, body) = c.response(false).await;
    assert!(head.contains("Content-Length: 2\r\n"), "{head}");
    assert_eq!(body, b"ok");
    c.send(b"GET /conn-named-chunked HTTP/1.1\r\nHost: e\r\n\r\n").await;
    let (head, body) = c.response(false).await;
    assert!(head.contains("Transfer-Encoding: chunked\r\n") && !head.contains("X-Secret"), "{head}");
    assert_eq!(body, b"2\r\nok\r\n0\r\n\r\n");

    // A POST body goes through.
    c.send(b"POST /echo HTTP/1.1\r\nHost: e\r\nContent-Length: 5\r\n\r\nhello").await;
    let (head, _) = c.response(false).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    assert_eq!(up.accepted.load(Ordering::SeqCst), 1, "one upstream connection carried all of them");

    // A body delimited by the upstream's close: passed on, then the client's connection closes too.
    c.send(b"GET /until-close HTTP/1.1\r\nHost: e\r\n\r\n").await;
    let (head, body) = c.response(false).await;
    assert!(head.to_ascii_lowercase().contains("connection: close"), "{head}");
    assert_eq!(body, b"until the end");
    assert!(c.closed().await);
}

#[tokio::test]
async fn an_answer_framed_twice_goes_on_without_its_stale_length_on_both_paths() {
    for passthrough in [true, false] {
        let (_up, proxy) = scripted(After::KeepServing, passthrough).await;
        // RFC 9112 §6.3: the coding frames the body (to the close), and a
        // next hop reading the stale length would take the rest for another
        // response.
        let (out, closed) =
            raw_exchange(proxy.addr, b"GET /coded-and-length HTTP/1.1\r\nHost: e\r\n\r\n", Duration::from_secs(2))
                .await;
        let head = out.split("\r\n\r\n").next().unwrap_or("").to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{out}");
        assert!(!head.contains("content-length"), "passthrough {passthrough}: {out}");
        // The pass-through relays the body to the close; hyper's path chunks it.
        assert!(out.contains("helloHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL"), "the body whole: {out}");
        assert!(closed || !passthrough, "{out}");
        // A 204 frames nothing: neither field goes on, and the connection does.
        let mut c = Conn::open(proxy.addr).await;
        c.send(b"GET /no-content-framed HTTP/1.1\r\nHost: e\r\n\r\n").await;
        let (head, _) = c.response(false).await;
        let lower = head.to_ascii_lowercase();
        assert!(head.starts_with("HTTP/1.1 204"), "{head}");
        assert!(!lower.contains("content-length") && !lower.contains("transfer-encoding"), "{passthrough}: {head}");
        c.send(b"GET /after HTTP/1.1\r\nHost: e\r\n\r\n").await;
        assert!(c.response(false).await.0.starts_with("HTTP/1.1 200"));
    }
}

#[tokio::test]
async fn an_h2c_upgrade_is_never_forwarded() {
    let (_up, proxy) = scripted(After::KeepServing, true).await;
    // An upstream that took it would answer 101 and carry HTTP/2 requests no
    // route sees: the request goes on as a plain one.
    let mut c = Conn::open(proxy.addr).await;
    c.send(b"GET /public HTTP/1.1\r\nHost: e\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n").await;
    let (head, body) = c.response(false).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let seen = String::from_utf8(body).unwrap().to_ascii_lowercase();
    assert!(seen.starts_with("get /public http/1.1\r\n"), "{seen}");
    for gone in ["upgrade", "http2-settings", "connection:"] {
        assert!(!seen.contains(gone), "{gone} forwarded: {seen}");
    }
    // A WebSocket named beside it still asks for its upgrade.
    c.send(b"GET /ws HTTP/1.1\r\nHost: e\r\nConnection: Upgrade\r\nUpgrade: h2c, websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await;
    let (head, body) = c.response(false).await;
    assert!(head.starts_with("HTTP/1.1 200"), "the scripted upstream does not switch: {head}");
    let seen = String::from_utf8(body).unwrap().to_ascii_lowercase();
    assert!(seen.contains("upgrade: websocket\r\n") && !seen.contains("h2c"), "{seen}");
}

#[tokio::test]
async fn a_host_that_names_no_host_is_refused_on_both_paths() {
    for passthrough in [true, false] {
        let (up, proxy) = scripted(After::KeepServing, passthrough).await;
        for host in ["evil.com/.e", "evil.com#.e", "evil.com .e", "evil.com, e", "u@e"] {
            let req = format!("GET /x HTTP/1.1\r\nHost: {host}\r\n\r\n");
            let (out, _) = raw_exchange(proxy.addr, req.as_bytes(), Duration::from_secs(2)).await;
            assert_eq!(first_status(&out), Some(400), "{host}: {out}");
            assert!(out.contains("invalid Host"), "{out}");
        }
        assert!(up.heads().is_empty(), "nothing reached the upstream: {:?}", up.heads());
        let (out, _) =
            raw_exchange(proxy.addr, b"GET /x HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", Duration::from_secs(2)).await;
        assert_eq!(first_status(&out), Some(200), "{out}");
    }
}

#[tokio::test]
async fn any_method_or_a_leading_empty_line_opens_an_auto_connection() {
    let up = Scripted::start(After::KeepServing).await;
    let port = free_port();
    let proxy = Proxy::start(&config_for(port, up.addr, true, "Auto"), 1);
    for (first, line) in [
        (&b"PROPFIND /dav/ HTTP/1.1\r\nHost: e\r\nDepth: 1\r\n\r\n"[..], "PROPFIND /dav/ HTTP/1.1"),
        (b"PURGE /cached HTTP/1.1\r\nHost: e\r\n\r\n", "PURGE /cached HTTP/1.1"),
        (b"\r\nGET /after-an-empty-line HTTP/1.1\r\nHost: e\r\n\r\n", "GET /after-an-empty-line HTTP/1.1"),
    ] {
        let mut c = Conn::open(proxy.addr).await;
        c.send(first).await;
        let (head, body) = c.response(false).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{line}: {head}");
        assert!(String::from_utf8_lossy(&body).starts_with(line), "{line}: {}", String::from_utf8_lossy(&body));
    }
}

#[tokio::test]
async fn a_request_body_that_breaks_mid_stream_is_the_clients_fault() {
    let (up, proxy) = scripted(After::KeepServing, true).await;
    let mut c = Conn::open(proxy.addr).await;
    // The first chunk is good and goes on; the second is not a chunk.
    c.send(b"POST /never HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n").await;
    for _ in 0..100 {
        if !up.heads().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!up.heads().is_empty(), "the request reached the upstream");
    c.send(b"ZZ\r\nworld\r\n0\r\n\r\n").await;
    let (head, body) = c.response(false).await;
    assert!(head.starts_with("HTTP/1.1 400"), "not the upstream's 502: {head}");
    assert!(head.to_ascii_lowercase().contains("connection: close"), "{head}");
    assert_eq!(body, b"bad request: malformed body\n");
    assert!(c.closed().await);
}

#[tokio::test]
async fn clients_are_told_when_a_connection_will_not_go_on() {
    let (_up, proxy) = scripted(After::KeepServing, true).await;
    // An HTTP/1.0 client cannot read chunks: the body ends with the close,
    // and the head says so rather than keep-alive.
    let mut c = Conn::open(proxy.addr).await;
    c.send(b"GET /chunked HTTP/1.0\r\nHost: e\r\nConnection: keep-alive\r\n\r\n").await;
    let (head, body) = c.response(false).await;
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("connection: close") && !lower.contains("keep-alive"), "{head}");
    assert_eq!(body, b"hello world");
    // A direct response to a request whose body is left unread: the
    // connection closes after it, and the head says so.
    let mut c = Conn::open(proxy.addr).await;
    c.send(b"POST /admin HTTP/1.1\r\nHost: e\r\nContent-Length: 100000\r\n\r\nabc").await;
    let (head, body) = c.response(false).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(head.to_ascii_lowercase().contains("connection: close"), "{head}");
    assert_eq!(body, b"no");
}

#[tokio::test]
async fn a_failed_connect_tells_the_client_nothing_of_the_upstream() {
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let port = free_port();
    let proxy = Proxy::start(&config(port, nobody, true), 1);
    let (out, _) = raw_exchange(proxy.addr, b"GET /x HTTP/1.1\r\nHost: e\r\n\r\n", Duration::from_secs(3)).await;
    assert_eq!(first_status(&out), Some(502), "{out}");
    assert!(out.ends_with("\r\n\r\nconnect failed\n"), "{out}");
    assert!(!out.contains(&nobody.port().to_string()), "{out}");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (_up, proxy) = scripted(After::KeepServing, true).await;
    let mut c = Conn::open(proxy.addr).await;
    c.send(b"GET /p1 HTTP/1.1\r\nHost: e\r\n\r\nPOST /p2 HTTP/1.1\r\nHost: e\r\nContent-Length: 3\r\n\r\nabcGET /p3 HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n").await;
    for p in ["GET /p1 ", "POST /p2 ", "GET /p3 "] {
        let (_, body) = c.response(false).await;
        assert!(String::from_utf8_lossy(&body).starts_with(p), "{p}: {}", String::from_utf8_lossy(&body));
    }
    assert!(c.closed().await, "Connection: close honoured");
}

#[tokio::test]
async fn a_closed_pooled_connection_is_redialled_for_idempotent_requests_only() {
    // Every upstream connection answers once, then reads the next request and closes.
    let (up, proxy) = scripted(After::DropNext, true).await;
    let mut c = Conn::open(proxy.addr).await;
    for path in ["/a", "/b", "/c"] {
        c.send(format!("GET {path} HTTP/1.1\r\nHost: e\r\n\r\n").as_bytes()).await;
        let (head, _) = c.response(false).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 3, "each GET after the first needed a new connection");
    // A POST is not sent twice: the client hears 502.
    c.send(b"POST /d HTTP/1.1\r\nHost: e\r\nContent-Length: 1\r\n\r\nx").await;
    let (head, _) = c.response(false).await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    assert!(head.contains("x-ferrymesh-error"), "{head}");
    let posts = up.heads().iter().filter(|h| h.starts_with("POST /d")).count();
    assert_eq!(posts, 1, "the POST reached the upstream once");
}

#[tokio::test]
async fn a_malformed_response_is_a_502() {
    let (_up, proxy) = scripted(After::KeepServing, true).await;
    let (out, _) = raw_exchange(
        proxy.addr,
        b"GET /garbage HTTP/1.1\r\nHost: e\r\n\r\nGET /fine HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(first_status(&out), Some(502), "{out}");
    assert!(out.contains("GET /fine HTTP/1.1"), "the connection goes on after the 502: {out}");
    // A chunked body that breaks its syntax before anything reached the client: 502, then the close.
    let (out, closed) =
        raw_exchange(proxy.addr, b"GET /bad-chunk HTTP/1.1\r\nHost: e\r\n\r\n", Duration::from_secs(2)).await;
    assert_eq!(first_status(&out), Some(502), "{out}");
    assert!(!out.contains("hello") && closed, "{out}");
}

#[tokio::test]
async fn a_request_left_to_hyper_moves_the_connection_mid_stream() {
    let up = HttpUpstream::start("up", false).await;
    let port = free_port();
    let proxy = Proxy::start(&config(port, up.addr, true), 1);
    let mut c = Conn::open(proxy.addr).await;
    c.send(b"GET /first HTTP/1.1\r\nHost: e\r\n\r\n").await;
    assert!(c.response(false).await.0.starts_with("HTTP/1.1 200"));
    // Chunked request bodies are hyper's: the connection moves there, mid-stream.
    c.send(b"POST /second HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").await;
    let (head, body) = c.response(false).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"up got 5");
    c.send(b"GET /third HTTP/1.1\r\nHost: e\r\n\r\n").await;
    assert!(c.response(false).await.0.starts_with("HTTP/1.1 200"));
    let uris: Vec<String> = up.seen().iter().map(|s| s.uri.clone()).collect();
    assert_eq!(uris, ["/first", "/second", "/third"]);
}

#[tokio::test]
async fn header_case_shows_which_path_carried_a_request() {
    for passthrough in [true, false] {
        let (_up, proxy) = scripted(After::KeepServing, passthrough).await;
        let mut c = Conn::open(proxy.addr).await;
        c.send(b"GET /x HTTP/1.1\r\nHost: e\r\nX-Custom: 1\r\n\r\n").await;
        let (head, body) = c.response(false).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let seen = String::from_utf8(body).unwrap();
        // The pass-through forwards names as the client wrote them; hyper lowercases them.
        assert_eq!(seen.contains("X-Custom: 1\r\n"), passthrough, "{seen}");
        assert_eq!(seen.contains("x-custom: 1\r\n"), !passthrough, "{seen}");
        drop(proxy);
    }
}

#[tokio::test]
async fn targets_and_routes_the_pass_through_cannot_judge_go_to_hyper() {
    let (up, proxy) = scripted(After::KeepServing, true).await;
    // A fragment must not take `/admin#x` past the exact `/admin` route.
    let (out, _) =
        raw_exchange(proxy.addr, b"GET /admin#x HTTP/1.1\r\nHost: e\r\n\r\n", Duration::from_millis(500)).await;
    assert_eq!(first_status(&out), Some(403), "{out}");
    assert!(up.heads().is_empty(), "nothing reached the upstream: {:?}", up.heads());
    // A route that removes Content-Length: hyper frames the body itself.
    let mut c = Conn::open(proxy.addr).await;
    c.send(b"POST /framing/x HTTP/1.1\r\nHost: e\r\nContent-Length: 5\r\n\r\nhello").await;
    let (head, body) = c.response(false).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let seen = String::from_utf8(body).unwrap();
    assert!(seen.contains("content-length: 5\r\n") || seen.contains("transfer-encoding: chunked\r\n"), "{seen}");
    // An absolute-form target: its authority, without the credentials, is the
    // upstream's Host, and the client's Host goes nowhere.
    c.send(b"GET http://user:pw@example.com/v1/echo HTTP/1.1\r\nHost: other\r\n\r\n").await;
    let (head, body) = c.response(false).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let seen = String::from_utf8(body).unwrap();
    assert!(seen.starts_with("GET /echo HTTP/1.1\r\nhost: example.com\r\n"), "{seen}");
    assert!(!seen.contains("user") && !seen.contains("other"), "{seen}");
}

#[tokio::test]
async fn slow_heads_are_cut_on_kept_alive_connections_and_slow_bodies_are_not() {
    // On the pass-through and on hyper's path alike.
    for passthrough in [true, false] {
        let (_up, proxy) = scripted(After::KeepServing, passthrough).await;
        let mut c = Conn::open(proxy.addr).await;
        // A kept-alive connection idle past the header-read time (500ms) is
        // kept: the idle timeout (90s) governs the wait for a first byte.
        c.send(b"GET /a HTTP/1.1\r\nHost: e\r\n\r\n").await;
        assert!(c.response(false).await.0.starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(800)).await;
        c.send(b"GET /a HTTP/1.1\r\nHost: e\r\n\r\n").await;
        let (head, _) = c.response(false).await;
        assert!(head.starts_with("HTTP/1.1 200"), "passthrough={passthrough}: {head}");
        // A body arriving after the header-read time is still waited for.
        c.send(b"POST /slow-body HTTP/1.1\r\nHost: e\r\nContent-Length: 5\r\n\r\n").await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        c.send(b"hello").await;
        let (head, _) = c.response(false).await;
        assert!(head.starts_with("HTTP/1.1 200"), "passthrough={passthrough}: {head}");
        // After idling past the header-read time, a head that stops halfway is
        // still cut at the header-read time, not the idle one.
        tokio::time::sleep(Duration::from_millis(800)).await;
        c.send(b"GET /never HTTP/1.1\r\nHost: e\r\n").await;
        let t0 = std::time::Instant::now();
        assert!(c.closed().await, "passthrough={passthrough}: slow head not cut");
        assert!(t0.elapsed() < Duration::from_millis(1500), "passthrough={passthrough}: cut after {:?}", t0.elapsed());
        // A head trickled a byte every 100ms is cut 500ms after its first
        // byte: later bytes do not restart the clock.
        let (mut rx, mut tx) = TcpStream::connect(proxy.addr).await.unwrap().into_split();
        let t0 = std::time::Instant::now();
        let trickle = tokio::spawn(async move {
            for b in b"GET /never HTTP/1.1\r\nHost: e\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
                if tx.write_all(&[*b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let mut byte = [0u8; 1];
        let ended = tokio::time::timeout(Duration::from_secs(3), rx.read(&mut byte)).await;
        trickle.abort();
        assert!(matches!(ended, Ok(Ok(0)) | Ok(Err(_))), "passthrough={passthrough}: trickled head not cut");
        assert!(
            t0.elapsed() < Duration::from_millis(1500),
            "passthrough={passthrough}: trickle cut after {:?}",
            t0.elapsed()
        );
    }
}

#[tokio::test]
async fn answers_keep_their_length_on_both_paths() {
    for passthrough in [true, false] {
        let (_up, proxy) = scripted(After::KeepServing, passthrough).await;
        let mut c = Conn::open(proxy.addr).await;
        for (path, status) in [("/admin", "403"), ("/no-content", "204")] {
            c.send(format!("GET {path} HTTP/1.1\r\nHost: e\r\n\r\n").as_bytes()).await;
            let (head, _) = c.response(false).await;
            let head = head.to_ascii_lowercase();
            assert!(head.starts_with(&format!("http/1.1 {status}")), "passthrough={passthrough} {path}: {head}");
            assert!(!head.contains("transfer-encoding"), "passthrough={passthrough} {path}: {head}");
            if status == "403" {
                assert!(head.contains("content-length: 2\r\n"), "passthrough={passthrough} {path}: {head}");
            }
        }
        c.send(b"GET /x HTTP/1.1\r\nHost: e\r\n\r\n").await;
        let (head, body) = c.response(false).await;
        let expected = format!("content-length: {}\r\n", body.len());
        assert!(head.to_ascii_lowercase().contains(&expected), "passthrough={passthrough}: {head}");
    }
}

#[tokio::test]
async fn a_burst_of_answers_keeps_every_upstream_connection_pooled() {
    // More requests in flight than the 256 idle connections the pool once
    // kept: when they were all answered at once, the surplus was closed and
    // redialled by the next burst (an h2c benchmark with 512 streams in
    // flight opened a connection every 25 requests).
    // 300 client and 300 upstream sockets in this process (and 600 in
    // ferrymesh's): within a 1024 file-descriptor limit.
    const N: usize = 300;
    let up = Scripted::start_gated(After::KeepServing, Some(Arc::new(Barrier::new(N)))).await;
    let port = free_port();
    let proxy = Proxy::start(&config(port, up.addr, true), 1);
    let mut clients = Vec::new();
    for _ in 0..N {
        clients.push(Conn::open(proxy.addr).await);
    }
    for burst in 0..3 {
        let mut answers = tokio::task::JoinSet::new();
        for mut c in clients.drain(..) {
            answers.spawn(async move {
                c.send(b"GET /gather HTTP/1.1\r\nHost: e\r\n\r\n").await;
                let (head, _) = c.response(false).await;
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                c
            });
        }
        while let Some(c) = answers.join_next().await {
            clients.push(c.expect("a client of the burst failed"));
        }
        assert_eq!(up.accepted.load(Ordering::SeqCst), N, "upstream connections after burst {burst}");
    }
}

/// The route's timeout runs on the client connection's own timer (no timer
/// per request): an unanswered request gets 504 at its route's timeout, not
/// sooner when that is longer than the connection's header-read timer
/// (500 ms here), and the connection goes on serving after it.
#[tokio::test]
async fn unanswered_requests_time_out_at_their_route_timeout_and_the_connection_goes_on() {
    let up = Scripted::start(After::KeepServing).await;
    let proxy = Proxy::start(&config(free_port(), up.addr, true), 1);
    let mut c = Conn::open(proxy.addr).await;
    for (path, at_least, timeout) in [("/t300/never", 300, "300 ms"), ("/t1200/never", 1200, "1200 ms")] {
        c.send(b"GET /a HTTP/1.1\r\nHost: e\r\n\r\n").await;
        assert!(c.response(false).await.0.starts_with("HTTP/1.1 200"));
        let t0 = std::time::Instant::now();
        c.send(format!("GET {path} HTTP/1.1\r\nHost: e\r\n\r\n").as_bytes()).await;
        let (head, _) = c.response(false).await;
        let took = t0.elapsed();
        assert!(head.starts_with("HTTP/1.1 504"), "{path}: {head}");
        assert!(
            took >= Duration::from_millis(at_least),
            "{path}: answered after {took:?}, before its {timeout} timeout"
        );
        assert!(took < Duration::from_millis(at_least + 2500), "{path}: answered only after {took:?}");
    }
    // The connection still serves, and still closes once idle past its
    // header-read time with half a head.
    c.send(b"GET /a HTTP/1.1\r\nHost: e\r\n\r\n").await;
    assert!(c.response(false).await.0.starts_with("HTTP/1.1 200"));
    c.send(b"GET /a HTTP/1.1\r\nHo").await;
    assert!(c.closed().await, "a half head is cut at the header-read timeout");
}

/// A POST to `path` whose body (70,000 bytes) is over the 64 KiB the
/// pass-through reads whole: it streams, so hyper's path and client carry it.
fn post_for_hyper(path: &str) -> Vec<u8> {
    let mut req = format!("POST {path} HTTP/1.1\r\nHost: e\r\nContent-Length: 70000\r\n\r\n").into_bytes();
    req.resize(req.len() + 70_000, b'x');
    req
}

/// A scripted upstream, ferrymesh in front of it with the cluster's
/// `idle_timeout` (unset if `None`), and a client connection to ferrymesh.
async fn behind_idle_timeout(idle_timeout: Option<&str>) -> (Scripted, Proxy, Conn) {
    let up = Scripted::start(After::KeepServing).await;
    let mut cfg = config(free_port(), up.addr, true);
    if let Some(t) = idle_timeout {
        cfg["cluster_manager"]["clusters"][0]["idle_timeout"] = json!(t);
    }
    let proxy = Proxy::start(&cfg, 1);
    let c = Conn::open(proxy.addr).await;
    (up, proxy, c)
}

#[tokio::test]
async fn pooled_upstream_connections_close_after_the_cluster_idle_timeout() {
    let (up, _proxy, mut c) = behind_idle_timeout(Some("1s")).await;
    // The pass-through's raw sockets, then hyper's client.
    let big = post_for_hyper("/b");
    let requests: [&[u8]; 2] = [b"GET /a HTTP/1.1\r\nHost: e\r\n\r\n", &big];
    for (i, request) in requests.into_iter().enumerate() {
        c.send(request).await;
        assert!(c.response(false).await.0.starts_with("HTTP/1.1 200"));
        c.send(request).await;
        assert!(c.response(false).await.0.starts_with("HTTP/1.1 200"));
        assert_eq!(up.accepted.load(Ordering::SeqCst), 2 * i + 1, "reused within the timeout");
        // The upstream connection idles 1.5 s, past the 1 s timeout.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        c.send(request).await;
        assert!(c.response(false).await.0.starts_with("HTTP/1.1 200"));
        assert_eq!(up.accepted.load(Ordering::SeqCst), 2 * i + 2, "redialled after idling past the timeout");
    }
    // A connection whose response body streams for longer than the timeout
    // is busy, not idle: it is reused after the body ends (hyper's client; the
    // pass-through's raw sockets go back to the pool only then anyway).
    let (up, _proxy, mut c) = behind_idle_timeout(Some("4s")).await;
    c.send(&post_for_hyper("/slow-answer")).await;
    let (head, body) = c.response(false).await;
    assert!(head.starts_with("HTTP/1.1 200") && body == b"helloworld", "{head}");
    c.send(&big).await;
    assert!(c.response(false).await.0.starts_with("HTTP/1.1 200"));
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1, "the connection busy for 5 s was reused");
    // Unset, the timeout is 60 s: a connection idle for 1.5 s is reused.
    let (up, _proxy, mut c) = behind_idle_timeout(None).await;
    for _ in 0..2 {
        c.send(b"GET /a HTTP/1.1\r\nHost: e\r\n\r\n").await;
        assert!(c.response(false).await.0.starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
}

/// An HTTP/2 client's GET through ferrymesh: status, headers, body, trailers.
async fn h2_get(
    sender: &mut hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    method: &str,
    path: &str,
) -> (u16, http::HeaderMap, Vec<u8>, Option<http::HeaderMap>) {
    use http_body_util::BodyExt;
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://example.com{path}"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (parts.status.as_u16(), parts.headers, collected.to_bytes().to_vec(), trailers)
}

async fn h2_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    let io = hyper_util::rt::TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (sender, conn) = hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await.unwrap();
    tokio::spawn(conn);
    sender
}

/// HTTP/2 clients' bodiless requests to an HTTP/1.1 upstream take the raw
/// exchange too: every framing comes back decoded, chunked trailers become
/// HTTP/2 trailers, and one upstream connection carries them in turn.
#[tokio::test]
async fn http2_requests_reach_an_http1_upstream_on_raw_connections() {
    let up = Scripted::start(After::KeepServing).await;
    let port = free_port();
    let proxy = Proxy::start(&config_for(port, up.addr, true, "Http2"), 1);
    let mut c = h2_client(proxy.addr).await;

    let (status, _, body, _) = h2_get(&mut c, "GET", "/v1/echo").await;
    assert_eq!(status, 200);
    let seen = String::from_utf8(body).unwrap();
    assert!(seen.starts_with("GET /echo HTTP/1.1\r\n") && seen.contains("host: example.com\r\n"), "{seen}");
    assert!(seen.contains("x-added: yes\r\n") && seen.contains("x-forwarded-for: 127.0.0.1\r\n"), "{seen}");
    // The head is written straight from the HTTP/2 request: one Host (from
    // :authority), the generated fields, and no length for a bodiless GET.
    assert_eq!(seen.matches("host:").count(), 1, "{seen}");
    assert!(seen.contains("x-forwarded-proto: http\r\n") && seen.contains("x-request-id: "), "{seen}");
    assert!(!seen.contains("content-length"), "{seen}");

    let (status, headers, body, trailers) = h2_get(&mut c, "GET", "/v1/chunked").await;
    assert_eq!((status, &body[..]), (200, &b"hello world"[..]));
    assert!(headers.get("x-internal").is_none() && headers.get("transfer-encoding").is_none(), "{headers:?}");
    assert_eq!(trailers.expect("trailers").get("x-trailer").unwrap(), "t");

    let (status, _, body, _) = h2_get(&mut c, "GET", "/interim").await;
    assert_eq!((status, &body[..]), (200, &b"ok"[..]));
    let (status, headers, body, _) = h2_get(&mut c, "HEAD", "/head").await;
    assert_eq!((status, body.len()), (200, 0));
    assert_eq!(headers.get("content-length").unwrap(), "1234");
    let (status, _, body, _) = h2_get(&mut c, "GET", "/big").await;
    assert_eq!((status, body.len()), (200, 300_000));
    assert!(body.iter().all(|&b| b == b'b'));
    let (status, _, body, _) = h2_get(&mut c, "GET", "/no-content").await;
    assert_eq!((status, body.len()), (204, 0));
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1, "one upstream connection carried them in turn");

    let (status, _, body, _) = h2_get(&mut c, "GET", "/until-close").await;
    assert_eq!((status, &body[..]), (200, &b"until the end"[..]));
    let (status, headers, _, _) = h2_get(&mut c, "GET", "/garbage").await;
    assert_eq!(status, 502, "{headers:?}");
}

#[tokio::test]
async fn http2_requests_redial_a_closed_pooled_connection() {
    let up = Scripted::start(After::DropNext).await;
    let port = free_port();
    let proxy = Proxy::start(&config_for(port, up.addr, true, "Http2"), 1);
    let mut c = h2_client(proxy.addr).await;
    for path in ["/a", "/b", "/c"] {
        let (status, _, _, _) = h2_get(&mut c, "GET", path).await;
        assert_eq!(status, 200, "{path}");
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_swept() {
    let (up, proxy) = scripted(After::HalfCloseAfterAnswer, true).await;
    let mut c = Conn::open(proxy.addr).await;
    c.send(b"GET /once HTTP/1.1\r\nHost: e\r\n\r\n").await;
    assert!(c.response(false).await.0.starts_with("HTTP/1.1 200"));
    // Idle in the pool, the upstream's close is noticed by the sweeper (every
    // 5 s) without any request coming to take the connection.
    let t0 = std::time::Instant::now();
    while !up.heads().iter().any(|h| h == "<closed by proxy>") {
        assert!(t0.elapsed() < Duration::from_secs(12), "the pooled connection was never closed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_connection_accepted_before_a_drain_gets_its_first_answer() {
    // On the pass-through, and when its first request hands it to hyper once
    // the drain has begun.
    let big = post_for_hyper("/late");
    let requests: [&[u8]; 2] = [b"GET /late HTTP/1.1\r\nHost: e\r\n\r\n", &big];
    for request in requests {
        let (_up, mut proxy) = scripted(After::KeepServing, true).await;
        let mut c = Conn::open(proxy.addr).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        proxy.signal("TERM");
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.send(request).await;
        let (head, _) = c.response(false).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.to_ascii_lowercase().contains("connection: close"), "{head}");
        assert!(c.closed().await);
        let code = tokio::task::spawn_blocking(move || proxy.wait_exit(Duration::from_secs(5))).await.unwrap();
        assert_eq!(code, Some(0));
    }
}
