//! Protocol layer: bytes ⇄ frames.
//!
//! A codec knows one wire format and nothing else: where a frame ends, what kind
//! of frame it is, where its request id lives, how to answer a heartbeat and how
//! to say "the proxy failed this request" in the protocol's own words. The stream
//! and proxy layers talk to codecs only through [`Codec`], so they never see a
//! byte offset.
//!
//! The decision a reader may question: [`Codec::decode`] does not build a frame
//! object. It reads only the fixed header and returns a [`FrameInfo`] (kind, id,
//! length, timeout); the frame stays as the bytes it arrived in and is copied
//! once, id patched on the way, into the buffer of the connection it goes to
//! (a large frame gathered across reads is not copied at all, see
//! `network::frames`).
//! Header maps are parsed lazily, only when a route or a filter asks for a header.

pub mod bolt;
pub mod dubbo;
pub mod http;
pub mod registry;
pub mod tars;
pub mod toy;

use bytes::BytesMut;

use crate::error::ProxyError;

/// What kind of frame a decoded header describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A request that expects exactly one response.
    Request,
    /// A request that expects no response.
    Oneway,
    /// A response to a request.
    Response,
    /// A keep-alive probe; answered by whoever receives it, never proxied.
    Heartbeat,
    /// The answer to a keep-alive probe.
    HeartbeatAck,
    /// A protocol control frame (e.g. bolt GoAway): consumed, not proxied.
    Control,
}

impl FrameKind {
    /// True for frames that travel downstream → upstream.
    pub fn is_request(self) -> bool {
        matches!(self, FrameKind::Request | FrameKind::Oneway)
    }
}

/// The facts the stream and proxy layers need about one whole frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// Total length of the frame in bytes.
    pub len: usize,
    pub kind: FrameKind,
    /// The request id as it is on the wire.
    pub id: u64,
    /// The timeout the client put in the frame, if any (bolt: the timeout field).
    pub timeout_ms: Option<u32>,
    /// Codec-private facts needed to answer this frame later (bolt: version and
    /// serialization byte), so an error reply can be built without the frame.
    pub reply_tag: u32,
}

/// What [`Codec::parse`] finds at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A whole frame.
    Frame(FrameInfo),
    /// Part of a frame: more bytes are needed. Its total length once the
    /// fixed header is in, so that a reader can gather a large frame into a
    /// buffer of its own size.
    Partial(Option<usize>),
}

/// Outcome of [`Codec::detect`] on the first bytes of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detect {
    Match,
    NoMatch,
    NeedMore,
}

/// Why a byte stream cannot be decoded. The connection that sent it is closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("unknown protocol byte {0:#04x}")]
    BadMagic(u8),
    #[error("unknown frame type {0:#04x}")]
    BadType(u8),
    #[error("unknown command code {0}")]
    BadCommand(u16),
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: u64, max: usize },
    #[error("malformed header map")]
    BadHeaders,
}

/// A key/value header of a frame, borrowed from the frame bytes.
pub type Header<'a> = (&'a [u8], &'a [u8]);

/// A frame's header map as routing reads it: parsed once per request, in wire
/// order, so that matching a table of any size reads the frame only once. A
/// `None` value is a null entry, which hides later entries of the same name
/// (as a lookup in the frame itself would stop there). Most frames carry a
/// dozen headers or fewer, which stay on the stack.
pub type HeaderList<'a> = smallvec::SmallVec<[(&'a [u8], Option<&'a [u8]>); 12]>;

/// The first entry named `name` in `list`.
pub fn find_in<'a>(list: &[(&'a [u8], Option<&'a [u8]>)], name: &[u8]) -> Option<&'a [u8]> {
    list.iter().find(|(k, _)| *k == name).and_then(|(_, v)| *v)
}

/// A request's routing keys, read only as far as lookups go: the first
/// lookup walks the frame for its one name ([`Codec::header`]: a route table
/// that reads one header, as most do, parses no list); a second parses the
/// head of the frame ([`Codec::head_list`]) for this and every later lookup,
/// and the rest at the first lookup the head cannot answer. A route table of
/// any size reads the frame at most three times. When the first lookup is of
/// `service`, its answer is kept: a route filed under an exact `service` (the
/// usual RPC route) is found by that header and then checked against it, and
/// that second look costs a compare instead of a list (bolt: 3,154 → 2,807
/// instructions per call at full load). Keeping any name would mean copying
/// it, since a lookup's name lives only as long as the call; that copy cost
/// every one-lookup table 50 instructions per call.
pub struct FrameHeaders<'a> {
    codec: &'static dyn Codec,
    frame: &'a [u8],
    first: std::cell::Cell<Option<FirstLookup<'a>>>,
    head: std::cell::OnceCell<(HeaderList<'a>, bool)>,
    all: std::cell::OnceCell<HeaderList<'a>>,
}

