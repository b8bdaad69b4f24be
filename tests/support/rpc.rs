//! Peers for any RPC protocol of the registry: one upstream and one client
//! driven by a [`Wire`], so the core's multiplexing tests run once per
//! protocol from one suite (`tests/multiplex.rs`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use ferrymesh::protocol::bolt::{RequestBuilder, ResponseBuilder, BOLT_V1};
use ferrymesh::protocol::{dubbo, tars, toy, Codec, FrameInfo, FrameKind};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What a test needs to speak a protocol: its requests, an echo answer, and
/// how to read one back.
pub trait Wire: Send + Sync + 'static {
    /// The name configuration uses.
    fn name(&self) -> &'static str;
    fn codec(&self) -> &'static dyn Codec;
    /// A request to `service` carrying `text`.
    fn request(&self, id: u64, service: &str, text: &str) -> Vec<u8>;
    /// The echo answer to `request`: its text, `|`, the server's name.
    fn echo(&self, request: &[u8], info: &FrameInfo, server: &str) -> Vec<u8>;
    /// The text a successful answer carries; `None` for an error answer.
    fn ok_text(&self, response: &[u8]) -> Option<String>;
}

pub struct BoltWire;
pub struct DubboWire;
pub struct TarsWire;

pub static BOLT: BoltWire = BoltWire;
pub static DUBBO: DubboWire = DubboWire;
pub static TARS: TarsWire = TarsWire;
pub static TOY: ToyWire = ToyWire;
pub struct ToyWire;

impl Wire for BoltWire {
    fn name(&self) -> &'static str {
        "bolt"
    }
    fn codec(&self) -> &'static dyn Codec {
        &BOLT_V1
    }
    /// No timeout of the client's own (it would win over the route's).
    fn request(&self, id: u64, service: &str, text: &str) -> Vec<u8> {
        let mut r = RequestBuilder::new(id as u32, service, text.as_bytes());
        r.timeout_ms = -1;
        r.encode()
    }
    fn echo(&self, request: &[u8], info: &FrameInfo, server: &str) -> Vec<u8> {
        let (_, _, content) = BOLT_V1.split(request);
        let mut body = content.to_vec();
        body.extend_from_slice(format!("|{server}").as_bytes());
        ResponseBuilder::new(info.id as u32, 0, &body).encode()
    }
    fn ok_text(&self, response: &[u8]) -> Option<String> {
        (BOLT_V1.response_status(response) == 0)
            .then(|| String::from_utf8_lossy(BOLT_V1.split(response).2).into_owned())
    }
}

impl Wire for DubboWire {
    fn name(&self) -> &'static str {
        "dubbo"
    }
    fn codec(&self) -> &'static dyn Codec {
        &dubbo::DUBBO
    }
    fn request(&self, id: u64, service: &str, text: &str) -> Vec<u8> {
        dubbo::frame::request(id, service, "echo", text, true)
    }
    fn echo(&self, request: &[u8], info: &FrameInfo, server: &str) -> Vec<u8> {
        let arg = dubbo::frame::request_arg(request).unwrap_or_default();
        dubbo::frame::response(info.id, &format!("{arg}|{server}"))
    }
    fn ok_text(&self, response: &[u8]) -> Option<String> {
        (dubbo::frame::status(response) == dubbo::status::OK).then(|| dubbo::frame::response_text(response)).flatten()
    }
}

impl Wire for TarsWire {
    fn name(&self) -> &'static str {
        "tars"
    }
    fn codec(&self) -> &'static dyn Codec {
        &tars::TARS
    }
    fn request(&self, id: u64, service: &str, text: &str) -> Vec<u8> {
        tars::frame::request_with(id as i32, service, "echo", false, &[], text.as_bytes())
    }
    fn echo(&self, request: &[u8], info: &FrameInfo, server: &str) -> Vec<u8> {
        let mut body = tars::frame::buffer(request).unwrap_or_default().to_vec();
        body.extend_from_slice(format!("|{server}").as_bytes());
        tars::frame::response_with(info.id as i32, 0, &body)
    }
    fn ok_text(&self, response: &[u8]) -> Option<String> {
        (tars::frame::ret(response) == Some(0))
            .then(|| tars::frame::buffer(response).map(|b| String::from_utf8_lossy(b).into_owned()))
            .flatten()
    }
}

impl Wire for ToyWire {
    fn name(&self) -> &'static str {
        "toy"
    }
    fn codec(&self) -> &'static dyn Codec {
        &toy::TOY
    }
    fn request(&self, id: u64, service: &str, text: &str) -> Vec<u8> {
        let mut out = BytesMut::new();
        toy::frame(&mut out, 0, id as u32, service.as_bytes(), text.as_bytes());
        out.to_vec()
    }
    fn echo(&self, request: &[u8], info: &FrameInfo, server: &str) -> Vec<u8> {
        let body = [toy::parts(request).map_or(&b""[..], |p| p.1), b"|", server.as_bytes()].concat();
        let mut out = BytesMut::new();
        toy::frame(&mut out, 1, info.id as u32, b"0", &body);
        out.to_vec()
    }
    fn ok_text(&self, response: &[u8]) -> Option<String> {
        toy::parts(response).filter(|p| p.0 == b"0").map(|p| String::from_utf8_lossy(p.1).into_owned())
    }
}

/// How an upstream answers.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    Echo,
    After(Duration),
    Never,
}

