//! The daemon tests, one test crate (linked once): each module spawns the
//! built `turnd` binary on ephemeral loopback ports and talks to it over
//! real UDP, TCP and TLS sockets, with our own clients (`common`,
//! `stream_support`, `hostile_support`), webrtc-rs `turn::client`, coturn's
//! tools and headless Chromium. Run one module with
//! `cargo test --test daemon MODULE::`.

#[path = "../common/mod.rs"]
mod common;
#[path = "../hostile_support/mod.rs"]
mod hostile_support;
#[path = "../stream_support/mod.rs"]
mod stream_support;

mod admin;
mod amplification;
mod audit;
mod bandwidth;
mod binding;
mod browser;
mod check;
mod cli;
mod config_files;
mod coturn_interop;
mod deploy;
mod descriptors;
mod dual_stack;
mod env_overrides;
mod flood;
mod health;
mod ip_layer;
mod kubernetes;
mod listener_ports;
mod logging;
mod malformed;
mod metrics_http;
mod offload;
mod probe;
mod redirect;
mod reload;
mod resource_bounds;
mod rest_policy;
mod rfc5769;
mod rfc8489;
mod sha256_auth;
mod ssrf;
mod streams;
mod tcp_relay;
mod turn_client;
mod usage;
