//! ferrymesh's own HTTP/2 server (`stream::http::h2`) against RFC 9113 and
//! RFC 7541, frame by frame: every frame type, flow control at window edges,
//! SETTINGS changes mid-stream, CONTINUATION, padding, stream state errors,
//! GOAWAY and RST_STREAM in each state, HPACK table size updates. Frames are
//! written as raw bytes; answers are read frame by frame and their header
//! blocks decoded. `tests/h2/conformance.py` runs the same server against
//! PyPI `h2`'s client, an HPACK encoder we did not write.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use ferrymesh::protocol::http::h2::hpack::{Decoder, Name, Pseudo};
use http_body_util::BodyExt as _;
use support::http::{proxy_config, raw_upstream, HttpUpstream};
use support::{free_port, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::h2::{frame, kind, ACK, END_HEADERS, END_STREAM, PADDED, PREFACE, PRIORITY_FLAG};

const PROTOCOL_ERROR: u32 = 1;
const FLOW_CONTROL_ERROR: u32 = 3;
const STREAM_CLOSED: u32 = 5;
const FRAME_SIZE_ERROR: u32 = 6;
const COMPRESSION_ERROR: u32 = 9;

/// A header block of literals without indexing (new names).
fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    for (n, v) in fields {
        b.push(0);
        string(&mut b, n.as_bytes());
        string(&mut b, v.as_bytes());
    }
    b
}

/// An HPACK string literal, not Huffman-coded (RFC 7541 §5.1, §5.2).
fn string(b: &mut Vec<u8>, s: &[u8]) {
    let mut len = s.len();
    if len < 127 {
        b.push(len as u8);
    } else {
        b.push(127);
        len -= 127;
        while len >= 128 {
            b.push((len % 128) as u8 | 0x80);
            len /= 128;
        }
        b.push(len as u8);
    }
    b.extend_from_slice(s);
}

fn get(path: &str) -> Vec<u8> {
    block(&[(":method", "GET"), (":scheme", "http"), (":path", path), (":authority", "x")])
}

fn post(path: &str) -> Vec<u8> {
    block(&[(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "x")])
}

#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    fn code(&self) -> u32 {
        let at = if self.kind == kind::GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }
}

/// A client connection speaking raw frames.
struct Client {
    s: TcpStream,
    buf: Vec<u8>,
    decoder: Decoder,
    /// The server's SETTINGS, as received.
    settings: Vec<(u16, u32)>,
}

impl Client {
    /// Connects, sends the preface and `settings`, and reads the server's
    /// SETTINGS (acknowledging them).
    async fn connect(addr: SocketAddr, settings: &[(u16, u32)]) -> Client {
        let s = TcpStream::connect(addr).await.unwrap();
        let mut c = Client { s, buf: Vec::new(), decoder: Decoder::new(4096), settings: Vec::new() };
        let mut hello = PREFACE.to_vec();
        let payload: Vec<u8> =
            settings.iter().flat_map(|(id, v)| [&id.to_be_bytes()[..], &v.to_be_bytes()].concat()).collect();
        hello.extend(frame(kind::SETTINGS, 0, 0, &payload));
        c.send(&hello).await;
        let f = c.next().await.expect("server SETTINGS");
        assert_eq!((f.kind, f.flags), (kind::SETTINGS, 0), "the server speaks first with SETTINGS");
        c.settings = f
            .payload
            .chunks(6)
            .map(|e| (u16::from_be_bytes([e[0], e[1]]), u32::from_be_bytes([e[2], e[3], e[4], e[5]])))
            .collect();
        c.send(&frame(kind::SETTINGS, ACK, 0, &[])).await;
        c
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }

    /// The next frame, or `None` once the server closed (or 5 s passed).
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let f = Frame {
                        kind: self.buf[3],
                        flags: self.buf[4],
                        stream: u32::from_be_bytes(self.buf[5..9].try_into().unwrap()) & 0x7fff_ffff,
                        payload: self.buf[9..9 + len].to_vec(),
                    };
                    self.buf.drain(..9 + len);
                    return Some(f);
                }
            }
            let mut chunk = [0u8; 16384];
            match tokio::time::timeout(Duration::from_secs(5), self.s.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next frame that is not a SETTINGS ACK, WINDOW_UPDATE or PING ACK.
    async fn next_meaningful(&mut self) -> Option<Frame> {
        loop {
            let f = self.next().await?;
            let noise = (f.kind == kind::SETTINGS && f.flags & ACK != 0)
                || f.kind == kind::WINDOW_UPDATE
                || (f.kind == kind::PING && f.flags & ACK != 0);
            if !noise {
                return Some(f);
            }
        }
    }

    /// Expects GOAWAY with `code`, then the close.
    async fn expect_goaway(&mut self, code: u32) {
        let f = self.next_meaningful().await.expect("GOAWAY before the close");
        assert_eq!(f.kind, kind::GOAWAY, "expected GOAWAY, got {f:?}");
        assert_eq!(f.code(), code, "GOAWAY code");
        assert!(self.next().await.is_none(), "the connection closes after GOAWAY");
    }

    async fn expect_rst(&mut self, stream: u32, code: u32) {
        let f = self.next_meaningful().await.expect("RST_STREAM");
        assert_eq!((f.kind, f.stream), (kind::RST_STREAM, stream), "expected RST_STREAM, got {f:?}");
        assert_eq!(f.code(), code, "RST_STREAM code");
    }

    fn decode(&mut self, block: &[u8]) -> (Option<u16>, Vec<(String, String)>) {
        let mut status = None;
        let mut fields = Vec::new();
        self.decoder
            .decode(block, |f| {
                let v = f.value_bytes().map(|v| String::from_utf8(v.to_vec()).unwrap()).unwrap_or_default();
                match &f.name {
                    Name::Pseudo(Pseudo::Status) => status = v.parse().ok(),
                    Name::Header(h) => fields.push((h.to_string(), v)),
                    other => panic!("unexpected field {other:?}"),
                }
                true
            })
            .unwrap();
        (status, fields)
    }

    /// Reads stream `id`'s whole answer: status, body, trailers.
    async fn response(&mut self, id: u32) -> (u16, Vec<u8>, Vec<(String, String)>) {
        let mut status = None;
        let mut body = Vec::new();
        let mut trailers = Vec::new();
        let mut block = Vec::new();
        let mut ending = false;
        loop {
            let f = self.next_meaningful().await.unwrap_or_else(|| panic!("stream {id}: closed before its end"));
            assert_eq!(f.stream, id, "a frame for another stream: {f:?}");
            match f.kind {
                kind::HEADERS | kind::CONTINUATION => {
                    ending |= f.kind == kind::HEADERS && f.flags & END_STREAM != 0;
                    block.extend_from_slice(&f.payload);
                    if f.flags & END_HEADERS != 0 {
                        let b = std::mem::take(&mut block);
                        let (s, fields) = self.decode(&b);
                        if status.is_none() {
                            status = s;
                        } else {
                            trailers = fields;
                        }
                        if ending {
                            return (status.expect(":status"), body, trailers);
                        }
                    }
                }
                kind::DATA => {
                    body.extend_from_slice(&f.payload);
                    if f.flags & END_STREAM != 0 {
                        return (status.expect(":status"), body, trailers);
                    }
                }
                _ => panic!("stream {id}: unexpected {f:?}"),
            }
        }
    }

    /// Each block, a whole request, goes on streams 1, 3, 5, … in turn, and
    /// each answers 200 before the next is sent.
    async fn each_answers_200(&mut self, blocks: &[Vec<u8>]) {
        for (i, b) in blocks.iter().enumerate() {
            let id = 1 + 2 * i as u32;
            self.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, id, b)).await;
            assert_eq!(self.response(id).await.0, 200, "stream {id}");
        }
    }

    /// A GET on `id` answers 200.
    async fn works(&mut self, id: u32) {
        self.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, id, &get("/ok"))).await;
        let (status, body, _) = self.response(id).await;
        assert_eq!(status, 200);
        assert_eq!(body, b"up got 0");
    }
}

async fn setup() -> (HttpUpstream, Proxy, SocketAddr) {
    let up = HttpUpstream::start("up", false).await;
    let p = Proxy::start(&proxy_config(free_port(), "Http2", "Http1", &[up.addr]), 1);
    let addr = p.addr;
    (up, p, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_ping_and_unknown_frames() {
    let (_up, _p, addr) = setup().await;
    let mut c = Client::connect(addr, &[]).await;
    // The server announces its limits.
    let ids: Vec<u16> = c.settings.iter().map(|s| s.0).collect();
    for id in [3, 4, 6] {
        assert!(ids.contains(&id), "setting {id} announced: {:?}", c.settings);
    }
    // PING is answered with the same payload.
    c.send(&frame(kind::PING, 0, 0, b"12345678")).await;
    let f = c.next_meaningful_or_ping().await;
    assert_eq!((f.kind, f.flags, f.payload.as_slice()), (kind::PING, ACK, &b"12345678"[..]));
    // A PING ACK is not answered; unknown frame types and PRIORITY are ignored.
    c.send(&frame(kind::PING, ACK, 0, b"abcdefgh")).await;
    c.send(&frame(0xfa, 0x3, 0, b"whatever")).await;
    c.send(&frame(0xfa, 0, 1, b"on a stream")).await;
    c.send(&frame(kind::PRIORITY, 0, 3, &[0, 0, 0, 0, 16])).await;
    // SETTINGS mid-connection are acknowledged.
    c.send(&frame(kind::SETTINGS, 0, 0, &[0, 5, 0, 0, 0x80, 0])).await;
    let f = c.next().await.unwrap();
    assert_eq!((f.kind, f.flags), (kind::SETTINGS, ACK));
    c.works(5).await;

    for (bad, code) in [
        (frame(kind::PING, 0, 0, b"1234567"), FRAME_SIZE_ERROR),
        (frame(kind::PING, 0, 1, b"12345678"), PROTOCOL_ERROR),
        (frame(kind::SETTINGS, 0, 0, &[0, 4, 0, 0]), FRAME_SIZE_ERROR),
        (frame(kind::SETTINGS, ACK, 0, &[0, 4, 0, 0, 0, 1]), FRAME_SIZE_ERROR),
        (frame(kind::SETTINGS, 0, 1, &[]), PROTOCOL_ERROR),
        (frame(kind::SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 2]), PROTOCOL_ERROR),
        (frame(kind::SETTINGS, 0, 0, &[0, 5, 0, 0, 0x10, 0]), PROTOCOL_ERROR),
        (frame(kind::SETTINGS, 0, 0, &[0, 4, 0x80, 0, 0, 0]), FLOW_CONTROL_ERROR),
        (frame(kind::PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 2]), PROTOCOL_ERROR),
        (frame(kind::GOAWAY, 0, 0, &[0, 0, 0]), FRAME_SIZE_ERROR),
        (frame(kind::DATA, 0, 0, b"x"), PROTOCOL_ERROR),
        (frame(kind::HEADERS, END_HEADERS, 0, &get("/")), PROTOCOL_ERROR),
        (frame(kind::PRIORITY, 0, 0, &[0, 0, 0, 1, 16]), PROTOCOL_ERROR),
        (frame(kind::WINDOW_UPDATE, 0, 0, &[0, 0, 0, 0]), PROTOCOL_ERROR),
        (frame(kind::WINDOW_UPDATE, 0, 0, &[0, 0, 1]), FRAME_SIZE_ERROR),
        (frame(kind::WINDOW_UPDATE, 0, 0, &[0x7f, 0xff, 0xff, 0xff]), FLOW_CONTROL_ERROR),
        (frame(kind::DATA, 0, 1, &vec![0; 16385]), FRAME_SIZE_ERROR),
    ] {
        let mut c = Client::connect(addr, &[]).await;
        c.send(&bad).await;
        c.expect_goaway(code).await;
    }
}

