//! The probe's connection to the server: a connected UDP socket (one
//! datagram, one message) or a TCP stream, plain or in TLS (RFC 7065
//! `turns:`), framed as RFC 8656 §12.5 says: STUN messages by their length
//! field, ChannelData by its length padded to a multiple of 4.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::now;

/// The CAs trusted without --ca (Debian's ca-certificates).
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// STUN header: type, length, magic cookie, transaction id (RFC 8489 §5).
const STUN_HEADER: usize = 20;
/// ChannelData header: channel number, length (RFC 8656 §12.4).
const CHANNEL_DATA_HEADER: usize = 4;

pub enum Link {
    Udp(UdpSocket),
    Tcp {
        stream: TcpStream,
        buf: Vec<u8>,
    },
    Tls {
        stream: Box<StreamOwned<ClientConnection, TcpStream>>,
        buf: Vec<u8>,
    },
}

/// How a TLS link checks the server: trusted CAs and the expected name.
pub struct TlsCheck<'a> {
    pub ca: Option<&'a Path>,
    pub name: &'a str,
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

    /// A TLS connection to `server`, handshake done within `timeout`, the
    /// certificate checked against `check`.
    pub fn tls(server: SocketAddr, timeout: Duration, check: &TlsCheck) -> io::Result<Link> {
        let config = client_config(check.ca)?;
        let name = ServerName::try_from(check.name.to_owned()).map_err(|_| {
            io::Error::new(
                ErrorKind::InvalidInput,
                format!("{:?} is not a host name or IP address for SNI", check.name),
            )
        })?;
        let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        let Link::Tcp { stream: tcp, .. } = Link::tcp(server, timeout)? else {
            unreachable!("Link::tcp makes a TCP link");
        };
        tcp.set_read_timeout(Some(timeout))?;
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).map_err(|e| {
                if is_timeout(&e) {
                    io::Error::new(ErrorKind::TimedOut, "the TLS handshake timed out")
                } else {
                    e
                }
            })?;
        }
        Ok(Link::Tls {
            stream: Box::new(stream),
            buf: Vec::new(),
        })
    }

    /// True when the transport retransmits by itself (TCP): requests are
    /// then sent once (RFC 8489 §6.2.2).
    pub fn reliable(&self) -> bool {
        !matches!(self, Link::Udp(_))
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Link::Udp(socket) => socket.send(bytes).map(|_| ()),
            Link::Tcp { stream, .. } => stream.write_all(bytes),
            Link::Tls { stream, .. } => stream.write_all(bytes).and_then(|()| stream.flush()),
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
            Link::Tcp { stream, buf } => {
                recv_frame(stream, buf, deadline, |s, t| s.set_read_timeout(Some(t)))
            }
            Link::Tls { stream, buf } => recv_frame(stream.as_mut(), buf, deadline, |s, t| {
                s.sock.set_read_timeout(Some(t))
            }),
        }
    }
}

/// The next whole frame from a byte stream, reading until `deadline`.
fn recv_frame<S: Read>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    deadline: Instant,
    set_timeout: impl Fn(&mut S, Duration) -> io::Result<()>,
) -> io::Result<Option<Vec<u8>>> {
    loop {
        if let Some(frame) = take_frame(buf)? {
            return Ok(Some(frame));
        }
        let Some(left) = time_left(deadline) else {
            return Ok(None);
        };
        set_timeout(stream, left)?;
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
    }
}

/// A client config trusting the CAs of `ca` (a PEM file), else the
/// system's bundle.
fn client_config(ca: Option<&Path>) -> io::Result<Arc<ClientConfig>> {
    let path = ca.unwrap_or(Path::new(SYSTEM_CA_BUNDLE));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| {
            io::Error::new(
                ErrorKind::InvalidInput,
                format!("cannot read CA certificates from {}: {e}", path.display()),
            )
        })?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            format!("{} holds no CA certificate", path.display()),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut config = config;
    // RFC 7443: TURN's ALPN identifier.
    config.alpn_protocols = vec![b"stun.turn".to_vec()];
    Ok(Arc::new(config))
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
