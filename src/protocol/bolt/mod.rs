//! SOFARPC bolt, v1 and v2 (`../shared/protocols/bolt.md`).
//!
//! All integers are big-endian. A frame is a fixed header, then the class name,
//! the header map and the content, whose lengths the fixed header gives.
//!
//! | field          | v1 request | v1 response | v2 request | v2 response |
//! |----------------|-----------:|------------:|-----------:|------------:|
//! | proto (1 / 2)  | 0          | 0           | 0          | 0           |
//! | ver1           | —          | —           | 1          | 1           |
//! | type           | 1          | 1           | 2          | 2           |
//! | cmdcode (u16)  | 2          | 2           | 3          | 3           |
//! | ver2           | 4          | 4           | 5          | 5           |
//! | request id u32 | 5          | 5           | 6          | 6           |
//! | codec          | 9          | 9           | 10         | 10          |
//! | switch         | —          | —           | 11         | 11          |
//! | timeout i32    | 10         | —           | 12         | —           |
//! | status u16     | —          | 10          | —          | 12          |
//! | class len u16  | 14         | 12          | 16         | 14          |
//! | header len u16 | 16         | 14          | 18         | 16          |
//! | content len u32| 18         | 16          | 20         | 18          |
//! | header size    | 22         | 20          | 24         | 22          |
//!
//! v1 and v2 differ only in these offsets, so one implementation reads both
//! through a [`Layout`], chosen per frame by its first byte. As in MOSN, the
//! `bolt` and `boltv2` codecs therefore accept both versions: one listener and
//! one upstream connection carry v1 and v2 frames alike, and every answer is
//! written in the version of its request. The codec's own version only decides
//! the heartbeats ferrymesh originates. A v2 frame with ver1 = 2 and bit 0 of the switch byte
//! set carries a CRC32 of the frame after it (SOFA's Java decoder checks both;
//! sofa-bolt-node sets both). Unlike MOSN we count it in the frame length,
//! recompute it when the id is patched, and put one on our own replies to such
//! requests (heartbeat acks, error responses).

pub mod frame;

use bytes::{BufMut, BytesMut};

use super::{find_in, Codec, CodecError, Detect, FrameInfo, FrameKind, Header, HeaderList, Parsed};
use crate::error::ProxyError;

pub use frame::{RequestBuilder, ResponseBuilder};

/// Frame type byte values.
pub const TYPE_RESPONSE: u8 = 0;
pub const TYPE_REQUEST: u8 = 1;
pub const TYPE_ONEWAY: u8 = 2;

/// Command codes.
pub const CMD_HEARTBEAT: u16 = 0;
pub const CMD_REQUEST: u16 = 1;
pub const CMD_RESPONSE: u16 = 2;
pub const CMD_GOAWAY: u16 = 100;

/// The serialization byte MOSN and SOFA use (hessian2).
pub const CODEC_HESSIAN2: u8 = 1;

/// Response status codes.
pub mod status {
    pub const SUCCESS: u16 = 0;
    pub const ERROR: u16 = 1;
    pub const SERVER_EXCEPTION: u16 = 2;
    pub const UNKNOWN: u16 = 3;
    pub const SERVER_THREADPOOL_BUSY: u16 = 4;
    pub const ERROR_COMM: u16 = 5;
    pub const NO_PROCESSOR: u16 = 6;
    pub const TIMEOUT: u16 = 7;
    pub const CLIENT_SEND_ERROR: u16 = 8;
    pub const CODEC_EXCEPTION: u16 = 9;
    pub const CONNECTION_CLOSED: u16 = 0x10;
    pub const SERVER_SERIAL_EXCEPTION: u16 = 0x11;
    pub const SERVER_DESERIAL_EXCEPTION: u16 = 0x12;
}

/// Header names SOFARPC uses for the routing keys.
pub const HEADER_SERVICE: &str = "service";
pub const HEADER_TARGET_SERVICE: &str = "sofa_head_target_service";
pub const HEADER_METHOD: &str = "sofa_head_method_name";

