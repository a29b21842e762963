//! Properties of the decoders that take bytes straight off the network.
//! Each function panics (and so reports a crash) when a property fails;
//! it must never panic for any other reason.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use stun::attributes::*;
use stun::message::{
    Message, CLASS_ERROR_RESPONSE, CLASS_INDICATION, CLASS_SUCCESS_RESPONSE, MAGIC_COOKIE,
    MESSAGE_HEADER_SIZE,
};
use turnd::core::classic;
use turnd::core::framing::{next_frame_len, FrameError};
use turnd::core::indication::{self, Send, DATA_INDICATION, SEND_INDICATION};
use turnd::core::message::{self, decode, Inbound, Request, CHANNEL_DATA_HEADER};

/// The key every decoded request is checked against: MD5("user:realm:pass").
pub const KEY: [u8; 16] = [
    0x84, 0x93, 0xfb, 0xc5, 0x3b, 0xa5, 0x82, 0xfb, 0x4c, 0x04, 0x4c, 0x45, 0x6b, 0xdc, 0x40, 0xeb,
];
/// RFC 5769's short-term password, so the test vectors reach the
/// integrity-passes branch.
pub const RFC5769_PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";

/// Attribute types asked for by type, beyond those the message carries.
const ASKED: &[AttrType] = &[
    ATTR_USERNAME,
    ATTR_REALM,
    ATTR_NONCE,
    ATTR_SOFTWARE,
    ATTR_LIFETIME,
    ATTR_XOR_PEER_ADDRESS,
    ATTR_XORMAPPED_ADDRESS,
    ATTR_DATA,
    ATTR_CHANNEL_NUMBER,
    ATTR_REQUESTED_TRANSPORT,
    ATTR_RESERVATION_TOKEN,
    ATTR_EVEN_PORT,
    ATTR_MESSAGE_INTEGRITY,
    ATTR_FINGERPRINT,
];

/// What turnd's handlers know (a subset is enough to split known/unknown).
const KNOWN: &[AttrType] = &[
    ATTR_USERNAME,
    ATTR_MESSAGE_INTEGRITY,
    ATTR_REALM,
    ATTR_NONCE,
    ATTR_LIFETIME,
    ATTR_REQUESTED_TRANSPORT,
    ATTR_XOR_PEER_ADDRESS,
    ATTR_CHANNEL_NUMBER,
    ATTR_DATA,
];

/// Target `stun_decode`: `decode` on UDP and stream framing, then every
/// accessor of a decoded request, and the responses built for it.
pub fn stun_decode(data: &[u8]) {
    let udp = decode(data, false);
    let stream = decode(data, true);
    // Only ChannelData padding depends on the transport.
    match (&udp, &stream) {
        (Ok(Inbound::ChannelData { .. }), _) | (_, Ok(Inbound::ChannelData { .. })) => {}
        (Ok(Inbound::Stun(a)), Ok(Inbound::Stun(b))) => assert_eq!(a.msg.raw, b.msg.raw),
        (
            Ok(Inbound::ClassicBinding {
                transaction_id: a,
                change: ca,
            }),
            Ok(Inbound::ClassicBinding {
                transaction_id: b,
                change: cb,
            }),
        ) => {
            assert_eq!((a, ca), (b, cb))
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("UDP and stream decoding disagree: {a:?} vs {b:?}"),
    }
    for (stream, result) in [(false, udp), (true, stream)] {
        match result {
            Ok(Inbound::Stun(mut req)) => check_request(data, &mut req),
            Ok(Inbound::ChannelData {
                number,
                data: payload,
            }) => {
                assert_eq!(number >> 14, 1, "ChannelData numbers start with 0b01");
                let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
                assert_eq!(
                    payload,
                    &data[CHANNEL_DATA_HEADER..CHANNEL_DATA_HEADER + len]
                );
                if !stream {
                    assert!(
                        data.len() - CHANNEL_DATA_HEADER - len <= 3,
                        "UDP: padding only"
                    );
                }
            }
            Ok(Inbound::ClassicBinding {
                transaction_id,
                change,
            }) => {
                let refused = classic::change_refused(&transaction_id, change);
                assert_eq!(&refused[4..20], &transaction_id[..]);
                assert_eq!(&transaction_id[..], &data[4..20]);
                assert_ne!(data[4..8], MAGIC_COOKIE.to_be_bytes());
                let client = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 1);
                let out = classic::binding_response(&transaction_id, client);
                assert_eq!(&out[4..20], &transaction_id[..]);
            }
            Err(_) => {}
        }
    }
}

