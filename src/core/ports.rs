//! Relay transport addresses (RFC 8656 §7.2, EVEN-PORT §14.6,
//! RESERVATION-TOKEN §14.9): which port of the configured range a new
//! allocation gets. Ports are tried from a random start so relay addresses are
//! hard to guess; a port some other process holds is skipped.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use rand::Rng;

use super::RelaySockets;

/// Bind attempts per allocation before answering 508.
const MAX_BIND_ATTEMPTS: usize = 32;

/// What the client asked of the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    Any,
    Even,
    /// Even, and the next port held for a later allocation.
    EvenReserveNext,
}

/// Why no relay port could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoPort {
    /// Every port tried is taken (by turnd or another process).
    Taken,
    /// The process is out of file descriptors: no socket can be opened,
    /// whichever the port (EMFILE, ENFILE).
    Descriptors,
}

/// Whether a bind failed for want of a file descriptor.
fn out_of_descriptors(e: &std::io::Error) -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    matches!(e.raw_os_error(), Some(ENFILE | EMFILE))
}

/// The relay port range and which of its ports turnd holds.
#[derive(Debug)]
pub struct Ports {
    low: u16,
    high: u16,
    in_use: HashSet<u16>,
}

impl Ports {
    pub fn new(low: u16, high: u16) -> Self {
        Ports {
            low,
            high,
            in_use: HashSet::new(),
        }
    }

