//! HTTP/2 abuse, whoever owns the codec: each attack is sent on one
//! connection while a well-behaved client (curl, HTTP/2 prior knowledge) uses
//! another; the good client must keep getting its answers promptly, the
//! attacking connection must be cut or held to bounded work, and the process
//! must stay small. Frames are written as raw bytes (RFC 9113).

mod support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::http::{proxy_config, HttpUpstream};
use support::{free_port, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::h2::kind::{CONTINUATION, DATA, HEADERS, PING, RST_STREAM, SETTINGS, WINDOW_UPDATE};
use support::h2::{frame, END_HEADERS, END_STREAM, PREFACE};

/// GET / with :authority x, HPACK from the static table.
const GET: &[u8] = &[0x82, 0x86, 0x84, 0x41, 0x01, b'x'];

/// ferrymesh on an h2c listener in front of an HTTP/1.1 upstream.
async fn setup() -> (HttpUpstream, Proxy, SocketAddr, u32) {
    let up = HttpUpstream::start("up", false).await;
    let port = free_port();
    let p = Proxy::start(&proxy_config(port, "Http2", "Http1", &[up.addr]), 1);
    let pid = p.pid();
    (up, p, format!("127.0.0.1:{port}").parse().unwrap(), pid)
}

/// Resident memory of `pid` in KiB.
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The good client: `n` requests with curl, each on a new connection; the
/// slowest one's time. Panics if any fails.
fn good_client(addr: SocketAddr, n: usize) -> Duration {
    let mut slowest = Duration::ZERO;
    for i in 0..n {
        let t = Instant::now();
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{addr}/ok{i}"))
            .stdin(Stdio::null())
            .output()
            .expect("curl");
        let code = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(code, "200", "good request {i} failed during the attack: {}", String::from_utf8_lossy(&out.stderr));
        slowest = slowest.max(t.elapsed());
    }
    slowest
}

/// Opens an HTTP/2 connection (preface and empty SETTINGS) and spawns a task
/// that writes `attack` chunks until the server stops taking them or `limit`
/// bytes went, reading and discarding what comes back unless `read` is false.
/// Resolves to (bytes written, whether the server closed the connection).
async fn attack(
    addr: SocketAddr,
    read: bool,
    limit: usize,
    mut next: impl FnMut(u32) -> Vec<u8> + Send + 'static,
) -> (usize, bool) {
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if !read {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return false;
            }
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    });
    let mut sent = 0;
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    if w.write_all(&hello).await.is_err() {
        return (0, true);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 0;
    let mut closed = false;
    while sent < limit && Instant::now() < deadline {
        let chunk = next(i);
        i += 1;
        if chunk.is_empty() {
            // The attack is in place; the connection stays open meanwhile.
            break;
        }
        match tokio::time::timeout(Duration::from_secs(5), w.write_all(&chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            Ok(Err(_)) => {
                closed = true;
                break;
            }
            // The server stopped reading: held to bounded work.
            Err(_) => break,
        }
        if reader.is_finished() {
            closed = true;
            break;
        }
    }
    if !closed && read {
        closed =
            tokio::time::timeout(Duration::from_secs(5), reader).await.map(|r| r.unwrap_or(false)).unwrap_or(false);
    }
    (sent, closed)
}

/// Runs `attack` while the good client makes its requests; checks the good
/// client's latency and the process size.
async fn under_attack(
    name: &str,
    read: bool,
    limit: usize,
    expect_closed: bool,
    next: impl FnMut(u32) -> Vec<u8> + Send + 'static,
) {
    let (_up, _p, addr, pid) = setup().await;
    let before = rss_kb(pid);
    let attacker = tokio::spawn(attack(addr, read, limit, next));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let slowest = tokio::task::spawn_blocking(move || good_client(addr, 10)).await.unwrap();
    let (sent, closed) = attacker.await.unwrap();
    let after = rss_kb(pid);
    assert!(slowest < Duration::from_secs(2), "{name}: the good client waited {slowest:?}");
    assert!(after < before + 64 * 1024, "{name}: RSS grew from {before} to {after} KiB");
    if expect_closed {
        assert!(closed, "{name}: the attacking connection was not cut ({sent} bytes sent)");
    }
    eprintln!(
        "{name}: {sent} bytes sent, closed={closed}, RSS {before} -> {after} KiB, good client slowest {slowest:?}"
    );
}

/// CVE-2023-44487: streams opened and reset at once, endlessly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_is_cut() {
    under_attack("rapid reset", true, 64 << 20, true, |i| {
        let mut out = Vec::new();
        for k in 0..100u32 {
            let id = 1 + 2 * (i * 100 + k);
            out.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, GET));
            out.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
        }
        out
    })
    .await;
}

