//! Every Prometheus metric turnd exports, declared in one place.
//!
//! [`Metrics`] owns its own [`Registry`] (never the process-global one), so a
//! test can build as many servers as it likes and each scrape shows only its
//! own numbers. The core and the shell increment the public fields directly;
//! [`crate::http`] serves [`Metrics::encode`] on `/metrics`.
//!
//! **The rule: labels are bounded.** A label value comes from one of the
//! fixed vocabularies below ([`TRANSPORTS`], [`END_REASONS`], ...) or, for
//! `turnd_requests_total{result}`, from the RFC's small set of error codes.
//! Never put a username, a realm, an IP address or a port in a label: every
//! distinct value is a new time series kept forever by this process and by
//! Prometheus. Per-client detail belongs in `tracing` logs.
//!
//! Every listed label value is created at start-up, so each series reads `0`
//! before the first packet instead of being absent (dashboards and `rate()`
//! need no `or vector(0)`, and tests can compare before and after).
//!
//! On a per-packet path, resolve a child once (`with_label_values` returns a
//! cheap handle sharing the same atomic) and keep it, rather than hashing the
//! label values on every packet.

use std::fmt;

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

/// `transport` label values: how the client reached us.
pub const TRANSPORTS: &[&str] = &["udp", "tcp", "tls"];
/// `reason` label values of `turnd_allocations_ended_total`.
pub const END_REASONS: &[&str] = &[
    "expired", "deleted", "closed", "shutdown", "reload", "admin", "revoked",
];
/// `direction` label values; see [`Direction`].
pub const DIRECTIONS: &[&str] = &["client_to_peer", "peer_to_client"];
/// Address families of relayed addresses (`family` label).
pub const FAMILIES: &[&str] = &["ipv4", "ipv6"];
/// `method` label values of `turnd_requests_total`.
pub const METHODS: &[&str] = &[
    "binding",
    "allocate",
    "refresh",
    "create_permission",
    "channel_bind",
    "connect",
    "connection_bind",
    "other",
];
/// `result` label value of a request answered with a success response; an
/// error response uses its code ("401", "438", ...).
pub const RESULT_SUCCESS: &str = "success";
/// `reason` label values of `turnd_auth_failures_total`.
pub const AUTH_FAILURE_REASONS: &[&str] = &[
    "missing_integrity",
    "bad_request",
    "stale_nonce",
    "unknown_user",
    "expired_credential",
    "bad_username",
    "credential_lifetime",
    "bad_integrity",
    "relay_disabled",
    "revoked",
];
/// `reason` label values of `turnd_peer_denied_total`.
pub const PEER_DENIED_REASONS: &[&str] = &[
    "special_range",
    "configured",
    "own_address",
    "refusal_limit",
];
/// `kind` label values of `turnd_quota_rejections_total`.
pub const QUOTA_KINDS: &[&str] = &[
    "user",
    "total",
    "permissions",
    "channels",
    "relay_ports",
    "bandwidth",
    "tcp_connections",
];
/// `kind` label values of `turnd_log_lines_suppressed_total`.
pub const AUDIT_KINDS: &[&str] = &["auth_failure", "quota", "peer_denied"];
/// `reason` label values of `turnd_dropped_packets_total`.
pub const DROP_REASONS: &[&str] = &[
    "malformed",
    "not_stun",
    "bad_fingerprint",
    "no_allocation",
    "no_permission",
    "no_channel",
    "unknown_indication",
    "unsupported_method",
    "peer_family",
    "icmp_ignored",
    "too_big",
    "send_failed",
    "rate_limited",
    "bandwidth_cap",
];

