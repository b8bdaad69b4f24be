//! HTTP/1.1 exchanges on plain pooled sockets ([`HttpPool::take_raw`]): the
//! upstream side of the pass-through, and of `proxy::http` requests whose
//! whole body is in hand. One write carries the request; the response head is
//! read and handed to the caller's parser, which decides what the head becomes
//! (bytes for a pass-through client, an `http::Response` for the HTTP/2
//! server or hyper's HTTP/1.1 one).
//! [`RawBody`] streams a body from such a connection and puts the connection
//! back in the pool when the body ended cleanly.

use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use crate::host::conn::HostConn;
use crate::network::spares::{thread_spares, Spares};
use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::debug;

use super::{BoxError, HttpPool, SendError};
use crate::protocol::http::h1::{self, BodyCursor, ConnectionTokens, Framing, Name};
use crate::protocol::http::{MAX_HEADER_COUNT, MAX_HEAD_BYTES};

/// Free space made in a read buffer before each read: a read that does not
/// fill it tells tokio the socket is drained, which saves a `recv` that would
/// only say "nothing yet".
pub const READ_SPACE: usize = 8 * 1024;
/// Bodies up to this size that arrive with their head are copied out, so the
/// read buffer is reused at once.
const SMALL_BODY: u64 = 16 * 1024;
/// Largest trailer section of a chunked response (hyper's limit too).
const MAX_TRAILERS: usize = 16 * 1024;

/// Read buffers kept by each worker thread between uses, so that neither an
/// idle connection holds one nor a request pays for a fresh allocation.
pub mod spare {
    use super::{BytesMut, READ_SPACE};
    use crate::network::spares::{thread_spares, Spares};

    /// Spares kept per worker (as many as a burst of answers gives back;
    /// the unused are let go within two seconds, `network::spares`), and the
    /// largest buffer worth keeping.
    pub const KEEP: usize = 1024;
    pub const MAX_KEPT: usize = 256 * 1024;

    thread_spares! { static BUFS: BytesMut = KEEP; }
    thread_spares! { static HEADS: Vec<u8> = KEEP; }

    #[inline]
    pub fn take() -> BytesMut {
        BUFS.with(Spares::take).unwrap_or_else(|| BytesMut::with_capacity(2 * READ_SPACE))
    }

    /// Takes back a buffer whose contents are no longer needed.
    #[inline]
    pub fn give(mut b: BytesMut) {
        b.clear();
        if b.capacity() >= READ_SPACE && b.capacity() <= MAX_KEPT {
            BUFS.with(|r| r.give(b));
        }
    }

    /// The largest request buffer kept for the next request.
    const MAX_HEAD_KEPT: usize = 64 * 1024;

    /// A request's bytes (its head, and a small body) as they go upstream,
    /// in a buffer the worker keeps: one per request in flight was an
    /// allocation and a free per request. Given back when dropped.
    pub struct RequestBuf(Vec<u8>);

    impl RequestBuf {
        /// An empty buffer with room for at least `capacity` bytes.
        pub fn take(capacity: usize) -> RequestBuf {
            let mut v = HEADS.with(Spares::take).unwrap_or_default();
            v.reserve(capacity);
            RequestBuf(v)
        }
    }

    impl std::ops::Deref for RequestBuf {
        type Target = Vec<u8>;
        fn deref(&self) -> &Vec<u8> {
            &self.0
        }
    }

    impl std::ops::DerefMut for RequestBuf {
        fn deref_mut(&mut self) -> &mut Vec<u8> {
            &mut self.0
        }
    }

    impl Drop for RequestBuf {
        fn drop(&mut self) {
            let mut v = std::mem::take(&mut self.0);
            if v.capacity() <= MAX_HEAD_KEPT {
                v.clear();
                // `try_with`: a buffer dropped while the thread exits is freed.
                let _ = HEADS.try_with(|h| h.give(v));
            }
        }
    }
}

/// What a response head parser makes of the bytes read so far.
pub enum Head<T> {
    /// A 1xx response of this many bytes, skipped (no request sent `Expect`).
    Interim(usize),
    Final(T),
}

