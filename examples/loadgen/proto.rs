//! The TURN client side of the load generator: long-term authenticated
//! requests (RFC 8656 §7-§11, RFC 8489 §9.2) over a connected tokio UDP
//! socket, built from the `stun` and `turn::proto` wire types, and the
//! templates of the hot-path datagrams (ChannelData, Send indication) whose
//! payload the senders patch in place.
//!
//! Requests are sent once (loopback loses nothing unless the server drops it,
//! and that is what the benchmark counts) and answered within a timeout.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use stun::agent::TransactionId;
use stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use stun::error_code::ErrorCodeAttribute;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{
    Getter, Message, MessageType, Method, Setter, CLASS_ERROR_RESPONSE, CLASS_INDICATION,
    CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE, METHOD_CHANNEL_BIND,
    METHOD_CREATE_PERMISSION, METHOD_REFRESH, METHOD_SEND,
};
use stun::textattrs::TextAttribute;
use tokio::net::UdpSocket;
use turn::proto::channum::ChannelNumber;
use turn::proto::data::Data;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqtrans::RequestedTransport;
use turn::proto::PROTO_UDP;

/// Socket buffer asked for on every loadgen socket (the kernel caps it at
/// net.core.rmem_max / wmem_max), so the generator itself drops nothing.
pub const SOCKET_BUFFER: usize = 4 << 20;

/// STUN attribute DATA (RFC 8656 §18.4).
const ATTR_DATA: u16 = 0x0013;
/// Message type of a Data indication (RFC 8656 §11).
const DATA_INDICATION: u16 = 0x0017;

/// Why a transaction failed; `kind()` is the key it is counted under.
#[derive(Debug)]
pub enum TxError {
    Timeout(Method),
    Status(Method, u16),
    /// The unauthenticated Allocate was not answered 401 but with this
    /// error code (0: a success or an error without ERROR-CODE).
    Challenge(u16),
    /// A response that breaks the protocol, by a short key.
    Bad(&'static str),
    Io(std::io::Error),
}

impl TxError {
    pub fn kind(&self) -> String {
        match self {
            TxError::Timeout(m) => format!("{m}_timeout").to_lowercase(),
            TxError::Status(m, code) => format!("{m}_{code}").to_lowercase(),
            TxError::Challenge(code) => format!("challenge_{code}"),
            TxError::Bad(what) => (*what).into(),
            TxError::Io(_) => "io".into(),
        }
    }
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxError::Timeout(m) => write!(f, "{m}: no response"),
            TxError::Status(m, code) => write!(f, "{m}: error {code}"),
            TxError::Challenge(code) => {
                write!(f, "unauthenticated Allocate answered {code}, not 401")
            }
            TxError::Bad(what) => write!(f, "bad response: {what}"),
            TxError::Io(e) => write!(f, "socket: {e}"),
        }
    }
}

impl std::error::Error for TxError {}

impl From<std::io::Error> for TxError {
    fn from(e: std::io::Error) -> Self {
        TxError::Io(e)
    }
}

/// The next client source address: 127.10.0.0/16 round robin (all of
/// 127.0.0.0/8 is loopback on Linux). Every client socket then gets a
/// 5-tuple not used recently, as real clients would; with 127.0.0.1 alone
/// the kernel soon hands out a port whose previous allocation the server
/// may still remember (coturn answers those 437).
fn next_source() -> SocketAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_add(std::process::id())
        % (256 * 254);
    SocketAddr::from(([127, 10, (n / 254) as u8, (n % 254 + 1) as u8], 0))
}

/// A UDP socket on loopback connected to `to`, with large buffers, as a
/// std socket (non-blocking) ready for `tokio::net::UdpSocket::from_std`.
pub fn client_socket(to: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let s = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // Best effort: the kernel caps these, and a smaller buffer still works.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.bind(&next_source().into())?;
    s.connect(&to.into())?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Long-term credentials.
#[derive(Clone, Debug)]
pub struct Creds {
    pub user: String,
    pub password: String,
}

/// What a successful Allocate returned.
#[derive(Debug, Clone, Copy)]
pub struct Allocated {
    pub lifetime: Duration,
}

fn build(setters: &[Box<dyn Setter>]) -> Result<Message, TxError> {
    let mut m = Message::new();
    m.build(setters)
        .map_err(|_| TxError::Bad("cannot_encode"))?;
    Ok(m)
}

/// Sends `req` and waits for the response with its transaction id; other
/// datagrams meanwhile are ignored.
async fn transact(sock: &UdpSocket, req: &Message, timeout: Duration) -> Result<Message, TxError> {
    sock.send(&req.raw).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = vec![0u8; 2048];
    loop {
        let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            Err(_) => return Err(TxError::Timeout(req.typ.method)),
            Ok(r) => r?,
        };
        let mut m = Message::new();
        m.raw = buf[..n].to_vec();
        if m.decode().is_ok() && m.transaction_id == req.transaction_id {
            return Ok(m);
        }
    }
}

