//! `strictmx audit show|search`: the audit trail of recipients that left the queue, with
//! their security receipts. The client turns the arguments into a request and asks the
//! running server over the control socket; when none answers it opens the spool itself, as
//! `explain` does. Either way [`handle`] answers from the spool (the server of a cluster node
//! adds the other nodes' records from the shared index), and [`render`] prints the answer for
//! people. Keeping and searching the trail is `strictmx-spool`'s, sharing it
//! `strictmx-cluster`'s.

use std::fmt::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Subcommand;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use strictmx_cluster::Cluster;
use strictmx_config::Config;
use strictmx_protocol::ErrorChain;
use strictmx_spool::{
    AuditOutcome, AuditPage, AuditQuery, AuditRecord, AuthFilter, MessageId, PeerAuth, Spool,
    SpoolSettings, parse_id,
};

use crate::control::{self, Request};
use crate::terminal::{escape, text};

/// The records a search returns unless `--limit` says otherwise.
const DEFAULT_LIMIT: usize = 1000;

#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Every recipient of one message that left the queue: outcome, security receipt,
    /// attempts.
    Show {
        /// The queue id (16 hex digits) or the Message-ID, with or without its angle brackets.
        id: String,
    },
    /// Recipients that left the queue, oldest first: every condition given must hold.
    Search(SearchArgs),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args, Serialize, Deserialize)]
pub struct SearchArgs {
    /// The recipient: an address (any case) or `@domain`.
    #[arg(long)]
    pub rcpt: Option<String>,
    /// The envelope sender: an address, `@domain`, or `<>` for the null sender.
    #[arg(long)]
    pub sender: Option<String>,
    /// The recipient domain.
    #[arg(long)]
    pub domain: Option<String>,
    /// Final at or after: a time ago (`7d`, `36h`), a date (`2026-05-01`, UTC) or an RFC 3339
    /// time (`2026-05-01T08:00:00Z`).
    #[arg(long)]
    pub since: Option<String>,
    /// Final before: the same forms as --since.
    #[arg(long)]
    pub until: Option<String>,
    /// Delivered to a peer authenticated this way: dane, sts, webpki or none.
    #[arg(long, conflicts_with = "not_auth")]
    pub auth: Option<String>,
    /// Everything not delivered over this: deliveries with another authentication, and every
    /// recipient that bounced, expired or was dropped.
    #[arg(long)]
    pub not_auth: Option<String>,
    /// Only this outcome: delivered, bounced, expired, admin_bounced or deleted.
    #[arg(long)]
    pub outcome: Option<String>,
    /// The most records shown; 0 for no limit.
    #[arg(long, default_value_t = DEFAULT_LIMIT)]
    pub limit: usize,
}

/// The control-socket request, carried inside the control protocol's own request. Times are
/// resolved by the client (`--since 7d` is seven days before the command ran).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "audit", rename_all = "snake_case")]
pub enum AuditRequest {
    Show {
        id: String,
    },
    Search {
        rcpt: Option<String>,
        sender: Option<String>,
        domain: Option<String>,
        since_ms: Option<u64>,
        until_ms: Option<u64>,
        auth: Option<String>,
        not_auth: Option<String>,
        outcome: Option<String>,
        limit: usize,
    },
}

impl AuditRequest {
    /// The request for `action`, with its times resolved against `now`; a usage error names
    /// the argument.
    pub fn new(action: AuditAction, now: SystemTime) -> Result<AuditRequest, String> {
        let args = match action {
            AuditAction::Show { id } => return Ok(AuditRequest::Show { id }),
            AuditAction::Search(args) => args,
        };
        let when = |flag: &str, value: &Option<String>| {
            value
                .as_deref()
                .map(|v| parse_when(v, now).map_err(|e| format!("--{flag}: {e}")))
                .transpose()
        };
        let request = AuditRequest::Search {
            since_ms: when("since", &args.since)?.map(unix_ms),
            until_ms: when("until", &args.until)?.map(unix_ms),
            rcpt: args.rcpt,
            sender: args.sender,
            domain: args.domain,
            auth: args.auth,
            not_auth: args.not_auth,
            outcome: args.outcome,
            limit: args.limit,
        };
        request.query()?;
        Ok(request)
    }

