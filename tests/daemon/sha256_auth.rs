//! RFC 8489 SHA-256 long-term credentials against the real daemon (issue 14
//! item 3): the 401 offers PASSWORD-ALGORITHMS under a nonce with the
//! cookie, a client of our own allocates and creates a permission with
//! PASSWORD-ALGORITHM SHA-256, MESSAGE-INTEGRITY-SHA256 and USERHASH, every
//! answer carries MESSAGE-INTEGRITY-SHA256, bid-downs get 400, and an
//! MD5/SHA-1 client sees exactly what it saw before.

// Deadlines of blocking reads; the clock rule is for the sans-IO core.
#![allow(clippy::disallowed_methods)]

use crate::common;
use crate::hostile_support;

use std::net::{SocketAddr, UdpSocket};

use common::raw::{decode, error_code, recv_from_within};
use common::{TestConfig, PASSWORD, REALM, USER};
use hmac::{Hmac, Mac};
use hostile_support::wire::{self, Msg};
use hostile_support::ANSWER;
use sha2::{Digest, Sha256};
use stun::message::Message;

/// PASSWORD-ALGORITHMS as turnd offers it by default: SHA-256, then MD5.
const OFFER: [u8; 8] = [0, 2, 0, 0, 0, 1, 0, 0];
const SHA256_ALG: [u8; 4] = [0, 2, 0, 0];
const MD5_ALG: [u8; 4] = [0, 1, 0, 0];

fn sha256(parts: &[&str]) -> [u8; 32] {
    Sha256::digest(parts.join(":").as_bytes()).into()
}

fn get(m: &Message, t: u16) -> Option<Vec<u8>> {
    m.get(stun::attributes::AttrType(t)).ok()
}

fn exchange(s: &UdpSocket, server: SocketAddr, req: &Msg) -> (Vec<u8>, Message) {
    s.send_to(&req.bytes, server).unwrap();
    let (bytes, _) = recv_from_within(s, Some(server), ANSWER).expect("turnd answers");
    let m = decode(&bytes).expect("STUN");
    (bytes, m)
}

/// Checks the response's MESSAGE-INTEGRITY-SHA256 with `key`, computed
/// here independently of turnd's code, and that it has no SHA-1 one.
fn assert_sha256_signed(raw: &[u8], m: &Message, key: &[u8], what: &str) {
    assert!(
        get(m, wire::MESSAGE_INTEGRITY).is_none(),
        "{what}: SHA-1 integrity"
    );
    let tag = get(m, wire::MESSAGE_INTEGRITY_SHA256).unwrap_or_else(|| panic!("{what}: {m}"));
    assert_eq!(tag.len(), 32, "{what}");
    // The attribute is last but for an optional FINGERPRINT.
    let at = raw.len()
        - 36
        - if get(m, wire::FINGERPRINT).is_some() {
            8
        } else {
            0
        };
    let mut head = raw[..at].to_vec();
    head[2..4].copy_from_slice(&u16::try_from(at - 20 + 36).unwrap().to_be_bytes());
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(&head);
    assert_eq!(
        mac.finalize().into_bytes().as_slice(),
        tag.as_slice(),
        "{what}: bad HMAC"
    );
}

/// The 401 challenge: (realm, nonce).
fn challenge(s: &UdpSocket, server: SocketAddr) -> (Vec<u8>, String) {
    let req =
        Msg::new(wire::ALLOCATE_REQUEST, wire::tid()).attr(wire::REQUESTED_TRANSPORT, &wire::UDP);
    let (_, m) = exchange(s, server, &req);
    assert_eq!(error_code(&m), Some(401), "{m}");
    assert_eq!(
        get(&m, wire::PASSWORD_ALGORITHMS).as_deref(),
        Some(&OFFER[..])
    );
    let nonce = String::from_utf8(get(&m, wire::NONCE).unwrap()).unwrap();
    // Cookie, then bits 0 (password algorithms) and 1 (username anonymity)
    // of the 24 feature bits, bit 0 the most significant: 0xC00000.
    assert!(nonce.starts_with("obMatJos2wAAA"), "{nonce}");
    (get(&m, wire::REALM).unwrap(), nonce)
}

fn signed(typ: u16, user: (u16, &[u8]), realm: &[u8], nonce: &str, algs: &[u8], alg: &[u8]) -> Msg {
    Msg::new(typ, wire::tid())
        .attr(user.0, user.1)
        .attr(wire::REALM, realm)
        .attr(wire::NONCE, nonce.as_bytes())
        .attr(wire::PASSWORD_ALGORITHMS, algs)
        .attr(wire::PASSWORD_ALGORITHM, alg)
}

