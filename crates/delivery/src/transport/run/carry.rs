//! Carrying the queued messages over an established session: RSET between transactions, one
//! transaction per message, and what its replies mean (`outcome`) written into each message's
//! recipients and attempt records.

use std::collections::VecDeque;

use strictmx_protocol::{ErrorChain, is_8bit, needs_smtputf8};
use strictmx_spool::AttemptOutcome;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Established;
use crate::job::{Diagnostic, RecipientOutcome};
use crate::transport::Transport;
use crate::transport::attempt::{AttemptScope, record_attempt};
use crate::transport::error::TransportError;
use crate::transport::facts::FactSource;
use crate::transport::idle::Spare;
use crate::transport::outcome::{self, Verdict};
use crate::transport::pending::{Pending, fail_message};
use crate::transport::session::{MailSession, Outgoing};

/// How `carry` left the host.
pub(super) enum Carried {
    /// Go on with the queue on a new connection (limit reached, or RSET failed).
    Again,
    /// Leave this host: the messages left were failed over to the next one.
    Left,
    /// The queue is empty and the session can take more.
    Spare(Box<Spare<Established>>),
}

/// Sends queued messages over `session`, which already carried `sent`.
pub(super) async fn carry<F: FactSource>(
    transport: &Transport<F>,
    session: Established,
    scope: &AttemptScope,
    host: &str,
    sent: usize,
    queue: &mut VecDeque<usize>,
    pending: &mut [Pending<'_>],
) -> Carried {
    let spare = |session, sent| {
        Carried::Spare(Box::new(Spare {
            session,
            scope: scope.clone(),
            sent,
        }))
    };
    match session {
        Established::Plain(session) => {
            match use_session(transport, session, scope, host, sent, queue, pending).await {
                SessionEnd::Again => Carried::Again,
                SessionEnd::Leave => Carried::Left,
                SessionEnd::Spare(session, sent) => spare(Established::Plain(session), sent),
            }
        }
        Established::Tls(session) => {
            match use_session(transport, *session, scope, host, sent, queue, pending).await {
                SessionEnd::Again => Carried::Again,
                SessionEnd::Leave => Carried::Left,
                SessionEnd::Spare(session, sent) => {
                    spare(Established::Tls(Box::new(session)), sent)
                }
            }
        }
    }
}

/// How `use_session` left the session.
enum SessionEnd<S> {
    /// Go on with the queue on a new connection (limit reached, or RSET failed).
    Again,
    /// Leave this host: the messages left were failed over to the next one.
    Leave,
    /// The queue is empty and the session can carry more: a spare, with its message count.
    Spare(MailSession<S>, usize),
}

/// Sends queued messages over one session that already carried `sent`, up to the
/// per-connection limit. Leaves the host on 421 or a lost connection (the messages left go to
/// the next host); hands the session back when the queue ran out first.
async fn use_session<F: FactSource, S: AsyncRead + AsyncWrite + Unpin>(
    transport: &Transport<F>,
    mut session: MailSession<S>,
    scope: &AttemptScope,
    host: &str,
    mut sent: usize,
    queue: &mut VecDeque<usize>,
    pending: &mut [Pending<'_>],
) -> SessionEnd<S> {
    let limit = transport.settings.max_messages_per_connection.max(1);
    // A session that carried mail before this job (a spare) is reset first: that is also the
    // check that the server still listens.
    let mut reset = sent > 0;
    while sent < limit {
        let Some(index) = queue.pop_front() else {
            return SessionEnd::Spare(session, sent);
        };
        // RFC 5321 §4.1.1.5: RSET when a transaction may be open. One that got its reply to
        // the end of the data is over, whatever the reply said (§3.3, §4.1.1.4), and the next
        // MAIL starts afresh without a round trip.
        sent += 1;
        match send_one(&mut session, scope, host, &mut pending[index], reset).await {
            Ok(Sent::Open { reset_next }) => reset = reset_next,
            Ok(Sent::ResetFailed(error)) => {
                tracing::debug!(mx = host, error = %ErrorChain(&error), "rset failed: new connection");
                queue.push_front(index);
                return SessionEnd::Again;
            }
            Ok(Sent::Closing) => {
                let failure =
                    outcome::left_host(host, "the server is closing the connection".into());
                leave_host(scope, queue, pending, &failure);
                Box::pin(session.quit()).await;
                return SessionEnd::Leave;
            }
            Err(error) => {
                let failure = outcome::failure_from(host, &error);
                fail_message(scope, &mut pending[index], &failure);
                let left = outcome::left_host(host, ErrorChain(&error).to_string());
                leave_host(scope, queue, pending, &left);
                return SessionEnd::Leave;
            }
        }
    }
    // Boxed: closing is rare beside sending, and its future is large.
    Box::pin(session.quit()).await;
    SessionEnd::Again
}

/// The messages still queued for this host go to the next one.
fn leave_host(
    scope: &AttemptScope,
    queue: &mut VecDeque<usize>,
    pending: &mut [Pending<'_>],
    failure: &outcome::Failure,
) {
    for index in queue.drain(..) {
        fail_message(scope, &mut pending[index], failure);
    }
}

/// Whether the session can take another transaction after one message.
enum Sent {
    /// It can; `reset_next` when the transaction may have been left open (MAIL accepted, no
    /// reply to the end of the data), so that the next one must start with RSET.
    Open { reset_next: bool },
    /// The server said 421: it is closing the connection.
    Closing,
    /// The RSET before the message failed: nothing of it was taken, and the session is not
    /// to be used again.
    ResetFailed(TransportError),
}

/// One message over an established session.
async fn send_one<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut MailSession<S>,
    scope: &AttemptScope,
    host: &str,
    message: &mut Pending<'_>,
    reset: bool,
) -> Result<Sent, TransportError> {
    let envelope = &message.message.envelope;
    let open = message.open();
    let recipients: Vec<(usize, &str, &strictmx_protocol::RcptParams)> = message
        .recipients
        .iter()
        .filter(|(_, _, outcome)| outcome.is_none())
        .filter_map(|(index, address, _)| {
            let params = &envelope.recipients.get(*index)?.params;
            Some((*index, *address, params))
        })
        .collect();
    let body = message.message.body.as_slice();
    let outgoing = Outgoing {
        mail_from: &envelope.mail_from,
        params: &envelope.params,
        smtputf8: needs_smtputf8(
            std::iter::once(envelope.mail_from.as_str()).chain(recipients.iter().map(|r| r.1)),
        ),
        eight_bit: is_8bit(body),
        recipients,
        body,
        transfer: None,
    };
    if let Some((status, reason)) =
        outcome::refused_by_capabilities(session.capabilities(), &outgoing)
    {
        message.decide_open(&RecipientOutcome::Bounced {
            remote_mta: Some(host.to_owned()),
            diagnostic: Diagnostic::Local(reason.clone()),
            status,
        });
        let record = record_attempt(
            scope,
            message.message.id,
            open,
            AttemptOutcome::Bounced,
            &reason,
        );
        message.attempts.push(record);
        // Nothing was sent: the session is as it was.
        return Ok(Sent::Open { reset_next: reset });
    }
    let replies = if reset {
        match session.reset_and_transaction(&outgoing).await {
            Ok(replies) => replies?,
            Err(error) => return Ok(Sent::ResetFailed(error)),
        }
    } else {
        session.transaction(&outgoing).await?
    };
    let closing = outcome::server_is_closing(&replies);
    match outcome::transaction_verdict(host, &replies) {
        Verdict::NextHost(failure) => {
            fail_message(scope, message, &failure);
        }
        Verdict::Decided(outcomes) => {
            let summary = outcome::summarise(&outcomes);
            for (index, outcome) in outcomes {
                message.decide(index, outcome);
            }
            let last = outcome::last_reply(&replies);
            let record = record_attempt(scope, message.message.id, open, summary, &last);
            message.attempts.push(record);
        }
    }
    Ok(if closing {
        Sent::Closing
    } else {
        Sent::Open {
            reset_next: replies.end.is_none(),
        }
    })
}
