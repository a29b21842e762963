//! `turnd probe`: checks that a deployed server relays, the way two WebRTC
//! clients would use it. Client A asks for its mapped address (Binding,
//! RFC 8489 §6); A and B each allocate a UDP relay (RFC 8656 §7) with
//! long-term credentials; A gets a permission for B's relayed address
//! (§9), B binds a channel to A's (§12); then data goes A → relay A →
//! relay B → B as a Send indication, and back B → relay B → relay A → A as
//! ChannelData. turnd treats its own relayed addresses as peers whatever
//! the peer policy says, so this works with the production config.
//!
//! Every step has a deadline (`--timeout`); each is reported with its
//! latency, and a failure with what it most likely means.

mod client;
mod explain;
mod link;
mod report;

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::cli::commands::{read_secret_file, rest_secret};
use crate::cli::{ProbeArgs, ProbeTransport, SecretSource};
use client::{Allocation, Client, Failure, Relayed};
use explain::{Explain, Stage};
use link::Link;
use report::{Reporter, Status};

/// The user part of REST credentials the probe mints when none is given.
const DEFAULT_PROBE_USER: &str = "turnd-probe";
/// How long credentials minted for a probe stay valid (covers clock skew
/// between this host and the server).
const PROBE_CREDENTIAL_TTL: Duration = Duration::from_secs(3600);
/// The port when `--server` names none (RFC 8489 §6).
const DEFAULT_PORT: u16 = 3478;
/// The port of `turns:` when `--server` names none (RFC 7065 §3).
const DEFAULT_TLS_PORT: u16 = 5349;
/// The channel B binds to A's relayed address (the first of §12's range).
const CHANNEL: u16 = 0x4000;
/// How often data is resent over UDP while waiting for it to come through.
const DATA_RESEND: Duration = Duration::from_millis(500);

/// The monotonic clock (read through turnd's one allowed clock access).
fn now() -> Instant {
    turnd::net::clock::now().instant
}

/// Where the credentials come from, for explaining a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthKind {
    Static,
    Rest,
}

struct Options {
    server: String,
    transport: ProbeTransport,
    username: String,
    password: String,
    auth: AuthKind,
    expect_realm: Option<String>,
    timeout: Duration,
    /// `--ca`: the CAs a TLS server's certificate must chain to.
    ca: Option<std::path::PathBuf>,
    /// `--sni`: the name a TLS server's certificate must be for.
    sni: Option<String>,
}

impl Options {
    /// The port when `--server` names none.
    fn default_port(&self) -> u16 {
        match self.transport {
            ProbeTransport::Tls => DEFAULT_TLS_PORT,
            _ => DEFAULT_PORT,
        }
    }
}

/// `turnd probe`: exit status 0 only when the round trip came back.
pub fn run(args: &ProbeArgs, fallback_config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (username, password, auth) = credentials(args, fallback_config)?;
    let opts = Options {
        server: args.server.clone(),
        transport: args.transport,
        username,
        password,
        auth,
        expect_realm: args.realm.clone(),
        timeout: args.timeout,
        ca: args.ca.clone(),
        sni: args.sni.clone(),
    };
    if args.transport != ProbeTransport::Tls && (args.ca.is_some() || args.sni.is_some()) {
        bail!("--ca and --sni are for -t tls");
    }
    let mut rep = Reporter::new(&opts, args.json);
    let ok = probe(&opts, &mut rep);
    rep.finish(ok);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Username, password and their kind from the flags: a static user's
/// password, or REST credentials minted from a secret (given, in a file, or
/// the first of the config's).
fn credentials(
    args: &ProbeArgs,
    fallback_config: Option<&Path>,
) -> anyhow::Result<(String, String, AuthKind)> {
    let password = match (&args.password, &args.password_file) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(path)) => Some(read_secret_file(path)?),
        (None, None) => None,
    };
    if let Some(password) = password {
        let Some(user) = args.user.clone() else {
            bail!("--password and --password-file need --user (the [[users]] name)");
        };
        if password.is_empty() {
            bail!("--password is empty");
        }
        return Ok((user, password, AuthKind::Static));
    }
    let source = SecretSource {
        secret: args.secret.clone(),
        secret_file: args.secret_file.clone(),
    };
    let config_path = args
        .config
        .as_deref()
        .or(fallback_config)
        .unwrap_or(Path::new(turnd::config::DEFAULT_CONFIG_PATH));
    let config = if source.secret.is_none() && source.secret_file.is_none() {
        if !config_path.exists() {
            bail!(
                "no credentials: give --user with --password-file (or --password), or a REST \
                 secret with --secret-file, --secret or --config"
            );
        }
        Some(turnd::config::Config::load(config_path)?)
    } else {
        None
    };
    let secret = rest_secret(&source, config.as_ref(), config_path)?;
    let user = args.user.as_deref().unwrap_or(DEFAULT_PROBE_USER);
    let expires = turnd::net::clock::now().unix_secs + PROBE_CREDENTIAL_TTL.as_secs();
    let c = turnd::ice::mint(secret.expose(), user, expires);
    Ok((c.username, c.credential, AuthKind::Rest))
}

