//! turnd as an amplifier (RFC 8489 §16.1.2, RFC 8656 §21.1): what a spoofed
//! source gets back for unauthenticated requests. Binding answers and
//! 401/438 challenges cost an attacker one small datagram each, so turnd
//! sends no SOFTWARE, short reason phrases, and rate-limits them per
//! source IP (default 100/s, burst 200). A bounded flood from one socket on
//! loopback measures bytes out / bytes in over the flood (≤ 1.0) and the
//! `rate_limited` drop counter; single exchanges pin the exact size of
//! every unauthenticated response, which SECURITY.md quotes.

// Deadlines of bounded waits; the clock rule is for the sans-IO core.
#![allow(clippy::disallowed_methods)]

use crate::common;
use crate::hostile_support;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::raw::{decode, error_code};
use common::{Daemon, TestConfig, REALM};
use hostile_support::wire::{self, Msg};
use hostile_support::{attr_types, Client, ANSWER};
use stun::error_code::ErrorCodeAttribute;
use stun::message::{Getter, Message};
use turnd::metrics::text::find;

/// Requests in the flood.
const FLOOD: usize = 5000;
/// Sent in bursts of this many, one burst per [`PACE`]: 2000 requests/s,
/// so the flood lasts about 2.5 s.
const BURST: usize = 50;
const PACE: Duration = Duration::from_millis(25);
/// The default rate limit (config/turnd.toml `[rate_limit]`).
const PER_S: f64 = 100.0;
const BUCKET: f64 = 200.0;

/// The unauthenticated requests of the flood, each as small as it can be
/// while still drawing an answer: 20-byte Binding (success, 32 bytes
/// back), 20-byte Allocate without anything (401), Binding and Allocate
/// with FINGERPRINT, an unsigned Refresh.
fn flood_request(i: usize) -> Vec<u8> {
    let tid = wire::tid();
    match i % 5 {
        0 => Msg::new(wire::BINDING_REQUEST, tid),
        1 => Msg::new(wire::ALLOCATE_REQUEST, tid),
        2 => Msg::new(wire::BINDING_REQUEST, tid).fingerprint(),
        3 => Msg::new(wire::ALLOCATE_REQUEST, tid)
            .attr(wire::REQUESTED_TRANSPORT, &wire::UDP)
            .fingerprint(),
        _ => Msg::new(wire::REFRESH_REQUEST, tid),
    }
    .bytes
}

/// Checks one unauthenticated response: no SOFTWARE, nothing but what the
/// RFC requires, and a short reason phrase on errors.
fn check_unauthenticated(m: &Message) {
    let types = attr_types(m);
    assert!(!types.contains(&wire::SOFTWARE), "SOFTWARE in {m}");
    let body: Vec<u16> = types
        .iter()
        .copied()
        .filter(|t| *t != wire::FINGERPRINT)
        .collect();
    match m.typ.value() {
        0x0101 => assert_eq!(body, [0x0020], "Binding success: XOR-MAPPED-ADDRESS only"),
        0x0113 | 0x0114 => {
            assert_eq!(
                body,
                [
                    wire::ERROR_CODE,
                    wire::REALM,
                    wire::NONCE,
                    wire::PASSWORD_ALGORITHMS
                ],
                "a 401 carries ERROR-CODE, REALM, NONCE and PASSWORD-ALGORITHMS only: {m}"
            );
            let mut e = ErrorCodeAttribute::default();
            e.get_from(m).expect("ERROR-CODE");
            assert_eq!((e.code.0, e.reason.as_slice()), (401, &b"Unauthorized"[..]));
        }
        other => panic!("unexpected unauthenticated response type {other:#06x}: {m}"),
    }
}

/// What the receiving thread saw.
#[derive(Debug, Default)]
struct Received {
    datagrams: u64,
    bytes: u64,
    largest: usize,
}

/// Requests turnd has answered or dropped for the rate limit.
fn processed(d: &Daemon) -> (f64, f64) {
    let s = d.scrape();
    let v = |name, labels: &[(&str, &str)]| find(&s.0, name, labels).unwrap_or(0.0);
    let answered = v("turnd_binding_requests_total", &[("transport", "udp")])
        + v(
            "turnd_requests_total",
            &[("method", "allocate"), ("result", "401")],
        )
        + v(
            "turnd_requests_total",
            &[("method", "refresh"), ("result", "401")],
        );
    let limited = v("turnd_dropped_packets_total", &[("reason", "rate_limited")]);
    (answered, limited)
}

