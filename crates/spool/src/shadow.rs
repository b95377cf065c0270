//! Shadow rule counters (issue 11): per UTC day, rule, recipient domain, outcome and reason, how
//! many delivered messages a shadow rule was tried on. The transaction that records the
//! attempts counts them (no commit or flush of its own), and they outlive the messages, which
//! leave the spool once delivered; days older than [`SHADOW_KEEP_DAYS`] are dropped as new ones
//! are counted. What a shadow rule would do is the policy's decision, printing the report
//! `strictmx`'s; [`report`] only adds the rows up.

use std::collections::BTreeMap;

use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableError, WriteTransaction};
use serde::Serialize;

use crate::error::SpoolError;
use crate::spool::Spool;
use crate::time::unix_millis;
use crate::types::{AttemptOutcome, AttemptRecord, ShadowOutcome};

/// (day, rule, recipient domain, outcome, reason) → delivered messages.
type Key<'a> = (u32, &'a str, &'a str, &'a str, &'a str);
const COUNTS: TableDefinition<Key, u64> = TableDefinition::new("shadow_counts");

/// How many days of counters are kept, the day of the newest count included.
pub const SHADOW_KEEP_DAYS: u32 = 31;

const MILLIS_PER_DAY: u64 = 86_400_000;

/// The UTC day (days since 1970-01-01) of `unix_millis`.
fn day_of(millis: u64) -> u32 {
    u32::try_from(millis / MILLIS_PER_DAY).unwrap_or(u32::MAX)
}

/// Counts the shadow verdicts of the delivered attempts among `attempts`, and drops counters
/// older than [`SHADOW_KEEP_DAYS`] before the newest day counted.
pub(crate) fn count(txn: &WriteTransaction, attempts: &[AttemptRecord]) -> Result<(), redb::Error> {
    let delivered = attempts
        .iter()
        .filter(|a| a.outcome == AttemptOutcome::Delivered && !a.shadow.is_empty());
    let mut newest = None;
    let mut table = None;
    for attempt in delivered {
        let counts = match &mut table {
            Some(counts) => counts,
            None => table.insert(txn.open_table(COUNTS)?),
        };
        let day = day_of(unix_millis(attempt.at));
        newest = newest.max(Some(day));
        for verdict in &attempt.shadow {
            let key = (
                day,
                verdict.rule.as_str(),
                attempt.domain.as_str(),
                verdict.outcome.as_str(),
                verdict.reason.as_str(),
            );
            let before = counts.get(key)?.map_or(0, |v| v.value());
            counts.insert(key, before.saturating_add(1))?;
        }
    }
    if let (Some(counts), Some(newest)) = (&mut table, newest) {
        let oldest_kept = newest.saturating_sub(SHADOW_KEEP_DAYS - 1);
        counts.retain_in(..(oldest_kept, "", "", "", ""), |_, _| false)?;
    }
    Ok(())
}

/// One counter: how many delivered messages to `domain` rule `rule` gave `outcome` on `day`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowCount {
    pub day: u32,
    pub rule: String,
    pub domain: String,
    pub outcome: ShadowOutcome,
    pub reason: String,
    pub count: u64,
}

/// What one shadow rule would have done to the messages delivered in a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShadowRuleReport {
    pub rule: String,
    /// Delivered messages the rule was tried on.
    pub messages: u64,
    /// Of those, how many it would have stopped (deferred or bounced).
    pub stopped: u64,
    /// Recipient domains it was tried on, those it would have stopped most first.
    pub domains: Vec<ShadowDomain>,
}

impl ShadowRuleReport {
    /// How many domains the rule would have stopped mail to.
    pub fn stopped_domains(&self) -> usize {
        self.domains.iter().filter(|d| d.stopped > 0).count()
    }
}

/// One recipient domain in a [`ShadowRuleReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShadowDomain {
    pub domain: String,
    pub messages: u64,
    pub stopped: u64,
    /// Why it would have stopped them, most frequent first.
    pub reasons: Vec<ShadowReason>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShadowReason {
    pub outcome: ShadowOutcome,
    pub reason: String,
    pub messages: u64,
}

