//! The kernel fast path for TURN channels (RFC 8656 §12): loads
//! bpf/turnd_xdp.o (built from bpf/turnd_xdp.c, checked in, embedded with
//! `include_bytes!`), attaches it with a BPF link to one interface, and
//! keeps its maps equal to the channel bindings the engine emits as
//! [`Command`]s. The link and the maps belong to this process's file
//! descriptors only (nothing is pinned), so they go when turnd exits or
//! crashes. Any failure leaves turnd relaying in user space, said in the
//! log and in `turnd_offload_active`.

mod elf;
mod maps;
mod sys;

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use tracing::{info, warn};

use crate::config::{Config, OffloadMode, PortRange};
use crate::core::allocation::Flow;
use crate::core::{ChannelBinding, Command};
use crate::metrics::{Direction, Metrics};

/// The compiled program (reproducible: `bpf/build.sh`).
pub static OBJECT: &[u8] = include_bytes!("../../../bpf/turnd_xdp.o");

/// A loaded and attached program with its maps.
pub struct Offload {
    iface: String,
    _link: OwnedFd,
    _prog: OwnedFd,
    chan_to_udp: OwnedFd,
    udp_to_chan: OwnedFd,
    counters: OwnedFd,
    cpus: usize,
    /// Our relay addresses and ports: a peer there is another allocation
    /// of ours, relayed in user space (the kernel would send it out of the
    /// interface instead of delivering it locally).
    relay_ips: Vec<IpAddr>,
    ports: PortRange,
    /// The client-side keys in the maps, with what their binding's
    /// counters said when last reported to the engine.
    installed: Mutex<HashMap<[u8; 16], Reported>>,
    /// Kernel counter totals already added into the metrics.
    published: Mutex<[u64; maps::COUNTERS as usize]>,
    metrics: Arc<Metrics>,
}

impl Offload {
    /// Attaches as `cfg.relay.offload` says, or returns `None` (offload off,
    /// or it failed: logged, and user space relays everything). The
    /// program relays IPv4 only: channels of IPv6 relayed addresses (and of
    /// IPv6 clients) stay in user space ([`maps::entries`]).
    pub fn start(
        cfg: &Config,
        advertised: &crate::config::FamilyAddrs,
        metrics: &Arc<Metrics>,
    ) -> Option<Arc<Offload>> {
        metrics.offload.active.set(0);
        let iface = match &cfg.relay.offload {
            OffloadMode::Off => return None,
            OffloadMode::Xdp(iface) => iface.clone(),
            OffloadMode::Auto => match cfg.relay.bind.v4.and_then(interface_of) {
                Some(iface) => iface,
                None => {
                    warn!(relay_bind = %cfg.relay.bind, "relay.offload = \"auto\": no interface holds the IPv4 address of relay.bind (it must be a concrete IPv4 address of this host); relaying in user space");
                    return None;
                }
            },
        };
        let mut relay_ips: Vec<IpAddr> = cfg.relay.bind.iter().chain(advertised.iter()).collect();
        relay_ips.retain(|ip| !ip.is_unspecified());
        match Offload::attach(&iface, relay_ips, cfg.relay.ports, metrics.clone()) {
            Ok(o) => {
                info!(interface = %iface, mode = %cfg.relay.offload, "kernel offload active: ChannelData over UDP/IPv4 is relayed by turnd's XDP program");
                metrics.offload.active.set(1);
                Some(Arc::new(o))
            }
            Err(e) => {
                let hint = match e.raw_os_error() {
                    Some(libc::EPERM) => " (needs root, or CAP_BPF and CAP_NET_ADMIN)",
                    Some(libc::EBUSY) | Some(libc::EEXIST) => {
                        " (another XDP program is attached to the interface, perhaps another turnd)"
                    }
                    Some(libc::ENODEV) => " (no such interface)",
                    Some(libc::EINVAL) => {
                        " (the kernel or the interface does not support XDP links)"
                    }
                    _ => "",
                };
                warn!(interface = %iface, error = %e, "kernel offload unavailable{hint}; relaying in user space");
                None
            }
        }
    }

