//! Harness for the daemon tests: spawns the real `turnd` binary on ephemeral
//! ports, reads the bound addresses back from its ready file, scrapes
//! `/metrics` over plain HTTP/1.1, and runs third-party tools with a time
//! limit. [`raw`] is a small hand-driven STUN/TURN client.
//!
//! Every wait here is bounded; every process started here is killed by PID.

// Each test binary uses a different part of the harness.
#![allow(dead_code)]
// The clock lint keeps the sans-IO core honest; the tests drive real
// processes and sockets, so they read the real clocks (for deadlines only).
#![allow(clippy::disallowed_methods)]

pub mod coturn_peer;
pub mod raw;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use tempfile::TempDir;
use turnd::metrics::text::{find, parse_prometheus_text, Sample};

/// Realm of the test configs.
pub const REALM: &str = "turnd.test";
/// The static user of the test configs.
pub const USER: &str = "alice";
/// Her password.
pub const PASSWORD: &str = "secret";
/// Relay ports for every test daemon: above Linux's default ephemeral range
/// (32768-60999), so relay sockets do not collide with the tests' own
/// sockets. Parallel daemons share it; turnd retries a port that is taken.
pub const RELAY_PORTS: (u16, u16) = (61000, 64999);

/// How long a daemon may take to write its ready file.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a daemon may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Connect/read/write limit of one HTTP request to the daemon.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// What turnd writes to `--ready-file` once every socket is bound.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Bound {
    pub udp: Vec<SocketAddr>,
    #[serde(default)]
    pub tcp: Vec<SocketAddr>,
    #[serde(default)]
    pub tls: Vec<SocketAddr>,
    pub http: Option<SocketAddr>,
    #[serde(default)]
    pub admin: Option<SocketAddr>,
    pub relay_address: IpAddr,
}

/// How [`Daemon::start_with`] runs turnd.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// `--log-level`: `debug` when `None`; none at all when empty.
    pub log_level: Option<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// RLIMIT_NOFILE (soft, hard) to run under.
    pub nofile: Option<(u64, u64)>,
}

/// A running `turnd`. Killed (by PID) when dropped; its stderr is printed
/// when the test is failing.
pub struct Daemon {
    child: Child,
    dir: TempDir,
    bound: Option<Bound>,
}

impl Daemon {
    /// Writes `config_toml` to a temporary directory, starts turnd on it and
    /// waits (at most [`READY_TIMEOUT`]) until it reports its sockets bound.
    pub fn start(config_toml: &str) -> Daemon {
        Daemon::start_with(config_toml, &Launch::default())
    }

    /// [`Daemon::start`] with extra environment variables (`TURND_*`
    /// overrides).
    pub fn start_with_env(config_toml: &str, env: &[(&str, &str)]) -> Daemon {
        let launch = Launch {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Launch::default()
        };
        Daemon::start_with(config_toml, &launch)
    }

    /// [`Daemon::start`] with `launch`'s log level, environment and limits.
    pub fn start_with(config_toml: &str, launch: &Launch) -> Daemon {
        Daemon::try_start(config_toml, launch).unwrap_or_else(|(status, stderr)| {
            panic!("turnd exited ({status}) before it was ready; config:\n{config_toml}\nstderr:\n{stderr}")
        })
    }

