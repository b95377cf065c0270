//! DATA (RFC 5321 §4.1.1.4): reads the content to its end, refuses it for size or line length,
//! closes the session on a bare CR or LF, adds trace headers, hands it to the queue and answers
//! 250 only once the queue says it is durable. Durability itself is the queue's.

use std::time::SystemTime;

use strictmx_protocol::{DataReader, ErrorChain, Reply, replies};
use strictmx_spool::{ClientInfo, Envelope, MessageKind, format_id};
use tracing::{error, info, warn};

use super::{Session, State, Step, Transaction};
use crate::budget::Reservation;
use crate::dkim::Signing;
use crate::headers::{self, Trace};
use crate::io::{DataEnd, Io};
use crate::queue::{Queue, QueueError};

impl<Q: Queue> Session<Q> {
    pub(super) async fn data(&mut self, io: &mut Io) -> Step {
        let transaction = match std::mem::replace(&mut self.state, State::Greeted) {
            State::RcptGiven(transaction) => transaction,
            other @ State::MailGiven(_) => {
                self.state = other;
                return self.reject(io, replies::bad_sequence("need RCPT before DATA"));
            }
            other @ (State::Connected | State::Greeted) => {
                self.state = other;
                return self.reject(io, replies::bad_sequence("need MAIL before DATA"));
            }
        };
        io.send(&replies::start_data());
        let limits = &self.shared.settings.limits;
        let max_size = usize::try_from(limits.max_message_size).unwrap_or(usize::MAX);
        let mut reader = DataReader::new(max_size);
        let mut reservation = self.shared.body_budget.reservation();
        let read = io
            .read_data(
                &mut reader,
                &mut reservation,
                limits.data_timeout,
                &self.stop,
            )
            .await;
        match read {
            Ok(DataEnd::Complete) => {}
            Ok(DataEnd::BareLineEnding) => {
                // RFC 5321 §2.3.8. Where this message ends is ambiguous, so whatever follows
                // may be a smuggled transaction: refuse and close (CVE-2023-51764 class).
                warn!(ip = %self.peer.ip(), outcome = "bare_line_ending", "message refused, closing session");
                metrics::counter!("strictmx_messages_rejected_total", "reason" => "bare_line_ending")
                    .increment(1);
                io.send(&replies::bare_line_ending());
                return Step::Close;
            }
            Err(error) => return self.end_on_read_error(io, error),
        }
        if let Some((reason, reply)) = refusal(&reader, &reservation) {
            info!(ip = %self.peer.ip(), outcome = reason, size = reader.size(), "message refused");
            metrics::counter!("strictmx_messages_rejected_total", "reason" => reason).increment(1);
            return self.reply(io, reply);
        }
        let content = reader.into_body();
        let hops = headers::received_count(&content);
        if hops > limits.max_received_headers {
            // RFC 5321 §6.3: a message that has passed this many relays is looping.
            warn!(ip = %self.peer.ip(), hops, outcome = "loop", "message refused: too many Received: fields");
            metrics::counter!("strictmx_messages_rejected_total", "reason" => "loop").increment(1);
            return self.reply(io, replies::too_many_hops(hops));
        }
        let reply = self.submit(transaction, content).await;
        // The content was held until the spool took it; only now is its memory given back.
        drop(reservation);
        self.reply(io, reply)
    }

