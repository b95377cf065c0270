//! RCPT TO (RFC 5321 §4.1.1.3): the relay decision (never an open relay), the recipient limit
//! and DSN parameters, which are kept as given for the spool.

use strictmx_protocol::{RcptParams, needs_smtputf8, replies};
use strictmx_spool::EnvelopeRecipient;
use tracing::info;

use super::{Session, State, Step};
use crate::io::Io;
use crate::queue::Queue;

impl<Q: Queue> Session<Q> {
    pub(super) fn rcpt(&mut self, io: &mut Io, to: String, params: RcptParams) -> Step {
        let (smtputf8, count) = match &self.state {
            State::MailGiven(transaction) | State::RcptGiven(transaction) => {
                (transaction.params.smtputf8, transaction.recipients.len())
            }
            State::Connected | State::Greeted => {
                return self.reject(io, replies::bad_sequence("need MAIL before RCPT"));
            }
        };
        let uses_dsn = params.notify.is_some() || params.orcpt.is_some();
        if uses_dsn && !self.helo.as_ref().is_some_and(|helo| helo.extended) {
            return self.reply(io, replies::unsupported_parameter("after HELO"));
        }
        if !smtputf8 && needs_smtputf8([to.as_str()]) {
            return self.reply(io, replies::smtputf8_required());
        }
        // RFC 5321 §4.5.3.1.10: 452 asks the client to send the rest in a later transaction.
        if count >= self.shared.settings.limits.max_recipients {
            metrics::counter!("strictmx_messages_rejected_total", "reason" => "too_many_recipients")
                .increment(1);
            return self.reply(io, replies::too_many_recipients());
        }
        if !self.may_relay() {
            info!(ip = %self.peer.ip(), rcpt = %to, outcome = "relay_denied", "recipient refused");
            metrics::counter!("strictmx_messages_rejected_total", "reason" => "relay_denied")
                .increment(1);
            return self.reply(io, replies::relay_denied());
        }
        self.state = match std::mem::replace(&mut self.state, State::Greeted) {
            State::MailGiven(mut transaction) | State::RcptGiven(mut transaction) => {
                transaction.recipients.push(EnvelopeRecipient {
                    address: to,
                    params,
                });
                State::RcptGiven(transaction)
            }
            unchanged @ (State::Connected | State::Greeted) => unchanged,
        };
        io.send(&replies::recipient_ok());
        Step::Continue
    }
}