/// `reason` label values of `turnd_connections_rejected_total`: why a TCP
/// or TLS connection was refused or cut.
pub const CONNECTION_REJECT_REASONS: &[&str] = &[
    "per_ip_limit",
    "per_prefix_limit",
    "total_limit",
    "memory_limit",
    "handshake_timeout",
    "tls_handshake",
    "idle_timeout",
    "write_timeout",
    "frame_timeout",
    "frame_too_large",
    "garbage",
];
/// `result` label values of `turnd_tls_reloads_total`.
pub const RELOAD_RESULTS: &[&str] = &["success", "failure"];
/// `operation` of `turnd_fd_exhausted_total`: an Allocate answered 508, a
/// TCP/TLS connection closed on accept.
pub const FD_EXHAUSTED_OPERATIONS: &[&str] = &["allocate", "accept"];

/// Which way relayed data flows, for the `direction` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the TURN client, through the relay, to a peer (Send indication or ChannelData).
    ClientToPeer,
    /// From a peer, arriving on the relayed address, to the TURN client.
    PeerToClient,
}

impl Direction {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ClientToPeer => "client_to_peer",
            Direction::PeerToClient => "peer_to_client",
        }
    }
}

/// All of turnd's metrics, registered in their own [`Registry`].
pub struct Metrics {
    registry: Registry,
    /// `turnd_allocations_active{transport}`.
    pub allocations_active: IntGaugeVec,
    /// `turnd_allocations_created_total{transport}`.
    pub allocations_created: IntCounterVec,
    /// `turnd_allocations_ended_total{transport,reason}`, reason in [`END_REASONS`].
    pub allocations_ended: IntCounterVec,
    /// `turnd_relayed_packets_total{direction}`.
    pub relayed_packets: IntCounterVec,
    /// `turnd_relayed_bytes_total{direction}`: application payload bytes.
    pub relayed_bytes: IntCounterVec,
    /// `turnd_binding_requests_total{transport}`.
    pub binding_requests: IntCounterVec,
    /// `turnd_requests_total{method,result}`, method in [`METHODS`], result
    /// [`RESULT_SUCCESS`] or the error code.
    pub requests: IntCounterVec,
    /// `turnd_auth_failures_total{reason}`, reason in [`AUTH_FAILURE_REASONS`].
    pub auth_failures: IntCounterVec,
    /// `turnd_peer_denied_total{reason}`, reason in [`PEER_DENIED_REASONS`].
    pub peer_denied: IntCounterVec,
    /// `turnd_quota_rejections_total{kind}`, kind in [`QUOTA_KINDS`].
    pub quota_rejections: IntCounterVec,
    /// `turnd_dropped_packets_total{reason}`, reason in [`DROP_REASONS`].
    pub dropped_packets: IntCounterVec,
    /// `turnd_icmp_relayed_total`: ICMP errors told to clients in Data
    /// indications (RFC 8656 §11.5).
    pub icmp_relayed: IntCounter,
    /// `turnd_log_lines_suppressed_total{kind}`, kind in [`AUDIT_KINDS`].
    pub log_lines_suppressed: IntCounterVec,
    /// `turnd_relay_ports_in_use`.
    pub relay_ports_in_use: IntGauge,
    /// `turnd_relay_ports_configured`: size of the configured relay port range.
    pub relay_ports_total: IntGauge,
    /// `turnd_relayed_addresses_active{family}`: relayed transport
    /// addresses of live allocations (a dual allocation has one per family).
    pub relayed_addresses_active: IntGaugeVec,
    /// `turnd_relayed_ipv6_packets_total{direction}`: of the relayed
    /// packets, those through IPv6 relayed addresses.
    pub relayed_ipv6_packets: IntCounterVec,
    /// `turnd_relayed_ipv6_bytes_total{direction}`.
    pub relayed_ipv6_bytes: IntCounterVec,
    /// `turnd_relayed_addresses_created_total{family}`.
    pub relayed_addresses_created: IntCounterVec,
    /// `turnd_address_family_refused_total{family}`: a family an Allocate
    /// asked for and did not get (440, or ADDRESS-ERROR-CODE in a dual one).
    pub address_family_refused: IntCounterVec,
    /// `turnd_build_info{version}`, always 1.
    pub build_info: IntGaugeVec,
    /// `turnd_connections_active{transport}` (tcp, tls).
    pub connections_active: IntGaugeVec,
    /// `turnd_connections_accepted_total{transport}`.
    pub connections_accepted: IntCounterVec,
    /// `turnd_connections_rejected_total{transport,reason}`, reason in
    /// [`CONNECTION_REJECT_REASONS`].
    pub connections_rejected: IntCounterVec,
    /// `turnd_tls_reloads_total{result}`: certificate reloads on SIGHUP.
    pub tls_reloads: IntCounterVec,
    /// `turnd_config_reloads_total{result}`: config reloads on SIGHUP.
    pub config_reloads: IntCounterVec,
    /// `turnd_draining`: 1 from SIGTERM until exit.
    pub draining: IntGauge,
    /// `turnd_ready`: what /readyz says, 1 or 0.
    pub ready: IntGauge,
    /// `turnd_fd_exhausted_total{operation}`, operation in
    /// [`FD_EXHAUSTED_OPERATIONS`].
    pub fd_exhausted: IntCounterVec,
    /// The kernel fast path's series.
    pub offload: offload::OffloadMetrics,
    /// RFC 6062 TCP relaying.
    pub tcp: tcp_relay::TcpRelayMetrics,
    /// The series the packet path counts, resolved once.
    hot: Hot,
}

