//! Interop with coturn's test client: `turnutils_uclient` relays through
//! turnd to a `turnutils_peer` echo server, in its default mode (RTP/RTCP
//! allocation pairs with EVEN-PORT and RESERVATION-TOKEN) and with `-c` (no
//! RTCP), each over channels and with `-s` (Send/Data indications), at
//! light load: no loss, every message echoed, and turnd's relay counters
//! equal to what the client reports. Also: a wrong password makes it fail.
//!
//! Needs coturn's client tools: skipped when they are missing, failed when
//! the `CI` variable is set (`.ci/run` installs them).

use crate::common;

use std::process::Command;
use std::time::Duration;

use crate::common::coturn_peer::{uclient_total, CoturnPeer};
use common::{require_tool, run_with_timeout, Daemon, TestConfig, PASSWORD, USER};

/// A whole `turnutils_uclient` run at these settings takes about 6 s.
const UCLIENT_LIMIT: Duration = Duration::from_secs(90);

/// How a uclient run is set up.
struct Mode {
    /// `-c`: no RTCP allocation; otherwise each session allocates an
    /// RTP/RTCP pair, the RTP one with EVEN-PORT (R bit) and the RTCP one
    /// with the RESERVATION-TOKEN it got back.
    no_rtcp: bool,
    /// `-s`: Send/Data indications instead of ChannelBind + ChannelData.
    send_indications: bool,
    /// `-g`: DONT-FRAGMENT in the Allocate requests.
    dont_fragment: bool,
    /// `-m`: number of clients. In default mode they are RTP/RTCP streams
    /// of sessions, two streams per session, so keep it even.
    clients: u32,
}

/// Messages per client (`-n`) and their length (`-l`).
const MESSAGES: u32 = 10;
const LENGTH: u32 = 120;

fn uclient(d: &Daemon, peer: &CoturnPeer, mode: &Mode, password: &str) -> common::ToolRun {
    let mut cmd = Command::new("turnutils_uclient");
    // -u/-w: long-term credentials (the realm comes from turnd's 401).
    cmd.args(["-u", USER, "-w", password]);
    // -p: turnd's UDP port; -e/-r: the peer's address and port.
    cmd.args(["-p", &d.udp_addr().port().to_string()]);
    cmd.args(["-e", "127.0.0.1", "-r", &peer.addr.port().to_string()]);
    // -m clients, -n messages each, -l bytes per message.
    cmd.args(["-m", &mode.clients.to_string()]);
    cmd.args(["-n", &MESSAGES.to_string(), "-l", &LENGTH.to_string()]);
    if mode.no_rtcp {
        cmd.arg("-c");
    }
    if mode.send_indications {
        cmd.arg("-s");
    }
    if mode.dont_fragment {
        cmd.arg("-g");
    }
    cmd.arg(d.udp_addr().ip().to_string());
    run_with_timeout(&mut cmd, UCLIENT_LIMIT)
}

fn relay_with_uclient(mode: Mode) {
    if !require_tool("turnutils_uclient") || !require_tool("turnutils_peer") {
        return;
    }
    let d = TestConfig::default().allow_loopback().start();
    let peer = CoturnPeer::v4();
    let run = uclient(&d, &peer, &mode, PASSWORD);
    let out = &run.output;
    assert!(
        run.status.success(),
        "uclient failed ({}):\n{out}",
        run.status
    );
    assert!(
        out.contains("Total lost packets 0 (0.000000%)"),
        "packets lost:\n{out}"
    );
    let sent = uclient_total(out, "tot_send_msgs=");
    let received = uclient_total(out, "tot_recv_msgs=");
    let streams = if mode.no_rtcp {
        mode.clients
    } else {
        mode.clients.next_multiple_of(2)
    };
    let expected = u64::from(streams * MESSAGES);
    assert_eq!(sent, expected, "messages sent:\n{out}");
    assert_eq!(received, sent, "every message echoed:\n{out}");

    // turnd saw exactly that traffic: uclient's messages out, the echoes back.
    let bytes = expected * u64::from(LENGTH);
    let m = d.wait_for_relayed((expected, bytes), (expected, bytes));
    let ok = |method| {
        m.get(
            "turnd_requests_total",
            &[("method", method), ("result", "success")],
        )
    };
    // Each client also makes a probe allocation before its real one(s).
    assert!(ok("allocate") >= f64::from(streams));
    if mode.send_indications {
        assert_eq!(ok("channel_bind"), 0.0, "-s uses no channels");
        assert!(ok("create_permission") >= f64::from(streams));
    } else {
        assert!(ok("channel_bind") >= f64::from(streams));
    }
    assert_eq!(m.sum("turnd_peer_denied_total"), 0.0);
    assert_eq!(m.sum("turnd_quota_rejections_total"), 0.0);
}

#[test]
fn uclient_default_mode_with_channels() {
    relay_with_uclient(Mode {
        no_rtcp: false,
        send_indications: false,
        dont_fragment: false,
        clients: 4,
    });
}

#[test]
fn uclient_default_mode_with_send_indications() {
    relay_with_uclient(Mode {
        no_rtcp: false,
        send_indications: true,
        dont_fragment: false,
        clients: 2,
    });
}

#[test]
fn uclient_no_rtcp_with_channels_and_dont_fragment() {
    relay_with_uclient(Mode {
        no_rtcp: true,
        send_indications: false,
        dont_fragment: true,
        clients: 3,
    });
}

#[test]
fn uclient_no_rtcp_with_send_indications() {
    relay_with_uclient(Mode {
        no_rtcp: true,
        send_indications: true,
        dont_fragment: false,
        clients: 3,
    });
}

#[test]
fn uclient_with_a_wrong_password_gets_no_allocation() {
    if !require_tool("turnutils_uclient") || !require_tool("turnutils_peer") {
        return;
    }
    let d = TestConfig::default().allow_loopback().start();
    let peer = CoturnPeer::v4();
    let mode = Mode {
        no_rtcp: true,
        send_indications: false,
        dont_fragment: false,
        clients: 1,
    };
    let run = uclient(&d, &peer, &mode, "wrong-password");
    assert!(!run.status.success(), "uclient succeeded:\n{}", run.output);
    let m = d.scrape();
    assert!(m.get("turnd_auth_failures_total", &[("reason", "bad_integrity")]) >= 1.0);
    assert_eq!(
        m.get("turnd_allocations_created_total", &[("transport", "udp")]),
        0.0
    );
    assert_eq!(m.sum("turnd_relayed_packets_total"), 0.0);
}
