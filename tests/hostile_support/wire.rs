//! STUN messages written byte by byte (RFC 8489 §5, §14), so a test can put
//! any attribute anywhere: after MESSAGE-INTEGRITY, twice, with a length
//! that lies, or under a FINGERPRINT that does not match. The `stun` crate
//! builds only well-formed messages; these helpers build the rest.

use std::net::{IpAddr, SocketAddr};

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use stun::fingerprint::fingerprint_value;

/// The magic cookie (RFC 8489 §5).
pub const COOKIE: u32 = 0x2112_A442;

/// Message types: method and class (RFC 8489 §5, RFC 8656 §17).
pub const BINDING_REQUEST: u16 = 0x0001;
pub const ALLOCATE_REQUEST: u16 = 0x0003;
pub const REFRESH_REQUEST: u16 = 0x0004;
pub const CREATE_PERMISSION_REQUEST: u16 = 0x0008;
pub const CHANNEL_BIND_REQUEST: u16 = 0x0009;
pub const SEND_INDICATION: u16 = 0x0016;

/// Attribute types (RFC 8489 §18.3, RFC 8656 §18).
pub const USERNAME: u16 = 0x0006;
pub const MESSAGE_INTEGRITY: u16 = 0x0008;
pub const ERROR_CODE: u16 = 0x0009;
pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
pub const CHANNEL_NUMBER: u16 = 0x000C;
pub const LIFETIME: u16 = 0x000D;
pub const XOR_PEER_ADDRESS: u16 = 0x0012;
pub const DATA: u16 = 0x0013;
pub const REALM: u16 = 0x0014;
pub const NONCE: u16 = 0x0015;
pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
pub const EVEN_PORT: u16 = 0x0018;
pub const REQUESTED_TRANSPORT: u16 = 0x0019;
pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
pub const PASSWORD_ALGORITHM: u16 = 0x001D;
pub const USERHASH: u16 = 0x001E;
pub const PASSWORD_ALGORITHMS: u16 = 0x8002;
pub const SOFTWARE: u16 = 0x8022;
pub const FINGERPRINT: u16 = 0x8028;

/// REQUESTED-TRANSPORT values (IANA protocol numbers).
pub const UDP: [u8; 4] = [17, 0, 0, 0];
pub const TCP: [u8; 4] = [6, 0, 0, 0];

/// A fresh random transaction id.
pub fn tid() -> [u8; 12] {
    rand::random()
}

/// A STUN message being written. The header's length field always covers
/// the attributes written so far, unless a test overwrites it.
#[derive(Debug, Clone)]
pub struct Msg {
    pub bytes: Vec<u8>,
}

impl Msg {
    /// A header of type `typ` with transaction id `tid` and no attributes.
    pub fn new(typ: u16, tid: [u8; 12]) -> Self {
        let mut bytes = Vec::with_capacity(128);
        bytes.extend_from_slice(&typ.to_be_bytes());
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend_from_slice(&COOKIE.to_be_bytes());
        bytes.extend_from_slice(&tid);
        Msg { bytes }
    }

    pub fn tid(&self) -> [u8; 12] {
        self.bytes[8..20].try_into().expect("a STUN header")
    }

    fn set_len(&mut self, body: usize) {
        let len = u16::try_from(body).expect("a STUN body fits in 16 bits");
        self.bytes[2..4].copy_from_slice(&len.to_be_bytes());
    }

    /// Appends attribute `typ` with `value`, padded to 4 bytes.
    pub fn attr(mut self, typ: u16, value: &[u8]) -> Self {
        self.bytes.extend_from_slice(&typ.to_be_bytes());
        let len = u16::try_from(value.len()).expect("an attribute fits");
        self.bytes.extend_from_slice(&len.to_be_bytes());
        self.bytes.extend_from_slice(value);
        self.bytes.resize(self.bytes.len().next_multiple_of(4), 0);
        let body = self.bytes.len() - 20;
        self.set_len(body);
        self
    }