/// The children of one label of a counter vector, resolved at start: the
/// packet path finds its counter by comparing a few short strings instead
/// of hashing the labels and taking the vector's lock on every packet.
struct Resolved {
    values: &'static [&'static str],
    counters: Vec<IntCounter>,
}

impl Resolved {
    /// The series `series(value)` for each of `values`.
    fn new(values: &'static [&'static str], series: impl Fn(&str) -> IntCounter) -> Self {
        let counters = values.iter().map(|v| series(v)).collect();
        Resolved { values, counters }
    }

    /// The series of a one-label vector, for each of `values`.
    fn of(vec: &IntCounterVec, values: &'static [&'static str]) -> Self {
        Self::new(values, |v| vec.with_label_values(&[v]))
    }

    fn get(&self, value: &str) -> Option<&IntCounter> {
        let i = self.values.iter().position(|v| *v == value)?;
        self.counters.get(i)
    }
}

/// The series counted per packet or per request.
struct Hot {
    binding_requests: Resolved,
    dropped_packets: Resolved,
    relayed_packets: Resolved,
    relayed_bytes: Resolved,
    /// `turnd_requests_total{method, result="success"}` by method.
    request_success: Resolved,
}

impl Metrics {
    /// Declares and registers every metric, pre-creates each listed label
    /// value at 0, sets `turnd_build_info`, and (on Linux) adds the standard
    /// `process_*` collector (CPU, memory, open file descriptors).
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;

