//! A bolt v1/v2 echo upstream: answers every request with a response whose
//! content is the request's content and whose header map carries
//! `server=<name>`, so a client can see which host answered. Heartbeats are
//! acked; oneway requests are counted and not answered. A connection whose
//! first byte is Dubbo's magic is answered in Dubbo (the argument echoed),
//! for the load tool's `--protocol dubbo`.
//!
//! `bolt-echo --listen 127.0.0.1:12200 [--name NAME] [--delay-ms N]`
//! prints `READY <addr>` once listening.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use ferrymesh::protocol::bolt::{Bolt, ResponseBuilder, BOLT_V1, BOLT_V2};
use ferrymesh::protocol::dubbo::{self, DUBBO};
use ferrymesh::protocol::{Codec, FrameKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Args {
    listen: String,
    name: String,
    delay: Duration,
}

fn args() -> Args {
    let mut a = Args { listen: "127.0.0.1:12200".into(), name: "echo".into(), delay: Duration::ZERO };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => a.listen = val(),
            "--name" => a.name = val(),
            "--delay-ms" => a.delay = Duration::from_millis(val().parse().expect("--delay-ms: a number")),
            "-h" | "--help" => {
                println!("bolt-echo --listen ADDR [--name NAME] [--delay-ms N]");
                std::process::exit(0);
            }
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn main() -> std::io::Result<()> {
    let a = args();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(&a.listen).await?;
        println!("READY {}", listener.local_addr()?);
        let name: &'static str = Box::leak(a.name.into_boxed_str());
        loop {
            let (s, _) = listener.accept().await?;
            let _ = s.set_nodelay(true);
            tokio::spawn(serve(s, name, a.delay));
        }
    })
}

async fn serve(mut s: TcpStream, name: &'static str, delay: Duration) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::with_capacity(64 * 1024);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    loop {
        tokio::select! {
            r = s.read_buf(&mut buf) => {
                match r { Ok(0) | Err(_) => return, Ok(_) => {} }
                loop {
                    if buf.first() == Some(&0xda) {
                        // Dubbo (the load tool's `--protocol dubbo`): echo the argument.
                        let info = match DUBBO.decode(&buf, 64 << 20) {
                            Ok(Some(i)) => i,
                            Ok(None) => break,
                            Err(e) => { eprintln!("bolt-echo: bad Dubbo frame: {e}"); return; }
                        };
                        let frame = &buf[..info.len];
                        match info.kind {
                            FrameKind::Heartbeat => DUBBO.heartbeat_reply(frame, &info, &mut out),
                            FrameKind::Request => {
                                let arg = dubbo::frame::request_arg_encoded(frame).unwrap_or(b"\x00");
                                dubbo::frame::response_encoded(&mut out, info.id, arg);
                            }
                            _ => {}
                        }
                        buf.advance(info.len);
                        continue;
                    }
                    let bolt: &Bolt = if buf.first() == Some(&2) { &BOLT_V2 } else { &BOLT_V1 };
                    let codec: &dyn Codec = bolt;
                    let info = match codec.decode(&buf, 64 << 20) {
                        Ok(Some(i)) => i,
                        Ok(None) => break,
                        Err(e) => { eprintln!("bolt-echo: bad frame: {e}"); return; }
                    };
                    let frame = &buf[..info.len];
                    match info.kind {
                        FrameKind::Heartbeat => codec.heartbeat_reply(frame, &info, &mut out),
                        FrameKind::Request => {
                            let (_, _, content) = bolt.split(frame);
                            let mut r = ResponseBuilder::new(info.id as u32, 0, content);
                            r.version = frame[0];
                            r.headers.push((b"server".to_vec(), name.as_bytes().to_vec()));
                            if delay.is_zero() {
                                r.encode_into(&mut out);
                            } else {
                                let tx = tx.clone();
                                let bytes = r.encode();
                                tokio::spawn(async move { tokio::time::sleep(delay).await; let _ = tx.send(bytes); });
                            }
                        }
                        _ => {}
                    }
                    buf.advance(info.len);
                }
                if !out.is_empty() {
                    if s.write_all(&out).await.is_err() { return; }
                    out.clear();
                }
            }
            Some(frame) = rx.recv() => {
                if s.write_all(&frame).await.is_err() { return; }
            }
        }
    }
}
