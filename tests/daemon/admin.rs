//! The admin API of the real daemon and `turnd admin`: a bearer token or
//! 401; list allocations (all or a user's), end one, end a user's, revoke a
//! user (its allocations end at once, its logins get 401) and lift it; the
//! revocation survives a restart through the state file.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::raw::{error_code, RawClient};
use common::{rest_credential, unix_now, Daemon, TestConfig};

const TOKEN: &str = "an-admin-token-for-tests-0123456789";
const SECRET: &str = "admin-test-secret";

fn daemon(dir: &Path) -> Daemon {
    let token = dir.join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let mut cfg = TestConfig::default().allow_loopback();
    cfg.rest_secrets = vec![SECRET.into()];
    cfg.extra = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = {:?}\nstate_dir = {:?}\n",
        token.display().to_string(),
        dir.join("state").display().to_string()
    );
    cfg.start()
}

/// One request to the admin API; the status and the JSON body.
fn call(d: &Daemon, method: &str, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let addr = d.bound().admin.expect("admin API bound");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

fn list(d: &Daemon, query: &str) -> Vec<serde_json::Value> {
    let (status, body) = call(d, "GET", &format!("/allocations{query}"), Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    body["allocations"].as_array().unwrap().clone()
}

/// `turnd admin --addr A --token-file F ARGS...`; its stdout.
fn cli(d: &Daemon, dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_turnd"))
        .arg("admin")
        .arg("--addr")
        .arg(d.bound().admin.unwrap().to_string())
        .arg("--token-file")
        .arg(dir.join("token"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn list_end_and_end_by_user_stop_relaying_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path());
    let (s, b) = call(&d, "GET", "/allocations", None);
    assert_eq!((s, b["error"].as_str()), (401, Some("unauthorized")));
    assert_eq!(
        call(
            &d,
            "GET",
            "/allocations",
            Some("wrong-token-of-some-length")
        )
        .0,
        401
    );
    assert!(!d.stderr().contains(TOKEN), "the token is never logged");

    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let mut alice: Vec<RawClient> = (0..2).map(|_| RawClient::new(d.udp_addr())).collect();
    for c in &mut alice {
        c.allocate();
        assert_eq!(error_code(&c.create_permission(&[peer_addr])), None);
    }
    let (bob_name, bob_pw) = rest_credential(SECRET, "bob", unix_now() + 3600);
    let mut bob = RawClient::with_credentials(d.udp_addr(), &bob_name, &bob_pw);
    bob.allocate();
    alice[0].send_indication(peer_addr, b"hello");
    let mut buf = [0u8; 64];
    assert_eq!(peer.recv_from(&mut buf).unwrap().0, 5);

    let all = list(&d, "");
    assert_eq!(all.len(), 3);
    let mine = list(&d, "?user=alice");
    assert_eq!(mine.len(), 2);
    assert_eq!(
        list(&d, "?user=bob").len(),
        1,
        "a REST user by its user part"
    );
    let first = mine
        .iter()
        .find(|a| a["client"] == alice[0].local_addr().to_string())
        .unwrap();
    assert_eq!(first["transport"], "udp");
    assert_eq!(first["permissions"][0], "127.0.0.1");
    assert_eq!(first["sent"]["bytes"], 5);
    assert!(first["expires"].as_u64().unwrap() > first["created"].as_u64().unwrap());

    // End one: its traffic stops at once.
    let id = first["id"].as_str().unwrap();
    let (s, _) = call(&d, "DELETE", &format!("/allocations/{id}"), Some(TOKEN));
    assert_eq!(s, 200);
    alice[0].send_indication(peer_addr, b"after");
    assert!(peer.recv_from(&mut buf).is_err(), "relayed after the end");
    assert_eq!(error_code(&alice[0].refresh(600)), Some(437));
    assert_eq!(
        call(&d, "DELETE", &format!("/allocations/{id}"), Some(TOKEN)).0,
        404
    );

    // End a user's, from the shell.
    let out = cli(&d, dir.path(), &["end-user", "alice"]);
    assert!(out.contains("\"ended\":1"), "{out}");
    alice[1].send_indication(peer_addr, b"after");
    assert!(peer.recv_from(&mut buf).is_err(), "relayed after the end");
    assert_eq!(list(&d, "").len(), 1);
    assert_eq!(
        d.scrape().get(
            "turnd_allocations_ended_total",
            &[("transport", "udp"), ("reason", "admin")]
        ),
        2.0
    );
}

#[test]
fn a_revocation_ends_allocations_refuses_logins_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path());
    let (bob_name, bob_pw) = rest_credential(SECRET, "bob", unix_now() + 3600);
    let mut bob = RawClient::with_credentials(d.udp_addr(), &bob_name, &bob_pw);
    bob.allocate();
    let out = cli(&d, dir.path(), &["revoke", "bob", "--for", "3600"]);
    assert!(out.contains("\"bob\""), "{out}");
    assert!(list(&d, "").is_empty(), "bob's allocation ended");
    let login = |d: &Daemon| {
        let (n, p) = rest_credential(SECRET, "bob", unix_now() + 7200);
        error_code(&RawClient::with_credentials(d.udp_addr(), &n, &p).allocate_with(Vec::new))
    };
    assert_eq!(login(&d), Some(401));
    assert!(d.stderr().contains("reason=\"revoked\""));
    // Alice is not bob.
    RawClient::new(d.udp_addr()).allocate();
    drop(d);

    let d = daemon(dir.path());
    assert_eq!(login(&d), Some(401), "revoked after a restart");
    let out = cli(&d, dir.path(), &["revocations"]);
    assert!(out.contains("bob"), "{out}");
    cli(&d, dir.path(), &["unrevoke", "bob"]);
    assert_eq!(login(&d), None);
    let _: SocketAddr = d.udp_addr();
}

/// The raw response to `GET path` without a token: status, headers, body.
fn get_raw(d: &Daemon, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(d.bound().admin.unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[test]
fn the_selftest_page_is_public_and_its_credential_needs_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path());
    // The page and its script: no token, no secret, a strict policy.
    let (s, head, body) = get_raw(&d, "/selftest/");
    assert_eq!(s, 200);
    assert!(body.contains("turnd self-test"), "{body}");
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(head.contains("cache-control: no-store"), "{head}");
    let (s, head, _) = get_raw(&d, "/selftest");
    assert_eq!(s, 301);
    assert!(head.contains("location: /selftest/"), "{head}");
    let (s, head, js) = get_raw(&d, "/selftest/app.js");
    assert_eq!(s, 200);
    assert!(head.contains("text/javascript"), "{head}");
    assert!(js.contains("iceTransportPolicy"));
    assert_eq!(get_raw(&d, "/selftest/nothing").0, 401);

    // The credential: only with the token.
    let (s, _) = call(&d, "POST", "/selftest/session", None);
    assert_eq!(s, 401);
    let (s, session) = call(&d, "POST", "/selftest/session", Some(TOKEN));
    assert_eq!(s, 200, "{session}");
    let username = session["username"].as_str().unwrap();
    assert!(username.ends_with(":turnd-selftest"), "{session}");
    let expires: u64 = username.split(':').next().unwrap().parse().unwrap();
    assert!(expires > unix_now() && expires <= unix_now() + 600 + 5);
    let udp = format!("turn:{}?transport=udp", d.udp_addr());
    assert_eq!(session["transports"][0]["url"], udp.as_str(), "{session}");
    assert_eq!(session["transports"][2]["url"], serde_json::Value::Null);
    // No configured secret reaches the page, yet its credential works: it
    // is signed with a secret of the process's own.
    let credential = session["credential"].as_str().unwrap();
    assert_ne!(
        credential,
        rest_credential(SECRET, "turnd-selftest", expires).1
    );
    let mut page = RawClient::with_credentials(d.udp_addr(), username, credential);
    page.allocate();
    assert_eq!(list(&d, "?user=turnd-selftest").len(), 1);
    // And it survives a reload.
    let _ = Command::new("kill")
        .args(["-HUP", &d.pid().to_string()])
        .status();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        error_code(&page.refresh(600)),
        None,
        "refreshed after SIGHUP"
    );
    assert!(!d.stderr().contains(TOKEN), "the token is never logged");
}

