//! The tokio shell around the sans-IO core: UDP listeners, relay sockets,
//! the expiry timer, the HTTP endpoint and signals.

pub mod clock;
pub mod relay;
pub mod stream;
pub mod tls;
mod udp;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::net::UdpSocket;
use tracing::{info, warn};

use crate::config::Config;
use crate::core::{CoreConfig, FiveTuple, RelaySockets, Server, Source, Transmit, Transport};
use crate::metrics::Metrics;
use relay::{RelayTable, Relays};

/// State shared by the shell's tasks.
pub struct Shared {
    server: Mutex<Server>,
    listeners: HashMap<SocketAddr, Arc<UdpSocket>>,
    pub relays: RelayTable,
    pub metrics: Arc<Metrics>,
    /// Writers of open TCP/TLS connections.
    connections: Mutex<HashMap<FiveTuple, tokio::sync::mpsc::Sender<Vec<u8>>>>,
    pub connection_counts: Arc<stream::ConnectionCounts>,
}

impl Shared {
    /// Runs `f` on the core with the shell's relay sockets at hand.
    pub fn with_server<R>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Server, &mut dyn RelaySockets) -> R,
    ) -> R {
        let mut server = self.server.lock().unwrap_or_else(|e| e.into_inner());
        let mut relays = Relays { shared: self };
        f(&mut server, &mut relays)
    }

    pub fn register_connection(&self, ft: FiveTuple, tx: tokio::sync::mpsc::Sender<Vec<u8>>) {
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ft, tx);
    }

    pub fn unregister_connection(&self, ft: &FiveTuple) {
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(ft);
    }

    /// Queues a frame for a TCP/TLS client; a full queue drops it.
    fn send_stream(&self, ft: &FiveTuple, payload: Vec<u8>) {
        let tx = self
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(ft)
            .cloned();
        if tx.is_none_or(|tx| tx.try_send(payload).is_err()) {
            self.metrics
                .dropped_packets
                .with_label_values(&["send_failed"])
                .inc();
        }
    }

    /// Sends what the core produced, emptying `out`.
    pub async fn send_all(&self, out: &mut Vec<Transmit>) {
        for t in out.drain(..) {
            if let Source::Client(ft) = t.source {
                if ft.transport.is_stream() {
                    self.send_stream(&ft, t.payload);
                    continue;
                }
            }
            let socket = match t.source {
                Source::Client(ft) => self.listeners.get(&ft.server).cloned(),
                Source::Relay(addr) => self.relays.get(&addr),
            };
            let Some(socket) = socket else {
                self.metrics
                    .dropped_packets
                    .with_label_values(&["send_failed"])
                    .inc();
                continue;
            };
            if let Err(e) = socket.send_to(&t.payload, t.destination).await {
                tracing::debug!(to = %t.destination, error = %e, "send failed");
                self.metrics
                    .dropped_packets
                    .with_label_values(&["send_failed"])
                    .inc();
            }
        }
    }
}

/// What `run` reports once every socket is bound.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Bound {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    pub tls: Vec<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub relay_address: IpAddr,
}

/// Options of the running daemon that are not in the config file.
#[derive(Debug, Default, Clone)]
pub struct RunOptions {
    /// Write [`Bound`] as JSON here once listening (tests bind port 0).
    pub ready_file: Option<PathBuf>,
    /// Demo mode: the generated REST secret to mint printed credentials from.
    pub demo_secret: Option<crate::config::Secret>,
    /// How long demo credentials stay valid.
    pub demo_ttl: Duration,
}

/// The address put in XOR-RELAYED-ADDRESS: `relay.external`, else
/// `relay.bind` when it is a concrete address, else the address of the
/// interface holding the default route (found with a UDP `connect`, which
/// sends nothing), else loopback with a warning.
pub fn advertised_relay_ip(cfg: &Config) -> IpAddr {
    if let Some(ip) = cfg.relay.external {
        return ip;
    }
    if !cfg.relay.bind.is_unspecified() {
        return cfg.relay.bind;
    }
    let (any, probe): (IpAddr, IpAddr) = if cfg.relay.bind.is_ipv4() {
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
            let ip: IpAddr = if cfg.relay.bind.is_ipv4() {
                Ipv4Addr::LOCALHOST.into()
            } else {
                Ipv6Addr::LOCALHOST.into()
            };
            warn!(relay_address = %ip, "no default route and relay.external is not set: advertising loopback; only local clients can use this relay");
            ip
        }
    }
}

