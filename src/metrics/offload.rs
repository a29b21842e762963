//! The kernel fast path's metrics (README "Kernel offload"). Packets the
//! XDP program relays are also added into `turnd_relayed_*_total`, so those
//! stay the total whichever path carried a packet; the series here say how
//! much of it the kernel carried.

use prometheus::{IntCounterVec, IntGauge, Registry};

use super::{counter_vec, gauge, DIRECTIONS};

/// `reason` values of `turnd_offload_packets_total`.
pub const OFFLOAD_OUTCOMES: &[&str] = &[
    "dropped_adjust_failed",
    "passed_malformed",
    "passed_oversize",
];

pub struct OffloadMetrics {
    /// `turnd_offload_active`: 1 while the XDP program is attached.
    pub active: IntGauge,
    /// `turnd_offload_channels`: channel bindings in the kernel maps.
    pub channels: IntGauge,
    /// `turnd_offload_relayed_packets_total{direction}`.
    pub relayed_packets: IntCounterVec,
    /// `turnd_offload_relayed_bytes_total{direction}`.
    pub relayed_bytes: IntCounterVec,
    /// `turnd_offload_packets_total{reason}`: packets of bound channels the
    /// program did not relay, in [`OFFLOAD_OUTCOMES`].
    pub not_relayed: IntCounterVec,
}

impl OffloadMetrics {
    pub(super) fn new(r: &Registry) -> Self {
        let m = OffloadMetrics {
            active: gauge(
                r,
                "turnd_offload_active",
                "1 while turnd's XDP program relays channel data in the kernel, 0 when \
                 user space relays everything ([relay] offload off, or attaching failed).",
            ),
            channels: gauge(
                r,
                "turnd_offload_channels",
                "Channel bindings installed in the kernel fast path's maps.",
            ),
            relayed_packets: counter_vec(
                r,
                "turnd_offload_relayed_packets_total",
                "Of turnd_relayed_packets_total, the packets the kernel fast path relayed \
                 (user space never saw them), by direction.",
                &["direction"],
            ),
            relayed_bytes: counter_vec(
                r,
                "turnd_offload_relayed_bytes_total",
                "Of turnd_relayed_bytes_total, the payload bytes the kernel fast path \
                 relayed, by direction.",
                &["direction"],
            ),
            not_relayed: counter_vec(
                r,
                "turnd_offload_packets_total",
                "Packets of a bound channel the kernel fast path did not relay: dropped \
                 (the kernel refused to resize the packet) or passed to user space \
                 (malformed ChannelData, or too big once framed), by reason.",
                &["reason"],
            ),
        };
        for d in DIRECTIONS {
            m.relayed_packets.with_label_values(&[d]);
            m.relayed_bytes.with_label_values(&[d]);
        }
        for o in OFFLOAD_OUTCOMES {
            m.not_relayed.with_label_values(&[o]);
        }
        m
    }
}
