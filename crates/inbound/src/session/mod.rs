//! One SMTP session on the server side: the explicit `State`, the command loop, and the
//! STARTTLS/implicit-TLS handshakes. Each verb lives in its own file; byte framing is `io`'s and
//! admission `server`'s.

mod auth;
mod data;
mod ehlo;
mod mail;
mod other;
mod rcpt;
mod starttls;

use std::net::SocketAddr;
use std::sync::Arc;

use strictmx_protocol::{Command, ErrorChain, MailParams, Reply, replies};
use strictmx_spool::EnvelopeRecipient;
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use crate::io::{Io, Line, ReadError, Stop, Stream, Wait};
use crate::queue::Queue;
use crate::server::{Admission, Shared};
use crate::{ListenerSettings, Role};

/// Where the session stands in RFC 5321's command sequence (§4.1.4).
#[derive(Debug)]
enum State {
    /// Greeting sent; EHLO or HELO must come first.
    Connected,
    /// EHLO/HELO done, no mail transaction.
    Greeted,
    /// MAIL accepted, no recipient yet.
    MailGiven(Transaction),
    /// At least one recipient accepted; DATA may follow.
    RcptGiven(Transaction),
}

#[derive(Debug)]
struct Transaction {
    from: String,
    params: MailParams,
    recipients: Vec<EnvelopeRecipient>,
    /// The transfer id another strictmx node gave the message (`TRANSID`); only a trusted
    /// client's is taken.
    transfer: Option<String>,
}

/// What the client said in EHLO or HELO.
#[derive(Debug, Clone)]
struct Helo {
    name: String,
    /// EHLO rather than HELO: ESMTP parameters may be used.
    extended: bool,
}

/// What the command loop asks its driver to do next.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Continue,
    StartTls,
    Close,
}

struct Session<Q: Queue> {
    shared: Arc<Shared<Q>>,
    listener: ListenerSettings,
    peer: SocketAddr,
    stop: Stop,
    state: State,
    helo: Option<Helo>,
    /// `TLSv1.3 TLS13_...` once TLS is up.
    tls: Option<String>,
    auth_user: Option<String>,
    bad_commands: usize,
    auth_failures: usize,
}

/// Run one admitted connection to its end.
pub(crate) async fn serve<Q: Queue>(
    shared: Arc<Shared<Q>>,
    listener: ListenerSettings,
    tcp: TcpStream,
    peer: SocketAddr,
    stop: Stop,
    admission: Admission,
) {
    let write_timeout = shared.settings.limits.command_timeout;
    let mut session = Session {
        shared,
        listener,
        peer,
        stop,
        state: State::Connected,
        helo: None,
        tls: None,
        auth_user: None,
        bad_commands: 0,
        auth_failures: 0,
    };
    let stream = if session.listener.role == Role::Submissions {
        // RFC 8314 §3.3: TLS from the first byte.
        match session.handshake(tcp).await {
            Some(stream) => stream,
            None => return,
        }
    } else {
        Stream::Plain(tcp)
    };
    let mut io = Io::new(stream, write_timeout);
    io.send(&replies::greeting(&session.shared.settings.hostname));
    loop {
        match session.commands(&mut io).await {
            Step::Continue => {}
            Step::Close => break,
            Step::StartTls => {
                // The 220 must reach the client before the handshake begins.
                if io.flush().await.is_err() {
                    return;
                }
                let Some(tcp) = io.into_plain() else {
                    return;
                };
                let Some(stream) = session.handshake(tcp).await else {
                    return;
                };
                io = Io::new(stream, write_timeout);
            }
        }
    }
    io.close().await;
    drop(admission);
    debug!(outcome = "closed", "session ended");
}

impl<Q: Queue> Session<Q> {
    /// The command loop; returns to the driver for STARTTLS and at the end.
    async fn commands(&mut self, io: &mut Io) -> Step {
        loop {
            let wait = match self.state {
                State::Connected | State::Greeted => Wait::Idle,
                State::MailGiven(_) | State::RcptGiven(_) => Wait::Busy,
            };
            let timeout = self.shared.settings.limits.command_timeout;
            let line = match io.read_line(timeout, &self.stop, wait).await {
                Ok(Line::Complete(line)) => line,
                Ok(Line::TooLong) => {
                    // RFC 5321 §4.5.3.1.4: refuse the over-long command, keep the session.
                    match self.reject(io, replies::line_too_long()) {
                        Step::Continue => continue,
                        other => return other,
                    }
                }
                Err(error) => return self.end_on_read_error(io, error),
            };
            let step = match Command::parse(&line) {
                Ok(command) => self.dispatch(io, command).await,
                Err(error) => {
                    debug!(%error, "command refused");
                    self.reject(io, error.smtp_reply())
                }
            };
            if step != Step::Continue {
                return step;
            }
        }
    }

