//! The `turnd` binary: parses the command line, sets up logging and the
//! runtime, and maps the outcome to an exit code.

mod cli;

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use turnd::config::{Config, Secret, DEFAULT_CONFIG_PATH};

/// How long the credentials printed in demo mode stay valid.
const DEMO_CREDENTIAL_TTL: Duration = Duration::from_secs(24 * 3600);

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let (config, demo_secret) = match load(&cli) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("turnd: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if cli.check_config {
        let path = cli
            .config
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_CONFIG_PATH));
        println!("{}: ok", path.display());
        return ExitCode::SUCCESS;
    }
    let filter = cli
        .log_level
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| config.log.level.clone());
    let filter = match EnvFilter::try_new(&filter) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("turnd: invalid log filter {filter:?}: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let opts = turnd::net::RunOptions {
        ready_file: cli.ready_file.clone(),
        demo_secret,
        demo_ttl: DEMO_CREDENTIAL_TTL,
    };
    match turnd::net::run(config, opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("turnd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The config to run: the file given, else the default path if it exists,
/// else built-in defaults with a REST secret generated now (demo mode).
fn load(cli: &cli::Cli) -> anyhow::Result<(Config, Option<Secret>)> {
    if let Some(path) = &cli.config {
        return Ok((Config::load(path)?, None));
    }
    let default = Path::new(DEFAULT_CONFIG_PATH);
    if default.exists() || cli.check_config {
        return Ok((Config::load(default)?, None));
    }
    let mut config = Config::default();
    let bytes: [u8; 24] = rand::random();
    let secret = Secret::from(hex::encode(bytes));
    config.rest.secrets.push(secret.clone());
    Ok((config, Some(secret)))
}
