//! The control socket: `strictmx queue ...`, `explain` and `reload` talk to the running server
//! over a Unix socket, never to the spool file (redb allows one process, and the server owns the
//! queue's leases).
//!
//! One JSON request per line, one JSON answer per line. The socket is created mode 0600 in the
//! data directory; whoever can open it can administer the queue.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Subcommand;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use strictmx_delivery::runner::{QueueSettings, RunnerHandle, bounce_with_dsns};
use strictmx_delivery::watch::PostureWatch;
use strictmx_protocol::ErrorChain;
use strictmx_spool::{Spool, parse_id};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::audit_cmd::{self, AuditRequest};
use crate::bulk::{self, BulkAction};
use crate::explain::Question;
use crate::policy_cmd;
use crate::reload::Live;
use crate::selector::{self, Selector};
use crate::terminal::{escape, text};
use crate::tlsrpt_cmd::{self, TlsrptAction, TlsrptRequest};
use strictmx_tlsrpt::Reporter;

/// How long a client may take to send its request, and the server to answer (`explain` may
/// wait for DNS and an MTA-STS fetch, each with their own time limits below this).
const TIMEOUT: Duration = Duration::from_secs(120);
/// How long a transfer to another node may take (`queue xfer`, `drain`): many messages, each
/// within the transport's own SMTP time limits.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(3600);
/// Longest request line accepted.
const MAX_REQUEST: usize = 4096;

#[derive(Debug, Subcommand)]
pub enum QueueAction {
    /// Queued messages: id, age, size, sender, recipients and their states; every one, or those
    /// the filters select.
    List {
        #[command(flatten)]
        filter: Selector,
    },
    /// One message: envelope, recipient states, every delivery attempt.
    Show { id: String },
    /// Undelivered recipients by destination domain, with the oldest age and counts by age
    /// (like Postfix's qshape).
    Summary,
    /// Make a message, or every selected one, due now (also clears the destination backoff).
    Retry(Target),
    /// Keep a message's queued recipients out of delivery until released.
    Hold(Target),
    /// Put a held message back on the schedule, due now.
    Release(Target),
    /// Remove a message without delivering it and without a DSN.
    Delete(Target),
    /// Give up on a message now: its undelivered recipients bounce, with DSNs to the sender.
    Bounce(Target),
    /// Move a message, or every selected one, to another strictmx node over SMTP: each is
    /// removed here only once that node answered 250 for it (docs/operating.md, "Retiring a
    /// node"). That node must list this one in its trusted networks.
    Xfer {
        /// The other node's SMTP listener, HOST:PORT.
        #[arg(long, value_name = "HOST:PORT")]
        to: String,
        #[command(flatten)]
        target: Target,
    },
}

/// One message by id, or the messages a selector picks (then the count is shown and confirmed).
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The message's queue id.
    #[arg(conflicts_with_all = ["domain", "sender", "older_than", "all"])]
    pub id: Option<String>,
    #[command(flatten)]
    pub select: Selector,
    /// Act on the selected messages without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Every queued message, or those `filter` selects (when it has a filter).
    List {
        #[serde(default)]
        filter: Selector,
    },
    /// How many messages a selector matches now, and the first few.
    Select {
        selector: Selector,
    },
    /// `action` on every message `selector` matches that was received by `as_of_ms` (the time
    /// of the `Select` the administrator confirmed).
    Apply {
        action: BulkAction,
        selector: Selector,
        as_of_ms: u64,
    },
    /// Transfer the message `id`, or every message `selector` matches that was received by
    /// `as_of_ms`, to the node at `to`.
    Xfer {
        to: String,
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        selector: Selector,
        #[serde(default)]
        as_of_ms: u64,
    },
    /// `strictmx drain`: stop accepting, deliver what can be delivered now, transfer the rest
    /// to `to` when given, and exit once the queue is empty.
    Drain {
        #[serde(default)]
        to: Option<String>,
    },
    /// `queue summary`.
    Summary,
    Show {
        id: String,
    },
    Retry {
        id: String,
    },
    RetryAll,
    Hold {
        id: String,
    },
    Release {
        id: String,
    },
    Delete {
        id: String,
    },
    Bounce {
        id: String,
    },
    /// The plan a message to a domain would get now.
    Explain(Question),
    /// Re-read the configuration file and swap the policy.
    Reload,
    /// `strictmx tlsrpt preview|send`.
    Tlsrpt(TlsrptRequest),
    /// `strictmx policy changes`: destinations that weakened since `since_secs` ago.
    PolicyChanges {
        since_secs: u64,
        domain: Option<String>,
    },
    /// `strictmx shadow report`.
    Shadow(crate::shadow_cmd::ShadowRequest),
    /// `strictmx audit show|search`.
    Audit(AuditRequest),
}