        let allocations_active = gauge_vec(
            r,
            "turnd_allocations_active",
            "TURN allocations currently active, by client transport.",
            &["transport"],
        );
        let allocations_created = counter_vec(
            r,
            "turnd_allocations_created_total",
            "TURN allocations created, by client transport.",
            &["transport"],
        );
        let allocations_ended = counter_vec(
            r,
            "turnd_allocations_ended_total",
            "TURN allocations ended, by client transport and reason \
             (expired, deleted by a zero-lifetime Refresh, closed with the client's \
             TCP/TLS connection, shutdown).",
            &["transport", "reason"],
        );
        let relayed_packets = counter_vec(
            r,
            "turnd_relayed_packets_total",
            "Packets relayed between clients and peers, by direction.",
            &["direction"],
        );
        let relayed_bytes = counter_vec(
            r,
            "turnd_relayed_bytes_total",
            "Application payload bytes relayed between clients and peers, by direction \
             (excluding STUN, ChannelData, IP and UDP headers).",
            &["direction"],
        );
        let binding_requests = counter_vec(
            r,
            "turnd_binding_requests_total",
            "STUN Binding requests received, by client transport.",
            &["transport"],
        );
        let requests = counter_vec(
            r,
            "turnd_requests_total",
            "STUN/TURN requests answered, by method and result \
             (\"success\" or the error code of the error response).",
            &["method", "result"],
        );
        let auth_failures = counter_vec(
            r,
            "turnd_auth_failures_total",
            "Requests rejected by authentication, by reason.",
            &["reason"],
        );
        let peer_denied = counter_vec(
            r,
            "turnd_peer_denied_total",
            "Peer addresses refused by the peer policy, by reason \
             (special-purpose range, configured deny rule, the server's own address).",
            &["reason"],
        );
        let quota_rejections = counter_vec(
            r,
            "turnd_quota_rejections_total",
            "Requests refused because a quota was reached, by kind.",
            &["kind"],
        );
        let dropped_packets = counter_vec(
            r,
            "turnd_dropped_packets_total",
            "Packets dropped without a response, by reason.",
            &["reason"],
        );
        let icmp_relayed = IntCounter::new(
            "turnd_icmp_relayed_total",
            "ICMP errors from peers' networks told to clients in Data indications (RFC 8656 §11.5).",
        )
        .unwrap_or_else(|e| panic!("invalid metric turnd_icmp_relayed_total: {e}"));
        register(r, icmp_relayed.clone(), "turnd_icmp_relayed_total");
        let log_lines_suppressed = counter_vec(
            r,
            "turnd_log_lines_suppressed_total",
            "Audit log lines (failed authentication, quota rejections, peer denials) \
             not written because their source exceeded its log rate, by kind.",
            &["kind"],
        );
        let relay_ports_in_use = gauge(
            r,
            "turnd_relay_ports_in_use",
            "Relay ports currently bound for allocations.",
        );
        let relayed_addresses_active = gauge_vec(
            r,
            "turnd_relayed_addresses_active",
            "Relayed transport addresses of live allocations, by address family \
             (a dual-stack allocation has one of each).",
            &["family"],
        );
        let relayed_addresses_created = counter_vec(
            r,
            "turnd_relayed_addresses_created_total",
            "Relayed transport addresses allocated, by address family.",
            &["family"],
        );
        let address_family_refused = counter_vec(
            r,
            "turnd_address_family_refused_total",
            "Address families Allocate requests asked for and did not get \
             (440, or ADDRESS-ERROR-CODE in a dual-stack allocation), by family.",
            &["family"],
        );
        let relayed_ipv6_packets = counter_vec(
            r,
            "turnd_relayed_ipv6_packets_total",
            "Of turnd_relayed_packets_total, the packets relayed through IPv6 \
             relayed addresses (the rest went through IPv4 ones).",
            &["direction"],
        );
        let relayed_ipv6_bytes = counter_vec(
            r,
            "turnd_relayed_ipv6_bytes_total",
            "Of turnd_relayed_bytes_total, the payload bytes relayed through IPv6 \
             relayed addresses.",
            &["direction"],
        );
        for d in DIRECTIONS {
            relayed_ipv6_packets.with_label_values(&[d]);
            relayed_ipv6_bytes.with_label_values(&[d]);
        }
        for f in FAMILIES {
            relayed_addresses_active.with_label_values(&[f]);
            relayed_addresses_created.with_label_values(&[f]);
            address_family_refused.with_label_values(&[f]);
        }
        let relay_ports_total = gauge(
            r,
            "turnd_relay_ports_configured",
            "Relay ports in the configured range.",
        );
        let build_info = gauge_vec(
            r,
            "turnd_build_info",
            "Always 1; the version label is the running turnd version.",
            &["version"],
        );

        let connections_active = gauge_vec(
            r,
            "turnd_connections_active",
            "Open TCP and TLS client connections, by transport.",
            &["transport"],
        );
        let connections_accepted = counter_vec(
            r,
            "turnd_connections_accepted_total",
            "TCP and TLS client connections accepted, by transport.",
            &["transport"],
        );
        let connections_rejected = counter_vec(
            r,
            "turnd_connections_rejected_total",
            "TCP and TLS client connections refused or cut by a limit or a protocol error, by transport and reason.",
            &["transport", "reason"],
        );
        let tls_reloads = counter_vec(
            r,
            "turnd_tls_reloads_total",
            "TLS certificate reloads (SIGHUP), by result; on failure the previous certificate stays in use.",
            &["result"],
        );

