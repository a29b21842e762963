//! Command line (clap): run the daemon (no subcommand), or one of the
//! operator subcommands: `check`, `credentials`, `hash-key`, `probe`,
//! `health`, `completions`, `man`. The subcommands' work is in [`commands`] and
//! [`crate::probe`]; this file only declares the interface, so that the
//! completions and the man page are generated from the same definitions.

pub mod admin;
pub mod commands;
pub mod health;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// turnd: a STUN/TURN relay server for WebRTC.
///
/// Answers STUN Binding requests and allocates relayed candidates (TURN over
/// UDP, TCP and TLS, RFC 8656) for clients holding long-term credentials:
/// static users or TURN REST API credentials minted from a shared secret.
/// Peers in loopback, private, link-local and other special ranges are
/// refused unless the config allows them. Metrics for Prometheus are served
/// on /metrics.
///
/// Without a subcommand turnd runs the server. With no --config and no
/// /etc/turnd/turnd.toml, it runs on built-in defaults with a REST secret
/// generated at start, and prints an iceServers snippet with credentials
/// valid for 24 hours.
///
/// Per-node values may come from TURND_* environment variables, each
/// replacing one config key (TURND_RELAY_EXTERNAL, TURND_REST_SECRET_FILES,
/// TURND_LISTEN_UDP, TURND_HTTP_LISTEN, …; see the README); an unknown
/// TURND_ variable is an error. `turnd check` shows each value's source.
#[derive(Debug, Parser)]
#[command(
    name = "turnd",
    version,
    propagate_version = true,
    about,
    long_about,
    after_help = EXAMPLES
)]
pub struct Cli {
    /// The TOML config file (reference: config/turnd.toml).
    #[arg(short, long, value_name = "PATH", env = "TURND_CONFIG")]
    pub config: Option<PathBuf>,

    /// Validate the config file and exit: 0 when valid, 1 with the error
    /// (key, line and column) when not. Same as `turnd check`.
    #[arg(long)]
    pub check_config: bool,

    /// Write the bound addresses as JSON to this file once every listener is
    /// up (lets scripts and tests use port 0).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,

    /// Log filter, overriding RUST_LOG and `[log] level` (e.g. "debug",
    /// "info,turnd=trace").
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,

