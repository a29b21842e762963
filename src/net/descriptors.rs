//! File descriptors: every relay socket and TCP/TLS connection takes one.
//! At start the soft RLIMIT_NOFILE is raised to the hard limit, and a
//! warning says when even that is below what the config can use. The last
//! [`RESERVE`] descriptors are kept for the HTTP endpoint, logs and reloads:
//! a relay socket or connection that would take one of them is refused as
//! if the limit were reached (an Allocate gets 508), which is counted in
//! `turnd_fd_exhausted_total` and logged at most every [`LOG_EVERY`], and
//! `/readyz` turns not-ready while no descriptor is left outside the
//! reserve.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::warn;

use crate::config::Config;
use crate::metrics::Metrics;

/// Descriptors kept free for the HTTP endpoint, logs and reloads.
pub const RESERVE: u64 = 16;
/// The most often running out of descriptors is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Descriptors a worker holds besides its listeners (runtime, epoll,
/// eventfd, timer).
const PER_WORKER: u64 = 4;
/// Descriptors of the process itself: std streams, the supervisor's
/// runtime, signals, the HTTP endpoint and a few in flight.
const BASE: u64 = 32;

/// The soft limit in force (0 until [`raise_limit`] ran: no reserve).
static LIMIT: AtomicU64 = AtomicU64::new(0);

/// Raises the soft RLIMIT_NOFILE to the hard limit (capped by the
/// kernel's fs.nr_open) and returns the soft limit now in force.
pub fn raise_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    let target = lim.rlim_max.min(nr_open);
    if target > lim.rlim_cur {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = target;
        }
    }
    LIMIT.store(lim.rlim_cur, Ordering::Relaxed);
    Ok(lim.rlim_cur)
}

/// The most descriptors `cfg` can use with `workers` workers: one per
/// relay socket (as many as the quota and the port range allow), per
/// TCP/TLS connection (with a TCP or TLS listener) and per listener
/// socket, plus each worker's own and the reserve.
pub fn needed(cfg: &Config, workers: usize) -> u64 {
    let listeners = (cfg.listen.udp.len() + cfg.listen.tcp.len() + cfg.listen.tls.len()) as u64;
    let ports = u64::from(cfg.relay.ports.high - cfg.relay.ports.low) + 1;
    let relays = u64::from(cfg.quota.allocations_total).min(ports);
    let streams = !(cfg.listen.tcp.is_empty() && cfg.listen.tls.is_empty());
    let connections = if streams {
        u64::from(cfg.connections.max_total)
    } else {
        0
    };
    BASE + RESERVE + workers as u64 * (PER_WORKER + listeners) + relays + connections
}

/// Warns when `limit` is below what `cfg` can use.
pub fn warn_if_short(limit: u64, cfg: &Config, workers: usize) {
    let needed = needed(cfg, workers);
    if limit < needed {
        warn!(
            limit,
            needed,
            allocations_total = cfg.quota.allocations_total,
            connections_max_total = cfg.connections.max_total,
            workers,
            "the file descriptor limit (RLIMIT_NOFILE, raised to the hard limit) is below what \
             the config can use: allocations and connections will be refused (508) before the \
             quotas are reached; raise it (LimitNOFILE= in the unit, ulimit -Hn) or lower \
             [quota] allocations_total and [connections] max_total"
        );
    }
}

/// Whether descriptor `fd` is in the reserve.
fn in_reserve(fd: u64) -> bool {
    let limit = LIMIT.load(Ordering::Relaxed);
    limit != 0 && fd >= limit.saturating_sub(RESERVE)
}

/// Whether `e` means no descriptor was left (process or system wide).
pub fn is_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// `socket`, or EMFILE if it took a descriptor of the reserve (the socket
/// is closed then). Descriptors are handed out lowest first, so a socket
/// in the reserve means every descriptor below it is taken.
pub fn outside_reserve<S: AsRawFd>(socket: S) -> io::Result<S> {
    let fd = socket.as_raw_fd();
    if fd >= 0 && in_reserve(fd as u64) {
        return Err(io::Error::from_raw_os_error(libc::EMFILE));
    }
    Ok(socket)
}

/// Whether a descriptor outside the reserve is free now.
pub fn left() -> bool {
    match std::fs::File::open("/dev/null") {
        Ok(f) => !in_reserve(f.as_raw_fd() as u64),
        Err(e) => !is_exhaustion(&e),
    }
}

/// A relay socket at `addr` outside the reserve; running out is counted
/// (an Allocate gets 508) and logged.
pub fn bind_relay(metrics: &Metrics, addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = super::udp::bind_relay(addr).and_then(outside_reserve);
    if let Err(e) = &socket {
        if is_exhaustion(e) {
            exhausted(metrics, "allocate");
        }
    }
    socket
}

/// When running out was last logged, and how often since.
static LAST_LOG: Mutex<Option<Instant>> = Mutex::new(None);
static SINCE_LOG: AtomicU64 = AtomicU64::new(0);

/// Counts one thing refused for want of a descriptor (`operation`:
/// `allocate` or `accept`) and logs it, at most once per [`LOG_EVERY`].
pub fn exhausted(metrics: &Metrics, operation: &'static str) {
    metrics.fd_exhausted.with_label_values(&[operation]).inc();
    let count = SINCE_LOG.fetch_add(1, Ordering::Relaxed) + 1;
    let now = super::clock::now().instant;
    let mut last = LAST_LOG.lock().unwrap_or_else(|e| e.into_inner());
    if last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
        return;
    }
    *last = Some(now);
    SINCE_LOG.store(0, Ordering::Relaxed);
    warn!(
        operation,
        refused = count,
        limit = LIMIT.load(Ordering::Relaxed),
        reserve = RESERVE,
        "out of file descriptors: allocations get 508 and connections are refused; raise \
         LimitNOFILE (ulimit -n) or lower [quota] allocations_total / [connections] max_total \
         (logged at most every 10 s)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_needs_more_than_1024() {
        assert!(needed(&Config::default(), 2) > 1024);
    }
}
