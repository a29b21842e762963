//! Running as a service: SIGHUP reloads the config (users, secrets, peer
//! policy, quotas, limits, log level, certificate), ending only what the
//! new config removes; SIGTERM drains (unready at once, no new allocations,
//! existing ones relay until they end or the drain timeout); a second
//! SIGTERM exits at once. Readiness, systemd notify and the watchdog live
//! here too.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::{tls, Process};
use crate::config::Config;
use crate::core::global::Global;
use crate::core::CoreConfig;

/// What the workers are told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// Refuse new allocations (pointing at the alternate server, if any).
    Draining(crate::core::Alternates),
    /// End every allocation and exit.
    Stop,
}

/// Changes a reloaded log filter; returns why it could not.
pub type LogReload = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The supervisor's view of the process.
pub struct Supervisor {
    pub config: Config,
    pub config_path: Option<PathBuf>,
    pub advertised: crate::config::FamilyAddrs,
    pub own: Vec<SocketAddr>,
    pub certificate: Option<Arc<tls::Certificate>>,
    pub process: Arc<Process>,
    pub global: Arc<Global>,
    pub ready: Arc<AtomicBool>,
    pub config_tx: watch::Sender<Arc<CoreConfig>>,
    pub phase_tx: watch::Sender<Phase>,
    pub log_reload: Option<LogReload>,
    /// The self-test page's secret, kept across reloads.
    pub selftest_secret: Option<String>,
}

/// The signals turnd handles, registered before it says it is ready (a
/// SIGHUP right after the ready file must reload, not kill).
pub struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Registers the handlers; needs a runtime.
    pub fn new() -> anyhow::Result<Self> {
        Ok(Signals {
            hup: signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?,
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
        })
    }
}

/// One counter per worker, bumped by its timer loop: the watchdog pings
/// systemd only while every worker is turning.
#[derive(Debug, Default)]
pub struct Heartbeats(pub Vec<AtomicU64>);

impl Heartbeats {
    pub fn new(workers: usize) -> Self {
        Heartbeats((0..workers).map(|_| AtomicU64::new(0)).collect())
    }

