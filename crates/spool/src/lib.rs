//! strictmx-spool: the durable outbound queue on redb. It stores envelopes, bodies, recipient
//! states, attempt records, a schedule index and the audit trail of finished recipients,
//! the webhook outbox, the HTTP API's idempotency keys,
//! commits concurrent writes together (group commit) and hands due recipients to the queue
//! runner; delivery, retry policy and DSNs are left to `strictmx-delivery`, the SMTP dialogue
//! to `strictmx-inbound`.
#![forbid(unsafe_code)]

mod audit;
mod bodies;
mod error;
pub mod fault;
mod held;
mod id;
mod idempotency;
mod index;
mod node;
mod postures;
mod settings;
mod shadow;
mod spool;
mod store;
mod sts_cache;
mod time;
mod tlsrpt;
mod transfer;
mod types;
mod webhook;
mod writer;

pub use audit::{
    AuditAttempt, AuditOutcome, AuditPage, AuditQuery, AuditRecord, AuthFilter, RequireTlsReceipt,
    SecurityReceipt, message_id_key,
};
pub use error::SpoolError;
pub use id::{MessageId, MessageIdDisplay, format_id, parse_id};
pub use idempotency::{IDEMPOTENCY_WINDOW, IdempotencyKey, Submitted};
pub use node::{NODE_ID_FILE, node_id};
pub use postures::PostureWrite;
pub use settings::{AuditSettings, SpoolSettings, WebhookSettings, WebhookTarget};
pub use shadow::{
    SHADOW_KEEP_DAYS, ShadowCount, ShadowDomain, ShadowReason, ShadowRuleReport,
    report as shadow_report,
};
pub use spool::{FileStore, Spool, StoreOpener};
pub use sts_cache::CachedStsPolicy;
pub use tlsrpt::{TlsrptCounters, TlsrptDetailCount, TlsrptFailure, TlsrptSession};
pub use transfer::TransferReceipt;
pub use types::{
    AttemptOutcome, AttemptRecord, BouncedMessage, ClientInfo, DueMessage, DueRecipient, Envelope,
    EnvelopeRecipient, ExceptionUse, MessageKind, PeerAuth, QueueEntry, QueueRecipient,
    RecipientState, RecipientUpdate, ShadowOutcome, ShadowVerdict, SpoolStats, StoredMessage,
    TlsFloor,
};
pub use webhook::{WebhookEvent, WebhookEventKind};
