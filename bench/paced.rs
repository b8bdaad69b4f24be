//! boltload's fixed-rate mode (`--rate R`): requests sent at R per second in
//! total, on a schedule that does not wait for answers, and every latency
//! counted from the time the request was due, not the time it left, so a
//! stall delays the requests behind it in the figures as it would in life
//! (no coordinated omission).
//!
//! One thread sends: request k is due at start + k/R and goes on connection
//! k mod C. One more thread reads every connection's answers (a tokio
//! runtime): the load core runs two threads, not one per connection. The payload
//! carries the connection, the sequence number (also the request id) and the
//! due time, so a reader checks each answer (its connection, its id) and
//! times it without any state shared with the sender.
//!
//! `--protocol http1` sends keep-alive GETs instead (`--path`, `/small` by
//! default). HTTP/1.1 answers come back in order on their connection, so the
//! j-th answer on connection c is request k = (j - 1) * C + c, and its due
//! time follows from k; each must be a 200 with its whole body.
//!
//! `--protocol h2c` sends each GET as a stream of an HTTP/2 connection (prior
//! knowledge, [`h2`]): the j-th request on connection c is stream 2j - 1, so
//! an answer's stream tells its request and due time; each must be a 200
//! whose stream ends.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;

use super::Args;

/// What one run measured.
pub struct Paced {
    pub sent: u64,
    pub answered: u64,
    pub errors: u64,
    pub mismatches: u64,
    pub hist: Histogram<u64>,
    pub measured: Duration,
}

/// `c<conn>s<seq>t<due ns>|` then padding to `size`.
fn payload(conn: usize, seq: u64, due_ns: u64, size: usize) -> Vec<u8> {
    let mut p = format!("c{conn}s{seq}t{due_ns}|").into_bytes();
    p.resize(size.max(p.len()), b'x');
    p
}

/// (conn, seq, due ns) of an echoed payload.
fn parse(p: &[u8]) -> Option<(usize, u64, u64)> {
    let text = std::str::from_utf8(p.split(|&b| b == b'|').next()?).ok()?;
    let rest = text.strip_prefix('c')?;
    let (conn, rest) = rest.split_once('s')?;
    let (seq, due) = rest.split_once('t')?;
    Some((conn.parse().ok()?, seq.parse().ok()?, due.parse().ok()?))
}

pub fn run(a: &Args, rate: f64) -> Paced {
    let conns: Vec<TcpStream> = (0..a.connections)
        .map(|_| {
            let s = TcpStream::connect(&a.target).unwrap_or_else(|e| {
                eprintln!("boltload: connect {}: {e}", a.target);
                std::process::exit(1)
            });
            let _ = s.set_nodelay(true);
            s
        })
        .collect();
    let mut hellos = Vec::new();
    for (c, s) in conns.iter().enumerate() {
        let left = if a.h2c { h2::handshake(s) } else { Ok(BytesMut::new()) };
        hellos.push(left.unwrap_or_else(|e| {
            eprintln!("boltload: HTTP/2 handshake on connection {c}: {e}");
            std::process::exit(1)
        }));
    }
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + Duration::from_secs_f64(a.warmup);
    let end = measure_from + Duration::from_secs_f64(a.duration);
    let from_ns = (measure_from - start).as_nanos() as u64;
    // The readers: one thread with a tokio runtime reads every connection
    // (64 reader threads on the load core would compete with the sender and
    // delay it, which the due-time latencies would then blame on the target).
    let clones: Vec<std::net::TcpStream> = conns.iter().map(|s| s.try_clone().expect("clone socket")).collect();
    let reader_args = a.clone();
    let readers = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let tasks: Vec<_> = clones
                .into_iter()
                .zip(hellos)
                .enumerate()
                .map(|(n, (s, left))| {
                    let a = reader_args.clone();
                    let w = Window { start, end, from_ns, rate, conns: a.connections };
                    tokio::task::spawn_local(async move {
                        if a.h2c {
                            read_h2_answers(n, s, left, w).await
                        } else if a.http_path.is_some() {
                            read_http_answers(n, s, w).await
                        } else {
                            read_answers(n, s, a, w).await
                        }
                    })
                })
                .collect();
            let mut all = Vec::new();
            for t in tasks {
                if let Ok(r) = t.await {
                    all.push(r);
                }
            }
            all
        })
    });
    // The sender.
    let mut writers: Vec<TcpStream> = conns;
    let step = 1.0 / rate;
    let mut sent = 0u64;
    let mut seqs = vec![0u64; writers.len()];
    let mut out = BytesMut::new();
    for k in 0u64.. {
        let due = start + Duration::from_secs_f64(k as f64 * step);
        if due >= end {
            break;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let c = (k % writers.len() as u64) as usize;
        seqs[c] += 1;
        let due_ns = (due - start).as_nanos() as u64;
        out.clear();
        match &a.http_path {
            Some(path) if a.h2c => h2::get(&mut out, (2 * seqs[c] - 1) as u32, path),
            Some(path) => out.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").as_bytes()),
            None => a.request(seqs[c] as u32, &payload(c, seqs[c], due_ns, a.payload), &mut out),
        }
        if write_all(&mut writers[c], &out).is_err() {
            eprintln!("boltload: write failed on connection {c}");
            break;
        }
        if due_ns >= from_ns {
            sent += 1;
        }
    }
    drop(writers.drain(..));
    let mut total = Paced {
        sent,
        answered: 0,
        errors: 0,
        mismatches: 0,
        hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
        measured: end - measure_from,
    };
    for (answered, errors, mismatches, hist) in readers.join().unwrap_or_default() {
        total.answered += answered;
        total.errors += errors;
        total.mismatches += mismatches;
        let _ = total.hist.add(&hist);
    }
    // A request due in the window and never answered is an error.
    total.errors += total.sent.saturating_sub(total.answered);
    total
}

