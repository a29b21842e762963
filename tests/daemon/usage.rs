//! Usage records of the real daemon: one `turnd::usage` line per ended
//! allocation, whose packet and byte counts equal what a client we did not
//! write (`turn::client`) sent and received through it, in JSON and text,
//! with users and addresses hashed under `[log] redact`.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{pattern, Daemon, TestConfig, PASSWORD, USER};
use tokio::net::UdpSocket;
use tokio::time::timeout;
use webrtc_util::Conn;

const STEP: Duration = Duration::from_secs(10);

fn daemon(log: &str) -> Daemon {
    let mut cfg = TestConfig::default().allow_loopback();
    cfg.extra = format!("[log]\n{log}\n");
    cfg.start()
}

/// What the client itself counted.
#[derive(Debug, Default, PartialEq)]
struct Counts {
    sent_packets: u64,
    sent_bytes: u64,
    received_packets: u64,
    received_bytes: u64,
}

/// Allocates with `turn::client`, exchanges datagrams of several sizes with
/// a peer (each checked on arrival), then deletes the allocation; returns
/// the client's own counts and its relayed address.
async fn relay_some(server: SocketAddr) -> (Counts, SocketAddr) {
    let conn = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let client = common::turn_client(server, USER, PASSWORD, conn).await;
    let relay = timeout(STEP, client.allocate()).await.unwrap().unwrap();
    let relayed = relay.local_addr().unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let mut counts = Counts::default();
    let mut buf = vec![0u8; 65536];
    for (i, (out, back)) in [(1usize, 7usize), (100, 1200), (1400, 3), (5000, 60000)]
        .into_iter()
        .enumerate()
    {
        let out = pattern(out, i as u8);
        timeout(STEP, relay.send_to(&out, peer_addr))
            .await
            .unwrap()
            .unwrap();
        let (n, _) = timeout(STEP, peer.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], &out[..]);
        counts.sent_packets += 1;
        counts.sent_bytes += out.len() as u64;
        let back = pattern(back, 100 + i as u8);
        peer.send_to(&back, relayed).await.unwrap();
        let (n, _) = timeout(STEP, relay.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], &back[..]);
        counts.received_packets += 1;
        counts.received_bytes += back.len() as u64;
    }
    relay.close().await.unwrap();
    client.close().await.unwrap();
    (counts, relayed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_usage_record_counts_what_the_client_sent_and_received() {
    let d = daemon("format = \"json\"");
    let (counts, relayed) = relay_some(d.udp_addr()).await;
    let lines = d.log_lines("turnd::usage", 1);
    assert_eq!(lines.len(), 1, "one record per allocation: {lines:?}");
    let rec: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    let num = |k: &str| rec[k].as_u64().unwrap_or_else(|| panic!("{k} in {rec}"));
    let got = Counts {
        sent_packets: num("sent_packets"),
        sent_bytes: num("sent_bytes"),
        received_packets: num("received_packets"),
        received_bytes: num("received_bytes"),
    };
    assert_eq!(got, counts, "{rec}");
    assert_eq!(rec["target"], "turnd::usage");
    assert_eq!(rec["level"], "INFO");
    assert_eq!(rec["user"], USER);
    assert_eq!(rec["transport"], "udp");
    assert_eq!(rec["reason"], "deleted");
    assert_eq!(rec["relay"], relayed.to_string());
    assert!(
        rec["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{rec}"
    );
    assert!(num("start") > 1_700_000_000, "{rec}");
    assert!(rec["duration_s"].as_f64().unwrap() >= 0.0, "{rec}");
    assert_eq!(rec["id"].as_str().unwrap().len(), 16, "{rec}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_usage_record_honours_redact() {
    let d = daemon("redact = true");
    let (counts, _) = relay_some(d.udp_addr()).await;
    let line = d.log_lines("turnd::usage", 1).remove(0);
    assert!(line.contains(" INFO turnd::usage: usage "), "{line}");
    for (k, v) in [
        ("sent_packets", counts.sent_packets),
        ("sent_bytes", counts.sent_bytes),
        ("received_packets", counts.received_packets),
        ("received_bytes", counts.received_bytes),
    ] {
        assert!(line.contains(&format!(" {k}={v}")), "{k}={v}: {line}");
    }
    assert!(!line.contains(USER), "the user is hashed: {line}");
    assert!(
        !line.contains("client=127.0.0.1"),
        "the client is hashed: {line}"
    );
    assert!(line.contains("client=~"), "{line}");
}
