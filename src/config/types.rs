//! Value types of the config file that validate themselves while being
//! deserialized, so that a bad value is reported by toml with its line,
//! column and key: [`Secret`], [`PortRange`], user credentials, secret files,
//! and the field checks (`realm`, `log.level`, addresses, CIDRs) shared with
//! [`Config::validate`](super::Config::validate).

use std::cell::RefCell;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ipnet::IpNet;
use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, Error as _, MapAccess, Visitor};
use serde::Deserialize;

/// A secret string (password, REST shared secret). `Debug` and `Display`
/// print `***`, so a secret never reaches a log line by accident; read it
/// with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the code that must use it (HMAC, MD5 key).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// `[relay] offload`: whether channel data is relayed by turnd's XDP
/// program in the kernel (src/net/offload/).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum OffloadMode {
    /// User space relays everything (the default).
    #[default]
    Off,
    /// Attach to the interface holding the relay address, if there is one
    /// and it works; otherwise relay in user space.
    Auto,
    /// Attach to this interface; relay in user space if that fails.
    Xdp(String),
}

impl TryFrom<String> for OffloadMode {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "off" => Ok(OffloadMode::Off),
            "auto" => Ok(OffloadMode::Auto),
            _ => match s.strip_prefix("xdp:") {
                Some(iface) if !iface.is_empty() && iface.len() < 16 && !iface.contains(['/', ' ']) => {
                    Ok(OffloadMode::Xdp(iface.to_string()))
                }
                _ => Err(format!(
                    "invalid relay.offload \"{s}\": expected \"off\", \"auto\" or \"xdp:IFACE\" (an interface name, e.g. \"xdp:eth0\")"
                )),
            },
        }
    }
}

impl fmt::Display for OffloadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OffloadMode::Off => f.write_str("off"),
            OffloadMode::Auto => f.write_str("auto"),
            OffloadMode::Xdp(i) => write!(f, "xdp:{i}"),
        }
    }
}

/// An inclusive range of UDP ports for relay sockets, written `"LOW-HIGH"`
/// in TOML (coturn's `min-port`/`max-port`). Always `1 <= low <= high`
/// when it comes from [`PortRange::new`], `FromStr` or `TryFrom<String>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PortRange {
    pub low: u16,
    pub high: u16,
}

/// Why a string or pair of ports is not a [`PortRange`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PortRangeError(String);

impl PortRange {
    /// A range from `low` to `high` inclusive; `low` must be at least 1
    /// and not above `high`.
    pub fn new(low: u16, high: u16) -> Result<Self, PortRangeError> {
        if low == 0 {
            return Err(PortRangeError(format!(
                "invalid port range \"{low}-{high}\": the low port must be at least 1"
            )));
        }
        if low > high {
            return Err(PortRangeError(format!(
                "invalid port range \"{low}-{high}\": low port {low} is above high port {high}"
            )));
        }
        Ok(PortRange { low, high })
    }

    /// How many ports the range holds (1 to 65535).
    pub fn len(&self) -> u32 {
        u32::from(self.high) + 1 - u32::from(self.low)
    }

    /// Never true for a valid range; here because clippy asks for it with `len`.
    pub fn is_empty(&self) -> bool {
        self.low > self.high
    }

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.low..=self.high).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.low, self.high)
    }
}

impl FromStr for PortRange {
    type Err = PortRangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = "expected \"LOW-HIGH\", e.g. \"49152-65535\"";
        let Some((low, high)) = s.split_once('-') else {
            return Err(PortRangeError(format!(
                "invalid port range {s:?}: {expected}"
            )));
        };
        let port = |p: &str| {
            p.trim().parse::<u16>().map_err(|_| {
                PortRangeError(format!(
                    "invalid port range {s:?}: {:?} is not a port number (1-65535); {expected}",
                    p.trim()
                ))
            })
        };
        PortRange::new(port(low)?, port(high)?)
    }
}

impl TryFrom<String> for PortRange {
    type Error = PortRangeError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// One `[[users]]` entry: a static long-term credential (RFC 8489 §9.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub credential: UserCredential,
    /// Concurrent allocations this user may hold; `None`: no per-user
    /// limit (only `quota.allocations_total`), see [`crate::config::Quota`].
    pub allocations: Option<u32>,
}

/// How a static user proves who they are. `Debug` hides both forms.
#[derive(Clone, PartialEq, Eq)]
pub enum UserCredential {
    /// The plain password (from `password` or `password_file`).
    Password(Secret),
    /// The long-term key `MD5(name:realm:password)` (from `key`): it is only
    /// valid for the `realm` it was computed with.
    Key([u8; 16]),
}

