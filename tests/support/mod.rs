//! Test harness: ferrymesh as a child process, bolt upstreams we control, and a
//! bolt client, all over real sockets on 127.0.0.1.
#![allow(dead_code)]

use std::io::Write;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use ferrymesh::protocol::bolt::{RequestBuilder, ResponseBuilder, BOLT_V1};
use ferrymesh::protocol::{Codec, FrameInfo, FrameKind};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const SERVICE: &str = "com.example.EchoService:1.0";

/// The text of a log file once it holds `needle`, or after 5 s whatever it
/// holds (the writer flushes on its own time).
pub fn wait_for_log(log: &std::path::Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A port that was free a moment ago, for a listener a test starts later
/// (a proxy's, an admin server's, a peer's). Taken below the kernel's
/// ephemeral range (32768 and up), not by binding port 0: a port from that
/// range was given out again, in the moment before the test bound it, to
/// another test's bind to port 0 or as an outgoing connection's source port
/// ("Address already in use" when the proxy started, and the test's client
/// then talking to whatever held the port). Never the same port twice in one
/// process (its tests run in parallel threads); each process starts at its
/// own place (by pid), and each port is checked free by binding it.
pub fn free_port() -> u16 {
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicUsize = AtomicUsize::new(usize::MAX);
    let start = (std::process::id() % 600) * 20;
    let _ = NEXT.compare_exchange(usize::MAX, start as usize, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::SeqCst) as u32;
        let port = (LOW + n % SPAN) as u16;
        if StdListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN)
}

/// An address that refuses connections for as long as this lives: a socket
/// bound to it that never listens. A merely free port is not enough for a
/// dead host: another test may take it, or a dial to it may pick it as its own
/// source port and connect to itself (TCP simultaneous open).
pub struct DeadHost(socket2::Socket);

impl DeadHost {
    pub fn new() -> DeadHost {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
        s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).expect("bind");
        DeadHost(s)
    }

    pub fn addr(&self) -> SocketAddr {
        self.0.local_addr().ok().and_then(|a| a.as_socket()).expect("bound address")
    }
}

/// A listening address that never completes a connect: its accept queue
/// (backlog 0) is full, so the kernel drops further SYNs and a dial to it
/// hangs until the dialler gives up. Dropping it frees the address.
pub struct BlackHole {
    listener: socket2::Socket,
    _fillers: Vec<socket2::Socket>,
}

impl BlackHole {
    pub fn new() -> BlackHole {
        let listener = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
        listener.set_reuse_address(true).expect("SO_REUSEADDR");
        listener.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).expect("bind");
        listener.listen(0).expect("listen");
        let addr = listener.local_addr().expect("bound address");
        let mut fillers = Vec::new();
        for _ in 0..3 {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
            s.set_nonblocking(true).expect("nonblocking");
            let _ = s.connect(&addr); // EINPROGRESS: the point is the queued SYN
            fillers.push(s);
        }
        std::thread::sleep(Duration::from_millis(200));
        BlackHole { listener, _fillers: fillers }
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr().ok().and_then(|a| a.as_socket()).expect("bound address")
    }

    /// The host comes back on the same address: its listener, ready to
    /// accept (the held connections are dropped; they are accepted and
    /// found closed).
    pub fn reopen(self) -> tokio::net::TcpListener {
        let BlackHole { listener, _fillers } = self;
        drop(_fillers);
        listener.listen(1024).expect("listen");
        listener.set_nonblocking(true).expect("nonblocking");
        tokio::net::TcpListener::from_std(listener.into()).expect("a tokio listener")
    }
}

/// What an upstream does with requests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Answer at once, echoing the content, with header `server=<name>`.
    Echo,
    /// Answer after a delay.
    Delay(Duration),
    /// Never answer requests (heartbeats too).
    Silent,
}

/// One frame an upstream received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub conn: usize,
    pub kind: FrameKind,
    pub id: u64,
    pub headers: Vec<(String, String)>,
    pub content: Vec<u8>,
}

