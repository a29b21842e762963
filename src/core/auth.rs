//! The long-term credential mechanism (RFC 8489 §9.2) with static users and
//! TURN REST API shared secrets (draft-uberti-behave-turn-rest, as coturn's
//! `use-auth-secret`): username `expiry:user`, password
//! `base64(HMAC-SHA1(secret, username))`, key `MD5(username:realm:password)`
//! or, with PASSWORD-ALGORITHM SHA-256, `SHA-256(username:realm:password)`
//! ([`super::auth_sha256`]).

use std::collections::HashMap;

use base64::Engine;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;

use super::precis::opaque_string;

use super::auth_sha256::{sha256_key, userhash, Algorithm};

/// An MD5 long-term key: MD5(username ":" realm ":" password).
pub type Md5Key = [u8; 16];

/// A long-term key of either password algorithm (RFC 8489 §9.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secret {
    Md5(Md5Key),
    Sha256([u8; 32]),
}

impl Secret {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Secret::Md5(k) => k,
            Secret::Sha256(k) => k,
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Secret::Md5(_) => Algorithm::Md5,
            Secret::Sha256(_) => Algorithm::Sha256,
        }
    }
}

/// The key a request was authenticated with and the integrity attribute
/// it used, which its response carries too (RFC 8489 §9.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub secret: Secret,
    /// MESSAGE-INTEGRITY-SHA256 rather than MESSAGE-INTEGRITY.
    pub sha256_integrity: bool,
}

/// The long-term key for `username` in `realm` with `password`, realm and
/// password prepared with OpaqueString first (RFC 8489 §9.2.2).
pub fn long_term_key(username: &str, realm: &str, password: &str) -> Md5Key {
    long_term_hash::<Md5>(username, realm, password).into()
}

/// H(username ":" realm ":" password), realm and password prepared with
/// OpaqueString (RFC 8489 §9.2.2): the long-term key under the hash `D`
/// of a PASSWORD-ALGORITHM (MD5, SHA-256).
pub(super) fn long_term_hash<D: Digest>(
    username: &str,
    realm: &str,
    password: &str,
) -> md5::digest::Output<D> {
    let mut h = D::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(opaque_string(realm).as_bytes());
    h.update(b":");
    h.update(opaque_string(password).as_bytes());
    h.finalize()
}

/// The TURN REST API password for `username` under `secret`.
pub fn rest_password(secret: &str, username: &str) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Why a username has no key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Neither a static user nor a well-formed REST username with a secret.
    UnknownUser,
    /// A REST username whose expiry time has passed.
    Expired,
    /// A REST username with characters or a length the policy refuses
    /// (RFC 8489 §14.3, RFC 8265 OpaqueString).
    BadUsername,
    /// A REST username valid for longer than `[rest] max_ttl_s` from now.
    LifetimeTooLong,
    /// A static user configured with an MD5 `key` asked for SHA-256.
    NoSha256Key,
}

impl Refusal {
    /// The `reason` label of `turnd_auth_failures_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::UnknownUser => "unknown_user",
            Refusal::Expired => "expired_credential",
            Refusal::BadUsername => "bad_username",
            Refusal::LifetimeTooLong => "credential_lifetime",
            Refusal::NoSha256Key => "algorithm_unavailable",
        }
    }
}

/// Which characters a REST username may hold (`[rest] username_chars`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UsernameChars {
    /// Any Unicode except control characters (Cc), line and paragraph
    /// separators and bidirectional controls: what a log line cannot show
    /// as itself (RFC 8265 OpaqueString forbids the first).
    #[default]
    Printable,
    /// Printable ASCII only (0x20-0x7E).
    Ascii,
}

impl UsernameChars {
    fn allows(self, c: char) -> bool {
        match self {
            UsernameChars::Ascii => (' '..='~').contains(&c),
            UsernameChars::Printable => !super::redact::needs_escape(c),
        }
    }
}

