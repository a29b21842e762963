//! `turnd health`, the container health check, run as the real binary
//! against a running daemon: 0 on /healthz and /readyz when they answer
//! 200, 1 with the reason when nothing listens, and the address taken from
//! the config with its `TURND_HTTP_LISTEN` override.

use crate::common;

use std::fs;
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use common::{run_with_timeout, TestConfig, ToolRun};

const RUN_TIMEOUT: Duration = Duration::from_secs(30);

fn health(args: &[&str], env: &[(&str, &str)]) -> ToolRun {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_turnd"));
    cmd.arg("health")
        .args(args)
        .env_remove("TURND_CONFIG")
        .env_remove("TURND_LOG_FORMAT")
        .envs(env.iter().copied());
    run_with_timeout(&mut cmd, RUN_TIMEOUT)
}

#[test]
fn health_asks_the_running_endpoint() {
    let daemon = TestConfig::default().start();
    let http = daemon.http_addr().to_string();

    let run = health(&["--address", &http], &[]);
    assert!(run.status.success(), "{}", run.output);
    assert!(run.output.contains("/healthz: 200 ok"), "{}", run.output);

    let run = health(&["--address", &http, "--ready"], &[]);
    assert!(run.status.success(), "{}", run.output);
    assert!(run.output.contains("/readyz: 200 ready"), "{}", run.output);

    // From the config file, its port-0 listen replaced by the environment.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("turnd.toml");
    fs::write(&path, TestConfig::default().toml()).unwrap();
    let path = path.to_str().unwrap();
    let run = health(&["--config", path], &[("TURND_HTTP_LISTEN", &http)]);
    assert!(run.status.success(), "{}", run.output);
    // Without the override the file's port 0 cannot be asked.
    let run = health(&["--config", path], &[]);
    assert!(!run.status.success(), "{}", run.output);
    assert!(run.output.contains("port 0"), "{}", run.output);
}

#[test]
fn health_fails_when_nothing_answers() {
    // A port that was just free: bound, then released.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let run = health(&["--address", &addr, "--timeout", "1s"], &[]);
    assert!(!run.status.success(), "{}", run.output);
    assert!(run.output.contains("cannot connect"), "{}", run.output);
}
