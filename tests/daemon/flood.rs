//! A flood on one UDP listener must not starve the worker that reads it:
//! `Worker::drain` yields every 16 receive batches, so the worker's TCP
//! connections, its other UDP clients and the counters it publishes keep
//! going while junk keeps arriving. One worker (`workers = 1`), so the flood
//! and every other client certainly share it; everything on 127.0.0.1.
//!
//! The flood is bounded (40 s, 4,000,000,000 datagrams: with GSO the sender
//! outruns the receiver by far, and the kernel drops most of them) and stops
//! as soon as the checks are done. The worker drains a backlog in moments
//! once a flood stops, so "answered within 5 s" alone would pass on a
//! starving worker too: each answer must arrive while the flood is still
//! being sent.

// Deadlines of bounded waits; the clock rule is for the sans-IO core.
#![allow(clippy::disallowed_methods)]

use crate::common;
use crate::stream_support;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::raw::{decode, recv_from_within};
use common::{Daemon, Scrape};
use quinn_udp::{Transmit, UdpSocketState};
use stream_support::{binding_request, stream_config, StreamClient, ANSWER};
use stun::message::{Getter, BINDING_SUCCESS};
use stun::xoraddr::XorMappedAddress;

/// One junk datagram: neither STUN nor ChannelData (first two bits 11).
const JUNK: [u8; 200] = [0xff; 200];
/// The flood stops after this long or this many datagrams, whichever first.
/// Longer than every wait of the test put together (5 TCP and 1 UDP
/// Bindings and the counter, each within [`ANSWER`]), so that a slow but
/// fair worker is never blamed for a flood that simply ran out; the test
/// stops it as soon as its checks are done (in well under a second here).
const FLOOD_FOR: Duration = Duration::from_secs(40);
const FLOOD_MAX: u64 = 4_000_000_000;
/// Datagrams the flood must have sent before the checks start.
const FLOOD_WARMUP: u64 = 10_000;
/// TCP Bindings, each on a fresh connection, during the flood.
const TCP_BINDINGS: usize = 5;
/// A UDP Binding under flood is resent this often (the listener's receive
/// buffer is full of junk, so the kernel may drop it), for at most
/// [`ANSWER`].
const UDP_RETRANSMIT: Duration = Duration::from_millis(200);

const DROPPED: &str = "turnd_dropped_packets_total";
const NOT_STUN: [(&str, &str); 1] = [("reason", "not_stun")];

/// A thread sending [`JUNK`] to one address as fast as it can.
struct Flood {
    /// Set by the test to end the flood early.
    stop: Arc<AtomicBool>,
    /// Set by the flood thread when it has sent its last datagram.
    done: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: JoinHandle<(u64, u64, Duration)>,
}

