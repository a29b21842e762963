//! coturn's test tools driven against turnd: `turnutils_peer` as the UDP
//! peer and `turnutils_uclient` as the client. Both are killed by PID.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::common::coturn_peer::CoturnPeer;
use crate::common::{run_with_timeout, PASSWORD, USER};

/// Starts coturn's `turnutils_peer` (a UDP echo server) on 127.0.0.1 and
/// checks that it echoes; killed by PID when the first value is dropped.
pub fn start_turnutils_peer() -> (CoturnPeer, SocketAddr) {
    let peer = CoturnPeer::v4();
    let addr = peer.addr;
    (peer, addr)
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