/// The one name whose first answer [`FrameHeaders`] keeps.
const KEPT_NAME: &str = "service";

/// What the first lookup left: whether it was of [`KEPT_NAME`], and its answer.
type FirstLookup<'a> = (bool, Option<&'a [u8]>);

impl<'a> FrameHeaders<'a> {
    pub fn new(codec: &'static dyn Codec, frame: &'a [u8]) -> Self {
        FrameHeaders {
            codec,
            frame,
            first: std::cell::Cell::new(None),
            head: std::cell::OnceCell::new(),
            all: std::cell::OnceCell::new(),
        }
    }

    /// What [`Codec::header`] answers for `name`.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        match self.first.get() {
            Some((true, value)) if name == KEPT_NAME => return value,
            Some(_) => {}
            None => {
                let value = self.codec.header(self.frame, name);
                self.first.set(Some((name == KEPT_NAME, value)));
                return value;
            }
        }
        let (head, complete) = self.head.get_or_init(|| self.codec.head_list(self.frame));
        let found = self.codec.header_in(head, name);
        if found.is_some() || *complete {
            return found;
        }
        let all = self.all.get_or_init(|| self.codec.header_list(self.frame));
        self.codec.header_in(all, name)
    }
}

/// One wire protocol. Implementations are stateless and shared by every worker.
pub trait Codec: Send + Sync + 'static {
    /// The name used in configuration (`downstream_protocol`).
    fn name(&self) -> &'static str;

    /// Codecs of one family read each other's frames (bolt and boltv2), so a
    /// listener of one may forward to an upstream of the other.
    fn family(&self) -> &'static str {
        self.name()
    }

    /// Whether `buf`, the first bytes of a connection, look like this protocol.
    fn detect(&self, buf: &[u8]) -> Detect;

    /// Reads the frame header at the start of `buf`. An error means the
    /// stream is not this protocol or breaks a limit, and the connection must
    /// be closed.
    fn parse(&self, buf: &[u8], max_frame: usize) -> Result<Parsed, CodecError>;

    /// [`Codec::parse`] for a caller that needs only whole frames: `Ok(None)`
    /// means more bytes are needed.
    fn decode(&self, buf: &[u8], max_frame: usize) -> Result<Option<FrameInfo>, CodecError> {
        Ok(match self.parse(buf, max_frame)? {
            Parsed::Frame(info) => Some(info),
            Parsed::Partial(_) => None,
        })
    }

    /// Writes `id` into the id field of a whole frame, in place.
    fn patch_id(&self, frame: &mut [u8], id: u64);

    /// Appends `frame` to `out` with its request id set to `id`. The default
    /// copies the frame and patches the id in place (bolt, Dubbo: the fast
    /// path). A codec whose id has no fixed place or width (Tars, where it is
    /// a variable-length integer field) re-encodes the frame around it.
    fn write_with_id(&self, frame: &[u8], id: u64, out: &mut BytesMut) {
        let start = out.len();
        out.extend_from_slice(frame);
        self.patch_id(&mut out[start..], id);
    }

    /// Sets the request id of a whole frame the caller owns and returns it
    /// ready to write, without copying it where the id has a fixed place (a
    /// large frame is handed over whole rather than copied again).
    fn with_id(&self, mut frame: BytesMut, id: u64) -> BytesMut {
        self.patch_id(&mut frame, id);
        frame
    }

    /// The largest id the wire can carry (ids are allocated below it).
    fn max_id(&self) -> u64;

    /// Appends the answer to heartbeat `req` (a whole frame) to `out`.
    fn heartbeat_reply(&self, req: &[u8], info: &FrameInfo, out: &mut BytesMut);

    /// Appends a heartbeat request with `id` to `out`, or returns false if the
    /// protocol has none.
    fn heartbeat_request(&self, id: u64, out: &mut BytesMut) -> bool;

    /// Appends the response that tells the client its request `info` failed with
    /// `err`, carrying the client's request id `id`.
    fn error_response(&self, info: &FrameInfo, id: u64, err: &ProxyError, out: &mut BytesMut);

    /// The protocol status that `err` is answered with (for logs and tests).
    fn error_status(&self, err: &ProxyError, reply_tag: u32) -> u32;

    /// The headers of a whole frame, in wire order. Malformed maps yield an error.
    fn headers<'a>(&self, frame: &'a [u8]) -> Result<Vec<Header<'a>>, CodecError>;

    /// One header by name, looked up without building the whole list. Routing
    /// keys with a protocol-specific home (`service`, `method`) are mapped here.
    fn header<'a>(&self, frame: &'a [u8], name: &str) -> Option<&'a [u8]>;

    /// The header map of a whole frame for routing ([`HeaderList`]). A
    /// malformed map yields the entries before the fault, which is what
    /// [`Codec::header`] would find in it.
    fn header_list<'a>(&self, frame: &'a [u8]) -> HeaderList<'a>;

    /// The keys at the head of a frame, and whether they are all of its keys.
    /// A codec whose later keys cost a walk over the body (Dubbo's
    /// attachments follow the arguments) returns the head alone, a prefix of
    /// [`Codec::header_list`]; [`FrameHeaders`] reads the rest only for a
    /// name the head does not hold.
    fn head_list<'a>(&self, frame: &'a [u8]) -> (HeaderList<'a>, bool) {
        (self.header_list(frame), true)
    }

    /// What [`Codec::header`] answers for `name`, read from a parsed list.
    fn header_in<'a>(&self, list: &[(&'a [u8], Option<&'a [u8]>)], name: &str) -> Option<&'a [u8]> {
        find_in(list, name.as_bytes())
    }

    /// Appends `frame` to `out` with its header map replaced by `headers`.
    fn encode_with_headers(&self, frame: &[u8], headers: &[(Vec<u8>, Vec<u8>)], out: &mut BytesMut);

    /// The status of a response frame, mapped to an HTTP-like code for stats.
    fn response_class(&self, frame: &[u8]) -> u16;
}

