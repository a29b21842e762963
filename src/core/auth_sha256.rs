//! RFC 8489's stronger long-term credentials: SHA-256 keys (§9.2.2),
//! PASSWORD-ALGORITHMS / PASSWORD-ALGORITHM (§14.11-14.12) with the nonce
//! cookie and its security-feature bits (§9.2, §18.1), the bid-down checks of
//! §9.2.4, MESSAGE-INTEGRITY-SHA256 (§14.6) and USERHASH (§14.4).

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use stun::attributes::AttrType;
use stun::message::{Message, MESSAGE_HEADER_SIZE};

/// One password algorithm (RFC 8489 §18.5); `[auth] algorithms` names
/// them in lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Key = MD5(username:realm:password); the only one RFC 5389 clients know.
    Md5,
    /// Key = SHA-256(username:realm:password) (RFC 8489 §9.2.2).
    Sha256,
}

use super::precis::opaque_string;

/// MESSAGE-INTEGRITY-SHA256 (RFC 8489 §18.3).
pub const ATTR_MESSAGE_INTEGRITY_SHA256: AttrType = AttrType(0x001C);
/// PASSWORD-ALGORITHM (comprehension-required).
pub const ATTR_PASSWORD_ALGORITHM: AttrType = AttrType(0x001D);
/// USERHASH (comprehension-required).
pub const ATTR_USERHASH: AttrType = AttrType(0x001E);
/// PASSWORD-ALGORITHMS (comprehension-optional).
pub const ATTR_PASSWORD_ALGORITHMS: AttrType = AttrType(0x8002);

/// The nonce cookie: a nonce starting with it carries 24 security-feature
/// bits in the next 4 base64 characters (RFC 8489 §9.2).
pub const NONCE_COOKIE: &str = "obMatJos2";
/// Cookie plus the 4 feature characters.
pub const NONCE_PREFIX_LEN: usize = NONCE_COOKIE.len() + 4;
/// "Password algorithms", bit 0 of the 24 (§18.1); bit 0 is the most
/// significant, as everywhere in RFC bit diagrams.
pub const FEATURE_PASSWORD_ALGORITHMS: u32 = 1 << 23;
/// "Username anonymity" (USERHASH), bit 1.
pub const FEATURE_USERNAME_ANONYMITY: u32 = 1 << 22;

/// The code point of an algorithm (RFC 8489 §18.5).
pub fn code(a: Algorithm) -> u16 {
    match a {
        Algorithm::Md5 => 0x0001,
        Algorithm::Sha256 => 0x0002,
    }
}

fn from_code(c: u16) -> Option<Algorithm> {
    match c {
        0x0001 => Some(Algorithm::Md5),
        0x0002 => Some(Algorithm::Sha256),
        _ => None,
    }
}

/// The value of PASSWORD-ALGORITHMS for `algs`: each algorithm with empty
/// parameters (neither MD5 nor SHA-256 has any).
pub fn encode_algorithms(algs: &[Algorithm]) -> Vec<u8> {
    algs.iter()
        .flat_map(|a| {
            let c = code(*a).to_be_bytes();
            [c[0], c[1], 0, 0]
        })
        .collect()
}

/// The algorithm a PASSWORD-ALGORITHM value names: `None` when malformed
/// or unknown (parameters must be empty for both known ones).
pub fn decode_algorithm(value: &[u8]) -> Option<Algorithm> {
    let [a, b, 0, 0] = value else { return None };
    from_code(u16::from_be_bytes([*a, *b]))
}

/// The cookie and feature characters a nonce starts with.
pub fn nonce_prefix(features: u32) -> String {
    let bytes = features.to_be_bytes();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes[1..]);
    format!("{NONCE_COOKIE}{b64}")
}

/// The security features a nonce announces: 0 without the cookie.
pub fn nonce_features(nonce: &str) -> u32 {
    let Some(rest) = nonce.strip_prefix(NONCE_COOKIE) else {
        return 0;
    };
    let Some(chars) = rest.get(..4) else { return 0 };
    let Ok(b) = base64::engine::general_purpose::STANDARD.decode(chars) else {
        return 0;
    };
    match b.as_slice() {
        [x, y, z] => u32::from_be_bytes([0, *x, *y, *z]),
        _ => 0,
    }
}

/// Why a request fails the bid-down checks of RFC 8489 §9.2.4: 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BidDown;

/// The algorithm a request's key is derived with (RFC 8489 §9.2.4):
/// `offered` is this server's list, `nonce` the request's NONCE,
/// `algorithms` and `algorithm` its PASSWORD-ALGORITHMS and
/// PASSWORD-ALGORITHM values.
pub fn choose(
    offered: &[Algorithm],
    nonce: &str,
    algorithms: Option<&[u8]>,
    algorithm: Option<&[u8]>,
) -> Result<Algorithm, BidDown> {
    let chosen = match (algorithms, algorithm) {
        // An RFC 5389 client (or one that ignores the feature): MD5.
        (None, None) => Algorithm::Md5,
        (Some(list), Some(one)) => {
            // They must echo exactly what we sent with this nonce, and the
            // one they chose must be in it.
            if list != encode_algorithms(offered).as_slice() {
                return Err(BidDown);
            }
            decode_algorithm(one).ok_or(BidDown)?
        }
        // Only one of the two: honoured only where the nonce offered no
        // algorithms at all, never to bypass the offer.
        (None, Some(one)) if nonce_features(nonce) & FEATURE_PASSWORD_ALGORITHMS == 0 => {
            decode_algorithm(one).ok_or(BidDown)?
        }
        _ => return Err(BidDown),
    };
    if offered.contains(&chosen) {
        Ok(chosen)
    } else {
        Err(BidDown)
    }
}