/// A header-map entry length meaning "no value" (skipped).
const NULL_LEN: u32 = 0xFFFF_FFFF;

/// Byte offsets of one bolt version. `None` where the version lacks a field.
#[derive(Debug)]
pub struct Layout {
    pub proto: u8,
    pub ver1: Option<usize>,
    pub typ: usize,
    pub cmd: usize,
    pub ver2: usize,
    pub id: usize,
    pub codec: usize,
    pub switch: Option<usize>,
    pub timeout: usize,
    pub req_class_len: usize,
    pub req_header_size: usize,
    pub status: usize,
    pub resp_class_len: usize,
    pub resp_header_size: usize,
}

impl Layout {
    /// Offsets of class length, then header length (u16) and content length (u32)
    /// follow at +2 and +4 in both directions.
    fn class_len_at(&self, is_response: bool) -> usize {
        if is_response {
            self.resp_class_len
        } else {
            self.req_class_len
        }
    }

    pub fn header_size(&self, is_response: bool) -> usize {
        if is_response {
            self.resp_header_size
        } else {
            self.req_header_size
        }
    }
}

pub const V1: Layout = Layout {
    proto: 1,
    ver1: None,
    typ: 1,
    cmd: 2,
    ver2: 4,
    id: 5,
    codec: 9,
    switch: None,
    timeout: 10,
    req_class_len: 14,
    req_header_size: 22,
    status: 10,
    resp_class_len: 12,
    resp_header_size: 20,
};

pub const V2: Layout = Layout {
    proto: 2,
    ver1: Some(1),
    typ: 2,
    cmd: 3,
    ver2: 5,
    id: 6,
    codec: 10,
    switch: Some(11),
    timeout: 12,
    req_class_len: 16,
    req_header_size: 24,
    status: 12,
    resp_class_len: 14,
    resp_header_size: 22,
};

/// The bolt codec. `layout` is the version of the frames it originates.
#[derive(Debug)]
pub struct Bolt {
    pub layout: &'static Layout,
    name: &'static str,
}

pub static BOLT_V1: Bolt = Bolt { layout: &V1, name: "bolt" };
pub static BOLT_V2: Bolt = Bolt { layout: &V2, name: "boltv2" };

/// The layout of a frame whose first byte is `proto`.
fn layout_of(proto: u8) -> Option<&'static Layout> {
    match proto {
        1 => Some(&V1),
        2 => Some(&V2),
        _ => None,
    }
}

/// The layout of a frame already accepted by `decode`.
fn layout(frame: &[u8]) -> &'static Layout {
    in_layout(frame, |l| l)
}