    /// A search as the spool's query; `Ok(None)` for `show`.
    fn query(&self) -> Result<Option<AuditQuery>, String> {
        let AuditRequest::Search {
            rcpt,
            sender,
            domain,
            since_ms,
            until_ms,
            auth,
            not_auth,
            outcome,
            limit,
        } = self
        else {
            return Ok(None);
        };
        let auth = match (auth, not_auth) {
            (Some(_), Some(_)) => return Err("give --auth or --not-auth, not both".into()),
            (Some(a), None) => Some(AuthFilter::DeliveredOver(peer_auth(a, "auth")?)),
            (None, Some(a)) => Some(AuthFilter::NotDeliveredOver(peer_auth(a, "not-auth")?)),
            (None, None) => None,
        };
        let outcome = outcome.as_deref().map(audit_outcome).transpose()?;
        let domain = domain
            .as_deref()
            .map(|d| d.trim().trim_end_matches('.').to_lowercase())
            .filter(|d| !d.is_empty());
        let sender = sender.as_deref().map(|s| match s.trim() {
            "<>" => String::new(),
            s => s.trim_start_matches('<').trim_end_matches('>').to_owned(),
        });
        Ok(Some(AuditQuery {
            since: since_ms.map(from_unix_ms),
            until: until_ms.map(from_unix_ms),
            recipient: rcpt.as_deref().map(|r| r.trim().to_owned()),
            sender,
            domain,
            auth,
            outcome,
            limit: match limit {
                0 => usize::MAX,
                n => *n,
            },
        }))
    }
}

fn peer_auth(text: &str, flag: &str) -> Result<PeerAuth, String> {
    [
        PeerAuth::Dane,
        PeerAuth::Sts,
        PeerAuth::Webpki,
        PeerAuth::None,
    ]
    .into_iter()
    .find(|a| a.as_str().eq_ignore_ascii_case(text.trim()))
    .ok_or_else(|| format!("--{flag} {text:?}: expected dane, sts, webpki or none"))
}

fn audit_outcome(text: &str) -> Result<AuditOutcome, String> {
    let wanted = text.trim().replace('-', "_");
    AuditOutcome::ALL
        .into_iter()
        .find(|o| o.as_str().eq_ignore_ascii_case(&wanted))
        .ok_or_else(|| {
            format!(
                "--outcome {text:?}: expected delivered, bounced, expired, admin_bounced or deleted"
            )
        })
}