    /// Ports turnd holds open (allocations and reservations).
    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }

    /// Size of the configured range.
    pub fn total(&self) -> usize {
        usize::from(self.high - self.low) + 1
    }

    /// Binds a port (or an even/odd pair) on `ip`, returning the port. Out
    /// of file descriptors, it stops at the first failure. Ports
    /// `held_elsewhere` (by another worker's engine) are skipped without a
    /// bind attempt: only failures of ports turnd does not know to be taken
    /// count toward [`MAX_BIND_ATTEMPTS`].
    pub fn acquire(
        &mut self,
        rng: &mut impl Rng,
        ip: IpAddr,
        parity: Parity,
        relays: &mut dyn RelaySockets,
        held_elsewhere: &dyn Fn(u16) -> bool,
    ) -> Result<u16, NoPort> {
        let total = self.total();
        let start = rng.gen_range(0..total);
        let mut attempts = 0;
        for i in 0..total {
            let port = self.low + ((start + i) % total) as u16;
            if parity != Parity::Any && port % 2 == 1 {
                continue;
            }
            let taken = |p: u16| self.in_use.contains(&p) || held_elsewhere(p);
            if taken(port) {
                continue;
            }
            let pair = parity == Parity::EvenReserveNext;
            if pair && (port == self.high || taken(port + 1)) {
                continue;
            }
            attempts += 1;
            if attempts > MAX_BIND_ATTEMPTS {
                return Err(NoPort::Taken);
            }
            match relays.open(SocketAddr::new(ip, port)) {
                Err(e) if out_of_descriptors(&e) => return Err(NoPort::Descriptors),
                Err(_) => continue,
                Ok(()) => {}
            }
            if pair {
                if let Err(e) = relays.reserve(SocketAddr::new(ip, port + 1)) {
                    relays.close(SocketAddr::new(ip, port));
                    if out_of_descriptors(&e) {
                        return Err(NoPort::Descriptors);
                    }
                    continue;
                }
            }
            // A reserved port is held by its socket, not counted here: the
            // allocation that claims it may live on another worker.
            self.in_use.insert(port);
            return Ok(port);
        }
        Err(NoPort::Taken)
    }

    /// Counts a port claimed from a reservation as this engine's.
    pub fn adopt(&mut self, port: u16) {
        self.in_use.insert(port);
    }

    /// Closes the socket at `port` and makes the port available again.
    pub fn release(&mut self, ip: IpAddr, port: u16, relays: &mut dyn RelaySockets) {
        if self.in_use.remove(&port) {
            relays.close(SocketAddr::new(ip, port));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::io;

    /// Relay sockets where some ports are held by "another process".
    #[derive(Default)]
    struct FakeRelays {
        taken: HashSet<u16>,
        open: HashSet<u16>,
        /// Every open fails with EMFILE; counts the attempts.
        no_descriptors: Option<usize>,
    }
    impl RelaySockets for FakeRelays {
        fn open(&mut self, addr: SocketAddr) -> io::Result<()> {
            if let Some(n) = &mut self.no_descriptors {
                *n += 1;
                return Err(io::Error::from_raw_os_error(24));
            }
            if self.taken.contains(&addr.port()) || !self.open.insert(addr.port()) {
                return Err(io::ErrorKind::AddrInUse.into());
            }
            Ok(())
        }
        fn close(&mut self, addr: SocketAddr) {
            self.open.remove(&addr.port());
        }
        fn reserve(&mut self, addr: SocketAddr) -> io::Result<()> {
            self.open(addr)
        }
        fn claim(&mut self, _addr: SocketAddr) -> io::Result<()> {
            Ok(())
        }
        fn unreserve(&mut self, addr: SocketAddr) {
            self.close(addr)
        }
        fn dont_fragment(&mut self, _addr: SocketAddr) -> io::Result<()> {
            Ok(())
        }
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn fills_the_range_then_refuses() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut relays = FakeRelays::default();
        relays.taken.insert(50001);
        let mut ports = Ports::new(50000, 50003);
        let mut got: Vec<u16> = (0..3)
            .map(|_| {
                ports
                    .acquire(&mut rng, IP, Parity::Any, &mut relays, &|_| false)
                    .unwrap()
            })
            .collect();
        got.sort();
        assert_eq!(got, vec![50000, 50002, 50003]);
        assert_eq!(
            ports.acquire(&mut rng, IP, Parity::Any, &mut relays, &|_| false),
            Err(NoPort::Taken)
        );
        ports.release(IP, 50002, &mut relays);
        assert_eq!(
            ports.acquire(&mut rng, IP, Parity::Any, &mut relays, &|_| false),
            Ok(50002)
        );
    }

    #[test]
    fn out_of_descriptors_stops_at_once() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut relays = FakeRelays {
            no_descriptors: Some(0),
            ..FakeRelays::default()
        };
        let mut ports = Ports::new(50000, 50100);
        assert_eq!(
            ports.acquire(&mut rng, IP, Parity::Any, &mut relays, &|_| false),
            Err(NoPort::Descriptors)
        );
        assert_eq!(relays.no_descriptors, Some(1), "one attempt, not 32");
    }

    #[test]
    fn ports_of_other_workers_do_not_use_up_the_bind_attempts() {
        // 80 ports, 79 held by another worker (their binds would fail): the
        // last free one is found whatever the start (issue 16: a 508 while
        // a port was free).
        for seed in 0..20 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut relays = FakeRelays::default();
            relays.taken.extend((50000..50080).filter(|p| *p != 50041));
            let held = |p: u16| p != 50041;
            let mut ports = Ports::new(50000, 50079);
            assert_eq!(
                ports.acquire(&mut rng, IP, Parity::Any, &mut relays, &held),
                Ok(50041)
            );
        }
    }

    #[test]
    fn even_ports_and_reserved_pairs() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let mut relays = FakeRelays::default();
        let mut ports = Ports::new(50000, 50005);
        let p = ports
            .acquire(&mut rng, IP, Parity::EvenReserveNext, &mut relays, &|_| {
                false
            })
            .unwrap();
        assert_eq!(p % 2, 0);
        assert!(relays.open.contains(&(p + 1)), "the odd port is held");
        assert_eq!(
            ports.in_use(),
            1,
            "the reserved port is not counted as in use"
        );
        let q = ports
            .acquire(&mut rng, IP, Parity::Even, &mut relays, &|_| false)
            .unwrap();
        assert_eq!(q % 2, 0);
        assert_ne!(p, q);
    }
}