/// Every accessor of a decoded request, with the invariants the handlers
/// rely on.
fn check_request(data: &[u8], req: &mut Request) {
    let raw = req.msg.raw.clone();
    assert!(
        data.starts_with(&raw),
        "the message is a prefix of the datagram"
    );
    assert_eq!(raw.len(), MESSAGE_HEADER_SIZE + req.msg.length as usize);
    let _ = req.class();
    let tid = req.transaction_id();
    assert_eq!(&tid[..], &raw[8..20]);

    let all = req.msg.attributes.0.len();
    let visible: Vec<(AttrType, Vec<u8>)> =
        req.attributes().map(|(t, v)| (t, v.to_vec())).collect();
    assert!(visible.len() <= all);
    // Nothing after the first MESSAGE-INTEGRITY is visible except a
    // MESSAGE-INTEGRITY-SHA256 right after it (RFC 8489 §14.5); nothing
    // after MESSAGE-INTEGRITY-SHA256 is visible (§14.6).
    if let Some(i) = visible
        .iter()
        .position(|(t, _)| *t == ATTR_MESSAGE_INTEGRITY || *t == ATTR_MESSAGE_INTEGRITY_SHA256)
    {
        let after: Vec<AttrType> = visible[i + 1..].iter().map(|(t, _)| *t).collect();
        let allowed = visible[i].0 == ATTR_MESSAGE_INTEGRITY
            && after.as_slice() == [ATTR_MESSAGE_INTEGRITY_SHA256];
        assert!(
            after.is_empty() || allowed,
            "attributes after MESSAGE-INTEGRITY leak: {after:?}"
        );
    }
    if req.has_fingerprint {
        let last = req.msg.attributes.0.last().expect("a FINGERPRINT");
        assert_eq!(last.typ, ATTR_FINGERPRINT);
        assert_eq!(last.value.len(), 4);
    }

    let mut types: Vec<AttrType> = visible.iter().map(|(t, _)| *t).collect();
    types.extend_from_slice(ASKED);
    for t in types {
        let got: Vec<&[u8]> = req.get_all(t).collect();
        assert_eq!(req.get(t), got.first().copied());
        let want = visible.iter().filter(|(vt, _)| *vt == t).count();
        assert_eq!(got.len(), want);
        if let Some(s) = req.text(t) {
            assert_eq!(Some(s.as_bytes()), req.get(t));
        }
    }

    let unknown = req.unknown_required(KNOWN);
    for t in &unknown {
        assert!(t.required() && !KNOWN.contains(t));
        assert!(visible.iter().any(|(vt, _)| vt == t));
    }

    for (_, value) in &visible {
        if let Some(addr) = req.xor_address(value) {
            // Exact lengths only: family 1 with 4 bytes, family 2 with 16.
            assert_eq!(value.len(), if addr.is_ipv4() { 8 } else { 20 });
            let mut m = Message::new();
            m.transaction_id = req.msg.transaction_id;
            m.write_header();
            message::add_xor_address(&mut m, ATTR_XOR_PEER_ADDRESS, addr);
            let encoded = m.get(ATTR_XOR_PEER_ADDRESS).expect("just added");
            assert_eq!(message::decode_xor_address(&encoded, &tid), Some(addr));
            // The first byte is reserved and ignored (RFC 8489 §14.1).
            assert_eq!(&encoded[1..], &value[1..], "XOR addresses round-trip");
        }
    }

    // The captured uclient traffic is signed with this one.
    let uclient = turnd::core::auth::long_term_key("alice", "example.org", "wonderland");
    for key in [&KEY[..], RFC5769_PASSWORD, &uclient[..], b""] {
        let _ = req.integrity_ok(key);
        assert_eq!(
            req.msg.raw, raw,
            "integrity_ok must leave the message as it was"
        );
    }

    // What the server would answer must itself decode and verify.
    let mut m = message::error_response(req, 420);
    message::add_unknown_attributes(&mut m, &unknown);
    check_response(req, m, CLASS_ERROR_RESPONSE);
    let mut m = message::response(req, CLASS_SUCCESS_RESPONSE);
    message::add_xor_address(
        &mut m,
        ATTR_XORMAPPED_ADDRESS,
        "198.51.100.1:4242".parse().unwrap(),
    );
    check_response(req, m, CLASS_SUCCESS_RESPONSE);
}

fn check_response(req: &Request, m: Message, class: stun::message::MessageClass) {
    let key = turnd::core::auth::Key {
        secret: turnd::core::auth::Secret::Md5(KEY),
        sha256_integrity: false,
    };
    let bytes = message::finish(m, Some(&key), req.has_fingerprint);
    match decode(&bytes, false) {
        Ok(Inbound::Stun(mut resp)) => {
            assert_eq!(resp.class(), class);
            assert_eq!(resp.transaction_id(), req.transaction_id());
            assert_eq!(resp.msg.typ.method, req.msg.typ.method);
            assert_eq!(resp.has_fingerprint, req.has_fingerprint);
            assert!(resp.integrity_ok(&KEY), "a response we signed must verify");
        }
        other => panic!("our own response does not decode: {other:?}"),
    }
}

