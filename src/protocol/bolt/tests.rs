//! Golden frames captured from sofa-rpc-node (tests/fixtures/bolt/), and
//! property tests: arbitrary bytes never panic the decoder, and every frame
//! survives decode → re-encode byte for byte.

use std::path::PathBuf;

use bytes::BytesMut;
use proptest::prelude::*;

use super::*;
use crate::protocol::{Codec, FrameKind};

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bolt");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("tests/fixtures/bolt exists") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("hex") {
            continue;
        }
        let text: String = std::fs::read_to_string(&path).unwrap().split_whitespace().collect();
        let bytes = (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect();
        out.push((path.file_stem().unwrap().to_string_lossy().into_owned(), bytes));
    }
    out.sort();
    assert!(out.len() >= 10, "golden frames missing from {}", dir.display());
    out
}

fn codec_for(frame: &[u8]) -> &'static Bolt {
    if frame[0] == 2 {
        &BOLT_V2
    } else {
        &BOLT_V1
    }
}

#[test]
fn golden_frames_decode_as_their_names_say() {
    for (name, frame) in fixtures() {
        let codec = codec_for(&frame);
        let info = codec.decode(&frame, 1 << 20).unwrap().unwrap_or_else(|| panic!("{name}: incomplete"));
        assert_eq!(info.len, frame.len(), "{name}: length from the header");
        let want = if name.contains("heartbeat_ack") {
            FrameKind::HeartbeatAck
        } else if name.contains("heartbeat_request") {
            FrameKind::Heartbeat
        } else if name.ends_with("request") {
            FrameKind::Request
        } else {
            FrameKind::Response
        };
        assert_eq!(info.kind, want, "{name}");
        if info.kind == FrameKind::Request {
            assert_eq!(codec.header(&frame, "service"), Some(&b"com.example.EchoService:1.0"[..]), "{name}");
            assert!(info.timeout_ms.is_some(), "{name}: sofa sends a timeout");
        }
        if name.contains("fail_response") {
            assert_eq!(codec.response_status(&frame), status::SERVER_EXCEPTION);
        }
        // Every byte prefix is "need more", never an error.
        for cut in 0..frame.len() {
            assert_eq!(codec.decode(&frame[..cut], 1 << 20), Ok(None), "{name} cut at {cut}");
        }
    }
}

#[test]
fn crc_trailers_are_checked_and_kept_valid_after_patching() {
    let mut crc_frames = 0;
    for (name, frame) in fixtures() {
        let codec = codec_for(&frame);
        let mut patched = frame.clone();
        codec.patch_id(&mut patched, 0xdead_beef);
        let info = codec.decode(&patched, 1 << 20).unwrap().unwrap();
        assert_eq!(info.id, 0xdead_beef, "{name}");
        if name.starts_with("v2crc") {
            crc_frames += 1;
            let body = frame.len() - 4;
            assert_eq!(
                crc32fast::hash(&frame[..body]).to_be_bytes(),
                frame[body..],
                "{name}: sofa's CRC is CRC32 of the frame"
            );
            assert_eq!(crc32fast::hash(&patched[..body]).to_be_bytes(), patched[body..], "{name}: CRC rewritten");
        }
        let original_id = codec.decode(&frame, 1 << 20).unwrap().unwrap().id;
        codec.patch_id(&mut patched, original_id);
        assert_eq!(patched, frame, "{name}: patching the id back restores every byte");
    }
    assert!(crc_frames > 0, "CRC fixtures present");
}

#[test]
fn golden_frames_reencode_byte_for_byte() {
    for (name, frame) in fixtures() {
        let codec = codec_for(&frame);
        let headers: Vec<(Vec<u8>, Vec<u8>)> =
            codec.headers(&frame).unwrap().into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        let mut out = BytesMut::new();
        codec.encode_with_headers(&frame, &headers, &mut out);
        assert_eq!(&out[..], &frame[..], "{name}");
    }
}

