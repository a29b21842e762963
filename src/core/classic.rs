//! Binding for classic STUN clients (RFC 3489 §11): no magic cookie, a
//! 128-bit transaction id, and MAPPED-ADDRESS instead of XOR-MAPPED-ADDRESS;
//! and CHANGE-REQUEST (RFC 5780 §7.2, RFC 3489 §11.2.4) for both kinds of
//! client. turnd has no alternate address, so a request with no flag set is
//! a plain Binding and one asking for another address or port gets 420: an
//! answer from the same address would make the client misjudge its NAT.

use std::net::SocketAddr;

/// CHANGE-REQUEST's attribute type.
pub const ATTR_CHANGE_REQUEST: u16 = 0x0003;
/// The "change IP" (A) and "change port" (B) flags of CHANGE-REQUEST.
const CHANGE_FLAGS: u32 = 0x04 | 0x02;

/// What a request's CHANGE-REQUEST asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeRequest {
    /// No CHANGE-REQUEST, or one with no flag set: a plain Binding.
    None,
    /// A response from another address or port, which turnd does not have.
    Change,
    /// A value that is not 4 bytes.
    Malformed,
}

impl ChangeRequest {
    /// Reads a CHANGE-REQUEST value, if the request had one.
    pub fn parse(value: Option<&[u8]>) -> Self {
        let Some(value) = value else {
            return ChangeRequest::None;
        };
        let Ok(bytes) = <[u8; 4]>::try_from(value) else {
            return ChangeRequest::Malformed;
        };
        if u32::from_be_bytes(bytes) & CHANGE_FLAGS == 0 {
            ChangeRequest::None
        } else {
            ChangeRequest::Change
        }
    }
}

/// The CHANGE-REQUEST of an RFC 3489 request: its attributes (after the
/// 20-byte header) are walked up to the first one that overruns.
pub fn classic_change_request(attributes: &[u8]) -> ChangeRequest {
    let mut rest = attributes;
    while let Some((head, tail)) = rest.split_at_checked(4) {
        let typ = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let Some(value) = tail.get(..len) else { break };
        if typ == ATTR_CHANGE_REQUEST {
            return ChangeRequest::parse(Some(value));
        }
        rest = tail.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    ChangeRequest::None
}

/// The Binding success response to an RFC 3489 request from `client`.
pub fn binding_response(transaction_id: &[u8; 16], client: SocketAddr) -> Vec<u8> {
    let (family, ip): (u8, Vec<u8>) = match client.ip() {
        std::net::IpAddr::V4(v4) => (1, v4.octets().to_vec()),
        std::net::IpAddr::V6(v6) => (2, v6.octets().to_vec()),
    };
    let mut out = header(0x0101, transaction_id);
    push_attribute(&mut out, 0x0001, |v| {
        v.extend_from_slice(&[0, family]);
        v.extend_from_slice(&client.port().to_be_bytes());
        v.extend_from_slice(&ip);
    });
    out
}

/// The Binding error response (RFC 3489 §11.2.9) to a request whose
/// CHANGE-REQUEST cannot be honoured: 420 (Malformed: 400), with
/// UNKNOWN-ATTRIBUTES listing CHANGE-REQUEST twice, as RFC 3489 §11.2.10
/// wants an even count.
pub fn change_refused(transaction_id: &[u8; 16], change: ChangeRequest) -> Vec<u8> {
    let (code, phrase): (u16, &[u8]) = match change {
        ChangeRequest::Malformed => (400, b"Bad Request"),
        _ => (420, b"Unknown Attribute"),
    };
    let mut out = header(0x0111, transaction_id);
    push_attribute(&mut out, 0x0009, |v| {
        v.extend_from_slice(&[0, 0, (code / 100) as u8, (code % 100) as u8]);
        v.extend_from_slice(phrase);
        // RFC 3489 reason phrases are padded to a multiple of 4 bytes.
        v.resize(v.len().next_multiple_of(4), b' ');
    });
    if code == 420 {
        push_attribute(&mut out, 0x000A, |v| {
            for _ in 0..2 {
                v.extend_from_slice(&ATTR_CHANGE_REQUEST.to_be_bytes());
            }
        });
    }
    out
}

fn header(typ: u16, transaction_id: &[u8; 16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&typ.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(transaction_id);
    out
}

/// Appends an attribute whose value `write` produces (a multiple of 4
/// bytes) and updates the header's length.
fn push_attribute(out: &mut Vec<u8>, typ: u16, write: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&typ.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    write(out);
    let value_len = (out.len() - start - 4) as u16;
    out[start + 2..start + 4].copy_from_slice(&value_len.to_be_bytes());
    let body = (out.len() - 20) as u16;
    out[2..4].copy_from_slice(&body.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_source_in_the_clear() {
        let id = [7u8; 16];
        let out = binding_response(&id, "192.0.2.1:32853".parse().unwrap());
        let mut want = vec![0x01, 0x01, 0x00, 0x0c];
        want.extend_from_slice(&id);
        want.extend_from_slice(&[0x00, 0x01, 0x00, 0x08, 0x00, 0x01, 0x80, 0x55, 192, 0, 2, 1]);
        assert_eq!(out, want);
    }

    #[test]
    fn change_request_flags() {
        assert_eq!(ChangeRequest::parse(None), ChangeRequest::None);
        assert_eq!(ChangeRequest::parse(Some(&[0; 4])), ChangeRequest::None);
        assert_eq!(
            ChangeRequest::parse(Some(&[0, 0, 0, 0x04])),
            ChangeRequest::Change
        );
        assert_eq!(
            ChangeRequest::parse(Some(&[0, 0, 0, 0x02])),
            ChangeRequest::Change
        );
        assert_eq!(
            ChangeRequest::parse(Some(&[0, 0, 0])),
            ChangeRequest::Malformed
        );
        // Walks past other attributes; stops at one that overruns.
        let attrs = [0, 0x06, 0, 1, b'u', 0, 0, 0, 0, 0x03, 0, 4, 0, 0, 0, 6];
        assert_eq!(classic_change_request(&attrs), ChangeRequest::Change);
        assert_eq!(classic_change_request(&attrs[..14]), ChangeRequest::None);
        assert_eq!(classic_change_request(&[]), ChangeRequest::None);
    }

    #[test]
    fn a_change_is_refused_with_420() {
        let id = [3u8; 16];
        let out = change_refused(&id, ChangeRequest::Change);
        let mut want = vec![0x01, 0x11, 0x00, 0x24];
        want.extend_from_slice(&id);
        want.extend_from_slice(&[0x00, 0x09, 0x00, 0x18, 0, 0, 4, 20]);
        want.extend_from_slice(b"Unknown Attribute   ");
        want.extend_from_slice(&[0x00, 0x0a, 0x00, 0x04, 0, 3, 0, 3]);
        assert_eq!(out, want);
        let bad = change_refused(&id, ChangeRequest::Malformed);
        assert_eq!(&bad[24..28], &[0, 0, 4, 0]);
        assert_eq!(bad.len(), 20 + 4 + 16);
    }
}