/// Waits (at most 10 s) until turnd has answered or dropped all `sent`.
fn wait_processed(d: &Daemon, sent: usize) -> (f64, f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (a, l) = processed(d);
        if a + l >= sent as f64 {
            return (a, l);
        }
        assert!(Instant::now() < deadline, "handled {a} + {l} of {sent}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_unauthenticated_flood_from_one_source_gets_back_less_than_it_sends() {
    // Default [rate_limit]: the test config sets none.
    let d = TestConfig::default().start();
    assert!(!TestConfig::default().toml().contains("[rate_limit]"));
    let server = d.udp_addr();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let receiver = socket.try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let rx = std::thread::spawn(move || {
        let mut got = Received::default();
        let mut buf = vec![0u8; 65536];
        receiver
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        // Bounded: at most one datagram per request sent, plus a margin.
        while got.datagrams < 2 * FLOOD as u64 {
            match receiver.recv_from(&mut buf) {
                Ok((n, from)) if from == server => {
                    let m =
                        decode(&buf[..n]).unwrap_or_else(|| panic!("not STUN: {:02x?}", &buf[..n]));
                    check_unauthenticated(&m);
                    got.datagrams += 1;
                    got.bytes += n as u64;
                    got.largest = got.largest.max(n);
                }
                Ok(_) => {}
                Err(_) if flag.load(Ordering::Relaxed) => break,
                Err(_) => {}
            }
        }
        got
    });

    let mut bytes_in = 0u64;
    let start = Instant::now();
    for burst in 0..FLOOD / BURST {
        for i in 0..BURST {
            let req = flood_request(burst * BURST + i);
            bytes_in += req.len() as u64;
            socket.send_to(&req, server).expect("send to turnd");
        }
        std::thread::sleep(PACE);
    }
    let sending = start.elapsed();

    // Wait (bounded) until turnd has handled every request, then until the
    // receiver has every answer turnd counted.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (answered, limited) = loop {
        let (a, l) = processed(&d);
        if a + l >= FLOOD as f64 {
            break (a, l);
        }
        assert!(
            Instant::now() < deadline,
            "turnd handled {a} + {l} of {FLOOD} requests"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = start.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let got = rx.join().expect("the receiving thread");

    let ratio = got.bytes as f64 / bytes_in as f64;
    eprintln!(
        "flood: {FLOOD} requests, {bytes_in} bytes in {sending:?}; {} answers \
         ({answered} counted), {} bytes out, largest {}; {limited} rate-limited; \
         out/in = {ratio:.3}",
        got.datagrams, got.bytes, got.largest
    );
    assert_eq!(
        answered + limited,
        FLOOD as f64,
        "every request counted once"
    );
    assert_eq!(
        got.datagrams as f64, answered,
        "every answer counted arrived"
    );
    assert!(limited > 0.0, "the rate limit never dropped anything");
    assert!(ratio <= 1.0, "bytes out / bytes in = {ratio:.3} > 1.0");
    // The bucket: at most the burst plus the refill over the flood (one
    // socket, so one worker, one bucket).
    let bound = BUCKET + PER_S * elapsed.as_secs_f64() + 1.0;
    assert!(
        answered <= bound,
        "{answered} answers in {elapsed:?} exceed the bucket ({bound:.0})"
    );
}

#[test]

fn the_rate_limit_holds_per_source_ip_across_source_ports_and_workers() {
    // Two workers: the kernel spreads a source's ports over them
    // (SO_REUSEPORT hashes the 4-tuple).
    let d = Daemon::start(&format!("workers = 2\n{}", TestConfig::default().toml()));
    let server = d.udp_addr();
    let sockets: Vec<UdpSocket> = (0..64)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let start = Instant::now();
    let mut sent = 0usize;
    for round in 0..16 {
        for s in &sockets {
            let req = flood_request(round * 5); // a minimal Binding
            s.send_to(&req, server).unwrap();
            sent += 1;
        }
    }
    let (answered, limited) = wait_processed(&d, sent);
    let elapsed = start.elapsed();
    let bound = BUCKET + PER_S * elapsed.as_secs_f64() + 1.0;
    eprintln!("{sent} Bindings from 64 ports of 127.0.0.1: {answered} answered, {limited} limited in {elapsed:?}");
    assert!(
        answered <= bound,
        "127.0.0.1 got {answered} answers in {elapsed:?}; one source IP may get {bound:.0}"
    );
}

/// Sends `req` on `s` and returns (request size, response size, response).
fn exchange(s: &UdpSocket, server: std::net::SocketAddr, req: &[u8]) -> (usize, usize, Message) {
    s.send_to(req, server).unwrap();
    let (bytes, _) = common::raw::recv_from_within(s, Some(server), ANSWER).expect("turnd answers");
    let m = decode(&bytes).expect("STUN");
    (req.len(), bytes.len(), m)
}

#[test]
fn every_unauthenticated_response_has_its_exact_minimal_size() {
    let d = TestConfig::default().start();
    let server = d.udp_addr();
    let pad = |n: usize| n.next_multiple_of(4);
    // 401/438: header, ERROR-CODE (4 + 4 + reason), REALM, NONCE (the
    // 13-character cookie and security features, then 36 hex digits: issue
    // time and a truncated HMAC, RFC 8489 §9.2), PASSWORD-ALGORITHMS
    // (SHA-256 and MD5, 4 bytes each).
    let challenge = |reason: &str| {
        20 + 4 + pad(4 + reason.len()) + 4 + pad(REALM.len()) + 4 + pad(13 + 36) + 4 + 8
    };
    let mut table = Vec::new();
    // Signed requests go out on the socket their nonce was issued to.
    let mut stale = Client::new(server);
    stale.nonce = "0000000000000000deadbeefdeadbeefdead".into();
    let mallory = Client::with_credentials(server, "mallory", "x");
    let fresh = UdpSocket::bind("127.0.0.1:0").unwrap();
    // (what, request, sent from, expected error code, response size)
    type Case<'a> = (&'a str, Vec<u8>, &'a UdpSocket, Option<u16>, usize);
    let cases: Vec<Case> = vec![
        (
            "Binding",
            Msg::new(wire::BINDING_REQUEST, wire::tid()).bytes,
            &fresh,
            None,
            32,
        ),
        (
            "Binding + FINGERPRINT",
            Msg::new(wire::BINDING_REQUEST, wire::tid())
                .fingerprint()
                .bytes,
            &fresh,
            None,
            40,
        ),
        (
            "Binding, unknown required attribute",
            Msg::new(wire::BINDING_REQUEST, wire::tid())
                .attr(0x7777, b"")
                .bytes,
            &fresh,
            Some(420),
            20 + 4 + pad(4 + "Unknown Attribute".len()) + 4 + 4,
        ),
        (
            "Allocate, no attributes",
            Msg::new(wire::ALLOCATE_REQUEST, wire::tid()).bytes,
            &fresh,
            Some(401),
            challenge("Unauthorized"),
        ),
        (
            "Allocate, REQUESTED-TRANSPORT + FINGERPRINT",
            Msg::new(wire::ALLOCATE_REQUEST, wire::tid())
                .attr(wire::REQUESTED_TRANSPORT, &wire::UDP)
                .fingerprint()
                .bytes,
            &fresh,
            Some(401),
            challenge("Unauthorized") + 8,
        ),
        (
            "Refresh signed with a stale nonce",
            stale.signed(wire::REFRESH_REQUEST, &[]).bytes,
            &stale.socket,
            Some(438),
            challenge("Stale Nonce") + 8,
        ),
        (
            "Refresh signed as an unknown user",
            mallory.signed(wire::REFRESH_REQUEST, &[]).bytes,
            &mallory.socket,
            Some(401),
            challenge("Unauthorized") + 8,
        ),
    ];
    for (what, req, socket, code, size) in cases {
        let (sent, got, m) = exchange(socket, server, &req);
        assert_eq!(error_code(&m), code, "{what}: {m}");
        assert!(
            !attr_types(&m).contains(&wire::SOFTWARE),
            "{what}: SOFTWARE"
        );
        assert!(
            !m.contains(stun::attributes::ATTR_MESSAGE_INTEGRITY),
            "{what}: integrity on an unauthenticated answer"
        );
        assert_eq!(got, size, "{what}: response size");
        table.push(format!(
            "{what}: {sent} B in, {got} B out, ratio {:.2}",
            got as f64 / sent as f64
        ));
    }
    eprintln!("{}", table.join("\n"));
}

/// Issue 16 item 3: 64 addresses of one /24 (127.0.0.1-64, all local on
/// Linux) each within its own per-address burst, yet the /24 together gets
/// no more than the prefix budget; another /24 is unaffected.
#[test]
fn the_rate_limit_holds_per_source_prefix() {
    let d = Daemon::start(&format!(
        "workers = 2\n{}",
        TestConfig {
            extra: "[rate_limit]\nunauthenticated_per_s = 100\nunauthenticated_burst = 200\n\
                    prefix_per_s = 10\nprefix_burst = 40\n"
                .into(),
            ..TestConfig::default()
        }
        .toml()
    ));
    let server = d.udp_addr();
    let sockets: Vec<UdpSocket> = (1..=64)
        .map(|i| UdpSocket::bind(format!("127.0.0.{i}:0")).unwrap())
        .collect();
    let start = Instant::now();
    let mut sent = 0usize;
    for round in 0..10 {
        for s in &sockets {
            s.send_to(&flood_request(round * 5), server).unwrap();
            sent += 1;
        }
    }
    let (answered, limited) = wait_processed(&d, sent);
    let elapsed = start.elapsed();
    let bound = 40.0 + 10.0 * elapsed.as_secs_f64() + 1.0;
    eprintln!("{sent} Bindings from 64 addresses of 127.0.0.0/24: {answered} answered, {limited} limited in {elapsed:?}");
    assert!(
        answered <= bound,
        "127.0.0.0/24 got {answered} answers in {elapsed:?}; one /24 may get {bound:.0}"
    );
    // Each address alone stayed within its own burst of 200: without the
    // prefix budget all 640 would have been answered.
    let other = UdpSocket::bind("127.0.1.1:0").unwrap();
    let (_, _, m) = exchange(&other, server, &flood_request(0));
    assert_eq!(m.typ.value(), 0x0101, "another /24 is answered: {m}");
}
