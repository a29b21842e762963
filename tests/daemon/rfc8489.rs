//! RFC 8489 Appendix B.1 (as corrected by verified erratum 6268: length
//! 0x90, PASSWORD-ALGORITHM SHA-256, and the MESSAGE-INTEGRITY-SHA256 that
//! goes with them) through turnd's decoder and SHA-256 credentials: the key
//! is SHA-256("マトリックス:example.org:TheMatrIX") after OpaqueString, the
//! USERHASH names the static user, and the HMAC checks out.

use std::collections::HashMap;

use turnd::core::auth::{long_term_key, Credentials, Secret};
use turnd::core::auth_sha256::{
    self, Algorithm, ATTR_PASSWORD_ALGORITHM, ATTR_USERHASH, FEATURE_PASSWORD_ALGORITHMS,
};
use turnd::core::message::{decode, Inbound};

const USERNAME: &str = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}";
const PASSWORD: &str = "TheMatrIX";
const REALM: &str = "example.org";
const NONCE: &str = "obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA";

const B1: &str = concat!(
    "000100902112a44278ad3433c6ad72c029da412e",
    "001e00204a3cf38fef6992bda952c6780417da0f24819415569e60b205c46e41407f1704",
    "001500296f624d61744a6f733241414143662f2f3439396b39353464364f4c33346f4c39",
    "4653547679363473410000000014000b6578616d706c652e6f726700",
    "001d000400020000",
    "001c0020b5c7bf005b6c52a21c51c5e892f81924136296cb927c43149309278cc6518e65",
);

fn request(bytes: &[u8]) -> turnd::core::message::Request {
    match decode(bytes, false) {
        Ok(Inbound::Stun(req)) => req,
        other => panic!("not decoded as STUN: {other:?}"),
    }
}

#[test]
fn appendix_b1_key_userhash_and_integrity() {
    let bytes = hex::decode(B1).unwrap();
    let req = request(&bytes);
    let key = auth_sha256::sha256_key(USERNAME, REALM, PASSWORD);
    assert!(req.integrity_sha256_ok(&key));
    assert!(!req.integrity_sha256_ok(&auth_sha256::sha256_key(USERNAME, REALM, "x")));
    assert_eq!(
        hex::encode(req.get(ATTR_USERHASH).unwrap()),
        "4a3cf38fef6992bda952c6780417da0f24819415569e60b205c46e41407f1704"
    );
    assert_eq!(
        auth_sha256::userhash(USERNAME, REALM).as_slice(),
        req.get(ATTR_USERHASH).unwrap()
    );
    assert_eq!(
        auth_sha256::decode_algorithm(req.get(ATTR_PASSWORD_ALGORITHM).unwrap()),
        Some(Algorithm::Sha256)
    );
    assert_eq!(req.text(stun::attributes::ATTR_NONCE), Some(NONCE));

    // A static user configured with the password is found by the hash and
    // gets exactly this key.
    let users = HashMap::from([(
        USERNAME.to_string(),
        long_term_key(USERNAME, REALM, PASSWORD),
    )]);
    let creds = Credentials::new(REALM.into(), users, vec![])
        .with_sha256_keys(HashMap::from([(USERNAME.to_string(), key)]));
    let user = creds.user_by_hash(req.get(ATTR_USERHASH).unwrap()).unwrap();
    assert_eq!(user, USERNAME);
    assert_eq!(
        creds.secrets(user, 0, Algorithm::Sha256).unwrap(),
        vec![Secret::Sha256(key)]
    );

    // One flipped bit anywhere before the HMAC is refused.
    for i in [3, 25, 70, 120, 140] {
        let mut tampered = bytes.clone();
        tampered[i] ^= 1;
        if let Ok(Inbound::Stun(req)) = decode(&tampered, false) {
            assert!(!req.integrity_sha256_ok(&key), "bit flipped at {i}");
        }
    }
    // A truncated (16-byte) MESSAGE-INTEGRITY-SHA256 is accepted (§14.6).
    let mut short = bytes[..bytes.len() - 16].to_vec();
    short[2..4].copy_from_slice(&(0x90u16 - 16).to_be_bytes());
    let at = short.len() - 18;
    short[at..at + 2].copy_from_slice(&16u16.to_be_bytes());
    // The header length covers the truncated attribute, so the HMAC differs
    // from the full one: recompute it the way a truncating client does.
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(&short[..short.len() - 20]);
    let tag = mac.finalize().into_bytes();
    let n = short.len();
    short[n - 16..].copy_from_slice(&tag[..16]);
    assert!(request(&short).integrity_sha256_ok(&key));
}

#[test]
fn the_b1_nonce_cookie_and_our_feature_bits() {
    // The B.1 nonce's "AAAC" is 0x000002: with bit 0 the most significant
    // (RFC bit order, §18.1) that is no assigned feature, which is part of
    // the example's inconsistency; turnd announces 0xC00000 ("wAAA").
    assert_eq!(auth_sha256::nonce_features(NONCE), 2);
    let ours = auth_sha256::nonce_prefix(
        FEATURE_PASSWORD_ALGORITHMS | auth_sha256::FEATURE_USERNAME_ANONYMITY,
    );
    assert_eq!(ours, "obMatJos2wAAA");
    assert_eq!(
        auth_sha256::nonce_features(&format!("{ours}xyz")),
        0xC0_0000
    );
    assert_eq!(auth_sha256::nonce_features("0123456789abcdef"), 0);
}
