//! `TURND_*` environment overrides, run as the real binary: a daemon whose
//! per-node values (listeners, external relay address, REST secret files,
//! HTTP endpoint, log format) come from its environment and not its file;
//! `turnd check` naming each value's source; an unknown `TURND_` variable
//! and a bad value refused with the variable's name.

use crate::common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::raw::{error_code, RawClient};
use common::{rest_credential, run_with_timeout, unix_now, Daemon, TestConfig};

const RUN_TIMEOUT: Duration = Duration::from_secs(30);
const FILE_SECRET: &str = "secret-in-the-file";
const ENV_SECRET: &str = "secret-from-the-mounted-file";

/// A test config with a REST secret inline, UDP only, HTTP on port 0.
fn config() -> TestConfig {
    TestConfig {
        rest_secrets: vec![FILE_SECRET.into()],
        ..TestConfig::default()
    }
}

/// Runs `turnd ARGS` with exactly the `TURND_*` variables given.
fn turnd(args: &[&str], env: &[(&str, &str)]) -> common::ToolRun {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_turnd"));
    cmd.args(args)
        .env_remove("TURND_CONFIG")
        .env_remove("TURND_LOG_FORMAT")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied());
    run_with_timeout(&mut cmd, RUN_TIMEOUT)
}

#[test]
fn daemon_takes_per_node_values_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("rest.secret");
    fs::write(&secret_file, format!("{ENV_SECRET}\n")).unwrap();
    let secret_path = secret_file.to_str().unwrap();

    let daemon = Daemon::start_with_env(
        &config().toml(),
        &[
            ("TURND_RELAY_EXTERNAL", "127.0.0.9"),
            ("TURND_REST_SECRET_FILES", secret_path),
            ("TURND_LISTEN_TCP", "127.0.0.1:0"),
            ("TURND_LOG_FORMAT", "json"),
        ],
    );
    // TURND_LISTEN_TCP added a listener the file does not have.
    assert_eq!(daemon.bound().tcp.len(), 1, "{:?}", daemon.bound());

    // The secret from the file named by the environment relays, and the
    // relayed address is the external one.
    let (user, pass) = rest_credential(ENV_SECRET, "bob", unix_now() + 600);
    let mut client = RawClient::with_credentials(daemon.udp_addr(), &user, &pass);
    let relayed = client.allocate();
    assert_eq!(relayed.ip().to_string(), "127.0.0.9", "XOR-RELAYED-ADDRESS");

    // TURND_REST_SECRET_FILES replaces the file's secrets: the inline one
    // no longer verifies.
    let (user, pass) = rest_credential(FILE_SECRET, "carol", unix_now() + 600);
    let mut client = RawClient::with_credentials(daemon.udp_addr(), &user, &pass);
    let resp = client.allocate_with(Vec::new);
    assert_eq!(error_code(&resp), Some(401), "{resp}");

    // TURND_LOG_FORMAT: every log line is a JSON object.
    let stderr = daemon.stderr();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no log line");
    for line in lines {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
}

#[test]
fn listen_and_http_addresses_come_from_the_environment() {
    // The file listens on UDP only; the environment moves UDP to another
    // loopback address and turns TCP and the HTTP endpoint on.
    let daemon = Daemon::start_with_env(
        &config().toml(),
        &[
            ("TURND_LISTEN_UDP", "127.0.0.2:0"),
            ("TURND_HTTP_LISTEN", "127.0.0.3:0"),
        ],
    );
    let bound = daemon.bound();
    assert_eq!(bound.udp.len(), 1);
    assert_eq!(bound.udp[0].ip().to_string(), "127.0.0.2");
    let http = bound.http.expect("HTTP endpoint bound");
    assert_eq!(http.ip().to_string(), "127.0.0.3");
    let (status, body) = daemon.http_get("/healthz");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn check_names_the_source_of_each_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("turnd.toml");
    fs::write(&path, config().toml()).unwrap();
    let secret_file = dir.path().join("a.secret");
    fs::write(&secret_file, ENV_SECRET).unwrap();
    let path = path.to_str().unwrap();

    let run = turnd(
        &["check", "--config", path],
        &[
            ("TURND_RELAY_EXTERNAL", "203.0.113.7"),
            // Relative to the config file's directory, as in the file.
            ("TURND_REST_SECRET_FILES", "a.secret, a.secret"),
        ],
    );
    assert!(run.status.success(), "{}", run.output);
    let line = |key: &str| {
        run.output
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no line for {key} in:\n{}", run.output))
            .to_owned()
    };
    let external = line("relay.external");
    assert!(external.contains("203.0.113.7"), "{external}");
    assert!(
        external.contains("environment TURND_RELAY_EXTERNAL"),
        "{external}"
    );
    let rest = line("rest.secrets");
    assert!(rest.contains("2 secrets"), "{rest}");
    assert!(rest.contains("TURND_REST_SECRET_FILES"), "{rest}");
    assert!(!run.output.contains(ENV_SECRET), "a secret was printed");
    assert!(line("relay.bind").contains(&format!("file {path}")));
    assert!(line("relay.ports").contains("file"));
    assert!(line("drain.alternate_server").contains("(default)"));
    assert!(line("log.format").contains("(default)"));
}