/// Target `channel_data_and_send`. The first byte picks the property.
pub fn channel_data_and_send(input: &[u8]) {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    match mode % 4 {
        0 => send_differential(rest),
        1 => data_indication_round_trip(rest),
        2 => channel_data_round_trip(rest),
        _ => {
            // Arbitrary bytes retyped as a Send indication with a right
            // length and cookie, so mutation works on the attributes.
            let mut bytes = rest.to_vec();
            if bytes.len() >= MESSAGE_HEADER_SIZE {
                bytes[..2].copy_from_slice(&SEND_INDICATION.to_be_bytes());
                let len = ((bytes.len() - MESSAGE_HEADER_SIZE) & !3) as u16;
                bytes[2..4].copy_from_slice(&len.to_be_bytes());
                bytes[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            }
            send_differential(&bytes);
        }
    }
}

/// `parse_send` against the general decoder: what the fast path accepts,
/// the slow path reads the same way.
fn send_differential(bytes: &[u8]) {
    let _ = decode(bytes, false);
    if !indication::is_send(bytes) {
        return;
    }
    let Ok(send) = indication::parse_send(bytes) else {
        return;
    };
    let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    let msg = &bytes[..MESSAGE_HEADER_SIZE + len];
    assert!(msg.as_ptr_range().contains(&send.data.as_ptr()) || send.data.is_empty());
    match decode(bytes, false) {
        Ok(Inbound::Stun(req)) => {
            assert_eq!(req.class(), CLASS_INDICATION);
            assert_eq!(req.get(ATTR_DATA), Some(send.data), "DATA differs");
            let peer = req
                .get(ATTR_XOR_PEER_ADDRESS)
                .and_then(|v| req.xor_address(v));
            assert_eq!(peer, Some(send.peer), "XOR-PEER-ADDRESS differs");
        }
        other => panic!("parse_send accepted what decode refuses: {other:?} for {send:?}"),
    }
}

/// Reads a peer address: a family byte, a port, 4 or 16 address bytes.
fn peer_from(bytes: &[u8]) -> Option<(SocketAddr, &[u8])> {
    let (&family, rest) = bytes.split_first()?;
    let (port, rest) = rest.split_at_checked(2)?;
    let port = u16::from_be_bytes([port[0], port[1]]);
    if family & 1 == 0 {
        let (ip, rest) = rest.split_at_checked(4)?;
        let ip: [u8; 4] = ip.try_into().ok()?;
        Some((SocketAddr::new(Ipv4Addr::from(ip).into(), port), rest))
    } else {
        let (ip, rest) = rest.split_at_checked(16)?;
        let ip: [u8; 16] = ip.try_into().ok()?;
        Some((SocketAddr::new(Ipv6Addr::from(ip).into(), port), rest))
    }
}

/// `write_data(peer, data)`, retyped as Send, parses back to `peer` and
/// `data`; the stun crate and the general decoder read it the same way.
fn data_indication_round_trip(bytes: &[u8]) {
    let Some((tid, rest)) = bytes.split_at_checked(12) else {
        return;
    };
    let tid: [u8; 12] = tid.try_into().expect("12 bytes");
    let Some((peer, data)) = peer_from(rest) else {
        return;
    };
    // The server drops what would not fit the 16-bit STUN length.
    if indication::data_indication_len(peer, data) > usize::from(u16::MAX) + MESSAGE_HEADER_SIZE {
        return;
    }
    let mut buf = vec![0xA5; usize::from(tid[0] % 3)]; // write_data appends
    let prefix = buf.len();
    indication::write_data(&mut buf, &tid, peer, data);
    let written = &mut buf[prefix..];
    assert_eq!(written.len(), indication::data_indication_len(peer, data));
    assert_eq!(written[..2], DATA_INDICATION.to_be_bytes());

    let mut m = Message {
        raw: written.to_vec(),
        ..Default::default()
    };
    m.decode()
        .expect("the stun crate reads our Data indication");
    assert_eq!(m.get(ATTR_DATA).ok().as_deref(), Some(data));
    let got = message::decode_xor_address(&m.get(ATTR_XOR_PEER_ADDRESS).expect("peer"), &tid);
    assert_eq!(got, Some(peer));

    written[..2].copy_from_slice(&SEND_INDICATION.to_be_bytes());
    assert!(indication::is_send(written));
    assert_eq!(indication::parse_send(written), Ok(Send { peer, data }));
    send_differential(written);
}

/// ChannelData framed by hand decodes to the same number and data, padded
/// (stream) or not (UDP).
fn channel_data_round_trip(bytes: &[u8]) {
    let Some((head, data)) = bytes.split_at_checked(3) else {
        return;
    };
    if data.len() > usize::from(u16::MAX) {
        return;
    }
    let number = 0x4000 | (u16::from_be_bytes([head[0], head[1]]) & 0x3fff);
    let pad = usize::from(head[2] % 4);
    let mut frame = Vec::with_capacity(CHANNEL_DATA_HEADER + data.len() + 3);
    frame.extend_from_slice(&number.to_be_bytes());
    frame.extend_from_slice(&(data.len() as u16).to_be_bytes());
    frame.extend_from_slice(data);
    frame.resize(frame.len() + pad, 0);
    for stream in [false, true] {
        match decode(&frame, stream) {
            Ok(Inbound::ChannelData { number: n, data: d }) => {
                assert_eq!((n, d), (number, data));
            }
            other => panic!("ChannelData {number:#x} did not round-trip: {other:?}"),
        }
    }
    // On a stream the framer cuts exactly the padded frame.
    let padded = CHANNEL_DATA_HEADER + data.len().next_multiple_of(4);
    frame.resize(padded, 0);
    frame.extend_from_slice(&[0x40, 0, 0, 0]);
    assert_eq!(next_frame_len(&frame, usize::MAX), Ok(Some(padded)));
    // More than padding after a UDP ChannelData is not one message.
    frame.extend_from_slice(&[0; 4]);
    assert!(decode(&frame, false).is_err());
}

/// `connections.max_frame_bytes` is validated to this range (src/config/stream.rs).
const MIN_FRAME_BYTES: usize = 512;
const LARGEST_FRAME: usize = 65_556;

/// Target `stream_framer`: bytes arriving in arbitrary pieces are cut into
/// the same frames as when they arrive at once; lengths stay within `max`
/// and the buffer; "read more" is only asked while a frame can still fit.
///
/// Input: max (2 bytes), number of cuts (1 byte), cut sizes (1 byte each),
/// then the stream.
pub fn stream_framer(input: &[u8]) {
    let Some((head, rest)) = input.split_at_checked(3) else {
        return;
    };
    let max = match u16::from_be_bytes([head[0], head[1]]) {
        0 => LARGEST_FRAME,
        m => MIN_FRAME_BYTES + usize::from(m) % (LARGEST_FRAME - MIN_FRAME_BYTES + 1),
    };
    let cuts = usize::from(head[2] % 32).min(rest.len());
    let (cuts, stream) = rest.split_at(cuts);

    let reference = frames(stream, max, &[]);
    let pieces = frames(stream, max, cuts);
    assert_eq!(reference, pieces, "framing depends on how the bytes arrive");
}

/// What a connection reader sees: the frames cut, and how it stopped.
#[derive(Debug, PartialEq, Eq)]
struct Framed {
    frames: Vec<usize>,
    end: Result<usize, FrameError>,
}

/// Runs a reader over `stream` delivered in pieces of the `cuts` sizes
/// (then the rest at once); checks each answer of the framer.
fn frames(stream: &[u8], max: usize, cuts: &[u8]) -> Framed {
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut cuts = cuts.iter();
    let mut out = Vec::new();
    loop {
        match next_frame_len(&buf, max) {
            Ok(Some(n)) => {
                assert!(n <= max, "frame of {n} over the maximum {max}");
                assert!(
                    n <= buf.len(),
                    "frame of {n} beyond the {} buffered",
                    buf.len()
                );
                assert!(n >= CHANNEL_DATA_HEADER, "no progress: frame of {n}");
                assert!(n <= LARGEST_FRAME);
                let frame = &buf[..n];
                // What a stream reader hands the engine must not panic it.
                let _ = decode(frame, true);
                if frame[0] >> 6 == 0 {
                    assert_eq!(n % 4, 0, "STUN frames are 4-byte aligned");
                }
                out.push(n);
                buf.drain(..n);
            }
            Ok(None) => {
                assert!(
                    buf.len() < max,
                    "asks for more with {} >= max {max} buffered",
                    buf.len()
                );
                assert!(buf.len() < LARGEST_FRAME);
                if fed == stream.len() {
                    return Framed {
                        frames: out,
                        end: Ok(buf.len()),
                    };
                }
                let want = match cuts.next() {
                    Some(&c) => usize::from(c).max(1),
                    None => stream.len() - fed,
                };
                let take = want.min(stream.len() - fed);
                buf.extend_from_slice(&stream[fed..fed + take]);
                fed += take;
            }
            Err(e) => {
                if let FrameError::TooLarge(n) = e {
                    assert!(n > max);
                }
                // The verdict is about the frame at the head of the buffer;
                // it must not change as more bytes arrive.
                let mut more = buf.clone();
                more.extend_from_slice(&stream[fed..]);
                let later = next_frame_len(&more, max);
                assert_eq!(later, Err(e));
                return Framed {
                    frames: out,
                    end: Err(e),
                };
            }
        }
    }
}
