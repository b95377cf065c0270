//! Which queued messages a bulk queue command acts on (`--domain`, `--sender`, `--older-than`,
//! `--all`), and the queue's shape by destination domain (`queue summary`, after Postfix's
//! qshape). Pure functions over `queue list`'s entries; the control socket applies them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strictmx_protocol::{SenderPattern, ascii_domain, domain_of};
use strictmx_spool::{QueueEntry, RecipientState};

/// The messages a bulk command acts on. A message matches when it passes every filter given;
/// the command then acts on the whole message, as it would given its id.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args, Serialize, Deserialize)]
pub struct Selector {
    /// Messages with a recipient at this domain that is not yet delivered or bounced.
    #[arg(long)]
    pub domain: Option<String>,
    /// Messages from this sender: an address, `@domain` for every sender there, or `<>` for
    /// the null sender (bounces and reports).
    #[arg(long)]
    pub sender: Option<String>,
    /// Messages received longer ago than this (`90s`, `2h`, `3d`).
    #[arg(long, value_parser = parse_age)]
    pub older_than: Option<Duration>,
    /// Every message in the queue.
    #[arg(long, conflicts_with_all = ["domain", "sender", "older_than"])]
    pub all: bool,
}

fn parse_age(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("`{text}` is not a duration: {e}"))
}

/// Why a selector cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("give a message id, or select messages with --domain, --sender, --older-than or --all")]
    Empty,
    #[error("--sender {0:?} is neither an address, an @domain nor <>")]
    BadSender(String),
}

/// A checked selector, ready to match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    domain: Option<String>,
    sender: Option<SenderMatch>,
    older_than: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SenderMatch {
    Null,
    Pattern(SenderPattern),
}

impl Selector {
    /// Whether any filter was given; a bulk command without one is refused, never "all".
    pub fn is_empty(&self) -> bool {
        !self.all && self.domain.is_none() && self.sender.is_none() && self.older_than.is_none()
    }

    pub fn matcher(&self) -> Result<Matcher, SelectorError> {
        if self.is_empty() {
            return Err(SelectorError::Empty);
        }
        let sender = match self.sender.as_deref().map(str::trim) {
            None => None,
            Some("<>") => Some(SenderMatch::Null),
            Some(text) => Some(SenderMatch::Pattern(sender_pattern(text)?)),
        };
        Ok(Matcher {
            domain: self
                .domain
                .as_deref()
                .map(|d| ascii_domain(d.trim().trim_end_matches('.'))),
            sender,
            older_than: self.older_than,
        })
    }
}

fn sender_pattern(text: &str) -> Result<SenderPattern, SelectorError> {
    let bad = || SelectorError::BadSender(text.to_owned());
    if let Some(domain) = text.strip_prefix('@') {
        if domain.is_empty() || domain.contains('@') {
            return Err(bad());
        }
        return Ok(SenderPattern::Domain(domain.to_owned()));
    }
    match text.rsplit_once('@') {
        // An `@` in the local part only inside a quoted string (RFC 5321 §4.1.2).
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && (!local.contains('@') || local.starts_with('"')) =>
        {
            Ok(SenderPattern::Address(text.to_owned()))
        }
        _ => Err(bad()),
    }
}

impl Matcher {
    pub fn matches(&self, entry: &QueueEntry) -> bool {
        let domain_ok = self.domain.as_ref().is_none_or(|wanted| {
            entry.recipients.iter().any(|r| {
                !r.state.is_final()
                    && domain_of(&r.address).is_some_and(|d| ascii_domain(d) == *wanted)
            })
        });
        let sender_ok = match &self.sender {
            None => true,
            Some(SenderMatch::Null) => entry.sender.is_empty(),
            Some(SenderMatch::Pattern(pattern)) => pattern.matches(&entry.sender),
        };
        let age_ok = self.older_than.is_none_or(|limit| entry.age > limit);
        domain_ok && sender_ok && age_ok
    }
}

