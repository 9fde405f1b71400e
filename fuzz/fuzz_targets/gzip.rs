//! Fuzz target `gzip`: see [`dap_proto_fuzz::gzip`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dap_proto_fuzz::gzip::run(data));
