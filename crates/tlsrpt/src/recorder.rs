//! Recording delivery sessions (RFC 8460 §4.2, §4.3): each `SessionResult` becomes a counter
//! increment in the spool, keyed by UTC day, report domain and an encoding of the policy; a
//! failure also counts in its detail row. Writes are batched on a task and share the spool's
//! group commit; building reports from the counters is left to `report`.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use strictmx_policy::report::{PolicyType, SessionFailure, SessionResult};
use strictmx_spool::{Spool, TlsrptFailure, TlsrptSession};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::day::Day;
use crate::report::FailureDetail;

/// At most this many distinct failure-detail rows per policy, report domain and day; further
/// distinct failures are counted in one row per result type without sending or receiving
/// addresses (see [`StoredDetail::overflow`]).
pub const MAX_DETAIL_ROWS: u32 = 100;

/// Results waiting for the recorder task before `record` starts dropping (and logging) them.
const QUEUE: usize = 1024;

/// At most this many messages go into one spool write.
const BATCH: usize = 256;

/// The policy as stored: the fields of RFC 8460 §4.4 `policy`, JSON with a fixed field order so
/// equal policies encode equally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredPolicy {
    pub(crate) policy_type: String,
    pub(crate) policy_string: Vec<String>,
    pub(crate) policy_domain: String,
    pub(crate) mx_host: Vec<String>,
}

impl StoredPolicy {
    pub(crate) fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub(crate) fn decode(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// One failure-detail row as stored (RFC 8460 §4.4 `failure-details` without the count).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredDetail {
    pub(crate) result_type: String,
    pub(crate) sending_mta_ip: Option<String>,
    pub(crate) receiving_mx_hostname: Option<String>,
    pub(crate) receiving_mx_helo: Option<String>,
    pub(crate) receiving_ip: Option<String>,
    pub(crate) additional_information: Option<String>,
    pub(crate) failure_reason_code: Option<String>,
}

/// What the overflow row says in `failure-reason-code`, a free-text field (RFC 8460 §4.4).
pub const OVERFLOW_REASON: &str = "other: more distinct failures than strictmx lists per policy";

impl StoredDetail {
    fn of(failure: &SessionFailure) -> Self {
        StoredDetail {
            result_type: failure.result_type.as_str().to_owned(),
            sending_mta_ip: failure.sending_mta_ip.map(|ip| ip.to_string()),
            receiving_mx_hostname: failure.receiving_mx_hostname.clone(),
            receiving_mx_helo: failure.receiving_mx_helo.clone(),
            receiving_ip: failure.receiving_ip.map(|ip| ip.to_string()),
            additional_information: failure.additional_information.clone(),
            failure_reason_code: failure.failure_reason_code.clone(),
        }
    }

    /// The row a failure is counted in once its policy has [`MAX_DETAIL_ROWS`] rows that day:
    /// same result type, nothing else.
    pub(crate) fn overflow(&self) -> Self {
        StoredDetail {
            result_type: self.result_type.clone(),
            sending_mta_ip: None,
            receiving_mx_hostname: None,
            receiving_mx_helo: None,
            receiving_ip: None,
            additional_information: None,
            failure_reason_code: Some(OVERFLOW_REASON.to_owned()),
        }
    }

