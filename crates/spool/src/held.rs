//! The envelopes the writer stored lately, kept decoded: recording a delivery outcome needs
//! the whole envelope for the audit trail and webhooks, and a message to ten domains is
//! recorded ten times. Envelopes never change once stored (only `submit` writes one and only
//! deleting the message removes it), so a kept copy stays true until the message goes.
//!
//! Only the writer thread touches it, between its commits. A commit that fails takes back the
//! envelopes it stored, so the writer clears everything kept then.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::id::MessageId;
use crate::store::EnvelopeRecord;

/// How many recipients the kept envelopes may carry between them: the bound on memory is by
/// recipients, not by envelopes, since one envelope may carry thousands.
pub(crate) const HELD_RECIPIENTS: usize = 16_384;

#[derive(Debug, Default)]
pub(crate) struct HeldEnvelopes {
    /// By id: ids grow with time, so the first is the oldest, the one given up for room.
    held: BTreeMap<MessageId, Arc<EnvelopeRecord>>,
    recipients: usize,
}

impl HeldEnvelopes {
    /// Keeps `record`, stored under `id` in the commit being built. It must be what decoding
    /// the stored bytes gives (see `EnvelopeRecord::into_stored`).
    pub(crate) fn keep(&mut self, id: MessageId, record: Arc<EnvelopeRecord>) {
        let count = record.envelope.recipients.len();
        if count > HELD_RECIPIENTS {
            return;
        }
        self.forget(id);
        while self.recipients + count > HELD_RECIPIENTS {
            let Some((_, oldest)) = self.held.pop_first() else {
                break;
            };
            self.recipients -= oldest.envelope.recipients.len();
        }
        self.recipients += count;
        self.held.insert(id, record);
    }

    pub(crate) fn get(&self, id: MessageId) -> Option<Arc<EnvelopeRecord>> {
        self.held.get(&id).cloned()
    }

    /// The message is gone (or going, in the commit being built).
    pub(crate) fn forget(&mut self, id: MessageId) {
        if let Some(record) = self.held.remove(&id) {
            self.recipients -= record.envelope.recipients.len();
        }
    }

    /// A commit failed: what it stored is not in the file.
    pub(crate) fn clear(&mut self) {
        self.held.clear();
        self.recipients = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::{Duration, UNIX_EPOCH};

    use strictmx_protocol::{BodyType, DsnRet, MailParams, Notify, Orcpt, RcptParams};

    use super::*;
    use crate::store;
    use crate::types::{ClientInfo, Envelope, EnvelopeRecipient, MessageKind, TlsFloor};

    fn record(recipients: usize) -> EnvelopeRecord {
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
            envelope: Envelope {
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
            },
            message_id: Some("<1@example.com>".into()),
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
    fn the_oldest_envelopes_make_room_within_the_recipient_bound() {
        let mut envelopes = HeldEnvelopes::default();
        let half = HELD_RECIPIENTS / 2;
        envelopes.keep(3, Arc::new(record(half)));
        envelopes.keep(1, Arc::new(record(half)));
        assert_eq!(held(&envelopes), [1, 3]);
        assert_eq!(envelopes.recipients, HELD_RECIPIENTS);

        envelopes.keep(5, Arc::new(record(1)));
        assert_eq!(held(&envelopes), [3, 5], "id 1 is the oldest");
        assert_eq!(envelopes.recipients, half + 1);
        assert!(envelopes.get(1).is_none());
        assert_eq!(
            envelopes.get(5).map(|r| r.envelope.recipients.len()),
            Some(1)
        );

        envelopes.keep(5, Arc::new(record(2)));
        assert_eq!(envelopes.recipients, half + 2, "keeping again replaces");

        envelopes.keep(9, Arc::new(record(HELD_RECIPIENTS + 1)));
        assert_eq!(
            held(&envelopes),
            [3, 5],
            "too large to keep, and nothing given up"
        );
    }

    #[test]
    fn forgetting_and_clearing_give_back_the_room() {
        let mut envelopes = HeldEnvelopes::default();
        envelopes.keep(1, Arc::new(record(4)));
        envelopes.keep(2, Arc::new(record(6)));
        envelopes.forget(1);
        envelopes.forget(8);
        assert_eq!(held(&envelopes), [2]);
        assert_eq!(envelopes.recipients, 6);
        envelopes.clear();
        assert!(held(&envelopes).is_empty());
        assert_eq!(envelopes.recipients, 0);
    }
}
