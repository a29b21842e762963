//! Without a fuzzer: every corpus file and every past crash
//! (`regressions/TARGET/`) through its target's checks, and the engine
//! scenarios reaching what they are written to reach, so a change in turnd
//! that breaks the harness (say, requests no longer authenticate) fails
//! here instead of fuzzing nothing.
//!
//!     cd fuzz && cargo test

use std::fs;
use std::path::Path;

use turnd_fuzz::{engine, ops, parsers, seeds};

fn each_file(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let bytes = fs::read(&path).unwrap();
            eprintln!("{}", path.display());
            check(&bytes);
            n += 1;
        }
    }
    n
}

#[test]
fn stun_decode_corpus() {
    assert!(each_file("stun_decode", parsers::stun_decode) > 0);
}

#[test]
fn channel_data_and_send_corpus() {
    assert!(each_file("channel_data_and_send", parsers::channel_data_and_send) > 0);
}

#[test]
fn stream_framer_corpus() {
    assert!(each_file("stream_framer", parsers::stream_framer) > 0);
}

#[test]
fn engine_corpus() {
    assert!(each_file("engine", engine::run) > 0);
}

#[test]
fn engine_scenarios_reach_their_goals() {
    for (name, program) in seeds::scenarios() {
        let r = engine::run_reached(&ops::encode(&program));
        eprintln!("{name}: {r:?}");
        assert!(r.responses > 0, "{name}: no response at all");
        let allocates = !matches!(name, "binding" | "drain");
        assert_eq!(r.allocations > 0, allocates, "{name}: {r:?}");
        match name {
            "session-udp" | "session-udp-ipv6-client" => {
                assert_eq!(
                    (r.relayed_to_peer, r.relayed_to_client),
                    (2, 2),
                    "{name}: {r:?}"
                )
            }
            "session-tcp-close" => assert_eq!(r.relayed_to_client, 2, "{name}: {r:?}"),
            "quotas" => assert_eq!(r.allocations, 6, "{name}: {r:?}"),
            "even-port-reservation" => assert!(r.reservations >= 2, "{name}: {r:?}"),
            "relay-to-relay" => assert!(r.relayed_to_peer >= 2, "{name}: {r:?}"),
            _ => {}
        }
    }
}

#[test]
fn captured_uclient_sessions_allocate_and_relay() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/engine");
    let (mut allocated, mut relayed) = (0, 0);
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("uclient-")
        {
            continue;
        }
        let r = engine::run_reached(&fs::read(&path).unwrap());
        eprintln!("{}: {r:?}", path.display());
        allocated += r.allocations;
        relayed += r.relayed_to_peer.min(r.relayed_to_client);
    }
    assert!(allocated > 0, "no captured session allocated");
    assert!(relayed > 0, "no captured session relayed both ways");
}
