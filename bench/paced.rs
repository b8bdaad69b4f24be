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
                .enumerate()
                .map(|(n, s)| {
                    let a = reader_args.clone();
                    tokio::task::spawn_local(async move {
                        if a.http1_path.is_some() {
                            read_http_answers(n, s, &a, rate, start, end, from_ns).await
                        } else {
                            read_answers(n, s, a, start, end, from_ns).await
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
        match &a.http1_path {
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
}

/// Reads `s` until every answer is in (2 s of silence after `end`), handing
/// the bytes and the time they arrived (ns since `start`) to `take`, which
/// consumes whole answers and says false to stop at a broken one.
async fn read_until_quiet(
    s: std::net::TcpStream,
    start: Instant,
    end: Instant,
    mut take: impl FnMut(&mut BytesMut, u64, &mut Tally) -> bool,
) -> Outcome {
    use tokio::io::AsyncReadExt;
    let hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    let mut t = Tally { answered: 0, errors: 0, mismatches: 0, hist };
    let _ = s.set_nonblocking(true);
    let Ok(mut s) = tokio::net::TcpStream::from_std(s) else {
        return (0, 1, 0, t.hist);
    };
    let mut buf = BytesMut::with_capacity(64 * 1024);
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
async fn read_answers(
    n: usize,
    s: std::net::TcpStream,
    a: Args,
    start: Instant,
    end: Instant,
    from_ns: u64,
) -> Outcome {
    read_until_quiet(s, start, end, |buf, now_ns, t| loop {
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
async fn read_http_answers(
    n: usize,
    s: std::net::TcpStream,
    a: &Args,
    rate: f64,
    start: Instant,
    end: Instant,
    from_ns: u64,
) -> Outcome {
    let step = 1.0 / rate;
    let mut j = 0u64;
    read_until_quiet(s, start, end, |buf, now_ns, t| loop {
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
        // The j-th answer on connection n answers request k = (j - 1) * C + n.
        j += 1;
        let k = (j - 1) * a.connections as u64 + n as u64;
        let due = Duration::from_secs_f64(k as f64 * step).as_nanos() as u64;
        if !ok && due >= from_ns {
            t.errors += 1;
        } else if ok {
            t.answered(due, now_ns, from_ns);
        }
    })
    .await
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