    async fn dispatch(&mut self, io: &mut Io, command: Command) -> Step {
        match command {
            Command::Ehlo { host } => self.ehlo(io, host, true),
            Command::Helo { host } => self.ehlo(io, host, false),
            Command::StartTls => self.starttls(io),
            Command::Auth {
                mechanism,
                initial_response,
            } => self.auth(io, mechanism, initial_response).await,
            Command::Mail {
                from,
                params,
                transfer,
            } => self.mail(io, from, params, transfer),
            Command::Rcpt { to, params } => self.rcpt(io, to, params),
            Command::Data => self.data(io).await,
            Command::Rset => self.rset(io),
            Command::Noop => self.reply(io, replies::ok()),
            Command::Quit => {
                io.send(&replies::closing());
                Step::Close
            }
            Command::Vrfy => self.reply(io, replies::cannot_verify()),
            Command::Help => self.reply(io, replies::help()),
            Command::Expn | Command::NotImplemented { .. } => {
                self.reply(io, replies::not_implemented())
            }
        }
    }

    fn reply(&mut self, io: &mut Io, reply: Reply) -> Step {
        io.send(&reply);
        Step::Continue
    }

    /// Answer a command that was wrong for this session (syntax, sequence, unknown) and close
    /// after `max_bad_commands` of them.
    fn reject(&mut self, io: &mut Io, reply: Reply) -> Step {
        io.send(&reply);
        self.bad_commands += 1;
        if self.bad_commands >= self.shared.settings.limits.max_bad_commands {
            warn!(ip = %self.peer.ip(), outcome = "too_many_errors", "closing session");
            io.send(&replies::too_many_errors());
            return Step::Close;
        }
        Step::Continue
    }

    fn end_on_read_error(&mut self, io: &mut Io, error: ReadError) -> Step {
        match error {
            ReadError::Timeout => {
                info!(ip = %self.peer.ip(), outcome = "timeout", "client too slow");
                io.send(&replies::timeout());
            }
            ReadError::Shutdown => io.send(&replies::shutting_down()),
            ReadError::Closed => debug!("client closed the connection"),
            ReadError::Failed(error) => debug!(%error, "connection failed"),
        }
        Step::Close
    }

    /// Accept a TLS handshake within the command timeout. `None` ends the session.
    async fn handshake(&mut self, tcp: TcpStream) -> Option<Stream> {
        let acceptor = self.shared.tls()?;
        let timeout = self.shared.settings.limits.command_timeout;
        match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => {
                let description = crate::tls::describe(tls.get_ref().1);
                debug!(tls = %description, "tls established");
                self.tls = Some(description);
                Some(Stream::Tls(Box::new(tls)))
            }
            Ok(Err(error)) => {
                info!(ip = %self.peer.ip(), error = %ErrorChain(&error), outcome = "tls_failed", "tls handshake failed");
                None
            }
            Err(_) => {
                info!(ip = %self.peer.ip(), outcome = "timeout", "tls handshake timed out");
                None
            }
        }
    }

    /// Submission roles need AUTH before MAIL; relay trusts its networks (RFC 6409 §4.3).
    fn may_relay(&self) -> bool {
        if self.auth_user.is_some() {
            return true;
        }
        self.listener.role == Role::Relay
            && self
                .shared
                .settings
                .trusted_networks
                .iter()
                .any(|net| net.contains(&self.peer.ip()))
    }

    /// Whether this client may hand messages over as another strictmx node (`TRANSID`): a
    /// relay client in the trusted networks, or an authenticated user. Others never get their
    /// transfer ids remembered, so they cannot fill that memory or suppress a later message.
    fn trusted_node(&self) -> bool {
        self.may_relay()
    }

    /// AUTH may be offered: TLS is up, or the listener explicitly allows plaintext passwords.
    fn auth_allowed(&self) -> bool {
        !self.shared.users().is_empty()
            && (self.tls.is_some() || self.listener.insecure_allow_plaintext_auth)
    }

    fn extended(&self) -> bool {
        self.helo.as_ref().is_some_and(|helo| helo.extended)
    }
}
