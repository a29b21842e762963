//! Send and Data indications (RFC 8656 §11) on the hot path, read and
//! written in place: a Send indication is parsed without copying, a Data
//! indication is written straight into the outbox. Same rules as the
//! general decoder: attributes after MESSAGE-INTEGRITY are ignored, a
//! FINGERPRINT must be last and right, an unknown comprehension-required
//! attribute makes the indication void (RFC 8489 §6.3.2).

use std::net::{IpAddr, SocketAddr};

use stun::fingerprint::fingerprint_value;
use stun::message::{MAGIC_COOKIE, MESSAGE_HEADER_SIZE};

use super::message::Malformed;

/// Message type of a Send indication (method 0x006, class indication).
pub const SEND_INDICATION: u16 = 0x0016;
/// Message type of a Data indication (method 0x007, class indication).
pub const DATA_INDICATION: u16 = 0x0017;

const ATTR_XOR_PEER_ADDRESS: u16 = 0x0012;
const ATTR_DATA: u16 = 0x0013;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const ATTR_FINGERPRINT: u16 = 0x8028;

/// A parsed Send indication, borrowing the datagram.
#[derive(Debug, PartialEq, Eq)]
pub struct Send<'a> {
    pub peer: SocketAddr,
    pub data: &'a [u8],
}

/// True when `bytes` start like a Send indication.
pub fn is_send(bytes: &[u8]) -> bool {
    bytes.len() >= MESSAGE_HEADER_SIZE
        && bytes[..2] == SEND_INDICATION.to_be_bytes()
        && bytes[4..8] == MAGIC_COOKIE.to_be_bytes()
}

/// Parses a Send indication (the caller checked [`is_send`]).
pub fn parse_send(bytes: &[u8]) -> Result<Send<'_>, Malformed> {
    let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    let end = MESSAGE_HEADER_SIZE + len;
    if len % 4 != 0 || bytes.len() < end {
        return Err(Malformed::Malformed);
    }
    let msg = &bytes[..end];
    let tid: &[u8; 12] = msg[8..20].try_into().map_err(|_| Malformed::Malformed)?;
    let (mut peer, mut data) = (None, None);
    let mut visible = true;
    let mut at = MESSAGE_HEADER_SIZE;
    while at < end {
        let header = msg.get(at..at + 4).ok_or(Malformed::Malformed)?;
        let typ = u16::from_be_bytes([header[0], header[1]]);
        let vlen = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let value = msg.get(at + 4..at + 4 + vlen).ok_or(Malformed::Malformed)?;
        let next = at + 4 + vlen.next_multiple_of(4);
        if typ == ATTR_FINGERPRINT {
            let ok =
                next == end && vlen == 4 && value == fingerprint_value(&msg[..at]).to_be_bytes();
            return finish(
                ok.then_some(()).ok_or(Malformed::BadFingerprint),
                peer,
                data,
            );
        }
        if visible {
            match typ {
                ATTR_XOR_PEER_ADDRESS if peer.is_none() => {
                    peer = Some(
                        super::message::decode_xor_address(value, tid)
                            .ok_or(Malformed::Malformed)?,
                    )
                }
                ATTR_DATA if data.is_none() => data = Some(value),
                ATTR_MESSAGE_INTEGRITY => visible = false,
                // Known but unexpected ones are ignored (RFC 8489 §6.3).
                t if !super::message::understood(t) => return Err(Malformed::Malformed),
                _ => {}
            }
        }
        at = next;
    }
    finish(Ok(()), peer, data)
}

fn finish<'a>(
    check: Result<(), Malformed>,
    peer: Option<SocketAddr>,
    data: Option<&'a [u8]>,
) -> Result<Send<'a>, Malformed> {
    check?;
    match (peer, data) {
        (Some(peer), Some(data)) => Ok(Send { peer, data }),
        _ => Err(Malformed::Malformed),
    }
}

/// ICMP attribute (RFC 8656 §18.13).
const ATTR_ICMP: u16 = 0x8004;

/// An ICMP error a datagram to a peer drew (RFC 8656 §11.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmp {
    /// ICMPv6 rather than ICMPv4.
    pub v6: bool,
    pub typ: u8,
    pub code: u8,
    /// The MTU for "packet too big" / "fragmentation needed", else unused.
    pub info: u32,
}