/// The socket is non-blocking (the readers' runtime set it so): a full send
/// buffer is waited out.
fn write_all(s: &mut TcpStream, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        match s.write(buf) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_micros(50)),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

type Outcome = (u64, u64, u64, Histogram<u64>);

/// The schedule: when the run starts and ends, when measuring starts (ns
/// from the start), and how requests are spread.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
    from_ns: u64,
    rate: f64,
    conns: usize,
}

/// What a connection's reader counted.
struct Tally {
    answered: u64,
    errors: u64,
    mismatches: u64,
    hist: Histogram<u64>,
}

impl Tally {
    /// An answer due at `due` ns arrived at `now` ns: timed if it was due
    /// inside the measured window.
    fn answered(&mut self, due: u64, now: u64, from_ns: u64) {
        if due >= from_ns {
            self.answered += 1;
            let _ = self.hist.record(now.saturating_sub(due) / 1000);
        }
    }

    /// The `j`-th answer (from 1) on connection `n` came at `now` ns, a good
    /// one if `ok`: it answers request k = (j - 1) * conns + n, due at k / rate.
    fn nth(&mut self, j: u64, n: usize, w: &Window, ok: bool, now: u64) {
        let k = (j - 1) * w.conns as u64 + n as u64;
        let due = Duration::from_secs_f64(k as f64 / w.rate).as_nanos() as u64;
        if ok {
            self.answered(due, now, w.from_ns);
        } else if due >= w.from_ns {
            self.errors += 1;
        }
    }
}

/// Reads `s` until every answer is in (2 s of silence after `end`), handing
/// the bytes and the time they arrived (ns since `start`) to `take`, which
/// consumes whole answers and says false to stop at a broken one.
async fn read_until_quiet(
    s: std::net::TcpStream,
    mut buf: BytesMut,
    w: Window,
    mut take: impl FnMut(&mut BytesMut, u64, &mut Tally) -> bool,
) -> Outcome {
    let Window { start, end, .. } = w;
    use tokio::io::AsyncReadExt;
    let hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    let mut t = Tally { answered: 0, errors: 0, mismatches: 0, hist };
    let _ = s.set_nonblocking(true);
    let Ok(mut s) = tokio::net::TcpStream::from_std(s) else {
        return (0, 1, 0, t.hist);
    };
    buf.reserve(64 * 1024);
    loop {
        let wait =
            if Instant::now() < end { end - Instant::now() + Duration::from_secs(2) } else { Duration::from_secs(2) };
        match tokio::time::timeout(wait, s.read_buf(&mut buf)).await {
            Ok(Ok(k)) if k > 0 => {}
            _ => break,
        }
        if !take(&mut buf, start.elapsed().as_nanos() as u64, &mut t) {
            t.errors += 1;
            break;
        }
    }
    (t.answered, t.errors, t.mismatches, t.hist)
}

