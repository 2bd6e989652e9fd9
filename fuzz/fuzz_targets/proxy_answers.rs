#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| actix_tether::fuzz::proxy_answers(data));