/// Why a try got no response head.
pub enum Broken {
    /// Nothing came back: the connection was closed or reset, or the write
    /// failed. On a kept-alive connection this is the upstream's idle close
    /// racing the request.
    NoAnswer(String),
    /// A response that cannot be forwarded.
    Bad(&'static str),
}

/// One try on one host: a pooled connection, or a new one, carries `req`.
/// A kept-alive connection that the upstream closed as the request went out
/// is replaced by a new one once, for an idempotent request. On success the
/// connection is returned with the response head parsed and `up` holding
/// everything read (head first). An `up` without room gets a buffer from
/// the worker's spares once the answer arrives, not before.
pub async fn send<T>(
    pool: &HttpPool,
    req: &[u8],
    idempotent: bool,
    up: &mut BytesMut,
    parse: &mut impl FnMut(&[u8]) -> Result<Option<Head<T>>, Broken>,
) -> Result<(T, HostConn), SendError> {
    let mut pooled = pool.take_raw();
    loop {
        let reused = pooled.is_some();
        let mut conn = match pooled.take() {
            Some(c) => c,
            // Boxed: the dial's state is 2.7 KiB, and unboxed every
            // request's future would carry (and copy) it, dial or not.
            None => Box::pin(pool.dial_raw()).await?,
        };
        match round_trip(&mut conn, req, up, parse).await {
            Ok(head) => return Ok((head, conn)),
            Err(Broken::NoAnswer(why)) if reused && idempotent => {
                debug!(addr = %pool.host().addr, error = %why, "stale upstream connection, redialling");
            }
            Err(Broken::NoAnswer(why)) => return Err(SendError::Reset(why)),
            Err(Broken::Bad(why)) => return Err(SendError::Reset(why.to_string())),
        }
    }
}

/// Writes the request and reads up to the end of the final response head.
async fn round_trip<T>(
    conn: &mut HostConn,
    req: &[u8],
    up: &mut BytesMut,
    parse: &mut impl FnMut(&[u8]) -> Result<Option<Head<T>>, Broken>,
) -> Result<T, Broken> {
    conn.write_all(req).await.map_err(|e| Broken::NoAnswer(e.to_string()))?;
    // TLS may hold sealed records until flushed (plain TCP holds nothing).
    conn.flush().await.map_err(|e| Broken::NoAnswer(e.to_string()))?;
    if up.capacity() == 0 {
        // Given no buffer, borrow one once the answer is there, not while
        // it is awaited: under load hundreds of exchanges wait at once, and
        // buffers held through the wait were 7 of the 20 MiB peak under
        // bench/http.sh's h2c load (512 streams). Borrowed now, it is the
        // one the last answer gave back, still in cache.
        conn.readable().await.map_err(|e| Broken::NoAnswer(e.to_string()))?;
        *up = spare::take();
    }
    up.clear();
    let mut got_any = false;
    loop {
        if up.capacity() - up.len() < READ_SPACE {
            up.reserve(2 * READ_SPACE);
        }
        match conn.read_buf(up).await {
            Ok(0) if !got_any => return Err(Broken::NoAnswer("closed without answering".into())),
            Err(e) if !got_any => return Err(Broken::NoAnswer(e.to_string())),
            Ok(0) | Err(_) => return Err(Broken::Bad("closed inside the response head")),
            Ok(_) => got_any = true,
        }
        loop {
            match parse(up)? {
                Some(Head::Final(head)) => return Ok(head),
                Some(Head::Interim(n)) => up.advance(n),
                None if up.len() > MAX_HEAD_BYTES => return Err(Broken::Bad("response head too large")),
                None => break,
            }
        }
    }
}

/// What a parsed response head says about its message.
pub struct Facts {
    pub head_len: usize,
    pub status: u16,
    pub framing: Framing,
    /// The upstream keeps the connection open after this response.
    pub reusable: bool,
    /// The head carries a Transfer-Encoding.
    transfer_coded: bool,
    connection: ConnectionTokens,
}

/// Parses a response head with httparse into `headers`: `Ok(None)` while
/// incomplete, `Head::Interim` for a 1xx. The caller then walks
/// `response.headers`, skipping those [`Facts::hop_by_hop`] names.
pub fn parse_head<'h, 'b>(
    up: &'b [u8],
    head_request: bool,
    response: &mut httparse::Response<'h, 'b>,
    slots: &'h mut h1::HeaderSlots<'b>,
) -> Result<Option<Head<Facts>>, Broken> {
    let head_len = match h1::parse_response(response, up, slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Broken::Bad("malformed response head")),
    };
    let status = response.code.unwrap_or(0);
    if (100..200).contains(&status) {
        if status == 101 {
            return Err(Broken::Bad("101 Switching Protocols without an upgrade"));
        }
        return Ok(Some(Head::Interim(head_len)));
    }
    let (mut lengths, mut nl): ([&[u8]; 4], usize) = ([&[]; 4], 0);
    let (mut encodings, mut ne): ([&[u8]; 4], usize) = ([&[]; 4], 0);
    let mut connection = ConnectionTokens::default();
    for f in response.headers.iter() {
        match h1::classify(f.name) {
            Name::ContentLength => {
                *lengths.get_mut(nl).ok_or(Broken::Bad("too many Content-Length headers"))? = f.value;
                nl += 1;
            }
            Name::TransferEncoding => {
                *encodings.get_mut(ne).ok_or(Broken::Bad("too many Transfer-Encoding headers"))? = f.value;
                ne += 1;
            }
            Name::Connection => connection.add(f.value),
            _ => {}
        }
    }
    let framing =
        h1::response_framing(status, head_request, &lengths[..nl], &encodings[..ne]).map_err(|b| Broken::Bad(b.0))?;
    let reusable = response.version == Some(1) && !connection.close && framing != Framing::UntilClose;
    Ok(Some(Head::Final(Facts { head_len, status, framing, reusable, transfer_coded: ne > 0, connection })))
}