impl Client {
    async fn next_meaningful_or_ping(&mut self) -> Frame {
        loop {
            let f = self.next().await.expect("a frame");
            if !(f.kind == kind::SETTINGS || f.kind == kind::WINDOW_UPDATE) {
                return f;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preface_and_first_settings_are_required() {
    let (_up, _p, addr) = setup().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(kind::PING, 0, 0, b"12345678"));
    s.write_all(&hello).await.unwrap();
    let mut c = Client { s, buf: Vec::new(), decoder: Decoder::new(4096), settings: Vec::new() };
    let f = c.next().await.unwrap();
    assert_eq!(f.kind, kind::SETTINGS);
    c.expect_goaway(PROTOCOL_ERROR).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_continuation_and_padding() {
    let (_up, _p, addr) = setup().await;
    let mut c = Client::connect(addr, &[]).await;
    // A header block in three pieces, END_STREAM on the HEADERS.
    let b = get("/ok");
    c.send(&frame(kind::HEADERS, END_STREAM, 1, &b[..5])).await;
    c.send(&frame(kind::CONTINUATION, 0, 1, &b[5..12])).await;
    c.send(&frame(kind::CONTINUATION, END_HEADERS, 1, &b[12..])).await;
    let (status, _, _) = c.response(1).await;
    assert_eq!(status, 200);
    // Padded HEADERS with a priority; padded DATA.
    let mut p = vec![3, 0, 0, 0, 0, 16];
    p.extend(post("/echo"));
    p.extend([0, 0, 0]);
    c.send(&frame(kind::HEADERS, END_HEADERS | PADDED | PRIORITY_FLAG, 3, &p)).await;
    c.send(&frame(kind::DATA, PADDED, 3, &[4, b'a', b'b', 0, 0, 0, 0])).await;
    c.send(&frame(kind::DATA, PADDED | END_STREAM, 3, &[0, b'c'])).await;
    let (status, body, _) = c.response(3).await;
    assert_eq!((status, body.as_slice()), (200, &b"up got 3"[..]));

    // Padding as long as the frame; a block interrupted; CONTINUATION alone.
    for bad in [
        frame(kind::HEADERS, END_HEADERS | PADDED, 1, &[200, 0x82]),
        [frame(kind::HEADERS, 0, 1, &b[..5]), frame(kind::PING, 0, 0, b"12345678")].concat(),
        [frame(kind::HEADERS, 0, 1, &b[..5]), frame(kind::CONTINUATION, END_HEADERS, 3, &b[5..])].concat(),
        frame(kind::CONTINUATION, END_HEADERS, 1, &b),
        frame(kind::DATA, PADDED, 1, &[5, 0, 0]),
    ] {
        let mut c = Client::connect(addr, &[]).await;
        if bad[3] == kind::DATA {
            c.send(&frame(kind::HEADERS, END_HEADERS, 1, &post("/"))).await;
        }
        c.send(&bad).await;
        c.expect_goaway(PROTOCOL_ERROR).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_control_at_the_window_edges() {
    let (_up, _p, addr) = setup().await;
    // The client opens 10 bytes a stream: the answer comes 10 bytes at a time.
    let mut c = Client::connect(addr, &[(4, 10)]).await;
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 1, &get("/bytes/25"))).await;
    let head = c.next_meaningful().await.unwrap();
    assert_eq!(head.kind, kind::HEADERS);
    let data = c.next_meaningful().await.unwrap();
    assert_eq!((data.kind, data.payload.len()), (kind::DATA, 10), "exactly the window");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), c.next_meaningful()).await.is_err(),
        "nothing past the window"
    );
    c.send(&frame(kind::WINDOW_UPDATE, 0, 1, &5u32.to_be_bytes())).await;
    let data = c.next_meaningful().await.unwrap();
    assert_eq!(data.payload.len(), 5);
    // SETTINGS raising the initial window mid-stream opens it by the difference.
    c.send(&frame(kind::SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 20])).await;
    let mut rest = 0;
    while rest < 10 {
        let f = c.next().await.unwrap();
        if f.kind == kind::DATA {
            rest += f.payload.len();
            if rest == 10 {
                assert!(f.flags & END_STREAM != 0 || c.next_meaningful().await.unwrap().flags & END_STREAM != 0);
            }
        }
    }
    assert_eq!(rest, 10);