    /// Log line format on stderr: human-readable text (the default), or one
    /// JSON object per line for a log collector.
    #[arg(long, value_name = "FORMAT", env = "TURND_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

const EXAMPLES: &str = "\
Examples:
  turnd                                   run on defaults (demo credentials printed)
  turnd --config /etc/turnd/turnd.toml    run with a config file
  turnd -c /etc/turnd/turnd.toml --log-format json
                                          run, logging JSON lines to stderr
  turnd check -c /etc/turnd/turnd.toml    validate a config file and exit
  turnd credentials --config /etc/turnd/turnd.toml --user alice --host turn.example.org
                                          mint TURN REST credentials (iceServers JSON)
  turnd probe --server turn.example.org:3478 --config /etc/turnd/turnd.toml
                                          check that the deployed server relays

Run `turnd help <COMMAND>` for a command's options and examples.";

/// The format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `2024-01-01T00:00:00Z  INFO turnd: message key=value`
    Text,
    /// `{"timestamp":…,"level":"INFO","target":"turnd",…,"message":…}`
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a config file and exit (what systemd's ExecStartPre runs).
    #[command(after_help = CHECK_EXAMPLES)]
    Check(CheckArgs),
    /// Mint TURN REST API credentials and print the iceServers JSON.
    #[command(after_help = CREDENTIALS_EXAMPLES, long_about = CREDENTIALS_ABOUT)]
    Credentials(CredentialsArgs),
    /// Compute the `key` of a [[users]] entry, so no plain password sits in
    /// the config file.
    #[command(after_help = HASH_KEY_EXAMPLES, long_about = HASH_KEY_ABOUT)]
    HashKey(HashKeyArgs),
    /// Check that a server relays: Binding, Allocate, CreatePermission and a
    /// round trip between two allocations.
    #[command(after_help = PROBE_EXAMPLES, long_about = PROBE_ABOUT)]
    Probe(ProbeArgs),
    /// Operate a running server through its admin API ([admin] listen):
    /// list allocations, end them, revoke users.
    Admin(admin::AdminArgs),
    /// Ask a running turnd's /healthz (or /readyz) and exit 0 only on 200:
    /// the container health check (the image has no shell or curl).
    #[command(after_help = HEALTH_EXAMPLES)]
    Health(HealthArgs),
    /// Print a shell completion script to stdout.
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout, or write one page per command.
    #[command(after_help = MAN_EXAMPLES)]
    Man {
        /// The page of this subcommand (turnd-COMMAND(1)) instead of turnd(1).
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
        /// Write the page and those of its subcommands (turnd.1,
        /// turnd-check.1, …) into this directory instead of printing it.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The config file [default: /etc/turnd/turnd.toml].
    #[arg(short, long, value_name = "PATH", env = "TURND_CONFIG")]
    pub config: Option<PathBuf>,
}

const CHECK_EXAMPLES: &str = "\
Examples:
  turnd check --config /etc/turnd/turnd.toml
  turnd check -c ./turnd.toml && sudo systemctl reload turnd

Exit status: 0 and \"PATH: ok\" when the file is valid (certificates and
secret files included); 1 with the file, key, line and column when not.";

/// Where a REST shared secret comes from.
#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct SecretSource {
    /// The REST shared secret ([rest] secrets, coturn's static-auth-secret).
    /// Visible to other local users in `ps`: prefer --secret-file or --config.
    #[arg(long, value_name = "SECRET")]
    pub secret: Option<String>,
    /// A file holding the REST shared secret (surrounding whitespace is
    /// ignored).
    #[arg(long, value_name = "PATH")]
    pub secret_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CredentialsArgs {
    #[command(flatten)]
    pub secret: SecretSource,

    /// Read the secret (the first of [rest] secrets / secret_files) and the
    /// listener ports from this config file. Used when neither --secret nor
    /// --secret-file is given [default: /etc/turnd/turnd.toml if it exists].
    #[arg(short, long, value_name = "PATH", env = "TURND_CONFIG")]
    pub config: Option<PathBuf>,

    /// The user the credential is for (after the colon in the username).
    #[arg(short, long, value_name = "NAME")]
    pub user: String,

    /// How long the credential stays valid: 30s, 90m, 24h, 7d, or seconds.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub ttl: Duration,

    /// A URL to list as is (repeatable), e.g. turn:turn.example.org:3478.
    #[arg(long = "url", value_name = "URL")]
    pub urls: Vec<String>,

    /// Build stun:, turn: and turns: URLs for this host name or IP (for
    /// turns:, the name the TLS certificate is for) [default:
    /// relay.external of --config].
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,

    /// Port for the stun: and turn:?transport=udp URLs [default: the
    /// config's [listen] udp port, or 3478].
    #[arg(long, value_name = "PORT", value_parser = port)]
    pub udp_port: Option<u16>,

    /// Port for the turn:?transport=tcp URL [default: the config's [listen]
    /// tcp port, or 3478].
    #[arg(long, value_name = "PORT", value_parser = port)]
    pub tcp_port: Option<u16>,

    /// Port for the turns: URL [default: the config's [listen] tls port;
    /// none without a config].
    #[arg(long, value_name = "PORT", value_parser = port)]
    pub tls_port: Option<u16>,

    /// Print the JSON on one line instead of indented.
    #[arg(long)]
    pub compact: bool,

    /// What to print: the iceServers JSON, or shell assignments
    /// (TURN_USERNAME, TURN_CREDENTIAL, TURN_EXPIRES, TURN_URLS) for
    /// `eval` in scripts and for backends that want the fields alone (no
    /// URL needed then).
    #[arg(long, value_name = "FORMAT", default_value = "json")]
    pub format: CredentialsFormat,
}

/// The output of `turnd credentials`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CredentialsFormat {
    /// `{"iceServers": [{"urls": […], "username": …, "credential": …}]}`
    Json,
    /// `TURN_USERNAME='…'` lines, quoted for sh.
    Shell,
}

/// A port for a URL: 1-65535.
fn port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) => Err("port 0 cannot be in a URL: give 1-65535".to_owned()),
        Ok(p) => Ok(p),
        Err(_) => Err(format!("{s:?} is not a port number (1-65535)")),
    }
}

const CREDENTIALS_ABOUT: &str = "\
Mint TURN REST API credentials and print the iceServers JSON.

The username is `EXPIRY:USER` (EXPIRY in Unix seconds, now + --ttl) and the
credential is base64(HMAC-SHA1(secret, username)), as coturn's
use-auth-secret and the TURN REST API draft define them: credentials minted
here work with coturn, and coturn's work with turnd. Only the JSON goes to
stdout, so it can be piped (e.g. to jq) or served by a web backend.";

const CREDENTIALS_EXAMPLES: &str = "\
Examples:
  turnd credentials --config /etc/turnd/turnd.toml --user alice --host turn.example.org
  turnd credentials --secret-file /etc/turnd/rest.secret --user alice --ttl 1h \\
      --host turn.example.org --udp-port 3478 --tcp-port 3478 --tls-port 5349
  turnd credentials --secret-file rest.secret --user bob --url turn:203.0.113.7:3478
  turnd credentials -c /etc/turnd/turnd.toml -u alice --compact | jq -r '.iceServers[0].username'
  eval \"$(turnd credentials --secret-file rest.secret -u alice --format shell)\" \\
      && echo \"$TURN_USERNAME\"