impl Facts {
    /// Whether a framing field of the answer is left out however its body
    /// goes on: a Content-Length beside a Transfer-Encoding, which decides
    /// where the body ends (RFC 9112 §6.3: an intermediary removes it, so
    /// the next hop cannot read the body by the length and the rest as
    /// another response), and either of them on a 204, which has no body to
    /// frame (RFC 9110 §8.6, RFC 9112 §6.1).
    pub fn stale_framing(&self, kind: Name) -> bool {
        match kind {
            Name::ContentLength => self.transfer_coded || self.status == 204,
            Name::TransferEncoding => self.status == 204,
            _ => false,
        }
    }

    /// Whether response header `name` (classified as `kind`) belongs to the
    /// connection, not the message: the hop-by-hop ones and those
    /// `Connection` names, except the framing fields (which RFC 9110 §7.6.1
    /// forbids a sender to name there): the body is relayed as they frame it,
    /// and without them the client would read it to the close.
    pub fn hop_by_hop(&self, name: &str, kind: Name, fields: &[httparse::Header<'_>]) -> bool {
        kind.is_hop_by_hop()
            || (self.connection.others
                && !matches!(kind, Name::ContentLength | Name::TransferEncoding)
                && h1::named_by_connection(fields.iter().map(|f| (f.name, f.value)), name))
    }
}

/// A response head in `http` types, and what it says about its body.
pub type ResponseHead = (Response<()>, Facts);

/// Parses a response head into `http` types for the HTTP servers: hop-by-hop
/// headers and the framing ones are dropped (the server frames the body
/// itself).
/// Usable as the parser of [`send`].
pub fn response_parts(up: &[u8], head_request: bool) -> Result<Option<Head<ResponseHead>>, Broken> {
    with_final_head(up, head_request, |mut response, facts, fields| {
        // One copy of the head; every value is a slice of it, not an
        // allocation of its own.
        let head = Bytes::copy_from_slice(&up[..facts.head_len]);
        let mut map = super::header_maps::take();
        map.reserve(fields.len());
        for f in passed_on(&facts, fields) {
            let name = HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| Broken::Bad("invalid header name"))?;
            let value = shared_value(&head, up, f.value).map_err(|_| Broken::Bad("invalid header value"))?;
            map.append(name, value);
        }
        *response.headers_mut() = map;
        Ok((response, facts))
    })
}

