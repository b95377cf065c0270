//! RSET (RFC 5321 §4.1.1.5): ends any transaction. NOOP, QUIT, VRFY and HELP are answered in
//! the dispatcher from the reply catalogue.

use strictmx_protocol::replies;

use super::{Session, State, Step};
use crate::io::Io;
use crate::queue::Queue;

impl<Q: Queue> Session<Q> {
    pub(super) fn rset(&mut self, io: &mut Io) -> Step {
        self.state = match self.state {
            State::Connected => State::Connected,
            State::Greeted | State::MailGiven(_) | State::RcptGiven(_) => State::Greeted,
        };
        io.send(&replies::ok());
        Step::Continue
    }
}
