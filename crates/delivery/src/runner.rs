//! The queue runner: one task takes due recipients from the spool, groups them by destination,
//! runs delivery jobs within the global and per-destination limits, and backs off destinations
//! that cannot be reached.
//!
//! Running a job and persisting its outcomes is `runner::settle`'s, what an outcome means for a
//! recipient (retry, bounce) `runner::transition`'s, which DSNs it sends `runner::notify`'s;
//! connecting and speaking SMTP is the transport's (`job::Deliver`).

mod admin;
mod dispatch;
mod error;
mod notify;
mod settle;
mod transition;
mod work;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use strictmx_spool::Spool;
use strictmx_tlsrpt::Recorder;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::job::Deliver;
use crate::retry::RetrySettings;
use crate::watch::PostureWatch;
pub use admin::bounce_with_dsns;
use dispatch::Dispatcher;
pub use error::QueueError;
use work::TaskDone;

/// How the queue is worked: limits, schedule and identity.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSettings {
    pub retry: RetrySettings,
    /// Delivery jobs (connections) in flight at once, over all destinations.
    pub max_connections: usize,
    /// Delivery jobs in flight at once for one destination domain.
    pub max_per_destination: usize,
    /// The most messages taken from the spool at once.
    pub batch_size: usize,
    /// strictmx's host name, for DSNs (`Reporting-MTA`, `From: MAILER-DAEMON@…`).
    pub hostname: String,
    /// How long a destination whose MX hosts were all unreachable is left alone; doubles with
    /// each further such failure, up to `retry.max_interval`.
    pub destination_backoff: Duration,
    /// The longest one delivery job may run; its recipients are deferred after that.
    pub job_timeout: Duration,
    /// On shutdown, how long jobs in flight may take to finish before they are abandoned.
    pub shutdown_grace: Duration,
    /// With RET=FULL, originals larger than this are returned as headers only.
    pub dsn_full_body_limit: usize,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            retry: RetrySettings::default(),
            max_connections: 100,
            max_per_destination: 10,
            batch_size: 100,
            hostname: "localhost".to_owned(),
            destination_backoff: Duration::from_secs(60),
            job_timeout: Duration::from_secs(30 * 60),
            shutdown_grace: Duration::from_secs(30),
            dsn_full_body_limit: 10 * 1024 * 1024,
        }
    }
}

/// Where the runner reads the time; the spool stores `SystemTime`, so tests inject their own.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now(&self) -> SystemTime;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The longest the loop sleeps without looking at the spool again, even with nothing due.
const MAX_IDLE: Duration = Duration::from_secs(60);
/// After a spool read failure, or when due work could not be fetched, the loop waits this long.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// What every job task needs; shared, immutable.
#[derive(Debug)]
pub(crate) struct Context<D> {
    pub(crate) spool: Spool,
    pub(crate) deliver: Arc<D>,
    pub(crate) settings: QueueSettings,
    pub(crate) clock: Arc<dyn Clock>,
    /// Where each job's TLS sessions are counted for TLSRPT, when reporting is on.
    pub(crate) tlsrpt: Option<Recorder>,
    /// Where each job's destination posture is compared with the last one seen.
    pub(crate) watch: Option<Arc<PostureWatch>>,
    /// The destination names per-destination metrics may carry.
    pub(crate) destination_labels: DestinationLabels,
}

/// How many destination domains get a metric label of their own; the others share "other".
/// Recipient domains come from submitters, so the set of labels (and the exporter's memory)
/// must not grow with them.
const DESTINATION_LABELS: usize = 200;

/// The destinations named in per-destination metrics: the first [`DESTINATION_LABELS`] seen.
#[derive(Debug, Default)]
pub(crate) struct DestinationLabels {
    named: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl DestinationLabels {
    /// The label for `domain`: the domain itself while there is room, else "other".
    pub(crate) fn label(&self, domain: &str) -> String {
        let domain = domain.to_ascii_lowercase();
        let mut named = self
            .named
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if named.contains(&domain) || named.len() < DESTINATION_LABELS {
            named.insert(domain.clone());
            return domain;
        }
        "other".to_owned()
    }
}

/// What the operator's tools may ask of the running loop.
#[derive(Debug)]
enum Command {
    /// Forget the backoff of these destinations (all when `None`); answers how many were in it.
    ClearBackoff(Option<Vec<String>>, oneshot::Sender<usize>),
    /// The destinations in backoff and when it ends.
    Backoffs(oneshot::Sender<Vec<(String, SystemTime)>>),
}

/// Reaches a running [`QueueRunner`] from the control socket. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RunnerHandle {
    commands: mpsc::Sender<Command>,
}

impl RunnerHandle {
    /// An explicit retry from the operator: the named destinations (all when `None`) leave
    /// destination backoff now. Returns how many were in backoff; 0 when the runner is gone.
    pub async fn clear_backoff(&self, domains: Option<Vec<String>>) -> usize {
        let (answer, answered) = oneshot::channel();
        if self
            .commands
            .send(Command::ClearBackoff(domains, answer))
            .await
            .is_err()
        {
            return 0;
        }
        answered.await.unwrap_or(0)
    }

    /// The destinations in backoff now, with the time each backoff ends.
    pub async fn backoffs(&self) -> Vec<(String, SystemTime)> {
        let (answer, answered) = oneshot::channel();
        if self.commands.send(Command::Backoffs(answer)).await.is_err() {
            return Vec::new();
        }
        answered.await.unwrap_or_default()
    }
}

