//! EHLO and HELO (RFC 5321 §4.1.1.1): records the client's name, resets any transaction and
//! lists the extensions this session may use right now.

use strictmx_protocol::replies;

use super::{Helo, Session, State, Step};
use crate::io::Io;
use crate::queue::Queue;

impl<Q: Queue> Session<Q> {
    pub(super) fn ehlo(&mut self, io: &mut Io, host: String, extended: bool) -> Step {
        // RFC 5321 §4.1.4: EHLO in a transaction clears it like RSET.
        self.state = State::Greeted;
        self.helo = Some(Helo {
            name: host,
            extended,
        });
        let hostname = &self.shared.settings.hostname;
        let reply = if extended {
            replies::ehlo(hostname, self.capabilities())
        } else {
            replies::helo(hostname)
        };
        io.send(&reply);
        Step::Continue
    }

    fn capabilities(&self) -> Vec<String> {
        let mut capabilities = vec![
            "PIPELINING".to_owned(),
            format!("SIZE {}", self.shared.settings.limits.max_message_size),
            "8BITMIME".to_owned(),
            "SMTPUTF8".to_owned(),
            "ENHANCEDSTATUSCODES".to_owned(),
            "DSN".to_owned(),
        ];
        if self.tls.is_none() && self.shared.tls().is_some() {
            capabilities.push("STARTTLS".to_owned());
        }
        if self.auth_allowed() && self.auth_user.is_none() {
            capabilities.push("AUTH PLAIN LOGIN".to_owned());
        }
        // RFC 8689 §4: REQUIRETLS is only offered over TLS.
        if self.tls.is_some() {
            capabilities.push("REQUIRETLS".to_owned());
        }
        // Transfers between strictmx nodes (`TRANSID` on MAIL, docs/operating.md): offered
        // to the clients whose transfers are taken.
        if self.trusted_node() {
            capabilities.push(strictmx_protocol::TRANSFER_KEYWORD.to_owned());
        }
        capabilities
    }
}
