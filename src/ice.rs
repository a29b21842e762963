//! TURN REST API credentials and the `iceServers` entry a WebRTC client
//! puts in its `RTCConfiguration` (W3C WebRTC §4.2.1), as turnd prints them.

use std::net::SocketAddr;

use serde::Serialize;

use crate::core::auth::rest_password;

/// A TURN REST credential: username `expiry:user`, password
/// `base64(HMAC-SHA1(secret, username))`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestCredential {
    pub username: String,
    pub credential: String,
}

/// Mints a credential for `user` valid until `expires_unix`.
pub fn mint(secret: &str, user: &str, expires_unix: u64) -> RestCredential {
    let username = format!("{expires_unix}:{user}");
    let credential = rest_password(secret, &username);
    RestCredential {
        username,
        credential,
    }
}

/// One `iceServers` entry.
#[derive(Debug, Clone, Serialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// `stun:`, `turn:` and `turns:` URLs for listeners reachable at these
/// addresses (RFC 7064, RFC 7065). A `turns:` URL should name the host the
/// certificate is for; `tls_host` replaces the IP when given.
pub fn urls(
    udp: &[SocketAddr],
    tcp: &[SocketAddr],
    tls: &[SocketAddr],
    tls_host: Option<&str>,
) -> Vec<String> {
    let mut urls: Vec<String> = udp.iter().map(|a| format!("stun:{a}")).collect();
    urls.extend(udp.iter().map(|a| format!("turn:{a}?transport=udp")));
    urls.extend(tcp.iter().map(|a| format!("turn:{a}?transport=tcp")));
    urls.extend(tls.iter().map(|a| match tls_host {
        Some(host) => format!("turns:{host}:{}?transport=tcp", a.port()),
        None => format!("turns:{a}?transport=tcp"),
    }));
    urls
}

/// The JSON a web page passes as `new RTCPeerConnection({iceServers})`.
pub fn ice_servers_json(urls: Vec<String>, credential: &RestCredential) -> String {
    let servers = [IceServer {
        urls,
        username: Some(credential.username.clone()),
        credential: Some(credential.credential.clone()),
    }];
    let value = serde_json::json!({ "iceServers": servers });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mints_coturn_compatible_credentials() {
        let c = mint("s3cret", "alice", 1_700_000_000);
        assert_eq!(c.username, "1700000000:alice");
        assert_eq!(c.credential, "TtElzSjT0GdnTQ9xdcRNxx96yQs=");
    }

    #[test]
    fn urls_for_every_transport() {
        let v6 = ["[2001:db8::1]:3478".parse().unwrap()];
        let tls = ["192.0.2.1:443".parse().unwrap()];
        assert_eq!(
            urls(&v6, &v6, &tls, Some("turn.example.org")),
            vec![
                "stun:[2001:db8::1]:3478",
                "turn:[2001:db8::1]:3478?transport=udp",
                "turn:[2001:db8::1]:3478?transport=tcp",
                "turns:turn.example.org:443?transport=tcp"
            ]
        );
        assert_eq!(
            urls(&[], &[], &tls, None),
            vec!["turns:192.0.2.1:443?transport=tcp"]
        );
    }
}
