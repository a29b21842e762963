//! Two-layer decoding of what arrives from clients, and response encoding
//! (RFC 8489 §5-6, §14; RFC 8656 §12.4 ChannelData).
//!
//! Layer one sorts bytes into STUN, ChannelData, classic RFC 3489 Binding or
//! garbage (dropped and counted). Layer two, [`Request`], exposes the
//! attributes a handler may use: those after MESSAGE-INTEGRITY are ignored
//! (RFC 8489 §14.5), and XOR addresses are decoded with exact length checks.
//! Wire types come from the `stun` crate; nothing derived from the network is
//! indexed unchecked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use stun::attributes::{
    AttrType, ATTR_CHANNEL_NUMBER, ATTR_DATA, ATTR_DONT_FRAGMENT, ATTR_ERROR_CODE, ATTR_EVEN_PORT,
    ATTR_FINGERPRINT, ATTR_LIFETIME, ATTR_MAPPED_ADDRESS, ATTR_MESSAGE_INTEGRITY, ATTR_NONCE,
    ATTR_PRIORITY, ATTR_REALM, ATTR_REQUESTED_ADDRESS_FAMILY, ATTR_REQUESTED_TRANSPORT,
    ATTR_RESERVATION_TOKEN, ATTR_UNKNOWN_ATTRIBUTES, ATTR_USERNAME, ATTR_USE_CANDIDATE,
    ATTR_XORMAPPED_ADDRESS, ATTR_XOR_PEER_ADDRESS, ATTR_XOR_RELAYED_ADDRESS,
};
use stun::error_code::{ErrorCode, ErrorCodeAttribute};
use stun::fingerprint::{fingerprint_value, FINGERPRINT};
use stun::integrity::MessageIntegrity;
use stun::message::{
    Message, MessageClass, MessageType, Setter, CLASS_ERROR_RESPONSE, MAGIC_COOKIE,
    MESSAGE_HEADER_SIZE,
};
use stun::xoraddr::XorMappedAddress;

use super::auth::Key;
use super::auth_sha256::{
    self, ATTR_MESSAGE_INTEGRITY_SHA256, ATTR_PASSWORD_ALGORITHM, ATTR_USERHASH,
};
use super::classic::{classic_change_request, ChangeRequest};

/// Why bytes from the network were dropped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Neither STUN nor ChannelData.
    NotStun,
    /// Looked like STUN or ChannelData but did not decode.
    Malformed,
    /// A FINGERPRINT that is not last or does not match.
    BadFingerprint,
}

impl Malformed {
    /// The bounded `reason` label of `turnd_dropped_packets_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::NotStun => "not_stun",
            Malformed::Malformed => "malformed",
            Malformed::BadFingerprint => "bad_fingerprint",
        }
    }
}

/// What a datagram (or stream frame) from a client turned out to be.
#[derive(Debug)]
pub enum Inbound<'a> {
    Stun(Request),
    ChannelData {
        number: u16,
        data: &'a [u8],
    },
    /// An RFC 3489 Binding request (no magic cookie): its 16-byte id and
    /// what its CHANGE-REQUEST asks for.
    ClassicBinding {
        transaction_id: [u8; 16],
        change: ChangeRequest,
    },
}

/// The comprehension-required attributes turnd understands (RFC 8489 §18.3,
/// RFC 8656 §18, RFC 8445 §16.1). One list for every method and class:
/// one that is known but unexpected in a message is ignored, not refused
/// with 420 (RFC 8489 §6.3).
pub const KNOWN_REQUIRED: &[AttrType] = &[
    ATTR_MAPPED_ADDRESS,
    ATTR_USERNAME,
    ATTR_MESSAGE_INTEGRITY,
    ATTR_ERROR_CODE,
    ATTR_UNKNOWN_ATTRIBUTES,
    ATTR_CHANNEL_NUMBER,
    ATTR_LIFETIME,
    ATTR_XOR_PEER_ADDRESS,
    ATTR_DATA,
    ATTR_REALM,
    ATTR_NONCE,
    ATTR_XOR_RELAYED_ADDRESS,
    ATTR_REQUESTED_ADDRESS_FAMILY,
    ATTR_EVEN_PORT,
    ATTR_REQUESTED_TRANSPORT,
    ATTR_DONT_FRAGMENT,
    ATTR_XORMAPPED_ADDRESS,
    ATTR_RESERVATION_TOKEN,
    ATTR_PRIORITY,
    ATTR_USE_CANDIDATE,
    ATTR_MESSAGE_INTEGRITY_SHA256,
    ATTR_PASSWORD_ALGORITHM,
    ATTR_USERHASH,
    stun::attributes::ATTR_CONNECTION_ID,
];