impl fmt::Debug for UserCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserCredential::Password(_) => f.write_str("Password(***)"),
            UserCredential::Key(_) => f.write_str("Key(***)"),
        }
    }
}

impl<'de> Deserialize<'de> for User {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The check runs inside `visit_map`, while toml still knows which
        // table it is in: a later `[[users]]` is then reported at its own line.
        struct UserVisitor;
        impl<'de> Visitor<'de> for UserVisitor {
            type Value = User;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a [[users]] table")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<User, A::Error> {
                let raw = RawUser::deserialize(MapAccessDeserializer::new(map))?;
                User::try_from(raw).map_err(A::Error::custom)
            }
        }
        d.deserialize_map(UserVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    #[serde(deserialize_with = "de_user_name")]
    name: String,
    #[serde(default, deserialize_with = "de_password")]
    password: Option<Secret>,
    #[serde(default)]
    key: Option<UserKey>,
    #[serde(default)]
    password_file: Option<FileSecret>,
    #[serde(default, deserialize_with = "de_some_at_least_1")]
    allocations: Option<u32>,
}

fn de_some_at_least_1<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    de_at_least_1(d).map(Some)
}

impl TryFrom<RawUser> for User {
    type Error = String;

    fn try_from(raw: RawUser) -> Result<Self, Self::Error> {
        let name = raw.name;
        let credential = match (raw.password, raw.key, raw.password_file) {
            (Some(p), None, None) | (None, None, Some(FileSecret(p))) => {
                UserCredential::Password(p)
            }
            (None, Some(UserKey(k)), None) => UserCredential::Key(k),
            (None, None, None) => {
                return Err(format!(
                    "user {name:?}: set one of `password`, `key` or `password_file`"
                ))
            }
            (p, k, f) => {
                let given: Vec<&str> = [
                    p.map(|_| "`password`"),
                    k.map(|_| "`key`"),
                    f.map(|_| "`password_file`"),
                ]
                .into_iter()
                .flatten()
                .collect();
                return Err(format!(
                    "user {name:?}: set only one of `password`, `key` or `password_file`, not {}",
                    given.join(" and ")
                ));
            }
        };
        Ok(User {
            name,
            credential,
            allocations: raw.allocations,
        })
    }
}

/// `key = "..."`: 32 hex digits, optionally prefixed `0x` like coturn's.
struct UserKey([u8; 16]);

impl<'de> Deserialize<'de> for UserKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let digits = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .unwrap_or(&s);
        let mut key = [0u8; 16];
        // The key itself is never echoed: it is as good as the password.
        match hex::decode_to_slice(digits, &mut key) {
            Ok(()) => Ok(UserKey(key)),
            Err(_) => Err(D::Error::custom(format!(
                "users.key must be 32 hex digits (the hex of MD5(\"name:realm:password\")), \
                 optionally prefixed 0x; got {} characters{}",
                digits.chars().count(),
                if digits.chars().all(|c| c.is_ascii_hexdigit()) {
                    ""
                } else {
                    " with non-hex digits"
                }
            ))),
        }
    }
}

thread_local! {
    /// The directory that relative secret-file paths are resolved against
    /// while [`Config::load`](super::Config::load) deserializes a file; unset
    /// (so the current directory) otherwise.
    static BASE_DIR: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// Runs `f` with relative secret-file paths resolved against `dir`.
pub(super) fn with_base_dir<R>(dir: &Path, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<PathBuf>);
    impl Drop for Restore {
        fn drop(&mut self) {
            BASE_DIR.with(|b| *b.borrow_mut() = self.0.take());
        }
    }
    let _restore = Restore(BASE_DIR.with(|b| b.replace(Some(dir.to_path_buf()))));
    f()
}

/// A path in TOML whose file holds a secret (`password_file`,
/// `secret_files`): read while the config is deserialized, trimmed of
/// surrounding whitespace, and rejected if empty or unreadable.
pub(super) struct FileSecret(pub(super) Secret);

impl<'de> Deserialize<'de> for FileSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let given = PathBuf::from(String::deserialize(d)?);
        let path = match BASE_DIR.with(|b| b.borrow().clone()) {
            Some(base) if given.is_relative() => base.join(&given),
            _ => given,
        };
        let content = std::fs::read_to_string(&path).map_err(|e| {
            D::Error::custom(format!("cannot read secret file {}: {e}", path.display()))
        })?;
        let secret = content.trim();
        if secret.is_empty() {
            return Err(D::Error::custom(format!(
                "secret file {} is empty",
                path.display()
            )));
        }
        Ok(FileSecret(Secret::from(secret)))
    }
}

