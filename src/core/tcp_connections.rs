//! RFC 6062 peer connections as every worker sees them: the registry of
//! CONNECTION-IDs (§5.2, §5.3) with their allocation, user, peer and state
//! (connecting, waiting for a ConnectionBind, bound, §5.4), and what each
//! allocation's bound pairs copied. Shared through
//! [`super::global::Global`] because a ConnectionBind may reach another
//! worker than the allocation's; locked per Connect, ConnectionBind and
//! close, never per byte.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::FiveTuple;

/// Where a peer connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The server is connecting to the peer (Connect, §5.2).
    Connecting,
    /// Connected, waiting for a ConnectionBind (§5.3).
    Ready,
    /// Joined to this client data connection (§5.4).
    Bound(FiveTuple),
}

/// One peer connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The control connection of the allocation.
    pub allocation: FiveTuple,
    /// Who may bind it (the allocation's user).
    pub username: String,
    pub peer: SocketAddr,
    pub state: State,
}

/// What the bound pairs of one allocation copied, counted by the shell as
/// it copies (on whichever worker holds the data connection) and added to
/// the allocation's usage record when it ends. A "packet" is one read.
#[derive(Debug, Default)]
pub struct TcpUsage {
    sent: [AtomicU64; 2],
    received: [AtomicU64; 2],
}

impl TcpUsage {
    /// Counts `bytes` copied from the client to the peer.
    pub fn count_sent(&self, bytes: usize) {
        self.sent[0].fetch_add(1, Ordering::Relaxed);
        self.sent[1].fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Counts `bytes` copied from the peer to the client.
    pub fn count_received(&self, bytes: usize) {
        self.received[0].fetch_add(1, Ordering::Relaxed);
        self.received[1].fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(super) fn add_to(&self, usage: &mut super::allocation::Usage) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        usage.sent.packets += load(&self.sent[0]);
        usage.sent.bytes += load(&self.sent[1]);
        usage.received.packets += load(&self.received[0]);
        usage.received.bytes += load(&self.received[1]);
    }
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<u32, Entry>,
    /// The same connections, by allocation.
    by_allocation: HashMap<FiveTuple, HashSet<u32>>,
    /// What each allocation's pairs copied, until it ends.
    usage: HashMap<FiveTuple, Arc<TcpUsage>>,
}

impl Inner {
    fn remove(&mut self, id: u32) -> Option<Entry> {
        let entry = self.by_id.remove(&id)?;
        if let Some(ids) = self.by_allocation.get_mut(&entry.allocation) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_allocation.remove(&entry.allocation);
            }
        }
        debug_assert_eq!(
            self.by_id.len(),
            self.by_allocation.values().map(HashSet::len).sum::<usize>()
        );
        Some(entry)
    }
}

/// Why a ConnectionBind names no connection it may bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindError {
    /// No such connection, or it is not waiting for a bind (§5.4: 400).
    Unknown,
    /// Another user's connection (441).
    WrongUser,
}

