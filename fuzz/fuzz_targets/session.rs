//! Fuzz target `session`: see [`dap_proto_fuzz::session`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dap_proto_fuzz::session::run(data));
