//! turnd: a STUN/TURN relay server for WebRTC.
//!
//! The crate is split the way the design describes it: [`core`] holds the
//! sans-IO protocol engine (no sockets, no tokio, time and randomness passed
//! in), [`net`] is the thin tokio shell around it, [`config`] the TOML schema,
//! [`metrics`] every Prometheus metric, [`http`] the endpoint serving them
//! and [`log_format`] the escaping of text log lines.

pub mod admin;
pub mod config;
pub mod core;
pub mod http;
pub mod ice;
pub mod log_filter;
pub mod log_format;
pub mod metrics;
pub mod net;
pub mod selftest;
