//! The engine's scenarios on virtual time, one test crate: requests built
//! by the harness in `engine`, fed to `turnd::core::Server` without sockets
//! or clocks, with exact responses, error codes and commands checked. Run
//! one module with `cargo test --test core MODULE::`.

mod engine;

mod allocate;
mod bandwidth;
mod commands;
mod conformance;
mod dual_stack;
mod relay;
mod tcp_relay;