/// `f` with the layout of a frame already accepted by `decode`, as a
/// constant: `f` is compiled once per version, so its offsets are
/// immediates rather than loads through a pointer chosen at run time (the
/// hot reads: parse, sections, id, status).
#[inline(always)]
fn in_layout<R>(frame: &[u8], f: impl FnOnce(&'static Layout) -> R) -> R {
    by_version(frame.first().copied(), f)
}

/// [`in_layout`] by a frame's first byte, for a caller that goes on to
/// change the frame.
#[inline(always)]
fn by_version<R>(proto: Option<u8>, f: impl FnOnce(&'static Layout) -> R) -> R {
    if proto == Some(2) {
        f(&V2)
    } else {
        f(&V1)
    }
}

// One range check each, after which the byte reads are known in bounds:
// per-byte indexing left four checks and kept `be32` out of line (65
// instructions per call at full load under callgrind).
#[inline(always)]
fn be16(b: &[u8], at: usize) -> u16 {
    let w = &b[at..at + 2];
    u16::from_be_bytes([w[0], w[1]])
}

#[inline(always)]
fn be32(b: &[u8], at: usize) -> u32 {
    let w = &b[at..at + 4];
    u32::from_be_bytes([w[0], w[1], w[2], w[3]])
}

/// Whether `frame` (of layout `l`) carries a CRC32 trailer.
fn crc_in(l: &Layout, frame: &[u8]) -> bool {
    match (l.ver1, l.switch) {
        (Some(v), Some(s)) => crc_enabled(frame[v], frame[s]),
        _ => false,
    }
}

/// Whether a v2 frame with these ver1 and switch bytes carries a CRC32 trailer.
fn crc_enabled(ver1: u8, switch: u8) -> bool {
    ver1 >= 2 && switch & 1 == 1
}

/// Writes the CRC32 of everything before a frame's last four bytes into them.
fn put_crc(frame: &mut [u8]) {
    if frame.len() >= 4 {
        let body = frame.len() - 4;
        let crc = crc32fast::hash(&frame[..body]);
        frame[body..].copy_from_slice(&crc.to_be_bytes());
    }
}

/// `reply_tag` packing: the bytes an answer must echo from its request.
fn pack_tag(codec: u8, ver1: u8, switch: u8, proto: u8) -> u32 {
    u32::from(codec) | u32::from(ver1) << 8 | u32::from(switch) << 16 | u32::from(proto) << 24
}

fn unpack_tag(tag: u32) -> (u8, u8, u8, u8) {
    (tag as u8, (tag >> 8) as u8, (tag >> 16) as u8, (tag >> 24) as u8)
}

/// Where the class name, header map and content of a whole frame lie.
struct Sections {
    class: std::ops::Range<usize>,
    headers: std::ops::Range<usize>,
    content: std::ops::Range<usize>,
    crc: bool,
}

impl Bolt {
    fn is_response(&self, frame: &[u8]) -> bool {
        frame[layout(frame).typ] == TYPE_RESPONSE
    }

    /// Section ranges of a frame already accepted by `decode`.
    fn sections(&self, frame: &[u8]) -> Sections {
        in_layout(frame, |l| {
            let resp = frame[l.typ] == TYPE_RESPONSE;
            let at = l.class_len_at(resp);
            let class_len = usize::from(be16(frame, at));
            let header_len = usize::from(be16(frame, at + 2));
            let content_len = be32(frame, at + 4) as usize;
            let start = l.header_size(resp);
            let class = start..start + class_len;
            let headers = class.end..class.end + header_len;
            let content = headers.end..headers.end + content_len;
            Sections { class, headers, content, crc: crc_in(l, frame) }
        })
    }

    /// The header map of a frame already accepted by `decode` (what routing
    /// reads: the other sections' places are not worked out).
    fn header_map<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        in_layout(frame, |l| {
            let resp = frame[l.typ] == TYPE_RESPONSE;
            let at = l.class_len_at(resp);
            let start = l.header_size(resp) + usize::from(be16(frame, at));
            &frame[start..start + usize::from(be16(frame, at + 2))]
        })
    }

    fn rewrite_crc(&self, frame: &mut [u8]) {
        if crc_in(layout(frame), frame) {
            put_crc(frame);
        }
    }

    /// Appends a response header of this version with empty sections after it.
    fn put_response(&self, out: &mut BytesMut, cmd: u16, id: u32, tag: u32, status: u16, content: &[u8]) {
        let (codec, ver1, switch, proto) = unpack_tag(tag);
        let l = layout_of(proto).unwrap_or(self.layout);
        let start = out.len();
        out.put_u8(l.proto);
        if l.ver1.is_some() {
            out.put_u8(ver1);
        }
        out.put_u8(TYPE_RESPONSE);
        out.put_u16(cmd);
        out.put_u8(1); // ver2
        out.put_u32(id);
        out.put_u8(codec);
        if l.switch.is_some() {
            out.put_u8(switch);
        }
        out.put_u16(status);
        out.put_u16(0); // class
        out.put_u16(0); // header map
        out.put_u32(content.len() as u32);
        out.put_slice(content);
        if l.ver1.is_some() && crc_enabled(ver1, switch) {
            // Answer in the request's mode: a CRC-checking client rejects a reply without one.
            let crc = crc32fast::hash(&out[start..]);
            out.put_u32(crc);
        }
    }

    /// The status byte pair of a bolt response frame.
    pub fn response_status(&self, frame: &[u8]) -> u16 {
        in_layout(frame, |l| be16(frame, l.status))
    }

    /// The class name, header map bytes and content of a whole frame.
    pub fn split<'a>(&self, frame: &'a [u8]) -> (&'a [u8], &'a [u8], &'a [u8]) {
        let s = self.sections(frame);
        (&frame[s.class], &frame[s.headers], &frame[s.content])
    }
}