/// True when turnd understands attribute type `t` or need not (optional).
pub fn understood(t: u16) -> bool {
    t >= 0x8000 || KNOWN_REQUIRED.contains(&AttrType(t))
}

/// Size of a ChannelData header (RFC 8656 §12.4).
pub const CHANNEL_DATA_HEADER: usize = 4;

/// Sorts client bytes. `stream` tells whether they came off TCP/TLS framing
/// (the framer already cut them to one message).
pub fn decode(data: &[u8], stream: bool) -> Result<Inbound<'_>, Malformed> {
    let Some(&first) = data.first() else {
        return Err(Malformed::NotStun);
    };
    match first >> 6 {
        0b01 => decode_channel_data(data, stream),
        0b00 => decode_stun(data),
        _ => Err(Malformed::NotStun),
    }
}

fn decode_channel_data(data: &[u8], stream: bool) -> Result<Inbound<'_>, Malformed> {
    let header = data
        .get(..CHANNEL_DATA_HEADER)
        .ok_or(Malformed::Malformed)?;
    let number = u16::from_be_bytes([header[0], header[1]]);
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let body = &data[CHANNEL_DATA_HEADER..];
    let payload = body.get(..len).ok_or(Malformed::Malformed)?;
    // Padding to 4 bytes is optional on UDP and required on streams; anything
    // longer than padding is not one ChannelData message.
    let trailing = body.len() - len;
    if trailing > 3 && !stream {
        return Err(Malformed::Malformed);
    }
    Ok(Inbound::ChannelData {
        number,
        data: payload,
    })
}

fn decode_stun(data: &[u8]) -> Result<Inbound<'_>, Malformed> {
    let header = data.get(..MESSAGE_HEADER_SIZE).ok_or(Malformed::NotStun)?;
    let typ = u16::from_be_bytes([header[0], header[1]]);
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let cookie = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    let end = MESSAGE_HEADER_SIZE + len;
    if cookie != MAGIC_COOKIE {
        // RFC 3489 Binding request: same header shape, 128-bit transaction id.
        if typ == 0x0001 && len % 4 == 0 && data.len() >= end {
            let mut transaction_id = [0u8; 16];
            transaction_id.copy_from_slice(&header[4..20]);
            let change = classic_change_request(&data[MESSAGE_HEADER_SIZE..end]);
            return Ok(Inbound::ClassicBinding {
                transaction_id,
                change,
            });
        }
        return Err(Malformed::NotStun);
    }
    if len % 4 != 0 || data.len() < end {
        return Err(Malformed::Malformed);
    }
    let mut msg = Message {
        raw: data[..end].to_vec(),
        ..Default::default()
    };
    msg.decode().map_err(|_| Malformed::Malformed)?;
    restore_attr_types(&mut msg);
    Request::new(msg).map(Inbound::Stun)
}

/// Puts back each attribute's type as it was on the wire: the `stun` crate
/// reads 0x8020 (XOR-MAPPED-ADDRESS's pre-RFC 5389 code point, optional) as
/// 0x0020 (comprehension-required), so a client that sent the former would
/// get a 420 naming an attribute it never sent. The crate decodes one
/// attribute per TLV, in order, so the raw walk lines up with the list.
fn restore_attr_types(msg: &mut Message) {
    let mut offset = MESSAGE_HEADER_SIZE;
    for attr in msg.attributes.0.iter_mut() {
        let Some(h) = msg.raw.get(offset..offset + 4) else {
            return;
        };
        attr.typ = AttrType(u16::from_be_bytes([h[0], h[1]]));
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        offset += 4 + len.div_ceil(4) * 4;
    }
}

/// A decoded STUN message with the attributes that count.
#[derive(Debug)]
pub struct Request {
    pub msg: Message,
    /// How many leading attributes are visible: up to and including the
    /// first MESSAGE-INTEGRITY (RFC 8489 §14.5).
    visible: usize,
    /// Whether the message ended in a valid FINGERPRINT.
    pub has_fingerprint: bool,
}

