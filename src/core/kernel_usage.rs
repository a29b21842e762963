//! Per-allocation accounting of what a kernel fast path relayed for the
//! engine's channels (RFC 8656 §12 ChannelData), so usage records
//! (`turnd::usage`), the admin API's counters and the bandwidth figures
//! see every relayed packet whichever path carried it.
//!
//! The shell reports what the kernel relayed per installed
//! [`ChannelBinding`] with [`Server::kernel_relayed`]: periodically while
//! the binding is installed, and a last time when it applies the
//! [`Command::ChannelRemoved`](super::command::Command) that took it out.
//! An allocation that ends with channels in the kernel would otherwise log
//! its usage record before those last counts arrive, so while kernel
//! accounting is on ([`Server::set_kernel_accounting`]) its record waits
//! until every one of its removed bindings has reported; the shell applies
//! the commands of a call before the next call, so the record is written in
//! the same turn.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::allocation::{Allocation, Flow, Usage};
use super::command::ChannelBinding;
use super::server::{EndReason, Server};
use super::FiveTuple;

/// What the usage record of an ended allocation says.
#[derive(Debug, Clone)]
pub(super) struct UsageRecord {
    pub id: u64,
    pub username: String,
    pub five_tuple: FiveTuple,
    /// Where the relay socket was bound (the kernel's bindings name it).
    pub relay: SocketAddr,
    pub advertised: SocketAddr,
    /// The second relayed address of a dual-stack allocation.
    pub advertised_additional: Option<SocketAddr>,
    pub created_unix: u64,
    pub duration: Duration,
    pub usage: Usage,
    pub reason: EndReason,
}

impl UsageRecord {
    pub fn of(alloc: &Allocation, duration: Duration, reason: EndReason) -> UsageRecord {
        UsageRecord {
            id: alloc.id,
            username: alloc.username.clone(),
            five_tuple: alloc.five_tuple,
            relay: alloc.relay,
            advertised: alloc.advertised,
            advertised_additional: alloc.additional.map(|r| r.advertised),
            created_unix: alloc.created_unix,
            duration,
            usage: alloc.usage,
            reason,
        }
    }
}

/// Usage records waiting for the kernel's last counts.
#[derive(Debug, Default)]
pub struct KernelUsage {
    enabled: bool,
    /// By (client 5-tuple, relay address): unique among ended allocations
    /// whose bindings have not all reported yet.
    pending: HashMap<(FiveTuple, SocketAddr), (UsageRecord, usize)>,
}

impl Server {
    /// Whether a kernel fast path relays installed channels, so their
    /// traffic arrives through [`Server::kernel_relayed`]. Off by default.
    pub fn set_kernel_accounting(&mut self, on: bool) {
        self.kernel_usage.enabled = on;
    }

    /// Adds what the kernel relayed on `binding` since its last report:
    /// `sent` from the client to the peer, `received` back. `removed`:
    /// this is the binding's last report (it left the kernel).
    pub fn kernel_relayed(
        &mut self,
        binding: &ChannelBinding,
        sent: Flow,
        received: Flow,
        removed: bool,
    ) {
        let add = |usage: &mut Usage| {
            usage.sent.packets += sent.packets;
            usage.sent.bytes += sent.bytes;
            usage.received.packets += received.packets;
            usage.received.bytes += received.bytes;
        };
        if let Some(alloc) = self
            .allocations
            .get_mut(&binding.client)
            .filter(|a| a.relays().any(|r| r.relay == binding.relay))
        {
            add(&mut alloc.usage);
            return;
        }
        let key = (binding.client, binding.relay);
        let Some((record, waiting)) = self.kernel_usage.pending.get_mut(&key) else {
            return;
        };
        add(&mut record.usage);
        if removed {
            *waiting = waiting.saturating_sub(1);
            if *waiting == 0 {
                if let Some((record, _)) = self.kernel_usage.pending.remove(&key) {
                    self.log_usage(&record);
                }
            }
        }
    }

    /// Writes the usage records still waiting. The shell calls it after
    /// applying the commands of a call, by when every removed binding has
    /// reported; a record is never held past that turn.
    pub fn flush_kernel_usage(&mut self) {
        if self.kernel_usage.pending.is_empty() {
            return;
        }
        for (_, (record, _)) in std::mem::take(&mut self.kernel_usage.pending) {
            self.log_usage(&record);
        }
    }

    /// Writes the usage record of an allocation that just ended, or keeps
    /// it until the `in_kernel` bindings it had installed have reported.
    pub(super) fn end_usage(&mut self, record: UsageRecord, in_kernel: usize) {
        if self.kernel_usage.enabled && in_kernel > 0 {
            let key = (record.five_tuple, record.relay);
            self.kernel_usage.pending.insert(key, (record, in_kernel));
        } else {
            self.log_usage(&record);
        }
    }
}
