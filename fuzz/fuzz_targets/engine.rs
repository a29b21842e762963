//! Fuzz target `engine`: see [`turnd_fuzz::engine::run`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| turnd_fuzz::engine::run(data));
