use super::frame::{request, response};
use super::*;
use proptest::prelude::*;

#[test]
fn requests_and_responses_decode_with_their_ids_and_keys() {
    let req = request(7, "Test.HelloServer.HelloObj", "sayHello", false, &[("trace", "abc"), ("lane", "blue")]);
    let info = TARS.decode(&req, 1 << 20).unwrap().unwrap();
    assert_eq!((info.kind, info.id, info.len), (FrameKind::Request, 7, req.len()));
    let list = TARS.header_list(&req);
    assert_eq!(TARS.header_in(&list, "service"), Some(&b"Test.HelloServer.HelloObj"[..]));
    assert_eq!(TARS.header_in(&list, "method"), Some(&b"sayHello"[..]));
    assert_eq!(TARS.header_in(&list, "lane"), Some(&b"blue"[..]));
    assert_eq!(TARS.header(&req, "trace"), Some(&b"abc"[..]));
    let oneway = request(8, "S", "f", true, &[]);
    assert_eq!(TARS.decode(&oneway, 1 << 20).unwrap().unwrap().kind, FrameKind::Oneway);
    let resp = response(7, 0);
    let info = TARS.decode(&resp, 1 << 20).unwrap().unwrap();
    assert_eq!((info.kind, info.id), (FrameKind::Response, 7));
    assert_eq!(TARS.response_class(&resp), 200);
    assert_eq!(TARS.response_class(&response(7, ret::INVOKE_TIMEOUT)), 504);
    assert!(TARS.header_list(&resp).is_empty());
    for cut in [0, 3, 4, 10, req.len() - 1] {
        assert_eq!(TARS.decode(&req[..cut], 1 << 20), Ok(None), "cut at {cut}");
    }
}

/// The id is an integer of variable width: a new id is written around the
/// rest of the frame, which goes as it came.
#[test]
fn ids_of_every_width_are_rewritten_and_the_rest_kept() {
    for (from, to) in [(0, 1), (1, 0), (5, 200), (200, 70_000), (70_000, i32::MAX), (i32::MAX, 3)] {
        let req = request(from, "S.O", "f", false, &[("k", "v")]);
        let mut out = BytesMut::new();
        TARS.write_with_id(&req, to as u64, &mut out);
        let info = TARS.decode(&out, 1 << 20).unwrap().unwrap();
        assert_eq!((info.id, info.len), (to as u64, out.len()), "{from} -> {to}");
        assert_eq!(out.to_vec(), request(to, "S.O", "f", false, &[("k", "v")]), "only the id and length change");
        let mut back = BytesMut::new();
        TARS.write_with_id(&out, from as u64, &mut back);
        assert_eq!(back.to_vec(), req);
        let resp = response(from, 0);
        let mut out = BytesMut::new();
        TARS.write_with_id(&resp, to as u64, &mut out);
        assert_eq!(out.to_vec(), response(to, 0));
    }
}

#[test]
fn errors_are_answered_with_tars_return_codes() {
    let req = request(9, "S.O", "f", false, &[]);
    let info = TARS.decode(&req, 1 << 20).unwrap().unwrap();
    for (err, want, class) in [
        (ProxyError::NoRoute, ret::NO_SERVANT, 404),
        (ProxyError::NoHealthyHost, ret::PROXY_CONNECT_ERROR, 502),
        (ProxyError::Timeout, ret::INVOKE_TIMEOUT, 504),
        (ProxyError::Overflow, ret::SERVER_OVERLOAD, 503),
        (ProxyError::Internal("x"), ret::UNKNOWN, 500),
    ] {
        let mut out = BytesMut::new();
        TARS.error_response(&info, 41, &err, &mut out);
        let answer = TARS.decode(&out, 1 << 20).unwrap().unwrap();
        assert_eq!((answer.kind, answer.id, answer.len), (FrameKind::Response, 41, out.len()), "{err}");
        assert_eq!(TARS.response_class(&out), class, "{err}");
        assert_eq!(TARS.error_status(&err, info.reply_tag) as i32, want);
    }
    let mut hb = BytesMut::new();
    assert!(!TARS.heartbeat_request(1, &mut hb), "Tars has no heartbeat");
}

