//! Bandwidth caps (`[quota] max_bps_per_allocation`, `max_bps_per_user`,
//! `bps_capacity`) on the engine's virtual time: exactly one second's worth
//! of the cap passes at once and then the cap per second, the rest is
//! dropped and counted; over the server's capacity a new Allocate gets 508
//! (or 300 to an alternate); a capped allocation's channels are never
//! offloaded to the kernel.

use crate::engine;

use engine::*;
use stun::attributes::*;
use stun::message::*;
use turnd::core::bandwidth::Caps;
use turnd::core::redirect::Alternate;
use turnd::core::{Command, FiveTuple};

fn capped(caps: Caps) -> Harness {
    let mut cfg = config();
    cfg.caps = caps;
    Harness::with(cfg)
}

fn cap_drops(h: &mut Harness) -> f64 {
    h.counter(
        "turnd_dropped_packets_total",
        &[("reason", "bandwidth_cap")],
    )
}

/// How many of `n` 100-byte ChannelData packets from `ft` reach the peer.
fn send_channel(h: &mut Harness, ft: FiveTuple, n: usize) -> usize {
    (0..n)
        .filter(|_| !h.feed(ft, &channel_data(0x4000, &[7; 100])).is_empty())
        .count()
}

/// How many of `n` 100-byte datagrams from the peer reach the client.
fn from_peer(h: &mut Harness, port: u16, n: usize) -> usize {
    (0..n)
        .filter(|_| !h.peer_sends(port, PEER, &[7; 100]).is_empty())
        .count()
}

fn with_channel(h: &mut Harness, ft: FiveTuple) -> u16 {
    let (c, port) = allocate(h, ft);
    assert_eq!(error_code(&bind(h, ft, &c, 0x4000, PEER, 5)), None);
    port
}

#[test]
fn per_allocation_cap_passes_exactly_its_rate_each_way() {
    let mut h = capped(Caps {
        per_allocation: 1000,
        ..Caps::default()
    });
    let ft = client(1);
    let port = with_channel(&mut h, ft);
    assert_eq!(send_channel(&mut h, ft, 25), 10, "1000 B at once");
    assert_eq!(from_peer(&mut h, port, 25), 10, "the other way, its own");
    assert_eq!(cap_drops(&mut h), 30.0);
    h.advance(1);
    assert_eq!(send_channel(&mut h, ft, 25), 10, "1000 B per second");
    // A Send indication is capped the same way.
    h.advance(1);
    let sent = (0..15)
        .filter(|_| !h.feed(ft, &send_indication(PEER, &[1; 100], 9)).is_empty())
        .count();
    assert_eq!(sent, 10);
    assert_eq!(cap_drops(&mut h), 50.0);
}

#[test]
fn per_user_cap_spans_the_users_allocations_and_server_capacity_refuses_allocates() {
    let mut h = capped(Caps {
        per_user: 1500,
        ..Caps::default()
    });
    let (a, b) = (client(1), client(2));
    with_channel(&mut h, a);
    with_channel(&mut h, b);
    assert_eq!(send_channel(&mut h, a, 10), 10);
    assert_eq!(send_channel(&mut h, b, 10), 5, "alice's second allocation");
    let (c, port) = allocate_as(&mut h, client(3), "bob");
    assert_eq!(error_code(&permit(&mut h, client(3), &c, &[PEER], 6)), None);
    assert_eq!(from_peer(&mut h, port, 20), 15, "bob has his own");

    // Server capacity: the Allocate after a drop over it gets 508.
    let mut h = capped(Caps {
        capacity: 500,
        ..Caps::default()
    });
    let a = client(1);
    with_channel(&mut h, a);
    assert_eq!(send_channel(&mut h, a, 5), 5);
    assert_eq!(
        try_allocate(&mut h, 2),
        None,
        "at the capacity, not over it"
    );
    assert_eq!(send_channel(&mut h, a, 5), 0);
    assert_eq!(
        try_allocate(&mut h, 3).and_then(|r| error_code(&r)),
        Some(508)
    );
    assert_eq!(
        h.counter("turnd_quota_rejections_total", &[("kind", "bandwidth")]),
        1.0
    );
    // With an alternate configured: 300 to it instead.
    let mut cfg = config();
    cfg.caps.capacity = 500;
    cfg.redirect.alternates = vec![Alternate {
        address: "192.0.2.99:3478".parse().unwrap(),
        domain: None,
    }];
    h.server.reconfigure(h.now, cfg, &mut h.relays);
    let r = try_allocate(&mut h, 4).expect("an error");
    assert_eq!(error_code(&r), Some(300));
    let mut alt = stun::addr::MappedAddress::default();
    alt.get_from_as(&r, ATTR_ALTERNATE_SERVER).unwrap();
    assert_eq!(alt.port, 3478);
    assert_eq!(alt.ip.to_string(), "192.0.2.99");
    // Two seconds without a drop: allocations are taken again.
    h.advance(3);
    assert_eq!(try_allocate(&mut h, 5), None);
}

/// An Allocate as bob from client port `n`: `None` on success, else the
/// error response.
fn try_allocate(h: &mut Harness, n: u16) -> Option<Message> {
    let c = login(h, client(n), "bob", PASSWORD);
    let req = build(
        METHOD_ALLOCATE,
        CLASS_REQUEST,
        tid(1),
        &[transport_udp()],
        Some(&c),
        false,
    );
    let r = h.request(client(n), &req);
    error_code(&r).map(|_| r)
}

#[test]
fn no_channel_of_a_capped_allocation_is_offloaded() {
    let mut h = capped(Caps {
        per_allocation: 1_000_000,
        ..Caps::default()
    });
    let ft = client(1);
    let port = with_channel(&mut h, ft);
    assert!(
        !h.server
            .take_commands()
            .iter()
            .any(|c| matches!(c, Command::ChannelInstalled(_))),
        "capped: relayed in user space only"
    );
    assert_eq!(send_channel(&mut h, ft, 1), 1, "and relayed there");
    // Lifting the cap (reload) hands the channel to the kernel path;
    // setting one again takes it back.
    h.server.reconfigure(h.now, config(), &mut h.relays);
    let cmds = h.server.take_commands();
    assert!(
        matches!(cmds.as_slice(), [Command::ChannelInstalled(b)] if b.relay.port() == port),
        "{cmds:?}"
    );
    let mut cfg = config();
    cfg.caps.per_user = 10;
    h.server.reconfigure(h.now, cfg, &mut h.relays);
    assert!(matches!(
        h.server.take_commands().as_slice(),
        [Command::ChannelRemoved(_)]
    ));
}
