//! HPACK's static Huffman code (RFC 7541 §5.2, Appendix B).
//!
//! Decoding looks the next 8 bits up in a table, which settles the codes of
//! up to 8 bits (the letters, digits and punctuation of paths and
//! authorities) in one step. Longer codes are found bit by bit through the
//! canonical order: the code's symbols, sorted by (length, code), take
//! consecutive codes within each length, so a symbol is its length's first
//! code plus an offset into that sorted list.

use std::sync::LazyLock;

/// Where decoding failed: an EOS symbol, or padding that is longer than 7
/// bits or not all ones (RFC 7541 §5.2).
#[derive(Debug, PartialEq, Eq)]
pub struct BadHuffman;

struct Canonical {
    /// Per length 0..=30: the first code of that length and how many there are.
    first: [u32; 31],
    count: [u16; 31],
    /// Per length: where its symbols start in `symbols`.
    start: [u16; 31],
    symbols: [u16; 257],
    /// Per value of the next 8 bits: the symbol and length of the code of
    /// at most 8 bits they start with (length 0: a longer code).
    short: [(u8, u8); 256],
}

static CANONICAL: LazyLock<Canonical> = LazyLock::new(|| {
    let mut order: Vec<u16> = (0..257).collect();
    order.sort_by_key(|&s| (CODES[s as usize].1, CODES[s as usize].0));
    let mut c = Canonical { first: [0; 31], count: [0; 31], start: [0; 31], symbols: [0; 257], short: [(0, 0); 256] };
    for (i, &s) in order.iter().enumerate() {
        let (code, len) = CODES[s as usize];
        let len = len as usize;
        if c.count[len] == 0 {
            c.first[len] = code;
            c.start[len] = i as u16;
        }
        debug_assert_eq!(code, c.first[len] + u32::from(c.count[len]), "not canonical at symbol {s}");
        c.count[len] += 1;
        c.symbols[i] = s;
        if len <= 8 {
            let base = (code as usize) << (8 - len);
            for entry in &mut c.short[base..base + (1 << (8 - len))] {
                *entry = (s as u8, len as u8);
            }
        }
    }
    c
});

/// Decodes `src` onto the end of `dst`.
pub fn decode(src: &[u8], dst: &mut Vec<u8>) -> Result<(), BadHuffman> {
    let table = &*CANONICAL;
    // The next `bits` bits, from the top of `acc` down.
    let mut acc: u64 = 0;
    let mut bits: u32 = 0;
    let mut next = src.iter();
    loop {
        while bits <= 56 {
            let Some(&b) = next.next() else { break };
            acc |= u64::from(b) << (56 - bits);
            bits += 8;
        }
        if bits == 0 {
            return Ok(());
        }
        let (symbol, len) = table.short[(acc >> 56) as usize];
        if len != 0 && u32::from(len) <= bits {
            dst.push(symbol);
            acc <<= len;
            bits -= u32::from(len);
            continue;
        }
        if bits <= 7 {
            // The last bits, no code (the table above has every code that
            // fits): they must be a prefix of EOS (all ones), as padding
            // is. Settled here, not bit by bit below: every string ends so.
            return if acc >> (64 - bits) == (1 << bits) - 1 { Ok(()) } else { Err(BadHuffman) };
        }
        // A longer code.
        let mut code: u32 = 0;
        let mut found = None;
        for len in 1..=bits.min(30) {
            code = (code << 1) | ((acc >> (64 - len)) & 1) as u32;
            let offset = code.wrapping_sub(table.first[len as usize]);
            if table.count[len as usize] != 0 && offset < u32::from(table.count[len as usize]) {
                found = Some((table.symbols[table.start[len as usize] as usize + offset as usize], len));
                break;
            }
        }
        match found {
            Some((256, _)) => return Err(BadHuffman),
            Some((symbol, len)) => {
                dst.push(symbol as u8);
                acc = if len == 64 { 0 } else { acc << len };
                bits -= len;
            }
            // A byte or more left that starts no code: padding too long,
            // or a code cut short.
            None => return Err(BadHuffman),
        }
    }
}

/// The encoded length of `src` in bytes.
pub fn encoded_len(src: &[u8]) -> usize {
    let bits: usize = src.iter().map(|&b| CODES[b as usize].1 as usize).sum();
    bits.div_ceil(8)
}

/// Encodes `src` onto the end of `dst`, padded with ones.
pub fn encode(src: &[u8], dst: &mut Vec<u8>) {
    let mut acc: u64 = 0;
    let mut bits = 0u32;
    for &b in src {
        let (code, len) = CODES[b as usize];
        acc = (acc << len) | u64::from(code);
        bits += u32::from(len);
        while bits >= 8 {
            bits -= 8;
            dst.push((acc >> bits) as u8);
        }
    }
    if bits > 0 {
        let pad = 8 - bits;
        dst.push(((acc << pad) | ((1 << pad) - 1)) as u8);
    }
}

