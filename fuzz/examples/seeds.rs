//! Writes the seed corpora from the RFC 5769 test vectors, the captures in
//! `capture/uclient/` (see `capture/capture.sh`) and hand-written engine
//! scenarios:
//!
//!     cd fuzz && cargo run --example seeds
//!
//! Seeds are named (`rfc5769-*`, `uclient-*`, `scenario-*`); files the
//! fuzzer added under hash names are left alone.

use std::fs;
use std::path::Path;

use turnd_fuzz::ops::{encode, Op, Peer};
use turnd_fuzz::seeds::{rfc5769, scenarios};

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("corpus");
    let write = |target: &str, name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let dir = corpus.join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(name), bytes)
    };

    for (name, bytes) in rfc5769() {
        write("stun_decode", &format!("rfc5769-{name}"), &bytes)?;
        let mut send = vec![3];
        send.extend_from_slice(&bytes);
        write(
            "channel_data_and_send",
            &format!("rfc5769-{name}-as-send"),
            &send,
        )?;
    }

    let mut captured = Vec::new();
    for entry in fs::read_dir(root.join("capture/uclient"))? {
        let path = entry?.path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        captured.push((name, fs::read(&path)?));
    }
    captured.sort();
    for (name, bytes) in &captured {
        if name.ends_with(".stream") {
            // max 0 (the largest), no cuts; then the same with 7 cuts.
            let mut whole = vec![0, 0, 0];
            whole.extend_from_slice(bytes);
            write("stream_framer", &format!("uclient-{name}"), &whole)?;
            let mut cut = vec![0, 0, 7, 1, 3, 4, 16, 2, 20, 100];
            cut.extend_from_slice(bytes);
            write("stream_framer", &format!("uclient-{name}-cut"), &cut)?;
            continue;
        }
        write("stun_decode", &format!("uclient-{name}"), bytes)?;
        let mut mode0 = vec![0];
        mode0.extend_from_slice(bytes);
        write("channel_data_and_send", &format!("uclient-{name}"), &mode0)?;
    }

    // Engine programs: each captured UDP client's requests, re-signed with
    // the harness's credentials and nonce, peers moved to a public address.
    let mut sessions: std::collections::BTreeMap<&str, Vec<Op>> = Default::default();
    for (name, bytes) in &captured {
        let Some(client) = name.strip_prefix("udp-").and_then(|n| n.get(..2)) else {
            continue;
        };
        if !name.ends_with("-c2s") {
            continue;
        }
        let ops = sessions.entry(client).or_default();
        let stun = bytes.first().is_some_and(|b| b >> 6 == 0);
        ops.push(if stun {
            Op::Resign {
                client: 0,
                cred: 0,
                flags: 1,
                bytes: bytes.clone(),
            }
        } else {
            Op::Raw {
                client: 0,
                bytes: bytes.clone(),
            }
        });
        // The echo the peer sent back, for Send indications and ChannelData.
        ops.push(Op::Peer {
            relay: 0,
            peer: Peer::Known(0),
            data: b"echo".to_vec(),
        });
    }
    for (client, ops) in sessions {
        write("engine", &format!("uclient-udp-{client}"), &encode(&ops))?;
    }
    for (name, ops) in scenarios() {
        write("engine", &format!("scenario-{name}"), &encode(&ops))?;
    }

    // Send/Data and ChannelData round trips.
    let mut v4 = vec![1];
    v4.extend_from_slice(&[7; 12]);
    v4.extend_from_slice(&[0, 0x13, 0x88, 198, 18, 0, 1]);
    v4.extend_from_slice(b"hello");
    write("channel_data_and_send", "scenario-data-indication-v4", &v4)?;
    let mut v6 = vec![1];
    v6.extend_from_slice(&[9; 12]);
    v6.extend_from_slice(&[1, 0x17, 0x70]);
    v6.extend_from_slice(
        &"2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    v6.extend_from_slice(b"payload!");
    write("channel_data_and_send", "scenario-data-indication-v6", &v6)?;
    write(
        "channel_data_and_send",
        "scenario-channel-data",
        b"\x02\x40\x01\x03abcde",
    )?;

    println!("seeds written to {}", corpus.display());
    Ok(())
}