impl Icmp {
    /// Whether RFC 8656 §11.5 relays it: ICMPv4 types 3 (destination
    /// unreachable) and 11 (time exceeded), ICMPv6 types 1-3 (destination
    /// unreachable, packet too big, time exceeded).
    pub fn relayed(&self) -> bool {
        if self.v6 {
            (1..=3).contains(&self.typ)
        } else {
            matches!(self.typ, 3 | 11)
        }
    }

    /// The Error Data field: the next-hop MTU for ICMPv6 Packet Too Big and
    /// ICMPv4 Fragmentation Needed, zero otherwise (RFC 8656 §18.13).
    fn error_data(&self) -> u32 {
        let too_big = if self.v6 {
            self.typ == 2
        } else {
            (self.typ, self.code) == (3, 4)
        };
        if too_big {
            self.info
        } else {
            0
        }
    }
}

/// Appends a Data indication carrying `data` from `peer` to `buf`.
pub fn write_data(buf: &mut Vec<u8>, transaction_id: &[u8; 12], peer: SocketAddr, data: &[u8]) {
    write_head(
        buf,
        transaction_id,
        peer,
        4 + data.len().next_multiple_of(4),
    );
    buf.extend_from_slice(&ATTR_DATA.to_be_bytes());
    buf.extend_from_slice(&(data.len() as u16).to_be_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len() + (data.len().next_multiple_of(4) - data.len()), 0);
}

/// Appends a Data indication telling that a datagram to `peer` drew `icmp`:
/// XOR-PEER-ADDRESS and ICMP, no DATA (RFC 8656 §11.5). The attribute holds
/// 16 reserved bits, a 7-bit type, a 9-bit code and 32 bits of error data
/// (RFC 8656 Figure 11).
pub fn write_icmp(buf: &mut Vec<u8>, transaction_id: &[u8; 12], peer: SocketAddr, icmp: Icmp) {
    write_head(buf, transaction_id, peer, 4 + 8);
    buf.extend_from_slice(&ATTR_ICMP.to_be_bytes());
    buf.extend_from_slice(&8u16.to_be_bytes());
    let type_code = (u16::from(icmp.typ & 0x7F) << 9) | u16::from(icmp.code);
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(&type_code.to_be_bytes());
    buf.extend_from_slice(&icmp.error_data().to_be_bytes());
}

/// The header and XOR-PEER-ADDRESS of a Data indication whose attributes
/// after XOR-PEER-ADDRESS take `rest` bytes.
fn write_head(buf: &mut Vec<u8>, transaction_id: &[u8; 12], peer: SocketAddr, rest: usize) {
    let addr_len = if peer.is_ipv4() { 8 } else { 20 };
    let body = 4 + addr_len + rest;
    buf.extend_from_slice(&DATA_INDICATION.to_be_bytes());
    buf.extend_from_slice(&(body as u16).to_be_bytes());
    buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    buf.extend_from_slice(transaction_id);
    buf.extend_from_slice(&ATTR_XOR_PEER_ADDRESS.to_be_bytes());
    buf.extend_from_slice(&(addr_len as u16).to_be_bytes());
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = peer.port() ^ (MAGIC_COOKIE >> 16) as u16;
    match peer.ip() {
        IpAddr::V4(ip) => {
            buf.extend_from_slice(&[0, 1]);
            buf.extend_from_slice(&port.to_be_bytes());
            buf.extend(ip.octets().iter().zip(cookie).map(|(a, b)| a ^ b));
        }
        IpAddr::V6(ip) => {
            buf.extend_from_slice(&[0, 2]);
            buf.extend_from_slice(&port.to_be_bytes());
            let mask = cookie.iter().chain(transaction_id.iter());
            buf.extend(ip.octets().iter().zip(mask).map(|(a, b)| a ^ b));
        }
    }
}

