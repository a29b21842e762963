//! Every config file shipped in `config/` parses and validates.

use std::path::Path;

use turnd::config::Config;

#[test]
fn every_shipped_config_file_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut loaded = 0;
    for entry in std::fs::read_dir(&dir).expect("config/ is readable") {
        let path = entry.expect("config/ entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Err(e) = Config::load(&path) {
                panic!("{e}");
            }
            loaded += 1;
        }
    }
    assert!(loaded > 0, "no *.toml file in {}", dir.display());
}

#[test]
fn reference_config_spells_out_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/turnd.toml");
    let config = Config::load(&path).expect("config/turnd.toml loads");
    assert_eq!(config, Config::default());
    assert!(!config.relays_allowed(), "shipped without credentials");
}

fn repo_file(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What README and the reference config say matches what the code does
/// (each checked against the behaviour by the test named).
#[test]
fn docs_say_what_the_code_does() {
    let readme = repo_file("README.md");
    let reference = repo_file("config/turnd.toml");
    // tests/daemon/check.rs: check opens the certificate, relative to the config.
    assert!(!readme.contains("does not open\nthem"), "README [tls]");
    assert!(readme.contains("resolved against the directory of the\nconfig file"));
    // tests/daemon/probe.rs: a draining turnd sends 300 with ALTERNATE-SERVER.
    assert!(!readme.contains("| ALTERNATE-SERVER (300) | not yet |"));
    assert!(readme.contains("`508`, and `300` while draining"));
    // The turnd user cannot read /etc/letsencrypt/live.
    let example_paths: Vec<&str> = reference
        .lines()
        .filter(|l| l.starts_with("# cert =") || l.starts_with("# key ="))
        .collect();
    assert_eq!(example_paths.len(), 2, "{example_paths:?}");
    assert!(
        example_paths.iter().all(|l| l.contains("/etc/turnd/")),
        "{example_paths:?}"
    );
    // Debian 12 ships rustc 1.63: the quick start says how to get 1.88.
    assert!(readme.contains("Rust 1.88 or newer; Debian 12") && readme.contains("rustup"));
    // tests/daemon/ssrf.rs operator_deny_covers_the_own_relay_address.
    assert!(readme.contains("`deny` also covers turnd's own relay\naddress"));
}
