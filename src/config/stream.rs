//! `[tls]` and `[connections]`: settings of the stream transports, TURN over
//! TCP and TLS (RFC 8656 §3.1, §6.2).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

/// `connections.max_per_ip`.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: u32 = 32;
/// `connections.max_total`.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10_000;
/// `connections.max_per_ipv4_prefix`: connections from one IPv4 /24.
pub const DEFAULT_MAX_CONNECTIONS_PER_IPV4_PREFIX: u32 = 256;
/// `connections.max_per_ipv6_prefix`: connections from one IPv6 /64, which
/// is usually one host or one LAN.
pub const DEFAULT_MAX_CONNECTIONS_PER_IPV6_PREFIX: u32 = 64;
/// `connections.ipv4_prefix`.
pub const DEFAULT_CONNECTION_IPV4_PREFIX: u8 = 24;
/// `connections.ipv6_prefix`.
pub const DEFAULT_CONNECTION_IPV6_PREFIX: u8 = 64;
/// `connections.buffer_budget_mib`: read buffers and write queues of all
/// connections together.
pub const DEFAULT_BUFFER_BUDGET_MIB: u32 = 256;
/// `connections.handshake_timeout_s`: TLS handshake and first message.
pub const DEFAULT_HANDSHAKE_TIMEOUT_S: u32 = 10;
/// `connections.idle_timeout_s`: no complete message and no allocation.
pub const DEFAULT_IDLE_TIMEOUT_S: u32 = 120;
/// `connections.write_timeout_s`: the longest one write to a client may
/// stay blocked (the client stopped reading) before the connection is cut.
pub const DEFAULT_WRITE_TIMEOUT_S: u32 = 15;
/// `connections.max_frame_bytes`: the largest STUN message (20 + 65535) or
/// padded ChannelData (4 + 65536) a client may send on a stream.
pub const DEFAULT_MAX_FRAME_BYTES: u32 = 65_556;
/// The protocol's own upper bound for `max_frame_bytes`.
pub const MAX_FRAME_BYTES: u32 = 65_556;
/// The smallest useful `max_frame_bytes`: a STUN header plus a little.
pub const MIN_FRAME_BYTES: u32 = 512;

/// `[tls]`: the certificate for `listen.tls` listeners (`turns:` URLs).
/// Both files are PEM, re-read on SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Certificate chain, leaf first (Let's Encrypt's `fullchain.pem`).
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `[connections]`: limits for TCP and TLS clients.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Connections {
    pub max_per_ip: u32,
    pub max_total: u32,
    /// Connections from one source prefix, per family.
    pub max_per_ipv4_prefix: u32,
    pub max_per_ipv6_prefix: u32,
    /// Prefix lengths that group sources.
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Bytes (in MiB) buffered for all connections together.
    pub buffer_budget_mib: u32,
    pub handshake_timeout_s: u32,
    pub idle_timeout_s: u32,
    pub write_timeout_s: u32,
    pub max_frame_bytes: u32,
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            max_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_total: DEFAULT_MAX_CONNECTIONS,
            max_per_ipv4_prefix: DEFAULT_MAX_CONNECTIONS_PER_IPV4_PREFIX,
            max_per_ipv6_prefix: DEFAULT_MAX_CONNECTIONS_PER_IPV6_PREFIX,
            ipv4_prefix: DEFAULT_CONNECTION_IPV4_PREFIX,
            ipv6_prefix: DEFAULT_CONNECTION_IPV6_PREFIX,
            buffer_budget_mib: DEFAULT_BUFFER_BUDGET_MIB,
            handshake_timeout_s: DEFAULT_HANDSHAKE_TIMEOUT_S,
            idle_timeout_s: DEFAULT_IDLE_TIMEOUT_S,
            write_timeout_s: DEFAULT_WRITE_TIMEOUT_S,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        }
    }
}

impl Connections {
    /// [`Self::buffer_budget_mib`] in bytes.
    pub fn buffer_budget(&self) -> usize {
        (self.buffer_budget_mib as usize).saturating_mul(1 << 20)
    }

    /// Cross-key rules, worded with the key names.
    pub(super) fn check(&self) -> Result<(), String> {
        if self.ipv4_prefix > 32 || self.ipv6_prefix > 128 {
            return Err(format!(
                "connections.ipv4_prefix ({}) must be 0-32 and connections.ipv6_prefix ({}) 0-128",
                self.ipv4_prefix, self.ipv6_prefix
            ));
        }
        for (key, value) in [
            ("max_per_ip", self.max_per_ip),
            ("max_total", self.max_total),
            ("max_per_ipv4_prefix", self.max_per_ipv4_prefix),
            ("max_per_ipv6_prefix", self.max_per_ipv6_prefix),
            ("buffer_budget_mib", self.buffer_budget_mib),
            ("handshake_timeout_s", self.handshake_timeout_s),
            ("idle_timeout_s", self.idle_timeout_s),
            ("write_timeout_s", self.write_timeout_s),
        ] {
            if value == 0 {
                return Err(format!("connections.{key} must be at least 1"));
            }
        }
        if !(MIN_FRAME_BYTES..=MAX_FRAME_BYTES).contains(&self.max_frame_bytes) {
            return Err(format!(
                "connections.max_frame_bytes ({}) must be between {MIN_FRAME_BYTES} and {MAX_FRAME_BYTES}",
                self.max_frame_bytes
            ));
        }
        if self.max_per_ip > self.max_total {
            return Err(format!(
                "connections.max_per_ip ({}) must be ≤ connections.max_total ({})",
                self.max_per_ip, self.max_total
            ));
        }
        Ok(())
    }
}

/// A list of listener addresses for `key`.
pub(super) fn listeners<'de, D: Deserializer<'de>>(
    key: &'static str,
    d: D,
) -> Result<Vec<SocketAddr>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| {
            s.parse().map_err(|_| {
                serde::de::Error::custom(format!(
                    "{key}: {s:?} is not an address with a port (e.g. \"0.0.0.0:3478\")"
                ))
            })
        })
        .collect()
}

pub(super) fn de_tcp<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    listeners("listen.tcp", d)
}

pub(super) fn de_tls<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    listeners("listen.tls", d)
}