/// Size of a Data indication for `data` from a peer of this family.
pub fn data_indication_len(peer: SocketAddr, data: &[u8]) -> usize {
    MESSAGE_HEADER_SIZE
        + 4
        + if peer.is_ipv4() { 8 } else { 20 }
        + 4
        + data.len().next_multiple_of(4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stun::attributes::{ATTR_DATA as DATA, ATTR_XOR_PEER_ADDRESS as PEER};
    use stun::message::Message;

    #[test]
    fn written_data_indications_decode_with_the_stun_crate() {
        for peer in ["198.51.100.1:5000", "[2001:db8::7]:6000"] {
            let peer: SocketAddr = peer.parse().unwrap();
            let mut buf = vec![0xAA]; // appends after what is there
            write_data(&mut buf, &[3; 12], peer, b"hello");
            assert_eq!(buf.len() - 1, data_indication_len(peer, b"hello"));
            let declared = u16::from_be_bytes([buf[3], buf[4]]);
            assert_eq!(usize::from(declared) + 20, buf.len() - 1, "header length");
            let mut m = Message {
                raw: buf[1..].to_vec(),
                ..Default::default()
            };
            m.decode().unwrap();
            assert_eq!(m.typ.value(), DATA_INDICATION);
            assert_eq!(m.get(DATA).unwrap(), b"hello");
            let got = super::super::message::decode_xor_address(&m.get(PEER).unwrap(), &[3; 12]);
            assert_eq!(got, Some(peer));
        }
    }

    #[test]
    fn icmp_data_indications_carry_type_code_and_mtu() {
        let peer: SocketAddr = "198.51.100.1:5000".parse().unwrap();
        let mut buf = Vec::new();
        let too_big = Icmp {
            v6: false,
            typ: 3,
            code: 4,
            info: 1400,
        };
        write_icmp(&mut buf, &[5; 12], peer, too_big);
        let mut m = Message {
            raw: buf,
            ..Default::default()
        };
        m.decode().unwrap();
        assert_eq!(m.typ.value(), DATA_INDICATION);
        assert!(m.get(DATA).is_err(), "no DATA");
        let icmp = m.get(stun::attributes::AttrType(ATTR_ICMP)).unwrap();
        assert_eq!(icmp, [0, 0, 3 << 1, 4, 0, 0, 0x05, 0x78]);
        let port_unreachable = Icmp { code: 3, ..too_big };
        assert_eq!(port_unreachable.error_data(), 0);
        assert!(port_unreachable.relayed());
        assert!(!Icmp { typ: 0, ..too_big }.relayed(), "echo reply");
        assert!(Icmp {
            v6: true,
            typ: 2,
            ..too_big
        }
        .relayed());
        assert!(!Icmp {
            v6: true,
            typ: 4,
            ..too_big
        }
        .relayed());
    }

    #[test]
    fn send_indications_parse_in_place() {
        let peer: SocketAddr = "198.51.100.1:5000".parse().unwrap();
        // A Data indication has the same layout; retype it as Send.
        let mut buf = Vec::new();
        write_data(&mut buf, &[9; 12], peer, b"payload");
        buf[..2].copy_from_slice(&SEND_INDICATION.to_be_bytes());
        assert!(is_send(&buf));
        assert_eq!(
            parse_send(&buf),
            Ok(Send {
                peer,
                data: b"payload"
            })
        );
        // Truncated, overrunning, or with an unknown required attribute.
        assert!(parse_send(&buf[..buf.len() - 4]).is_err());
        let mut unknown = buf.clone();
        unknown.extend_from_slice(&[0x00, 0x77, 0x00, 0x00]);
        let len = u16::from_be_bytes([unknown[2], unknown[3]]) + 4;
        unknown[2..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(parse_send(&unknown), Err(Malformed::Malformed));
        // A FINGERPRINT is checked.
        let mut fp = buf.clone();
        let len = u16::from_be_bytes([fp[2], fp[3]]) + 8;
        fp[2..4].copy_from_slice(&len.to_be_bytes());
        let crc = fingerprint_value(&fp);
        fp.extend_from_slice(&[0x80, 0x28, 0x00, 0x04]);
        fp.extend_from_slice(&crc.to_be_bytes());
        assert!(parse_send(&fp).is_ok());
        let n = fp.len();
        fp[n - 1] ^= 1;
        assert_eq!(parse_send(&fp), Err(Malformed::BadFingerprint));
    }
}
