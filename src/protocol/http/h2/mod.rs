//! HTTP/2's wire format (RFC 9113 §4–6): frame heads, the frames a server
//! writes, SETTINGS, error codes; and HPACK ([`hpack`]). What a frame means
//! for a stream's state is `stream::http::h2`'s business, not this module's.

pub mod hpack;
pub mod huffman;

use bytes::{BufMut, BytesMut};

/// What a client sends first (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const HEAD_LEN: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE's floor and default.
pub const DEFAULT_MAX_FRAME: u32 = 16_384;
pub const MAX_MAX_FRAME: u32 = (1 << 24) - 1;
pub const DEFAULT_WINDOW: u32 = 65_535;
pub const MAX_WINDOW: u32 = (1 << 31) - 1;

/// Frame types (RFC 9113 §6).
pub mod kind {
    pub const DATA: u8 = 0;
    pub const HEADERS: u8 = 1;
    pub const PRIORITY: u8 = 2;
    pub const RST_STREAM: u8 = 3;
    pub const SETTINGS: u8 = 4;
    pub const PUSH_PROMISE: u8 = 5;
    pub const PING: u8 = 6;
    pub const GOAWAY: u8 = 7;
    pub const WINDOW_UPDATE: u8 = 8;
    pub const CONTINUATION: u8 = 9;
}

/// Frame flags.
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS identifiers (RFC 9113 §6.5.2).
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 1;
    pub const ENABLE_PUSH: u16 = 2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 3;
    pub const INITIAL_WINDOW_SIZE: u16 = 4;
    pub const MAX_FRAME_SIZE: u16 = 5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 6;
}

/// Error codes (RFC 9113 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason(pub u32);

impl Reason {
    pub const NO_ERROR: Reason = Reason(0);
    pub const PROTOCOL_ERROR: Reason = Reason(1);
    pub const INTERNAL_ERROR: Reason = Reason(2);
    pub const FLOW_CONTROL_ERROR: Reason = Reason(3);
    pub const STREAM_CLOSED: Reason = Reason(5);
    pub const FRAME_SIZE_ERROR: Reason = Reason(6);
    pub const REFUSED_STREAM: Reason = Reason(7);
    pub const CANCEL: Reason = Reason(8);
    pub const COMPRESSION_ERROR: Reason = Reason(9);
    pub const ENHANCE_YOUR_CALM: Reason = Reason(11);

    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "NO_ERROR",
            1 => "PROTOCOL_ERROR",
            2 => "INTERNAL_ERROR",
            3 => "FLOW_CONTROL_ERROR",
            4 => "SETTINGS_TIMEOUT",
            5 => "STREAM_CLOSED",
            6 => "FRAME_SIZE_ERROR",
            7 => "REFUSED_STREAM",
            8 => "CANCEL",
            9 => "COMPRESSION_ERROR",
            10 => "CONNECT_ERROR",
            11 => "ENHANCE_YOUR_CALM",
            12 => "INADEQUATE_SECURITY",
            13 => "HTTP_1_1_REQUIRED",
            _ => "unknown",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A frame's nine-byte head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    /// The reserved bit is ignored (RFC 9113 §4.1).
    pub stream: u32,
}