    // The connection window: 65,535 bytes for all streams until it is opened.
    let mut c = Client::connect(addr, &[(4, 1 << 20)]).await;
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 1, &get("/bytes/70000"))).await;
    let mut got = 0;
    while got < 65_535 {
        let f = c.next_meaningful().await.unwrap();
        if f.kind == kind::DATA {
            assert!(f.payload.len() <= 16_384, "no frame past SETTINGS_MAX_FRAME_SIZE");
            got += f.payload.len();
        }
    }
    assert_eq!(got, 65_535);
    assert!(tokio::time::timeout(Duration::from_millis(300), c.next_meaningful()).await.is_err());
    c.send(&frame(kind::WINDOW_UPDATE, 0, 0, &10_000u32.to_be_bytes())).await;
    loop {
        let f = c.next_meaningful().await.unwrap();
        assert_eq!(f.kind, kind::DATA);
        got += f.payload.len();
        if f.flags & END_STREAM != 0 {
            break;
        }
    }
    assert_eq!(got, 70_000);

    // A stream WINDOW_UPDATE of 0 resets that stream; one past 2^31-1 too.
    let mut c = Client::connect(addr, &[(4, 0)]).await;
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 1, &get("/bytes/10"))).await;
    assert_eq!(c.next_meaningful().await.unwrap().kind, kind::HEADERS);
    c.send(&frame(kind::WINDOW_UPDATE, 0, 1, &[0, 0, 0, 0])).await;
    c.expect_rst(1, PROTOCOL_ERROR).await;
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 3, &get("/bytes/10"))).await;
    assert_eq!(c.next_meaningful().await.unwrap().kind, kind::HEADERS);
    c.send(&frame(kind::WINDOW_UPDATE, 0, 3, &[0x7f, 0xff, 0xff, 0xff])).await;
    c.send(&frame(kind::WINDOW_UPDATE, 0, 3, &[0, 0, 0, 1])).await;
    // Window opened to 2^31-1 first: 10 bytes flow, then the overflow resets.
    let f = c.next_meaningful().await.unwrap();
    assert!(f.kind == kind::DATA || f.kind == kind::RST_STREAM, "{f:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_states_rst_stream_and_goaway() {
    let (_up, _p, addr) = setup().await;
    // RST_STREAM on an open stream (its body still coming) and on a
    // half-closed one (waiting for its answer): the connection goes on.
    let mut c = Client::connect(addr, &[]).await;
    c.send(&frame(kind::HEADERS, END_HEADERS, 1, &post("/"))).await;
    c.send(&frame(kind::DATA, 0, 1, b"part")).await;
    c.send(&frame(kind::RST_STREAM, 0, 1, &8u32.to_be_bytes())).await;
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 3, &get("/slow/200"))).await;
    c.send(&frame(kind::RST_STREAM, 0, 3, &8u32.to_be_bytes())).await;
    c.works(5).await;
    // On a closed stream: nothing happens; DATA there gets STREAM_CLOSED.
    c.send(&frame(kind::RST_STREAM, 0, 5, &8u32.to_be_bytes())).await;
    c.send(&frame(kind::DATA, 0, 5, b"late")).await;
    c.expect_rst(5, STREAM_CLOSED).await;
    // DATA after the client's END_STREAM.
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 7, &get("/slow/300"))).await;
    c.send(&frame(kind::DATA, 0, 7, b"more")).await;
    c.expect_rst(7, STREAM_CLOSED).await;
    c.works(9).await;
    // Trailers without END_STREAM are malformed; with it, they end the body.
    c.send(&frame(kind::HEADERS, END_HEADERS, 11, &post("/"))).await;
    c.send(&frame(kind::DATA, 0, 11, b"abc")).await;
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 11, &block(&[("x-t", "1")]))).await;
    let (status, body, _) = c.response(11).await;
    assert_eq!((status, body.as_slice()), (200, &b"up got 3"[..]));
    c.send(&frame(kind::HEADERS, END_HEADERS, 13, &post("/"))).await;
    c.send(&frame(kind::HEADERS, END_HEADERS, 13, &block(&[("x-t", "1")]))).await;
    c.expect_rst(13, PROTOCOL_ERROR).await;
    c.works(15).await;

    // The client's GOAWAY: the stream in flight is answered, then the close.
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 17, &get("/slow/100"))).await;
    c.send(&frame(kind::GOAWAY, 0, 0, &[0, 0, 0, 17, 0, 0, 0, 0])).await;
    let (status, _, _) = c.response(17).await;
    assert_eq!(status, 200);
    assert!(c.next_meaningful().await.is_none_or(|f| f.kind == kind::GOAWAY));

    for (bad, code) in [
        // RST_STREAM and DATA on an idle stream, HEADERS on an even one.
        (frame(kind::RST_STREAM, 0, 1, &8u32.to_be_bytes()), PROTOCOL_ERROR),
        (frame(kind::RST_STREAM, 0, 1, &[0, 0, 8]), FRAME_SIZE_ERROR),
        (frame(kind::DATA, 0, 1, b"x"), PROTOCOL_ERROR),
        (frame(kind::WINDOW_UPDATE, 0, 1, &[0, 0, 0, 1]), PROTOCOL_ERROR),
        (frame(kind::HEADERS, END_HEADERS | END_STREAM, 2, &get("/")), PROTOCOL_ERROR),
    ] {
        let mut c = Client::connect(addr, &[]).await;
        c.send(&bad).await;
        c.expect_goaway(code).await;
    }
    // A stream id going backwards.
    let mut c = Client::connect(addr, &[]).await;
    c.works(5).await;
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 3, &get("/"))).await;
    c.expect_goaway(STREAM_CLOSED).await;
}

