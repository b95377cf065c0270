//! The recorder and reporter without the lab: counters survive a restart, excluded domains are
//! not counted, a report failing the schema is not sent, https endpoints are retried, every rua
//! gets the report, refused and surplus report addresses are skipped, one slow endpoint stalls
//! no other domain, POSTs stay within their bound, and a day that is not over is refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use strictmx_policy::report::{
    PolicyType, ReportPolicy, ResultType, SessionFailure, SessionResult,
};
use strictmx_spool::{Spool, SpoolSettings};
use strictmx_tlsrpt::{
    BoxFuture, Day, Recorder, ReportPoster, Reporter, TlsrptError, TlsrptSettings, TxtLookup,
};
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
struct FixedTxt(Vec<String>);

impl TxtLookup for FixedTxt {
    fn txt<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>> {
        let answer = self.0.clone();
        Box::pin(async move { Ok(answer) })
    }
}

/// Fails the first `failures` posts, then accepts; remembers every URL it was asked.
#[derive(Debug, Default)]
struct FlakyPoster {
    failures: Mutex<u32>,
    calls: Mutex<Vec<String>>,
}

impl ReportPoster for FlakyPoster {
    fn post<'a>(&'a self, url: &'a str, _gzip: Vec<u8>) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.calls.lock().unwrap().push(url.to_owned());
            let mut failures = self.failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err("HTTP status 503".into());
            }
            Ok(())
        })
    }
}

fn open(dir: &std::path::Path) -> Spool {
    Spool::open(&SpoolSettings {
        data_dir: dir.join("spool"),
        ..SpoolSettings::default()
    })
    .unwrap()
}

fn settings() -> TlsrptSettings {
    TlsrptSettings {
        enabled: true,
        organization_name: "Example Relay".into(),
        contact_info: "tlsrpt@relay.example".into(),
        submitter: "relay.example".into(),
        mail_from: "tlsrpt@relay.example".into(),
        exclude_domains: vec!["quiet.example".into()],
        https_attempts: 3,
        https_backoff: Duration::from_millis(1),
        ..TlsrptSettings::default()
    }
}

fn session(domain: &str, failure: Option<ResultType>) -> SessionResult {
    SessionResult {
        report_domain: domain.into(),
        policy: ReportPolicy {
            policy_type: PolicyType::NoPolicyFound,
            policy_string: Vec::new(),
            policy_domain: domain.into(),
            mx_host: Vec::new(),
        },
        failure: failure.map(|result_type| SessionFailure {
            result_type,
            sending_mta_ip: None,
            receiving_mx_hostname: Some(format!("mx.{domain}")),
            receiving_mx_helo: None,
            receiving_ip: None,
            additional_information: None,
            failure_reason_code: None,
        }),
    }
}

async fn record(spool: &Spool, at: SystemTime, results: &[SessionResult]) {
    let shutdown = CancellationToken::new();
    let (recorder, task) =
        Recorder::start(spool.clone(), settings().exclude_domains, shutdown.clone());
    recorder.record_at(results, at);
    recorder.flush().await;
    shutdown.cancel();
    task.await.unwrap();
}

fn reporter(
    spool: &Spool,
    settings: TlsrptSettings,
    txt: &str,
    poster: Arc<FlakyPoster>,
) -> Reporter {
    Reporter::new(
        spool.clone(),
        settings,
        Arc::new(FixedTxt(vec![txt.into()])),
        poster,
    )
}

const BOTH: &str =
    "v=TLSRPTv1; rua=mailto:a@reports.example,https://one.example/r,https://two.example/r";

#[tokio::test]
async fn counters_recorded_before_a_restart_are_reported_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let yesterday = now - Duration::from_secs(86_400);
    {
        let spool = open(dir.path());
        let results = [
            session("example.net", None),
            session("example.net", Some(ResultType::StarttlsNotSupported)),
            session("quiet.example", None),
        ];
        record(&spool, yesterday, &results).await;
    }
    let spool = open(dir.path());
    let poster = Arc::new(FlakyPoster::default());
    let reporter = reporter(&spool, settings(), BOTH, poster);
    let prepared = reporter.preview(Day::of(yesterday), None).await.unwrap();
    assert_eq!(prepared.len(), 1, "quiet.example is excluded: {prepared:?}");
    let summary = prepared[0].report.policies[0].summary;
    assert_eq!(
        (
            summary.total_successful_session_count,
            summary.total_failure_session_count
        ),
        (1, 1)
    );
    assert_eq!(prepared[0].rua.as_ref().unwrap().len(), 3);
}