/// Parses the response head at the start of `up` ([`parse_head`]) and, for
/// a final one, makes what `build` makes of a response with its status (no
/// headers yet), its facts and its fields.
fn with_final_head<R>(
    up: &[u8],
    head_request: bool,
    build: impl FnOnce(Response<()>, Facts, &[httparse::Header<'_>]) -> Result<R, Broken>,
) -> Result<Option<Head<R>>, Broken> {
    let mut slots = h1::header_slots();
    let mut parsed = httparse::Response::new(&mut []);
    match parse_head(up, head_request, &mut parsed, &mut slots)? {
        Some(Head::Final(facts)) => {
            let mut response = Response::new(());
            *response.status_mut() = StatusCode::from_u16(facts.status).map_err(|_| Broken::Bad("invalid status"))?;
            build(response, facts, parsed.headers).map(|r| Some(Head::Final(r)))
        }
        Some(Head::Interim(n)) => Ok(Some(Head::Interim(n))),
        None => Ok(None),
    }
}

/// The fields of a response head that go on to the client: not the
/// hop-by-hop ones, nor those that frame the body (the server frames it
/// itself), except a `Content-Length` that still tells its length.
fn passed_on<'a, 'b>(
    facts: &'a Facts,
    fields: &'a [httparse::Header<'b>],
) -> impl Iterator<Item = &'a httparse::Header<'b>> {
    fields.iter().filter(move |f| {
        let kind = h1::classify(f.name);
        let framing = match kind {
            Name::TransferEncoding => true,
            Name::ContentLength => {
                !matches!(facts.framing, Framing::Length(_) | Framing::Empty) || facts.stale_framing(kind)
            }
            _ => false,
        };
        !framing && !facts.hop_by_hop(f.name, kind, fields)
    })
}

/// The fields of an upstream answer's head that go on to the client, as
/// they came (names in the upstream's letter case), held as spans of one
/// copy of the head. The HTTP/2 server encodes them into HPACK as they are
/// (`hpack::encode_fields` lowercases the names), where building a
/// `HeaderMap` for it to walk once cost about 1,500 instructions per answer
/// (each name parsed into a `HeaderName`, hashed and appended).
///
/// The boxes are the worker's: taken by [`response_raw`] and given back by
/// the server once the fields are encoded ([`RawFields::give`]), as a
/// malloc and a free each for the box and the head's copy cost an h2c
/// answer about 400 instructions.
pub struct RawFields {
    head: Vec<u8>,
    /// Start and end of each name, then of its value, in `head`.
    spans: smallvec::SmallVec<[[u32; 4]; 12]>,
}

thread_spares! { static KEPT_FIELDS: Box<RawFields> = spare::KEEP; }

/// The longest head copy a kept box holds on to.
const MAX_KEPT_HEAD: usize = 8 * 1024;

impl RawFields {
    /// A worker's spare box, or a new one; empty.
    fn take() -> Box<RawFields> {
        KEPT_FIELDS
            .with(Spares::take)
            .unwrap_or_else(|| Box::new(RawFields { head: Vec::new(), spans: smallvec::SmallVec::new() }))
    }

    /// Gives the box back to the worker for the next answer.
    pub fn give(mut fields: Box<RawFields>) {
        if fields.head.capacity() <= MAX_KEPT_HEAD && !fields.spans.spilled() {
            fields.head.clear();
            fields.spans.clear();
            KEPT_FIELDS.with(|k| k.give(fields));
        }
    }

    /// Each field's name and value, in the order they came.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans
            .iter()
            .map(|&[n0, n1, v0, v1]| (&self.head[n0 as usize..n1 as usize], &self.head[v0 as usize..v1 as usize]))
    }
}

/// A response head whose fields are kept as they came ([`response_raw`]).
pub type RawResponseHead = (ResponseHead, Box<RawFields>);

/// [`response_parts`] for the HTTP/2 server: the fields it passes on are
/// kept as [`RawFields`] (boxed, so the head moves through the exchange's
/// futures as a pointer), and the response's own `HeaderMap` is left empty.
pub fn response_raw(up: &[u8], head_request: bool) -> Result<Option<Head<RawResponseHead>>, Broken> {
    with_final_head(up, head_request, |response, facts, fields| {
        let head = &up[..facts.head_len];
        // Every name and value is a slice of `head` (httparse borrows them
        // from it), so each is kept as where it lies there.
        let span = |part: &[u8]| -> Option<[u32; 2]> {
            if part.is_empty() {
                return Some([0, 0]);
            }
            let at = (part.as_ptr() as usize).checked_sub(head.as_ptr() as usize)?;
            let end = at.checked_add(part.len()).filter(|&end| end <= head.len())?;
            Some([at as u32, end as u32])
        };
        let mut kept = RawFields::take();
        let spans = &mut kept.spans;
        for f in passed_on(&facts, fields) {
            // httparse refuses the bytes a `HeaderValue` does (controls but
            // tab, DEL): what it parsed may go out as it is.
            debug_assert!(HeaderValue::from_bytes(f.value).is_ok());
            let (Some([n0, n1]), Some([v0, v1])) = (span(f.name.as_bytes()), span(f.value)) else {
                return Err(Broken::Bad("response head field outside the head"));
            };
            spans.push([n0, n1, v0, v1]);
        }
        kept.head.extend_from_slice(head);
        Ok(((response, facts), kept))
    })
}