/// Binds everything, then serves until SIGINT or SIGTERM.
pub async fn run(cfg: Config, opts: RunOptions) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let mut listeners = HashMap::new();
    let mut udp_addrs = Vec::new();
    for addr in &cfg.listen.udp {
        let socket = udp::bind_listener(*addr)
            .with_context(|| format!("cannot bind UDP listener on {addr}"))?;
        let local = socket.local_addr()?;
        udp_addrs.push(local);
        listeners.insert(local, Arc::new(socket));
    }
    let certificate = match &cfg.tls {
        Some(tls) if !cfg.listen.tls.is_empty() => {
            Some(Arc::new(tls::Certificate::new(tls.clone())?))
        }
        _ => None,
    };
    let mut stream_listeners = Vec::new();
    let (mut tcp_addrs, mut tls_addrs) = (Vec::new(), Vec::new());
    for (addrs, transport, bound) in [
        (&cfg.listen.tcp, Transport::Tcp, &mut tcp_addrs),
        (&cfg.listen.tls, Transport::Tls, &mut tls_addrs),
    ] {
        for addr in addrs {
            let listener = stream::bind(*addr)
                .with_context(|| format!("cannot bind {transport} listener on {addr}"))?;
            bound.push(listener.local_addr()?);
            stream_listeners.push((listener, transport));
        }
    }
    let advertised = advertised_relay_ip(&cfg);
    let own: Vec<SocketAddr> = udp_addrs
        .iter()
        .chain(&tcp_addrs)
        .chain(&tls_addrs)
        .copied()
        .collect();
    let core_cfg = CoreConfig::from_config(&cfg, advertised, &own);
    if core_cfg.credentials.is_empty() {
        warn!("no [[users]] and no [rest] secrets configured: answering STUN Binding only, refusing every allocation");
    }
    let server = Server::new(core_cfg, metrics.clone(), rand::random());
    let shared = Arc::new(Shared {
        server: Mutex::new(server),
        listeners,
        relays: RelayTable::default(),
        metrics: metrics.clone(),
        connections: Mutex::new(HashMap::new()),
        connection_counts: Arc::default(),
    });

    let ready = Arc::new(AtomicBool::new(true));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut http_addr = None;
    if let Some(addr) = cfg.http.listen {
        let listener = crate::http::bind(addr).await?;
        http_addr = Some(listener.local_addr()?);
        let state = crate::http::HttpState {
            metrics: metrics.clone(),
            ready: ready.clone(),
        };
        let mut rx = stop_rx.clone();
        tokio::spawn(crate::http::serve(listener, state, async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }));
    }
    for socket in shared.listeners.values() {
        tokio::spawn(udp::serve(shared.clone(), socket.clone()));
    }
    for (listener, transport) in stream_listeners {
        let cert = (transport == Transport::Tls)
            .then(|| certificate.clone())
            .flatten();
        tokio::spawn(stream::serve(
            shared.clone(),
            listener,
            transport,
            cert,
            cfg.connections.clone(),
        ));
    }
    tokio::spawn(expire(shared.clone()));
    tokio::spawn(reload_on_hangup(certificate.clone(), metrics.clone()));

    let bound = Bound {
        udp: udp_addrs,
        tcp: tcp_addrs,
        tls: tls_addrs,
        http: http_addr,
        relay_address: advertised,
    };
    info!(udp = ?bound.udp, tcp = ?bound.tcp, tls = ?bound.tls, http = ?bound.http, relay_address = %advertised, ports = %cfg.relay.ports, realm = %cfg.realm, "turnd ready");
    if let Some(path) = &opts.ready_file {
        let json = serde_json::to_string(&bound)?;
        std::fs::write(path, json)
            .with_context(|| format!("cannot write ready file {}", path.display()))?;
    }

    if let Some(secret) = &opts.demo_secret {
        print_demo(secret, opts.demo_ttl, &bound);
    }

    wait_for_stop().await;
    ready.store(false, std::sync::atomic::Ordering::SeqCst);
    info!("stopping: ending allocations");
    shared.with_server(|server, relays| server.shutdown(relays));
    let _ = stop_tx.send(true);
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
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

/// SIGHUP: re-reads the TLS certificate (Let's Encrypt renewals) without
/// touching live sessions. A bad new certificate keeps the old one.
async fn reload_on_hangup(certificate: Option<Arc<tls::Certificate>>, metrics: Arc<Metrics>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return warn!("cannot listen for SIGHUP: reload disabled");
    };
    while hup.recv().await.is_some() {
        info!("SIGHUP received: reloading");
        let Some(cert) = &certificate else { continue };
        match cert.reload() {
            Ok(()) => {
                metrics.tls_reloads.with_label_values(&["success"]).inc();
                info!("TLS certificate reloaded");
            }
            Err(e) => {
                metrics.tls_reloads.with_label_values(&["failure"]).inc();
                warn!(error = %format!("{e:#}"), "TLS certificate reload failed: keeping the previous certificate");
            }
        }
    }
}

/// Calls the core's expiry on time.
async fn expire(shared: Arc<Shared>) {
    loop {
        let now = clock::now();
        let next = shared.with_server(|server, relays| {
            server.handle_timeout(now, relays);
            server.poll_timeout()
        });
        let wait = next.map_or(Duration::from_secs(1), |t| {
            t.saturating_duration_since(now.instant)
        });
        tokio::time::sleep(wait.clamp(Duration::from_millis(10), Duration::from_secs(1))).await;
    }
}

async fn wait_for_stop() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
    }
}