        let config_reloads = counter_vec(
            r,
            "turnd_config_reloads_total",
            "Config reloads (SIGHUP), by result; on failure the previous config stays in use.",
            &["result"],
        );
        let draining = gauge(
            r,
            "turnd_draining",
            "1 while draining after SIGTERM: no new allocations, existing ones relay until they end.",
        );
        let ready = gauge(
            r,
            "turnd_ready",
            "1 when /readyz answers ready: not draining, relay ports, allocation quota and file descriptors left.",
        );
        let fd_exhausted = counter_vec(
            r,
            "turnd_fd_exhausted_total",
            "Allocations answered 508 and connections closed on accept because no file descriptor was left (RLIMIT_NOFILE), by operation.",
            &["operation"],
        );

        let offload = offload::OffloadMetrics::new(r);
        let tcp = tcp_relay::TcpRelayMetrics::new(r);

        #[cfg(target_os = "linux")]
        register(
            r,
            prometheus::process_collector::ProcessCollector::for_self(),
            "process",
        );

        for t in TRANSPORTS {
            allocations_active.with_label_values(&[t]);
            allocations_created.with_label_values(&[t]);
            binding_requests.with_label_values(&[t]);
            for reason in END_REASONS {
                allocations_ended.with_label_values(&[t, reason]);
            }
        }
        for t in ["tcp", "tls"] {
            connections_active.with_label_values(&[t]);
            connections_accepted.with_label_values(&[t]);
            for reason in CONNECTION_REJECT_REASONS {
                connections_rejected.with_label_values(&[t, reason]);
            }
        }
        for r in RELOAD_RESULTS {
            tls_reloads.with_label_values(&[r]);
            config_reloads.with_label_values(&[r]);
        }
        for d in DIRECTIONS {
            relayed_packets.with_label_values(&[d]);
            relayed_bytes.with_label_values(&[d]);
        }
        for m in METHODS {
            requests.with_label_values(&[m, RESULT_SUCCESS]);
        }
        for (vec, values) in [
            (&auth_failures, AUTH_FAILURE_REASONS),
            (&peer_denied, PEER_DENIED_REASONS),
            (&quota_rejections, QUOTA_KINDS),
            (&dropped_packets, DROP_REASONS),
            (&fd_exhausted, FD_EXHAUSTED_OPERATIONS),
            (&log_lines_suppressed, AUDIT_KINDS),
        ] {
            for v in values {
                vec.with_label_values(&[v]);
            }
        }
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let hot = Hot {
            binding_requests: Resolved::of(&binding_requests, TRANSPORTS),
            dropped_packets: Resolved::of(&dropped_packets, DROP_REASONS),
            relayed_packets: Resolved::of(&relayed_packets, DIRECTIONS),
            relayed_bytes: Resolved::of(&relayed_bytes, DIRECTIONS),
            request_success: Resolved::new(METHODS, |m| {
                requests.with_label_values(&[m, RESULT_SUCCESS])
            }),
        };

