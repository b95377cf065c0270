//! The records the spool stores and the views it hands out: envelopes, recipient states, attempt
//! records, due work for the queue runner and queue listings for the admin CLI. How they are
//! encoded on disk is left to `store`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use strictmx_protocol::{MailParams, RcptParams};

use crate::id::MessageId;
use crate::time;

/// What inbound accepted: the envelope of one message, stored as it came.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The reverse path; `""` is the null sender (RFC 5321 §4.5.5).
    pub mail_from: String,
    pub params: MailParams,
    pub recipients: Vec<EnvelopeRecipient>,
    /// When the message was accepted; stored as whole unix seconds.
    #[serde(with = "time::secs")]
    pub received_at: SystemTime,
    pub client: ClientInfo,
    pub kind: MessageKind,
    /// The submitter's TLS floor for this message (an HTTP submission's `require_tls`, an SMTP
    /// user's `require_tls`): the least its delivery may use, whatever the destination allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_tls: Option<TlsFloor>,
}

/// A per-message TLS floor. It only ever raises what the delivery plan demands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsFloor {
    /// TLS mandatory, any certificate.
    Encrypted,
    /// TLS with a certificate verified by DANE or the web PKI for the MX host name.
    Verified,
    /// Only MX hosts with usable DANE TLSA records.
    Dane,
}

impl std::str::FromStr for TlsFloor {
    type Err = String;

    /// `encrypted`, `verified` or `dane` (case-insensitive).
    fn from_str(text: &str) -> Result<TlsFloor, String> {
        match text.to_ascii_lowercase().as_str() {
            "encrypted" => Ok(TlsFloor::Encrypted),
            "verified" => Ok(TlsFloor::Verified),
            "dane" => Ok(TlsFloor::Dane),
            _ => Err(format!(
                "`{text}` is not a TLS floor: encrypted, verified or dane"
            )),
        }
    }
}

impl TlsFloor {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsFloor::Encrypted => "encrypted",
            TlsFloor::Verified => "verified",
            TlsFloor::Dane => "dane",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeRecipient {
    pub address: String,
    pub params: RcptParams,
}

/// The submitting client, for `Received:`, logs and DSNs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    pub ip: IpAddr,
    pub helo: String,
    pub auth_user: Option<String>,
    /// The TLS version and cipher the client used, if any.
    pub tls: Option<String>,
}

/// DSNs are never answered with DSNs (RFC 3461 §6.2); the kind records which one this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Normal,
    Dsn,
    /// A TLSRPT report (RFC 8460 §5.3): its delivery sessions are not counted in reports.
    TlsReport,
}

/// Where one recipient of a message stands. Every recipient is in exactly one state.
///
/// Stored as JSON tagged by `state`. It is decoded through [`StoredState`], one flat record of
/// every field: serde's derived decoder for a tagged enum buffers each record into a generic
/// tree first, which cost about a tenth of the relay's instructions when a message to fifty
/// recipients was recorded once per destination domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case", try_from = "StoredState")]
pub enum RecipientState {
    /// Waiting for `next_attempt`; listed in the schedule index.
    Queued {
        #[serde(with = "time::millis")]
        next_attempt: SystemTime,
        attempts: u32,
        last_reply: Option<String>,
        delay_dsn_sent: bool,
    },
    /// Final: the MX host `mx` accepted the message.
    Delivered {
        #[serde(with = "time::millis")]
        at: SystemTime,
        mx: String,
        reply: String,
    },
    /// Final: delivery failed permanently or was given up; `status` is the enhanced code.
    Bounced {
        #[serde(with = "time::millis")]
        at: SystemTime,
        reply: String,
        status: String,
    },
    /// Kept out of the schedule by an administrator until released.
    Held {
        attempts: u32,
        last_reply: Option<String>,
        delay_dsn_sent: bool,
    },
}

impl RecipientState {
    /// A new recipient: due at `now`, never tried.
    pub fn fresh(now: SystemTime) -> Self {
        RecipientState::Queued {
            next_attempt: now,
            attempts: 0,
            last_reply: None,
            delay_dsn_sent: false,
        }
    }

