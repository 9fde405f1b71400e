//! Fuzz target `parsers`: see [`dap_proto_fuzz::parsers`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dap_proto_fuzz::parsers::run(data));
