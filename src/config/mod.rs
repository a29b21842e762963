//! The configuration file: one strict TOML file (unknown keys are errors
//! with line and column), its schema, every default as a named constant,
//! and validation. `config/turnd.toml` documents every key; a test parses it.
//!
//! Values are checked while they are deserialized where one key is enough
//! (the error then carries toml's line, column and snippet), and by
//! [`Config::validate`] where several keys are involved.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

mod auth;
mod drain;
pub mod engine;
mod env;
mod rate_limit;
mod redirect;
mod relay;
mod rest;
mod stream;
#[cfg(test)]
mod tests;
mod types;
mod warnings;

pub use auth::{Auth, PasswordAlgorithm};
pub use drain::{Drain, DEFAULT_DRAIN_TIMEOUT_S};
pub use env::{
    Override as EnvOverride, Provenance, Source, CLI_VARIABLES, OVERRIDES as ENV_OVERRIDES,
};
pub use rate_limit::{RateLimit, DEFAULT_UNAUTHENTICATED_BURST, DEFAULT_UNAUTHENTICATED_PER_S};
pub use redirect::Redirect;
use relay::{de_relay_bind, de_relay_external};
pub use relay::{DefaultFamily, FamilyAddrs};
pub use rest::{Rest, UsernameChars, DEFAULT_REST_MAX_TTL_S, DEFAULT_REST_MAX_USERNAME_BYTES};
pub use stream::*;
use types::{
    check_log_level, check_realm, check_user_name, de_at_least_1, de_http_listen, de_log_level,
    de_peers_allow, de_peers_deny, de_realm, de_udp_listeners, with_base_dir,
};
pub use types::{parse_net, OffloadMode, PortRange, PortRangeError, Secret, User, UserCredential};
pub use warnings::MIN_SECRET_BYTES;

/// Where `turnd` looks for its config file unless told otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/turnd/turnd.toml";
/// `realm`: the REALM sent in 401 responses (RFC 8489 §9.2).
pub const DEFAULT_REALM: &str = "turnd";
/// `listen.udp`: the STUN/TURN port of RFC 8489 on every IPv4 address.
pub const DEFAULT_UDP_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 3478));
/// `listen.tcp`: TURN over TCP on the same port as UDP, as coturn does.
pub const DEFAULT_TCP_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 3478));
/// `relay.bind`: relay sockets are bound on every IPv4 address (IPv6
/// relaying is added with `bind = ["0.0.0.0", "::"]`).
pub const DEFAULT_RELAY_BIND: FamilyAddrs = FamilyAddrs::one(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
/// `relay.ports`: the dynamic port range RFC 8656 §7.2 recommends.
pub const DEFAULT_RELAY_PORTS: PortRange = PortRange {
    low: 49152,
    high: 65535,
};
/// `quota.allocations_per_user`.
pub const DEFAULT_ALLOCATIONS_PER_USER: u32 = 10;
/// `quota.allocations_total`.
pub const DEFAULT_ALLOCATIONS_TOTAL: u32 = 10_000;
/// `quota.permissions_per_allocation`.
pub const DEFAULT_PERMISSIONS_PER_ALLOCATION: u32 = 64;
/// `quota.channels_per_allocation`.
pub const DEFAULT_CHANNELS_PER_ALLOCATION: u32 = 64;
/// `quota.tcp_connections_per_allocation`: RFC 6062 peer connections one
/// TCP allocation may have at once.
pub const DEFAULT_TCP_CONNECTIONS_PER_ALLOCATION: u32 = 32;
/// `allocation.tcp_connect_timeout_s`: how long a Connect (RFC 6062 §5.2)
/// tries to reach the peer before answering 447.
pub const DEFAULT_TCP_CONNECT_TIMEOUT_S: u32 = 30;
/// RFC 6062 §5.2: the connect timeout "MUST be at least 30 seconds".
pub const MIN_TCP_CONNECT_TIMEOUT_S: u32 = 30;
/// Channel numbers 0x4000..=0x7FFF (RFC 8656 §12): the most channels one
/// allocation can have.
pub const MAX_CHANNELS_PER_ALLOCATION: u32 = 0x4000;
/// `quota.peer_refusals_burst`: refused peer requests per allocation at once.
pub const DEFAULT_PEER_REFUSALS_BURST: u32 = 16;
/// `quota.peer_refusal_interval_s`: then one per 6 s, so mapping a 16 384-port
/// relay range through one allocation takes about 27 hours.
pub const DEFAULT_PEER_REFUSAL_INTERVAL_S: u32 = 6;
/// `allocation.default_lifetime_s`: RFC 8656 §7.2's default lifetime.
pub const DEFAULT_LIFETIME_S: u32 = 600;
/// `allocation.max_lifetime_s`: RFC 8656 §7.2's recommended maximum.
pub const DEFAULT_MAX_LIFETIME_S: u32 = 3600;
/// The longest allocation and nonce lifetimes RFC 8656 recommends (§7.2,
/// §5); longer ones are accepted with a warning.
pub const RECOMMENDED_MAX_S: u32 = 3600;
/// `allocation.nonce_lifetime_s`: after this a nonce is stale (438).
pub const DEFAULT_NONCE_LIFETIME_S: u32 = 600;
/// `http.listen`: `/metrics`, `/healthz`, `/readyz`, on loopback only.
pub const DEFAULT_HTTP_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9641));
/// `workers`: the most worker threads (each takes a thread, a runtime and
/// a socket per listener).
pub const MAX_WORKERS: u32 = 1024;
/// `log.level`.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// The default `realm`, [`DEFAULT_REALM`].
pub fn default_realm() -> String {
    DEFAULT_REALM.to_owned()
}

