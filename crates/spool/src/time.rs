//! Time conversions for storage: unix seconds and milliseconds, and serde adapters that use them
//! so stored records and the CLI's JSON carry plain integers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the unix epoch; times before it count as zero.
pub(crate) fn unix_millis(t: SystemTime) -> u64 {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn from_unix_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// `t` cut to the whole second, as [`secs`] stores it.
pub(crate) fn whole_secs(t: SystemTime) -> SystemTime {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    UNIX_EPOCH + Duration::from_secs(since.as_secs())
}

/// `SystemTime` as whole unix seconds (the envelope's `received_at`).
pub(crate) mod secs {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        s.serialize_u64(since.as_secs())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        Ok(UNIX_EPOCH + Duration::from_secs(u64::deserialize(d)?))
    }
}

/// `SystemTime` as unix milliseconds (states, attempts, schedule).
pub(crate) mod millis {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(super::unix_millis(*t))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        Ok(super::from_unix_millis(u64::deserialize(d)?))
    }
}

/// `Option<SystemTime>` as unix milliseconds or null.
pub(crate) mod opt_millis {
    use std::time::SystemTime;

    use serde::Serializer;

    pub(crate) fn serialize<S: Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&super::unix_millis(*t)),
            None => s.serialize_none(),
        }
    }
}

/// `Duration` as whole seconds (ages in the CLI's JSON).
pub(crate) mod duration_secs {
    use std::time::Duration;

    use serde::Serializer;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_before_the_epoch_are_stored_as_zero_instead_of_failing() {
        assert_eq!(unix_millis(UNIX_EPOCH - Duration::from_secs(5)), 0);
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(from_unix_millis(unix_millis(t)), t);
    }
}
