//! The checks every `decode_*` target runs, written once for any
//! [`Codec`]. A panic here, in an assertion or inside the codec, is a bug.

use bytes::BytesMut;
use ferrymesh::error::ProxyError;
use ferrymesh::protocol::{Codec, FrameInfo, FrameKind};

/// The frame limit the targets decode with (1 MiB).
pub const MAX_FRAME: usize = 1 << 20;

/// Bytes put in the output buffer before a frame is appended, so that a codec
/// which writes from offset 0 instead of the end of the buffer is caught.
const PREFIX: &[u8] = b"\xfe\xed\xfa";

/// Reads `data` as the bytes of one connection: decodes frames from the start,
/// advancing by each frame's length, until the codec wants more bytes or
/// rejects the stream, and checks every whole frame found.
/// `same_len`: whether a new id leaves the frame's length as it was (all
/// codecs but Tars, whose id is a variable-length integer).
pub fn check_stream(codec: &dyn Codec, data: &[u8], same_len: bool) {
    let mut pos = 0;
    while pos < data.len() {
        let buf = &data[pos..];
        let info = match codec.decode(buf, MAX_FRAME) {
            Ok(Some(info)) => info,
            Ok(None) | Err(_) => break,
        };
        assert!(
            info.len > 0 && info.len <= buf.len(),
            "{}: decode returned len {} for a buffer of {} bytes",
            codec.name(),
            info.len,
            buf.len()
        );
        check_frame(codec, &buf[..info.len], &info, same_len);
        pos += info.len;
    }
}

fn check_frame(codec: &dyn Codec, frame: &[u8], info: &FrameInfo, same_len: bool) {
    let name = codec.name();

    // A reader that has only part of this frame must be told to wait for more,
    // not get a frame or an error (which would close the connection).
    let short = frame.len().min(32);
    for cut in (0..short).chain([frame.len() / 2, frame.len() - 1]) {
        if cut >= frame.len() {
            continue;
        }
        let r = codec.decode(&frame[..cut], MAX_FRAME);
        assert!(
            matches!(r, Ok(None)),
            "{name}: the first {cut} of {} bytes of a whole frame decode to {r:?}, not Ok(None)",
            frame.len()
        );
    }

    // The header readers: no panics, and `header` agrees with `header_in` over
    // `header_list`, as the Codec documentation promises.
    let list = codec.header_list(frame);
    let _ = codec.headers(frame);
    for key in ["service", "method"] {
        let direct = codec.header(frame, key);
        let listed = codec.header_in(&list, key);
        assert_eq!(direct, listed, "{name}: header({key:?}) disagrees with header_in(header_list)");
    }
    let _ = codec.response_class(frame);

    let ids = [0, 1, codec.max_id()];

    // Re-addressing the frame: it must decode again, whole, with the new id.
    for id in ids {
        let mut out = BytesMut::from(PREFIX);
        codec.write_with_id(frame, id, &mut out);
        assert_eq!(&out[..PREFIX.len()], PREFIX, "{name}: write_with_id overwrote bytes already in the buffer");
        let written = &out[PREFIX.len()..];
        let again = decode_whole(codec, written, "write_with_id", id);
        assert_eq!(again.id, id, "{name}: write_with_id({id}) decodes with id {}", again.id);
        assert_eq!(again.kind, info.kind, "{name}: write_with_id({id}) changed the kind");
        if same_len {
            assert_eq!(again.len, info.len, "{name}: write_with_id({id}) changed the frame length");
        }
    }

    // A request the proxy fails is answered in the client's protocol.
    if info.kind == FrameKind::Request {
        let errors = [
            ProxyError::NoRoute,
            ProxyError::Timeout,
            ProxyError::Overflow,
            ProxyError::Codec,
            ProxyError::ConnectFailed("fuzz".into()),
            ProxyError::DirectResponse { status: 200, body: "ok".into() },
            ProxyError::DirectResponse { status: 404, body: String::new() },
            ProxyError::Internal("fuzz"),
        ];
        for err in &errors {
            for id in ids {
                let mut out = BytesMut::from(PREFIX);
                codec.error_response(info, id, err, &mut out);
                assert_eq!(
                    &out[..PREFIX.len()],
                    PREFIX,
                    "{name}: error_response overwrote bytes already in the buffer"
                );
                let reply = decode_whole(codec, &out[PREFIX.len()..], "error_response", id);
                assert_eq!(
                    reply.kind,
                    FrameKind::Response,
                    "{name}: error_response({err:?}) decodes as {:?}",
                    reply.kind
                );
                assert_eq!(reply.id, id, "{name}: error_response({err:?}, id {id}) decodes with id {}", reply.id);
                let _ = codec.response_class(&out[PREFIX.len()..]);
            }
        }
    }

    // A keep-alive probe is answered with an ack carrying its id.
    if info.kind == FrameKind::Heartbeat {
        let mut out = BytesMut::from(PREFIX);
        codec.heartbeat_reply(frame, info, &mut out);
        if out.len() > PREFIX.len() {
            let ack = decode_whole(codec, &out[PREFIX.len()..], "heartbeat_reply", info.id);
            assert_eq!(ack.kind, FrameKind::HeartbeatAck, "{name}: heartbeat_reply decodes as {:?}", ack.kind);
            assert_eq!(ack.id, info.id, "{name}: heartbeat_reply decodes with id {}", ack.id);
        }
    }
}

/// Decodes bytes a codec wrote: they must be exactly one whole frame.
fn decode_whole(codec: &dyn Codec, bytes: &[u8], what: &str, id: u64) -> FrameInfo {
    let name = codec.name();
    // A little slack: Tars may grow a frame by a few bytes when the id widens.
    match codec.decode(bytes, MAX_FRAME + 64) {
        Ok(Some(info)) => {
            assert_eq!(
                info.len,
                bytes.len(),
                "{name}: {what} (id {id}) wrote {} bytes but they decode as a frame of {}",
                bytes.len(),
                info.len
            );
            info
        }
        other => panic!("{name}: {what} (id {id}) wrote {:02x?}, which decodes to {other:?}", bytes),
    }
}