Output:
  {\"iceServers\": [{\"urls\": [\"stun:turn.example.org:3478\",
      \"turn:turn.example.org:3478?transport=udp\", …],
    \"username\": \"1700086400:alice\", \"credential\": \"…base64…\"}]}";

#[derive(Debug, Args)]
pub struct HashKeyArgs {
    /// The user's name ([[users]] name).
    #[arg(short, long, value_name = "NAME")]
    pub user: String,

    /// The realm the key is for: it must equal the config's `realm`
    /// [default: `realm` of --config].
    #[arg(short, long, value_name = "REALM")]
    pub realm: Option<String>,

    /// Read the realm from this config file when --realm is not given.
    #[arg(short, long, value_name = "PATH", env = "TURND_CONFIG")]
    pub config: Option<PathBuf>,

    /// Read the password from this file (surrounding whitespace is
    /// trimmed, as turnd does for a [[users]] password_file).
    #[arg(long, value_name = "PATH", conflicts_with = "password")]
    pub password_file: Option<PathBuf>,

    /// The password itself. RISK: other local users can read it in `ps` and
    /// it lands in your shell history; prefer stdin or --password-file.
    #[arg(long, value_name = "PASSWORD")]
    pub password: Option<String>,

    /// Print a whole [[users]] table instead of the bare key.
    #[arg(long)]
    pub toml: bool,
}

const HASH_KEY_ABOUT: &str = "\
Compute the `key` of a [[users]] entry, so no plain password sits in the
config file.

The key is MD5(user:realm:password) in hex (RFC 8489 §9.2.2; the same as
coturn's turnadmin -k). It is only valid for that realm: changing `realm`
invalidates every key. The password is read from stdin (without echo on a
terminal) unless --password-file or --password is given.";

const HASH_KEY_EXAMPLES: &str = "\
Examples:
  turnd hash-key --user alice --realm turn.example.org        (asks for the password)
  printf '%s' \"$PASSWORD\" | turnd hash-key -u alice -c /etc/turnd/turnd.toml
  turnd hash-key -u alice -r turn.example.org --password-file alice.pw --toml

Then in the config:
  [[users]]
  name = \"alice\"
  key = \"<the 32 hex digits printed>\"";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProbeTransport {
    /// TURN over UDP (RFC 8656).
    Udp,
    /// TURN over TCP (RFC 8656 §3.1; the relay is still UDP).
    Tcp,
    /// TURN over TLS (`turns:`, RFC 7065; port 5349 by default): the
    /// certificate is checked against --ca (or the system's CAs) and --sni.
    Tls,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The server: HOST, HOST:PORT or [IPV6]:PORT (port 3478 by default,
    /// 5349 with -t tls).
    #[arg(short, long, value_name = "HOST:PORT")]
    pub server: String,

    /// How to reach the server.
    #[arg(short, long, value_name = "TRANSPORT", default_value = "udp")]
    pub transport: ProbeTransport,

    /// With -t tls: trust the CA certificates in this PEM file instead of
    /// the system's (/etc/ssl/certs/ca-certificates.crt), e.g. for a
    /// self-signed certificate or a private CA.
    #[arg(long, value_name = "PATH")]
    pub ca: Option<PathBuf>,

    /// With -t tls: the name sent in SNI and checked in the certificate
    /// [default: the host of --server].
    #[arg(long, value_name = "NAME")]
    pub sni: Option<String>,

    /// Username: a static [[users]] name with --password/--password-file,
    /// or the USER part of minted REST credentials [default with a secret:
    /// turnd-probe].
    #[arg(short, long, value_name = "NAME")]
    pub user: Option<String>,

    /// The password of a static user. Visible to other local users in
    /// `ps`: prefer --password-file.
    #[arg(long, value_name = "PASSWORD", group = "auth")]
    pub password: Option<String>,

    /// A file holding the password of a static user.
    #[arg(long, value_name = "PATH", group = "auth")]
    pub password_file: Option<PathBuf>,

    /// Mint REST credentials from this shared secret. Visible in `ps`:
    /// prefer --secret-file or --config.
    #[arg(long, value_name = "SECRET", group = "auth")]
    pub secret: Option<String>,

    /// Mint REST credentials from the secret in this file.
    #[arg(long, value_name = "PATH", group = "auth")]
    pub secret_file: Option<PathBuf>,

    /// Mint REST credentials from the first REST secret of this config
    /// file (used when no other credential is given).
    #[arg(short, long, value_name = "PATH", env = "TURND_CONFIG")]
    pub config: Option<PathBuf>,

    /// Fail unless the server's REALM is this one.
    #[arg(short, long, value_name = "REALM")]
    pub realm: Option<String>,

    /// The longest wait for each step: 500ms, 3s, 1m.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

const PROBE_ABOUT: &str = "\
Check that a server relays: Binding, Allocate, CreatePermission and a round
trip between two allocations.

The probe opens two client sockets A and B, asks the server for the mapped
address (Binding), allocates a relay for each (Allocate, answering the 401
challenge with long-term credentials), gives each a permission for the
other's relayed address (CreatePermission), then sends a Send indication
from A to B's relayed address and a ChannelData (after ChannelBind) back
from B to A's: the data leaves and re-enters the server through its relay
ports, as between two WebRTC clients behind symmetric NATs. turnd always
allows its own relay addresses as peers, so no [peers] allow rule is needed.
Both allocations are released at the end.

Each step is printed with its latency. Exit status: 0 only when the round
trip came back; 1 with the failing step and the likely cause otherwise
(wrong password, closed port, quota, blocked relay ports…).";

const PROBE_EXAMPLES: &str = "\
Examples:
  turnd probe --server turn.example.org --config /etc/turnd/turnd.toml
  turnd probe --server 203.0.113.7:3478 --secret-file /etc/turnd/rest.secret
  turnd probe -s turn.example.org:3478 -t tcp -u alice --password-file alice.pw
  turnd probe -s turn.example.org:5349 -t tls -c /etc/turnd/turnd.toml
  turnd probe -s 127.0.0.1:5349 -t tls --sni turn.example.org --ca ca.pem -c turnd.toml
  turnd probe -s 127.0.0.1:3478 -u alice --password secret --realm turn.example.org --timeout 5s
  turnd probe -s turn.example.org -c /etc/turnd/turnd.toml --json | jq .ok";

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The HTTP endpoint as IP:PORT [default: [http] listen of the config,
    /// 0.0.0.0 asked on 127.0.0.1].
    #[arg(short, long, value_name = "IP:PORT")]
    pub address: Option<std::net::SocketAddr>,

    /// Read [http] listen from this config file [default:
    /// /etc/turnd/turnd.toml if it exists]. TURND_HTTP_LISTEN applies.
    #[arg(short, long, value_name = "PATH", env = "TURND_CONFIG")]
    pub config: Option<PathBuf>,

    /// Ask /readyz (ready for new allocations, not draining) instead of
    /// /healthz (alive).
    #[arg(long)]
    pub ready: bool,

    /// The longest wait to connect and for the answer: 500ms, 2s.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,
}

const HEALTH_EXAMPLES: &str = "\
Examples:
  turnd health                                  /healthz of /etc/turnd/turnd.toml's [http] listen
  turnd health --address 127.0.0.1:9641 --ready
  HEALTHCHECK CMD [\"/usr/bin/turnd\", \"health\"]      (the OCI image's health check)

Exit status: 0 and \"URL: 200 ok\" when the endpoint answers 200; 1 with
the status or the connection error otherwise.";

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  turnd completions bash > /etc/bash_completion.d/turnd
  turnd completions zsh > \"${fpath[1]}/_turnd\"
  turnd completions fish > ~/.config/fish/completions/turnd.fish";

const MAN_EXAMPLES: &str = "\
Examples:
  turnd man | man -l -
  turnd man probe | man -l -
  turnd man > /usr/share/man/man1/turnd.1
  turnd man --dir /usr/share/man/man1      (turnd.1, turnd-probe.1, …)";

/// Parses `500ms`, `30s`, `90m`, `24h`, `7d`, or plain seconds; never zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: use e.g. 500ms, 30s, 90m, 24h, 7d"))?;
    let secs = |mult: u64| {
        n.checked_mul(mult)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{s:?} is too long"))
    };
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => secs(1)?,
        "m" | "min" => secs(60)?,
        "h" => secs(3600)?,
        "d" => secs(86_400)?,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?}: use ms, s, m, h or d"
            ))
        }
    };
    if d.is_zero() {
        return Err("the duration must be more than 0".to_owned());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("3600"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn daemon_flags_still_parse() {
        let cli = Cli::try_parse_from(["turnd", "--check-config", "--config", "x.toml"]).unwrap();
        assert!(cli.check_config && cli.command.is_none());
        let cli = Cli::try_parse_from(["turnd", "-c", "x.toml", "--log-format", "json"]).unwrap();
        assert_eq!(cli.log_format, Some(LogFormat::Json));
    }

    #[test]
    fn probe_takes_one_credential() {
        let err = Cli::try_parse_from([
            "turnd",
            "probe",
            "-s",
            "127.0.0.1",
            "--password",
            "p",
            "--secret",
            "s",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }
}