/// [`Codec::parse`] of a frame of layout `l` (its first byte `l.proto`).
#[inline(always)]
fn parse_in(l: &'static Layout, buf: &[u8], max_frame: usize) -> Result<Parsed, CodecError> {
    let proto = l.proto;
    if buf.len() <= l.typ {
        return Ok(Parsed::Partial(None));
    }
    let typ = buf[l.typ];
    let resp = match typ {
        TYPE_RESPONSE => true,
        TYPE_REQUEST | TYPE_ONEWAY => false,
        other => return Err(CodecError::BadType(other)),
    };
    let hsize = l.header_size(resp);
    if buf.len() < hsize {
        return Ok(Parsed::Partial(None));
    }
    let cmd = be16(buf, l.cmd);
    let kind = match (resp, cmd, typ) {
        (false, CMD_REQUEST, TYPE_REQUEST) => FrameKind::Request,
        (false, CMD_REQUEST, _) => FrameKind::Oneway,
        (false, CMD_HEARTBEAT, _) => FrameKind::Heartbeat,
        (false, CMD_GOAWAY, _) => FrameKind::Control,
        (true, CMD_RESPONSE, _) => FrameKind::Response,
        (true, CMD_HEARTBEAT, _) => FrameKind::HeartbeatAck,
        (_, other, _) => return Err(CodecError::BadCommand(other)),
    };
    let at = l.class_len_at(resp);
    let ver1 = l.ver1.map_or(0, |at| buf[at]);
    let switch = l.switch.map_or(0, |at| buf[at]);
    // ver1 = 2 alone is not a CRC: sofa-bolt-node with the CRC off sends switch 0 and no trailer.
    let crc = if crc_enabled(ver1, switch) { 4 } else { 0 };
    let len =
        hsize as u64 + u64::from(be16(buf, at)) + u64::from(be16(buf, at + 2)) + u64::from(be32(buf, at + 4)) + crc;
    if len > max_frame as u64 {
        return Err(CodecError::TooLarge { len, max: max_frame });
    }
    let len = len as usize;
    if buf.len() < len {
        return Ok(Parsed::Partial(Some(len)));
    }
    let timeout_ms = if resp {
        None
    } else {
        let t = be32(buf, l.timeout) as i32;
        (t > 0).then_some(t as u32)
    };
    Ok(Parsed::Frame(FrameInfo {
        len,
        kind,
        id: u64::from(be32(buf, l.id)),
        timeout_ms,
        reply_tag: pack_tag(buf[l.codec], ver1, switch, proto),
    }))
}

/// Iterates a bolt header map, skipping null entries.
fn parse_headers(mut map: &[u8]) -> Result<Vec<Header<'_>>, CodecError> {
    let mut out = Vec::new();
    while !map.is_empty() {
        let (k, rest) = take_field(map)?;
        let (v, rest) = take_field(rest)?;
        map = rest;
        if let (Some(k), Some(v)) = (k, v) {
            out.push((k, v));
        }
    }
    Ok(out)
}

fn take_field(map: &[u8]) -> Result<(Option<&[u8]>, &[u8]), CodecError> {
    if map.len() < 4 {
        return Err(CodecError::BadHeaders);
    }
    let len = be32(map, 0);
    if len == NULL_LEN {
        return Ok((None, &map[4..]));
    }
    let len = len as usize;
    if map.len() - 4 < len {
        return Err(CodecError::BadHeaders);
    }
    Ok((Some(&map[4..4 + len]), &map[4 + len..]))
}