/// An upstream of any protocol: echoes (or delays, or never answers)
/// requests, answers heartbeats.
pub struct RpcUpstream {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl RpcUpstream {
    pub async fn start(wire: &'static dyn Wire, name: &str, answer: Answer) -> RpcUpstream {
        Self::start_any(&[wire], name, answer).await
    }

    /// An upstream that speaks each of `wires`, told apart per connection
    /// from its first bytes (a host serving several protocols on one port).
    pub async fn start_any(wires: &[&'static dyn Wire], name: &str, answer: Answer) -> RpcUpstream {
        let wires: Vec<&'static dyn Wire> = wires.to_vec();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (seen, t2, name) = (requests.clone(), tasks.clone(), name.to_string());
        let accept = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (seen, name, t3, wires) = (seen.clone(), name.clone(), t2.clone(), wires.clone());
                let h = tokio::spawn(async move {
                    let mut first = [0u8; 16];
                    let Ok(n) = sock.peek(&mut first).await else { return };
                    let wire = wires
                        .iter()
                        .copied()
                        .find(|w| w.codec().detect(&first[..n]) == ferrymesh::protocol::Detect::Match);
                    match wire {
                        Some(wire) => serve(wire, sock, answer, &name, seen, t3).await,
                        None => panic!("upstream {name}: a connection in no protocol it speaks: {:02x?}", &first[..n]),
                    }
                });
                t2.lock().unwrap().push(h);
            }
        });
        RpcUpstream { addr, requests, tasks, accept }
    }

    /// Closes the listener and every connection, as a crashed process would.
    pub fn kill(&self) {
        self.accept.abort();
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

impl Drop for RpcUpstream {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn serve(
    wire: &'static dyn Wire,
    sock: TcpStream,
    answer: Answer,
    name: &str,
    seen: Arc<AtomicUsize>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    let codec = wire.codec();
    let (mut rd, wr) = sock.into_split();
    let wr = Arc::new(tokio::sync::Mutex::new(wr));
    let mut buf = BytesMut::new();
    loop {
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut out = BytesMut::new();
        while let Ok(Some(info)) = codec.decode(&buf, 64 << 20) {
            let frame = buf.split_to(info.len);
            match (info.kind, answer) {
                (FrameKind::Heartbeat, _) => codec.heartbeat_reply(&frame, &info, &mut out),
                (FrameKind::Request | FrameKind::Oneway, _) => {
                    seen.fetch_add(1, Ordering::SeqCst);
                    if info.kind == FrameKind::Oneway {
                        continue;
                    }
                    match answer {
                        Answer::Echo => out.extend_from_slice(&wire.echo(&frame, &info, name)),
                        Answer::Never => {}
                        Answer::After(d) => {
                            let reply = wire.echo(&frame, &info, name);
                            let wr = wr.clone();
                            tasks.lock().unwrap().push(tokio::spawn(async move {
                                tokio::time::sleep(d).await;
                                let _ = wr.lock().await.write_all(&reply).await;
                            }));
                        }
                    }
                }
                _ => {}
            }
        }
        if !out.is_empty() && wr.lock().await.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// A client connection of any protocol.
pub struct RpcClient {
    wire: &'static dyn Wire,
    sock: TcpStream,
    buf: BytesMut,
}

impl RpcClient {
    pub async fn connect(wire: &'static dyn Wire, addr: SocketAddr) -> RpcClient {
        let sock = TcpStream::connect(addr).await.expect("connect to ferrymesh");
        sock.set_nodelay(true).unwrap();
        RpcClient { wire, sock, buf: BytesMut::new() }
    }

    pub async fn send(&mut self, frame: &[u8]) {
        self.sock.write_all(frame).await.expect("write");
    }

    /// One frame, or `None` on close or after `within`.
    pub async fn recv_within(&mut self, within: Duration) -> Option<(FrameInfo, Vec<u8>)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(info) = self.wire.codec().decode(&self.buf, 64 << 20).expect("ferrymesh sent a bad frame") {
                return Some((info, self.buf.split_to(info.len).to_vec()));
            }
            match tokio::time::timeout_at(deadline, self.sock.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    pub async fn recv(&mut self) -> (FrameInfo, Vec<u8>) {
        self.recv_within(Duration::from_secs(5)).await.expect("an answer within 5 s")
    }

    /// Whether ferrymesh closes the connection within `within`.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let mut scratch = [0u8; 256];
        matches!(tokio::time::timeout(within, self.sock.read(&mut scratch)).await, Ok(Ok(0) | Err(_)))
    }
}

/// A config with one listener of `wire`'s protocol routing `service` to
/// cluster `c` (`timeout` is the route's), and the given clusters.
pub fn rpc_config(wire: &dyn Wire, port: u16, service: &str, timeout: &str, clusters: Vec<Value>) -> Value {
    json!({
        "servers": [{
            "default_log_level": "WARN",
            "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "all", "domains": ["*"], "routers": [
                {"match": {"headers": [{"name": "service", "value": service}]}, "route": {"cluster_name": "c", "timeout": timeout}}
            ]}]}],
            "listeners": [{"name": format!("{}_in", wire.name()), "address": format!("127.0.0.1:{port}"),
                "filter_chains": [{"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": wire.name(), "upstream_protocol": wire.name(), "router_config_name": "r"}}]}]}]
        }],
        "cluster_manager": {"clusters": clusters}
    })
}
