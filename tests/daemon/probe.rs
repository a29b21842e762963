//! `turnd probe` against a running turnd with the production peer policy
//! (loopback peers NOT allowed: the probe relays between two allocations,
//! and turnd always allows its own relayed addresses), over UDP and TCP,
//! with static and REST credentials; and its failures: wrong password,
//! wrong secret, wrong realm, closed UDP and TCP ports, a server that never
//! answers; TLS (`-t tls`) with a test CA given by --ca and a name by
//! --sni; ALTERNATE-SERVER from a draining server; a REST username given
//! with --password. Each run is bounded; the daemon is killed by PID.

// Deadlines for the probe processes read the clock.
#![allow(clippy::disallowed_methods)]

use crate::common;
use crate::stream_support::pki;

use std::fs;
use std::net::{TcpListener, UdpSocket};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::raw::RawClient;
use common::{Daemon, TestConfig, PASSWORD, REALM, USER};

/// The longest one probe may take (its own steps are bounded by --timeout).
const RUN_TIMEOUT: Duration = Duration::from_secs(30);
const SECRET: &str = "probe-secret";

fn probe(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_turnd"))
        .arg("probe")
        .args(args)
        .env_remove("TURND_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn turnd probe");
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        if child.try_wait().expect("poll turnd probe").is_some() {
            return child.wait_with_output().expect("collect the output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect the output");
            panic!(
                "turnd probe {args:?} ran longer than {RUN_TIMEOUT:?}:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The production-like test daemon: a static user, a REST secret, loopback
/// peers denied, UDP (and with `tcp`, TCP) listeners.
fn daemon(tcp: bool) -> Daemon {
    let config = TestConfig {
        rest_secrets: vec![SECRET.into()],
        ..TestConfig::default()
    };
    assert!(!config.allow_loopback);
    let mut toml = config.toml();
    if tcp {
        toml = toml.replacen(
            "udp = [\"127.0.0.1:0\"]\n",
            "udp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\n",
            1,
        );
    }
    Daemon::start(&toml)
}

fn assert_relays(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for step in [
        "binding",
        "allocate A",
        "allocate B",
        "permission",
        "channel bind",
        "relay A to B",
        "relay B to A",
        "release",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(step) && l.contains(" ms")),
            "no line for step {step:?}:\n{stdout}"
        );
    }
    assert!(stdout.contains("relaying works"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn probe_relays_over_udp_with_a_static_user_and_a_rest_secret() {
    let d = daemon(false);
    let server = d.udp_addr().to_string();
    assert_relays(&probe(&[
        "--server",
        &server,
        "--user",
        USER,
        "--password",
        PASSWORD,
        "--realm",
        REALM,
    ]));
    assert_relays(&probe(&["--server", &server, "--secret", SECRET]));

    // Both probes released their allocations.
    let scrape = d.wait_for_metric("turnd_allocations_active", &[("transport", "udp")], 0.0);
    assert_eq!(
        scrape.sum("turnd_allocations_created_total"),
        4.0,
        "two allocations per probe"
    );
}

#[test]
fn probe_relays_over_tcp_with_secret_and_password_files() {
    let d = daemon(true);
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("rest.secret");
    fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let password_file = dir.path().join("alice.pw");
    fs::write(&password_file, PASSWORD).unwrap();
    let server = d.tcp_addr().to_string();
    let out = probe(&[
        "-s",
        &server,
        "-t",
        "tcp",
        "--secret-file",
        secret_file.to_str().unwrap(),
    ]);
    assert_relays(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("connect"));
    assert_relays(&probe(&[
        "-s",
        &server,
        "--transport",
        "tcp",
        "-u",
        USER,
        "--password-file",
        password_file.to_str().unwrap(),
    ]));
}

#[test]
fn probe_reads_the_secret_from_the_config_and_reports_json() {
    let d = daemon(false);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("turnd.toml");
    fs::write(
        &config,
        TestConfig {
            rest_secrets: vec![SECRET.into()],
            ..TestConfig::default()
        }
        .toml(),
    )
    .unwrap();
    let server = d.udp_addr().to_string();
    let out = probe(&["-s", &server, "-c", config.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("--json printed no JSON ({e}):\n{}", text(&out)));
    assert_eq!(report["ok"], true);
    assert_eq!(report["address"], server.as_str());
    assert!(report["round_trip_ms"].as_f64().is_some_and(|ms| ms >= 0.0));
    let steps = report["steps"].as_array().unwrap();
    assert!(steps.iter().all(|s| s["status"] == "ok"), "{report}");
    assert!(steps.iter().any(|s| s["step"] == "relay B to A"));
}

/// Runs a probe expected to fail and returns its stdout + stderr.
fn probe_fails(args: &[&str], step: &str) -> String {
    let started = Instant::now();
    let out = probe(args);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains(&format!("FAIL  {step}")),
        "expected step {step:?} to fail:\n{all}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("failed at {step}")),
        "{all}"
    );
    assert!(!all.contains("relaying works"), "{all}");
    assert!(started.elapsed() < Duration::from_secs(10), "{all}");
    all
}

#[test]
fn probe_explains_wrong_credentials() {
    let d = daemon(false);
    let server = d.udp_addr().to_string();
    let all = probe_fails(
        &["-s", &server, "-u", USER, "--password", "not-the-password"],
        "allocate A",
    );
    assert!(
        all.contains("authentication failed") && all.contains("check user/password/realm"),
        "{all}"
    );
    assert!(all.contains(REALM), "the server's realm is named: {all}");

    let all = probe_fails(&["-s", &server, "--secret", "wrong-secret"], "allocate A");
    assert!(
        all.contains("authentication failed") && all.contains("[rest] secrets"),
        "{all}"
    );

    let all = probe_fails(
        &["-s", &server, "--secret", SECRET, "--realm", "elsewhere"],
        "realm",
    );
    assert!(all.contains("\"elsewhere\""), "{all}");
}

#[test]
fn probe_explains_closed_ports_and_silence() {
    // A UDP port nobody listens on: loopback answers ICMP port unreachable.
    let closed_udp = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let all = probe_fails(
        &[
            "-s",
            &closed_udp.to_string(),
            "--secret",
            SECRET,
            "--timeout",
            "2s",
        ],
        "binding",
    );
    assert!(
        all.contains("connection refused") || all.contains("no response"),
        "{all}"
    );

    let closed_tcp = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let all = probe_fails(
        &[
            "-s",
            &closed_tcp.to_string(),
            "-t",
            "tcp",
            "--secret",
            SECRET,
        ],
        "connect",
    );
    assert!(all.contains("connection refused"), "{all}");

    // A UDP socket that swallows everything: the step times out, bounded.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    let all = probe_fails(
        &[
            "-s",
            &silent.local_addr().unwrap().to_string(),
            "--secret",
            SECRET,
            "--timeout",
            "700ms",
        ],
        "binding",
    );
    assert!(
        all.contains("no response") && all.contains("700ms"),
        "{all}"
    );
    assert!(started.elapsed() >= Duration::from_millis(700));
    // It retransmitted (RFC 8489 §6.2.1): more than one request arrived.
    silent.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1500];
    let mut received = 0;
    while silent.recv_from(&mut buf).is_ok() {
        received += 1;
    }
    assert!(received >= 2, "{received} Binding request(s) received");
}

#[test]
fn probe_usage_errors() {
    let out = probe(&["-s", "127.0.0.1:3478", "--password", "p"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("--user"), "{}", text(&out));

    let out = probe(&["-s", "127.0.0.1:x", "--secret", "s"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("not a port"), "{}", text(&out));

    let out = probe(&["-s", "127.0.0.1", "--secret", "s", "--password", "p"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

const TLS_SECRET: &str = "probe-tls-secret";

#[test]
fn probe_checks_a_tls_listener_with_a_ca_and_sni() {
    let ca = pki::TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.server_cert("turnd test", 1).write_to(dir.path());
    let ca_pem = dir.path().join("ca.pem");
    fs::write(&ca_pem, &ca.cert_pem).unwrap();
    let toml = TestConfig {
        rest_secrets: vec![TLS_SECRET.into()],
        extra: format!("[tls]\ncert = {cert:?}\nkey = {key:?}\n"),
        ..TestConfig::default()
    }
    .toml()
    .replacen(
        "udp = [\"127.0.0.1:0\"]\n",
        "udp = [\"127.0.0.1:0\"]\ntls = [\"127.0.0.1:0\"]\n",
        1,
    );
    let d = Daemon::start(&toml);
    let server = d.tls_addr().to_string();
    let ca_path = ca_pem.to_str().unwrap();

    for sni in [None, Some("localhost")] {
        let mut args = vec![
            "-s", &server, "-t", "tls", "--ca", ca_path, "--secret", TLS_SECRET,
        ];
        if let Some(name) = sni {
            args.extend(["--sni", name]);
        }
        let out = probe(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("relaying works"), "{stdout}");
        assert!(stdout.contains("tls "), "{stdout}");
    }
    assert!(
        d.scrape()
            .get("turnd_connections_accepted_total", &[("transport", "tls")])
            >= 2.0
    );

    // A name the certificate is not for, and a CA that did not sign it.
    let out = probe(&[
        "-s",
        &server,
        "-t",
        "tls",
        "--ca",
        ca_path,
        "--sni",
        "elsewhere.example",
        "--secret",
        TLS_SECRET,
    ]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("FAIL  connect") && all.contains("--sni"),
        "{all}"
    );
    let other = pki::TestCa::new();
    let other_pem = dir.path().join("other.pem");
    fs::write(&other_pem, &other.cert_pem).unwrap();
    let out = probe(&[
        "-s",
        &server,
        "-t",
        "tls",
        "--ca",
        other_pem.to_str().unwrap(),
        "--secret",
        TLS_SECRET,
    ]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("FAIL  connect") && all.contains("--ca"),
        "{all}"
    );
}

#[test]
fn probe_names_the_alternate_server_of_a_draining_turnd() {
    let d = TestConfig {
        rest_secrets: vec![TLS_SECRET.into()],
        extra: "[drain]\nalternate_server = \"192.0.2.10:3478\"\n".into(),
        ..TestConfig::default()
    }
    .start();
    // A live allocation keeps the drain going.
    let mut client = RawClient::with_credentials(d.udp_addr(), USER, PASSWORD);
    client.allocate();
    let pid = d.pid().to_string();
    let sent = Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.scrape().get("turnd_draining", &[]) != 1.0 {
        assert!(Instant::now() < deadline, "turnd did not start draining");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = probe(&["-s", &d.udp_addr().to_string(), "--secret", TLS_SECRET]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("redirects new allocations to 192.0.2.10:3478"),
        "{all}"
    );
}

#[test]
fn probe_explains_a_rest_username_given_with_a_password() {
    let d = TestConfig {
        rest_secrets: vec![TLS_SECRET.into()],
        ..TestConfig::default()
    }
    .start();
    let out = probe(&[
        "-s",
        &d.udp_addr().to_string(),
        "-u",
        "1000:alice",
        "--password",
        "bm90LWl0",
    ]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("TURN REST username")
            && all.contains("expired")
            && !all.contains("[[users]] entry"),
        "{all}"
    );
}