/// Reads connection `n`'s bolt (or Dubbo) answers, checking each one's
/// connection and id against its payload and timing it.
async fn read_answers(n: usize, s: std::net::TcpStream, a: Args, w: Window) -> Outcome {
    let from_ns = w.from_ns;
    read_until_quiet(s, BytesMut::new(), w, |buf, now_ns, t| loop {
        let (info, frame) = match a.next_response(buf) {
            Ok(Some(r)) => r,
            Ok(None) => return true,
            Err(e) => {
                eprintln!("boltload: bad frame: {e}");
                return false;
            }
        };
        let Some(content) = a.content(&frame) else {
            t.errors += 1;
            continue;
        };
        match parse(&content) {
            Some((c, seq, due)) if c == n && seq == info.id => t.answered(due, now_ns, from_ns),
            _ => t.mismatches += 1,
        }
    })
    .await
}

/// [`read_answers`] for HTTP/1.1: answers in order, each a 200 with its
/// whole body (`Content-Length`), timed from its request's due time.
async fn read_http_answers(n: usize, s: std::net::TcpStream, w: Window) -> Outcome {
    let mut j = 0u64;
    read_until_quiet(s, BytesMut::new(), w, |buf, now_ns, t| loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let head = match resp.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return true,
            Err(e) => {
                eprintln!("boltload: bad HTTP answer on connection {n}: {e}");
                return false;
            }
        };
        let body = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok());
        let Some(body) = body else {
            eprintln!("boltload: an HTTP answer without Content-Length on connection {n}");
            return false;
        };
        if buf.len() < head + body {
            return true;
        }
        let ok = resp.code == Some(200);
        let _ = buf.split_to(head + body);
        j += 1;
        t.nth(j, n, &w, ok, now_ns);
    })
    .await
}

/// [`read_answers`] for h2c: an answer is timed when its stream ends, and
/// must have begun with status 200. `left` holds what the handshake read
/// past the settings.
async fn read_h2_answers(n: usize, s: std::net::TcpStream, left: BytesMut, w: Window) -> Outcome {
    // Streams whose head arrived, and whether it said 200.
    let mut open: HashMap<u32, bool> = HashMap::new();
    read_until_quiet(s, left, w, |buf, now_ns, t| loop {
        let Some((kind, flags, stream, len)) = h2::next(buf) else {
            return true;
        };
        let frame = buf.split_to(h2::HEAD + len);
        let payload = &frame[h2::HEAD..];
        let ended = flags & h2::END_STREAM != 0;
        let ok = match kind {
            h2::HEADERS if ended => h2::status(flags, payload) == Some(200),
            h2::HEADERS => {
                open.insert(stream, h2::status(flags, payload) == Some(200));
                continue;
            }
            h2::DATA if ended => open.remove(&stream).unwrap_or(false),
            h2::RST_STREAM => {
                open.remove(&stream);
                false
            }
            h2::GOAWAY => {
                eprintln!("boltload: GOAWAY on connection {n}");
                return false;
            }
            _ => continue,
        };
        // The j-th request on a connection is stream 2j - 1.
        t.nth(u64::from(stream).div_ceil(2), n, &w, ok, now_ns);
    })
    .await
}

/// HTTP/2 as the fixed-rate mode speaks it (prior knowledge, RFC 9113), on
/// `protocol::http::h2`'s frames and without HPACK state: a request's fields are static-table
/// references and literals never indexed, and an answer's status is its
/// first field, which encoders send as a static-table index for the common
/// codes (`:status 200` is index 8).
mod h2 {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    use bytes::BytesMut;
    use ferrymesh::protocol::http::h2::{self as wire, hpack, setting, Head, DEFAULT_WINDOW, MAX_WINDOW, PREFACE};

    pub use ferrymesh::protocol::http::h2::flag::{self, END_STREAM};
    pub use ferrymesh::protocol::http::h2::kind::{self, DATA, GOAWAY, HEADERS, RST_STREAM};
    pub use ferrymesh::protocol::http::h2::HEAD_LEN as HEAD;