/// END_STREAM takes no window (RFC 9113 §6.9.1): an answer whose end is
/// known only after its last data (chunked from the upstream) ends with the
/// stream window at 0, and a client that opens the window only once a
/// stream ends is not left waiting for ever (nor one whose connection
/// window another stream spent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_of_an_answer_needs_no_window() {
    let (_up, _p, addr) = setup().await;
    // "chunk0;" is 7 bytes, chunked by the upstream: the window is exactly it.
    let mut c = Client::connect(addr, &[(4, 7)]).await;
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 1, &get("/stream/1"))).await;
    let (status, body, _) = c.response(1).await;
    assert_eq!((status, body.as_slice()), (200, &b"chunk0;"[..]));
    // A second stream's empty end while the first holds the connection
    // window at 0.
    let mut c = Client::connect(addr, &[(4, 1 << 20)]).await;
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 1, &get("/bytes/70000"))).await;
    let mut got = 0;
    while got < 65_535 {
        let f = c.next_meaningful().await.expect("the first answer's data");
        if f.kind == kind::DATA {
            got += f.payload.len();
        }
    }
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 3, &get("/stream/0"))).await;
    let (status, body, _) = c.response(3).await;
    assert_eq!((status, body.len()), (200, 0));
}

/// `expect: 100-continue` is answered at once with an interim 100 (as
/// Envoy does), and the body that follows is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_expecting_100_continue_gets_it() {
    let (_up, _p, addr) = setup().await;
    let mut c = Client::connect(addr, &[]).await;
    let head = block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/upload"),
        (":authority", "x"),
        ("expect", "100-continue"),
        ("content-length", "5"),
    ]);
    c.send(&frame(kind::HEADERS, END_HEADERS, 1, &head)).await;
    let f = c.next_meaningful().await.expect("the interim answer");
    assert_eq!((f.kind, f.stream, f.flags & END_STREAM), (kind::HEADERS, 1, 0), "{f:?}");
    assert_eq!(c.decode(&f.payload).0, Some(100));
    c.send(&frame(kind::DATA, END_STREAM, 1, b"hello")).await;
    let (status, body, _) = c.response(1).await;
    assert_eq!((status, body.as_slice()), (200, &b"up got 5"[..]));
}

/// Frames a client sent before it saw our RST_STREAM are ignored (RFC 9113
/// §5.1): trailers for a stream reset for its body, or refused, leave the
/// connection and its other streams alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_on_a_stream_we_reset_are_ignored() {
    let (_up, _p, addr) = setup().await;
    let mut c = Client::connect(addr, &[]).await;
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 1, &get("/slow/300"))).await;
    let head = block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "x"),
        ("content-length", "1"),
    ]);
    c.send(&frame(kind::HEADERS, END_HEADERS, 3, &head)).await;
    c.send(&frame(kind::DATA, 0, 3, b"more than one byte")).await;
    c.expect_rst(3, PROTOCOL_ERROR).await;
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 3, &block(&[("x-t", "1")]))).await;
    let (status, _, _) = c.response(1).await;
    assert_eq!(status, 200, "the stream in flight is answered");
    c.works(5).await;
    // A new request on a closed stream is still a connection error.
    c.send(&frame(kind::HEADERS, END_HEADERS, 3, &post("/"))).await;
    c.expect_goaway(STREAM_CLOSED).await;
}

/// Requests whose streams the client resets do not stay counted as active
/// on their listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_requests_leave_the_active_gauge() {
    let up = HttpUpstream::start("up", false).await;
    let admin_port = free_port();
    let mut config = proxy_config(free_port(), "Http2", "Http1", &[up.addr]);
    config["admin"] = support::admin(admin_port);
    let p = Proxy::start(&config, 1);
    let mut c = Client::connect(p.addr, &[]).await;
    for id in [1u32, 3, 5] {
        c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, id, &get("/slow/2000"))).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let active = |port| {
        support::scrape(port)
            .into_iter()
            .filter(|(k, _)| k.starts_with("ferrymesh_downstream_requests_active"))
            .map(|(_, v)| v)
            .sum::<f64>()
    };
    assert_eq!(active(admin_port), 3.0, "three in flight");
    for id in [1u32, 3, 5] {
        c.send(&frame(kind::RST_STREAM, 0, id, &8u32.to_be_bytes())).await;
    }
    c.works(7).await;
    assert_eq!(active(admin_port), 0.0, "none in flight after the resets");
}

/// An HTTP/1.1 upstream that answers as soon as it has a request's head,
/// then reads and drops whatever body follows.
async fn early_answering_upstream() -> SocketAddr {
    raw_upstream(|mut s| async move {
        let mut head = Vec::new();
        let mut chunk = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nearly").await;
        while matches!(s.read(&mut chunk).await, Ok(n) if n > 0) {}
    })
    .await
}

/// An upstream may answer before it has the whole request body. While the
/// body is still being streamed to it, the client's stream is not reset:
/// the client sends the rest and nothing fails (curl failed its upload with
/// "Stream error in the HTTP/2 framing layer" when a RST_STREAM NO_ERROR
/// came before it had sent its body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_before_the_request_body_lets_the_body_finish() {
    let up = early_answering_upstream().await;
    let p = Proxy::start(&proxy_config(free_port(), "Http2", "Http1", &[up]), 1);
    let mut c = Client::connect(p.addr, &[]).await;
    let head = block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/upload"),
        (":authority", "x"),
        ("content-length", "5"),
    ]);
    c.send(&frame(kind::HEADERS, END_HEADERS, 1, &head)).await;
    let (status, body, _) = c.response(1).await;
    assert_eq!((status, body.as_slice()), (200, &b"early"[..]));
    c.send(&frame(kind::DATA, END_STREAM, 1, b"hello")).await;
    c.send(&frame(kind::PING, 0, 0, &[7; 8])).await;
    loop {
        let f = c.next().await.expect("the connection stays open");
        assert_ne!(f.kind, kind::RST_STREAM, "the stream was reset while its body was still wanted: {f:?}");
        if f.kind == kind::PING && f.flags & ACK != 0 {
            break;
        }
    }
}

