//! turnd under a soft file descriptor limit of 64 (and a hard one of 64,
//! so it cannot raise it): it warns at start that the config can use more,
//! answers 508 once only the reserve is left, counts and logs that, turns
//! `/readyz` not-ready, and is ready again when allocations end. Under a
//! hard limit above the soft one, it raises the soft limit at start.

// Deadlines for polling read the real clock.
#![allow(clippy::disallowed_methods)]

use crate::common;

use std::time::{Duration, Instant};

use common::raw::{error_code, RawClient};
use common::{Daemon, Launch, TestConfig, PASSWORD, USER};

/// The most allocations tried before 508 must have come.
const MAX_ALLOCATIONS: usize = 80;

fn config() -> String {
    TestConfig {
        extra: "[quota]\nallocations_per_user = 1000\n".into(),
        ..TestConfig::default()
    }
    .toml()
}

fn launch(soft: u64, hard: u64) -> Launch {
    Launch {
        nofile: Some((soft, hard)),
        ..Launch::default()
    }
}

/// Polls `/readyz` (at most 5 s) until it answers `want`.
fn wait_ready(d: &Daemon, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = d.http_get("/readyz");
        if status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz is {status} {body:?}, expected {want}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_low_limit_is_warned_about_and_exhaustion_is_counted_and_unready() {
    let d = Daemon::start_with(&config(), &launch(64, 64));
    let log = d.stderr();
    assert!(
        log.contains("file descriptor limit") && log.contains("limit=64"),
        "no warning about the limit:\n{log}"
    );
    wait_ready(&d, 200);

    let mut clients = Vec::new();
    let refused = loop {
        assert!(
            clients.len() < MAX_ALLOCATIONS,
            "{MAX_ALLOCATIONS} allocations under a limit of 64 descriptors"
        );
        let mut client = RawClient::with_credentials(d.udp_addr(), USER, PASSWORD);
        let resp = client.allocate_with(Vec::new);
        match error_code(&resp) {
            None => clients.push(client),
            Some(code) => break code,
        }
    };
    assert_eq!(refused, 508, "after {} allocations", clients.len());
    assert!(
        !clients.is_empty(),
        "not one allocation under 64 descriptors"
    );

    let scrape = d.scrape();
    assert_eq!(
        scrape.get("turnd_fd_exhausted_total", &[("operation", "allocate")]),
        1.0
    );
    assert_eq!(
        scrape.get("turnd_quota_rejections_total", &[("kind", "relay_ports")]),
        0.0,
        "out of descriptors is not out of relay ports"
    );
    assert!(
        d.stderr().contains("out of file descriptors"),
        "{}",
        d.stderr()
    );
    wait_ready(&d, 503);

    // Ending allocations frees descriptors: ready again, allocations work.
    for client in clients.iter_mut().take(4) {
        assert_eq!(error_code(&client.refresh(0)), None);
    }
    wait_ready(&d, 200);
    let mut client = RawClient::with_credentials(d.udp_addr(), USER, PASSWORD);
    assert_eq!(error_code(&client.allocate_with(Vec::new)), None);
}

#[test]
fn the_soft_limit_is_raised_to_the_hard_one() {
    let d = Daemon::start_with(&config(), &launch(64, 20_000));
    let status = std::fs::read_to_string(format!("/proc/{}/limits", d.pid())).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&fields[3..5], ["20000", "20000"], "{line}");
    assert!(
        !d.stderr().contains("file descriptor limit"),
        "20000 covers the config: {}",
        d.stderr()
    );
}
