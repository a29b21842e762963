//! TCP relaying's metrics (RFC 6062, README "TCP relaying"): peer
//! connections opened and refused or failed, the pairs carrying data, and
//! the bytes they carried. Counters move as bytes are copied, not when a
//! connection ends.

use prometheus::{IntCounterVec, IntGauge, Registry};

use super::{counter_vec, gauge, DIRECTIONS};

/// `how` values of `turnd_tcp_peer_connections_total`: the server
/// connected (Connect) or the peer did (ConnectionAttempt).
pub const TCP_OPENED: &[&str] = &["connect", "accept"];
/// `reason` values of `turnd_tcp_peer_connections_failed_total`.
pub const TCP_FAILURES: &[&str] = &[
    "connect_failed",
    "no_permission",
    "no_allocation",
    "exists",
    "limit",
    "bind_timeout",
    "bind_unknown",
];

pub struct TcpRelayMetrics {
    /// `turnd_tcp_peer_connections_total{how}`.
    pub opened: IntCounterVec,
    /// `turnd_tcp_peer_connections_failed_total{reason}`.
    pub failed: IntCounterVec,
    /// `turnd_tcp_data_connections_active`: bound pairs now.
    pub active: IntGauge,
    /// `turnd_tcp_relayed_bytes_total{direction}`.
    pub bytes: IntCounterVec,
}

impl TcpRelayMetrics {
    pub(super) fn new(r: &Registry) -> Self {
        let m = TcpRelayMetrics {
            opened: counter_vec(
                r,
                "turnd_tcp_peer_connections_total",
                "RFC 6062 peer connections opened: by a Connect (how=connect) or by a \
                 permitted peer connecting to a TCP relayed address (how=accept).",
                &["how"],
            ),
            failed: counter_vec(
                r,
                "turnd_tcp_peer_connections_failed_total",
                "RFC 6062 peer connections that failed or were refused: the connect failed \
                 or timed out (447), an inbound peer without permission or over the limit, \
                 no ConnectionBind within 30 s, a ConnectionBind naming no waiting \
                 connection, by reason.",
                &["reason"],
            ),
            active: gauge(
                r,
                "turnd_tcp_data_connections_active",
                "RFC 6062 client data connections bound to a peer connection, now.",
            ),
            bytes: counter_vec(
                r,
                "turnd_tcp_relayed_bytes_total",
                "Bytes copied between bound client data connections and peer connections \
                 (RFC 6062), by direction.",
                &["direction"],
            ),
        };
        for h in TCP_OPENED {
            m.opened.with_label_values(&[h]);
        }
        for f in TCP_FAILURES {
            m.failed.with_label_values(&[f]);
        }
        for d in DIRECTIONS {
            m.bytes.with_label_values(&[d]);
        }
        m
    }

    pub fn count_opened(&self, how: &str) {
        self.opened.with_label_values(&[how]).inc();
    }

    pub fn count_failed(&self, reason: &str) {
        self.failed.with_label_values(&[reason]).inc();
    }
}
