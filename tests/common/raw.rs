//! A hand-driven STUN/TURN client over a blocking UDP socket, built on the
//! `stun` and `turn::proto` wire types: every request and its exact response
//! is visible to the test, unlike with `turn::client`.
//!
//! Requests are sent once (no retransmission: on loopback nothing is lost,
//! and a retransmission would make turnd count a request twice) and their
//! response awaited for at most [`RESPONSE_TIMEOUT`].

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use stun::agent::TransactionId;
use stun::attributes::{AttrType, ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use stun::error_code::ErrorCodeAttribute;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{
    Getter, Message, MessageType, Method, Setter, CLASS_ERROR_RESPONSE, CLASS_INDICATION,
    CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE, METHOD_CHANNEL_BIND,
    METHOD_CREATE_PERMISSION, METHOD_DATA, METHOD_REFRESH, METHOD_SEND,
};
use stun::textattrs::TextAttribute;
use turn::proto::channum::ChannelNumber;
use turn::proto::data::Data;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqtrans::RequestedTransport;
use turn::proto::PROTO_UDP;

use super::{PASSWORD, USER};

/// How long a request waits for its response.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds a message from setters (the transaction id and type first).
pub fn build(setters: Vec<Box<dyn Setter>>) -> Message {
    let mut m = Message::new();
    m.build(&setters).expect("build a STUN message");
    m
}

/// Decodes `bytes` as a STUN message, if they are one.
pub fn decode(bytes: &[u8]) -> Option<Message> {
    let mut m = Message::new();
    m.raw = bytes.to_vec();
    m.decode().ok().map(|()| m)
}

/// The ERROR-CODE number of an error response.
pub fn error_code(msg: &Message) -> Option<u16> {
    if msg.typ.class != CLASS_ERROR_RESPONSE {
        return None;
    }
    let mut code = ErrorCodeAttribute::default();
    code.get_from(msg).ok()?;
    Some(code.code.0)
}

/// The XOR-RELAYED-ADDRESS of an Allocate success response (fails on
/// anything else).
pub fn relayed_address(resp: &Message) -> SocketAddr {
    assert_eq!(
        resp.typ,
        MessageType::new(METHOD_ALLOCATE, CLASS_SUCCESS_RESPONSE),
        "Allocate failed: {resp} (error {:?})",
        error_code(resp)
    );
    let mut relayed = RelayedAddress::default();
    relayed
        .get_from(resp)
        .expect("Allocate success has XOR-RELAYED-ADDRESS");
    SocketAddr::new(relayed.ip, relayed.port)
}

/// A datagram turnd relayed to the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Relayed {
    /// A Data indication: XOR-PEER-ADDRESS and DATA.
    Indication { peer: SocketAddr, data: Vec<u8> },
    /// A ChannelData message.
    Channel { number: u16, data: Vec<u8> },
}

/// A STUN/TURN client on its own UDP socket on 127.0.0.1.
pub struct RawClient {
    socket: UdpSocket,
    server: SocketAddr,
    username: String,
    password: String,
    realm: Option<String>,
    nonce: Option<String>,
    /// Datagrams from the server that arrived while a response was awaited.
    backlog: VecDeque<Vec<u8>>,
}

impl RawClient {
    /// A client of `server` holding the test user's credentials.
    pub fn new(server: SocketAddr) -> Self {
        Self::with_credentials(server, USER, PASSWORD)
    }

