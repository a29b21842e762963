//! The `engine` target's input language: a byte string read as a sequence
//! of operations on a two-worker turnd, each operation one opcode byte and
//! its fields. Every byte string is a valid program (opcodes and selectors
//! are taken modulo their count; missing fields read as zero), so mutation
//! never wastes inputs on a parse error. [`encode`] writes programs for the
//! seed corpus (`cargo run --example engine_seeds`).

/// One step of a fuzz program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Arbitrary bytes from client `client`.
    Raw { client: u8, bytes: Vec<u8> },
    /// A request the harness builds and signs (see [`flags`]).
    Request {
        client: u8,
        method: u8,
        cred: u8,
        flags: u8,
        tid: u8,
        attrs: Vec<Attr>,
    },
    /// A Send indication to `peer`.
    Send {
        client: u8,
        peer: Peer,
        data: Vec<u8>,
        fingerprint: bool,
    },
    /// ChannelData on channel `number`.
    ChannelData {
        client: u8,
        number: u16,
        data: Vec<u8>,
    },
    /// A datagram from `peer` to relay socket `relay` (see [`Relay`]).
    Peer {
        relay: u8,
        peer: Peer,
        data: Vec<u8>,
    },
    /// Virtual time moves on by `secs`, then both workers run their timers.
    Advance { secs: u16 },
    /// A stream client's connection closes (ignored for UDP clients).
    Close { client: u8 },
    /// A captured STUN message, its credentials replaced by the harness's
    /// (`cred`, the client's nonce, a fresh MESSAGE-INTEGRITY). `flags`
    /// bit 0 moves its XOR-PEER-ADDRESSes to a public peer, bit 1 adds a
    /// FINGERPRINT.
    Resign {
        client: u8,
        cred: u8,
        flags: u8,
        bytes: Vec<u8>,
    },
    /// SIGTERM: one worker starts draining (`alternate` set when odd).
    Drain { worker: u8 },
}

/// Bits of [`Op::Request`]'s `flags`.
pub mod flags {
    /// Append a FINGERPRINT.
    pub const FINGERPRINT: u8 = 1;
    /// Send no credentials at all (to get a 401 and a nonce).
    pub const UNSIGNED: u8 = 2;
    /// Sign with a nonce that is not ours.
    pub const BAD_NONCE: u8 = 4;
    /// Sign with the wrong password.
    pub const BAD_PASSWORD: u8 = 8;
    /// Put an attribute after MESSAGE-INTEGRITY (to be ignored).
    pub const AFTER_INTEGRITY: u8 = 16;
    /// Use the nonce another client got.
    pub const OTHER_NONCE: u8 = 32;
}

/// An attribute of a built request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attr {
    Lifetime(u32),
    /// REQUESTED-TRANSPORT with this protocol number (17 is UDP).
    Transport(u8),
    /// XOR-PEER-ADDRESS.
    Peer(Peer),
    /// CHANNEL-NUMBER (the RFC's range is 0x4000-0x4FFF).
    Channel(u16),
    EvenPort(u8),
    /// RESERVATION-TOKEN: the `n`th last one seen in a response, or
    /// arbitrary if none.
    Token(u8),
    /// REQUESTED-ADDRESS-FAMILY with this family byte.
    Family(u8),
    DontFragment,
    Data(Vec<u8>),
    /// Any type and value, e.g. an unknown comprehension-required one.
    Other(u16, Vec<u8>),
}

/// A peer address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// An entry of the harness's list of interesting peers (allowed,
    /// denied, in every encoding, our own listeners).
    Known(u8),
    /// A relayed address a response handed out (or a guess in the relay
    /// port range), as advertised (`bind` false) or as bound.
    Relay {
        index: u8,
        bind: bool,
    },
    V4([u8; 4], u16),
    V6([u8; 16], u16),
}

/// Which relay socket a peer datagram arrives at: `index` picks one of the
/// relayed addresses handed out, or a port of the range when none was.
pub type Relay = u8;

const OPS: u8 = 9;
const ATTRS: u8 = 10;
const PEERS: u8 = 4;

/// Reads fields off the input; past its end every field reads as zero.
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// A 16-bit length, then that many bytes (fewer at the end of input).
    pub fn bytes(&mut self) -> Vec<u8> {
        let len = usize::from(self.u16()).min(self.data.len());
        let (b, rest) = self.data.split_at(len);
        self.data = rest;
        b.to_vec()
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        std::array::from_fn(|_| self.u8())
    }

    fn peer(&mut self) -> Peer {
        match self.u8() % PEERS {
            0 => Peer::Known(self.u8()),
            1 => {
                let b = self.u8();
                Peer::Relay {
                    index: b & 0x7f,
                    bind: b & 0x80 != 0,
                }
            }
            2 => Peer::V4(self.array(), self.u16()),
            _ => Peer::V6(self.array(), self.u16()),
        }
    }

    fn attr(&mut self) -> Attr {
        match self.u8() % ATTRS {
            0 => Attr::Lifetime(self.u32()),
            1 => Attr::Transport(self.u8()),
            2 => Attr::Peer(self.peer()),
            3 => Attr::Channel(self.u16()),
            4 => Attr::EvenPort(self.u8()),
            5 => Attr::Token(self.u8()),
            6 => Attr::Family(self.u8()),
            7 => Attr::DontFragment,
            8 => Attr::Data(self.bytes()),
            _ => Attr::Other(self.u16(), self.bytes()),
        }
    }

    /// The next operation, or `None` at the end of input.
    pub fn op(&mut self) -> Option<Op> {
        if self.is_empty() {
            return None;
        }
        Some(match self.u8() % OPS {
            0 => Op::Raw {
                client: self.u8(),
                bytes: self.bytes(),
            },
            1 => {
                let (client, method, cred, flags, tid) =
                    (self.u8(), self.u8(), self.u8(), self.u8(), self.u8());
                let attrs = (0..self.u8() % 8).map(|_| self.attr()).collect();
                Op::Request {
                    client,
                    method,
                    cred,
                    flags,
                    tid,
                    attrs,
                }
            }
            2 => Op::Send {
                client: self.u8(),
                peer: self.peer(),
                data: self.bytes(),
                fingerprint: self.u8() & 1 == 1,
            },
            3 => Op::ChannelData {
                client: self.u8(),
                number: self.u16(),
                data: self.bytes(),
            },
            4 => Op::Peer {
                relay: self.u8(),
                peer: self.peer(),
                data: self.bytes(),
            },
            5 => Op::Advance { secs: self.u16() },
            6 => Op::Close { client: self.u8() },
            7 => Op::Resign {
                client: self.u8(),
                cred: self.u8(),
                flags: self.u8(),
                bytes: self.bytes(),
            },
            _ => Op::Drain { worker: self.u8() },
        })
    }
}