/// `[rest] max_ttl_s` by default: one day, what `turnd credentials` mints.
pub const DEFAULT_REST_MAX_TTL_S: u64 = 86_400;
/// `[rest] max_username_bytes` by default: RFC 8489 §14.3 (fewer than 509
/// bytes).
pub const DEFAULT_REST_MAX_USERNAME_BYTES: u16 = 508;

/// What a REST username must satisfy besides its HMAC (`[rest]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestPolicy {
    /// The longest accepted time between now and the expiry, in seconds.
    pub max_ttl_s: u64,
    /// The longest username in bytes.
    pub max_username_bytes: usize,
    pub chars: UsernameChars,
}

impl Default for RestPolicy {
    fn default() -> Self {
        RestPolicy {
            max_ttl_s: DEFAULT_REST_MAX_TTL_S,
            max_username_bytes: DEFAULT_REST_MAX_USERNAME_BYTES.into(),
            chars: UsernameChars::default(),
        }
    }
}

impl RestPolicy {
    /// Whether `username` is a name this policy lets through.
    pub fn name_ok(&self, username: &str) -> bool {
        username.len() <= self.max_username_bytes && username.chars().all(|c| self.chars.allows(c))
    }
}

/// The credentials turnd accepts.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    realm: String,
    users: HashMap<String, Md5Key>,
    /// SHA-256 keys of the static users configured with a password.
    sha256_users: HashMap<String, [u8; 32]>,
    /// USERHASH of every static user, to its name (RFC 8489 §14.4).
    userhashes: HashMap<[u8; 32], String>,
    rest_secrets: Vec<String>,
    rest_policy: RestPolicy,
}

impl Credentials {
    /// `users` holds precomputed keys (a password is turned into one by the
    /// caller with [`long_term_key`]).
    pub fn new(realm: String, users: HashMap<String, Md5Key>, rest_secrets: Vec<String>) -> Self {
        let userhashes = users
            .keys()
            .map(|u| (userhash(u, &realm), u.clone()))
            .collect();
        Credentials {
            realm,
            users,
            sha256_users: HashMap::new(),
            userhashes,
            rest_secrets,
            rest_policy: RestPolicy::default(),
        }
    }

    /// These credentials with `secret` accepted after the configured REST
    /// secrets (the admin self-test page's, drawn at start and never configured).
    pub fn with_extra_rest_secret(mut self, secret: String) -> Self {
        self.rest_secrets.push(secret);
        self
    }

    /// These credentials with REST usernames checked against `policy`.
    pub fn with_rest_policy(mut self, policy: RestPolicy) -> Self {
        self.rest_policy = policy;
        self
    }

    /// These credentials with the SHA-256 keys of the static users that
    /// have a password (an MD5 `key` cannot be turned into one).
    pub fn with_sha256_keys(mut self, keys: HashMap<String, [u8; 32]>) -> Self {
        self.sha256_users = keys;
        self
    }

    /// The static user whose USERHASH is `hash`. REST usernames cannot be
    /// found this way: they are not known in advance.
    pub fn user_by_hash(&self, hash: &[u8]) -> Option<&str> {
        let hash: [u8; 32] = hash.try_into().ok()?;
        self.userhashes.get(&hash).map(String::as_str)
    }

    /// The keys of `algorithm` a request signed as `username` may use at
    /// `unix_secs` (see [`Credentials::keys`]).
    pub fn secrets(
        &self,
        username: &str,
        unix_secs: u64,
        algorithm: Algorithm,
    ) -> Result<Vec<Secret>, Refusal> {
        self.secrets_at(username, Some(unix_secs), algorithm)
    }

    /// The secrets this config gives `username` whatever the time: after a
    /// reload, whether a live allocation's key is still one of them (a REST
    /// allocation outlives its credential's expiry until it lapses, and the
    /// TTL limit is judged when the credential is first used).
    pub fn current_secrets(
        &self,
        username: &str,
        algorithm: Algorithm,
    ) -> Result<Vec<Secret>, Refusal> {
        self.secrets_at(username, None, algorithm)
    }