        Metrics {
            registry,
            allocations_active,
            allocations_created,
            allocations_ended,
            relayed_packets,
            relayed_bytes,
            binding_requests,
            requests,
            auth_failures,
            peer_denied,
            quota_rejections,
            dropped_packets,
            icmp_relayed,
            log_lines_suppressed,
            relay_ports_in_use,
            relay_ports_total,
            relayed_addresses_active,
            relayed_addresses_created,
            address_family_refused,
            relayed_ipv6_packets,
            relayed_ipv6_bytes,
            build_info,
            connections_active,
            connections_accepted,
            connections_rejected,
            tls_reloads,
            config_reloads,
            draining,
            ready,
            fd_exhausted,
            offload,
            tcp,
            hot,
        }
    }

    /// The registry holding every metric above (and the process collector).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Everything in the registry, in the Prometheus text exposition format
    /// (version 0.0.4, content type [`prometheus::TEXT_FORMAT`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(error) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            // Only reachable through a malformed metric family, which `new` cannot build.
            tracing::warn!(%error, "cannot encode metrics");
        }
        out
    }

    /// Counts one answered request: `error_code` is `None` for a success
    /// response, else the ERROR-CODE sent (400, 401, 438, ...).
    pub fn count_request(&self, method: &str, error_code: Option<u16>) {
        match error_code {
            None => match self.hot.request_success.get(method) {
                Some(counter) => counter.inc(),
                None => self
                    .requests
                    .with_label_values(&[method, RESULT_SUCCESS])
                    .inc(),
            },
            Some(code) => self
                .requests
                .with_label_values(&[method, &code.to_string()])
                .inc(),
        }
    }

    /// Counts `packets` relayed packets carrying `payload_bytes` of
    /// application data in all.
    pub fn count_relayed(&self, direction: Direction, packets: u64, payload_bytes: u64) {
        inc_by(
            &self.hot.relayed_packets,
            &self.relayed_packets,
            direction.as_str(),
            packets,
        );
        inc_by(
            &self.hot.relayed_bytes,
            &self.relayed_bytes,
            direction.as_str(),
            payload_bytes,
        );
    }

    /// Counts what went through IPv6 relayed addresses (a share of
    /// [`Metrics::count_relayed`], flushed with it, never per packet).
    pub fn count_relayed_ipv6(&self, direction: Direction, packets: u64, payload_bytes: u64) {
        let d = [direction.as_str()];
        self.relayed_ipv6_packets
            .with_label_values(&d)
            .inc_by(packets);
        self.relayed_ipv6_bytes
            .with_label_values(&d)
            .inc_by(payload_bytes);
    }

    /// Counts one Binding request over `transport` (`udp`, `tcp`, `tls`).
    pub fn count_binding(&self, transport: &str) {
        inc_by(
            &self.hot.binding_requests,
            &self.binding_requests,
            transport,
            1,
        );
    }

    /// Counts one dropped packet; `reason` is one of [`DROP_REASONS`].
    pub fn count_drop(&self, reason: &str) {
        inc_by(&self.hot.dropped_packets, &self.dropped_packets, reason, 1);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Adds `n` to `vec{label=value}`, through `hot` when it holds that value.
fn inc_by(hot: &Resolved, vec: &IntCounterVec, value: &str, n: u64) {
    match hot.get(value) {
        Some(counter) => counter.inc_by(n),
        None => vec.with_label_values(&[value]).inc_by(n),
    }
}

fn register<C: prometheus::core::Collector + 'static>(registry: &Registry, c: C, name: &str) {
    // Names and labels are the literals above, so this fails only on a typo
    // or a duplicate name, which every test run would catch.
    registry
        .register(Box::new(c))
        .unwrap_or_else(|e| panic!("cannot register metric {name}: {e}"));
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("invalid metric {name}: {e}"));
    register(registry, v.clone(), name);
    v
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let v = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("invalid metric {name}: {e}"));
    register(registry, v.clone(), name);
    v
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| panic!("invalid metric {name}: {e}"));
    register(registry, g.clone(), name);
    g
}

/// A small parser for the Prometheus text format, so unit tests and the
/// daemon tests in `tests/` can check what `/metrics` serves.
#[doc(hidden)]
pub mod text;

pub mod offload;
pub mod tcp_relay;

#[cfg(test)]
mod tests {
    use super::text::{find, parse_prometheus_text};
    use super::*;

