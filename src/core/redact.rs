//! Log redaction: client and peer addresses and usernames shown as a short
//! keyed hash when `[log] redact` is on, so logs carry no personal data yet
//! one client's lines still group (the key lives for one run); and which
//! characters may not reach a text log line as themselves.

use std::fmt;

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Shows or hides identifying values in log fields.
#[derive(Clone)]
pub struct Redactor {
    key: Option<[u8; 16]>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Redactor({})",
            if self.key.is_some() { "on" } else { "off" }
        )
    }
}

impl Redactor {
    /// `key` is `Some` to redact.
    pub fn new(key: Option<[u8; 16]>) -> Self {
        Redactor { key }
    }

    /// A log field value for `value` (an address or a username).
    pub fn show<T: fmt::Display>(&self, value: T) -> Shown<'_, T> {
        Shown {
            value,
            key: self.key.as_ref(),
        }
    }
}

/// A value as it appears in a log line.
pub struct Shown<'a, T> {
    value: T,
    key: Option<&'a [u8; 16]>,
}

impl<T: fmt::Display> fmt::Display for Shown<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(key) = self.key else {
            return self.value.fmt(f);
        };
        let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(self.value.to_string().as_bytes());
        let digest = mac.finalize().into_bytes();
        write!(f, "~{}", hex::encode(&digest[..5]))
    }
}

/// Whether `c` must not reach a text log line as itself: control
/// characters (Cc), line and paragraph separators, bidirectional marks,
/// embeddings and isolates. Also what a REST username may not hold.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
        )
        || ('\u{202A}'..='\u{202E}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_when_off_hashed_and_stable_when_on() {
        let addr: std::net::SocketAddr = "198.51.100.7:5000".parse().unwrap();
        assert_eq!(
            Redactor::new(None).show(addr).to_string(),
            "198.51.100.7:5000"
        );
        let on = Redactor::new(Some([1; 16]));
        let shown = on.show(addr).to_string();
        assert!(shown.starts_with('~') && shown.len() == 11, "{shown}");
        assert!(!shown.contains("198.51"));
        assert_eq!(on.show(addr).to_string(), shown, "stable");
        assert_ne!(on.show("alice").to_string(), shown);
    }
}
