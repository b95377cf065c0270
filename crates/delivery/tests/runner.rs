//! The queue runner against a real spool in a temporary directory and a scripted transport:
//! retries, bounces and their DSNs, lifetimes, destination backoff, concurrency limits, shutdown.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use mail_parser::{MessageParser, MimeHeaders};
use strictmx_delivery::job::{
    Deliver, DeliveryJob, DeliveryReport, Diagnostic, MessageReport, RecipientOutcome,
    RecipientResult,
};
use strictmx_delivery::runner::{Clock, QueueRunner, QueueSettings};
use strictmx_protocol::{MailParams, Notify, RcptParams};
use strictmx_spool::fault::FillableStore;
use strictmx_spool::{
    AttemptOutcome, AttemptRecord, ClientInfo, Envelope, EnvelopeRecipient, FileStore, MessageId,
    MessageKind, PeerAuth, RecipientState, Spool, SpoolSettings, StoreOpener, StoredMessage,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the scripted transport answers for a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scripted {
    Deliver,
    Defer,
    Bounce,
    Unreachable,
}

/// A transport that answers from a script per domain and counts what it was asked.
#[derive(Debug, Default)]
struct FakeTransport {
    script: Mutex<HashMap<String, VecDeque<Scripted>>>,
    /// The answer once a domain's script is used up (deferral when absent).
    fallback: Mutex<HashMap<String, Scripted>>,
    /// How long each job takes.
    delay: Duration,
    calls: Mutex<HashMap<String, usize>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    max_in_flight_per_domain: Mutex<HashMap<String, usize>>,
    in_flight_per_domain: Mutex<HashMap<String, usize>>,
    /// Messages per job, in call order, per domain.
    jobs: Mutex<HashMap<String, Vec<usize>>>,
    /// How often each (message, recipient index) was answered with a delivery.
    delivered: Mutex<HashMap<(MessageId, usize), usize>>,
}

impl FakeTransport {
    fn with_delay(delay: Duration) -> Self {
        FakeTransport {
            delay,
            ..FakeTransport::default()
        }
    }

    fn script(self, domain: &str, answers: &[Scripted], then: Scripted) -> Self {
        let mut script = self.script.lock().expect("script lock");
        script.insert(domain.to_owned(), answers.iter().copied().collect());
        drop(script);
        self.fallback
            .lock()
            .expect("fallback lock")
            .insert(domain.to_owned(), then);
        self
    }

    fn calls(&self, domain: &str) -> usize {
        let calls = self.calls.lock().expect("calls lock");
        calls.get(domain).copied().unwrap_or(0)
    }

    fn jobs(&self, domain: &str) -> Vec<usize> {
        let jobs = self.jobs.lock().expect("jobs lock");
        jobs.get(domain).cloned().unwrap_or_default()
    }

    fn next_answer(&self, domain: &str) -> Scripted {
        let scripted = self
            .script
            .lock()
            .expect("script lock")
            .get_mut(domain)
            .and_then(VecDeque::pop_front);
        scripted.unwrap_or_else(|| {
            let fallback = self.fallback.lock().expect("fallback lock");
            fallback.get(domain).copied().unwrap_or(Scripted::Defer)
        })
    }

    fn enter(&self, domain: &str) {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let mut per = self.in_flight_per_domain.lock().expect("lock");
        let count = per.entry(domain.to_owned()).or_default();
        *count += 1;
        let mut max = self.max_in_flight_per_domain.lock().expect("lock");
        let best = max.entry(domain.to_owned()).or_default();
        *best = (*best).max(*count);
    }

    fn leave(&self, domain: &str) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let mut per = self.in_flight_per_domain.lock().expect("lock");
        if let Some(count) = per.get_mut(domain) {
            *count -= 1;
        }
    }
}

