//! The self-test page on the admin listener (`/selftest/`): a
//! self-contained page (no CDN, no inline script, a strict
//! Content-Security-Policy) that, in the operator's own browser, gathers
//! relay-only candidates (RFC 8656 §3.1) over each `turn:`/`turns:`
//! transport this server offers (RFC 7065), a server-reflexive one over
//! `stun:` (RFC 7064), and passes a data channel round trip between two
//! relay-only peer connections.
//!
//! The page and its script carry no secret and are served without the
//! token. The page asks for the admin token (or takes it from the URL
//! fragment, which browsers never send to a server) and sends it as
//! `Authorization: Bearer` to `POST /selftest/session`, which answers with
//! the URLs and a TURN REST credential (`expiry:turnd-selftest`) valid for
//! [`SESSION_TTL_S`] seconds. The credential is signed with a secret
//! drawn at start and never written anywhere; the engine accepts it after
//! the configured `[rest]` secrets, so the page works with static users
//! only, and no configured secret is sent to a browser.

use std::net::{IpAddr, SocketAddr};

use serde_json::{json, Value};

use crate::ice;

/// How long a credential minted for the page is valid (less if
/// `[rest] max_ttl_s` is shorter, so the engine accepts it).
pub const SESSION_TTL_S: u64 = 600;
/// The REST user part of the page's credentials (per-user quotas, usage
/// records and `turnd admin list --user` see it under this name).
pub const SELFTEST_USER: &str = "turnd-selftest";

/// The page, its script and its style, in the binary.
const INDEX_HTML: &str = include_str!("selftest/index.html");
const APP_JS: &str = include_str!("selftest/app.js");
const APP_CSS: &str = include_str!("selftest/app.css");

/// What `Content-Security-Policy` the page is served with: its own script
/// and style, fetches to this listener only, nothing else.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                       connect-src 'self'; base-uri 'none'; form-action 'none'; \
                       frame-ancestors 'none'";

/// One static file of the page: its content type and body.
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "selftest/" | "selftest/index.html" => Some(("text/html; charset=utf-8", INDEX_HTML)),
        "selftest/app.js" => Some(("text/javascript; charset=utf-8", APP_JS)),
        "selftest/app.css" => Some(("text/css; charset=utf-8", APP_CSS)),
        _ => None,
    }
}

/// The secret and the URLs the page is told about.
pub struct SelfTest {
    secret: String,
    /// [`SESSION_TTL_S`], or `[rest] max_ttl_s` if shorter.
    ttl_s: u64,
    stun: Option<String>,
    udp: Option<String>,
    tcp: Option<String>,
    tls: Option<String>,
}

impl SelfTest {
    /// The URLs of the first listener of each kind, named by `host` when
    /// given, else by the listener's address (`advertised` for one on an
    /// unspecified address).
    pub fn new(
        secret: String,
        max_ttl_s: u64,
        host: Option<&str>,
        advertised: IpAddr,
        (udp, tcp, tls): (&[SocketAddr], &[SocketAddr], &[SocketAddr]),
    ) -> Self {
        let name = |a: &SocketAddr| -> String {
            let ip = if a.ip().is_unspecified() {
                advertised
            } else {
                a.ip()
            };
            host.map_or_else(|| ip.to_string(), str::to_owned)
        };
        // `ice::host_urls` for the first listener of one kind: `[stun,
        // turn]` for UDP, `[turn]` for TCP, `[turns]` for TLS.
        let urls = |addrs: &[SocketAddr], kind: usize| -> Vec<String> {
            let Some(a) = addrs.first() else {
                return Vec::new();
            };
            let mut ports = [None; 3];
            ports[kind] = Some(a.port());
            ice::host_urls(&name(a), ports[0], ports[1], ports[2])
        };
        let udp = urls(udp, 0);
        SelfTest {
            secret,
            ttl_s: SESSION_TTL_S.min(max_ttl_s),
            stun: udp.first().cloned(),
            udp: udp.get(1).cloned(),
            tcp: urls(tcp, 1).pop(),
            tls: urls(tls, 2).pop(),
        }
    }

    /// The answer to `POST /selftest/session` at `now_unix`.
    pub fn session(&self, now_unix: u64) -> Value {
        let expires = now_unix + self.ttl_s;
        let credential = ice::mint(&self.secret, SELFTEST_USER, expires);
        json!({
            "username": credential.username,
            "credential": credential.credential,
            "expires": expires,
            "ttl_s": self.ttl_s,
            "transports": [
                {"transport": "udp", "url": self.udp},
                {"transport": "tcp", "url": self.tcp},
                {"transport": "tls", "url": self.tls},
                {"transport": "stun", "url": self.stun},
            ],
        })
    }
}

/// A fresh secret for the page's credentials: 32 random bytes, in hex.
pub fn fresh_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn urls_name_each_offered_transport() {
        let st = SelfTest::new(
            "s".into(),
            600,
            None,
            "203.0.113.7".parse().unwrap(),
            (&[addr("0.0.0.0:3478")], &[addr("127.0.0.1:3479")], &[]),
        );
        let s = st.session(1_000);
        let t = &s["transports"];
        assert_eq!(t[0]["url"], "turn:203.0.113.7:3478?transport=udp");
        assert_eq!(t[1]["url"], "turn:127.0.0.1:3479?transport=tcp");
        assert_eq!(t[2]["url"], Value::Null);
        assert_eq!(t[3]["url"], "stun:203.0.113.7:3478");
        assert_eq!(s["username"], "1600:turnd-selftest");
        assert_eq!(
            s["credential"],
            crate::core::auth::rest_password("s", "1600:turnd-selftest")
        );
    }

    #[test]
    fn a_host_names_every_url() {
        let st = SelfTest::new(
            "s".into(),
            60,
            Some("turn.example.com"),
            "203.0.113.7".parse().unwrap(),
            (&[], &[], &[addr("[::]:5349")]),
        );
        let s = st.session(0);
        assert_eq!(
            s["username"], "60:turnd-selftest",
            "no longer than max_ttl_s"
        );
        assert_eq!(
            s["transports"][2]["url"],
            "turns:turn.example.com:5349?transport=tcp"
        );
        assert_eq!(s["transports"][0]["url"], Value::Null);
    }

    #[test]
    fn assets_are_self_contained() {
        for path in ["selftest/", "selftest/app.js", "selftest/app.css"] {
            let (_, body) = asset(path).unwrap();
            assert!(
                !body.contains("http://") && !body.contains("https://"),
                "{path}"
            );
            assert!(!body.contains("innerHTML"), "{path}");
        }
        assert!(asset("selftest/../admin.rs").is_none());
    }
}