/// The whole config file. `Default` is what an empty file gives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_realm", deserialize_with = "de_realm")]
    pub realm: String,
    /// Without a `[listen]` table: UDP and TCP on 0.0.0.0:3478. With one,
    /// only the listeners it names.
    #[serde(default)]
    pub listen: Listen,
    #[serde(default)]
    pub relay: Relay,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub rest: Rest,
    #[serde(default)]
    pub peers: Peers,
    #[serde(default)]
    pub quota: Quota,
    #[serde(default)]
    pub allocation: AllocationTimers,
    #[serde(default)]
    pub http: Http,
    #[serde(default)]
    pub log: Log,
    /// Required when `listen.tls` is not empty.
    #[serde(default)]
    pub tls: Option<Tls>,
    #[serde(default)]
    pub connections: Connections,
    #[serde(default)]
    pub rate_limit: RateLimit,
    #[serde(default)]
    pub auth: Auth,
    /// Worker threads, each with its own sockets and allocations; 0 means
    /// one per CPU core. At most [`MAX_WORKERS`].
    #[serde(default, deserialize_with = "de_workers")]
    pub workers: u32,
    #[serde(default)]
    pub drain: Drain,
    #[serde(default)]
    pub redirect: Redirect,
    #[serde(default)]
    pub admin: Admin,
}

fn check_workers(n: u32) -> Result<(), String> {
    if n > MAX_WORKERS {
        return Err(format!(
            "workers ({n}) must be at most {MAX_WORKERS} (0 means one per CPU core)"
        ));
    }
    Ok(())
}

fn de_workers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    check_workers(n).map_err(serde::de::Error::custom)?;
    Ok(n)
}

/// `admin.state_dir`: where revocations are kept (systemd's
/// `StateDirectory=turnd`).
pub const DEFAULT_ADMIN_STATE_DIR: &str = "/var/lib/turnd";

