//! MAIL FROM (RFC 5321 §4.1.1.2): checks the session may start a transaction, that an
//! authenticated user may use this sender, and that the parameters are ones this session
//! offered, then opens the transaction.

use strictmx_protocol::{BodyType, MailParams, needs_smtputf8, replies};
use tracing::warn;

use super::{Session, State, Step, Transaction};
use crate::Role;
use crate::io::Io;
use crate::queue::Queue;

impl<Q: Queue> Session<Q> {
    pub(super) fn mail(
        &mut self,
        io: &mut Io,
        from: String,
        params: MailParams,
        transfer: Option<String>,
    ) -> Step {
        match self.state {
            State::Connected => return self.reject(io, replies::bad_sequence("send EHLO first")),
            State::MailGiven(_) | State::RcptGiven(_) => {
                return self.reject(io, replies::bad_sequence("sender already specified"));
            }
            State::Greeted => {}
        }
        if self.listener.role != Role::Relay && self.auth_user.is_none() {
            let reply = if self.tls.is_none() && !self.listener.insecure_allow_plaintext_auth {
                replies::starttls_required()
            } else {
                replies::auth_required()
            };
            return self.reply(io, reply);
        }
        if let Some(user) = &self.auth_user
            && !self.shared.users().may_send_as(user, &from)
        {
            warn!(ip = %self.peer.ip(), user = %user, from = %from, outcome = "sender_not_owned", "sender refused for this user");
            metrics::counter!("strictmx_messages_rejected_total", "reason" => "sender_not_owned")
                .increment(1);
            return self.reply(io, replies::sender_not_owned());
        }
        if let Some(reply) = self.refuse_params(&from, &params) {
            return self.reply(io, reply);
        }
        // RFC 5321 §4.1.1.2: parameters need EHLO.
        if transfer.is_some() && !self.extended() {
            return self.reply(io, replies::unsupported_parameter("after HELO"));
        }
        if transfer.is_some() && !self.trusted_node() {
            warn!(ip = %self.peer.ip(), outcome = "transfer_not_trusted", "transfer from an untrusted client refused");
            metrics::counter!("strictmx_messages_rejected_total", "reason" => "transfer_not_trusted")
                .increment(1);
            return self.reply(io, replies::transfer_not_trusted());
        }
        self.state = State::MailGiven(Transaction {
            from,
            params,
            recipients: Vec::new(),
            transfer,
        });
        io.send(&replies::sender_ok());
        Step::Continue
    }

    /// The reply refusing these parameters, or `None` when this session accepts them.
    fn refuse_params(&self, from: &str, params: &MailParams) -> Option<strictmx_protocol::Reply> {
        let uses_extensions = params.size.is_some()
            || params.body != BodyType::SevenBit
            || params.smtputf8
            || params.requiretls
            || params.ret.is_some()
            || params.envid.is_some();
        // RFC 5321 §4.1.1.2: parameters need EHLO.
        if uses_extensions && !self.extended() {
            return Some(replies::unsupported_parameter("after HELO"));
        }
        // RFC 3030 §3: BINARYMIME needs CHUNKING, which strictmx does not offer.
        if params.body == BodyType::BinaryMime {
            return Some(replies::unsupported_parameter("BODY=BINARYMIME"));
        }
        // RFC 8689 §4.1: REQUIRETLS is only offered, and only accepted, over TLS.
        if params.requiretls && self.tls.is_none() {
            return Some(replies::unsupported_parameter("REQUIRETLS"));
        }
        // RFC 1870 §6.1: a declared size above the limit is refused at MAIL.
        let limit = self.shared.settings.limits.max_message_size;
        if params.size.is_some_and(|size| size > limit) {
            metrics::counter!("strictmx_messages_rejected_total", "reason" => "size").increment(1);
            return Some(replies::message_too_big());
        }
        // RFC 6531 §3.4: a non-ASCII address needs SMTPUTF8.
        if !params.smtputf8 && needs_smtputf8([from]) {
            return Some(replies::smtputf8_required());
        }
        None
    }
}
