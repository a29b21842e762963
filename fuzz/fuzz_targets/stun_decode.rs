//! Fuzz target `stun_decode`: see [`turnd_fuzz::parsers::stun_decode`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| turnd_fuzz::parsers::stun_decode(data));
