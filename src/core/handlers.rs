//! Request handlers: Binding (RFC 8489 §6.3), authentication (RFC 8489
//! §9.2.4), Allocate (RFC 8656 §7.2), Refresh (§7.3), CreatePermission
//! (§9.2), ChannelBind (§12.2).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use stun::attributes::*;
use stun::message::{
    Method, CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE, METHOD_BINDING, METHOD_CHANNEL_BIND,
    METHOD_CONNECT, METHOD_CONNECTION_BIND, METHOD_CREATE_PERMISSION, METHOD_REFRESH,
};
use tracing::{debug, info};

use super::allocation::{Allocation, RefusalBudget, Relayed};
use super::audit::{self, AuditKind};
use super::auth::{quota_key, Key};
use super::classic::ChangeRequest;
use super::expiry::Timer;
use super::family::{self, Family, FamilyPlan};
use super::global::QuotaExceeded;
use super::message::{self, Request};
use super::peer_policy::{canonical, Verdict};
use super::ports::{NoPort, Parity};
use super::redirect::Alternate;
use super::server::{
    Server, CHANNEL_LIFETIME, CHANNEL_QUARANTINE, PERMISSION_LIFETIME, RESERVATION_LIFETIME,
};
use super::{tcp_relay, FiveTuple, Now, RelaySockets};
use crate::metrics::RESULT_SUCCESS;

/// Channel numbers a client may bind: RFC 8656 §12 allows 0x4000-0x4FFF;
/// RFC 5766 clients use up to 0x7FFF, which is accepted too.
const CHANNEL_NUMBERS: std::ops::RangeInclusive<u16> = 0x4000..=0x7FFF;

/// REQUESTED-TRANSPORT value for UDP (RFC 8656 §14.7).
const PROTO_UDP: u8 = 17;

/// The bounded `method` label of `turnd_requests_total`.
fn method_label(method: Method) -> &'static str {
    match method {
        METHOD_BINDING => "binding",
        METHOD_ALLOCATE => "allocate",
        METHOD_REFRESH => "refresh",
        METHOD_CREATE_PERMISSION => "create_permission",
        METHOD_CHANNEL_BIND => "channel_bind",
        METHOD_CONNECT => "connect",
        METHOD_CONNECTION_BIND => "connection_bind",
        _ => "other",
    }
}

/// True for the request methods turnd answers; requests of any other
/// method are discarded (RFC 8489 §6.3).
pub(super) fn serves(method: Method) -> bool {
    matches!(
        method,
        METHOD_BINDING
            | METHOD_ALLOCATE
            | METHOD_REFRESH
            | METHOD_CREATE_PERMISSION
            | METHOD_CHANNEL_BIND
            | METHOD_CONNECT
            | METHOD_CONNECTION_BIND
    )
}

/// A handler's answer: the error code and whether it is sent with integrity.
pub(super) struct Reject {
    pub(super) code: u16,
    pub(super) key: Option<Key>,
}

pub(super) fn reject(code: u16, key: Key) -> Reject {
    Reject {
        code,
        key: Some(key),
    }
}

/// An authenticated request's credentials.
pub(super) struct Authed {
    pub(super) key: Key,
    pub(super) username: String,
}

