//! Message ids: allocation (time-ordered, unique across restarts) and their 16-hex-digit form.
//! Persisting the last id is left to the writer, which stores it in the meta table.

use std::fmt;
use std::time::SystemTime;

use crate::error::SpoolError;
use crate::time::unix_millis;

/// A queued message's id. Users see it as 16 lowercase hex digits ([`MessageIdDisplay`]).
pub type MessageId = u64;

/// Displays a [`MessageId`] as 16 lowercase hex digits, the form logs and the CLI use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageIdDisplay(pub MessageId);

impl fmt::Display for MessageIdDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The user-facing form of a message id: 16 lowercase hex digits.
pub fn format_id(id: MessageId) -> String {
    MessageIdDisplay(id).to_string()
}

/// Parses the form [`format_id`] produces. Exactly 16 hex digits; upper case is accepted so
/// that an id copied through a case-folding tool still works.
pub fn parse_id(text: &str) -> Result<MessageId, SpoolError> {
    let bad = || SpoolError::BadMessageId {
        text: text.chars().take(40).collect(),
    };
    if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    u64::from_str_radix(text, 16).map_err(|_| bad())
}

/// Serde adapter: a message id as its 16-hex-digit string, for the CLI's JSON.
pub(crate) fn serialize_hex<S: serde::Serializer>(id: &MessageId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&MessageIdDisplay(*id))
}

/// Serde adapter both ways, for records that are stored in that form too (the audit trail).
pub(crate) mod hex {
    use serde::{Deserialize, Deserializer};

    use super::MessageId;

    pub(crate) use super::serialize_hex as serialize;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MessageId, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_id(&text).map_err(serde::de::Error::custom)
    }
}

/// Hands out ids: the unix time in milliseconds shifted left by 16 bits, or the last id plus
/// one when that is larger (several ids per millisecond, or a clock stepped backwards).
/// Because the last id is persisted with every submission, ids never repeat across restarts.
#[derive(Debug)]
pub(crate) struct IdAllocator {
    last: MessageId,
}

impl IdAllocator {
    pub(crate) fn new(last: MessageId) -> Self {
        IdAllocator { last }
    }

    pub(crate) fn next(&mut self, now: SystemTime) -> MessageId {
        let from_clock = unix_millis(now).saturating_mul(1 << 16);
        self.last = from_clock.max(self.last.saturating_add(1));
        self.last
    }

    pub(crate) fn last(&self) -> MessageId {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn ids_are_shown_as_sixteen_lowercase_hex_digits_and_parse_back() {
        for id in [0, 1, 0xdead_beef, u64::MAX] {
            let text = format_id(id);
            assert_eq!(text.len(), 16);
            assert!(!text.bytes().any(|b| b.is_ascii_uppercase()));
            assert_eq!(parse_id(&text).expect("own output parses"), id);
        }
        assert_eq!(format_id(0xab), "00000000000000ab");
    }

    #[test]
    fn malformed_ids_are_rejected_without_panicking() {
        for text in [
            "",
            "abc",
            "00000000000000abc",
            "000000000000000g",
            "+00000000000000a",
            "ÿÿÿÿÿÿÿÿ",
        ] {
            assert!(parse_id(text).is_err(), "{text:?} must be rejected");
        }
    }

    #[test]
    fn ids_keep_increasing_when_the_clock_stands_still_or_goes_back() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut ids = IdAllocator::new(0);
        let a = ids.next(t);
        let b = ids.next(t);
        let c = ids.next(t - Duration::from_secs(3600));
        assert!(a < b && b < c);
    }

    #[test]
    fn ids_continue_after_the_persisted_last_id_across_a_restart() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut before = IdAllocator::new(0);
        let last = before.next(t + Duration::from_secs(60));
        let mut after = IdAllocator::new(before.last());
        assert!(after.next(t) > last);
    }
}