    /// Delivered and Bounced are final: nothing changes them any more.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            RecipientState::Delivered { .. } | RecipientState::Bounced { .. }
        )
    }

    pub fn next_attempt(&self) -> Option<SystemTime> {
        match self {
            RecipientState::Queued { next_attempt, .. } => Some(*next_attempt),
            _ => None,
        }
    }
}

/// Which [`RecipientState`] a stored record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StateTag {
    Queued,
    Delivered,
    Bounced,
    Held,
}

/// Every field any [`RecipientState`] stores; which ones must be present depends on `state`.
/// Unknown fields are ignored, as the derived decoder did.
#[derive(Debug, Deserialize)]
struct StoredState {
    state: StateTag,
    next_attempt: Option<u64>,
    at: Option<u64>,
    attempts: Option<u32>,
    last_reply: Option<String>,
    delay_dsn_sent: Option<bool>,
    mx: Option<String>,
    reply: Option<String>,
    status: Option<String>,
}

/// A stored state that lacks a field its `state` needs.
#[derive(Debug)]
pub struct MissingField(&'static str);

impl std::fmt::Display for MissingField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "missing field `{}`", self.0)
    }
}

impl TryFrom<StoredState> for RecipientState {
    type Error = MissingField;

    fn try_from(s: StoredState) -> Result<Self, MissingField> {
        fn need<T>(value: Option<T>, name: &'static str) -> Result<T, MissingField> {
            value.ok_or(MissingField(name))
        }
        Ok(match s.state {
            StateTag::Queued => RecipientState::Queued {
                next_attempt: time::from_unix_millis(need(s.next_attempt, "next_attempt")?),
                attempts: need(s.attempts, "attempts")?,
                last_reply: s.last_reply,
                delay_dsn_sent: need(s.delay_dsn_sent, "delay_dsn_sent")?,
            },
            StateTag::Delivered => RecipientState::Delivered {
                at: time::from_unix_millis(need(s.at, "at")?),
                mx: need(s.mx, "mx")?,
                reply: need(s.reply, "reply")?,
            },
            StateTag::Bounced => RecipientState::Bounced {
                at: time::from_unix_millis(need(s.at, "at")?),
                reply: need(s.reply, "reply")?,
                status: need(s.status, "status")?,
            },
            StateTag::Held => RecipientState::Held {
                attempts: need(s.attempts, "attempts")?,
                last_reply: s.last_reply,
                delay_dsn_sent: need(s.delay_dsn_sent, "delay_dsn_sent")?,
            },
        })
    }
}

/// Where a recipient stands, without its replies: what recording an outcome for other
/// recipients of the same message needs of it (whether the message is done, its schedule
/// entry, the queue's counts). Decoded from a stored state without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) struct Glance {
    state: StateTag,
    #[serde(default)]
    next_attempt: Option<u64>,
}

impl Glance {
    /// Reads the start of a stored state as [`RecipientState`]'s encoder writes it: the tag
    /// first, then for a queued recipient its `next_attempt`. Anything else is decoded as
    /// JSON. The rest of the record is not looked at: it is checked when the state is decoded
    /// whole (when it is due, or an outcome is recorded for it).
    pub(crate) fn read(bytes: &[u8]) -> Result<Glance, serde_json::Error> {
        const QUEUED: &[u8] = br#"{"state":"queued","next_attempt":"#;
        let known = |state| Glance {
            state,
            next_attempt: None,
        };
        if bytes.starts_with(br#"{"state":"delivered","#) {
            return Ok(known(StateTag::Delivered));
        }
        if bytes.starts_with(br#"{"state":"bounced","#) {
            return Ok(known(StateTag::Bounced));
        }
        if bytes.starts_with(br#"{"state":"held","#) {
            return Ok(known(StateTag::Held));
        }
        if let Some(rest) = bytes.strip_prefix(QUEUED) {
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            let ms = std::str::from_utf8(&rest[..digits])
                .ok()
                .and_then(|d| d.parse::<u64>().ok());
            if let (Some(ms), Some(b',')) = (ms, rest.get(digits)) {
                return Ok(Glance {
                    state: StateTag::Queued,
                    next_attempt: Some(ms),
                });
            }
        }
        serde_json::from_slice(bytes)
    }

