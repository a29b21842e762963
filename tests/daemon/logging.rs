//! Logs as an operator sees them: `[log] redact` hides client addresses
//! and usernames; reloading `[log] level` on SIGHUP takes effect; level
//! words of syslog and coturn work, unknown ones are refused by `check` and
//! at start alike, and warnings are never filtered out.

use crate::common;

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

/// Ctrl-C at a terminal: turnd says it drains and that a second Ctrl-C
/// exits at once; the second one does. Run under `script` for a terminal.
#[test]
fn interactive_stop_says_a_second_ctrl_c_exits() {
    if !common::require_tool("script") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("turnd.toml");
    let ready = dir.path().join("ready.json");
    let typescript = dir.path().join("typescript");
    std::fs::write(&config, TestConfig::default().toml()).unwrap();
    let command = format!(
        "exec {} --config {} --ready-file {}",
        env!("CARGO_BIN_EXE_turnd"),
        config.display(),
        ready.display()
    );
    let mut script = std::process::Command::new("script")
        .args(["-qfec", &command])
        .arg(&typescript)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn script");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let bound = wait_for(|| {
            let text = std::fs::read_to_string(&ready).ok()?;
            serde_json::from_str::<serde_json::Value>(&text).ok()
        });
        let udp: std::net::SocketAddr = bound["udp"][0].as_str().unwrap().parse().unwrap();
        let mut client = RawClient::with_credentials(udp, USER, PASSWORD);
        client.allocate();
        let pid = wait_for(|| turnd_below(script.id()));
        signal(pid, "INT");
        wait_for(|| {
            let text = std::fs::read_to_string(&typescript).ok()?;
            text.contains("press Ctrl-C again to exit now")
                .then_some(())
        });
        signal(pid, "INT");
        wait_for(|| script.try_wait().ok().flatten());
    }));
    if let Ok(None) = script.try_wait() {
        let _ = script.kill();
        let _ = script.wait();
    }
    if let Err(e) = result {
        eprintln!(
            "terminal output:\n{}",
            std::fs::read_to_string(&typescript).unwrap_or_default()
        );
        std::panic::resume_unwind(e);
    }
}

/// Polls `f` every 20 ms for at most 10 s.
fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..500 {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("timed out after 10 s");
}

/// The pid of the turnd process among `parent`'s children (script runs
/// the command through a shell, which `exec`s turnd).
fn turnd_below(parent: u32) -> Option<u32> {
    let children =
        std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
    children.split_whitespace().find_map(|c| {
        let pid: u32 = c.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        if comm.trim() == "turnd" {
            Some(pid)
        } else {
            turnd_below(pid)
        }
    })
}

fn signal(pid: u32, name: &str) {
    let sent = std::process::Command::new("sh")
        .args(["-c", &format!("kill -{name} {pid}")])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -{name} {pid}");
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