/// The upper bounds of `queue summary`'s age columns, in minutes, doubling like qshape's; the
/// last column takes everything older.
pub const AGE_BUCKETS_MINUTES: [u64; 8] = [5, 10, 20, 40, 80, 160, 320, 640];

/// One destination domain in `queue summary`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainShape {
    pub domain: String,
    /// Recipients not yet delivered or bounced.
    pub recipients: u64,
    /// Of those, held ones.
    pub held: u64,
    /// The age of the oldest message with such a recipient, in seconds.
    pub oldest_secs: u64,
    /// Recipients by message age: one count per [`AGE_BUCKETS_MINUTES`] bound, then older.
    pub by_age: Vec<u64>,
}

/// Undelivered recipients by destination domain, most recipients first (then by name), with a
/// `TOTAL` row first when there is anything queued.
pub fn summary(entries: &[QueueEntry]) -> Vec<DomainShape> {
    let mut domains: BTreeMap<String, DomainShape> = BTreeMap::new();
    let mut total = DomainShape::empty("TOTAL");
    for entry in entries {
        let bucket = age_bucket(entry.age);
        for recipient in entry.recipients.iter().filter(|r| !r.state.is_final()) {
            let domain = ascii_domain(domain_of(&recipient.address).unwrap_or(""));
            let held = matches!(recipient.state, RecipientState::Held { .. });
            for shape in [
                domains
                    .entry(domain.clone())
                    .or_insert_with(|| DomainShape::empty(&domain)),
                &mut total,
            ] {
                shape.recipients += 1;
                shape.held += u64::from(held);
                shape.oldest_secs = shape.oldest_secs.max(entry.age.as_secs());
                shape.by_age[bucket] += 1;
            }
        }
    }
    let mut rows: Vec<DomainShape> = domains.into_values().collect();
    rows.sort_by(|a, b| {
        b.recipients
            .cmp(&a.recipients)
            .then_with(|| a.domain.cmp(&b.domain))
    });
    if total.recipients > 0 {
        rows.insert(0, total);
    }
    rows
}

impl DomainShape {
    fn empty(domain: &str) -> Self {
        DomainShape {
            domain: domain.to_owned(),
            recipients: 0,
            held: 0,
            oldest_secs: 0,
            by_age: vec![0; AGE_BUCKETS_MINUTES.len() + 1],
        }
    }
}

