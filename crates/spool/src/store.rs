//! The on-disk layout: redb table definitions, record encodings, and reads shared by the writer
//! thread and the read-only queries. Deciding what to write is left to `writer`.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::SystemTime;

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::SpoolError;
use crate::id::{MessageId, MessageIdDisplay};
use crate::time::{from_unix_millis, unix_millis};
use crate::types::{AttemptRecord, Envelope, Glance, RecipientState};

/// Name of the database file inside the data directory.
pub(crate) const DB_FILE: &str = "spool.redb";
/// Bump when an encoding changes incompatibly.
pub(crate) const SCHEMA_VERSION: u64 = 1;

/// message id → JSON [`EnvelopeRecord`].
pub(crate) const ENVELOPES: TableDefinition<u64, &[u8]> = TableDefinition::new("envelopes");
/// message id → body octets as accepted.
pub(crate) const BODIES: TableDefinition<u64, &[u8]> = TableDefinition::new("bodies");
/// (message id, recipient index) → JSON [`RecipientState`].
pub(crate) const RECIPIENTS: TableDefinition<(u64, u32), &[u8]> =
    TableDefinition::new("recipients");
/// (message id, sequence) → JSON [`AttemptRecord`], in the order they were recorded.
pub(crate) const ATTEMPTS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("attempts");
/// (next attempt in unix ms, message id, recipient index) → (): one entry per queued recipient.
pub(crate) const SCHEDULE: TableDefinition<(u64, u64, u32), ()> = TableDefinition::new("schedule");
/// Small named counters: `schema_version`, `last_id`.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

pub(crate) const META_SCHEMA: &str = "schema_version";
pub(crate) const META_LAST_ID: &str = "last_id";

/// What the envelopes table stores: the envelope plus facts kept beside it so that listings
/// never touch the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EnvelopeRecord {
    pub(crate) size: u64,
    /// Shared with the delivery jobs of the message when it is kept in memory.
    pub(crate) envelope: Arc<Envelope>,
    /// The body's `Message-ID:` field, found once on submission for the audit trail; absent
    /// in records written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) message_id: Option<String>,
}

impl EnvelopeRecord {
    /// What decoding this record's stored bytes gives: `received_at` is stored in whole
    /// seconds.
    pub(crate) fn into_stored(mut self) -> Self {
        let envelope = Arc::make_mut(&mut self.envelope);
        envelope.received_at = crate::time::whole_secs(envelope.received_at);
        self
    }
}

/// A schedule key: when, which message, which recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Slot {
    pub(crate) at_ms: u64,
    pub(crate) id: MessageId,
    pub(crate) index: u32,
}

impl Slot {
    pub(crate) fn new(at: SystemTime, id: MessageId, index: u32) -> Self {
        Slot {
            at_ms: unix_millis(at),
            id,
            index,
        }
    }

    pub(crate) fn key(self) -> (u64, u64, u32) {
        (self.at_ms, self.id, self.index)
    }

    pub(crate) fn at(self) -> SystemTime {
        from_unix_millis(self.at_ms)
    }
}

/// Encodes `value` as the JSON its table stores. Written into a buffer kept per thread and
/// copied out at its final size: an envelope or an audit record grows a fresh buffer three or
/// four times, and the copy kept in memory (the writer's kept envelopes) holds no spare room.
pub(crate) fn encode<T: Serialize>(
    what: &'static str,
    id: MessageId,
    value: &T,
) -> Result<Vec<u8>, SpoolError> {
    /// A buffer grown past this (a message with thousands of recipients) is not kept.
    const KEEP_AT_MOST: usize = 64 * 1024;
    thread_local! {
        static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.clear();
        let written = serde_json::to_writer(&mut *scratch, value);
        let bytes = scratch.as_slice().to_vec();
        if scratch.capacity() > KEEP_AT_MOST {
            *scratch = Vec::new();
        }
        written
            .map(|()| bytes)
            .map_err(|source| SpoolError::Encode {
                what,
                id: MessageIdDisplay(id),
                source,
            })
    })
}

pub(crate) fn decode<T: DeserializeOwned>(
    table: &'static str,
    id: MessageId,
    bytes: &[u8],
) -> Result<T, SpoolError> {
    serde_json::from_slice(bytes).map_err(|source| SpoolError::Corrupt {
        table,
        id: MessageIdDisplay(id),
        source,
    })
}

