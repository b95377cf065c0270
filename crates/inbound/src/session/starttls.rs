//! STARTTLS (RFC 3207): answers 220, drops anything the client pipelined after the command and
//! forgets what the plaintext session learned. The handshake itself is run by the driver.

use strictmx_protocol::replies;
use tracing::warn;

use super::{Session, State, Step};
use crate::io::Io;
use crate::queue::Queue;

impl<Q: Queue> Session<Q> {
    pub(super) fn starttls(&mut self, io: &mut Io) -> Step {
        if self.tls.is_some() {
            return self.reject(io, replies::bad_sequence("TLS already active"));
        }
        if self.shared.tls().is_none() {
            return self.reply(io, replies::not_implemented());
        }
        if self.helo.is_none() {
            return self.reject(io, replies::bad_sequence("send EHLO first"));
        }
        // RFC 3207 §6: bytes sent before the handshake must not be acted on after it.
        if io.has_buffered_input() {
            warn!(ip = %self.peer.ip(), "discarding commands pipelined after STARTTLS");
        }
        // RFC 3207 §4.2: discard all knowledge obtained from the client before TLS.
        self.state = State::Connected;
        self.helo = None;
        self.auth_user = None;
        io.send(&replies::ready_to_start_tls());
        Step::StartTls
    }
}
