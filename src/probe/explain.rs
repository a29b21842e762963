//! What a failed probe step most likely means, in the operator's terms:
//! closed port, firewall, wrong password or secret, quota, draining server,
//! relay ports unreachable.

use std::net::SocketAddr;
use std::time::Duration;

use super::client::Failure;
use super::{transport_name, AuthKind, Options};

/// Where in the probe a failure happened.
#[derive(Clone, Copy)]
pub enum Stage {
    Connect,
    Binding,
    Allocate,
    /// CreatePermission or ChannelBind for this peer.
    Peer(SocketAddr),
    /// Data from one relayed address to another.
    Relay {
        from: SocketAddr,
        to: SocketAddr,
    },
}

/// What a failure most likely means, for the operator.
pub struct Explain<'a> {
    pub opts: &'a Options,
    pub server: SocketAddr,
    pub realm: Option<String>,
}

impl Explain<'_> {
    pub fn why(&self, stage: Stage, f: &Failure) -> String {
        let transport = transport_name(self.opts.transport);
        let server = self.server;
        let timeout = format_duration(self.opts.timeout);
        match (stage, f) {
            (_, Failure::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => format!(
                "connection refused by {transport} {server}: nothing listens there (is turnd \
                 running, on this port?)"
            ),
            (Stage::Connect | Stage::Binding, Failure::Timeout) => format!(
                "no response from {transport} {server} within {timeout}: is turnd running, and \
                 is {transport} port {} open in the firewall?",
                server.port()
            ),
            (Stage::Connect, Failure::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                format!(
                    "cannot connect to {transport} {server} within {timeout}: is tcp port {} \
                     open in the firewall?",
                    server.port()
                )
            }
            (Stage::Connect, Failure::Io(e))
                if transport == "tls" && e.kind() == std::io::ErrorKind::InvalidData =>
            {
                format!(
                    "TLS handshake with {server} failed: {e}: give --ca with the CA that \
                     signed the server's certificate (for a self-signed one, the certificate \
                     itself), and --sni with a name the certificate is for"
                )
            }
            (_, Failure::Io(e)) => format!("{transport} {server}: {e}"),
            (Stage::Relay { from, to }, Failure::Timeout) => format!(
                "the data sent from relayed address {from} to {to} did not arrive within \
                 {timeout}: the relay cannot reach its own relayed addresses. Check that the \
                 [relay] ports are open (UDP, inbound) in the firewall, and that relay.external \
                 is this server's public address (behind a 1:1 NAT, the NAT must hairpin)"
            ),
            (_, Failure::Timeout) => format!("no response within {timeout}"),
            (_, Failure::Error { code: 401, .. }) => self.unauthorized(),
            (
                _,
                Failure::Error {
                    code: 300,
                    alternate,
                    ..
                },
            ) => match alternate {
                Some(alt) => format!(
                    "the server redirects new allocations to {alt} (ALTERNATE-SERVER; it is \
                     probably draining): probe that server"
                ),
                None => "the server answered 300 Try Alternate without ALTERNATE-SERVER".into(),
            },
            (_, Failure::Error { code: 441, .. }) => {
                "wrong credentials (441): the allocation belongs to other credentials".into()
            }
            (_, Failure::Error { code: 437, .. }) => {
                "allocation mismatch (437): the server already has (or no longer has) an \
                 allocation for this client address"
                    .into()
            }
            (_, Failure::Error { code: 486, .. }) => format!(
                "allocation quota reached (486) for user {:?}: raise [quota] \
                 allocations_per_user, or wait for its allocations to expire",
                self.opts.username
            ),
            (_, Failure::Error { code: 508, .. }) => {
                "insufficient capacity (508): no free relay port, [quota] allocations_total \
                 reached, or the server is draining"
                    .into()
            }
            (_, Failure::Error { code: 442, .. }) => {
                "unsupported transport protocol (442): the server does not relay UDP".into()
            }
            (Stage::Peer(peer), Failure::Error { code: 403, .. }) => format!(
                "forbidden (403): the server refused its own relayed address {peer} as a peer: \
                 is relay.external the address the relay sockets are reached at?"
            ),
            (_, Failure::Error { code: 403, .. }) => "forbidden (403)".into(),
            (
                _,
                Failure::Error {
                    method,
                    code,
                    reason,
                    ..
                },
            ) => format!("{method} failed: error {code} {reason}"),
            (_, Failure::Protocol(m)) => m.clone(),
        }
    }

    fn unauthorized(&self) -> String {
        let realm = self
            .realm
            .as_deref()
            .map(|r| format!(" (the server's realm is {r:?})"))
            .unwrap_or_default();
        match self.opts.auth {
            AuthKind::Static if rest_expiry(&self.opts.username).is_some() => format!(
                "authentication failed (401 Unauthorized): {:?} is a TURN REST username \
                 (EXPIRY:USER){realm}: check that it has not expired{} and that its password \
                 was minted from one of the server's [rest] secrets, or let the probe mint \
                 credentials with --secret-file or --config",
                self.opts.username,
                rest_expiry(&self.opts.username)
                    .map(expiry_note)
                    .unwrap_or_default()
            ),
            AuthKind::Static => format!(
                "authentication failed (401 Unauthorized): check user/password/realm: user \
                 {:?} with this password must be a [[users]] entry of the server{realm}; a \
                 `key` must be computed for that realm",
                self.opts.username
            ),
            AuthKind::Rest => format!(
                "authentication failed (401 Unauthorized): the server rejected the REST \
                 credential {:?}{realm}: check that the secret is one of the server's [rest] \
                 secrets, and that this host's clock and the server's are right",
                self.opts.username
            ),
        }
    }
}

/// The expiry of a REST username (`EXPIRY:USER`, EXPIRY in Unix seconds).
fn rest_expiry(username: &str) -> Option<u64> {
    let (expiry, user) = username.split_once(':')?;
    (!user.is_empty()).then_some(())?;
    expiry.parse().ok()
}

/// " (it expired N s ago)" or " (it expires in N s)".
fn expiry_note(expiry: u64) -> String {
    let now = turnd::net::clock::now().unix_secs;
    if expiry <= now {
        format!(" (it expired {} s ago)", now - expiry)
    } else {
        format!(" (it expires in {} s)", expiry - now)
    }
}

fn format_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
