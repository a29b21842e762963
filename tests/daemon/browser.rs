//! A real browser through turnd (issue 3): Debian's headless Chromium, driven
//! by `tests/browser/run.mjs` (playwright-core), holds two `RTCPeerConnection`s
//! that know only turnd and may only relay (`iceTransportPolicy: 'relay'`).
//! They open a data channel and pass messages both ways, over TURN on UDP, on
//! TCP and on TLS (RFC 8656 §3.1); `getStats()` and turnd's `/metrics` say
//! which transport carried them. A wrong password gets a 401 and no candidate.
//!
//! For `turns:` the test makes a CA and a certificate for 127.0.0.1 and puts
//! the CA in an NSS database under a fresh `$HOME`, where Chromium looks for
//! trusted roots: verification stays on. Chromium does verify a TURN server's
//! certificate (an untrusted one ends in icecandidateerror 701 and a TLS
//! alert), which [`turns_with_an_untrusted_ca_is_refused_by_chromium`] pins.
//!
//! Needs `chromium`, `node` and `npm ci --prefix tests/browser` (`.ci/run`
//! does all three); without chromium or node the tests are skipped, or fail
//! when `CI` is set.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::{require_tool, run_with_timeout, Daemon, PASSWORD, REALM, USER};
use serde::Deserialize;

/// Messages sent each way over the data channel.
const MESSAGES: usize = 50;
/// Limit of each wait inside the page (run.mjs gives up after twice this,
/// within [`RUN_TIMEOUT`]). A passing run takes about a second; the margin
/// is for a CI machine whose two cores are busy with other test binaries
/// (a run that missed 15 s was seen once in about 60 under such load).
const PAGE_TIMEOUT_MS: u64 = 25_000;
/// Limit of one `node run.mjs`, past which it is killed.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// One browser at a time: several Chromiums at once on a small CI machine
/// only make the timeouts tighter.
static BROWSER: Mutex<()> = Mutex::new(());

#[derive(Debug, Clone, Copy, PartialEq)]
enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// As turnd's metrics label it, and as Chromium's `relayProtocol` does.
    fn label(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// What `run.mjs --mode exchange` prints.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Exchange {
    candidates: PerPeer<Vec<String>>,
    #[allow(dead_code)] // shown when an assertion fails
    errors: PerPeer<Vec<serde_json::Value>>,
    failure: Option<String>,
    #[serde(default)]
    received_by_a: Vec<String>,
    #[serde(default)]
    received_by_b: Vec<String>,
    selected: Option<PerPeer<Option<Pair>>>,
}

#[derive(Debug, Deserialize)]
struct PerPeer<T> {
    a: T,
    b: T,
}

/// The selected candidate pair of one peer, from `getStats()`.
#[derive(Debug, Deserialize)]
struct Pair {
    #[allow(dead_code)] // shown when an assertion fails
    state: String,
    local: Candidate,
    remote: Candidate,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    candidate_type: String,
    relay_protocol: Option<String>,
    url: Option<String>,
}

/// What `run.mjs --mode gather` prints: one peer connection's candidates and
/// `icecandidateerror` events.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Gather {
    candidates: Vec<String>,
    errors: Vec<CandidateError>,
    failure: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CandidateError {
    url: Option<String>,
    error_code: u16,
    #[allow(dead_code)] // shown when an assertion fails
    error_text: Option<String>,
}

/// Chromium, node and the driver's npm packages, once found.
struct Browser {
    chromium: PathBuf,
    dir: PathBuf,
}

