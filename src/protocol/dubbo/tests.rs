use super::*;
use crate::protocol::FrameHeaders;
use proptest::prelude::*;

/// Frames recorded between real Dubbo peers (`tests/fixtures/dubbo-frames.json`).
fn golden() -> Vec<(serde_json::Value, Vec<u8>)> {
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("../../../tests/fixtures/dubbo-frames.json")).expect("fixture JSON");
    doc["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(|f| {
            let hex = f["hex"].as_str().expect("hex");
            let bytes = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
            (f.clone(), bytes)
        })
        .collect()
}

fn text(v: Option<&[u8]>) -> Option<&str> {
    v.map(|b| std::str::from_utf8(b).unwrap())
}

#[test]
fn every_recorded_frame_decodes_as_its_peer_read_it() {
    let frames = golden();
    assert!(frames.len() >= 15);
    for (f, bytes) in &frames {
        let h = &f["header"];
        let info = DUBBO.decode(bytes, 1 << 20).unwrap().expect("a whole frame");
        assert_eq!(info.len, bytes.len(), "{}", f["frame"]);
        assert_eq!(info.id.to_string(), h["id"].as_str().unwrap());
        let want =
            match (h["request"].as_bool().unwrap(), h["event"].as_bool().unwrap(), h["twoWay"].as_bool().unwrap()) {
                (true, true, _) => FrameKind::Heartbeat,
                (true, false, true) => FrameKind::Request,
                (true, false, false) => FrameKind::Oneway,
                (false, true, _) => FrameKind::HeartbeatAck,
                (false, false, _) => FrameKind::Response,
            };
        assert_eq!(info.kind, want, "{}", f["frame"]);
        // Every prefix short of the whole frame asks for more.
        for cut in [0, 1, 15, 16, bytes.len() - 1] {
            assert_eq!(DUBBO.decode(&bytes[..cut], 1 << 20), Ok(None), "cut at {cut}");
        }
        if info.kind == FrameKind::Request {
            let d = &f["decoded"]["data"];
            let props = &d["requestProps"];
            let list = DUBBO.header_list(bytes);
            let get = |n: &str| text(DUBBO.header_in(&list, n));
            assert_eq!(get("method"), d["methodName"].as_str());
            assert_eq!(get("dubbo"), props["dubbo"].as_str());
            assert_eq!(get("service"), props["path"].as_str(), "{}", f["scenario"]);
            assert_eq!(get("interface"), props.get("interface").and_then(|g| g.as_str()));
            assert_eq!(get("group"), props.get("group").and_then(|g| g.as_str()));
            // The lazy lookups agree with the list.
            let lazy = FrameHeaders::new(&DUBBO, bytes);
            for name in ["method", "dubbo", "service", "version", "group", "interface", "path", "absent"] {
                assert_eq!(text(DUBBO.header(bytes, name)), get(name), "{name}");
                assert_eq!(text(lazy.get(name)), get(name), "{name}");
            }
        }
    }
}

#[test]
fn ids_are_patched_in_place() {
    let (_, mut bytes) = golden().into_iter().next().unwrap();
    let before = bytes.clone();
    DUBBO.patch_id(&mut bytes, 0x0102_0304_0506_0708);
    assert_eq!(DUBBO.decode(&bytes, 1 << 20).unwrap().unwrap().id, 0x0102_0304_0506_0708);
    assert_eq!(bytes[..4], before[..4]);
    assert_eq!(bytes[12..], before[12..], "nothing but the id changes");
    let mut out = BytesMut::new();
    DUBBO.write_with_id(&before, 9, &mut out);
    assert_eq!(DUBBO.decode(&out, 1 << 20).unwrap().unwrap().id, 9);
}

