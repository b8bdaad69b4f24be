//! HPACK (RFC 7541): the decoder a server needs for request headers, and a
//! stateless encoder for responses.
//!
//! The decoder keeps its dynamic table as ready `http` types: a field a
//! client sends again as an index (most fields, after a connection's first
//! request) costs a reference-count increment, not a parse. The encoder
//! never adds to the client's table: every field goes as a literal without
//! indexing, its name as a static-table index where there is one, so the
//! encoder holds no state and the client's SETTINGS_HEADER_TABLE_SIZE never
//! matters to it.

use std::collections::VecDeque;
use std::sync::LazyLock;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

use super::huffman;

/// A pseudo-header (RFC 9113 §8.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pseudo {
    Authority,
    Method,
    Path,
    Scheme,
    Status,
    Protocol,
}

impl Pseudo {
    fn from_bytes(b: &[u8]) -> Option<Pseudo> {
        Some(match b {
            b":authority" => Pseudo::Authority,
            b":method" => Pseudo::Method,
            b":path" => Pseudo::Path,
            b":scheme" => Pseudo::Scheme,
            b":status" => Pseudo::Status,
            b":protocol" => Pseudo::Protocol,
            _ => return None,
        })
    }
}

/// A decoded field's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Name {
    Pseudo(Pseudo),
    Header(HeaderName),
    /// Not a valid HTTP/2 field name (upper case, an unknown pseudo-header,
    /// forbidden bytes): a malformed request, but HPACK state all the same.
    Invalid,
}

/// A decoded field's value.
#[derive(Clone, Debug)]
pub enum Value {
    /// A header field's value, checked.
    Header(HeaderValue),
    /// A pseudo-header's bytes, checked where they are parsed (method, URI).
    Pseudo(Bytes),
    /// Not a valid field value (NUL, CR, LF, other controls), or the value
    /// of an invalid name: the request is malformed.
    Invalid,
}

/// One decoded field.
#[derive(Clone, Debug)]
pub struct Field {
    pub name: Name,
    pub value: Value,
    /// RFC 7541 §4.1 size: name and value lengths plus 32.
    size: u32,
    name_len: u32,
}

impl Field {
    fn new(name: &[u8], value: Bytes) -> Field {
        let name_len = name.len();
        let size = (name.len() + value.len() + 32) as u32;
        let name = if name.first() == Some(&b':') {
            Pseudo::from_bytes(name).map_or(Name::Invalid, Name::Pseudo)
        } else {
            HeaderName::from_bytes(name)
                .ok()
                .filter(|n| n.as_str().as_bytes() == name)
                .map_or(Name::Invalid, Name::Header)
        };
        let value = value_for(&name, value);
        Field { name, value, size, name_len: name_len as u32 }
    }

    /// The value's bytes, if it is valid.
    pub fn value_bytes(&self) -> Option<&[u8]> {
        match &self.value {
            Value::Header(v) => Some(v.as_bytes()),
            Value::Pseudo(b) => Some(b),
            Value::Invalid => None,
        }
    }

    /// The RFC 7541 §4.1 size, which also counts toward a header list's size.
    pub fn size(&self) -> usize {
        self.size as usize
    }
}

fn value_for(name: &Name, bytes: Bytes) -> Value {
    match name {
        Name::Pseudo(_) => Value::Pseudo(bytes),
        Name::Header(_) => HeaderValue::from_maybe_shared(bytes).map_or(Value::Invalid, Value::Header),
        Name::Invalid => Value::Invalid,
    }
}

/// RFC 7541 Appendix A.
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

static STATIC_FIELDS: LazyLock<Vec<Field>> =
    LazyLock::new(|| STATIC.iter().map(|(n, v)| Field::new(n.as_bytes(), Bytes::from_static(v.as_bytes()))).collect());

/// Why a header block could not be decoded: a connection error of type
/// COMPRESSION_ERROR (RFC 9113 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HpackError {
    /// The block ends inside a representation.
    Truncated,
    /// An integer longer than any field could need.
    Integer,
    /// Index 0, or past the end of both tables.
    Index,
    /// A string's Huffman code is invalid.
    Huffman,
    /// A table size update above the limit, or after the block's first field.
    SizeUpdate,
}

