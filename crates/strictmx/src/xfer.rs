//! `strictmx queue xfer --to HOST:PORT`, and the transfer step of `serve --drain --to`: the
//! server leases the selected messages (the queue runner leaves them alone meanwhile), hands
//! them to the other strictmx node (`Transport::transfer`) and removes each recipient only
//! once the other node answered `250` for the message.
//!
//! Recipients the other node refused stay queued here, on their schedule: the other node is
//! not their destination, so its refusal says nothing about them, and bouncing them would lose
//! mail over a configuration mistake. A crash between the other node's `250` and the local
//! removal leaves the message queued here; sent again, it carries the same transfer id and
//! the other node answers `250` without queueing it twice.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, bail};
use serde::Serialize;
use strictmx_delivery::transport::{TransferMessage, TransferOutcome};
use strictmx_protocol::ErrorChain;
use strictmx_spool::{MessageId, MessageIdDisplay, RecipientState, RecipientUpdate, Spool};
use tracing::{error, info, warn};

use crate::control::{Request, Target};
use crate::reload::ServerTransport;
use crate::selector::Selector;

/// How many messages go over one connection before the next batch is leased.
const BATCH: usize = 50;

/// What a transfer did, for the client and the drain's log.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub to: String,
    /// Messages the other node took (all their leased recipients, or some).
    pub moved: u64,
    /// Recipients the other node took.
    pub recipients: u64,
    /// Messages not sent, each with why; they stay queued here.
    pub kept: Vec<Kept>,
    /// Recipients the other node refused; they stay queued here.
    pub refused: Vec<Refused>,
    /// Messages without a recipient free to move (held, or being delivered right now).
    pub busy: u64,
    /// Why the transfer stopped early, when it did; what was not sent stays queued here.
    pub stopped: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Kept {
    pub id: String,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct Refused {
    pub id: String,
    pub recipient: String,
    pub reply: String,
}

/// The other node's address and the name to check its certificate against, from `HOST:PORT`
/// (`[IPv6]:PORT` for an IPv6 literal).
async fn peer(to: &str) -> anyhow::Result<(String, SocketAddr)> {
    let host = check_peer(to)?;
    let addr = tokio::net::lookup_host(to)
        .await
        .with_context(|| format!("cannot resolve {to}"))?
        .next()
        .with_context(|| format!("{to} has no address"))?;
    Ok((host.to_owned(), addr))
}

/// The host part of `HOST:PORT`, or why `to` is not of that form.
pub fn check_peer(to: &str) -> anyhow::Result<&str> {
    match to.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(host)
        }
        _ => bail!("--to {to:?} is not HOST:PORT"),
    }
}

/// Transfers the messages `ids` (those still queued) to the node at `to`.
pub async fn transfer(
    spool: &Spool,
    transport: &Arc<ServerTransport>,
    to: &str,
    ids: &[MessageId],
) -> anyhow::Result<Summary> {
    let (name, addr) = peer(to).await?;
    if transport.settings().own_listeners.contains(&addr) {
        bail!("{to} is this node's own listener");
    }
    let mut summary = Summary {
        to: to.to_owned(),
        ..Summary::default()
    };
    for chunk in ids.chunks(BATCH) {
        let batch = lease(spool, chunk, &mut summary);
        if batch.is_empty() {
            continue;
        }
        match transport.transfer(&name, addr, &batch).await {
            Ok(outcomes) => {
                for (message, (_, outcome)) in batch.iter().zip(outcomes) {
                    settle(spool, to, message, outcome, &mut summary).await;
                }
            }
            Err(e) => {
                for message in &batch {
                    spool.release_leases(message.id, &message.recipients);
                }
                let reason = format!("{}", ErrorChain(&e));
                warn!(to, error = %reason, "transfer stopped; the messages stay queued here");
                summary.stopped = Some(reason);
                break;
            }
        }
    }
    info!(
        to,
        moved = summary.moved,
        recipients = summary.recipients,
        kept = summary.kept.len(),
        refused = summary.refused.len(),
        busy = summary.busy,
        "transfer to another node done"
    );
    Ok(summary)
}

/// Leases the free recipients of each message and reads its body.
fn lease(spool: &Spool, ids: &[MessageId], summary: &mut Summary) -> Vec<TransferMessage> {
    let mut batch = Vec::with_capacity(ids.len());
    for &id in ids {
        let leased = match spool.lease_for_transfer(id) {
            Ok(Some(leased)) => leased,
            Ok(None) => {
                summary.busy += 1;
                continue;
            }
            Err(e) => {
                summary.kept.push(kept(id, format!("{}", ErrorChain(&e))));
                continue;
            }
        };
        let recipients: Vec<usize> = leased.recipients.iter().map(|r| r.index).collect();
        match spool.body(id) {
            Ok(body) => batch.push(TransferMessage {
                id,
                transfer_id: spool.transfer_id(id),
                envelope: leased.envelope,
                recipients,
                body: Arc::new(body),
            }),
            Err(e) => {
                spool.release_leases(id, &recipients);
                summary.kept.push(kept(id, format!("{}", ErrorChain(&e))));
            }
        }
    }
    batch
}