    /// Starts turnd; its exit status and stderr when it exits before it
    /// is ready.
    pub fn try_start(config_toml: &str, launch: &Launch) -> Result<Daemon, (ExitStatus, String)> {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let config = dir.path().join("turnd.toml");
        let ready = dir.path().join("ready.json");
        fs::write(&config, config_toml).expect("write the config file");
        let stdout = File::create(dir.path().join("stdout.log")).expect("create stdout.log");
        let stderr = File::create(dir.path().join("stderr.log")).expect("create stderr.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_turnd"));
        cmd.arg("--config")
            .arg(&config)
            .arg("--ready-file")
            .arg(&ready)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .env_remove("TURND_CONFIG")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        if let Some(level) = launch
            .log_level
            .as_deref()
            .or(Some("debug"))
            .filter(|l| !l.is_empty())
        {
            cmd.arg("--log-level").arg(level);
        }
        for (k, v) in &launch.env {
            cmd.env(k, v);
        }
        if let Some(limit) = launch.nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs
            // between fork and exec here.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: limit.0,
                        rlim_max: limit.1,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().expect("spawn turnd");
        let mut daemon = Daemon {
            child,
            dir,
            bound: None,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            // The file may be caught half-written: retry until it parses.
            if let Ok(text) = fs::read_to_string(&ready) {
                if let Ok(bound) = serde_json::from_str::<Bound>(&text) {
                    daemon.bound = Some(bound);
                    return Ok(daemon);
                }
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                return Err((status, daemon.stderr()));
            }
            assert!(
                Instant::now() < deadline,
                "turnd wrote no ready file within {READY_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The config file turnd was started on (rewrite it, then SIGHUP).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("turnd.toml")
    }

    /// Sends SIGHUP to turnd (it reloads its config file).
    pub fn hang_up(&self) {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP {}", self.pid());
    }

    /// Rewrites the config file with `toml` and sends SIGHUP.
    pub fn reload(&self, toml: &str) {
        std::fs::write(self.config_path(), toml).expect("rewrite the config file");
        self.hang_up();
    }

    pub fn bound(&self) -> &Bound {
        self.bound.as_ref().expect("daemon is ready")
    }

    /// The first UDP listener.
    pub fn udp_addr(&self) -> SocketAddr {
        self.bound().udp[0]
    }

    /// The first TCP listener.
    pub fn tcp_addr(&self) -> SocketAddr {
        *self.bound().tcp.first().expect("[listen] tcp is set")
    }

    /// The first TLS listener.
    pub fn tls_addr(&self) -> SocketAddr {
        *self.bound().tls.first().expect("[listen] tls is set")
    }

    /// The HTTP endpoint (the test configs always enable it).
    pub fn http_addr(&self) -> SocketAddr {
        self.bound().http.expect("[http] is enabled in this config")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything turnd logged so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// turnd's log lines holding `needle`, once there are at least `n`
    /// (waits up to 10 s, then fails with the whole log).
    pub fn log_lines(&self, needle: &str, n: usize) -> Vec<String> {
        for _ in 0..200 {
            let lines: Vec<String> = self
                .stderr()
                .lines()
                .filter(|l| l.contains(needle))
                .map(str::to_string)
                .collect();
            if lines.len() >= n {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "fewer than {n} log lines with {needle:?}:\n{}",
            self.stderr()
        );
    }

    /// The usage records (`[log] format = "json"`), once there are `n`.
    pub fn usage_records(&self, n: usize) -> Vec<serde_json::Value> {
        self.log_lines("turnd::usage", n)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// `GET path` on the HTTP endpoint: status code and body.
    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.http_addr(), path)
    }

    /// Scrapes and parses `/metrics`.
    pub fn scrape(&self) -> Scrape {
        let (status, body) = self.http_get("/metrics");
        assert_eq!(status, 200, "GET /metrics: {body}");
        Scrape(parse_prometheus_text(&body))
    }

    /// Scrapes once every worker has published its relayed counters since
    /// this call (they do at least once a second): for asserting that
    /// something was *not* relayed.
    pub fn scrape_after_publish(&self) -> Scrape {
        std::thread::sleep(std::time::Duration::from_millis(1200));
        self.scrape()
    }

    /// Polls `/metrics` until the sample equals `want` (at most 5 s), then
    /// returns the scrape; fails with the last value seen otherwise. For
    /// counters moved by packets that get no answer, so the test has no
    /// other way to know turnd has processed them.
    pub fn wait_for_metric(&self, name: &str, labels: &[(&str, &str)], want: f64) -> Scrape {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let scrape = self.scrape();
            let got = scrape.get(name, labels);
            if got == want {
                return scrape;
            }
            assert!(
                Instant::now() < deadline,
                "{name}{labels:?} is {got}, expected {want}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls `/metrics` (at most 5 s) until the relayed packet and byte
    /// counters read exactly `client_to_peer` and `peer_to_client`, each
    /// `(packets, bytes)`, and returns that scrape. turnd sums relayed
    /// traffic per worker and publishes it about once a second, so these
    /// counters lag the packets by up to that much.
    pub fn wait_for_relayed(
        &self,
        client_to_peer: (u64, u64),
        peer_to_client: (u64, u64),
    ) -> Scrape {
        let deadline = Instant::now() + Duration::from_secs(5);
        let want = [
            ("client_to_peer", client_to_peer),
            ("peer_to_client", peer_to_client),
        ];
        loop {
            let scrape = self.scrape();
            let got: Vec<(&str, (u64, u64))> = want
                .iter()
                .map(|(direction, _)| {
                    let l = [("direction", *direction)];
                    (
                        *direction,
                        (
                            scrape.get("turnd_relayed_packets_total", &l) as u64,
                            scrape.get("turnd_relayed_bytes_total", &l) as u64,
                        ),
                    )
                })
                .collect();
            if got.iter().zip(&want).all(|(g, w)| g.1 == w.1) {
                return scrape;
            }
            assert!(
                Instant::now() < deadline,
                "relayed (packets, bytes) by direction are {got:?}, expected {want:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits (bounded) for turnd to exit.
    pub fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        // The shell's builtin `kill`: no procps needed on a minimal system.
        let sent = Command::new("sh")
            .args(["-c", &format!("kill -TERM {pid}")])
            .status()
            .expect("run sh -c kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for turnd") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "turnd did not exit within {STOP_TIMEOUT:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "----- turnd (pid {}) stderr -----\n{}----- end of turnd stderr -----",
                self.child.id(),
                self.stderr()
            );
        }
    }
}

/// One parsed scrape of `/metrics`.
#[derive(Debug, Clone)]
pub struct Scrape(pub Vec<Sample>);

impl Scrape {
    /// The value of one series; fails if turnd does not export it.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        find(&self.0, name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in /metrics"))
    }

    /// The sum over every series of `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, _, v)| v)
            .sum()
    }
}

/// A plain HTTP/1.1 GET (no client library): status code and body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to http://{addr}: {e}"));
    stream.set_read_timeout(Some(HTTP_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(HTTP_TIMEOUT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: turnd-tests\r\n\r\n"
    )
    .unwrap_or_else(|e| panic!("send GET {path}: {e}"));
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("read the response to GET {path}: {e}"));
    let text = String::from_utf8(raw).expect("the HTTP response is UTF-8");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {text:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").expect("chunk size line");
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16)
            .expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        s = rest[size..].strip_prefix("\r\n").expect("CRLF after chunk");
    }
}

/// A test config, turned into TOML by [`TestConfig::toml`]. The default has
/// realm [`REALM`], user [`USER`]/[`PASSWORD`], UDP and HTTP on
/// 127.0.0.1 port 0, relays on 127.0.0.1 in [`RELAY_PORTS`], and the
/// built-in peer policy (loopback denied).
#[derive(Debug, Clone)]
pub struct TestConfig {
    pub users: Vec<(String, String)>,
    pub rest_secrets: Vec<String>,
    pub allow_loopback: bool,
    /// Raw TOML keys of the `[rest]` table besides `secrets`.
    pub rest_extra: String,
    /// Raw TOML tables appended at the end (e.g. a `[quota]` table).
    pub extra: String,
}

impl Default for TestConfig {
    fn default() -> Self {
        TestConfig {
            users: vec![(USER.to_string(), PASSWORD.to_string())],
            rest_secrets: Vec::new(),
            allow_loopback: false,
            rest_extra: String::new(),
            extra: String::new(),
        }
    }
}

impl TestConfig {
    /// Allows peers in 127.0.0.0/8 (denied by default).
    pub fn allow_loopback(mut self) -> Self {
        self.allow_loopback = true;
        self
    }

