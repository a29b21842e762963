//! Defaults, each validation rule, and the wording of common mistakes.

use super::*;

fn parse(s: &str) -> Config {
    Config::from_toml_str(s).unwrap_or_else(|e| panic!("config should parse: {e}"))
}

fn err(s: &str) -> String {
    match Config::from_toml_str(s) {
        Ok(c) => panic!("config should be rejected: {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn empty_file_gives_the_documented_defaults() {
    let c = parse("");
    assert_eq!(c, Config::default());
    assert_eq!(c.realm, "turnd");
    assert_eq!(c.listen.udp, vec!["0.0.0.0:3478".parse().unwrap()]);
    assert_eq!(c.relay.bind, FamilyAddrs::one("0.0.0.0".parse().unwrap()));
    assert!(c.relay.external.is_empty());
    assert_eq!(c.relay.ports, PortRange::new(49152, 65535).unwrap());
    assert!(c.users.is_empty() && c.rest.secrets.is_empty());
    assert!(c.peers.allow.is_empty() && c.peers.deny.is_empty());
    assert_eq!(
        (c.quota.allocations_per_user, c.quota.allocations_total),
        (10, 10_000)
    );
    assert_eq!(
        (
            c.quota.permissions_per_allocation,
            c.quota.channels_per_allocation
        ),
        (64, 64)
    );
    let a = &c.allocation;
    assert_eq!(
        (a.default_lifetime_s, a.max_lifetime_s, a.nonce_lifetime_s),
        (600, 3600, 600)
    );
    assert_eq!(c.http.listen, Some("127.0.0.1:9641".parse().unwrap()));
    assert_eq!(c.log.level, "info");
    assert!(c.validate().is_ok());
}

#[test]
fn no_credentials_means_no_relaying() {
    assert!(!parse("").relays_allowed());
    assert!(parse("[[users]]\nname = \"a\"\npassword = \"p\"\n").relays_allowed());
    assert!(parse("[rest]\nsecrets = [\"s\"]\n").relays_allowed());
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let e = err("realm = \"x\"\nrelm = \"y\"\n");
    assert!(e.starts_with("<inline>: "), "{e}");
    assert!(
        e.contains("unknown field `relm`") && e.contains("line 2"),
        "{e}"
    );
    let e = err("[relay]\nbind = \"0.0.0.0\"\nport = \"1-2\"\n");
    assert!(
        e.contains("unknown field `port`") && e.contains("line 3"),
        "{e}"
    );
    let e = err("[[users]]\nname = \"a\"\npasword = \"p\"\n");
    assert!(
        e.contains("unknown field `pasword`") && e.contains("line 3"),
        "{e}"
    );
    let e = err("[metrics]\n");
    assert!(
        e.contains("unknown field `metrics`") && e.contains("line 1"),
        "{e}"
    );
}

#[test]
fn bad_port_range_is_named_with_its_line() {
    let e = err("[relay]\nports = \"6000-5000\"\n");
    assert!(
        e.contains("line 2") && e.contains("ports = \"6000-5000\""),
        "{e}"
    );
    assert!(
        e.contains("invalid port range \"6000-5000\": low port 6000 is above high port 5000"),
        "{e}"
    );
    assert!(err("[relay]\nports = \"0-10\"\n").contains("low port must be at least 1"));
    assert!(err("[relay]\nports = \"49152\"\n").contains("expected \"LOW-HIGH\""));
    assert!(err("[relay]\nports = \"1-70000\"\n").contains("\"70000\" is not a port number"));
}

#[test]
fn port_range_parses_displays_and_counts() {
    let r: PortRange = " 5000 - 5009 ".parse().unwrap();
    assert_eq!(
        r,
        PortRange {
            low: 5000,
            high: 5009
        }
    );
    assert_eq!(r.to_string(), "5000-5009");
    assert_eq!(r.len(), 10);
    assert!(r.contains(5000) && r.contains(5009) && !r.contains(5010));
    assert_eq!(PortRange::new(1, 65535).unwrap().len(), 65535);
    assert_eq!(PortRange::try_from("7-7".to_owned()).unwrap().len(), 1);
}

#[test]
fn realm_rules() {
    assert!(err("realm = \"\"\n").contains("realm must not be empty"));
    assert!(err("realm = \"a\\nb\"\n").contains("control characters"));
    let long = "r".repeat(128);
    assert!(err(&format!("realm = \"{long}\"\n")).contains("fewer than 128 characters"));
    assert_eq!(parse("realm = \"example.org\"\n").realm, "example.org");
}

#[test]
fn listeners_need_at_least_one_valid_unique_address() {
    let e = err("[listen]\nudp = []\n");
    assert!(
        e.contains("listen: at least one of udp, tcp or tls must hold an address"),
        "{e}"
    );
    let c = parse("[listen]\ntcp = [\"0.0.0.0:443\"]\n");
    assert!(
        c.listen.udp.is_empty(),
        "a [listen] table names every listener"
    );
    assert_eq!(
        parse("").listen.tcp,
        vec![DEFAULT_TCP_LISTEN],
        "no [listen]: UDP and TCP on 3478"
    );
    let e = err("[listen]\ntls = [\"0.0.0.0:5349\"]\n");
    assert!(e.contains("listen.tls needs a [tls] section"), "{e}");
    let e = err("[listen]\ntcp = [\"0.0.0.0:443\"]\ntls = [\"0.0.0.0:443\"]\n[tls]\ncert = \"c\"\nkey = \"k\"\n");
    assert!(e.contains("in both listen.tcp and listen.tls"), "{e}");
    let e = err("[connections]\nmax_frame_bytes = 10\n");
    assert!(
        e.contains("connections.max_frame_bytes (10) must be between 512 and 65556"),
        "{e}"
    );
    let e = err("[connections]\nmax_per_ip = 0\n");
    assert!(
        e.contains("connections.max_per_ip must be at least 1"),
        "{e}"
    );
    let e = err("[listen]\nudp = [\"0.0.0.0\"]\n");
    assert!(e.contains("listen.udp: \"0.0.0.0\" is not an IP:PORT") && e.contains("line 2"));
    let e = err("[listen]\nudp = [\"[::]:3478\", \"[::]:3478\"]\n");
    assert!(e.contains("listen.udp lists [::]:3478 twice"), "{e}");
    let c = parse("[listen]\nudp = [\"0.0.0.0:3478\", \"[::]:3478\"]\n");
    assert_eq!(c.listen.udp.len(), 2);
}

#[test]
fn relay_external_must_match_bind_family() {
    let c = parse("[relay]\nbind = \"10.0.0.5\"\nexternal = \"203.0.113.7\"\n");
    assert_eq!(c.relay.external.v4, Some("203.0.113.7".parse().unwrap()));
    let e = err("[relay]\nexternal = \"2001:db8::7\"\n");
    assert!(
        e.contains("relay.external (2001:db8::7) must be the same address family as relay.bind"),
        "{e}"
    );
    assert!(err("[relay]\nexternal = \"0.0.0.0\"\n").contains("not unspecified"));
    assert!(err("[relay]\nbind = \"224.0.0.1\"\n").contains("multicast"));
    assert!(err("[relay]\nbind = \"host\"\n").contains("relay.bind: \"host\" is not an IP"));
}

#[test]
fn relay_addresses_per_family() {
    let c = parse(
        "[relay]\nbind = [\"0.0.0.0\", \"::\"]\nexternal = [\"2001:db8::7\", \"203.0.113.7\"]\n",
    );
    assert_eq!(c.relay.bind.v4, Some("0.0.0.0".parse().unwrap()));
    assert_eq!(c.relay.bind.v6, Some("::".parse().unwrap()));
    assert_eq!(c.relay.external.v4, Some("203.0.113.7".parse().unwrap()));
    assert_eq!(c.relay.external.v6, Some("2001:db8::7".parse().unwrap()));
    // IPv6 only, and external for one family of two.
    let c = parse("[relay]\nbind = [\"::\"]\n");
    assert_eq!(
        (c.relay.bind.v4, c.relay.bind.primary()),
        (None, Some("::".parse().unwrap()))
    );
    parse("[relay]\nbind = [\"10.0.0.5\", \"::\"]\nexternal = \"203.0.113.7\"\n");

    let e = err("[relay]\nbind = [\"0.0.0.0\", \"10.0.0.5\"]\n");
    assert!(
        e.contains("relay.bind: 0.0.0.0 and 10.0.0.5 are both IPv4"),
        "{e}"
    );
    assert!(e.contains("line 2"), "the error names the line: {e}");
    let e = err("[relay]\nbind = []\n");
    assert!(e.contains("relay.bind: give at least one address"), "{e}");
    let e = err("[relay]\nbind = [\"::ffff:10.0.0.5\"]\n");
    assert!(e.contains("IPv4-mapped"), "{e}");
    let e = err("[relay]\nbind = [\"0.0.0.0\", \"nope\"]\n");
    assert!(e.contains("relay.bind: \"nope\" is not an IP"), "{e}");
    let e = err("[relay]\nbind = \"::\"\nexternal = [\"203.0.113.7\"]\n");
    assert!(
        e.contains(
            "relay.external (203.0.113.7) must be the same address family as relay.bind (::)"
        ),
        "{e}"
    );
    let e = err("[relay]\nexternal = [\"203.0.113.7\", \"203.0.113.8\"]\n");
    assert!(
        e.contains("relay.external: 203.0.113.7 and 203.0.113.8 are both IPv4"),
        "{e}"
    );
    assert!(err("[relay]\nbind = 7\n").contains("an IP address or an array"));
    assert_eq!(parse("").relay.default_family, DefaultFamily::Ipv4);
    let c = parse("[relay]\ndefault_family = \"keep\"\n");
    assert_eq!(c.relay.default_family, DefaultFamily::Keep);
    let e = err("[relay]\ndefault_family = \"both\"\n");
    assert!(e.contains("default_family") && e.contains("line 2"), "{e}");
}

#[test]
fn users_take_a_password_a_key_or_a_password_file() {
    let c = parse(
        "[[users]]\nname = \"alice\"\npassword = \"pw\"\n\
         [[users]]\nname = \"bob\"\nkey = \"0x0123456789abcdef0123456789ABCDEF\"\n",
    );
    assert_eq!(c.users[0].name, "alice");
    assert_eq!(c.users[0].credential, UserCredential::Password("pw".into()));
    let key = hex::decode("0123456789abcdef0123456789abcdef").unwrap();
    assert_eq!(
        c.users[1].credential,
        UserCredential::Key(key.try_into().unwrap())
    );
}

#[test]
fn both_password_and_key_is_rejected() {
    let e = err(
        "[[users]]\nname = \"a\"\npassword = \"p\"\nkey = \"00112233445566778899aabbccddeeff\"\n",
    );
    assert!(
        e.contains("user \"a\": set only one of `password`, `key` or `password_file`, not `password` and `key`"),
        "{e}"
    );
    assert!(e.contains("line 1"), "{e}");
    let e = err("[[users]]\nname = \"a\"\npassword = \"p\"\n\n[[users]]\nname = \"b\"\n");
    assert!(
        e.contains("line 5"),
        "a later [[users]] is reported at its own line: {e}"
    );
    let e = err("[[users]]\nname = \"a\"\n");
    assert!(e.contains("user \"a\": set one of `password`, `key` or `password_file`"));
}

#[test]
fn key_must_be_32_hex_digits() {
    let e = err("[[users]]\nname = \"a\"\nkey = \"0011223344\"\n");
    assert!(
        e.contains("users.key must be 32 hex digits") && e.contains("line 3"),
        "{e}"
    );
    assert!(e.contains("got 10 characters"), "{e}");
    let e = err("[[users]]\nname = \"a\"\nkey = \"zz112233445566778899aabbccddeeff\"\n");
    assert!(e.contains("with non-hex digits"), "{e}");
}

#[test]
fn user_names_are_non_empty_and_unique() {
    assert!(
        err("[[users]]\nname = \"\"\npassword = \"p\"\n").contains("users.name must not be empty")
    );
    let e = err(
        "[[users]]\nname = \"a\"\npassword = \"p\"\n[[users]]\nname = \"a\"\npassword = \"q\"\n",
    );
    assert!(e.contains("users: name \"a\" is defined twice"), "{e}");
    assert!(err("[[users]]\nname = \"a\"\npassword = \"\"\n").contains("must not be empty"));
    assert_eq!(
        parse("[[users]]\nname = \"a:b\"\npassword = \"p\"\n").users[0].name,
        "a:b"
    );
}

#[test]
fn secret_files_are_read_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alice.pw"), "s3cret\n").unwrap();
    std::fs::write(dir.path().join("rest.key"), "  rotated \n").unwrap();
    std::fs::write(dir.path().join("empty"), "\n").unwrap();
    let path = dir.path().join("turnd.toml");
    std::fs::write(
        &path,
        "[[users]]\nname = \"alice\"\npassword_file = \"alice.pw\"\n\
         [rest]\nsecrets = [\"current\"]\nsecret_files = [\"rest.key\"]\n",
    )
    .unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(
        c.users[0].credential,
        UserCredential::Password("s3cret".into())
    );
    assert_eq!(
        c.rest.secrets,
        vec![Secret::from("current"), Secret::from("rotated")]
    );

    std::fs::write(&path, "[rest]\nsecret_files = [\"empty\"]\n").unwrap();
    let e = Config::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("turnd.toml: ") && e.contains("is empty") && e.contains("line 2"),
        "{e}"
    );
    std::fs::write(&path, "[rest]\nsecret_files = [\"missing\"]\n").unwrap();
    let e = Config::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("cannot read secret file") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn empty_rest_secret_is_rejected() {
    let e = err("[rest]\nsecrets = [\"a\", \"\"]\n");
    assert!(
        e.contains("rest.secrets[1] is empty") && e.contains("line 2"),
        "{e}"
    );
}

#[test]
fn missing_config_file_names_the_path() {
    let e = Config::load(Path::new("/nonexistent/turnd.toml")).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(e
        .to_string()
        .starts_with("cannot read config file /nonexistent/turnd.toml: "));
}

#[test]
fn peers_take_cidrs_and_bare_addresses() {
    let c = parse("[peers]\nallow = [\"10.1.2.3\", \"2001:db8::1\", \"10.9.9.9/8\"]\ndeny = [\"192.0.2.0/24\"]\n");
    let nets: Vec<String> = c.peers.allow.iter().map(ToString::to_string).collect();
    assert_eq!(nets, ["10.1.2.3/32", "2001:db8::1/128", "10.0.0.0/8"]);
    assert_eq!(c.peers.deny[0].to_string(), "192.0.2.0/24");
}

#[test]
fn bad_cidr_is_named_with_key_and_line() {
    let e = err("[peers]\ndeny = [\"10.0.0.0/8\"]\nallow = [\n  \"10.0.0.0/33\",\n]\n");
    assert!(
        e.contains("peers.allow: \"10.0.0.0/33\" is not a CIDR or IP address")
            && e.contains("line 3"),
        "{e}"
    );
}

#[test]
fn quotas_and_lifetimes_must_be_positive_and_ordered() {
    let e = err("[quota]\nallocations_per_user = 0\n");
    assert!(
        e.contains("must be at least 1") && e.contains("allocations_per_user = 0"),
        "{e}"
    );
    let e = err("[[users]]\nname = \"a\"\npassword = \"p\"\nallocations = 0\n");
    assert!(
        e.contains("must be at least 1") && e.contains("line 4"),
        "{e}"
    );
    let c = Config::from_toml_str("[[users]]\nname = \"a\"\npassword = \"p\"\nallocations = 25\n")
        .unwrap();
    assert_eq!(c.users[0].allocations, Some(25));
    let e = err("[quota]\nchannels_per_allocation = 20000\n");
    assert!(
        e.contains("quota.channels_per_allocation (20000) must be at most 16384"),
        "{e}"
    );
    let e = err("[allocation]\nmax_lifetime_s = 30\n");
    assert!(
        e.contains("allocation.max_lifetime_s (30) must be ≥ allocation.default_lifetime_s (600)"),
        "{e}"
    );
    let mut c = Config::default();
    c.allocation.nonce_lifetime_s = 0;
    let e = c.validate().unwrap_err().to_string();
    assert_eq!(e, "allocation.nonce_lifetime_s must be at least 1");
}

#[test]
fn tcp_connect_timeout_is_at_least_30_s() {
    let e = err("[allocation]\ntcp_connect_timeout_s = 5\n");
    assert!(
        e.contains("allocation.tcp_connect_timeout_s (5) must be at least 30 (RFC 6062 §5.2)"),
        "{e}"
    );
    let e = err("[quota]\ntcp_connections_per_allocation = 0\n");
    assert!(e.contains("tcp_connections_per_allocation"), "{e}");
}

#[test]
fn http_can_move_or_be_disabled() {
    assert_eq!(parse("[http]\nenabled = false\n").http.listen, None);
    let c = parse("[http]\nlisten = \"[::1]:9000\"\n");
    assert_eq!(c.http.listen, Some("[::1]:9000".parse().unwrap()));
    assert!(err("[http]\nlisten = \"\"\n").contains("http.listen: \"\" is not an IP:PORT"));
}

#[test]
fn log_level_accepts_levels_and_directives() {
    assert_eq!(
        parse("[log]\nlevel = \"info,turnd::core=trace\"\n")
            .log
            .level,
        "info,turnd::core=trace"
    );
    assert!(err("[log]\nlevel = \"\"\n").contains("log.level: the log filter is empty"));
    assert!(err("[log]\nlevel = \"warnings\"\n").contains("is not a log level"));
    assert_eq!(parse("[log]\nlevel = \"warning\"\n").log.level, "warning");
    assert!(err("[log]\nlevel = \"info; rm\"\n").contains("log.level"));
}

#[test]
fn secrets_never_show_in_debug_output() {
    let s = Secret::from("hunter2");
    assert_eq!(format!("{s:?}"), "***");
    assert_eq!(format!("{s}"), "***");
    assert_eq!(s.expose(), "hunter2");
    let c = parse(
        "[[users]]\nname = \"a\"\npassword = \"hunter2\"\n\
         [[users]]\nname = \"b\"\nkey = \"00112233445566778899aabbccddeeff\"\n\
         [rest]\nsecrets = [\"hunter3\"]\n",
    );
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("hunter") && !debug.contains("0, 17, 34"),
        "{debug}"
    );
    assert!(
        debug.contains("Password(***)") && debug.contains("Key(***)"),
        "{debug}"
    );
}