/// `HOST`, `HOST:PORT`, `[V6]:PORT` or a bare IPv6 address.
fn split_host_port(s: &str, default_port: u16) -> Result<(String, u16), String> {
    let bad_port = |p: &str| format!("--server {s:?}: {p:?} is not a port number");
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("--server {s:?}: missing ']'"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad_port(p))?,
            None if after.is_empty() => default_port,
            None => return Err(format!("--server {s:?}: expected :PORT after ']'")),
        };
        return Ok((host.to_owned(), port));
    }
    match s.matches(':').count() {
        0 => Ok((s.to_owned(), default_port)),
        1 => {
            let (host, port) = s.split_once(':').unwrap_or((s, ""));
            Ok((host.to_owned(), port.parse().map_err(|_| bad_port(port))?))
        }
        _ => Ok((s.to_owned(), default_port)),
    }
}

fn resolve(server: &str, default_port: u16) -> Result<(SocketAddr, bool), String> {
    let (host, port) = split_host_port(server, default_port)?;
    if host.is_empty() {
        return Err(format!("--server {server:?}: no host"));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok((SocketAddr::new(ip, port), false));
    }
    let addrs: Vec<SocketAddr> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    // IPv4 first: turnd relays IPv4 by default (RFC 6156).
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .map(|a| (*a, true))
        .ok_or_else(|| format!("{host} has no address"))
}

/// A step failed; the reporter has already said why.
struct Failed;

/// Reports a step's outcome and turns a failure into [`Failed`].
fn step<T>(
    rep: &mut Reporter,
    name: &'static str,
    start: Instant,
    result: Result<T, String>,
    detail: impl FnOnce(&T) -> String,
) -> Result<T, Failed> {
    let took = now().saturating_duration_since(start);
    match result {
        Ok(v) => {
            rep.step(name, Status::Ok, took, detail(&v));
            Ok(v)
        }
        Err(why) => {
            rep.step(name, Status::Fail, took, why);
            Err(Failed)
        }
    }
}

/// [`step`] for a step worth reporting only when it fails (a local
/// socket, an IP literal).
fn quiet_step<T>(
    rep: &mut Reporter,
    name: &'static str,
    start: Instant,
    result: Result<T, String>,
) -> Result<T, Failed> {
    match result {
        Ok(v) => Ok(v),
        Err(why) => step(rep, name, start, Err(why), |_| String::new()),
    }
}

/// The two clients and whether each holds an allocation (to release it).
#[derive(Default)]
struct Session {
    a: Option<Client>,
    b: Option<Client>,
    a_allocated: bool,
    b_allocated: bool,
}

fn probe(opts: &Options, rep: &mut Reporter) -> bool {
    let mut session = Session::default();
    let ok = steps(opts, rep, &mut session).is_ok();
    release(rep, &mut session);
    ok
}

