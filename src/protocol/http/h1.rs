//! HTTP/1.1 on the wire, for the pass-through path (`proxy::http1`), which
//! forwards the common request without building hyper's messages: the
//! headers a proxy acts on, recognised by name in one comparison; the framing
//! a response head announces; and a scanner that finds where a chunked body
//! ends, so that a body passes through unchanged and the connection can be
//! reused after it.
//!
//! Parsing itself is httparse's (the parser inside hyper). Everything here
//! works on its borrowed slices; nothing is copied.

use std::mem::MaybeUninit;

use super::MAX_HEADER_COUNT;

/// The headers a proxy treats specially. Everything else is [`Name::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    /// `keep-alive`, `proxy-connection`, `proxy-authenticate`, `proxy-authorization`:
    /// hop-by-hop, dropped.
    HopByHop,
    Te,
    Upgrade,
    Expect,
    ContentType,
    /// `cookie`: several fields become one for an HTTP/1.1 upstream.
    Cookie,
    XForwardedFor,
    XForwardedProto,
    XRequestId,
    Other,
}

impl Name {
    /// Fields of one connection, not of the message (RFC 9110 §7.6.1).
    pub fn is_hop_by_hop(self) -> bool {
        matches!(self, Name::Connection | Name::HopByHop | Name::Te | Name::Upgrade)
    }

    /// Fields that frame a request or concern only the hop it crosses: none
    /// of them is a route's to add.
    pub fn is_per_hop(self) -> bool {
        self.is_hop_by_hop() || matches!(self, Name::ContentLength | Name::TransferEncoding | Name::Expect)
    }
}

/// Classifies a header name, ignoring case.
pub fn classify(name: &str) -> Name {
    let n = name.as_bytes();
    let is = |s: &str| same_name(n, s.as_bytes());
    // Dispatch on the length first: most names are compared once at most.
    match n.len() {
        2 if is("te") => Name::Te,
        4 if is("host") => Name::Host,
        6 if is("expect") => Name::Expect,
        6 if is("cookie") => Name::Cookie,
        7 if is("upgrade") => Name::Upgrade,
        10 if is("connection") => Name::Connection,
        10 if is("keep-alive") => Name::HopByHop,
        12 if is("content-type") => Name::ContentType,
        12 if is("x-request-id") => Name::XRequestId,
        14 if is("content-length") => Name::ContentLength,
        15 if is("x-forwarded-for") => Name::XForwardedFor,
        16 if is("proxy-connection") => Name::HopByHop,
        17 if is("transfer-encoding") => Name::TransferEncoding,
        17 if is("x-forwarded-proto") => Name::XForwardedProto,
        18 if is("proxy-authenticate") => Name::HopByHop,
        19 if is("proxy-authorization") => Name::HopByHop,
        _ => Name::Other,
    }
}

/// Whether `name` is `lower` (lowercase letters and `-`) in any letter case.
/// Names of eight bytes or more are compared a word at a time: every
/// proxied message has a few, each classified more than once, and bytewise
/// folding cost ~70 instructions a match. Within a word, OR-ing 0x20 folds
/// case at the pattern's letters only (the mask is their 0x40 bit shifted),
/// so a byte matches a letter only as that letter in either case, and `-`
/// only as itself: exactly `eq_ignore_ascii_case`.
fn same_name(name: &[u8], lower: &[u8]) -> bool {
    let len = lower.len();
    if name.len() != len {
        return false;
    }
    if len < 8 {
        return name.eq_ignore_ascii_case(lower);
    }
    let word = |b: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let same_at = |at: usize| {
        let want = word(lower, at);
        (word(name, at) | ((want & 0x4040_4040_4040_4040) >> 1)) == want
    };
    // Whole words, then the last eight bytes (overlapping the one before).
    (0..len / 8).all(|i| same_at(i * 8)) && same_at(len - 8)
}

/// A Content-Length value: ASCII digits only (no sign, no spaces, no list).
pub fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// What a `Connection` header value says: `close`, `keep-alive`, and whether
/// it names any other header (which then is hop-by-hop too).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionTokens {
    pub close: bool,
    pub keep_alive: bool,
    pub others: bool,
}

impl ConnectionTokens {
    pub fn add(&mut self, value: &[u8]) {
        // The usual value is one token alone: no splitting, no trimming.
        if value.eq_ignore_ascii_case(b"keep-alive") {
            self.keep_alive = true;
            return;
        }
        if value.eq_ignore_ascii_case(b"close") {
            self.close = true;
            return;
        }
        for token in value.split(|&b| b == b',') {
            let t = token.trim_ascii();
            if t.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if t.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if !t.is_empty() {
                self.others = true;
            }
        }
    }

