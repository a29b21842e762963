//! Command line (clap): run the daemon, or validate a config and exit.

use std::path::PathBuf;

use clap::Parser;

/// turnd: a STUN/TURN relay server for WebRTC.
///
/// Answers STUN Binding requests and allocates relayed candidates (TURN over
/// UDP, RFC 8656) for clients holding long-term credentials: static users or
/// TURN REST API credentials minted from a shared secret. Peers in loopback,
/// private, link-local and other special ranges are refused unless the config
/// allows them. Metrics for Prometheus are served on /metrics.
///
/// With no --config and no /etc/turnd/turnd.toml, turnd runs on built-in
/// defaults with a REST secret generated at start, and prints an iceServers
/// snippet with credentials valid for 24 hours.
#[derive(Debug, Parser)]
#[command(name = "turnd", version, about, long_about, after_help = EXAMPLES)]
pub struct Cli {
    /// The TOML config file (reference: config/turnd.toml).
    #[arg(short, long, value_name = "PATH", env = "TURND_CONFIG")]
    pub config: Option<PathBuf>,

    /// Validate the config file and exit: 0 when valid, 1 with the error
    /// (key, line and column) when not.
    #[arg(long)]
    pub check_config: bool,

    /// Write the bound addresses as JSON to this file once every listener is
    /// up (lets scripts and tests use port 0).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,

    /// Log filter, overriding `[log] level` and RUST_LOG (e.g. "debug",
    /// "turnd=trace").
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
}

const EXAMPLES: &str = "\
Examples:
  turnd                                   run on defaults (demo credentials printed)
  turnd --config /etc/turnd/turnd.toml    run with a config file
  turnd --check-config -c /etc/turnd/turnd.toml
                                          validate a config file and exit";