    /// Appends each `(type, value)` in order.
    pub fn attrs(self, attrs: &[(u16, Vec<u8>)]) -> Self {
        attrs.iter().fold(self, |m, (t, v)| m.attr(*t, v))
    }

    /// Appends MESSAGE-INTEGRITY: HMAC-SHA1 with `key` over the message
    /// with its length already counting the attribute (RFC 8489 §14.5).
    pub fn integrity(mut self, key: &[u8]) -> Self {
        let body = self.bytes.len() - 20 + 24;
        self.set_len(body);
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).expect("HMAC takes any key");
        mac.update(&self.bytes);
        let tag = mac.finalize().into_bytes();
        self.attr(MESSAGE_INTEGRITY, &tag)
    }

    /// Appends MESSAGE-INTEGRITY-SHA256: HMAC-SHA256 with `key` over the
    /// message with its length already counting the attribute (§14.6).
    pub fn integrity_sha256(mut self, key: &[u8]) -> Self {
        let body = self.bytes.len() - 20 + 36;
        self.set_len(body);
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key");
        mac.update(&self.bytes);
        let tag = mac.finalize().into_bytes();
        self.attr(MESSAGE_INTEGRITY_SHA256, &tag)
    }

    /// Appends a FINGERPRINT (RFC 8489 §14.7), CRC-32 XOR 0x5354554e.
    pub fn fingerprint(self) -> Self {
        self.fingerprint_xor(0)
    }

    /// Appends a FINGERPRINT whose value is off by `flip` (0: the right one).
    pub fn fingerprint_xor(mut self, flip: u32) -> Self {
        let body = self.bytes.len() - 20 + 8;
        self.set_len(body);
        let crc = fingerprint_value(&self.bytes) ^ flip;
        self.attr(FINGERPRINT, &crc.to_be_bytes())
    }

    /// Overwrites the header's length field with `len`.
    pub fn lie_about_length(mut self, len: u16) -> Self {
        self.bytes[2..4].copy_from_slice(&len.to_be_bytes());
        self
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// An XOR-PEER-ADDRESS (or any XOR address) value for `addr` in a message
/// with transaction id `tid` (RFC 8489 §14.2).
pub fn xor_addr(addr: SocketAddr, tid: &[u8; 12]) -> Vec<u8> {
    let mut mask = [0u8; 16];
    mask[..4].copy_from_slice(&COOKIE.to_be_bytes());
    mask[4..].copy_from_slice(tid);
    let port = addr.port() ^ (COOKIE >> 16) as u16;
    let mut v = Vec::with_capacity(20);
    match addr.ip() {
        IpAddr::V4(ip) => {
            v.extend_from_slice(&[0, 1]);
            v.extend_from_slice(&port.to_be_bytes());
            v.extend(ip.octets().iter().zip(mask).map(|(a, m)| a ^ m));
        }
        IpAddr::V6(ip) => {
            v.extend_from_slice(&[0, 2]);
            v.extend_from_slice(&port.to_be_bytes());
            v.extend(ip.octets().iter().zip(mask).map(|(a, m)| a ^ m));
        }
    }
    v
}

/// The long-term key MD5(username ":" realm ":" password) (RFC 8489 §9.2.2).
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    Md5::digest(format!("{username}:{realm}:{password}").as_bytes()).into()
}

/// A ChannelData message (RFC 8656 §12.4) with `data`, padded to 4 bytes.
pub fn channel_data(number: u16, data: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(4 + data.len() + 3);
    buf.extend_from_slice(&number.to_be_bytes());
    buf.extend_from_slice(&u16::try_from(data.len()).expect("data fits").to_be_bytes());
    buf.extend_from_slice(data);
    buf.resize(4 + data.len().next_multiple_of(4), 0);
    buf
}

/// The 32-bit big-endian value of an attribute (LIFETIME and the like).
pub fn u32_value(v: u32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}
