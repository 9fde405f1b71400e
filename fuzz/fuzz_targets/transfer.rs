//! Fuzz target `transfer`: see [`dap_proto_fuzz::transfer`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dap_proto_fuzz::transfer::run(data));
