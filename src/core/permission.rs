//! The permissions of one allocation (RFC 8656 §9): by peer IP address,
//! ports ignored, each valid until 300 s after it was last installed or
//! refreshed (§9.1). An expired permission stays in the table until its
//! expiry timer removes it, so [`Permissions::len`] counts what the
//! per-allocation quota counts; [`Permissions::holds`] is the relaying test.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Peer IP address to expiry.
#[derive(Debug, Default)]
pub struct Permissions {
    by_ip: HashMap<IpAddr, Instant>,
}

impl Permissions {
    /// Whether data to and from `ip` may be relayed at `now`.
    pub fn holds(&self, ip: IpAddr, now: Instant) -> bool {
        self.by_ip.get(&ip).is_some_and(|exp| *exp > now)
    }

    /// Whether `ip` has an entry, live or waiting for its expiry timer.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.by_ip.contains_key(&ip)
    }

    /// Entries, live or waiting for their expiry timer.
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }

    /// Installs the permission for `ip`, or refreshes it, until `expires`.
    pub fn install(&mut self, ip: IpAddr, expires: Instant) {
        self.by_ip.insert(ip, expires);
    }

    /// Removes `ip`'s permission if it has expired by `now` (its timer
    /// fired; a refresh since then moved the expiry on). Returns whether it
    /// was removed.
    pub fn expire(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.by_ip.get(&ip).is_some_and(|exp| *exp <= now) {
            self.by_ip.remove(&ip);
            return true;
        }
        false
    }

    /// Removes `ip`'s permission whatever its expiry (a reload denied it).
    pub fn remove(&mut self, ip: IpAddr) -> bool {
        self.by_ip.remove(&ip).is_some()
    }

    /// Every IP with an entry.
    pub fn ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.by_ip.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_refresh_outlives_the_first_expiry_timer() {
        #[allow(clippy::disallowed_methods)] // only the origin of virtual time
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut p = Permissions::default();
        p.install(ip, t0 + Duration::from_secs(300));
        assert!(p.holds(ip, t0) && !p.holds(ip, t0 + Duration::from_secs(300)));
        p.install(ip, t0 + Duration::from_secs(400));
        assert!(!p.expire(ip, t0 + Duration::from_secs(300)), "refreshed");
        assert!(p.expire(ip, t0 + Duration::from_secs(400)));
        assert!(p.is_empty() && !p.remove(ip));
    }
}
