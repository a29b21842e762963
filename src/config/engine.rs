//! The engine's view of the config: [`core_config`] maps the TOML schema
//! ([`Config`]) onto [`CoreConfig`], the plain values the sans-IO engine
//! (`crate::core`) takes, so the engine never reads config-file types.

use std::net::SocketAddr;
use std::time::Duration;

use super::{Config, FamilyAddrs};
use crate::core::auth::{long_term_key, Credentials, RestPolicy, UsernameChars};
use crate::core::auth_sha256::sha256_key;
use crate::core::bandwidth::Caps;
use crate::core::family::{Family, RelayIp};
use crate::core::peer_policy::PeerPolicy;
use crate::core::rate_limit::PrefixLimit;
use crate::core::CoreConfig;

/// The engine's config for `cfg`; `advertised` holds the relay address of
/// each family of `relay.bind` as the shell resolved it, `listeners` the
/// addresses it bound.
pub fn core_config(cfg: &Config, advertised: &FamilyAddrs, listeners: &[SocketAddr]) -> CoreConfig {
    use super::UserCredential;
    // The primary family first ([`FamilyAddrs::iter`]).
    let relays: Vec<RelayIp> = cfg
        .relay
        .bind
        .iter()
        .map(|bind| RelayIp {
            bind,
            advertised: advertised.of(bind.is_ipv6()).unwrap_or(bind),
        })
        .collect();
    // `relay.bind` is never empty once parsed; a hand-built config
    // without it relays IPv4 from every address.
    let primary = relays.first().copied().unwrap_or(RelayIp {
        bind: std::net::Ipv4Addr::UNSPECIFIED.into(),
        advertised: std::net::Ipv4Addr::LOCALHOST.into(),
    });
    let sha256_keys = cfg
        .users
        .iter()
        .filter_map(|u| match &u.credential {
            UserCredential::Password(p) => {
                Some((u.name.clone(), sha256_key(&u.name, &cfg.realm, p.expose())))
            }
            UserCredential::Key(_) => None,
        })
        .collect();
    let users = cfg
        .users
        .iter()
        .map(|u| {
            let key = match &u.credential {
                UserCredential::Password(p) => long_term_key(&u.name, &cfg.realm, p.expose()),
                UserCredential::Key(k) => *k,
            };
            (u.name.clone(), key)
        })
        .collect();
    let secrets = cfg
        .rest
        .secrets
        .iter()
        .map(|s| s.expose().to_string())
        .collect();
    CoreConfig {
        credentials: Credentials::new(cfg.realm.clone(), users, secrets)
            .with_sha256_keys(sha256_keys)
            .with_rest_policy(RestPolicy {
                max_ttl_s: cfg.rest.max_ttl_s,
                max_username_bytes: cfg.rest.max_username_bytes.into(),
                chars: match cfg.rest.username_chars {
                    super::UsernameChars::Printable => UsernameChars::Printable,
                    super::UsernameChars::Ascii => UsernameChars::Ascii,
                },
            }),
        relay_bind: primary.bind,
        relay_advertised: primary.advertised,
        relay_other: relays.get(1).copied(),
        default_family: match cfg.relay.default_family {
            super::DefaultFamily::Ipv4 => Some(Family::V4),
            super::DefaultFamily::Ipv6 => Some(Family::V6),
            super::DefaultFamily::Keep => None,
        },
        port_low: cfg.relay.ports.low,
        port_high: cfg.relay.ports.high,
        default_lifetime: Duration::from_secs(cfg.allocation.default_lifetime_s.into()),
        max_lifetime: Duration::from_secs(cfg.allocation.max_lifetime_s.into()),
        nonce_lifetime_s: cfg.allocation.nonce_lifetime_s.into(),
        algorithms: cfg.auth.algorithms.clone(),
        allocations_per_user: cfg.quota.allocations_per_user as usize,
        static_user_allocations: cfg
            .users
            .iter()
            .filter_map(|u| Some((u.name.clone(), u.allocations? as usize)))
            .collect(),
        allocations_total: cfg.quota.allocations_total as usize,
        permissions_per_allocation: cfg.quota.permissions_per_allocation as usize,
        channels_per_allocation: cfg.quota.channels_per_allocation as usize,
        peer_policy: PeerPolicy::new(cfg.peers.allow.clone(), cfg.peers.deny.clone()),
        own_listeners: listeners.to_vec(),
        unauthenticated_per_s: cfg.rate_limit.unauthenticated_per_s,
        unauthenticated_burst: cfg.rate_limit.unauthenticated_burst,
        prefix_rate_limit: PrefixLimit {
            per_second: cfg.rate_limit.prefix_per_s,
            burst: cfg.rate_limit.prefix_burst,
            ipv4_prefix: cfg.rate_limit.ipv4_prefix,
            ipv6_prefix: cfg.rate_limit.ipv6_prefix,
        },
        peer_refusal_burst: cfg.quota.peer_refusals_burst,
        peer_refusal_interval: Duration::from_secs(cfg.quota.peer_refusal_interval_s.into()),
        redact_logs: cfg.log.redact,
        redirect: cfg.redirect.policy(),
        caps: Caps {
            per_allocation: cfg.quota.max_bps_per_allocation,
            per_user: cfg.quota.max_bps_per_user,
            capacity: cfg.quota.bps_capacity,
        },
        workers: 1,
        tcp_connections_per_allocation: cfg.quota.tcp_connections_per_allocation as usize,
        tcp_connect_timeout: Duration::from_secs(cfg.allocation.tcp_connect_timeout_s.into()),
    }
}