impl Browser {
    /// `None` (skip) when chromium or node is missing outside CI.
    fn find() -> Option<Browser> {
        if !require_tool("chromium") || !require_tool("node") {
            return None;
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
        assert!(
            dir.join("node_modules/playwright-core").is_dir(),
            "{}/node_modules is missing: run `npm ci --prefix tests/browser` (.ci/run does)",
            dir.display()
        );
        let chromium = on_path("chromium").expect("require_tool found chromium");
        Some(Browser { chromium, dir })
    }

    /// Runs `node run.mjs` with `args`; its one line of JSON output.
    fn run<T: serde::de::DeserializeOwned>(&self, args: &[&str], home: Option<&Path>) -> T {
        let _one_at_a_time = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
        let mut cmd = Command::new("node");
        cmd.current_dir(&self.dir)
            .arg("run.mjs")
            .arg("--chromium")
            .arg(&self.chromium)
            .arg("--timeout-ms")
            .arg(PAGE_TIMEOUT_MS.to_string())
            .args(args);
        if let Some(home) = home {
            cmd.arg("--home").arg(home);
        }
        let run = run_with_timeout(&mut cmd, RUN_TIMEOUT);
        assert!(
            run.status.success(),
            "{cmd:?} failed ({}):\n{}",
            run.status,
            run.output
        );
        let line = run
            .output
            .lines()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| panic!("no JSON line from run.mjs:\n{}", run.output));
        serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("cannot parse run.mjs output ({e}):\n{}", run.output))
    }
}

