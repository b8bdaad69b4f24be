//! Dubbo 2 over TCP (`dubbo`): a 16-byte header (magic `da bb`, flag,
//! status, an 8-byte request id, a 4-byte body length) and a Hessian 2 body.
//!
//! The id is patched in place, as bolt's. The routing keys are read from a
//! request's body without decoding its arguments ([`hessian`]): the dubbo
//! version, the service path, its version, the method, then the attachments,
//! exposed under MOSN's header names (`dubbo`, `service` (the path, as MOSN
//! reads it), `version`, `method`, and each string attachment under its own
//! name, `group` and `interface` included), so MOSN's Dubbo route configs
//! work unchanged. The attachments lie past the arguments; they are read only
//! when a lookup names a key the head does not hold ([`super::FrameHeaders`]). MOSN reads the attachments only on listeners
//! named `ingress_dubbo` and `egress_dubbo`; ferrymesh reads them on every
//! listener.
//!
//! Error answers are Dubbo responses with Dubbo's own status and a Hessian
//! string body, the message MOSN writes (`404|router unavailable`).
//! Heartbeats (event requests) are answered by whoever receives them, in
//! both directions, and ferrymesh sends its own to keep upstream connections
//! alive.

pub mod frame;
pub mod hessian;

use bytes::{BufMut, BytesMut};

use super::{find_in, Codec, CodecError, Detect, FrameInfo, FrameKind, Header, HeaderList, Parsed};
use crate::error::ProxyError;

pub const MAGIC: [u8; 2] = [0xda, 0xbb];
pub const HEADER_LEN: usize = 16;

const FLAG_REQUEST: u8 = 0x80;
const FLAG_TWO_WAY: u8 = 0x40;
const FLAG_EVENT: u8 = 0x20;
const SERIALIZATION_MASK: u8 = 0x1f;
const HESSIAN2: u8 = 2;

/// Dubbo's response statuses.
pub mod status {
    pub const OK: u8 = 20;
    pub const CLIENT_TIMEOUT: u8 = 30;
    pub const SERVER_TIMEOUT: u8 = 31;
    pub const BAD_REQUEST: u8 = 40;
    pub const BAD_RESPONSE: u8 = 50;
    pub const SERVICE_NOT_FOUND: u8 = 60;
    pub const SERVICE_ERROR: u8 = 70;
    pub const SERVER_ERROR: u8 = 80;
    pub const CLIENT_ERROR: u8 = 90;
    pub const SERVER_THREADPOOL_EXHAUSTED: u8 = 100;
}

pub struct Dubbo;

/// The routing keys at the head of a request's body, in wire order.
const HEAD_KEYS: [&[u8]; 4] = [b"dubbo", b"service", b"version", b"method"];

/// The codec.
pub static DUBBO: Dubbo = Dubbo;

impl Dubbo {
    /// The status and MOSN's message for a failure.
    fn error_answer(err: &ProxyError) -> (u8, String) {
        use status::*;
        match err.code() {
            404 => (SERVICE_NOT_FOUND, "404|router unavailable".into()),
            502 => (SERVICE_NOT_FOUND, "502|no health upstream".into()),
            503 => (BAD_REQUEST, "503|upstream overflow".into()),
            504 => (CLIENT_TIMEOUT, "504|timeout".into()),
            403 => (SERVER_ERROR, "403|permission denied".into()),
            500 => (SERVICE_ERROR, "500|internal error".into()),
            400 => (BAD_REQUEST, "0|codec exception".into()),
            200 => (OK, "200|success".into()),
            other => (SERVICE_ERROR, format!("{other} status not define")),
        }
    }

    /// Appends a whole frame.
    fn put_frame(out: &mut BytesMut, flag: u8, status: u8, id: u64, body: &[u8]) {
        out.put_slice(&MAGIC);
        out.put_u8(flag);
        out.put_u8(status);
        out.put_u64(id);
        out.put_u32(body.len() as u32);
        out.put_slice(body);
    }

    /// The routing keys of a request frame, in lookup order: the four read
    /// from the body's head (`dubbo`, `service` = the path, `version`,
    /// `method`), then, with `attachments`, every string attachment, read
    /// after skipping the arguments. An attachment named like one of the four
    /// does not override it: clients disagree on what they put there
    /// (dubbo-remoting sends `service: "<interface>:<version>"`), and a route
    /// on `service` must match them all.
    fn keys(frame: &[u8], attachments: bool) -> HeaderList<'_> {
        let mut out = HeaderList::new();
        let Some(body) = frame.get(HEADER_LEN..) else { return out };
        let flag = frame[2];
        if flag & FLAG_REQUEST == 0 || flag & FLAG_EVENT != 0 || flag & SERIALIZATION_MASK != HESSIAN2 {
            return out;
        }
        let mut r = hessian::Reader::new(body);
        for name in HEAD_KEYS {
            match r.string() {
                Ok(v) => {
                    if let Some(v) = v.flatten() {
                        out.push((name, Some(v)));
                    }
                }
                Err(_) => return out,
            }
        }
        if !attachments {
            return out;
        }
        // The argument types, the arguments, then the attachments.
        let head = out.len();
        let read = r.string().and_then(|desc| {
            let args = hessian::argument_count(desc.flatten().unwrap_or(b""));
            (0..args).try_for_each(|_| r.skip())?;
            if r.at_end() || r.peek() == Some(b'N') {
                return Ok(());
            }
            r.string_map(|k, v| out.push((k, Some(v))))
        });
        if read.is_err() {
            out.truncate(head);
        }
        out
    }
}

