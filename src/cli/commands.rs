//! The offline subcommands: `check`, `credentials`, `hash-key`,
//! `completions` and `man`. `probe` talks to a server and lives in
//! [`crate::probe`].

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::CommandFactory;
use turnd::config::{Config, Secret, DEFAULT_CONFIG_PATH};
use turnd::core::auth::long_term_key;
use turnd::ice;

use super::{CheckArgs, Cli, CredentialsArgs, CredentialsFormat, HashKeyArgs, SecretSource};

/// The port of `stun:`/`turn:` URLs when neither a flag nor a config names
/// one (RFC 8489 §6).
const DEFAULT_STUN_PORT: u16 = 3478;

/// Which config file a subcommand reads: the one given (flag or
/// TURND_CONFIG), else the default path.
fn config_path(given: Option<&Path>) -> PathBuf {
    given.map_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH), Path::to_path_buf)
}

/// `turnd check` / `turnd --check-config`: loads and validates the file
/// with the `TURND_*` environment overrides, and the TLS certificate it
/// names; then lists the overridable values and the source of each.
pub fn check(args: &CheckArgs, fallback: Option<&Path>) -> anyhow::Result<()> {
    let path = config_path(args.config.as_deref().or(fallback));
    let (config, sources) = Config::load_explained(&path, std::env::vars_os())?;
    // The certificate is part of the config: the unit's ExecStartPre check
    // must fail on a bad one, not the start after it.
    if let (Some(tls), false) = (&config.tls, config.listen.tls.is_empty()) {
        turnd::net::tls::load(tls).with_context(|| path.display().to_string())?;
    }
    config
        .check_host()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    for warning in config.warnings() {
        eprintln!("turnd: warning: {}: {warning}", path.display());
    }
    if let Some(addr) = config.admin.listen.filter(|a| !a.ip().is_loopback()) {
        eprintln!(
            "{}: warning: admin.listen = {addr} is not a loopback address: the admin API \
             (end allocations, revoke users) is reachable from the network, guarded only \
             by its token; prefer 127.0.0.1 and an SSH tunnel",
            path.display()
        );
    }
    println!("{}: ok", path.display());
    // The per-node values and where each came from: an operator checking a
    // container or a fleet node sees what the environment changed.
    let width = sources.iter().map(|p| p.key.len()).max().unwrap_or(0);
    let value_width = sources.iter().map(|p| p.value.len()).max().unwrap_or(0);
    for p in &sources {
        println!(
            "  {:<width$}  {:<value_width$}  ({})",
            p.key, p.value, p.source
        );
    }
    Ok(())
}

/// Reads a secret or password file the way the config's `secret_files` and
/// `password_file` do: surrounding whitespace trimmed, empty refused.
pub fn read_secret_file(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let secret = text.trim();
    if secret.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(secret.to_owned())
}

/// The REST secret from `--secret`, `--secret-file`, or the first secret of
/// `config` (read from `config_path`, named in errors).
pub fn rest_secret(
    source: &SecretSource,
    config: Option<&Config>,
    config_path: &Path,
) -> anyhow::Result<Secret> {
    if let Some(s) = &source.secret {
        if s.is_empty() {
            bail!("--secret is empty");
        }
        return Ok(Secret::from(s.as_str()));
    }
    if let Some(path) = &source.secret_file {
        return Ok(Secret::from(read_secret_file(path)?));
    }
    match config.and_then(|c| c.rest.secrets.first()) {
        Some(secret) => Ok(secret.clone()),
        None if config.is_some() => bail!(
            "{} has no [rest] secrets or secret_files: give --secret-file (or --secret)",
            config_path.display()
        ),
        None => bail!("no REST secret: give --secret-file, --secret, or --config"),
    }
}

/// Loads the config a subcommand may use: an explicit one (flag or
/// TURND_CONFIG) always, the default path only when `needed` and present.
fn optional_config(explicit: Option<&Path>, needed: bool) -> anyhow::Result<Option<Config>> {
    if let Some(path) = explicit {
        return Ok(Some(Config::load(path)?));
    }
    let default = Path::new(DEFAULT_CONFIG_PATH);
    if needed && default.exists() {
        return Ok(Some(Config::load(default)?));
    }
    Ok(None)
}

/// The first listener port of a kind in the config (port 0, for tests,
/// means none).
fn first_port(addrs: &[std::net::SocketAddr]) -> Option<u16> {
    addrs.first().map(|a| a.port()).filter(|p| *p != 0)
}

