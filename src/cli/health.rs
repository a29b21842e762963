//! `turnd health`: asks a running turnd's HTTP endpoint for `/healthz` (or
//! `/readyz`) and exits 0 only on 200. It is the container health check of
//! an image that has no shell and no curl (deploy/oci/): the image runs its
//! own binary against its own endpoint.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;

use anyhow::{bail, Context};
use turnd::config::{Config, DEFAULT_CONFIG_PATH};

use super::HealthArgs;

/// The most of a response read: the status line is all that matters.
const MAX_RESPONSE_BYTES: u64 = 16 * 1024;

/// `turnd health`: prints `URL: STATUS` and succeeds on 200.
pub fn run(args: &HealthArgs, fallback: Option<&Path>) -> anyhow::Result<()> {
    let addr = match args.address {
        Some(addr) => addr,
        None => configured_address(args.config.as_deref().or(fallback))?,
    };
    let path = if args.ready { "/readyz" } else { "/healthz" };
    let url = format!("http://{addr}{path}");
    let (status, body) = get(addr, path, args.timeout).with_context(|| format!("GET {url}"))?;
    let body = body.trim();
    if status != 200 {
        bail!("{url}: HTTP {status} {body}");
    }
    println!("{url}: {status} {body}");
    Ok(())
}

/// The endpoint of the config (given, or the default path if it exists,
/// with `TURND_*` overrides), an unspecified address asked on loopback.
fn configured_address(explicit: Option<&Path>) -> anyhow::Result<SocketAddr> {
    let default = Path::new(DEFAULT_CONFIG_PATH);
    let config = match explicit {
        Some(path) => Config::load(path)?,
        None if default.exists() => Config::load(default)?,
        None => Config::defaults_explained(std::env::vars_os())?.0,
    };
    let Some(mut addr) = config.http.listen else {
        bail!("the config turns the HTTP endpoint off ([http] enabled = false): nothing to ask");
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    if addr.port() == 0 {
        bail!("[http] listen has port 0: give --address IP:PORT");
    }
    Ok(addr)
}

/// One `GET` over HTTP/1.1 with `Connection: close`: the status code and body.
fn get(
    addr: SocketAddr,
    path: &str,
    timeout: std::time::Duration,
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).context("cannot connect")?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: turnd-health\r\nConnection: close\r\n\r\n"
    )
    .context("cannot send the request")?;
    let mut response = Vec::new();
    stream
        .take(MAX_RESPONSE_BYTES)
        .read_to_end(&mut response)
        .context("no complete response")?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .lines()
        .next()
        .and_then(|line| {
            let mut parts = line.split_whitespace();
            let version = parts.next()?;
            version.starts_with("HTTP/").then_some(())?;
            parts.next()?.parse::<u16>().ok()
        })
        .with_context(|| {
            format!(
                "not an HTTP response: {:?}",
                text.lines().next().unwrap_or("")
            )
        })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
