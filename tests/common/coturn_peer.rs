//! coturn's `turnutils_peer`, the UDP echo peer of coturn's own test
//! setup: started on a free port pair of one address (it echoes on `port`
//! and `port + 1`, the RTCP peer of `turnutils_uclient`'s default mode),
//! checked to echo on both, and killed by PID when dropped; and reading
//! the totals `turnutils_uclient` prints.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::raw::recv_from_within;

/// A running `turnutils_peer`.
pub struct CoturnPeer {
    child: Child,
    /// Where it echoes (and on the next port).
    pub addr: SocketAddr,
}

impl CoturnPeer {
    /// Starts one on `ip` (127.0.0.1 or ::1); tries five port pairs.
    pub fn start(ip: IpAddr) -> CoturnPeer {
        for _ in 0..5 {
            let port = free_port_pair(ip);
            let child = Command::new("turnutils_peer")
                // -L: listening address; -p: listening port (also port+1).
                .args(["-L", &ip.to_string(), "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn turnutils_peer");
            let addr = SocketAddr::new(ip, port);
            let peer = CoturnPeer { child, addr };
            if echoes(addr) && echoes(SocketAddr::new(ip, port + 1)) {
                return peer;
            }
            // Dropping `peer` kills it (a port was taken meanwhile).
        }
        panic!("turnutils_peer did not come up on {ip}");
    }

    /// [`CoturnPeer::start`] on 127.0.0.1.
    pub fn v4() -> CoturnPeer {
        Self::start(IpAddr::from([127, 0, 0, 1]))
    }
}

impl Drop for CoturnPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port P on `ip` with P and P+1 free for UDP at the time of asking.
fn free_port_pair(ip: IpAddr) -> u16 {
    for _ in 0..50 {
        let a = UdpSocket::bind((ip, 0)).expect("bind an ephemeral port");
        let port = a.local_addr().expect("local address").port();
        if port < u16::MAX && UdpSocket::bind((ip, port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two adjacent free UDP ports on {ip}");
}

/// Whether something echoes at `target` (probing for at most 5 s).
fn echoes(target: SocketAddr) -> bool {
    let s = UdpSocket::bind((target.ip(), 0)).expect("bind a probe socket");
    for _ in 0..50 {
        s.send_to(b"turnd-test-probe", target)
            .expect("send a probe");
        if let Some((got, _)) = recv_from_within(&s, Some(target), Duration::from_millis(100)) {
            return got == b"turnd-test-probe";
        }
    }
    false
}

/// The number after `key=` on the last line of `turnutils_uclient`'s
/// output holding it (e.g. `tot_recv_msgs=`).
pub fn uclient_total(output: &str, key: &str) -> u64 {
    output
        .lines()
        .rev()
        .find_map(|l| {
            let rest = l.split(key).nth(1)?;
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            digits.parse().ok()
        })
        .unwrap_or_else(|| panic!("no {key} in uclient output:\n{output}"))
}
