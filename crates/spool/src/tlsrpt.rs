//! TLSRPT counters (RFC 8460 §4) kept in the spool: per UTC day, report domain and policy, the
//! successful and failed session counts and the failure-detail rows with their counts, plus which
//! (day, domain) reports were sent. Policies and details are opaque strings here: encoding them,
//! choosing the overflow row and building reports is left to `strictmx-tlsrpt`.

use redb::{ReadableDatabase, ReadableTable, Table, TableDefinition, TableError, WriteTransaction};

use crate::error::SpoolError;
use crate::spool::Spool;
use crate::writer::{OpError, Tables};

type PolicyKey<'a> = (u32, &'a str, u64);
type PolicyRow<'a> = (u64, u64, u32, &'a str);
type DetailKey<'a> = (u32, &'a str, u64, u64);
/// Successes, failures and distinct detail rows of one policy.
type Counts = (u64, u64, u32);

/// (day, report domain, policy slot) → (successes, failures, distinct detail rows, policy).
const POLICIES: TableDefinition<PolicyKey, PolicyRow> = TableDefinition::new("tlsrpt_policies");
/// (day, report domain, policy slot, detail slot) → (failed sessions, detail).
const DETAILS: TableDefinition<DetailKey, (u64, &str)> = TableDefinition::new("tlsrpt_details");
/// (day, report domain) → unix seconds when its report was sent.
const SENT: TableDefinition<(u32, &str), u64> = TableDefinition::new("tlsrpt_sent");

/// How far a slot search walks past a hash collision before giving up on a row.
const MAX_PROBES: u64 = 16;

/// One delivery session to count. `day` is days since 1970-01-01 (UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsrptSession {
    pub day: u32,
    pub report_domain: String,
    /// A stable encoding of the policy; equal strings are counted together.
    pub policy: String,
    /// `None` for a successful session.
    pub failure: Option<TlsrptFailure>,
}

/// A failed session's detail row, and the row it is counted in once the policy already has the
/// maximum number of distinct detail rows that day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsrptFailure {
    pub detail: String,
    pub overflow: String,
}

/// Everything counted for one (day, report domain, policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsrptCounters {
    pub day: u32,
    pub report_domain: String,
    pub policy: String,
    pub successes: u64,
    pub failures: u64,
    /// Detail rows in the order they were first seen within their hash slots.
    pub details: Vec<TlsrptDetailCount>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsrptDetailCount {
    pub detail: String,
    pub count: u64,
}

/// FNV-1a: stable across builds and platforms, unlike the std hasher.
fn slot_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn abort(e: impl Into<redb::Error>) -> OpError {
    OpError::Abort(e.into())
}

fn read_fail(e: impl Into<redb::Error>) -> SpoolError {
    SpoolError::storage("reading TLSRPT counters")(e.into())
}

/// The slot holding `policy` for (day, domain), or the free slot it goes in; `None` when every
/// probed slot holds another policy.
fn policy_slot(
    table: &Table<'_, PolicyKey, PolicyRow>,
    day: u32,
    domain: &str,
    policy: &str,
) -> Result<Option<(u64, Option<Counts>)>, OpError> {
    let base = slot_hash(policy);
    for probe in 0..MAX_PROBES {
        let slot = base.wrapping_add(probe);
        match table.get((day, domain, slot)).map_err(abort)? {
            None => return Ok(Some((slot, None))),
            Some(row) => {
                let (ok, failed, rows, stored) = row.value();
                if stored == policy {
                    return Ok(Some((slot, Some((ok, failed, rows)))));
                }
            }
        }
    }
    Ok(None)
}

fn detail_slot(
    table: &Table<'_, DetailKey, (u64, &str)>,
    key: PolicyKey,
    detail: &str,
) -> Result<Option<(u64, Option<u64>)>, OpError> {
    let base = slot_hash(detail);
    for probe in 0..MAX_PROBES {
        let slot = base.wrapping_add(probe);
        match table.get((key.0, key.1, key.2, slot)).map_err(abort)? {
            None => return Ok(Some((slot, None))),
            Some(row) => {
                let (count, stored) = row.value();
                if stored == detail {
                    return Ok(Some((slot, Some(count))));
                }
            }
        }
    }
    Ok(None)
}

/// Counts one session; returns false when it could not be placed (hash slots exhausted).
fn count_session(
    txn: &WriteTransaction,
    session: &TlsrptSession,
    max_details: u32,
) -> Result<bool, OpError> {
    let mut policies = txn.open_table(POLICIES).map_err(abort)?;
    let (day, domain) = (session.day, session.report_domain.as_str());
    let Some((pslot, found)) = policy_slot(&policies, day, domain, &session.policy)? else {
        return Ok(false);
    };
    let (mut ok, mut failed, mut rows) = found.unwrap_or((0, 0, 0));
    match &session.failure {
        None => ok += 1,
        Some(failure) => {
            failed += 1;
            let mut details = txn.open_table(DETAILS).map_err(abort)?;
            let key = (day, domain, pslot);
            let mut placed = false;
            if let Some((slot, Some(count))) = detail_slot(&details, key, &failure.detail)? {
                details
                    .insert(
                        (day, domain, pslot, slot),
                        (count + 1, failure.detail.as_str()),
                    )
                    .map_err(abort)?;
                placed = true;
            } else if rows < max_details
                && let Some((slot, None)) = detail_slot(&details, key, &failure.detail)?
            {
                details
                    .insert((day, domain, pslot, slot), (1, failure.detail.as_str()))
                    .map_err(abort)?;
                rows += 1;
                placed = true;
            }
            if !placed && let Some((slot, count)) = detail_slot(&details, key, &failure.overflow)? {
                let count = count.unwrap_or(0) + 1;
                details
                    .insert(
                        (day, domain, pslot, slot),
                        (count, failure.overflow.as_str()),
                    )
                    .map_err(abort)?;
            }
        }
    }
    policies
        .insert(
            (day, domain, pslot),
            (ok, failed, rows, session.policy.as_str()),
        )
        .map_err(abort)?;
    Ok(true)
}

