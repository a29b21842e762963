//! Load generator for turnd (and any TURN server, coturn included), the
//! load side of `bench/compare.sh`. Loopback only; every phase is bounded in
//! count and time. Prints one JSON object on stdout; progress on stderr.
//!
//! Modes: `relay` (allocations with channels or Send/Data indications to
//! echo peers run here: delivered packets/s, loss, round-trip percentiles,
//! server CPU per relayed packet), `allocate` (authenticated allocations/s),
//! `binding` (Binding responses/s) and `idle` (hold N allocations so the
//! server's RSS per allocation can be read).
//!
//! `cargo run --release --example loadgen -- --help`

// The crate's clippy.toml forbids reading clocks outside net::clock to keep
// the sans-IO core honest; a load generator is all I/O and timing.
#![allow(clippy::disallowed_methods)]

#[path = "loadgen/control.rs"]
mod control;
#[path = "loadgen/hist.rs"]
mod hist;
#[path = "loadgen/procfs.rs"]
mod procfs;
#[path = "loadgen/proto.rs"]
mod proto;
#[path = "loadgen/relay.rs"]
mod relay;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Load generator for TURN servers: relay throughput and latency,
/// allocation rate, Binding rate, memory per idle allocation.
///
/// Every socket is on loopback (clients on 127.10.0.0/16, echo peers on
/// 127.0.0.1) and the server must be on loopback too. With
/// --server-pid, the server's CPU time (utime+stime from /proc/PID/stat) over
/// the measured window is reported per relayed packet, allocation or
/// Binding response. Output: one JSON object on stdout.
#[derive(Debug, Parser)]
#[command(name = "loadgen", after_help = EXAMPLES)]
struct Cli {
    /// The TURN server (UDP), on loopback.
    #[arg(long, global = true, default_value = "127.0.0.1:3478")]
    server: SocketAddr,
    /// Long-term credential user name.
    #[arg(long, global = true, default_value = "alice")]
    user: String,
    /// Long-term credential password.
    #[arg(long, global = true, default_value = "secret")]
    password: String,
    /// PID of the server process, to read its CPU time and RSS from /proc.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// How long a request waits for its response, in milliseconds.
    #[arg(long, global = true, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(10..=30_000))]
    timeout_ms: u64,
    /// Runtime threads of the load generator (1: a single-threaded runtime;
    /// the paced sender and echo peers have threads of their own).
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    threads: u64,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Relay timestamped packets through N allocations to local echo peers.
    Relay(RelayArgs),
    /// Authenticated allocations per second (401 round trip, signed
    /// Allocate, Refresh 0), each on a fresh socket.
    Allocate(AllocateArgs),
    /// Binding requests per second, `window` in flight per socket.
    Binding(BindingArgs),
    /// Open N allocations, keep them refreshed for --hold seconds, free them.
    Idle(IdleArgs),
}

#[derive(Debug, Args)]
struct RelayArgs {
    /// Allocations (each its own client socket, so its own 5-tuple).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=20_000))]
    allocations: u64,
    /// Aggregate offered load in packets/s, paced evenly across allocations.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=5_000_000), conflicts_with = "saturate")]
    rate: u64,
    /// Closed loop instead of a fixed rate: each allocation keeps --window
    /// packets in flight and sends one more per echo.
    #[arg(long)]
    saturate: bool,
    /// Packets in flight per allocation with --saturate.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1024))]
    window: u64,
    /// Measured seconds (after --warmup).
    #[arg(long, default_value = "10", value_parser = seconds)]
    duration: Duration,
    /// Seconds of traffic before measuring.
    #[arg(long, default_value = "1", value_parser = seconds_or_zero)]
    warmup: Duration,
    /// Seconds to wait for the last echoes after sending stops.
    #[arg(long, default_value = "0.3", value_parser = seconds_or_zero)]
    drain: Duration,
    /// Payload bytes per packet (at least 20: sequence, timestamp, index).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(20..=1400))]
    size: u64,
    /// Send indications and Data indications instead of ChannelData.
    #[arg(long)]
    no_channels: bool,
    /// UDP echo peer sockets (one thread each); allocations are spread
    /// over them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=16))]
    echo_sockets: u64,
    /// Drive the bare forwarder (examples/forwarder.rs) at this address
    /// instead of a TURN server: no TURN framing at all.
    #[arg(long, value_name = "ADDR")]
    raw_forwarder: Option<SocketAddr>,
    /// No server at all: send straight to the echo peers (the no-relay
    /// baseline for whole-machine CPU per packet).
    #[arg(long, conflicts_with = "raw_forwarder")]
    direct: bool,
    /// Allocations set up concurrently.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    parallel: u64,
}

#[derive(Debug, Args)]
struct AllocateArgs {
    /// Allocations in progress at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    parallel: u64,
    /// Seconds to run.
    #[arg(long, default_value = "5", value_parser = seconds)]
    duration: Duration,
    /// Stop after this many allocations.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    count: u64,
    /// Keep the allocations (no Refresh 0) until the end; then --count is
    /// capped at 15000 (one socket each).
    #[arg(long)]
    keep: bool,
}