/// `turnd credentials`: prints `{"iceServers": [...]}` on stdout.
pub fn credentials(args: &CredentialsArgs, fallback: Option<&Path>) -> anyhow::Result<()> {
    if args.user.is_empty() {
        bail!("--user must not be empty");
    }
    let explicit = args.config.as_deref().or(fallback);
    let have_secret = args.secret.secret.is_some() || args.secret.secret_file.is_some();
    let have_urls = args.host.is_some() || !args.urls.is_empty();
    let config = optional_config(explicit, !have_secret || !have_urls)?;
    let path = config_path(explicit);
    let secret = rest_secret(&args.secret, config.as_ref(), &path)?;

    for url in &args.urls {
        if !ice::is_ice_url(url) {
            bail!("--url {url:?} is not a stun:, stuns:, turn: or turns: URL (RFC 7064, RFC 7065)");
        }
    }
    let mut urls = args.urls.clone();
    let host = match (&args.host, &config) {
        (Some(h), _) => Some(check_host(h)?),
        (None, Some(c)) if args.urls.is_empty() => {
            c.relay.external.primary().map(|ip| ip.to_string())
        }
        _ => None,
    };
    if let Some(host) = host {
        let listen = config.as_ref().map(|c| &c.listen);
        let port = |flag: Option<u16>, from_config: Option<u16>, default: Option<u16>| {
            flag.or(match listen {
                Some(_) => from_config,
                None => default,
            })
        };
        let tls_port = port(args.tls_port, listen.and_then(|l| first_port(&l.tls)), None);
        // turns: needs the name the certificate is for, which an IP from
        // relay.external rarely is.
        let tls_host = match (&args.host, config.as_ref().and_then(|c| c.tls.as_ref())) {
            (None, Some(tls)) if tls_port.is_some() => certificate_name(&tls.cert, &host),
            _ => host.clone(),
        };
        urls.extend(ice::host_urls(
            &host,
            port(
                args.udp_port,
                listen.and_then(|l| first_port(&l.udp)),
                Some(DEFAULT_STUN_PORT),
            ),
            port(
                args.tcp_port,
                listen.and_then(|l| first_port(&l.tcp)),
                Some(DEFAULT_STUN_PORT),
            ),
            None,
        ));
        urls.extend(ice::host_urls(&tls_host, None, None, tls_port));
    }
    let expires = turnd::net::clock::now()
        .unix_secs
        .saturating_add(args.ttl.as_secs());
    let credential = ice::mint(secret.expose(), &args.user, expires);
    if args.format == CredentialsFormat::Shell {
        println!(
            "TURN_USERNAME={}\nTURN_CREDENTIAL={}\nTURN_EXPIRES={expires}\nTURN_URLS={}",
            shell_quote(&credential.username),
            shell_quote(&credential.credential),
            shell_quote(&urls.join(" "))
        );
        return Ok(());
    }
    if urls.is_empty() {
        bail!(
            "no URL to put in iceServers: give --host HOST (the name clients reach this server \
             by) or --url URL, or a --config with relay.external set"
        );
    }

    let value = ice::ice_config(urls, &credential);
    let text = if args.compact {
        serde_json::to_string(&value)
    } else {
        serde_json::to_string_pretty(&value)
    }
    .context("cannot encode the iceServers JSON")?;
    println!("{text}");
    Ok(())
}

/// `--host` checked: a name or an IP address, without a port (an IPv6
/// address may be in brackets).
fn check_host(host: &str) -> anyhow::Result<String> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok(bare.to_owned());
    }
    if host.parse::<std::net::SocketAddr>().is_ok()
        || host
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
    {
        bail!(
            "--host {host:?} has a port: give the host alone, and the ports with --udp-port, \
             --tcp-port and --tls-port"
        );
    }
    let name_char = |c: char| c.is_ascii_alphanumeric() || "-._".contains(c);
    if host.is_empty() || !host.chars().all(name_char) {
        bail!("--host {host:?} is not a host name or IP address");
    }
    Ok(host.to_owned())
}