    fn secrets_at(
        &self,
        username: &str,
        unix_secs: Option<u64>,
        algorithm: Algorithm,
    ) -> Result<Vec<Secret>, Refusal> {
        if algorithm == Algorithm::Md5 {
            return Ok(self
                .keys_at(username, unix_secs)?
                .into_iter()
                .map(Secret::Md5)
                .collect());
        }
        if self.users.contains_key(username) {
            return match self.sha256_users.get(username) {
                Some(k) => Ok(vec![Secret::Sha256(*k)]),
                None => Err(Refusal::NoSha256Key),
            };
        }
        self.check_rest(username, unix_secs)?;
        Ok(self
            .rest_secrets
            .iter()
            .map(|s| {
                Secret::Sha256(sha256_key(
                    username,
                    &self.realm,
                    &rest_password(s, username),
                ))
            })
            .collect())
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// No user and no secret: turnd must not relay at all.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.rest_secrets.is_empty()
    }

    /// Whether `username` is a static user.
    pub fn is_static(&self, username: &str) -> bool {
        self.users.contains_key(username)
    }

    /// The keys a request signed as `username` may use at `unix_secs`: one for
    /// a static user, one per secret for a REST username (secrets rotate).
    pub fn keys(&self, username: &str, unix_secs: u64) -> Result<Vec<Md5Key>, Refusal> {
        self.keys_at(username, Some(unix_secs))
    }

    /// [`Self::keys`], at `unix_secs` or (`None`) whatever the time.
    fn keys_at(&self, username: &str, unix_secs: Option<u64>) -> Result<Vec<Md5Key>, Refusal> {
        if let Some(key) = self.users.get(username) {
            return Ok(vec![*key]);
        }
        self.check_rest(username, unix_secs)?;
        Ok(self
            .rest_secrets
            .iter()
            .map(|s| long_term_key(username, &self.realm, &rest_password(s, username)))
            .collect())
    }

    /// Whether `username` is a REST username valid at `unix_secs` (or, with
    /// `None`, at some time: its name alone).
    fn check_rest(&self, username: &str, unix_secs: Option<u64>) -> Result<(), Refusal> {
        let expiry = rest_expiry(username).ok_or(Refusal::UnknownUser)?;
        if self.rest_secrets.is_empty() {
            return Err(Refusal::UnknownUser);
        }
        if !self.rest_policy.name_ok(username) {
            return Err(Refusal::BadUsername);
        }
        let Some(unix_secs) = unix_secs else {
            return Ok(());
        };
        if expiry <= unix_secs {
            return Err(Refusal::Expired);
        }
        if expiry - unix_secs > self.rest_policy.max_ttl_s {
            return Err(Refusal::LifetimeTooLong);
        }
        Ok(())
    }
}

/// The expiry of a REST username `expiry[:user]`, if it is one.
fn rest_expiry(username: &str) -> Option<u64> {
    let stamp = username.split_once(':').map_or(username, |(t, _)| t);
    if stamp.is_empty() || stamp.len() > 20 || !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stamp.parse().ok()
}

/// The user a quota is counted against: `alice` for REST username
/// `1700000000:alice`, so minting fresh credentials does not escape it; the
/// empty name for a bare timestamp, so all credentials without a user part
/// share one bucket rather than getting one per expiry time.
pub fn quota_user(username: &str) -> &str {
    match username.split_once(':') {
        Some((stamp, user)) if rest_expiry(stamp).is_some() => user,
        None if rest_expiry(username).is_some() => "",
        _ => username,
    }
}

