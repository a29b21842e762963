//! ICMP errors on relay sockets (RFC 8656 §11.5): with IP_RECVERR /
//! IPV6_RECVERR the kernel queues the ICMP errors that datagrams sent to
//! peers draw; each is read from the socket's error queue with the peer it
//! concerns (the original destination) and handed to the engine, which
//! tells the client in a Data indication with an ICMP attribute.

use std::io;
use std::mem::{self, MaybeUninit};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use crate::core::Icmp;

/// Asks the kernel to queue ICMP errors on `socket` and to signal them as
/// readiness (`SO_SELECT_ERR_QUEUE` is not needed: epoll reports EPOLLERR
/// whatever the interest).
pub fn enable(socket: &UdpSocket) -> io::Result<()> {
    let v6 = socket.local_addr()?.is_ipv6();
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
    } else {
        (libc::IPPROTO_IP, libc::IP_RECVERR)
    };
    let on: libc::c_int = 1;
    // SAFETY: a valid fd and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&on as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One ICMP error from the error queue of `socket` and the peer it
/// concerns; `Ok(None)` once the queue is empty. Errors the kernel made up
/// locally (not from an ICMP message) are skipped.
pub fn recv(socket: &UdpSocket) -> io::Result<Option<(SocketAddr, Icmp)>> {
    loop {
        let mut name = MaybeUninit::<libc::sockaddr_storage>::zeroed();
        let mut ctrl = [0u64; 64]; // 512 bytes, aligned for cmsghdr
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: byte.len(),
        };
        // SAFETY: zeroed msghdr is valid; every pointer set below points at
        // a live local buffer of the stated length.
        let mut hdr: libc::msghdr = unsafe { mem::zeroed() };
        hdr.msg_name = name.as_mut_ptr().cast();
        hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        hdr.msg_control = ctrl.as_mut_ptr().cast();
        hdr.msg_controllen = mem::size_of_val(&ctrl) as _;
        // SAFETY: as above.
        let n = unsafe {
            libc::recvmsg(
                socket.as_raw_fd(),
                &mut hdr,
                libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(None),
                io::ErrorKind::Interrupted => continue,
                _ => Err(e),
            };
        }
        // SAFETY: the kernel wrote a socket address of `msg_namelen` bytes.
        let peer = unsafe { socket2::SockAddr::new(name.assume_init(), hdr.msg_namelen) };
        let Some(peer) = peer.as_socket() else {
            continue;
        };
        // SAFETY: walking the control buffer the kernel filled, with the
        // libc macros that bound every step by msg_controllen.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&hdr) };
        while !cmsg.is_null() {
            // SAFETY: non-null cmsg within the buffer.
            let c = unsafe { &*cmsg };
            let ours = (c.cmsg_level == libc::IPPROTO_IP && c.cmsg_type == libc::IP_RECVERR)
                || (c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_RECVERR);
            let size = mem::size_of::<libc::sock_extended_err>();
            // SAFETY: CMSG_LEN is arithmetic.
            if ours && c.cmsg_len as usize >= unsafe { libc::CMSG_LEN(size as u32) } as usize {
                // SAFETY: the data holds a sock_extended_err (length checked).
                let ee: libc::sock_extended_err =
                    unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
                let from_icmp = ee.ee_origin == libc::SO_EE_ORIGIN_ICMP
                    || ee.ee_origin == libc::SO_EE_ORIGIN_ICMP6;
                if from_icmp {
                    let icmp = Icmp {
                        v6: ee.ee_origin == libc::SO_EE_ORIGIN_ICMP6,
                        typ: ee.ee_type,
                        code: ee.ee_code,
                        info: ee.ee_info,
                    };
                    return Ok(Some((peer, icmp)));
                }
            }
            // SAFETY: as above.
            cmsg = unsafe { libc::CMSG_NXTHDR(&hdr, cmsg) };
        }
    }
}