    pub(crate) fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub(crate) fn decode(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Whether this is an overflow row (see [`StoredDetail::overflow`]).
    pub(crate) fn is_overflow(&self) -> bool {
        *self == self.overflow()
    }

    pub(crate) fn into_report(self, count: u64) -> FailureDetail {
        FailureDetail {
            result_type: self.result_type,
            sending_mta_ip: self.sending_mta_ip,
            receiving_mx_hostname: self.receiving_mx_hostname,
            receiving_mx_helo: self.receiving_mx_helo,
            receiving_ip: self.receiving_ip,
            failed_session_count: count,
            additional_information: self.additional_information,
            failure_reason_code: self.failure_reason_code,
        }
    }
}

fn policy_type(t: PolicyType) -> &'static str {
    match t {
        PolicyType::Sts => "sts",
        PolicyType::Tlsa => "tlsa",
        PolicyType::NoPolicyFound => "no-policy-found",
    }
}

/// The spool row a session result increments on `day`.
pub(crate) fn session_row(day: Day, result: &SessionResult) -> TlsrptSession {
    let policy = StoredPolicy {
        policy_type: policy_type(result.policy.policy_type).to_owned(),
        policy_string: result.policy.policy_string.clone(),
        policy_domain: result
            .policy
            .policy_domain
            .trim_end_matches('.')
            .to_ascii_lowercase(),
        mx_host: result.policy.mx_host.clone(),
    };
    TlsrptSession {
        day: day.0,
        report_domain: result
            .report_domain
            .trim_end_matches('.')
            .to_ascii_lowercase(),
        policy: policy.encode(),
        failure: result.failure.as_ref().map(|failure| {
            let detail = StoredDetail::of(failure);
            TlsrptFailure {
                overflow: detail.overflow().encode(),
                detail: detail.encode(),
            }
        }),
    }
}

enum Message {
    Record(Vec<TlsrptSession>),
    Flush(oneshot::Sender<()>),
}

/// Counts session results into the spool. Cheap to clone; `record` never waits for the disk.
///
/// Durability: results are queued in memory and written by one task, many at a time, in a write
/// that shares the spool's group commit (fdatasync) with deliveries. A crash loses at most the
/// results still queued (normally the last few milliseconds); a full queue drops results with a
/// warning rather than slowing delivery.
#[derive(Debug, Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Message>,
    exclude: std::sync::Arc<Vec<String>>,
}

impl Recorder {
    /// Starts the recorder task, which stops (after writing what is queued) on `shutdown`.
    pub fn start(
        spool: Spool,
        exclude_domains: Vec<String>,
        shutdown: CancellationToken,
    ) -> (Recorder, tokio::task::JoinHandle<()>) {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(spool, receiver, shutdown));
        let exclude = exclude_domains
            .into_iter()
            .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        (
            Recorder {
                queue,
                exclude: std::sync::Arc::new(exclude),
            },
            task,
        )
    }

    /// Counts the sessions of one delivery attempt under today's UTC date.
    pub fn record(&self, results: &[SessionResult]) {
        self.record_at(results, SystemTime::now());
    }

    /// Counts the sessions under the UTC day of `at`.
    pub fn record_at(&self, results: &[SessionResult], at: SystemTime) {
        let day = Day::of(at);
        let rows: Vec<TlsrptSession> = results
            .iter()
            .map(|r| session_row(day, r))
            .filter(|row| !self.exclude.contains(&row.report_domain))
            .collect();
        if rows.is_empty() {
            return;
        }
        if self.queue.try_send(Message::Record(rows)).is_err() {
            tracing::warn!(
                sessions = results.len(),
                "TLSRPT recorder queue full or stopped; sessions not counted"
            );
        }
    }

    /// Waits until everything recorded before this call is committed.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.queue.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn run(spool: Spool, mut queue: mpsc::Receiver<Message>, shutdown: CancellationToken) {
    loop {
        let first = tokio::select! {
            message = queue.recv() => message,
            () = shutdown.cancelled() => {
                queue.close();
                queue.recv().await
            }
        };
        let Some(first) = first else { return };
        let mut rows = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(message) = next.take() {
            match message {
                Message::Record(mut batch) => rows.append(&mut batch),
                Message::Flush(done) => flushes.push(done),
            }
            taken += 1;
            if taken < BATCH {
                next = queue.try_recv().ok();
            }
        }
        if !rows.is_empty() {
            let count = rows.len();
            match spool.tlsrpt_record(rows, MAX_DETAIL_ROWS).await {
                Ok(0) => {}
                Ok(dropped) => {
                    tracing::warn!(dropped, "TLSRPT sessions not counted: hash slots exhausted")
                }
                Err(e) => {
                    tracing::warn!(sessions = count, error = %e, "TLSRPT counters not written")
                }
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}