    pub(crate) fn of(state: &RecipientState) -> Glance {
        let (tag, next_attempt) = match state {
            RecipientState::Queued { next_attempt, .. } => {
                (StateTag::Queued, Some(time::unix_millis(*next_attempt)))
            }
            RecipientState::Delivered { .. } => (StateTag::Delivered, None),
            RecipientState::Bounced { .. } => (StateTag::Bounced, None),
            RecipientState::Held { .. } => (StateTag::Held, None),
        };
        Glance {
            state: tag,
            next_attempt,
        }
    }
}

/// What [`RecipientState`] and [`Glance`] both tell.
pub(crate) trait Standing {
    fn is_final(&self) -> bool;
    fn is_queued(&self) -> bool;
    fn is_held(&self) -> bool;
    /// When a queued recipient's schedule entry is due.
    fn scheduled(&self) -> Option<SystemTime>;
}

impl Standing for RecipientState {
    fn is_final(&self) -> bool {
        RecipientState::is_final(self)
    }
    fn is_queued(&self) -> bool {
        matches!(self, RecipientState::Queued { .. })
    }
    fn is_held(&self) -> bool {
        matches!(self, RecipientState::Held { .. })
    }
    fn scheduled(&self) -> Option<SystemTime> {
        self.next_attempt()
    }
}

impl Standing for Glance {
    fn is_final(&self) -> bool {
        matches!(self.state, StateTag::Delivered | StateTag::Bounced)
    }
    fn is_queued(&self) -> bool {
        self.state == StateTag::Queued
    }
    fn is_held(&self) -> bool {
        self.state == StateTag::Held
    }
    fn scheduled(&self) -> Option<SystemTime> {
        self.next_attempt
            .filter(|_| self.is_queued())
            .map(time::from_unix_millis)
    }
}

/// A new state for the recipient at `index` of a message's envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientUpdate {
    pub index: usize,
    pub state: RecipientState,
}

/// How the peer's identity was authenticated on a delivery attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerAuth {
    /// A usable TLSA record matched (RFC 7672).
    Dane,
    /// A web PKI certificate for the MX host name under an MTA-STS policy (RFC 8461 §4.1).
    Sts,
    /// A web PKI certificate demanded by a local rule or the global default.
    Webpki,
    /// Not authenticated: plaintext, or TLS without a check that was required.
    #[default]
    None,
}

impl PeerAuth {
    /// The label used in logs and `queue show`: `dane`, `sts`, `webpki` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerAuth::Dane => "dane",
            PeerAuth::Sts => "sts",
            PeerAuth::Webpki => "webpki",
            PeerAuth::None => "none",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Delivered,
    Deferred,
    Bounced,
}

/// One connection attempt for (some recipients of) a message, kept while the message exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    #[serde(with = "time::millis")]
    pub at: SystemTime,
    pub domain: String,
    pub mx: Option<String>,
    pub ip: Option<IpAddr>,
    pub tls_version: Option<String>,
    pub cipher: Option<String>,
    pub cert_verified: Option<bool>,
    pub auth: PeerAuth,
    /// The plan's policy label (`dane`, `sts-enforce`, `default-opportunistic`, ...).
    pub policy: String,
    /// The names of the `[[rule]]`s that matched, in file order; empty when none did, and in
    /// records written before it was recorded.
    #[serde(default)]
    pub rules: Vec<String>,
    /// The TLS requirement applied to this host (`opportunistic`, `encrypted`, `verified`,
    /// `dane`); absent in records written before it was recorded, and for attempts that never
    /// reached a host.
    #[serde(default)]
    pub requirement: Option<String>,
    /// For a failure of the TLS policy: its RFC 8460 §4.3 result type (`dane-required`,
    /// `certificate-host-mismatch`, ...).
    #[serde(default)]
    pub result_type: Option<String>,
    /// Indexes into the envelope's recipients.
    pub recipients: Vec<usize>,
    pub outcome: AttemptOutcome,
    pub reply: String,
    pub duration_ms: u64,
    /// The rules among `rules` that are exceptions (`insecure_relax`), with when they end and
    /// what the attempt would have met without them; empty in records written before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exceptions: Vec<ExceptionUse>,
    /// What each matching shadow rule would have done on this attempt; empty in records
    /// written before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shadow: Vec<ShadowVerdict>,
}