    const NAMES: &[&str] = &[
        "turnd_allocations_active",
        "turnd_allocations_created_total",
        "turnd_allocations_ended_total",
        "turnd_relayed_addresses_active",
        "turnd_relayed_addresses_created_total",
        "turnd_address_family_refused_total",
        "turnd_relayed_ipv6_packets_total",
        "turnd_relayed_ipv6_bytes_total",
        "turnd_relayed_packets_total",
        "turnd_relayed_bytes_total",
        "turnd_binding_requests_total",
        "turnd_requests_total",
        "turnd_auth_failures_total",
        "turnd_peer_denied_total",
        "turnd_quota_rejections_total",
        "turnd_dropped_packets_total",
        "turnd_icmp_relayed_total",
        "turnd_log_lines_suppressed_total",
        "turnd_fd_exhausted_total",
        "turnd_relay_ports_in_use",
        "turnd_relay_ports_configured",
        "turnd_build_info",
        "turnd_connections_active",
        "turnd_connections_accepted_total",
        "turnd_connections_rejected_total",
        "turnd_tls_reloads_total",
        "turnd_config_reloads_total",
        "turnd_draining",
        "turnd_ready",
        "turnd_offload_active",
        "turnd_offload_channels",
        "turnd_offload_relayed_packets_total",
        "turnd_offload_relayed_bytes_total",
        "turnd_offload_packets_total",
        "turnd_tcp_peer_connections_total",
        "turnd_tcp_peer_connections_failed_total",
        "turnd_tcp_data_connections_active",
        "turnd_tcp_relayed_bytes_total",
    ];

