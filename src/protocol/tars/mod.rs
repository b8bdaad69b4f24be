//! Tars over TCP (`tars`): a 4-byte big-endian length (counting itself)
//! and a JCE-encoded `RequestPacket` or `ResponsePacket`.
//!
//! The request id is a JCE integer field (tag 4 in a request, tag 3 in a
//! response) written in the fewest bytes its value needs, so a new id may
//! change the frame's length: it cannot be patched in place. The codec
//! re-encodes the id field and the length prefix and copies the rest as it
//! came ([`Codec::write_with_id`]), rather than re-serializing the whole
//! packet as MOSN does.
//!
//! Routing keys: `service` (`sServantName`), `method` (`sFuncName`), and the
//! request's `context` entries under their own names. Tars has no
//! heartbeat. Errors are answered with a `ResponsePacket` carrying Tars's own
//! `iRet` codes and a description (MOSN answers none).

pub mod frame;
pub mod jce;

use bytes::{BufMut, BytesMut};

use super::{find_in, Codec, CodecError, Detect, FrameInfo, FrameKind, Header, HeaderList, Parsed};
use crate::error::ProxyError;
use jce::{Field, Kind};

/// TarsGo's largest packet.
pub const MAX_PACKET: usize = 10 << 20;

/// `iRet` codes (`tars/protocol/res/basef`).
pub mod ret {
    pub const SUCCESS: i32 = 0;
    pub const DECODE_ERROR: i32 = -1;
    pub const NO_FUNCTION: i32 = -3;
    pub const NO_SERVANT: i32 = -4;
    pub const QUEUE_TIMEOUT: i32 = -6;
    pub const INVOKE_TIMEOUT: i32 = -7;
    pub const PROXY_CONNECT_ERROR: i32 = -8;
    pub const SERVER_OVERLOAD: i32 = -9;
    pub const UNKNOWN: i32 = -99;
}

const TAG_VERSION: u8 = 1;
const TAG_PACKET_TYPE: u8 = 2;
const REQUEST_ID_TAG: u8 = 4;
const RESPONSE_ID_TAG: u8 = 3;
/// `cPacketType` of a oneway request.
const ONEWAY: i64 = 1;

pub struct Tars;

/// The codec.
pub static TARS: Tars = Tars;

/// What a walk over a packet's leading fields found.
struct Head {
    version: i64,
    request: bool,
    oneway: bool,
    /// The id field's bytes within the frame.
    id: Field,
    id_value: i64,
}

impl Tars {
    /// Reads the leading fields of a whole packet (`frame` includes the length).
    fn head(frame: &[u8]) -> Result<Head, CodecError> {
        let bad = |_| CodecError::BadHeaders;
        let mut r = jce::Reader::new(frame, 4);
        let (mut version, mut packet_type) = (0, 0);
        let mut fields: [Option<(Field, Kind)>; 6] = [None; 6];
        while let Some(mut f) = r.next_field().map_err(bad)? {
            if f.tag > 5 {
                break;
            }
            match f.tag {
                TAG_VERSION => version = r.int(&f).map_err(bad)?,
                TAG_PACKET_TYPE => packet_type = r.int(&f).map_err(bad)?,
                _ => {}
            }
            r.skip(&mut f).map_err(bad)?;
            fields[usize::from(f.tag)] = Some((f, f.kind));
            if f.tag == 5 {
                break;
            }
        }
        // A request's tag 5 is the servant name (a string); a response's is iRet.
        let request = match fields[5] {
            Some((_, Kind::String1 | Kind::String4)) => true,
            Some((_, Kind::Int1 | Kind::Int2 | Kind::Int4 | Kind::Int8 | Kind::Zero)) => false,
            _ => return Err(CodecError::BadHeaders),
        };
        let tag = if request { REQUEST_ID_TAG } else { RESPONSE_ID_TAG };
        let (id, _) = fields[usize::from(tag)].ok_or(CodecError::BadHeaders)?;
        let id_value = jce::Reader::new(frame, 0).int(&id).map_err(bad)?;
        Ok(Head { version, request, oneway: request && packet_type == ONEWAY, id, id_value })
    }