impl Request {
    fn new(msg: Message) -> Result<Self, Malformed> {
        let attrs = &msg.attributes.0;
        let has_fingerprint = match attrs.iter().position(|a| a.typ == ATTR_FINGERPRINT) {
            None => false,
            Some(i) if i + 1 == attrs.len() && attrs[i].value.len() == 4 => {
                verify_fingerprint(&msg)
                    .then_some(true)
                    .ok_or(Malformed::BadFingerprint)?
            }
            Some(_) => return Err(Malformed::BadFingerprint),
        };
        // MESSAGE-INTEGRITY-SHA256 may follow MESSAGE-INTEGRITY (§14.5-14.6).
        let visible = attrs
            .iter()
            .position(|a| a.typ == ATTR_MESSAGE_INTEGRITY || a.typ == ATTR_MESSAGE_INTEGRITY_SHA256)
            .map_or(attrs.len(), |i| {
                let next_is_sha256 = attrs
                    .get(i + 1)
                    .is_some_and(|a| a.typ == ATTR_MESSAGE_INTEGRITY_SHA256);
                if attrs[i].typ == ATTR_MESSAGE_INTEGRITY && next_is_sha256 {
                    i + 2
                } else {
                    i + 1
                }
            });
        Ok(Request {
            msg,
            visible,
            has_fingerprint,
        })
    }

    pub fn class(&self) -> MessageClass {
        self.msg.typ.class
    }

    pub fn transaction_id(&self) -> [u8; 12] {
        self.msg.transaction_id.0
    }

    /// The visible attributes, in order.
    pub fn attributes(&self) -> impl Iterator<Item = (AttrType, &[u8])> {
        self.msg.attributes.0[..self.visible]
            .iter()
            .map(|a| (a.typ, a.value.as_slice()))
    }

    /// The first visible attribute of type `t`.
    pub fn get(&self, t: AttrType) -> Option<&[u8]> {
        self.attributes().find(|(at, _)| *at == t).map(|(_, v)| v)
    }

    /// Every visible attribute of type `t` (CreatePermission may carry many).
    pub fn get_all(&self, t: AttrType) -> impl Iterator<Item = &[u8]> {
        self.attributes()
            .filter(move |(at, _)| *at == t)
            .map(|(_, v)| v)
    }