#[derive(Debug, Args)]
struct BindingArgs {
    /// Client sockets.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1024))]
    parallel: u64,
    /// Requests in flight per socket.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    window: u64,
    /// Seconds to run.
    #[arg(long, default_value = "5", value_parser = seconds)]
    duration: Duration,
}

#[derive(Debug, Args)]
struct IdleArgs {
    /// Allocations to open (each its own socket).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=15_000))]
    allocations: u64,
    /// Allocations opened concurrently.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    parallel: u64,
    /// Seconds to hold them once all are open.
    #[arg(long, default_value = "5", value_parser = seconds_or_zero)]
    hold: Duration,
    /// Give up opening after this many seconds.
    #[arg(long, default_value = "300", value_parser = seconds)]
    open_timeout: Duration,
    /// Written (JSON) once every allocation is open, before the hold.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,
    /// Leave the allocations to expire instead of freeing them.
    #[arg(long)]
    keep: bool,
}

const EXAMPLES: &str = "\
Examples (turnd or coturn on 127.0.0.1:3478, user alice:secret, loopback peers allowed):
  loadgen relay --allocations 32 --rate 20000 --duration 10 --server-pid $(pidof turnd)
  loadgen relay --saturate --window 4 --duration 5
  loadgen relay --no-channels --rate 20000
  loadgen relay --raw-forwarder 127.0.0.1:3490 --rate 20000    (examples/forwarder.rs)
  loadgen allocate --parallel 16 --duration 5
  loadgen binding --parallel 4 --window 16 --duration 5
  loadgen idle --allocations 10000 --hold 5 --ready-file /tmp/ready.json";

fn parse_seconds(s: &str, zero_ok: bool) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.0..=3600.0).contains(&v) || (v == 0.0 && !zero_ok) {
        return Err(format!(
            "{v} s is out of range ({}3600 s)",
            if zero_ok { "0-" } else { "above 0, up to " }
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

fn seconds(s: &str) -> Result<Duration, String> {
    parse_seconds(s, false)
}

fn seconds_or_zero(s: &str) -> Result<Duration, String> {
    parse_seconds(s, true)
}

/// What every mode needs.
pub struct Common {
    pub server: SocketAddr,
    pub creds: proto::Creds,
    pub server_pid: Option<u32>,
    pub timeout: Duration,
}

/// Failures counted by kind ("allocate_timeout", "refresh_437", ...).
#[derive(Default, Debug)]
pub struct ErrorCounts(BTreeMap<String, u64>);

impl ErrorCounts {
    pub fn add(&mut self, kind: String) {
        *self.0.entry(kind).or_default() += 1;
    }
    pub fn merge(&mut self, other: &ErrorCounts) {
        for (k, v) in &other.0 {
            *self.0.entry(k.clone()).or_default() += v;
        }
    }
    pub fn total(&self) -> usize {
        self.0.values().sum::<u64>() as usize
    }
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!(self.0)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    for (what, addr) in [
        ("--server", Some(cli.server)),
        ("--raw-forwarder", raw_target(&cli)),
    ] {
        if let Some(addr) = addr.filter(|a| !a.ip().is_loopback()) {
            eprintln!("loadgen: {what} {addr} is not on loopback; this tool only loads 127.0.0.0/8 and ::1");
            return ExitCode::FAILURE;
        }
    }
    let runtime = if cli.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads as usize)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let common = Arc::new(Common {
        server: cli.server,
        creds: proto::Creds {
            user: cli.user.clone(),
            password: cli.password.clone(),
        },
        server_pid: cli.server_pid,
        timeout: Duration::from_millis(cli.timeout_ms),
    });
    let result = runtime.block_on(async move {
        match cli.mode {
            Mode::Relay(a) => {
                let o = relay::RelayOpts {
                    allocations: a.allocations as usize,
                    rate: (!a.saturate).then_some(a.rate),
                    window: a.window as usize,
                    duration: a.duration,
                    warmup: a.warmup,
                    drain: a.drain,
                    size: a.size as usize,
                    channels: !a.no_channels,
                    echo_sockets: a.echo_sockets as usize,
                    raw_forwarder: a.raw_forwarder,
                    direct: a.direct,
                    parallel: a.parallel as usize,
                };
                relay::run(common, o).await
            }
            Mode::Allocate(a) => {
                let o = control::AllocateOpts {
                    parallel: a.parallel as usize,
                    duration: a.duration,
                    count: if a.keep { a.count.min(15_000) } else { a.count },
                    keep: a.keep,
                };
                control::allocate(common, o).await
            }
            Mode::Binding(a) => {
                let o = control::BindingOpts {
                    parallel: a.parallel as usize,
                    window: a.window as usize,
                    duration: a.duration,
                };
                control::binding(common, o).await
            }
            Mode::Idle(a) => {
                let o = control::IdleOpts {
                    allocations: a.allocations as usize,
                    parallel: a.parallel as usize,
                    hold: a.hold,
                    open_timeout: a.open_timeout,
                    ready_file: a.ready_file,
                    keep: a.keep,
                };
                control::idle(common, o).await
            }
        }
    });
    match result {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn raw_target(cli: &Cli) -> Option<SocketAddr> {
    match &cli.mode {
        Mode::Relay(a) => a.raw_forwarder,
        _ => None,
    }
}