/// `[admin]`: the operator API (list, end, revoke) and the self-test page,
/// on a listener of its own; off unless `listen` is set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Admin {
    pub listen: Option<SocketAddr>,
    /// A file holding the bearer token (whitespace trimmed); required with
    /// `listen`.
    pub token_file: Option<PathBuf>,
    pub state_dir: PathBuf,
    /// The host name (or IP) in the self-test page's `stun:`/`turn:`/
    /// `turns:` URLs; unset: each listener's own address, or the
    /// advertised relay address for a listener on 0.0.0.0 or `::`.
    #[serde(deserialize_with = "de_selftest_host")]
    pub selftest_host: Option<String>,
}

/// `admin.selftest_host`: an IP address or a DNS name (letters, digits,
/// `-`, `.`), nothing that would change the URL around it.
fn de_selftest_host<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let host = String::deserialize(d)?;
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if name_ok || host.parse::<IpAddr>().is_ok() {
        Ok(Some(host))
    } else {
        Err(serde::de::Error::custom(format!(
            "admin.selftest_host {host:?} is not an IP address or a host name (e.g. \"turn.example.com\")"
        )))
    }
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            listen: None,
            token_file: None,
            state_dir: PathBuf::from(DEFAULT_ADMIN_STATE_DIR),
            selftest_host: None,
        }
    }
}

/// `[listen]`: the addresses clients send STUN/TURN to. A key left out of
/// a `[listen]` table means no listener of that kind.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// Port 0 picks a free port (for tests).
    #[serde(default, deserialize_with = "de_udp_listeners")]
    pub udp: Vec<SocketAddr>,
    /// TURN over TCP (`turn:host:port?transport=tcp`).
    #[serde(default, deserialize_with = "stream::de_tcp")]
    pub tcp: Vec<SocketAddr>,
    /// TURN over TLS (`turns:host:port?transport=tcp`); needs `[tls]`.
    #[serde(default, deserialize_with = "stream::de_tls")]
    pub tls: Vec<SocketAddr>,
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            udp: vec![DEFAULT_UDP_LISTEN],
            tcp: vec![DEFAULT_TCP_LISTEN],
            tls: Vec::new(),
        }
    }
}

/// `[relay]`: where relay sockets (XOR-RELAYED-ADDRESS) live.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Relay {
    /// Where relay sockets are bound: one address per family relayed.
    #[serde(deserialize_with = "de_relay_bind")]
    pub bind: FamilyAddrs,
    /// The public address behind a 1:1 NAT, advertised instead of `bind`,
    /// per family (empty: unset).
    #[serde(deserialize_with = "de_relay_external")]
    pub external: FamilyAddrs,
    /// The family of an Allocate without REQUESTED-ADDRESS-FAMILY.
    pub default_family: DefaultFamily,
    pub ports: PortRange,
    /// Relay channel data in the kernel (XDP); see README "Kernel offload".
    pub offload: OffloadMode,
}

impl Default for Relay {
    fn default() -> Self {
        Relay {
            bind: DEFAULT_RELAY_BIND,
            external: FamilyAddrs::default(),
            default_family: DefaultFamily::Ipv4,
            ports: DEFAULT_RELAY_PORTS,
            offload: OffloadMode::Off,
        }
    }
}

/// `[peers]`: CIDRs added to (`allow`) or removed from (`deny`) the peer
/// addresses the relay may reach, on top of the built-in deny list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Peers {
    #[serde(deserialize_with = "de_peers_allow")]
    pub allow: Vec<IpNet>,
    #[serde(deserialize_with = "de_peers_deny")]
    pub deny: Vec<IpNet>,
}