#[test]
fn detection_and_limits() {
    let req = request(1, "S.O", "f", false, &[]);
    assert_eq!(TARS.detect(&req[..6]), Detect::Match);
    assert_eq!(TARS.detect(&req[..3]), Detect::NeedMore);
    assert_eq!(TARS.detect(b"GET / HTTP/1.1"), Detect::NoMatch);
    assert_eq!(TARS.detect(&[0xda, 0xbb, 0xc2, 0]), Detect::NoMatch, "Dubbo is not Tars");
    assert_eq!(TARS.detect(&[0x01, 0x01, 0x00, 0x00, 0x00, 0x01]), Detect::NoMatch, "bolt is not Tars");
    let mut big = req.clone();
    big[..4].copy_from_slice(&(64u32 << 20).to_be_bytes());
    assert!(matches!(TARS.decode(&big, 1 << 20), Err(CodecError::TooLarge { .. })));
    let mut tiny = req;
    tiny[..4].copy_from_slice(&2u32.to_be_bytes());
    assert!(TARS.decode(&tiny, 1 << 20).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn arbitrary_bytes_never_panic_and_ids_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..200), id in 0..=i32::MAX, to in 0..=i32::MAX) {
        let mut framed = (bytes.len() as u32 + 4).to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        let _ = TARS.decode(&framed, 1 << 20);
        let _ = TARS.header_list(&framed);
        let _ = TARS.response_class(&framed);
        let mut out = BytesMut::new();
        TARS.write_with_id(&framed, 5, &mut out);
        let req = request(id, "S.O", "f", false, &[("k", "v")]);
        let mut out = BytesMut::new();
        TARS.write_with_id(&req, to as u64, &mut out);
        prop_assert_eq!(TARS.decode(&out, 1 << 20).unwrap().unwrap().id, to as u64);
        // The request with a byte flipped anywhere: refused or read, never a panic.
        let mut broken = req.clone();
        let at = 4 + bytes.first().copied().unwrap_or(0) as usize % (req.len() - 4);
        broken[at] ^= bytes.get(1).copied().unwrap_or(0xff);
        let _ = TARS.decode(&broken, 1 << 20);
        let _ = TARS.header_list(&broken);
    }
}

/// Frames recorded between the real @tars/rpc client and server.
#[test]
fn frames_recorded_from_tars_rpc_decode_and_take_new_ids() {
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("../../../tests/fixtures/tars-frames.json")).expect("fixture JSON");
    for f in doc["frames"].as_array().unwrap() {
        let hex = f["hex"].as_str().unwrap();
        let bytes: Vec<u8> =
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        let info = TARS.decode(&bytes, 1 << 20).unwrap().expect("whole");
        let request = f["kind"] == "request";
        assert_eq!(info.kind, if request { FrameKind::Request } else { FrameKind::Response }, "{hex}");
        assert_eq!(info.id, f["id"].as_u64().unwrap());
        assert_eq!(info.len, bytes.len());
        if request {
            let list = TARS.header_list(&bytes);
            assert!(TARS.header_in(&list, "service").is_some_and(|s| s.ends_with(b"Obj")));
            assert_eq!(TARS.header_in(&list, "method"), Some(&b"echo"[..]));
        } else {
            assert_eq!(TARS.response_class(&bytes), 200);
        }
        for id in [0u64, 1, 300, i32::MAX as u64] {
            let mut out = BytesMut::new();
            TARS.write_with_id(&bytes, id, &mut out);
            let again = TARS.decode(&out, 1 << 20).unwrap().unwrap();
            assert_eq!((again.id, again.kind, again.len), (id, info.kind, out.len()));
            let mut back = BytesMut::new();
            TARS.write_with_id(&out, info.id, &mut back);
            assert_eq!(back.to_vec(), bytes, "the id goes back to the recorded bytes");
        }
    }
}
