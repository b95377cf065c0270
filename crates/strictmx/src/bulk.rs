//! Bulk queue commands: `strictmx queue retry|hold|release|delete|bounce` with a selector
//! instead of a message id. The client asks the server what matches, shows the count and asks
//! for confirmation (unless `--yes`), then has the server act on what matched when it was shown:
//! a message that arrived since is never swept in.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use strictmx_spool::{QueueEntry, Spool};

use crate::selector::{Matcher, Selector};

/// What a bulk command does to each message it selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkAction {
    Retry,
    Hold,
    Release,
    Delete,
    Bounce,
}

impl BulkAction {
    pub fn as_str(self) -> &'static str {
        match self {
            BulkAction::Retry => "retry",
            BulkAction::Hold => "hold",
            BulkAction::Release => "release",
            BulkAction::Delete => "delete",
            BulkAction::Bounce => "bounce",
        }
    }
}

/// How many messages the confirmation lists before "and N more".
const SHOWN: usize = 20;

/// The messages `matcher` selects among those received at or before `as_of`.
pub fn selected(
    spool: &Spool,
    matcher: &Matcher,
    as_of: SystemTime,
) -> anyhow::Result<Vec<QueueEntry>> {
    Ok(spool
        .list()?
        .into_iter()
        .filter(|entry| entry.received_at <= as_of && matcher.matches(entry))
        .collect())
}

/// The server's answer to a selection: the count, the time it was made, and the first few.
pub fn selection(entries: &[QueueEntry], as_of: SystemTime) -> Value {
    let shown: Vec<Value> = entries
        .iter()
        .take(SHOWN)
        .map(|entry| {
            json!({
                "id": strictmx_spool::MessageIdDisplay(entry.id).to_string(),
                "sender": entry.sender,
                "age": entry.age.as_secs(),
                "recipients": entry.recipients.iter().filter(|r| !r.state.is_final()).count(),
            })
        })
        .collect();
    json!({
        "count": entries.len(),
        "as_of_ms": millis(as_of),
        "messages": shown,
    })
}

fn millis(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

/// `as_of_ms` back as a time.
pub fn as_of(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// `strictmx queue ACTION --domain/--sender/--older-than/--all [--yes]`.
pub fn run(
    socket: &Path,
    action: BulkAction,
    selector: Selector,
    yes: bool,
    json_output: bool,
) -> ExitCode {
    if let Err(e) = selector.matcher() {
        eprintln!("queue {}: {e}", action.as_str());
        return ExitCode::from(64);
    }
    let request = crate::control::Request::Select {
        selector: selector.clone(),
    };
    let Some(found) = crate::control::ask_or_report(socket, &request) else {
        return ExitCode::FAILURE;
    };
    let count = found["count"].as_u64().unwrap_or(0);
    if count == 0 {
        if json_output {
            println!("{}", json!({ "count": 0, "done": 0 }));
        } else {
            println!("no queued message matches");
        }
        return ExitCode::SUCCESS;
    }
    if !yes {
        eprint!("{}", describe(&found));
        if !confirmed(action.as_str(), count) {
            eprintln!("nothing done");
            return ExitCode::FAILURE;
        }
    }
    let request = crate::control::Request::Apply {
        action,
        selector,
        as_of_ms: found["as_of_ms"].as_u64().unwrap_or(0),
    };
    let Some(done) = crate::control::ask_or_report(socket, &request) else {
        return ExitCode::FAILURE;
    };
    if json_output {
        println!(
            "{}",
            serde_json::to_string_pretty(&done).unwrap_or_default()
        );
    } else {
        print!("{}", render_done(action, &done));
    }
    if done["failed"].as_u64().unwrap_or(0) > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The confirmation's list: the count, then up to `SHOWN` messages.
pub(crate) fn describe(found: &Value) -> String {
    let count = found["count"].as_u64().unwrap_or(0);
    let mut out = format!("{count} message(s) match:\n");
    let messages = found["messages"].as_array().cloned().unwrap_or_default();
    for m in &messages {
        let sender = match crate::terminal::text(&m["sender"]) {
            s if s.is_empty() => "<>".to_owned(),
            s => s,
        };
        out.push_str(&format!(
            "  {}  {:>8}  {} recipient(s) open  from {}\n",
            crate::terminal::text(&m["id"]),
            humantime::format_duration(Duration::from_secs(m["age"].as_u64().unwrap_or(0))),
            m["recipients"],
            sender,
        ));
    }
    let more = count.saturating_sub(messages.len() as u64);
    if more > 0 {
        out.push_str(&format!("  and {more} more\n"));
    }
    out
}

/// Asks on the terminal (the question on stderr); only `y` or `yes` goes ahead. Without a
/// terminal, an answer line on stdin is read the same way; none (end of input) is a no.
pub(crate) fn confirmed(verb: &str, count: u64) -> bool {
    eprint!("{verb} {count} message(s)? [y/N] ");
    let _ = std::io::stderr().flush();
    let stdin = std::io::stdin();
    let mut answer = String::new();
    if stdin.lock().read_line(&mut answer).unwrap_or(0) == 0 {
        if !stdin.is_terminal() {
            eprintln!();
            eprintln!("(no answer on standard input: give --yes to act without asking)");
        }
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

fn render_done(action: BulkAction, done: &Value) -> String {
    let mut out = format!(
        "{}: {} message(s) done, {} recipient(s) affected",
        action.as_str(),
        done["done"],
        done["recipients"]
    );
    if let Some(dsns) = done["dsns"]
        .as_u64()
        .filter(|_| action == BulkAction::Bounce)
    {
        out.push_str(&format!(", {dsns} DSN(s) queued"));
    }
    if let Some(cleared) = done["backoffs_cleared"]
        .as_u64()
        .filter(|_| action == BulkAction::Retry)
    {
        out.push_str(&format!(", {cleared} destination backoff(s) cleared"));
    }
    out.push('\n');
    for failure in done["failures"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {}: {}\n",
            crate::terminal::text(&failure["id"]),
            crate::terminal::text(&failure["error"])
        ));
    }
    out
}
