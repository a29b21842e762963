//! Fuzz target `channel_data_and_send`: see [`turnd_fuzz::parsers::channel_data_and_send`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| turnd_fuzz::parsers::channel_data_and_send(data));
