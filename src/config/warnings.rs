//! What a config may legally say but almost certainly does not mean:
//! `turnd check` prints these on stderr (exit 0) and the server logs them
//! at start. Also [`Config::check_host`]: addresses the config names that
//! this host does not have, which would fail the start.

use std::net::{IpAddr, SocketAddr};

use super::Config;

/// REST secrets shorter than this are guessable offline from one captured
/// credential (HMAC-SHA1 of a known username).
pub const MIN_SECRET_BYTES: usize = 16;

impl Config {
    /// Legal but almost certainly mistaken settings, one sentence each
    /// (part of [`Config::warnings`]).
    pub(super) fn likely_mistakes(&self) -> Vec<String> {
        let mut out = Vec::new();
        let ports = &self.relay.ports;
        let listeners = self
            .listen
            .udp
            .iter()
            .map(|a| ("udp", a))
            .chain(self.listen.tcp.iter().map(|a| ("tcp", a)))
            .chain(self.listen.tls.iter().map(|a| ("tls", a)));
        for (key, addr) in listeners {
            if (ports.low..=ports.high).contains(&addr.port()) {
                out.push(format!(
                    "listen.{key} port {} is inside relay.ports ({ports}): an allocation could \
                     not get that relay port, and clients may take relayed data for the \
                     listener's; move one of them",
                    addr.port()
                ));
            }
        }
        if self.tls.is_some() && self.listen.tls.is_empty() {
            out.push(
                "[tls] is set but listen.tls is empty: no TLS listener uses the certificate \
                 (add listen.tls = [\"0.0.0.0:5349\"] for turns:)"
                    .into(),
            );
        }
        if let Some(addr) = self.http.listen {
            if !addr.ip().is_loopback() {
                out.push(format!(
                    "http.listen {addr} is not a loopback address: /metrics is then open to \
                     the network (keep it on 127.0.0.1 and let Prometheus reach it through a \
                     tunnel or a firewall rule)"
                ));
            }
        }
        for (i, secret) in self.rest.secrets.iter().enumerate() {
            let len = secret.expose().len();
            if len < MIN_SECRET_BYTES {
                out.push(format!(
                    "rest.secrets: secret {} has {len} bytes, fewer than {MIN_SECRET_BYTES}: \
                     it can be guessed offline from one credential (use e.g. \
                     `openssl rand -hex 32`)",
                    i + 1
                ));
            }
        }
        if ports.low < 1024 {
            out.push(format!(
                "relay.ports ({ports}) starts below 1024: relay ports among the well-known \
                 ports need CAP_NET_BIND_SERVICE and collide with system services; use \
                 49152-65535"
            ));
        }
        out
    }

    /// Fails when an address the config names is not one of this host's
    /// (the start would fail binding it): listeners, http.listen and
    /// relay.bind are bound on port 0 to find out.
    pub fn check_host(&self) -> Result<(), String> {
        let mut addrs: Vec<(&str, IpAddr)> = Vec::new();
        let l = &self.listen;
        for (key, list) in [
            ("listen.udp", &l.udp),
            ("listen.tcp", &l.tcp),
            ("listen.tls", &l.tls),
        ] {
            addrs.extend(list.iter().map(|a| (key, a.ip())));
        }
        addrs.extend(self.http.listen.map(|a| ("http.listen", a.ip())));
        addrs.extend(self.relay.bind.iter().map(|ip| ("relay.bind", ip)));
        for (key, ip) in addrs {
            if ip.is_unspecified() {
                continue;
            }
            if let Err(e) = std::net::UdpSocket::bind(SocketAddr::new(ip, 0)) {
                if e.kind() == std::io::ErrorKind::AddrNotAvailable {
                    return Err(format!(
                        "{key}: {ip} is not an address of this host ({e}): the start would fail"
                    ));
                }
            }
        }
        Ok(())
    }
}