fn error_code(m: &Message) -> u16 {
    let mut code = ErrorCodeAttribute::default();
    match code.get_from(m) {
        Ok(()) => code.code.0,
        Err(_) => 0,
    }
}

/// One client's authenticated TURN session.
pub struct Session {
    pub sock: UdpSocket,
    creds: Creds,
    realm: String,
    nonce: String,
    integrity: MessageIntegrity,
    timeout: Duration,
}

impl Session {
    /// Allocate (RFC 8656 §7.1): an unsigned request draws the 401 with
    /// REALM and NONCE, then the signed request asks for a UDP relay.
    pub async fn allocate(
        sock: UdpSocket,
        creds: &Creds,
        timeout: Duration,
    ) -> Result<(Session, Allocated), TxError> {
        let first = build(&[
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST)),
            Box::new(RequestedTransport {
                protocol: PROTO_UDP,
            }),
            Box::new(FINGERPRINT),
        ])?;
        let challenge = transact(&sock, &first, timeout).await?;
        if challenge.typ.class != CLASS_ERROR_RESPONSE {
            return Err(TxError::Challenge(0));
        }
        if error_code(&challenge) != 401 {
            return Err(TxError::Challenge(error_code(&challenge)));
        }
        let text = |attr| {
            TextAttribute::get_from_as(&challenge, attr)
                .map(|t| t.text)
                .map_err(|_| TxError::Bad("401_without_realm_or_nonce"))
        };
        let realm = text(ATTR_REALM)?;
        let nonce = text(ATTR_NONCE)?;
        let integrity = MessageIntegrity::new_long_term_integrity(
            creds.user.clone(),
            realm.clone(),
            creds.password.clone(),
        );
        let mut session = Session {
            sock,
            creds: creds.clone(),
            realm,
            nonce,
            integrity,
            timeout,
        };
        let resp = session
            .request(METHOD_ALLOCATE, || {
                vec![Box::new(RequestedTransport {
                    protocol: PROTO_UDP,
                })]
            })
            .await?;
        let mut relayed = RelayedAddress::default();
        relayed
            .get_from(&resp)
            .map_err(|_| TxError::Bad("allocate_without_relayed_address"))?;
        let mut lifetime = Lifetime::default();
        let lifetime = match lifetime.get_from(&resp) {
            Ok(()) => lifetime.0,
            Err(_) => Duration::from_secs(600),
        };
        if relayed.port == 0 {
            return Err(TxError::Bad("relayed_port_0"));
        }
        let allocated = Allocated { lifetime };
        Ok((session, allocated))
    }

    /// A signed request; a 438 (stale nonce) is retried once with the new
    /// nonce (RFC 8489 §9.2.5). Returns the success response.
    async fn request(
        &mut self,
        method: Method,
        attrs: impl Fn() -> Vec<Box<dyn Setter>>,
    ) -> Result<Message, TxError> {
        for _attempt in 0..2 {
            // Setters are not Send: build before the first await.
            let req = {
                let mut setters: Vec<Box<dyn Setter>> = vec![
                    Box::new(TransactionId::new()),
                    Box::new(MessageType::new(method, CLASS_REQUEST)),
                ];
                setters.extend(attrs());
                setters.push(Box::new(TextAttribute::new(
                    ATTR_USERNAME,
                    self.creds.user.clone(),
                )));
                setters.push(Box::new(TextAttribute::new(ATTR_REALM, self.realm.clone())));
                setters.push(Box::new(TextAttribute::new(ATTR_NONCE, self.nonce.clone())));
                setters.push(Box::new(self.integrity.clone()));
                setters.push(Box::new(FINGERPRINT));
                build(&setters)?
            };
            let resp = transact(&self.sock, &req, self.timeout).await?;
            if resp.typ.class == CLASS_SUCCESS_RESPONSE {
                return Ok(resp);
            }
            let code = error_code(&resp);
            if code == 438 {
                if let Ok(n) = TextAttribute::get_from_as(&resp, ATTR_NONCE) {
                    self.nonce = n.text;
                    continue;
                }
            }
            return Err(TxError::Status(method, code));
        }
        Err(TxError::Status(method, 438))
    }

    /// CreatePermission for the IP of `peer` (RFC 8656 §9).
    pub async fn create_permission(&mut self, peer: SocketAddr) -> Result<(), TxError> {
        self.request(METHOD_CREATE_PERMISSION, || {
            vec![Box::new(PeerAddress {
                ip: peer.ip(),
                port: peer.port(),
            })]
        })
        .await
        .map(drop)
    }

    /// ChannelBind `number` to `peer` (RFC 8656 §12.1).
    pub async fn channel_bind(&mut self, number: u16, peer: SocketAddr) -> Result<(), TxError> {
        self.request(METHOD_CHANNEL_BIND, || {
            vec![
                Box::new(ChannelNumber(number)),
                Box::new(PeerAddress {
                    ip: peer.ip(),
                    port: peer.port(),
                }),
            ]
        })
        .await
        .map(drop)
    }

    /// Refresh with LIFETIME `lifetime` (zero deletes the allocation).
    pub async fn refresh(&mut self, lifetime: Duration) -> Result<(), TxError> {
        self.request(METHOD_REFRESH, || vec![Box::new(Lifetime(lifetime))])
            .await
            .map(drop)
    }
}