/// The host for the turns: URL: a DNS name of the certificate at `cert`,
/// else `ip` with a note on stderr saying why no name.
fn certificate_name(cert: &Path, ip: &str) -> String {
    match turnd::net::tls::dns_names(cert) {
        Ok(names) => {
            if let Some(name) = names.iter().find(|n| !n.starts_with('*')) {
                return name.clone();
            }
            eprintln!(
                "turnd: note: the turns: URL uses {ip}, as the certificate {} names no host \
                 (no DNS name without a wildcard): a client checks the certificate against \
                 {ip}; give --host with the name it is for",
                cert.display()
            );
        }
        Err(e) => eprintln!(
            "turnd: note: the turns: URL uses {ip}: {e:#}; give --host with the name the \
             certificate is for"
        ),
    }
    ip.to_owned()
}

/// `s` in single quotes for sh.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `turnd hash-key`: prints MD5(user:realm:password) in hex.
pub fn hash_key(args: &HashKeyArgs, fallback: Option<&Path>) -> anyhow::Result<()> {
    if args.user.is_empty() {
        bail!("--user must not be empty");
    }
    let realm = match &args.realm {
        Some(r) => r.clone(),
        None => {
            let explicit = args.config.as_deref().or(fallback);
            match optional_config(explicit, true)? {
                Some(c) => c.realm,
                None => bail!(
                    "give --realm (the config's `realm`) or --config: a key is only valid for \
                     one realm"
                ),
            }
        }
    };
    if realm.is_empty() {
        bail!("--realm must not be empty");
    }
    let password = match (&args.password, &args.password_file) {
        (Some(p), _) => p.clone(),
        (None, Some(path)) => read_secret_file(path)?,
        (None, None) => read_password_from_stdin(&args.user, &realm)?,
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    let key = hex::encode(long_term_key(&args.user, &realm, &password));
    if args.toml {
        let name = toml::Value::String(args.user.clone());
        println!(
            "# realm = {}\n[[users]]\nname = {name}\nkey = \"{key}\"",
            toml::Value::String(realm)
        );
    } else {
        println!("{key}");
    }
    Ok(())
}

/// The password from stdin: prompted for without echo on a terminal, else
/// everything piped in minus one trailing line ending.
fn read_password_from_stdin(user: &str, realm: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password for {user} in realm {realm}: ");
        let _ = std::io::stderr().flush();
        let line = {
            let _echo_off = EchoOff::new();
            let mut line = String::new();
            stdin
                .read_line(&mut line)
                .context("cannot read the password from the terminal")?;
            line
        };
        eprintln!();
        return Ok(strip_line_ending(&line).to_owned());
    }
    let mut text = String::new();
    stdin
        .lock()
        .read_to_string(&mut text)
        .context("cannot read the password from stdin")?;
    Ok(strip_line_ending(&text).to_owned())
}

fn strip_line_ending(s: &str) -> &str {
    s.strip_suffix("\r\n")
        .or_else(|| s.strip_suffix('\n'))
        .unwrap_or(s)
}

/// Turns terminal echo off on stdin until dropped.
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> Self {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a termios we own; a
        // failure (not a terminal) leaves echo as it was.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut saved) != 0 {
                return EchoOff(None);
            }
            let mut quiet = saved;
            quiet.c_lflag &= !libc::ECHO;
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &quiet) != 0 {
                return EchoOff(None);
            }
            EchoOff(Some(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores the attributes read in `new`.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved);
            }
        }
    }
}

/// `turnd completions SHELL`.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "turnd", &mut script);
    write_stdout(&script).context("cannot write the completion script to stdout")
}

/// `turnd man [COMMAND] [--dir DIR]`.
pub fn man(command: Option<&str>, dir: Option<&Path>) -> anyhow::Result<()> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Building sets the subcommands' display names (`turnd-probe`).
    cmd.build();
    let cmd = match command {
        None => cmd,
        Some(name) => match cmd.find_subcommand(name) {
            Some(sub) => sub.clone(),
            None => bail!("no command {name:?}: see `turnd --help`"),
        },
    };
    if let Some(dir) = dir {
        return clap_mangen::generate_to(cmd, dir)
            .with_context(|| format!("cannot write man pages to {}", dir.display()));
    }
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut page)
        .context("cannot render the man page")?;
    write_stdout(&page).context("cannot write the man page to stdout")
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings() {
        assert_eq!(strip_line_ending("pw\n"), "pw");
        assert_eq!(strip_line_ending("pw\r\n"), "pw");
        assert_eq!(strip_line_ending("pw \n\n"), "pw \n");
        assert_eq!(strip_line_ending("pw"), "pw");
    }
}
