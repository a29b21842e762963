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
