//! boltload: a bolt v1 (or Dubbo, `--protocol dubbo`) load generator that
//! checks every answer.
//!
//! C connections, each keeping P requests in flight. Every connection uses ids
//! 1..=P, so ids collide across connections exactly as real clients' do, and
//! every response is checked: its id must be one in flight on that connection
//! and its content must be the unique payload sent with that id. A response
//! delivered to the wrong client, or with the wrong id, is a mismatch.
//!
//! `boltload --target 127.0.0.1:2045 --connections 64 --inflight 8 --duration 10
//!  --warmup 2 --payload 128 [--service S] [--protocol bolt|dubbo|http1|h2c] [--path P] [--rate R] [--json]`
//!
//! With `--rate R`, requests go at a fixed R per second instead (`paced.rs`),
//! and latency counts from when each was due.

#[path = "paced.rs"]
mod paced;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ferrymesh::protocol::bolt::{RequestBuilder, BOLT_V1};
use ferrymesh::protocol::dubbo::{self, hessian, DUBBO};
use ferrymesh::protocol::{Codec, CodecError, FrameInfo, FrameKind};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Clone)]
struct Args {
    target: String,
    connections: usize,
    inflight: u32,
    duration: f64,
    warmup: f64,
    payload: usize,
    service: String,
    dubbo: bool,
    json: bool,
    /// Requests per second in total (the fixed-rate mode), if given.
    rate: Option<f64>,
    /// `--protocol http1` or `h2c`: GETs of this path (fixed-rate mode only).
    http_path: Option<String>,
    /// `--protocol h2c`: the GETs go as HTTP/2 streams (prior knowledge).
    h2c: bool,
    /// A Dubbo request cut around its argument: the header's first 4 bytes,
    /// the body before the argument and the body after it.
    dubbo_parts: (Vec<u8>, Vec<u8>, Vec<u8>),
}

