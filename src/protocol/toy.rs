//! `toy`: the worked example of `docs/adding-a-protocol.md`, a small
//! length-prefixed request/response protocol in one file, registered with
//! one line in [`super::registry::CODECS`].
//!
//! A frame: magic `"TY"`, a kind byte (0 request, 1 response, 2 heartbeat,
//! 3 heartbeat answer), a 4-byte big-endian request id, a 4-byte big-endian
//! length of what follows, then a one-byte service name length, the service
//! name (a response carries its status there instead: `0` is OK) and the
//! body.

use bytes::{BufMut, BytesMut};

use super::{Codec, CodecError, Detect, FrameInfo, FrameKind, Header, HeaderList, Parsed};
use crate::error::ProxyError;

const MAGIC: &[u8; 2] = b"TY";
const HEADER: usize = 11;

pub struct Toy;

pub static TOY: Toy = Toy;

/// Appends a frame (for tests and tools; the proxy only forwards them).
pub fn frame(out: &mut BytesMut, kind: u8, id: u32, service: &[u8], body: &[u8]) {
    out.put_slice(MAGIC);
    out.put_u8(kind);
    out.put_u32(id);
    out.put_u32((1 + service.len() + body.len()) as u32);
    out.put_u8(service.len() as u8);
    out.put_slice(service);
    out.put_slice(body);
}

/// The service name (or a response's status) and the body of a whole frame.
pub fn parts(frame: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = usize::from(*frame.get(HEADER)?);
    let rest = frame.get(HEADER + 1..)?;
    Some((rest.get(..n)?, rest.get(n..)?))
}

impl Codec for Toy {
    fn name(&self) -> &'static str {
        "toy"
    }

    fn detect(&self, buf: &[u8]) -> Detect {
        match buf {
            [b'T', b'Y', ..] => Detect::Match,
            [b'T'] | [] => Detect::NeedMore,
            _ => Detect::NoMatch,
        }
    }

    fn parse(&self, buf: &[u8], max_frame: usize) -> Result<Parsed, CodecError> {
        if buf.len() >= 2 && &buf[..2] != MAGIC {
            return Err(CodecError::BadMagic(buf[0]));
        }
        if buf.len() < HEADER {
            return Ok(Parsed::Partial(None));
        }
        let len = HEADER as u64 + u64::from(u32::from_be_bytes([buf[7], buf[8], buf[9], buf[10]]));
        if len > max_frame as u64 {
            return Err(CodecError::TooLarge { len, max: max_frame });
        }
        if (buf.len() as u64) < len {
            return Ok(Parsed::Partial(Some(len as usize)));
        }
        let kind = match buf[2] {
            0 => FrameKind::Request,
            1 => FrameKind::Response,
            2 => FrameKind::Heartbeat,
            3 => FrameKind::HeartbeatAck,
            other => return Err(CodecError::BadType(other)),
        };
        let id = u64::from(u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]));
        Ok(Parsed::Frame(FrameInfo { len: len as usize, kind, id, timeout_ms: None, reply_tag: 0 }))
    }

    fn patch_id(&self, frame: &mut [u8], id: u64) {
        frame[3..7].copy_from_slice(&(id as u32).to_be_bytes());
    }

    fn max_id(&self) -> u64 {
        u64::from(u32::MAX)
    }

    fn heartbeat_reply(&self, _req: &[u8], info: &FrameInfo, out: &mut BytesMut) {
        frame(out, 3, info.id as u32, b"", b"");
    }

    fn heartbeat_request(&self, id: u64, out: &mut BytesMut) -> bool {
        frame(out, 2, id as u32, b"", b"");
        true
    }

    fn error_response(&self, info: &FrameInfo, id: u64, err: &ProxyError, out: &mut BytesMut) {
        let _ = info;
        frame(out, 1, id as u32, err.code().to_string().as_bytes(), err.to_string().as_bytes());
    }

    fn error_status(&self, err: &ProxyError, _reply_tag: u32) -> u32 {
        u32::from(err.code())
    }

    fn headers<'a>(&self, frame: &'a [u8]) -> Result<Vec<Header<'a>>, CodecError> {
        Ok(self.header_list(frame).into_iter().filter_map(|(k, v)| Some((k, v?))).collect())
    }

    fn header<'a>(&self, frame: &'a [u8], name: &str) -> Option<&'a [u8]> {
        (name == "service" && frame.get(2) == Some(&0)).then(|| parts(frame).map(|p| p.0)).flatten()
    }

    fn header_list<'a>(&self, frame: &'a [u8]) -> HeaderList<'a> {
        let mut list = HeaderList::new();
        if let Some(service) = self.header(frame, "service") {
            list.push((b"service", Some(service)));
        }
        list
    }

    fn encode_with_headers(&self, frame: &[u8], _headers: &[(Vec<u8>, Vec<u8>)], out: &mut BytesMut) {
        out.extend_from_slice(frame);
    }

    fn response_class(&self, frame: &[u8]) -> u16 {
        match parts(frame).map(|p| p.0) {
            Some(b"0") => 200,
            Some(code) => std::str::from_utf8(code).ok().and_then(|c| c.parse().ok()).unwrap_or(500),
            None => 500,
        }
    }
}
