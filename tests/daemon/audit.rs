//! The audit log of the real daemon: failed logins, quota rejections and
//! peer denials at info under `turnd::audit` with the user and the client,
//! limited per source (the suppression counted and reported), and the
//! fail2ban filter of deploy/ run by Debian's `fail2ban-regex` against what
//! turnd really wrote, in both log formats.

#![allow(clippy::disallowed_methods)] // tests read the real clock

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::raw::{error_code, RawClient};
use common::{
    require_tool, rest_credential, run_with_timeout, unix_now, Daemon, TestConfig, PASSWORD, USER,
};

/// Unauthenticated answers are rate-limited too; the tests log in often.
const GENEROUS: &str = "[rate_limit]\nunauthenticated_per_s = 1000\nunauthenticated_burst = 1000\n";

fn daemon(format: &str) -> Daemon {
    daemon_with(format, 0)
}

/// `workers` 0: one per core. The audit limit is per worker.
fn daemon_with(format: &str, workers: u32) -> Daemon {
    let mut cfg = TestConfig::default();
    cfg.users.clear();
    cfg.rest_secrets = vec!["audit-secret".into()];
    cfg.extra = format!(
        "{GENEROUS}\n[log]\nformat = {format:?}\n\n[[users]]\nname = {USER:?}\npassword = {PASSWORD:?}\nallocations = 1\n"
    );
    Daemon::start(&format!("workers = {workers}\n{}", cfg.toml()))
}

/// One Allocate with `user`/`password`; the error code, if any.
fn login(d: &Daemon, user: &str, password: &str) -> Option<u16> {
    let mut c = RawClient::with_credentials(d.udp_addr(), user, password);
    error_code(&c.allocate_with(Vec::new))
}

fn audit_lines<'a>(log: &'a str, message: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|l| l.contains("turnd::audit") && l.contains(message))
        .collect()
}

/// Waits until the daemon's log holds `n` lines with `message`.
fn wait_for_lines(d: &Daemon, message: &str, n: usize) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = d.stderr();
        if audit_lines(&log, message).len() >= n || std::time::Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn failed_logins_quota_and_peer_denials_are_logged_with_user_and_client() {
    let d = daemon("text");
    assert_eq!(login(&d, USER, "not-the-password"), Some(401));
    assert_eq!(login(&d, "mallory", "guess"), Some(401));
    let (expired, pw) = rest_credential("audit-secret", "bob", unix_now() - 10);
    assert_eq!(login(&d, &expired, &pw), Some(401));

    // The quota: alice may hold one allocation.
    let mut first = RawClient::new(d.udp_addr());
    first.allocate();
    assert_eq!(login(&d, USER, PASSWORD), Some(486));
    // A peer in a private range.
    let resp = first.create_permission(&["10.1.2.3:5000".parse().unwrap()]);
    assert_eq!(error_code(&resp), Some(403));

    let log = wait_for_lines(&d, "peer denied", 1);
    let failed = audit_lines(&log, "authentication failed");
    assert_eq!(failed.len(), 3, "{log}");
    for (line, reason, user) in [
        (failed[0], "bad_integrity", USER),
        (failed[1], "unknown_user", "mallory"),
        (failed[2], "expired_credential", expired.as_str()),
    ] {
        assert!(line.contains(" INFO "), "{line}");
        assert!(line.contains(&format!("reason=\"{reason}\"")), "{line}");
        assert!(line.contains(&format!("user=\"{user}\"")), "{line}");
        assert!(line.contains("client=127.0.0.1:"), "{line}");
    }
    let quota = audit_lines(&log, "quota reached");
    assert_eq!(quota.len(), 1, "{log}");
    assert!(
        quota[0].contains("kind=\"user\"") && quota[0].contains(&format!("user=\"{USER}\"")),
        "{}",
        quota[0]
    );
    let denied = audit_lines(&log, "peer denied");
    assert!(
        denied[0].contains("reason=\"special_range\"")
            && denied[0].contains(&format!("user=\"{USER}\""))
            && denied[0].contains("peer=10.1.2.3:5000"),
        "{}",
        denied[0]
    );
}

#[test]
fn a_flood_of_failures_is_limited_per_source_and_counted() {
    // One worker: every client socket of 127.0.0.1 meets the same limit.
    let d = daemon_with("text", 1);
    let attempts = 40;
    for _ in 0..attempts {
        assert_eq!(login(&d, USER, "wrong"), Some(401));
    }
    let suppressed = |d: &Daemon| {
        d.scrape().get(
            "turnd_log_lines_suppressed_total",
            &[("kind", "auth_failure")],
        )
    };
    let log = d.stderr();
    let written = audit_lines(&log, "authentication failed").len();
    let held_back = suppressed(&d);
    assert!(written >= 10, "the burst is written: {written}\n{log}");
    assert!(
        held_back >= 1.0,
        "{attempts} failures at once: none suppressed"
    );
    assert_eq!(written as f64 + held_back, attempts as f64, "{log}");
    // Once the source's budget refills, its next line says how many it
    // missed: over all its lines, every suppressed one is accounted for.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(login(&d, USER, "wrong"), Some(401));
    let log = wait_for_lines(&d, "authentication failed", written + 1);
    let reported: f64 = audit_lines(&log, "authentication failed")
        .iter()
        .filter_map(|l| {
            l.split("suppressed=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .sum();
    assert_eq!(reported, suppressed(&d), "{log}");
}

/// `fail2ban-regex LOG FILTER` on turnd's own output: every failed-login
/// line matches, with the client's address, and nothing else does.
fn fail2ban_matches(format: &str) {
    if !require_tool("fail2ban-regex") {
        return;
    }
    let d = daemon(format);
    for _ in 0..3 {
        assert_eq!(login(&d, USER, "wrong"), Some(401));
    }
    assert_eq!(login(&d, "nobody", "x"), Some(401));
    RawClient::new(d.udp_addr()).allocate();
    let log = wait_for_lines(&d, "authentication failed", 4);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("turnd.log");
    std::fs::write(&path, &log).unwrap();
    let filter = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/fail2ban/filter.d/turnd.conf");
    let run = run_with_timeout(
        Command::new("fail2ban-regex")
            .arg("--print-all-matched")
            .arg(&path)
            .arg(&filter),
        Duration::from_secs(60),
    );
    assert!(run.status.success(), "{}", run.output);
    let matched = run
        .output
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("Lines: ")?;
            let n = rest.split(", ").find_map(|p| p.strip_suffix(" matched"))?;
            n.trim().parse::<usize>().ok()
        })
        .unwrap_or_else(|| panic!("no summary in fail2ban-regex output:\n{}", run.output));
    assert_eq!(matched, 4, "{}\nlog:\n{log}", run.output);
    assert!(
        run.output.contains("127.0.0.1"),
        "the banned address: {}",
        run.output
    );
}

#[test]
fn fail2ban_filter_matches_text_logs() {
    fail2ban_matches("text");
}

#[test]
fn fail2ban_filter_matches_json_logs() {
    fail2ban_matches("json");
}