impl Flood {
    fn start(target: SocketAddr) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the flood socket");
        let state = UdpSocketState::new((&socket).into()).expect("batched-I/O state");
        let thread = std::thread::spawn({
            let (stop, done, sent) = (stop.clone(), done.clone(), sent.clone());
            move || {
                // One sendmsg carries a train of datagrams where the kernel
                // has GSO: a plain send() per datagram is slower than the
                // worker's batched receive, and then no backlog ever forms.
                let segments = state.max_gso_segments().max(1) as u64;
                let train = vec![JUNK; segments as usize].concat();
                let start = Instant::now();
                let (mut ok, mut failed) = (0u64, 0u64);
                while ok + failed < FLOOD_MAX
                    && !stop.load(Ordering::Relaxed)
                    && start.elapsed() < FLOOD_FOR
                {
                    let n = segments.min(FLOOD_MAX - ok - failed);
                    let transmit = Transmit {
                        destination: target,
                        ecn: None,
                        contents: &train[..n as usize * JUNK.len()],
                        segment_size: (n > 1).then_some(JUNK.len()),
                        src_ip: None,
                    };
                    // A full socket buffer is no reason to stop a flood.
                    match state.try_send((&socket).into(), &transmit) {
                        Ok(()) => ok += n,
                        Err(_) => failed += n,
                    }
                    sent.store(ok, Ordering::Relaxed);
                }
                done.store(true, Ordering::SeqCst);
                (ok, failed, start.elapsed())
            }
        });
        Flood {
            stop,
            done,
            sent,
            thread,
        }
    }

    /// Waits (at most [`FLOOD_FOR`]) until [`FLOOD_WARMUP`] datagrams are out.
    fn wait_until_flowing(&self) {
        let deadline = Instant::now() + FLOOD_FOR;
        while self.sent.load(Ordering::Relaxed) < FLOOD_WARMUP {
            assert!(
                Instant::now() < deadline && !self.done.load(Ordering::SeqCst),
                "the flood sent only {} datagrams",
                self.sent.load(Ordering::Relaxed)
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Fails unless the flood is still being sent: `what` happened during it.
    fn assert_running(&self, what: &str) {
        assert!(
            !self.done.load(Ordering::SeqCst),
            "{what} only after the flood had ended ({} datagrams): the flood starved the worker",
            self.sent.load(Ordering::Relaxed)
        );
    }

    /// Stops the flood: datagrams sent, sends that failed, how long it ran.
    fn stop(self) -> (u64, u64, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the flood thread")
    }
}

/// A Binding over UDP from a fresh socket, resent every [`UDP_RETRANSMIT`]
/// for at most [`ANSWER`]; asserts the answer maps the socket's address.
/// Returns how many times the request was sent.
fn udp_binding(server: SocketAddr) -> usize {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a client socket");
    let local = socket.local_addr().expect("client socket address");
    // A retransmission is the same transaction (RFC 8489 §6.2.1).
    let req = binding_request();
    let deadline = Instant::now() + ANSWER;
    let mut sends = 0;
    while Instant::now() < deadline {
        socket.send_to(&req.raw, server).expect("send a Binding");
        sends += 1;
        let resend_at = Instant::now() + UDP_RETRANSMIT;
        while let Some((bytes, _)) = recv_from_within(
            &socket,
            Some(server),
            resend_at.saturating_duration_since(Instant::now()),
        ) {
            let Some(resp) = decode(&bytes) else { continue };
            if resp.transaction_id != req.transaction_id {
                continue;
            }
            assert_eq!(resp.typ, BINDING_SUCCESS, "{resp}");
            let mut mapped = XorMappedAddress::default();
            mapped.get_from(&resp).expect("XOR-MAPPED-ADDRESS");
            assert_eq!(SocketAddr::new(mapped.ip, mapped.port), local);
            return sends;
        }
    }
    panic!("no answer to a UDP Binding sent {sends} times over {ANSWER:?}");
}

fn not_stun(scrape: &Scrape) -> f64 {
    scrape.get(DROPPED, &NOT_STUN)
}

#[test]
fn a_udp_flood_does_not_starve_the_worker() {
    let d = Daemon::start(&format!("workers = 1\n{}", stream_config(None, "")));
    let udp = d.udp_addr();
    StreamClient::tcp(d.tcp_addr()).binding();
    udp_binding(udp);
    let before = not_stun(&d.scrape());

    let flood = Flood::start(udp);
    flood.wait_until_flowing();

    for i in 1..=TCP_BINDINGS {
        StreamClient::tcp(d.tcp_addr()).binding();
        flood.assert_running(&format!("TCP Binding {i} of {TCP_BINDINGS} was answered"));
    }

    let sends = udp_binding(udp);
    flood.assert_running(&format!("a UDP Binding (sent {sends} times) was answered"));

    // Drops are counted as they happen, so the counter moves during the
    // flood too.
    let deadline = Instant::now() + ANSWER;
    let during = loop {
        let seen = not_stun(&d.scrape());
        if seen > before {
            break seen;
        }
        assert!(
            Instant::now() < deadline,
            "{DROPPED}{NOT_STUN:?} stayed at {seen} during the flood"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    flood.assert_running(&format!("{DROPPED}{NOT_STUN:?} grew"));

    let (sent, failed, lasted) = flood.stop();
    eprintln!(
        "flood: {sent} datagrams of {} bytes in {lasted:?} ({failed} sends failed); \
         {} counted not_stun by the time the checks were done; {sends} UDP sends for one answer",
        JUNK.len(),
        during - before
    );

    // After the flood: answered again (resent only if the junk still
    // queued filled the receive buffer when the request arrived).
    udp_binding(udp);

    let after = d.scrape();
    assert!(not_stun(&after) >= during);
    assert_eq!(after.get("turnd_ready", &[]), 1.0);
    assert_eq!(d.http_get("/readyz"), (200, "ready\n".to_string()));
}
