//! The one place turnd reads the clocks; the core gets time as [`Now`].

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::core::Now;

/// Both clocks, read now.
#[allow(clippy::disallowed_methods)]
pub fn now() -> Now {
    Now {
        instant: Instant::now(),
        unix_secs: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    }
}
