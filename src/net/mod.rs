//! The tokio shell around the sans-IO core: worker threads (one per core,
//! each with its own listeners, relay sockets and engine), the HTTP
//! endpoint, and signals.

pub mod batch;
pub mod clock;
pub mod conn_limits;
pub mod control;
mod descriptors;
mod holders;
mod icmp;
pub mod offload;
pub mod stream;
pub mod tcp_relay;
pub mod tls;
mod udp;
mod worker;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{Config, Connections};
use crate::core::global::Global;
use crate::core::{CoreConfig, Server, Transport};
use crate::metrics::Metrics;

/// What every worker thread shares: counters and cross-worker tables, none
/// of them on the per-packet path.
pub struct Process {
    pub metrics: Arc<Metrics>,
    /// Sockets held for RESERVATION-TOKEN, until an allocation claims them.
    reserved: Mutex<HashMap<SocketAddr, std::net::UdpSocket>>,
    pub connection_counts: Arc<conn_limits::ConnectionCounts>,
    /// TCP/TLS limits, replaced on reload.
    limits: std::sync::RwLock<Connections>,
    pub heartbeats: control::Heartbeats,
    /// The kernel fast path, when attached.
    pub offload: Option<Arc<offload::Offload>>,
    /// RFC 6062 peer sockets, shared: a ConnectionBind may reach any worker.
    pub tcp: tcp_relay::Slots,
}

impl Process {
    fn reserved(&self) -> MutexGuard<'_, HashMap<SocketAddr, std::net::UdpSocket>> {
        self.reserved.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The TCP/TLS limits in force.
    pub fn limits(&self) -> Connections {
        self.limits
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// What `run` reports once every socket is bound.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Bound {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    pub tls: Vec<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub relay_address: IpAddr,
    pub workers: usize,
}

/// Options of the running daemon that are not in the config file.
#[derive(Default, Clone)]
pub struct RunOptions {
    /// Write [`Bound`] as JSON here once listening (tests bind port 0).
    pub ready_file: Option<PathBuf>,
    /// Demo mode: the generated REST secret to mint printed credentials from.
    pub demo_secret: Option<crate::config::Secret>,
    /// How long demo credentials stay valid.
    pub demo_ttl: Duration,
    /// The config file, re-read on SIGHUP (none in demo mode).
    pub config_path: Option<PathBuf>,
    /// Applies a reloaded `[log] level`.
    pub log_reload: Option<control::LogReload>,
}

/// The sockets one worker serves.
#[derive(Default)]
struct WorkerSockets {
    udp: Vec<(SocketAddr, std::net::UdpSocket)>,
    streams: Vec<(std::net::TcpListener, Transport)>,
}

/// How many workers: `workers` from the config, or one per core.
fn worker_count(cfg: &Config) -> usize {
    match cfg.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n as usize,
    }
}

