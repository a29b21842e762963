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

/// Appends a Data indication carrying `data` from `peer` to `buf`.
pub fn write_data(buf: &mut Vec<u8>, transaction_id: &[u8; 12], peer: SocketAddr, data: &[u8]) {
    let addr_len = if peer.is_ipv4() { 8 } else { 20 };
    let body = 4 + addr_len + 4 + data.len().next_multiple_of(4);
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
    buf.extend_from_slice(&ATTR_DATA.to_be_bytes());
    buf.extend_from_slice(&(data.len() as u16).to_be_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len() + (data.len().next_multiple_of(4) - data.len()), 0);
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