impl AttemptRecord {
    /// What decoding this record's stored bytes gives: `at` is stored in whole milliseconds.
    pub(crate) fn into_stored(mut self) -> Self {
        self.at = time::from_unix_millis(time::unix_millis(self.at));
        self
    }
}

/// An exception in force on an attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionUse {
    pub rule: String,
    /// Unix seconds: when it stops applying.
    pub expires: Option<u64>,
    pub reason: Option<String>,
    /// Set when the attempt went on only because of the exception: what the plan without it
    /// would have stopped it for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spared: Option<String>,
}

/// What a shadow rule would have done on an attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowVerdict {
    pub rule: String,
    pub outcome: ShadowOutcome,
    /// Why it would have stopped the attempt (empty for a plain pass).
    #[serde(default)]
    pub reason: String,
}

/// A shadow rule's verdict, under the labels the metrics and `strictmx shadow report` use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShadowOutcome {
    Pass,
    WouldDefer,
    WouldBounce,
}

impl ShadowOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ShadowOutcome::Pass => "pass",
            ShadowOutcome::WouldDefer => "would-defer",
            ShadowOutcome::WouldBounce => "would-bounce",
        }
    }

    /// The outcome named `label` ([`ShadowOutcome::as_str`]).
    pub fn from_label(label: &str) -> Option<ShadowOutcome> {
        [
            ShadowOutcome::Pass,
            ShadowOutcome::WouldDefer,
            ShadowOutcome::WouldBounce,
        ]
        .into_iter()
        .find(|outcome| outcome.as_str() == label)
    }
}

/// Recipients of one message that are due now; each is leased until `record` or
/// `release_leases`.
#[derive(Debug, Clone)]
pub struct DueMessage {
    pub id: MessageId,
    pub envelope: Arc<Envelope>,
    pub recipients: Vec<DueRecipient>,
    /// The body's size in octets, known without reading it.
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueRecipient {
    /// Index into `Envelope::recipients`.
    pub index: usize,
    pub address: String,
    /// The domain of `address`, lowercased; empty when the address has none.
    pub domain: String,
    pub attempts: u32,
    /// Whether the delay DSN for it was already sent.
    pub delay_dsn_sent: bool,
}

/// A message with everything the spool knows about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredMessage {
    #[serde(serialize_with = "crate::id::serialize_hex")]
    pub id: MessageId,
    pub envelope: Envelope,
    /// Body size in octets.
    pub size: u64,
    /// One state per envelope recipient, in envelope order.
    pub states: Vec<RecipientState>,
    pub attempts: Vec<AttemptRecord>,
}

/// What `Spool::bounce` removed: the message as it stood, all recipients bounced, and its body
/// so that the caller can write DSNs (the message itself is gone from the spool).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BouncedMessage {
    pub message: StoredMessage,
    pub body: Vec<u8>,
}

/// One line of the admin CLI's queue listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueEntry {
    #[serde(serialize_with = "crate::id::serialize_hex")]
    pub id: MessageId,
    pub sender: String,
    pub recipients: Vec<QueueRecipient>,
    #[serde(with = "time::secs")]
    pub received_at: SystemTime,
    #[serde(serialize_with = "time::duration_secs::serialize")]
    pub age: Duration,
    pub size: u64,
    /// The earliest next attempt of a queued recipient.
    #[serde(serialize_with = "time::opt_millis::serialize")]
    pub next_attempt: Option<SystemTime>,
    /// True when any recipient is held.
    pub held: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueRecipient {
    pub address: String,
    pub state: RecipientState,
}