    #[test]
    fn every_metric_is_encoded_with_help_and_type() {
        let text = Metrics::new().encode();
        for name in NAMES {
            let help = format!("# HELP {name} ");
            assert!(text.contains(&help), "no HELP for {name}");
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "no TYPE for {name}"
            );
            assert!(text.contains(&format!("\n{name}")), "no sample for {name}");
        }
        let turnd_families = text
            .lines()
            .filter(|l| l.starts_with("# HELP turnd_"))
            .count();
        assert_eq!(
            turnd_families,
            NAMES.len(),
            "a metric not listed in the test"
        );
        #[cfg(target_os = "linux")]
        assert!(text.contains("# HELP process_cpu_seconds_total "));
    }

    #[test]
    fn label_values_are_pre_initialised_at_zero() {
        let samples = parse_prometheus_text(&Metrics::new().encode());
        let zero = |name: &str, labels: &[(&str, &str)]| {
            assert_eq!(find(&samples, name, labels), Some(0.0), "{name} {labels:?}");
        };
        for t in TRANSPORTS {
            zero("turnd_allocations_active", &[("transport", t)]);
            zero("turnd_allocations_created_total", &[("transport", t)]);
            zero("turnd_binding_requests_total", &[("transport", t)]);
            for r in END_REASONS {
                zero(
                    "turnd_allocations_ended_total",
                    &[("transport", t), ("reason", r)],
                );
            }
        }
        for d in DIRECTIONS {
            zero("turnd_relayed_packets_total", &[("direction", d)]);
            zero("turnd_relayed_bytes_total", &[("direction", d)]);
        }
        for m in METHODS {
            zero(
                "turnd_requests_total",
                &[("method", m), ("result", "success")],
            );
        }
        for r in AUTH_FAILURE_REASONS {
            zero("turnd_auth_failures_total", &[("reason", r)]);
        }
        for r in PEER_DENIED_REASONS {
            zero("turnd_peer_denied_total", &[("reason", r)]);
        }
        for k in QUOTA_KINDS {
            zero("turnd_quota_rejections_total", &[("kind", k)]);
        }
        for r in DROP_REASONS {
            zero("turnd_dropped_packets_total", &[("reason", r)]);
        }
        zero("turnd_relay_ports_in_use", &[]);
        zero("turnd_relay_ports_configured", &[]);
        assert_eq!(
            find(
                &samples,
                "turnd_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))]
            ),
            Some(1.0)
        );
    }

    #[test]
    fn direction_labels_match_the_vocabulary() {
        assert_eq!(
            [
                Direction::ClientToPeer.as_str(),
                Direction::PeerToClient.as_str()
            ],
            DIRECTIONS
        );
    }

    #[test]
    fn counting_shows_in_the_encoding() {
        let m = Metrics::new();
        m.allocations_created.with_label_values(&["udp"]).inc();
        m.allocations_active.with_label_values(&["udp"]).inc();
        m.allocations_active.with_label_values(&["tcp"]).inc();
        m.allocations_active.with_label_values(&["tcp"]).dec();
        m.count_relayed(Direction::ClientToPeer, 1, 100);
        m.count_relayed(Direction::ClientToPeer, 1, 60);
        m.count_relayed(Direction::PeerToClient, 1, 7);
        m.count_request("allocate", Some(401));
        m.count_request("allocate", None);
        m.dropped_packets.with_label_values(&["not_stun"]).inc_by(3);
        m.relay_ports_total.set(16384);
        m.relay_ports_in_use.set(2);

        let s = parse_prometheus_text(&m.encode());
        let v = |name: &str, labels: &[(&str, &str)]| find(&s, name, labels);
        assert_eq!(
            v("turnd_allocations_created_total", &[("transport", "udp")]),
            Some(1.0)
        );
        assert_eq!(
            v("turnd_allocations_active", &[("transport", "udp")]),
            Some(1.0)
        );
        assert_eq!(
            v("turnd_allocations_active", &[("transport", "tcp")]),
            Some(0.0)
        );
        let c2p = [("direction", "client_to_peer")];
        let p2c = [("direction", "peer_to_client")];
        assert_eq!(v("turnd_relayed_packets_total", &c2p), Some(2.0));
        assert_eq!(v("turnd_relayed_bytes_total", &c2p), Some(160.0));
        assert_eq!(v("turnd_relayed_packets_total", &p2c), Some(1.0));
        assert_eq!(v("turnd_relayed_bytes_total", &p2c), Some(7.0));
        let req = |result| {
            v(
                "turnd_requests_total",
                &[("method", "allocate"), ("result", result)],
            )
        };
        assert_eq!(req("401"), Some(1.0));
        assert_eq!(req("success"), Some(1.0));
        assert_eq!(
            v("turnd_dropped_packets_total", &[("reason", "not_stun")]),
            Some(3.0)
        );
        assert_eq!(v("turnd_relay_ports_configured", &[]), Some(16384.0));
        assert_eq!(v("turnd_relay_ports_in_use", &[]), Some(2.0));
    }

    #[test]
    fn registries_are_independent() {
        let a = Metrics::new();
        let b = Metrics::default();
        a.peer_denied.with_label_values(&["special_range"]).inc();
        let s = parse_prometheus_text(&b.encode());
        assert_eq!(
            find(
                &s,
                "turnd_peer_denied_total",
                &[("reason", "special_range")]
            ),
            Some(0.0)
        );
    }

    #[test]
    fn parser_reads_escapes_special_values_and_timestamps() {
        let s = parse_prometheus_text(
            "# HELP x_total a \"thing\"\n# TYPE x_total counter\n\
             x_total{a=\"q\\\"\\\\\\n\",b=\"{,}\",} 1.5e3 1700000000000\n\
             y +Inf\nz{} NaN\n",
        );
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].0, "x_total");
        assert_eq!(
            s[0].1,
            vec![
                ("a".to_owned(), "q\"\\\n".to_owned()),
                ("b".to_owned(), "{,}".to_owned())
            ]
        );
        assert_eq!(s[0].2, 1500.0);
        assert_eq!(s[1].2, f64::INFINITY);
        assert!(s[2].2.is_nan());
    }

    #[test]
    fn parser_rejects_garbage() {
        for bad in [
            "x",
            "x{a=\"1\" 2",
            "x{a=1} 2",
            "x 1 2 3",
            "x one",
            "1x 2",
            "# TYPE x bogus",
            "x{a=\"\\q\"} 1",
        ] {
            let r = std::panic::catch_unwind(|| parse_prometheus_text(bad));
            assert!(r.is_err(), "accepted {bad:?}");
        }
    }
}