impl Codec for Dubbo {
    fn name(&self) -> &'static str {
        "dubbo"
    }

    fn detect(&self, buf: &[u8]) -> Detect {
        match buf {
            [] => Detect::NeedMore,
            [0xda] => Detect::NeedMore,
            [0xda, 0xbb, ..] => Detect::Match,
            _ => Detect::NoMatch,
        }
    }

    fn parse(&self, buf: &[u8], max_frame: usize) -> Result<Parsed, CodecError> {
        if buf.len() >= 2 && buf[..2] != MAGIC {
            return Err(CodecError::BadMagic(buf[0]));
        }
        if buf.len() < HEADER_LEN {
            return Ok(Parsed::Partial(None));
        }
        let body = u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]) as u64;
        let len = HEADER_LEN as u64 + body;
        if len > max_frame as u64 {
            return Err(CodecError::TooLarge { len, max: max_frame });
        }
        if (buf.len() as u64) < len {
            return Ok(Parsed::Partial(Some(len as usize)));
        }
        let flag = buf[2];
        let kind = match (flag & FLAG_REQUEST != 0, flag & FLAG_EVENT != 0, flag & FLAG_TWO_WAY != 0) {
            (true, true, _) => FrameKind::Heartbeat,
            (true, false, true) => FrameKind::Request,
            (true, false, false) => FrameKind::Oneway,
            (false, true, _) => FrameKind::HeartbeatAck,
            (false, false, _) => FrameKind::Response,
        };
        let id = u64::from_be_bytes(buf[4..12].try_into().map_err(|_| CodecError::BadHeaders)?);
        Ok(Parsed::Frame(FrameInfo {
            len: len as usize,
            kind,
            id,
            timeout_ms: None,
            reply_tag: u32::from(flag & SERIALIZATION_MASK),
        }))
    }

    fn patch_id(&self, frame: &mut [u8], id: u64) {
        frame[4..12].copy_from_slice(&id.to_be_bytes());
    }

    fn max_id(&self) -> u64 {
        i64::MAX as u64
    }

    fn heartbeat_reply(&self, _req: &[u8], info: &FrameInfo, out: &mut BytesMut) {
        // MOSN's reply: response, event, the request's serialization, OK, `N N`.
        Dubbo::put_frame(out, FLAG_EVENT | info.reply_tag as u8, status::OK, info.id, b"NN");
    }

    fn heartbeat_request(&self, id: u64, out: &mut BytesMut) -> bool {
        Dubbo::put_frame(out, FLAG_REQUEST | FLAG_TWO_WAY | FLAG_EVENT | HESSIAN2, 0, id, b"N");
        true
    }

    fn error_response(&self, info: &FrameInfo, id: u64, err: &ProxyError, out: &mut BytesMut) {
        let (status, message) = Dubbo::error_answer(err);
        let mut body = Vec::with_capacity(message.len() + 3);
        hessian::write_string(&mut body, &message);
        Dubbo::put_frame(out, info.reply_tag as u8 & SERIALIZATION_MASK, status, id, &body);
    }

    fn error_status(&self, err: &ProxyError, _reply_tag: u32) -> u32 {
        u32::from(Dubbo::error_answer(err).0)
    }

    fn headers<'a>(&self, frame: &'a [u8]) -> Result<Vec<Header<'a>>, CodecError> {
        Ok(Dubbo::keys(frame, true).into_iter().filter_map(|(k, v)| Some((k, v?))).collect())
    }

    fn header<'a>(&self, frame: &'a [u8], name: &str) -> Option<&'a [u8]> {
        // The head keys come first and attachments never override them: a
        // head key is found in the head alone, any other name past it.
        let name = name.as_bytes();
        find_in(&Dubbo::keys(frame, !HEAD_KEYS.contains(&name)), name)
    }

    fn header_list<'a>(&self, frame: &'a [u8]) -> HeaderList<'a> {
        Dubbo::keys(frame, true)
    }

    /// The attachments follow the arguments, which must be skipped to reach
    /// them: read only for a name the head does not hold.
    fn head_list<'a>(&self, frame: &'a [u8]) -> (HeaderList<'a>, bool) {
        (Dubbo::keys(frame, false), false)
    }

    /// The keys are a read-only view of the body, as in MOSN: a filter's
    /// header changes do not reach the wire, and the frame goes as it came.
    fn encode_with_headers(&self, frame: &[u8], _headers: &[(Vec<u8>, Vec<u8>)], out: &mut BytesMut) {
        out.extend_from_slice(frame);
    }

    fn response_class(&self, frame: &[u8]) -> u16 {
        use status::*;
        match frame.get(3).copied().unwrap_or(0) {
            OK => 200,
            CLIENT_TIMEOUT | SERVER_TIMEOUT => 504,
            BAD_REQUEST => 400,
            SERVICE_NOT_FOUND => 404,
            BAD_RESPONSE => 502,
            SERVER_THREADPOOL_EXHAUSTED => 503,
            _ => 500,
        }
    }
}

#[cfg(test)]
mod tests;