impl Head {
    /// Reads a head from the first nine bytes of `b`, if there are nine.
    pub fn parse(b: &[u8]) -> Option<Head> {
        let h: &[u8; HEAD_LEN] = b.get(..HEAD_LEN)?.try_into().ok()?;
        Some(Head {
            len: u32::from_be_bytes([0, h[0], h[1], h[2]]),
            kind: h[3],
            flags: h[4],
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & MAX_WINDOW,
        })
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    pub fn write(&self, dst: &mut BytesMut) {
        dst.put_slice(&self.bytes());
    }

    /// Writes the head over the first nine bytes of `dst` (a placeholder).
    pub fn write_at(&self, dst: &mut [u8]) {
        dst[..HEAD_LEN].copy_from_slice(&self.bytes());
    }

    fn bytes(&self) -> [u8; HEAD_LEN] {
        let len = self.len.to_be_bytes();
        let id = self.stream.to_be_bytes();
        [len[1], len[2], len[3], self.kind, self.flags, id[0], id[1], id[2], id[3]]
    }
}

/// Strips a PADDED frame's padding (RFC 9113 §6.1): the payload without its
/// pad-length byte and padding. `None` if the padding is longer than the payload.
pub fn unpad(flags: u8, payload: &[u8]) -> Option<&[u8]> {
    if flags & flag::PADDED == 0 {
        return Some(payload);
    }
    let (&pad, rest) = payload.split_first()?;
    rest.len().checked_sub(pad as usize).map(|end| &rest[..end])
}

/// Writes one frame with `payload`.
pub fn write_frame(dst: &mut BytesMut, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    dst.reserve(HEAD_LEN + payload.len());
    Head { len: payload.len() as u32, kind, flags, stream }.write(dst);
    dst.put_slice(payload);
}

/// Writes a header block as HEADERS and, past `max_frame` bytes,
/// CONTINUATION frames.
pub fn write_headers(dst: &mut BytesMut, stream: u32, block: &[u8], end_stream: bool, max_frame: usize) {
    let mut chunks = block.chunks(max_frame.max(1));
    let first = chunks.next().unwrap_or(&[]);
    let rest = chunks.len();
    let mut flags = if end_stream { flag::END_STREAM } else { 0 };
    if rest == 0 {
        flags |= flag::END_HEADERS;
    }
    write_frame(dst, kind::HEADERS, flags, stream, first);
    for (i, chunk) in chunks.enumerate() {
        let flags = if i + 1 == rest { flag::END_HEADERS } else { 0 };
        write_frame(dst, kind::CONTINUATION, flags, stream, chunk);
    }
}

pub fn write_rst(dst: &mut BytesMut, stream: u32, reason: Reason) {
    write_frame(dst, kind::RST_STREAM, 0, stream, &reason.0.to_be_bytes());
}

pub fn write_goaway(dst: &mut BytesMut, last_stream: u32, reason: Reason, debug: &[u8]) {
    let mut payload = Vec::with_capacity(8 + debug.len());
    payload.extend_from_slice(&last_stream.to_be_bytes());
    payload.extend_from_slice(&reason.0.to_be_bytes());
    payload.extend_from_slice(debug);
    write_frame(dst, kind::GOAWAY, 0, 0, &payload);
}

pub fn write_window_update(dst: &mut BytesMut, stream: u32, increment: u32) {
    write_frame(dst, kind::WINDOW_UPDATE, 0, stream, &increment.to_be_bytes());
}

pub fn write_settings(dst: &mut BytesMut, settings: &[(u16, u32)]) {
    let mut payload = Vec::with_capacity(settings.len() * 6);
    for &(id, value) in settings {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    write_frame(dst, kind::SETTINGS, 0, 0, &payload);
}

/// The HPACK fuzz target's body (`fuzz/fuzz_targets/h2_hpack.rs`), here so
/// that the committed corpus also runs in the ordinary tests: `data` split
/// into header blocks at each `ff 00 ff`, decoded in turn on one decoder.
/// Panics if an invariant breaks; returns whether every block decoded.
#[doc(hidden)]
pub fn fuzz_blocks(data: &[u8]) -> bool {
    type Seen = Vec<(hpack::Name, Option<Vec<u8>>)>;
    fn decode(decoder: &mut hpack::Decoder, block: &[u8]) -> (Result<(), hpack::HpackError>, Seen) {
        let mut fields = Vec::new();
        let decoded = decoder.decode(block, |f| {
            assert!(f.size() >= 32);
            fields.push((f.name.clone(), f.value_bytes().map(<[u8]>::to_vec)));
            true
        });
        (decoded, fields)
    }
    let mut decoder = hpack::Decoder::new(4096);
    // Forgets what it kept for repeats before each block: what a block
    // decodes to must not depend on it.
    let mut forgetful = hpack::Decoder::new(4096);
    let mut all = true;
    for block in split_blocks(data) {
        let generation = decoder.generation();
        let (decoded, fields) = decode(&mut decoder, block);
        forgetful.forget_repeats();
        assert_eq!(decode(&mut forgetful, block), (decoded, fields.clone()), "a kept :path decodes as it did");
        assert!(decoder.table_size() <= 4096, "the table stays within its limit");
        if decoded.is_err() {
            // A connection error: nothing after it is decoded.
            all = false;
            break;
        }
        assert!(fields.len() <= block.len(), "every field costs at least a byte");
        if decoder.generation() == generation {
            // The table was left alone, so the same bytes decode the same
            // (the server's last-block memo counts on it).
            assert_eq!(decode(&mut decoder, block), (Ok(()), fields), "a block that left the table alone");
            assert_eq!(decoder.generation(), generation);
        }
    }
    let mut encoded = Vec::new();
    huffman::encode(data, &mut encoded);
    assert_eq!(encoded.len(), huffman::encoded_len(data));
    let mut decoded = Vec::new();
    assert!(huffman::decode(&encoded, &mut decoded).is_ok());
    assert_eq!(decoded, data, "Huffman round trip");
    let _ = huffman::decode(data, &mut Vec::new());
    let _ = Head::parse(data);
    let _ = unpad(flag::PADDED, data);
    all
}

fn split_blocks(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.windows(3).position(|w| w == [0xff, 0x00, 0xff]) {
            Some(i) => {
                rest = Some(&r[i + 3..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzz target's committed corpus, run on stable.
    #[test]
    fn the_fuzz_corpus_holds() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/h2_hpack");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("fuzz corpus") {
            let path = entry.expect("corpus entry").path();
            let data = std::fs::read(&path).expect("corpus file");
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let valid = name.starts_with("rfc-") || name.starts_with("python-hpack-") || name == "size-updates";
            let decoded = fuzz_blocks(&data);
            assert!(decoded || !valid, "{name} decodes");
            n += 1;
        }
        assert!(n >= 10, "the corpus has {n} entries");
    }

    #[test]
    fn heads_round_trip_and_ignore_the_reserved_bit() {
        let mut b = BytesMut::new();
        Head { len: 0x12_3456, kind: 1, flags: 5, stream: 7 }.write(&mut b);
        assert_eq!(Head::parse(&b), Some(Head { len: 0x12_3456, kind: 1, flags: 5, stream: 7 }));
        b[5] |= 0x80;
        assert_eq!(Head::parse(&b).unwrap().stream, 7);
        assert_eq!(Head::parse(&b[..8]), None);
    }

    #[test]
    fn padding_is_stripped_or_refused() {
        assert_eq!(unpad(0, b"abc"), Some(&b"abc"[..]));
        assert_eq!(unpad(flag::PADDED, &[2, b'a', 0, 0]), Some(&b"a"[..]));
        assert_eq!(unpad(flag::PADDED, &[3, b'a', 0, 0]), Some(&b""[..]));
        assert_eq!(unpad(flag::PADDED, &[4, b'a', 0, 0]), None);
        assert_eq!(unpad(flag::PADDED, &[]), None);
    }

    #[test]
    fn long_header_blocks_continue() {
        let mut b = BytesMut::new();
        write_headers(&mut b, 3, &[7u8; 40], true, 16);
        let first = Head::parse(&b).unwrap();
        assert_eq!((first.kind, first.flags, first.len), (kind::HEADERS, flag::END_STREAM, 16));
        let second = Head::parse(&b[25..]).unwrap();
        assert_eq!((second.kind, second.flags), (kind::CONTINUATION, 0));
        let third = Head::parse(&b[50..]).unwrap();
        assert_eq!((third.kind, third.flags, third.len), (kind::CONTINUATION, flag::END_HEADERS, 8));
    }
}
