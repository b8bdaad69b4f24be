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

/// `downstream_connections_parked`, summed over the listener's series.
fn parked(admin_port: u16) -> f64 {
    scrape(admin_port)
        .iter()
        .filter(|(k, _)| k.starts_with("ferrymesh_downstream_connections_parked"))
        .map(|(_, v)| v)
        .sum()
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

#[tokio::test]
async fn a_parked_connection_closes_at_its_idle_timeout() {
    let up = Upstream::start("u", Mode::Echo).await;
    let (port, admin_port) = (free_port(), free_port());
    let proxy = Proxy::start(&parking_config(port, admin_port, up.addr, "600ms"), 1);
    let mut answered = Client::connect(proxy.addr).await;
    answered.send(&request(1, "once")).await;
    assert_eq!(answered.recv().await.status, 0);
    // One that never sends a byte is parked from its accept on.
    let mut silent = Client::connect(proxy.addr).await;
    assert!(until_parked(admin_port, 2.0).await, "both park: {}", parked(admin_port));
    assert!(!answered.closed_within(Duration::from_millis(200)).await, "closed before its idle timeout");
    assert!(answered.closed_within(Duration::from_secs(3)).await, "a parked connection outlived its idle timeout");
    assert!(silent.closed_within(Duration::from_secs(3)).await, "a silent connection outlived its idle timeout");
    assert!(until_parked(admin_port, 0.0).await);
}

#[tokio::test]
async fn a_drain_closes_parked_connections_at_once() {
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
    proxy.signal("TERM");
    for cl in &mut clients {
        assert!(cl.closed_within(Duration::from_secs(2)).await, "a parked connection was left open by the drain");
    }
    let code = tokio::task::spawn_blocking(move || proxy.wait_exit(Duration::from_secs(5))).await.unwrap();
    assert_eq!(code, Some(0));
}