impl Deliver for FakeTransport {
    async fn deliver(&self, job: DeliveryJob) -> DeliveryReport {
        let domain = job.domain.clone();
        *self
            .calls
            .lock()
            .expect("calls lock")
            .entry(domain.clone())
            .or_default() += 1;
        self.jobs
            .lock()
            .expect("jobs lock")
            .entry(domain.clone())
            .or_default()
            .push(job.messages.len());
        self.enter(&domain);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let answer = self.next_answer(&domain);
        self.leave(&domain);
        if answer == Scripted::Deliver {
            let mut delivered = self.delivered.lock().expect("delivered lock");
            for message in &job.messages {
                for recipient in &message.recipients {
                    *delivered.entry((message.id, recipient.index)).or_default() += 1;
                }
            }
        }
        report(&job, answer)
    }
}

fn report(job: &DeliveryJob, answer: Scripted) -> DeliveryReport {
    let mx = format!("mx.{}", job.domain);
    let outcome = match answer {
        Scripted::Deliver => RecipientOutcome::Delivered {
            remote_mta: mx.clone(),
            reply: "250 2.0.0 ok: queued".to_owned(),
        },
        Scripted::Defer => RecipientOutcome::Deferred {
            remote_mta: Some(mx.clone()),
            diagnostic: Diagnostic::Smtp("451 4.3.0 try again later".to_owned()),
            status: "4.3.0".to_owned(),
        },
        Scripted::Bounce => RecipientOutcome::Bounced {
            remote_mta: Some(mx.clone()),
            diagnostic: Diagnostic::Smtp("550 5.1.1 no such user here".to_owned()),
            status: "5.1.1".to_owned(),
        },
        Scripted::Unreachable => RecipientOutcome::Deferred {
            remote_mta: None,
            diagnostic: Diagnostic::Local("connection refused by every MX host".to_owned()),
            status: "4.4.1".to_owned(),
        },
    };
    let attempt_outcome = match answer {
        Scripted::Deliver => AttemptOutcome::Delivered,
        Scripted::Bounce => AttemptOutcome::Bounced,
        Scripted::Defer | Scripted::Unreachable => AttemptOutcome::Deferred,
    };
    DeliveryReport {
        destination_unreachable: answer == Scripted::Unreachable,
        sessions: Vec::new(),
        posture: None,
        messages: job
            .messages
            .iter()
            .map(|message| MessageReport {
                id: message.id,
                recipients: message
                    .recipients
                    .iter()
                    .map(|r| RecipientResult {
                        index: r.index,
                        outcome: outcome.clone(),
                    })
                    .collect(),
                attempts: vec![AttemptRecord {
                    at: SystemTime::now(),
                    domain: job.domain.clone(),
                    mx: Some(mx.clone()),
                    ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                    tls_version: None,
                    cipher: None,
                    cert_verified: None,
                    auth: PeerAuth::None,
                    policy: "test".to_owned(),
                    rules: Vec::new(),
                    requirement: None,
                    result_type: None,
                    recipients: message.recipients.iter().map(|r| r.index).collect(),
                    outcome: attempt_outcome,
                    reply: "scripted".to_owned(),
                    duration_ms: 1,
                    exceptions: Vec::new(),
                    shadow: Vec::new(),
                }],
            })
            .collect(),
    }
}

/// The system clock plus an offset the test moves forward.
#[derive(Debug, Default)]
struct ShiftedClock {
    offset: Mutex<Duration>,
}

impl ShiftedClock {
    fn advance(&self, by: Duration) {
        *self.offset.lock().expect("clock lock") += by;
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> SystemTime {
        SystemTime::now() + *self.offset.lock().expect("clock lock")
    }
}

/// One runner on a fresh spool, with its transport and clock.
struct Harness {
    _dir: tempfile::TempDir,
    spool: Spool,
    transport: Arc<FakeTransport>,
    clock: Arc<ShiftedClock>,
    shutdown: CancellationToken,
    runner: Option<JoinHandle<()>>,
}

fn settings() -> QueueSettings {
    QueueSettings {
        hostname: "relay.test".to_owned(),
        shutdown_grace: Duration::from_secs(2),
        ..QueueSettings::default()
    }
}

impl Harness {
    fn start(transport: FakeTransport, settings: QueueSettings) -> Harness {
        Harness::start_on(transport, settings, Arc::new(FileStore::default()))
    }