    pub fn with_credentials(server: SocketAddr, username: &str, password: &str) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a client socket");
        RawClient {
            socket,
            server,
            username: username.to_string(),
            password: password.to_string(),
            realm: None,
            nonce: None,
            backlog: VecDeque::new(),
        }
    }

    /// The client's socket, to set IP options on (ECN marks).
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("client socket address")
    }

    /// The long-term key, once the realm is known.
    pub fn integrity(&self) -> MessageIntegrity {
        MessageIntegrity::new_long_term_integrity(
            self.username.clone(),
            self.realm.clone().expect("realm learnt from a 401"),
            self.password.clone(),
        )
    }

    pub fn send_raw(&self, bytes: &[u8]) {
        self.socket
            .send_to(bytes, self.server)
            .expect("send to turnd");
    }

    /// The next datagram from the server within `timeout`, if any.
    pub fn recv_raw(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        if let Some(queued) = self.backlog.pop_front() {
            return Some(queued);
        }
        recv_from_within(&self.socket, Some(self.server), timeout).map(|(b, _)| b)
    }

    /// Sends `req` and returns the response carrying its transaction id;
    /// other datagrams meanwhile are kept for [`Self::recv_raw`].
    pub fn transact(&mut self, req: &Message) -> Message {
        self.send_raw(&req.raw);
        let deadline = Instant::now() + RESPONSE_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some((bytes, _)) = recv_from_within(&self.socket, Some(self.server), left) else {
                panic!("no response to {} within {RESPONSE_TIMEOUT:?}", req.typ);
            };
            match decode(&bytes) {
                Some(m) if m.transaction_id == req.transaction_id => return m,
                _ => self.backlog.push_back(bytes),
            }
        }
    }

    /// Sends an unauthenticated `method` request, expects 401 with REALM and
    /// NONCE, and keeps them for signing later requests.
    pub fn challenge(&mut self, method: Method, attrs: Vec<Box<dyn Setter>>) -> Message {
        let mut setters: Vec<Box<dyn Setter>> = vec![
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(method, CLASS_REQUEST)),
        ];
        setters.extend(attrs);
        setters.push(Box::new(FINGERPRINT));
        let resp = self.transact(&build(setters));
        assert_eq!(
            error_code(&resp),
            Some(401),
            "unauthenticated {method}: {resp}"
        );
        let realm = TextAttribute::get_from_as(&resp, ATTR_REALM).expect("401 carries REALM");
        let nonce = TextAttribute::get_from_as(&resp, ATTR_NONCE).expect("401 carries NONCE");
        self.realm = Some(realm.text);
        self.nonce = Some(nonce.text);
        resp
    }

    /// A signed `method` request (after [`Self::challenge`]): USERNAME,
    /// REALM, NONCE, MESSAGE-INTEGRITY and FINGERPRINT follow `attrs`. A 438
    /// (stale nonce) is retried once with the new nonce. Success responses
    /// must carry a valid MESSAGE-INTEGRITY.
    pub fn request(&mut self, method: Method, attrs: Vec<Box<dyn Setter>>) -> Message {
        // Encoded once, so that a retry can rebuild the same request, with
        // the transaction id an IPv6 XOR address is masked with (RFC 8489
        // §14.2): a retry keeps it.
        let tid = TransactionId::new();
        let mut with_tid: Vec<Box<dyn Setter>> = vec![Box::new(tid)];
        with_tid.extend(attrs);
        let attrs: Vec<(AttrType, Vec<u8>)> = build(with_tid)
            .attributes
            .0
            .into_iter()
            .map(|a| (a.typ, a.value))
            .collect();
        let mut retried = false;
        loop {
            let mut setters: Vec<Box<dyn Setter>> = vec![
                Box::new(tid),
                Box::new(MessageType::new(method, CLASS_REQUEST)),
            ];
            for (typ, value) in &attrs {
                setters.push(Box::new(RawAttr(*typ, value.clone())));
            }
            let realm = self.realm.clone().expect("challenge() first");
            let nonce = self.nonce.clone().expect("challenge() first");
            setters.push(Box::new(TextAttribute::new(
                ATTR_USERNAME,
                self.username.clone(),
            )));
            setters.push(Box::new(TextAttribute::new(ATTR_REALM, realm)));
            setters.push(Box::new(TextAttribute::new(ATTR_NONCE, nonce)));
            setters.push(Box::new(self.integrity()));
            setters.push(Box::new(FINGERPRINT));
            let mut resp = self.transact(&build(setters));
            if error_code(&resp) == Some(438) && !retried {
                let nonce = TextAttribute::get_from_as(&resp, ATTR_NONCE).expect("438 has NONCE");
                self.nonce = Some(nonce.text);
                retried = true;
                continue;
            }
            if resp.typ.class == CLASS_SUCCESS_RESPONSE {
                self.integrity()
                    .check(&mut resp)
                    .unwrap_or_else(|e| panic!("bad MESSAGE-INTEGRITY on {resp}: {e}"));
            }
            return resp;
        }
    }

    /// Allocate with long-term credentials: an unsigned request draws the
    /// 401 challenge, then a signed one asks for a UDP relay with `extra`
    /// attributes (called once per request). Returns the final response.
    pub fn allocate_with(&mut self, extra: impl Fn() -> Vec<Box<dyn Setter>>) -> Message {
        let attrs = || {
            let mut a: Vec<Box<dyn Setter>> = vec![Box::new(RequestedTransport {
                protocol: PROTO_UDP,
            })];
            a.extend(extra());
            a
        };
        self.challenge(METHOD_ALLOCATE, attrs());
        self.request(METHOD_ALLOCATE, attrs())
    }

    /// [`Self::allocate_with`] no extra attribute; asserts success and
    /// returns the XOR-RELAYED-ADDRESS.
    pub fn allocate(&mut self) -> SocketAddr {
        let resp = self.allocate_with(Vec::new);
        relayed_address(&resp)
    }

    /// CreatePermission for every address in `peers` (one XOR-PEER-ADDRESS each).
    pub fn create_permission(&mut self, peers: &[SocketAddr]) -> Message {
        let attrs = peers
            .iter()
            .map(|p| {
                Box::new(PeerAddress {
                    ip: p.ip(),
                    port: p.port(),
                }) as Box<dyn Setter>
            })
            .collect();
        self.request(METHOD_CREATE_PERMISSION, attrs)
    }

    pub fn channel_bind(&mut self, number: u16, peer: SocketAddr) -> Message {
        self.request(
            METHOD_CHANNEL_BIND,
            vec![
                Box::new(ChannelNumber(number)),
                Box::new(PeerAddress {
                    ip: peer.ip(),
                    port: peer.port(),
                }),
            ],
        )
    }

    /// Refresh with LIFETIME `lifetime_s` (0 deletes the allocation).
    pub fn refresh(&mut self, lifetime_s: u64) -> Message {
        self.request(
            METHOD_REFRESH,
            vec![Box::new(Lifetime(Duration::from_secs(lifetime_s)))],
        )
    }

    /// A Send indication of `data` to `peer`.
    pub fn send_indication(&self, peer: SocketAddr, data: &[u8]) {
        let m = build(vec![
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(METHOD_SEND, CLASS_INDICATION)),
            Box::new(PeerAddress {
                ip: peer.ip(),
                port: peer.port(),
            }),
            Box::new(Data(data.to_vec())),
            Box::new(FINGERPRINT),
        ]);
        self.send_raw(&m.raw);
    }

    /// A ChannelData message, padded to 4 bytes as RFC 8656 §12.5 allows.
    pub fn send_channel_data(&self, number: u16, data: &[u8]) {
        let mut buf = Vec::with_capacity(4 + data.len() + 3);
        buf.extend_from_slice(&number.to_be_bytes());
        buf.extend_from_slice(&(data.len() as u16).to_be_bytes());
        buf.extend_from_slice(data);
        buf.resize(4 + data.len().next_multiple_of(4), 0);
        self.send_raw(&buf);
    }

    /// The next Data indication or ChannelData from turnd within
    /// `timeout`; fails on anything else.
    pub fn recv_relayed(&mut self, timeout: Duration) -> Option<Relayed> {
        let bytes = self.recv_raw(timeout)?;
        if bytes.first().is_some_and(|b| b >> 6 == 0b01) {
            assert!(bytes.len() >= 4, "short ChannelData {bytes:?}");
            let number = u16::from_be_bytes([bytes[0], bytes[1]]);
            let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
            assert!(
                bytes.len() >= 4 + len,
                "ChannelData length {len} > {} bytes",
                bytes.len() - 4
            );
            return Some(Relayed::Channel {
                number,
                data: bytes[4..4 + len].to_vec(),
            });
        }
        let m = decode(&bytes).unwrap_or_else(|| panic!("not STUN: {bytes:?}"));
        assert_eq!(
            m.typ,
            MessageType::new(METHOD_DATA, CLASS_INDICATION),
            "expected a Data indication, got {m}"
        );
        let mut peer = PeerAddress::default();
        peer.get_from(&m)
            .expect("Data indication has XOR-PEER-ADDRESS");
        let mut data = Data::default();
        data.get_from(&m).expect("Data indication has DATA");
        Some(Relayed::Indication {
            peer: SocketAddr::new(peer.ip, peer.port),
            data: data.0,
        })
    }
}

/// An attribute given as type and value bytes.
pub struct RawAttr(pub AttrType, pub Vec<u8>);

impl Setter for RawAttr {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        m.add(self.0, &self.1);
        Ok(())
    }
}

/// Receives on `socket` until a datagram from `from` (any source when
/// `None`) arrives or `timeout` passes.
pub fn recv_from_within(
    socket: &UdpSocket,
    from: Option<SocketAddr>,
    timeout: Duration,
) -> Option<(Vec<u8>, SocketAddr)> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        socket
            .set_read_timeout(Some(left))
            .expect("set a read timeout");
        match socket.recv_from(&mut buf) {
            Ok((n, src)) if from.is_none_or(|f| f == src) => return Some((buf[..n].to_vec(), src)),
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(e) => panic!("receive: {e}"),
        }
    }
}