    /// Whether `value` (a `Connection` header value) names `name`.
    pub fn names(value: &[u8], name: &str) -> bool {
        value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
    }
}

/// Whether one of a message's `Connection` fields names `name`, which is then
/// hop-by-hop too.
pub fn named_by_connection<'a>(mut fields: impl Iterator<Item = (&'a str, &'a [u8])>, name: &str) -> bool {
    fields.any(|(n, v)| classify(n) == Name::Connection && ConnectionTokens::names(v, name))
}

/// Room for the header fields of one head, as httparse fills it. Left
/// uninitialised: httparse writes each field it parses, and zeroing all
/// [`MAX_HEADER_COUNT`] slots (3.2 KiB) for every head cost more than
/// parsing a short one.
pub type HeaderSlots<'b> = [MaybeUninit<httparse::Header<'b>>; MAX_HEADER_COUNT];

/// Empty [`HeaderSlots`].
pub fn header_slots<'b>() -> HeaderSlots<'b> {
    [const { MaybeUninit::uninit() }; MAX_HEADER_COUNT]
}

/// Parses the request head at the start of `buf` into `req`, its fields in
/// `slots` (httparse's `Request::parse`, without initialised storage).
pub fn parse_request<'h, 'b>(
    req: &mut httparse::Request<'h, 'b>,
    buf: &'b [u8],
    slots: &'h mut HeaderSlots<'b>,
) -> httparse::Result<usize> {
    httparse::ParserConfig::default().parse_request_with_uninit_headers(req, buf, slots)
}

/// Parses the response head at the start of `buf` into `resp`, its fields
/// in `slots`.
pub fn parse_response<'h, 'b>(
    resp: &mut httparse::Response<'h, 'b>,
    buf: &'b [u8],
    slots: &'h mut HeaderSlots<'b>,
) -> httparse::Result<usize> {
    httparse::ParserConfig::default().parse_response_with_uninit_headers(resp, buf, slots)
}

/// Bytes of a request target taken as they are: RFC 3986 unreserved,
/// sub-delims, `:` `@` `/` `?` and `%`.
pub fn is_target_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b)
}

/// Whether a header value holds a byte no header value may (controls other
/// than tab, and DEL).
pub fn has_control(value: &[u8]) -> bool {
    value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
}

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: a HEAD request, 1xx, 204, 304.
    Empty,
    Length(u64),
    Chunked,
    /// Read until the upstream closes.
    UntilClose,
}