/// A header list past SETTINGS_MAX_HEADER_LIST_SIZE is answered 431 (the
/// block decoded all the same, so the connection's HPACK state holds); one
/// far past it closes the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_lists_past_the_limit() {
    let (_up, _p, addr) = setup().await;
    let mut c = Client::connect(addr, &[]).await;
    let limit = c.settings.iter().find(|s| s.0 == 6).map(|s| s.1 as usize).expect("SETTINGS_MAX_HEADER_LIST_SIZE");
    let big = "v".repeat(limit + 10);
    let b = block(&[(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "x"), ("x-big", &big)]);
    let mut pieces = b.chunks(16_384).peekable();
    let mut first = true;
    while let Some(piece) = pieces.next() {
        let end = if pieces.peek().is_none() { END_HEADERS } else { 0 };
        let kind = if first { kind::HEADERS } else { kind::CONTINUATION };
        let flags = if first { END_STREAM | end } else { end };
        c.send(&frame(kind, flags, 1, piece)).await;
        first = false;
    }
    let (status, _, _) = c.response(1).await;
    assert_eq!(status, 431);
    c.works(3).await;

    // Four times past the limit, in a few bytes: an HPACK bomb.
    let mut c = Client::connect(addr, &[]).await;
    let mut bomb = vec![0x82, 0x86, 0x84, 0x41, 0x01, b'x', 0x40, 0x06];
    bomb.extend_from_slice(b"x-bomb");
    string(&mut bomb, &[b'B'; 4000]);
    let refs = 4 * limit / 4000 + 2;
    bomb.extend(std::iter::repeat_n(0xbe, refs));
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 1, &bomb[..16_384.min(bomb.len())])).await;
    c.expect_goaway(11).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_reset_their_stream() {
    let (_up, _p, addr) = setup().await;
    let mut c = Client::connect(addr, &[]).await;
    let base = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "x")];
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![(":method", "GET"), (":scheme", "http"), (":authority", "x")],
        [&base[..], &[("Upper", "x")]].concat(),
        [&base[..], &[("connection", "close")]].concat(),
        [&base[..], &[("te", "gzip")]].concat(),
        [&base[..], &[(":status", "200")]].concat(),
        [&[("x-first", "1")], &base[..]].concat(),
        [&base[..], &[(":path", "/again")]].concat(),
        [&base[..], &[("x-bad", "a\nb")]].concat(),
        [&base[..], &[("x-pad", " a")]].concat(),
        [&base[..], &[("x-pad", "a\t")]].concat(),
        [&base[..], &[("content-length", "5x")]].concat(),
        [&base[..], &[("content-length", "3")]].concat(),
    ];
    let mut id = 1;
    for fields in cases {
        c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, id, &block(&fields))).await;
        c.expect_rst(id, PROTOCOL_ERROR).await;
        id += 2;
    }
    // content-length that the DATA does not match.
    let mut fields = base.to_vec();
    fields[0] = (":method", "POST");
    fields.push(("content-length", "5"));
    c.send(&frame(kind::HEADERS, END_HEADERS, id, &block(&fields))).await;
    c.send(&frame(kind::DATA, END_STREAM, id, b"abc")).await;
    c.expect_rst(id, PROTOCOL_ERROR).await;
    c.works(id + 2).await;
    // A self-dependent stream.
    let mut p = vec![0, 0, 0, (id + 4) as u8, 16];
    p.extend(get("/"));
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM | PRIORITY_FLAG, id + 4, &p)).await;
    let f = c.next_meaningful().await.unwrap();
    assert_eq!((f.kind, f.stream, f.code()), (kind::RST_STREAM, id + 4, PROTOCOL_ERROR));
    c.works(id + 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpack_table_size_updates_and_indexing() {
    let (_up, _p, addr) = setup().await;
    let mut c = Client::connect(addr, &[]).await;
    // Literal with incremental indexing of :authority (index 1) "x", then
    // referenced as index 62 in the next request; a table size update of 0
    // at the start of the third empties the table, so 62 is then an error.
    let first = [&[0x82, 0x86, 0x84, 0x41, 0x01, b'x'][..]].concat();
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 1, &first)).await;
    assert_eq!(c.response(1).await.0, 200);
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 3, &[0x82, 0x86, 0x84, 0xbe])).await;
    assert_eq!(c.response(3).await.0, 200);
    // A size update to 100 then back to 4096, at the block's start.
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 5, &[0x3f, 0x45, 0x3f, 0xe1, 0x1f, 0x82, 0x86, 0x84, 0xbe]))
        .await;
    assert_eq!(c.response(5).await.0, 200);
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 7, &[0x20, 0x82, 0x86, 0x84, 0xbe])).await;
    c.expect_goaway(COMPRESSION_ERROR).await;

    for bad in [
        // A size update after a field; one past SETTINGS_HEADER_TABLE_SIZE; index 0.
        vec![0x82, 0x20, 0x86, 0x84, 0x41, 0x01, b'x'],
        vec![0x3f, 0xe2, 0x1f, 0x82, 0x86, 0x84, 0x41, 0x01, b'x'],
        vec![0x80],
    ] {
        let mut c = Client::connect(addr, &[]).await;
        c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 1, &bad)).await;
        c.expect_goaway(COMPRESSION_ERROR).await;
    }
}