/// CVE-2024-27316 family: a header block that never ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_flood_is_cut() {
    under_attack("CONTINUATION flood", true, 64 << 20, true, |i| {
        if i == 0 {
            return frame(HEADERS, 0, 1, GET);
        }
        // Literal headers without indexing, new name: 0x00, name, value.
        let mut block = Vec::new();
        for _ in 0..100 {
            block.extend_from_slice(&[0x00, 0x03, b'x', b'-', b'a', 0x7f, 0x00]);
            block.extend(std::iter::repeat_n(b'v', 127));
        }
        frame(CONTINUATION, 0, 1, &block)
    })
    .await;
}

/// SETTINGS and PING floods from a client that never reads the ACKs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_and_ping_floods_are_bounded() {
    under_attack("SETTINGS flood", false, 64 << 20, false, |_| {
        (0..1000).flat_map(|_| frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100])).collect()
    })
    .await;
    under_attack("PING flood", false, 64 << 20, false, |_| {
        (0..1000).flat_map(|_| frame(PING, 0, 0, &[0; 8])).collect()
    })
    .await;
}

/// Empty DATA frames on an open stream, endlessly (CVE-2019-9518).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_frame_flood_is_bounded() {
    under_attack("empty DATA flood", true, 64 << 20, false, |i| {
        if i == 0 {
            return frame(HEADERS, END_HEADERS, 1, &[0x83, 0x86, 0x84, 0x41, 0x01, b'x']);
        }
        (0..1000).flat_map(|_| frame(DATA, 0, 1, &[])).collect()
    })
    .await;
}

/// An HPACK bomb: one large header put in the dynamic table, then
/// referenced thousands of times in one small block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpack_bomb_is_refused() {
    under_attack("HPACK bomb", true, 64 << 20, false, |i| {
        let id = 1 + 2 * i;
        let mut block = GET.to_vec();
        if i == 0 {
            // Literal with incremental indexing, new name "x-bomb", a 4000-byte value.
            block.extend_from_slice(&[0x40, 0x06]);
            block.extend_from_slice(b"x-bomb");
            block.extend_from_slice(&[0x7f, 0xa1, 0x1e]); // 127 + 3873 = 4000
            block.extend(std::iter::repeat_n(b'B', 4000));
        }
        // Index 63 (the newest dynamic entry, after :authority's), 2,000 times.
        block.extend(std::iter::repeat_n(0xbf, 2000));
        frame(HEADERS, END_HEADERS | END_STREAM, id, &block)
    })
    .await;
}

/// A reader that opens its window to nothing and asks for 100 × 1 MB: the
/// answers wait upstream (back-pressure), not in ferrymesh's memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_window_reader_holds_no_memory() {
    under_attack("zero window", false, 1 << 20, false, |i| {
        if i == 0 {
            // SETTINGS_INITIAL_WINDOW_SIZE = 0.
            let mut out = frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0]);
            for k in 0..100u32 {
                let mut block = vec![0x82, 0x86, 0x44, 14];
                block.extend_from_slice(b"/bytes/1000000");
                block.extend_from_slice(&[0x41, 0x01, b'x']);
                out.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1 + 2 * k, &block));
            }
            return out;
        }
        if i > 40 {
            return Vec::new();
        }
        // Two seconds of the window shut while the good client works.
        std::thread::sleep(Duration::from_millis(50));
        frame(PING, 0, 0, &[0; 8])
    })
    .await;
}

/// CPU time of `pid` (user and system), from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's closing parenthesis; utime and stime
    // are the 14th and 15th of the line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|v| v.parse().ok()).collect();
    Duration::from_millis(f.iter().sum::<u64>() * 10)
}

/// A client that lets its streams' windows open but keeps the connection's
/// shut holds answers waiting; the worker waits with them, not spins (each
/// pass woke the waiting streams, whose wake brought on the next pass: a
/// core at 100% for as long as the client liked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shut_connection_window_costs_no_cpu() {
    let (_up, _p, addr, pid) = setup().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    // SETTINGS_INITIAL_WINDOW_SIZE 1 MiB; the connection window stays at 65,535.
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[0, 4, 0, 0x10, 0, 0]));
    for k in 0..4u32 {
        let mut block = vec![0x82, 0x86, 0x44, 12];
        block.extend_from_slice(b"/bytes/90000");
        block.extend_from_slice(&[0x41, 0x01, b'x']);
        hello.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1 + 2 * k, &block));
    }
    s.write_all(&hello).await.unwrap();
    // Read until the connection window is spent.
    let (mut buf, mut data) = (Vec::new(), 0usize);
    let mut chunk = [0u8; 16384];
    while data < 65_535 {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "closed");
        buf.extend_from_slice(&chunk[..n]);
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            if buf[3] == DATA {
                data += len;
            }
            buf.drain(..9 + len);
        }
    }
    let before = cpu_time(pid);
    let slowest = good_client(addr, 5);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = cpu_time(pid) - before;
    assert!(slowest < Duration::from_secs(2), "good client slowed to {slowest:?}");
    // Spinning, the worker took all of these 2 s and more; waiting, a few ms.
    assert!(spent < Duration::from_millis(700), "the worker spent {spent:?} of CPU while the window was shut");
}

