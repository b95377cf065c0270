//! `[retry]` → the schedule of `strictmx_delivery::runner::QueueSettings`: the backoff between
//! attempts, how long a message may stay queued, when the sender hears of a delay, and how long
//! an unreachable destination is left alone.
//!
//! The arithmetic and the DSNs are `strictmx-delivery`'s; this checks the values and that the
//! backoff's cap is not below its start.

use std::fmt::Write;
use std::ops::Range;

use strictmx_delivery::runner::QueueSettings;

use crate::error::Source;
use crate::raw::RawRetry;
use crate::validate::{dur, opt, quote, quote_duration};

pub(crate) fn build(r: &RawRetry, q: &mut QueueSettings, src: &mut Source<'_>) {
    backoff(r, q, src);
    lifetime(r, q, src);
    if q.retry.max_interval < q.retry.initial {
        let span: Range<usize> = r.max_interval.as_ref().map_or(0..0, |s| s.span());
        src.error(
            span,
            "retry.max_interval",
            "must not be shorter than retry.initial",
        );
    }
}

/// The first wait, its growth, its cap and its jitter.
fn backoff(r: &RawRetry, q: &mut QueueSettings, src: &mut Source<'_>) {
    let d = q.retry.clone();
    q.retry.initial = opt(src, "retry.initial", &r.initial, d.initial, dur);
    q.retry.factor = opt(src, "retry.factor", &r.factor, d.factor, |f| {
        within(*f, 1.0..=10.0, "1.0 to 10.0")
    });
    q.retry.max_interval = opt(
        src,
        "retry.max_interval",
        &r.max_interval,
        d.max_interval,
        dur,
    );
    q.retry.jitter = opt(src, "retry.jitter", &r.jitter, d.jitter, |f| {
        within(*f, 0.0..=0.5, "0.0 to 0.5")
    });
}

fn within(f: f64, range: std::ops::RangeInclusive<f64>, named: &str) -> Result<f64, String> {
    if range.contains(&f) {
        Ok(f)
    } else {
        Err(format!("{f} is outside {named}"))
    }
}

/// How long a message may stay queued, when a delay DSN goes out, and destination backoff.
fn lifetime(r: &RawRetry, q: &mut QueueSettings, src: &mut Source<'_>) {
    let d = q.retry.clone();
    q.retry.max_lifetime = opt(
        src,
        "retry.max_lifetime",
        &r.max_lifetime,
        d.max_lifetime,
        dur,
    );
    q.retry.delay_dsn_after = opt(
        src,
        "retry.delay_dsn_after",
        &r.delay_dsn_after,
        d.delay_dsn_after,
        |t| {
            if t == "never" {
                Ok(None)
            } else {
                dur(t).map(Some)
            }
        },
    );
    q.destination_backoff = opt(
        src,
        "retry.destination_backoff",
        &r.destination_backoff,
        q.destination_backoff,
        dur,
    );
}

pub(crate) fn render(queue: &QueueSettings, o: &mut String) {
    let r = &queue.retry;
    let _ = writeln!(
        o,
        "[retry]\ninitial = {}\nfactor = {}\nmax_interval = {}\njitter = {}\nmax_lifetime = {}\ndelay_dsn_after = {}\ndestination_backoff = {}\n",
        quote_duration(r.initial),
        toml::Value::Float(r.factor),
        quote_duration(r.max_interval),
        toml::Value::Float(r.jitter),
        quote_duration(r.max_lifetime),
        r.delay_dsn_after.map_or(quote("never"), quote_duration),
        quote_duration(queue.destination_backoff)
    );
}
