//! Fuzz target `stream_framer`: see [`turnd_fuzz::parsers::stream_framer`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| turnd_fuzz::parsers::stream_framer(data));