fn record_sessions(
    tables: &mut Tables<'_>,
    sessions: &[TlsrptSession],
    max_details: u32,
) -> Result<usize, OpError> {
    let mut dropped = 0;
    for session in sessions {
        if !count_session(tables.txn, session, max_details)? {
            dropped += 1;
        }
    }
    Ok(dropped)
}

fn prune(tables: &mut Tables<'_>, before_day: u32) -> Result<usize, OpError> {
    let txn = tables.txn;
    let mut removed = 0;
    {
        let mut policies = txn.open_table(POLICIES).map_err(abort)?;
        policies
            .retain_in(..(before_day, "", 0), |_, _| {
                removed += 1;
                false
            })
            .map_err(abort)?;
    }
    {
        let mut details = txn.open_table(DETAILS).map_err(abort)?;
        details
            .retain_in(..(before_day, "", 0, 0), |_, _| false)
            .map_err(abort)?;
    }
    {
        let mut sent = txn.open_table(SENT).map_err(abort)?;
        sent.retain_in(..(before_day, ""), |_, _| false)
            .map_err(abort)?;
    }
    Ok(removed)
}

impl Spool {
    /// Counts sessions in one write that shares the writer's group commit. A session whose
    /// policy or detail lands on [`MAX_PROBES`] colliding hashes is dropped and counted in the
    /// returned number (never seen in practice; logged by the caller).
    pub async fn tlsrpt_record(
        &self,
        sessions: Vec<TlsrptSession>,
        max_details: u32,
    ) -> Result<usize, SpoolError> {
        // Counts lost in a crash only make one day's report smaller: no flush is waited for.
        self.execute_lazily(move |t, _| record_sessions(t, &sessions, max_details))
            .await
    }

    /// Marks the report of (day, domain) as sent at `at_secs`; returns false when it already
    /// was, so that two senders racing each other send once.
    pub async fn tlsrpt_mark_sent(
        &self,
        day: u32,
        domain: String,
        at_secs: u64,
    ) -> Result<bool, SpoolError> {
        self.execute(move |t, _| {
            let mut sent = t.txn.open_table(SENT).map_err(abort)?;
            if sent.get((day, domain.as_str())).map_err(abort)?.is_some() {
                return Ok(false);
            }
            sent.insert((day, domain.as_str()), at_secs)
                .map_err(abort)?;
            Ok(true)
        })
        .await
    }

    /// Removes counters and sent marks of days before `before_day`; returns how many policy
    /// rows went.
    pub async fn tlsrpt_prune(&self, before_day: u32) -> Result<usize, SpoolError> {
        self.execute(move |t, _| prune(t, before_day)).await
    }

    /// Whether the report of (day, domain) was sent.
    pub fn tlsrpt_sent(&self, day: u32, domain: &str) -> Result<bool, SpoolError> {
        let db = self.shared().database()?;
        let txn = db.begin_read().map_err(read_fail)?;
        let sent = match txn.open_table(SENT) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(false),
            Err(e) => return Err(read_fail(e)),
        };
        Ok(sent.get((day, domain)).map_err(read_fail)?.is_some())
    }

    /// The days that have counters, oldest first.
    pub fn tlsrpt_days(&self) -> Result<Vec<u32>, SpoolError> {
        let db = self.shared().database()?;
        let txn = db.begin_read().map_err(read_fail)?;
        let policies = match txn.open_table(POLICIES) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(read_fail(e)),
        };
        let mut days: Vec<u32> = Vec::new();
        for entry in policies.iter().map_err(read_fail)? {
            let (key, _) = entry.map_err(read_fail)?;
            let day = key.value().0;
            if days.last() != Some(&day) {
                days.push(day);
            }
        }
        Ok(days)
    }

    /// Every counter of `day`, ordered by report domain.
    pub fn tlsrpt_day(&self, day: u32) -> Result<Vec<TlsrptCounters>, SpoolError> {
        let db = self.shared().database()?;
        let txn = db.begin_read().map_err(read_fail)?;
        let policies = match txn.open_table(POLICIES) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(read_fail(e)),
        };
        // Created by the first failure: a spool that only saw successes has none.
        let details = match txn.open_table(DETAILS) {
            Ok(table) => Some(table),
            Err(TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(read_fail(e)),
        };
        let mut counters = Vec::new();
        let range = (day, "", 0)..(day.saturating_add(1), "", 0);
        for entry in policies.range(range).map_err(read_fail)? {
            let (key, value) = entry.map_err(read_fail)?;
            let (day, domain, pslot) = key.value();
            let (successes, failures, _, policy) = value.value();
            let mut rows = Vec::new();
            let detail_range = (day, domain, pslot, 0)..=(day, domain, pslot, u64::MAX);
            if let Some(details) = &details {
                for row in details.range(detail_range).map_err(read_fail)? {
                    let (_, value) = row.map_err(read_fail)?;
                    let (count, detail) = value.value();
                    rows.push(TlsrptDetailCount {
                        detail: detail.to_owned(),
                        count,
                    });
                }
            }
            counters.push(TlsrptCounters {
                day,
                report_domain: domain.to_owned(),
                policy: policy.to_owned(),
                successes,
                failures,
                details: rows,
            });
        }
        Ok(counters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_hash_is_fnv1a_and_so_stable_across_builds() {
        assert_eq!(slot_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(slot_hash("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
