//! Fuzz target `wire`: see [`dap_proto_fuzz::wire`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dap_proto_fuzz::wire::run(data));
