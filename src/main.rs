//! The `turnd` binary: parses the command line, sets up logging and the
//! runtime, and maps the outcome to an exit code.

mod cli;

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
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
        // The certificate is part of the config: the unit's ExecStartPre
        // check must fail on a bad one, not the start after it.
        if let (Some(tls), false) = (&config.tls, config.listen.tls.is_empty()) {
            if let Err(e) = turnd::net::tls::load(tls) {
                eprintln!("turnd: {}: {e:#}", path.display());
                return ExitCode::FAILURE;
            }
        }
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
    // The filter sits in a reload layer so SIGHUP can change `[log] level`
    // (unless --log-level or RUST_LOG pinned it).
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr),
        )
        .init();
    let pinned = cli.log_level.is_some() || std::env::var_os("RUST_LOG").is_some();
    let log_reload: Option<turnd::net::control::LogReload> = (!pinned).then(|| {
        std::sync::Arc::new(move |level: &str| {
            let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
            handle.reload(filter).map_err(|e| e.to_string())
        }) as turnd::net::control::LogReload
    });
    let config_path = demo_secret.is_none().then(|| {
        cli.config
            .clone()
            .unwrap_or_else(|| DEFAULT_CONFIG_PATH.into())
    });
    let opts = turnd::net::RunOptions {
        ready_file: cli.ready_file.clone(),
        demo_secret,
        demo_ttl: DEMO_CREDENTIAL_TTL,
        config_path,
        log_reload,
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