/// Removes what the other node took, gives back the leases of the rest.
async fn settle(
    spool: &Spool,
    to: &str,
    message: &TransferMessage,
    outcome: TransferOutcome,
    summary: &mut Summary,
) {
    let id = message.id;
    let msg_id = MessageIdDisplay(id).to_string();
    let (accepted, refused, reply, record) = match outcome {
        TransferOutcome::Kept { reason } => {
            spool.release_leases(id, &message.recipients);
            warn!(msg_id = %msg_id, to, reason = %reason, outcome = "kept", "message not transferred; it stays queued here");
            summary.kept.push(Kept { id: msg_id, reason });
            return;
        }
        TransferOutcome::Taken {
            accepted,
            refused,
            reply,
            record,
        } => (accepted, refused, reply, record),
    };
    let refused_indexes: Vec<usize> = refused.iter().map(|(i, _)| *i).collect();
    spool.release_leases(id, &refused_indexes);
    for (index, reply) in refused {
        let recipient = message
            .envelope
            .recipients
            .get(index)
            .map(|r| r.address.clone())
            .unwrap_or_default();
        summary.refused.push(Refused {
            id: msg_id.clone(),
            recipient,
            reply,
        });
    }
    let now = SystemTime::now();
    let updates: Vec<RecipientUpdate> = accepted
        .iter()
        .map(|&index| RecipientUpdate {
            index,
            state: RecipientState::Delivered {
                at: now,
                mx: format!("{to} (transferred)"),
                reply: reply.clone(),
            },
        })
        .collect();
    let count = updates.len() as u64;
    if let Err(e) = spool.record(id, updates, vec![*record]).await {
        // The other node has the message; a later transfer is answered 250 there without a
        // second copy. Delivering it from here would duplicate it: say so.
        error!(msg_id = %msg_id, to, error = %ErrorChain(&e), "the other node took the message but it could not be removed here: transfer it again rather than let it be delivered from here");
        summary.kept.push(kept(
            id,
            format!("taken by {to}, but not removed here: {}", ErrorChain(&e)),
        ));
        return;
    }
    info!(msg_id = %msg_id, to, rcpt_count = count, reply = %reply, outcome = "transferred", "message transferred to another node");
    summary.moved += 1;
    summary.recipients += count;
}

fn kept(id: MessageId, reason: String) -> Kept {
    Kept {
        id: MessageIdDisplay(id).to_string(),
        reason,
    }
}

/// `strictmx queue xfer --to HOST:PORT (ID | --domain/--sender/--older-than/--all) [--yes]`:
/// like the bulk commands, the count is shown and confirmed before anything moves. Exits 1
/// when anything selected stayed here.
pub fn run_client(socket: &Path, to: String, target: Target, json_output: bool) -> ExitCode {
    let request = match target.id {
        Some(id) => Request::Xfer {
            to,
            id: Some(id),
            selector: Selector::default(),
            as_of_ms: 0,
        },
        None => {
            if let Err(e) = target.select.matcher() {
                eprintln!("queue xfer: {e}");
                return ExitCode::from(crate::EXIT_CONFIG);
            }
            let select = Request::Select {
                selector: target.select.clone(),
            };
            let Some(found) = crate::control::ask_or_report(socket, &select) else {
                return ExitCode::FAILURE;
            };
            let count = found["count"].as_u64().unwrap_or(0);
            if count == 0 {
                println!("no queued message matches");
                return ExitCode::SUCCESS;
            }
            if !target.yes {
                eprint!("{}", crate::bulk::describe(&found));
                if !crate::bulk::confirmed(&format!("transfer to {to}"), count) {
                    eprintln!("nothing done");
                    return ExitCode::FAILURE;
                }
            }
            Request::Xfer {
                to,
                id: None,
                selector: target.select,
                as_of_ms: found["as_of_ms"].as_u64().unwrap_or(0),
            }
        }
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
        print!("{}", render(&done));
    }
    let left = |key: &str| done[key].as_array().is_some_and(|a| !a.is_empty());
    if !done["stopped"].is_null() || left("kept") || left("refused") {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `queue xfer`'s result as text.
pub fn render(result: &serde_json::Value) -> String {
    use crate::terminal::text;
    let mut out = format!(
        "transferred to {}: {} message(s), {} recipient(s)",
        text(&result["to"]),
        result["moved"],
        result["recipients"]
    );
    if let Some(busy) = result["busy"].as_u64().filter(|n| *n > 0) {
        out.push_str(&format!(
            "; {busy} message(s) skipped (held, or being delivered now)"
        ));
    }
    out.push('\n');
    if let Some(stopped) = result["stopped"].as_str() {
        out.push_str(&format!(
            "stopped: {}; the rest stays queued here\n",
            crate::terminal::escape(stopped)
        ));
    }
    for kept in result["kept"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  kept {}: {}\n",
            text(&kept["id"]),
            text(&kept["reason"])
        ));
    }
    for refused in result["refused"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  refused {} <{}>: {} (stays queued here)\n",
            text(&refused["id"]),
            text(&refused["recipient"]),
            text(&refused["reply"])
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_other_node_is_given_as_host_and_port() {
        let rows = [
            ("mx2.example:25", Some("mx2.example")),
            ("127.0.0.1:2525", Some("127.0.0.1")),
            ("[::1]:25", Some("[::1]")),
            ("mx2.example", None),
            (":25", None),
            ("mx2.example:0", None),
            ("mx2.example:smtp", None),
            ("mx2.example:70000", None),
        ];
        for (to, host) in rows {
            assert_eq!(check_peer(to).ok(), host, "{to}");
        }
    }
}
