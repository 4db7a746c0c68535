//! libFuzzer entry point for [`chitty_fuzz::hub_replicas`]; the checks and their reasons are documented
//! there, so that `cargo test` can replay the corpus through the same code.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chitty_fuzz::hub_replicas::check(data));
