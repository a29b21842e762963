//! Seed material: the RFC 5769 test vectors and engine scenarios that walk
//! through the protocol the way a client does, so the fuzzer starts from
//! allocations, permissions, channels and relayed data rather than from a
//! 401. `examples/seeds.rs` writes them into `corpus/`; `tests/replay.rs`
//! checks that each scenario reaches what it is meant to.

use crate::ops::{flags, Attr, Op, Peer};

/// RFC 5769 §2.1-§2.4, as (name, bytes).
pub fn rfc5769() -> Vec<(&'static str, Vec<u8>)> {
    [
        ("2.1-request", "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74002400046e0001ff80290008932ff9b151263b36000600096576746a3a68367659202020000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf"),
        ("2.2-ipv4-response", "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000080001a147e112a643000800142b91f599fd9e90c38c7489f92af9ba53f06be7d780280004c07d4c96"),
        ("2.3-ipv6-response", "010100482112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d900080014a382954e4be67bf11784c97c8292c275bfe3ed4180280004c8fb0b4c"),
        ("2.4-long-term", "000100602112a44278ad3433c6ad72c029da412e00060012e3839ee38388e383aae38383e382afe382b900000015001c662f2f3439396b39353464364f4c33346f4c394653547679363473410014000b6578616d706c652e6f72670000080014f67024656dd64a3e02b8e0712e85c9a28ca89666"),
    ]
    .into_iter()
    .map(|(name, hex)| (name, hex_bytes(hex)))
    .collect()
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

// Method selectors of `Op::Request`.
const ALLOCATE: u8 = 0;
const REFRESH: u8 = 1;
const CREATE_PERMISSION: u8 = 2;
const CHANNEL_BIND: u8 = 3;
const BINDING: u8 = 4;
// Credential selectors.
const ALICE: u8 = 0;
const BOB: u8 = 1;
const CAROL_REST: u8 = 2;
const ALICE_REST: u8 = 3;
const EXPIRED_REST: u8 = 4;
const UNKNOWN_USER: u8 = 5;
/// `known_peers()[0]`, allowed by the config.
const PUBLIC: Peer = Peer::Known(0);
const UDP: Attr = Attr::Transport(17);

fn req(client: u8, method: u8, cred: u8, flags: u8, tid: u8, attrs: Vec<Attr>) -> Op {
    Op::Request {
        client,
        method,
        cred,
        flags,
        tid,
        attrs,
    }
}

fn signed(client: u8, method: u8, tid: u8, attrs: Vec<Attr>) -> Op {
    req(client, method, ALICE, 0, tid, attrs)
}

/// A 401 (which brings a nonce), then an allocation as `cred`.
fn allocate_as(client: u8, cred: u8, extra: Vec<Attr>) -> Vec<Op> {
    let mut attrs = vec![UDP];
    attrs.extend(extra);
    vec![
        req(client, ALLOCATE, cred, flags::UNSIGNED, 0xEE, vec![UDP]),
        req(client, ALLOCATE, cred, 0, client + 1, attrs),
    ]
}

fn allocate(client: u8) -> Vec<Op> {
    allocate_as(client, ALICE, vec![])
}

fn peer_sends(relay: u8, peer: Peer, data: &[u8]) -> Op {
    Op::Peer {
        relay,
        peer,
        data: data.to_vec(),
    }
}

/// Allocation, permission, Send/Data, channel, ChannelData both ways, delete.
fn full_session(client: u8) -> Vec<Op> {
    let mut ops = allocate(client);
    ops.extend([
        signed(client, CREATE_PERMISSION, 2, vec![Attr::Peer(PUBLIC)]),
        Op::Send {
            client,
            peer: PUBLIC,
            data: b"to the peer".to_vec(),
            fingerprint: false,
        },
        peer_sends(0, PUBLIC, b"from the peer"),
        signed(
            client,
            CHANNEL_BIND,
            3,
            vec![Attr::Channel(0x4000), Attr::Peer(PUBLIC)],
        ),
        Op::ChannelData {
            client,
            number: 0x4000,
            data: b"over the channel".to_vec(),
        },
        peer_sends(0, PUBLIC, b"back over the channel"),
        signed(client, REFRESH, 4, vec![Attr::Lifetime(0)]),
        peer_sends(0, PUBLIC, b"after the end"),
    ]);
    ops
}

/// Named engine programs.
pub fn scenarios() -> Vec<(&'static str, Vec<Op>)> {
    let mut out = Vec::new();

    out.push(("session-udp", full_session(0)));
    out.push(("session-udp-ipv6-client", full_session(2)));
    let mut tcp = full_session(3);
    tcp.truncate(tcp.len() - 2);
    tcp.push(Op::Close { client: 3 });
    tcp.push(peer_sends(0, PUBLIC, b"after close"));
    out.push(("session-tcp-close", tcp));

    let mut tls = allocate_as(4, CAROL_REST, vec![Attr::Lifetime(1200)]);
    tls.extend([
        req(
            4,
            CHANNEL_BIND,
            CAROL_REST,
            flags::FINGERPRINT,
            2,
            vec![Attr::Channel(0x4001), Attr::Peer(Peer::Known(1))],
        ),
        Op::ChannelData {
            client: 4,
            number: 0x0001,
            data: b"tls".to_vec(),
        },
        peer_sends(0, Peer::Known(1), b"odd length"),
        Op::Close { client: 4 },
    ]);
    out.push(("rest-user-tls", tls));

    let mut quota = Vec::new();
    for client in [0, 1, 2, 5] {
        quota.extend(allocate(client)); // the 4th: 486
    }
    quota.extend(allocate_as(3, BOB, vec![]));
    quota.extend(allocate_as(4, CAROL_REST, vec![])); // 5 in total
    quota.extend(allocate_as(5, ALICE_REST, vec![])); // alice is full
    quota.push(Op::Advance { secs: 601 });
    quota.extend(allocate_as(5, CAROL_REST, vec![]));
    out.push(("quotas", quota));

    let mut even = allocate_as(0, ALICE, vec![Attr::EvenPort(0x80)]);
    even.extend(allocate_as(1, ALICE, vec![Attr::Token(0)])); // other worker claims
    even.extend(allocate_as(2, BOB, vec![Attr::EvenPort(0x80)]));
    even.push(Op::Advance { secs: 31 }); // reservation lapses
    even.extend(allocate_as(5, BOB, vec![Attr::Token(0)])); // 508
    even.extend(allocate_as(3, CAROL_REST, vec![Attr::EvenPort(0)]));
    out.push(("even-port-reservation", even));

    let mut denied = allocate(0);
    for i in 1..37u8 {
        denied.push(signed(
            0,
            CREATE_PERMISSION,
            10 + i,
            vec![Attr::Peer(Peer::Known(i))],
        ));
        denied.push(Op::Send {
            client: 0,
            peer: Peer::Known(i),
            data: vec![i],
            fingerprint: false,
        });
    }
    for i in [30u8, 31, 32, 33, 34, 35, 36] {
        denied.push(signed(
            0,
            CHANNEL_BIND,
            60 + i,
            vec![Attr::Channel(0x4002), Attr::Peer(Peer::Known(i))],
        ));
    }
    out.push(("denied-peers", denied));

    let mut r2r = allocate(0);
    r2r.extend(allocate(1));
    r2r.extend([
        signed(
            0,
            CREATE_PERMISSION,
            5,
            vec![Attr::Peer(Peer::Relay {
                index: 1,
                bind: false,
            })],
        ),
        Op::Send {
            client: 0,
            peer: Peer::Relay {
                index: 1,
                bind: false,
            },
            data: b"relay to relay".to_vec(),
            fingerprint: true,
        },
        // Permissions are for the advertised address, as clients see it.
        signed(
            1,
            CREATE_PERMISSION,
            6,
            vec![Attr::Peer(Peer::Relay {
                index: 0,
                bind: true,
            })],
        ),
        signed(
            1,
            CREATE_PERMISSION,
            7,
            vec![Attr::Peer(Peer::Relay {
                index: 0,
                bind: false,
            })],
        ),
        signed(
            0,
            CHANNEL_BIND,
            8,
            vec![
                Attr::Channel(0x400e),
                Attr::Peer(Peer::Relay {
                    index: 1,
                    bind: true,
                }),
            ],
        ),
        Op::ChannelData {
            client: 0,
            number: 0x000e,
            data: vec![],
        },
        peer_sends(
            1,
            Peer::Relay {
                index: 0,
                bind: true,
            },
            b"from the other relay",
        ),
    ]);
    out.push(("relay-to-relay", r2r));

    let mut expiry = allocate(1);
    expiry.extend([
        signed(
            1,
            CREATE_PERMISSION,
            2,
            vec![Attr::Peer(PUBLIC), Attr::Peer(Peer::Known(1))],
        ),
        signed(
            1,
            CHANNEL_BIND,
            3,
            vec![Attr::Channel(0x4003), Attr::Peer(Peer::Known(1))],
        ),
        Op::Advance { secs: 301 },
        Op::Send {
            client: 1,
            peer: PUBLIC,
            data: b"permission lapsed".to_vec(),
            fingerprint: false,
        },
        peer_sends(0, Peer::Known(1), b"channel keeps it"),
        signed(1, REFRESH, 4, vec![Attr::Lifetime(7200)]),
        Op::Advance { secs: 601 },
        peer_sends(0, Peer::Known(1), b"channel lapsed"),
        Op::Advance { secs: 3000 },
        signed(1, REFRESH, 5, vec![]),
        Op::Advance { secs: 700 },
        signed(1, REFRESH, 6, vec![]),
    ]);
    out.push(("expiry", expiry));

    let mut auth = vec![req(0, ALLOCATE, ALICE, flags::UNSIGNED, 1, vec![UDP])];
    for (i, (cred, f)) in [
        (EXPIRED_REST, 0),
        (UNKNOWN_USER, 0),
        (ALICE, flags::BAD_PASSWORD),
        (ALICE, flags::BAD_NONCE),
        (ALICE, flags::OTHER_NONCE),
        (BOB, flags::AFTER_INTEGRITY | flags::FINGERPRINT),
    ]
    .into_iter()
    .enumerate()
    {
        auth.push(req(0, ALLOCATE, cred, f, 2 + i as u8, vec![UDP]));
    }
    for (i, attrs) in [
        vec![Attr::Other(0x7777, vec![1])],
        vec![],
        vec![Attr::Transport(6)],
        vec![UDP, Attr::Family(2)],
        vec![UDP, Attr::Family(3)],
        vec![UDP, Attr::EvenPort(0x80), Attr::Token(0)],
        vec![UDP, Attr::Lifetime(1), Attr::DontFragment],
        vec![UDP, Attr::Data(b"x".to_vec())],
    ]
    .into_iter()
    .enumerate()
    {
        auth.push(signed(1, ALLOCATE, 20 + i as u8, attrs));
    }
    auth.push(req(1, 9, ALICE, 0, 40, vec![]));
    out.push(("auth-and-bad-requests", auth));

    let mut retransmit = allocate(0);
    retransmit.push(signed(0, ALLOCATE, 1, vec![UDP])); // same transaction
    retransmit.push(signed(0, ALLOCATE, 2, vec![UDP])); // 437
    retransmit.push(req(0, REFRESH, BOB, 0, 3, vec![])); // 441
    out.push(("retransmit-and-mismatch", retransmit));

    let mut drain = vec![Op::Drain { worker: 0 }];
    drain.extend(allocate(0)); // 508
    drain.push(Op::Drain { worker: 3 });
    drain.extend(allocate(1)); // 300 with ALTERNATE-SERVER
    out.push(("drain", drain));

    let classic = hex_bytes("000100000102030405060708090a0b0c0d0e0f10");
    out.push((
        "binding",
        vec![
            req(
                0,
                BINDING,
                ALICE,
                flags::UNSIGNED | flags::FINGERPRINT,
                1,
                vec![],
            ),
            req(
                3,
                BINDING,
                ALICE,
                0,
                2,
                vec![Attr::Other(0x0024, vec![0, 0, 0, 1])],
            ),
            req(
                2,
                BINDING,
                ALICE,
                flags::UNSIGNED,
                3,
                vec![Attr::Other(0x7777, vec![])],
            ),
            Op::Raw {
                client: 1,
                bytes: classic,
            },
            Op::Raw {
                client: 1,
                bytes: b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            },
        ],
    ));

    let mut channels = allocate(0);
    channels.extend([
        signed(
            0,
            CHANNEL_BIND,
            2,
            vec![Attr::Channel(0x4000), Attr::Peer(PUBLIC)],
        ),
        signed(
            0,
            CHANNEL_BIND,
            3,
            vec![Attr::Channel(0x4000), Attr::Peer(Peer::Known(1))],
        ),
        signed(
            0,
            CHANNEL_BIND,
            4,
            vec![Attr::Channel(0x4001), Attr::Peer(PUBLIC)],
        ),
        signed(
            0,
            CHANNEL_BIND,
            5,
            vec![Attr::Channel(0x4001), Attr::Peer(Peer::Known(1))],
        ),
        signed(
            0,
            CHANNEL_BIND,
            6,
            vec![Attr::Channel(0x4002), Attr::Peer(Peer::Known(3))],
        ),
        signed(
            0,
            CHANNEL_BIND,
            7,
            vec![Attr::Channel(0x3fff), Attr::Peer(Peer::Known(3))],
        ),
        signed(
            0,
            CREATE_PERMISSION,
            8,
            vec![
                Attr::Peer(Peer::Known(3)),
                Attr::Peer(Peer::Known(4)),
                Attr::Peer(Peer::V4([198, 19, 0, 9], 1)),
                Attr::Peer(Peer::V4([198, 19, 0, 10], 1)),
            ],
        ),
        Op::Advance { secs: 600 },
        signed(
            0,
            CHANNEL_BIND,
            9,
            vec![Attr::Channel(0x4000), Attr::Peer(Peer::Known(1))],
        ),
        Op::Advance { secs: 301 },
        signed(
            0,
            CHANNEL_BIND,
            10,
            vec![Attr::Channel(0x4000), Attr::Peer(Peer::Known(1))],
        ),
    ]);
    out.push(("channel-rules-and-quotas", channels));

    out
}