    /// [`Harness::start`] with the spool's database opened by `store`.
    fn start_on(
        transport: FakeTransport,
        settings: QueueSettings,
        store: Arc<dyn StoreOpener>,
    ) -> Harness {
        let dir = tempfile::tempdir().expect("temporary directory");
        let spool = Spool::open_with(
            &SpoolSettings {
                data_dir: dir.path().to_owned(),
                commit_batch_max: 64,
                ..SpoolSettings::default()
            },
            store,
        )
        .expect("spool opens");
        let transport = Arc::new(transport);
        let clock = Arc::new(ShiftedClock::default());
        let shutdown = CancellationToken::new();
        let runner = QueueRunner::new(spool.clone(), Arc::clone(&transport), settings)
            .with_clock(Arc::clone(&clock) as Arc<dyn Clock>);
        let handle = tokio::spawn(runner.run(shutdown.clone()));
        Harness {
            _dir: dir,
            spool,
            transport,
            clock,
            shutdown,
            runner: Some(handle),
        }
    }

    async fn submit(&self, envelope: Envelope) -> MessageId {
        self.spool
            .submit(envelope, original_body())
            .await
            .expect("submit")
    }

    /// Moves the runner's clock and wakes it, as a timer would.
    fn advance(&self, by: Duration) {
        self.clock.advance(by);
        let notify = self.spool.work_notify();
        notify.notify_waiters();
        notify.notify_one();
    }

    fn stored(&self, id: MessageId) -> Option<StoredMessage> {
        self.spool.message(id).expect("spool read")
    }

    /// The DSNs in the queue: (envelope, body).
    fn dsns(&self) -> Vec<(Envelope, Vec<u8>)> {
        self.spool
            .list()
            .expect("list")
            .into_iter()
            .filter(|entry| entry.sender.is_empty())
            .filter_map(|entry| {
                let stored = self.stored(entry.id)?;
                let body = self.spool.body(entry.id).ok()?;
                Some((stored.envelope, body))
            })
            .collect()
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(runner) = self.runner.take() {
            tokio::time::timeout(Duration::from_secs(10), runner)
                .await
                .expect("the runner stops within its grace period")
                .expect("the runner task ends cleanly");
        }
    }
}

/// Polls `check` until it yields, or fails the test after 20 seconds (a loaded machine).
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..2000 {
        if let Some(found) = check() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Lets the runner work for a moment, for checks that something did *not* happen.
async fn settle_a_moment() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

fn original_body() -> Vec<u8> {
    b"From: Alice <alice@sender.test>\r\nTo: bob@dest.test\r\nSubject: Minutes of the meeting\r\n\
Message-ID: <m1@sender.test>\r\n\r\nHere are the minutes.\r\n"
        .to_vec()
}

fn envelope(mail_from: &str, rcpt: &str, notify: Option<Notify>) -> Envelope {
    Envelope {
        mail_from: mail_from.to_owned(),
        params: MailParams::default(),
        recipients: vec![EnvelopeRecipient {
            address: rcpt.to_owned(),
            params: RcptParams {
                notify,
                orcpt: None,
            },
        }],
        received_at: SystemTime::now(),
        client: ClientInfo {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            helo: "client.sender.test".to_owned(),
            auth_user: Some("alice".to_owned()),
            tls: None,
        },
        kind: MessageKind::Normal,
        require_tls: None,
    }
}

fn notify_only(success: bool, failure: bool, delay: bool, never: bool) -> Option<Notify> {
    Some(Notify {
        success,
        failure,
        delay,
        never,
    })
}

fn queued(stored: &StoredMessage) -> Option<(SystemTime, u32, bool)> {
    match stored.states.first()? {
        RecipientState::Queued {
            next_attempt,
            attempts,
            delay_dsn_sent,
            ..
        } => Some((*next_attempt, *attempts, *delay_dsn_sent)),
        _ => None,
    }
}

/// The fields of the recipient block of a DSN's delivery-status part, names lowercased.
fn recipient_fields(body: &[u8]) -> HashMap<String, String> {
    let message = MessageParser::new().parse(body).expect("the DSN parses");
    let part = message.part(2).expect("a delivery-status part");
    let ct = part.content_type().expect("content type");
    assert_eq!(ct.subtype(), Some("delivery-status"));
    let raw = message
        .raw_message()
        .get(part.offset_body as usize..part.offset_end as usize)
        .expect("part within message");
    let text = String::from_utf8_lossy(raw).replace("\r\n ", " ");
    let block = text
        .split("\r\n\r\n")
        .filter(|b| !b.trim().is_empty())
        .nth(1)
        .expect("a per-recipient block");
    block
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_owned()))
        .collect()
}

