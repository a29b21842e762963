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

/// `stun:`, `turn:` and `turns:` URLs for a host name or IP literal (IPv6
/// is bracketed) with the ports of the listeners it serves; `None` leaves a
/// transport out.
pub fn host_urls(host: &str, udp: Option<u16>, tcp: Option<u16>, tls: Option<u16>) -> Vec<String> {
    let host = match host.parse::<std::net::Ipv6Addr>() {
        Ok(v6) => format!("[{v6}]"),
        Err(_) => host.to_owned(),
    };
    let mut urls = Vec::new();
    if let Some(port) = udp {
        urls.push(format!("stun:{host}:{port}"));
        urls.push(format!("turn:{host}:{port}?transport=udp"));
    }
    if let Some(port) = tcp {
        urls.push(format!("turn:{host}:{port}?transport=tcp"));
    }
    if let Some(port) = tls {
        urls.push(format!("turns:{host}:{port}?transport=tcp"));
    }
    urls
}

/// True for the URL schemes an `iceServers` entry takes (RFC 7064, RFC 7065).
pub fn is_ice_url(url: &str) -> bool {
    ["stun:", "stuns:", "turn:", "turns:"]
        .iter()
        .any(|scheme| url.len() > scheme.len() && url.starts_with(scheme))
}

/// `{"iceServers": [{urls, username, credential}]}`, keys in that order.
#[derive(Debug, Clone, Serialize)]
pub struct IceConfig {
    #[serde(rename = "iceServers")]
    pub ice_servers: Vec<IceServer>,
}

/// One `iceServers` entry for `urls` holding `credential`.
pub fn ice_config(urls: Vec<String>, credential: &RestCredential) -> IceConfig {
    IceConfig {
        ice_servers: vec![IceServer {
            urls,
            username: Some(credential.username.clone()),
            credential: Some(credential.credential.clone()),
        }],
    }
}

/// The JSON a web page passes as `new RTCPeerConnection({iceServers})`.
pub fn ice_servers_json(urls: Vec<String>, credential: &RestCredential) -> String {
    serde_json::to_string_pretty(&ice_config(urls, credential)).unwrap_or_default()
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

    #[test]
    fn urls_for_a_host() {
        assert_eq!(
            host_urls("turn.example.org", Some(3478), Some(3478), Some(5349)),
            vec![
                "stun:turn.example.org:3478",
                "turn:turn.example.org:3478?transport=udp",
                "turn:turn.example.org:3478?transport=tcp",
                "turns:turn.example.org:5349?transport=tcp"
            ]
        );
        assert_eq!(
            host_urls("2001:db8::1", None, Some(443), None),
            vec!["turn:[2001:db8::1]:443?transport=tcp"]
        );
        assert!(is_ice_url("turn:h:1") && is_ice_url("stuns:h"));
        assert!(!is_ice_url("http://h") && !is_ice_url("turn:"));
    }

    #[test]
    fn ice_servers_shape() {
        let c = mint("s3cret", "alice", 1_700_000_000);
        let json = serde_json::to_string(&ice_config(vec!["stun:h:1".into()], &c)).unwrap();
        assert_eq!(
            json,
            r#"{"iceServers":[{"urls":["stun:h:1"],"username":"1700000000:alice","credential":"TtElzSjT0GdnTQ9xdcRNxx96yQs="}]}"#
        );
    }
}
