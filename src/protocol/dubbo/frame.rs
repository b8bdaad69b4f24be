//! Builders and readers of whole Dubbo frames, for the tests, the examples
//! and the load tool. The proxy never builds a request; it forwards them.

use bytes::BytesMut;

use super::{hessian, Dubbo, FLAG_REQUEST, FLAG_TWO_WAY, HEADER_LEN, HESSIAN2};

/// A hessian2 request as Dubbo 2.7 clients write it: `method(String)` on
/// `service` version 1.0, with `arg`, and the attachments `path`,
/// `interface` and `version`.
pub fn request(id: u64, service: &str, method: &str, arg: &str, two_way: bool) -> Vec<u8> {
    let mut body = Vec::new();
    for s in ["2.0.2", service, "1.0", method, "Ljava/lang/String;", arg] {
        hessian::write_string(&mut body, s);
    }
    body.push(b'H');
    for s in ["path", service, "interface", service, "version", "1.0"] {
        hessian::write_string(&mut body, s);
    }
    body.push(b'Z');
    let flag = FLAG_REQUEST | if two_way { FLAG_TWO_WAY } else { 0 } | HESSIAN2;
    let mut out = BytesMut::new();
    Dubbo::put_frame(&mut out, flag, 0, id, &body);
    out.to_vec()
}

/// An OK response whose value is the string `value` (result flag 1).
pub fn response(id: u64, value: &str) -> Vec<u8> {
    let mut body = vec![0x91];
    hessian::write_string(&mut body, value);
    let mut out = BytesMut::new();
    Dubbo::put_frame(&mut out, HESSIAN2, super::status::OK, id, &body);
    out.to_vec()
}

/// Appends an OK response whose value is `value`, already hessian2-encoded
/// (an echo copies a request's argument as it came, see [`request_arg_encoded`]).
pub fn response_encoded(out: &mut BytesMut, id: u64, value: &[u8]) {
    out.reserve(HEADER_LEN + 1 + value.len());
    out.extend_from_slice(&super::MAGIC);
    out.extend_from_slice(&[HESSIAN2, super::status::OK]);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&(1 + value.len() as u32).to_be_bytes());
    out.extend_from_slice(&[0x91]);
    out.extend_from_slice(value);
}

/// The hessian2 bytes of an OK response's value, as they are on the wire.
pub fn response_encoded_value(frame: &[u8]) -> Option<&[u8]> {
    match frame.get(HEADER_LEN..)? {
        [0x91, value @ ..] if status(frame) == super::status::OK => Some(value),
        _ => None,
    }
}

/// The response's status byte.
pub fn status(frame: &[u8]) -> u8 {
    frame.get(3).copied().unwrap_or(0)
}

/// The string an OK response carries, or the error message of another.
pub fn response_text(frame: &[u8]) -> Option<String> {
    let body = frame.get(HEADER_LEN..)?;
    let body = match body.first()? {
        0x91 | 0x94 if status(frame) == super::status::OK => &body[1..],
        _ => body,
    };
    let s = hessian::Reader::new(body).string_joined().ok()??;
    Some(String::from_utf8_lossy(&s).into_owned())
}

/// A request's first argument, when it is a string.
pub fn request_arg(frame: &[u8]) -> Option<String> {
    let mut r = hessian::Reader::new(frame.get(HEADER_LEN..)?);
    for _ in 0..5 {
        r.string().ok()?;
    }
    let s = r.string_joined().ok()??;
    Some(String::from_utf8_lossy(&s).into_owned())
}

/// A request's first argument as hessian2 bytes, as it is on the wire.
pub fn request_arg_encoded(frame: &[u8]) -> Option<&[u8]> {
    let body = frame.get(HEADER_LEN..)?;
    let mut r = hessian::Reader::new(body);
    for _ in 0..5 {
        r.string().ok()?;
    }
    let start = r.position();
    r.skip().ok()?;
    body.get(start..r.position())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Codec, FrameKind};

    #[test]
    fn built_frames_read_back() {
        let req = request(5, "com.example.Echo", "echo", "hi", true);
        let info = super::super::DUBBO.decode(&req, 1 << 20).unwrap().unwrap();
        assert_eq!((info.kind, info.id), (FrameKind::Request, 5));
        assert_eq!(super::super::DUBBO.header(&req, "service"), Some(&b"com.example.Echo"[..]));
        assert_eq!(request_arg(&req).as_deref(), Some("hi"));
        assert_eq!(response_text(&response(5, "hi back")).as_deref(), Some("hi back"));
        // The echo's zero-copy path gives the same frame.
        let mut echoed = BytesMut::new();
        response_encoded(&mut echoed, 5, request_arg_encoded(&request(5, "s", "echo", "hi back", true)).unwrap());
        assert_eq!(&echoed[..], &response(5, "hi back")[..]);
        let mut hi = Vec::new();
        hessian::write_string(&mut hi, "hi back");
        assert_eq!(response_encoded_value(&echoed), Some(&hi[..]));
        let oneway = request(6, "s", "m", "a", false);
        assert_eq!(super::super::DUBBO.decode(&oneway, 1 << 20).unwrap().unwrap().kind, FrameKind::Oneway);
    }
}
