#![no_main]

mod common;

use ferrymesh::protocol::tars::TARS;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::check_stream(&TARS, data, false);
});