/// A block sent again byte for byte decodes as the table stands now: the
/// server keeps the last block that left the table alone and what it
/// decoded to, and must not hand that back once the table has changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_header_block_follows_the_table() {
    let (up, _p, addr) = setup().await;
    let mut c = Client::connect(addr, &[]).await;
    // GET http / with :authority "x" as a literal without indexing.
    let base = [0x82, 0x86, 0x84, 0x01, 0x01, b'x'];
    // ...plus `x-a: v` with incremental indexing: table entry 62.
    let indexing = |v: u8| [&base[..], &[0x40, 0x03, b'x', b'-', b'a', 0x01, v]].concat();
    // ...plus entry 62, whatever it holds.
    let again = [&base[..], &[0xbe]].concat();
    c.each_answers_200(&[indexing(b'1'), again.clone(), again.clone(), indexing(b'2'), again.clone(), again.clone()])
        .await;
    let seen: Vec<String> = up
        .seen()
        .iter()
        .map(|r| r.headers.iter().find(|(n, _)| n == "x-a").map_or("none".into(), |(_, v)| v.clone()))
        .collect();
    assert_eq!(seen, ["1", "1", "1", "2", "2", "2"]);
    // A table size update of 0 empties the table, in a malformed request
    // (an upper-case name) that is refused and so not kept: the same bytes
    // as before are then an index past the table's end.
    let emptying = [&[0x20][..], &base, &[0x00, 0x04, b'X', b'-', b'U', b'p', 0x01, b'v']].concat();
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 13, &emptying)).await;
    let f = c.next_meaningful().await.unwrap();
    assert_eq!((f.kind, f.stream, f.code()), (kind::RST_STREAM, 13, PROTOCOL_ERROR));
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 15, &again)).await;
    c.expect_goaway(COMPRESSION_ERROR).await;
}

/// `:path` as a literal without indexing, as nghttp2's encoder sends it on
/// every request, beside a field that differs each time (so no block repeats
/// whole): the decoder keeps the last path literal, and each request still
/// goes upstream with the path it carried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_path_literals_keep_their_paths() {
    let (up, _p, addr) = setup().await;
    let mut c = Client::connect(addr, &[]).await;
    let paths = ["/p1", "/p1", "/p2", "/p1", "/p1", "/p11", "/p1"];
    let blocks: Vec<Vec<u8>> = paths
        .iter()
        .enumerate()
        .map(|(i, path)| {
            // GET http, :authority "x" and :path (static entry 4) as literals
            // without indexing, then `x-n: i`.
            let mut b = vec![0x82, 0x86, 0x01, 0x01, b'x', 0x04, path.len() as u8];
            b.extend_from_slice(path.as_bytes());
            b.extend_from_slice(&[0x00, 0x03, b'x', b'-', b'n', 0x01, b'0' + i as u8]);
            b
        })
        .collect();
    c.each_answers_200(&blocks).await;
    let seen: Vec<String> = up.seen().iter().map(|r| r.uri.clone()).collect();
    assert_eq!(seen, paths);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_stream_with_trailers_and_large_heads() {
    // Trailers need an HTTP/2 upstream.
    let up = HttpUpstream::start("up", true).await;
    let p = Proxy::start(&proxy_config(free_port(), "Http2", "Http2", &[up.addr]), 1);
    let addr = p.addr;
    let mut c = Client::connect(addr, &[]).await;
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 1, &get("/trailers"))).await;
    let (status, body, trailers) = c.response(1).await;
    assert_eq!((status, body.as_slice()), (200, &b"with trailers"[..]));
    assert!(trailers.contains(&("x-trailer".into(), "yes".into())), "{trailers:?}");
    // A response head larger than one frame goes on in CONTINUATION.
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 3, &get("/big-header/40000"))).await;
    let (status, _, _) = c.response(3).await;
    assert_eq!(status, 200);
    // HEAD: the head only.
    let head = block(&[(":method", "HEAD"), (":scheme", "http"), (":path", "/bytes/100"), (":authority", "x")]);
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 5, &head)).await;
    let f = c.next_meaningful().await.unwrap();
    assert_eq!((f.kind, f.flags & END_STREAM), (kind::HEADERS, END_STREAM));
    c.works(7).await;
}

/// Our server in-process, with a service that holds each request without
/// reading its body: the receive windows are then exactly what the client
/// may send.
fn holding_server() -> SocketAddr {
    use ferrymesh::network::transport::Transport;
    use ferrymesh::stream::http::h2;
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    std_listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            while let Ok((s, _)) = listener.accept().await {
                let conf = h2::ServerConf {
                    limits: h2::Limits {
                        max_concurrent: 4,
                        stream_window: 100_000,
                        conn_window: 150_000,
                        max_header_list: 16_384,
                        header_table: 4096,
                    },
                    idle: Duration::from_secs(30),
                    bytes: Default::default(),
                };
                let service = |req: http::Request<ferrymesh::stream::http::Body>| async move {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    drop(req);
                    http::Response::new(ferrymesh::stream::http::Body::new(
                        http_body_util::Empty::new().map_err(|e| match e {}),
                    ))
                };
                let serve = h2::serve(
                    Transport::Tcp(s),
                    Default::default(),
                    conf,
                    service,
                    std::future::pending(),
                    false,
                    None,
                    tokio::time::Instant::now(),
                );
                tokio::task::spawn_local(async move {
                    // Parking is the caller's business; here a quiet
                    // connection just ends.
                    let _ = serve.await;
                });
            }
        });
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_windows_and_concurrency_are_enforced() {
    let addr = holding_server();
    let mut c = Client::connect(addr, &[]).await;
    assert!(c.settings.contains(&(4, 100_000)) && c.settings.contains(&(3, 4)), "{:?}", c.settings);
    // The stream window to its last byte is fine; one byte more resets the stream.
    c.send(&frame(kind::HEADERS, END_HEADERS, 1, &post("/"))).await;
    let chunk = vec![7u8; 10_000];
    for _ in 0..10 {
        c.send(&frame(kind::DATA, 0, 1, &chunk)).await;
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), c.next_meaningful()).await.is_err(),
        "the window's last byte is allowed"
    );
    c.send(&frame(kind::DATA, 0, 1, b"!")).await;
    c.expect_rst(1, FLOW_CONTROL_ERROR).await;
    // The reset stream's bytes went back to the connection window: another
    // 100,000 fit in what is left of 150,000 only because of that.
    c.send(&frame(kind::HEADERS, END_HEADERS, 3, &post("/"))).await;
    for _ in 0..10 {
        c.send(&frame(kind::DATA, 0, 3, &chunk)).await;
    }
    assert!(tokio::time::timeout(Duration::from_millis(300), c.next_meaningful()).await.is_err());
    // Streams past SETTINGS_MAX_CONCURRENT_STREAMS are refused.
    for id in [5, 7, 9] {
        c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, id, &get("/"))).await;
    }
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 11, &get("/"))).await;
    c.expect_rst(11, 7).await;

    // The connection window: past 150,000 across streams is a connection error.
    let mut c = Client::connect(addr, &[]).await;
    for id in [1, 3] {
        c.send(&frame(kind::HEADERS, END_HEADERS, id, &post("/"))).await;
        for _ in 0..7 {
            c.send(&frame(kind::DATA, 0, id, &chunk)).await;
        }
    }
    c.send(&frame(kind::DATA, 0, 3, &chunk)).await;
    c.send(&frame(kind::DATA, 0, 3, &chunk)).await;
    c.expect_goaway(FLOW_CONTROL_ERROR).await;
}

