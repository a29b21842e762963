//! Binding for classic STUN clients (RFC 3489 §11): no magic cookie, a
//! 128-bit transaction id, and MAPPED-ADDRESS instead of XOR-MAPPED-ADDRESS.

use std::net::SocketAddr;

/// The Binding success response to an RFC 3489 request from `client`.
pub fn binding_response(transaction_id: &[u8; 16], client: SocketAddr) -> Vec<u8> {
    let (family, ip): (u8, Vec<u8>) = match client.ip() {
        std::net::IpAddr::V4(v4) => (1, v4.octets().to_vec()),
        std::net::IpAddr::V6(v6) => (2, v6.octets().to_vec()),
    };
    let value_len = 4 + ip.len();
    let mut out = Vec::with_capacity(20 + 4 + value_len);
    out.extend_from_slice(&0x0101u16.to_be_bytes());
    out.extend_from_slice(&((4 + value_len) as u16).to_be_bytes());
    out.extend_from_slice(transaction_id);
    out.extend_from_slice(&0x0001u16.to_be_bytes()); // MAPPED-ADDRESS
    out.extend_from_slice(&(value_len as u16).to_be_bytes());
    out.extend_from_slice(&[0, family]);
    out.extend_from_slice(&client.port().to_be_bytes());
    out.extend_from_slice(&ip);
    out
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
}