/// Binds everything, then serves until SIGINT or SIGTERM.
pub fn run(cfg: Config, opts: RunOptions) -> anyhow::Result<()> {
    let workers = worker_count(&cfg);
    match descriptors::raise_limit() {
        Ok(limit) => descriptors::warn_if_short(limit, &cfg, workers),
        Err(e) => warn!(error = %e, "cannot read the file descriptor limit (RLIMIT_NOFILE)"),
    }
    let metrics = Arc::new(Metrics::new());
    let mut per_worker: Vec<WorkerSockets> =
        (0..workers).map(|_| WorkerSockets::default()).collect();
    let mut udp_addrs = Vec::new();
    for addr in &cfg.listen.udp {
        let (bound, sockets) =
            udp::bind_group(*addr, workers, udp::bind_listener, |s| s.local_addr())
                .map_err(|e| bind_error(holders::Proto::Udp, "UDP", *addr, e))?;
        refuse_shared(holders::Proto::Udp, "UDP", bound)?;
        udp_addrs.push(bound);
        for (w, socket) in per_worker.iter_mut().zip(sockets) {
            w.udp.push((bound, socket));
        }
    }
    let (mut tcp_addrs, mut tls_addrs) = (Vec::new(), Vec::new());
    for (addrs, transport, out) in [
        (&cfg.listen.tcp, Transport::Tcp, &mut tcp_addrs),
        (&cfg.listen.tls, Transport::Tls, &mut tls_addrs),
    ] {
        for addr in addrs {
            let kind = transport.to_string().to_uppercase();
            let (bound, listeners) =
                udp::bind_group(*addr, workers, stream::bind, |l| l.local_addr())
                    .map_err(|e| bind_error(holders::Proto::Tcp, &kind, *addr, e))?;
            refuse_shared(holders::Proto::Tcp, &kind, bound)?;
            out.push(bound);
            for (w, listener) in per_worker.iter_mut().zip(listeners) {
                w.streams.push((listener, transport));
            }
        }
    }
    let certificate = match &cfg.tls {
        Some(tls) if !cfg.listen.tls.is_empty() => {
            Some(Arc::new(tls::Certificate::new(tls.clone())?))
        }
        _ => None,
    };
    // Bound before any worker starts, so a taken port fails the start
    // cleanly, naming the address.
    let http_listener = cfg.http.listen.map(crate::http::bind).transpose()?;
    let advertised = advertised_relay_ips(&cfg)?;
    let own: Vec<SocketAddr> = udp_addrs
        .iter()
        .chain(&tcp_addrs)
        .chain(&tls_addrs)
        .copied()
        .collect();
    let mut core_cfg = crate::config::engine::core_config(&cfg, &advertised, &own);
    core_cfg.workers = workers;
    for warning in cfg.warnings() {
        warn!("{warning}");
    }
    if core_cfg.credentials.is_empty() {
        warn!("no [[users]] and no [rest] secrets configured: answering STUN Binding only, refusing every allocation");
    }
    // The self-test page's credentials, accepted while the admin API is on.
    let selftest_secret = (cfg.admin.listen.is_some() && cfg.admin.token_file.is_some())
        .then(crate::selftest::fresh_secret);
    core_cfg = core_cfg.with_selftest_secret(selftest_secret.as_deref());
    let process = Arc::new(Process {
        metrics: metrics.clone(),
        reserved: Mutex::default(),
        connection_counts: Arc::default(),
        limits: std::sync::RwLock::new(cfg.connections.clone()),
        heartbeats: control::Heartbeats::new(workers),
        offload: offload::Offload::start(&cfg, &advertised, &metrics),
        tcp: Default::default(),
    });
    let global = Arc::new(Global::default());
    let (config_tx, config_rx) = watch::channel(Arc::new(core_cfg.clone()));
    let (phase_tx, phase_rx) = watch::channel(control::Phase::Running);
    let admin_listener = cfg
        .admin
        .listen
        .map(|addr| {
            std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .with_context(|| format!("cannot bind the admin API on {addr}"))
        })
        .transpose()?;
    let mut admin_senders = Vec::new();
    let mut threads = Vec::new();
    for (id, sockets) in per_worker.into_iter().enumerate() {
        let (admin_tx, admin_rx) = tokio::sync::mpsc::unbounded_channel();
        admin_senders.push(admin_tx);
        let server = Server::new(
            core_cfg.clone(),
            metrics.clone(),
            global.clone(),
            rand::random(),
        );
        let process = process.clone();
        let certificate = certificate.clone();
        let (config, phase) = (config_rx.clone(), phase_rx.clone());
        let thread = std::thread::Builder::new()
            .name(format!("turnd-worker-{id}"))
            .spawn(move || {
                run_worker(
                    id,
                    process,
                    server,
                    sockets,
                    certificate,
                    (config, phase, admin_rx),
                )
            })
            .context("cannot start a worker thread")?;
        threads.push(thread);
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let admin = match (&admin_listener, &cfg.admin.token_file, &selftest_secret) {
        (Some(_), Some(token), Some(secret)) => Some(Arc::new(crate::admin::Admin::new(
            token,
            &cfg.admin.state_dir,
            admin_senders,
            crate::selftest::SelfTest::new(
                secret.clone(),
                cfg.rest.max_ttl_s,
                cfg.admin.selftest_host.as_deref(),
                advertised.primary().unwrap_or(Ipv4Addr::LOCALHOST.into()),
                (&udp_addrs, &tcp_addrs, &tls_addrs),
            ),
        )?)),
        _ => None,
    };
    let ready = Arc::new(AtomicBool::new(true));
    let result = runtime.block_on(async {
        let signals = control::Signals::new()?;
        if let Some(offload) = process.offload.clone() {
            // The kernel's counters into turnd_relayed_*, once a second.
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    offload.publish();
                }
            });
        }
        let mut http_addr = None;
        if let Some(listener) = http_listener {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            http_addr = Some(listener.local_addr()?);
            let state = crate::http::HttpState {
                metrics: metrics.clone(),
                ready: ready.clone(),
            };
            let mut rx = phase_rx.clone();
            tokio::spawn(crate::http::serve(listener, state, async move {
                let _ = rx.wait_for(|p| *p == control::Phase::Stop).await;
            }));
        }
        let mut admin_addr = None;
        if let (Some(listener), Some(admin)) = (admin_listener, admin) {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            admin_addr = Some(listener.local_addr()?);
            tokio::spawn(crate::admin::serve(listener, admin));
        }
        let bound = Bound {
            admin: admin_addr,
            udp: udp_addrs,
            tcp: tcp_addrs,
            tls: tls_addrs,
            http: http_addr,
            relay_address: advertised
                .primary()
                .unwrap_or(Ipv4Addr::LOCALHOST.into()),
            workers,
        };
        // One event per listener: every field a plain value, in text and
        // in JSON alike.
        for (transport, addrs) in [("udp", &bound.udp), ("tcp", &bound.tcp), ("tls", &bound.tls)] {
            for addr in addrs {
                info!(transport, %addr, "listening");
            }
        }
        let http = bound.http.map_or_else(|| "off".to_owned(), |a| a.to_string());
        info!(udp = bound.udp.len(), tcp = bound.tcp.len(), tls = bound.tls.len(), %http, relay_address = %advertised, ports = %cfg.relay.ports, realm = %cfg.realm, workers, "turnd ready");
        if let Some(path) = &opts.ready_file {
            let json = serde_json::to_string(&bound)?;
            // Written whole, then renamed: a reader never sees half of it.
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, json)
                .and_then(|()| std::fs::rename(&tmp, path))
                .with_context(|| format!("cannot write ready file {}", path.display()))?;
        }
        if let Some(secret) = &opts.demo_secret {
            print_demo(secret, opts.demo_ttl, &bound);
        }
        let supervisor = control::Supervisor {
            config: cfg.clone(),
            config_path: opts.config_path.clone(),
            advertised,
            own,
            certificate: certificate.clone(),
            process: process.clone(),
            global: global.clone(),
            ready: ready.clone(),
            config_tx,
            phase_tx,
            log_reload: opts.log_reload.clone(),
            selftest_secret,
        };
        supervisor.run(signals).await
    });
    info!("stopping: ending allocations");
    for thread in threads {
        let _ = thread.join();
    }
    // Let the HTTP endpoint finish its last responses.
    runtime.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
    result
}