#[tokio::test]
async fn every_rua_gets_the_report_and_failing_https_endpoints_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let now = SystemTime::now();
    record(
        &spool,
        now - Duration::from_secs(86_400),
        &[session("example.net", None)],
    )
    .await;
    let poster = Arc::new(FlakyPoster {
        failures: Mutex::new(2),
        ..FlakyPoster::default()
    });
    let reporter = reporter(&spool, settings(), BOTH, Arc::clone(&poster));
    let outcomes = reporter
        .send_day(Day::of(now).previous(), now)
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 1);
    let outcome = &outcomes[0];
    assert_eq!(outcome.queued, ["a@reports.example"]);
    assert_eq!(
        outcome.posted,
        ["https://one.example/r", "https://two.example/r"]
    );
    assert!(outcome.failed.is_empty(), "{outcome:?}");
    // Two failures on the first endpoint, then one try each.
    assert_eq!(poster.calls.lock().unwrap().len(), 4);
    assert_eq!(spool.list().unwrap().len(), 1);
}

#[tokio::test]
async fn a_report_failing_the_schema_is_not_sent_nor_marked_sent() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let now = SystemTime::now();
    record(
        &spool,
        now - Duration::from_secs(86_400),
        &[session("example.net", None)],
    )
    .await;
    let poster = Arc::new(FlakyPoster::default());
    let broken = TlsrptSettings {
        organization_name: String::new(),
        ..settings()
    };
    let day = Day::of(now).previous();
    let outcomes = reporter(&spool, broken, BOTH, Arc::clone(&poster))
        .send_day(day, now)
        .await
        .unwrap();
    let skipped = outcomes[0].skipped.clone().unwrap_or_default();
    assert!(skipped.contains("organization-name"), "{skipped}");
    assert!(poster.calls.lock().unwrap().is_empty());
    assert!(spool.list().unwrap().is_empty());
    assert!(!spool.tlsrpt_sent(day.0, "example.net").unwrap());
}

#[tokio::test]
async fn a_domain_without_a_single_valid_record_gets_no_report() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let now = SystemTime::now();
    record(
        &spool,
        now - Duration::from_secs(86_400),
        &[session("example.net", None)],
    )
    .await;
    let poster = Arc::new(FlakyPoster::default());
    let outcomes = reporter(&spool, settings(), "v=spf1 -all", Arc::clone(&poster))
        .send_day(Day::of(now).previous(), now)
        .await
        .unwrap();
    assert_eq!(outcomes[0].skipped.as_deref(), Some("no v=TLSRPTv1 record"));
    assert!(poster.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_day_that_is_not_over_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let now = SystemTime::now();
    let reporter = reporter(&spool, settings(), BOTH, Arc::new(FlakyPoster::default()));
    let error = reporter.send_day(Day::of(now), now).await.unwrap_err();
    assert!(matches!(error, TlsrptError::DayNotClosed { .. }), "{error}");
}

#[tokio::test]
async fn refused_and_surplus_report_addresses_get_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let now = SystemTime::now();
    record(
        &spool,
        now - Duration::from_secs(86_400),
        &[session("example.net", None)],
    )
    .await;
    let txt = "v=TLSRPTv1; rua=mailto:a%0D%0ABcc:x@evil.example@reports.example,\
               https://127.0.0.1/r,https://one.example:8443/r,mailto:b@reports.example,\
               https://one.example/r,mailto:c@reports.example,mailto:d@reports.example,\
               mailto:e@reports.example,mailto:f@reports.example";
    let poster = Arc::new(FlakyPoster::default());
    let settings = TlsrptSettings {
        max_rua: 3,
        ..settings()
    };
    let outcomes = reporter(&spool, settings, txt, Arc::clone(&poster))
        .send_day(Day::of(now).previous(), now)
        .await
        .unwrap();
    let outcome = &outcomes[0];
    assert_eq!(outcome.queued, ["b@reports.example", "c@reports.example"]);
    assert_eq!(outcome.posted, ["https://one.example/r"]);
    assert_eq!(*poster.calls.lock().unwrap(), ["https://one.example/r"]);
    let refused: Vec<(&str, &str)> = outcome
        .refused
        .iter()
        .map(|(uri, why)| (uri.as_str(), why.as_str()))
        .collect();
    assert_eq!(
        refused,
        [
            (
                "mailto:a%0D%0ABcc:x@evil.example@reports.example",
                "not a usable mail address: it holds a space, control or non-ASCII character"
            ),
            (
                "https://127.0.0.1/r",
                "an IP address instead of a host name"
            ),
            ("https://one.example:8443/r", "port 8443 (only 443 is used)"),
            (
                "mailto:d@reports.example",
                "more than 3 report addresses; the first 3 are used"
            ),
            (
                "mailto:e@reports.example",
                "more than 3 report addresses; the first 3 are used"
            ),
            (
                "mailto:f@reports.example",
                "more than 3 report addresses; the first 3 are used"
            ),
        ]
    );
    // Two report mails, and no header of theirs holds the injected Bcc.
    let queued = spool.list().unwrap();
    assert_eq!(queued.len(), 2);
    for entry in queued {
        let body = String::from_utf8(spool.body(entry.id).unwrap()).unwrap();
        assert!(!body.contains("evil.example"), "{body}");
    }
}

