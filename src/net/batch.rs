//! Batched UDP receive through `quinn-udp`: one `recvmmsg` fills up to
//! [`BATCH`] datagrams, with GRO where the kernel has it. One batch buffer
//! per worker, shared by all of that worker's sockets (a worker handles one
//! socket at a time), so thousands of relay sockets cost no buffer each.
//!
//! A receive that comes back short of [`BATCH`] has emptied the socket's
//! queue: readiness is cleared then, without the second `recvmmsg` that
//! would only say `EAGAIN` (at light load, where every wakeup brings one
//! datagram, that call was a third of the receive path's system calls).
//! tokio's readiness is edge-triggered: a datagram that arrives later is a
//! new edge and wakes the reader again. "Short means empty" is Linux's
//! `recvmmsg`: it stops early only when the queue is empty, or on a relay
//! socket (which sets `IP_RECVERR`) when an ICMP error is pending; that
//! error is a readiness event of its own, which wakes the reader again.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};

use quinn_udp::{RecvMeta, UdpSocketState};
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};

/// Datagrams per receive call.
pub const BATCH: usize = quinn_udp::BATCH_SIZE;
/// Room per datagram: a whole UDP payload, or a GRO train of segments.
pub const SLOT: usize = 65_536;

pub struct Batch {
    storage: Vec<u8>,
    pub meta: [RecvMeta; BATCH],
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            storage: vec![0; BATCH * SLOT],
            meta: [RecvMeta::default(); BATCH],
        }
    }
}

impl Batch {
    /// One `recvmmsg` on `socket`: the number of filled slots, or an error
    /// (`WouldBlock` when nothing is queued).
    fn recv(&mut self, socket: &std::net::UdpSocket, state: &UdpSocketState) -> io::Result<usize> {
        let Batch { storage, meta } = self;
        let mut slices: [IoSliceMut<'_>; BATCH] = {
            let mut chunks = storage.chunks_mut(SLOT);
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()))
        };
        state.recv(socket.into(), &mut slices, meta)
    }

    /// The datagrams in slot `i`, split at GRO segment boundaries.
    pub fn datagrams(&self, i: usize) -> impl Iterator<Item = &[u8]> {
        let meta = &self.meta[i];
        let data = &self.storage[i * SLOT..i * SLOT + meta.len.min(SLOT)];
        let stride = meta.stride.max(1);
        // An empty datagram is still a datagram (dropped and counted later).
        let count = data.len().div_ceil(stride).max(1);
        (0..count)
            .map(move |k| &data[(k * stride).min(data.len())..((k + 1) * stride).min(data.len())])
    }
}

/// A non-blocking UDP socket registered with the worker's reactor, with its
/// batched-I/O state.
pub struct BatchSocket {
    fd: AsyncFd<std::net::UdpSocket>,
    state: UdpSocketState,
    /// ICMP errors are queued on this socket (a relay socket).
    icmp: bool,
}

impl BatchSocket {
    /// Takes `socket` over: non-blocking, fragmentation allowed (see
    /// [`socket_state`]), registered for readability.
    pub fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        let state = socket_state(&socket)?;
        // SAFETY: a std UdpSocket owns its fd; the AsyncFd owns the socket
        // and never replaces it, so the fd stays open and the same until
        // the AsyncFd is dropped.
        let interest = tokio::io::Interest::READABLE | tokio::io::Interest::ERROR;
        let fd = unsafe { AsyncFd::register_with_interest(socket, interest) }
            .map_err(io::Error::from)?;
        Ok(BatchSocket {
            fd,
            state,
            icmp: false,
        })
    }

    /// A relay socket: like [`BatchSocket::new`], with the ICMP errors its
    /// datagrams draw queued for [`BatchSocket::icmp_error`] (RFC 8656 §11.5).
    pub fn relay(socket: std::net::UdpSocket) -> io::Result<Self> {
        super::icmp::enable(&socket)?;
        let mut s = Self::new(socket)?;
        s.icmp = true;
        Ok(s)
    }

    /// The next queued ICMP error and the peer it concerns, if any.
    pub fn icmp_error(&self) -> Option<(SocketAddr, crate::core::Icmp)> {
        if !self.icmp {
            return None;
        }
        super::icmp::recv(self.socket()).ok().flatten()
    }

    pub fn socket(&self) -> &std::net::UdpSocket {
        self.fd.get_ref()
    }

    /// [`BatchSocket::send`] from the socket's own address, unmarked.
    pub fn send_to(&self, payload: &[u8], destination: SocketAddr) -> bool {
        self.send(payload, destination, None, 0)
    }

    /// One `sendmsg`, now; false when the kernel refused it (a full socket
    /// buffer drops the datagram, as the network would). No readiness gate:
    /// the first datagram of a fresh relay socket goes out at once.
    ///
    /// `src_ip` is the source address for a socket bound to a wildcard
    /// address (IP_PKTINFO / IPV6_PKTINFO): replies leave from the address
    /// the request came to (RFC 8489 §6.3.1.2). `ecn` is the ECN field to
    /// mark the datagram with (RFC 8656 §14).
    pub fn send(
        &self,
        payload: &[u8],
        destination: SocketAddr,
        src_ip: Option<IpAddr>,
        ecn: u8,
    ) -> bool {
        let transmit = quinn_udp::Transmit {
            destination,
            ecn: quinn_udp::EcnCodepoint::from_bits(ecn),
            contents: payload,
            segment_size: None,
            src_ip,
        };
        match self.state.try_send(self.socket().into(), &transmit) {
            Ok(()) => true,
            // An ICMP error queued on a relay socket fails the next send
            // once (the socket's pending error); the datagram is not lost.
            Err(e) if self.icmp && e.kind() != io::ErrorKind::WouldBlock => {
                self.state.try_send(self.socket().into(), &transmit).is_ok()
            }
            Err(_) => false,
        }
    }

    /// Waits until datagrams may be queued.
    pub async fn readable(&self) -> io::Result<Readable<'_>> {
        let interest = if self.icmp {
            tokio::io::Interest::READABLE | tokio::io::Interest::ERROR
        } else {
            tokio::io::Interest::READABLE
        };
        Ok(Readable {
            guard: self.fd.ready(interest).await?,
            state: &self.state,
            drained: false,
        })
    }
}