/// The server side, bound before the server starts serving.
#[derive(Debug)]
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    spool: Spool,
    queue: QueueSettings,
    live: Arc<Live>,
    tlsrpt: Option<Reporter>,
    runner: Option<RunnerHandle>,
    watch: Option<Arc<PostureWatch>>,
}

impl Server {
    pub fn bind(
        path: &Path,
        spool: Spool,
        queue: QueueSettings,
        live: Arc<Live>,
    ) -> anyhow::Result<Server> {
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                bail!("another strictmx is already serving on this control socket");
            }
            std::fs::remove_file(path).context("removing a stale control socket")?;
        }
        let listener = bind_private(path)?;
        Ok(Server {
            listener,
            path: path.to_path_buf(),
            spool,
            queue,
            live,
            tlsrpt: None,
            runner: None,
            watch: None,
        })
    }

    /// Lets `queue retry` clear destination backoff and `queue list` show it.
    pub fn with_runner(mut self, runner: RunnerHandle) -> Server {
        self.runner = Some(runner);
        self
    }

    /// Answers `policy changes` and adds the destination's changes to `explain`.
    pub fn with_watch(mut self, watch: Arc<PostureWatch>) -> Server {
        self.watch = Some(watch);
        self
    }

    /// Answers `tlsrpt` requests with this reporter (without one, they are refused).
    pub fn with_tlsrpt(mut self, reporter: Option<Reporter>) -> Server {
        self.tlsrpt = reporter;
        self
    }

    pub async fn run(self, token: CancellationToken) {
        loop {
            let stream = tokio::select! {
                _ = token.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        warn!(error = %ErrorChain(&e), "control socket accept failed");
                        continue;
                    }
                },
            };
            let spool = self.spool.clone();
            let queue = self.queue.clone();
            let live = self.live.clone();
            let tlsrpt = self.tlsrpt.clone();
            let runner = self.runner.clone();
            let watch = self.watch.clone();
            tokio::spawn(answer(stream, spool, queue, live, tlsrpt, runner, watch));
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Bind the control socket so that it is never reachable with a looser mode than 0600: it is
/// bound inside a fresh 0700 directory beside `path`, given its mode there, then renamed into
/// place (the rename is atomic, and a bound socket keeps working under its new name).
fn bind_private(path: &Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the control socket's directory {}", dir.display()))?;
    let staging = dir.join(format!(".control-{}.d", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .with_context(|| format!("creating {}", staging.display()))?;
    let staged = staging.join("control.sock");
    let bound = UnixListener::bind(&staged)
        .map_err(anyhow::Error::from)
        .and_then(|listener| {
            std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
            std::fs::rename(&staged, path)?;
            Ok(listener)
        });
    let _ = std::fs::remove_dir_all(&staging);
    bound.with_context(|| format!("binding the control socket {}", path.display()))
}

async fn answer(
    stream: UnixStream,
    spool: Spool,
    queue: QueueSettings,
    live: Arc<Live>,
    tlsrpt: Option<Reporter>,
    runner: Option<RunnerHandle>,
    watch: Option<Arc<PostureWatch>>,
) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST as u64));
    let reply = match tokio::time::timeout(TIMEOUT, reader.read_line(&mut line)).await {
        Err(_) => {
            warn!("control request not received in time");
            return;
        }
        Ok(Err(e)) => json!({ "ok": false, "error": format!("cannot read the request: {e}") }),
        Ok(Ok(_)) => match serde_json::from_str::<Request>(&line) {
            Err(e) => json!({ "ok": false, "error": format!("malformed request: {e}") }),
            Ok(request) => {
                let limit = time_limit(&request);
                let executed = execute(
                    request,
                    &spool,
                    &queue,
                    &live,
                    tlsrpt.as_ref(),
                    runner.as_ref(),
                    watch.as_deref(),
                );
                match tokio::time::timeout(limit, executed).await {
                    Err(e) => {
                        warn!(error = %ErrorChain(&e), "control request timed out");
                        return;
                    }
                    Ok(Ok(result)) => json!({ "ok": true, "result": result }),
                    Ok(Err(e)) => json!({ "ok": false, "error": format!("{e:#}") }),
                }
            }
        },
    };
    let mut out = reply.to_string();
    out.push('\n');
    let _ = tokio::time::timeout(TIMEOUT, write.write_all(out.as_bytes())).await;
}