fn age_bucket(age: Duration) -> usize {
    let minutes = age.as_secs() / 60;
    AGE_BUCKETS_MINUTES
        .iter()
        .position(|bound| minutes < *bound)
        .unwrap_or(AGE_BUCKETS_MINUTES.len())
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use strictmx_spool::QueueRecipient;

    use super::*;

    fn queued() -> RecipientState {
        RecipientState::Queued {
            next_attempt: SystemTime::UNIX_EPOCH,
            attempts: 1,
            last_reply: None,
            delay_dsn_sent: false,
        }
    }

    fn delivered() -> RecipientState {
        RecipientState::Delivered {
            at: SystemTime::UNIX_EPOCH,
            mx: "mx.ok.example".to_owned(),
            reply: "250 ok".to_owned(),
        }
    }

    fn entry(sender: &str, age_secs: u64, recipients: &[(&str, RecipientState)]) -> QueueEntry {
        QueueEntry {
            id: 1,
            sender: sender.to_owned(),
            recipients: recipients
                .iter()
                .map(|(address, state)| QueueRecipient {
                    address: (*address).to_owned(),
                    state: state.clone(),
                })
                .collect(),
            received_at: SystemTime::UNIX_EPOCH,
            age: Duration::from_secs(age_secs),
            size: 10,
            next_attempt: None,
            held: false,
        }
    }

    fn select(domain: Option<&str>, sender: Option<&str>, older: Option<u64>) -> Matcher {
        Selector {
            domain: domain.map(str::to_owned),
            sender: sender.map(str::to_owned),
            older_than: older.map(Duration::from_secs),
            all: false,
        }
        .matcher()
        .expect("a valid selector")
    }

    #[test]
    fn a_selector_matches_messages_that_pass_every_filter_given() {
        let stuck = entry(
            "app@Src.example",
            7200,
            &[("a@dead.example", queued()), ("b@ok.example", delivered())],
        );
        let bounce = entry("", 60, &[("c@DEAD.example", queued())]);
        let idn = entry("app@src.example", 60, &[("jörg@Bücher.example", queued())]);
        let rows = [
            (
                "a domain with an open recipient",
                select(Some("dead.example"), None, None),
                &stuck,
                true,
            ),
            (
                "domains compare case-insensitively, a final dot ignored",
                select(Some("Dead.Example."), None, None),
                &bounce,
                true,
            ),
            (
                "an A-label selects the recipients written with its U-label",
                select(Some("xn--bcher-kva.example"), None, None),
                &idn,
                true,
            ),
            (
                "and the U-label selects them too",
                select(Some("BÜCHER.example"), None, None),
                &idn,
                true,
            ),
            (
                "a domain whose recipients are all final is not selected",
                select(Some("ok.example"), None, None),
                &stuck,
                false,
            ),
            (
                "a sender address, domain case-insensitive",
                select(None, Some("app@src.example"), None),
                &stuck,
                true,
            ),
            (
                "@domain: every sender there",
                select(None, Some("@src.example"), None),
                &stuck,
                true,
            ),
            (
                "<> is the null sender",
                select(None, Some("<>"), None),
                &bounce,
                true,
            ),
            (
                "<> is only the null sender",
                select(None, Some("<>"), None),
                &stuck,
                false,
            ),
            (
                "older than: strictly older",
                select(None, None, Some(3600)),
                &stuck,
                true,
            ),
            (
                "younger messages stay out",
                select(None, None, Some(3600)),
                &bounce,
                false,
            ),
            (
                "every filter must pass",
                select(Some("dead.example"), Some("<>"), Some(3600)),
                &bounce,
                false,
            ),
        ];
        for (rule, matcher, entry, expected) in rows {
            assert_eq!(matcher.matches(entry), expected, "{rule}");
        }
        let all = Selector {
            all: true,
            ..Selector::default()
        };
        assert!(all.matcher().expect("all").matches(&stuck));
    }

    #[test]
    fn a_bulk_command_without_a_filter_or_with_a_bad_sender_is_refused() {
        assert_eq!(Selector::default().matcher(), Err(SelectorError::Empty));
        for sender in ["nobody", "@", "a@b@c", "@x@y", "@"] {
            let selector = Selector {
                sender: Some(sender.to_owned()),
                ..Selector::default()
            };
            assert!(
                matches!(selector.matcher(), Err(SelectorError::BadSender(_))),
                "{sender}"
            );
        }
    }

    #[test]
    fn the_summary_counts_open_recipients_by_domain_and_age_like_qshape() {
        let entries = [
            entry(
                "a@src.example",
                30,
                &[("x@dead.example", queued()), ("y@ok.example", delivered())],
            ),
            entry("a@src.example", 3 * 3600, &[("z@dead.example", queued())]),
            entry(
                "a@src.example",
                12 * 3600,
                &[(
                    "w@slow.example",
                    RecipientState::Held {
                        attempts: 0,
                        last_reply: None,
                        delay_dsn_sent: false,
                    },
                )],
            ),
        ];
        let rows = summary(&entries);
        let names: Vec<&str> = rows.iter().map(|r| r.domain.as_str()).collect();
        assert_eq!(names, ["TOTAL", "dead.example", "slow.example"]);
        assert_eq!(rows[0].recipients, 3);
        assert_eq!(rows[0].held, 1);
        assert_eq!(rows[0].oldest_secs, 12 * 3600);
        // 30 s is under 5 minutes; 3 h is in the 160–320 minute column; 12 h is older than all.
        assert_eq!(rows[1].by_age, [1, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(rows[2].by_age, [0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert!(summary(&[]).is_empty());
    }
}
