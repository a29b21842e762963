//! `turnd check` fails on everything that would fail the start (log
//! filters, `workers`, addresses this host does not have), and warns, with
//! exit status 0, about settings that are legal but almost certainly a
//! mistake.

use crate::common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::{run_with_timeout, TestConfig, ToolRun};

fn check(toml: &str) -> ToolRun {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("turnd.toml");
    fs::write(&path, toml).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_turnd"));
    cmd.args(["check", "-c", path.to_str().unwrap()])
        .env_remove("TURND_CONFIG")
        .env_remove("RUST_LOG");
    run_with_timeout(&mut cmd, Duration::from_secs(30))
}

fn with_extra(extra: &str) -> String {
    TestConfig {
        extra: extra.into(),
        ..TestConfig::default()
    }
    .toml()
}

#[test]
fn check_fails_where_the_start_would() {
    for (toml, says) in [
        (
            with_extra("[log]\nlevel = \"debug,foo=bar=baz\"\n"),
            "log.level",
        ),
        (
            with_extra("[log]\nlevel = \"verbosee\"\n"),
            "not a log level",
        ),
        (
            format!("workers = 100000\n{}", TestConfig::default().toml()),
            "at most 1024",
        ),
        (
            TestConfig::default()
                .toml()
                .replace("udp = [\"127.0.0.1:0\"]", "udp = [\"192.0.2.1:3478\"]"),
            "listen.udp: 192.0.2.1 is not an address of this host",
        ),
        (
            TestConfig::default()
                .toml()
                .replace("bind = \"127.0.0.1\"", "bind = \"192.0.2.1\""),
            "relay.bind: 192.0.2.1",
        ),
    ] {
        let run = check(&toml);
        assert_eq!(run.status.code(), Some(1), "{toml}\n{}", run.output);
        assert!(
            run.output.contains(says),
            "{says:?} not in:\n{}",
            run.output
        );
    }
    let run = check(&with_extra("[log]\nlevel = \"warning\"\n"));
    assert!(run.status.success(), "{}", run.output);
}

#[test]
fn check_warns_about_likely_mistakes() {
    let clean = check(&TestConfig::default().toml());
    assert!(clean.status.success(), "{}", clean.output);
    assert!(!clean.output.contains("warning"), "{}", clean.output);

    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    fs::write(&cert_path, cert.pem()).unwrap();
    fs::write(&key_path, key.serialize_pem()).unwrap();
    let toml = TestConfig {
        rest_secrets: vec!["short".into()],
        extra: format!("[tls]\ncert = {cert_path:?}\nkey = {key_path:?}\n"),
        ..TestConfig::default()
    }
    .toml()
    .replace("udp = [\"127.0.0.1:0\"]", "udp = [\"127.0.0.1:900\"]")
    .replace("ports = \"61000-64999\"", "ports = \"800-1000\"")
    .replace("listen = \"127.0.0.1:0\"", "listen = \"0.0.0.0:0\"");
    let run = check(&toml);
    assert!(run.status.success(), "{toml}\n{}", run.output);
    assert!(run.output.contains(": ok"), "{}", run.output);
    for says in [
        "listen.udp port 900 is inside relay.ports",
        "[tls] is set but listen.tls is empty",
        "http.listen 0.0.0.0:0 is not a loopback address",
        "secret 1 has 5 bytes",
        "relay.ports (800-1000) starts below 1024",
    ] {
        assert!(
            run.output.contains(says),
            "{says:?} not in:\n{}",
            run.output
        );
    }
}

/// `[tls]` paths are relative to the config file's directory, and check
/// opens them (README `[tls]`).
#[test]
fn check_opens_the_certificate_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    fs::write(dir.path().join("key.pem"), "not a key").unwrap();
    let toml = TestConfig {
        extra: "[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n".into(),
        ..TestConfig::default()
    }
    .toml()
    .replace(
        "udp = [\"127.0.0.1:0\"]",
        "udp = [\"127.0.0.1:0\"]\ntls = [\"127.0.0.1:0\"]",
    );
    let path = dir.path().join("turnd.toml");
    fs::write(&path, toml).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_turnd"));
    cmd.current_dir("/")
        .args(["check", "-c", path.to_str().unwrap()])
        .env_remove("TURND_CONFIG");
    let run = run_with_timeout(&mut cmd, Duration::from_secs(30));
    assert_eq!(run.status.code(), Some(1), "{}", run.output);
    let cert = dir.path().join("cert.pem");
    assert!(
        run.output.contains(cert.to_str().unwrap()),
        "{}",
        run.output
    );
}