impl std::fmt::Display for HpackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HpackError::Truncated => "header block truncated",
            HpackError::Integer => "integer overflow in header block",
            HpackError::Index => "header index out of range",
            HpackError::Huffman => "invalid Huffman string",
            HpackError::SizeUpdate => "invalid dynamic table size update",
        })
    }
}

/// Strings longer than this are refused whatever the limits above say: no
/// field value gets near it within MAX_HEAD_BYTES.
const MAX_STRING: usize = 1 << 20;

/// The request-side decoder of one connection.
#[derive(Debug)]
pub struct Decoder {
    /// Newest first.
    table: VecDeque<Field>,
    size: usize,
    /// The size the encoder last set (≤ `limit`).
    max: usize,
    /// SETTINGS_HEADER_TABLE_SIZE as we announced it.
    limit: usize,
    /// The last `:path` sent as a literal: its encoded value (Huffman flag,
    /// length, bytes) and the field it decoded to. Encoders built on nghttp2
    /// (curl, h2load, nghttpx) never index `:path`, so each of their requests
    /// sends it again as a literal, mostly the same one: a repeat costs a
    /// compare of its encoded bytes instead of a Huffman decode and an
    /// allocation (about 520 instructions of an h2c request). Boxed: most
    /// connections never need it, and a parked one lets it go
    /// ([`Decoder::forget_repeats`]). Kept from the second such literal on: a
    /// connection that sends one request and idles allocates nothing for it.
    last_path: Option<Box<Kept<Field>>>,
    path_literal_seen: bool,
    /// Counts changes to the dynamic table (entries, size): a block decoded
    /// twice at the same count without changing it decodes the same.
    generation: u64,
}

/// A value kept with the bytes it was decoded from, for when the same bytes
/// come again: the last `:path` literal here, the last header block of an
/// HTTP/2 connection (`stream::http::h2`).
#[derive(Debug)]
pub struct Kept<T> {
    bytes: Vec<u8>,
    pub value: T,
}

impl<T> Kept<T> {
    /// The bytes `value` was decoded from.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Keeps `value` for `bytes` in `slot`, in the buffer it already has.
    pub fn keep(slot: &mut Option<Box<Kept<T>>>, bytes: &[u8], value: T) {
        match slot {
            Some(kept) => {
                kept.bytes.clear();
                kept.bytes.extend_from_slice(bytes);
                kept.value = value;
            }
            None => *slot = Some(Box::new(Kept { bytes: bytes.to_vec(), value })),
        }
    }
}

/// Static-table entries 4 and 5 name `:path`.
const PATH_NAMES: std::ops::RangeInclusive<usize> = 4..=5;

/// Longer `:path` literals are decoded every time rather than kept.
const MAX_KEPT_PATH: usize = 256;

