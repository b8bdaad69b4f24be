//! Builders and readers of whole Tars packets, for the tests, the examples
//! and the load tool.

use bytes::{BufMut, BytesMut};

use super::jce::{self, write_bytes, write_int, write_string, write_string_map, Kind};

fn finish(mut out: BytesMut) -> Vec<u8> {
    let len = out.len() as u32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out.to_vec()
}

/// A `RequestPacket` as TarsGo writes one (fields 1 to 10, in tag order),
/// with `buffer` as its `sBuffer`.
pub fn request_with(
    id: i32,
    servant: &str,
    func: &str,
    oneway: bool,
    context: &[(&str, &str)],
    buffer: &[u8],
) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u32(0);
    write_int(&mut out, 1, 1);
    write_int(&mut out, 2, if oneway { 1 } else { 0 });
    write_int(&mut out, 3, 0);
    write_int(&mut out, 4, i64::from(id));
    write_string(&mut out, 5, servant);
    write_string(&mut out, 6, func);
    write_bytes(&mut out, 7, buffer);
    write_int(&mut out, 8, 3000);
    write_string_map(&mut out, 9, context);
    write_string_map(&mut out, 10, &[]);
    finish(out)
}

/// A request with a fixed small buffer.
pub fn request(id: i32, servant: &str, func: &str, oneway: bool, context: &[(&str, &str)]) -> Vec<u8> {
    request_with(id, servant, func, oneway, context, b"\x0c\x1c payload")
}

/// A `ResponsePacket` with `iRet` and `buffer` as its `sBuffer`.
pub fn response_with(id: i32, ret: i32, buffer: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u32(0);
    write_int(&mut out, 1, 1);
    write_int(&mut out, 2, 0);
    write_int(&mut out, 3, i64::from(id));
    write_int(&mut out, 4, 0);
    write_int(&mut out, 5, i64::from(ret));
    write_bytes(&mut out, 6, buffer);
    write_string_map(&mut out, 7, &[]);
    write_string(&mut out, 8, "");
    finish(out)
}

/// A response with a fixed small buffer.
pub fn response(id: i32, ret: i32) -> Vec<u8> {
    response_with(id, ret, b"result")
}

/// The `sBuffer` of a request (tag 7) or a response (tag 6), and `iRet` of
/// a response.
pub fn buffer(frame: &[u8]) -> Option<&[u8]> {
    let mut r = jce::Reader::new(frame, 4);
    let mut request = false;
    while let Ok(Some(mut f)) = r.next_field() {
        if f.tag == 5 {
            request = matches!(f.kind, Kind::String1 | Kind::String4);
        }
        let want = if request { 7 } else { 6 };
        if f.tag == want && f.kind == Kind::SimpleList {
            // A head (tag 0, Int1), the length, the bytes.
            let mut inner = jce::Reader::new(frame, f.body + 1);
            let n = inner.next_field().ok()??;
            let len = inner.int(&n).ok()? as usize;
            let mut n = n;
            inner.skip(&mut n).ok()?;
            return frame.get(n.end..n.end + len);
        }
        r.skip(&mut f).ok()?;
    }
    None
}

/// A response's `iRet`.
pub fn ret(frame: &[u8]) -> Option<i64> {
    let mut r = jce::Reader::new(frame, 4);
    while let Ok(Some(mut f)) = r.next_field() {
        if f.tag == 5 {
            return r.int(&f).ok();
        }
        r.skip(&mut f).ok()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_read_back() {
        assert_eq!(buffer(&request_with(1, "S", "f", false, &[], b"abc")), Some(&b"abc"[..]));
        assert_eq!(buffer(&response_with(1, 0, b"xyz")), Some(&b"xyz"[..]));
        assert_eq!(ret(&response(1, -7)), Some(-7));
    }
}
