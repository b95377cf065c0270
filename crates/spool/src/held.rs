//! The envelopes the writer stored lately, kept decoded with the attempt records stored for
//! them: recording a delivery outcome needs the whole envelope and the message's attempts for
//! the audit trail and webhooks, and a message to ten domains is recorded ten times.
//!
//! Both stay true while the message exists: only `submit` writes an envelope and nothing
//! changes it; attempt records are only appended, by `record`, and only deleting the message
//! removes them, and every one of those writes goes through here.
//!
//! Only the writer thread touches it, between its commits. A commit that fails takes back what
//! it stored, so the writer clears everything kept then.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::id::MessageId;
use crate::store::EnvelopeRecord;
use crate::types::AttemptRecord;

/// How many octets the kept messages may take in the store between them. What a record holds
/// is bounded by what it takes encoded, and a peer decides much of that (an attempt keeps the
/// server's whole reply, up to 100 lines of 1,000 octets), so the bound is by octets, not by
/// messages or records.
pub(crate) const HELD_OCTETS: usize = 8 << 20;

/// A message as stored: its envelope record and, in order, every attempt record stored for it.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) record: Arc<EnvelopeRecord>,
    pub(crate) attempts: Vec<AttemptRecord>,
    /// The octets all of it takes in the store.
    octets: usize,
}

#[derive(Debug, Default)]
pub(crate) struct HeldEnvelopes {
    /// By id: ids grow with time, so the first is the oldest, the one given up for room.
    held: BTreeMap<MessageId, Held>,
    octets: usize,
}

impl HeldEnvelopes {
    /// Keeps `record`, stored in `octets` under `id` with no attempt records in the commit
    /// being built. It must be what decoding the stored bytes gives (see
    /// `EnvelopeRecord::into_stored`).
    pub(crate) fn keep(&mut self, id: MessageId, record: Arc<EnvelopeRecord>, octets: usize) {
        self.forget(id);
        self.insert(
            id,
            Held {
                record,
                attempts: Vec::new(),
                octets,
            },
        );
    }

    pub(crate) fn get(&self, id: MessageId) -> Option<&Held> {
        self.held.get(&id)
    }

    /// Attempt records appended to message `id`'s in the commit being built, stored in
    /// `octets` together; each must be what decoding its stored bytes gives (see
    /// `AttemptRecord::into_stored`). A message not kept stays so: its earlier attempts are
    /// only in the store.
    pub(crate) fn add_attempts(
        &mut self,
        id: MessageId,
        attempts: Vec<AttemptRecord>,
        octets: usize,
    ) {
        let Some(mut held) = self.take(id) else {
            return;
        };
        held.attempts.extend(attempts);
        held.octets = held.octets.saturating_add(octets);
        self.insert(id, held);
    }

    /// The message is gone (or going, in the commit being built).
    pub(crate) fn forget(&mut self, id: MessageId) {
        self.take(id);
    }

    /// A commit failed: what it stored is not in the file.
    pub(crate) fn clear(&mut self) {
        self.held.clear();
        self.octets = 0;
    }

    fn take(&mut self, id: MessageId) -> Option<Held> {
        let held = self.held.remove(&id)?;
        self.octets -= held.octets;
        Some(held)
    }