    fn attach(
        iface: &str,
        relay_ips: Vec<IpAddr>,
        ports: PortRange,
        metrics: Arc<Metrics>,
    ) -> io::Result<Offload> {
        let ifindex = sys::ifindex(iface)?;
        let object =
            elf::parse(OBJECT, "xdp").map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let mut fds = std::collections::HashMap::new();
        for (name, def) in &object.maps {
            let fd = sys::map_create(
                def.map_type,
                def.key_size,
                def.value_size,
                def.max_entries,
                name,
            )
            .map_err(|e| io::Error::new(e.kind(), format!("cannot create map {name}: {e}")))?;
            fds.insert(name.clone(), fd);
        }
        let mut insns = object.insns.clone();
        for (index, name) in &object.relocations {
            let fd = fds.get(name).ok_or(io::ErrorKind::InvalidData)?;
            let insn = insns
                .get_mut(index * 8..index * 8 + 8)
                .ok_or(io::ErrorKind::InvalidData)?;
            // ld_imm64 dst, map: src_reg BPF_PSEUDO_MAP_FD (1), imm = fd.
            insn[1] = (insn[1] & 0x0f) | (1 << 4);
            insn[4..8].copy_from_slice(&(std::os::fd::AsRawFd::as_raw_fd(fd) as u32).to_le_bytes());
        }
        let mut take = |name: &str| {
            fds.remove(name)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("no map {name}")))
        };
        let (chan_to_udp, udp_to_chan) = (take("chan_to_udp")?, take("udp_to_chan")?);
        let (counters, settings) = (take("counters")?, take("settings")?);
        sys::map_update(
            &settings,
            &0u32.to_ne_bytes(),
            &max_ip_len(iface).to_ne_bytes(),
        )?;
        let prog = sys::prog_load(&insns, &object.license, "turnd_xdp")?;
        let link = sys::xdp_link(&prog, ifindex, 0)?;
        Ok(Offload {
            iface: iface.to_string(),
            _link: link,
            _prog: prog,
            chan_to_udp,
            udp_to_chan,
            counters,
            cpus: sys::possible_cpus()?,
            relay_ips,
            ports,
            installed: Mutex::default(),
            published: Mutex::new([0; maps::COUNTERS as usize]),
            metrics,
        })
    }

    fn installed(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 16], Reported>> {
        self.installed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The interface the program is attached to.
    pub fn interface(&self) -> &str {
        &self.iface
    }

    /// Whether the kernel can carry `b` (see [`maps::entries`]; a peer on
    /// our own relay address stays in user space).
    fn carries(&self, b: &ChannelBinding) -> Option<([u8; 16], [u8; 12])> {
        let own = self
            .relay_ips
            .iter()
            .any(|ip| crate::core::peer_policy::canonical(b.peer.ip()) == *ip)
            && self.ports.contains(b.peer.port());
        if own {
            return None;
        }
        maps::entries(b)
    }

    /// Installs or removes one binding. A removal returns what the kernel
    /// relayed on the binding since it was last reported (see
    /// [`Offload::harvest`]; nothing for a binding it did not carry), for
    /// the engine's usage accounting.
    pub fn apply(&self, command: &Command) -> Option<KernelRelayed> {
        match command {
            Command::ChannelInstalled(b) => {
                let (chan, peer) = self.carries(b)?;
                let r = sys::map_update(&self.udp_to_chan, &peer, &maps::value(&chan))
                    .and_then(|()| sys::map_update(&self.chan_to_udp, &chan, &maps::value(&peer)));
                match r {
                    Ok(()) => {
                        if self.installed().insert(chan, Reported::default()).is_none() {
                            self.metrics.offload.channels.inc();
                        }
                        tracing::debug!(channel = b.channel, relay = %b.relay, "channel offloaded");
                    }
                    Err(e) => {
                        let _ = sys::map_delete(&self.udp_to_chan, &peer);
                        let _ = sys::map_delete(&self.chan_to_udp, &chan);
                        warn!(error = %e, channel = b.channel, relay = %b.relay, "cannot install a channel in the kernel map; user space relays it");
                    }
                }
                None
            }
            Command::ChannelRemoved(b) => {
                // Every removal reports, carried or not: the engine holds
                // the allocation's usage record until all of them have.
                let nothing = KernelRelayed {
                    binding: *b,
                    sent: Flow::default(),
                    received: Flow::default(),
                };
                let Some((chan, peer)) = self.carries(b) else {
                    return Some(nothing);
                };
                // The last counts, then the client's direction first:
                // nothing new reaches the peer once this returns. Packets
                // the kernel relays between the read and the delete (in
                // flight on another CPU) are not in the allocation's usage.
                let relayed = self.read(b, &chan, &peer);
                let r = sys::map_delete(&self.chan_to_udp, &chan)
                    .and(sys::map_delete(&self.udp_to_chan, &peer));
                if let Err(e) = r {
                    warn!(error = %e, channel = b.channel, "cannot remove a channel from the kernel map");
                }
                if self.installed().remove(&chan).is_some() {
                    self.metrics.offload.channels.dec();
                }
                Some(relayed.unwrap_or(nothing))
            }
            // RFC 6062 peer connections are the shell's, not the kernel's.
            Command::TcpConnect { .. } | Command::TcpClose(_) | Command::TcpBind { .. } => None,
        }
    }

    /// What the kernel relayed on each of `bindings` (a worker's installed
    /// channels) since it was last reported; bindings with nothing new are
    /// left out.
    pub fn harvest<'a>(
        &self,
        bindings: impl Iterator<Item = &'a ChannelBinding>,
    ) -> Vec<KernelRelayed> {
        bindings
            .filter_map(|b| {
                let (chan, peer) = self.carries(b)?;
                self.read(b, &chan, &peer)
            })
            .filter(|k| k.sent.packets > 0 || k.received.packets > 0)
            .collect()
    }

    /// Reads a binding's counters and returns the part not yet reported.
    fn read(&self, b: &ChannelBinding, chan: &[u8; 16], peer: &[u8; 12]) -> Option<KernelRelayed> {
        let mut c2p = [0u8; maps::VALUE_SIZE];
        let mut p2c = [0u8; maps::VALUE_SIZE];
        let found = sys::map_lookup(&self.chan_to_udp, chan, &mut c2p).ok()?
            && sys::map_lookup(&self.udp_to_chan, peer, &mut p2c).ok()?;
        if !found {
            return None;
        }
        let now = Reported {
            sent: maps::counted(&c2p),
            received: maps::counted(&p2c),
        };
        let mut installed = self.installed();
        let last = installed.get_mut(chan)?;
        let flow = |now: (u64, u64), then: (u64, u64)| Flow {
            packets: now.0.saturating_sub(then.0),
            bytes: now.1.saturating_sub(then.1),
        };
        let relayed = KernelRelayed {
            binding: *b,
            sent: flow(now.sent, last.sent),
            received: flow(now.received, last.received),
        };
        *last = now;
        Some(relayed)
    }

    /// Adds what the kernel relayed since the last call into the metrics.
    pub fn publish(&self) {
        let mut totals = [0u64; maps::COUNTERS as usize];
        let mut buf = vec![0u8; 8 * self.cpus];
        for (i, total) in totals.iter_mut().enumerate() {
            if let Ok(true) = sys::map_lookup(&self.counters, &(i as u32).to_ne_bytes(), &mut buf) {
                *total = buf
                    .chunks_exact(8)
                    .map(|c| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8])))
                    .sum();
            }
        }
        let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        let delta = |i: u32| totals[i as usize].saturating_sub(published[i as usize]);
        let m = &self.metrics;
        for (direction, packets, bytes) in [
            (Direction::ClientToPeer, maps::C2P_PACKETS, maps::C2P_BYTES),
            (Direction::PeerToClient, maps::P2C_PACKETS, maps::P2C_BYTES),
        ] {
            let (p, b) = (delta(packets), delta(bytes));
            if p > 0 {
                m.count_relayed(direction, p, b);
                let d = [direction.as_str()];
                m.offload.relayed_packets.with_label_values(&d).inc_by(p);
                m.offload.relayed_bytes.with_label_values(&d).inc_by(b);
            }
        }
        for (index, reason) in [
            (maps::DROP_ADJUST, "dropped_adjust_failed"),
            (maps::PASS_MALFORMED, "passed_malformed"),
            (maps::PASS_OVERSIZE, "passed_oversize"),
        ] {
            let n = delta(index);
            if n > 0 {
                m.offload.not_relayed.with_label_values(&[reason]).inc_by(n);
            }
        }
        *published = totals;
    }
}