/// Adds counters up per rule (by name) and domain.
pub fn report(rows: &[ShadowCount]) -> Vec<ShadowRuleReport> {
    type Domains = BTreeMap<String, (u64, BTreeMap<(ShadowOutcome, String), u64>)>;
    let mut rules: BTreeMap<String, Domains> = BTreeMap::new();
    for row in rows {
        let (messages, reasons) = rules
            .entry(row.rule.clone())
            .or_default()
            .entry(row.domain.clone())
            .or_default();
        *messages += row.count;
        if row.outcome != ShadowOutcome::Pass {
            *reasons
                .entry((row.outcome, row.reason.clone()))
                .or_default() += row.count;
        }
    }
    rules
        .into_iter()
        .map(|(rule, domains)| {
            let mut domains: Vec<ShadowDomain> = domains
                .into_iter()
                .map(|(domain, (messages, reasons))| {
                    let mut reasons: Vec<ShadowReason> = reasons
                        .into_iter()
                        .map(|((outcome, reason), messages)| ShadowReason {
                            outcome,
                            reason,
                            messages,
                        })
                        .collect();
                    reasons.sort_by_key(|r| std::cmp::Reverse(r.messages));
                    ShadowDomain {
                        domain,
                        messages,
                        stopped: reasons.iter().map(|r| r.messages).sum(),
                        reasons,
                    }
                })
                .collect();
            domains.sort_by_key(|d| std::cmp::Reverse(d.stopped));
            ShadowRuleReport {
                messages: domains.iter().map(|d| d.messages).sum(),
                stopped: domains.iter().map(|d| d.stopped).sum(),
                rule,
                domains,
            }
        })
        .collect()
}

fn read_fail(e: impl Into<redb::Error>) -> SpoolError {
    SpoolError::storage("reading shadow rule counters")(e.into())
}

impl Spool {
    /// The counters of `since_day` (days since 1970-01-01, UTC) and later, of `rule` only when
    /// given, in key order.
    pub fn shadow_counts(
        &self,
        since_day: u32,
        rule: Option<&str>,
    ) -> Result<Vec<ShadowCount>, SpoolError> {
        let db = self.shared().database()?;
        let txn = db.begin_read().map_err(read_fail)?;
        let table = match txn.open_table(COUNTS) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(read_fail(e)),
        };
        let mut rows = Vec::new();
        for entry in table
            .range((since_day, "", "", "", "")..)
            .map_err(read_fail)?
        {
            let (key, value) = entry.map_err(read_fail)?;
            let (day, name, domain, outcome, reason) = key.value();
            if rule.is_some_and(|wanted| wanted != name) {
                continue;
            }
            // A label this build does not know is from a newer one: left out, not an error.
            let Some(outcome) = ShadowOutcome::from_label(outcome) else {
                continue;
            };
            rows.push(ShadowCount {
                day,
                rule: name.to_owned(),
                domain: domain.to_owned(),
                outcome,
                reason: reason.to_owned(),
                count: value.value(),
            });
        }
        Ok(rows)
    }

    /// [`report`] over [`Spool::shadow_counts`].
    pub fn shadow_report(
        &self,
        since_day: u32,
        rule: Option<&str>,
    ) -> Result<Vec<ShadowRuleReport>, SpoolError> {
        Ok(report(&self.shadow_counts(since_day, rule)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        rule: &str,
        domain: &str,
        outcome: ShadowOutcome,
        reason: &str,
        count: u64,
    ) -> ShadowCount {
        ShadowCount {
            day: 20_000,
            rule: rule.to_owned(),
            domain: domain.to_owned(),
            outcome,
            reason: reason.to_owned(),
            count,
        }
    }

    // Issue 11: the report says how many messages and domains the rule would have stopped,
    // which domains with counts, and the reason for each.
    #[test]
    fn the_report_adds_up_messages_and_domains_stopped_per_rule_with_reasons() {
        let rows = [
            row(
                "dane",
                "plain.test",
                ShadowOutcome::WouldDefer,
                "no TLSA",
                3,
            ),
            row(
                "dane",
                "plain.test",
                ShadowOutcome::WouldDefer,
                "no TLSA",
                2,
            ),
            row("dane", "sts.test", ShadowOutcome::WouldDefer, "no TLSA", 1),
            row("dane", "sts.test", ShadowOutcome::WouldBounce, "5.7.30", 1),
            row("dane", "dane.test", ShadowOutcome::Pass, "", 4),
            row("dane", "sts.test", ShadowOutcome::Pass, "", 2),
            row("other", "plain.test", ShadowOutcome::Pass, "", 1),
        ];
        let report = report(&rows);
        assert_eq!(report.len(), 2);
        let dane = &report[0];
        assert_eq!(
            (dane.rule.as_str(), dane.messages, dane.stopped),
            ("dane", 13, 7)
        );
        assert_eq!(dane.stopped_domains(), 2);
        let domains: Vec<(&str, u64, u64)> = dane
            .domains
            .iter()
            .map(|d| (d.domain.as_str(), d.messages, d.stopped))
            .collect();
        assert_eq!(
            domains,
            [
                ("plain.test", 5, 5),
                ("sts.test", 4, 2),
                ("dane.test", 4, 0)
            ]
        );
        assert_eq!(
            dane.domains[0].reasons,
            [ShadowReason {
                outcome: ShadowOutcome::WouldDefer,
                reason: "no TLSA".to_owned(),
                messages: 5
            }]
        );
        assert_eq!(dane.domains[1].reasons.len(), 2);
        assert!(dane.domains[2].reasons.is_empty());
        assert_eq!((report[1].messages, report[1].stopped_domains()), (1, 0));
    }
}
