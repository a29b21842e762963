//! What the operator's admin API asks of one worker's engine: a snapshot of
//! its allocations (RFC 8656 §2.2's state: 5-tuple, relayed address,
//! permissions §9, channels §12, lifetime), ending one allocation or all of
//! a user's, and the revocations that refuse a user's requests (401, as an
//! unknown user, RFC 8489 §9.2.4). Called from the worker's own loop, never
//! from another thread: nothing here is shared with the packet path.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::allocation::Usage;
use super::auth::quota_user;
use super::server::{EndReason, Server};
use super::{Now, RelaySockets, Transport};

/// Revoked users (a static name or a REST user part) and until when (Unix
/// seconds; `None`: for good).
pub type Revocations = Arc<HashMap<String, Option<u64>>>;

/// One allocation as the admin API lists it.
#[derive(Debug, Clone)]
pub struct AllocationInfo {
    pub id: u64,
    pub user: String,
    pub transport: Transport,
    pub client: SocketAddr,
    pub relay: SocketAddr,
    /// The IPv6 (or other family's) relayed address of a dual allocation.
    pub relay_additional: Option<SocketAddr>,
    pub created_unix: u64,
    pub expires_unix: u64,
    pub permissions: Vec<IpAddr>,
    pub channels: Vec<(u16, SocketAddr)>,
    pub usage: Usage,
    /// Over the last [`super::rate::WINDOW`].
    pub rate: super::rate::Rate,
}

/// Whether `username` (as sent) belongs to `user` (a static name or a REST
/// user part).
pub fn is_user(username: &str, user: &str) -> bool {
    username == user || quota_user(username) == user
}

impl Server {
    /// The allocations of this worker, only `user`'s if given.
    pub fn list_allocations(&self, now: Now, user: Option<&str>) -> Vec<AllocationInfo> {
        self.allocations
            .values()
            .filter(|a| user.is_none_or(|u| is_user(&a.username, u)))
            .map(|a| {
                let left = a.expires.saturating_duration_since(now.instant).as_secs();
                let mut permissions: Vec<IpAddr> = a
                    .permissions
                    .ips()
                    .filter(|ip| a.permissions.holds(*ip, now.instant))
                    .collect();
                permissions.sort();
                let mut channels: Vec<(u16, SocketAddr)> = a
                    .channels
                    .iter()
                    .filter(|(_, c)| c.expires > now.instant)
                    .map(|(n, c)| (n, c.peer))
                    .collect();
                channels.sort();
                AllocationInfo {
                    id: a.id,
                    user: a.username.clone(),
                    transport: a.five_tuple.transport,
                    client: a.five_tuple.client,
                    relay: a.advertised,
                    relay_additional: a.additional.map(|r| r.advertised),
                    created_unix: a.created_unix,
                    expires_unix: now.unix_secs + left,
                    permissions,
                    channels,
                    usage: a.usage,
                    rate: a.rate.rate(),
                }
            })
            .collect()
    }

    /// Ends the allocation `id` if this worker has it.
    pub fn end_allocation(&mut self, now: Now, id: u64, relays: &mut dyn RelaySockets) -> bool {
        let Some(ft) = self
            .allocations
            .values()
            .find(|a| a.id == id)
            .map(|a| a.five_tuple)
        else {
            return false;
        };
        self.delete_allocation(now, ft, EndReason::Admin, relays);
        true
    }

    /// Ends every allocation of `user`; returns how many.
    pub fn end_user(
        &mut self,
        now: Now,
        user: &str,
        reason: EndReason,
        relays: &mut dyn RelaySockets,
    ) -> usize {
        let fts: Vec<_> = self
            .allocations
            .values()
            .filter(|a| is_user(&a.username, user))
            .map(|a| a.five_tuple)
            .collect();
        for ft in &fts {
            self.delete_allocation(now, *ft, reason, relays);
        }
        fts.len()
    }

    /// Replaces the revocations; the live allocations of a user revoked
    /// now end at once.
    pub fn set_revocations(
        &mut self,
        now: Now,
        revoked: Revocations,
        relays: &mut dyn RelaySockets,
    ) {
        let users: Vec<String> = revoked
            .iter()
            .filter(|(_, until)| until.is_none_or(|t| t > now.unix_secs))
            .map(|(u, _)| u.clone())
            .collect();
        self.revoked = revoked;
        for user in users {
            self.end_user(now, &user, EndReason::Revoked, relays);
        }
    }

    /// Whether `username`'s user is revoked at `now`.
    pub(super) fn is_revoked(&self, now: Now, username: &str) -> bool {
        if self.revoked.is_empty() {
            return false;
        }
        [username, quota_user(username)].iter().any(|u| {
            self.revoked
                .get(*u)
                .is_some_and(|until| until.is_none_or(|t| t > now.unix_secs))
        })
    }
}