impl Decoder {
    pub fn new(limit: usize) -> Decoder {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            max: limit,
            limit,
            last_path: None,
            path_literal_seen: false,
            generation: 0,
        }
    }

    /// Changes to the dynamic table so far. Decoding a block gives the same
    /// fields as before if the block's bytes and this count are the same as
    /// then, and its decoding left the count as it was (no field indexed, no
    /// size update).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Lets go of what only saves work on a repeat (a connection parks).
    pub fn forget_repeats(&mut self) {
        self.last_path = None;
    }

    /// Bytes the dynamic table holds (RFC 7541 sizes).
    pub fn table_size(&self) -> usize {
        self.size
    }

    /// Decodes one complete header block, handing each field to `emit` in
    /// order. `emit` answering `false` stops decoding there (the table is
    /// then out of step with the encoder's: for a connection that closes).
    pub fn decode(&mut self, mut src: &[u8], mut emit: impl FnMut(Field) -> bool) -> Result<(), HpackError> {
        let mut first = true;
        while let Some(&b) = src.first() {
            if b & 0x80 != 0 {
                let index = integer(&mut src, 7)?;
                if !emit(self.get(index)?.clone()) {
                    return Ok(());
                }
            } else if b & 0xc0 == 0x40 {
                let field = self.literal(&mut src, 6)?;
                self.insert(field.clone());
                let go_on = emit(field);
                if !go_on {
                    return Ok(());
                }
            } else if b & 0xe0 == 0x20 {
                // RFC 7541 §4.2: only at the start of a block.
                if !first {
                    return Err(HpackError::SizeUpdate);
                }
                let size = integer(&mut src, 5)?;
                if size > self.limit {
                    return Err(HpackError::SizeUpdate);
                }
                self.max = size;
                self.generation += 1;
                self.evict(0);
                continue;
            } else {
                // Without indexing (0000) or never indexed (0001).
                if !emit(self.literal(&mut src, 4)?) {
                    return Ok(());
                }
            }
            first = false;
        }
        Ok(())
    }

    fn get(&self, index: usize) -> Result<&Field, HpackError> {
        match index {
            0 => Err(HpackError::Index),
            1..=61 => Ok(&STATIC_FIELDS[index - 1]),
            _ => self.table.get(index - 62).ok_or(HpackError::Index),
        }
    }

    fn literal(&mut self, src: &mut &[u8], prefix: u8) -> Result<Field, HpackError> {
        let index = integer(src, prefix)?;
        if index == 0 {
            let name = string(src)?;
            let value = string(src)?;
            return Ok(Field::new(&name, value));
        }
        let path = PATH_NAMES.contains(&index);
        if path {
            // Equal encoded bytes, length prefix included, are the same
            // string: the value it decoded to last time.
            if let Some(last) = self.last_path.as_deref() {
                if let Some(rest) = src.strip_prefix(last.bytes()) {
                    *src = rest;
                    return Ok(last.value.clone());
                }
            }
        }
        let encoded = *src;
        let named = self.get(index)?;
        let value = string(src)?;
        let size = (named.name_len as usize + value.len() + 32) as u32;
        let field =
            Field { value: value_for(&named.name, value), name: named.name.clone(), size, name_len: named.name_len };
        let encoded = &encoded[..encoded.len() - src.len()];
        if path && encoded.len() <= MAX_KEPT_PATH && std::mem::replace(&mut self.path_literal_seen, true) {
            Kept::keep(&mut self.last_path, encoded, field.clone());
        }
        Ok(field)
    }

    fn insert(&mut self, field: Field) {
        self.generation += 1;
        let size = field.size();
        if size > self.max {
            // RFC 7541 §4.4: a field larger than the table empties it.
            self.table.clear();
            self.size = 0;
            return;
        }
        self.evict(size);
        self.size += size;
        self.table.push_front(field);
    }

    /// Evicts the oldest entries until `room` more bytes fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max {
            match self.table.pop_back() {
                Some(f) => self.size -= f.size(),
                None => break,
            }
        }
        if self.table.is_empty() {
            // An idle connection keeps no table allocation.
            self.table = VecDeque::new();
        }
    }
}

