//! Table tests of a recipient's next state; each row cites the rule it checks.

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

const MX: &str = "mx.far.test";
const MINUTE: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// The default schedule without jitter, so the next attempt is exact: 5m doubling to 4h, a
/// delay DSN after 4h, a lifetime of 5 days.
fn schedule() -> RetrySettings {
    RetrySettings {
        jitter: 0.0,
        ..RetrySettings::default()
    }
}

fn received() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)
}

fn after(secs: u64) -> SystemTime {
    received() + Duration::from_secs(secs)
}

fn delivered() -> RecipientOutcome {
    RecipientOutcome::Delivered {
        remote_mta: MX.to_owned(),
        reply: "250 2.0.0 ok".to_owned(),
    }
}

fn bounced() -> RecipientOutcome {
    RecipientOutcome::Bounced {
        remote_mta: Some(MX.to_owned()),
        diagnostic: Diagnostic::Smtp("550 5.1.1 no such user".to_owned()),
        status: "5.1.1".to_owned(),
    }
}

fn deferred() -> RecipientOutcome {
    RecipientOutcome::Deferred {
        remote_mta: Some(MX.to_owned()),
        diagnostic: Diagnostic::Smtp("451 4.3.0 try later".to_owned()),
        status: "4.3.0".to_owned(),
    }
}

fn unreachable() -> RecipientOutcome {
    RecipientOutcome::Deferred {
        remote_mta: None,
        diagnostic: Diagnostic::Local("connection refused".to_owned()),
        status: "4.4.1".to_owned(),
    }
}

fn tried(attempts: u32, delay_dsn_sent: bool) -> Before {
    Before {
        attempts,
        delay_dsn_sent,
    }
}

fn queued(at: SystemTime, wait: u64, attempts: u32, reply: &str, sent: bool) -> RecipientState {
    RecipientState::Queued {
        next_attempt: at + Duration::from_secs(wait),
        attempts,
        last_reply: Some(reply.to_owned()),
        delay_dsn_sent: sent,
    }
}

fn notice(kind: DsnKind, status: &str, remote_mta: Option<&str>, diagnostic: &str) -> Notice {
    let text = diagnostic.to_owned();
    Notice {
        kind,
        status: status.to_owned(),
        remote_mta: remote_mta.map(str::to_owned),
        diagnostic: if remote_mta.is_some() {
            Diagnostic::Smtp(text)
        } else {
            Diagnostic::Local(text)
        },
    }
}

struct Row {
    rule: &'static str,
    before: Before,
    outcome: RecipientOutcome,
    retry: RetrySettings,
    now: SystemTime,
    expect: Transition,
}

fn row(rule: &'static str, before: Before, outcome: RecipientOutcome, now: SystemTime) -> Row {
    Row {
        rule,
        before,
        outcome,
        retry: schedule(),
        now,
        expect: Transition {
            state: RecipientState::fresh(now),
            verdict: Verdict::Deferred,
            notice: None,
        },
    }
}

impl Row {
    fn expect(self, state: RecipientState, verdict: Verdict, notice: Option<Notice>) -> Row {
        Row {
            expect: Transition {
                state,
                verdict,
                notice,
            },
            ..self
        }
    }
}

#[test]
fn final_outcomes_are_final_and_carry_what_their_dsn_says() {
    let now = after(MINUTE);
    check(vec![
        row(
            "RFC 3464 §2.3.3: delivered, with a success notice naming the MX and its reply",
            tried(0, false),
            delivered(),
            now,
        )
        .expect(
            RecipientState::Delivered {
                at: now,
                mx: MX.to_owned(),
                reply: "250 2.0.0 ok".to_owned(),
            },
            Verdict::Delivered,
            Some(notice(DsnKind::Success, "2.0.0", Some(MX), "250 2.0.0 ok")),
        ),
        row(
            "RFC 3464 §2.3.3: failed, with the status the receiver gave (RFC 3463)",
            tried(3, true),
            bounced(),
            now,
        )
        .expect(
            RecipientState::Bounced {
                at: now,
                reply: "550 5.1.1 no such user".to_owned(),
                status: "5.1.1".to_owned(),
            },
            Verdict::Bounced,
            Some(notice(
                DsnKind::Failure,
                "5.1.1",
                Some(MX),
                "550 5.1.1 no such user",
            )),
        ),
    ]);
}