#[test]
fn type_errors_are_in_plain_words() {
    let e = err("workers = \"four\"\n");
    assert!(
        e.contains("expected a whole number from 0 to 4294967295"),
        "{e}"
    );
    assert!(!e.contains("u32"), "{e}");
    let e = err("[listen]\nudp = \"0.0.0.0:3478\"\n");
    assert!(e.contains("line 2"), "{e}");
    let e = err("[http]\nenabled = 1\n");
    assert!(e.contains("expected true or false"), "{e}");
    let e = err("workers = 100000\n");
    assert!(e.contains("line 1") && e.contains("at most 1024"), "{e}");
}

#[test]
fn a_toml_error_fits_one_log_line() {
    let e = err("workers = \"four\"\n");
    assert!(e.lines().count() > 1, "{e}");
    let line = super::one_line(&e);
    assert!(!line.contains('\n'), "{line}");
    assert!(
        line.contains("line 1, column 11") && line.contains("expected a whole number"),
        "{line}"
    );
    assert!(!line.contains('^'), "{line}");
}

#[test]
fn redirect_alternates_as_strings_or_tables() {
    let c = parse(
        "[redirect]\nallocations_threshold = 100\nalternates = [\"203.0.113.8:3478\", { address = \"[2001:db8::8]:5349\", domain = \"turn2.example.com\" }]\n",
    );
    let p = c.redirect.policy();
    assert_eq!(p.allocations_threshold, 100);
    assert_eq!(p.alternates.len(), 2);
    assert_eq!(p.alternates[0].domain, None);
    assert_eq!(
        p.alternates[1].address,
        "[2001:db8::8]:5349".parse().unwrap()
    );
    assert_eq!(p.alternates[1].domain.as_deref(), Some("turn2.example.com"));
    assert!(c.validate().is_ok());
    let e = err("[redirect]\nalternates = [\"turn2:3478\"]\n");
    assert!(
        e.contains("\"turn2:3478\" is not an IP:PORT") && e.contains("line 2"),
        "{e}"
    );
    let e = err("[redirect]\nalternates = [{ address = \"203.0.113.8:3478\", domian = \"x\" }]\n");
    assert!(e.contains("line 2"), "{e}");
    let e = err("[redirect]\nallocations_threshold = 5\n");
    assert!(e.contains("redirect.alternates is empty"), "{e}");
    let e = err("[redirect]\nbps_threshold = 1000000\n");
    assert!(
        e.contains("redirect.bps_threshold is set but redirect.alternates is empty"),
        "{e}"
    );
    let c = parse("[redirect]\nbps_threshold = 12500000\nalternates = [\"203.0.113.8:3478\"]\n");
    assert_eq!(c.redirect.policy().bps_threshold, 12_500_000);
}

