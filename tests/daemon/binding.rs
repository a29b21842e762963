//! STUN Binding against the real daemon over raw UDP sockets (RFC 8489 /
//! RFC 5389 clients, classic RFC 3489 clients, coturn's
//! `turnutils_stunclient`), the dropping and counting of malformed
//! datagrams, and a clean stop on SIGTERM.

use crate::common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::raw::{build, decode, error_code, recv_from_within};
use common::{require_tool, run_with_timeout, Daemon, TestConfig};
use stun::agent::TransactionId;
use stun::attributes::{
    ATTR_CHANGE_REQUEST, ATTR_FINGERPRINT, ATTR_MESSAGE_INTEGRITY, ATTR_UNKNOWN_ATTRIBUTES,
    ATTR_XORMAPPED_ADDRESS,
};
use stun::fingerprint::FINGERPRINT;
use stun::message::{Getter, Message, Setter, BINDING_REQUEST, BINDING_SUCCESS};
use stun::xoraddr::XorMappedAddress;

/// Wait for a response that must come.
const ANSWER: Duration = Duration::from_secs(5);
/// Wait that shows no response comes (turnd answers on loopback in well
/// under a millisecond; a late answer would also be caught by the next
/// exchange, see `malformed_datagrams_are_dropped_and_counted`).
const SILENCE: Duration = Duration::from_millis(300);

fn client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").expect("bind a client socket")
}

fn binding_request(fingerprint: bool) -> Message {
    let mut setters: Vec<Box<dyn Setter>> =
        vec![Box::new(TransactionId::new()), Box::new(BINDING_REQUEST)];
    if fingerprint {
        setters.push(Box::new(FINGERPRINT));
    }
    build(setters)
}

/// Sends `req` and returns the first datagram turnd sends back, decoded.
fn exchange(socket: &UdpSocket, server: SocketAddr, req: &[u8]) -> Message {
    socket.send_to(req, server).expect("send to turnd");
    let (bytes, _) = recv_from_within(socket, Some(server), ANSWER).expect("turnd answers");
    decode(&bytes).unwrap_or_else(|| panic!("the answer is not STUN: {bytes:02x?}"))
}

fn xor_mapped(resp: &Message) -> SocketAddr {
    let mut a = XorMappedAddress::default();
    a.get_from(resp).expect("XOR-MAPPED-ADDRESS");
    SocketAddr::new(a.ip, a.port)
}

/// Checks a Binding success response to `req` from a client at `client`.
fn assert_binding_success(resp: &Message, req: &Message, client: SocketAddr, fingerprint: bool) {
    assert_eq!(resp.typ, BINDING_SUCCESS, "{resp}");
    assert_eq!(resp.transaction_id, req.transaction_id);
    assert_eq!(xor_mapped(resp), client, "XOR-MAPPED-ADDRESS is the source");
    assert!(
        !resp.contains(ATTR_MESSAGE_INTEGRITY),
        "an unauthenticated Binding gets no MESSAGE-INTEGRITY"
    );
    if fingerprint {
        let last = resp.attributes.0.last().expect("attributes");
        assert_eq!(last.typ, ATTR_FINGERPRINT, "FINGERPRINT comes last");
        FINGERPRINT.check(resp).expect("the FINGERPRINT is valid");
    } else {
        assert!(
            !resp.contains(ATTR_FINGERPRINT),
            "no FINGERPRINT when the request had none: {resp}"
        );
    }
}

#[test]
fn binding_maps_the_source_with_fingerprint_iff_requested() {
    let d = TestConfig::default().start();
    let s = client();
    let me = s.local_addr().unwrap();
    for fingerprint in [true, false, true] {
        let req = binding_request(fingerprint);
        let resp = exchange(&s, d.udp_addr(), &req.raw);
        assert_binding_success(&resp, &req, me, fingerprint);
        assert!(
            resp.contains(ATTR_XORMAPPED_ADDRESS),
            "RFC 5389 clients get XOR-MAPPED-ADDRESS"
        );
    }
    let m = d.scrape();
    assert_eq!(
        m.get("turnd_binding_requests_total", &[("transport", "udp")]),
        3.0
    );
    assert_eq!(
        m.get(
            "turnd_requests_total",
            &[("method", "binding"), ("result", "success")]
        ),
        3.0
    );
}

