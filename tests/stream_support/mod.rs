//! Support for the TURN-over-TCP/TLS daemon tests (RFC 8656 §3.1): a
//! hand-driven STUN/TURN client on a blocking byte stream (plain TCP or
//! rustls), which cuts what turnd sends into frames and checks their
//! framing, plus config and socket helpers. [`pki`] makes the test
//! certificates, [`relay`] checks relaying, [`coturn`] runs coturn's tools.
//!
//! Every read is bounded by a deadline; nothing here retransmits (a stream
//! loses nothing).

#![allow(dead_code)]
// not every test uses every helper
// Deadlines of blocking reads; the clock rule is for the sans-IO core.
#![allow(clippy::disallowed_methods)]

pub mod coturn;
pub mod pki;
pub mod relay;

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ClientConnection, StreamOwned};
use stun::agent::TransactionId;
use stun::attributes::{AttrType, ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{
    Getter, Message, MessageType, Method, Setter, BINDING_REQUEST, BINDING_SUCCESS,
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

use crate::common::raw::{build, decode, error_code, Relayed};
use crate::common::{TestConfig, PASSWORD, USER};

/// Wait for something that must come.
pub const ANSWER: Duration = Duration::from_secs(5);
/// Wait for turnd to close a connection whose timeout is 1 s.
pub const CLOSE_WAIT: Duration = Duration::from_secs(10);
/// Wait that shows nothing comes (loopback answers take well under 1 ms).
pub const SILENCE: Duration = Duration::from_millis(300);

/// A daemon config with a TCP listener, and a TLS one when `tls` is
/// `Some((cert_path, key_path))`; `connections` is the body of a
/// `[connections]` table. Loopback peers are allowed.
pub fn stream_config(tls: Option<(&str, &str)>, connections: &str) -> String {
    let mut cfg = TestConfig::default().allow_loopback();
    cfg.extra = format!("[connections]\n{connections}\n");
    let mut listen = "[listen]\ntcp = [\"127.0.0.1:0\"]\n".to_string();
    if let Some((cert, key)) = tls {
        let q = |s: &str| serde_json::to_string(s).expect("quote a path");
        listen += "tls = [\"127.0.0.1:0\"]\n";
        cfg.extra += &format!("\n[tls]\ncert = {}\nkey = {}\n", q(cert), q(key));
    }
    let toml = cfg.toml();
    assert!(
        toml.contains("[listen]\n"),
        "TestConfig has a [listen] table"
    );
    toml.replacen("[listen]\n", &listen, 1)
}

/// A UDP peer on 127.0.0.1.
pub fn peer_socket() -> std::net::UdpSocket {
    std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a peer socket")
}

/// A byte stream to turnd: plain TCP or TLS over TCP.
pub trait Conn: Read + Write {
    fn tcp(&self) -> &TcpStream;
}

impl Conn for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

impl Conn for TlsStream {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }
}

/// Connects over TCP (Nagle off, so that small writes leave as written).
pub fn connect_tcp(addr: SocketAddr) -> TcpStream {
    let tcp = TcpStream::connect_timeout(&addr, ANSWER)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    tcp.set_nodelay(true).expect("TCP_NODELAY");
    tcp.set_write_timeout(Some(ANSWER)).expect("write timeout");
    tcp
}

/// Connects over TCP and completes a TLS handshake with `config`.
pub fn connect_tls(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> TlsStream {
    let mut tcp = connect_tcp(addr);
    tcp.set_read_timeout(Some(ANSWER)).expect("read timeout");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a DNS name");
    let mut tls = ClientConnection::new(config, name).expect("a TLS client session");
    while tls.is_handshaking() {
        tls.complete_io(&mut tcp)
            .unwrap_or_else(|e| panic!("TLS handshake with {addr}: {e}"));
    }
    StreamOwned::new(tls, tcp)
}

/// One message turnd sent on the stream.
#[derive(Debug)]
pub enum Frame {
    Stun(Message),
    /// ChannelData; `padding` is how many bytes followed the data to reach
    /// a multiple of 4, as RFC 8656 §12.5 requires on streams.
    Channel {
        number: u16,
        data: Vec<u8>,
        padding: usize,
    },
}

/// An attribute given as type and value.
pub struct RawAttr(pub AttrType, pub Vec<u8>);

impl Setter for RawAttr {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        m.add(self.0, &self.1);
        Ok(())
    }
}

/// A ChannelData message padded to a multiple of 4 bytes.
pub fn channel_data(number: u16, data: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(4 + data.len() + 3);
    buf.extend_from_slice(&number.to_be_bytes());
    buf.extend_from_slice(&u16::try_from(data.len()).expect("data fits").to_be_bytes());
    buf.extend_from_slice(data);
    buf.resize(4 + data.len().next_multiple_of(4), 0);
    buf
}

/// A Send indication of `data` to `peer`.
pub fn send_indication(peer: SocketAddr, data: &[u8]) -> Message {
    build(vec![
        Box::new(TransactionId::new()),
        Box::new(MessageType::new(METHOD_SEND, CLASS_INDICATION)),
        Box::new(PeerAddress {
            ip: peer.ip(),
            port: peer.port(),
        }),
        Box::new(Data(data.to_vec())),
        Box::new(FINGERPRINT),
    ])
}

/// A Binding request with FINGERPRINT.
pub fn binding_request() -> Message {
    build(vec![
        Box::new(TransactionId::new()),
        Box::new(BINDING_REQUEST),
        Box::new(FINGERPRINT),
    ])
}

/// A STUN/TURN client on one stream, with the test user's credentials.
pub struct StreamClient<C: Conn> {
    pub conn: C,
    username: String,
    password: String,
    realm: Option<String>,
    nonce: Option<String>,
    /// Bytes received and not yet cut into frames.
    inbuf: Vec<u8>,
    /// Frames that arrived while a response was awaited.
    backlog: VecDeque<Frame>,
}

impl StreamClient<TcpStream> {
    pub fn tcp(addr: SocketAddr) -> Self {
        StreamClient::new(connect_tcp(addr))
    }
}

impl<C: Conn> StreamClient<C> {
    pub fn new(conn: C) -> Self {
        StreamClient {
            conn,
            username: USER.to_string(),
            password: PASSWORD.to_string(),
            realm: None,
            nonce: None,
            inbuf: Vec::new(),
            backlog: VecDeque::new(),
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.conn.tcp().local_addr().expect("local address")
    }

    /// Writes `bytes` in one `write_all` and flushes.
    pub fn write(&mut self, bytes: &[u8]) {
        self.conn.write_all(bytes).expect("write to turnd");
        self.conn.flush().expect("flush to turnd");
    }

    /// Writes `bytes` in pieces of `chunk` bytes with `pause` between them.
    pub fn write_slowly(&mut self, bytes: &[u8], chunk: usize, pause: Duration) {
        for (i, piece) in bytes.chunks(chunk).enumerate() {
            if i > 0 {
                std::thread::sleep(pause);
            }
            self.write(piece);
        }
    }

    /// Reads more bytes into `inbuf` until `deadline`: `Ok(false)` on
    /// timeout, `Err` when turnd closed the connection (EOF or reset).
    fn fill(&mut self, deadline: Instant) -> Result<bool, std::io::Error> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        self.conn
            .tcp()
            .set_read_timeout(Some(left))
            .expect("set a read timeout");
        let mut buf = [0u8; 16 * 1024];
        match self.conn.read(&mut buf) {
            Ok(0) => Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                self.inbuf.extend_from_slice(&buf[..n]);
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Cuts the next complete frame off `inbuf`; fails on bytes that are
    /// neither STUN nor ChannelData (turnd broke the framing).
    fn take_frame(&mut self) -> Option<Frame> {
        let header = self.inbuf.get(..4)?;
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        match header[0] >> 6 {
            0b00 => {
                let total = 20 + len;
                let bytes = self.inbuf.get(..total)?.to_vec();
                let m = decode(&bytes)
                    .unwrap_or_else(|| panic!("turnd sent a frame that is not STUN: {bytes:02x?}"));
                self.inbuf.drain(..total);
                Some(Frame::Stun(m))
            }
            0b01 => {
                let number = u16::from_be_bytes([header[0], header[1]]);
                let total = 4 + len.next_multiple_of(4);
                let bytes = self.inbuf.get(..total)?;
                let frame = Frame::Channel {
                    number,
                    data: bytes[4..4 + len].to_vec(),
                    padding: total - 4 - len,
                };
                self.inbuf.drain(..total);
                Some(frame)
            }
            _ => panic!(
                "turnd sent bytes that are neither STUN nor ChannelData: {:02x?}",
                &self.inbuf[..self.inbuf.len().min(32)]
            ),
        }
    }

    /// The next frame from turnd within `timeout`; `None` on timeout.
    /// Fails if turnd closes the connection.
    pub fn next_frame(&mut self, timeout: Duration) -> Option<Frame> {
        if let Some(f) = self.backlog.pop_front() {
            return Some(f);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(f) = self.take_frame() {
                return Some(f);
            }
            match self.fill(deadline) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => panic!(
                    "turnd closed the connection ({e}); {} bytes unread",
                    self.inbuf.len()
                ),
            }
        }
    }

    /// Whether turnd closes the connection (EOF or reset) within `timeout`;
    /// whatever it sends before is discarded.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.fill(deadline) {
                Ok(true) => self.inbuf.clear(),
                Ok(false) => return false,
                Err(_) => return true,
            }
        }
    }

    /// Sends `req` and returns the response with its transaction id; other
    /// frames meanwhile are kept for [`Self::next_frame`].
    pub fn transact(&mut self, req: &Message) -> Message {
        self.write(&req.raw);
        self.response_to(req)
    }

    /// Waits for the response to `req` (sent already).
    pub fn response_to(&mut self, req: &Message) -> Message {
        let deadline = Instant::now() + ANSWER;
        loop {
            while let Some(frame) = self.take_frame() {
                match frame {
                    Frame::Stun(m) if m.transaction_id == req.transaction_id => return m,
                    other => self.backlog.push_back(other),
                }
            }
            match self.fill(deadline) {
                Ok(true) => {}
                Ok(false) => panic!("no response to {} within {ANSWER:?}", req.typ),
                Err(e) => panic!("turnd closed the connection awaiting {}: {e}", req.typ),
            }
        }
    }

    /// A Binding request; asserts the success response maps this
    /// connection's source address.
    pub fn binding(&mut self) {
        let req = binding_request();
        let resp = self.transact(&req);
        assert_eq!(resp.typ, BINDING_SUCCESS, "{resp}");
        let mut mapped = XorMappedAddress::default();
        mapped.get_from(&resp).expect("XOR-MAPPED-ADDRESS");
        assert_eq!(
            SocketAddr::new(mapped.ip, mapped.port),
            self.local_addr(),
            "XOR-MAPPED-ADDRESS is the connection's source"
        );
    }

    fn integrity(&self) -> MessageIntegrity {
        MessageIntegrity::new_long_term_integrity(
            self.username.clone(),
            self.realm.clone().expect("realm learnt from a 401"),
            self.password.clone(),
        )
    }

    /// An unauthenticated `method` request, expecting 401 with REALM and
    /// NONCE, which are kept for signing.
    pub fn challenge(&mut self, method: Method, attrs: Vec<Box<dyn Setter>>) {
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
    }

    /// Signs as `username` with `password` from now on.
    pub fn set_credentials(&mut self, username: &str, password: &str) {
        self.username = username.to_string();
        self.password = password.to_string();
    }

    /// Signs with the realm and nonce `other` learnt (an RFC 6062 data
    /// connection reusing its control connection's, as coturn's client does).
    pub fn use_nonce_of<D: Conn>(&mut self, other: &StreamClient<D>) {
        self.realm = other.realm.clone();
        self.nonce = other.nonce.clone();
    }

    /// The connection and the bytes read from it but not yet taken as
    /// frames (after an RFC 6062 ConnectionBind it carries raw bytes).
    pub fn into_raw(self) -> (C, Vec<u8>) {
        (self.conn, self.inbuf)
    }

    /// A signed `method` request (after [`Self::challenge`]), not sent.
    pub fn signed(&self, method: Method, attrs: Vec<Box<dyn Setter>>) -> Message {
        let mut setters: Vec<Box<dyn Setter>> = vec![
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(method, CLASS_REQUEST)),
        ];
        setters.extend(attrs);
        setters.push(Box::new(TextAttribute::new(
            ATTR_USERNAME,
            self.username.clone(),
        )));
        let realm = self.realm.clone().expect("challenge() first");
        let nonce = self.nonce.clone().expect("challenge() first");
        setters.push(Box::new(TextAttribute::new(ATTR_REALM, realm)));
        setters.push(Box::new(TextAttribute::new(ATTR_NONCE, nonce)));
        setters.push(Box::new(self.integrity()));
        setters.push(Box::new(FINGERPRINT));
        build(setters)
    }

    /// Checks the response to a signed request: success with a valid
    /// MESSAGE-INTEGRITY, of `method`.
    pub fn assert_success(&self, method: Method, resp: &mut Message) {
        assert_eq!(
            resp.typ,
            MessageType::new(method, CLASS_SUCCESS_RESPONSE),
            "{method} failed: {resp} (error {:?})",
            error_code(resp)
        );
        self.integrity()
            .check(resp)
            .unwrap_or_else(|e| panic!("bad MESSAGE-INTEGRITY on {resp}: {e}"));
    }

    /// A signed request that must succeed (nonces outlive these tests).
    pub fn request_ok(&mut self, method: Method, attrs: Vec<Box<dyn Setter>>) -> Message {
        let req = self.signed(method, attrs);
        let mut resp = self.transact(&req);
        self.assert_success(method, &mut resp);
        resp
    }

    /// Allocate (401, then signed) for a UDP relay; asserts success, that
    /// XOR-MAPPED-ADDRESS is this connection's source, and returns the
    /// XOR-RELAYED-ADDRESS.
    pub fn allocate(&mut self) -> SocketAddr {
        let udp = || -> Vec<Box<dyn Setter>> {
            vec![Box::new(RequestedTransport {
                protocol: PROTO_UDP,
            })]
        };
        self.challenge(METHOD_ALLOCATE, udp());
        let resp = self.request_ok(METHOD_ALLOCATE, udp());
        let mut mapped = XorMappedAddress::default();
        mapped
            .get_from(&resp)
            .expect("Allocate success has XOR-MAPPED-ADDRESS");
        assert_eq!(SocketAddr::new(mapped.ip, mapped.port), self.local_addr());
        let mut relayed = RelayedAddress::default();
        relayed
            .get_from(&resp)
            .expect("Allocate success has XOR-RELAYED-ADDRESS");
        SocketAddr::new(relayed.ip, relayed.port)
    }

    pub fn permission_attrs(peer: SocketAddr) -> Vec<Box<dyn Setter>> {
        vec![Box::new(PeerAddress {
            ip: peer.ip(),
            port: peer.port(),
        })]
    }

    pub fn create_permission(&mut self, peer: SocketAddr) {
        self.request_ok(METHOD_CREATE_PERMISSION, Self::permission_attrs(peer));
    }

    pub fn channel_bind(&mut self, number: u16, peer: SocketAddr) {
        self.request_ok(
            METHOD_CHANNEL_BIND,
            vec![
                Box::new(ChannelNumber(number)),
                Box::new(PeerAddress {
                    ip: peer.ip(),
                    port: peer.port(),
                }),
            ],
        );
    }

    pub fn refresh(&mut self, lifetime_s: u64) {
        self.request_ok(
            METHOD_REFRESH,
            vec![Box::new(Lifetime(Duration::from_secs(lifetime_s)))],
        );
    }

    /// The next Data indication or ChannelData within `timeout`; fails on
    /// anything else and on ChannelData not padded to 4 bytes.
    pub fn recv_relayed(&mut self, timeout: Duration) -> Option<Relayed> {
        match self.next_frame(timeout)? {
            Frame::Channel {
                number,
                data,
                padding,
            } => {
                assert_eq!((data.len() + padding) % 4, 0);
                Some(Relayed::Channel { number, data })
            }
            Frame::Stun(m) => {
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
    }
}