/// Key = SHA-256(username ":" realm ":" password), realm and password
/// prepared with OpaqueString (RFC 8489 §9.2.2).
pub fn sha256_key(username: &str, realm: &str, password: &str) -> [u8; 32] {
    super::auth::long_term_hash::<Sha256>(username, realm, password).into()
}

/// USERHASH = SHA-256(username ":" realm) (RFC 8489 §14.4), realm prepared
/// with OpaqueString.
pub fn userhash(username: &str, realm: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(opaque_string(realm).as_bytes());
    h.finalize().into()
}

/// Offset of the first attribute of type `t` in `raw`, walking the TLVs.
fn attr_offset(raw: &[u8], t: AttrType) -> Option<(usize, usize)> {
    let mut offset = MESSAGE_HEADER_SIZE;
    while let Some(h) = raw.get(offset..offset + 4) {
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        if u16::from_be_bytes([h[0], h[1]]) == t.0 {
            return Some((offset, len));
        }
        offset += 4 + len.div_ceil(4) * 4;
    }
    None
}

fn hmac_over(raw: &[u8], upto: usize, value_len: usize, key: &[u8]) -> [u8; 32] {
    let mut head = [0u8; MESSAGE_HEADER_SIZE];
    head.copy_from_slice(&raw[..MESSAGE_HEADER_SIZE]);
    // The length field counts up to and including this attribute (§14.6).
    let len = (upto - MESSAGE_HEADER_SIZE + 4 + value_len) as u16;
    head[2..4].copy_from_slice(&len.to_be_bytes());
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&head);
    mac.update(&raw[MESSAGE_HEADER_SIZE..upto]);
    mac.finalize().into_bytes().into()
}

/// Checks MESSAGE-INTEGRITY-SHA256 of the message `raw` with `key`. The
/// value may be truncated to 16-32 bytes in steps of 4 (§14.6).
pub fn integrity_ok(raw: &[u8], key: &[u8]) -> bool {
    let Some((offset, len)) = attr_offset(raw, ATTR_MESSAGE_INTEGRITY_SHA256) else {
        return false;
    };
    if !(16..=32).contains(&len) || len % 4 != 0 {
        return false;
    }
    let Some(got) = raw.get(offset + 4..offset + 4 + len) else {
        return false;
    };
    let want = hmac_over(raw, offset, len, key);
    got.iter()
        .zip(want.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// Appends a full (32-byte) MESSAGE-INTEGRITY-SHA256 computed with `key`.
pub fn add_integrity(m: &mut Message, key: &[u8]) {
    let mac = hmac_over(&m.raw, m.raw.len(), 32, key);
    m.add(ATTR_MESSAGE_INTEGRITY_SHA256, &mac);
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: &[Algorithm] = &[Algorithm::Sha256, Algorithm::Md5];

    #[test]
    fn the_offer_is_encoded_in_order() {
        assert_eq!(encode_algorithms(BOTH), [0, 2, 0, 0, 0, 1, 0, 0]);
        assert_eq!(decode_algorithm(&[0, 2, 0, 0]), Some(Algorithm::Sha256));
        assert_eq!(decode_algorithm(&[0, 2, 0, 4]), None, "parameters");
        assert_eq!(decode_algorithm(&[0, 2]), None);
    }

    #[test]
    fn bid_down_checks_of_section_9_2_4() {
        let nonce = format!("{}0123", nonce_prefix(FEATURE_PASSWORD_ALGORITHMS));
        let offer = encode_algorithms(BOTH);
        let sha = [0, 2, 0, 0];
        let md5 = [0, 1, 0, 0];
        // An RFC 5389 client: MD5, when offered.
        assert_eq!(choose(BOTH, &nonce, None, None), Ok(Algorithm::Md5));
        assert_eq!(
            choose(&[Algorithm::Sha256], &nonce, None, None),
            Err(BidDown)
        );
        assert_eq!(
            choose(BOTH, &nonce, Some(&offer), Some(&sha)),
            Ok(Algorithm::Sha256)
        );
        assert_eq!(
            choose(BOTH, &nonce, Some(&offer), Some(&md5)),
            Ok(Algorithm::Md5)
        );
        // The offer altered, half-echoed, or an algorithm not in it.
        assert_eq!(choose(BOTH, &nonce, Some(&md5), Some(&md5)), Err(BidDown));
        assert_eq!(choose(BOTH, &nonce, Some(&offer), None), Err(BidDown));
        assert_eq!(choose(BOTH, &nonce, None, Some(&sha)), Err(BidDown));
        assert_eq!(
            choose(BOTH, &nonce, Some(&offer), Some(&[0, 3, 0, 0])),
            Err(BidDown)
        );
        // A nonce without the feature (an MD5-only server's).
        let md5_only = [Algorithm::Md5];
        assert_eq!(choose(&md5_only, "0123", None, Some(&sha)), Err(BidDown));
        assert_eq!(
            choose(&md5_only, "0123", None, Some(&md5)),
            Ok(Algorithm::Md5)
        );
    }

    #[test]
    fn integrity_round_trip_and_truncation_limits() {
        let mut m = Message::new();
        m.write_header();
        m.add(AttrType(0x0006), b"user");
        add_integrity(&mut m, b"key");
        assert!(integrity_ok(&m.raw, b"key"));
        assert!(!integrity_ok(&m.raw, b"other"));
        let mut no_attr = Message::new();
        no_attr.write_header();
        assert!(!integrity_ok(&no_attr.raw, b"key"));
    }
}