/// PyPI `h2`'s client (an HPACK encoder and flow control we did not write):
/// `tests/h2/conformance.py`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pypi_h2_client_scenarios() {
    let (_up, _p, addr) = setup().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/h2/conformance.py");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .arg(addr.to_string())
            .stdin(std::process::Stdio::null())
            .output()
    })
    .await
    .unwrap()
    .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tests/h2/conformance.py failed (pip install -r tests/h2/requirements.txt):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok ")).count(), 8, "{stdout}");
}

/// An HTTP/1.1 upstream that keeps its receive buffer small, reads a
/// request's head and none of its body, answers a second later and closes.
async fn stalling_upstream() -> SocketAddr {
    raw_upstream(|mut s| async move {
        let _ = socket2::SockRef::from(&s).set_recv_buffer_size(4096);
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match s.read(&mut byte).await {
                Ok(0) | Err(_) => return,
                Ok(_) => head.push(byte[0]),
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    })
    .await
}

/// Request bytes the server holds for a stream whose upstream never read
/// them go back to the connection's window once the stream is done: each
/// of these streams ends with up to its whole window (256 KiB) held, and
/// five would shut the 1 MiB connection window for good if they did not
/// (every later upload on the connection stalled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bytes_an_upstream_never_read_go_back_to_the_connection_window() {
    let up = stalling_upstream().await;
    let p = Proxy::start(&proxy_config(free_port(), "Http2", "Http1", &[up]), 1);
    let mut c = Client::connect(p.addr, &[]).await;
    let stream_window = c.settings.iter().find(|(id, _)| *id == 4).map_or(65_535, |(_, v)| *v as i64);
    let (mut conn_window, mut held_most) = (65_535_i64, 0);
    let credit = |f: &Frame, conn: &mut i64, stream: &mut i64, id: u32| {
        if f.kind == kind::WINDOW_UPDATE {
            let inc = i64::from(u32::from_be_bytes(f.payload[..4].try_into().unwrap()));
            if f.stream == 0 {
                *conn += inc;
            } else if f.stream == id {
                *stream += inc;
            }
        }
    };
    for id in [1, 3, 5, 7, 9] {
        c.send(&frame(kind::HEADERS, END_HEADERS, id, &post("/upload"))).await;
        let mut window = stream_window;
        // Send while the windows allow; once no credit comes for 300 ms,
        // the stream is stalled: the server holds what it could not pass on.
        loop {
            let n = conn_window.min(window).min(16_384);
            if n > 0 {
                c.send(&frame(kind::DATA, 0, id, &vec![b'u'; n as usize])).await;
                (conn_window, window) = (conn_window - n, window - n);
                continue;
            }
            match tokio::time::timeout(Duration::from_millis(300), c.next()).await {
                Ok(Some(f)) => credit(&f, &mut conn_window, &mut window, id),
                Ok(None) => panic!("the server closed the connection"),
                Err(_) => break,
            }
        }
        held_most = held_most.max(stream_window - window);
        c.send(&frame(kind::DATA, END_STREAM, id, &[])).await;
        // The answer ends the stream.
        loop {
            let f = c.next().await.expect("an answer");
            credit(&f, &mut conn_window, &mut 0, id);
            if f.stream == id && (f.flags & END_STREAM != 0 || f.kind == kind::RST_STREAM) {
                break;
            }
        }
    }
    assert!(held_most > 0, "no stream stalled: the test proves nothing");
    // What the five streams held comes back (the server gives the window
    // back in steps of half of it, 512 KiB).
    while let Ok(Some(f)) = tokio::time::timeout(Duration::from_millis(500), c.next()).await {
        credit(&f, &mut conn_window, &mut 0, 0);
    }
    assert!(conn_window >= 256 * 1024, "the connection window stays at {conn_window} bytes");
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 11, &get("/after"))).await;
    let (status, body, _) = c.response(11).await;
    assert_eq!((status, body.as_slice()), (200, &b"ok"[..]));
}
