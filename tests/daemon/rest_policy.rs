//! TURN REST credentials an attacker shapes (issue 16 items 1 and 7): a
//! username holding a newline, ESC or NUL (a forged log line), one longer
//! than RFC 8489 §14.3 allows, an expiry that never comes, bare timestamps
//! each getting a quota of their own, and a RESERVATION-TOKEN (RFC 8656
//! §14.9) claimed by another user. Each is refused and counted by the real
//! daemon over UDP; the policies are `[rest] max_ttl_s`,
//! `max_username_bytes` and `username_chars`.

use crate::common;
use crate::hostile_support;

use common::raw::{error_code, relayed_address};
use common::{rest_credential, unix_now, Daemon, TestConfig};
use hostile_support::wire;
use hostile_support::{auth_failure, expect_changes, quota, Client, Snapshot};

const SECRET: &str = "rest-policy-secret";

/// A daemon with [`SECRET`], `rest` keys in its `[rest]` table and
/// `extra` tables.
fn daemon_with(rest: &str, extra: &str) -> Daemon {
    let mut cfg = TestConfig::default().allow_loopback();
    cfg.rest_secrets = vec![SECRET.to_string()];
    cfg.rest_extra = rest.to_string();
    cfg.extra = extra.to_string();
    cfg.start()
}

fn daemon(extra: &str) -> Daemon {
    daemon_with("", extra)
}

/// The 401 each [`Client`] draws to learn REALM and NONCE.
fn challenge() -> String {
    auth_failure("missing_integrity")
}

/// A client signing as REST username `EXPIRY:user` under [`SECRET`].
fn rest_client(d: &Daemon, user: &str, expiry: u64) -> Client {
    let (name, password) = rest_credential(SECRET, user, expiry);
    Client::with_credentials(d.udp_addr(), &name, &password)
}

/// A client signing as exactly `username` (no user part added).
fn raw_rest_client(d: &Daemon, username: &str) -> Client {
    let password = turnd::core::auth::rest_password(SECRET, username);
    Client::with_credentials(d.udp_addr(), username, &password)
}

#[test]
fn a_username_with_control_characters_is_refused_and_forges_no_log_line() {
    let d = daemon("");
    let expiry = unix_now() + 600;
    let forged = "eve\n2026-01-01T00:00:00.000000Z  INFO turnd::core::handlers: allocation created user=admin";
    let mut before = Snapshot::take(&d);
    for user in [
        forged,
        "eve\u{1b}[2Jadmin",
        "eve\0admin",
        "eve\rINFO",
        "eve\u{2028}x",
    ] {
        let c = rest_client(&d, user, expiry);
        let resp = c.allocate(&[]);
        assert_eq!(error_code(&resp), Some(401), "{user:?}: {resp}");
        before = expect_changes(
            &d,
            &before,
            &[(auth_failure("bad_username"), 1.0), (challenge(), 1.0)],
        );
    }
    // A name without them still works, Unicode letters included.
    let ok = rest_client(&d, "zoë", expiry);
    relayed_address(&ok.allocate(&[]));
    let log = d.stderr();
    assert!(log.contains("allocation created"), "{log}");
    assert!(
        !log.lines().any(|l| l.starts_with("2026-01-01T00:00:00")),
        "a forged line in the log:\n{log}"
    );
    assert!(!log.contains('\u{1b}') && !log.contains('\0'), "{log:?}");
}

#[test]
fn usernames_longer_than_the_limit_are_refused() {
    let d = daemon("");
    let expiry = unix_now() + 600;
    let stamp = format!("{expiry}:");
    // 508 bytes (RFC 8489 §14.3: fewer than 509) pass, 509 and 600 do not.
    let fits = "a".repeat(508 - stamp.len());
    relayed_address(&rest_client(&d, &fits, expiry).allocate(&[]));
    let mut before = Snapshot::take(&d);
    for len in [509, 514, 600] {
        let user = "a".repeat(len - stamp.len());
        let resp = rest_client(&d, &user, expiry).allocate(&[]);
        assert_eq!(error_code(&resp), Some(401), "{len} bytes: {resp}");
        before = expect_changes(
            &d,
            &before,
            &[(auth_failure("bad_username"), 1.0), (challenge(), 1.0)],
        );
    }
}

#[test]
fn a_credential_valid_for_longer_than_max_ttl_is_refused() {
    let d = daemon("");
    let before = Snapshot::take(&d);
    for expiry in [u64::MAX, unix_now() + 86_400 + 3600] {
        let resp = rest_client(&d, "eve", expiry).allocate(&[]);
        assert_eq!(error_code(&resp), Some(401), "expiry {expiry}: {resp}");
    }
    expect_changes(
        &d,
        &before,
        &[
            (auth_failure("credential_lifetime"), 2.0),
            (challenge(), 2.0),
        ],
    );
    relayed_address(&rest_client(&d, "eve", unix_now() + 86_000).allocate(&[]));

    // The limit is the operator's: one hour.
    let d = daemon_with("max_ttl_s = 3600\n", "");
    let resp = rest_client(&d, "eve", unix_now() + 7200).allocate(&[]);
    assert_eq!(error_code(&resp), Some(401), "{resp}");
    relayed_address(&rest_client(&d, "eve", unix_now() + 1800).allocate(&[]));
}

#[test]
fn bare_timestamps_share_one_quota() {
    let d = daemon("[quota]\nallocations_per_user = 2\n");
    let now = unix_now();
    let before = Snapshot::take(&d);
    for i in 0..2 {
        let c = raw_rest_client(&d, &(now + 600 + i).to_string());
        relayed_address(&c.allocate(&[]));
    }
    let third = raw_rest_client(&d, &(now + 700).to_string());
    let resp = third.allocate(&[]);
    assert_eq!(
        error_code(&resp),
        Some(486),
        "a third bare timestamp: {resp}"
    );
    expect_changes(&d, &before, &[(quota("user"), 1.0), (challenge(), 3.0)]);
}

#[test]
fn a_reservation_token_is_claimed_only_by_its_user() {
    let d = daemon("");
    let expiry = unix_now() + 600;
    let alice = rest_client(&d, "alice", expiry);
    let resp = alice.allocate(&[(wire::EVEN_PORT, vec![0x80])]);
    let even = relayed_address(&resp);
    let token = resp
        .get(stun::attributes::ATTR_RESERVATION_TOKEN)
        .expect("RESERVATION-TOKEN");
    let mallory = rest_client(&d, "mallory", expiry);
    let resp = mallory.allocate(&[(0x0022, token.clone())]);
    assert_eq!(
        error_code(&resp),
        Some(508),
        "mallory claims alice's token: {resp}"
    );
    // Alice, with a fresh credential of hers, still can.
    let alice2 = rest_client(&d, "alice", expiry + 1);
    let resp = alice2.allocate(&[(0x0022, token)]);
    assert_eq!(relayed_address(&resp).port(), even.port() + 1, "{resp}");
}