#[test]
fn lifetimes_above_an_hour_are_accepted_with_a_warning() {
    assert!(
        parse("").warnings().is_empty(),
        "the defaults follow the RFCs"
    );
    let c = parse("[allocation]\nmax_lifetime_s = 3600\nnonce_lifetime_s = 3600\n");
    assert!(c.warnings().is_empty(), "an hour is fine");
    let c = parse("[allocation]\nmax_lifetime_s = 7200\nnonce_lifetime_s = 86400\n");
    let w = c.warnings();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].contains("allocation.max_lifetime_s (7200) is above 3600"),
        "{w:?}"
    );
    assert!(
        w[1].contains("allocation.nonce_lifetime_s (86400) is above 3600"),
        "{w:?}"
    );
}

#[test]
fn drain_alternates_are_one_per_family() {
    let c = parse("[drain]\nalternate_server = \"203.0.113.8:3478\"\n");
    assert_eq!(
        c.drain.alternate_server.v4,
        Some("203.0.113.8:3478".parse().unwrap())
    );
    assert_eq!(c.drain.alternate_server.v6, None);
    let c = parse("[drain]\nalternate_server = [\"203.0.113.8:3478\", \"[2001:db8::8]:3478\"]\n");
    assert_eq!(
        c.drain.alternate_server.v6,
        Some("[2001:db8::8]:3478".parse().unwrap())
    );
    let c = parse("[drain]\nalternate_server = \"\"\n");
    assert_eq!(c.drain.alternate_server, crate::core::Alternates::default());
    let e = err("[drain]\nalternate_server = [\"203.0.113.8:3478\", \"203.0.113.9:3478\"]\n");
    assert!(e.contains("two addresses of one family"), "{e}");
    let e = err("[drain]\nalternate_server = [\"nope\"]\n");
    assert!(e.contains("\"nope\" is not an IP:PORT"), "{e}");
}