fn u32_attr(value: &[u8]) -> Option<u32> {
    let b: [u8; 4] = value.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

impl Server {
    /// Handles a request; returns the response bytes, if any.
    pub(super) fn handle_request(
        &mut self,
        now: Now,
        ft: FiveTuple,
        req: &mut Request,
        relays: &mut dyn RelaySockets,
    ) -> Option<Vec<u8>> {
        let method = req.msg.typ.method;
        let label = method_label(method);
        if method == METHOD_BINDING {
            if !self.unauthenticated_allowed(now, ft) {
                return None;
            }
            return Some(self.binding(ft, req));
        }
        let result = match self.authenticate(now, ft, req) {
            Err(reply) => Err(reply),
            Ok(authed) => {
                let unknown = req.unknown_required(message::KNOWN_REQUIRED);
                if !unknown.is_empty() {
                    self.count(label, "420");
                    let mut m = message::error_response(req, 420);
                    message::add_unknown_attributes(&mut m, &unknown);
                    return Some(message::finish(m, Some(&authed.key), req.has_fingerprint));
                }
                if method == METHOD_ALLOCATE {
                    if let Some(redirect) = self.redirect(now, ft, req, &authed.key) {
                        self.count(label, "300");
                        return Some(redirect);
                    }
                }
                match method {
                    METHOD_ALLOCATE => self.allocate(now, ft, req, authed, relays),
                    METHOD_REFRESH => self.refresh(now, ft, req, authed, relays),
                    METHOD_CHANNEL_BIND if self.is_tcp_allocation(&ft) => {
                        // No channels on a TCP allocation (RFC 6062 §5.1).
                        Err(reject(400, authed.key))
                    }
                    METHOD_CREATE_PERMISSION | METHOD_CHANNEL_BIND => {
                        self.peer_request(now, ft, req, authed, method)
                    }
                    METHOD_CONNECT => match self.connect(now, ft, req, authed) {
                        // Answered once the shell's connect ends.
                        Ok(None) => return None,
                        Ok(Some(bytes)) => Ok(bytes),
                        Err(r) => Err(r),
                    },
                    METHOD_CONNECTION_BIND => self.connection_bind(now, ft, req, authed),
                    // Only methods that `serves` reach here.
                    _ => Err(reject(400, authed.key)),
                }
            }
        };
        match result {
            Ok(bytes) => {
                self.count(label, "success");
                Some(bytes)
            }
            Err(r) => {
                if r.key.is_none() && !self.unauthenticated_allowed(now, ft) {
                    return None;
                }
                self.count(label, &r.code.to_string());
                let mut m = message::error_response(req, r.code);
                if matches!(r.code, 401 | 438) {
                    self.add_challenge(now, ft, &mut m);
                }
                // The one 420 a handler gives: DONT-FRAGMENT it cannot honour.
                if r.code == 420 {
                    message::add_unknown_attributes(&mut m, &[ATTR_DONT_FRAGMENT]);
                }
                Some(message::finish(m, r.key.as_ref(), req.has_fingerprint))
            }
        }
    }

    fn count(&self, method: &str, result: &str) {
        if result == RESULT_SUCCESS {
            return self.metrics.count_request(method, None);
        }
        self.metrics
            .requests
            .with_label_values(&[method, result])
            .inc();
    }

    pub(super) fn auth_failure(&self, reason: &str) {
        self.metrics
            .auth_failures
            .with_label_values(&[reason])
            .inc();
    }

    /// Binding (RFC 8489 §6.3.1): no credentials, XOR-MAPPED-ADDRESS of the
    /// source, FINGERPRINT when the request had one.
    fn binding(&mut self, ft: FiveTuple, req: &Request) -> Vec<u8> {
        self.metrics.count_binding(ft.transport.as_str());
        let mut unknown = req.unknown_required(message::KNOWN_REQUIRED);
        // CHANGE-REQUEST with no flag set (stuntman's stunclient sends one)
        // is a plain Binding; a flag set asks for an address turnd does not
        // have (RFC 5780 §7.2).
        match ChangeRequest::parse(req.get(ATTR_CHANGE_REQUEST)) {
            ChangeRequest::None => unknown.retain(|t| *t != ATTR_CHANGE_REQUEST),
            ChangeRequest::Change => {}
            ChangeRequest::Malformed => {
                self.count("binding", "400");
                let m = message::error_response(req, 400);
                return message::finish(m, None, req.has_fingerprint);
            }
        }
        if !unknown.is_empty() {
            self.count("binding", "420");
            let mut m = message::error_response(req, 420);
            message::add_unknown_attributes(&mut m, &unknown);
            return message::finish(m, None, req.has_fingerprint);
        }
        self.count("binding", "success");
        let mut m = message::response(req, CLASS_SUCCESS_RESPONSE);
        message::add_xor_address(&mut m, ATTR_XORMAPPED_ADDRESS, ft.client);
        message::finish(m, None, req.has_fingerprint)
    }

    /// Counts an authentication failure and writes its audit line.
    pub(super) fn refuse_auth(&self, now: Now, ft: FiveTuple, reason: &str, user: Option<&str>) {
        self.auth_failure(reason);
        if let Some(suppressed) = self.audit(now, ft, AuditKind::AuthFailure) {
            let user = user.map(|u| self.redact.show(u).to_string());
            info!(target: audit::TARGET, reason, user = user.as_deref().unwrap_or(""), client = %self.redact.show(ft.client), suppressed, "authentication failed");
        }
    }

    /// Writes the audit line of a quota rejection.
    fn audit_quota(&self, now: Now, ft: FiveTuple, user: &str, kind: &str, code: u16) {
        if let Some(suppressed) = self.audit(now, ft, AuditKind::Quota) {
            let user = self.redact.show(user).to_string();
            info!(target: audit::TARGET, kind, code, user = user.as_str(), client = %self.redact.show(ft.client), suppressed, "quota reached: request refused");
        }
    }

    /// Writes the audit line of a peer refused by the policy.
    fn audit_peer(&self, now: Now, ft: FiveTuple, user: &str, peer: SocketAddr, reason: &str) {
        if let Some(suppressed) = self.audit(now, ft, AuditKind::PeerDenied) {
            let user = self.redact.show(user).to_string();
            info!(target: audit::TARGET, reason, user = user.as_str(), client = %self.redact.show(ft.client), peer = %self.redact.show(peer), suppressed, "peer denied");
        }
    }

    /// The lifetime a client gets (RFC 8656 §7.2 step 7, §7.3).
    fn lifetime(&self, req: &Request) -> Result<Duration, ()> {
        let requested = match req.get(ATTR_LIFETIME) {
            None => return Ok(self.cfg.default_lifetime),
            Some(v) => Duration::from_secs(u32_attr(v).ok_or(())?.into()),
        };
        if requested.is_zero() {
            return Ok(requested);
        }
        Ok(requested
            .min(self.cfg.max_lifetime)
            .max(self.cfg.default_lifetime))
    }

    /// Allocate (RFC 8656 §7.2).
    fn allocate(
        &mut self,
        now: Now,
        ft: FiveTuple,
        req: &Request,
        authed: Authed,
        relays: &mut dyn RelaySockets,
    ) -> Result<Vec<u8>, Reject> {
        let key = authed.key;
        if let Some(existing) = self.allocations.get(&ft) {
            // A retransmission gets the same success again (§7.2 step 1).
            if existing.allocate_transaction == req.transaction_id()
                && existing.username == authed.username
            {
                return Ok(existing.allocate_response.clone());
            }
            return Err(reject(437, key));
        }
        // Draining (SIGTERM) with no alternate for this client (see
        // `redirect`): no new allocations.
        if self.draining {
            return Err(reject(508, key));
        }
        // Over the server's bandwidth capacity (`[quota] bps_capacity`),
        // with no alternate for this client (see `redirect`).
        if self.saturated(now) {
            let code = self.quota_rejected(now, ft, &authed.username, "bandwidth", 508);
            return Err(reject(code, key));
        }
        let tcp = match req.get(ATTR_REQUESTED_TRANSPORT) {
            None => return Err(reject(400, key)),
            Some(v) if v.len() != 4 => return Err(reject(400, key)),
            Some(v) if v[0] == PROTO_UDP => false,
            Some(v) if v[0] == tcp_relay::PROTO_TCP => {
                tcp_relay::check_allocate(ft, req).map_err(|c| reject(c, key))?;
                true
            }
            Some(_) => return Err(reject(442, key)),
        };
        let token = req.get(ATTR_RESERVATION_TOKEN);
        let even = req.get(ATTR_EVEN_PORT);
        let family = req.get(ATTR_REQUESTED_ADDRESS_FAMILY);
        let (additional, error_attr) = match family::additional_of(req) {
            Some((v, t)) => (Some(v), t),
            None => (None, family::ATTR_ADDRESS_ERROR_CODE),
        };
        if token.is_some() && (even.is_some() || family.is_some() || additional.is_some()) {
            return Err(reject(400, key));
        }
        // EVEN-PORT reserving the next port (R bit) with a dual allocation:
        // 400 (§7.2).
        if additional.is_some() && even.and_then(|v| v.first()).is_some_and(|b| b & 0x80 != 0) {
            return Err(reject(400, key));
        }
        // The families asked for and served (§7.2); a reservation token
        // carries its own family.
        let plan = match token {
            Some(_) => FamilyPlan::default(),
            None => self
                .family_plan(ft.client.ip(), family, additional)
                .map_err(|code| reject(code, key))?,
        };
        let lifetime = self.lifetime(req).map_err(|_| reject(400, key))?;
        let lifetime = if lifetime.is_zero() {
            self.cfg.default_lifetime
        } else {
            lifetime
        };
        // Quotas (§7.2 step 8): per user 486, in total 508, counted once
        // for a dual allocation. A claimed reservation brings its own slot,
        // so it is not admitted again.
        let is_static = self.cfg.credentials.is_static(&authed.username);
        let user = quota_key(&authed.username, is_static);
        let (relay, reserved_token) = match token {
            Some(t) => (
                self.claim(t, &user, relays).map_err(|c| reject(c, key))?,
                None,
            ),
            None => {
                self.admit(now, ft, &user, &authed.username)
                    .map_err(|code| reject(code, key))?;
                let ip = self.relay_ip_of(plan.first).bind;
                let port = if tcp {
                    let mut listening = tcp_relay::Listening(relays);
                    self.relay_port(now, ft, even, &user, ip, &mut listening)
                } else {
                    self.relay_port(now, ft, even, &user, ip, relays)
                };
                match port {
                    Ok((port, t)) => (SocketAddr::new(ip, port), t),
                    Err(code) => {
                        self.global.release(&user);
                        return Err(reject(code, key));
                    }
                }
            }
        };
        // The other family of a dual allocation: its own port from the
        // same range, or ADDRESS-ERROR-CODE 508 when none is free.
        let mut unserved = plan.unserved.map(|f| (f, 440));
        let second = plan.second.and_then(|f| {
            let r = self.relay_ip_of(f);
            let port = if tcp {
                let mut listening = tcp_relay::Listening(relays);
                self.second_port(now, ft, even, &authed.username, r.bind, &mut listening)
            } else {
                self.second_port(now, ft, even, &authed.username, r.bind, relays)
            };
            match port {
                Ok(port) => Some(Relayed {
                    relay: SocketAddr::new(r.bind, port),
                    advertised: SocketAddr::new(r.advertised, port),
                }),
                Err(code) => {
                    unserved = Some((f, code));
                    None
                }
            }
        });
        // DONT-FRAGMENT (§7.2): DF on this allocation's datagrams, or 420
        // where the platform cannot set it.
        if req.get(ATTR_DONT_FRAGMENT).is_some()
            && std::iter::once(relay)
                .chain(second.map(|r| r.relay))
                .any(|r| relays.dont_fragment(r).is_err())
        {
            for r in std::iter::once(relay).chain(second.map(|r| r.relay)) {
                self.ports.release(r.ip(), r.port(), relays);
                self.global.unhold(r.port());
            }
            self.global.release(&user);
            return Err(reject(420, key));
        }
        let advertised = SocketAddr::new(
            self.relay_ip_of(Family::of(relay.ip())).advertised,
            relay.port(),
        );

        // Both XOR-RELAYED-ADDRESSes, IPv4 first (§7.2).
        let mut m = message::response(req, CLASS_SUCCESS_RESPONSE);
        message::add_xor_address(&mut m, ATTR_XOR_RELAYED_ADDRESS, advertised);
        if let Some(r) = second {
            message::add_xor_address(&mut m, ATTR_XOR_RELAYED_ADDRESS, r.advertised);
        }
        if let Some((f, code)) = unserved {
            family::add_address_error(&mut m, error_attr, f, code);
            self.family_refused(f);
        }
        m.add(ATTR_LIFETIME, &(lifetime.as_secs() as u32).to_be_bytes());
        if let Some(t) = reserved_token {
            m.add(ATTR_RESERVATION_TOKEN, &t.to_be_bytes());
        }
        message::add_xor_address(&mut m, ATTR_XORMAPPED_ADDRESS, ft.client);
        let response = message::finish(m, Some(&key), req.has_fingerprint);

        let expires = now.instant + lifetime;
        self.timers.schedule(Timer::Allocation(ft), expires);
        self.by_relay_port.insert(relay.port(), ft);
        if let Some(r) = second {
            self.by_relay_port.insert(r.relay.port(), ft);
        }
        if tcp {
            self.tcp.allocations.insert(ft);
        }
        self.allocations.insert(
            ft,
            Allocation {
                five_tuple: ft,
                relay,
                advertised,
                additional: second,
                username: authed.username,
                quota_key: user,
                key,
                expires,
                permissions: Default::default(),
                channels: Default::default(),
                allocate_transaction: req.transaction_id(),
                allocate_response: response.clone(),
                refusals: RefusalBudget::new(self.cfg.peer_refusal_burst, now.instant),
                id: rand::Rng::gen(&mut self.rng),
                created: now.instant,
                created_unix: now.unix_secs,
                rate: super::rate::RateWindow::new(now.instant),
                usage: Default::default(),
                buckets: Default::default(),
            },
        );
        self.count_relayed_addresses(std::iter::once(relay).chain(second.map(|r| r.relay)), true);
        let transport = ft.transport.as_str();
        self.metrics
            .allocations_created
            .with_label_values(&[transport])
            .inc();
        self.metrics
            .allocations_active
            .with_label_values(&[transport])
            .inc();
        let additional = second.map(|r| r.advertised.to_string());
        info!(client = %self.redact.show(ft.client), user = %self.redact.show(&self.allocations[&ft].username), %transport, relay = %advertised, additional = additional.as_deref().unwrap_or(""), lifetime_s = lifetime.as_secs(), "allocation created");
        Ok(response)
    }

    /// 300 Try Alternate for a new Allocate (RFC 8489 §10) while draining
    /// (the drain alternate first) or while this node is over a
    /// `[redirect]` threshold of allocations or rate (the alternates in
    /// turn); `None` when the
    /// Allocate is handled here: no redirect due, or no alternate fits.
    fn redirect(&mut self, now: Now, ft: FiveTuple, req: &Request, key: &Key) -> Option<Vec<u8>> {
        if self.allocations.contains_key(&ft) {
            return None; // a retransmission or 437, answered by allocate
        }
        let policy = &self.cfg.redirect;
        if !self.draining
            && !policy.over(self.global.total(), self.global.rate.busiest())
            && !self.saturated(now)
        {
            return None;
        }
        let drain = self
            .draining
            .then(|| self.alternate.for_client(ft.client))
            .flatten();
        let drain = drain.map(|address| Alternate {
            address,
            domain: None,
        });
        let alternate = match drain.filter(|a| a.fits(&ft)) {
            Some(a) => a,
            None => self
                .global
                .redirect_turn
                .pick(&policy.alternates, &ft)?
                .clone(),
        };
        let mut m = message::error_response(req, 300);
        alternate.add_to(&mut m, &ft);
        debug!(client = %self.redact.show(ft.client), alternate = %alternate.address, draining = self.draining, "allocation redirected");
        Some(message::finish(m, Some(key), req.has_fingerprint))
    }

    /// The per-user limit of quota key `user` ([`quota_key`]): a static
    /// user's own `allocations`, else none for static users (one name is
    /// commonly shared by every client of an app), else
    /// `allocations_per_user` for REST users.
    fn user_limit(&self, user: &str) -> usize {
        match user.strip_prefix('\u{1}') {
            Some(name) => self
                .cfg
                .static_user_allocations
                .get(name)
                .copied()
                .unwrap_or(usize::MAX),
            None => self.cfg.allocations_per_user,
        }
    }

    /// Counts one more allocation (or reservation) of `user` against the
    /// quotas (RFC 8656 §7.2 step 8): per user 486, in total 508.
    fn admit(&self, now: Now, ft: FiveTuple, user: &str, username: &str) -> Result<(), u16> {
        let (per_user, total) = (self.user_limit(user), self.cfg.allocations_total);
        self.global
            .admit(user, per_user, total)
            .map_err(|exceeded| {
                let (kind, code) = match exceeded {
                    QuotaExceeded::User => ("user", 486),
                    QuotaExceeded::Total => ("total", 508),
                };
                self.quota_rejected(now, ft, username, kind, code)
            })
    }

    /// The relay port reserved under RESERVATION-TOKEN `token` (RFC 8656
    /// §7.2), with the quota slot the reservation held, which passes to
    /// the new allocation. Only `user`, who made the reservation, may
    /// claim it. Errors are codes.
    fn claim(
        &mut self,
        token: &[u8],
        user: &str,
        relays: &mut dyn RelaySockets,
    ) -> Result<SocketAddr, u16> {
        let t = u64::from_be_bytes(token.try_into().map_err(|_| 400u16)?);
        // Only the user who made the reservation may claim it; another
        // user's claim leaves it in place.
        let addr = self.global.claim_reservation(t, user).ok_or(508u16)?;
        self.timers.cancel(Timer::Reservation(t));
        if relays.claim(addr).is_err() {
            self.global.unhold(addr.port());
            self.global.release(user);
            return Err(508);
        }
        self.ports.adopt(addr.port());
        Ok(addr)
    }

    /// The username a quota key was taken for (for logs).
    fn quota_owner(&self, user: &str) -> String {
        user.strip_prefix('\u{1}').unwrap_or(user).to_string()
    }

    /// Counts and logs a quota rejection; returns its error code.
    pub(super) fn quota_rejected(
        &self,
        now: Now,
        ft: FiveTuple,
        username: &str,
        kind: &str,
        code: u16,
    ) -> u16 {
        self.metrics
            .quota_rejections
            .with_label_values(&[kind])
            .inc();
        self.audit_quota(now, ft, username, kind, code);
        code
    }

    /// The relay port of a new allocation on `ip`: an even one (EVEN-PORT,
    /// reserving the next when asked), or any. Returns the port and the
    /// token of a new reservation; errors are codes.
    fn relay_port(
        &mut self,
        now: Now,
        ft: FiveTuple,
        even: Option<&[u8]>,
        user: &str,
        ip: IpAddr,
        relays: &mut dyn RelaySockets,
    ) -> Result<(u16, Option<u64>), u16> {
        let parity = match even.map(|v| v.first()) {
            Some(None) => return Err(400),
            None => Parity::Any,
            Some(Some(b)) if b & 0x80 != 0 => Parity::EvenReserveNext,
            Some(Some(_)) => Parity::Even,
        };
        let pair = parity == Parity::EvenReserveNext;
        // A reserved port counts against the quotas like an allocation: a
        // credential cannot hold the port range through reservations.
        if pair {
            let username = self.quota_owner(user);
            self.admit(now, ft, user, &username)?;
        }
        let global = &self.global;
        let held = |p: u16| global.holds(p);
        let port = match self.ports.acquire(&mut self.rng, ip, parity, relays, &held) {
            Ok(port) => port,
            Err(no_port) => {
                if pair {
                    self.global.release(user);
                }
                // Out of descriptors is counted by the shell, which knows
                // the limit (turnd_fd_exhausted_total).
                if no_port == NoPort::Descriptors {
                    return Err(508);
                }
                let username = self.quota_owner(user);
                return Err(self.quota_rejected(now, ft, &username, "relay_ports", 508));
            }
        };
        self.global.hold(port);
        if !pair {
            return Ok((port, None));
        }
        let t: u64 = rand::Rng::gen(&mut self.rng);
        self.global.hold(port + 1);
        self.global.reserve(t, SocketAddr::new(ip, port + 1), user);
        self.timers
            .schedule(Timer::Reservation(t), now.instant + RESERVATION_LIFETIME);
        Ok((port, Some(t)))
    }

    /// Refresh (RFC 8656 §7.3): a new lifetime, or deletion with 0.
    fn refresh(
        &mut self,
        now: Now,
        ft: FiveTuple,
        req: &Request,
        authed: Authed,
        relays: &mut dyn RelaySockets,
    ) -> Result<Vec<u8>, Reject> {
        let key = authed.key;
        let Some(alloc) = self.allocations.get(&ft) else {
            return Err(reject(437, key));
        };
        // A family other than the allocation's is 443, even with LIFETIME 0
        // (RFC 8656 §7.3): the request names some other allocation.
        // A dual allocation matches either of its families.
        if let Some(family) = req.get(ATTR_REQUESTED_ADDRESS_FAMILY) {
            match (family.first(), family.len()) {
                (Some(1), 4) | (Some(2), 4) => {
                    let f = if family[0] == 1 {
                        Family::V4
                    } else {
                        Family::V6
                    };
                    if !alloc.has_family(f) {
                        return Err(reject(443, key));
                    }
                }
                _ => return Err(reject(400, key)),
            }
        }
        let lifetime = self.lifetime(req).map_err(|_| reject(400, key))?;
        if lifetime.is_zero() {
            self.delete_allocation(now, ft, super::server::EndReason::Deleted, relays);
        } else if let Some(alloc) = self.allocations.get_mut(&ft) {
            alloc.expires = now.instant + lifetime;
            self.timers.schedule(Timer::Allocation(ft), alloc.expires);
            debug!(client = %self.redact.show(ft.client), lifetime_s = lifetime.as_secs(), "allocation refreshed");
        }
        let mut m = message::response(req, CLASS_SUCCESS_RESPONSE);
        m.add(ATTR_LIFETIME, &(lifetime.as_secs() as u32).to_be_bytes());
        Ok(message::finish(m, Some(&key), req.has_fingerprint))
    }

    /// Checks a peer against the allocation's families and the peer
    /// policy, which judges IPv4 and IPv6 peers alike. `relay` is the
    /// allocation's relayed address of the peer's family
    /// ([`Allocation::relay_for`]); none is 443.
    fn check_peer(
        &self,
        now: Now,
        ft: FiveTuple,
        user: &str,
        relay: Option<SocketAddr>,
        peer: SocketAddr,
        key: Key,
    ) -> Result<IpAddr, Reject> {
        if relay.is_none() {
            return Err(reject(443, key));
        }
        let ip = canonical(peer.ip());
        // Our own relay address is a peer whatever the built-in list says:
        // two clients of this server talk relay to relay. Only relay ports
        // of it are reachable (checked on ChannelBind and Send). The
        // operator's `deny` still wins ("deny beats allow").
        if self.is_own_relay_ip(ip) && !self.cfg.peer_policy.operator_denies(ip) {
            return Ok(ip);
        }
        if let Verdict::Denied(reason) = self.cfg.peer_policy.check(ip) {
            self.metrics
                .peer_denied
                .with_label_values(&[reason.as_str()])
                .inc();
            self.audit_peer(now, ft, user, peer, reason.as_str());
            return Err(reject(403, key));
        }
        Ok(ip)
    }

    /// [`Server::check_peer`] for a peer transport address (ChannelBind,
    /// Connect): not one of our listeners, nor a port of our relay address
    /// that turnd does not hold. Returns it canonical.
    pub(super) fn check_peer_port(
        &self,
        now: Now,
        ft: FiveTuple,
        user: &str,
        relay: Option<SocketAddr>,
        peer: SocketAddr,
        key: Key,
    ) -> Result<SocketAddr, Reject> {
        let ip = self.check_peer(now, ft, user, relay, peer, key)?;
        if self.is_own_listener(peer) || !self.own_relay_port_ok(peer) {
            self.metrics
                .peer_denied
                .with_label_values(&["own_address"])
                .inc();
            self.audit_peer(now, ft, user, peer, "own_address");
            return Err(reject(403, key));
        }
        Ok(SocketAddr::new(ip, peer.port()))
    }

    /// CreatePermission or ChannelBind. One aimed at turnd's own relay
    /// address is refused when the port is not one turnd holds, so its
    /// answer tells which relay ports other tenants have: each allocation
    /// gets a budget of such refusals, and past it every request of the
    /// allocation aimed at the relay address is refused unread (403,
    /// `turnd_peer_denied_total{reason="refusal_limit"}`). Requests to other
    /// peers are not affected (their refusals reveal only the policy).
    fn peer_request(
        &mut self,
        now: Now,
        ft: FiveTuple,
        req: &Request,
        authed: Authed,
        method: Method,
    ) -> Result<Vec<u8>, Reject> {
        let (burst, interval) = (self.cfg.peer_refusal_burst, self.cfg.peer_refusal_interval);
        let key = authed.key;
        let at_relay = req
            .get_all(ATTR_XOR_PEER_ADDRESS)
            .filter_map(|v| req.xor_address(v))
            .any(|p| self.is_own_relay_ip(canonical(p.ip())));
        if at_relay {
            if let Some(alloc) = self.allocations.get_mut(&ft) {
                if !alloc.refusals.has_left(now.instant, burst, interval) {
                    self.metrics
                        .peer_denied
                        .with_label_values(&["refusal_limit"])
                        .inc();
                    return Err(reject(403, key));
                }
            }
        }
        let result = if method == METHOD_CREATE_PERMISSION {
            self.create_permission(now, ft, req, authed)
        } else {
            self.channel_bind(now, ft, req, authed)
        };
        if at_relay && matches!(result, Err(Reject { code: 403, .. })) {
            if let Some(alloc) = self.allocations.get_mut(&ft) {
                alloc.refusals.spend();
            }
        }
        result
    }

    /// CreatePermission (RFC 8656 §9.2): every XOR-PEER-ADDRESS, all or none.
    fn create_permission(
        &mut self,
        now: Now,
        ft: FiveTuple,
        req: &Request,
        authed: Authed,
    ) -> Result<Vec<u8>, Reject> {
        let key = authed.key;
        let Some(alloc) = self.allocations.get(&ft) else {
            return Err(reject(437, key));
        };
        let mut ips = Vec::new();
        for value in req.get_all(ATTR_XOR_PEER_ADDRESS) {
            let peer = req.xor_address(value).ok_or_else(|| reject(400, key))?;
            let relay = alloc.relay_for(peer);
            ips.push(self.check_peer(now, ft, &authed.username, relay, peer, key)?);
        }
        if ips.is_empty() {
            return Err(reject(400, key));
        }
        let fresh = ips
            .iter()
            .filter(|ip| !alloc.permissions.contains(**ip))
            .count();
        if alloc.permissions.len() + fresh > self.cfg.permissions_per_allocation {
            let code = self.quota_rejected(now, ft, &authed.username, "permissions", 508);
            return Err(reject(code, key));
        }
        let expires = now.instant + PERMISSION_LIFETIME;
        for ip in ips {
            self.install_permission(ft, ip, expires);
            self.sync_peer_ip(ft, ip, now.instant);
        }
        let m = message::response(req, CLASS_SUCCESS_RESPONSE);
        Ok(message::finish(m, Some(&key), req.has_fingerprint))
    }

    fn install_permission(&mut self, ft: FiveTuple, ip: IpAddr, expires: std::time::Instant) {
        if let Some(alloc) = self.allocations.get_mut(&ft) {
            alloc.permissions.install(ip, expires);
            self.timers.schedule(Timer::Permission(ft, ip), expires);
            debug!(client = %self.redact.show(ft.client), peer = %self.redact.show(ip), "permission installed");
        }
    }

    /// ChannelBind (RFC 8656 §12.2).
    fn channel_bind(
        &mut self,
        now: Now,
        ft: FiveTuple,
        req: &Request,
        authed: Authed,
    ) -> Result<Vec<u8>, Reject> {
        let key = authed.key;
        let Some(alloc) = self.allocations.get(&ft) else {
            return Err(reject(437, key));
        };
        let number = match req.get(ATTR_CHANNEL_NUMBER) {
            Some(v) if v.len() == 4 => u16::from_be_bytes([v[0], v[1]]),
            _ => return Err(reject(400, key)),
        };
        let peer = req
            .get(ATTR_XOR_PEER_ADDRESS)
            .and_then(|v| req.xor_address(v))
            .ok_or_else(|| reject(400, key))?;
        if !CHANNEL_NUMBERS.contains(&number) {
            return Err(reject(400, key));
        }
        let peer =
            self.check_peer_port(now, ft, &authed.username, alloc.relay_for(peer), peer, key)?;
        let ip = peer.ip();
        // A number bound to another peer, or a peer bound to another number,
        // is refused, including during the quarantine after expiry.
        if alloc.channels.check(number, peer).is_err() {
            return Err(reject(400, key));
        }
        if !alloc.channels.contains(number)
            && alloc.channels.len() >= self.cfg.channels_per_allocation
        {
            let code = self.quota_rejected(now, ft, &authed.username, "channels", 508);
            return Err(reject(code, key));
        }
        if !alloc.permissions.contains(ip)
            && alloc.permissions.len() >= self.cfg.permissions_per_allocation
        {
            let code = self.quota_rejected(now, ft, &authed.username, "permissions", 508);
            return Err(reject(code, key));
        }
        let expires = now.instant + CHANNEL_LIFETIME;
        if let Some(alloc) = self.allocations.get_mut(&ft) {
            alloc.channels.bind(number, peer, expires);
        }
        self.timers.schedule(
            Timer::ChannelRelease(ft, number),
            expires + CHANNEL_QUARANTINE,
        );
        self.timers
            .schedule(Timer::ChannelLapse(ft, number), expires);
        self.install_permission(ft, ip, now.instant + PERMISSION_LIFETIME);
        // The permission is the peer IP's: other channels to it may be
        // relayable again too.
        self.sync_peer_ip(ft, ip, now.instant);
        debug!(client = %self.redact.show(ft.client), peer = %self.redact.show(peer), channel = number, "channel bound");
        let m = message::response(req, CLASS_SUCCESS_RESPONSE);
        Ok(message::finish(m, Some(&key), req.has_fingerprint))
    }
}