/// Every entry of a header map up to its end or its first malformed field.
fn header_list(mut map: &[u8]) -> HeaderList<'_> {
    let mut out = HeaderList::new();
    while let Ok((k, rest)) = take_field(map) {
        let Ok((v, rest)) = take_field(rest) else { break };
        map = rest;
        if let Some(k) = k {
            out.push((k, v));
        }
    }
    out
}

fn find_header<'a>(map: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let mut rest = map;
    while !rest.is_empty() {
        let (k, r) = take_field(rest).ok()?;
        let (v, r) = take_field(r).ok()?;
        rest = r;
        if k == Some(name) {
            return v;
        }
    }
    None
}

/// Appends a header map in bolt's encoding.
pub fn put_headers<K: AsRef<[u8]>, V: AsRef<[u8]>>(out: &mut BytesMut, headers: &[(K, V)]) {
    for (k, v) in headers {
        out.put_u32(k.as_ref().len() as u32);
        out.put_slice(k.as_ref());
        out.put_u32(v.as_ref().len() as u32);
        out.put_slice(v.as_ref());
    }
}

/// Encoded size of a header map.
pub fn headers_len<K: AsRef<[u8]>, V: AsRef<[u8]>>(headers: &[(K, V)]) -> usize {
    headers.iter().map(|(k, v)| 8 + k.as_ref().len() + v.as_ref().len()).sum()
}