#[tokio::test]
async fn a_deferred_recipient_is_retried_on_schedule_and_then_delivered() {
    let transport = FakeTransport::default().script(
        "dest.test",
        &[Scripted::Defer, Scripted::Deliver],
        Scripted::Defer,
    );
    let h = Harness::start(transport, settings());
    let before = SystemTime::now();
    let id = h
        .submit(envelope("alice@sender.test", "bob@dest.test", None))
        .await;

    let (next, attempts, _) = eventually("the first deferral", || {
        h.stored(id).as_ref().and_then(queued).filter(|q| q.1 == 1)
    })
    .await;
    assert_eq!(attempts, 1);
    // The retry schedule: 5 minutes ± 20 % after the attempt.
    let wait = next.duration_since(before).expect("retry lies ahead");
    assert!(wait >= Duration::from_secs(240), "{wait:?}");
    assert!(wait <= Duration::from_secs(361), "{wait:?}");
    let stored = h.stored(id).expect("still queued");
    assert_eq!(stored.attempts.len(), 1, "the attempt record is kept");
    settle_a_moment().await;
    assert_eq!(
        h.transport.calls("dest.test"),
        1,
        "no retry before its time"
    );

    h.advance(Duration::from_secs(7 * 60));
    eventually("delivery on the retry", || {
        h.stored(id).is_none().then_some(())
    })
    .await;
    assert_eq!(h.transport.calls("dest.test"), 2);
    assert!(
        h.dsns().is_empty(),
        "success is reported only when asked for"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_bounce_queues_one_failure_dsn_to_the_sender() {
    let transport = FakeTransport::default().script("dest.test", &[], Scripted::Bounce);
    let h = Harness::start(transport, settings());
    let id = h
        .submit(envelope("alice@sender.test", "bob@dest.test", None))
        .await;

    eventually("the bounce", || h.stored(id).is_none().then_some(())).await;
    let (dsn_envelope, body) = eventually("the DSN", || h.dsns().pop()).await;
    // RFC 3461 §6.2: from the null sender, to the original sender, marked as a DSN.
    assert_eq!(dsn_envelope.mail_from, "");
    assert_eq!(dsn_envelope.kind, MessageKind::Dsn);
    assert_eq!(dsn_envelope.recipients.len(), 1);
    assert_eq!(dsn_envelope.recipients[0].address, "alice@sender.test");
    let fields = recipient_fields(&body);
    assert_eq!(fields["final-recipient"], "rfc822; bob@dest.test");
    assert_eq!(fields["action"], "failed");
    assert_eq!(fields["status"], "5.1.1");
    assert_eq!(fields["remote-mta"], "dns; mx.dest.test");
    assert_eq!(
        fields["diagnostic-code"],
        "smtp; 550 5.1.1 no such user here"
    );
    let parsed = MessageParser::new().parse(&body).expect("the DSN parses");
    assert!(
        parsed
            .body_text(0)
            .is_some_and(|text| text.contains("Minutes of the meeting"))
    );
    settle_a_moment().await;
    assert_eq!(h.dsns().len(), 1, "exactly one DSN");
    h.stop().await;
}

#[tokio::test]
async fn a_null_sender_message_never_gets_a_dsn() {
    let transport = FakeTransport::default().script("dest.test", &[], Scripted::Bounce);
    let h = Harness::start(transport, settings());
    let id = h.submit(envelope("", "bob@dest.test", None)).await;
    eventually("the bounce", || h.stored(id).is_none().then_some(())).await;
    settle_a_moment().await;
    assert!(h.spool.list().expect("list").is_empty(), "no DSN queued");
    h.stop().await;
}

#[tokio::test]
async fn notify_never_suppresses_the_failure_dsn() {
    let transport = FakeTransport::default().script("dest.test", &[], Scripted::Bounce);
    let h = Harness::start(transport, settings());
    let never = notify_only(false, false, false, true);
    let id = h
        .submit(envelope("alice@sender.test", "bob@dest.test", never))
        .await;
    eventually("the bounce", || h.stored(id).is_none().then_some(())).await;
    settle_a_moment().await;
    assert!(h.dsns().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn notify_success_reports_the_relay_to_the_sender() {
    let transport = FakeTransport::default().script("dest.test", &[], Scripted::Deliver);
    let h = Harness::start(transport, settings());
    let success = notify_only(true, false, false, false);
    let id = h
        .submit(envelope("alice@sender.test", "bob@dest.test", success))
        .await;
    eventually("the delivery", || h.stored(id).is_none().then_some(())).await;
    let (dsn_envelope, body) = eventually("the success DSN", || h.dsns().pop()).await;
    assert_eq!(dsn_envelope.recipients[0].address, "alice@sender.test");
    let fields = recipient_fields(&body);
    assert_eq!(fields["action"], "relayed");
    assert_eq!(fields["status"], "2.0.0");
    h.stop().await;
}

#[tokio::test]
async fn a_message_past_its_lifetime_bounces_with_delivery_time_expired() {
    let transport = FakeTransport::default().script("dest.test", &[], Scripted::Defer);
    let h = Harness::start(transport, settings());
    let mut old = envelope("alice@sender.test", "bob@dest.test", None);
    old.received_at = SystemTime::now() - Duration::from_secs(5 * 24 * 3600 + 60);
    let id = h.submit(old).await;

    eventually("the expiry", || h.stored(id).is_none().then_some(())).await;
    let (_, body) = eventually("the failure DSN", || h.dsns().pop()).await;
    let fields = recipient_fields(&body);
    // RFC 3463 §3.5: X.4.7, the 4.x.x of the last attempt turned permanent.
    assert_eq!(fields["status"], "5.4.7");
    assert_eq!(fields["action"], "failed");
    assert_eq!(fields["diagnostic-code"], "smtp; 451 4.3.0 try again later");
    h.stop().await;
}

#[tokio::test]
async fn a_delay_dsn_is_sent_once_after_the_threshold() {
    let transport = FakeTransport::default().script("dest.test", &[], Scripted::Defer);
    let h = Harness::start(transport, settings());
    let mut late = envelope("alice@sender.test", "bob@dest.test", None);
    late.received_at = SystemTime::now() - Duration::from_secs(5 * 3600);
    let id = h.submit(late).await;

    eventually("the first deferral", || {
        h.stored(id).as_ref().and_then(queued).filter(|q| q.1 == 1)
    })
    .await;
    let (_, flagged) = eventually("the delay flag", || {
        h.stored(id).as_ref().and_then(queued).map(|q| ((), q.2))
    })
    .await;
    assert!(flagged, "delay_dsn_sent is recorded");
    let (_, body) = eventually("the delay DSN", || h.dsns().pop()).await;
    let fields = recipient_fields(&body);
    assert_eq!(fields["action"], "delayed");
    assert_eq!(fields["status"], "4.3.0");
    assert!(fields.contains_key("will-retry-until"));

    h.advance(Duration::from_secs(7 * 60));
    eventually("the second deferral", || {
        h.stored(id).as_ref().and_then(queued).filter(|q| q.1 == 2)
    })
    .await;
    settle_a_moment().await;
    assert_eq!(h.dsns().len(), 1, "the delay DSN is sent once");
    h.stop().await;
}

#[tokio::test]
async fn a_down_destination_is_probed_once_per_backoff_period_not_once_per_message() {
    let transport = FakeTransport::default().script("down.test", &[], Scripted::Unreachable);
    let h = Harness::start(transport, settings());
    h.submit(envelope("", "first@down.test", None)).await;
    eventually("the first attempt", || {
        (h.transport.calls("down.test") == 1).then_some(())
    })
    .await;

    let mut ids = Vec::new();
    for n in 0..49 {
        ids.push(
            h.submit(envelope("", &format!("r{n}@down.test"), None))
                .await,
        );
    }
    // Due now, but the destination is backed off: rescheduled to its end, not attempted.
    eventually("the rescheduling", || {
        ids.iter()
            .all(|id| {
                h.stored(*id)
                    .as_ref()
                    .and_then(queued)
                    .is_some_and(|(next, attempts, _)| {
                        attempts == 0 && next > SystemTime::now() + Duration::from_secs(30)
                    })
            })
            .then_some(())
    })
    .await;
    assert_eq!(h.transport.calls("down.test"), 1);

    // One backoff period (1 minute) later: one probe, the rest moved to the doubled backoff.
    h.advance(Duration::from_secs(61));
    eventually("the probe", || {
        (h.transport.calls("down.test") == 2).then_some(())
    })
    .await;
    settle_a_moment().await;
    assert_eq!(h.transport.calls("down.test"), 2);
    assert_eq!(
        h.transport.jobs("down.test"),
        vec![1, 1],
        "probes carry one message"
    );

    h.advance(Duration::from_secs(121));
    eventually("the next probe", || {
        (h.transport.calls("down.test") == 3).then_some(())
    })
    .await;
    settle_a_moment().await;
    assert_eq!(h.transport.calls("down.test"), 3);
    h.stop().await;
}

/// When a backoff ends, the whole backlog of a down destination comes due at once. What is
/// not probed goes back to the schedule a batch per spool operation, not one operation (and
/// one task) per message: before, 200 messages due together made 200 tasks and 200 writes.
#[tokio::test]
async fn a_backlog_due_at_once_for_a_down_destination_is_postponed_in_batches() {
    let transport = FakeTransport::default().script("down.test", &[], Scripted::Unreachable);
    let h = Harness::start(
        transport,
        QueueSettings {
            batch_size: 20,
            ..settings()
        },
    );
    h.submit(envelope("", "first@down.test", None)).await;
    eventually("the first attempt", || {
        (h.transport.calls("down.test") == 1).then_some(())
    })
    .await;
    let mut ids = Vec::new();
    for n in 0..200 {
        ids.push(
            h.submit(envelope("", &format!("r{n}@down.test"), None))
                .await,
        );
    }
    // Not tried, and due after `horizon` from the runner's clock.
    let postponed = |horizon: Duration| {
        ids.iter()
            .filter(|id| {
                h.stored(**id)
                    .as_ref()
                    .and_then(queued)
                    .is_some_and(|(next, attempts, _)| {
                        attempts == 0 && next > h.clock.now() + horizon
                    })
            })
            .count()
    };
    eventually("the first rescheduling", || {
        (postponed(Duration::from_secs(30)) == 200).then_some(())
    })
    .await;
    settle_a_moment().await;

    let before = h.spool.stats().committed_operations;
    h.advance(Duration::from_secs(61));
    eventually("the probe", || {
        (h.transport.calls("down.test") == 2).then_some(())
    })
    .await;
    // One of them was the probe; the rest go to the doubled backoff.
    eventually("the burst postponed", || {
        (postponed(Duration::from_secs(60)) >= 199).then_some(())
    })
    .await;
    settle_a_moment().await;
    let operations = h.spool.stats().committed_operations - before;
    assert!(
        operations <= 30,
        "{operations} spool operations for 200 messages due at once"
    );
    assert_eq!(h.transport.calls("down.test"), 2, "one probe, no more");
    h.stop().await;
}

#[tokio::test]
async fn jobs_for_one_destination_never_exceed_the_per_destination_limit() {
    let transport = FakeTransport::with_delay(Duration::from_millis(100))
        .script("busy.test", &[], Scripted::Deliver)
        .script("other.test", &[], Scripted::Deliver);
    let limits = QueueSettings {
        max_per_destination: 3,
        max_connections: 4,
        ..settings()
    };
    let h = Harness::start(transport, limits);
    // The first message proves the destination reachable; then work fans out.
    let first = h.submit(envelope("", "first@busy.test", None)).await;
    eventually("the first delivery", || {
        h.stored(first).is_none().then_some(())
    })
    .await;

    let mut ids = Vec::new();
    for n in 0..30 {
        ids.push(
            h.submit(envelope("", &format!("r{n}@busy.test"), None))
                .await,
        );
        ids.push(
            h.submit(envelope("", &format!("r{n}@other.test"), None))
                .await,
        );
    }
    eventually("every delivery", || {
        ids.iter().all(|id| h.stored(*id).is_none()).then_some(())
    })
    .await;
    let per_domain = h
        .transport
        .max_in_flight_per_domain
        .lock()
        .expect("lock")
        .clone();
    assert!(per_domain["busy.test"] <= 3, "{per_domain:?}");
    assert!(
        per_domain["busy.test"] >= 2,
        "work fans out: {per_domain:?}"
    );
    let overall = h.transport.max_in_flight.load(Ordering::SeqCst);
    assert!(overall <= 4, "global limit: {overall}");
    h.stop().await;
}

#[tokio::test]
async fn shutdown_waits_for_a_job_only_as_long_as_the_grace_period() {
    let transport = FakeTransport::with_delay(Duration::from_secs(3600)).script(
        "slow.test",
        &[],
        Scripted::Deliver,
    );
    let quick = QueueSettings {
        shutdown_grace: Duration::from_millis(200),
        ..settings()
    };
    let h = Harness::start(transport, quick);
    let id = h.submit(envelope("", "bob@slow.test", None)).await;
    eventually("the job start", || {
        (h.transport.calls("slow.test") == 1).then_some(())
    })
    .await;
    let spool = h.spool.clone();
    h.stop().await;
    // The recipient stays queued for the next start.
    let stored = spool.message(id).expect("read").expect("still queued");
    assert!(matches!(
        stored.states[0],
        RecipientState::Queued { attempts: 0, .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_for_many_domains_are_delivered_once_to_every_recipient() {
    const DOMAINS: usize = 10;
    const PER_DOMAIN: usize = 5;
    const MESSAGES: usize = 300;
    let mut transport = FakeTransport::with_delay(Duration::from_millis(1));
    for d in 0..DOMAINS {
        transport = transport.script(&format!("d{d}.test"), &[], Scripted::Deliver);
    }
    let h = Harness::start(transport, settings());
    let mut ids = Vec::new();
    for n in 0..MESSAGES {
        let mut envelope = envelope("", "r0@d0.test", None);
        envelope.recipients = (0..DOMAINS * PER_DOMAIN)
            .map(|i| EnvelopeRecipient {
                address: format!("m{n}r{i}@d{}.test", i % DOMAINS),
                params: RcptParams::default(),
            })
            .collect();
        ids.push(h.submit(envelope).await);
    }
    eventually("every message delivered and gone", || {
        ids.iter().all(|id| h.stored(*id).is_none()).then_some(())
    })
    .await;
    settle_a_moment().await;
    let delivered = h.transport.delivered.lock().expect("lock").clone();
    let duplicates: Vec<_> = delivered.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicates.is_empty(),
        "{} duplicates: {duplicates:?}",
        duplicates.len()
    );
    assert_eq!(delivered.len(), MESSAGES * DOMAINS * PER_DOMAIN);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_that_cannot_be_recorded_leaves_no_recipient_leased_until_restart() {
    let transport = FakeTransport::with_delay(Duration::from_millis(200)).script(
        "full.test",
        &[],
        Scripted::Deliver,
    );
    let store = FillableStore::default();
    let h = Harness::start_on(transport, settings(), Arc::new(store.clone()));
    let id = h.submit(envelope("", "bob@full.test", None)).await;
    eventually("the job start", || {
        (h.transport.calls("full.test") == 1).then_some(())
    })
    .await;
    // Full for longer than the runner's retries of the record take (about 6.3 s): the
    // recipient must be handed out again, not stay leased.
    store.set_full(true);
    tokio::time::sleep(Duration::from_secs(7)).await;
    store.set_full(false);
    eventually("the message delivered and gone", || {
        matches!(h.spool.message(id), Ok(None)).then_some(())
    })
    .await;
    assert!(h.transport.calls("full.test") >= 2, "delivered again");
    h.stop().await;
}