#[test]
fn a_transient_failure_is_retried_on_the_schedule_until_the_queue_lifetime_ends() {
    let (young, an_hour, four_hours) = (after(MINUTE), after(HOUR), after(4 * HOUR));
    let reply = "451 4.3.0 try later";
    let delay = notice(DsnKind::Delay, "4.3.0", Some(MX), reply);
    check(vec![
        row(
            "RFC 5321 §4.5.4.1: not retried at once, but after the first interval (5m)",
            tried(0, false),
            deferred(),
            young,
        )
        .expect(
            queued(young, 5 * MINUTE, 1, reply, false),
            Verdict::Deferred,
            None,
        ),
        row(
            "RFC 5321 §4.5.4.1: the interval grows with the attempts (third failure: 20m)",
            tried(2, false),
            deferred(),
            an_hour,
        )
        .expect(
            queued(an_hour, 20 * MINUTE, 3, reply, false),
            Verdict::Deferred,
            None,
        ),
        row(
            "RFC 3464 §2.3.3: once delay_dsn_after has passed, one delay notice",
            tried(5, false),
            deferred(),
            four_hours,
        )
        .expect(
            queued(four_hours, 160 * MINUTE, 6, reply, true),
            Verdict::Deferred,
            Some(delay),
        ),
        row(
            "RFC 3464 §2.3.3: only one delay notice per recipient",
            tried(6, true),
            deferred(),
            after(5 * HOUR),
        )
        .expect(
            queued(after(5 * HOUR), 4 * HOUR, 7, reply, true),
            Verdict::Deferred,
            None,
        ),
        Row {
            retry: RetrySettings {
                delay_dsn_after: None,
                ..schedule()
            },
            ..row(
                "delay_dsn_after = \"never\": no delay notice, however old the message",
                tried(9, false),
                deferred(),
                after(4 * DAY),
            )
        }
        .expect(
            queued(after(4 * DAY), 4 * HOUR, 10, reply, false),
            Verdict::Deferred,
            None,
        ),
        row(
            "RFC 5321 §4.5.4.1, RFC 3463 §3.5: after the lifetime (5 days) it bounces with 5.4.7",
            tried(40, true),
            deferred(),
            after(5 * DAY),
        )
        .expect(
            RecipientState::Bounced {
                at: after(5 * DAY),
                reply: reply.to_owned(),
                status: "5.4.7".to_owned(),
            },
            Verdict::Expired,
            Some(notice(DsnKind::Failure, "5.4.7", Some(MX), reply)),
        ),
    ]);
}

#[test]
fn edge_cases_of_the_schedule_neither_panic_nor_lose_the_diagnostic() {
    let before_arrival = received() - Duration::from_secs(HOUR);
    check(vec![
        row(
            "a local finding (no MX answered) is the reply recorded",
            tried(0, false),
            unreachable(),
            after(0),
        )
        .expect(
            queued(after(0), 5 * MINUTE, 1, "connection refused", false),
            Verdict::Deferred,
            None,
        ),
        row(
            "the attempt count saturates instead of overflowing",
            tried(u32::MAX, true),
            deferred(),
            after(HOUR),
        )
        .expect(
            queued(after(HOUR), 4 * HOUR, u32::MAX, "451 4.3.0 try later", true),
            Verdict::Deferred,
            None,
        ),
        row(
            "a clock gone back before the arrival counts as no age: no bounce, no delay notice",
            tried(0, false),
            deferred(),
            before_arrival,
        )
        .expect(
            queued(before_arrival, 5 * MINUTE, 1, "451 4.3.0 try later", false),
            Verdict::Deferred,
            None,
        ),
    ]);
}

fn check(rows: Vec<Row>) {
    let mut rng = StdRng::seed_from_u64(15);
    for row in rows {
        let got = next_state(
            row.before,
            row.outcome,
            &row.retry,
            received(),
            row.now,
            &mut rng,
        );
        assert_eq!(got, row.expect, "{}", row.rule);
    }
}

#[test]
fn a_dsn_that_could_not_be_queued_is_due_again_and_a_report_is_never_lost() {
    let now = after(HOUR);
    let retry = schedule();
    let bounced = RecipientState::Bounced {
        at: now,
        reply: "550 5.1.1 no such user".to_owned(),
        status: "5.1.1".to_owned(),
    };
    let delivered = RecipientState::Delivered {
        at: now,
        mx: MX.to_owned(),
        reply: "250 2.0.0 ok".to_owned(),
    };
    let delayed = queued(now, HOUR, 4, "451 4.3.0 try later", true);
    let rows = [
        (
            "the delay notice is considered again at the next deferral",
            DsnKind::Delay,
            delayed.clone(),
            queued(now, HOUR, 4, "451 4.3.0 try later", false),
        ),
        (
            "a bounce whose failure DSN was not queued is queued again, to bounce later",
            DsnKind::Failure,
            bounced.clone(),
            queued(now, 5 * MINUTE, 0, "550 5.1.1 no such user", false),
        ),
        (
            "a delivered recipient stays delivered: the success report is lost, the mail is not",
            DsnKind::Success,
            delivered.clone(),
            delivered,
        ),
        (
            "a kind that does not match the state changes nothing",
            DsnKind::Failure,
            delayed.clone(),
            delayed,
        ),
    ];
    for (rule, kind, mut state, expect) in rows {
        after_unqueued_dsn(&mut state, kind, &retry, now);
        assert_eq!(state, expect, "{rule}");
    }
}
