//! JCE, Tars's tag-length-value encoding: what the codec reads and writes.
//!
//! A field is a head (a byte of `tag << 4 | type`, or `0xF_ | type` and a
//! tag byte for tags of 15 and up) and a value. Integers take the fewest
//! bytes their value needs (`Zero` for 0).

use bytes::{BufMut, BytesMut};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

type R<T> = Result<T, Malformed>;

/// How deep structs and containers may nest before input is refused.
const MAX_DEPTH: u32 = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int1,
    Int2,
    Int4,
    Int8,
    Float,
    Double,
    String1,
    String4,
    Map,
    List,
    StructBegin,
    StructEnd,
    Zero,
    SimpleList,
}

impl Kind {
    fn from_bits(b: u8) -> R<Kind> {
        Ok(match b {
            0 => Kind::Int1,
            1 => Kind::Int2,
            2 => Kind::Int4,
            3 => Kind::Int8,
            4 => Kind::Float,
            5 => Kind::Double,
            6 => Kind::String1,
            7 => Kind::String4,
            8 => Kind::Map,
            9 => Kind::List,
            10 => Kind::StructBegin,
            11 => Kind::StructEnd,
            12 => Kind::Zero,
            13 => Kind::SimpleList,
            _ => return Err(Malformed),
        })
    }

    fn bits(self) -> u8 {
        self as u8
    }
}

/// One field: its tag and type, where its head starts, where its value
/// starts, and (once skipped) where it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub tag: u8,
    pub kind: Kind,
    pub start: usize,
    pub body: usize,
    pub end: usize,
}

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], pos: usize) -> Reader<'a> {
        Reader { buf, pos }
    }

    fn byte_at(&self, at: usize) -> R<u8> {
        self.buf.get(at).copied().ok_or(Malformed)
    }

    fn slice(&self, at: usize, n: usize) -> R<&'a [u8]> {
        self.buf.get(at..at.checked_add(n).ok_or(Malformed)?).ok_or(Malformed)
    }

    /// The next field's head, or `None` at the end of the buffer.
    pub fn next_field(&mut self) -> R<Option<Field>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let start = self.pos;
        let b = self.byte_at(start)?;
        let kind = Kind::from_bits(b & 0x0f)?;
        let (tag, body) = if b >> 4 == 15 { (self.byte_at(start + 1)?, start + 2) } else { (b >> 4, start + 1) };
        self.pos = body;
        Ok(Some(Field { tag, kind, start, body, end: 0 }))
    }

    /// An integer field's value.
    pub fn int(&self, f: &Field) -> R<i64> {
        let at = f.body;
        Ok(match f.kind {
            Kind::Zero => 0,
            Kind::Int1 => i64::from(self.byte_at(at)? as i8),
            Kind::Int2 => i64::from(i16::from_be_bytes(self.slice(at, 2)?.try_into().map_err(|_| Malformed)?)),
            Kind::Int4 => i64::from(i32::from_be_bytes(self.slice(at, 4)?.try_into().map_err(|_| Malformed)?)),
            Kind::Int8 => i64::from_be_bytes(self.slice(at, 8)?.try_into().map_err(|_| Malformed)?),
            _ => return Err(Malformed),
        })
    }

    /// A string field's bytes.
    pub fn bytes(&self, f: &Field) -> R<&'a [u8]> {
        match f.kind {
            Kind::String1 => self.slice(f.body + 1, usize::from(self.byte_at(f.body)?)),
            Kind::String4 => {
                let n = u32::from_be_bytes(self.slice(f.body, 4)?.try_into().map_err(|_| Malformed)?);
                self.slice(f.body + 4, n as usize)
            }
            _ => Err(Malformed),
        }
    }

    /// Moves past `f`'s value; `f.end` is where it ended.
    pub fn skip(&mut self, f: &mut Field) -> R<()> {
        self.pos = f.body;
        self.value(f.kind, 0)?;
        f.end = self.pos;
        Ok(())
    }

    /// A length: an integer field of its own.
    fn count(&mut self) -> R<usize> {
        let mut f = self.next_field()?.ok_or(Malformed)?;
        let n = self.int(&f)?;
        self.skip(&mut f)?;
        let n = usize::try_from(n).map_err(|_| Malformed)?;
        // Every element takes at least a byte: a count past the rest is a lie.
        if n > self.buf.len() - self.pos {
            return Err(Malformed);
        }
        Ok(n)
    }

    fn field(&mut self, depth: u32) -> R<Field> {
        let f = self.next_field()?.ok_or(Malformed)?;
        self.value(f.kind, depth)?;
        Ok(f)
    }

    fn value(&mut self, kind: Kind, depth: u32) -> R<()> {
        if depth > MAX_DEPTH {
            return Err(Malformed);
        }
        let fixed = |n: usize| -> R<usize> { Ok(n) };
        let step = match kind {
            Kind::Zero | Kind::StructEnd => fixed(0)?,
            Kind::Int1 => fixed(1)?,
            Kind::Int2 => fixed(2)?,
            Kind::Int4 | Kind::Float => fixed(4)?,
            Kind::Int8 | Kind::Double => fixed(8)?,
            Kind::String1 => 1 + usize::from(self.byte_at(self.pos)?),
            Kind::String4 => {
                4 + u32::from_be_bytes(self.slice(self.pos, 4)?.try_into().map_err(|_| Malformed)?) as usize
            }
            Kind::Map => {
                let n = self.count()?;
                for _ in 0..2 * n {
                    self.field(depth + 1)?;
                }
                0
            }
            Kind::List => {
                let n = self.count()?;
                for _ in 0..n {
                    self.field(depth + 1)?;
                }
                0
            }
            Kind::SimpleList => {
                // A head (type Int1, tag 0), then the length, then the bytes.
                let head = self.next_field()?.ok_or(Malformed)?;
                if head.kind != Kind::Int1 {
                    return Err(Malformed);
                }
                self.pos = head.body;
                self.count()?
            }
            Kind::StructBegin => {
                loop {
                    let f = self.field(depth + 1)?;
                    if f.kind == Kind::StructEnd {
                        break;
                    }
                }
                0
            }
        };
        self.slice(self.pos, step)?;
        self.pos += step;
        Ok(())
    }

    /// Visits the string-to-string entries of map field `f`; other entries
    /// are skipped.
    pub fn string_map(&mut self, f: &Field, mut visit: impl FnMut(&'a [u8], &'a [u8])) -> R<()> {
        if f.kind != Kind::Map {
            return Err(Malformed);
        }
        self.pos = f.body;
        let n = self.count()?;
        for _ in 0..n {
            let k = self.field(1)?;
            let v = self.field(1)?;
            if let (Ok(k), Ok(v)) = (self.bytes(&k), self.bytes(&v)) {
                visit(k, v);
            }
        }
        Ok(())
    }
}