/// One readiness event of a [`BatchSocket`]: receive batches from it until
/// [`Readable::recv`] says the queue is empty.
pub struct Readable<'a> {
    guard: AsyncFdReadyGuard<'a, std::net::UdpSocket>,
    state: &'a UdpSocketState,
    drained: bool,
}

impl Readable<'_> {
    /// Whether the socket signalled an error (an ICMP error is queued).
    pub fn errored(&self) -> bool {
        self.guard.ready().is_error()
    }

    /// The next batch into `batch` (the number of filled slots), or
    /// `Ok(None)` once the socket's queue is empty; readiness is cleared
    /// then. An error leaves readiness set (the caller backs off and
    /// retries).
    pub fn recv(&mut self, batch: &mut Batch) -> io::Result<Option<usize>> {
        if self.drained {
            return Ok(None);
        }
        let state = self.state;
        match self.guard.try_io(|fd| batch.recv(fd.get_ref(), state)) {
            Ok(Ok(n)) => {
                if n < BATCH {
                    // Fewer than asked for: the queue was empty when the
                    // kernel stopped, so this is the "would block".
                    self.guard.clear_ready();
                    self.drained = true;
                }
                Ok(Some(n))
            }
            Ok(Err(e)) => {
                self.drained = true;
                Err(e)
            }
            // WouldBlock: try_io cleared readiness.
            Err(_) => {
                self.drained = true;
                Ok(None)
            }
        }
    }
}

/// A quinn-udp socket state for `socket`, with fragmentation allowed again:
/// quinn sets the don't-fragment bit (QUIC probes its path MTU), but a relay
/// must pass datagrams of any size unless the client asked otherwise
/// (DONT-FRAGMENT, then [`set_dont_fragment`]).
fn socket_state(socket: &std::net::UdpSocket) -> io::Result<UdpSocketState> {
    let state = UdpSocketState::new(socket.into())?;
    if let Err(error) = set_dont_fragment(socket, false) {
        tracing::debug!(%error, "cannot clear don't-fragment");
    }
    Ok(state)
}

/// Sets (`IP_PMTUDISC_DO`) or clears (`IP_PMTUDISC_DONT`) the don't-fragment
/// bit of what `socket` sends; the IPv6 options of the same name on an IPv6
/// socket, where "don't fragment" means the host does not fragment either.
/// With it set, a datagram larger than the path MTU is refused by the
/// kernel (counted as a send failure) instead of fragmented.
pub fn set_dont_fragment(socket: &std::net::UdpSocket, on: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    let is_v6 = socket.local_addr()?.is_ipv6();
    let (level, name, value) = match (is_v6, on) {
        (true, true) => (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DO,
        ),
        (true, false) => (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DONT,
        ),
        (false, true) => (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
        ),
        (false, false) => (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DONT,
        ),
    };
    // SAFETY: a valid fd and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The socket's path-MTU discovery mode (IP_MTU_DISCOVER or its IPv6
    /// twin).
    fn mtu_discover(socket: &std::net::UdpSocket) -> libc::c_int {
        use std::os::fd::AsRawFd;
        let (level, name) = if socket.local_addr().unwrap().is_ipv6() {
            (libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER)
        } else {
            (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER)
        };
        let mut value: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: a valid fd, and a c_int with its size to write into.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                level,
                name,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        value
    }

    #[test]
    fn relay_sockets_fragment_unless_told_not_to() {
        for (addr, dont, do_) in [
            ("127.0.0.1:0", libc::IP_PMTUDISC_DONT, libc::IP_PMTUDISC_DO),
            ("[::1]:0", libc::IPV6_PMTUDISC_DONT, libc::IPV6_PMTUDISC_DO),
        ] {
            let Ok(socket) = std::net::UdpSocket::bind(addr) else {
                continue; // no IPv6 on this host
            };
            let _state = socket_state(&socket).unwrap();
            assert_eq!(mtu_discover(&socket), dont, "{addr}: fragmentation allowed");
            set_dont_fragment(&socket, true).unwrap();
            assert_eq!(mtu_discover(&socket), do_, "{addr}: DF set");
        }
    }
}