fn on_path(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// A test CA, a certificate for 127.0.0.1 and localhost signed by it, and a
/// `$HOME` whose NSS database (`.pki/nssdb`, where Chromium on Linux reads
/// trusted roots) trusts the CA for TLS servers.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose};

        let dir = tempfile::tempdir().expect("create a temporary directory");
        let mut ca = CertificateParams::new(Vec::new()).expect("CA parameters");
        ca.distinguished_name
            .push(DnType::CommonName, "turnd browser test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().expect("generate the CA key");
        let ca_cert = ca.self_signed(&ca_key).expect("self-sign the CA");
        let issuer = Issuer::new(ca, ca_key);

        let mut leaf = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("server certificate parameters");
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.use_authority_key_identifier_extension = true;
        let leaf_key = KeyPair::generate().expect("generate the server key");
        let leaf_cert = leaf
            .signed_by(&leaf_key, &issuer)
            .expect("sign the server certificate");

        let pki = Pki { dir };
        fs::write(pki.ca(), ca_cert.pem()).expect("write ca.pem");
        fs::write(pki.cert(), leaf_cert.pem() + &ca_cert.pem()).expect("write server.pem");
        fs::write(pki.key(), leaf_key.serialize_pem()).expect("write server.key");
        pki
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// A fresh `$HOME` whose NSS database trusts the CA; `None` (skip) when
    /// `certutil` is missing outside CI.
    fn trusting_home(&self) -> Option<PathBuf> {
        if !require_tool("certutil") {
            return None;
        }
        let home = self.dir.path().join("home");
        let db = home.join(".pki/nssdb");
        fs::create_dir_all(&db).expect("create .pki/nssdb");
        let db_arg = format!("sql:{}", db.display());
        let ca = self.ca();
        for args in [
            vec!["-N", "-d", &db_arg, "--empty-password"],
            // "C,,": a CA trusted to issue TLS server certificates.
            vec![
                "-A",
                "-d",
                &db_arg,
                "-n",
                "turnd-test-ca",
                "-t",
                "C,,",
                "-i",
                ca.to_str().expect("UTF-8 path"),
            ],
        ] {
            let run = run_with_timeout(
                Command::new("certutil").args(&args),
                Duration::from_secs(30),
            );
            assert!(run.status.success(), "certutil {args:?}: {}", run.output);
        }
        Some(home)
    }
}

/// A daemon listening on 127.0.0.1 over each of `transports` (port 0),
/// relaying on loopback.
fn config(transports: &[Transport], pki: Option<&Pki>) -> String {
    let q = |s: &str| serde_json::to_string(s).expect("quote a string");
    // Listed explicitly: a listener left out would take its default port.
    let listen = |t: Transport| {
        if transports.contains(&t) {
            "\"127.0.0.1:0\""
        } else {
            ""
        }
    };
    let (udp, tcp, tls) = (
        listen(Transport::Udp),
        listen(Transport::Tcp),
        listen(Transport::Tls),
    );
    let mut toml = format!(
        "realm = {realm}\n\n\
         [listen]\nudp = [{udp}]\ntcp = [{tcp}]\ntls = [{tls}]\n\n\
         [relay]\nbind = \"127.0.0.1\"\nports = \"{low}-{high}\"\n\n\
         [[users]]\nname = {user}\npassword = {password}\n\n\
         # Both browsers' relay addresses are on 127.0.0.1.\n\
         [peers]\nallow = [\"127.0.0.0/8\"]\n\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\n",
        realm = q(REALM),
        low = common::RELAY_PORTS.0,
        high = common::RELAY_PORTS.1,
        user = q(USER),
        password = q(PASSWORD),
    );
    if let Some(pki) = pki {
        toml += &format!(
            "[tls]\ncert = {}\nkey = {}\n",
            q(pki.cert().to_str().expect("UTF-8 path")),
            q(pki.key().to_str().expect("UTF-8 path")),
        );
    }
    toml
}

/// The `iceServers` URL of the daemon's listener for `transport`.
fn turn_url(daemon: &Daemon, transport: Transport) -> String {
    let bound = daemon.bound();
    match transport {
        Transport::Udp => format!("turn:{}?transport=udp", bound.udp[0]),
        Transport::Tcp => format!("turn:{}?transport=tcp", bound.tcp[0]),
        Transport::Tls => format!("turns:{}?transport=tcp", bound.tls[0]),
    }
}

/// Two relay-only peers pass [`MESSAGES`] messages each way through turnd
/// reached over `transport`.
fn data_channel_over(transport: Transport) {
    let Some(browser) = Browser::find() else {
        return;
    };
    let pki = (transport == Transport::Tls).then(Pki::new);
    let home = match &pki {
        Some(pki) => match pki.trusting_home() {
            Some(home) => Some(home),
            None => return,
        },
        None => None,
    };
    let daemon = Daemon::start(&config(&[transport], pki.as_ref()));
    let url = turn_url(&daemon, transport);
    let count = MESSAGES.to_string();
    let out: Exchange = browser.run(
        &[
            "--mode",
            "exchange",
            "--url",
            &url,
            "--username",
            USER,
            "--credential",
            PASSWORD,
            "--count",
            &count,
        ],
        home.as_deref(),
    );
    if out.failure.is_some() {
        // What turnd saw: nonzero traffic, drop and denial counters.
        let seen: Vec<String> = daemon
            .scrape_after_publish()
            .0
            .iter()
            .filter(|(name, _, value)| {
                *value != 0.0
                    && ["relayed", "dropped", "denied", "requests", "connections"]
                        .iter()
                        .any(|part| name.contains(part))
            })
            .map(|(name, labels, value)| format!("{name}{labels:?} {value}"))
            .collect();
        panic!("the page failed over {url}: {out:#?}\nturnd's counters: {seen:#?}");
    }

    // Every message, in order, both ways.
    let expected = |from_to: &str| -> Vec<String> {
        (0..MESSAGES).map(|i| format!("{from_to} {i}")).collect()
    };
    assert_eq!(out.received_by_b, expected("a->b"), "a to b over {url}");
    assert_eq!(out.received_by_a, expected("b->a"), "b to a over {url}");

    // Only relay candidates were gathered, and the pair in use is
    // relay/relay, reached over the transport under test.
    for candidate in out.candidates.a.iter().chain(&out.candidates.b) {
        assert!(
            candidate.contains(" typ relay"),
            "not a relay candidate: {candidate}"
        );
    }
    // The pair's `state` is not checked: Chromium reports "in-progress" for
    // a working pair whenever one of its periodic checks awaits an answer
    // (libwebrtc's Connection::Ping sets it); the messages prove it works.
    let selected = out.selected.as_ref().expect("stats after the exchange");
    for (peer, pair) in [("a", &selected.a), ("b", &selected.b)] {
        let pair = pair
            .as_ref()
            .unwrap_or_else(|| panic!("peer {peer} has no selected candidate pair: {out:#?}"));
        assert_eq!(pair.local.candidate_type, "relay", "peer {peer}: {pair:?}");
        assert_eq!(pair.remote.candidate_type, "relay", "peer {peer}: {pair:?}");
        assert_eq!(
            pair.local.relay_protocol.as_deref(),
            Some(transport.label()),
            "peer {peer} reached turnd over another transport: {pair:?}"
        );
        assert_eq!(pair.local.url.as_deref(), Some(url.as_str()), "peer {peer}");
    }

    // turnd agrees: two allocations over this transport, none over the
    // others, and the messages went through its relays.
    let scrape = daemon.scrape();
    for t in [Transport::Udp, Transport::Tcp, Transport::Tls] {
        let created = scrape.get(
            "turnd_allocations_created_total",
            &[("transport", t.label())],
        );
        if t == transport {
            assert!(created >= 2.0, "{created} allocations over {}", t.label());
        } else {
            assert_eq!(created, 0.0, "allocations over {}", t.label());
        }
    }
    // Every payload byte crossed a relay at least once (client to peer);
    // DTLS and SCTP only add to that.
    let payload: usize = expected("a->b")
        .iter()
        .chain(&expected("b->a"))
        .map(String::len)
        .sum();
    // Each worker publishes its relayed counters at least once a second:
    // look again for up to 5 s.
    let mut scrape = scrape;
    for attempt in 1.. {
        let short: Vec<String> = ["client_to_peer", "peer_to_client"]
            .iter()
            .filter_map(|direction| {
                let bytes = scrape.get("turnd_relayed_bytes_total", &[("direction", direction)]);
                (bytes < payload as f64).then(|| {
                    format!("{bytes} bytes relayed {direction}, fewer than the {payload} bytes of messages")
                })
            })
            .collect();
        if short.is_empty() {
            break;
        }
        assert!(attempt < 50, "{short:?}");
        std::thread::sleep(Duration::from_millis(100));
        scrape = daemon.scrape();
    }
}

#[test]
fn data_channel_over_turn_udp() {
    data_channel_over(Transport::Udp);
}

#[test]
fn data_channel_over_turn_tcp() {
    data_channel_over(Transport::Tcp);
}

#[test]
fn data_channel_over_turns_with_a_trusted_test_ca() {
    data_channel_over(Transport::Tls);
}

/// One gathering peer connection: its candidates and candidate errors.
fn gather(browser: &Browser, url: &str, credential: &str, home: Option<&Path>) -> Gather {
    browser.run(
        &[
            "--mode",
            "gather",
            "--url",
            url,
            "--username",
            USER,
            "--credential",
            credential,
        ],
        home,
    )
}

#[test]
fn wrong_password_gets_401_and_no_candidate() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let daemon = Daemon::start(&config(&[Transport::Udp, Transport::Tcp], None));
    for transport in [Transport::Udp, Transport::Tcp] {
        let url = turn_url(&daemon, transport);
        let out = gather(&browser, &url, "not-the-password", None);
        assert!(out.failure.is_none(), "{url}: {out:#?}");
        assert!(
            out.candidates.is_empty(),
            "{url}: a candidate despite the wrong password: {out:#?}"
        );
        assert!(
            out.errors
                .iter()
                .any(|e| e.error_code == 401 && e.url.as_deref() == Some(url.as_str())),
            "{url}: no icecandidateerror 401: {out:#?}"
        );
    }
    let scrape = daemon.scrape();
    assert_eq!(scrape.sum("turnd_allocations_created_total"), 0.0);
    assert!(
        scrape.get("turnd_auth_failures_total", &[("reason", "bad_integrity")]) >= 2.0,
        "turnd did not count the wrong passwords"
    );
}

