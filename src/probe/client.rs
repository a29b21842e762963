//! A minimal TURN client (RFC 8656 §7-§12) on the `stun` and `turn::proto`
//! wire types: Binding, Allocate with the long-term credential mechanism
//! (RFC 8489 §9.2: 401 challenge, then signed requests, one retry on a 438
//! stale nonce), CreatePermission, ChannelBind, Refresh, Send indications
//! and ChannelData. Requests over UDP are retransmitted RFC 8489 §6.2.1
//! style (RTO doubling from 500 ms) until the step's deadline.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use stun::agent::TransactionId;
use stun::attributes::{AttrType, ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use stun::error_code::ErrorCodeAttribute;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{
    Getter, Message, MessageType, Method, Setter, BINDING_REQUEST, CLASS_ERROR_RESPONSE,
    CLASS_INDICATION, CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE, METHOD_CHANNEL_BIND,
    METHOD_CREATE_PERMISSION, METHOD_DATA, METHOD_REFRESH, METHOD_SEND,
};
use stun::textattrs::TextAttribute;
use stun::xoraddr::XorMappedAddress;
use turn::proto::channum::ChannelNumber;
use turn::proto::data::Data;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqtrans::RequestedTransport;
use turn::proto::PROTO_UDP;

use super::link::Link;
use super::now;

/// RFC 8489 §6.2.1's initial retransmission timeout.
const INITIAL_RTO: Duration = Duration::from_millis(500);
/// ALTERNATE-SERVER (RFC 8489 §14.15).
const ATTR_ALTERNATE_SERVER: AttrType = AttrType(0x8023);

/// Why a step failed, before the probe adds what it means.
#[derive(Debug)]
pub enum Failure {
    /// The socket said no (connection refused, network unreachable…).
    Io(io::Error),
    /// Nothing came back in time.
    Timeout,
    /// An error response (RFC 8489 §14.8).
    Error {
        method: Method,
        code: u16,
        reason: String,
        /// ALTERNATE-SERVER of a 300 response.
        alternate: Option<SocketAddr>,
    },
    /// A response that breaks the protocol.
    Protocol(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Io(e) => write!(f, "{e}"),
            Failure::Timeout => f.write_str("timed out"),
            Failure::Error {
                method,
                code,
                reason,
                ..
            } => write!(f, "{method} error {code} {reason}"),
            Failure::Protocol(m) => f.write_str(m),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

/// Data the server relayed to this client.
#[derive(Debug, PartialEq, Eq)]
pub enum Relayed {
    /// A Data indication (RFC 8656 §11.4) from XOR-PEER-ADDRESS.
    Indication { peer: SocketAddr, data: Vec<u8> },
    /// ChannelData (RFC 8656 §12.4) on a bound channel.
    Channel { number: u16, data: Vec<u8> },
}

impl Relayed {
    pub fn data(&self) -> &[u8] {
        match self {
            Relayed::Indication { data, .. } | Relayed::Channel { data, .. } => data,
        }
    }
}

/// An attribute given as type and value bytes (to rebuild a request with
/// a fresh nonce).
struct RawAttr(AttrType, Vec<u8>);

impl Setter for RawAttr {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        m.add(self.0, &self.1);
        Ok(())
    }
}

/// What the server told us about an allocation.
#[derive(Debug, Clone, Copy)]
pub struct Allocation {
    pub relayed: SocketAddr,
    pub mapped: Option<SocketAddr>,
    pub lifetime: Duration,
}

pub struct Client {
    link: Link,
    username: String,
    password: String,
    realm: Option<String>,
    nonce: Option<String>,
    timeout: Duration,
    /// Messages that arrived while a response was awaited.
    backlog: VecDeque<Vec<u8>>,
}

impl Client {
    pub fn new(link: Link, username: &str, password: &str, timeout: Duration) -> Self {
        Client {
            link,
            username: username.to_owned(),
            password: password.to_owned(),
            realm: None,
            nonce: None,
            timeout,
            backlog: VecDeque::new(),
        }
    }

    /// The REALM of the server's 401, once known.
    pub fn realm(&self) -> Option<&str> {
        self.realm.as_deref()
    }

    /// Binding (RFC 8489 §6): our address as the server sees it.
    pub fn binding(&mut self) -> Result<SocketAddr, Failure> {
        let req = build(vec![
            Box::new(TransactionId::new()),
            Box::new(BINDING_REQUEST),
            Box::new(FINGERPRINT),
        ])?;
        let resp = self.transact(&req)?;
        let resp = expect_success(resp, None)?;
        let mut mapped = XorMappedAddress::default();
        mapped.get_from(&resp).map_err(|e| {
            Failure::Protocol(format!("Binding response without XOR-MAPPED-ADDRESS: {e}"))
        })?;
        Ok(SocketAddr::new(mapped.ip, mapped.port))
    }

    /// Allocate a UDP relay (RFC 8656 §7.1): unsigned first to learn
    /// REALM and NONCE from the 401, then signed.
    pub fn allocate(&mut self) -> Result<Allocation, Failure> {
        let transport = || {
            vec![Box::new(RequestedTransport {
                protocol: PROTO_UDP,
            }) as Box<dyn Setter>]
        };
        if self.nonce.is_none() {
            let mut setters: Vec<Box<dyn Setter>> = vec![
                Box::new(TransactionId::new()),
                Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST)),
            ];
            setters.extend(transport());
            setters.push(Box::new(FINGERPRINT));
            let resp = self.transact(&build(setters)?)?;
            if resp.typ.class == CLASS_SUCCESS_RESPONSE {
                return Err(Failure::Protocol(
                    "the server allocated without asking for credentials".into(),
                ));
            }
            match error_of(&resp) {
                Some(Failure::Error { code: 401, .. }) => {}
                Some(other) => return Err(other),
                None => return Err(Failure::Protocol(format!("unexpected response {resp}"))),
            }
            let realm = TextAttribute::get_from_as(&resp, ATTR_REALM)
                .map_err(|_| Failure::Protocol("401 without REALM".into()))?;
            let nonce = TextAttribute::get_from_as(&resp, ATTR_NONCE)
                .map_err(|_| Failure::Protocol("401 without NONCE".into()))?;
            self.realm = Some(realm.text);
            self.nonce = Some(nonce.text);
        }
        let resp = self.request(METHOD_ALLOCATE, transport())?;
        let mut relayed = RelayedAddress::default();
        relayed.get_from(&resp).map_err(|e| {
            Failure::Protocol(format!("Allocate success without XOR-RELAYED-ADDRESS: {e}"))
        })?;
        let mut mapped = XorMappedAddress::default();
        let mapped = mapped
            .get_from(&resp)
            .ok()
            .map(|()| SocketAddr::new(mapped.ip, mapped.port));
        let mut lifetime = Lifetime::default();
        let _ = lifetime.get_from(&resp);
        Ok(Allocation {
            relayed: SocketAddr::new(relayed.ip, relayed.port),
            mapped,
            lifetime: lifetime.0,
        })
    }

    /// CreatePermission (RFC 8656 §9) for `peer`'s IP.
    pub fn create_permission(&mut self, peer: SocketAddr) -> Result<(), Failure> {
        self.request(METHOD_CREATE_PERMISSION, vec![Box::new(peer_address(peer))])
            .map(drop)
    }

    /// ChannelBind (RFC 8656 §12.1) of `number` to `peer`.
    pub fn channel_bind(&mut self, number: u16, peer: SocketAddr) -> Result<(), Failure> {
        self.request(
            METHOD_CHANNEL_BIND,
            vec![
                Box::new(ChannelNumber(number)),
                Box::new(peer_address(peer)),
            ],
        )
        .map(drop)
    }

    /// Refresh with LIFETIME 0: deletes the allocation (RFC 8656 §8).
    pub fn release(&mut self) -> Result<(), Failure> {
        self.request(METHOD_REFRESH, vec![Box::new(Lifetime(Duration::ZERO))])
            .map(drop)
    }

    /// A Send indication (RFC 8656 §11.1) of `data` to `peer`.
    pub fn send_indication(&mut self, peer: SocketAddr, data: &[u8]) -> Result<(), Failure> {
        let m = build(vec![
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(METHOD_SEND, CLASS_INDICATION)),
            Box::new(peer_address(peer)),
            Box::new(Data(data.to_vec())),
            Box::new(FINGERPRINT),
        ])?;
        Ok(self.link.send(&m.raw)?)
    }

    /// ChannelData (RFC 8656 §12.4), padded to 4 bytes as §12.5 requires
    /// over TCP and allows over UDP.
    pub fn send_channel_data(&mut self, number: u16, data: &[u8]) -> Result<(), Failure> {
        let len = u16::try_from(data.len())
            .map_err(|_| Failure::Protocol("ChannelData payload too long".into()))?;
        let mut buf = Vec::with_capacity(4 + data.len() + 3);
        buf.extend_from_slice(&number.to_be_bytes());
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(data);
        buf.resize(4 + data.len().next_multiple_of(4), 0);
        Ok(self.link.send(&buf)?)
    }

    /// Whether sends should be repeated (UDP may lose them).
    pub fn lossy(&self) -> bool {
        !self.link.reliable()
    }

    /// The next relayed data before `deadline`; anything else is skipped.
    pub fn recv_relayed(&mut self, deadline: Instant) -> Result<Option<Relayed>, Failure> {
        loop {
            let bytes = match self.backlog.pop_front() {
                Some(b) => b,
                None => match self.link.recv(deadline)? {
                    Some(b) => b,
                    None => return Ok(None),
                },
            };
            if let Some(relayed) = parse_relayed(&bytes) {
                return Ok(Some(relayed));
            }
        }
    }

    /// A signed request (RFC 8489 §9.2.4): `attrs`, then USERNAME, REALM,
    /// NONCE, MESSAGE-INTEGRITY, FINGERPRINT. One retry on 438. Returns
    /// the success response with its MESSAGE-INTEGRITY checked.
    fn request(&mut self, method: Method, attrs: Vec<Box<dyn Setter>>) -> Result<Message, Failure> {
        let attrs: Vec<(AttrType, Vec<u8>)> = build(attrs)?
            .attributes
            .0
            .into_iter()
            .map(|a| (a.typ, a.value))
            .collect();
        let (Some(realm), Some(_)) = (self.realm.clone(), self.nonce.as_ref()) else {
            return Err(Failure::Protocol(
                "no REALM/NONCE yet: Allocate first".into(),
            ));
        };
        let integrity = MessageIntegrity::new_long_term_integrity(
            self.username.clone(),
            realm.clone(),
            self.password.clone(),
        );
        let mut retried = false;
        loop {
            let mut setters: Vec<Box<dyn Setter>> = vec![
                Box::new(TransactionId::new()),
                Box::new(MessageType::new(method, CLASS_REQUEST)),
            ];
            for (typ, value) in &attrs {
                setters.push(Box::new(RawAttr(*typ, value.clone())));
            }
            setters.push(Box::new(TextAttribute::new(
                ATTR_USERNAME,
                self.username.clone(),
            )));
            setters.push(Box::new(TextAttribute::new(ATTR_REALM, realm.clone())));
            setters.push(Box::new(TextAttribute::new(
                ATTR_NONCE,
                self.nonce.clone().unwrap_or_default(),
            )));
            setters.push(Box::new(integrity.clone()));
            setters.push(Box::new(FINGERPRINT));
            let resp = self.transact(&build(setters)?)?;
            if let Some(Failure::Error { code: 438, .. }) = error_of(&resp) {
                if !retried {
                    let nonce = TextAttribute::get_from_as(&resp, ATTR_NONCE)
                        .map_err(|_| Failure::Protocol("438 without NONCE".into()))?;
                    self.nonce = Some(nonce.text);
                    retried = true;
                    continue;
                }
            }
            return expect_success(resp, Some(&integrity));
        }
    }

    /// Sends `req` and waits for the response with its transaction id,
    /// retransmitting over UDP, for at most the step timeout.
    fn transact(&mut self, req: &Message) -> Result<Message, Failure> {
        let deadline = now() + self.timeout;
        let mut rto = INITIAL_RTO;
        self.link.send(&req.raw)?;
        let mut next_send = now() + rto;
        loop {
            let t = now();
            if t >= deadline {
                return Err(Failure::Timeout);
            }
            if !self.link.reliable() && t >= next_send {
                self.link.send(&req.raw)?;
                rto *= 2;
                next_send = t + rto;
            }
            let wait_until = if self.link.reliable() {
                deadline
            } else {
                next_send.min(deadline)
            };
            let Some(bytes) = self.link.recv(wait_until)? else {
                continue;
            };
            match decode(&bytes) {
                Some(m) if m.transaction_id == req.transaction_id => return Ok(m),
                // A late answer to an earlier request: nothing waits for it.
                Some(m) if m.typ.class == CLASS_SUCCESS_RESPONSE => {}
                Some(m) if m.typ.class == CLASS_ERROR_RESPONSE => {}
                _ => self.backlog.push_back(bytes),
            }
        }
    }
}