fn steps(opts: &Options, rep: &mut Reporter, s: &mut Session) -> Result<(), Failed> {
    let t = now();
    let (server, looked_up) = quiet_step(
        rep,
        "resolve",
        t,
        resolve(&opts.server, opts.default_port()),
    )?;
    if looked_up {
        step(rep, "resolve", t, Ok(()), |()| {
            format!("{} is {server}", opts.server)
        })?;
    }
    rep.address = Some(server);
    let ex = Explain {
        opts,
        server,
        realm: None,
    };

    let t = now();
    let a = match opts.transport {
        // A UDP socket is local: whether the server is there shows in Binding.
        ProbeTransport::Udp => quiet_step(rep, "connect", t, connect(opts, server, &ex))?,
        ProbeTransport::Tcp => step(rep, "connect", t, connect(opts, server, &ex), |_| {
            format!("tcp {server}")
        })?,
        ProbeTransport::Tls => step(rep, "connect", t, connect(opts, server, &ex), |_| {
            format!("tls {server}, certificate valid for {:?}", tls_name(opts))
        })?,
    };
    let a = s.a.insert(a);

    let t = now();
    step(
        rep,
        "binding",
        t,
        a.binding().map_err(|f| ex.why(Stage::Binding, &f)),
        |m| format!("mapped address {m}"),
    )?;

    let t = now();
    let result = a.allocate();
    let ex = Explain {
        realm: a.realm().map(str::to_owned),
        ..ex
    };
    let alloc_a = step(
        rep,
        "allocate A",
        t,
        result.map_err(|f| ex.why(Stage::Allocate, &f)),
        |al| describe_allocation(al, ex.realm.as_deref()),
    )?;
    s.a_allocated = true;
    if let (Some(want), Some(got)) = (&opts.expect_realm, &ex.realm) {
        if want != got {
            let t = now();
            return step::<()>(
                rep,
                "realm",
                t,
                Err(format!(
                    "the server's realm is {got:?}, not {want:?} (--realm): static keys and \
                     clients configured for {want:?} will fail"
                )),
                |_| String::new(),
            );
        }
    }

    let t = now();
    let b = quiet_step(rep, "connect B", t, connect(opts, server, &ex))?;
    let b = s.b.insert(b);
    let result = b.allocate();
    let alloc_b = step(
        rep,
        "allocate B",
        t,
        result.map_err(|f| ex.why(Stage::Allocate, &f)),
        |al| describe_allocation(al, None),
    )?;
    s.b_allocated = true;
    let (relay_a, relay_b) = (alloc_a.relayed, alloc_b.relayed);

    let t = now();
    step(
        rep,
        "permission",
        t,
        a.create_permission(relay_b)
            .map_err(|f| ex.why(Stage::Peer(relay_b), &f)),
        |()| format!("A may exchange data with {relay_b}"),
    )?;

    let t = now();
    step(
        rep,
        "channel bind",
        t,
        b.channel_bind(CHANNEL, relay_a)
            .map_err(|f| ex.why(Stage::Peer(relay_a), &f)),
        |()| format!("B: channel {CHANNEL:#06x} to {relay_a}"),
    )?;

    let tag: u64 = rand::random();
    let there = format!("turnd probe {tag:016x} A to B").into_bytes();
    let back = format!("turnd probe {tag:016x} B to A").into_bytes();
    let t = now();
    let got = relay_leg(
        a,
        |c| c.send_indication(relay_b, &there),
        b,
        &there,
        opts.timeout,
    );
    step(
        rep,
        "relay A to B",
        t,
        got.map_err(|f| {
            ex.why(
                Stage::Relay {
                    from: relay_a,
                    to: relay_b,
                },
                &f,
            )
        }),
        |r| {
            format!(
                "Send indication to {relay_b}, B got {}",
                describe_relayed(r)
            )
        },
    )?;
    let t2 = now();
    let got = relay_leg(
        b,
        |c| c.send_channel_data(CHANNEL, &back),
        a,
        &back,
        opts.timeout,
    );
    step(
        rep,
        "relay B to A",
        t2,
        got.map_err(|f| {
            ex.why(
                Stage::Relay {
                    from: relay_b,
                    to: relay_a,
                },
                &f,
            )
        }),
        |r| {
            format!(
                "ChannelData {CHANNEL:#06x} to {relay_a}, A got {}",
                describe_relayed(r)
            )
        },
    )?;
    rep.round_trip = Some(now().saturating_duration_since(t));
    Ok(())
}

fn connect(opts: &Options, server: SocketAddr, ex: &Explain) -> Result<Client, String> {
    let link = match opts.transport {
        ProbeTransport::Udp => Link::udp(server),
        ProbeTransport::Tcp => Link::tcp(server, opts.timeout),
        ProbeTransport::Tls => Link::tls(
            server,
            opts.timeout,
            &link::TlsCheck {
                ca: opts.ca.as_deref(),
                name: &tls_name(opts),
            },
        ),
    };
    let link = link.map_err(|e| ex.why(Stage::Connect, &Failure::Io(e)))?;
    Ok(Client::new(
        link,
        &opts.username,
        &opts.password,
        opts.timeout,
    ))
}