fn head(out: &mut BytesMut, tag: u8, kind: Kind) {
    if tag < 15 {
        out.put_u8(tag << 4 | kind.bits());
    } else {
        out.put_u8(0xf0 | kind.bits());
        out.put_u8(tag);
    }
}

/// An integer in the fewest bytes that hold it.
pub fn write_int(out: &mut BytesMut, tag: u8, v: i64) {
    if v == 0 {
        head(out, tag, Kind::Zero);
    } else if let Ok(v) = i8::try_from(v) {
        head(out, tag, Kind::Int1);
        out.put_i8(v);
    } else if let Ok(v) = i16::try_from(v) {
        head(out, tag, Kind::Int2);
        out.put_i16(v);
    } else if let Ok(v) = i32::try_from(v) {
        head(out, tag, Kind::Int4);
        out.put_i32(v);
    } else {
        head(out, tag, Kind::Int8);
        out.put_i64(v);
    }
}

pub fn write_string(out: &mut BytesMut, tag: u8, s: &str) {
    if let Ok(n) = u8::try_from(s.len()) {
        head(out, tag, Kind::String1);
        out.put_u8(n);
    } else {
        head(out, tag, Kind::String4);
        out.put_u32(s.len() as u32);
    }
    out.put_slice(s.as_bytes());
}

pub fn write_empty_map(out: &mut BytesMut, tag: u8) {
    head(out, tag, Kind::Map);
    write_int(out, 0, 0);
}

pub fn write_empty_bytes(out: &mut BytesMut, tag: u8) {
    head(out, tag, Kind::SimpleList);
    head(out, 0, Kind::Int1);
    write_int(out, 0, 0);
}

/// Writes a map of strings (for tests and tools).
pub fn write_string_map(out: &mut BytesMut, tag: u8, entries: &[(&str, &str)]) {
    head(out, tag, Kind::Map);
    write_int(out, 0, entries.len() as i64);
    for (k, v) in entries {
        write_string(out, 0, k);
        write_string(out, 1, v);
    }
}

/// Writes bytes as a simple list (`vector<byte>`).
pub fn write_bytes(out: &mut BytesMut, tag: u8, bytes: &[u8]) {
    head(out, tag, Kind::SimpleList);
    head(out, 0, Kind::Int1);
    write_int(out, 0, bytes.len() as i64);
    out.put_slice(bytes);
}