/// How long the server works on `request`, and the client waits for its answer.
fn time_limit(request: &Request) -> Duration {
    match request {
        Request::Xfer { .. } => TRANSFER_TIMEOUT,
        _ => TIMEOUT,
    }
}

async fn execute(
    request: Request,
    spool: &Spool,
    queue: &QueueSettings,
    live: &Live,
    tlsrpt: Option<&Reporter>,
    runner: Option<&RunnerHandle>,
    watch: Option<&PostureWatch>,
) -> anyhow::Result<Value> {
    let id = |text: &str| parse_id(text).with_context(|| format!("`{text}` is not a message id"));
    Ok(match request {
        Request::List { filter } => {
            let backoffs = match runner {
                Some(runner) => runner.backoffs().await,
                None => Vec::new(),
            };
            let entries = match filter.is_empty() {
                true => spool.list()?,
                false => bulk::selected(spool, &filter.matcher()?, SystemTime::now())?,
            };
            with_backoffs(serde_json::to_value(entries)?, &backoffs)
        }
        Request::Select { selector } => {
            let now = SystemTime::now();
            bulk::selection(&bulk::selected(spool, &selector.matcher()?, now)?, now)
        }
        Request::Apply {
            action,
            selector,
            as_of_ms,
        } => {
            let entries = bulk::selected(spool, &selector.matcher()?, bulk::as_of(as_of_ms))?;
            apply(action, &entries, spool, queue, runner).await
        }
        Request::Xfer {
            to,
            id: one,
            selector,
            as_of_ms,
        } => {
            let ids = match one {
                Some(text) => vec![id(&text)?],
                None => bulk::selected(spool, &selector.matcher()?, bulk::as_of(as_of_ms))?
                    .iter()
                    .map(|entry| entry.id)
                    .collect(),
            };
            serde_json::to_value(crate::xfer::transfer(spool, live.transport(), &to, &ids).await?)?
        }
        Request::Drain { to } => live.drain(to)?,
        Request::Summary => serde_json::to_value(selector::summary(&spool.list()?))?,
        Request::Show { id: text } => match spool.message(id(&text)?)? {
            Some(message) => serde_json::to_value(message)?,
            None => bail!("no message {text} in the queue"),
        },
        // An explicit retry overrides destination backoff for the domains it names. The backoff
        // goes first: otherwise the runner could see the retried recipients while their
        // destination is still backed off and put them back to its end.
        Request::Retry { id: text } => {
            let id = id(&text)?;
            let domains = spool.message(id)?.map(|m| recipient_domains(&m.envelope));
            let cleared = match (runner, domains) {
                (Some(runner), Some(domains)) => runner.clear_backoff(Some(domains)).await,
                _ => 0,
            };
            json!({ "recipients": spool.retry_now(id).await?, "backoffs_cleared": cleared })
        }
        Request::RetryAll => {
            let cleared = match runner {
                Some(runner) => runner.clear_backoff(None).await,
                None => 0,
            };
            json!({ "recipients": spool.retry_all().await?, "backoffs_cleared": cleared })
        }
        Request::Hold { id: text } => json!({ "recipients": spool.hold(id(&text)?).await? }),
        Request::Release { id: text } => json!({ "recipients": spool.release(id(&text)?).await? }),
        Request::Delete { id: text } => {
            let n = spool.delete(id(&text)?).await?;
            info!(msg_id = %text, "deleted by an administrator");
            json!({ "recipients": n })
        }
        Request::Bounce { id: text } => {
            let dsns = bounce_with_dsns(spool, id(&text)?, queue).await?;
            info!(msg_id = %text, dsns, "bounced by an administrator");
            json!({ "dsns": dsns })
        }
        Request::Explain(question) => {
            let explanation = live
                .transport()
                .explain(&question.domain, question.message_facts())
                .await;
            let mut value = serde_json::to_value(&explanation)?;
            if let Some(watch) = watch {
                policy_cmd::annotate(&mut value, watch, &explanation.domain).await?;
            }
            value
        }
        Request::PolicyChanges { since_secs, domain } => {
            let watch = watch.context("this server does not watch destination policies")?;
            policy_cmd::changes(watch, since_secs, domain.as_deref()).await?
        }
        Request::Reload => match live.reload() {
            Ok(done) => json!({ "reloaded": true, "changes": done }),
            Err(errors) => json!({ "reloaded": false, "errors": errors.to_string() }),
        },
        Request::Tlsrpt(request) => tlsrpt_cmd::handle(request, tlsrpt).await?,
        Request::Shadow(request) => crate::shadow_cmd::handle(&request, spool, live)?,
        Request::Audit(request) => {
            audit_cmd::handle(request, spool.clone(), live.cluster().cloned()).await?
        }
    })
}