/// Figures for metrics, kept in memory and rebuilt on open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolStats {
    pub messages: usize,
    pub recipients_queued: usize,
    pub held: usize,
    pub oldest_age: Option<Duration>,
    /// Write transactions committed since open.
    pub commits: u64,
    /// Commits that ended with an fdatasync (the others reached the disk with a later one).
    pub flushes: u64,
    /// Write transactions that failed and were aborted since open.
    pub failed_commits: u64,
    /// Operations carried by the committed transactions.
    pub committed_operations: u64,
    /// Time from the start of the last committed transaction to its fdatasync returning.
    pub last_commit_latency: Option<Duration>,
    pub total_commit_latency: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flat decoder reads what the tagged encoder writes, and refuses what the derived
    /// decoder refused: an unknown state, or a state without a field it needs.
    #[test]
    fn recipient_states_decode_from_their_stored_json() {
        let at = time::from_unix_millis(1_700_000_000_123);
        let states = [
            RecipientState::fresh(at),
            RecipientState::Queued {
                next_attempt: at,
                attempts: 3,
                last_reply: Some("451 4.7.1 later".into()),
                delay_dsn_sent: true,
            },
            RecipientState::Delivered {
                at,
                mx: "mx.example.net".into(),
                reply: "250 ok".into(),
            },
            RecipientState::Bounced {
                at,
                reply: "550 no".into(),
                status: "5.1.1".into(),
            },
            RecipientState::Held {
                attempts: 1,
                last_reply: None,
                delay_dsn_sent: false,
            },
        ];
        for state in states {
            let json = serde_json::to_string(&state).expect("encode");
            let back: RecipientState = serde_json::from_str(&json).expect(&json);
            assert_eq!(back, state, "{json}");
            let glance: Glance = serde_json::from_str(&json).expect(&json);
            assert_eq!(glance, Glance::of(&state), "{json}");
            assert_eq!(
                Glance::read(json.as_bytes()).expect(&json),
                glance,
                "{json}"
            );
            assert_eq!(
                (glance.is_final(), glance.is_queued(), glance.is_held()),
                (
                    state.is_final(),
                    Standing::is_queued(&state),
                    state.is_held()
                ),
            );
            assert_eq!(glance.scheduled(), state.scheduled(), "{json}");
        }
        let stored = r#"{"state":"queued","next_attempt":5,"attempts":0,"last_reply":null,"delay_dsn_sent":false,"later":1}"#;
        assert_eq!(
            serde_json::from_str::<RecipientState>(stored).expect("unknown fields are ignored"),
            RecipientState::fresh(time::from_unix_millis(5))
        );
        let refused = [
            r#"{"state":"lost","at":5}"#,
            r#"{"next_attempt":5,"attempts":0,"delay_dsn_sent":false}"#,
            r#"{"state":"queued","next_attempt":5,"delay_dsn_sent":false}"#,
            r#"{"state":"delivered","at":5,"reply":"250 ok"}"#,
            r#"{"state":"bounced","at":5,"reply":"550 no"}"#,
            r#"{"state":"held","attempts":1}"#,
        ];
        for json in refused {
            assert!(
                serde_json::from_str::<RecipientState>(json).is_err(),
                "{json}"
            );
        }
    }

    #[test]
    fn an_attempt_record_stored_before_requirement_result_type_rules_exceptions_and_shadow_verdicts_existed_still_loads()
     {
        let stored = r#"{"at":1700000000000,"domain":"example.net","mx":"mx.example.net",
            "ip":"127.0.0.2","tls_version":"TLSv1.3","cipher":"x","cert_verified":true,
            "auth":"none","policy":"default-opportunistic","recipients":[0],
            "outcome":"delivered","reply":"250 ok","duration_ms":3}"#;
        let record: AttemptRecord = serde_json::from_str(stored).expect("old record");
        assert_eq!(record.requirement, None);
        assert_eq!(record.result_type, None);
        assert!(record.rules.is_empty());
        assert!(record.exceptions.is_empty());
        assert!(record.shadow.is_empty());
        assert_eq!(record.auth, PeerAuth::None);
    }

    #[test]
    fn peer_auth_is_stored_under_the_names_the_logs_use() {
        for auth in [
            PeerAuth::Dane,
            PeerAuth::Sts,
            PeerAuth::Webpki,
            PeerAuth::None,
        ] {
            let json = serde_json::to_string(&auth).expect("serialize");
            assert_eq!(json, format!("\"{}\"", auth.as_str()));
        }
    }
}