/// `7d` (that long before `now`), `2026-05-01` (midnight UTC) or an RFC 3339 time.
fn parse_when(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    let text = text.trim();
    if let Ok(ago) = humantime::parse_duration(text) {
        return Ok(now.checked_sub(ago).unwrap_or(UNIX_EPOCH));
    }
    let full = match text.len() {
        10 => format!("{text}T00:00:00Z"),
        _ => text.to_owned(),
    };
    humantime::parse_rfc3339_weak(&full).map_err(|_| {
        format!(
            "`{text}` is neither a time ago (7d, 36h), a date (2026-05-01) nor an RFC 3339 time"
        )
    })
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Answers `request` from `spool` and, on a cluster node, from the other nodes' rows in the
/// shared index: `show` as `{records, in_queue}`, `search` as the spool's page
/// (`{records, truncated}`), both with `cluster: {shared, error}` on a cluster node. When the
/// database is unreachable the answer is this node's alone, and `shared` says so. The spool
/// reads run on a blocking thread: a search may decode thousands of records.
pub async fn handle(
    request: AuditRequest,
    spool: Spool,
    cluster: Option<Cluster>,
) -> anyhow::Result<Value> {
    let query = request.query().map_err(anyhow::Error::msg)?;
    let asked = request.clone();
    let mut found = tokio::task::spawn_blocking(move || local(&asked, query, &spool))
        .await
        .context("the audit read was cancelled")??;
    let shared = match &cluster {
        Some(cluster) => Some(found.add_shared(&request, cluster).await),
        None => None,
    };
    let unreachable = shared.as_ref().and_then(|s| s.as_ref().err());
    let mut answer = match found {
        Found::Search(page) => serde_json::to_value(page)?,
        Found::Show { records, in_queue } => {
            if records.is_empty() && !in_queue {
                let AuditRequest::Show { id } = &request else {
                    bail!("a show request has an id");
                };
                let (place, elsewhere) = match (&shared, unreachable) {
                    (_, Some(_)) => (
                        "here",
                        "; the cluster database is unreachable, so other nodes' were not searched",
                    ),
                    (Some(_), None) => ("on any node", ""),
                    (None, None) => ("here", ""),
                };
                bail!(
                    "no audit record for {}: never queued {place}, or pruned after [audit] keep{elsewhere}",
                    escape(id)
                );
            }
            json!({ "records": records, "in_queue": in_queue })
        }
    };
    if let Some(shared) = shared {
        answer["cluster"] = match shared {
            Ok(()) => json!({ "shared": true }),
            Err(error) => json!({ "shared": false, "error": error }),
        };
    }
    Ok(answer)
}

/// What this node's spool holds for a request.
enum Found {
    Search(AuditPage),
    Show {
        records: Vec<AuditRecord>,
        in_queue: bool,
    },
}

fn local(
    request: &AuditRequest,
    query: Option<AuditQuery>,
    spool: &Spool,
) -> anyhow::Result<Found> {
    let AuditRequest::Show { id } = request else {
        let query = query.context("a search has a query")?;
        return Ok(Found::Search(spool.audit_search(&query)?));
    };
    let queue_id = parse_id(id.trim()).ok();
    let mut records = match queue_id {
        Some(queue_id) => spool.audit_by_queue_id(queue_id)?,
        None => Vec::new(),
    };
    if records.is_empty() {
        records = spool.audit_by_message_id(id)?;
    }
    let in_queue = match queue_id {
        Some(queue_id) => spool.message(queue_id)?.is_some(),
        None => false,
    };
    Ok(Found::Show { records, in_queue })
}

/// A record's identity across the cluster: a node's queue id and recipient.
fn identity(record: &AuditRecord) -> (Option<&str>, MessageId, u32) {
    (record.node.as_deref(), record.queue_id, record.index)
}

impl Found {
    /// Adds the other nodes' records from the shared index, each once; the error's text when
    /// the database could not be read (the answer is then this node's alone).
    async fn add_shared(
        &mut self,
        request: &AuditRequest,
        cluster: &Cluster,
    ) -> Result<(), String> {
        let why = |e: strictmx_cluster::ClusterError| ErrorChain(&e).to_string();
        match (self, request) {
            (Found::Search(page), request) => {
                let query = request
                    .query()
                    .ok()
                    .flatten()
                    .ok_or_else(|| "a search has a query".to_owned())?;
                let theirs = cluster.audit_search(&query).await.map_err(why)?;
                merge(&mut page.records, theirs.records);
                page.records.sort_by_key(|r| r.final_at);
                page.truncated |= theirs.truncated || page.records.len() > query.limit;
                page.records.truncate(query.limit);
            }
            (Found::Show { records, .. }, AuditRequest::Show { id }) => {
                let queue_id = parse_id(id.trim()).ok();
                let theirs = cluster.audit_show(queue_id, id).await.map_err(why)?;
                merge(records, theirs);
                records.sort_by(|a, b| {
                    (a.queue_id, &a.node, a.index).cmp(&(b.queue_id, &b.node, b.index))
                });
            }
            (Found::Show { .. }, AuditRequest::Search { .. }) => {}
        }
        Ok(())
    }
}

fn merge(ours: &mut Vec<AuditRecord>, theirs: Vec<AuditRecord>) {
    for record in theirs {
        if !ours.iter().any(|r| identity(r) == identity(&record)) {
            ours.push(record);
        }
    }
}

/// Runs `strictmx audit ...` and prints the answer; 64 for a usage error, 1 when no answer
/// could be had.
pub fn run(config: &Config, action: AuditAction, json_output: bool) -> ExitCode {
    let request = match AuditRequest::new(action, SystemTime::now()) {
        Ok(request) => request,
        Err(e) => {
            eprintln!("audit: {e}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let answered = runtime.block_on(answer(config, &request));
    if let Ok(result) = &answered
        && result["cluster"]["shared"] == false
    {
        eprintln!(
            "audit: the cluster database is unreachable ({}); this answer is this node's records only",
            text(&result["cluster"]["error"])
        );
    }
    match answered {
        Ok(result) if json_output => {
            println!(
                "{}",
                serde_json::to_string_pretty(&result).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok(result) => {
            print!("{}", render(&request, &result));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The running server's answer, or, when none listens, the spool's read here.
async fn answer(config: &Config, request: &AuditRequest) -> anyhow::Result<Value> {
    let asked = Request::Audit(request.clone());
    if let Some(result) = control::ask_if_serving(&config.control_socket, &asked).await? {
        return Ok(result);
    }
    let spool = open_existing_spool(&config.spool)?;
    handle(request.clone(), spool, None).await
}

fn open_existing_spool(settings: &SpoolSettings) -> anyhow::Result<Spool> {
    let dir = &settings.data_dir;
    if !dir.join("spool.redb").is_file() {
        bail!(
            "no server answered and there is no spool in {}: nothing was queued with this configuration",
            dir.display()
        );
    }
    Spool::open(settings).with_context(|| {
        format!(
            "no server answered, and the spool in {} cannot be opened",
            dir.display()
        )
    })
}

/// An answer for people; every text a peer or submitter wrote is escaped.
pub fn render(request: &AuditRequest, result: &Value) -> String {
    let records = result["records"].as_array().cloned().unwrap_or_default();
    match request {
        AuditRequest::Show { id } => render_show(id, &records, result["in_queue"] == true),
        AuditRequest::Search { .. } => render_search(
            &records,
            result["truncated"] == true,
            !result["cluster"].is_null(),
        ),
    }
}

fn render_show(id: &str, records: &[Value], in_queue: bool) -> String {
    let mut o = String::new();
    if in_queue {
        let _ = writeln!(
            o,
            "message {} is still queued: recipients not listed here are not final yet (strictmx queue show {0})\n",
            escape(id)
        );
    }
    let mut current = None;
    for r in records {
        let message = (&r["queue_id"], &r["node"]);
        if current != Some(message) {
            current = Some(message);
            render_message(&mut o, r);
        }
        render_recipient(&mut o, r);
    }
    o
}

/// The message's lines, from the first of its records.
fn render_message(o: &mut String, r: &Value) {
    let client = &r["submitter"];
    let submitter = match text(&client["auth_user"]) {
        user if user.is_empty() => format!("from {}", text(&client["ip"])),
        user => format!("by {user} from {}", text(&client["ip"])),
    };
    let _ = writeln!(
        o,
        "queue id:    {}{}\nmessage-id:  {}\nsender:      <{}>, submitted {submitter} (helo {})\nreceived:    {}",
        text(&r["queue_id"]),
        match &r["node"] {
            Value::Null => String::new(),
            node => format!(" (node {})", text(node)),
        },
        or_dash(&r["message_id"]),
        text(&r["sender"]),
        text(&client["helo"]),
        r["received_at"]
            .as_u64()
            .map(|s| time_ms(s.saturating_mul(1000)))
            .unwrap_or_default(),
    );
}

fn render_recipient(o: &mut String, r: &Value) {
    let _ = write!(
        o,
        "  {}: {} {}",
        text(&r["recipient"]),
        text(&r["outcome"]),
        r["final_at"].as_u64().map(time_ms).unwrap_or_default(),
    );
    if !r["status"].is_null() {
        let _ = write!(o, " ({})", text(&r["status"]));
    }
    let _ = writeln!(o, "\n    reply:      {}", text(&r["reply"]));
    match r["receipt"] {
        Value::Null => o.push_str("    receipt:    none (no delivery attempt)\n"),
        ref receipt => {
            let _ = writeln!(o, "    receipt:    {}", receipt_line(receipt));
        }
    }
    let requiretls = &r["requiretls"];
    let _ = writeln!(
        o,
        "    requiretls: {}",
        match (
            requiretls["requested"] == true,
            requiretls["honoured"] == true
        ) {
            (false, _) => "not requested",
            (true, true) => "requested, honoured",
            (true, false) => "requested, not honoured",
        }
    );
    if !r["require_tls"].is_null() {
        let _ = writeln!(o, "    tls floor:  {}", text(&r["require_tls"]));
    }
    for exception in r["receipt"]["exceptions"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "    exception:  {} (expires at {} Unix seconds): {}",
            text(&exception["rule"]),
            text(&exception["expires"]),
            text(&exception["reason"])
        );
    }
    for a in r["attempts"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "    attempt:    {} mx={} ip={} tls={} auth={}{} -> {} ({} ms): {}",
            a["at"].as_u64().map(time_ms).unwrap_or_default(),
            or_dash(&a["mx"]),
            or_dash(&a["ip"]),
            or_dash(&a["tls_version"]),
            text(&a["auth"]),
            match text(&a["result_type"]) {
                t if t.is_empty() => String::new(),
                t => format!(" result={t}"),
            },
            text(&a["outcome"]),
            a["duration_ms"],
            text(&a["reply"]),
        );
    }
}

/// `mx=… ip=… tls=… cipher=… verified=… auth=… policy=… rules=… requirement=…`.
fn receipt_line(receipt: &Value) -> String {
    let rules: Vec<String> = receipt["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    format!(
        "mx={} ip={} tls={} cipher={} verified={} auth={} policy={} rules={} requirement={}",
        or_dash(&receipt["mx"]),
        or_dash(&receipt["ip"]),
        or_dash(&receipt["tls_version"]),
        or_dash(&receipt["cipher"]),
        or_dash(&receipt["cert_verified"]),
        text(&receipt["auth"]),
        text(&receipt["policy"]),
        match rules.is_empty() {
            true => "-".to_owned(),
            false => rules.join(","),
        },
        or_dash(&receipt["requirement"]),
    )
}

/// One line per record; a cluster node's answer names each record's node first.
fn render_search(records: &[Value], truncated: bool, cluster: bool) -> String {
    if records.is_empty() {
        return "no audit record matches\n".to_owned();
    }
    let node = |r: &Value| match cluster {
        true => format!("{:<16}  ", or_dash(&r["node"])),
        false => String::new(),
    };
    let mut o = format!(
        "{}{:<20}  {:<16}  {:<13}  {:<6}  {}\n",
        node(&json!({ "node": "NODE" })),
        "FINAL",
        "QUEUE ID",
        "OUTCOME",
        "AUTH",
        "SENDER -> RECIPIENT (MX, TLS)"
    );
    for r in records {
        let receipt = &r["receipt"];
        let auth = match receipt {
            Value::Null => "none".to_owned(),
            receipt => text(&receipt["auth"]),
        };
        let sender = match text(&r["sender"]) {
            s if s.is_empty() => "<>".to_owned(),
            s => s,
        };
        let _ = writeln!(
            o,
            "{}{:<20}  {:<16}  {:<13}  {:<6}  {sender} -> {} ({}, {})",
            node(r),
            r["final_at"].as_u64().map(time_ms).unwrap_or_default(),
            text(&r["queue_id"]),
            text(&r["outcome"]),
            auth,
            text(&r["recipient"]),
            or_dash(&receipt["mx"]),
            or_dash(&receipt["tls_version"]),
        );
    }
    let _ = write!(o, "{} record(s)", records.len());
    if truncated {
        o.push_str("; more match: narrow the search or raise --limit");
    }
    o.push('\n');
    o
}

fn or_dash(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        other => text(other),
    }
}

fn time_ms(ms: u64) -> String {
    humantime::format_rfc3339_seconds(from_unix_ms(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(args: SearchArgs) -> Result<AuditRequest, String> {
        AuditRequest::new(
            AuditAction::Search(args),
            UNIX_EPOCH + Duration::from_secs(30 * 86_400),
        )
    }

    #[test]
    fn audit_requests_travel_as_tagged_json() {
        let show = AuditRequest::Show {
            id: "<m@app.test>".into(),
        };
        let text = serde_json::to_string(&Request::Audit(show.clone())).unwrap();
        assert_eq!(text, r#"{"op":"audit","audit":"show","id":"<m@app.test>"}"#);
        assert!(matches!(
            serde_json::from_str::<Request>(&text),
            Ok(Request::Audit(back)) if back == show
        ));
    }

    #[test]
    fn not_delivered_over_dane_to_a_domain_in_the_last_week_is_one_query() {
        let request = search(SearchArgs {
            domain: Some("Bank.Example.".into()),
            since: Some("7d".into()),
            not_auth: Some("dane".into()),
            limit: DEFAULT_LIMIT,
            ..SearchArgs::default()
        })
        .expect("valid");
        let query = request.query().expect("valid").expect("a search");
        assert_eq!(query.domain.as_deref(), Some("bank.example"));
        assert_eq!(
            query.since,
            Some(UNIX_EPOCH + Duration::from_secs(23 * 86_400))
        );
        assert_eq!(
            query.auth,
            Some(AuthFilter::NotDeliveredOver(PeerAuth::Dane))
        );
        assert_eq!(query.limit, DEFAULT_LIMIT);
    }

    #[test]
    fn times_are_a_time_ago_a_date_or_an_rfc3339_time() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let rows = [
            ("36h", Ok(now - Duration::from_secs(36 * 3600))),
            (
                "2026-05-01",
                Ok(UNIX_EPOCH + Duration::from_secs(1_777_593_600)),
            ),
            (
                "2026-05-01T08:00:00Z",
                Ok(UNIX_EPOCH + Duration::from_secs(1_777_593_600 + 8 * 3600)),
            ),
            ("last tuesday", Err(())),
        ];
        for (text, expected) in rows {
            assert_eq!(parse_when(text, now).map_err(drop), expected, "{text}");
        }
    }

    #[test]
    fn bad_search_arguments_are_refused_with_the_flag_named() {
        let rows = [
            (
                SearchArgs {
                    auth: Some("tls".into()),
                    ..SearchArgs::default()
                },
                "--auth",
            ),
            (
                SearchArgs {
                    outcome: Some("lost".into()),
                    ..SearchArgs::default()
                },
                "--outcome",
            ),
            (
                SearchArgs {
                    since: Some("soon".into()),
                    ..SearchArgs::default()
                },
                "--since",
            ),
        ];
        for (args, flag) in rows {
            let error = search(args).expect_err(flag);
            assert!(error.starts_with(flag), "{error}");
        }
        let both = AuditRequest::Search {
            rcpt: None,
            sender: None,
            domain: None,
            since_ms: None,
            until_ms: None,
            auth: Some("dane".into()),
            not_auth: Some("dane".into()),
            outcome: None,
            limit: 1,
        };
        assert!(both.query().is_err());
    }

    #[test]
    fn the_null_sender_is_written_as_angle_brackets() {
        let request = search(SearchArgs {
            sender: Some("<>".into()),
            outcome: Some("admin-bounced".into()),
            ..SearchArgs::default()
        })
        .expect("valid");
        let query = request.query().expect("valid").expect("a search");
        assert_eq!(query.sender.as_deref(), Some(""));
        assert_eq!(query.outcome, Some(AuditOutcome::AdminBounced));
        assert_eq!(query.limit, usize::MAX, "--limit 0 is no limit");
    }

    fn hostile_record() -> Value {
        let hostile = "evil\u{1b}[2J\r\nqueue id:    fake";
        json!({
            "queue_id": "00000000000000ab", "index": 0, "message_id": hostile,
            "kind": "normal", "sender": hostile, "recipient": hostile, "domain": "bank.test",
            "submitter": {"ip": "192.0.2.1", "helo": hostile, "auth_user": hostile, "tls": null},
            "received_at": 0, "final_at": 0, "outcome": "delivered", "status": null,
            "reply": format!("250 {hostile}\u{9b}"),
            "receipt": {"at": 0, "mx": hostile, "ip": "127.0.0.1", "tls_version": "TLSv1.3",
                "cipher": "x", "cert_verified": true, "auth": "dane", "policy": "dane",
                "rules": [hostile], "requirement": "dane", "result_type": null},
            "requiretls": {"requested": true, "honoured": true},
            "attempts": [{"at": 0, "mx": hostile, "ip": null, "tls_version": null, "auth": "dane",
                "outcome": "delivered", "reply": hostile, "result_type": null, "duration_ms": 1}],
        })
    }

    fn record_of(node: &str, queue_id: u64) -> AuditRecord {
        let mut value = hostile_record();
        value["node"] = json!(node);
        value["queue_id"] = json!(format!("{queue_id:016x}"));
        serde_json::from_value(value).expect("a record")
    }

    #[test]
    fn another_nodes_records_are_added_once_and_keep_their_node() {
        let mut ours = vec![record_of("aaaaaaaaaaaaaaaa", 1)];
        merge(
            &mut ours,
            vec![
                record_of("aaaaaaaaaaaaaaaa", 1),
                record_of("bbbbbbbbbbbbbbbb", 1),
                record_of("bbbbbbbbbbbbbbbb", 1),
            ],
        );
        let nodes: Vec<_> = ours.iter().map(|r| r.node.as_deref()).collect();
        assert_eq!(
            nodes,
            [Some("aaaaaaaaaaaaaaaa"), Some("bbbbbbbbbbbbbbbb")],
            "the same queue id on two nodes is two messages"
        );
        let result = json!({"records": ours, "truncated": false, "cluster": {"shared": true}});
        let listed = render(&search(SearchArgs::default()).unwrap(), &result);
        assert!(listed.starts_with("NODE "), "{listed}");
        assert!(listed.contains("\nbbbbbbbbbbbbbbbb  "), "{listed}");
        let shown = render(&AuditRequest::Show { id: "x".into() }, &result);
        assert_eq!(
            shown.lines().filter(|l| l.starts_with("queue id:")).count(),
            2,
            "one message per node: {shown}"
        );
        assert!(shown.contains("(node bbbbbbbbbbbbbbbb)"), "{shown}");
    }

    #[test]
    fn show_and_search_escape_what_peers_and_submitters_wrote() {
        let result = json!({"records": [hostile_record()], "in_queue": false});
        let shown = render(&AuditRequest::Show { id: "x".into() }, &result);
        assert!(!shown.contains(['\u{1b}', '\r', '\u{9b}']), "{shown:?}");
        assert_eq!(
            shown.lines().filter(|l| l.starts_with("queue id:")).count(),
            1,
            "{shown}"
        );
        assert!(shown.contains("requiretls: requested, honoured"), "{shown}");
        assert!(shown.contains("auth=dane policy=dane"), "{shown}");
        let result = json!({"records": [hostile_record()], "truncated": true});
        let listed = render(&search(SearchArgs::default()).unwrap(), &result);
        assert!(!listed.contains(['\u{1b}', '\r', '\u{9b}']), "{listed:?}");
        assert_eq!(listed.lines().count(), 3, "{listed}");
        assert!(listed.contains("more match"), "{listed}");
    }
}