    /// The routing keys of a request.
    fn keys(frame: &[u8]) -> HeaderList<'_> {
        let mut out = HeaderList::new();
        let mut r = jce::Reader::new(frame, 4);
        let mut request = false;
        while let Ok(Some(mut f)) = r.next_field() {
            match (f.tag, f.kind) {
                (5, Kind::String1 | Kind::String4) => {
                    request = true;
                    if let Ok(s) = r.bytes(&f) {
                        out.push((b"service", Some(s)));
                    }
                }
                (5, _) => return out,
                (6, Kind::String1 | Kind::String4) if request => {
                    if let Ok(s) = r.bytes(&f) {
                        out.push((b"method", Some(s)));
                    }
                }
                (9, Kind::Map) if request => {
                    let _ = r.string_map(&f, |k, v| out.push((k, Some(v))));
                    return out;
                }
                _ => {}
            }
            if r.skip(&mut f).is_err() {
                return out;
            }
        }
        out
    }

    fn error_answer(err: &ProxyError) -> i32 {
        match err {
            ProxyError::NoRoute => ret::NO_SERVANT,
            ProxyError::NoHealthyHost | ProxyError::ConnectFailed(_) | ProxyError::UpstreamReset => {
                ret::PROXY_CONNECT_ERROR
            }
            ProxyError::Timeout => ret::INVOKE_TIMEOUT,
            ProxyError::Overflow => ret::SERVER_OVERLOAD,
            ProxyError::Codec | ProxyError::Malformed { .. } => ret::DECODE_ERROR,
            ProxyError::DirectResponse { status: 200, .. } => ret::SUCCESS,
            ProxyError::DirectResponse { status: 404, .. } => ret::NO_SERVANT,
            ProxyError::Forbidden | ProxyError::DirectResponse { .. } | ProxyError::Internal(_) => ret::UNKNOWN,
        }
    }
}