impl Drop for Offload {
    fn drop(&mut self) {
        self.publish();
        self.metrics.offload.active.set(0);
        info!(interface = %self.iface, "kernel offload detached");
    }
}

/// The largest IPv4 datagram the program may build: the interface's MTU.
fn max_ip_len(iface: &str) -> u32 {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/mtu"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(1500)
        .min(65_535)
}

/// The interface holding `ip` (IPv4, concrete), found with getifaddrs(3).
fn interface_of(ip: IpAddr) -> Option<String> {
    let IpAddr::V4(want) = ip else { return None };
    if want.is_unspecified() {
        return None;
    }
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null()
            // SAFETY: ifa_addr is non-null and points at a sockaddr.
            && i32::from(unsafe { (*ifa.ifa_addr).sa_family }) == libc::AF_INET
        {
            // SAFETY: an AF_INET address is a sockaddr_in.
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            if std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)) == want {
                // SAFETY: ifa_name is a NUL-terminated string.
                let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
                found = Some(name.to_string_lossy().into_owned());
                break;
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs.
    unsafe { libc::freeifaddrs(head) };
    found
}

/// Where a worker applies the engine's commands; returns the last counts
/// of the bindings that left the kernel.
pub fn apply_all(offload: Option<&Offload>, commands: &[Command]) -> Vec<KernelRelayed> {
    match offload {
        Some(o) => commands.iter().filter_map(|c| o.apply(c)).collect(),
        None => Vec::new(),
    }
}

/// Counter values of one binding as last reported to the engine.
#[derive(Debug, Default, Clone, Copy)]
struct Reported {
    sent: (u64, u64),
    received: (u64, u64),
}

/// What the kernel relayed on one binding since its last report: `sent`
/// from the client to the peer, `received` from the peer to the client
/// (payload bytes, as the engine counts them).
#[derive(Debug, Clone, Copy)]
pub struct KernelRelayed {
    pub binding: ChannelBinding,
    pub sent: Flow,
    pub received: Flow,
}