/// How payloads travel between the loadgen and the server.
#[derive(Debug, Clone, Copy)]
pub enum Framing {
    /// ChannelData with this channel number (RFC 8656 §12.4).
    Channel(u16),
    /// Send indications out, Data indications back (RFC 8656 §10-11).
    Indication,
    /// Bare payloads (the forwarder baseline).
    Raw,
}

/// A datagram to send with the payload at `payload_at..`; the sender
/// overwrites the first bytes of the payload (sequence, timestamp).
pub fn template(
    framing: Framing,
    peer: SocketAddr,
    size: usize,
) -> Result<(Vec<u8>, usize), TxError> {
    match framing {
        Framing::Channel(number) => {
            let mut buf = Vec::with_capacity(4 + size);
            buf.extend_from_slice(&number.to_be_bytes());
            buf.extend_from_slice(&(size as u16).to_be_bytes());
            buf.resize(4 + size, 0);
            Ok((buf, 4))
        }
        Framing::Indication => {
            // DATA last and no FINGERPRINT, so the payload ends the message
            // (followed only by its padding) and can be patched in place.
            let m = build(&[
                Box::new(TransactionId::new()),
                Box::new(MessageType::new(METHOD_SEND, CLASS_INDICATION)),
                Box::new(PeerAddress {
                    ip: peer.ip(),
                    port: peer.port(),
                }),
                Box::new(Data(vec![0; size])),
            ])?;
            let at = m.raw.len() - size.next_multiple_of(4);
            Ok((m.raw, at))
        }
        Framing::Raw => Ok((vec![0; size], 0)),
    }
}

/// The payload of a datagram the server relayed back, if it is one.
pub fn payload(framing: Framing, buf: &[u8]) -> Option<&[u8]> {
    match framing {
        Framing::Channel(number) => {
            let header = buf.get(..4)?;
            if u16::from_be_bytes([header[0], header[1]]) != number {
                return None;
            }
            let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
            buf.get(4..4 + len)
        }
        Framing::Indication => {
            let header = buf.get(..20)?;
            if u16::from_be_bytes([header[0], header[1]]) != DATA_INDICATION {
                return None;
            }
            let body_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
            let body = buf.get(20..20 + body_len)?;
            let mut at = 0;
            // Bounded: each step advances by at least 4 bytes.
            while let Some(attr) = body.get(at..at + 4) {
                let typ = u16::from_be_bytes([attr[0], attr[1]]);
                let len = usize::from(u16::from_be_bytes([attr[2], attr[3]]));
                let value = body.get(at + 4..at + 4 + len)?;
                if typ == ATTR_DATA {
                    return Some(value);
                }
                at += 4 + len.next_multiple_of(4);
            }
            None
        }
        Framing::Raw => Some(buf),
    }
}