    pub fn beat(&self, worker: usize) {
        if let Some(h) = self.0.get(worker) {
            h.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> Vec<u64> {
        self.0.iter().map(|h| h.load(Ordering::Relaxed)).collect()
    }
}

impl Supervisor {
    /// Serves signals until the process should exit.
    pub async fn run(mut self, signals: Signals) -> anyhow::Result<()> {
        let Signals {
            mut hup,
            mut term,
            mut int,
        } = signals;
        let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
        let watchdog = sd_notify::watchdog_enabled();
        let mut last_beats = self.process.heartbeats.snapshot();
        let mut tick = tokio::time::interval(watchdog.map_or(Duration::from_millis(500), |w| {
            (w / 3).min(Duration::from_millis(500))
        }));
        loop {
            tokio::select! {
                _ = hup.recv() => self.reload(),
                _ = term.recv() => { info!("SIGTERM received"); break; }
                _ = int.recv() => { info!("SIGINT received"); break; }
                _ = tick.tick() => {
                    self.update_readiness();
                    if watchdog.is_some() {
                        let beats = self.process.heartbeats.snapshot();
                        if beats.iter().zip(&last_beats).all(|(now, before)| now != before) {
                            let _ = sd_notify::notify(&[NotifyState::Watchdog]);
                            last_beats = beats;
                        }
                    }
                }
            }
        }
        self.drain(&mut term, &mut int).await;
        Ok(())
    }

    /// `/readyz`: not draining, and relay ports, allocation quota and file
    /// descriptors left.
    fn update_readiness(&self) {
        let m = &self.process.metrics;
        let running = *self.phase_tx.borrow() == Phase::Running;
        let ports_left = m.relay_ports_in_use.get() < m.relay_ports_total.get();
        let quota_left = self.global.total() < self.config.quota.allocations_total as usize;
        let descriptors_left = super::descriptors::left();
        let ready = running && ports_left && quota_left && descriptors_left;
        if self.ready.swap(ready, Ordering::SeqCst) != ready {
            info!(
                ready,
                running, ports_left, quota_left, descriptors_left, "readiness changed"
            );
        }
        m.ready.set(i64::from(ready));
    }

    /// SIGHUP: a new config is checked as a whole and applied, or refused
    /// as a whole.
    fn reload(&mut self) {
        info!("SIGHUP received: reloading");
        let _ = sd_notify::notify(&[NotifyState::Reloading]);
        let metrics = self.process.metrics.clone();
        match self.try_reload() {
            Ok(()) => metrics.config_reloads.with_label_values(&["success"]).inc(),
            Err(e) => {
                metrics.config_reloads.with_label_values(&["failure"]).inc();
                let error = crate::config::one_line(&format!("{e:#}"));
                error!(%error, "reload refused: the previous config stays in use");
            }
        }
        let _ = sd_notify::notify(&[NotifyState::Ready]);
    }

    fn try_reload(&mut self) -> anyhow::Result<()> {
        let Some(path) = &self.config_path else {
            // Demo mode: nothing on disk; the certificate may still change.
            return self.reload_certificate(None);
        };
        let new = Config::load(path)?;
        for warning in new.warnings() {
            warn!("{warning}");
        }
        let filter = self.log_filter_change(&new);
        if let Some(level) = &filter {
            crate::log_filter::parse(level).map_err(|e| anyhow::anyhow!("log.level: {e}"))?;
        }
        let restart: Vec<&str> = [
            ("listen", self.config.listen != new.listen),
            ("relay", self.config.relay != new.relay),
            ("http", self.config.http != new.http),
            ("workers", self.config.workers != new.workers),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect();
        if !restart.is_empty() {
            warn!(keys = ?restart, "these settings changed but need a restart to apply; the running values stay");
        }
        // The certificate first: if it is bad, nothing else changes.
        self.reload_certificate(new.tls.clone())
            .context("the new [tls] certificate is not usable")?;
        if let (Some(level), Some(set)) = (&filter, &self.log_reload) {
            set(level).map_err(|e| anyhow::anyhow!("log.level {level:?}: {e}"))?;
        }
        let core = crate::config::engine::core_config(&new, &self.advertised, &self.own)
            .with_selftest_secret(self.selftest_secret.as_deref());
        self.config_tx.send_replace(Arc::new(core));
        *self
            .process
            .limits
            .write()
            .unwrap_or_else(|e| e.into_inner()) = new.connections.clone();
        info!(
            users = new.users.len(),
            rest_secrets = new.rest.secrets.len(),
            "config reloaded"
        );
        // Keep the running values of what needs a restart, so the next
        // reload compares against what is really in use.
        let mut applied = new;
        applied.listen = self.config.listen.clone();
        applied.relay = self.config.relay.clone();
        applied.http = self.config.http.clone();
        applied.workers = self.config.workers;
        self.config = applied;
        Ok(())
    }

    fn log_filter_change(&self, new: &Config) -> Option<String> {
        (new.log.level != self.config.log.level).then(|| new.log.level.clone())
    }

    fn reload_certificate(&self, source: Option<crate::config::Tls>) -> anyhow::Result<()> {
        let Some(cert) = &self.certificate else {
            return Ok(());
        };
        let metrics = &self.process.metrics;
        match cert.reload(source) {
            Ok(()) => {
                metrics.tls_reloads.with_label_values(&["success"]).inc();
                info!("TLS certificate reloaded");
                Ok(())
            }
            Err(e) => {
                metrics.tls_reloads.with_label_values(&["failure"]).inc();
                warn!(error = %format!("{e:#}"), "TLS certificate reload failed: keeping the previous certificate");
                Err(e)
            }
        }
    }

    /// SIGTERM: unready at once, refuse new allocations, wait for the live
    /// ones (or the timeout, or a second signal), then stop the workers.
    async fn drain(
        &self,
        term: &mut tokio::signal::unix::Signal,
        int: &mut tokio::signal::unix::Signal,
    ) {
        self.ready.store(false, Ordering::SeqCst);
        let m = &self.process.metrics;
        m.ready.set(0);
        let timeout = Duration::from_secs(self.config.drain.timeout_s.into());
        let live = self.global.total();
        if !timeout.is_zero() && live > 0 {
            m.draining.set(1);
            let _ = sd_notify::notify(&[NotifyState::Stopping, NotifyState::Status("draining")]);
            self.phase_tx
                .send_replace(Phase::Draining(self.config.drain.alternate_server));
            info!(
                allocations = live,
                timeout_s = timeout.as_secs(),
                "draining: no new allocations; waiting for live ones to end"
            );
            if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                // Someone at a terminal pressed Ctrl-C: say why nothing ends.
                eprintln!(
                    "turnd: draining: waiting up to {} s for {live} allocation(s) to end; \
                     press Ctrl-C again to exit now",
                    timeout.as_secs()
                );
            }
            let deadline = tokio::time::Instant::now() + timeout;
            let mut poll = tokio::time::interval(Duration::from_millis(200));
            loop {
                tokio::select! {
                    _ = term.recv() => { info!("second SIGTERM: exiting now"); break; }
                    _ = int.recv() => { info!("SIGINT while draining: exiting now"); break; }
                    _ = tokio::time::sleep_until(deadline) => {
                        info!(allocations = self.global.total(), "drain timeout: ending the remaining allocations");
                        break;
                    }
                    _ = poll.tick() => if self.global.total() == 0 {
                        info!("drained: no allocation left");
                        break;
                    }
                }
            }
        } else {
            let _ = sd_notify::notify(&[NotifyState::Stopping]);
        }
        self.phase_tx.send_replace(Phase::Stop);
    }
}
