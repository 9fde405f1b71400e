//! Fuzz target `records`: see [`dap_proto_fuzz::records`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dap_proto_fuzz::records::run(data));
