//! The engine's channel-binding commands (src/core/command.rs), on virtual
//! time: exact commands for the lifecycle (bind, refresh, permission lapse
//! and renewal, channel lapse, deletion, shutdown, reload), and a seeded
//! random walk checking after every step that the bindings installed by
//! the commands are exactly the channels the engine relays, both ways.

use crate::engine;

use std::collections::HashSet;
use std::net::SocketAddr;

use engine::*;
use rand::{Rng, SeedableRng};
use stun::attributes::*;
use stun::message::*;
use turnd::core::{ChannelBinding, Command, FiveTuple, Source};

const PEERS: [&str; 3] = ["198.18.0.1:5000", "198.18.0.1:5001", "198.18.0.2:7000"];

fn data(number: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = number.to_be_bytes().to_vec();
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// A signed request, logging in again when the nonce went stale.
fn ask(
    h: &mut Harness,
    ft: FiveTuple,
    c: &mut Creds,
    method: Method,
    n: u8,
    attrs: &[(AttrType, Vec<u8>)],
) -> Message {
    let resp = signed(h, ft, method, n, attrs, c);
    if error_code(&resp) != Some(438) {
        return resp;
    }
    *c = login(h, ft, USER, PASSWORD);
    signed(h, ft, method, n, attrs, c)
}

fn bind_req(
    h: &mut Harness,
    ft: FiveTuple,
    c: &mut Creds,
    number: u16,
    peer: &str,
    n: u8,
) -> Message {
    let attrs = [
        (
            ATTR_CHANNEL_NUMBER,
            vec![(number >> 8) as u8, number as u8, 0, 0],
        ),
        xor_attr(ATTR_XOR_PEER_ADDRESS, peer, tid(n)),
    ];
    ask(h, ft, c, METHOD_CHANNEL_BIND, n, &attrs)
}

fn permit_req(h: &mut Harness, ft: FiveTuple, c: &mut Creds, peer: &str, n: u8) -> Message {
    let attrs = [xor_attr(ATTR_XOR_PEER_ADDRESS, peer, tid(n))];
    ask(h, ft, c, METHOD_CREATE_PERMISSION, n, &attrs)
}

fn binding(ft: FiveTuple, port: u16, number: u16, peer: &str) -> ChannelBinding {
    ChannelBinding {
        client: ft,
        channel: number,
        relay: SocketAddr::new(RELAY_IP.parse().unwrap(), port),
        peer: peer.parse().unwrap(),
    }
}

#[test]
fn commands_follow_the_channel_lifecycle() {
    let mut h = Harness::new();
    let ft = client(1);
    let (mut c, port) = allocate(&mut h, ft);
    let b = binding(ft, port, 0x4000, PEERS[0]);
    assert!(h.server.take_commands().is_empty());

    assert_eq!(
        error_code(&bind_req(&mut h, ft, &mut c, 0x4000, PEERS[0], 10)),
        None
    );
    assert_eq!(h.server.take_commands(), vec![Command::ChannelInstalled(b)]);
    // A refresh of a live binding changes nothing in the kernel.
    assert_eq!(
        error_code(&bind_req(&mut h, ft, &mut c, 0x4000, PEERS[0], 11)),
        None
    );
    assert!(h.server.take_commands().is_empty());
    let resp = ask(&mut h, ft, &mut c, METHOD_REFRESH, 9, &[lifetime(3600)]);
    assert_eq!(error_code(&resp), None);

    // The permission (300 s) lapses before the channel (600 s).
    h.advance(301);
    assert_eq!(h.server.take_commands(), vec![Command::ChannelRemoved(b)]);
    // Renewing the permission makes the channel relayable again.
    assert_eq!(
        error_code(&permit_req(&mut h, ft, &mut c, PEERS[0], 12)),
        None
    );
    assert_eq!(h.server.take_commands(), vec![Command::ChannelInstalled(b)]);
    // The channel itself lapses at 600 s, the permission still held.
    h.advance(300);
    assert_eq!(h.server.take_commands(), vec![Command::ChannelRemoved(b)]);
    assert!(h.feed(ft, &data(0x4000, b"x")).is_empty());

    // Rebinding during the quarantine, then deleting the allocation.
    assert_eq!(
        error_code(&bind_req(&mut h, ft, &mut c, 0x4000, PEERS[0], 13)),
        None
    );
    assert_eq!(h.server.take_commands(), vec![Command::ChannelInstalled(b)]);
    let resp = ask(&mut h, ft, &mut c, METHOD_REFRESH, 14, &[lifetime(0)]);
    assert_eq!(error_code(&resp), None);
    assert_eq!(h.server.take_commands(), vec![Command::ChannelRemoved(b)]);
}

#[test]
fn shutdown_and_a_reload_denying_the_peer_remove_bindings() {
    let mut h = Harness::new();
    let (a, b) = (client(1), client(2));
    let (mut ca, pa) = allocate(&mut h, a);
    let (mut cb, pb) = allocate(&mut h, b);
    assert_eq!(
        error_code(&bind_req(&mut h, a, &mut ca, 0x4000, PEERS[0], 10)),
        None
    );
    assert_eq!(
        error_code(&bind_req(&mut h, b, &mut cb, 0x4001, PEERS[2], 11)),
        None
    );
    assert_eq!(h.server.take_commands().len(), 2);

    // 198.18.0.0/15 no longer allowed: both peers are denied again.
    let mut cfg = config();
    cfg.peer_policy = turnd::core::peer_policy::PeerPolicy::new(vec![], vec![]);
    h.server.reconfigure(h.now, cfg, &mut h.relays);
    let removed: HashSet<_> = h.server.take_commands().into_iter().collect();
    let want: HashSet<_> = [
        Command::ChannelRemoved(binding(a, pa, 0x4000, PEERS[0])),
        Command::ChannelRemoved(binding(b, pb, 0x4001, PEERS[2])),
    ]
    .into();
    assert_eq!(removed, want);
    assert!(
        h.feed(a, &data(0x4000, b"x")).is_empty(),
        "user space relays it still"
    );
    assert!(h.peer_sends(pa, PEERS[0], b"x").is_empty());

    // Back to allowing them: a new ChannelBind installs again; shutdown removes.
    h.server.reconfigure(h.now, config(), &mut h.relays);
    assert_eq!(
        error_code(&bind_req(&mut h, a, &mut ca, 0x4000, PEERS[0], 12)),
        None
    );
    assert_eq!(h.server.take_commands().len(), 1);
    h.server.shutdown(h.now, &mut h.relays);
    assert_eq!(
        h.server.take_commands(),
        vec![Command::ChannelRemoved(binding(a, pa, 0x4000, PEERS[0]))]
    );
}

/// What the engine relays right now, found by asking it: ChannelData on
/// each channel of each client, and datagrams from each peer.
fn relayed_by_engine(
    h: &mut Harness,
    clients: &[(FiveTuple, Option<u16>)],
) -> HashSet<ChannelBinding> {
    let mut live = HashSet::new();
    for (ft, port) in clients {
        let Some(port) = port else { continue };
        for number in [0x4000u16, 0x4001] {
            for t in h.feed(*ft, &data(number, b"probe")) {
                assert_eq!(
                    t.source,
                    Source::Relay(SocketAddr::new(RELAY_IP.parse().unwrap(), *port))
                );
                live.insert(binding(*ft, *port, number, &t.destination.to_string()));
            }
        }
        for peer in PEERS {
            for t in h.peer_sends(*port, peer, b"probe") {
                // Channel data back means the binding is live that way too.
                if t.payload[0] >> 6 == 1 {
                    let number = u16::from_be_bytes([t.payload[0], t.payload[1]]);
                    assert!(
                        live.contains(&binding(*ft, *port, number, peer)),
                        "relayed from {peer} on channel {number:#x} but not to it"
                    );
                }
            }
        }
    }
    live
}

#[test]
fn installed_bindings_always_equal_what_the_engine_relays() {
    let (mut installs, mut removals) = (0, 0);
    for seed in 0..8u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut h = Harness::new();
        let mut clients: Vec<(FiveTuple, Option<u16>, Option<Creds>)> =
            (1..=3).map(|i| (client(i), None, None)).collect();
        let mut installed: HashSet<ChannelBinding> = HashSet::new();
        for step in 0..150u32 {
            let n = (step % 200) as u8 + 20;
            let i = rng.gen_range(0..clients.len());
            let ft = clients[i].0;
            match rng.gen_range(0..10) {
                0 | 1 => {
                    if clients[i].1.is_none() {
                        let (c, port) = allocate(&mut h, ft);
                        clients[i].1 = Some(port);
                        clients[i].2 = Some(c);
                    }
                }
                2..=4 => {
                    if let Some(c) = clients[i].2.as_mut() {
                        let number = 0x4000 + rng.gen_range(0..2);
                        let peer = PEERS[rng.gen_range(0..PEERS.len())];
                        bind_req(&mut h, ft, c, number, peer, n);
                    }
                }
                5 => {
                    if let Some(c) = clients[i].2.as_mut() {
                        permit_req(&mut h, ft, c, PEERS[rng.gen_range(0..PEERS.len())], n);
                    }
                }
                6 => {
                    if let Some(c) = clients[i].2.as_mut() {
                        let secs = [0u32, 60, 900][rng.gen_range(0..3)];
                        ask(&mut h, ft, c, METHOD_REFRESH, n, &[lifetime(secs)]);
                        if secs == 0 {
                            clients[i].1 = None;
                            clients[i].2 = None;
                        }
                    }
                }
                7 => {
                    let mut cfg = config();
                    if rng.gen_bool(0.3) {
                        cfg.peer_policy = turnd::core::peer_policy::PeerPolicy::new(vec![], vec![]);
                    }
                    h.server.reconfigure(h.now, cfg, &mut h.relays);
                }
                _ => h.advance(rng.gen_range(1..400)),
            }
            // Allocations that expired are gone for the walk too.
            for (ft, port, creds) in clients.iter_mut() {
                if h.server.allocation(ft).is_none() {
                    *port = None;
                    *creds = None;
                }
            }
            for command in h.server.take_commands() {
                match command {
                    Command::ChannelInstalled(b) => {
                        installs += 1;
                        assert!(
                            installed.insert(b),
                            "seed {seed} step {step}: installed twice {b:?}"
                        )
                    }
                    Command::ChannelRemoved(b) => {
                        removals += 1;
                        assert!(
                            installed.remove(&b),
                            "seed {seed} step {step}: removed unknown {b:?}"
                        )
                    }
                    // The walk makes UDP allocations only.
                    other => panic!("seed {seed} step {step}: unexpected {other:?}"),
                }
            }
            let engine: Vec<_> = clients.iter().map(|(f, p, _)| (*f, *p)).collect();
            let live = relayed_by_engine(&mut h, &engine);
            assert_eq!(installed, live, "seed {seed} step {step}");
            let reported: HashSet<_> = h.server.installed_channels().copied().collect();
            assert_eq!(installed, reported, "seed {seed} step {step}");
        }
    }
    // The walk went through the states it is meant to check.
    assert!(
        installs > 20 && removals > 20,
        "{installs} installs, {removals} removals"
    );
}
