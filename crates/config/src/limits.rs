//! `[limits]` → `strictmx_inbound::Limits`: what one session may send and for how long, how
//! many sessions there may be, how AUTH failures are paced, and the memory all sessions share.
//!
//! Enforcing the limits, and the reply each one gives, are `strictmx-inbound`'s
//! (`docs/inbound.md`); this checks the values.

use std::fmt::Write;

use strictmx_inbound::Limits;

use crate::error::Source;
use crate::raw::{RawLimits, RawSize};
use crate::validate::{dur, opt, quote_duration};
use crate::values;

/// Overrides the values of `limits` that `[limits]` sets.
pub(crate) fn build(raw: &RawLimits, limits: &mut Limits, src: &mut Source<'_>) {
    sessions(raw, limits, src);
    authentication(raw, limits, src);
    memory(raw, limits, src);
}

/// The size of a message, the recipients, the timeouts and the sessions at once.
fn sessions(l: &RawLimits, limits: &mut Limits, src: &mut Source<'_>) {
    let d = limits.clone();
    limits.max_message_size = opt(
        src,
        "limits.max_message_size",
        &l.max_message_size,
        d.max_message_size,
        |v| {
            at_least(v, 1024, |n| {
                format!("{n} bytes is too small for a mail message")
            })
        },
    );
    limits.max_recipients = opt(
        src,
        "limits.max_recipients",
        &l.max_recipients,
        d.max_recipients,
        |n| values::count(*n, 1),
    );
    limits.command_timeout = opt(
        src,
        "limits.command_timeout",
        &l.command_timeout,
        d.command_timeout,
        dur,
    );
    limits.data_timeout = opt(
        src,
        "limits.data_timeout",
        &l.data_timeout,
        d.data_timeout,
        dur,
    );
    limits.max_sessions = opt(
        src,
        "limits.max_sessions",
        &l.max_sessions,
        d.max_sessions,
        |n| values::count(*n, 1),
    );
    limits.max_sessions_per_ip = opt(
        src,
        "limits.max_sessions_per_ip",
        &l.max_sessions_per_ip,
        d.max_sessions_per_ip,
        |n| values::count(*n, 1),
    );
    limits.max_bad_commands = opt(
        src,
        "limits.max_bad_commands",
        &l.max_bad_commands,
        d.max_bad_commands,
        |n| values::count(*n, 1),
    );
}

/// Failed AUTH attempts per session and per client, their pacing, and password checks at once.
fn authentication(l: &RawLimits, limits: &mut Limits, src: &mut Source<'_>) {
    let d = limits.clone();
    limits.max_auth_failures = opt(
        src,
        "limits.max_auth_failures",
        &l.max_auth_failures,
        d.max_auth_failures,
        |n| values::count(*n, 1),
    );
    limits.auth_failure_delay = opt(
        src,
        "limits.auth_failure_delay",
        &l.auth_failure_delay,
        d.auth_failure_delay,
        dur,
    );
    limits.auth_failures_per_client = opt(
        src,
        "limits.auth_failures_per_client",
        &l.auth_failures_per_client,
        d.auth_failures_per_client,
        |n| values::count(*n, 1).and_then(|n| u32::try_from(n).map_err(|e| e.to_string())),
    );
    limits.auth_failure_window = opt(
        src,
        "limits.auth_failure_window",
        &l.auth_failure_window,
        d.auth_failure_window,
        dur,
    );
    limits.max_concurrent_auth = opt(
        src,
        "limits.max_concurrent_auth",
        &l.max_concurrent_auth,
        d.max_concurrent_auth,
        |n| values::count(*n, 1),
    );
}

/// `Received:` fields before a loop is declared, and the message content held in memory.
fn memory(l: &RawLimits, limits: &mut Limits, src: &mut Source<'_>) {
    let d = limits.clone();
    limits.max_received_headers = opt(
        src,
        "limits.max_received_headers",
        &l.max_received_headers,
        d.max_received_headers,
        |n| values::count(*n, 1),
    );
    limits.max_body_memory = opt(
        src,
        "limits.max_body_memory",
        &l.max_body_memory,
        d.max_body_memory,
        |v| {
            at_least(v, 1024 * 1024, |n| {
                format!("{n} bytes is too small: at least 1MiB")
            })
        },
    );
}

/// A size of at least `min` bytes; `too_small` says what is wrong with a smaller one.
fn at_least(v: &RawSize, min: u64, too_small: fn(u64) -> String) -> Result<u64, String> {
    values::size(v).and_then(|n| if n < min { Err(too_small(n)) } else { Ok(n) })
}

pub(crate) fn render(l: &Limits, o: &mut String) {
    let _ = writeln!(
        o,
        "[limits]\nmax_message_size = {}\nmax_recipients = {}\ncommand_timeout = {}\ndata_timeout = {}\nmax_sessions = {}\nmax_sessions_per_ip = {}\nmax_bad_commands = {}\nmax_auth_failures = {}\nauth_failure_delay = {}\nauth_failures_per_client = {}\nauth_failure_window = {}\nmax_concurrent_auth = {}\nmax_received_headers = {}\nmax_body_memory = {}\n",
        l.max_message_size,
        l.max_recipients,
        quote_duration(l.command_timeout),
        quote_duration(l.data_timeout),
        l.max_sessions,
        l.max_sessions_per_ip,
        l.max_bad_commands,
        l.max_auth_failures,
        quote_duration(l.auth_failure_delay),
        l.auth_failures_per_client,
        quote_duration(l.auth_failure_window),
        l.max_concurrent_auth,
        l.max_received_headers,
        l.max_body_memory
    );
}