fn build(setters: Vec<Box<dyn Setter>>) -> Result<Message, Failure> {
    let mut m = Message::new();
    m.build(&setters)
        .map_err(|e| Failure::Protocol(format!("cannot build a STUN message: {e}")))?;
    Ok(m)
}

fn decode(bytes: &[u8]) -> Option<Message> {
    let mut m = Message::new();
    m.raw = bytes.to_vec();
    m.decode().ok().map(|()| m)
}

fn peer_address(peer: SocketAddr) -> PeerAddress {
    PeerAddress {
        ip: peer.ip(),
        port: peer.port(),
    }
}

/// The failure an error response stands for, `None` for other classes.
fn error_of(resp: &Message) -> Option<Failure> {
    if resp.typ.class != CLASS_ERROR_RESPONSE {
        return None;
    }
    let mut code = ErrorCodeAttribute::default();
    if code.get_from(resp).is_err() {
        return Some(Failure::Protocol(format!(
            "{} error response without ERROR-CODE",
            resp.typ.method
        )));
    }
    // ALTERNATE-SERVER is encoded as MAPPED-ADDRESS, not XORed (§14.15).
    let mut alternate = stun::addr::MappedAddress::default();
    let alternate = alternate
        .get_from_as(resp, ATTR_ALTERNATE_SERVER)
        .ok()
        .map(|()| SocketAddr::new(alternate.ip, alternate.port));
    Some(Failure::Error {
        method: resp.typ.method,
        code: code.code.0,
        reason: String::from_utf8_lossy(&code.reason).into_owned(),
        alternate,
    })
}