    /// Makes room for `held` by giving up the oldest messages; one too large on its own is not
    /// kept.
    fn insert(&mut self, id: MessageId, held: Held) {
        if held.octets > HELD_OCTETS {
            return;
        }
        while self.octets + held.octets > HELD_OCTETS {
            let Some((_, oldest)) = self.held.pop_first() else {
                break;
            };
            self.octets -= oldest.octets;
        }
        self.octets += held.octets;
        self.held.insert(id, held);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::{Duration, UNIX_EPOCH};

    use strictmx_protocol::{BodyType, DsnRet, MailParams, Notify, Orcpt, RcptParams};

    use super::*;
    use crate::store;
    use crate::types::{
        AttemptOutcome, ClientInfo, Envelope, EnvelopeRecipient, ExceptionUse, MessageKind,
        PeerAuth, ShadowOutcome, ShadowVerdict, TlsFloor,
    };

    pub(crate) fn record(recipients: usize) -> EnvelopeRecord {
        let recipient = EnvelopeRecipient {
            address: "bob@example.org".into(),
            params: RcptParams {
                notify: Some(Notify {
                    failure: true,
                    delay: true,
                    ..Notify::default()
                }),
                orcpt: Some(Orcpt {
                    addr_type: "rfc822".into(),
                    address: "bob@example.org".into(),
                }),
            },
        };
        EnvelopeRecord {
            size: 2048,
            envelope: Arc::new(Envelope {
                mail_from: "alice@example.com".into(),
                params: MailParams {
                    size: Some(2048),
                    body: BodyType::EightBitMime,
                    smtputf8: true,
                    requiretls: true,
                    ret: Some(DsnRet::Headers),
                    envid: Some("QQ314159".into()),
                },
                recipients: vec![recipient; recipients],
                received_at: UNIX_EPOCH + Duration::from_millis(1_796_000_123_456),
                client: ClientInfo {
                    ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    helo: "app.example.com".into(),
                    auth_user: Some("app".into()),
                    tls: Some("TLSv1.3".into()),
                },
                kind: MessageKind::Normal,
                require_tls: Some(TlsFloor::Verified),
            }),
            message_id: Some("<1@example.com>".into()),
        }
    }

    fn attempt(recipients: Vec<usize>) -> AttemptRecord {
        AttemptRecord {
            at: UNIX_EPOCH + Duration::from_nanos(1_796_000_123_456_789_012),
            domain: "example.org".into(),
            mx: Some("mx.example.org".into()),
            ip: Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))),
            tls_version: Some("TLSv1.3".into()),
            cipher: Some("TLS13_AES_128_GCM_SHA256".into()),
            cert_verified: Some(false),
            auth: PeerAuth::None,
            policy: "sts-testing".into(),
            rules: vec!["partner".into()],
            requirement: Some("encrypted".into()),
            result_type: Some("certificate-expired".into()),
            recipients,
            outcome: AttemptOutcome::Deferred,
            reply: "451 4.7.0 try later".into(),
            duration_ms: 31,
            exceptions: vec![ExceptionUse {
                rule: "partner".into(),
                expires: Some(1_796_100_000),
                reason: Some("their certificate renewal".into()),
                spared: Some("certificate-expired".into()),
            }],
            shadow: vec![ShadowVerdict {
                rule: "strict".into(),
                outcome: ShadowOutcome::WouldDefer,
                reason: "certificate not verified".into(),
            }],
        }
    }

    fn held(envelopes: &HeldEnvelopes) -> Vec<MessageId> {
        envelopes.held.keys().copied().collect()
    }

    #[test]
    fn a_kept_envelope_is_what_reading_the_stored_bytes_gives() {
        let original = record(3);
        let bytes = store::encode("envelope", 7, &original).expect("encodes");
        let read: EnvelopeRecord = store::decode("envelopes", 7, &bytes).expect("decodes");
        assert_ne!(read, original, "the stored time drops its milliseconds");
        assert_eq!(original.into_stored(), read);
    }

    #[test]
    fn a_kept_attempt_is_what_reading_the_stored_bytes_gives() {
        let original = attempt(vec![0, 2]);
        let bytes = store::encode("attempt record", 7, &original).expect("encodes");
        let read: AttemptRecord = store::decode("attempts", 7, &bytes).expect("decodes");
        assert_ne!(read, original, "the stored time drops its microseconds");
        assert_eq!(original.into_stored(), read);
    }

    #[test]
    fn attempts_are_added_to_kept_messages_only_and_count_their_octets() {
        let mut envelopes = HeldEnvelopes::default();
        envelopes.keep(1, Arc::new(record(2)), 300);
        envelopes.add_attempts(1, vec![attempt(vec![0]), attempt(vec![0, 1])], 900);
        envelopes.add_attempts(2, vec![attempt(vec![0])], 400);
        assert_eq!(held(&envelopes), [1], "a message not kept stays so");
        let kept = envelopes.get(1).expect("kept");
        assert_eq!(kept.attempts.len(), 2);
        assert_eq!(envelopes.octets, 1_200);

        envelopes.keep(3, Arc::new(record(1)), HELD_OCTETS - 1_500);
        assert_eq!(held(&envelopes), [1, 3]);
        envelopes.add_attempts(3, vec![attempt(vec![0])], 400);
        assert_eq!(held(&envelopes), [3], "the oldest made room");
        assert_eq!(envelopes.octets, HELD_OCTETS - 1_100);
        // A peer's long replies make a message too large to keep at all.
        envelopes.add_attempts(3, vec![attempt(vec![0])], 100_000);
        assert!(held(&envelopes).is_empty());
        assert_eq!(envelopes.octets, 0);
    }

    #[test]
    fn the_oldest_envelopes_make_room_within_the_bound() {
        let mut envelopes = HeldEnvelopes::default();
        let half = HELD_OCTETS / 2;
        envelopes.keep(3, Arc::new(record(2)), half);
        envelopes.keep(1, Arc::new(record(2)), half);
        assert_eq!(held(&envelopes), [1, 3]);
        assert_eq!(envelopes.octets, HELD_OCTETS);

        envelopes.keep(5, Arc::new(record(1)), 10);
        assert_eq!(held(&envelopes), [3, 5], "id 1 is the oldest");
        assert_eq!(envelopes.octets, half + 10);
        assert!(envelopes.get(1).is_none());
        assert_eq!(
            envelopes.get(5).map(|h| h.record.envelope.recipients.len()),
            Some(1)
        );

        envelopes.keep(5, Arc::new(record(2)), 20);
        assert_eq!(envelopes.octets, half + 20, "keeping again replaces");

        envelopes.keep(9, Arc::new(record(1)), HELD_OCTETS + 1);
        assert_eq!(
            held(&envelopes),
            [3, 5],
            "too large to keep, and nothing given up"
        );
    }

    #[test]
    fn forgetting_and_clearing_give_back_the_room() {
        let mut envelopes = HeldEnvelopes::default();
        envelopes.keep(1, Arc::new(record(4)), 400);
        envelopes.keep(2, Arc::new(record(6)), 600);
        envelopes.forget(1);
        envelopes.forget(8);
        assert_eq!(held(&envelopes), [2]);
        assert_eq!(envelopes.octets, 600);
        envelopes.clear();
        assert!(held(&envelopes).is_empty());
        assert_eq!(envelopes.octets, 0);
    }
}