/// `[quota]`: limits that keep one user or one client from exhausting the relay.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quota {
    #[serde(deserialize_with = "de_at_least_1")]
    pub allocations_per_user: u32,
    #[serde(deserialize_with = "de_at_least_1")]
    pub allocations_total: u32,
    #[serde(deserialize_with = "de_at_least_1")]
    pub permissions_per_allocation: u32,
    #[serde(deserialize_with = "de_at_least_1")]
    pub channels_per_allocation: u32,
    /// Refused ChannelBind/CreatePermission requests (403) one allocation
    /// may make at once; 0 turns the limit off.
    pub peer_refusals_burst: u32,
    /// Then one more per this many seconds.
    #[serde(deserialize_with = "de_at_least_1")]
    pub peer_refusal_interval_s: u32,
    /// Payload bytes per second each allocation may relay each way; 0: no cap.
    pub max_bps_per_allocation: u64,
    /// The same for all of one user's allocations together.
    pub max_bps_per_user: u64,
    /// The same for the whole server; past it new Allocates get 508 (or 300).
    pub bps_capacity: u64,
    /// Peer connections (RFC 6062 Connect or ConnectionAttempt) one TCP
    /// allocation may have at once.
    #[serde(deserialize_with = "de_at_least_1")]
    pub tcp_connections_per_allocation: u32,
}

impl Default for Quota {
    fn default() -> Self {
        Quota {
            allocations_per_user: DEFAULT_ALLOCATIONS_PER_USER,
            allocations_total: DEFAULT_ALLOCATIONS_TOTAL,
            permissions_per_allocation: DEFAULT_PERMISSIONS_PER_ALLOCATION,
            channels_per_allocation: DEFAULT_CHANNELS_PER_ALLOCATION,
            peer_refusals_burst: DEFAULT_PEER_REFUSALS_BURST,
            peer_refusal_interval_s: DEFAULT_PEER_REFUSAL_INTERVAL_S,
            max_bps_per_allocation: 0,
            max_bps_per_user: 0,
            bps_capacity: 0,
            tcp_connections_per_allocation: DEFAULT_TCP_CONNECTIONS_PER_ALLOCATION,
        }
    }
}

/// `[allocation]`: lifetimes, in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AllocationTimers {
    #[serde(deserialize_with = "de_at_least_1")]
    pub default_lifetime_s: u32,
    #[serde(deserialize_with = "de_at_least_1")]
    pub max_lifetime_s: u32,
    #[serde(deserialize_with = "de_at_least_1")]
    pub nonce_lifetime_s: u32,
    /// How long a Connect (RFC 6062 §5.2) tries to reach its peer; at
    /// least 30 (checked in `validate`).
    pub tcp_connect_timeout_s: u32,
}

impl Default for AllocationTimers {
    fn default() -> Self {
        AllocationTimers {
            default_lifetime_s: DEFAULT_LIFETIME_S,
            max_lifetime_s: DEFAULT_MAX_LIFETIME_S,
            nonce_lifetime_s: DEFAULT_NONCE_LIFETIME_S,
            tcp_connect_timeout_s: DEFAULT_TCP_CONNECT_TIMEOUT_S,
        }
    }
}

/// `[http]`: the metrics and health endpoint. In TOML, `enabled = false`
/// turns it off (`listen` is `None`); `listen = "IP:PORT"` moves it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawHttp")]
pub struct Http {
    pub listen: Option<SocketAddr>,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            listen: Some(DEFAULT_HTTP_LISTEN),
        }
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawHttp {
    enabled: bool,
    #[serde(deserialize_with = "de_http_listen")]
    listen: SocketAddr,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            enabled: true,
            listen: DEFAULT_HTTP_LISTEN,
        }
    }
}

impl From<RawHttp> for Http {
    fn from(raw: RawHttp) -> Self {
        Http {
            listen: raw.enabled.then_some(raw.listen),
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// A level or `tracing` `EnvFilter` directives (`"info,turnd=debug"`).
    #[serde(deserialize_with = "de_log_level")]
    pub level: String,
    /// `text` for people, `json` (one object per line) for log pipelines.
    pub format: LogFormat,
    /// Replace client addresses and usernames in logs by a short keyed hash
    /// (stable within one run, so one client's lines still group).
    pub redact: bool,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: DEFAULT_LOG_LEVEL.to_owned(),
            format: LogFormat::Text,
            redact: false,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            realm: default_realm(),
            listen: Listen::default(),
            relay: Relay::default(),
            users: Vec::new(),
            rest: Rest::default(),
            peers: Peers::default(),
            quota: Quota::default(),
            allocation: AllocationTimers::default(),
            http: Http::default(),
            log: Log::default(),
            tls: None,
            connections: Connections::default(),
            rate_limit: RateLimit::default(),
            auth: Auth::default(),
            workers: 0,
            drain: Drain::default(),
            admin: Admin::default(),
            redirect: Redirect::default(),
        }
    }
}