#[test]
fn binding_is_answered_without_any_credentials_configured() {
    // No users and no REST secrets: no relaying, but STUN still works.
    let d = TestConfig {
        users: Vec::new(),
        ..TestConfig::default()
    }
    .start();
    let s = client();
    let req = binding_request(true);
    let resp = exchange(&s, d.udp_addr(), &req.raw);
    assert_binding_success(&resp, &req, s.local_addr().unwrap(), true);
}

#[test]
fn classic_rfc3489_binding_gets_mapped_address() {
    let d = TestConfig::default().start();
    let s = client();
    let me = s.local_addr().unwrap();
    // RFC 3489 §11.1: type, length 0, then a 128-bit transaction id whose
    // first four bytes are not the magic cookie.
    let tid: [u8; 16] = [
        0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    ];
    let mut req = vec![0x00, 0x01, 0x00, 0x00];
    req.extend_from_slice(&tid);
    s.send_to(&req, d.udp_addr()).unwrap();
    let (resp, _) = recv_from_within(&s, Some(d.udp_addr()), ANSWER).expect("turnd answers");

    assert!(resp.len() >= 20, "short response {resp:02x?}");
    assert_eq!(&resp[..2], &[0x01, 0x01], "Binding success response");
    let len = usize::from(u16::from_be_bytes([resp[2], resp[3]]));
    assert_eq!(resp.len(), 20 + len, "length field");
    assert_eq!(&resp[4..20], &tid, "the 128-bit transaction id is echoed");
    // Walk the attributes for MAPPED-ADDRESS (0x0001).
    let mut attrs = &resp[20..];
    let mut mapped = None;
    while attrs.len() >= 4 {
        let typ = u16::from_be_bytes([attrs[0], attrs[1]]);
        let alen = usize::from(u16::from_be_bytes([attrs[2], attrs[3]]));
        let value = &attrs[4..4 + alen];
        if typ == 0x0001 {
            mapped = Some(value.to_vec());
        }
        attrs = &attrs[(4 + alen.next_multiple_of(4)).min(attrs.len())..];
    }
    let mapped = mapped.expect("MAPPED-ADDRESS present");
    let SocketAddr::V4(me4) = me else {
        unreachable!()
    };
    let mut want = vec![0x00, 0x01];
    want.extend_from_slice(&me4.port().to_be_bytes());
    want.extend_from_slice(&me4.ip().octets());
    assert_eq!(mapped, want, "MAPPED-ADDRESS is {me} in the clear");
    assert_eq!(
        d.scrape()
            .get("turnd_binding_requests_total", &[("transport", "udp")]),
        1.0
    );
}

/// A CHANGE-REQUEST (RFC 5780 §7.2) with `flags`, as stuntman's
/// `stunclient` sends it (no flag set in its basic test).
struct ChangeRequest(u8);

impl Setter for ChangeRequest {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        m.add(ATTR_CHANGE_REQUEST, &[0, 0, 0, self.0]);
        Ok(())
    }
}

#[test]
fn change_request_is_a_plain_binding_without_flags_and_420_with() {
    let d = TestConfig::default().start();
    let s = client();
    let me = s.local_addr().unwrap();
    let plain = build(vec![
        Box::new(TransactionId::new()),
        Box::new(BINDING_REQUEST),
        Box::new(ChangeRequest(0)),
    ]);
    let resp = exchange(&s, d.udp_addr(), &plain.raw);
    assert_binding_success(&resp, &plain, me, false);
    for flags in [0x02, 0x04, 0x06] {
        let req = build(vec![
            Box::new(TransactionId::new()),
            Box::new(BINDING_REQUEST),
            Box::new(ChangeRequest(flags)),
            Box::new(FINGERPRINT),
        ]);
        let resp = exchange(&s, d.udp_addr(), &req.raw);
        assert_eq!(error_code(&resp), Some(420), "flags {flags:#x}: {resp}");
        assert!(
            !resp.contains(ATTR_XORMAPPED_ADDRESS),
            "never a mapping from the same address"
        );
        let (unknown, _) = resp.attributes.get(ATTR_UNKNOWN_ATTRIBUTES);
        assert_eq!(unknown.value, vec![0x00, 0x03]);
    }
}