/// Why a listener could not be bound, naming who holds the port when that
/// is the reason.
fn bind_error(
    proto: holders::Proto,
    kind: impl std::fmt::Display,
    addr: SocketAddr,
    e: std::io::Error,
) -> anyhow::Error {
    let held = match e.kind() {
        std::io::ErrorKind::AddrInUse => holders::others(proto, addr),
        _ => Vec::new(),
    };
    if held.is_empty() {
        return anyhow::Error::new(e).context(format!("cannot bind {kind} listener on {addr}"));
    }
    anyhow::anyhow!(
        "cannot bind {kind} listener on {addr}: {e}: port {} is held by {}",
        addr.port(),
        holders::describe(&held)
    )
}

/// Fails when another process has a socket on a listener port (bound with
/// SO_REUSEPORT like ours): the kernel would hand it part of the clients.
fn refuse_shared(
    proto: holders::Proto,
    kind: impl std::fmt::Display,
    bound: SocketAddr,
) -> anyhow::Result<()> {
    let held = holders::others(proto, bound);
    if held.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "{kind} listener port {} ({bound}) is also held by {}: the kernel would split clients \
         between that process and this one (SO_REUSEPORT); stop it or choose another port",
        bound.port(),
        holders::describe(&held)
    )
}

/// One worker thread: a single-threaded runtime serving its sockets.
fn run_worker(
    id: usize,
    process: Arc<Process>,
    server: Server,
    sockets: WorkerSockets,
    certificate: Option<Arc<tls::Certificate>>,
    (config, phase, admin): (
        watch::Receiver<Arc<CoreConfig>>,
        watch::Receiver<control::Phase>,
        tokio::sync::mpsc::UnboundedReceiver<crate::admin::WorkerCmd>,
    ),
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return tracing::error!(error = %e, "cannot start a worker runtime"),
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let mut listeners = HashMap::new();
        for (addr, socket) in sockets.udp {
            match batch::BatchSocket::new(socket) {
                Ok(udp) => {
                    listeners.insert(addr, std::rc::Rc::new(udp));
                }
                Err(e) => return tracing::error!(%addr, error = %e, "cannot use a listener socket"),
            }
        }
        let addrs: Vec<SocketAddr> = listeners.keys().copied().collect();
        let worker = worker::Worker::new(process, server, listeners);
        for addr in addrs {
            tokio::task::spawn_local(worker::serve_listener(worker.clone(), addr));
        }
        for (listener, transport) in sockets.streams {
            let listener = match listener
                .set_nonblocking(true)
                .and_then(|_| tokio::net::TcpListener::from_std(listener))
            {
                Ok(l) => l,
                Err(e) => return tracing::error!(error = %e, "cannot use a TCP listener socket"),
            };
            let cert = (transport == Transport::Tls)
                .then(|| certificate.clone())
                .flatten();
            tokio::task::spawn_local(stream::serve(Rc::clone(&worker), listener, transport, cert));
        }
        worker::expire(worker, id, config, phase, admin).await;
    });
}

