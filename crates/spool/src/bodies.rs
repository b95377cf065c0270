//! The bodies and envelopes of messages accepted lately, kept in memory after their commit for
//! the first delivery jobs: under load a message is delivered milliseconds after it was
//! accepted, and reading it back from the store meant a hand-off to a blocking thread and back
//! for each job (ten of them for a message to ten domains), and decoding its envelope again for
//! the queue runner.
//!
//! A message is kept once its submission is committed (it is then on disk) and forgotten when
//! it is deleted; nothing changes a stored body or envelope in between. A reader that finds
//! nothing here reads the store, as before; one that reads the envelope's bytes from a snapshot
//! uses the decoded envelope kept here only when those bytes are the ones kept. The bound is by
//! octets, so memory stays flat however long the queue grows.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::id::MessageId;
use crate::store::EnvelopeRecord;

/// How many octets the kept messages may take between them.
pub(crate) const KEPT_OCTETS: usize = 8 << 20;

/// A body larger than this is never kept: a few large messages would push out many small ones,
/// and reading a large body costs little next to sending it.
pub(crate) const KEPT_BODY_MAX: usize = 256 << 10;

/// Nor is a message that weighs more than this with its envelope (thousands of recipients).
pub(crate) const KEPT_MESSAGE_MAX: usize = 2 * KEPT_BODY_MAX;

/// A message's envelope as its commit stored it: the stored bytes, which a reader compares
/// with what its snapshot holds, and the record they decode to.
#[derive(Debug, Clone)]
pub(crate) struct KeptEnvelope {
    pub(crate) bytes: Arc<Vec<u8>>,
    pub(crate) record: Arc<EnvelopeRecord>,
}

#[derive(Debug)]
struct Kept {
    body: Arc<Vec<u8>>,
    envelope: KeptEnvelope,
}

#[derive(Debug, Default)]
pub(crate) struct KeptBodies {
    /// By id: ids grow with time, so the first is the oldest, the one given up for room.
    kept: BTreeMap<MessageId, Kept>,
    octets: usize,
}

impl KeptBodies {
    /// Keeps the body and envelope committed under `id`, giving up the oldest for room.
    pub(crate) fn keep(&mut self, id: MessageId, body: Arc<Vec<u8>>, envelope: KeptEnvelope) {
        self.forget(id);
        let kept = Kept { body, envelope };
        let octets = weight(&kept);
        if kept.body.len() > KEPT_BODY_MAX || octets > KEPT_MESSAGE_MAX {
            return;
        }
        while self.octets + octets > KEPT_OCTETS {
            let Some((_, oldest)) = self.kept.pop_first() else {
                break;
            };
            self.octets -= weight(&oldest);
        }
        self.octets += octets;
        self.kept.insert(id, kept);
    }

    pub(crate) fn get(&self, id: MessageId) -> Option<Arc<Vec<u8>>> {
        self.kept.get(&id).map(|kept| Arc::clone(&kept.body))
    }

    pub(crate) fn envelope(&self, id: MessageId) -> Option<KeptEnvelope> {
        self.kept.get(&id).map(|kept| kept.envelope.clone())
    }

    /// The message was deleted.
    pub(crate) fn forget(&mut self, id: MessageId) {
        if let Some(kept) = self.kept.remove(&id) {
            self.octets -= weight(&kept);
        }
    }

    /// The store was opened again: only what it holds counts.
    pub(crate) fn clear(&mut self) {
        self.kept.clear();
        self.octets = 0;
    }

    #[cfg(test)]
    fn octets(&self) -> usize {
        self.octets
    }
}

/// What a kept message takes in memory: the body's allocation, and its envelope's stored bytes
/// three times over (the bytes, and the decoded record, which takes about twice as much).
fn weight(kept: &Kept) -> usize {
    kept.body.capacity() + 3 * kept.envelope.bytes.capacity()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(len: usize, fill: u8) -> Arc<Vec<u8>> {
        Arc::new(vec![fill; len])
    }

    /// An envelope whose stored form takes no room, so that only bodies count.
    fn envelope() -> KeptEnvelope {
        KeptEnvelope {
            bytes: Arc::new(Vec::new()),
            record: Arc::new(crate::held::tests::record(1)),
        }
    }

    #[test]
    fn a_kept_body_is_found_until_its_message_is_forgotten() {
        let mut kept = KeptBodies::default();
        kept.keep(1, body(100, b'a'), envelope());
        assert_eq!(kept.get(1).as_deref(), Some(&vec![b'a'; 100]));
        assert_eq!(kept.get(2), None);
        kept.forget(1);
        assert_eq!(kept.get(1), None);
        assert_eq!(kept.octets(), 0);
    }

    #[test]
    fn keeping_a_body_again_under_an_id_replaces_the_first() {
        let mut kept = KeptBodies::default();
        kept.keep(1, body(100, b'a'), envelope());
        kept.keep(1, body(50, b'b'), envelope());
        assert_eq!(kept.get(1).as_deref(), Some(&vec![b'b'; 50]));
        assert_eq!(kept.octets(), 50);
    }

    #[test]
    fn the_oldest_bodies_give_way_and_the_octets_stay_bounded() {
        let mut kept = KeptBodies::default();
        let each = KEPT_BODY_MAX;
        let fit = KEPT_OCTETS / each;
        for n in 0..(fit as u64 + 3) {
            kept.keep(n, body(each, b'x'), envelope());
            assert!(kept.octets() <= KEPT_OCTETS);
        }
        for n in 0..3 {
            assert_eq!(kept.get(n), None, "body {n} should have given way");
        }
        assert!(kept.get(fit as u64 + 2).is_some());
        assert_eq!(kept.octets(), fit * each);
    }

    #[test]
    fn a_body_over_the_limit_is_not_kept_and_pushes_nothing_out() {
        let mut kept = KeptBodies::default();
        kept.keep(1, body(10, b'a'), envelope());
        kept.keep(2, body(KEPT_BODY_MAX + 1, b'b'), envelope());
        assert_eq!(kept.get(2), None);
        assert!(kept.get(1).is_some());
        assert_eq!(kept.octets(), 10);
    }

    #[test]
    fn a_message_with_a_huge_envelope_is_not_kept() {
        let mut kept = KeptBodies::default();
        kept.keep(1, body(10, b'a'), envelope());
        let huge = KeptEnvelope {
            bytes: Arc::new(vec![b'{'; KEPT_MESSAGE_MAX / 3 + 1]),
            record: Arc::new(crate::held::tests::record(1)),
        };
        kept.keep(2, body(10, b'b'), huge);
        assert_eq!(kept.get(2), None);
        assert!(kept.envelope(2).is_none());
        assert!(kept.get(1).is_some());
        assert_eq!(kept.octets(), 10);
    }

    #[test]
    fn clearing_forgets_every_body() {
        let mut kept = KeptBodies::default();
        kept.keep(1, body(10, b'a'), envelope());
        kept.keep(2, body(10, b'b'), envelope());
        kept.clear();
        assert_eq!(kept.get(1), None);
        assert_eq!(kept.get(2), None);
        assert_eq!(kept.octets(), 0);
    }
}