/// What can go wrong loading a config. Each message names the file and the
/// key, and for parse errors toml's line, column and the offending line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {error}", .path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: {message}", .path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}{message}", path_prefix(.path.as_deref()))]
    Invalid {
        path: Option<PathBuf>,
        message: String,
    },
}

/// serde's type names in a parse error as a person reads them: "expected
/// u32" becomes "expected a whole number from 0 to 4294967295".
fn plain_words(message: &str) -> String {
    let mut out = message.to_owned();
    for (serde, plain) in [
        (
            "expected u8",
            format!("expected a whole number from 0 to {}", u8::MAX),
        ),
        (
            "expected u16",
            format!("expected a whole number from 0 to {}", u16::MAX),
        ),
        (
            "expected u32",
            format!("expected a whole number from 0 to {}", u32::MAX),
        ),
        (
            "expected u64",
            format!("expected a whole number from 0 to {}", u64::MAX),
        ),
        ("expected usize", "expected a whole number".to_owned()),
        (
            "expected a sequence",
            "expected a list, e.g. [\"…\"]".to_owned(),
        ),
        ("expected a boolean", "expected true or false".to_owned()),
        ("expected a borrowed string", "expected a string".to_owned()),
    ] {
        out = out.replace(serde, &plain);
    }
    out
}

/// A multi-line error (toml's, with the offending line drawn under it) as
/// one line for a log: the drawing is left out, the rest joined by ": ".
pub fn one_line(message: &str) -> String {
    let drawing = |l: &str| {
        let l = l.trim_start();
        l.starts_with('|')
            || l.split_once(" |")
                .is_some_and(|(n, _)| n.parse::<u32>().is_ok())
    };
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !drawing(l))
        .collect();
    lines.join(": ")
}

fn path_prefix(path: Option<&Path>) -> String {
    path.map(|p| format!("{}: ", p.display()))
        .unwrap_or_default()
}

/// The path shown in errors for configs parsed from a string.
const INLINE_PATH: &str = "<inline>";

impl Config {
    /// Parses and validates a config held in a string. Relative secret-file
    /// paths are resolved against the current directory.
    pub fn from_toml_str(s: &str) -> Result<Config, ConfigError> {
        Self::parse_and_validate(s, Path::new(INLINE_PATH))
    }