/// The response if it is a success (with a valid MESSAGE-INTEGRITY when
/// the request was signed), else why not.
fn expect_success(
    mut resp: Message,
    integrity: Option<&MessageIntegrity>,
) -> Result<Message, Failure> {
    if let Some(failure) = error_of(&resp) {
        return Err(failure);
    }
    if resp.typ.class != CLASS_SUCCESS_RESPONSE {
        return Err(Failure::Protocol(format!("unexpected {}", resp.typ)));
    }
    if let Some(integrity) = integrity {
        integrity.check(&mut resp).map_err(|e| {
            Failure::Protocol(format!(
                "{} response with a bad MESSAGE-INTEGRITY: {e}",
                resp.typ.method
            ))
        })?;
    }
    Ok(resp)
}

/// A Data indication or ChannelData, `None` for anything else.
fn parse_relayed(bytes: &[u8]) -> Option<Relayed> {
    if bytes.first().is_some_and(|b| b >> 6 == 0b01) {
        let number = u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]);
        let len = usize::from(u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]));
        let data = bytes.get(4..4 + len)?.to_vec();
        return Some(Relayed::Channel { number, data });
    }
    let m = decode(bytes)?;
    if m.typ != MessageType::new(METHOD_DATA, CLASS_INDICATION) {
        return None;
    }
    let mut peer = PeerAddress::default();
    peer.get_from(&m).ok()?;
    let mut data = Data::default();
    data.get_from(&m).ok()?;
    Some(Relayed::Indication {
        peer: SocketAddr::new(peer.ip, peer.port),
        data: data.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_relayed_data() {
        assert_eq!(
            parse_relayed(&[0x40, 0x01, 0x00, 0x02, 9, 8, 0, 0]),
            Some(Relayed::Channel {
                number: 0x4001,
                data: vec![9, 8]
            })
        );
        assert_eq!(parse_relayed(&[0x40, 0x01, 0x00, 0x09, 9, 8]), None);
        let peer: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let m = build(vec![
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(METHOD_DATA, CLASS_INDICATION)),
            Box::new(peer_address(peer)),
            Box::new(Data(b"hi".to_vec())),
        ])
        .unwrap();
        assert_eq!(
            parse_relayed(&m.raw),
            Some(Relayed::Indication {
                peer,
                data: b"hi".to_vec()
            })
        );
    }

    #[test]
    fn error_responses() {
        let m = build(vec![
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_ERROR_RESPONSE)),
            Box::new(ErrorCodeAttribute {
                code: stun::error_code::CODE_ALLOC_QUOTA_REACHED,
                reason: b"Allocation Quota Reached".to_vec(),
            }),
        ])
        .unwrap();
        match error_of(&m) {
            Some(Failure::Error { code: 486, .. }) => {}
            other => panic!("{other:?}"),
        }
    }
}
