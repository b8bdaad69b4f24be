//! Just enough Hessian 2 to read a Dubbo request's routing keys: strings
//! borrowed from the frame, and every other value skipped without being
//! built (the arguments are never decoded).
//!
//! Grammar: the Hessian 2.0 serialization spec, section 3 (compact forms
//! included). A string's length counts UTF-16 code units, so it is walked
//! character by character.

/// Why a body cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

type R<T> = Result<T, Malformed>;

/// A cursor over a Hessian 2 body.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Field counts of the class definitions seen, by reference number.
    classes: smallvec::SmallVec<[usize; 4]>,
    /// How many values [`Reader::skip`] is inside of.
    depth: usize,
}

/// The deepest nesting of lists, maps and objects skipped. Each level is a
/// frame of the worker's stack: a 20 KB argument nested 20,000 deep
/// overflowed it and aborted the process. Java's own Hessian reader
/// recurses too, so real arguments stay far shallower than this.
pub const MAX_DEPTH: usize = 256;

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0, classes: smallvec::SmallVec::new(), depth: 0 }
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// How far into the body the cursor is.
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn byte(&mut self) -> R<u8> {
        let b = *self.buf.get(self.pos).ok_or(Malformed)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(Malformed)?;
        let s = self.buf.get(self.pos..end).ok_or(Malformed)?;
        self.pos = end;
        Ok(s)
    }

    fn be(&mut self, n: usize) -> R<u64> {
        Ok(self.take(n)?.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b)))
    }

    /// `n` UTF-16 code units of UTF-8 text.
    fn utf8_units(&mut self, mut n: usize) -> R<&'a [u8]> {
        let start = self.pos;
        // Routing keys and most arguments are ASCII: one byte per unit,
        // checked a word at a time rather than walked character by character.
        if let Some(ascii) = self.buf.get(start..start.saturating_add(n)).filter(|s| s.is_ascii()) {
            self.pos += n;
            return Ok(ascii);
        }
        while n > 0 {
            let b = self.byte()?;
            let (extra, units) = match b {
                0x00..=0x7f => (0, 1),
                0xc0..=0xdf => (1, 1),
                0xe0..=0xef => (2, 1),
                0xf0..=0xf7 => (3, 2),
                _ => return Err(Malformed),
            };
            self.take(extra)?;
            n = n.checked_sub(units).ok_or(Malformed)?;
        }
        Ok(&self.buf[start..self.pos])
    }

    /// A string or null. `Ok(Some(None))`: a chunked string, valid but not
    /// one piece of the frame. `Err` when the next value is neither.
    pub fn string(&mut self) -> R<Option<Option<&'a [u8]>>> {
        let mut first = None;
        let pieces = self.string_pieces(|p| {
            first.get_or_insert(p);
        })?;
        Ok(pieces.map(|n| if n == 1 { first } else { None }))
    }

    /// A string or null, its chunks joined (for tools and tests; the proxy
    /// reads routing keys in place with [`Reader::string`]).
    pub fn string_joined(&mut self) -> R<Option<Vec<u8>>> {
        let mut all = Vec::new();
        let pieces = self.string_pieces(|p| all.extend_from_slice(p))?;
        Ok(pieces.map(|_| all))
    }

    /// A string or null, chunk by chunk to `each`. Returns how many chunks,
    /// or `None` for null.
    fn string_pieces(&mut self, mut each: impl FnMut(&'a [u8])) -> R<Option<usize>> {
        let mut chunks = 0;
        loop {
            chunks += 1;
            let b = self.byte()?;
            let n = match b {
                b'N' if chunks == 1 => return Ok(None),
                0x00..=0x1f => usize::from(b),
                0x30..=0x33 => usize::from(b - 0x30) << 8 | usize::from(self.byte()?),
                // A final chunk, or (`R`) one with more after it.
                b'S' | b'R' => self.be(2)? as usize,
                _ => return Err(Malformed),
            };
            each(self.utf8_units(n)?);
            if b != b'R' {
                return Ok(Some(chunks));
            }
        }
    }

    /// An int, in any of its forms.
    fn int(&mut self) -> R<i64> {
        let b = self.byte()?;
        Ok(match b {
            0x80..=0xbf => i64::from(b) - 0x90,
            0xc0..=0xcf => (i64::from(b) - 0xc8) << 8 | self.be(1)? as i64,
            0xd0..=0xd7 => (i64::from(b) - 0xd4) << 16 | self.be(2)? as i64,
            b'I' => self.be(4)? as u32 as i32 as i64,
            _ => return Err(Malformed),
        })
    }

    /// A type name (a string) or a reference to one seen before (an int).
    fn type_ref(&mut self) -> R<()> {
        match self.peek().ok_or(Malformed)? {
            0x00..=0x1f | 0x30..=0x33 | b'S' | b'R' => self.string().map(drop),
            _ => self.int().map(drop),
        }
    }

    /// Values until the end marker `Z`.
    fn until_z(&mut self, per_entry: usize) -> R<()> {
        loop {
            if self.peek() == Some(b'Z') {
                self.pos += 1;
                return Ok(());
            }
            for _ in 0..per_entry {
                self.skip()?;
            }
        }
    }

    fn count(&mut self, n: i64) -> R<()> {
        let n = usize::try_from(n).map_err(|_| Malformed)?;
        // Every value is at least a byte: a count past the rest is a lie.
        if n > self.buf.len() - self.pos {
            return Err(Malformed);
        }
        for _ in 0..n {
            self.skip()?;
        }
        Ok(())
    }

    /// Skips one value of any type; a value nested deeper than
    /// [`MAX_DEPTH`] is malformed.
    pub fn skip(&mut self) -> R<()> {
        if self.depth >= MAX_DEPTH {
            return Err(Malformed);
        }
        self.depth += 1;
        let skipped = self.skip_value();
        self.depth -= 1;
        skipped
    }

    fn skip_value(&mut self) -> R<()> {
        let b = self.peek().ok_or(Malformed)?;
        match b {
            b'N' | b'T' | b'F' => self.pos += 1,
            0x00..=0x1f | 0x30..=0x33 | b'S' | b'R' => {
                self.string()?;
            }
            0x80..=0xbf | 0xc0..=0xcf | 0xd0..=0xd7 | b'I' => {
                self.int()?;
            }
            // long
            0xd8..=0xef => self.pos += 1,
            0xf0..=0xff => self.skip_bytes(2)?,
            0x38..=0x3f => self.skip_bytes(3)?,
            0x59 => self.skip_bytes(5)?,
            b'L' => self.skip_bytes(9)?,
            // double
            0x5b | 0x5c => self.pos += 1,
            0x5d => self.skip_bytes(2)?,
            0x5e => self.skip_bytes(3)?,
            0x5f => self.skip_bytes(5)?,
            b'D' => self.skip_bytes(9)?,
            // date
            0x4a => self.skip_bytes(9)?,
            0x4b => self.skip_bytes(5)?,
            // binary
            0x20..=0x2f => {
                self.pos += 1;
                self.take(usize::from(b - 0x20))?;
            }
            0x34..=0x37 => {
                self.pos += 1;
                let n = usize::from(b - 0x34) << 8 | usize::from(self.byte()?);
                self.take(n)?;
            }
            b'A' | b'B' => loop {
                let tag = self.byte()?;
                let n = self.be(2)? as usize;
                self.take(n)?;
                if tag == b'B' {
                    break;
                }
            },
            // lists
            b'U' => {
                self.pos += 1;
                self.type_ref()?;
                self.until_z(1)?;
            }
            b'V' => {
                self.pos += 1;
                self.type_ref()?;
                let n = self.int()?;
                self.count(n)?;
            }
            b'W' => {
                self.pos += 1;
                self.until_z(1)?;
            }
            b'X' => {
                self.pos += 1;
                let n = self.int()?;
                self.count(n)?;
            }
            0x70..=0x77 => {
                self.pos += 1;
                self.type_ref()?;
                self.count(i64::from(b - 0x70))?;
            }
            0x78..=0x7f => {
                self.pos += 1;
                self.count(i64::from(b - 0x78))?;
            }
            // maps
            b'M' => {
                self.pos += 1;
                self.type_ref()?;
                self.until_z(2)?;
            }
            b'H' => {
                self.pos += 1;
                self.until_z(2)?;
            }
            // objects
            b'C' => {
                self.pos += 1;
                self.string()?.ok_or(Malformed)?;
                let fields = usize::try_from(self.int()?).map_err(|_| Malformed)?;
                for _ in 0..fields {
                    self.string()?.ok_or(Malformed)?;
                }
                self.classes.push(fields);
                // A definition is followed by the value that uses it.
                self.skip()?;
            }
            b'O' => {
                self.pos += 1;
                let class = usize::try_from(self.int()?).map_err(|_| Malformed)?;
                self.object(class)?;
            }
            0x60..=0x6f => {
                self.pos += 1;
                self.object(usize::from(b - 0x60))?;
            }
            // a reference to an earlier value
            b'Q' => {
                self.pos += 1;
                self.int()?;
            }
            _ => return Err(Malformed),
        }
        if self.pos > self.buf.len() {
            return Err(Malformed);
        }
        Ok(())
    }

    fn skip_bytes(&mut self, n: usize) -> R<()> {
        self.take(n).map(drop)
    }

    fn object(&mut self, class: usize) -> R<()> {
        let fields = *self.classes.get(class).ok_or(Malformed)?;
        self.count(fields as i64)
    }

    /// An untyped or typed map of strings to strings, visiting each pair
    /// whose key and value are whole strings; other pairs are skipped.
    pub fn string_map(&mut self, mut visit: impl FnMut(&'a [u8], &'a [u8])) -> R<()> {
        match self.byte()? {
            b'H' => {}
            b'M' => self.type_ref()?,
            _ => return Err(Malformed),
        }
        loop {
            if self.peek() == Some(b'Z') {
                self.pos += 1;
                return Ok(());
            }
            let key = self.value_as_str()?;
            let value = self.value_as_str()?;
            if let (Some(k), Some(v)) = (key, value) {
                visit(k, v);
            }
        }
    }

    /// The next value if it is a whole string; skipped otherwise.
    fn value_as_str(&mut self) -> R<Option<&'a [u8]>> {
        match self.peek().ok_or(Malformed)? {
            0x00..=0x1f | 0x30..=0x33 | b'S' | b'R' => Ok(self.string()?.flatten()),
            _ => self.skip().map(|()| None),
        }
    }
}