/// A bulk action on each selected message; a message that left the queue since it was shown
/// (delivered, say) is counted as gone, not as a failure.
async fn apply(
    action: BulkAction,
    entries: &[strictmx_spool::QueueEntry],
    spool: &Spool,
    queue: &QueueSettings,
    runner: Option<&RunnerHandle>,
) -> Value {
    let (mut done, mut gone, mut recipients, mut dsns) = (0u64, 0u64, 0u64, 0u64);
    let mut failures = Vec::new();
    let mut domains: Vec<String> = Vec::new();
    if action == BulkAction::Retry {
        for entry in entries {
            domains.extend(
                entry
                    .recipients
                    .iter()
                    .filter_map(|r| strictmx_protocol::domain_of(&r.address))
                    .map(strictmx_protocol::ascii_domain),
            );
        }
        domains.sort();
        domains.dedup();
    }
    // As with a single retry, the backoff goes first so the runner sees the mail due at once.
    let cleared = match (action, runner) {
        (BulkAction::Retry, Some(runner)) => runner.clear_backoff(Some(domains)).await,
        _ => 0,
    };
    for entry in entries {
        let id = entry.id;
        let result = match action {
            BulkAction::Retry => spool.retry_now(id).await,
            BulkAction::Hold => spool.hold(id).await,
            BulkAction::Release => spool.release(id).await,
            BulkAction::Delete => spool.delete(id).await,
            BulkAction::Bounce => bounce_with_dsns(spool, id, queue).await.map(|n| {
                dsns += n as u64;
                entry
                    .recipients
                    .iter()
                    .filter(|r| !r.state.is_final())
                    .count()
            }),
        };
        match result {
            Ok(n) => {
                done += 1;
                recipients += n as u64;
            }
            Err(strictmx_spool::SpoolError::NotFound { .. }) => gone += 1,
            Err(e) => failures.push(json!({
                "id": strictmx_spool::MessageIdDisplay(id).to_string(),
                "error": format!("{:#}", anyhow::Error::from(e)),
            })),
        }
    }
    info!(
        action = action.as_str(),
        selected = entries.len(),
        done,
        gone,
        failed = failures.len(),
        "bulk queue operation"
    );
    json!({
        "done": done,
        "gone": gone,
        "failed": failures.len(),
        "recipients": recipients,
        "dsns": dsns,
        "backoffs_cleared": cleared,
        "failures": failures,
    })
}

/// The distinct recipient domains of a message, as delivery routes them (lowercase A-labels).
fn recipient_domains(envelope: &strictmx_spool::Envelope) -> Vec<String> {
    let mut domains: Vec<String> = envelope
        .recipients
        .iter()
        .filter_map(|r| strictmx_protocol::domain_of(&r.address))
        .map(strictmx_protocol::ascii_domain)
        .collect();
    domains.sort();
    domains.dedup();
    domains
}

/// `queue list`'s entries with, for each recipient whose destination is backed off, the time
/// the backoff ends (`destination_backoff_until`, milliseconds since the epoch).
fn with_backoffs(mut list: Value, backoffs: &[(String, std::time::SystemTime)]) -> Value {
    if backoffs.is_empty() {
        return list;
    }
    for entry in list.as_array_mut().into_iter().flatten() {
        for recipient in entry["recipients"].as_array_mut().into_iter().flatten() {
            let domain = recipient["address"]
                .as_str()
                .and_then(strictmx_protocol::domain_of)
                .map(str::to_ascii_lowercase);
            let until = backoffs
                .iter()
                .find(|(name, _)| Some(name) == domain.as_ref())
                .and_then(|(_, until)| until.duration_since(UNIX_EPOCH).ok());
            if let Some(until) = until {
                recipient["destination_backoff_until"] = json!(until.as_millis() as u64);
            }
        }
    }
    list
}