    async fn submit(&self, transaction: Transaction, content: Vec<u8>) -> Reply {
        let now = SystemTime::now();
        let id = self.shared.queue.reserve_id();
        let queue_id = format_id(id);
        let helo = self.helo.as_ref().map_or("", |helo| helo.name.as_str());
        let trace = Trace {
            helo,
            ip: self.peer.ip(),
            hostname: &self.shared.settings.hostname,
            protocol: headers::protocol_name(
                self.extended(),
                self.tls.is_some(),
                self.auth_user.is_some(),
                transaction.params.smtputf8,
            ),
            tls: self.tls.as_deref(),
            queue_id: &queue_id,
            now,
        };
        let (body, signing) = headers::prepare(content, &trace, &self.shared.dkim());
        let size = body.len();
        let rcpt_count = transaction.recipients.len();
        let from = transaction.from.clone();
        let envelope = Envelope {
            mail_from: transaction.from,
            params: transaction.params,
            recipients: transaction.recipients,
            received_at: now,
            client: ClientInfo {
                ip: self.peer.ip(),
                helo: helo.to_owned(),
                auth_user: self.auth_user.clone(),
                tls: self.tls.clone(),
            },
            kind: MessageKind::Normal,
            require_tls: self
                .auth_user
                .as_deref()
                .and_then(|user| self.shared.users().floor(user)),
        };
        let dkim = self.signing_outcome(signing);
        let submitted = match transaction.transfer {
            None => self.shared.queue.submit(id, envelope, body).await,
            Some(transfer) => {
                let received = self
                    .shared
                    .queue
                    .submit_transfer(id, transfer.clone(), envelope, body)
                    .await;
                match received {
                    Ok(receipt) => {
                        info!(ip = %self.peer.ip(), transfer = %transfer, repeated = receipt.repeated, queued = receipt.id.map(format_id).unwrap_or_default(), "transfer from another node received");
                        match receipt.id {
                            Some(id) => Ok(id),
                            // RFC 5321 §6.1: the message is this node's responsibility already.
                            None => return replies::transfer_repeated(&transfer),
                        }
                    }
                    Err(failure) => Err(failure),
                }
            }
        };
        match submitted {
            Ok(id) => {
                let msg_id = format_id(id);
                info!(
                    msg_id = %msg_id,
                    ip = %self.peer.ip(),
                    user = self.auth_user.as_deref().unwrap_or(""),
                    from = %from,
                    rcpt_count,
                    size,
                    tls = self.tls.as_deref().unwrap_or("none"),
                    dkim,
                    outcome = "queued",
                    "message accepted"
                );
                metrics::counter!("strictmx_messages_accepted_total").increment(1);
                replies::queued(&msg_id)
            }
            Err(failure) if failure.is_transient() => {
                warn!(ip = %self.peer.ip(), error = %ErrorChain(&failure), outcome = "deferred", "queue cannot take the message now");
                metrics::counter!("strictmx_messages_rejected_total", "reason" => "queue_unavailable")
                    .increment(1);
                replies::storage_unavailable()
            }
            Err(failure) => {
                error!(ip = %self.peer.ip(), error = %ErrorChain(&failure), outcome = "deferred", "queue failed");
                metrics::counter!("strictmx_messages_rejected_total", "reason" => "queue_error")
                    .increment(1);
                replies::local_error()
            }
        }
    }
}

impl<Q: Queue> Session<Q> {
    /// Logs a signing failure and counts every outcome; returns the outcome's name for the
    /// acceptance record. A message whose signing failed is still accepted, unsigned: it is
    /// otherwise fine, and refusing it would stop all of that domain's mail over a key problem
    /// that only the operator can fix (docs/inbound.md, "DKIM signing").
    fn signing_outcome(&self, signing: Signing) -> &'static str {
        let outcome = match signing {
            Signing::NoKey => "none",
            Signing::Signed(_) => "signed",
            Signing::Failed(failure) => {
                error!(ip = %self.peer.ip(), error = %ErrorChain(&failure), "dkim signing failed; the message is accepted unsigned");
                "failed"
            }
        };
        metrics::counter!("strictmx_dkim_signing_total", "outcome" => outcome).increment(1);
        outcome
    }
}

/// Why the content read is refused, if it is: the metric reason and the reply.
fn refusal(reader: &DataReader, reservation: &Reservation) -> Option<(&'static str, Reply)> {
    if reader.is_too_big() {
        // RFC 1870 §6.3: the whole message was read, then refused with 552.
        return Some(("size", replies::message_too_big()));
    }
    if reservation.is_spent() {
        // RFC 3463 4.3.1: the server is short of memory for now; the client tries again later.
        return Some(("memory", replies::storage_unavailable()));
    }
    if reader.has_long_line() {
        return Some(("line_length", replies::data_line_too_long()));
    }
    None
}