/// The addresses put in XOR-RELAYED-ADDRESS, one per family of
/// `relay.bind` ([`advertised_relay_ip`]). Fails when a family of
/// `relay.bind` cannot be bound at all (IPv6 disabled on the host), which
/// would otherwise fail every allocation of that family.
pub fn advertised_relay_ips(cfg: &Config) -> anyhow::Result<crate::config::FamilyAddrs> {
    let mut out = crate::config::FamilyAddrs::default();
    for bind in cfg.relay.bind.iter() {
        if let Err(e) = std::net::UdpSocket::bind(SocketAddr::new(bind, 0)) {
            anyhow::bail!(
                "relay.bind: cannot bind a relay socket on {bind} ({e}){}",
                if bind.is_ipv6() {
                    "; if IPv6 is disabled on this host, remove the IPv6 address from relay.bind"
                } else {
                    ""
                }
            );
        }
        let _ = out.add("relay.bind", advertised_relay_ip(cfg, bind));
    }
    Ok(out)
}

/// The address put in XOR-RELAYED-ADDRESS for relay sockets bound at
/// `bind`: `relay.external` of its family, else `bind` when it is a
/// concrete address, else the address of the interface holding the
/// default route of its family (found with a UDP `connect`, which sends
/// nothing), else loopback with a warning.
pub fn advertised_relay_ip(cfg: &Config, bind: IpAddr) -> IpAddr {
    if let Some(ip) = cfg.relay.external.of(bind.is_ipv6()) {
        return ip;
    }
    if !bind.is_unspecified() {
        return bind;
    }
    let (any, probe): (IpAddr, IpAddr) = if bind.is_ipv4() {
        (
            Ipv4Addr::UNSPECIFIED.into(),
            Ipv4Addr::new(192, 0, 2, 1).into(),
        )
    } else {
        (
            Ipv6Addr::UNSPECIFIED.into(),
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into(),
        )
    };
    let detected = std::net::UdpSocket::bind(SocketAddr::new(any, 0))
        .and_then(|s| s.connect(SocketAddr::new(probe, 9)).map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip());
    match detected {
        Ok(ip) if !ip.is_unspecified() => {
            warn!(relay_address = %ip, "relay.external is not set: advertising the address of the default route's interface; set relay.external if clients reach this host through NAT");
            ip
        }
        _ => {
            let ip: IpAddr = if bind.is_ipv4() {
                Ipv4Addr::LOCALHOST.into()
            } else {
                Ipv6Addr::LOCALHOST.into()
            };
            warn!(relay_address = %ip, "no default route and relay.external is not set: advertising loopback; only local clients can use this relay");
            ip
        }
    }
}

/// Prints a ready `iceServers` snippet for demo mode (no config file).
fn print_demo(secret: &crate::config::Secret, ttl: Duration, bound: &Bound) {
    let reachable = |addrs: &[SocketAddr]| -> Vec<SocketAddr> {
        addrs
            .iter()
            .map(|a| {
                if a.ip().is_unspecified() {
                    SocketAddr::new(bound.relay_address, a.port())
                } else {
                    *a
                }
            })
            .collect()
    };
    let expires = clock::now().unix_secs + ttl.as_secs();
    let credential = crate::ice::mint(secret.expose(), "demo", expires);
    println!(
        "turnd is running on built-in defaults with a REST secret generated at start (no config file).\n\
         These credentials are valid for {} hours; put this in your RTCPeerConnection configuration:\n{}",
        ttl.as_secs() / 3600,
        crate::ice::ice_servers_json(
            crate::ice::urls(&reachable(&bound.udp), &reachable(&bound.tcp), &reachable(&bound.tls), None),
            &credential
        )
    );
}