/// Why a response head cannot be forwarded.
#[derive(Debug, PartialEq, Eq)]
pub struct BadResponse(pub &'static str);

/// The framing of a response, from its status, the request method and its
/// Content-Length and Transfer-Encoding values (all of them, in order).
pub fn response_framing(
    status: u16,
    head_request: bool,
    lengths: &[&[u8]],
    encodings: &[&[u8]],
) -> Result<Framing, BadResponse> {
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Framing::Empty);
    }
    if !encodings.is_empty() {
        // Transfer-Encoding wins over Content-Length; chunked must come last,
        // otherwise the body ends when the connection does.
        let last = encodings.last().and_then(|v| v.rsplit(|&b| b == b',').next()).map(<[u8]>::trim_ascii);
        return Ok(if last.is_some_and(|t| t.eq_ignore_ascii_case(b"chunked")) {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    let mut length = None;
    for v in lengths {
        let n = content_length(v.trim_ascii()).ok_or(BadResponse("invalid Content-Length"))?;
        if length.is_some_and(|l| l != n) {
            return Err(BadResponse("conflicting Content-Length"));
        }
        length = Some(n);
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

/// Where a response body being read stands: how much more of what arrives
/// belongs to it, by its framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyCursor {
    Length(u64),
    Chunked(ChunkedScan),
    UntilClose,
    Done,
}

impl BodyCursor {
    pub fn new(framing: Framing) -> BodyCursor {
        match framing {
            Framing::Empty | Framing::Length(0) => BodyCursor::Done,
            Framing::Length(n) => BodyCursor::Length(n),
            Framing::Chunked => BodyCursor::Chunked(ChunkedScan::default()),
            Framing::UntilClose => BodyCursor::UntilClose,
        }
    }

    /// How many of `bytes` belong to the body: all of them, or fewer when it
    /// ends inside them.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<usize, BadChunk> {
        self.feed_with(bytes, &mut |_| {})
    }

    /// [`BodyCursor::feed`], handing over the body's data (decoded from its
    /// chunks) and a chunked body's trailer bytes as they are found.
    pub fn feed_with(&mut self, bytes: &[u8], on: &mut dyn FnMut(Piece<'_>)) -> Result<usize, BadChunk> {
        let used = match self {
            BodyCursor::Length(left) => {
                let take = (*left).min(bytes.len() as u64);
                *left -= take;
                take as usize
            }
            BodyCursor::Chunked(scan) => return scan.feed_with(bytes, on).inspect(|_| self.settle()),
            BodyCursor::UntilClose => bytes.len(),
            BodyCursor::Done => 0,
        };
        if used > 0 {
            on(Piece::Data(&bytes[..used]));
        }
        self.settle();
        Ok(used)
    }

    fn settle(&mut self) {
        let done = match self {
            BodyCursor::Length(left) => *left == 0,
            BodyCursor::Chunked(scan) => scan.is_done(),
            _ => false,
        };
        if done {
            *self = BodyCursor::Done;
        }
    }

    pub fn is_done(&self) -> bool {
        *self == BodyCursor::Done
    }

    /// The upstream closed: whether that ended the body cleanly (only a body
    /// read until the close, or one already complete).
    pub fn close(&mut self) -> bool {
        let clean = matches!(self, BodyCursor::UntilClose | BodyCursor::Done);
        *self = BodyCursor::Done;
        clean
    }
}

/// Finds the end of a chunked body fed to it piece by piece, checking its
/// syntax on the way (chunk sizes in hex, CRLF after each chunk, trailer
/// lines, the final empty line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedScan {
    Size { size: u64, digits: u8 },
    Extension { size: u64 },
    SizeLf { size: u64 },
    Data(u64),
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    FinalLf,
    Done,
}

impl Default for ChunkedScan {
    fn default() -> Self {
        ChunkedScan::Size { size: 0, digits: 0 }
    }
}

/// What [`ChunkedScan::feed_with`] finds in a chunked body.
pub enum Piece<'a> {
    Data(&'a [u8]),
    /// Bytes of the trailer section (`name: value` lines with their CRLFs).
    Trailer(&'a [u8]),
}

/// A chunked body that breaks the syntax.
#[derive(Debug, PartialEq, Eq)]
pub struct BadChunk;

impl ChunkedScan {
    /// Scans `bytes`; returns how many of them belong to the body: all of
    /// them, or fewer when the body ends inside `bytes` (then the scanner is
    /// [`ChunkedScan::Done`]).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<usize, BadChunk> {
        self.feed_with(bytes, &mut |_| {})
    }

    /// [`ChunkedScan::feed`], handing over the chunk data and the trailer
    /// section's bytes as they are found.
    pub fn feed_with(&mut self, bytes: &[u8], on: &mut dyn FnMut(Piece<'_>)) -> Result<usize, BadChunk> {
        let mut i = 0;
        while i < bytes.len() {
            if *self == ChunkedScan::Done {
                break;
            }
            if let ChunkedScan::Data(left) = *self {
                let take = left.min((bytes.len() - i) as u64);
                on(Piece::Data(&bytes[i..i + take as usize]));
                i += take as usize;
                *self = if take == left { ChunkedScan::DataCr } else { ChunkedScan::Data(left - take) };
                continue;
            }
            let b = bytes[i];
            i += 1;
            let in_trailer = matches!(self, ChunkedScan::Trailer | ChunkedScan::TrailerLf)
                || (*self == ChunkedScan::TrailerStart && b != b'\r');
            if in_trailer {
                on(Piece::Trailer(&bytes[i - 1..i]));
            }
            *self = match (*self, b) {
                (ChunkedScan::Size { size, digits }, _) if b.is_ascii_hexdigit() => {
                    if digits >= 15 {
                        return Err(BadChunk);
                    }
                    let d = u64::from((b as char).to_digit(16).unwrap_or(0));
                    ChunkedScan::Size { size: size * 16 + d, digits: digits + 1 }
                }
                (ChunkedScan::Size { size, digits }, b';' | b' ' | b'\t') if digits > 0 => {
                    ChunkedScan::Extension { size }
                }
                (ChunkedScan::Size { size, digits }, b'\r') if digits > 0 => ChunkedScan::SizeLf { size },
                (ChunkedScan::Extension { size }, b'\r') => ChunkedScan::SizeLf { size },
                (ChunkedScan::Extension { size }, _) if b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80 => {
                    ChunkedScan::Extension { size }
                }
                (ChunkedScan::SizeLf { size: 0 }, b'\n') => ChunkedScan::TrailerStart,
                (ChunkedScan::SizeLf { size }, b'\n') => ChunkedScan::Data(size),
                (ChunkedScan::DataCr, b'\r') => ChunkedScan::DataLf,
                (ChunkedScan::DataLf, b'\n') => ChunkedScan::default(),
                (ChunkedScan::TrailerStart, b'\r') => ChunkedScan::FinalLf,
                (ChunkedScan::Trailer, b'\r') => ChunkedScan::TrailerLf,
                (ChunkedScan::TrailerStart | ChunkedScan::Trailer, b'\n') => return Err(BadChunk),
                (ChunkedScan::TrailerStart | ChunkedScan::Trailer, _) => ChunkedScan::Trailer,
                (ChunkedScan::TrailerLf, b'\n') => ChunkedScan::TrailerStart,
                (ChunkedScan::FinalLf, b'\n') => {
                    *self = ChunkedScan::Done;
                    return Ok(i);
                }
                _ => return Err(BadChunk),
            };
        }
        Ok(i)
    }

    pub fn is_done(&self) -> bool {
        *self == ChunkedScan::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASSIFIED: [&str; 16] = [
        "te",
        "host",
        "expect",
        "cookie",
        "upgrade",
        "connection",
        "keep-alive",
        "content-type",
        "x-request-id",
        "content-length",
        "x-forwarded-for",
        "proxy-connection",
        "transfer-encoding",
        "x-forwarded-proto",
        "proxy-authenticate",
        "proxy-authorization",
    ];

    /// `same_name` is `eq_ignore_ascii_case` for every name `classify`
    /// knows, in every case, and with any one byte replaced by any other
    /// (`\r` for `-` and `_` for `-` included).
    #[test]
    fn same_name_is_eq_ignore_ascii_case_for_every_one_byte_change() {
        for lower in CLASSIFIED.map(str::as_bytes) {
            assert!(same_name(&lower.to_ascii_uppercase(), lower));
            for at in 0..lower.len() {
                for byte in 0..=255u8 {
                    let mut name = lower.to_vec();
                    name[at] = byte;
                    assert_eq!(same_name(&name, lower), name.eq_ignore_ascii_case(lower), "{name:?}");
                }
            }
        }
    }

    proptest::proptest! {
        /// ... and for names of any bytes and length, and the known names in
        /// mixed case.
        #[test]
        fn same_name_is_eq_ignore_ascii_case(
            pick in 0usize..16,
            other in proptest::collection::vec(proptest::num::u8::ANY, 0..24),
            flips in proptest::collection::vec(proptest::bool::ANY, 24),
        ) {
            let lower = CLASSIFIED[pick].as_bytes();
            let cased: Vec<u8> =
                lower.iter().zip(&flips).map(|(&b, &up)| if up { b.to_ascii_uppercase() } else { b }).collect();
            proptest::prop_assert!(same_name(&cased, lower));
            proptest::prop_assert_eq!(same_name(&other, lower), other.eq_ignore_ascii_case(lower));
        }
    }

    #[test]
    fn names_are_classified_ignoring_case() {
        assert_eq!(classify("Host"), Name::Host);
        assert_eq!(classify("CONTENT-LENGTH"), Name::ContentLength);
        assert_eq!(classify("transfer-encoding"), Name::TransferEncoding);
        assert_eq!(classify("Keep-Alive"), Name::HopByHop);
        assert_eq!(classify("Proxy-Authorization"), Name::HopByHop);
        assert_eq!(classify("X-Forwarded-For"), Name::XForwardedFor);
        assert_eq!(classify("x-forwarded-proto"), Name::XForwardedProto);
        assert_eq!(classify("TE"), Name::Te);
        assert_eq!(classify("hostx"), Name::Other);
        assert_eq!(classify("accept"), Name::Other);
    }

    #[test]
    fn content_lengths_are_digits_only() {
        assert_eq!(content_length(b"0"), Some(0));
        assert_eq!(content_length(b"1234"), Some(1234));
        for bad in [&b""[..], b"-1", b"+1", b"1 2", b"0x10", b"1,1", b"9999999999999999999"] {
            assert_eq!(content_length(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn connection_tokens() {
        let mut t = ConnectionTokens::default();
        t.add(b"Keep-Alive");
        assert_eq!(t, ConnectionTokens { close: false, keep_alive: true, others: false });
        t.add(b" close , x-secret");
        assert_eq!(t, ConnectionTokens { close: true, keep_alive: true, others: true });
        let mut t = ConnectionTokens::default();
        t.add(b"CLOSE");
        assert_eq!(t, ConnectionTokens { close: true, keep_alive: false, others: false });
        t.add(b"keep-alive, upgrade");
        assert_eq!(t, ConnectionTokens { close: true, keep_alive: true, others: true });
        assert!(ConnectionTokens::names(b"close, X-Secret", "x-secret"));
        assert!(!ConnectionTokens::names(b"close", "x-secret"));
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        use Framing::*;
        assert_eq!(response_framing(200, true, &[b"10"], &[]), Ok(Empty));
        assert_eq!(response_framing(204, false, &[], &[]), Ok(Empty));
        assert_eq!(response_framing(304, false, &[b"10"], &[]), Ok(Empty));
        assert_eq!(response_framing(200, false, &[b"10"], &[]), Ok(Length(10)));
        assert_eq!(response_framing(200, false, &[b"10", b"10"], &[]), Ok(Length(10)));
        assert!(response_framing(200, false, &[b"10", b"11"], &[]).is_err());
        assert!(response_framing(200, false, &[b"x"], &[]).is_err());
        assert_eq!(response_framing(200, false, &[b"10"], &[b"chunked"]), Ok(Chunked));
        assert_eq!(response_framing(200, false, &[], &[b"gzip, chunked"]), Ok(Chunked));
        assert_eq!(response_framing(200, false, &[], &[b"chunked, gzip"]), Ok(UntilClose));
        assert_eq!(response_framing(200, false, &[], &[]), Ok(UntilClose));
    }

    fn scan_all(body: &[u8]) -> Result<(usize, bool), BadChunk> {
        let mut s = ChunkedScan::default();
        let n = s.feed(body)?;
        Ok((n, s.is_done()))
    }

    #[test]
    fn chunked_scanner_finds_the_end() {
        let body = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        assert_eq!(scan_all(body), Ok((body.len() - 4, true)));
        assert_eq!(scan_all(b"0\r\n\r\n"), Ok((5, true)));
        // Byte by byte gives the same answer.
        let mut s = ChunkedScan::default();
        let mut total = 0;
        for (i, b) in body.iter().enumerate() {
            let n = s.feed(std::slice::from_ref(b)).unwrap();
            total += n;
            if s.is_done() {
                assert_eq!(i + 1, body.len() - 4);
                break;
            }
        }
        assert_eq!(total, body.len() - 4);
        // Not finished yet.
        assert_eq!(scan_all(b"5\r\nhel"), Ok((6, false)));
    }

    #[test]
    fn body_cursor_takes_what_belongs_to_the_body() {
        let mut c = BodyCursor::new(Framing::Length(5));
        assert_eq!((c.feed(b"abc"), c.is_done()), (Ok(3), false));
        assert_eq!((c.feed(b"deXX"), c.is_done()), (Ok(2), true));
        assert_eq!(c.feed(b"more"), Ok(0));
        let mut c = BodyCursor::new(Framing::Chunked);
        let mut data = Vec::new();
        let used = c
            .feed_with(b"3\r\nabc\r\n0\r\n\r\nNEXT", &mut |p| {
                if let Piece::Data(d) = p {
                    data.extend_from_slice(d)
                }
            })
            .unwrap();
        assert_eq!((used, &data[..], c.is_done()), (13, &b"abc"[..], true));
        assert!(BodyCursor::new(Framing::Empty).is_done());
        let mut c = BodyCursor::new(Framing::UntilClose);
        assert_eq!(c.feed(b"all of it"), Ok(9));
        assert!(c.close(), "a close ends a body read until the close");
        assert!(!BodyCursor::new(Framing::Length(3)).close(), "but cuts a sized one short");
    }

    #[test]
    fn chunked_scanner_refuses_bad_syntax() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"1234567890abcdef0\r\n",
            b"0\r\nbad\n\r\n",
            b"0\r\n\rX",
        ] {
            assert_eq!(scan_all(bad), Err(BadChunk), "{bad:?}");
        }
    }

    proptest::proptest! {
        /// Any chunked encoding of any data, fed in any two pieces, ends
        /// exactly where it does, whatever follows it.
        #[test]
        fn chunked_scanner_ends_at_the_end(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 1..300), 0..6),
            trailer in proptest::bool::ANY,
            cut in 0usize..4000,
        ) {
            let mut body = Vec::new();
            for c in &chunks {
                body.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                body.extend_from_slice(c);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"0\r\n");
            if trailer {
                body.extend_from_slice(b"x-t: 1\r\n");
            }
            body.extend_from_slice(b"\r\n");
            let end = body.len();
            body.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
            let cut = cut.min(end);
            let mut s = ChunkedScan::default();
            let a = s.feed(&body[..cut]).unwrap();
            proptest::prop_assert_eq!(a, cut);
            let b = s.feed(&body[cut..]).unwrap();
            proptest::prop_assert!(s.is_done());
            proptest::prop_assert_eq!(a + b, end);
        }
    }
}