/// HTTP/1.1: a client that asks for 200 MB and never reads; another that
/// sends its head a byte a second. Neither holds memory or the worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_slow_readers_and_slow_heads_are_bounded() {
    let up = HttpUpstream::start("up", false).await;
    let mut cfg = proxy_config(free_port(), "Http1", "Http1", &[up.addr]);
    cfg["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["config"]["header_read_timeout"] = json!("2s");
    let p = Proxy::start(&cfg, 1);
    let addr = p.addr;
    let before = rss_kb(p.pid());
    let mut readers = Vec::new();
    for _ in 0..10 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /bytes/20000000 HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        readers.push(s);
    }
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let slow_head = tokio::spawn(async move {
        for b in b"GET /slow-head HTTP/1.1\r\nHost: x\r\n".iter() {
            if slow.write_all(&[*b]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let mut buf = [0u8; 256];
        matches!(tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf)).await, Ok(Ok(0)) | Ok(Err(_)))
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{addr}/ok"))
            .output()
            .expect("curl")
    })
    .await
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    assert!(t.elapsed() < Duration::from_secs(2), "the good client waited {:?}", t.elapsed());
    let after = rss_kb(p.pid());
    assert!(after < before + 64 * 1024, "10 slow readers of 20 MB grew RSS from {before} to {after} KiB");
    assert!(slow_head.await.unwrap(), "a head sent a byte at a time was not cut by header_read_timeout");
    drop(readers);
}

/// Reads what `s` gives until it ends (the end of input or an error) or
/// nothing comes for 5 s: the bytes read, and whether it ended.
async fn read_to_end_or_quiet(s: &mut TcpStream) -> (usize, bool) {
    let (mut got, mut buf) = (0, vec![0u8; 256 * 1024]);
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got += n,
            Err(_) => return (got, false),
        }
    }
}

/// Clients that stop reading their answers are closed once 15 s pass with
/// none of their bytes taken (MOSN's write deadline), over HTTP/1.1 (the
/// pass-through, and hyper's server) and HTTP/2: each asks for 64 MB, more
/// than the kernel's buffers hold, and reads nothing for 17 s; then its
/// connection ends before the answer does.
/// (Without the deadline the whole answer comes and the connection stays.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_take_no_answer_are_closed_after_the_write_timeout() {
    const N: usize = 64_000_000;
    let up = HttpUpstream::start("up", false).await;
    let p1 = Proxy::start(&proxy_config(free_port(), "Http1", "Http1", &[up.addr]), 1);
    let p2 = Proxy::start(&proxy_config(free_port(), "Http2", "Http1", &[up.addr]), 1);
    // Every request through hyper's server instead of the pass-through.
    let mut hyper_cfg = proxy_config(free_port(), "Http1", "Http1", &[up.addr]);
    hyper_cfg["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["config"]["http1_passthrough"] =
        json!(false);
    let p3 = Proxy::start(&hyper_cfg, 1);
    let path = format!("/bytes/{N}");
    let get = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut h1 = TcpStream::connect(p1.addr).await.unwrap();
    h1.write_all(get.as_bytes()).await.unwrap();
    let mut on_hyper = TcpStream::connect(p3.addr).await.unwrap();
    on_hyper.write_all(get.as_bytes()).await.unwrap();
    let mut h2 = TcpStream::connect(p2.addr).await.unwrap();
    let mut hello = PREFACE.to_vec();
    // Stream and connection windows of 2^31 - 1: only TCP holds the answer back.
    hello.extend(frame(SETTINGS, 0, 0, &[0, 4, 0x7f, 0xff, 0xff, 0xff]));
    hello.extend(frame(WINDOW_UPDATE, 0, 0, &(0x7fff_ffff_u32 - 65_535).to_be_bytes()));
    // GET, http, :authority x, :path as a literal without indexing.
    let mut block = vec![0x82, 0x86, 0x41, 0x01, b'x', 0x04, path.len() as u8];
    block.extend_from_slice(path.as_bytes());
    hello.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &block));
    h2.write_all(&hello).await.unwrap();
    tokio::time::sleep(Duration::from_secs(17)).await;
    for (name, s) in [("HTTP/1.1", &mut h1), ("HTTP/2", &mut h2), ("HTTP/1.1 on hyper", &mut on_hyper)] {
        let (got, ended) = read_to_end_or_quiet(s).await;
        assert!(ended && got < N, "{name}: read {got} bytes of {N}; the connection ended: {ended}");
    }
}
