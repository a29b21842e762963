//! coturn's test tools driven against turnd: `turnutils_peer` as the UDP
//! peer and `turnutils_uclient` as the client. Both are killed by PID.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::raw::recv_from_within;
use crate::common::{run_with_timeout, PASSWORD, USER};

use super::{peer_socket, ANSWER, SILENCE};

/// A process killed by PID when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts coturn's `turnutils_peer` (a UDP echo server) on 127.0.0.1 and
/// checks that it echoes.
pub fn start_turnutils_peer() -> (Killed, SocketAddr) {
    let probe = peer_socket();
    for _ in 0..5 {
        // A port the kernel just handed out is very likely still free.
        let port = peer_socket().local_addr().unwrap().port();
        let child = Command::new("turnutils_peer")
            .args(["-L", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn turnutils_peer");
        let mut peer = Killed(child);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + ANSWER;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = peer.0.try_wait() {
                break; // port taken meanwhile: try another
            }
            probe.send_to(b"ping", addr).unwrap();
            if let Some((echo, _)) = recv_from_within(&probe, Some(addr), SILENCE) {
                assert_eq!(echo, b"ping");
                return (peer, addr);
            }
        }
        drop(peer);
    }
    panic!("turnutils_peer did not start");
}

/// Runs `turnutils_uclient` with `flags` against `port`: 2 clients, 10
/// messages of 100 bytes each, relayed through turnutils_peer; asserts
/// every message came back.
pub fn uclient(flags: &[&str], port: u16, peer: SocketAddr) {
    let (clients, messages) = (2, 10);
    let mut cmd = Command::new("turnutils_uclient");
    cmd.args(flags).args([
        "-u",
        USER,
        "-w",
        PASSWORD,
        "-e",
        &peer.ip().to_string(),
        "-r",
        &peer.port().to_string(),
        "-p",
        &port.to_string(),
        "-m",
        &clients.to_string(),
        "-n",
        &messages.to_string(),
        "-l",
        "100",
        "127.0.0.1",
    ]);
    let run = run_with_timeout(&mut cmd, Duration::from_secs(60));
    assert!(run.status.success(), "{cmd:?} failed:\n{}", run.output);
    let total = clients * messages;
    for want in [
        format!("tot_send_msgs={total}, tot_recv_msgs={total}"),
        "Total lost packets 0 (0.000000%)".to_string(),
    ] {
        assert!(
            run.output.contains(&want),
            "no {want:?} in turnutils_uclient's output:\n{}",
            run.output
        );
    }
}