fn de_password<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    let s = Secret::deserialize(d)?;
    if s.expose().is_empty() {
        return Err(D::Error::custom("users.password must not be empty"));
    }
    Ok(Some(s))
}

pub(super) fn de_secrets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Secret>, D::Error> {
    let secrets = Vec::<Secret>::deserialize(d)?;
    if let Some(i) = secrets.iter().position(|s| s.expose().is_empty()) {
        return Err(D::Error::custom(format!(
            "rest.secrets[{i}] is empty: an empty shared secret would let anyone mint credentials"
        )));
    }
    Ok(secrets)
}

/// Realm rules of RFC 8489 §14.9: fewer than 128 characters, at most 763
/// bytes; also non-empty and free of control characters.
pub(super) fn check_realm(realm: &str) -> Result<(), String> {
    if realm.is_empty() {
        return Err("realm must not be empty".into());
    }
    if realm.len() > 763 || realm.chars().count() >= 128 {
        return Err(format!(
            "realm must be fewer than 128 characters and at most 763 bytes (RFC 8489 §14.9), \
             got {} characters",
            realm.chars().count()
        ));
    }
    if realm.chars().any(char::is_control) {
        return Err(format!(
            "realm {realm:?} must not contain control characters"
        ));
    }
    Ok(())
}

pub(super) fn de_realm<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    check_realm(&s).map_err(D::Error::custom)?;
    Ok(s)
}

/// USERNAME rules of RFC 8489 §14.3 (at most 513 bytes); also non-empty and
/// free of control characters.
pub(super) fn check_user_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("users.name must not be empty".into());
    }
    if name.len() > 513 {
        return Err(format!(
            "users.name must be at most 513 bytes (RFC 8489 §14.3), got {}",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!(
            "users.name {name:?} must not contain control characters"
        ));
    }
    Ok(())
}

fn de_user_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    check_user_name(&s).map_err(D::Error::custom)?;
    Ok(s)
}

/// `log.level`: a level or directives, checked as start-up reads them
/// ([`crate::log_filter`]).
pub(super) fn check_log_level(level: &str) -> Result<(), String> {
    crate::log_filter::parse(level)
        .map(drop)
        .map_err(|e| format!("log.level: {e}"))
}

pub(super) fn de_log_level<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    check_log_level(&s).map_err(D::Error::custom)?;
    Ok(s)
}

/// A count that must be at least 1 (quotas, lifetimes).
pub(super) fn de_at_least_1<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    if n == 0 {
        return Err(D::Error::custom("must be at least 1"));
    }
    Ok(n)
}

fn parse_socket_addr<E: serde::de::Error>(key: &str, s: &str) -> Result<SocketAddr, E> {
    s.parse().map_err(|_| {
        E::custom(format!(
            "{key}: {s:?} is not an IP:PORT socket address (e.g. \"0.0.0.0:3478\" or \"[::]:3478\")"
        ))
    })
}

pub(super) fn de_udp_listeners<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<SocketAddr>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| parse_socket_addr("listen.udp", s))
        .collect()
}

pub(super) fn de_http_listen<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    parse_socket_addr("http.listen", &String::deserialize(d)?)
}

/// `s` as an IP address, or an error naming `key`.
pub(super) fn parse_ip_str(key: &str, s: &str) -> Result<IpAddr, String> {
    s.parse().map_err(|_| {
        format!("{key}: {s:?} is not an IP address (e.g. \"203.0.113.7\" or \"2001:db8::7\")")
    })
}

/// A CIDR (`"10.0.0.0/8"`) or a bare address (a /32 or /128), host bits cleared.
pub fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .map(|n| n.trunc())
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .ok()
}

fn de_nets<'de, D: Deserializer<'de>>(key: &str, d: D) -> Result<Vec<IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| {
            parse_net(s).ok_or_else(|| {
                D::Error::custom(format!(
                    "{key}: {s:?} is not a CIDR or IP address \
                     (e.g. \"10.0.0.0/8\", \"2001:db8::/32\" or \"192.0.2.1\")"
                ))
            })
        })
        .collect()
}

pub(super) fn de_peers_allow<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    de_nets("peers.allow", d)
}

pub(super) fn de_peers_deny<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    de_nets("peers.deny", d)
}
