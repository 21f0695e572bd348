//! libFuzzer target: `herald_server::fuzzing::revoke_body` (see that module for what it checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald_server::fuzzing::revoke_body(data));
