//! HPACK decoding of attacker-chosen header blocks, in sequence on one
//! decoder (the dynamic table carries over, as on a connection).
//!
//!   cargo +nightly fuzz run h2_hpack fuzz/corpus/h2_hpack
//!
//! The input is split into blocks at each 0xff 0x00 0xff marker; each block
//! is decoded in turn. Decoding must never panic, and a block that decodes
//! must decode to fields whose sizes add up to no more than the table and
//! list limits allow.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ferrymesh::protocol::http::h2::fuzz_blocks(data);
});