/// A recipient index as stored; envelopes with more than `u32::MAX` recipients are refused on
/// submit, so every stored index fits.
pub(crate) fn stored_index(index: usize) -> Option<u32> {
    u32::try_from(index).ok()
}

fn read_err(e: impl Into<redb::Error>) -> SpoolError {
    SpoolError::storage("reading the spool")(e.into())
}

pub(crate) fn read_envelope(
    table: &impl ReadableTable<u64, &'static [u8]>,
    id: MessageId,
) -> Result<Option<EnvelopeRecord>, SpoolError> {
    match table.get(id).map_err(read_err)? {
        Some(bytes) => decode("envelopes", id, bytes.value()).map(Some),
        None => Ok(None),
    }
}

/// What changing a message's recipient states needs of its envelope record, decoded without
/// its addresses, parameters or client (a message to fifty recipients is recorded once per
/// destination domain).
#[derive(Debug, Deserialize)]
struct EnvelopeHead {
    envelope: EnvelopeHeadFields,
}

#[derive(Debug, Deserialize)]
struct EnvelopeHeadFields {
    recipients: Vec<serde::de::IgnoredAny>,
}

/// How many recipients message `id` has.
pub(crate) fn read_recipient_count(
    table: &impl ReadableTable<u64, &'static [u8]>,
    id: MessageId,
) -> Result<Option<usize>, SpoolError> {
    match table.get(id).map_err(read_err)? {
        Some(bytes) => {
            let head: EnvelopeHead = decode("envelopes", id, bytes.value())?;
            Ok(Some(head.envelope.recipients.len()))
        }
        None => Ok(None),
    }
}

/// An envelope record decoded only for when its message was received.
#[derive(Debug, Deserialize)]
struct EnvelopeTime {
    envelope: EnvelopeTimeFields,
}

#[derive(Debug, Deserialize)]
struct EnvelopeTimeFields {
    #[serde(with = "crate::time::secs")]
    received_at: SystemTime,
}

/// When the queue's oldest message was received: the one with the lowest id (ids are handed
/// out in time order). A record that does not decode is passed over, as recovery leaves it
/// out of the figures; after `SCAN` such records the answer is `None`.
pub(crate) fn oldest_received(
    table: &impl ReadableTable<u64, &'static [u8]>,
) -> Result<Option<SystemTime>, SpoolError> {
    const SCAN: usize = 64;
    for entry in table.iter().map_err(read_err)?.take(SCAN) {
        let (key, value) = entry.map_err(read_err)?;
        if let Ok(head) = decode::<EnvelopeTime>("envelopes", key.value(), value.value()) {
            return Ok(Some(head.envelope.received_at));
        }
    }
    Ok(None)
}

/// The states of message `id`, in recipient order. A gap in the indexes is reported as
/// inconsistent rather than silently shifting recipients.
pub(crate) fn read_states(
    table: &impl ReadableTable<(u64, u32), &'static [u8]>,
    id: MessageId,
) -> Result<Vec<RecipientState>, SpoolError> {
    read_each(table, id, |bytes| decode("recipients", id, bytes))
}

/// The states of message `id`, which must match its envelope's recipient count.
pub(crate) fn read_states_for(
    table: &impl ReadableTable<(u64, u32), &'static [u8]>,
    id: MessageId,
    envelope: &Envelope,
) -> Result<Vec<RecipientState>, SpoolError> {
    read_states_counted(table, id, envelope.recipients.len())
}

/// [`read_states`], checked against the envelope's recipient count.
pub(crate) fn read_states_counted(
    table: &impl ReadableTable<(u64, u32), &'static [u8]>,
    id: MessageId,
    count: usize,
) -> Result<Vec<RecipientState>, SpoolError> {
    counted(id, read_states(table, id)?, count)
}

/// Where each of the `count` recipients of message `id` stands, without their replies.
pub(crate) fn read_glances(
    table: &impl ReadableTable<(u64, u32), &'static [u8]>,
    id: MessageId,
    count: usize,
) -> Result<Vec<Glance>, SpoolError> {
    let glances = read_each(table, id, |bytes| {
        Glance::read(bytes).map_err(|source| SpoolError::Corrupt {
            table: "recipients",
            id: MessageIdDisplay(id),
            source,
        })
    })?;
    counted(id, glances, count)
}