impl Args {
    fn codec(&self) -> &'static dyn Codec {
        if self.dubbo {
            &DUBBO
        } else {
            &BOLT_V1
        }
    }

    /// Appends request `id` carrying `payload`.
    fn request(&self, id: u32, payload: &[u8], out: &mut BytesMut) {
        if self.dubbo {
            // Built in place: the load tool's own cost must not cap the run.
            let (head, before, after) = &self.dubbo_parts;
            let mut arg = Vec::with_capacity(payload.len() + 3);
            hessian::write_string(&mut arg, std::str::from_utf8(payload).unwrap_or(""));
            out.extend_from_slice(head);
            out.extend_from_slice(&u64::from(id).to_be_bytes());
            out.extend_from_slice(&((before.len() + arg.len() + after.len()) as u32).to_be_bytes());
            out.extend_from_slice(before);
            out.extend_from_slice(&arg);
            out.extend_from_slice(after);
        } else {
            RequestBuilder::new(id, &self.service, payload).encode_into(out);
        }
    }

    /// The next whole response in `buf`, taken out of it (other frames, such
    /// as heartbeat acks, are dropped); `None` until one is whole.
    fn next_response(&self, buf: &mut BytesMut) -> Result<Option<(FrameInfo, BytesMut)>, CodecError> {
        while let Some(info) = self.codec().decode(buf, 64 << 20)? {
            let frame = buf.split_to(info.len);
            if info.kind == FrameKind::Response {
                return Ok(Some((info, frame)));
            }
        }
        Ok(None)
    }

    /// The content a successful answer carries (the echoed payload).
    fn content(&self, frame: &[u8]) -> Option<Vec<u8>> {
        if self.dubbo {
            let value = dubbo::frame::response_encoded_value(frame)?;
            match hessian::Reader::new(value).string() {
                Ok(Some(Some(text))) => Some(text.to_vec()),
                _ => None,
            }
        } else {
            (BOLT_V1.response_status(frame) == 0).then(|| BOLT_V1.split(frame).2.to_vec())
        }
    }

    /// Whether `frame` is a successful answer, and whether it carries `payload`.
    fn check(&self, frame: &[u8], payload: &[u8]) -> (bool, bool) {
        if self.dubbo {
            let ok = dubbo::frame::status(frame) == dubbo::status::OK;
            let value = dubbo::frame::response_encoded_value(frame).map(|v| hessian::Reader::new(v).string());
            (ok, matches!(value, Some(Ok(Some(Some(text)))) if text == payload))
        } else {
            let (_, _, content) = BOLT_V1.split(frame);
            (BOLT_V1.response_status(frame) == 0, content == payload)
        }
    }
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        target: "127.0.0.1:2045".into(),
        connections: 64,
        inflight: 8,
        duration: 10.0,
        warmup: 2.0,
        payload: 128,
        service: "com.example.EchoService:1.0".into(),
        dubbo: false,
        json: false,
        rate: None,
        http_path: None,
        h2c: false,
        dubbo_parts: Default::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--json" {
            a.json = true;
            continue;
        }
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<f64>().map_err(|_| format!("{flag}: not a number"));
        match flag.as_str() {
            "--target" => a.target = v,
            "--connections" => a.connections = num(&v)? as usize,
            "--inflight" => a.inflight = num(&v)? as u32,
            "--duration" => a.duration = num(&v)?,
            "--warmup" => a.warmup = num(&v)?,
            "--payload" => a.payload = num(&v)? as usize,
            "--service" => a.service = v,
            "--rate" => a.rate = Some(num(&v)?).filter(|r| *r > 0.0),
            "--protocol" => match v.as_str() {
                "bolt" => a.dubbo = false,
                "dubbo" => a.dubbo = true,
                "http1" | "h2c" => {
                    a.h2c = v == "h2c";
                    a.http_path = Some(a.http_path.take().unwrap_or_else(|| "/small".into()));
                }
                other => return Err(format!("--protocol: {other:?} is not bolt, dubbo, http1 or h2c")),
            },
            "--path" => a.http_path = Some(v),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let template = dubbo::frame::request(0, &a.service, "echo", "", true);
    let arg = dubbo::frame::request_arg_encoded(&template).ok_or("bad Dubbo template")?;
    let start = arg.as_ptr() as usize - template.as_ptr() as usize;
    let end = start + arg.len();
    a.dubbo_parts = (template[..4].to_vec(), template[16..start].to_vec(), template[end..].to_vec());
    if a.connections == 0 || a.inflight == 0 {
        return Err("--connections and --inflight must be positive".into());
    }
    if a.http_path.is_some() && a.rate.is_none() {
        return Err(
            "--protocol http1 and h2c run at a fixed rate only (--rate); wrk and h2load are the full-load tools".into(),
        );
    }
    Ok(a)
}

#[derive(Default)]
struct Totals {
    requests: u64,
    errors: u64,
    mismatches: u64,
    hist: Option<Histogram<u64>>,
}

fn payload(conn: usize, seq: u64, size: usize) -> Vec<u8> {
    let mut p = format!("c{conn}s{seq}|").into_bytes();
    p.resize(size.max(p.len()), b'x');
    p
}

