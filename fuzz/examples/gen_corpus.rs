//! Writes the seed corpora in `fuzz/corpus/<target>/` (binary frames, one
//! file each, plus a few multi-frame "connection" seeds).
//!
//! Run from `fuzz/`: `cargo run --example gen_corpus`. The output is
//! deterministic; the files are committed, so rerun this only when a fixture
//! or a frame builder changes.
//!
//! - bolt: every frame of `tests/fixtures/bolt/*.hex` (v1, v2, v2 with CRC).
//! - dubbo: every distinct frame of `tests/fixtures/dubbo-frames.json`.
//! - tars: `ferrymesh::protocol::tars::frame::{request, response}`.
//! - toy: `ferrymesh::protocol::toy::frame`.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use ferrymesh::protocol::{tars, toy};

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

struct Out {
    dir: PathBuf,
    count: usize,
}

impl Out {
    fn new(root: &Path, target: &str) -> Out {
        let dir = root.join("corpus").join(target);
        fs::create_dir_all(&dir).unwrap();
        Out { dir, count: 0 }
    }

    fn put(&mut self, name: &str, bytes: &[u8]) {
        fs::write(self.dir.join(name), bytes).unwrap();
        self.count += 1;
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixtures = root.join("../tests/fixtures");

    // bolt: the golden frames, as they are, and one connection's worth.
    let mut bolt = Out::new(root, "decode_bolt");
    let mut names: Vec<PathBuf> = fs::read_dir(fixtures.join("bolt"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "hex"))
        .collect();
    names.sort();
    for p in &names {
        let frame = unhex(&fs::read_to_string(p).unwrap());
        bolt.put(p.file_stem().unwrap().to_str().unwrap(), &frame);
    }
    for (stream, parts) in [
        ("stream_v1_client", &["echo_request", "heartbeat_request", "fail_request"][..]),
        ("stream_v2crc_server", &["v2crc_echo_response", "v2crc_heartbeat_ack", "v2crc_fail_response"][..]),
    ] {
        let mut all = Vec::new();
        for part in parts {
            all.extend(unhex(&fs::read_to_string(fixtures.join("bolt").join(format!("{part}.hex"))).unwrap()));
        }
        bolt.put(stream, &all);
    }

    // dubbo: the recorded frames, each distinct one once, and the client side
    // of the first recorded connection as one stream.
    let mut dubbo = Out::new(root, "decode_dubbo");
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(fixtures.join("dubbo-frames.json")).unwrap()).unwrap();
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let mut client_stream = Vec::new();
    for (i, f) in json["frames"].as_array().unwrap().iter().enumerate() {
        let frame = unhex(f["hex"].as_str().unwrap());
        let label = f["frame"].as_str().unwrap_or("");
        if label.starts_with("conn 1 client->server") {
            client_stream.extend_from_slice(&frame);
        }
        if seen.contains(&frame) {
            continue;
        }
        let h = &f["header"];
        let kind = match (h["request"].as_bool(), h["event"].as_bool()) {
            (Some(true), Some(true)) => "heartbeat",
            (Some(true), _) => "request",
            (_, Some(true)) => "heartbeat_ack",
            _ => "response",
        };
        dubbo.put(&format!("frame{i:02}_{kind}"), &frame);
        seen.push(frame);
    }
    dubbo.put("stream_client", &client_stream);

    // tars: requests and responses from the frame builders.
    let mut tars = Out::new(root, "decode_tars");
    let ctx = [("uid", "42"), ("zone", "sh")];
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("request", tars::frame::request(1, "App.Server.EchoObj", "echo", false, &[])),
        ("request_context", tars::frame::request(7, "App.Server.EchoObj", "echo", false, &ctx)),
        ("request_oneway", tars::frame::request(3, "App.Server.EchoObj", "notify", true, &[])),
        ("request_id0", tars::frame::request(0, "S", "f", false, &[])),
        ("request_id_max", tars::frame::request(i32::MAX, "App.Server.EchoObj", "echo", false, &ctx)),
        ("request_id_neg", tars::frame::request(-1, "App.Server.EchoObj", "echo", false, &[])),
        ("request_id_300", tars::frame::request(300, "App.Server.EchoObj", "echo", false, &[])),
        ("request_id_70000", tars::frame::request(70_000, "App.Server.EchoObj", "echo", false, &[])),
        ("response_ok", tars::frame::response(1, tars::ret::SUCCESS)),
        ("response_timeout", tars::frame::response(2, tars::ret::INVOKE_TIMEOUT)),
        ("response_overload", tars::frame::response(3, tars::ret::SERVER_OVERLOAD)),
        ("response_no_servant", tars::frame::response(4, tars::ret::NO_SERVANT)),
        ("response_id_max", tars::frame::response(i32::MAX, tars::ret::SUCCESS)),
        ("response_id_neg", tars::frame::response(-5, tars::ret::UNKNOWN)),
    ];
    for (name, frame) in &seeds {
        tars.put(name, frame);
    }
    let mut stream = tars::frame::request(1, "App.Server.EchoObj", "echo", false, &ctx);
    stream.extend(tars::frame::request(2, "App.Server.EchoObj", "notify", true, &[]));
    stream.extend(tars::frame::response(1, tars::ret::SUCCESS));
    tars.put("stream", &stream);

    // toy: every kind, and statuses that are and are not numbers.
    let mut toy = Out::new(root, "decode_toy");
    let one = |kind: u8, id: u32, service: &[u8], body: &[u8]| {
        let mut out = BytesMut::new();
        toy::frame(&mut out, kind, id, service, body);
        out.to_vec()
    };
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("request", one(0, 1, b"echo", b"hello")),
        ("request_empty", one(0, 0, b"", b"")),
        ("request_id_max", one(0, u32::MAX, b"com.example.EchoService", b"hello")),
        ("response_ok", one(1, 1, b"0", b"hello")),
        ("response_404", one(1, 2, b"404", b"no route")),
        ("response_text_status", one(1, 3, b"oops", b"")),
        ("heartbeat", one(2, 4, b"", b"")),
        ("heartbeat_ack", one(3, 4, b"", b"")),
    ];
    for (name, frame) in &seeds {
        toy.put(name, frame);
    }
    let mut stream = one(0, 1, b"echo", b"hello");
    stream.extend(one(2, 2, b"", b""));
    stream.extend(one(1, 1, b"0", b"hello"));
    toy.put("stream", &stream);

    for o in [&bolt, &dubbo, &tars, &toy] {
        println!("{}: {} files", o.dir.display(), o.count);
    }
}
