//! Stateless nonces (RFC 8489 §9.2, RFC 8656 §5): an HMAC over the issue
//! time and the client's transport address, so a flood of spoofed requests
//! costs no memory. A nonce older than its lifetime, from another address, or
//! not ours at all is stale: the client gets 438 and a fresh one.

use std::net::SocketAddr;

use hmac::{Hmac, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// Hex digits of the issue time, then hex digits of the truncated MAC.
const TIME_HEX: usize = 16;
const MAC_BYTES: usize = 10;

/// Clock skew tolerated for nonces stamped "in the future" (a wall clock
/// stepped back by NTP).
const FUTURE_SKEW_S: u64 = 5;

/// The per-process key nonces are signed with.
#[derive(Clone)]
pub struct NonceKey([u8; 32]);

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey(***)")
    }
}

impl NonceKey {
    pub fn new(key: [u8; 32]) -> Self {
        NonceKey(key)
    }

    fn mac(&self, prefix: &str, issued: u64, client: SocketAddr) -> [u8; MAC_BYTES] {
        let mut mac = HmacSha1::new_from_slice(&self.0).expect("HMAC takes any key length");
        // The feature prefix is signed too: a middlebox cannot strip or
        // change the features the server announced (RFC 8489 §9.2.1).
        mac.update(prefix.as_bytes());
        mac.update(&issued.to_be_bytes());
        match client.ip() {
            std::net::IpAddr::V4(ip) => mac.update(&ip.octets()),
            std::net::IpAddr::V6(ip) => mac.update(&ip.octets()),
        }
        mac.update(&client.port().to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_BYTES];
        out.copy_from_slice(&full[..MAC_BYTES]);
        out
    }

    /// A nonce for `client`, issued at `unix_secs`.
    pub fn issue(&self, unix_secs: u64, client: SocketAddr) -> String {
        self.issue_with("", unix_secs, client)
    }

    /// A nonce starting with `prefix` (the nonce cookie and security
    /// features of RFC 8489 §9.2, or nothing).
    pub fn issue_with(&self, prefix: &str, unix_secs: u64, client: SocketAddr) -> String {
        format!(
            "{prefix}{unix_secs:0width$x}{}",
            hex::encode(self.mac(prefix, unix_secs, client)),
            width = TIME_HEX
        )
    }

    /// True when `nonce` was issued by us to `client` less than `lifetime_s`
    /// ago.
    pub fn is_valid(
        &self,
        nonce: &str,
        unix_secs: u64,
        client: SocketAddr,
        lifetime_s: u64,
    ) -> bool {
        if !nonce.is_ascii() {
            return false;
        }
        let prefix_len = if nonce.starts_with(super::auth_sha256::NONCE_COOKIE) {
            super::auth_sha256::NONCE_PREFIX_LEN
        } else {
            0
        };
        let Some((prefix, nonce)) = nonce.split_at_checked(prefix_len) else {
            return false;
        };
        if nonce.len() != TIME_HEX + 2 * MAC_BYTES {
            return false;
        }
        let (time_hex, mac_hex) = nonce.split_at(TIME_HEX);
        let Ok(issued) = u64::from_str_radix(time_hex, 16) else {
            return false;
        };
        let mut mac = [0u8; MAC_BYTES];
        if hex::decode_to_slice(mac_hex, &mut mac).is_err() {
            return false;
        }
        let fresh =
            issued <= unix_secs + FUTURE_SKEW_S && unix_secs.saturating_sub(issued) < lifetime_s;
        let expected = self.mac(prefix, issued, client);
        // Compare in constant time; the MAC is the only secret-derived part.
        let same = expected
            .iter()
            .zip(mac.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
        fresh && same
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> NonceKey {
        NonceKey::new([42; 32])
    }
    const CLIENT: &str = "198.51.100.7:5000";

    #[test]
    fn a_fresh_nonce_is_valid_for_its_client_only() {
        let client: SocketAddr = CLIENT.parse().unwrap();
        let n = key().issue(1_000, client);
        assert_eq!(n.len(), 36);
        assert!(key().is_valid(&n, 1_000, client, 600));
        assert!(key().is_valid(&n, 1_599, client, 600));
        assert!(!key().is_valid(&n, 1_600, client, 600), "expired");
        assert!(!key().is_valid(&n, 1_000, "198.51.100.7:5001".parse().unwrap(), 600));
        assert!(
            !NonceKey::new([1; 32]).is_valid(&n, 1_000, client, 600),
            "other key"
        );
    }

    #[test]
    fn the_feature_prefix_is_signed() {
        let client: SocketAddr = CLIENT.parse().unwrap();
        let n = key().issue_with("obMatJos2wAAA", 1_000, client);
        assert!(n.starts_with("obMatJos2wAAA"));
        assert!(key().is_valid(&n, 1_000, client, 600));
        let stripped = &n["obMatJos2wAAA".len()..];
        assert!(!key().is_valid(stripped, 1_000, client, 600));
        let changed = n.replacen("wAAA", "AAAA", 1);
        assert!(!key().is_valid(&changed, 1_000, client, 600));
    }

    #[test]
    fn garbage_and_future_nonces_are_stale() {
        let client: SocketAddr = CLIENT.parse().unwrap();
        assert!(!key().is_valid("", 1_000, client, 600));
        assert!(!key().is_valid("zz", 1_000, client, 600));
        assert!(!key().is_valid(&"é".repeat(18), 1_000, client, 600));
        let future = key().issue(2_000, client);
        assert!(!key().is_valid(&future, 1_000, client, 600));
    }
}
