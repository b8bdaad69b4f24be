#![no_main]

mod common;

use ferrymesh::protocol::dubbo::DUBBO;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::check_stream(&DUBBO, data, true);
});
