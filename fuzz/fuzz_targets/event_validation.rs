//! libFuzzer entry point for [`chitty_fuzz::event_validation`]; the checks and their reasons are documented
//! there, so that `cargo test` can replay the corpus through the same code.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chitty_fuzz::event_validation::check(data));