#[test]
fn malformed_datagrams_are_dropped_and_counted() {
    let d = TestConfig::default().start();
    let s = client();
    let server = d.udp_addr();
    let before = d.scrape();
    assert_eq!(before.sum("turnd_dropped_packets_total"), 0.0);

    let valid = binding_request(true).raw;
    let mut bad_fingerprint = valid.clone();
    let last = bad_fingerprint.len() - 1;
    bad_fingerprint[last] ^= 0xff;
    // A STUN header announcing 8 bytes of attributes that are not there.
    let mut short_body = binding_request(false).raw;
    short_body[3] = 8;
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("0xff bytes", vec![0xff; 64]),
        ("text", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        ("truncated header", valid[..10].to_vec()),
        ("length beyond the datagram", short_body),
        ("bad FINGERPRINT", bad_fingerprint),
    ];
    for (_, bytes) in &garbage {
        s.send_to(bytes, server).unwrap();
    }
    if let Some((answer, _)) = recv_from_within(&s, Some(server), SILENCE) {
        panic!("turnd answered garbage with {answer:02x?}");
    }

    // A well-formed Binding right after still works, and its response is
    // the first datagram back: nothing was answered before it.
    let req = binding_request(true);
    let resp = exchange(&s, server, &req.raw);
    assert_binding_success(&resp, &req, s.local_addr().unwrap(), true);

    let m = d.scrape();
    assert_eq!(
        m.sum("turnd_dropped_packets_total"),
        garbage.len() as f64,
        "every bad datagram counted once: {:?}",
        m.0.iter()
            .filter(|(n, _, v)| n == "turnd_dropped_packets_total" && *v > 0.0)
            .collect::<Vec<_>>()
    );
    let dropped = |reason| m.get("turnd_dropped_packets_total", &[("reason", reason)]);
    // 0xff: the first two bits (11) are neither STUN (00) nor ChannelData (01).
    assert!(dropped("not_stun") >= 1.0);
    // Which of the two the others count as is turnd's choice: "GET" starts
    // like ChannelData (01), the truncated header like STUN (00).
    assert_eq!(dropped("not_stun") + dropped("malformed"), 4.0);
    assert_eq!(dropped("bad_fingerprint"), 1.0);
    assert_eq!(
        m.get("turnd_binding_requests_total", &[("transport", "udp")]),
        1.0,
        "only the valid Binding counts as one"
    );
}

#[test]
fn empty_datagram_is_dropped_and_counted() {
    let d = TestConfig::default().start();
    let s = client();
    s.send_to(&[], d.udp_addr()).unwrap();
    // Then a Binding as a marker: once it is answered, the empty datagram
    // before it has been handled (one socket, one 5-tuple, in order).
    let req = binding_request(false);
    let resp = exchange(&s, d.udp_addr(), &req.raw);
    assert_binding_success(&resp, &req, s.local_addr().unwrap(), false);
    let m = d.scrape();
    assert_eq!(
        m.sum("turnd_dropped_packets_total"),
        1.0,
        "a zero-length datagram is dropped and counted (not_stun)"
    );
    assert_eq!(
        m.get("turnd_dropped_packets_total", &[("reason", "not_stun")]),
        1.0
    );
}

#[test]
fn coturn_stunclient_gets_its_reflexive_address() {
    if !require_tool("turnutils_stunclient") {
        return;
    }
    let d = TestConfig::default().start();
    let run = run_with_timeout(
        Command::new("turnutils_stunclient")
            // -p: the STUN server port; the positional argument is its address.
            .arg("-p")
            .arg(d.udp_addr().port().to_string())
            .arg(d.udp_addr().ip().to_string()),
        Duration::from_secs(30),
    );
    assert!(run.status.success(), "{}", run.output);
    // It prints "IPv4. UDP reflexive addr: 127.0.0.1:PORT".
    let reflexive: SocketAddr = run
        .output
        .lines()
        .find_map(|l| l.split("UDP reflexive addr: ").nth(1))
        .unwrap_or_else(|| panic!("no reflexive address in:\n{}", run.output))
        .trim()
        .parse()
        .expect("the reflexive address parses");
    assert_eq!(reflexive.ip().to_string(), "127.0.0.1");
    assert_ne!(reflexive.port(), 0);
    assert!(
        d.scrape()
            .get("turnd_binding_requests_total", &[("transport", "udp")])
            >= 1.0
    );
}

#[test]
fn sigterm_stops_the_daemon_cleanly() {
    let d: Daemon = TestConfig::default().start();
    let s = client();
    let req = binding_request(false);
    let resp = exchange(&s, d.udp_addr(), &req.raw);
    assert_binding_success(&resp, &req, s.local_addr().unwrap(), false);
    let status = d.terminate();
    assert!(status.success(), "turnd exited with {status} on SIGTERM");
}