/// Every recipient record of message `id` in index order, each through `decode`.
fn read_each<T>(
    table: &impl ReadableTable<(u64, u32), &'static [u8]>,
    id: MessageId,
    mut decode: impl FnMut(&[u8]) -> Result<T, SpoolError>,
) -> Result<Vec<T>, SpoolError> {
    let mut states = Vec::new();
    for entry in table.range((id, 0)..=(id, u32::MAX)).map_err(read_err)? {
        let (key, value) = entry.map_err(read_err)?;
        let (_, index) = key.value();
        if usize::try_from(index).ok() != Some(states.len()) {
            return Err(SpoolError::Inconsistent {
                table: "recipients",
                id: MessageIdDisplay(id),
                detail: "recipient indexes are not contiguous",
            });
        }
        states.push(decode(value.value())?);
    }
    Ok(states)
}

fn counted<T>(id: MessageId, states: Vec<T>, count: usize) -> Result<Vec<T>, SpoolError> {
    if states.len() != count {
        return Err(SpoolError::Inconsistent {
            table: "recipients",
            id: MessageIdDisplay(id),
            detail: "recipient state count differs from the envelope",
        });
    }
    Ok(states)
}

/// The state of recipient `index` of message `id`.
pub(crate) fn read_state(
    table: &impl ReadableTable<(u64, u32), &'static [u8]>,
    id: MessageId,
    index: u32,
) -> Result<RecipientState, SpoolError> {
    match table.get((id, index)).map_err(read_err)? {
        Some(bytes) => decode("recipients", id, bytes.value()),
        None => Err(SpoolError::Inconsistent {
            table: "recipients",
            id: MessageIdDisplay(id),
            detail: "a recipient has no state",
        }),
    }
}

pub(crate) fn read_attempts(
    table: &impl ReadableTable<(u64, u32), &'static [u8]>,
    id: MessageId,
) -> Result<Vec<AttemptRecord>, SpoolError> {
    let mut attempts = Vec::new();
    for entry in table.range((id, 0)..=(id, u32::MAX)).map_err(read_err)? {
        let (_, value) = entry.map_err(read_err)?;
        attempts.push(decode("attempts", id, value.value())?);
    }
    Ok(attempts)
}

/// The sequence number the next attempt record of message `id` gets.
pub(crate) fn next_attempt_seq(
    table: &impl ReadableTable<(u64, u32), &'static [u8]>,
    id: MessageId,
) -> Result<u32, SpoolError> {
    let last = table
        .range((id, 0)..=(id, u32::MAX))
        .map_err(read_err)?
        .next_back()
        .transpose()
        .map_err(read_err)?;
    Ok(match last {
        Some((key, _)) => key.value().1.saturating_add(1),
        None => 0,
    })
}

pub(crate) fn read_body(
    table: &impl ReadableTable<u64, &'static [u8]>,
    id: MessageId,
) -> Result<Option<Vec<u8>>, SpoolError> {
    Ok(table
        .get(id)
        .map_err(read_err)?
        .map(|bytes| bytes.value().to_vec()))
}

/// The domain of an address as delivery routes it (lowercase, U-labels as A-labels: see
/// [`strictmx_protocol::ascii_domain`]), or `""` when it has none.
pub(crate) fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, domain)| strictmx_protocol::ascii_domain(domain))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_domain_is_what_follows_the_last_at_sign_lowercased_in_a_label_form() {
        let cases = [
            ("user@Example.ORG", "example.org"),
            ("jörg@Bücher.example", "xn--bcher-kva.example"),
            ("\"a@b\"@example.net", "example.net"),
            ("postmaster", ""),
            ("", ""),
        ];
        for (address, domain) in cases {
            assert_eq!(domain_of(address), domain, "{address}");
        }
    }

    #[test]
    fn schedule_keys_order_by_time_then_message_then_recipient() {
        let t = from_unix_millis(1_000);
        let mut slots = [
            Slot::new(t + std::time::Duration::from_millis(1), 1, 0),
            Slot::new(t, 2, 1),
            Slot::new(t, 2, 0),
            Slot::new(t, 1, 5),
        ];
        slots.sort_by_key(|s| s.key());
        let order: Vec<_> = slots.iter().map(|s| (s.id, s.index)).collect();
        assert_eq!(order, [(1, 5), (2, 0), (2, 1), (1, 0)]);
    }
}
