//! Who else holds a listener port. Workers bind their listeners with
//! SO_REUSEPORT, so a second turnd (or coturn run as the same user) could
//! bind the same port and the kernel would split clients between the two
//! processes. After binding, turnd looks for sockets on its listener ports
//! that are not its own (Linux: /proc/net/{udp,tcp}{,6} for the sockets,
//! /proc/PID/fd for their owners) and refuses to start if it finds one.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The protocol of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
}

/// A process holding a socket on a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The socket's local address.
    pub local: SocketAddr,
    /// The owning process, when this user may see it.
    pub pid: Option<u32>,
    pub command: Option<String>,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.pid, &self.command) {
            (Some(pid), Some(cmd)) => write!(f, "pid {pid} ({cmd}) on {}", self.local),
            (Some(pid), None) => write!(f, "pid {pid} on {}", self.local),
            _ => write!(
                f,
                "a process this user cannot see (another user's) on {}",
                self.local
            ),
        }
    }
}

/// The sockets on `addr`'s port that overlap `addr` (same address family,
/// same address or either one unspecified) and are not this process's.
/// TCP sockets count when listening. Empty where /proc cannot be read.
pub fn others(proto: Proto, addr: SocketAddr) -> Vec<Holder> {
    let own = own_socket_inodes();
    let tables: [&str; 2] = match proto {
        Proto::Udp => ["/proc/net/udp", "/proc/net/udp6"],
        Proto::Tcp => ["/proc/net/tcp", "/proc/net/tcp6"],
    };
    let mut found = Vec::new();
    for table in tables {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for (local, inode) in sockets(&text, proto) {
            if local.port() == addr.port()
                && overlaps(local.ip(), addr.ip())
                && !own.contains(&inode)
            {
                found.push((local, inode));
            }
        }
    }
    if found.is_empty() {
        return Vec::new();
    }
    let owners = socket_owners(found.iter().map(|(_, i)| *i).collect());
    let mut holders: Vec<Holder> = Vec::new();
    for (local, inode) in found {
        let pid = owners.iter().find(|(i, _)| *i == inode).map(|(_, p)| *p);
        // One line per process and address, however many sockets it has.
        if !holders.iter().any(|h| h.local == local && h.pid == pid) {
            holders.push(Holder {
                local,
                pid,
                command: pid.and_then(command),
            });
        }
    }
    holders
}

/// Whether sockets bound at `a` and `b` (same port) receive the same
/// datagrams or connections.
fn overlaps(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4() && (a == b || a.is_unspecified() || b.is_unspecified())
}

/// (local address, inode) of each socket in a /proc/net table.
fn sockets(text: &str, proto: Proto) -> Vec<(SocketAddr, u64)> {
    const TCP_LISTEN: &str = "0A";
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = parse_address(fields.get(1)?)?;
            if proto == Proto::Tcp && *fields.get(3)? != TCP_LISTEN {
                return None;
            }
            let inode = fields.get(9)?.parse().ok()?;
            Some((local, inode))
        })
        .collect()
}

/// `0100007F:0D96` (IPv4) or 32 hex digits and a port (IPv6): the kernel
/// prints each 32-bit word in host byte order.
fn parse_address(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    let ip: IpAddr = match ip.len() {
        8 => Ipv4Addr::from(word(0)?).into(),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Ipv6Addr::from(b).into()
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The inode in a `/proc/PID/fd/N` link target `socket:[INODE]`.
fn socket_inode(target: &std::path::Path) -> Option<u64> {
    let s = target.to_str()?;
    s.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// This process's socket inodes.
fn own_socket_inodes() -> HashSet<u64> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return HashSet::new();
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|t| socket_inode(&t))
        .collect()
}

/// (inode, pid) for each of `inodes` found open in a process this user
/// may look into.
fn socket_owners(inodes: HashSet<u64>) -> Vec<(u64, u32)> {
    let mut owners = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return owners;
    };
    for proc in procs.flatten() {
        let Some(pid) = proc
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Some(inode) = std::fs::read_link(fd.path())
                .ok()
                .and_then(|t| socket_inode(&t))
            {
                if inodes.contains(&inode) && !owners.iter().any(|(i, _)| *i == inode) {
                    owners.push((inode, pid));
                }
            }
        }
    }
    owners
}

/// A process's command name (`/proc/PID/comm`).
fn command(pid: u32) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim().to_owned()).filter(|c| !c.is_empty())
}

/// "held by pid 1234 (turnd) on 0.0.0.0:3478, …" for an error message.
pub fn describe(holders: &[Holder]) -> String {
    let list: Vec<String> = holders.iter().map(ToString::to_string).collect();
    list.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_addresses() {
        assert_eq!(
            parse_address("0100007F:0D96"),
            Some("127.0.0.1:3478".parse().unwrap())
        );
        assert_eq!(
            parse_address("00000000000000000000000001000000:0D96"),
            Some("[::1]:3478".parse().unwrap())
        );
        assert_eq!(parse_address("zz:0D96"), None);
    }

    #[test]
    fn a_reuseport_socket_of_this_process_is_own() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        assert!(others(Proto::Udp, addr).is_empty());
    }
}