/// RFC 7541 §5.1.
fn integer(src: &mut &[u8], prefix: u8) -> Result<usize, HpackError> {
    let (&first, rest) = src.split_first().ok_or(HpackError::Truncated)?;
    let mask = (1u16 << prefix) as u8 - 1;
    let mut value = usize::from(first & mask);
    *src = rest;
    if value < usize::from(mask) {
        return Ok(value);
    }
    let mut shift = 0;
    loop {
        let (&b, rest) = src.split_first().ok_or(HpackError::Truncated)?;
        *src = rest;
        if shift > 21 {
            return Err(HpackError::Integer);
        }
        value += usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
}

thread_local! {
    static HUFFMAN_OUT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// RFC 7541 §5.2.
fn string(src: &mut &[u8]) -> Result<Bytes, HpackError> {
    let huffman = src.first().ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = integer(src, 7)?;
    if len > src.len() || len > MAX_STRING {
        return Err(HpackError::Truncated);
    }
    let (raw, rest) = src.split_at(len);
    *src = rest;
    if huffman {
        // Decoded into a reused buffer, then copied out at its exact length:
        // `Bytes` from a `Vec` with room to spare would cost a second
        // allocation (its shared header).
        HUFFMAN_OUT.with_borrow_mut(|out| {
            out.clear();
            huffman::decode(raw, out).map_err(|_| HpackError::Huffman)?;
            Ok(Bytes::copy_from_slice(out))
        })
    } else {
        Ok(Bytes::copy_from_slice(raw))
    }
}

/// RFC 7541 §5.1: `value` with a `prefix`-bit prefix, `flags` in the
/// first byte's high bits. Inlined: most are one byte, and an h2c answer
/// puts about eight.
#[inline]
pub fn put_integer(dst: &mut BytesMut, flags: u8, prefix: u8, mut value: usize) {
    let mask = ((1u16 << prefix) - 1) as usize;
    if value < mask {
        dst.put_u8(flags | value as u8);
        return;
    }
    dst.put_u8(flags | mask as u8);
    value -= mask;
    while value >= 0x80 {
        dst.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    dst.put_u8(value as u8);
}

/// RFC 7541 §5.2: a string literal, not Huffman-coded.
#[inline]
pub fn put_string(dst: &mut BytesMut, s: &[u8]) {
    put_integer(dst, 0, 7, s.len());
    dst.put_slice(s);
}

/// The static-table index of a field name a response commonly carries.
fn static_name(name: &[u8]) -> Option<usize> {
    Some(match name {
        b"content-type" => 31,
        b"content-length" => 28,
        b"date" => 33,
        b"server" => 54,
        b"cache-control" => 24,
        b"content-encoding" => 26,
        b"etag" => 34,
        b"last-modified" => 44,
        b"location" => 46,
        b"set-cookie" => 55,
        b"vary" => 59,
        b"accept-ranges" => 18,
        b"expires" => 36,
        b"age" => 21,
        _ => return None,
    })
}

/// Encodes fields as an HTTP/1.1 head carried them, names in any letter
/// case (lowercased here, as RFC 9113 §8.2.1 requires), after whatever the
/// block already holds. The caller has left out the connection-specific
/// ones and checked names (tokens) and values.
pub fn encode_fields<'a>(fields: impl Iterator<Item = (&'a [u8], &'a [u8])>, dst: &mut BytesMut) {
    let mut lower = [0u8; 64];
    for (name, value) in fields {
        let long;
        let name: &[u8] = match lower.get_mut(..name.len()) {
            Some(l) => {
                for (d, s) in l.iter_mut().zip(name) {
                    *d = s.to_ascii_lowercase();
                }
                l
            }
            None => {
                long = name.to_ascii_lowercase();
                &long
            }
        };
        put_field(dst, 0, name, value);
    }
}

/// One literal field without indexing (`flags` 0x10: never indexed), its
/// name (lowercase) by its static-table index where it has one. Inlined into
/// both encoders' loops: called, it cost an h2c answer about 70 instructions.
#[inline(always)]
fn put_field(dst: &mut BytesMut, flags: u8, name: &[u8], value: &[u8]) {
    match static_name(name) {
        Some(i) => put_integer(dst, flags, 4, i),
        None => {
            put_integer(dst, flags, 4, 0);
            put_string(dst, name);
        }
    }
    put_string(dst, value);
}

/// Encodes `:status` (when given) and `headers` as one header block.
/// Connection-specific fields (RFC 9113 §8.2.2) are left out.
pub fn encode(status: Option<u16>, headers: &HeaderMap, dst: &mut BytesMut) {
    if let Some(status) = status {
        match status {
            200 => dst.put_u8(0x88),
            204 => dst.put_u8(0x89),
            206 => dst.put_u8(0x8a),
            304 => dst.put_u8(0x8b),
            400 => dst.put_u8(0x8c),
            404 => dst.put_u8(0x8d),
            500 => dst.put_u8(0x8e),
            _ => {
                put_integer(dst, 0, 4, 8);
                let digits =
                    [b'0' + (status / 100 % 10) as u8, b'0' + (status / 10 % 10) as u8, b'0' + (status % 10) as u8];
                put_string(dst, &digits);
            }
        }
    }
    for (name, value) in headers {
        if is_connection_specific(name) {
            continue;
        }
        let flags = if value.is_sensitive() { 0x10 } else { 0 };
        put_field(dst, flags, name.as_str().as_bytes(), value.as_bytes());
    }
}

/// RFC 9113 §8.2.2: fields that only mean something to one HTTP/1.1 hop.
pub fn is_connection_specific(name: &HeaderName) -> bool {
    use http::header;
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(d: &mut Decoder, block: &[u8]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        d.decode(block, |f| {
            let name = match &f.name {
                Name::Pseudo(p) => format!("{p:?}"),
                Name::Header(h) => h.to_string(),
                Name::Invalid => "?".into(),
            };
            out.push((name, f.value_bytes().map_or("?".into(), |v| String::from_utf8_lossy(v).into_owned())));
            true
        })
        .unwrap();
        out
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// RFC 7541 C.4: three requests with Huffman, sharing the dynamic table.
    #[test]
    fn rfc_c4_requests() {
        let mut d = Decoder::new(4096);
        let one = fields(&mut d, &hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"));
        assert_eq!(one[3], ("Authority".into(), "www.example.com".into()));
        assert_eq!(d.table_size(), 57);
        let two = fields(&mut d, &hex("8286 84be 5886 a8eb 1064 9cbf"));
        assert_eq!(two[3], ("Authority".into(), "www.example.com".into()));
        assert_eq!(two[4], ("cache-control".into(), "no-cache".into()));
        assert_eq!(d.table_size(), 110);
        let three = fields(&mut d, &hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"));
        assert_eq!(three[2], ("Path".into(), "/index.html".into()));
        assert_eq!(three[4], ("custom-key".into(), "custom-value".into()));
        assert_eq!(d.table_size(), 164);
    }

    /// RFC 7541 C.5-like: a small table evicts the oldest entries.
    #[test]
    fn eviction_and_size_updates() {
        let mut d = Decoder::new(4096);
        // Size update to 64, then a literal with indexing "custom-key: custom-header" (size 55).
        let block = hex("3f21 400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
        let out = fields(&mut d, &block);
        assert_eq!(out[0], ("custom-key".into(), "custom-header".into()));
        assert_eq!(d.table_size(), 55);
        // Another entry of 55 evicts the first.
        fields(&mut d, &hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"));
        assert_eq!(d.table_size(), 55);
        // A size update after a field is refused; one above the limit too.
        assert_eq!(d.decode(&hex("82 3f21"), |_| true).unwrap_err(), HpackError::SizeUpdate);
        assert_eq!(d.decode(&hex("3fe2 1f"), |_| true).unwrap_err(), HpackError::SizeUpdate);
        // Size 0 empties it.
        d.decode(&[0x20], |_| true).unwrap();
        assert_eq!(d.table_size(), 0);
        assert_eq!(d.decode(&[0xbe], |_| true).unwrap_err(), HpackError::Index);
    }

    /// A `:path` literal sent again (as nghttp2 sends every request's) is
    /// the kept field; any other bytes are decoded afresh, and the kept one
    /// goes when the connection parks.
    #[test]
    fn repeated_path_literals() {
        let literal = |flags: u8, index: u8, path: &str| {
            let mut coded = Vec::new();
            huffman::encode(path.as_bytes(), &mut coded);
            let mut block = vec![0x82, flags | index, 0x80 | coded.len() as u8];
            block.extend_from_slice(&coded);
            block
        };
        let mut d = Decoder::new(4096);
        let a = literal(0x00, 4, "/svc.Echo/Say");
        assert_eq!(fields(&mut d, &a)[1], ("Path".into(), "/svc.Echo/Say".into()));
        assert!(d.last_path.is_none(), "kept from the second on");
        assert_eq!(fields(&mut d, &a)[1], ("Path".into(), "/svc.Echo/Say".into()));
        assert!(d.last_path.is_some());
        assert_eq!(fields(&mut d, &a)[1], ("Path".into(), "/svc.Echo/Say".into()));
        // Another field's literal with the same value bytes is not a path.
        let mut other = literal(0x00, 4, "/svc.Echo/Say");
        other[1] = 0x0f; // index 15: accept-charset
        other.insert(2, 0x00); // (15 does not fit the 4-bit prefix: 0x0f 0x00)
        assert_eq!(fields(&mut d, &other)[1], ("accept-charset".into(), "/svc.Echo/Say".into()));
        // Never indexed, then by the other `:path` entry: the same string.
        assert_eq!(fields(&mut d, &literal(0x10, 5, "/svc.Echo/Say"))[1], ("Path".into(), "/svc.Echo/Say".into()));
        // Same length, other bytes.
        assert_eq!(fields(&mut d, &literal(0x00, 4, "/svc.Echo/Sax"))[1], ("Path".into(), "/svc.Echo/Sax".into()));
        // A longer one whose encoding starts like the kept one's bytes.
        assert_eq!(
            fields(&mut d, &literal(0x00, 4, "/svc.Echo/Saxophone"))[1],
            ("Path".into(), "/svc.Echo/Saxophone".into())
        );
        // With incremental indexing it goes into the table too, kept or not.
        let indexed = literal(0x40, 4, "/svc.Echo/Saxophone");
        assert_eq!(fields(&mut d, &indexed)[1], ("Path".into(), "/svc.Echo/Saxophone".into()));
        assert_eq!(fields(&mut d, &[0xbe])[0], ("Path".into(), "/svc.Echo/Saxophone".into()));
        d.forget_repeats();
        assert!(d.last_path.is_none());
        assert_eq!(fields(&mut d, &a)[1], ("Path".into(), "/svc.Echo/Say".into()));
    }

    #[test]
    fn malformed_blocks_are_errors() {
        let mut d = Decoder::new(4096);
        assert_eq!(d.decode(&[0x80], |_| true).unwrap_err(), HpackError::Index);
        assert_eq!(d.decode(&[0xff], |_| true).unwrap_err(), HpackError::Truncated);
        assert_eq!(d.decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff], |_| true).unwrap_err(), HpackError::Integer);
        assert_eq!(d.decode(&[0x00, 0x05, b'a'], |_| true).unwrap_err(), HpackError::Truncated);
        // A Huffman string padded with zeros.
        assert_eq!(d.decode(&[0x00, 0x81, 0x18, 0x00], |_| true).unwrap_err(), HpackError::Huffman);
    }

    #[test]
    fn invalid_names_and_values_are_marked_not_dropped() {
        let mut d = Decoder::new(4096);
        // Literal with indexing, new name "X-Up", value "a\nb".
        let block = [0x40, 0x04, b'X', b'-', b'U', b'p', 0x03, b'a', b'\n', b'b'];
        let mut got = Vec::new();
        d.decode(&block, |f| {
            got.push(f);
            true
        })
        .unwrap();
        assert_eq!(got[0].name, Name::Invalid);
        assert!(got[0].value_bytes().is_none());
        assert_eq!(d.table_size(), 4 + 3 + 32);
        // Still indexed: a reference to it decodes to the same marks.
        let mut again = Vec::new();
        d.decode(&[0xbe], |f| {
            again.push(f);
            true
        })
        .unwrap();
        assert_eq!(again[0].name, Name::Invalid);
    }

    #[test]
    fn responses_encode_and_decode_back() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        h.insert("x-long", HeaderValue::from_str(&"v".repeat(300)).unwrap());
        h.insert("connection", HeaderValue::from_static("close"));
        for status in [200, 302, 404, 503] {
            let mut block = BytesMut::new();
            encode(Some(status), &h, &mut block);
            let out = fields(&mut Decoder::new(4096), &block);
            assert_eq!(out[0], ("Status".into(), status.to_string()));
            assert_eq!(out[1], ("content-type".into(), "text/plain".into()));
            assert_eq!(out[2].1.len(), 300);
            assert_eq!(out.len(), 3, "connection is not sent on HTTP/2");
        }
    }

    /// Fields as an HTTP/1.1 head carried them encode as the same fields in
    /// a `HeaderMap` do: names lowercased, the static table's names indexed,
    /// a name longer than the stack buffer too.
    #[test]
    fn raw_fields_encode_as_their_header_map_does() {
        let long = format!("X-{}", "Long".repeat(20));
        let raw: Vec<(&[u8], &[u8])> = vec![
            (b"Content-Type", b"text/plain"),
            (b"SERVER", b"Raw"),
            (b"X-Mixed-Case", b"Yes"),
            (b"x-empty", b""),
            (long.as_bytes(), b"v"),
        ];
        let mut map = HeaderMap::new();
        for (n, v) in &raw {
            map.append(http::HeaderName::from_bytes(n).unwrap(), HeaderValue::from_bytes(v).unwrap());
        }
        let (mut from_map, mut from_raw) = (BytesMut::new(), BytesMut::new());
        encode(Some(200), &map, &mut from_map);
        encode(Some(200), &HeaderMap::new(), &mut from_raw);
        encode_fields(raw.iter().copied(), &mut from_raw);
        assert_eq!(from_raw, from_map);
        let out = fields(&mut Decoder::new(4096), &from_raw);
        assert_eq!(out[1], ("content-type".into(), "text/plain".into()));
        assert_eq!(out[3], ("x-mixed-case".into(), "Yes".into()));
        assert_eq!(out[5].0, long.to_ascii_lowercase());
    }
}