/// Without the CA in its NSS database Chromium refuses turnd's certificate:
/// it checks the certificates of TURN servers as of web servers, so the
/// trusted-CA test above is a real test of the chain turnd serves.
#[test]
fn turns_with_an_untrusted_ca_is_refused_by_chromium() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let pki = Pki::new();
    let daemon = Daemon::start(&config(&[Transport::Tls], Some(&pki)));
    let url = turn_url(&daemon, Transport::Tls);
    // No --home: run.mjs gives Chromium an empty one.
    let out = gather(&browser, &url, PASSWORD, None);
    assert!(out.failure.is_none(), "{url}: {out:#?}");
    assert!(
        out.candidates.is_empty(),
        "{url}: a candidate from an untrusted server: {out:#?}"
    );
    // 701: Chromium's code for "could not reach the TURN server".
    assert!(
        out.errors.iter().any(|e| e.error_code == 701),
        "{url}: no icecandidateerror 701: {out:#?}"
    );
    let scrape = daemon.scrape();
    assert!(
        scrape.get(
            "turnd_connections_rejected_total",
            &[("transport", "tls"), ("reason", "tls_handshake")]
        ) >= 1.0,
        "turnd saw no failed TLS handshake"
    );
    assert_eq!(scrape.sum("turnd_allocations_created_total"), 0.0);
}

