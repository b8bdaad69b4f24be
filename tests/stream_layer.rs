//! The stream layer in-process, over real sockets: a request leaves the id map
//! of its upstream connection on response, on timeout and on connection close.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use ferrymesh::config::{ClusterSpec, HostSpec, KeepaliveSpec};
use ferrymesh::host::Host;
use ferrymesh::protocol::bolt::{status, RequestBuilder, BOLT_V1};
use ferrymesh::protocol::{Codec, FrameInfo};
use ferrymesh::stats::Stats;
use ferrymesh::stream::pool::{HostPool, Pick};
use ferrymesh::stream::server::ServerConn;
use ferrymesh::upstream::lb::LbKind;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

fn spec(addr: SocketAddr) -> ClusterSpec {
    ClusterSpec {
        name: "c".into(),
        lb: LbKind::RoundRobin,
        hosts: vec![HostSpec { addr, weight: 1, tls_disable: false }],
        connect_timeout: Duration::from_secs(1),
        max_request_per_conn: 0,
        connections_per_host: 1,
        keepalive: KeepaliveSpec::default(),
        idle_timeout: None,
        max_frame: ferrymesh::config::DEFAULT_MAX_FRAME,
        tls: None,
    }
}

/// An upstream that reads everything and answers nothing; dropping the
/// returned sender closes its connections.
async fn silent_upstream() -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::task::spawn_local(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = vec![0u8; 65536];
        tokio::select! {
            _ = async { while s.read(&mut buf).await.map(|n| n > 0).unwrap_or(false) {} } => {}
            _ = rx => {}
        }
    });
    (addr, tx)
}

/// Statuses of the bolt responses queued on a downstream connection.
fn statuses(out: BytesMut) -> Vec<(u64, u16)> {
    let mut at = 0;
    let mut v = Vec::new();
    while let Some(info) = BOLT_V1.decode(&out[at..], 1 << 20).unwrap() {
        v.push((info.id, BOLT_V1.response_status(&out[at..at + info.len])));
        at += info.len;
    }
    v
}

fn run(f: impl std::future::Future<Output = ()>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tokio::task::LocalSet::new().block_on(&rt, f);
}

fn send_n(
    pool: &Rc<HostPool>,
    server: &Rc<ServerConn>,
    n: u32,
    timeout: Duration,
) -> Rc<ferrymesh::stream::client::ClientConn> {
    let conn = match pool.pick() {
        Pick::Ready(c) => c,
        _ => panic!("connection should be ready"),
    };
    for id in 1..=n {
        let frame = RequestBuilder::new(id, "s", b"x").encode();
        let info: FrameInfo = BOLT_V1.decode(&frame, 1 << 20).unwrap().unwrap();
        conn.send(
            ferrymesh::network::frames::Frame::Read(&frame),
            Some(server.stream(info, frame.len(), None)),
            timeout,
        )
        .map_err(|r| r.1)
        .unwrap();
    }
    conn
}

async fn ready_pool(addr: SocketAddr) -> Rc<HostPool> {
    let pool = HostPool::new(Rc::new(Host::new(addr, 1)), &spec(addr), &BOLT_V1);
    match pool.pick() {
        Pick::Wait(c) => c.ready().await.unwrap(),
        _ => panic!("first pick dials"),
    }
    pool
}

#[test]
fn timeouts_empty_the_id_map() {
    run(async {
        let (addr, _keep) = silent_upstream().await;
        let pool = ready_pool(addr).await;
        let server = Rc::new(ServerConn::new(&BOLT_V1, Rc::new(Stats::default()), None));
        let conn = send_n(&pool, &server, 50, Duration::from_millis(200));
        assert_eq!(conn.in_flight(), 50);
        assert_eq!(pool.host().active(), 50);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(conn.in_flight(), 0, "timed-out requests left the id map");
        assert_eq!(pool.host().active(), 0);
        assert_eq!(server.inflight(), 0);
        let got = statuses(server.io.take_output());
        assert_eq!(got.len(), 50);
        assert!(got.iter().all(|&(_, s)| s == status::TIMEOUT));
        let mut ids: Vec<u64> = got.iter().map(|&(id, _)| id).collect();
        ids.sort();
        assert_eq!(ids, (1..=50).collect::<Vec<u64>>(), "each client id answered once");
    });
}

#[test]
fn a_closed_connection_fails_everything_in_flight_at_once() {
    run(async {
        let (addr, close) = silent_upstream().await;
        let pool = ready_pool(addr).await;
        let server = Rc::new(ServerConn::new(&BOLT_V1, Rc::new(Stats::default()), None));
        let conn = send_n(&pool, &server, 20, Duration::from_secs(30));
        drop(close);
        tokio::time::timeout(Duration::from_secs(2), async {
            while conn.in_flight() > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("in-flight requests failed promptly");
        let got = statuses(server.io.take_output());
        assert_eq!(got.len(), 20);
        assert!(got.iter().all(|&(_, s)| s == status::NO_PROCESSOR));
        assert_eq!(pool.len(), 0, "the closed connection left the pool");
    });
}