impl Codec for Bolt {
    fn name(&self) -> &'static str {
        self.name
    }

    fn family(&self) -> &'static str {
        "bolt"
    }

    fn detect(&self, buf: &[u8]) -> Detect {
        match buf.first() {
            None => Detect::NeedMore,
            Some(&b) if layout_of(b).is_some() => Detect::Match,
            Some(_) => Detect::NoMatch,
        }
    }

    fn parse(&self, buf: &[u8], max_frame: usize) -> Result<Parsed, CodecError> {
        // Each version its own copy of the reading, with constant offsets.
        match buf.first() {
            None => Ok(Parsed::Partial(None)),
            Some(1) => parse_in(&V1, buf, max_frame),
            Some(2) => parse_in(&V2, buf, max_frame),
            Some(&other) => Err(CodecError::BadMagic(other)),
        }
    }

    fn patch_id(&self, frame: &mut [u8], id: u64) {
        by_version(frame.first().copied(), |l| {
            frame[l.id..l.id + 4].copy_from_slice(&(id as u32).to_be_bytes());
            if crc_in(l, frame) {
                put_crc(frame);
            }
        })
    }

    fn max_id(&self) -> u64 {
        u64::from(u32::MAX)
    }

    fn heartbeat_reply(&self, _req: &[u8], info: &FrameInfo, out: &mut BytesMut) {
        self.put_response(out, CMD_HEARTBEAT, info.id as u32, info.reply_tag, status::SUCCESS, &[]);
    }

    fn heartbeat_request(&self, id: u64, out: &mut BytesMut) -> bool {
        let l = self.layout;
        out.put_u8(l.proto);
        if l.ver1.is_some() {
            out.put_u8(1);
        }
        out.put_u8(TYPE_REQUEST);
        out.put_u16(CMD_HEARTBEAT);
        out.put_u8(1);
        out.put_u32(id as u32);
        out.put_u8(CODEC_HESSIAN2);
        if l.switch.is_some() {
            out.put_u8(0);
        }
        out.put_i32(-1);
        out.put_u16(0);
        out.put_u16(0);
        out.put_u32(0);
        true
    }

    fn error_response(&self, info: &FrameInfo, id: u64, err: &ProxyError, out: &mut BytesMut) {
        let status = self.error_status(err, info.reply_tag) as u16;
        let body: &[u8] = match err {
            ProxyError::DirectResponse { body, .. } => body.as_bytes(),
            _ => &[],
        };
        self.put_response(out, CMD_RESPONSE, id as u32, info.reply_tag, status, body);
    }

    fn error_status(&self, err: &ProxyError, reply_tag: u32) -> u32 {
        let v1 = unpack_tag(reply_tag).3 != 2;
        use status::*;
        let s = match err {
            ProxyError::NoRoute | ProxyError::NoHealthyHost | ProxyError::ConnectFailed(_) => NO_PROCESSOR,
            ProxyError::UpstreamReset => NO_PROCESSOR,
            ProxyError::Overflow => SERVER_THREADPOOL_BUSY,
            ProxyError::Timeout => TIMEOUT,
            ProxyError::Codec | ProxyError::Malformed { .. } => CODEC_EXCEPTION,
            ProxyError::Forbidden if v1 => SERVER_EXCEPTION,
            ProxyError::DirectResponse { status: code, .. } => map_internal_code(*code),
            ProxyError::Forbidden | ProxyError::Internal(_) => UNKNOWN,
        };
        u32::from(s)
    }

    fn headers<'a>(&self, frame: &'a [u8]) -> Result<Vec<Header<'a>>, CodecError> {
        parse_headers(self.header_map(frame))
    }

    fn header<'a>(&self, frame: &'a [u8], name: &str) -> Option<&'a [u8]> {
        let map = self.header_map(frame);
        match name {
            HEADER_SERVICE => find_header(map, HEADER_SERVICE.as_bytes())
                .or_else(|| find_header(map, HEADER_TARGET_SERVICE.as_bytes())),
            "method" => find_header(map, HEADER_METHOD.as_bytes()),
            other => find_header(map, other.as_bytes()),
        }
    }

    fn header_list<'a>(&self, frame: &'a [u8]) -> HeaderList<'a> {
        header_list(self.header_map(frame))
    }

    fn header_in<'a>(&self, list: &[(&'a [u8], Option<&'a [u8]>)], name: &str) -> Option<&'a [u8]> {
        match name {
            HEADER_SERVICE => {
                find_in(list, HEADER_SERVICE.as_bytes()).or_else(|| find_in(list, HEADER_TARGET_SERVICE.as_bytes()))
            }
            "method" => find_in(list, HEADER_METHOD.as_bytes()),
            other => find_in(list, other.as_bytes()),
        }
    }

    fn encode_with_headers(&self, frame: &[u8], headers: &[(Vec<u8>, Vec<u8>)], out: &mut BytesMut) {
        let s = self.sections(frame);
        let resp = self.is_response(frame);
        let l = layout(frame);
        let hsize = l.header_size(resp);
        let start = out.len();
        out.extend_from_slice(&frame[..hsize]);
        let at = start + l.class_len_at(resp) + 2;
        let len = headers_len(headers) as u16;
        out[at..at + 2].copy_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&frame[s.class]);
        put_headers(out, headers);
        out.extend_from_slice(&frame[s.content]);
        if s.crc {
            out.put_u32(0);
            self.rewrite_crc(&mut out[start..]);
        }
    }

    fn response_class(&self, frame: &[u8]) -> u16 {
        match self.response_status(frame) {
            status::SUCCESS => 200,
            status::SERVER_THREADPOOL_BUSY => 503,
            status::TIMEOUT => 504,
            status::CONNECTION_CLOSED => 502,
            _ => 500,
        }
    }
}

/// MOSN's mapping from its internal codes (HTTP-like) to bolt status, used for
/// `direct_response` statuses.
fn map_internal_code(code: u16) -> u16 {
    use status::*;
    match code {
        200 => SUCCESS,
        404 | 502 => NO_PROCESSOR,
        503 => SERVER_THREADPOOL_BUSY,
        504 => TIMEOUT,
        403 => SERVER_EXCEPTION,
        _ => UNKNOWN,
    }
}

#[cfg(test)]
mod tests;