/// The admin token of the self-test page tests.
const ADMIN_TOKEN: &str = "browser-test-admin-token-0123456789";

/// What `run.mjs --mode selftest` prints: turnd's self-test page once done.
#[derive(Debug, Deserialize)]
struct SelfTestRun {
    state: String,
    result: Option<String>,
    summary: SelfTestSummary,
    location: String,
    requests: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SelfTestSummary {
    username: String,
    transports: Vec<Probe>,
    round_trip: RoundTrip,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    transport: String,
    url: Option<String>,
    status: String,
    candidate: Option<String>,
    relay_protocol: Option<String>,
    errors: Vec<CandidateError>,
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoundTrip {
    status: String,
    rtt_ms: Vec<f64>,
    selected: Option<serde_json::Value>,
}

/// Opens the self-test page of a daemon started with `toml` plus an
/// `[admin]` table, the token in the URL fragment.
fn run_selftest(
    browser: &Browser,
    toml: &str,
    home: Option<&Path>,
    token_in_query: bool,
) -> (Daemon, SelfTestRun) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let token = dir.path().join("admin.token");
    fs::write(&token, ADMIN_TOKEN).expect("write the token");
    let q = |p: PathBuf| serde_json::to_string(p.to_str().expect("UTF-8 path")).expect("quote");
    let toml = format!(
        "{toml}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = {}\nstate_dir = {}\n",
        q(token),
        q(dir.path().join("state"))
    );
    let daemon = Daemon::start(&toml);
    let admin = daemon.bound().admin.expect("admin API bound");
    // The token in the fragment (never sent), or in the query.
    let page = if token_in_query {
        format!("http://{admin}/selftest/?token={ADMIN_TOKEN}&timeout_ms=10000")
    } else {
        format!("http://{admin}/selftest/?timeout_ms=10000#token={ADMIN_TOKEN}")
    };
    let out: SelfTestRun = browser.run(&["--mode", "selftest", "--page-url", &page], home);
    // The token never leaves the page (from the fragment): not in a
    // request, not in the address bar, not in turnd's log.
    let requests = out.requests.iter().skip(usize::from(token_in_query));
    for url in requests.chain([&out.location]) {
        assert!(!url.contains(ADMIN_TOKEN), "the token in {url}");
    }
    assert!(
        !daemon.stderr().contains(ADMIN_TOKEN),
        "the token in turnd's log"
    );
    assert!(
        out.summary.username.ends_with(":turnd-selftest"),
        "{out:#?}"
    );
    (daemon, out)
}

fn probe<'a>(out: &'a SelfTestRun, transport: &str) -> &'a Probe {
    out.summary
        .transports
        .iter()
        .find(|p| p.transport == transport)
        .unwrap_or_else(|| panic!("no {transport} in {out:#?}"))
}