    pub fn toml(&self) -> String {
        let q = |s: &str| serde_json::to_string(s).expect("quote a string");
        let mut t = format!(
            "realm = {}\n\n[listen]\nudp = [\"127.0.0.1:0\"]\n\n[relay]\nbind = \"127.0.0.1\"\nports = \"{}-{}\"\n\n",
            q(REALM),
            RELAY_PORTS.0,
            RELAY_PORTS.1
        );
        for (name, password) in &self.users {
            t += &format!(
                "[[users]]\nname = {}\npassword = {}\n\n",
                q(name),
                q(password)
            );
        }
        let secrets: Vec<String> = self.rest_secrets.iter().map(|s| q(s)).collect();
        t += &format!(
            "[rest]\nsecrets = [{}]\n{}\n",
            secrets.join(", "),
            self.rest_extra
        );
        let allow = if self.allow_loopback {
            "\"127.0.0.0/8\""
        } else {
            ""
        };
        t += &format!("[peers]\nallow = [{allow}]\n\n");
        t += "[http]\nlisten = \"127.0.0.1:0\"\n\n";
        t += &self.extra;
        t
    }

    pub fn start(&self) -> Daemon {
        Daemon::start(&self.toml())
    }
}

/// TURN REST API credentials as coturn's `use-auth-secret` mints them:
/// username `EXPIRY:user`, password base64(HMAC-SHA1(secret, username)).
pub fn rest_credential(secret: &str, user: &str, expiry_unix: u64) -> (String, String) {
    let username = format!("{expiry_unix}:{user}");
    let mut mac =
        Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, password)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Whether `tool` is on PATH. When it is not, the test must fail under CI
/// (env var `CI` set) and is skipped otherwise: call as
/// `if !require_tool("turnutils_uclient") { return; }`.
pub fn require_tool(tool: &str) -> bool {
    if find_on_path(tool).is_some() {
        return true;
    }
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    assert!(
        !ci,
        "{tool} is not on PATH and CI is set: install coturn's client tools (.ci/run does)"
    );
    eprintln!("skipping: {tool} is not on PATH (install coturn; with CI set this test fails)");
    false
}

fn find_on_path(tool: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// What a tool run by [`run_with_timeout`] did.
#[derive(Debug)]
pub struct ToolRun {
    pub status: ExitStatus,
    /// stdout, then stderr.
    pub output: String,
}

/// Runs `cmd` to completion with its output in files (no pipe to fill up),
/// killing it by PID and failing if it takes longer than `limit`.
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> ToolRun {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("create stdout file"))
        .stderr(File::create(&err_path).expect("create stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the tool") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} did not finish within {limit:?}; output so far:\n{}",
                read_both(&out_path, &err_path)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    ToolRun {
        status,
        output: read_both(&out_path, &err_path),
    }
}

fn read_both(out: &Path, err: &Path) -> String {
    let mut s = fs::read_to_string(out).unwrap_or_default();
    s += &fs::read_to_string(err).unwrap_or_default();
    s
}

/// Payload bytes of `len` that differ with `seed`, so a reply cannot be
/// mistaken for the request and truncation or reordering shows.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

/// A `turn::client` on `conn`, listening, with a retransmission timeout long
/// enough that no request is sent twice on a busy test machine (turnd
/// would count it twice).
pub async fn turn_client(
    server: SocketAddr,
    username: &str,
    password: &str,
    conn: std::sync::Arc<dyn webrtc_util::Conn + Send + Sync>,
) -> turn::client::Client {
    let client = turn::client::Client::new(turn::client::ClientConfig {
        stun_serv_addr: server.to_string(),
        turn_serv_addr: server.to_string(),
        username: username.to_string(),
        password: password.to_string(),
        realm: String::new(), // learnt from turnd's 401
        software: String::new(),
        rto_in_ms: 1600,
        conn,
        vnet: None,
    })
    .await
    .expect("create the TURN client");
    client.listen().await.expect("client listens");
    client
}
