//! The operator CLI, run as the real binary: `check` (and the old
//! `--check-config`), `credentials` (JSON shape, coturn-compatible HMAC,
//! accepted by a running turnd), `hash-key` (equal to md5sum's, accepted by
//! a running turnd), `completions`, `man`, every subcommand's `--help`, and
//! `--log-format json`.
//!
//! Every process is waited for with a time limit and killed by PID.

// The tests read the wall clock to check credential expiry times, and
// bound their waits with deadlines.
#![allow(clippy::disallowed_methods)]

use crate::common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;

use common::raw::RawClient;
use common::{TestConfig, PASSWORD, REALM, USER};

/// The longest any one CLI invocation may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);
const SECRET: &str = "north-wind-7";

/// Runs `turnd ARGS` with `stdin` piped in; waits at most [`RUN_TIMEOUT`].
fn turnd(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_turnd"))
        .args(args)
        .env_remove("TURND_CONFIG")
        .env_remove("TURND_LOG_FORMAT")
        .env_remove("RUST_LOG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn turnd");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        // A turnd that refuses its arguments exits without reading stdin.
        match pipe.write_all(input.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("write stdin: {e}"),
            _ => {}
        }
    }
    wait_output(child, args)
}

/// Collects a child's output, killing it (by PID) if it outlives [`RUN_TIMEOUT`].
fn wait_output(mut child: std::process::Child, what: &[&str]) -> Output {
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        if child.try_wait().expect("poll turnd").is_some() {
            return child.wait_with_output().expect("collect turnd's output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect turnd's output");
            panic!(
                "turnd {what:?} ran longer than {RUN_TIMEOUT:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn hmac_sha1_base64(secret: &str, message: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The one `iceServers` entry of `credentials` output.
fn ice_server(out: &Output) -> Value {
    let text = stdout(out);
    let json: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("credentials printed no JSON ({e}):\n{text}"));
    let servers = json["iceServers"]
        .as_array()
        .expect("iceServers is an array");
    assert_eq!(servers.len(), 1, "{text}");
    servers[0].clone()
}

fn urls(server: &Value) -> Vec<String> {
    server["urls"]
        .as_array()
        .expect("urls is an array")
        .iter()
        .map(|u| u.as_str().expect("a URL is a string").to_owned())
        .collect()
}

#[test]
fn credentials_are_coturn_compatible_json() {
    let before = unix_now();
    let out = turnd(
        &[
            "credentials",
            "--secret",
            SECRET,
            "--user",
            "alice",
            "--ttl",
            "1h",
            "--host",
            "turn.example.org",
            "--tls-port",
            "5349",
        ],
        None,
    );
    assert_success(&out, "credentials");
    assert!(out.stderr.is_empty(), "stderr: {}", stderr(&out));
    let server = ice_server(&out);
    let username = server["username"].as_str().expect("username");
    let (expiry, user) = username.split_once(':').expect("username is EXPIRY:USER");
    assert_eq!(user, "alice");
    let expiry: u64 = expiry.parse().expect("expiry is Unix seconds");
    assert!(
        (before + 3600..=unix_now() + 3600).contains(&expiry),
        "expiry {expiry} is not now + 1h (now {before})"
    );
    assert_eq!(
        server["credential"].as_str(),
        Some(hmac_sha1_base64(SECRET, username).as_str()),
        "credential must be base64(HMAC-SHA1(secret, username))"
    );
    assert_eq!(
        urls(&server),
        [
            "stun:turn.example.org:3478",
            "turn:turn.example.org:3478?transport=udp",
            "turn:turn.example.org:3478?transport=tcp",
            "turns:turn.example.org:5349?transport=tcp"
        ]
    );

    // --compact: the same object on one line; --url: listed as given.
    let out = turnd(
        &[
            "credentials",
            "--secret",
            SECRET,
            "-u",
            "bob",
            "--url",
            "turn:[2001:db8::1]:3478",
            "--compact",
        ],
        None,
    );
    assert_success(&out, "credentials --compact");
    assert_eq!(stdout(&out).trim_end().lines().count(), 1);
    assert_eq!(urls(&ice_server(&out)), ["turn:[2001:db8::1]:3478"]);
}

#[test]
fn credentials_from_the_config_are_accepted_by_turnd() {
    let config = TestConfig {
        users: Vec::new(),
        rest_secrets: vec!["old-secret".into(), SECRET.into()],
        ..TestConfig::default()
    };
    let daemon = config.start();
    let udp = daemon.udp_addr();

    // The config's first secret is current; minting from it must work...
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("turnd.toml");
    fs::write(&config_path, config.toml()).unwrap();
    let port = udp.port().to_string();
    let out = turnd(
        &[
            "credentials",
            "--config",
            config_path.to_str().unwrap(),
            "--user",
            "carol",
            "--host",
            "127.0.0.1",
            "--udp-port",
            &port,
        ],
        None,
    );
    assert_success(&out, "credentials --config");
    let server = ice_server(&out);
    // The test config has only a UDP listener.
    assert_eq!(
        urls(&server),
        [
            format!("stun:127.0.0.1:{port}"),
            format!("turn:127.0.0.1:{port}?transport=udp")
        ]
    );
    let username = server["username"].as_str().unwrap();
    let credential = server["credential"].as_str().unwrap();
    assert_eq!(credential, hmac_sha1_base64("old-secret", username));
    let mut client = RawClient::with_credentials(udp, username, credential);
    let relayed = client.allocate();
    assert_eq!(relayed.ip(), udp.ip());

    // ... and so must minting from a secret file with another rotation entry.
    let secret_file = dir.path().join("rest.secret");
    fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let out = turnd(
        &[
            "credentials",
            "--secret-file",
            secret_file.to_str().unwrap(),
            "--user",
            "dave",
            "--url",
            &format!("turn:{udp}"),
        ],
        None,
    );
    assert_success(&out, "credentials --secret-file");
    let server = ice_server(&out);
    let mut client = RawClient::with_credentials(
        udp,
        server["username"].as_str().unwrap(),
        server["credential"].as_str().unwrap(),
    );
    client.allocate();
}

#[test]
fn credentials_errors_say_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("turnd.toml");
    fs::write(&config_path, TestConfig::default().toml()).unwrap();
    let config = config_path.to_str().unwrap();

    let out = turnd(
        &["credentials", "-c", config, "-u", "a", "--url", "stun:h"],
        None,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("has no [rest] secrets"),
        "{}",
        stderr(&out)
    );

    let out = turnd(
        &["credentials", "-c", config, "--secret", "s", "-u", "a"],
        None,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--host"), "{}", stderr(&out));

    let out = turnd(
        &[
            "credentials",
            "--secret",
            "s",
            "-u",
            "a",
            "--url",
            "http://x",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a stun:"), "{}", stderr(&out));

    let out = turnd(
        &["credentials", "--secret", "s", "-u", "a", "--ttl", "0s"],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let out = turnd(
        &[
            "credentials",
            "--secret",
            "s",
            "--secret-file",
            "f",
            "-u",
            "a",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// A port in --host, port 0, a config whose relay.external is an IP while
/// the certificate names a host, and the shell output format.
#[test]
fn credentials_hosts_ports_certificate_names_and_shell_format() {
    let base = ["credentials", "--secret", SECRET, "-u", "alice"];
    let with = |extra: &[&str]| turnd(&[&base[..], extra].concat(), None);

    let out = with(&["--host", "203.0.113.7:3478"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("has a port"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    for port in ["--udp-port", "--tcp-port", "--tls-port"] {
        let out = with(&["--host", "turn.example.org", port, "0"]);
        assert_eq!(out.status.code(), Some(2), "{port} 0: {}", stderr(&out));
    }
    let out = with(&["--host", "[2001:db8::7]"]);
    assert_success(&out, "--host [2001:db8::7]");
    assert!(urls(&ice_server(&out)).contains(&"stun:[2001:db8::7]:3478".to_owned()));

    // relay.external is an IP; the certificate is for turn.example.org.
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["turn.example.org".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
    fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
    let config = dir.path().join("turnd.toml");
    fs::write(
        &config,
        "[listen]\nudp = [\"0.0.0.0:3478\"]\ntls = [\"0.0.0.0:5349\"]\n\
         [relay]\nexternal = \"203.0.113.7\"\n\
         [tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\
         [rest]\nsecrets = [\"s3cret\"]\n",
    )
    .unwrap();
    let out = turnd(
        &["credentials", "-c", config.to_str().unwrap(), "-u", "alice"],
        None,
    );
    assert_success(&out, "credentials -c");
    let got = urls(&ice_server(&out));
    assert!(got.contains(&"stun:203.0.113.7:3478".to_owned()), "{got:?}");
    assert!(
        got.contains(&"turns:turn.example.org:5349?transport=tcp".to_owned()),
        "{got:?}"
    );

    // Shell assignments, quoted: eval'd by sh they give the credential.
    let out = with(&["--format", "shell"]);
    assert_success(&out, "--format shell");
    let script = stdout(&out);
    let printed = Command::new("sh")
        .args([
            "-c",
            "eval \"$1\"; printf '%s\\n%s\\n%s' \"$TURN_USERNAME\" \"$TURN_CREDENTIAL\" \"$TURN_EXPIRES\"",
            "sh",
            &script,
        ])
        .output()
        .unwrap();
    let printed = String::from_utf8(printed.stdout).unwrap();
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 3, "{script}");
    assert!(lines[0].ends_with(":alice"), "{script}");
    assert_eq!(lines[1], hmac_sha1_base64(SECRET, lines[0]), "{script}");
    assert_eq!(lines[0].split(':').next(), Some(lines[2]), "{script}");
}

/// `printf '%s' TEXT | md5sum`, as the brief of `key` says.
fn md5sum(text: &str) -> String {
    let out = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(text.as_bytes())?;
            child.wait_with_output()
        })
        .expect("run md5sum");
    String::from_utf8(out.stdout).unwrap()[..32].to_owned()
}

#[test]
fn hash_key_matches_md5sum_every_way_the_password_comes() {
    let want = md5sum("u:r:p");
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    fs::write(&pw, "p\n").unwrap();
    let runs = [
        turnd(&["hash-key", "--user", "u", "--realm", "r"], Some("p")),
        turnd(&["hash-key", "--user", "u", "--realm", "r"], Some("p\n")),
        turnd(
            &[
                "hash-key",
                "-u",
                "u",
                "-r",
                "r",
                "--password-file",
                pw.to_str().unwrap(),
            ],
            None,
        ),
        turnd(&["hash-key", "-u", "u", "-r", "r", "--password", "p"], None),
    ];
    for out in &runs {
        assert_success(out, "hash-key");
        assert_eq!(stdout(out), format!("{want}\n"));
    }

    // The realm may come from the config.
    let config = dir.path().join("turnd.toml");
    fs::write(&config, TestConfig::default().toml()).unwrap();
    let out = turnd(
        &["hash-key", "-u", "u", "-c", config.to_str().unwrap()],
        Some("p"),
    );
    assert_success(&out, "hash-key --config");
    assert_eq!(stdout(&out).trim(), md5sum(&format!("u:{REALM}:p")));

    // Without a realm it refuses rather than guess.
    let out = turnd(&["hash-key", "-u", "u"], Some("p"));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--realm"), "{}", stderr(&out));
    let out = turnd(&["hash-key", "-u", "u", "-r", "r"], Some(""));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("empty"), "{}", stderr(&out));
}

#[test]
fn hash_key_toml_is_accepted_by_turnd() {
    let out = turnd(
        &["hash-key", "-u", USER, "-r", REALM, "--toml"],
        Some(PASSWORD),
    );
    assert_success(&out, "hash-key --toml");
    let table = stdout(&out);
    assert!(table.contains(&md5sum(&format!("{USER}:{REALM}:{PASSWORD}"))));
    let config = TestConfig {
        users: Vec::new(),
        extra: table,
        ..TestConfig::default()
    };
    let daemon = config.start();
    let mut client = RawClient::new(daemon.udp_addr());
    client.allocate();
}

#[test]
fn check_and_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    fs::write(&good, TestConfig::default().toml()).unwrap();
    let bad = dir.path().join("bad.toml");
    fs::write(&bad, "realm = \"r\"\n[relay]\nports = \"9-1\"\n").unwrap();
    let (good, bad) = (good.to_str().unwrap(), bad.to_str().unwrap());

    for args in [
        vec!["check", "--config", good],
        vec!["check", "-c", good],
        vec!["--check-config", "--config", good],
        vec!["-c", good, "check"],
    ] {
        let out = turnd(&args, None);
        assert_success(&out, &format!("{args:?}"));
        // The first line; then the per-node values and their sources.
        assert_eq!(
            stdout(&out).lines().next(),
            Some(format!("{good}: ok").as_str())
        );
    }
    for args in [
        vec!["check", "--config", bad],
        vec!["--check-config", "--config", bad],
    ] {
        let out = turnd(&args, None);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains(bad) && err.contains("line 3"),
            "{args:?}: {err}"
        );
    }
    // The certificate is checked too (what ExecStartPre relies on).
    let bad_cert = dir.path().join("tls.toml");
    fs::write(dir.path().join("cert.pem"), "not a certificate\n").unwrap();
    fs::write(dir.path().join("key.pem"), "not a key\n").unwrap();
    fs::write(
        &bad_cert,
        TestConfig::default().toml().replacen(
            "udp = [\"127.0.0.1:0\"]\n",
            "udp = [\"127.0.0.1:0\"]\ntls = [\"127.0.0.1:0\"]\n",
            1,
        ) + "[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n",
    )
    .unwrap();
    let bad_cert = bad_cert.to_str().unwrap();
    for args in [
        vec!["check", "--config", bad_cert],
        vec!["--check-config", "--config", bad_cert],
    ] {
        let out = turnd(&args, None);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("cert.pem"),
            "{args:?}: {}",
            stderr(&out)
        );
    }

    // TURND_CONFIG is honoured like --config.
    let out = Command::new(env!("CARGO_BIN_EXE_turnd"))
        .arg("check")
        .env("TURND_CONFIG", good)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map(|c| wait_output(c, &["check"]))
        .unwrap();
    assert_success(&out, "TURND_CONFIG=... turnd check");
}

#[test]
fn completions_and_man_pages() {
    for shell in ["bash", "zsh", "fish"] {
        let out = turnd(&["completions", shell], None);
        assert_success(&out, shell);
        let script = stdout(&out);
        for word in ["credentials", "hash-key", "probe", "log-format"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    let out = turnd(&["man"], None);
    assert_success(&out, "man");
    let page = stdout(&out);
    assert!(page.contains(".TH turnd 1"), "{page}");
    assert!(page.contains("turnd\\-probe(1)"), "{page}");

    let out = turnd(&["man", "probe"], None);
    assert_success(&out, "man probe");
    assert!(stdout(&out).contains(".TH turnd-probe 1"));

    let dir = tempfile::tempdir().unwrap();
    let out = turnd(&["man", "--dir", dir.path().to_str().unwrap()], None);
    assert_success(&out, "man --dir");
    for page in [
        "turnd.1",
        "turnd-check.1",
        "turnd-credentials.1",
        "turnd-probe.1",
    ] {
        let len = fs::metadata(dir.path().join(page))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 100, "{page} is missing or empty");
    }
}

#[test]
fn every_subcommand_help_has_examples() {
    for sub in [
        "check",
        "credentials",
        "hash-key",
        "probe",
        "completions",
        "man",
    ] {
        let out = turnd(&[sub, "--help"], None);
        assert_success(&out, &format!("{sub} --help"));
        let help = stdout(&out);
        assert!(
            help.contains("Examples:") && help.contains(&format!("turnd {sub} ")),
            "`turnd {sub} --help` shows no example:\n{help}"
        );
    }
    let out = turnd(&["--help"], None);
    assert!(stdout(&out).contains("Examples:"));
    // The password argument documents its risk.
    let out = turnd(&["hash-key", "--help"], None);
    assert!(stdout(&out).contains("`ps`"));
}

/// Runs the server with `args`, waits for its ready file, stops it (by
/// PID) and returns what it logged.
fn server_log(config: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready.json");
    let log = dir.path().join("stderr.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_turnd"));
    cmd.arg("--config")
        .arg(config)
        .arg("--ready-file")
        .arg(&ready)
        .args(args)
        .env_remove("TURND_LOG_FORMAT")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn turnd");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "turnd exited ({status}):\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("turnd wrote no ready file within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    fs::read_to_string(&log).unwrap()
}

#[test]
fn log_format_json_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("turnd.toml");
    fs::write(&config, TestConfig::default().toml()).unwrap();

    for (args, env) in [
        (vec!["--log-format", "json"], vec![]),
        (vec![], vec![("TURND_LOG_FORMAT", "json")]),
    ] {
        let log = server_log(&config, &args, &env);
        let lines: Vec<&str> = log.lines().collect();
        assert!(!lines.is_empty(), "nothing logged");
        for line in &lines {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
            assert!(
                v["level"].is_string() && v["timestamp"].is_string(),
                "{line}"
            );
        }
        let ready = lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["message"] == "turnd ready")
            .unwrap_or_else(|| panic!("no \"turnd ready\" event in {log}"));
        // Fields are top-level keys, not text inside the message.
        assert_eq!(ready["realm"], REALM, "{ready}");
        // Plain values: an address, not `Some(…)`; listeners one per event,
        // each address a plain string, not a list printed into a string.
        let http = ready["http"].as_str().unwrap_or_default();
        assert!(http.parse::<std::net::SocketAddr>().is_ok(), "{ready}");
        let listening: Vec<Value> = lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["message"] == "listening")
            .collect();
        assert_eq!(listening.len(), 1, "{log}");
        assert_eq!(listening[0]["transport"], "udp");
        assert!(
            listening[0]["addr"]
                .as_str()
                .is_some_and(|a| a.parse::<std::net::SocketAddr>().is_ok()),
            "{log}"
        );
    }

    // Text by default, without colours when stderr is not a terminal.
    let is_text = |log: &str| {
        log.contains("turnd ready") && !log.trim_start().starts_with('{') && !log.contains('\u{1b}')
    };
    let log = server_log(&config, &[], &[]);
    assert!(is_text(&log), "{log}");
    assert!(!log.contains("Some(") && !log.contains("=["), "{log}");

    // `[log] format = "json"` in the config; the flag wins over it.
    let json_config = dir.path().join("json.toml");
    fs::write(
        &json_config,
        TestConfig {
            extra: "[log]\nformat = \"json\"\n".into(),
            ..TestConfig::default()
        }
        .toml(),
    )
    .unwrap();
    let log = server_log(&json_config, &[], &[]);
    assert!(
        log.lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "{log}"
    );
    let log = server_log(&json_config, &["--log-format", "text"], &[]);
    assert!(is_text(&log), "{log}");

    let out = turnd(&["--log-format", "xml"], None);
    assert_eq!(out.status.code(), Some(2));
}

/// A start that fails after the listeners are bound (the HTTP port taken,
/// the ready file unwritable) exits at once with the reason, instead of
/// leaving the workers running with nobody to stop them.
#[test]
fn a_failed_start_exits_and_says_why() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a TCP port");
    let port = taken.local_addr().expect("local address").port();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("turnd.toml");
    let toml = TestConfig::default().toml().replace(
        "listen = \"127.0.0.1:0\"\n",
        &format!("listen = \"127.0.0.1:{port}\"\n"),
    );
    fs::write(&config, toml).expect("write config");
    let config = config.to_str().expect("utf-8 path");

    let started = Instant::now();
    let out = turnd(&["--config", config], None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stderr(&out)
            .matches(&format!("cannot bind HTTP endpoint on 127.0.0.1:{port}"))
            .count(),
        1,
        "the reason, once:\n{}",
        stderr(&out)
    );
    assert!(
        started.elapsed() < RUN_TIMEOUT,
        "turnd hung after a failed start"
    );
    drop(taken);

    let ready = dir.path().join("no-such-dir").join("ready.json");
    let fresh = dir.path().join("fresh.toml");
    fs::write(&fresh, TestConfig::default().toml()).expect("write config");
    let out = turnd(
        &[
            "--config",
            fresh.to_str().expect("utf-8 path"),
            "--ready-file",
            ready.to_str().expect("utf-8 path"),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot write ready file"),
        "{}",
        stderr(&out)
    );
}