/// Every peer connection of the process, by CONNECTION-ID.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a new connection under a fresh random id (never 0).
    pub fn insert(&self, rng: &mut impl rand::Rng, entry: Entry) -> u32 {
        let mut g = self.lock();
        let id = loop {
            let id: u32 = rng.gen();
            if id != 0 && !g.by_id.contains_key(&id) {
                break id;
            }
        };
        g.by_allocation
            .entry(entry.allocation)
            .or_default()
            .insert(id);
        g.usage.entry(entry.allocation).or_default();
        g.by_id.insert(id, entry);
        id
    }

    /// The usage counters of connection `id`'s allocation.
    pub fn usage_of(&self, id: u32) -> Option<Arc<TcpUsage>> {
        let g = self.lock();
        let allocation = g.by_id.get(&id)?.allocation;
        g.usage.get(&allocation).cloned()
    }

    pub fn get(&self, id: u32) -> Option<Entry> {
        self.lock().by_id.get(&id).cloned()
    }

    /// Marks a connection connected; false if it is gone.
    pub fn set_ready(&self, id: u32) -> bool {
        match self.lock().by_id.get_mut(&id) {
            Some(e) => {
                e.state = State::Ready;
                true
            }
            None => false,
        }
    }

    /// Binds a ready connection to client data connection `data` for
    /// `username`.
    pub fn bind(&self, id: u32, username: &str, data: FiveTuple) -> Result<Entry, BindError> {
        let mut g = self.lock();
        let entry = g.by_id.get_mut(&id).ok_or(BindError::Unknown)?;
        if entry.state != State::Ready {
            return Err(BindError::Unknown);
        }
        if entry.username != username {
            return Err(BindError::WrongUser);
        }
        entry.state = State::Bound(data);
        Ok(entry.clone())
    }

    /// Removes a connection if it is still waiting for its bind.
    pub fn remove_if_unbound(&self, id: u32) -> Option<Entry> {
        let mut g = self.lock();
        match g.by_id.get(&id)?.state {
            State::Bound(_) => None,
            _ => g.remove(id),
        }
    }

    pub fn remove(&self, id: u32) -> Option<Entry> {
        self.lock().remove(id)
    }

    /// Removes every connection of an allocation, returning their ids and
    /// what they copied.
    pub fn remove_allocation(&self, allocation: FiveTuple) -> (Vec<u32>, Option<Arc<TcpUsage>>) {
        let mut g = self.lock();
        let usage = g.usage.remove(&allocation);
        let ids: Vec<u32> = g
            .by_allocation
            .get(&allocation)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for id in &ids {
            g.remove(*id);
        }
        (ids, usage)
    }

    /// The connections of an allocation, with their peers.
    pub fn peers_of(&self, allocation: FiveTuple) -> Vec<(u32, SocketAddr)> {
        let g = self.lock();
        g.by_allocation
            .get(&allocation)
            .into_iter()
            .flatten()
            .filter_map(|id| Some((*id, g.by_id.get(id)?.peer)))
            .collect()
    }

    /// Connections of an allocation (in any state).
    pub fn count(&self, allocation: FiveTuple) -> usize {
        self.lock()
            .by_allocation
            .get(&allocation)
            .map_or(0, HashSet::len)
    }

    /// Whether an allocation has a connection (in any state) with `peer`.
    pub fn has_peer(&self, allocation: FiveTuple, peer: SocketAddr) -> bool {
        let g = self.lock();
        g.by_allocation.get(&allocation).is_some_and(|ids| {
            ids.iter()
                .any(|id| g.by_id.get(id).is_some_and(|e| e.peer == peer))
        })
    }

    /// Connections in the process.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Transport;
    use rand::SeedableRng;

    fn ft(port: u16) -> FiveTuple {
        FiveTuple {
            client: SocketAddr::from(([192, 0, 2, 1], port)),
            server: SocketAddr::from(([192, 0, 2, 2], 3478)),
            transport: Transport::Tcp,
        }
    }

    #[test]
    fn a_connection_is_bound_once_by_its_user_and_leaves_with_its_allocation() {
        let r = Registry::default();
        let mut rng = rand::rngs::StdRng::from_seed([1; 32]);
        let peer = SocketAddr::from(([198, 18, 0, 1], 80));
        let entry = |state| Entry {
            allocation: ft(1),
            username: "alice".into(),
            peer,
            state,
        };
        let id = r.insert(&mut rng, entry(State::Connecting));
        assert!(r.has_peer(ft(1), peer) && !r.has_peer(ft(2), peer));
        assert_eq!(r.bind(id, "alice", ft(9)), Err(BindError::Unknown));
        assert!(r.set_ready(id));
        assert_eq!(r.bind(id, "bob", ft(9)), Err(BindError::WrongUser));
        assert!(r.bind(id, "alice", ft(9)).is_ok());
        assert_eq!(r.bind(id, "alice", ft(9)), Err(BindError::Unknown));
        assert_eq!(r.remove_if_unbound(id), None, "bound: kept");
        let other = r.insert(&mut rng, entry(State::Ready));
        r.usage_of(other).unwrap().count_sent(5);
        assert_eq!(r.count(ft(1)), 2);
        let (mut ids, usage) = r.remove_allocation(ft(1));
        ids.sort();
        let mut want = vec![id, other];
        want.sort();
        assert_eq!(ids, want);
        let mut u = crate::core::allocation::Usage::default();
        usage.unwrap().add_to(&mut u);
        assert_eq!((u.sent.packets, u.sent.bytes), (1, 5));
        assert!(r.is_empty());
    }
}
