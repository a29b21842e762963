//! Keeps the commands outbox ([`super::command`]) in step with what the
//! engine relays: a channel is "live" when the binding has not lapsed, its
//! peer's permission holds (RFC 8656 §9, §12) and the peer passes the same
//! own-address check as ChannelData from the client does. Every state change
//! that can flip that calls [`Server::sync_channel`] or one of its helpers,
//! which compares with the set of bindings already installed and emits the
//! difference.

use std::net::IpAddr;
use std::time::Instant;

use super::command::{ChannelBinding, Command};
use super::peer_policy::{canonical, Verdict};
use super::server::Server;
use super::FiveTuple;

impl Server {
    /// What the engine would do with ChannelData on channel `number` of
    /// `ft` at `now`: relay it to this binding, or nothing.
    fn relayable(&self, ft: FiveTuple, number: u16, now: Instant) -> Option<ChannelBinding> {
        // A capped allocation's traffic must pass the buckets, which the
        // kernel path would bypass (every cap applies to every allocation).
        if self.cfg.caps.any() {
            return None;
        }
        let alloc = self.allocations.get(&ft)?;
        let peer = alloc.channel_peer(number, now)?;
        if !alloc.has_permission(canonical(peer.ip()), now) || !self.own_relay_port_ok(peer) {
            return None;
        }
        Some(ChannelBinding {
            client: ft,
            channel: number,
            relay: alloc.relay_for(peer)?,
            peer,
        })
    }

    /// Emits an install or a removal for channel `number` of `ft` if its
    /// relayability changed.
    pub(super) fn sync_channel(&mut self, ft: FiveTuple, number: u16, now: Instant) {
        let want = self.relayable(ft, number, now);
        let have = self.installed.get(&(ft, number)).copied();
        if want == have {
            return;
        }
        if let Some(old) = have {
            self.installed.remove(&(ft, number));
            self.commands.push(Command::ChannelRemoved(old));
        }
        if let Some(new) = want {
            self.installed.insert((ft, number), new);
            self.commands.push(Command::ChannelInstalled(new));
        }
    }

    /// Syncs every channel of every allocation (after a reload).
    pub(super) fn sync_all_channels(&mut self, now: Instant) {
        let all: Vec<(FiveTuple, u16)> = self
            .allocations
            .values()
            .flat_map(|a| a.channels.numbers().map(|n| (a.five_tuple, n)))
            .collect();
        for (ft, number) in all {
            self.sync_channel(ft, number, now);
        }
    }

    /// Syncs every channel of `ft` whose peer has address `ip`.
    pub(super) fn sync_peer_ip(&mut self, ft: FiveTuple, ip: IpAddr, now: Instant) {
        let numbers: Vec<u16> = match self.allocations.get(&ft) {
            Some(a) => a.channels.numbers_to(ip),
            None => return,
        };
        for number in numbers {
            self.sync_channel(ft, number, now);
        }
    }

    /// Removes every installed channel of `ft` (before the allocation goes);
    /// returns how many there were.
    pub(super) fn remove_channels_of(&mut self, ft: FiveTuple) -> usize {
        let keys: Vec<(FiveTuple, u16)> = self
            .installed
            .range((ft, 0)..=(ft, u16::MAX))
            .map(|(k, _)| *k)
            .collect();
        let removed = keys.len();
        for key in keys {
            if let Some(b) = self.installed.remove(&key) {
                self.commands.push(Command::ChannelRemoved(b));
            }
        }
        removed
    }

    /// After a reload: permissions for peers the new policy denies are
    /// withdrawn (so neither path relays to them any more), and channels
    /// the engine would no longer relay leave the kernel.
    pub(super) fn withdraw_denied_peers(&mut self, now: Instant) {
        let mut denied = Vec::new();
        for (ft, alloc) in &self.allocations {
            for ip in alloc.permissions.ips() {
                if !self.is_own_relay_ip(ip)
                    && matches!(self.cfg.peer_policy.check(ip), Verdict::Denied(_))
                {
                    denied.push((*ft, ip));
                }
            }
        }
        for (ft, ip) in denied {
            if let Some(a) = self.allocations.get_mut(&ft) {
                a.permissions.remove(ip);
            }
            self.timers.cancel(super::expiry::Timer::Permission(ft, ip));
            // Uninstalled while the channels are still known, then ended.
            self.sync_peer_ip(ft, ip, now);
            let Some(a) = self.allocations.get_mut(&ft) else {
                continue;
            };
            for n in a.channels.numbers_to(ip) {
                a.remove_channel(n);
                self.timers
                    .cancel(super::expiry::Timer::ChannelRelease(ft, n));
                self.timers
                    .cancel(super::expiry::Timer::ChannelLapse(ft, n));
            }
            self.metrics
                .peer_denied
                .with_label_values(&["configured"])
                .inc();
            let user = self.redact.show(&a.username).to_string();
            tracing::info!(client = %self.redact.show(ft.client), user = %user, peer = %self.redact.show(ip), "reload: peer now denied, permission and channels removed");
        }
        // A peer on our relay address is judged per port with the policy's
        // explicit allowances: re-check every installed channel.
        let installed: Vec<(FiveTuple, u16)> = self.installed.keys().copied().collect();
        for (ft, number) in installed {
            self.sync_channel(ft, number, now);
        }
    }

    /// The commands emitted since the last call, oldest first.
    pub fn take_commands(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.commands)
    }

    /// The channel bindings currently installed (what a kernel fast path
    /// may relay), for tests and invariant checks.
    pub fn installed_channels(&self) -> impl Iterator<Item = &ChannelBinding> {
        self.installed.values()
    }
}