#[test]
fn a_password_with_a_control_character_is_refused() {
    let e = err("[[users]]\nname = \"alice\"\npassword = \"pass\\tword\"\n");
    assert!(e.contains("control character '\\t'"), "{e}");
    assert!(e.contains("OpaqueString"), "{e}");
}

#[test]
fn auth_algorithms_default_to_both_and_are_checked() {
    assert_eq!(
        parse("").auth.algorithms,
        [PasswordAlgorithm::Sha256, PasswordAlgorithm::Md5]
    );
    assert_eq!(
        parse("[auth]\nalgorithms = [\"md5\"]\n").auth.algorithms,
        [PasswordAlgorithm::Md5]
    );
    assert!(err("[auth]\nalgorithms = []\n").contains("auth.algorithms"));
    assert!(err("[auth]\nalgorithms = [\"md5\", \"md5\"]\n").contains("twice"));
    let e = err("realm = \"r\"\n[auth]\nalgorithms = [\"sha1\"]\n");
    assert!(e.contains("sha1") && e.contains("line 3"), "{e}");
}

#[test]
fn selftest_host_is_a_name_or_an_ip() {
    for ok in ["turn.example.com", "203.0.113.7", "2001:db8::7"] {
        let c = parse(&format!("[admin]\nselftest_host = {ok:?}\n"));
        assert_eq!(c.admin.selftest_host.as_deref(), Some(ok));
    }
    for bad in ["", "turn.example.com/x", "a b", "evil?x=1#"] {
        let e = err(&format!("[admin]\nselftest_host = {bad:?}\n"));
        assert!(
            e.contains("admin.selftest_host") && e.contains("line 2"),
            "{bad:?}: {e}"
        );
    }
}