/// The key the per-user quota counts `username` under: the REST user part
/// for REST usernames, the name (marked, so that a static user and a REST
/// user of the same name are counted apart) for static users.
pub fn quota_key(username: &str, is_static: bool) -> String {
    if is_static {
        // Static names hold no control character: no REST user part can
        // look like this.
        format!("\u{1}{username}")
    } else {
        quota_user(username).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_term_key_is_md5_of_user_realm_password() {
        // printf 'user:realm:pass' | md5sum (the RFC 5769 §2.4 vector is in
        // tests/daemon/rfc5769.rs).
        assert_eq!(
            hex::encode(long_term_key("user", "realm", "pass")),
            "8493fbc53ba582fb4c044c456bdc40eb"
        );
    }

    #[test]
    fn realm_and_password_are_prepared_with_opaque_string() {
        // A password typed decomposed (e + U+0301) and one typed composed
        // derive the same key, the one an RFC 8489 client derives.
        let composed = long_term_key("user", "réalm", "pässwörd");
        assert_eq!(
            long_term_key("user", "re\u{301}alm", "pa\u{308}sswo\u{308}rd"),
            composed
        );
        // printf 'user:r\xc3\xa9alm:p\xc3\xa4ssw\xc3\xb6rd' | md5sum
        assert_eq!(hex::encode(composed), "445b099ba6a83a3bfa2694cffaaf6b94");
        assert_eq!(
            long_term_key("u", "r", "a\u{A0}b"),
            long_term_key("u", "r", "a b")
        );
    }

    #[test]
    fn rest_password_matches_coturn() {
        // echo -n "1700000000:alice" | openssl dgst -sha1 -hmac "s3cret" -binary | base64
        assert_eq!(
            rest_password("s3cret", "1700000000:alice"),
            "TtElzSjT0GdnTQ9xdcRNxx96yQs="
        );
    }

    #[test]
    fn static_users_rest_users_and_refusals() {
        let mut users = HashMap::new();
        users.insert("alice".to_string(), long_term_key("alice", "r", "pw"));
        let creds = Credentials::new("r".into(), users, vec!["old".into(), "new".into()]);
        assert_eq!(
            creds.keys("alice", 0).unwrap(),
            vec![long_term_key("alice", "r", "pw")]
        );
        assert_eq!(creds.keys("bob", 0), Err(Refusal::UnknownUser));
        let rest = creds.keys("2000:bob", 1999).unwrap();
        assert_eq!(rest.len(), 2);
        assert_eq!(
            rest[1],
            long_term_key("2000:bob", "r", &rest_password("new", "2000:bob"))
        );
        assert_eq!(creds.keys("2000:bob", 2000), Err(Refusal::Expired));
        assert_eq!(
            creds.keys("2000", 10).unwrap().len(),
            2,
            "a bare timestamp is a REST username"
        );
        let no_secrets = Credentials::new("r".into(), HashMap::new(), vec![]);
        assert!(no_secrets.is_empty());
        assert_eq!(no_secrets.keys("2000:bob", 0), Err(Refusal::UnknownUser));
    }

    #[test]
    fn current_secrets_ignore_time_but_not_the_secrets() {
        let creds = Credentials::new("r".into(), HashMap::new(), vec!["kept".into()]);
        // Long past the default TTL limit from time 0, and expired at 3000:
        // neither ends a live allocation on reload; a removed secret does.
        let far = format!("{}:dave", DEFAULT_REST_MAX_TTL_S + 10);
        let key = long_term_key(&far, "r", &rest_password("kept", &far));
        assert_eq!(
            creds.current_secrets(&far, Algorithm::Md5),
            Ok(vec![Secret::Md5(key)])
        );
        assert_eq!(
            creds
                .current_secrets("20:dave", Algorithm::Md5)
                .map(|k| k.len()),
            Ok(1)
        );
        let rotated = Credentials::new("r".into(), HashMap::new(), vec!["new".into()]);
        assert!(!rotated
            .current_secrets(&far, Algorithm::Md5)
            .unwrap()
            .contains(&Secret::Md5(key)));
    }

    #[test]
    fn sha256_keys_for_password_users_and_rest_users_only() {
        let mut users = HashMap::new();
        users.insert("alice".to_string(), long_term_key("alice", "r", "pw"));
        users.insert("keyed".to_string(), long_term_key("keyed", "r", "pw"));
        let sha = HashMap::from([("alice".to_string(), sha256_key("alice", "r", "pw"))]);
        let creds =
            Credentials::new("r".into(), users, vec!["s".into()]).with_sha256_keys(sha.clone());
        assert_eq!(
            creds.secrets("alice", 0, Algorithm::Sha256),
            Ok(vec![Secret::Sha256(sha["alice"])])
        );
        assert_eq!(
            creds.secrets("alice", 0, Algorithm::Md5),
            Ok(vec![Secret::Md5(long_term_key("alice", "r", "pw"))])
        );
        assert_eq!(
            creds.secrets("keyed", 0, Algorithm::Sha256),
            Err(Refusal::NoSha256Key),
            "an MD5 key gives no SHA-256 key"
        );
        let rest = creds.secrets("2000:bob", 1999, Algorithm::Sha256).unwrap();
        assert_eq!(
            rest,
            vec![Secret::Sha256(sha256_key(
                "2000:bob",
                "r",
                &rest_password("s", "2000:bob")
            ))]
        );
        assert_eq!(
            creds.secrets("2000:bob", 2000, Algorithm::Sha256),
            Err(Refusal::Expired),
            "REST checks apply to SHA-256 too"
        );
        assert_eq!(creds.user_by_hash(&userhash("alice", "r")), Some("alice"));
        assert_eq!(creds.user_by_hash(&userhash("2000:bob", "r")), None);
        assert_eq!(creds.user_by_hash(b"short"), None);
    }

    #[test]
    fn quota_is_counted_per_rest_user() {
        assert_eq!(quota_user("1700000000:alice"), "alice");
        assert_eq!(quota_user("alice"), "alice");
        assert_eq!(quota_user("team:alice"), "team:alice");
        assert_eq!(
            quota_user("1700000000"),
            "",
            "bare timestamps share one bucket"
        );
        assert_eq!(quota_user("1700000001"), "");
    }

    #[test]
    fn rest_policy_refuses_bad_names_and_long_lifetimes() {
        let creds = Credentials::new("r".into(), HashMap::new(), vec!["s".into()]);
        assert_eq!(
            creds.keys("2000:eve\nINFO x", 10),
            Err(Refusal::BadUsername)
        );
        assert_eq!(creds.keys("2000:e\u{1b}[2J", 10), Err(Refusal::BadUsername));
        assert_eq!(creds.keys("2000:e\0", 10), Err(Refusal::BadUsername));
        assert_eq!(creds.keys("2000:e\u{2028}", 10), Err(Refusal::BadUsername));
        assert_eq!(
            creds.keys("2000:\u{202E}evil", 10),
            Err(Refusal::BadUsername)
        );
        assert!(
            creds.keys("2000:zoë", 10).is_ok(),
            "Unicode letters are fine"
        );
        let long = format!("2000:{}", "a".repeat(503));
        assert_eq!(long.len(), 508);
        assert!(creds.keys(&long, 10).is_ok());
        assert_eq!(
            creds.keys(&format!("{long}a"), 10),
            Err(Refusal::BadUsername)
        );
        assert_eq!(
            creds.keys("18446744073709551615:eve", 10),
            Err(Refusal::LifetimeTooLong)
        );
        assert!(creds.keys("86410:bob", 10).is_ok(), "exactly max_ttl_s");
        assert_eq!(creds.keys("86411:bob", 10), Err(Refusal::LifetimeTooLong));
        let ascii = creds.clone().with_rest_policy(RestPolicy {
            chars: UsernameChars::Ascii,
            max_ttl_s: 0,
            ..RestPolicy::default()
        });
        assert_eq!(ascii.keys("2000:zoë", 10), Err(Refusal::BadUsername));
        assert_eq!(ascii.keys("11:bob", 10), Err(Refusal::LifetimeTooLong));
    }
}