/// A bolt upstream on a real socket.
pub struct Upstream {
    pub addr: SocketAddr,
    pub name: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub conns: Arc<AtomicUsize>,
    /// Connections the peer (ferrymesh) closed.
    pub closed: Arc<AtomicUsize>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Upstream {
    pub async fn start(name: &str, mode: Mode) -> Upstream {
        Self::start_on("127.0.0.1:0", name, mode).await
    }

    pub async fn start_on(addr: &str, name: &str, mode: Mode) -> Upstream {
        let listener = TcpListener::bind(addr).await.expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let conns = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));
        let (s2, c2, t2, n2, x2) = (seen.clone(), conns.clone(), tasks.clone(), name.to_string(), closed.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let n = c2.fetch_add(1, Ordering::SeqCst);
                let (s3, t3, n3, x3) = (s2.clone(), t2.clone(), n2.clone(), x2.clone());
                let h = tokio::spawn(async move {
                    serve_upstream(sock, n, mode, n3, s3, t3).await;
                    x3.fetch_add(1, Ordering::SeqCst);
                });
                t2.lock().unwrap().push(h);
            }
        });
        Upstream { addr, name: name.to_string(), seen, conns, closed, tasks, accept }
    }

    /// Closes the listener and every connection, as a crashed process would.
    pub fn kill(&self) {
        self.accept.abort();
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn requests_seen(&self) -> usize {
        self.seen().iter().filter(|s| s.kind.is_request()).count()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn serve_upstream(
    sock: TcpStream,
    conn: usize,
    mode: Mode,
    name: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    let _ = sock.set_nodelay(true);
    let (mut rd, wr) = sock.into_split();
    let wr = Arc::new(tokio::sync::Mutex::new(wr));
    let mut buf = BytesMut::new();
    loop {
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let mut out = BytesMut::new();
        while let Ok(Some(info)) = BOLT_V1.decode(&buf, 64 << 20) {
            let frame = buf.split_to(info.len);
            let headers = BOLT_V1
                .headers(&frame)
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned()))
                .collect();
            let (_, _, content) = BOLT_V1.split(&frame);
            seen.lock().unwrap().push(Seen { conn, kind: info.kind, id: info.id, headers, content: content.to_vec() });
            match (info.kind, mode) {
                (_, Mode::Silent) => {}
                (FrameKind::Heartbeat, _) => BOLT_V1.heartbeat_reply(&frame, &info, &mut out),
                (FrameKind::Request, Mode::Echo) => {
                    if content == b"goaway" {
                        // A GOAWAY (command 100) first, as a server shutting down sends.
                        let mut goaway = RequestBuilder::heartbeat(0).encode();
                        goaway[2..4].copy_from_slice(&100u16.to_be_bytes());
                        out.extend_from_slice(&goaway);
                    }
                    echo_response(frame[0], &info, content, &name, &mut out)
                }
                (FrameKind::Request, Mode::Delay(d)) => {
                    let mut r = BytesMut::new();
                    echo_response(frame[0], &info, content, &name, &mut r);
                    let wr = wr.clone();
                    tasks.lock().unwrap().push(tokio::spawn(async move {
                        tokio::time::sleep(d).await;
                        let _ = wr.lock().await.write_all(&r).await;
                    }));
                }
                _ => {}
            }
        }
        if !out.is_empty() && wr.lock().await.write_all(&out).await.is_err() {
            break;
        }
    }
}

/// An echo answer in the version of the request (as SOFA servers answer).
fn echo_response(version: u8, info: &FrameInfo, content: &[u8], name: &str, out: &mut BytesMut) {
    let mut r = ResponseBuilder::new(info.id as u32, 0, content);
    r.version = version;
    r.headers.push((b"server".to_vec(), name.as_bytes().to_vec()));
    r.encode_into(out);
}

/// A ferrymesh child process.
pub struct Proxy {
    pub child: Child,
    pub addr: SocketAddr,
    _config: tempfile_path::TempPath,
}

mod tempfile_path {
    /// A file removed on drop.
    pub struct TempPath(pub std::path::PathBuf);
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

static CONFIG_SEQ: AtomicUsize = AtomicUsize::new(0);

impl Proxy {
    /// Starts ferrymesh with `config` and waits until its listener accepts.
    pub fn start(config: &Value, workers: usize) -> Proxy {
        Self::start_with(config, &["--workers", &workers.to_string()])
    }

    pub fn start_with(config: &Value, args: &[&str]) -> Proxy {
        Self::start_probing(config, args, Duration::from_millis(20))
    }