async fn run_conn(n: usize, a: Args, measure_from: Instant, end: Instant, totals: Rc<RefCell<Totals>>) {
    let mut s = match TcpStream::connect(&a.target).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("boltload: connect {}: {e}", a.target);
            totals.borrow_mut().errors += 1;
            return;
        }
    };
    let _ = s.set_nodelay(true);
    // Per id: the sequence number whose payload is in flight, and when it left.
    let mut slots: Vec<(u64, Instant)> = vec![(0, Instant::now()); a.inflight as usize + 1];
    let mut seq = 0u64;
    let mut out = BytesMut::new();
    for id in 1..=a.inflight {
        seq += 1;
        slots[id as usize] = (seq, Instant::now());
        a.request(id, &payload(n, seq, a.payload), &mut out);
    }
    if s.write_all(&out).await.is_err() {
        totals.borrow_mut().errors += 1;
        return;
    }
    out.clear();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut outstanding = a.inflight as usize;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    let (mut ok, mut errors, mut mismatches) = (0u64, 0u64, 0u64);
    while outstanding > 0 {
        match tokio::time::timeout(Duration::from_secs(10), s.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => {
                errors += outstanding as u64;
                break;
            }
        }
        let now = Instant::now();
        loop {
            let (info, frame) = match a.next_response(&mut buf) {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    eprintln!("boltload: bad frame: {e}");
                    errors += outstanding as u64;
                    outstanding = 0;
                    break;
                }
            };
            let id = info.id as usize;
            outstanding -= 1;
            if id == 0 || id >= slots.len() || slots[id].0 == 0 {
                mismatches += 1;
                continue;
            }
            let (sent_seq, sent_at) = slots[id];
            slots[id].0 = 0;
            let (success, same) = a.check(&frame, &payload(n, sent_seq, a.payload));
            if !success {
                errors += 1;
            } else if !same {
                mismatches += 1;
            } else if sent_at >= measure_from {
                ok += 1;
                let _ = hist.record((now - sent_at).as_micros() as u64);
            }
            if now < end {
                seq += 1;
                slots[id] = (seq, now);
                a.request(id as u32, &payload(n, seq, a.payload), &mut out);
                outstanding += 1;
            }
        }
        if !out.is_empty() {
            if s.write_all(&out).await.is_err() {
                errors += outstanding as u64;
                break;
            }
            out.clear();
        }
    }
    let mut t = totals.borrow_mut();
    t.requests += ok;
    t.errors += errors;
    t.mismatches += mismatches;
    match &mut t.hist {
        Some(h) => {
            let _ = h.add(&hist);
        }
        None => t.hist = Some(hist),
    }
}

fn main() {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("boltload: {e}");
            std::process::exit(2);
        }
    };
    if let Some(rate) = a.rate {
        let r = paced::run(&a, rate);
        let q = |p: f64| r.hist.value_at_quantile(p);
        let rps = r.answered as f64 / r.measured.as_secs_f64().max(1e-9);
        if a.json {
            println!(
                "{{\"rate\":{rate},\"requests\":{},\"rps\":{rps:.1},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"errors\":{},\"mismatches\":{}}}",
                r.answered,
                q(0.5),
                q(0.9),
                q(0.99),
                q(0.999),
                r.hist.max(),
                r.errors,
                r.mismatches
            );
        } else {
            println!(
                "{} requests at {rate}/s: p50 {} us, p99 {} us, p99.9 {} us, {} errors, {} mismatches",
                r.answered,
                q(0.5),
                q(0.99),
                q(0.999),
                r.errors,
                r.mismatches
            );
        }
        if r.errors > 0 || r.mismatches > 0 {
            std::process::exit(1);
        }
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let local = tokio::task::LocalSet::new();
    let totals = Rc::new(RefCell::new(Totals::default()));
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(a.warmup);
    let end = measure_from + Duration::from_secs_f64(a.duration);
    local.block_on(&rt, async {
        let tasks: Vec<_> = (0..a.connections)
            .map(|n| tokio::task::spawn_local(run_conn(n, a.clone(), measure_from, end, totals.clone())))
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
    let measured = end.min(Instant::now()).saturating_duration_since(measure_from).as_secs_f64().max(1e-9);
    let t = totals.borrow();
    let (p50, p99) = t.hist.as_ref().map_or((0, 0), |h| (h.value_at_quantile(0.5), h.value_at_quantile(0.99)));
    let rps = t.requests as f64 / measured;
    if a.json {
        println!(
            "{{\"requests\":{},\"rps\":{:.1},\"p50_us\":{},\"p99_us\":{},\"errors\":{},\"mismatches\":{}}}",
            t.requests, rps, p50, p99, t.errors, t.mismatches
        );
    } else {
        println!(
            "{} requests in {:.1}s: {:.0} req/s, p50 {} us, p99 {} us, {} errors, {} mismatches",
            t.requests, measured, rps, p50, p99, t.errors, t.mismatches
        );
    }
    if t.errors > 0 || t.mismatches > 0 {
        std::process::exit(1);
    }
}
