#![no_main]

mod common;

use ferrymesh::protocol::bolt::BOLT_V1;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::check_stream(&BOLT_V1, data, true);
});