#[test]
fn heartbeats_and_error_answers_are_dubbos_own() {
    let req = [0xda, 0xbb, 0xe2, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 1, b'N'];
    let info = DUBBO.decode(&req, 1 << 20).unwrap().unwrap();
    assert_eq!(info.kind, FrameKind::Heartbeat);
    let mut out = BytesMut::new();
    DUBBO.heartbeat_reply(&req, &info, &mut out);
    assert_eq!(&out[..], [0xda, 0xbb, 0x22, 20, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 2, b'N', b'N'], "MOSN's reply");
    let mut hb = BytesMut::new();
    assert!(DUBBO.heartbeat_request(5, &mut hb));
    assert_eq!(DUBBO.decode(&hb, 1 << 20).unwrap().unwrap().kind, FrameKind::Heartbeat);

    let request = golden().into_iter().next().unwrap().1;
    let info = DUBBO.decode(&request, 1 << 20).unwrap().unwrap();
    let cases = [
        (ProxyError::NoRoute, status::SERVICE_NOT_FOUND, "404|router unavailable"),
        (ProxyError::NoHealthyHost, status::SERVICE_NOT_FOUND, "502|no health upstream"),
        (ProxyError::ConnectFailed("x".into()), status::SERVICE_NOT_FOUND, "502|no health upstream"),
        (ProxyError::UpstreamReset, status::SERVICE_NOT_FOUND, "502|no health upstream"),
        (ProxyError::Timeout, status::CLIENT_TIMEOUT, "504|timeout"),
        (ProxyError::Overflow, status::BAD_REQUEST, "503|upstream overflow"),
        (ProxyError::Forbidden, status::SERVER_ERROR, "403|permission denied"),
        (ProxyError::Internal("x"), status::SERVICE_ERROR, "500|internal error"),
    ];
    for (err, want, message) in cases {
        let mut out = BytesMut::new();
        DUBBO.error_response(&info, 77, &err, &mut out);
        let answer = DUBBO.decode(&out, 1 << 20).unwrap().unwrap();
        assert_eq!((answer.kind, answer.id, out[3]), (FrameKind::Response, 77, want), "{err}");
        assert_eq!(DUBBO.error_status(&err, info.reply_tag), u32::from(want));
        let mut r = hessian::Reader::new(&out[HEADER_LEN..]);
        assert_eq!(text(r.string().unwrap().flatten()), Some(message));
        assert!(r.at_end());
    }
}

#[test]
fn detection_and_limits() {
    assert_eq!(DUBBO.detect(&[0xda]), Detect::NeedMore);
    assert_eq!(DUBBO.detect(&[0xda, 0xbb]), Detect::Match);
    assert_eq!(DUBBO.detect(&[0x01, 0x01]), Detect::NoMatch);
    assert_eq!(DUBBO.detect(b"GET / HTTP/1.1"), Detect::NoMatch);
    assert_eq!(DUBBO.decode(b"GET / HTTP/1.1\r\n", 1 << 20), Err(CodecError::BadMagic(b'G')));
    let big = [0xda, 0xbb, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0x10, 0, 0];
    assert!(matches!(DUBBO.decode(&big, 4096), Err(CodecError::TooLarge { .. })));
}

fn frame(flag: u8, id: u64, body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    Dubbo::put_frame(&mut out, flag, 0, id, body);
    out.to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Random bytes never panic the decoder or the key reader; a frame
    /// with a random body decodes to its length and id.
    #[test]
    fn arbitrary_input_is_refused_or_read_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), flag: u8, id: u64) {
        let _ = DUBBO.decode(&bytes, 1 << 20);
        let f = frame(flag, id, &bytes);
        let info = DUBBO.decode(&f, 1 << 20).unwrap().unwrap();
        prop_assert_eq!((info.len, info.id), (f.len(), id));
        let _ = DUBBO.header_list(&f);
        let _ = DUBBO.headers(&f);
        // A recorded request with its body cut or flipped anywhere.
        let golden = golden();
        let req = &golden[0].1;
        let cut = bytes.len() % req.len();
        let mut broken = req[..cut.max(HEADER_LEN)].to_vec();
        if let Some(b) = broken.get_mut(HEADER_LEN + bytes.first().copied().unwrap_or(0) as usize % 150) {
            *b ^= bytes.get(1).copied().unwrap_or(0xff);
        }
        let _ = DUBBO.header_list(&broken);
    }
}
