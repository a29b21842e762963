//! SIGHUP takes credentials away from live sessions (issue 10): a static
//! user removed from the config and a REST secret rotated out end the
//! allocations they authenticated at once (relaying stops both ways, the
//! client's next request gets 401, `turnd_allocations_ended_total` says
//! `reload`, a usage record is written), while the sessions of credentials
//! that remain keep relaying.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use crate::common::raw::{error_code, RawClient, Relayed};
use crate::common::{rest_credential, unix_now, Daemon, TestConfig, PASSWORD, USER};

const QUIET: Duration = Duration::from_millis(500);
const STEP: Duration = Duration::from_secs(10);
const ENDED: &str = "turnd_allocations_ended_total";

fn config(users: &[&str], secrets: &[&str]) -> TestConfig {
    TestConfig {
        users: users
            .iter()
            .map(|u| (u.to_string(), format!("{u}-{PASSWORD}")))
            .collect(),
        rest_secrets: secrets.iter().map(|s| s.to_string()).collect(),
        extra: "[log]\nlevel = \"info\"\n".into(),
        ..TestConfig::default().allow_loopback()
    }
}

/// An allocation of `user` with a permission for `peer`; its relayed address.
fn session(d: &Daemon, user: &str, password: &str, peer: SocketAddr) -> (RawClient, SocketAddr) {
    let mut c = RawClient::with_credentials(d.udp_addr(), user, password);
    let relayed = c.allocate();
    let resp = c.create_permission(&[peer]);
    assert_eq!(error_code(&resp), None, "CreatePermission: {resp}");
    (c, relayed)
}

/// Whether a datagram from `peer` to `relayed` reaches `client`.
fn relays(client: &mut RawClient, peer: &UdpSocket, relayed: SocketAddr, within: Duration) -> bool {
    peer.send_to(b"ping", relayed).unwrap();
    matches!(client.recv_relayed(within), Some(Relayed::Indication { data, .. }) if data == b"ping")
}

#[test]
fn removing_a_user_or_a_secret_ends_their_allocations_at_once() {
    let before = config(&[USER, "bob"], &["old-secret", "kept-secret"]);
    let d = before.start();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(STEP)).unwrap();
    let p = peer.local_addr().unwrap();

    let (mut alice, alice_relay) = session(&d, USER, &format!("{USER}-{PASSWORD}"), p);
    let (mut bob, bob_relay) = session(&d, "bob", &format!("bob-{PASSWORD}"), p);
    let expiry = unix_now() + 3600;
    let (old_user, old_pass) = rest_credential("old-secret", "carol", expiry);
    let (mut carol, carol_relay) = session(&d, &old_user, &old_pass, p);
    let (kept_user, kept_pass) = rest_credential("kept-secret", "dave", expiry);
    let (mut dave, dave_relay) = session(&d, &kept_user, &kept_pass, p);
    for (c, r) in [
        (&mut alice, alice_relay),
        (&mut bob, bob_relay),
        (&mut carol, carol_relay),
        (&mut dave, dave_relay),
    ] {
        assert!(relays(c, &peer, r, STEP), "relays before the reload");
    }

    // bob and the old secret go; alice and the kept secret stay.
    d.reload(&config(&[USER], &["kept-secret"]).toml());
    d.wait_for_metric(ENDED, &[("transport", "udp"), ("reason", "reload")], 2.0);

    assert!(
        !relays(&mut bob, &peer, bob_relay, QUIET),
        "bob relays after removal"
    );
    assert!(
        !relays(&mut carol, &peer, carol_relay, QUIET),
        "the old secret's session relays"
    );
    bob.send_indication(p, b"from bob");
    carol.send_indication(p, b"from carol");
    let mut buf = [0u8; 64];
    peer.set_read_timeout(Some(QUIET)).unwrap();
    assert!(
        peer.recv_from(&mut buf).is_err(),
        "a removed session reached the peer"
    );
    assert_eq!(
        error_code(&bob.refresh(600)),
        Some(401),
        "bob's credential is gone"
    );

    assert!(
        relays(&mut alice, &peer, alice_relay, STEP),
        "alice still relays"
    );
    assert!(
        relays(&mut dave, &peer, dave_relay, STEP),
        "the kept secret still relays"
    );
    assert_eq!(error_code(&alice.refresh(600)), None);
    let m = d.scrape();
    assert_eq!(
        m.get("turnd_allocations_active", &[("transport", "udp")]),
        2.0
    );
    let log = d.stderr();
    assert!(
        log.contains("reload: credential removed or changed, ending its allocation"),
        "{log}"
    );
    let usage = d.log_lines("turnd::usage", 2);
    assert_eq!(
        usage
            .iter()
            .filter(|l| l.contains("reason=\"reload\""))
            .count(),
        2,
        "a usage record per ended allocation:\n{log}"
    );
}
