//! The probe's connection to the server: a connected UDP socket (one
//! datagram, one message) or a TCP stream framed as RFC 8656 §12.5 says:
//! STUN messages by their length field, ChannelData by its length padded to
//! a multiple of 4.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use super::now;

/// STUN header: type, length, magic cookie, transaction id (RFC 8489 §5).
const STUN_HEADER: usize = 20;
/// ChannelData header: channel number, length (RFC 8656 §12.4).
const CHANNEL_DATA_HEADER: usize = 4;

pub enum Link {
    Udp(UdpSocket),
    Tcp { stream: TcpStream, buf: Vec<u8> },
}

impl Link {
    /// A UDP socket connected to `server` (so ICMP port unreachable shows
    /// up as "connection refused"), from any local address of its family.
    pub fn udp(server: SocketAddr) -> io::Result<Link> {
        let any: IpAddr = match server {
            SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let socket = UdpSocket::bind(SocketAddr::new(any, 0))?;
        socket.connect(server)?;
        Ok(Link::Udp(socket))
    }

    /// A TCP connection to `server`, made within `timeout`.
    pub fn tcp(server: SocketAddr, timeout: Duration) -> io::Result<Link> {
        let stream = TcpStream::connect_timeout(&server, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Link::Tcp {
            stream,
            buf: Vec::new(),
        })
    }

    /// True when the transport retransmits by itself (TCP): requests are
    /// then sent once (RFC 8489 §6.2.2).
    pub fn reliable(&self) -> bool {
        matches!(self, Link::Tcp { .. })
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Link::Udp(socket) => socket.send(bytes).map(|_| ()),
            Link::Tcp { stream, .. } => stream.write_all(bytes),
        }
    }

    /// The next message from the server (STUN or ChannelData), or `None`
    /// if nothing arrived before `deadline`.
    pub fn recv(&mut self, deadline: Instant) -> io::Result<Option<Vec<u8>>> {
        match self {
            Link::Udp(socket) => {
                let mut buf = vec![0u8; 65536];
                loop {
                    let Some(left) = time_left(deadline) else {
                        return Ok(None);
                    };
                    socket.set_read_timeout(Some(left))?;
                    match socket.recv(&mut buf) {
                        Ok(n) => return Ok(Some(buf[..n].to_vec())),
                        Err(e) if is_timeout(&e) => return Ok(None),
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
            Link::Tcp { stream, buf } => loop {
                if let Some(frame) = take_frame(buf)? {
                    return Ok(Some(frame));
                }
                let Some(left) = time_left(deadline) else {
                    return Ok(None);
                };
                stream.set_read_timeout(Some(left))?;
                let mut chunk = [0u8; 16384];
                match stream.read(&mut chunk) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            ErrorKind::UnexpectedEof,
                            "the server closed the connection",
                        ))
                    }
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) if is_timeout(&e) => return Ok(None),
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            },
        }
    }
}

/// Time until `deadline`, `None` once it has passed (a zero read timeout
/// would mean "block forever").
fn time_left(deadline: Instant) -> Option<Duration> {
    let left = deadline.saturating_duration_since(now());
    (!left.is_zero()).then_some(left)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Splits one whole STUN message or ChannelData frame (with its padding)
/// off the front of a TCP byte stream.
fn take_frame(buf: &mut Vec<u8>) -> io::Result<Option<Vec<u8>>> {
    let (Some(&first), Some(len)) = (buf.first(), buf.get(2..4)) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    let (frame_len, total) = match first >> 6 {
        0b00 => (STUN_HEADER + len, STUN_HEADER + len),
        0b01 => (
            CHANNEL_DATA_HEADER + len,
            CHANNEL_DATA_HEADER + len.next_multiple_of(4),
        ),
        _ => {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                format!("the server sent neither STUN nor ChannelData (first byte {first:#04x})"),
            ))
        }
    };
    if buf.len() < total {
        return Ok(None);
    }
    let frame = buf[..frame_len].to_vec();
    buf.drain(..total);
    Ok(Some(frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_a_stream() {
        // A 4-byte STUN message body, then ChannelData of 5 bytes + 3 padding.
        let mut stun = vec![0x01, 0x01, 0x00, 0x04];
        stun.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        stun.extend_from_slice(&[7; 12]);
        stun.extend_from_slice(&[1, 2, 3, 4]);
        let chan = [0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0];
        let mut buf = [stun.clone(), chan.to_vec()].concat();
        let partial = buf.split_off(buf.len() - 2);
        assert_eq!(take_frame(&mut buf).unwrap(), Some(stun));
        assert_eq!(take_frame(&mut buf).unwrap(), None);
        buf.extend_from_slice(&partial);
        assert_eq!(take_frame(&mut buf).unwrap(), Some(chan[..9].to_vec()));
        assert!(buf.is_empty());
        assert!(take_frame(&mut vec![0xff, 0, 0, 0]).is_err());
    }
}
