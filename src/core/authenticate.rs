//! The long-term credential mechanism, server side (RFC 8489 §9.2.4): the
//! 401/438 challenge, USERNAME or USERHASH, the password algorithm chosen
//! under the bid-down checks, and MESSAGE-INTEGRITY or
//! MESSAGE-INTEGRITY-SHA256 verified with the user's key.

use stun::attributes::*;
use stun::message::METHOD_ALLOCATE;

use super::auth::Key;
use super::auth_sha256::{
    self as sha256, Algorithm, ATTR_MESSAGE_INTEGRITY_SHA256, ATTR_PASSWORD_ALGORITHM,
    ATTR_PASSWORD_ALGORITHMS, ATTR_USERHASH,
};
use super::handlers::{reject, Authed, Reject};
use super::message::Request;
use super::server::Server;
use super::{FiveTuple, Now};

impl Server {
    /// REALM, NONCE and, when SHA-256 is offered, PASSWORD-ALGORITHMS with
    /// the nonce cookie announcing it (RFC 8489 §9.2.4). With MD5 alone the
    /// challenge is exactly what an RFC 5389 server sends.
    pub(super) fn add_challenge(&self, now: Now, ft: FiveTuple, m: &mut stun::message::Message) {
        m.add(ATTR_REALM, self.cfg.credentials.realm().as_bytes());
        let algs = &self.cfg.algorithms;
        if algs == &[Algorithm::Md5] {
            let nonce = self.nonce_key.issue(now.unix_secs, ft.client);
            m.add(ATTR_NONCE, nonce.as_bytes());
            return;
        }
        let prefix = sha256::nonce_prefix(
            sha256::FEATURE_PASSWORD_ALGORITHMS | sha256::FEATURE_USERNAME_ANONYMITY,
        );
        let nonce = self.nonce_key.issue_with(&prefix, now.unix_secs, ft.client);
        m.add(ATTR_NONCE, nonce.as_bytes());
        m.add(ATTR_PASSWORD_ALGORITHMS, &sha256::encode_algorithms(algs));
    }

    /// The username a request names: USERNAME, or the static user whose
    /// USERHASH it carries (RFC 8489 §9.2.4). `Err(None)` when it has
    /// neither, `Err(Some(()))` when the hash names nobody.
    fn request_user(&self, req: &Request) -> Result<String, Option<()>> {
        if let Some(u) = req.text(ATTR_USERNAME) {
            return Ok(u.to_string());
        }
        let hash = req.get(ATTR_USERHASH).ok_or(None)?;
        self.cfg
            .credentials
            .user_by_hash(hash)
            .map(str::to_string)
            .ok_or(Some(()))
    }

    /// The long-term credential mechanism, server side (RFC 8489 §9.2.4).
    pub(super) fn authenticate(
        &mut self,
        now: Now,
        ft: FiveTuple,
        req: &mut Request,
    ) -> Result<Authed, Reject> {
        let unauthorized = Reject {
            code: 401,
            key: None,
        };
        let sha256_integrity = req.get(ATTR_MESSAGE_INTEGRITY_SHA256).is_some();
        if req.get(ATTR_MESSAGE_INTEGRITY).is_none() && !sha256_integrity {
            // Every client's first request: the challenge, not a failure.
            self.auth_failure("missing_integrity");
            return Err(unauthorized);
        }
        let bad_request = Reject {
            code: 400,
            key: None,
        };
        let user = self.request_user(req);
        let (Some(_realm), Some(nonce), false) = (
            req.text(ATTR_REALM),
            req.text(ATTR_NONCE),
            matches!(user, Err(None)),
        ) else {
            let user = req.text(ATTR_USERNAME).map(str::to_string);
            self.refuse_auth(now, ft, "bad_request", user.as_deref());
            return Err(bad_request);
        };
        let nonce_ok =
            self.nonce_key
                .is_valid(nonce, now.unix_secs, ft.client, self.cfg.nonce_lifetime_s)
                || self.connection_bind_nonce_ok(now, req, nonce);
        // Bid-down protection (§9.2.4): what the request says it chose must
        // be what this server offered.
        let Ok(algorithm) = sha256::choose(
            &self.cfg.algorithms,
            nonce,
            req.get(ATTR_PASSWORD_ALGORITHMS),
            req.get(ATTR_PASSWORD_ALGORITHM),
        ) else {
            let user = user.ok();
            self.refuse_auth(now, ft, "password_algorithm", user.as_deref());
            return Err(bad_request);
        };
        let Ok(username) = user else {
            self.refuse_auth(now, ft, "unknown_userhash", None);
            return Err(unauthorized);
        };
        if self.cfg.credentials.is_empty() {
            self.refuse_auth(now, ft, "relay_disabled", Some(&username));
            return Err(unauthorized);
        }
        let secrets = match self
            .cfg
            .credentials
            .secrets(&username, now.unix_secs, algorithm)
        {
            Ok(secrets) => secrets,
            Err(refusal) => {
                self.refuse_auth(now, ft, refusal.reason(), Some(&username));
                return Err(unauthorized);
            }
        };
        let verified = secrets.into_iter().find(|k| {
            if sha256_integrity {
                req.integrity_sha256_ok(k.bytes())
            } else {
                req.integrity_ok(k.bytes())
            }
        });
        let Some(secret) = verified else {
            self.refuse_auth(now, ft, "bad_integrity", Some(&username));
            return Err(unauthorized);
        };
        let key = Key {
            secret,
            sha256_integrity,
        };
        // RFC 8489 §9.2.4 checks the nonce last: a client whose password is
        // wrong learns it at once, not after a 438 round trip.
        if !nonce_ok {
            self.auth_failure("stale_nonce");
            return Err(Reject {
                code: 438,
                key: None,
            });
        }
        if self.is_revoked(now, &username) {
            self.refuse_auth(now, ft, "revoked", Some(&username));
            return Err(unauthorized);
        }
        // Requests on an allocation must come from its owner (RFC 8656 §5);
        // an Allocate on a 5-tuple in use gets 437 whoever sends it (§7.2).
        if let Some(alloc) = self.allocations.get(&ft) {
            if alloc.username != username && req.msg.typ.method != METHOD_ALLOCATE {
                return Err(reject(441, key));
            }
        }
        Ok(Authed { key, username })
    }
}