/// Appends `s` as a Hessian 2 string.
pub fn write_string(out: &mut impl Extend<u8>, s: &str) {
    let units = s.encode_utf16().count();
    if units <= 0x1f {
        out.extend([units as u8]);
    } else if units <= 0x3ff {
        out.extend([0x30 + (units >> 8) as u8, units as u8]);
    } else {
        // `S` and a 16-bit length, after as many `R` chunks as the rest needs.
        let mut rest = s;
        loop {
            let (mut cut, mut units) = (0, 0);
            for c in rest.chars() {
                if units + c.len_utf16() > 0xffff {
                    break;
                }
                units += c.len_utf16();
                cut += c.len_utf8();
            }
            let last = cut == rest.len();
            out.extend([if last { b'S' } else { b'R' }, (units >> 8) as u8, units as u8]);
            out.extend(rest[..cut].bytes());
            if last {
                return;
            }
            rest = &rest[cut..];
        }
    }
    out.extend(s.bytes());
}

/// How many arguments a JVM method descriptor (`Ljava/lang/String;I[J`) names.
pub fn argument_count(desc: &[u8]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < desc.len() {
        match desc[i] {
            b'[' => {}
            b'L' => {
                n += 1;
                while i < desc.len() && desc[i] != b';' {
                    i += 1;
                }
            }
            _ => n += 1,
        }
        i += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_in_every_form() {
        let mut v = Vec::new();
        write_string(&mut v, "hello");
        write_string(&mut v, &"x".repeat(40));
        write_string(&mut v, "héllo ☃ 𝄞");
        v.push(b'N');
        let mut r = Reader::new(&v);
        assert_eq!(r.string().unwrap(), Some(Some(&b"hello"[..])));
        assert_eq!(r.string().unwrap(), Some(Some("x".repeat(40).as_bytes())));
        assert_eq!(r.string().unwrap(), Some(Some("héllo ☃ 𝄞".as_bytes())));
        assert_eq!(r.string().unwrap(), None);
        assert!(r.at_end());
    }

    #[test]
    fn long_strings_are_written_in_chunks_and_read_joined() {
        for s in ["y".repeat(0xffff), "y".repeat(0x10000), format!("{}𝄞{}", "a".repeat(0xfffe), "b".repeat(200_000))]
        {
            let mut v = Vec::new();
            write_string(&mut v, &s);
            write_string(&mut v, "end");
            let mut r = Reader::new(&v);
            assert_eq!(r.string_joined().unwrap().as_deref(), Some(s.as_bytes()));
            assert_eq!(r.string().unwrap(), Some(Some(&b"end"[..])));
            let mut r = Reader::new(&v);
            let chunked = s.encode_utf16().count() > 0xffff;
            assert_eq!(r.string().unwrap().map(|one| one.is_none()), Some(chunked));
        }
    }

    #[test]
    fn every_kind_of_value_is_skipped() {
        // int, long, double, bool, date, binary, lists, maps, an object with
        // its class definition, a reference, then a marker string.
        let mut v: Vec<u8> = vec![
            0x90, 0xc8, 0x01, 0xd4, 0x00, 0x01, b'I', 0, 0, 0, 1, // ints
            0xe0, 0xf8, 0x01, 0x3c, 0, 1, 0x59, 0, 0, 0, 1, b'L', 0, 0, 0, 0, 0, 0, 0, 1, // longs
            0x5b, 0x5d, 1, 0x5e, 0, 1, 0x5f, 0, 0, 0, 1, b'D', 0, 0, 0, 0, 0, 0, 0, 0, // doubles
            b'T', b'F', b'N', 0x4b, 0, 0, 0, 1, // bool, null, date
            0x23, 1, 2, 3, b'B', 0, 2, 9, 9, // binary
            0x7a, 0x91, 0x92, // short untyped list of 2
            b'W', 0x91, 0x92, b'Z', // variable untyped list
            b'H', 0x01, b'k', 0x91, b'Z', // untyped map
        ];
        // class "P" with fields a, b; an instance; a reference.
        v.extend([b'C', 0x01, b'P', 0x92, 0x01, b'a', 0x01, b'b', 0x60, 0x91, 0x92]);
        v.extend([0x60, 0x93, 0x94]);
        v.extend([b'Q', 0x90]);
        write_string(&mut v, "end");
        let mut r = Reader::new(&v);
        for _ in 0..26 {
            r.skip().unwrap();
        }
        assert_eq!(r.string().unwrap(), Some(Some(&b"end"[..])));
        assert!(r.at_end());
    }

    #[test]
    fn truncated_and_lying_input_is_refused() {
        assert!(Reader::new(&[0x05, b'a']).string().is_err());
        assert!(Reader::new(&[b'X', 0xbf]).skip().is_err(), "a count past the end");
        assert!(Reader::new(&[0x61]).skip().is_err(), "an unknown class");
        assert!(Reader::new(&[0xff]).string().is_err());
    }

    #[test]
    fn nesting_is_bounded_not_the_stack() {
        // Lists of one element (0x79), nested: at the bound they are read,
        // past it refused, and 100,000 deep no longer overflows the stack.
        let nested = |depth: usize| {
            let mut v = vec![0x79; depth - 1];
            v.push(b'N');
            v
        };
        let deepest = nested(MAX_DEPTH);
        let mut r = Reader::new(&deepest);
        assert_eq!(r.skip(), Ok(()));
        assert!(r.at_end());
        assert!(Reader::new(&nested(MAX_DEPTH + 1)).skip().is_err());
        assert!(Reader::new(&nested(100_000)).skip().is_err());
        // Class definitions, each followed by the value that uses it, nest too.
        let mut defs = Vec::new();
        for _ in 0..100_000 {
            defs.extend_from_slice(&[b'C', 0x01, b'c', 0x90]);
        }
        defs.push(b'N');
        assert!(Reader::new(&defs).skip().is_err());
    }

    #[test]
    fn descriptors_count_their_arguments() {
        assert_eq!(argument_count(b""), 0);
        assert_eq!(argument_count(b"Ljava/lang/String;I"), 2);
        assert_eq!(argument_count(b"[Ljava/lang/String;[[JZ"), 3);
    }
}
