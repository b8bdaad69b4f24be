#![no_main]

mod common;

use ferrymesh::protocol::toy::TOY;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::check_stream(&TOY, data, true);
});