/// Sends with `send` (again every [`DATA_RESEND`] over UDP, which may lose
/// it) until `receiver` gets `payload`, for at most `timeout`.
fn relay_leg(
    sender: &mut Client,
    send: impl Fn(&mut Client) -> Result<(), Failure>,
    receiver: &mut Client,
    payload: &[u8],
    timeout: Duration,
) -> Result<Relayed, Failure> {
    let start = now();
    let deadline = start + timeout;
    send(sender)?;
    let mut next_send = start + DATA_RESEND;
    loop {
        let t = now();
        if t >= deadline {
            return Err(Failure::Timeout);
        }
        if sender.lossy() && t >= next_send {
            send(sender)?;
            next_send = t + DATA_RESEND;
        }
        let until = if sender.lossy() {
            next_send.min(deadline)
        } else {
            deadline
        };
        if let Some(r) = receiver.recv_relayed(until)? {
            if r.data() == payload {
                return Ok(r);
            }
        }
    }
}

/// Deletes the allocations made (best effort: a failure is a warning).
fn release(rep: &mut Reporter, s: &mut Session) {
    let t = now();
    let mut errors = Vec::new();
    let mut released = 0;
    for (name, client, allocated) in [
        ("A", &mut s.a, s.a_allocated),
        ("B", &mut s.b, s.b_allocated),
    ] {
        if let (Some(c), true) = (client, allocated) {
            match c.release() {
                Ok(()) => released += 1,
                Err(e) => errors.push(format!("{name}: {e}")),
            }
        }
    }
    let took = now().saturating_duration_since(t);
    if !errors.is_empty() {
        let why = format!(
            "could not delete every allocation ({}); they expire on their own",
            errors.join("; ")
        );
        rep.step("release", Status::Warn, took, why);
    } else if released > 0 {
        rep.step(
            "release",
            Status::Ok,
            took,
            format!("{released} allocation(s) deleted"),
        );
    }
}

fn describe_allocation(al: &Allocation, realm: Option<&str>) -> String {
    let mut s = format!("relayed address {}", al.relayed);
    if let Some(mapped) = al.mapped {
        s += &format!(" for {mapped}");
    }
    s += &format!(", lifetime {} s", al.lifetime.as_secs());
    if let Some(realm) = realm {
        s += &format!(", realm {realm:?}");
    }
    s
}

fn describe_relayed(r: &Relayed) -> String {
    match r {
        Relayed::Indication { peer, data } => {
            format!("a Data indication from {peer} ({} bytes)", data.len())
        }
        Relayed::Channel { number, data } => {
            format!("ChannelData {number:#06x} ({} bytes)", data.len())
        }
    }
}

fn transport_name(t: ProbeTransport) -> &'static str {
    match t {
        ProbeTransport::Udp => "udp",
        ProbeTransport::Tcp => "tcp",
        ProbeTransport::Tls => "tls",
    }
}

/// The name a TLS server's certificate must be for: `--sni`, else the
/// host of `--server`.
fn tls_name(opts: &Options) -> String {
    opts.sni.clone().unwrap_or_else(|| {
        split_host_port(&opts.server, DEFAULT_TLS_PORT)
            .map_or_else(|_| opts.server.clone(), |(h, _)| h)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_syntax() {
        let hp = |s: &str| split_host_port(s, DEFAULT_PORT).unwrap();
        assert_eq!(hp("turn.example.org"), ("turn.example.org".into(), 3478));
        assert_eq!(hp("127.0.0.1:5000"), ("127.0.0.1".into(), 5000));
        assert_eq!(hp("[2001:db8::1]:3479"), ("2001:db8::1".into(), 3479));
        assert_eq!(hp("[2001:db8::1]"), ("2001:db8::1".into(), 3478));
        assert_eq!(hp("2001:db8::1"), ("2001:db8::1".into(), 3478));
        assert!(split_host_port("h:port", DEFAULT_PORT).is_err());
        assert!(split_host_port("[::1]x", DEFAULT_PORT).is_err());
        assert_eq!(
            resolve("127.0.0.1:9", DEFAULT_PORT).unwrap(),
            ("127.0.0.1:9".parse().unwrap(), false)
        );
    }
}