/// Writes `ops` in the form [`Reader::op`] reads.
pub fn encode(ops: &[Op]) -> Vec<u8> {
    let mut w = Vec::new();
    for op in ops {
        match op {
            Op::Raw { client, bytes } => {
                w.extend([0, *client]);
                put_bytes(&mut w, bytes);
            }
            Op::Request {
                client,
                method,
                cred,
                flags,
                tid,
                attrs,
            } => {
                assert!(attrs.len() < 8, "at most 7 attributes");
                w.extend([1, *client, *method, *cred, *flags, *tid, attrs.len() as u8]);
                for a in attrs {
                    put_attr(&mut w, a);
                }
            }
            Op::Send {
                client,
                peer,
                data,
                fingerprint,
            } => {
                w.extend([2, *client]);
                put_peer(&mut w, peer);
                put_bytes(&mut w, data);
                w.push(u8::from(*fingerprint));
            }
            Op::ChannelData {
                client,
                number,
                data,
            } => {
                w.extend([3, *client]);
                w.extend(number.to_be_bytes());
                put_bytes(&mut w, data);
            }
            Op::Peer { relay, peer, data } => {
                w.extend([4, *relay]);
                put_peer(&mut w, peer);
                put_bytes(&mut w, data);
            }
            Op::Advance { secs } => {
                w.push(5);
                w.extend(secs.to_be_bytes());
            }
            Op::Close { client } => w.extend([6, *client]),
            Op::Resign {
                client,
                cred,
                flags,
                bytes,
            } => {
                w.extend([7, *client, *cred, *flags]);
                put_bytes(&mut w, bytes);
            }
            Op::Drain { worker } => w.extend([8, *worker]),
        }
    }
    w
}

fn put_bytes(w: &mut Vec<u8>, b: &[u8]) {
    let len = u16::try_from(b.len()).expect("at most 65535 bytes");
    w.extend(len.to_be_bytes());
    w.extend_from_slice(b);
}

fn put_peer(w: &mut Vec<u8>, p: &Peer) {
    match p {
        Peer::Known(i) => w.extend([0, *i]),
        Peer::Relay { index, bind } => w.extend([1, (index & 0x7f) | if *bind { 0x80 } else { 0 }]),
        Peer::V4(ip, port) => {
            w.push(2);
            w.extend(ip);
            w.extend(port.to_be_bytes());
        }
        Peer::V6(ip, port) => {
            w.push(3);
            w.extend(ip);
            w.extend(port.to_be_bytes());
        }
    }
}

fn put_attr(w: &mut Vec<u8>, a: &Attr) {
    match a {
        Attr::Lifetime(s) => {
            w.push(0);
            w.extend(s.to_be_bytes());
        }
        Attr::Transport(p) => w.extend([1, *p]),
        Attr::Peer(p) => {
            w.push(2);
            put_peer(w, p);
        }
        Attr::Channel(n) => {
            w.push(3);
            w.extend(n.to_be_bytes());
        }
        Attr::EvenPort(b) => w.extend([4, *b]),
        Attr::Token(n) => w.extend([5, *n]),
        Attr::Family(f) => w.extend([6, *f]),
        Attr::DontFragment => w.push(7),
        Attr::Data(d) => {
            w.push(8);
            put_bytes(w, d);
        }
        Attr::Other(t, v) => {
            w.push(9);
            w.extend(t.to_be_bytes());
            put_bytes(w, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_and_read_agree() {
        let ops = vec![
            Op::Request {
                client: 1,
                method: 0,
                cred: 2,
                flags: flags::FINGERPRINT,
                tid: 9,
                attrs: vec![
                    Attr::Transport(17),
                    Attr::Peer(Peer::V6([7; 16], 99)),
                    Attr::Peer(Peer::Relay {
                        index: 3,
                        bind: true,
                    }),
                    Attr::Other(0x7777, vec![1, 2, 3]),
                ],
            },
            Op::Send {
                client: 0,
                peer: Peer::Known(4),
                data: b"hi".to_vec(),
                fingerprint: true,
            },
            Op::Advance { secs: 301 },
            Op::Resign {
                client: 2,
                cred: 1,
                flags: 3,
                bytes: vec![0; 20],
            },
            Op::Drain { worker: 1 },
        ];
        let bytes = encode(&ops);
        let mut r = Reader::new(&bytes);
        let back: Vec<Op> = std::iter::from_fn(|| r.op()).collect();
        assert_eq!(back, ops);
    }
}