#[derive(Debug)]
struct PerDomainTxt(HashMap<String, String>);

impl TxtLookup for PerDomainTxt {
    fn txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>> {
        let answer = self.0.get(name).cloned().into_iter().collect();
        Box::pin(async move { Ok(answer) })
    }
}

/// Never answers URLs on `slow.example`; answers others after `delay`, noting when each was
/// asked and how many ran at once.
#[derive(Debug, Default)]
struct TimedPoster {
    delay: Duration,
    asked: Mutex<Vec<(String, Instant)>>,
    running: AtomicUsize,
    most: AtomicUsize,
}

impl ReportPoster for TimedPoster {
    fn post<'a>(&'a self, url: &'a str, _gzip: Vec<u8>) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.asked
                .lock()
                .unwrap()
                .push((url.to_owned(), Instant::now()));
            if url.contains("slow.example") {
                std::future::pending::<()>().await;
            }
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        })
    }
}

fn timed_reporter(spool: &Spool, settings: TlsrptSettings, poster: Arc<TimedPoster>) -> Reporter {
    let txt = |host: &str| format!("v=TLSRPTv1; rua=https://{host}/r");
    let records = [
        ("_smtp._tls.a-slow.example", txt("slow.example")),
        ("_smtp._tls.b-fast.example", txt("fast.example")),
        ("_smtp._tls.c.example", txt("c.example")),
        ("_smtp._tls.d.example", txt("d.example")),
        ("_smtp._tls.e.example", txt("e.example")),
    ]
    .map(|(name, record)| (name.to_owned(), record));
    Reporter::new(
        spool.clone(),
        settings,
        Arc::new(PerDomainTxt(records.into_iter().collect())),
        poster,
    )
}

// Issue 14, item 8: reports used to be sent one domain after another, so a collector that never
// answers held back every later domain through all its tries.
#[tokio::test]
async fn a_collector_that_never_answers_holds_back_no_other_domain() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let now = SystemTime::now();
    let results = [
        session("a-slow.example", None),
        session("b-fast.example", None),
    ];
    record(&spool, now - Duration::from_secs(86_400), &results).await;
    let settings = TlsrptSettings {
        https_attempts: 2,
        https_backoff: Duration::from_millis(500),
        https_timeout: Duration::from_secs(1),
        ..settings()
    };
    let poster = Arc::new(TimedPoster::default());
    let started = Instant::now();
    let outcomes = timed_reporter(&spool, settings, Arc::clone(&poster))
        .send_day(Day::of(now).previous(), now)
        .await
        .unwrap();
    let asked = poster.asked.lock().unwrap().clone();
    let fast = asked
        .iter()
        .find(|(url, _)| url.contains("fast.example"))
        .map(|(_, at)| at.duration_since(started))
        .expect("the fast collector was asked");
    assert!(
        fast < Duration::from_millis(800),
        "the fast collector waited {fast:?} behind the slow one"
    );
    assert_eq!(outcomes[1].posted, ["https://fast.example/r"]);
    assert_eq!(outcomes[0].failed.len(), 1, "{outcomes:?}");
    assert!(outcomes[0].failed[0].1.contains("no answer within"));
    assert_eq!(
        asked.iter().filter(|(url, _)| url.contains("slow")).count(),
        2
    );
}

#[tokio::test]
async fn no_more_posts_run_at_once_than_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let now = SystemTime::now();
    let results =
        ["b-fast.example", "c.example", "d.example", "e.example"].map(|d| session(d, None));
    record(&spool, now - Duration::from_secs(86_400), &results).await;
    let settings = TlsrptSettings {
        https_concurrency: 2,
        ..settings()
    };
    let poster = Arc::new(TimedPoster {
        // Long enough that two posts overlap even on a loaded machine.
        delay: Duration::from_millis(500),
        ..TimedPoster::default()
    });
    let outcomes = timed_reporter(&spool, settings, Arc::clone(&poster))
        .send_day(Day::of(now).previous(), now)
        .await
        .unwrap();
    assert!(outcomes.iter().all(|o| o.posted.len() == 1), "{outcomes:?}");
    assert_eq!(poster.most.load(Ordering::SeqCst), 2);
}