#[test]
fn sha256_allocate_and_create_permission_with_userhash() {
    let d = TestConfig::default().allow_loopback().start();
    let server = d.udp_addr();
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (realm, nonce) = challenge(&s, server);
    let key = sha256(&[USER, REALM, PASSWORD]);

    let alloc = signed(
        wire::ALLOCATE_REQUEST,
        (wire::USERNAME, USER.as_bytes()),
        &realm,
        &nonce,
        &OFFER,
        &SHA256_ALG,
    )
    .attr(wire::REQUESTED_TRANSPORT, &wire::UDP)
    .integrity_sha256(&key)
    .fingerprint();
    let (raw, m) = exchange(&s, server, &alloc);
    assert_eq!(error_code(&m), None, "Allocate: {m}");
    assert_sha256_signed(&raw, &m, &key, "Allocate");

    // CreatePermission naming the user only by USERHASH (§14.4).
    let hash = sha256(&[USER, REALM]);
    let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let tid = wire::tid();
    let perm = Msg::new(wire::CREATE_PERMISSION_REQUEST, tid)
        .attr(wire::USERHASH, &hash)
        .attr(wire::REALM, &realm)
        .attr(wire::NONCE, nonce.as_bytes())
        .attr(wire::PASSWORD_ALGORITHMS, &OFFER)
        .attr(wire::PASSWORD_ALGORITHM, &SHA256_ALG)
        .attr(wire::XOR_PEER_ADDRESS, &wire::xor_addr(peer, &tid))
        .integrity_sha256(&key);
    let (raw, m) = exchange(&s, server, &perm);
    assert_eq!(error_code(&m), None, "CreatePermission: {m}");
    assert_sha256_signed(&raw, &m, &key, "CreatePermission");

    // A USERHASH of nobody: 401 with a fresh challenge.
    let nobody = Msg::new(wire::REFRESH_REQUEST, wire::tid())
        .attr(wire::USERHASH, &sha256(&["nobody", REALM]))
        .attr(wire::REALM, &realm)
        .attr(wire::NONCE, nonce.as_bytes())
        .attr(wire::PASSWORD_ALGORITHMS, &OFFER)
        .attr(wire::PASSWORD_ALGORITHM, &SHA256_ALG)
        .integrity_sha256(&key);
    let (_, m) = exchange(&s, server, &nobody);
    assert_eq!(error_code(&m), Some(401), "{m}");

    // A wrong SHA-256 key: 401, no integrity on the answer.
    let wrong = sha256(&[USER, REALM, "not the password"]);
    let bad = signed(
        wire::REFRESH_REQUEST,
        (wire::USERNAME, USER.as_bytes()),
        &realm,
        &nonce,
        &OFFER,
        &SHA256_ALG,
    )
    .integrity_sha256(&wrong);
    let (_, m) = exchange(&s, server, &bad);
    assert_eq!(error_code(&m), Some(401), "{m}");
    assert!(get(&m, wire::MESSAGE_INTEGRITY_SHA256).is_none());
}

#[test]
fn bid_downs_get_400() {
    let d = TestConfig::default().start();
    let server = d.udp_addr();
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (realm, nonce) = challenge(&s, server);
    let md5_key = md5::Md5::digest(format!("{USER}:{REALM}:{PASSWORD}").as_bytes());
    let sha_key = sha256(&[USER, REALM, PASSWORD]);
    let user = (wire::USERNAME, USER.as_bytes());
    let cases: Vec<(&str, Msg)> = vec![
        (
            "PASSWORD-ALGORITHMS stripped of SHA-256",
            signed(
                wire::REFRESH_REQUEST,
                user,
                &realm,
                &nonce,
                &MD5_ALG,
                &MD5_ALG,
            )
            .integrity(&md5_key),
        ),
        (
            "PASSWORD-ALGORITHM not in the offer",
            signed(
                wire::REFRESH_REQUEST,
                user,
                &realm,
                &nonce,
                &OFFER,
                &[0, 9, 0, 0],
            )
            .integrity(&md5_key),
        ),
        (
            "PASSWORD-ALGORITHM without PASSWORD-ALGORITHMS",
            Msg::new(wire::REFRESH_REQUEST, wire::tid())
                .attr(wire::USERNAME, USER.as_bytes())
                .attr(wire::REALM, &realm)
                .attr(wire::NONCE, nonce.as_bytes())
                .attr(wire::PASSWORD_ALGORITHM, &SHA256_ALG)
                .integrity_sha256(&sha_key),
        ),
    ];
    for (what, req) in cases {
        let (_, m) = exchange(&s, server, &req);
        assert_eq!(error_code(&m), Some(400), "{what}: {m}");
    }
    // The same nonce with the cookie, neither attribute, MD5 key and
    // MESSAGE-INTEGRITY: an RFC 5389 client, accepted.
    let legacy = Msg::new(wire::ALLOCATE_REQUEST, wire::tid())
        .attr(wire::USERNAME, USER.as_bytes())
        .attr(wire::REALM, &realm)
        .attr(wire::NONCE, nonce.as_bytes())
        .attr(wire::REQUESTED_TRANSPORT, &wire::UDP)
        .integrity(&md5_key);
    let (_, m) = exchange(&s, server, &legacy);
    assert_eq!(error_code(&m), None, "{m}");
    assert!(get(&m, wire::MESSAGE_INTEGRITY).is_some());
    assert!(get(&m, wire::MESSAGE_INTEGRITY_SHA256).is_none());
}

#[test]
fn md5_only_servers_send_the_rfc5389_challenge_and_refuse_sha256() {
    let cfg = TestConfig {
        extra: "[auth]\nalgorithms = [\"md5\"]\n".into(),
        ..TestConfig::default()
    };
    let d = cfg.start();
    let server = d.udp_addr();
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let req = Msg::new(wire::ALLOCATE_REQUEST, wire::tid());
    let (_, m) = exchange(&s, server, &req);
    assert_eq!(error_code(&m), Some(401));
    assert!(get(&m, wire::PASSWORD_ALGORITHMS).is_none());
    let nonce = String::from_utf8(get(&m, wire::NONCE).unwrap()).unwrap();
    assert!(!nonce.starts_with("obMatJos2"), "{nonce}");
    let realm = get(&m, wire::REALM).unwrap();
    let sha = Msg::new(wire::ALLOCATE_REQUEST, wire::tid())
        .attr(wire::USERNAME, USER.as_bytes())
        .attr(wire::REALM, &realm)
        .attr(wire::NONCE, nonce.as_bytes())
        .attr(wire::PASSWORD_ALGORITHM, &SHA256_ALG)
        .attr(wire::REQUESTED_TRANSPORT, &wire::UDP)
        .integrity_sha256(&sha256(&[USER, REALM, PASSWORD]));
    let (_, m) = exchange(&s, server, &sha);
    assert_eq!(error_code(&m), Some(400), "{m}");
}
