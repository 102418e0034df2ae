#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| oxinetd_fuzz::tcpmux(data));