/// Commands waiting for the loop; the operator's tools are few and wait for their answers.
const COMMAND_QUEUE: usize = 16;

/// Works the queue until cancelled. See the module documentation.
#[derive(Debug)]
pub struct QueueRunner<D> {
    spool: Spool,
    deliver: Arc<D>,
    settings: QueueSettings,
    clock: Arc<dyn Clock>,
    tlsrpt: Option<Recorder>,
    watch: Option<Arc<PostureWatch>>,
    commands: mpsc::Receiver<Command>,
    handle: RunnerHandle,
}

impl<D: Deliver> QueueRunner<D> {
    pub fn new(spool: Spool, deliver: Arc<D>, settings: QueueSettings) -> Self {
        let (sender, commands) = mpsc::channel(COMMAND_QUEUE);
        QueueRunner {
            spool,
            deliver,
            settings,
            clock: Arc::new(SystemClock),
            tlsrpt: None,
            watch: None,
            commands,
            handle: RunnerHandle { commands: sender },
        }
    }

    /// How the control socket reaches this runner once it runs.
    pub fn handle(&self) -> RunnerHandle {
        self.handle.clone()
    }

    /// Counts every job's TLS sessions (`DeliveryReport::sessions`) for TLSRPT reports.
    pub fn with_tlsrpt(self, recorder: Recorder) -> Self {
        QueueRunner {
            tlsrpt: Some(recorder),
            ..self
        }
    }

    /// Compares every MX job's destination posture with the last one (`watch`).
    pub fn with_watch(self, watch: Arc<PostureWatch>) -> Self {
        QueueRunner {
            watch: Some(watch),
            ..self
        }
    }

    /// Replaces the system clock, for tests that move time without sleeping.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        QueueRunner { clock, ..self }
    }

    /// Runs the loop until `shutdown` is cancelled, then waits up to `shutdown_grace` for the
    /// jobs in flight. Recipients not yet attempted stay queued; leases die with the process.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let context = Arc::new(Context {
            spool: self.spool,
            deliver: self.deliver,
            settings: self.settings,
            clock: self.clock,
            tlsrpt: self.tlsrpt,
            watch: self.watch,
            destination_labels: DestinationLabels::default(),
        });
        let notify = context.spool.work_notify();
        let mut tasks: JoinSet<TaskDone> = JoinSet::new();
        let mut dispatcher = Dispatcher::new(&context.settings);
        tracing::info!(
            max_connections = context.settings.max_connections,
            max_per_destination = context.settings.max_per_destination,
            "queue runner started"
        );
        loop {
            // Registered before looking at the spool, so that a submit meanwhile still wakes us.
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            let fetched = dispatcher.fill(&context, &mut tasks);
            dispatcher.dispatch(&context, &mut tasks);
            let pause = wake_after(&context, fetched);

            tokio::select! {
                () = shutdown.cancelled() => break,
                () = &mut notified => {}
                () = tokio::time::sleep(pause) => {}
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    dispatcher.finish(&context, done);
                }
                Some(command) = self.commands.recv() => match command {
                    Command::ClearBackoff(domains, answer) => {
                        let cleared = dispatcher.clear_backoff(domains.as_deref());
                        tracing::info!(cleared, "destination backoff cleared by the operator");
                        let _ = answer.send(cleared);
                    }
                    Command::Backoffs(answer) => {
                        let _ = answer.send(dispatcher.backoffs(context.clock.now()));
                    }
                },
            }
        }
        dispatcher.abandon(&context);
        drain(&context, tasks).await;
        tracing::info!("queue runner stopped");
    }
}

/// How long to sleep before looking at the spool again.
fn wake_after<D>(context: &Context<D>, fetched: dispatch::Fetched) -> Duration {
    match fetched {
        // A full batch came back: there may be more due right now.
        dispatch::Fetched::Full => Duration::ZERO,
        dispatch::Fetched::Failed | dispatch::Fetched::NoRoom => RETRY_PAUSE,
        dispatch::Fetched::Some => {
            let now = context.clock.now();
            context.spool.next_due().map_or(MAX_IDLE, |due| {
                due.duration_since(now)
                    .unwrap_or(Duration::ZERO)
                    .min(MAX_IDLE)
            })
        }
    }
}

/// Waits for the jobs in flight, at most `shutdown_grace`; then abandons the rest.
async fn drain<D>(context: &Context<D>, mut tasks: JoinSet<TaskDone>) {
    let grace = context.settings.shutdown_grace;
    let in_flight = tasks.len();
    let waited =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if waited.is_err() {
        tracing::warn!(
            in_flight,
            left = tasks.len(),
            grace_secs = grace.as_secs(),
            "delivery jobs abandoned at shutdown; their recipients stay queued"
        );
        tasks.abort_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_beyond_the_label_bound_share_one_label() {
        let labels = DestinationLabels::default();
        for n in 0..DESTINATION_LABELS {
            assert_eq!(
                labels.label(&format!("d{n}.example")),
                format!("d{n}.example")
            );
        }
        assert_eq!(labels.label("late.example"), "other");
        assert_eq!(
            labels.label("D0.Example"),
            "d0.example",
            "known domains keep theirs"
        );
    }
}
