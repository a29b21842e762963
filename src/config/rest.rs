//! `[rest]`: TURN REST API shared secrets (coturn's `static-auth-secret`)
//! and what a REST username must satisfy besides its HMAC: the longest
//! lifetime accepted, the longest name and which characters it may hold
//! (RFC 8489 §14.3, RFC 8265 OpaqueString), so a credential can be taken
//! back and a name cannot forge a log line.

use serde::{Deserialize, Deserializer};

use super::types::{de_secrets, FileSecret};
use super::Secret;

/// `rest.max_ttl_s`: one day, what `turnd credentials` mints by default.
pub use crate::core::auth::DEFAULT_REST_MAX_TTL_S;
/// `rest.max_username_bytes`: RFC 8489 §14.3 (fewer than 509 bytes).
pub use crate::core::auth::DEFAULT_REST_MAX_USERNAME_BYTES;

/// `rest.username_chars`: which characters a REST username may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsernameChars {
    /// Anything but control characters, line and paragraph separators and
    /// bidirectional controls.
    #[default]
    Printable,
    /// Printable ASCII (0x20-0x7E) only.
    Ascii,
}

/// `[rest]`. The first secret is the current one; the others are still
/// accepted (rotation).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawRest")]
pub struct Rest {
    pub secrets: Vec<Secret>,
    /// The longest time from now to a REST username's expiry accepted.
    pub max_ttl_s: u64,
    pub max_username_bytes: u16,
    pub username_chars: UsernameChars,
}

impl Default for Rest {
    fn default() -> Self {
        Rest {
            secrets: Vec::new(),
            max_ttl_s: DEFAULT_REST_MAX_TTL_S,
            max_username_bytes: DEFAULT_REST_MAX_USERNAME_BYTES,
            username_chars: UsernameChars::default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRest {
    #[serde(default, deserialize_with = "de_secrets")]
    secrets: Vec<Secret>,
    #[serde(default)]
    secret_files: Vec<FileSecret>,
    #[serde(default = "default_max_ttl", deserialize_with = "de_max_ttl")]
    max_ttl_s: u64,
    #[serde(default = "default_max_name", deserialize_with = "de_max_name")]
    max_username_bytes: u16,
    #[serde(default)]
    username_chars: UsernameChars,
}

fn default_max_ttl() -> u64 {
    DEFAULT_REST_MAX_TTL_S
}

fn default_max_name() -> u16 {
    DEFAULT_REST_MAX_USERNAME_BYTES
}

fn de_max_ttl<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = u64::deserialize(d)?;
    if n == 0 {
        return Err(serde::de::Error::custom(
            "rest.max_ttl_s must be at least 1 (seconds a REST credential may still be valid)",
        ));
    }
    Ok(n)
}

fn de_max_name<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let n = u16::deserialize(d)?;
    if n < 2 {
        return Err(serde::de::Error::custom(
            "rest.max_username_bytes must be at least 2 (\"EXPIRY:USER\")",
        ));
    }
    Ok(n)
}

impl From<RawRest> for Rest {
    fn from(raw: RawRest) -> Self {
        let mut secrets = raw.secrets;
        secrets.extend(raw.secret_files.into_iter().map(|f| f.0));
        Rest {
            secrets,
            max_ttl_s: raw.max_ttl_s,
            max_username_bytes: raw.max_username_bytes,
            username_chars: raw.username_chars,
        }
    }
}