/// `value`, which borrows from `up`, as a slice of `head` (a copy of `up`'s
/// start) when it lies there, else copied on its own.
fn shared_value(head: &Bytes, up: &[u8], value: &[u8]) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    let at = (value.as_ptr() as usize).wrapping_sub(up.as_ptr() as usize);
    match at.checked_add(value.len()) {
        Some(end) if end <= head.len() && !value.is_empty() => HeaderValue::from_maybe_shared(head.slice(at..end)),
        _ => HeaderValue::from_bytes(value),
    }
}

/// A response body read from a raw upstream connection.
pub struct RawBody {
    conn: Option<HostConn>,
    pool: Rc<HttpPool>,
    /// Bytes read and not yet handed over.
    buf: BytesMut,
    body: BodyCursor,
    /// A whole small body read with the head, handed over in one frame.
    whole: Option<Bytes>,
    /// A chunked body's trailer section as it comes, then parsed.
    trailer: Vec<u8>,
    trailers: Option<HeaderMap>,
    reusable: bool,
}

impl RawBody {
    /// The body of a response whose head ([`response_parts`]) starts `up`,
    /// read from `conn`.
    pub fn new(pool: Rc<HttpPool>, conn: HostConn, mut up: BytesMut, facts: &Facts) -> RawBody {
        up.advance(facts.head_len);
        let mut body = RawBody {
            conn: Some(conn),
            pool,
            buf: up,
            body: BodyCursor::new(facts.framing),
            whole: None,
            trailer: Vec::new(),
            trailers: None,
            reusable: facts.reusable,
        };
        let small = matches!(facts.framing, Framing::Length(n) if n as usize == body.buf.len() && n <= SMALL_BODY);
        if small || body.body.is_done() {
            // The whole body came with the head (the common small answer):
            // copied out, so the read buffer and the connection go back now.
            if small {
                body.whole = Some(Bytes::copy_from_slice(&body.buf));
                body.body = BodyCursor::Done;
            }
            if body.buf.is_empty() || small {
                spare::give(std::mem::take(&mut body.buf));
            }
            body.release();
        }
        body
    }

    /// Whether more of the body is still to be read from the upstream.
    pub fn reading(&self) -> bool {
        self.conn.is_some()
    }

    /// Gives the connection back to the pool if the exchange ended cleanly.
    fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.reusable && self.buf.is_empty() {
                self.pool.put_raw(conn);
            }
        }
    }

    /// Ends the body with an error; the connection is closed.
    fn fail(&mut self, why: &'static str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        self.body = BodyCursor::Done;
        Poll::Ready(Some(Err(why.into())))
    }
}