    /// Reads, parses and validates the config file at `path`. Relative
    /// `password_file` and `secret_files` paths are resolved against the
    /// directory that holds the config file.
    /// `TURND_*` environment overrides are applied on top (see [`env`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Ok(Self::load_explained(path, std::env::vars_os())?.0)
    }

    /// [`Config::load`] with the environment given as `vars`, also saying
    /// where each overridable value came from (what `turnd check` prints).
    pub fn load_explained(
        path: &Path,
        vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    ) -> Result<(Config, Vec<Provenance>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let mut config = with_base_dir(dir, || Self::parse_and_validate(&text, path))?;
        // Certificate paths, like secret files, are relative to the config
        // file (under systemd the working directory is /).
        if let Some(tls) = &mut config.tls {
            tls.cert = dir.join(&tls.cert);
            tls.key = dir.join(&tls.key);
        }
        if let Some(token) = &mut config.admin.token_file {
            *token = dir.join(&*token);
        }
        let applied = config.apply_env(vars, dir, Some(path))?;
        let sources = env::sources(&config, Some((&text, path)), &applied);
        Ok((config, sources))
    }

    /// Built-in defaults with the `TURND_*` overrides applied (no config
    /// file: relative secret-file paths are taken from the current directory).
    pub fn defaults_explained(
        vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    ) -> Result<(Config, Vec<Provenance>), ConfigError> {
        let mut config = Config::default();
        let applied = config.apply_env(vars, Path::new("."), None)?;
        let sources = env::sources(&config, None, &applied);
        Ok((config, sources))
    }

    /// Applies the overrides and validates the result again when any was
    /// applied (an override may break a rule spanning several keys).
    fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
        dir: &Path,
        path: Option<&Path>,
    ) -> Result<Vec<String>, ConfigError> {
        let applied = env::apply(self, vars, dir).map_err(|message| ConfigError::Invalid {
            path: None,
            message,
        })?;
        if !applied.is_empty() {
            self.check().map_err(|message| ConfigError::Invalid {
                path: path.map(Path::to_path_buf),
                message: format!(
                    "{message} (with the environment overrides {})",
                    applied.join(", ")
                ),
            })?;
        }
        Ok(applied)
    }

    fn parse_and_validate(s: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(s).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: plain_words(e.to_string().trim_end()),
        })?;
        config.validate().map_err(|e| match e {
            ConfigError::Invalid {
                path: None,
                message,
            } => ConfigError::Invalid {
                path: Some(path.to_path_buf()),
                message,
            },
            other => other,
        })?;
        Ok(config)
    }

    /// Checks every rule, including those that span several keys. Parsing
    /// already checks single values; this repeats those checks for configs
    /// built in code.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|message| ConfigError::Invalid {
            path: None,
            message,
        })
    }

    fn check(&self) -> Result<(), String> {
        check_realm(&self.realm)?;
        check_log_level(&self.log.level)?;
        check_workers(self.workers)?;

        for (key, set) in [
            (
                "allocations_threshold",
                self.redirect.allocations_threshold > 0,
            ),
            ("bps_threshold", self.redirect.bps_threshold > 0),
        ] {
            if set && self.redirect.alternates.is_empty() {
                return Err(format!("redirect.{key} is set but redirect.alternates is empty: name the nodes to send clients to (e.g. alternates = [\"203.0.113.8:3478\"])"));
            }
        }
        let l = &self.listen;
        if l.udp.is_empty() && l.tcp.is_empty() && l.tls.is_empty() {
            return Err(
                "listen: at least one of udp, tcp or tls must hold an address (e.g. udp = [\"0.0.0.0:3478\"])".into(),
            );
        }
        for (key, addrs) in [("udp", &l.udp), ("tcp", &l.tcp), ("tls", &l.tls)] {
            let mut seen = HashSet::new();
            if let Some(dup) = addrs.iter().find(|a| a.port() != 0 && !seen.insert(**a)) {
                return Err(format!("listen.{key} lists {dup} twice"));
            }
        }
        let mut streams = HashSet::new();
        if let Some(dup) = l
            .tcp
            .iter()
            .chain(&l.tls)
            .find(|a| a.port() != 0 && !streams.insert(**a))
        {
            return Err(format!(
                "{dup} is in both listen.tcp and listen.tls: one TCP port serves one of them"
            ));
        }
        if !l.tls.is_empty() && self.tls.is_none() {
            return Err("listen.tls needs a [tls] section with cert and key (PEM files)".into());
        }
        self.connections.check()?;
        self.rate_limit.check()?;
        self.auth.check()?;
        if self.admin.listen.is_some() && self.admin.token_file.is_none() {
            return Err(
                "admin.listen needs admin.token_file (a file holding the bearer token)".into(),
            );
        }

        let relay = &self.relay;
        relay::check(&relay.bind, &relay.external)?;
        PortRange::new(relay.ports.low, relay.ports.high)
            .map_err(|e| format!("relay.ports: {e}"))?;

        let mut names = HashSet::new();
        for user in &self.users {
            check_user_name(&user.name)?;
            if !names.insert(user.name.as_str()) {
                return Err(format!("users: name {:?} is defined twice", user.name));
            }
            if matches!(&user.credential, UserCredential::Password(p) if p.expose().is_empty()) {
                return Err(format!("users: user {:?} has an empty password", user.name));
            }
            if let UserCredential::Password(p) = &user.credential {
                if let Some(c) = crate::core::precis::disallowed(p.expose()) {
                    return Err(format!(
                        "users: the password of user {:?} holds control character {:?}, which \
                         an OpaqueString may not (RFC 8265 §4.2, RFC 8489 §9.2.2)",
                        user.name, c
                    ));
                }
            }
        }
        if self.rest.secrets.iter().any(|s| s.expose().is_empty()) {
            return Err("rest.secrets must not hold an empty secret".into());
        }

        let q = &self.quota;
        for (key, value) in [
            ("allocations_per_user", q.allocations_per_user),
            ("allocations_total", q.allocations_total),
            ("permissions_per_allocation", q.permissions_per_allocation),
            ("channels_per_allocation", q.channels_per_allocation),
            (
                "tcp_connections_per_allocation",
                q.tcp_connections_per_allocation,
            ),
        ] {
            if value == 0 {
                return Err(format!("quota.{key} must be at least 1"));
            }
        }
        if q.channels_per_allocation > MAX_CHANNELS_PER_ALLOCATION {
            return Err(format!(
                "quota.channels_per_allocation ({}) must be at most {MAX_CHANNELS_PER_ALLOCATION}, \
                 the number of channel numbers (RFC 8656 §12)",
                q.channels_per_allocation
            ));
        }

        let a = &self.allocation;
        for (key, value) in [
            ("default_lifetime_s", a.default_lifetime_s),
            ("max_lifetime_s", a.max_lifetime_s),
            ("nonce_lifetime_s", a.nonce_lifetime_s),
        ] {
            if value == 0 {
                return Err(format!("allocation.{key} must be at least 1"));
            }
        }
        if a.max_lifetime_s < a.default_lifetime_s {
            return Err(format!(
                "allocation.max_lifetime_s ({}) must be ≥ allocation.default_lifetime_s ({})",
                a.max_lifetime_s, a.default_lifetime_s
            ));
        }
        if a.tcp_connect_timeout_s < MIN_TCP_CONNECT_TIMEOUT_S {
            return Err(format!(
                "allocation.tcp_connect_timeout_s ({}) must be at least \
                 {MIN_TCP_CONNECT_TIMEOUT_S} (RFC 6062 §5.2)",
                a.tcp_connect_timeout_s
            ));
        }
        Ok(())
    }

    /// Settings that are valid but go against an RFC recommendation: the
    /// operator is warned (at start, on reload, by `turnd check`).
    pub fn warnings(&self) -> Vec<String> {
        let a = &self.allocation;
        let mut out = Vec::new();
        if a.max_lifetime_s > RECOMMENDED_MAX_S {
            out.push(format!(
                "allocation.max_lifetime_s ({}) is above {RECOMMENDED_MAX_S}: RFC 8656 §7.2 \
                 recommends allocations live at most an hour between refreshes",
                a.max_lifetime_s
            ));
        }
        if a.nonce_lifetime_s > RECOMMENDED_MAX_S {
            out.push(format!(
                "allocation.nonce_lifetime_s ({}) is above {RECOMMENDED_MAX_S}: RFC 8656 §5 \
                 says nonces should expire at least once an hour",
                a.nonce_lifetime_s
            ));
        }
        out.extend(self.likely_mistakes());
        out
    }

    /// Whether any credential is configured (a static user or a REST
    /// secret). Without one, turnd answers Binding requests but refuses
    /// every Allocate: it is never an open relay.
    pub fn relays_allowed(&self) -> bool {
        !self.users.is_empty() || !self.rest.secrets.is_empty()
    }
}
