//! The checks behind turnd's fuzz targets, as plain functions so that the
//! same code runs under libFuzzer (`cargo fuzz run TARGET`) and, without any
//! fuzzer, as a replay of the corpus and of past crashes (`cargo test` in
//! this directory).
//!
//! - [`parsers::stun_decode`]: the two-layer decoder and every `Request`
//!   accessor (RFC 8489 §5, §14; RFC 8656 §12.4).
//! - [`parsers::channel_data_and_send`]: the Send/Data indication fast path
//!   (RFC 8656 §11) and ChannelData, with round-trip properties.
//! - [`parsers::stream_framer`]: TCP/TLS framing (RFC 8656 §3.1, §12.5)
//!   split at arbitrary points.
//! - [`engine::run`]: the whole sans-IO core on virtual time, with
//!   invariants checked after every step.

pub mod engine;
pub mod ops;
pub mod parsers;
pub mod seeds;