impl hyper::body::Body for RawBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(data) = this.whole.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        loop {
            // What is buffered first.
            if !this.buf.is_empty() && !this.body.is_done() {
                let data = if matches!(this.body, BodyCursor::Chunked(_)) {
                    // Chunks are decoded: their data is copied out.
                    let (mut data, trailer) = (BytesMut::new(), &mut this.trailer);
                    let Ok(used) = this.body.feed_with(&this.buf, &mut |piece| match piece {
                        h1::Piece::Data(d) => data.extend_from_slice(d),
                        h1::Piece::Trailer(t) => trailer.extend_from_slice(t),
                    }) else {
                        return this.fail("malformed chunked body");
                    };
                    this.buf.advance(used);
                    if this.trailer.len() > MAX_TRAILERS {
                        return this.fail("response trailers too large");
                    }
                    data.freeze()
                } else {
                    // Everything taken is data: handed over without a copy.
                    let used = this.body.feed(&this.buf).unwrap_or(0);
                    this.buf.split_to(used).freeze()
                };
                if this.body.is_done() {
                    this.trailers = parse_trailers(&this.trailer);
                    this.release();
                }
                if !data.is_empty() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                continue;
            }
            if this.body.is_done() {
                this.release();
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            // Then more from the socket.
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            this.buf.reserve(2 * READ_SPACE);
            let n = ready!(tokio_util::io::poll_read_buf(Pin::new(conn), cx, &mut this.buf))?;
            if n == 0 {
                if this.body.close() {
                    this.conn = None;
                    return Poll::Ready(None);
                }
                return this.fail("upstream closed inside a response body");
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.whole.is_none() && self.body.is_done() && self.trailers.is_none()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match (&self.whole, self.body) {
            (Some(d), _) => hyper::body::SizeHint::with_exact(d.len() as u64),
            (None, BodyCursor::Length(n)) => hyper::body::SizeHint::with_exact(n),
            (None, BodyCursor::Done) if self.trailers.is_none() => hyper::body::SizeHint::with_exact(0),
            _ => hyper::body::SizeHint::default(),
        }
    }
}

/// A chunked body's trailer section (`name: value` lines) as a header map;
/// `None` when there is none or it does not parse.
fn parse_trailers(raw: &[u8]) -> Option<HeaderMap> {
    if raw.is_empty() {
        return None;
    }
    let mut section = raw.to_vec();
    section.extend_from_slice(b"\r\n");
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADER_COUNT];
    let Ok(httparse::Status::Complete((_, parsed))) = httparse::parse_headers(&section, &mut headers) else {
        return None;
    };
    let mut map = HeaderMap::new();
    for h in parsed {
        // Fields about the connection or the framing have no place in trailers
        // (HTTP/2 refuses them, and would reset the stream after the body).
        let connection_field = !matches!(
            h1::classify(h.name),
            Name::Other
                | Name::ContentType
                | Name::Cookie
                | Name::XForwardedFor
                | Name::XForwardedProto
                | Name::XRequestId
        );
        if connection_field {
            continue;
        }
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(h.name.as_bytes()), HeaderValue::from_bytes(h.value)) {
            map.append(n, v);
        }
    }
    (!map.is_empty()).then_some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_keep_only_message_fields() {
        let t =
            parse_trailers(b"grpc-status: 0\r\nconnection: close\r\ntransfer-encoding: chunked\r\nx-t: 1\r\n").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.get("grpc-status").unwrap(), "0");
        assert_eq!(t.get("x-t").unwrap(), "1");
        assert!(parse_trailers(b"").is_none());
    }

    #[test]
    fn a_request_buffer_goes_back_to_the_worker_empty_and_comes_out_again() {
        let mut b = spare::RequestBuf::take(600);
        b.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let at = b.as_ptr();
        drop(b);
        let again = spare::RequestBuf::take(100);
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), at, "the same buffer");
        assert!(again.capacity() >= 600);
    }

    /// An exchange waiting for its upstream holds no read buffer: the
    /// worker's spare stays in the spares (another exchange could take it)
    /// until the answer arrives, and only then is it borrowed.
    #[tokio::test]
    async fn the_read_buffer_is_borrowed_when_the_answer_arrives() {
        const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nhost: h\r\n\r\n";
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = Rc::new(crate::host::Host::new(listener.local_addr().unwrap(), 1));
        let pool = HttpPool::new(host, std::time::Duration::from_secs(1), None);
        let spare = spare::take();
        let at = spare.as_ptr();
        spare::give(spare);

        let (got_request, request_seen) = tokio::sync::oneshot::channel();
        let (answer_now, answer) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = vec![0u8; REQUEST.len()];
            s.read_exact(&mut req).await.unwrap();
            let _ = got_request.send(req);
            answer.await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await.unwrap();
            s
        });
        let mut up = BytesMut::new();
        let mut parse = |b: &[u8]| response_parts(b, false);
        let exchange = send(&pool, REQUEST, true, &mut up, &mut parse);
        let waiting = async {
            assert_eq!(request_seen.await.unwrap(), REQUEST);
            // The exchange has sent its request and awaits the answer.
            let still_spare = spare::take();
            assert_eq!(still_spare.as_ptr(), at, "the spare is not held by the waiting exchange");
            spare::give(still_spare);
            answer_now.send(()).unwrap();
        };
        let (sent, ()) = tokio::join!(exchange, waiting);
        let Ok(((head, _facts), _conn)) = sent else { panic!("the exchange failed") };
        assert_eq!(head.status(), 200);
        assert_eq!(up.as_ptr(), at, "borrowed once the answer came");
        assert!(up.ends_with(b"ok"));
        drop(server);
    }

    #[test]
    fn response_raw_passes_on_what_response_parts_does() {
        let heads: [&[u8]; 5] = [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\nConnection: x-secret\r\nX-Secret: 1\r\nX-Keep: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nServer: Raw\r\nx-empty:\r\nX-B:  two words \r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nabc",
            b"HTTP/1.0 200 OK\r\nProxy-Connection: keep-alive\r\nX-A: 1\r\n\r\n",
            b"HTTP/1.1 103 Early\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
        ];
        for raw in heads {
            let (Ok(Some(parts)), Ok(Some(fields))) = (response_parts(raw, false), response_raw(raw, false)) else {
                panic!("not parsed: {}", String::from_utf8_lossy(raw));
            };
            let (Head::Final((resp, facts)), Head::Final(((resp2, facts2), fields))) = (parts, fields) else {
                let interim = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|at| at + 4);
                assert!(matches!(response_raw(raw, false), Ok(Some(Head::Interim(n))) if Some(n) == interim));
                continue;
            };
            assert_eq!(
                (resp.status(), facts.head_len, facts.framing),
                (resp2.status(), facts2.head_len, facts2.framing)
            );
            assert!(resp2.headers().is_empty(), "the fields are in RawFields only");
            let want: Vec<(String, Vec<u8>)> =
                resp.headers().iter().map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec())).collect();
            let got: Vec<(String, Vec<u8>)> =
                fields.iter().map(|(n, v)| (String::from_utf8(n.to_ascii_lowercase()).unwrap(), v.to_vec())).collect();
            assert_eq!(got, want, "{}", String::from_utf8_lossy(raw));
        }
        assert!(response_raw(b"HTTP/1.1 200 OK\r\nx-bad: a\x7fb\r\n\r\n", false).is_err());
        assert!(matches!(response_raw(b"HTTP/1.1 200 OK\r\nX", false), Ok(None)));
    }

    #[test]
    fn response_parts_drop_connection_and_framing_headers() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\nConnection: x-secret\r\nX-Secret: 1\r\nX-Keep: 2\r\n\r\n";
        let Ok(Some(Head::Final((resp, facts)))) = response_parts(raw, false) else { panic!("not parsed") };
        assert_eq!(facts.framing, Framing::Chunked);
        assert_eq!(facts.head_len, raw.len());
        let names: Vec<&str> = resp.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-keep"]);
        assert!(matches!(response_parts(b"HTTP/1.1 103 Early\r\n\r\n", false), Ok(Some(Head::Interim(22)))));
        // Values are slices of one copy of the head, whatever their place or size.
        let raw = b"HTTP/1.1 200 OK\r\nx-empty:\r\nx-a: one\r\nx-b:  two words \r\nContent-Length: 0\r\n\r\n";
        let Ok(Some(Head::Final((resp, _)))) = response_parts(raw, false) else { panic!("not parsed") };
        assert_eq!(resp.headers()["x-empty"], "");
        assert_eq!(resp.headers()["x-a"], "one");
        assert_eq!(resp.headers()["x-b"], "two words");
        // ... one copy: the values lie as far apart as they did in the head.
        let at = |name: &str| resp.headers()[name].as_bytes().as_ptr() as usize;
        let in_raw = |v: &[u8]| raw.windows(v.len()).position(|w| w == v).unwrap();
        assert_eq!(at("x-b") - at("x-a"), in_raw(b"two words") - in_raw(b"one"));
        assert!(matches!(response_parts(b"HTTP/1.1 200 OK\r\nx-bad: a\x7fb\r\n\r\n", false), Err(Broken::Bad(_))));
        assert!(matches!(response_parts(b"HTTP/1.1 200 OK\r\nX", false), Ok(None)));
        assert!(response_parts(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", false).is_err());
    }
}