/// `strictmx queue ...`: one request to the running server, its answer printed.
pub fn run_client(socket: &Path, action: QueueAction, json_output: bool) -> ExitCode {
    let (action, target) = match action {
        QueueAction::List { filter } => {
            if let Err(e) = filter.matcher().map(drop).or_else(|e| match e {
                crate::selector::SelectorError::Empty => Ok(()),
                other => Err(other),
            }) {
                eprintln!("queue list: {e}");
                return ExitCode::from(64);
            }
            return run_request(socket, Request::List { filter }, json_output);
        }
        QueueAction::Show { id } => return run_request(socket, Request::Show { id }, json_output),
        QueueAction::Summary => return run_request(socket, Request::Summary, json_output),
        QueueAction::Retry(target) => (BulkAction::Retry, target),
        QueueAction::Hold(target) => (BulkAction::Hold, target),
        QueueAction::Release(target) => (BulkAction::Release, target),
        QueueAction::Delete(target) => (BulkAction::Delete, target),
        QueueAction::Bounce(target) => (BulkAction::Bounce, target),
        QueueAction::Xfer { to, target } => {
            return crate::xfer::run_client(socket, to, target, json_output);
        }
    };
    let Some(id) = target.id else {
        return bulk::run(socket, action, target.select, target.yes, json_output);
    };
    let request = match action {
        BulkAction::Retry => Request::Retry { id },
        BulkAction::Hold => Request::Hold { id },
        BulkAction::Release => Request::Release { id },
        BulkAction::Delete => Request::Delete { id },
        BulkAction::Bounce => Request::Bounce { id },
    };
    run_request(socket, request, json_output)
}

/// `strictmx tlsrpt ...`: one request to the running server, its answer printed.
pub fn run_tlsrpt(socket: &Path, action: TlsrptAction, json_output: bool) -> ExitCode {
    run_request(socket, Request::Tlsrpt(action.into()), json_output)
}

/// One request to the running server; its result, or `None` once the failure was printed.
pub(crate) fn ask_or_report(socket: &Path, request: &Request) -> Option<Value> {
    let answer = block_on(ask(socket, request)).ok()?;
    match answer {
        Err(e) => {
            eprintln!("{e:#}");
            None
        }
        Ok(v) if v["ok"] == true => Some(v["result"].clone()),
        Ok(v) => {
            eprintln!(
                "{}",
                v["error"]
                    .as_str()
                    .unwrap_or("the server refused the request")
            );
            None
        }
    }
}

/// One request to the running server, its result printed (JSON or the request's rendering).
pub(crate) fn run_request(socket: &Path, request: Request, json_output: bool) -> ExitCode {
    let Some(result) = ask_or_report(socket, &request) else {
        return ExitCode::FAILURE;
    };
    if json_output {
        println!(
            "{}",
            serde_json::to_string_pretty(&result).unwrap_or_default()
        );
    } else {
        print!("{}", render(&request, &result));
    }
    ExitCode::SUCCESS
}

fn block_on<T>(work: impl Future<Output = T>) -> Result<T, ExitCode> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Ok(rt.block_on(work)),
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// `strictmx reload`: the server re-reads its file; its errors are printed and exit with 64.
pub fn run_reload(socket: &Path) -> ExitCode {
    let answer = match block_on(ask(socket, &Request::Reload)) {
        Ok(answer) => answer,
        Err(code) => return code,
    };
    let result = match answer {
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::FAILURE;
        }
        Ok(v) if v["ok"] == true => v["result"].clone(),
        Ok(v) => {
            eprintln!("{}", text(&v["error"]));
            return ExitCode::FAILURE;
        }
    };
    if result["reloaded"] != true {
        eprintln!("{}", text(&result["errors"]));
        eprintln!("reload refused: the server keeps running on its current configuration");
        return ExitCode::from(crate::EXIT_CONFIG);
    }
    let changes = &result["changes"];
    for w in changes["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", text(w));
    }
    let changed = changes["changed"].as_array().cloned().unwrap_or_default();
    if changed.is_empty() {
        println!("reloaded: nothing changed");
    }
    for c in &changed {
        println!("reloaded: {}", text(c));
    }
    let restart = changes["restart_needed"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !restart.is_empty() {
        let names: Vec<String> = restart.iter().map(text).collect();
        println!(
            "changed but only applied after a restart: {}",
            names.join(", ")
        );
    }
    ExitCode::SUCCESS
}