    /// A visible text attribute (USERNAME, REALM, NONCE) as UTF-8.
    pub fn text(&self, t: AttrType) -> Option<&str> {
        self.get(t).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Comprehension-required attributes (type < 0x8000) not in `known`.
    pub fn unknown_required(&self, known: &[AttrType]) -> Vec<AttrType> {
        let mut unknown: Vec<AttrType> = self
            .attributes()
            .map(|(t, _)| t)
            .filter(|t| t.required() && !known.contains(t))
            .collect();
        unknown.dedup();
        unknown
    }

    /// Decodes an XOR-encoded address value (RFC 8489 §14.2) of this message.
    pub fn xor_address(&self, value: &[u8]) -> Option<SocketAddr> {
        decode_xor_address(value, &self.transaction_id())
    }

    /// Checks MESSAGE-INTEGRITY (HMAC-SHA1, RFC 8489 §14.5) with `key`.
    pub fn integrity_ok(&mut self, key: &[u8]) -> bool {
        match self.get(ATTR_MESSAGE_INTEGRITY) {
            Some(v) if v.len() == 20 => {}
            _ => return false,
        }
        MessageIntegrity(key.to_vec()).check(&mut self.msg).is_ok()
    }

    /// Checks MESSAGE-INTEGRITY-SHA256 (HMAC-SHA256, RFC 8489 §14.6).
    pub fn integrity_sha256_ok(&self, key: &[u8]) -> bool {
        self.get(ATTR_MESSAGE_INTEGRITY_SHA256).is_some()
            && auth_sha256::integrity_ok(&self.msg.raw, key)
    }
}

fn verify_fingerprint(msg: &Message) -> bool {
    let Some(start) = msg.raw.len().checked_sub(8) else {
        return false;
    };
    let Some(value) = msg.raw.get(start + 4..) else {
        return false;
    };
    let got = u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
    got == fingerprint_value(&msg.raw[..start])
}

/// Decodes XOR-MAPPED/PEER/RELAYED-ADDRESS values: family 1 with 4 address
/// bytes or family 2 with 16, nothing else. The first byte is reserved and
/// ignored, whatever a client put there (RFC 8489 §14.1-14.2).
pub fn decode_xor_address(value: &[u8], transaction_id: &[u8; 12]) -> Option<SocketAddr> {
    let (head, addr) = value.split_at_checked(4)?;
    let family = head[1];
    let port = u16::from_be_bytes([head[2], head[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    let mut mask = [0u8; 16];
    mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    mask[4..].copy_from_slice(transaction_id);
    let ip = match (family, addr.len()) {
        (1, 4) => {
            let b: [u8; 4] = std::array::from_fn(|i| addr[i] ^ mask[i]);
            IpAddr::V4(Ipv4Addr::from(b))
        }
        (2, 16) => {
            let b: [u8; 16] = std::array::from_fn(|i| addr[i] ^ mask[i]);
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// A response being built for `req`.
pub fn response(req: &Request, class: MessageClass) -> Message {
    let mut m = Message::new();
    m.set_type(MessageType::new(req.msg.typ.method, class));
    m.transaction_id = req.msg.transaction_id;
    m.write_header();
    m
}

/// Appends an XOR-encoded address attribute of type `t`.
pub fn add_xor_address(m: &mut Message, t: AttrType, addr: SocketAddr) {
    let a = XorMappedAddress {
        ip: addr.ip(),
        port: addr.port(),
    };
    // Only fails for impossible IP lengths; IpAddr has none.
    let _ = a.add_to_as(m, t);
}

/// Appends an address attribute in the clear (MAPPED-ADDRESS format), as
/// ALTERNATE-SERVER is (RFC 8489 §14.15).
pub fn add_plain_address(m: &mut Message, t: AttrType, addr: SocketAddr) {
    let a = stun::addr::MappedAddress {
        ip: addr.ip(),
        port: addr.port(),
    };
    let _ = a.add_to_as(m, t);
}

/// The reason phrase sent with an error code: short, as amplification by
/// unauthenticated error responses is a concern (RFC 8656 §21).
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        300 => "Try Alternate",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        420 => "Unknown Attribute",
        437 => "Allocation Mismatch",
        438 => "Stale Nonce",
        440 => "Address Family not Supported",
        441 => "Wrong Credentials",
        442 => "Unsupported Transport Protocol",
        443 => "Peer Address Family Mismatch",
        446 => "Connection Already Exists",
        447 => "Connection Timeout or Failure",
        486 => "Allocation Quota Reached",
        508 => "Insufficient Capacity",
        _ => "Server Error",
    }
}

/// An error response for `req` with ERROR-CODE `code`.
pub fn error_response(req: &Request, code: u16) -> Message {
    let mut m = response(req, CLASS_ERROR_RESPONSE);
    let attr = ErrorCodeAttribute {
        code: ErrorCode(code),
        reason: reason_phrase(code).as_bytes().to_vec(),
    };
    let _ = attr.add_to(&mut m);
    debug_assert!(m.contains(ATTR_ERROR_CODE));
    m
}

/// Appends UNKNOWN-ATTRIBUTES (RFC 8489 §14.9).
pub fn add_unknown_attributes(m: &mut Message, unknown: &[AttrType]) {
    let value: Vec<u8> = unknown.iter().flat_map(|t| t.0.to_be_bytes()).collect();
    m.add(ATTR_UNKNOWN_ATTRIBUTES, &value);
}

/// Seals a response: MESSAGE-INTEGRITY (or MESSAGE-INTEGRITY-SHA256, as
/// the request used) with `key` when the request was authenticated,
/// FINGERPRINT when the request carried one; returns bytes.
pub fn finish(mut m: Message, key: Option<&Key>, fingerprint: bool) -> Vec<u8> {
    match key {
        Some(k) if k.sha256_integrity => auth_sha256::add_integrity(&mut m, k.secret.bytes()),
        Some(k) => {
            let _ = MessageIntegrity(k.secret.bytes().to_vec()).add_to(&mut m);
        }
        None => {}
    }
    if fingerprint {
        let _ = FINGERPRINT.add_to(&mut m);
    }
    m.raw
}