/// Every offered transport passes, TLS shows as not offered, and the data
/// channel round trip passes: the page says "passed".
#[test]
fn selftest_page_passes_over_udp_and_tcp_and_shows_tls_not_offered() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let (daemon, out) = run_selftest(
        &browser,
        &config(&[Transport::Udp, Transport::Tcp], None),
        None,
        false,
    );
    assert_eq!(out.state, "done", "{out:#?}");
    assert_eq!(out.result.as_deref(), Some("passed"), "{out:#?}");
    for t in [Transport::Udp, Transport::Tcp] {
        let p = probe(&out, t.label());
        assert_eq!(p.status, "passed", "{out:#?}");
        assert_eq!(p.url.as_deref(), Some(turn_url(&daemon, t).as_str()));
        let candidate = p.candidate.as_deref().unwrap_or_default();
        assert!(candidate.contains(" typ relay"), "{p:?}");
        assert_eq!(p.relay_protocol.as_deref(), Some(t.label()), "{p:?}");
    }
    let tls = probe(&out, "tls");
    assert_eq!(
        (tls.status.as_str(), tls.url.as_deref()),
        ("not_offered", None)
    );
    assert_eq!(probe(&out, "stun").status, "passed", "{out:#?}");
    assert_eq!(out.summary.round_trip.status, "passed", "{out:#?}");
    assert_eq!(out.summary.round_trip.rtt_ms.len(), 3, "{out:#?}");
    assert!(out.summary.round_trip.selected.is_some());
    // turnd saw the page's allocations: both probes and both round-trip
    // peers, with the page's own credential.
    let scrape = daemon.scrape();
    assert!(scrape.sum("turnd_allocations_created_total") >= 4.0);
}

/// A `turns:` listener whose certificate the browser does not trust fails
/// (icecandidateerror 701) while UDP and TCP pass: the page names the
/// failed transport and its error, and says "failed".
#[test]
fn selftest_page_reports_a_failing_tls_transport_with_its_error() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let pki = Pki::new();
    let all = [Transport::Udp, Transport::Tcp, Transport::Tls];
    // No CA in Chromium's (empty) NSS database: TLS cannot verify.
    let (daemon, out) = run_selftest(&browser, &config(&all, Some(&pki)), None, false);
    assert_eq!(out.state, "done", "{out:#?}");
    assert_eq!(out.result.as_deref(), Some("failed"), "{out:#?}");
    let tls = probe(&out, "tls");
    assert_eq!(tls.status, "failed", "{out:#?}");
    assert_eq!(
        tls.url.as_deref(),
        Some(turn_url(&daemon, Transport::Tls).as_str())
    );
    assert!(tls.candidate.is_none());
    assert!(tls.errors.iter().any(|e| e.error_code == 701), "{tls:?}");
    assert!(
        tls.reason.as_deref().unwrap_or_default().contains("701"),
        "{tls:?}"
    );
    for t in ["udp", "tcp", "stun"] {
        assert_eq!(probe(&out, t).status, "passed", "{out:#?}");
    }
    // The round trip uses the transports that work.
    assert_eq!(out.summary.round_trip.status, "passed", "{out:#?}");
}

/// With the test CA trusted, `turns:` passes too, its candidate reached
/// over TLS.
#[test]
fn selftest_page_passes_over_turns_with_a_trusted_ca() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let pki = Pki::new();
    let Some(home) = pki.trusting_home() else {
        return;
    };
    let all = [Transport::Udp, Transport::Tcp, Transport::Tls];
    let (daemon, out) = run_selftest(&browser, &config(&all, Some(&pki)), Some(&home), true);
    assert_eq!(out.result.as_deref(), Some("passed"), "{out:#?}");
    let tls = probe(&out, "tls");
    assert_eq!(tls.status, "passed", "{out:#?}");
    assert_eq!(tls.relay_protocol.as_deref(), Some("tls"), "{tls:?}");
    assert_eq!(
        tls.url.as_deref(),
        Some(turn_url(&daemon, Transport::Tls).as_str())
    );
}