/// What a listener or a cluster speaks: an RPC codec of ours, or HTTP through hyper.
#[derive(Clone, Copy)]
pub enum Protocol {
    Rpc(&'static dyn Codec),
    Http1,
    /// HTTP/2 with prior knowledge (h2c); gRPC rides on it.
    Http2,
}

impl Protocol {
    /// Names as MOSN writes them (`bolt`, `Http1`, `Http2`); `gRPC` is HTTP/2.
    pub fn by_name(name: &str) -> Option<Protocol> {
        match name.to_ascii_lowercase().as_str() {
            "http1" | "http" | "http/1.1" => Some(Protocol::Http1),
            "http2" | "h2c" | "grpc" => Some(Protocol::Http2),
            other => registry::by_name(other).map(Protocol::Rpc),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Protocol::Rpc(c) => c.name(),
            Protocol::Http1 => "Http1",
            Protocol::Http2 => "Http2",
        }
    }

    pub fn is_http(&self) -> bool {
        !matches!(self, Protocol::Rpc(_))
    }

    /// Whether `buf`, the first bytes of a connection, are this protocol.
    pub fn detect(&self, buf: &[u8]) -> Detect {
        match self {
            Protocol::Rpc(c) => c.detect(buf),
            Protocol::Http1 => http::detect_http1(buf),
            Protocol::Http2 => http::detect_http2(buf),
        }
    }
}

/// A [`Protocol`] in one byte (what a parked connection keeps of it): an
/// RPC codec's place in the registry, or one of the HTTP versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolId(u8);

const HTTP1_ID: u8 = u8::MAX;
const HTTP2_ID: u8 = u8::MAX - 1;

impl Protocol {
    pub fn id(&self) -> ProtocolId {
        ProtocolId(match self {
            Protocol::Http1 => HTTP1_ID,
            Protocol::Http2 => HTTP2_ID,
            // Every codec comes from the registry (`registry::by_name`).
            Protocol::Rpc(c) => {
                let at = registry::CODECS.iter().position(|r| r.name() == c.name());
                debug_assert!(at.is_some(), "codec {} is not in the registry", c.name());
                at.map_or(0, |i| i as u8)
            }
        })
    }
}

impl ProtocolId {
    pub fn protocol(self) -> Protocol {
        match self.0 {
            HTTP1_ID => Protocol::Http1,
            HTTP2_ID => Protocol::Http2,
            i => Protocol::Rpc(registry::CODECS.get(usize::from(i)).copied().unwrap_or(registry::CODECS[0])),
        }
    }
}

impl std::fmt::Debug for dyn Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Debug for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod id_tests {
    use super::*;

    #[test]
    fn every_protocol_fits_in_its_id_and_comes_back() {
        let mut all: Vec<Protocol> = registry::CODECS.iter().map(|c| Protocol::Rpc(*c)).collect();
        all.extend([Protocol::Http1, Protocol::Http2]);
        for p in all {
            assert_eq!(p.id().protocol().name(), p.name());
        }
    }
}