    /// [`Proxy::start_with`], looking for the open ports every `probe`: a
    /// short one sees the first port the moment it opens. Every listener is
    /// waited for, not only the first: ferrymesh opens them one after
    /// another, and a client of the second, connecting the moment the first
    /// accepted, was refused once (CI, on a loaded machine).
    pub fn start_probing(config: &Value, args: &[&str], probe: Duration) -> Proxy {
        let addrs: Vec<SocketAddr> = config["servers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["listeners"].as_array().into_iter().flatten())
            .map(|l| l["address"].as_str().expect("listener address").parse().expect("listener address"))
            .collect();
        let addr = addrs[0];
        let path = std::env::temp_dir().join(format!(
            "ferrymesh-test-{}-{}.json",
            std::process::id(),
            CONFIG_SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::File::create(&path).and_then(|mut f| f.write_all(config.to_string().as_bytes())).unwrap();
        let level = std::env::var("FERRYMESH_TEST_LOG").unwrap_or_else(|_| "WARN".into());
        let child = Command::new(env!("CARGO_BIN_EXE_ferrymesh"))
            .args(["start", "-c"])
            .arg(&path)
            .args(["--log-level", &level])
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn ferrymesh");
        let mut p = Proxy { child, addr, _config: tempfile_path::TempPath(path) };
        let deadline = Instant::now() + Duration::from_secs(10);
        for a in addrs {
            while std::net::TcpStream::connect(a).is_err() {
                assert!(Instant::now() < deadline, "ferrymesh did not start listening on {a}");
                if let Ok(Some(status)) = p.child.try_wait() {
                    panic!("ferrymesh exited while starting: {status}");
                }
                std::thread::sleep(probe);
            }
        }
        p
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The configuration file ferrymesh runs from.
    pub fn config_path(&self) -> &std::path::Path {
        &self._config.0
    }

    /// Replaces the configuration file (written whole, then renamed over
    /// the old one, as an editor or a config manager does).
    pub fn rewrite(&self, config: &Value) {
        write_atomically(self.config_path(), config.to_string().as_bytes());
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit and returns its code; `None` if it
    /// has not exited within `within`. A process ended by a signal fails
    /// the test here, naming the signal (a crash, or a signal that found no
    /// handler yet).
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let code = status.code();
                assert!(code.is_some(), "ferrymesh ended by a signal: {status}");
                return code;
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `path` through a temporary file and a rename.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write config");
    std::fs::rename(&tmp, path).expect("rename config");
}

/// The admin block for `port` on 127.0.0.1.
pub fn admin(port: u16) -> Value {
    json!({"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}})
}

/// One HTTP/1.1 request to the admin server: (status, body).
pub fn admin_call(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("admin connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("admin read");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub fn admin_get(port: u16, path: &str) -> (u16, String) {
    admin_call(port, "GET", path, "")
}

/// `/stats/prometheus` as `name{labels}` -> value.
pub fn scrape(port: u16) -> std::collections::HashMap<String, f64> {
    let (status, body) = admin_get(port, "/stats/prometheus");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// Config pieces.
pub fn listener(port: u16, router: &str) -> Value {
    json!({
        "name": "bolt_in",
        "address": format!("127.0.0.1:{port}"),
        "bind_port": true,
        "filter_chains": [{"filters": [{"type": "proxy", "config": {
            "downstream_protocol": "bolt", "upstream_protocol": "bolt", "router_config_name": router
        }}]}]
    })
}

pub fn cluster(name: &str, hosts: &[SocketAddr]) -> Value {
    json!({
        "name": name, "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "connect_timeout": "1s",
        "hosts": hosts.iter().map(|h| json!({"address": h.to_string()})).collect::<Vec<_>>()
    })
}

/// A config with one listener, the given routes (`routers[]` entries) and clusters.
pub fn config(port: u16, routes: Vec<Value>, clusters: Vec<Value>) -> Value {
    json!({
        "servers": [{
            "default_log_level": "WARN",
            "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "all", "domains": ["*"], "routers": routes}]}],
            "listeners": [listener(port, "r")]
        }],
        "cluster_manager": {"clusters": clusters}
    })
}

/// A route sending every request with a service header to `cluster`.
pub fn route_all(cluster: &str) -> Value {
    json!({"match": {"headers": [{"name": "service", "value": ".*"}]}, "route": {"cluster_name": cluster}})
}

/// A bolt client connection.
pub struct Client {
    pub sock: TcpStream,
    buf: BytesMut,
}

/// A decoded response.
#[derive(Debug, Clone)]
pub struct Response {
    pub info: FrameInfo,
    pub status: u16,
    pub content: Vec<u8>,
    pub server: Option<String>,
    pub frame: Vec<u8>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let sock = TcpStream::connect(addr).await.expect("connect to ferrymesh");
        sock.set_nodelay(true).unwrap();
        Client { sock, buf: BytesMut::new() }
    }

    pub async fn send(&mut self, frame: &[u8]) {
        self.sock.write_all(frame).await.expect("write");
    }

    /// Reads one frame, or `None` on close or after `within`.
    pub async fn recv_within(&mut self, within: Duration) -> Option<Response> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(info) = BOLT_V1.decode(&self.buf, 64 << 20).expect("ferrymesh sent a bad frame") {
                let frame = self.buf.split_to(info.len);
                let (_, _, content) = BOLT_V1.split(&frame);
                return Some(Response {
                    info,
                    status: if info.kind == FrameKind::Response { BOLT_V1.response_status(&frame) } else { 0 },
                    content: content.to_vec(),
                    server: BOLT_V1.header(&frame, "server").map(|s| String::from_utf8_lossy(s).into_owned()),
                    frame: frame.to_vec(),
                });
            }
            match tokio::time::timeout_at(deadline, self.sock.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    pub async fn recv(&mut self) -> Response {
        self.recv_within(Duration::from_secs(5)).await.expect("a response within 5 s")
    }

    /// True when the peer closed the connection (EOF or reset) within `within`.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let mut scratch = [0u8; 1024];
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.sock.read(&mut scratch)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }

    pub fn advance_buf(&mut self, n: usize) {
        self.buf.advance(n);
    }
}
pub mod h2;
pub mod http;
pub mod peers;
pub mod rpc;
pub mod tls;