/// RFC 7541 Appendix B: (code, length in bits) of each symbol 0..=255 and EOS (256).
pub(super) const CODES: [(u32, u8); 257] = [
    (0x1ff8, 13),
    (0x7fffd8, 23),
    (0xfffffe2, 28),
    (0xfffffe3, 28),
    (0xfffffe4, 28),
    (0xfffffe5, 28),
    (0xfffffe6, 28),
    (0xfffffe7, 28),
    (0xfffffe8, 28),
    (0xffffea, 24),
    (0x3ffffffc, 30),
    (0xfffffe9, 28),
    (0xfffffea, 28),
    (0x3ffffffd, 30),
    (0xfffffeb, 28),
    (0xfffffec, 28),
    (0xfffffed, 28),
    (0xfffffee, 28),
    (0xfffffef, 28),
    (0xffffff0, 28),
    (0xffffff1, 28),
    (0xffffff2, 28),
    (0x3ffffffe, 30),
    (0xffffff3, 28),
    (0xffffff4, 28),
    (0xffffff5, 28),
    (0xffffff6, 28),
    (0xffffff7, 28),
    (0xffffff8, 28),
    (0xffffff9, 28),
    (0xffffffa, 28),
    (0xffffffb, 28),
    (0x14, 6),
    (0x3f8, 10),
    (0x3f9, 10),
    (0xffa, 12),
    (0x1ff9, 13),
    (0x15, 6),
    (0xf8, 8),
    (0x7fa, 11),
    (0x3fa, 10),
    (0x3fb, 10),
    (0xf9, 8),
    (0x7fb, 11),
    (0xfa, 8),
    (0x16, 6),
    (0x17, 6),
    (0x18, 6),
    (0x0, 5),
    (0x1, 5),
    (0x2, 5),
    (0x19, 6),
    (0x1a, 6),
    (0x1b, 6),
    (0x1c, 6),
    (0x1d, 6),
    (0x1e, 6),
    (0x1f, 6),
    (0x5c, 7),
    (0xfb, 8),
    (0x7ffc, 15),
    (0x20, 6),
    (0xffb, 12),
    (0x3fc, 10),
    (0x1ffa, 13),
    (0x21, 6),
    (0x5d, 7),
    (0x5e, 7),
    (0x5f, 7),
    (0x60, 7),
    (0x61, 7),
    (0x62, 7),
    (0x63, 7),
    (0x64, 7),
    (0x65, 7),
    (0x66, 7),
    (0x67, 7),
    (0x68, 7),
    (0x69, 7),
    (0x6a, 7),
    (0x6b, 7),
    (0x6c, 7),
    (0x6d, 7),
    (0x6e, 7),
    (0x6f, 7),
    (0x70, 7),
    (0x71, 7),
    (0x72, 7),
    (0xfc, 8),
    (0x73, 7),
    (0xfd, 8),
    (0x1ffb, 13),
    (0x7fff0, 19),
    (0x1ffc, 13),
    (0x3ffc, 14),
    (0x22, 6),
    (0x7ffd, 15),
    (0x3, 5),
    (0x23, 6),
    (0x4, 5),
    (0x24, 6),
    (0x5, 5),
    (0x25, 6),
    (0x26, 6),
    (0x27, 6),
    (0x6, 5),
    (0x74, 7),
    (0x75, 7),
    (0x28, 6),
    (0x29, 6),
    (0x2a, 6),
    (0x7, 5),
    (0x2b, 6),
    (0x76, 7),
    (0x2c, 6),
    (0x8, 5),
    (0x9, 5),
    (0x2d, 6),
    (0x77, 7),
    (0x78, 7),
    (0x79, 7),
    (0x7a, 7),
    (0x7b, 7),
    (0x7ffe, 15),
    (0x7fc, 11),
    (0x3ffd, 14),
    (0x1ffd, 13),
    (0xffffffc, 28),
    (0xfffe6, 20),
    (0x3fffd2, 22),
    (0xfffe7, 20),
    (0xfffe8, 20),
    (0x3fffd3, 22),
    (0x3fffd4, 22),
    (0x3fffd5, 22),
    (0x7fffd9, 23),
    (0x3fffd6, 22),
    (0x7fffda, 23),
    (0x7fffdb, 23),
    (0x7fffdc, 23),
    (0x7fffdd, 23),
    (0x7fffde, 23),
    (0xffffeb, 24),
    (0x7fffdf, 23),
    (0xffffec, 24),
    (0xffffed, 24),
    (0x3fffd7, 22),
    (0x7fffe0, 23),
    (0xffffee, 24),
    (0x7fffe1, 23),
    (0x7fffe2, 23),
    (0x7fffe3, 23),
    (0x7fffe4, 23),
    (0x1fffdc, 21),
    (0x3fffd8, 22),
    (0x7fffe5, 23),
    (0x3fffd9, 22),
    (0x7fffe6, 23),
    (0x7fffe7, 23),
    (0xffffef, 24),
    (0x3fffda, 22),
    (0x1fffdd, 21),
    (0xfffe9, 20),
    (0x3fffdb, 22),
    (0x3fffdc, 22),
    (0x7fffe8, 23),
    (0x7fffe9, 23),
    (0x1fffde, 21),
    (0x7fffea, 23),
    (0x3fffdd, 22),
    (0x3fffde, 22),
    (0xfffff0, 24),
    (0x1fffdf, 21),
    (0x3fffdf, 22),
    (0x7fffeb, 23),
    (0x7fffec, 23),
    (0x1fffe0, 21),
    (0x1fffe1, 21),
    (0x3fffe0, 22),
    (0x1fffe2, 21),
    (0x7fffed, 23),
    (0x3fffe1, 22),
    (0x7fffee, 23),
    (0x7fffef, 23),
    (0xfffea, 20),
    (0x3fffe2, 22),
    (0x3fffe3, 22),
    (0x3fffe4, 22),
    (0x7ffff0, 23),
    (0x3fffe5, 22),
    (0x3fffe6, 22),
    (0x7ffff1, 23),
    (0x3ffffe0, 26),
    (0x3ffffe1, 26),
    (0xfffeb, 20),
    (0x7fff1, 19),
    (0x3fffe7, 22),
    (0x7ffff2, 23),
    (0x3fffe8, 22),
    (0x1ffffec, 25),
    (0x3ffffe2, 26),
    (0x3ffffe3, 26),
    (0x3ffffe4, 26),
    (0x7ffffde, 27),
    (0x7ffffdf, 27),
    (0x3ffffe5, 26),
    (0xfffff1, 24),
    (0x1ffffed, 25),
    (0x7fff2, 19),
    (0x1fffe3, 21),
    (0x3ffffe6, 26),
    (0x7ffffe0, 27),
    (0x7ffffe1, 27),
    (0x3ffffe7, 26),
    (0x7ffffe2, 27),
    (0xfffff2, 24),
    (0x1fffe4, 21),
    (0x1fffe5, 21),
    (0x3ffffe8, 26),
    (0x3ffffe9, 26),
    (0xffffffd, 28),
    (0x7ffffe3, 27),
    (0x7ffffe4, 27),
    (0x7ffffe5, 27),
    (0xfffec, 20),
    (0xfffff3, 24),
    (0xfffed, 20),
    (0x1fffe6, 21),
    (0x3fffe9, 22),
    (0x1fffe7, 21),
    (0x1fffe8, 21),
    (0x7ffff3, 23),
    (0x3fffea, 22),
    (0x3fffeb, 22),
    (0x1ffffee, 25),
    (0x1ffffef, 25),
    (0xfffff4, 24),
    (0xfffff5, 24),
    (0x3ffffea, 26),
    (0x7ffff4, 23),
    (0x3ffffeb, 26),
    (0x7ffffe6, 27),
    (0x3ffffec, 26),
    (0x3ffffed, 26),
    (0x7ffffe7, 27),
    (0x7ffffe8, 27),
    (0x7ffffe9, 27),
    (0x7ffffea, 27),
    (0x7ffffeb, 27),
    (0xffffffe, 28),
    (0x7ffffec, 27),
    (0x7ffffed, 27),
    (0x7ffffee, 27),
    (0x7ffffef, 27),
    (0x7fffff0, 27),
    (0x3ffffee, 26),
    (0x3fffffff, 30),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_examples_decode() {
        // RFC 7541 C.4.1: "www.example.com".
        let enc = [0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff];
        let mut out = Vec::new();
        decode(&enc, &mut out).unwrap();
        assert_eq!(out, b"www.example.com");
        let mut again = Vec::new();
        encode(b"www.example.com", &mut again);
        assert_eq!(again, enc);
        assert_eq!(encoded_len(b"www.example.com"), enc.len());
    }

    #[test]
    fn every_byte_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        let mut enc = Vec::new();
        encode(&all, &mut enc);
        let mut out = Vec::new();
        decode(&enc, &mut out).unwrap();
        assert_eq!(out, all);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_round_trip(data: Vec<u8>) {
            let mut enc = Vec::new();
            encode(&data, &mut enc);
            let mut out = Vec::new();
            proptest::prop_assert!(decode(&enc, &mut out).is_ok());
            proptest::prop_assert_eq!(out, data);
        }

        /// Arbitrary input decodes or is refused, never panics; what decodes
        /// encodes back to the same bits up to the padding.
        #[test]
        fn any_input_is_decoded_or_refused(data: Vec<u8>) {
            let mut out = Vec::new();
            if decode(&data, &mut out).is_ok() {
                let mut again = Vec::new();
                encode(&out, &mut again);
                proptest::prop_assert_eq!(again, data);
            }
        }
    }

    #[test]
    fn bad_padding_and_eos_are_refused() {
        // 'a' (00011, 5 bits) then three zero bits: padding must be ones.
        assert_eq!(decode(&[0b0001_1000], &mut Vec::new()), Err(BadHuffman));
        // A whole byte of ones is padding longer than 7 bits.
        assert_eq!(decode(&[0b0001_1111, 0xff], &mut Vec::new()), Err(BadHuffman));
        // EOS itself (30 ones) is refused.
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xfc], &mut Vec::new()), Err(BadHuffman));
    }
}