/// The result of `request` from the running server, or `None` when no server listens on
/// `socket` (nothing there, or a stale socket file).
pub async fn ask_if_serving(socket: &Path, request: &Request) -> anyhow::Result<Option<Value>> {
    let stream = match UnixStream::connect(socket).await {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => {
            return Err(e).with_context(|| format!("connecting to {}", socket.display()));
        }
    };
    let v = exchange(stream, request).await?;
    if v["ok"] == true {
        Ok(Some(v["result"].clone()))
    } else {
        bail!("the server refused the request: {}", text(&v["error"]))
    }
}

async fn ask(socket: &Path, request: &Request) -> anyhow::Result<Value> {
    let stream = UnixStream::connect(socket).await.with_context(|| {
        format!(
            "cannot reach the server's control socket {} (is `strictmx serve` running with this configuration?)",
            socket.display()
        )
    })?;
    exchange(stream, request).await
}

async fn exchange(stream: UnixStream, request: &Request) -> anyhow::Result<Value> {
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    write.write_all(line.as_bytes()).await?;
    let mut answer = String::new();
    tokio::time::timeout(
        time_limit(request),
        BufReader::new(read).read_line(&mut answer),
    )
    .await
    .context("the server did not answer in time")??;
    serde_json::from_str(&answer).context("the server's answer is not JSON")
}

fn render(request: &Request, result: &Value) -> String {
    match request {
        Request::List { .. } => render_list(result),
        Request::Summary => render_summary(result),
        Request::PolicyChanges { .. } => policy_cmd::render(result),
        Request::Show { .. } => render_show(result),
        Request::Bounce { .. } => format!("bounced; {} DSN(s) queued\n", result["dsns"]),
        Request::Explain(_) | Request::Reload => format!("{}\n", text(result)),
        Request::Xfer { .. } => crate::xfer::render(result),
        Request::Drain { .. } => match result["to"].as_str() {
            Some(to) => format!(
                "draining: no new mail; delivering what can be delivered now, the rest goes to {}; the server exits once its queue is empty\n",
                crate::terminal::escape(to)
            ),
            None => "draining: no new mail; delivering what can be delivered now; the server exits once its queue is empty\n".to_owned(),
        },
        Request::Tlsrpt(request) => tlsrpt_cmd::render(request, result),
        Request::Audit(request) => audit_cmd::render(request, result),
        Request::Retry { .. } | Request::RetryAll => format!(
            "{} recipient(s) due now; {} destination backoff(s) cleared\n",
            result["recipients"],
            result["backoffs_cleared"].as_u64().unwrap_or(0)
        ),
        _ => format!("{} recipient(s) affected\n", result["recipients"]),
    }
}

/// `queue summary` as a table: one row per destination domain (TOTAL first), the oldest age,
/// then recipients by message age.
fn render_summary(result: &Value) -> String {
    let rows = result.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return "the queue is empty\n".to_owned();
    }
    let mut heading = format!(
        "{:<32} {:>6} {:>5} {:>10}",
        "DOMAIN", "RCPTS", "HELD", "OLDEST"
    );
    for bound in selector::AGE_BUCKETS_MINUTES {
        heading.push_str(&format!(" {:>6}", format!("<{bound}m")));
    }
    heading.push_str(&format!(" {:>6}\n", "older"));
    let mut out = heading;
    for row in &rows {
        let oldest = Duration::from_secs(row["oldest_secs"].as_u64().unwrap_or(0));
        out.push_str(&format!(
            "{:<32} {:>6} {:>5} {:>10}",
            text(&row["domain"]),
            row["recipients"],
            row["held"],
            short_age(oldest),
        ));
        for count in row["by_age"].as_array().into_iter().flatten() {
            out.push_str(&format!(" {count:>6}"));
        }
        out.push('\n');
    }
    out
}

