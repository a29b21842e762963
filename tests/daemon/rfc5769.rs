//! RFC 5769 test vectors through turnd's decoder: integrity, fingerprint and
//! XOR-MAPPED-ADDRESS must all check out, and the sample request must get a
//! Binding answer from the engine.

use stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME, ATTR_XORMAPPED_ADDRESS};
use turnd::core::auth::long_term_key;
use turnd::core::message::{decode, Inbound, Request};

const SHORT_TERM_PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";

/// §2.1 Sample Request.
const SAMPLE_REQUEST: &str = "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74002400046e0001ff80290008932ff9b151263b36000600096576746a3a68367659202020000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf";
/// §2.2 Sample IPv4 Response.
const SAMPLE_IPV4_RESPONSE: &str = "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000080001a147e112a643000800142b91f599fd9e90c38c7489f92af9ba53f06be7d780280004c07d4c96";
/// §2.3 Sample IPv6 Response.
const SAMPLE_IPV6_RESPONSE: &str = "010100482112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d900080014a382954e4be67bf11784c97c8292c275bfe3ed4180280004c8fb0b4c";
/// §2.4 Sample Request with Long-Term Authentication.
const SAMPLE_LONG_TERM: &str = "000100602112a44278ad3433c6ad72c029da412e00060012e3839ee38388e383aae38383e382afe382b900000015001c662f2f3439396b39353464364f4c33346f4c394653547679363473410014000b6578616d706c652e6f72670000080014f67024656dd64a3e02b8e0712e85c9a28ca89666";

fn stun(hex_bytes: &str) -> (Vec<u8>, Request) {
    let bytes = hex::decode(hex_bytes).unwrap();
    let req = match decode(&bytes, false) {
        Ok(Inbound::Stun(req)) => req,
        other => panic!("not decoded as STUN: {other:?}"),
    };
    (bytes, req)
}

#[test]
fn sample_request_integrity_and_fingerprint() {
    let (bytes, mut req) = stun(SAMPLE_REQUEST);
    assert!(req.has_fingerprint);
    assert!(req.integrity_ok(SHORT_TERM_PASSWORD));
    assert!(!req.integrity_ok(b"wrong"));
    assert_eq!(req.text(ATTR_USERNAME), Some("evtj:h6vY"));
    // One flipped bit anywhere before FINGERPRINT must be refused.
    let mut tampered = bytes.clone();
    tampered[30] ^= 1;
    assert!(matches!(
        decode(&tampered, false),
        Err(turnd::core::message::Malformed::BadFingerprint)
    ));
}

#[test]
fn sample_ipv4_response_address() {
    let (_, mut req) = stun(SAMPLE_IPV4_RESPONSE);
    assert!(req.has_fingerprint);
    assert!(req.integrity_ok(SHORT_TERM_PASSWORD));
    let addr = req
        .xor_address(req.get(ATTR_XORMAPPED_ADDRESS).unwrap())
        .unwrap();
    assert_eq!(addr, "192.0.2.1:32853".parse().unwrap());
}

#[test]
fn sample_ipv6_response_address() {
    let (_, mut req) = stun(SAMPLE_IPV6_RESPONSE);
    assert!(req.has_fingerprint);
    assert!(req.integrity_ok(SHORT_TERM_PASSWORD));
    let addr = req
        .xor_address(req.get(ATTR_XORMAPPED_ADDRESS).unwrap())
        .unwrap();
    assert_eq!(
        addr,
        "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
            .parse()
            .unwrap()
    );
}

#[test]
fn sample_long_term_request() {
    let (_, mut req) = stun(SAMPLE_LONG_TERM);
    let username = req.text(ATTR_USERNAME).unwrap().to_string();
    assert_eq!(username, "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}");
    assert_eq!(req.text(ATTR_REALM), Some("example.org"));
    assert_eq!(req.text(ATTR_NONCE), Some("f//499k954d6OL34oL9FSTvy64sA"));
    let key = long_term_key(&username, "example.org", "TheMatrIX");
    assert!(req.integrity_ok(&key));
    assert!(!req.integrity_ok(&long_term_key(&username, "example.org", "thematrix")));
}