#[test]
fn heartbeat_and_error_replies_match_the_wire() {
    let fx: std::collections::HashMap<String, Vec<u8>> = fixtures().into_iter().collect();
    let req = &fx["heartbeat_request"];
    let info = BOLT_V1.decode(req, 1 << 20).unwrap().unwrap();
    let mut out = BytesMut::new();
    BOLT_V1.heartbeat_reply(req, &info, &mut out);
    assert_eq!(&out[..], &fx["heartbeat_ack"][..], "our ack is the one sofa sends");

    let req = &fx["v2_heartbeat_request"];
    let info = BOLT_V2.decode(req, 1 << 20).unwrap().unwrap();
    let mut out = BytesMut::new();
    BOLT_V2.heartbeat_reply(req, &info, &mut out);
    assert_eq!(&out[..], &fx["v2_heartbeat_ack"][..]);

    let req = &fx["v2crc_heartbeat_request"];
    let info = BOLT_V2.decode(req, 1 << 20).unwrap().unwrap();
    let mut out = BytesMut::new();
    BOLT_V2.heartbeat_reply(req, &info, &mut out);
    assert_eq!(&out[..], &fx["v2crc_heartbeat_ack"][..], "ack with a CRC for a CRC-checking client");
    let mut out = BytesMut::new();
    BOLT_V2.error_response(&info, 9, &ProxyError::Timeout, &mut out);
    let body = out.len() - 4;
    assert_eq!(BOLT_V2.decode(&out, 1 << 20).unwrap().unwrap().len, out.len());
    assert_eq!(crc32fast::hash(&out[..body]).to_be_bytes(), out[body..]);

    // MOSN's heartbeat request for id 7.
    let mut out = BytesMut::new();
    BOLT_V1.heartbeat_request(7, &mut out);
    assert_eq!(hex(&out), "01010000010000000701ffffffff0000000000000000");

    // Error replies: a plain response with the request's id, the status and empty sections.
    let req = &fx["echo_request"];
    let info = BOLT_V1.decode(req, 1 << 20).unwrap().unwrap();
    for (err, st) in [
        (ProxyError::NoRoute, 6),
        (ProxyError::NoHealthyHost, 6),
        (ProxyError::UpstreamReset, 6),
        (ProxyError::ConnectFailed("x".into()), 6),
        (ProxyError::Overflow, 4),
        (ProxyError::Timeout, 7),
        (ProxyError::Codec, 9),
        (ProxyError::Forbidden, 2),
        (ProxyError::Internal("x"), 3),
    ] {
        let mut out = BytesMut::new();
        BOLT_V1.error_response(&info, 42, &err, &mut out);
        assert_eq!(hex(&out), format!("0100000201000000{:02x}0100{:02x}0000000000000000", 42, st), "{err:?}");
    }
    assert_eq!(BOLT_V2.error_status(&ProxyError::Forbidden, pack_tag(1, 1, 0, 2)), 3, "bolt v2 maps 403 to 3, as MOSN");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn limits_and_bad_bytes_are_errors() {
    let frame = RequestBuilder::new(1, "s", &[0u8; 1000]).encode();
    assert!(matches!(BOLT_V1.decode(&frame, 100), Err(CodecError::TooLarge { .. })));
    // The limit is checked from the header alone, before the body arrives.
    assert!(matches!(BOLT_V1.decode(&frame[..30], 100), Err(CodecError::TooLarge { .. })));
    assert_eq!(BOLT_V1.decode(b"GET / HTTP/1.1", 1 << 20), Err(CodecError::BadMagic(b'G')));
    let mut bad = frame.clone();
    bad[1] = 9;
    assert_eq!(BOLT_V1.decode(&bad, 1 << 20), Err(CodecError::BadType(9)));
    let mut bad = frame;
    bad[3] = 50;
    assert_eq!(BOLT_V1.decode(&bad, 1 << 20), Err(CodecError::BadCommand(50)));
}

fn arb_request() -> impl Strategy<Value = RequestBuilder> {
    (
        1u8..=2,
        any::<u32>(),
        any::<bool>(),
        any::<i32>(),
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..16), proptest::collection::vec(any::<u8>(), 0..32)),
            0..6,
        ),
        proptest::collection::vec(any::<u8>(), 0..512),
    )
        .prop_map(|(version, id, oneway, timeout_ms, class, headers, content)| RequestBuilder {
            version,
            id,
            oneway,
            heartbeat: false,
            timeout_ms,
            class,
            headers,
            content,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        for codec in [&BOLT_V1, &BOLT_V2] {
            if let Ok(Some(info)) = codec.decode(&bytes, 1 << 20) {
                let frame = &bytes[..info.len];
                let _ = codec.headers(frame);
                let _ = codec.header(frame, "service");
                let _ = codec.response_class(frame);
                let mut copy = frame.to_vec();
                codec.patch_id(&mut copy, 5);
                let mut out = BytesMut::new();
                codec.error_response(&info, 5, &ProxyError::Timeout, &mut out);
                prop_assert!(codec.decode(&out, 1 << 20).unwrap().is_some());
            }
        }
    }

    /// Lookups in any order, each name any number of times, answer what
    /// `header` answers: the first walks the frame, later ones read lists.
    #[test]
    fn frame_headers_answer_as_header_does(
        headers in proptest::collection::vec((0usize..6, 0usize..3), 0..8),
        names in proptest::collection::vec(0usize..7, 1..8),
    ) {
        // Repeated and interleaved names, "service" (whose first answer is kept) among them.
        const NAMES: [&str; 7] = ["service", "sofa_head_target_service", "sofa_head_method_name", "method", "x",
            "a_header_name_longer_than_thirty_one_bytes", "absent"];
        let mut req = RequestBuilder::new(1, "", b"body");
        req.headers = headers.iter().map(|&(k, v)| (NAMES[k].as_bytes().to_vec(), format!("v{v}").into_bytes())).collect();
        let frame = req.encode();
        let lazy = crate::protocol::FrameHeaders::new(&BOLT_V1, &frame);
        for n in names {
            prop_assert_eq!(lazy.get(NAMES[n]), BOLT_V1.header(&frame, NAMES[n]), "{}", NAMES[n]);
        }
    }

    #[test]
    fn requests_survive_decode_and_reencode(req in arb_request()) {
        let frame = req.encode();
        let codec = codec_for(&frame);
        let info = codec.decode(&frame, 1 << 20).unwrap().unwrap();
        prop_assert_eq!(info.len, frame.len());
        prop_assert_eq!(info.id, u64::from(req.id));
        prop_assert_eq!(info.kind, if req.oneway { FrameKind::Oneway } else { FrameKind::Request });
        prop_assert_eq!(info.timeout_ms, (req.timeout_ms > 0).then_some(req.timeout_ms as u32));
        let headers: Vec<(Vec<u8>, Vec<u8>)> = codec.headers(&frame).unwrap().into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        prop_assert_eq!(&headers, &req.headers);
        let mut out = BytesMut::new();
        codec.encode_with_headers(&frame, &headers, &mut out);
        prop_assert_eq!(&out[..], &frame[..]);
        let (class, _, content) = codec.split(&frame);
        prop_assert_eq!(class, &req.class[..]);
        prop_assert_eq!(content, &req.content[..]);
    }

    #[test]
    fn a_stream_of_frames_splits_the_same_at_any_cut(reqs in proptest::collection::vec(arb_request(), 1..5), cut in any::<prop::sample::Index>()) {
        let reqs: Vec<RequestBuilder> = reqs.into_iter().map(|mut r| { r.version = 1; r }).collect();
        let stream: Vec<u8> = reqs.iter().flat_map(|r| r.encode()).collect();
        let cut = cut.index(stream.len() + 1);
        let mut reader = crate::network::frames::FrameReader::default();
        let mut ids = Vec::new();
        reader.feed(&stream[..cut], &BOLT_V1, 1 << 20, |_, i| ids.push(i.id)).unwrap();
        reader.feed(&stream[cut..], &BOLT_V1, 1 << 20, |_, i| ids.push(i.id)).unwrap();
        prop_assert_eq!(ids, reqs.iter().map(|r| u64::from(r.id)).collect::<Vec<_>>());
        prop_assert!(!reader.has_partial());
    }
}