impl Codec for Tars {
    fn name(&self) -> &'static str {
        "tars"
    }

    fn detect(&self, buf: &[u8]) -> Detect {
        if buf.len() < 6 {
            // Could the bytes so far start a packet? A length's first byte
            // must be 0 (packets stay under 10 MiB).
            let plausible = buf.first().is_none_or(|b| *b == 0)
                && buf
                    .get(..4)
                    .is_none_or(|l| (6..=MAX_PACKET as u32).contains(&u32::from_be_bytes([l[0], l[1], l[2], l[3]])))
                && buf.get(4).is_none_or(|b| *b == 0x10);
            return if plausible { Detect::NeedMore } else { Detect::NoMatch };
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        // iVersion first, as a one-byte int: 1 (TARS) or 3 (TUP).
        if buf[4] == 0x10 && matches!(buf[5], 1 | 3) && (6..=MAX_PACKET).contains(&len) {
            Detect::Match
        } else {
            Detect::NoMatch
        }
    }

    fn parse(&self, buf: &[u8], max_frame: usize) -> Result<Parsed, CodecError> {
        if buf.len() < 4 {
            return Ok(Parsed::Partial(None));
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < 6 {
            return Err(CodecError::BadHeaders);
        }
        if len > max_frame.min(MAX_PACKET) {
            return Err(CodecError::TooLarge { len: len as u64, max: max_frame.min(MAX_PACKET) });
        }
        if buf.len() < len {
            return Ok(Parsed::Partial(Some(len)));
        }
        let head = Tars::head(&buf[..len])?;
        let kind = match (head.request, head.oneway) {
            (true, true) => FrameKind::Oneway,
            (true, false) => FrameKind::Request,
            (false, _) => FrameKind::Response,
        };
        Ok(Parsed::Frame(FrameInfo {
            len,
            kind,
            id: head.id_value as u32 as u64,
            timeout_ms: None,
            reply_tag: head.version.clamp(0, 0xff) as u32,
        }))
    }

    /// Tars ids cannot be patched in place; [`Codec::write_with_id`] is
    /// the way. This patches only when the new id fits the old field's width.
    fn patch_id(&self, frame: &mut [u8], id: u64) {
        let mut out = BytesMut::with_capacity(frame.len() + 4);
        self.write_with_id(frame, id, &mut out);
        if out.len() == frame.len() {
            frame.copy_from_slice(&out);
        }
    }

    fn with_id(&self, frame: BytesMut, id: u64) -> BytesMut {
        let mut out = BytesMut::with_capacity(frame.len() + 4);
        self.write_with_id(&frame, id, &mut out);
        out
    }

    fn write_with_id(&self, frame: &[u8], id: u64, out: &mut BytesMut) {
        let Ok(head) = Tars::head(frame) else {
            // Decoded once already; a frame that no longer reads goes as it is.
            out.extend_from_slice(frame);
            return;
        };
        let start = out.len();
        out.put_u32(0);
        out.extend_from_slice(&frame[4..head.id.start]);
        jce::write_int(out, head.id.tag, i64::from(id as u32 as i32));
        out.extend_from_slice(&frame[head.id.end..]);
        let len = (out.len() - start) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    fn max_id(&self) -> u64 {
        i32::MAX as u64
    }

    fn heartbeat_reply(&self, _req: &[u8], _info: &FrameInfo, _out: &mut BytesMut) {}

    fn heartbeat_request(&self, _id: u64, _out: &mut BytesMut) -> bool {
        false
    }

    fn error_response(&self, info: &FrameInfo, id: u64, err: &ProxyError, out: &mut BytesMut) {
        let start = out.len();
        out.put_u32(0);
        jce::write_int(out, 1, i64::from(info.reply_tag.max(1)));
        jce::write_int(out, 2, 0);
        jce::write_int(out, RESPONSE_ID_TAG, i64::from(id as u32 as i32));
        jce::write_int(out, 4, 0);
        jce::write_int(out, 5, i64::from(Tars::error_answer(err)));
        jce::write_empty_bytes(out, 6);
        jce::write_empty_map(out, 7);
        jce::write_string(out, 8, &err.client_message());
        let len = (out.len() - start) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    fn error_status(&self, err: &ProxyError, _reply_tag: u32) -> u32 {
        Tars::error_answer(err) as u32
    }

    fn headers<'a>(&self, frame: &'a [u8]) -> Result<Vec<Header<'a>>, CodecError> {
        Ok(Tars::keys(frame).into_iter().filter_map(|(k, v)| Some((k, v?))).collect())
    }

    fn header<'a>(&self, frame: &'a [u8], name: &str) -> Option<&'a [u8]> {
        find_in(&Tars::keys(frame), name.as_bytes())
    }

    fn header_list<'a>(&self, frame: &'a [u8]) -> HeaderList<'a> {
        Tars::keys(frame)
    }

    /// The keys are read-only: a filter's header changes do not reach the wire.
    fn encode_with_headers(&self, frame: &[u8], _headers: &[(Vec<u8>, Vec<u8>)], out: &mut BytesMut) {
        out.extend_from_slice(frame);
    }

    fn response_class(&self, frame: &[u8]) -> u16 {
        let mut r = jce::Reader::new(frame, 4);
        while let Ok(Some(mut f)) = r.next_field() {
            if f.tag == 5 {
                return match r.int(&f) {
                    Ok(0) => 200,
                    Ok(-6 | -7) => 504,
                    Ok(-9) => 503,
                    Ok(-3 | -4) => 404,
                    Ok(-8) => 502,
                    _ => 500,
                };
            }
            if r.skip(&mut f).is_err() {
                break;
            }
        }
        500
    }
}

#[cfg(test)]
mod tests;
