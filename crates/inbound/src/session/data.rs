//! DATA (RFC 5321 §4.1.1.4): reads the content to its end, refuses it for size or line length,
//! closes the session on a bare CR or LF, then hands it to the acceptance path it shares with
//! the HTTP API (`accept`) and answers 250 only once the queue says it is durable.

use strictmx_protocol::{DataReader, Reply, replies};
use strictmx_spool::{ClientInfo, format_id};
use tracing::{info, warn};

use super::{Session, State, Step, Transaction};
use crate::accept::{self, Accepted, Refusal, Submission};
use crate::budget::Reservation;
use crate::headers;
use crate::io::{DataEnd, Io};
use crate::queue::Queue;

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
        if let Some(refusal) = refusal(&reader, &reservation) {
            let size = reader.size();
            info!(ip = %self.peer.ip(), outcome = refusal.reason(), size, "message refused");
            metrics::counter!("strictmx_messages_rejected_total", "reason" => refusal.reason())
                .increment(1);
            return self.reply(io, reply_to(refusal));
        }
        let submission = self.submission(transaction, reader.into_body());
        let id = self.shared.queue.reserve_id();
        let reply = match accept::accept(&self.shared, id, submission).await {
            Ok(Accepted::Queued(id)) => replies::queued(&format_id(id)),
            // SMTP carries no idempotency key, so nothing is ever a repeat here.
            Ok(Accepted::Repeat(_) | Accepted::KeyReused) => replies::local_error(),
            // RFC 5321 §6.1: the message is this node's responsibility already.
            Ok(Accepted::TransferRepeat(transfer)) => replies::transfer_repeated(&transfer),
            Err(refusal) => reply_to(refusal),
        };
        // The content was held until the spool took it; only now is its memory given back.
        drop(reservation);
        self.reply(io, reply)
    }

    /// The envelope and content as this session gathered them, with the user's TLS floor.
    fn submission(&self, transaction: Transaction, content: Vec<u8>) -> Submission {
        Submission {
            protocol: headers::protocol_name(
                self.extended(),
                self.tls.is_some(),
                self.auth_user.is_some(),
                transaction.params.smtputf8,
            ),
            from: transaction.from,
            params: transaction.params,
            recipients: transaction.recipients,
            client: ClientInfo {
                ip: self.peer.ip(),
                helo: self
                    .helo
                    .as_ref()
                    .map_or("", |helo| helo.name.as_str())
                    .to_owned(),
                auth_user: self.auth_user.clone(),
                tls: self.tls.clone(),
            },
            require_tls: self
                .auth_user
                .as_deref()
                .and_then(|user| self.shared.users().floor(user)),
            content,
            once: None,
            transfer: transaction.transfer,
        }
    }
}

/// The SMTP reply to a refusal.
fn reply_to(refusal: Refusal) -> Reply {
    match refusal {
        // RFC 1870 §6.3: the whole message was read, then refused with 552.
        Refusal::TooBig => replies::message_too_big(),
        Refusal::LongLine => replies::data_line_too_long(),
        // RFC 5321 §6.3: a message that has passed this many relays is looping.
        Refusal::Loop { hops } => replies::too_many_hops(hops),
        // RFC 3463 4.3.1: short of memory or storage for now; the client tries again later.
        Refusal::Memory | Refusal::QueueBusy => replies::storage_unavailable(),
        Refusal::QueueFailed => replies::local_error(),
    }
}

/// Why the content read is refused, if it is.
fn refusal(reader: &DataReader, reservation: &Reservation) -> Option<Refusal> {
    if reader.is_too_big() {
        return Some(Refusal::TooBig);
    }
    if reservation.is_spent() {
        return Some(Refusal::Memory);
    }
    if reader.has_long_line() {
        return Some(Refusal::LongLine);
    }
    None
}
