//! A listener port is turnd's alone: a second turnd, or any socket bound
//! with SO_REUSEPORT on the same port, makes the start fail with the port
//! and the pid and command of whoever holds it (the kernel would otherwise
//! split clients between the two processes).

use crate::common;

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

use common::raw::RawClient;
use common::{Daemon, Launch, TestConfig, PASSWORD, USER};

/// The test config with these UDP and TCP listeners.
fn config(udp: SocketAddr, tcp: Option<SocketAddr>) -> String {
    let mut toml = TestConfig::default()
        .toml()
        .replace("udp = [\"127.0.0.1:0\"]\n", &format!("udp = [\"{udp}\"]\n"));
    if let Some(tcp) = tcp {
        toml = toml.replace(
            &format!("udp = [\"{udp}\"]\n"),
            &format!("udp = [\"{udp}\"]\ntcp = [\"{tcp}\"]\n"),
        );
    }
    toml
}

fn refused(toml: &str) -> String {
    match Daemon::try_start(toml, &Launch::default()) {
        Ok(_) => panic!("turnd started on a port another process holds:\n{toml}"),
        Err((status, stderr)) => {
            assert_eq!(status.code(), Some(1), "{stderr}");
            stderr
        }
    }
}

#[test]
fn a_second_turnd_on_the_same_ports_is_refused() {
    let first = Daemon::start(&config(
        "127.0.0.1:0".parse().unwrap(),
        Some("127.0.0.1:0".parse().unwrap()),
    ));
    let (udp, tcp) = (first.udp_addr(), first.tcp_addr());

    let stderr = refused(&config(udp, None));
    let holder = format!("pid {} (turnd)", first.pid());
    assert!(
        stderr.contains(&format!("UDP listener port {}", udp.port())) && stderr.contains(&holder),
        "{stderr}"
    );

    // The TCP listener alone (UDP on a fresh port) is refused too.
    let stderr = refused(&config("127.0.0.1:0".parse().unwrap(), Some(tcp)));
    assert!(
        stderr.contains(&format!("TCP listener port {}", tcp.port())) && stderr.contains(&holder),
        "{stderr}"
    );

    // The first one still serves every client.
    for _ in 0..3 {
        let mut client = RawClient::with_credentials(udp, USER, PASSWORD);
        client.allocate();
    }
    assert_eq!(
        first.scrape().sum("turnd_allocations_active"),
        3.0,
        "every client reached the first turnd"
    );
}

/// A plain socket with SO_REUSEPORT, as coturn's, on turnd's port.
#[test]
fn a_reuseport_socket_of_another_program_is_named() {
    let me = format!("pid {}", std::process::id());
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();

    let udp = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    udp.set_reuse_port(true).unwrap();
    udp.bind(&any.into()).unwrap();
    let port = udp.local_addr().unwrap().as_socket().unwrap();
    let stderr = refused(&config(port, None));
    assert!(
        stderr.contains(&format!("UDP listener port {}", port.port())) && stderr.contains(&me),
        "{stderr}"
    );
    // A wildcard listener overlaps it as well.
    let wildcard: SocketAddr = format!("0.0.0.0:{}", port.port()).parse().unwrap();
    let stderr = refused(&config(wildcard, None));
    assert!(stderr.contains(&me), "{stderr}");

    let tcp = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    tcp.set_reuse_port(true).unwrap();
    tcp.bind(&any.into()).unwrap();
    tcp.listen(16).unwrap();
    let port = tcp.local_addr().unwrap().as_socket().unwrap();
    let stderr = refused(&config("127.0.0.1:0".parse().unwrap(), Some(port)));
    assert!(
        stderr.contains(&format!("TCP listener port {}", port.port())) && stderr.contains(&me),
        "{stderr}"
    );
}

/// A port held without SO_REUSEPORT fails the bind; the holder is named.
#[test]
fn a_port_held_without_reuseport_names_the_holder() {
    let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let stderr = refused(&config(addr, None));
    assert!(
        stderr.contains(&format!("cannot bind UDP listener on {addr}"))
            && stderr.contains(&format!("pid {}", std::process::id())),
        "{stderr}"
    );
}
