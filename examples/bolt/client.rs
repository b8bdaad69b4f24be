//! A small bolt client: sends a few echo requests and a heartbeat to an
//! address (ferrymesh's listener in the example) and prints what came back.
//!
//! `bolt-client --target 127.0.0.1:2045 [--service com.example.EchoService:1.0] [--count 5]`

use bytes::BytesMut;
use ferrymesh::protocol::bolt::{RequestBuilder, BOLT_V1};
use ferrymesh::protocol::{Codec, FrameKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut target = "127.0.0.1:2045".to_string();
    let mut service = "com.example.EchoService:1.0".to_string();
    let mut count = 5u32;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let val = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--target" => target = val,
            "--service" => service = val,
            "--count" => count = val.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let mut s = TcpStream::connect(&target).await?;
        let mut buf = BytesMut::new();
        for id in 1..=count + 1 {
            let frame = if id > count {
                RequestBuilder::heartbeat(id).encode()
            } else {
                RequestBuilder::new(id, &service, format!("hello #{id}").as_bytes()).encode()
            };
            s.write_all(&frame).await?;
            let info = loop {
                if let Some(info) = BOLT_V1.decode(&buf, 16 << 20)? {
                    break info;
                }
                if s.read_buf(&mut buf).await? == 0 {
                    return Err("connection closed by ferrymesh".into());
                }
            };
            let frame = buf.split_to(info.len);
            if info.kind == FrameKind::HeartbeatAck {
                println!("heartbeat id={} acked", info.id);
                continue;
            }
            let status = BOLT_V1.response_status(&frame);
            let server = BOLT_V1.header(&frame, "server").map(String::from_utf8_lossy).unwrap_or_default();
            let (_, _, content) = BOLT_V1.split(&frame);
            println!(
                "request id={id} -> response id={} status={status} server={server} content={:?}",
                info.id,
                String::from_utf8_lossy(content)
            );
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