    /// A GET of `path` on `stream`, in one HEADERS frame that ends the stream.
    pub fn get(out: &mut BytesMut, stream: u32, path: &str) {
        let mut block = BytesMut::new();
        // :method GET, :scheme http (static 2 and 6).
        block.extend_from_slice(&[0x82, 0x86]);
        // :path and :authority: literals without indexing, names static 4 and 1.
        for (name, value) in [(4, path), (1, "bench")] {
            hpack::put_integer(&mut block, 0, 4, name);
            hpack::put_string(&mut block, value.as_bytes());
        }
        wire::write_frame(out, HEADERS, END_STREAM | flag::END_HEADERS, stream, &block);
    }

    /// The frame at the start of `buf` once it is whole: type, flags,
    /// stream and payload length.
    pub fn next(buf: &[u8]) -> Option<(u8, u8, u32, usize)> {
        let head = Head::parse(buf)?;
        let len = head.len as usize;
        (buf.len() >= HEAD + len).then_some((head.kind, head.flags, head.stream, len))
    }

    /// The status a HEADERS payload begins with, when it is a static-table
    /// index (8 to 14: 200, 204, 206, 304, 400, 404, 500).
    pub fn status(flags: u8, payload: &[u8]) -> Option<u16> {
        let mut block = wire::unpad(flags, payload)?;
        if flags & flag::PRIORITY != 0 {
            block = block.get(5..)?;
        }
        let first = *block.first()?;
        [200, 204, 206, 304, 400, 404, 500].get(usize::from(first.checked_sub(0x88)?)).copied()
    }

    /// Opens the connection: preface, our settings (no push, stream windows
    /// as large as they go) and a connection window as large, so no answer
    /// waits on a WINDOW_UPDATE of ours; then reads until the server's
    /// settings (acknowledged) and its acknowledgement of ours. Returns the
    /// bytes read past them.
    pub fn handshake(s: &TcpStream) -> std::io::Result<BytesMut> {
        let mut out = BytesMut::new();
        out.extend_from_slice(PREFACE);
        wire::write_settings(&mut out, &[(setting::ENABLE_PUSH, 0), (setting::INITIAL_WINDOW_SIZE, MAX_WINDOW)]);
        wire::write_window_update(&mut out, 0, MAX_WINDOW - DEFAULT_WINDOW);
        let mut w = s;
        w.write_all(&out)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let (mut theirs, mut acked) = (false, false);
        let mut buf = BytesMut::new();
        let mut chunk = [0u8; 4096];
        let mut r = s;
        while !(theirs && acked) {
            while let Some((kind, flags, _, len)) = next(&buf) {
                if theirs && acked {
                    break;
                }
                let _ = buf.split_to(HEAD + len);
                match (kind, flags & flag::ACK != 0) {
                    (kind::SETTINGS, true) => acked = true,
                    (kind::SETTINGS, false) => {
                        theirs = true;
                        let mut ack = BytesMut::new();
                        wire::write_frame(&mut ack, kind::SETTINGS, flag::ACK, 0, &[]);
                        w.write_all(&ack)?;
                    }
                    (GOAWAY, _) => return Err(std::io::Error::other("GOAWAY during the handshake")),
                    _ => {}
                }
            }
            if theirs && acked {
                break;
            }
            let k = r.read(&mut chunk)?;
            if k == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..k]);
        }
        s.set_read_timeout(None)?;
        Ok(buf)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_get_is_one_headers_frame_and_statuses_read_back() {
            let mut out = BytesMut::new();
            get(&mut out, 3, &format!("/{}", "p".repeat(200)));
            let (kind, flags, stream, len) = next(&out).unwrap();
            assert_eq!((kind, flags, stream, len + HEAD), (HEADERS, END_STREAM | flag::END_HEADERS, 3, out.len()));
            // :path's length needs a second byte past the 7-bit prefix.
            assert_eq!(&out[HEAD + 2..HEAD + 5], &[0x04, 0x7f, 201 - 127]);
            assert_eq!(status(flag::END_HEADERS, &[0x88, 0x40]), Some(200));
            assert_eq!(status(flag::PADDED, &[2, 0x8d, 0, 0]), Some(404));
            assert_eq!(status(flag::PRIORITY, &[0, 0, 0, 0, 0, 0x88]), Some(200));
            assert_eq!(status(0, &[0x48, 0x03]), None, "a literal status is not read");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn payloads_read_back() {
        let p = super::payload(3, 17, 123_456_789, 128);
        assert_eq!(p.len(), 128);
        assert_eq!(super::parse(&p), Some((3, 17, 123_456_789)));
    }
}
