//! Logs as an operator sees them: `[log] redact` hides client addresses
//! and usernames; reloading `[log] level` on SIGHUP takes effect.

mod common;

use common::raw::RawClient;
use common::{TestConfig, PASSWORD, USER};

#[test]
fn redacted_logs_name_no_client_and_no_user() {
    let cfg = TestConfig {
        extra: "[log]\nlevel = \"debug\"\nredact = true\n".into(),
        ..TestConfig::default()
    };
    let d = cfg.start();
    let mut client = RawClient::with_credentials(d.udp_addr(), USER, PASSWORD);
    client.allocate();
    let port = client.local_addr().port();
    d.wait_for_metric("turnd_allocations_active", &[("transport", "udp")], 1.0);
    let log = d.stderr();
    assert!(log.contains("allocation created"), "{log}");
    assert!(
        !log.contains(&format!("127.0.0.1:{port}")),
        "client address in the log:\n{log}"
    );
    assert!(
        !log.contains(&format!("user={USER}")),
        "username in the log:\n{log}"
    );
    assert!(
        log.contains("client=~"),
        "redacted clients show as a hash:\n{log}"
    );
}

#[test]
fn plain_logs_name_the_client() {
    let d = TestConfig::default().start();
    let mut client = RawClient::with_credentials(d.udp_addr(), USER, PASSWORD);
    client.allocate();
    let port = client.local_addr().port();
    d.wait_for_metric("turnd_allocations_active", &[("transport", "udp")], 1.0);
    let log = d.stderr();
    assert!(log.contains(&format!("client=127.0.0.1:{port}")), "{log}");
    assert!(log.contains(&format!("user={USER}")), "{log}");
}

/// Routine per-allocation events are debug lines (issue 16 item 4): one
/// client refreshing in a loop must not write a line per request at the
/// default level (journald's rate limit would then drop everyone's lines).
#[test]
fn refreshes_and_permission_refreshes_are_not_logged_at_info() {
    let d = TestConfig::default().allow_loopback().start();
    let mut client = RawClient::with_credentials(d.udp_addr(), USER, PASSWORD);
    client.allocate();
    let peer: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    for _ in 0..200 {
        assert_eq!(common::raw::error_code(&client.refresh(600)), None);
        assert_eq!(
            common::raw::error_code(&client.create_permission(&[peer])),
            None
        );
    }
    d.wait_for_metric(
        "turnd_requests_total",
        &[("method", "refresh"), ("result", "success")],
        200.0,
    );
    let log = d.stderr();
    assert!(log.contains("allocation created"), "{log}");
    // The daemon runs at debug (tests/common); count what info would show.
    let lines = log
        .lines()
        .filter(|l| !l.contains(" DEBUG ") && !l.contains(" TRACE "))
        .count();
    assert!(
        lines < 20,
        "400 routine requests wrote {lines} info lines:\n{log}"
    );
}
