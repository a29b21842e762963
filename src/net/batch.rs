//! Batched UDP receive through `quinn-udp`: one `recvmmsg` fills up to
//! [`BATCH`] datagrams, with GRO where the kernel has it. One batch buffer
//! per worker, shared by all of that worker's sockets (a worker handles one
//! socket at a time), so thousands of relay sockets cost no buffer each.

use std::io::{self, IoSliceMut};

use quinn_udp::{RecvMeta, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

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
    /// Receives what is ready on `socket` without waiting: the number of
    /// filled slots, or `WouldBlock`.
    pub fn recv(&mut self, socket: &UdpSocket, state: &UdpSocketState) -> io::Result<usize> {
        let Batch { storage, meta } = self;
        socket.try_io(Interest::READABLE, || {
            let mut slices: [IoSliceMut<'_>; BATCH] = {
                let mut chunks = storage.chunks_mut(SLOT);
                std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()))
            };
            state.recv(socket.into(), &mut slices, meta)
        })
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

/// A quinn-udp socket state for `socket`, with fragmentation allowed again:
/// quinn sets the don't-fragment bit (QUIC probes its path MTU), but a relay
/// must pass datagrams of any size unless the client asked otherwise.
pub fn socket_state(socket: &std::net::UdpSocket) -> io::Result<UdpSocketState> {
    let state = UdpSocketState::new(socket.into())?;
    allow_fragmentation(socket);
    Ok(state)
}

fn allow_fragmentation(socket: &std::net::UdpSocket) {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    let is_v6 = socket.local_addr().is_ok_and(|a| a.is_ipv6());
    let (level, name, value) = if is_v6 {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DONT,
        )
    } else {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DONT,
        )
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
        tracing::debug!(error = %io::Error::last_os_error(), "cannot clear don't-fragment");
    }
}