/// The listed rate of the only allocation: bytes/s and packets/s each way.
fn rates(d: &Daemon) -> [f64; 4] {
    let all = list(d, "");
    assert_eq!(all.len(), 1, "{all:?}");
    let r = &all[0]["rate"];
    assert_eq!(r["window_s"], 5, "{r}");
    let f = |dir: &str, what: &str| r[dir][what].as_f64().unwrap();
    [
        f("sent", "bytes_per_s"),
        f("sent", "packets_per_s"),
        f("received", "bytes_per_s"),
        f("received", "packets_per_s"),
    ]
}

#[test]
fn the_list_shows_a_current_rate_that_returns_to_zero_when_traffic_stops() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path());
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let mut client = RawClient::new(d.udp_addr());
    let relay = client.allocate();
    assert_eq!(error_code(&client.create_permission(&[peer_addr])), None);
    assert_eq!(rates(&d), [0.0; 4], "nothing relayed yet");

    // Traffic both ways, 20 packets a round, until the list shows a rate
    // each way (bounded: at most 300 rounds of 20 ms).
    let mut seen = None;
    for round in 0..300 {
        for _ in 0..10 {
            client.send_indication(peer_addr, &[7u8; 200]);
            peer.send_to(&[9u8; 300], relay).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
        if round % 10 == 9 {
            let r = rates(&d);
            if r.iter().all(|x| *x > 0.0) {
                seen = Some(r);
                break;
            }
        }
    }
    let r = seen.expect("a rate each way while traffic flows");
    // Bytes per packet as sent: 200 one way, 300 the other.
    assert!((r[0] / r[1] - 200.0).abs() < 1.0, "{r:?}");
    assert!((r[2] / r[3] - 300.0).abs() < 1.0, "{r:?}");

    // Stopped: back to 0 once the window has passed (bounded: 20 s).
    let mut zero = false;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(200));
        if rates(&d) == [0.0; 4] {
            zero = true;
            break;
        }
    }
    assert!(zero, "the rate stayed at {:?}", rates(&d));
}