/// An age in its two largest units: `45s`, `12m`, `3h05m`, `2d04h`.
fn short_age(age: Duration) -> String {
    let secs = age.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// Why a queued recipient waits: the next attempt, its destination's backoff, the last reply.
fn waiting_reason(recipient: &Value) -> String {
    let state = &recipient["state"];
    let mut parts = vec![text(&state["state"])];
    if let Some(ms) = state["next_attempt"].as_u64() {
        parts.push(format!("next {}", time_millis(ms)));
    }
    if let Some(ms) = recipient["destination_backoff_until"].as_u64() {
        parts.push(format!("destination backed off until {}", time_millis(ms)));
    }
    if let Some(reply) = state["last_reply"].as_str() {
        parts.push(format!("last: {}", escape(reply)));
    }
    parts.join("; ")
}

fn render_list(result: &Value) -> String {
    let entries = result.as_array().cloned().unwrap_or_default();
    let mut out = format!(
        "{:<16}  {:>8}  {:>9}  {:<5}  {}\n",
        "ID", "AGE", "SIZE", "HELD", "SENDER -> RECIPIENTS (STATE)"
    );
    for e in &entries {
        let rcpts: Vec<String> = e["recipients"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|r| format!("{} ({})", text(&r["address"]), waiting_reason(r)))
                    .collect()
            })
            .unwrap_or_default();
        let sender = match text(&e["sender"]) {
            s if s.is_empty() => "<>".to_string(),
            s => s,
        };
        out.push_str(&format!(
            "{:<16}  {:>8}  {:>9}  {:<5}  {} -> {}\n",
            text(&e["id"]),
            humantime::format_duration(Duration::from_secs(e["age"].as_u64().unwrap_or(0)))
                .to_string(),
            e["size"],
            if e["held"] == true { "yes" } else { "no" },
            sender,
            rcpts.join(", ")
        ));
    }
    out.push_str(&format!("{} message(s)\n", entries.len()));
    out
}

