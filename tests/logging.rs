//! Logs as an operator sees them: `[log] redact` hides client addresses
//! and usernames; reloading `[log] level` on SIGHUP takes effect; level
//! words of syslog and coturn work, unknown ones are refused by `check` and
//! at start alike, and warnings are never filtered out.

mod common;

use common::raw::RawClient;
use common::{Daemon, Launch, TestConfig, PASSWORD, USER};

/// The warning a config without credentials logs at start.
const NO_CREDENTIALS_WARNING: &str = "no [[users]] and no [rest] secrets configured";

/// A config without credentials (so turnd warns at start) and `[log] level`.
fn config_with_level(level: &str) -> String {
    TestConfig {
        users: Vec::new(),
        extra: format!("[log]\nlevel = {level:?}\n"),
        ..TestConfig::default()
    }
    .toml()
}

fn launch(env: &[(&str, &str)], flag: Option<&str>) -> Launch {
    Launch {
        log_level: Some(flag.unwrap_or("").to_owned()),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        nofile: None,
    }
}

/// `warning` (syslog) and `verbose` (coturn) are levels, in the config,
/// RUST_LOG and --log-level; a filter never hides warnings.
#[test]
fn level_aliases_and_warnings_always_shown() {
    for (level, env, flag, info_shown) in [
        ("warning", vec![], None, false),
        ("verbose", vec![], None, true),
        ("info", vec![("RUST_LOG", "warning")], None, false),
        ("info", vec![], Some("verbose"), true),
        ("error", vec![], None, false),
        ("off", vec![], None, false),
        ("info,turnd=error", vec![], None, false),
    ] {
        let d = Daemon::start_with(&config_with_level(level), &launch(&env, flag));
        let log = d.stderr();
        assert!(
            log.contains(NO_CREDENTIALS_WARNING),
            "level {level:?} env {env:?} flag {flag:?} hid a warning:\n{log}"
        );
        assert_eq!(
            log.contains("turnd ready"),
            info_shown,
            "level {level:?} env {env:?} flag {flag:?}:\n{log}"
        );
    }
}

/// A word that is not a level fails at start, naming where it came from.
#[test]
fn unknown_levels_fail_the_start() {
    for (level, env, flag, named) in [
        ("loud", vec![], None, "log.level"),
        ("debug,foo=bar=baz", vec![], None, "log.level"),
        ("info", vec![("RUST_LOG", "warnings")], None, "RUST_LOG"),
        ("info", vec![], Some("chatty"), "--log-level"),
    ] {
        let (status, stderr) = Daemon::try_start(&config_with_level(level), &launch(&env, flag))
            .err()
            .unwrap_or_else(|| panic!("level {level:?} env {env:?} flag {flag:?} started"));
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(named) && stderr.contains("not"), "{stderr}");
    }
}

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