#[test]
fn an_unknown_turnd_variable_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("turnd.toml");
    fs::write(&path, config().toml()).unwrap();
    let path = path.to_str().unwrap();

    let typo = [("TURND_RELAY_EXTRENAL", "203.0.113.7")];
    let run = turnd(&["check", "--config", path], &typo);
    assert!(!run.status.success(), "{}", run.output);
    assert!(
        run.output.contains("TURND_RELAY_EXTRENAL"),
        "{}",
        run.output
    );
    assert!(
        run.output.contains("TURND_RELAY_EXTERNAL"),
        "{}",
        run.output
    );

    // The daemon refuses to start too (it exits; no ready file needed).
    let run = turnd(&["--config", path], &typo);
    assert!(!run.status.success(), "{}", run.output);
    assert!(run
        .output
        .contains("unknown environment variable TURND_RELAY_EXTRENAL"));

    // TURND_CONFIG, read by the command line, is not an unknown variable.
    let run = turnd(&["check"], &[("TURND_CONFIG", path)]);
    assert!(run.status.success(), "{}", run.output);
}

#[test]
fn a_bad_value_names_the_variable_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("turnd.toml");
    fs::write(&path, config().toml()).unwrap();
    let path = path.to_str().unwrap();

    for (var, value, expect) in [
        ("TURND_RELAY_EXTERNAL", "not-an-ip", "relay.external"),
        ("TURND_LISTEN_UDP", "127.0.0.1", "listen.udp"),
        ("TURND_RELAY_PORTS", "9-1", "relay.ports"),
        (
            "TURND_REST_SECRET_FILES",
            "/nonexistent/turnd.secret",
            "cannot read",
        ),
        ("TURND_LOG_FORMAT", "xml", "FORMAT"),
        // Valid alone, but not the family of relay.bind (127.0.0.1).
        ("TURND_RELAY_EXTERNAL", "2001:db8::7", "same address family"),
    ] {
        let run = turnd(&["check", "--config", path], &[(var, value)]);
        assert!(!run.status.success(), "{var}={value}: {}", run.output);
        assert!(run.output.contains(expect), "{var}={value}: {}", run.output);
        if var != "TURND_LOG_FORMAT" {
            // (clap rejects a bad TURND_LOG_FORMAT first, in its own words.)
            assert!(run.output.contains(var), "{var}={value}: {}", run.output);
        }
    }
}

#[test]
fn every_override_is_documented_in_the_readme() {
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for o in turnd::config::ENV_OVERRIDES {
        let row = format!("| `{}` | `", o.var);
        assert!(readme.contains(&row), "README lists no {} row", o.var);
    }
}

#[test]
fn a_file_variable_carries_the_value_an_init_step_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("turnd.toml");
    fs::write(&path, config().toml()).unwrap();
    let external = dir.path().join("external");
    fs::write(&external, "127.0.0.9\n").unwrap();
    let path = path.to_str().unwrap();
    let file_var = [("TURND_RELAY_EXTERNAL_FILE", external.to_str().unwrap())];

    let run = turnd(&["check", "--config", path], &file_var);
    assert!(run.status.success(), "{}", run.output);
    let line = run
        .output
        .lines()
        .find(|l| l.trim_start().starts_with("relay.external"))
        .unwrap();
    assert!(line.contains("127.0.0.9"), "{line}");
    assert!(
        line.contains("environment TURND_RELAY_EXTERNAL_FILE"),
        "{line}"
    );

    // The daemon advertises it.
    let daemon = Daemon::start_with_env(&config().toml(), &file_var);
    let (user, pass) = rest_credential(FILE_SECRET, "dave", unix_now() + 600);
    let mut client = RawClient::with_credentials(daemon.udp_addr(), &user, &pass);
    assert_eq!(client.allocate().ip().to_string(), "127.0.0.9");

    // Both forms at once is ambiguous, a missing file an error.
    let both = [file_var[0], ("TURND_RELAY_EXTERNAL", "127.0.0.8")];
    let run = turnd(&["check", "--config", path], &both);
    assert!(!run.status.success(), "{}", run.output);
    assert!(
        run.output.contains("both set relay.external"),
        "{}",
        run.output
    );
    let missing = [("TURND_RELAY_EXTERNAL_FILE", "/nonexistent/external")];
    let run = turnd(&["check", "--config", path], &missing);
    assert!(!run.status.success(), "{}", run.output);
    assert!(
        run.output
            .contains("TURND_RELAY_EXTERNAL_FILE: cannot read"),
        "{}",
        run.output
    );
}
