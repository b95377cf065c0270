//! The answer to `GET /v1/messages/{id}`: each recipient's state and receipt, from the queue
//! while it is there and from the audit trail once it is final. Only the token that submitted
//! a message may see it. Reads the spool; the HTTP side is `server`'s.

use serde_json::{Value, json};
use strictmx_spool::{AuditRecord, MessageId, Spool, SpoolError, StoredMessage, format_id};

/// The message's status as `token` may see it; `None` when there is none, or it is another
/// submitter's.
pub(crate) fn view(spool: &Spool, id: MessageId, token: &str) -> Result<Option<Value>, SpoolError> {
    let live = spool.message(id)?;
    let audit = spool.audit_by_queue_id(id)?;
    let mine = |user: &Option<String>| user.as_deref() == Some(token);
    let live = live.filter(|m| mine(&m.envelope.client.auth_user));
    let audit: Vec<AuditRecord> = audit
        .into_iter()
        .filter(|r| mine(&r.submitter.auth_user))
        .collect();
    if live.is_none() && audit.is_empty() {
        return Ok(None);
    }
    Ok(Some(render(id, live.as_ref(), &audit)))
}

fn render(id: MessageId, live: Option<&StoredMessage>, audit: &[AuditRecord]) -> Value {
    let mut recipients = Vec::new();
    match live {
        Some(message) => {
            for (index, (rcpt, state)) in message
                .envelope
                .recipients
                .iter()
                .zip(&message.states)
                .enumerate()
            {
                let finished = audit.iter().find(|r| r.index as usize == index);
                recipients.push(match finished {
                    Some(record) => from_audit(record),
                    None => queued(message, index, &rcpt.address, state),
                });
            }
        }
        None => recipients.extend(audit.iter().map(from_audit)),
    }
    let sender = live.map_or_else(
        || audit.first().map(|r| r.sender.clone()).unwrap_or_default(),
        |m| m.envelope.mail_from.clone(),
    );
    json!({
        "id": format_id(id),
        "in_queue": live.is_some(),
        "from": sender,
        "recipients": recipients,
    })
}

/// A recipient still queued: its state, and the attempts that concerned it (each with the
/// security the host offered and why it failed).
fn queued(
    message: &StoredMessage,
    index: usize,
    address: &str,
    state: &strictmx_spool::RecipientState,
) -> Value {
    let attempts: Vec<&strictmx_spool::AttemptRecord> = message
        .attempts
        .iter()
        .filter(|a| a.recipients.contains(&index))
        .collect();
    let mut state = serde_json::to_value(state).unwrap_or(Value::Null);
    let name = state
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or("queued")
        .to_owned();
    if let Value::Object(fields) = &mut state {
        fields.remove("state");
    }
    json!({
        "address": address,
        "state": name,
        "detail": state,
        "require_tls": message.envelope.require_tls.map(|f| f.as_str()),
        "requiretls": message.envelope.params.requiretls,
        "attempts": attempts,
    })
}

/// A recipient that left the queue: its audit record, receipt included.
fn from_audit(record: &AuditRecord) -> Value {
    json!({
        "address": record.recipient,
        "state": record.outcome.as_str(),
        "status": record.status,
        "reply": record.reply,
        "receipt": record.receipt,
        "require_tls": record.require_tls.map(|f| f.as_str()),
        "requiretls": record.requiretls,
        "attempts": record.attempts,
    })
}
