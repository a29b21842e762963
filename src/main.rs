//! The `turnd` binary: parses the command line, runs an operator
//! subcommand or sets up logging and the runtime for the server, and maps
//! the outcome to an exit code.

mod cli;
mod probe;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, Layer};
use turnd::config::{Config, Secret, DEFAULT_CONFIG_PATH};
use turnd::net::control::LogReload;

use cli::{commands, CheckArgs, Cli, Command, LogFormat};

/// How long the credentials printed in demo mode stay valid.
const DEMO_CREDENTIAL_TTL: Duration = Duration::from_secs(24 * 3600);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let fallback = cli.config.as_deref();
    if cli.command.is_some() && (cli.check_config || cli.ready_file.is_some()) {
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--check-config and --ready-file are for running the server, not for a subcommand",
            )
            .exit();
    }
    let outcome = match &cli.command {
        None if cli.check_config => commands::check(&CheckArgs { config: None }, fallback),
        None => return run_server(&cli),
        Some(Command::Check(args)) => commands::check(args, fallback),
        Some(Command::Credentials(args)) => commands::credentials(args, fallback),
        Some(Command::HashKey(args)) => commands::hash_key(args, fallback),
        Some(Command::Probe(args)) => match probe::run(args, fallback) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Some(Command::Admin(args)) => cli::admin::run(args, fallback),
        Some(Command::Health(args)) => cli::health::run(args, fallback),
        Some(Command::Completions { shell }) => commands::completions(*shell),
        Some(Command::Man { command, dir }) => commands::man(command.as_deref(), dir.as_deref()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("turnd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the server until it is told to stop.
fn run_server(cli: &Cli) -> ExitCode {
    let (config, config_path, demo_secret) = match load(cli) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("turnd: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let log_reload = match init_logging(cli, &config) {
        Ok(reload) => reload,
        Err(e) => {
            eprintln!("turnd: {e:#}");
            return ExitCode::FAILURE;
        }
    };
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
            // Logging is up (and never hides errors): one line, in the
            // log's format, not a second copy on stderr.
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr. Level: `--log-level`, else RUST_LOG, else `[log] level`
/// (then a reload may change it: the returned setter). Format:
/// `--log-format` (or TURND_LOG_FORMAT), else `[log] format`. No ANSI colours unless
/// stderr is a terminal.
fn init_logging(cli: &Cli, config: &Config) -> anyhow::Result<Option<LogReload>> {
    let overridden = cli
        .log_level
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok());
    let (spec, source) = match (&cli.log_level, std::env::var("RUST_LOG").ok()) {
        (Some(level), _) => (level.clone(), "--log-level"),
        (None, Some(env)) => (env, "RUST_LOG"),
        (None, None) => (config.log.level.clone(), "[log] level"),
    };
    let filter = turnd::log_filter::parse(&spec).map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
    let (filter, handle) = reload::Layer::new(filter);
    // Warnings and errors pass whatever the filter says.
    let filter = filter.or(turnd::log_filter::WARNINGS_ALWAYS);
    let format = cli.log_format.unwrap_or(match config.log.format {
        turnd::config::LogFormat::Text => LogFormat::Text,
        turnd::config::LogFormat::Json => LogFormat::Json,
    });
    let output = match format {
        LogFormat::Text => fmt::layer()
            .fmt_fields(turnd::log_format::EscapedFields::default())
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .boxed(),
        LogFormat::Json => fmt::layer()
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(output.with_filter(filter))
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))?;
    if overridden.is_some() {
        // --log-level and RUST_LOG win over the config, reloaded or not.
        return Ok(None);
    }
    let set: LogReload = Arc::new(move |level: &str| {
        let filter = turnd::log_filter::parse(level)?;
        handle.reload(filter).map_err(|e| e.to_string())
    });
    Ok(Some(set))
}

/// The config to run and the file it came from: the file given, else the
/// default path if it exists, else built-in defaults with a REST secret
/// generated now (demo mode). `TURND_*` overrides apply in every case.
fn load(cli: &Cli) -> anyhow::Result<(Config, Option<PathBuf>, Option<Secret>)> {
    if let Some(path) = &cli.config {
        return Ok((Config::load(path)?, Some(path.clone()), None));
    }
    let default = Path::new(DEFAULT_CONFIG_PATH);
    if default.exists() {
        return Ok((Config::load(default)?, Some(default.to_path_buf()), None));
    }
    let (mut config, _) = Config::defaults_explained(std::env::vars_os())?;
    if !config.rest.secrets.is_empty() {
        // TURND_REST_SECRET_FILES gave the secrets: no demo credentials.
        return Ok((config, None, None));
    }
    let bytes: [u8; 24] = rand::random();
    let secret = Secret::from(hex::encode(bytes));
    config.rest.secrets.push(secret.clone());
    Ok((config, None, Some(secret)))
}