fn render_show(m: &Value) -> String {
    let env = &m["envelope"];
    let mut out = format!(
        "id:        {}\nfrom:      <{}>\nreceived:  {} from {} (helo {})\nsize:      {}\n",
        text(&m["id"]),
        text(&env["mail_from"]),
        time_secs(&env["received_at"]),
        text(&env["client"]["ip"]),
        text(&env["client"]["helo"]),
        m["size"],
    );
    out.push_str("recipients:\n");
    let states = m["states"].as_array().cloned().unwrap_or_default();
    for (r, s) in env["recipients"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .zip(&states)
    {
        out.push_str(&format!("  {}: {}", text(&r["address"]), text(&s["state"])));
        for key in ["attempts", "mx", "reply", "status", "last_reply"] {
            if !s[key].is_null() {
                // The JSON form keeps replies quoted; escaped like every peer-supplied text.
                out.push_str(&format!(", {key} {}", escape(&s[key].to_string())));
            }
        }
        if let Some(ms) = s["next_attempt"].as_u64() {
            out.push_str(&format!(", next attempt {}", time_millis(ms)));
        }
        out.push('\n');
    }
    out.push_str("attempts:\n");
    for a in m["attempts"].as_array().cloned().unwrap_or_default() {
        out.push_str(&format!(
            "  {}  {}  mx={} ip={} tls={} cipher={} verified={} auth={} policy={}{}{} requirement={}{} -> {} ({} ms): {}\n",
            a["at"].as_u64().map(time_millis).unwrap_or_default(),
            text(&a["domain"]),
            or_dash(&a["mx"]),
            or_dash(&a["ip"]),
            or_dash(&a["tls_version"]),
            or_dash(&a["cipher"]),
            or_dash(&a["cert_verified"]),
            text(&a["auth"]),
            text(&a["policy"]),
            match rule_names(&a["rules"]) {
                r if r.is_empty() => String::new(),
                r => format!(" rules={r}"),
            },
            crate::shadow_cmd::attempt_notes(&a),
            or_dash(&a["requirement"]),
            match text(&a["result_type"]) {
                r if r.is_empty() => String::new(),
                r => format!(" result={r}"),
            },
            text(&a["outcome"]),
            a["duration_ms"],
            text(&a["reply"]),
        ));
    }
    out
}

/// The matching rules of an attempt, comma-separated; empty for none (and old records).
fn rule_names(v: &Value) -> String {
    v.as_array()
        .map(|names| names.iter().map(text).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

fn or_dash(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        other => text(other),
    }
}

fn time_secs(v: &Value) -> String {
    v.as_u64()
        .map(|s| time_millis(s * 1000))
        .unwrap_or_default()
}

fn time_millis(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_travel_as_tagged_json() {
        let r = serde_json::to_string(&Request::Hold {
            id: "00000000000000ab".into(),
        })
        .unwrap();
        assert_eq!(r, r#"{"op":"hold","id":"00000000000000ab"}"#);
        assert!(matches!(
            serde_json::from_str::<Request>(r#"{"op":"retry_all"}"#),
            Ok(Request::RetryAll)
        ));
        assert!(serde_json::from_str::<Request>(r#"{"op":"format_disk"}"#).is_err());
    }

    #[test]
    fn queue_show_escapes_what_peers_wrote() {
        let hostile = "evil\u{1b}[2J\r\nattempts:\n  fake";
        let m = json!({
            "id": "00000000000000ab",
            "size": 10,
            "envelope": {
                "mail_from": hostile,
                "received_at": 0,
                "client": {"ip": "192.0.2.1", "helo": hostile},
                "recipients": [{"address": hostile}],
            },
            "states": [{"state": "queued", "last_reply": hostile}],
            "attempts": [{"at": 0, "domain": "d.test", "mx": hostile, "auth": "none",
                "policy": "route", "outcome": "deferred", "duration_ms": 1,
                "reply": format!("421 {hostile}\u{9b}")}],
        });
        let shown = render_show(&m);
        assert!(!shown.contains(['\u{1b}', '\r', '\u{9b}']), "{shown:?}");
        assert!(
            shown.contains("(helo evil\\u{1b}[2J\\r\\nattempts:\\n  fake)"),
            "{shown}"
        );
        // Only the lines the renderer writes: the header, one recipient, one attempt.
        assert_eq!(
            shown.lines().filter(|l| l.starts_with("attempts:")).count(),
            1
        );
        assert_eq!(shown.lines().count(), 8, "{shown}");
    }

    #[test]
    fn queue_show_names_the_rules_an_attempt_ran_under() {
        let attempt = |rules: Value| {
            json!({
                "id": "00000000000000ab", "size": 1,
                "envelope": {"mail_from": "a@b.test", "received_at": 0,
                    "client": {"ip": "192.0.2.1", "helo": "h"}, "recipients": []},
                "states": [],
                "attempts": [{"at": 0, "domain": "bank.test", "mx": "mx.bank.test",
                    "auth": "dane", "policy": "rule", "rules": rules, "outcome": "delivered",
                    "duration_ms": 1, "reply": "250 ok"}],
            })
        };
        let shown = render_show(&attempt(json!(["bank-dane-only", "resets"])));
        assert!(
            shown.contains("policy=rule rules=bank-dane-only,resets requirement="),
            "{shown}"
        );
        // Records written before rules were recorded have none.
        let shown = render_show(&attempt(Value::Null));
        assert!(shown.contains("policy=rule requirement="), "{shown}");
    }

    #[test]
    fn the_summary_shows_ages_in_their_two_largest_units() {
        let rows = [
            (45, "45s"),
            (720, "12m"),
            (3 * 3600 + 300, "3h05m"),
            (2 * 86_400 + 4 * 3600, "2d04h"),
        ];
        for (secs, shown) in rows {
            assert_eq!(short_age(Duration::from_secs(secs)), shown);
        }
        let table = render_summary(&json!([
            {"domain": "TOTAL", "recipients": 2, "held": 0, "oldest_secs": 90, "by_age": [2, 0, 0, 0, 0, 0, 0, 0, 0]},
            {"domain": "dead.example\u{1b}[2J", "recipients": 2, "held": 0, "oldest_secs": 90, "by_age": [2, 0, 0, 0, 0, 0, 0, 0, 0]},
        ]));
        assert!(table.starts_with("DOMAIN"), "{table}");
        assert!(table.contains("dead.example\\u{1b}[2J"), "{table}");
        assert_eq!(table.lines().count(), 3, "{table}");
    }

    #[test]
    fn a_bare_list_request_still_lists_everything() {
        assert!(matches!(
            serde_json::from_str::<Request>(r#"{"op":"list"}"#),
            Ok(Request::List { filter }) if filter.is_empty()
        ));
    }

    #[test]
    fn attempt_times_render_as_rfc3339() {
        assert_eq!(time_millis(0), "1970-01-01T00:00:00Z");
        assert_eq!(time_millis(1_700_000_000_123), "2023-11-14T22:13:20Z");
    }
}
