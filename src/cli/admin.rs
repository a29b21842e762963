//! `turnd admin`: the admin API (see `turnd::admin`) from a shell. The
//! address and the token file come from the config's `[admin]` unless given.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use turnd::config::Config;

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The config file whose [admin] listen and token_file are used
    /// [default: /etc/turnd/turnd.toml].
    #[arg(short, long, value_name = "PATH", env = "TURND_CONFIG")]
    pub config: Option<PathBuf>,
    /// The admin API's address, instead of [admin] listen.
    #[arg(long, value_name = "IP:PORT")]
    pub addr: Option<SocketAddr>,
    /// The bearer token file, instead of [admin] token_file.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    #[command(subcommand)]
    pub action: AdminAction,
}

#[derive(Debug, Subcommand)]
pub enum AdminAction {
    /// List live allocations (JSON).
    List {
        /// Only this user's (a static name or a REST user part).
        #[arg(long)]
        user: Option<String>,
    },
    /// End one allocation, by the id `list` shows.
    End { id: String },
    /// End every allocation of a user.
    EndUser { user: String },
    /// Revoke a user: its allocations end now, its requests get 401.
    Revoke {
        user: String,
        /// Until this Unix time (default: for good).
        #[arg(long, conflicts_with = "for_s")]
        until: Option<u64>,
        /// For this many seconds.
        #[arg(long = "for", value_name = "SECONDS")]
        for_s: Option<u64>,
    },
    /// Lift a revocation.
    Unrevoke { user: String },
    /// List revocations.
    Revocations,
}

/// Runs one admin action; prints the JSON answer.
pub fn run(args: &AdminArgs, fallback: Option<&Path>) -> anyhow::Result<()> {
    let (addr, token_file) = match (args.addr, &args.token_file) {
        (Some(a), Some(t)) => (a, t.clone()),
        _ => {
            let path = args
                .config
                .clone()
                .or_else(|| fallback.map(Path::to_path_buf))
                .unwrap_or_else(|| PathBuf::from(turnd::config::DEFAULT_CONFIG_PATH));
            let config = Config::load(&path)?;
            let addr = args
                .addr
                .or(config.admin.listen)
                .context("no admin address: set [admin] listen or give --addr")?;
            let token = args
                .token_file
                .clone()
                .or(config.admin.token_file)
                .context("no token file: set [admin] token_file or give --token-file")?;
            (addr, token)
        }
    };
    let token = super::commands::read_secret_file(&token_file)?;
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let (method, path) = match &args.action {
        AdminAction::List { user: None } => ("GET", "/allocations".to_string()),
        AdminAction::List { user: Some(u) } => ("GET", format!("/allocations?user={}", enc(u))),
        AdminAction::End { id } => ("DELETE", format!("/allocations/{}", enc(id))),
        AdminAction::EndUser { user } => ("DELETE", format!("/users/{}/allocations", enc(user))),
        AdminAction::Revoke { user, until, for_s } => {
            let now = turnd::net::clock::now().unix_secs;
            let until = until.or(for_s.map(|s| now + s));
            match until {
                Some(t) => ("PUT", format!("/revocations/{}?until={t}", enc(user))),
                None => ("PUT", format!("/revocations/{}", enc(user))),
            }
        }
        AdminAction::Unrevoke { user } => ("DELETE", format!("/revocations/{}", enc(user))),
        AdminAction::Revocations => ("GET", "/revocations".to_string()),
    };
    let (status, body) = request(addr, method, &path, &token)?;
    print!("{body}");
    if !(200..300).contains(&status) {
        bail!("the admin API answered {status}");
    }
    Ok(())
}

/// One HTTP/1.1 request with `Connection: close`; the status and the body.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("cannot connect to the admin API on {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("a malformed HTTP response")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("a malformed HTTP status line")?;
    Ok((status, body.to_string()))
}
