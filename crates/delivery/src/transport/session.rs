//! The SMTP client session as typestate: `PlainSession` → `starttls(self)` → `TlsSession` →
//! `judge(self)` → `SecureSession`, and a `MailSession` that alone can send `MAIL FROM`.
//!
//! A session is opened for one [`SessionPlan`] (the planned host and whether the message needs
//! REQUIRETLS) and carries it through every state, so no later step takes a requirement of its
//! own. A `MailSession` comes only from `SecureSession::into_mail_session` or from
//! `PlainSession::into_mail_session_if_allowed`, which refuses unless the plan allows plaintext,
//! so a plan that requires TLS cannot reach `MAIL FROM` over a plaintext connection. A
//! `SecureSession` exists only for a peer that `strictmx_policy::judge_peer` accepted for its
//! planned host, and it yields a `MailSession` under a REQUIRETLS plan only when the server
//! advertised REQUIRETLS. Which host to try and what the replies mean for each recipient is left
//! to the delivery run.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rustls::pki_types::ServerName;
use strictmx_policy::{
    PeerAuth, PeerFacts, PeerFailure, PlannedHost, TlsRequirement, judge_peer, pin_anchor_names,
};
use strictmx_protocol::{
    DotStuffer, MailFrom, MailParams, RcptParams, Reply, mail_command, rcpt_command,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

use crate::transport::error::{Stage, TransportError};
use crate::transport::tls::{CertificateCheck, CertificateChecks, TlsInfo, TlsSetup, version_name};
use crate::transport::wire::{Capabilities, Conn};
use crate::transport::{RouteCredentials, TransportSettings};

/// About how much of a message's content is stuffed and sent at once.
const DATA_CHUNK: usize = 64 * 1024;

/// The time limits of one session, copied from the settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) connect: Duration,
    pub(crate) greeting: Duration,
    pub(crate) command: Duration,
    pub(crate) data: Duration,
}

impl Timeouts {
    pub(crate) fn from_settings(settings: &TransportSettings) -> Self {
        Timeouts {
            connect: settings.connect_timeout,
            greeting: settings.greeting_timeout,
            command: settings.command_timeout,
            data: settings.data_timeout,
        }
    }
}

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint<'a> {
    pub(crate) addr: SocketAddr,
    pub(crate) helo_name: &'a str,
    pub(crate) source: Option<IpAddr>,
}

/// What the plan demands of one session: the planned host (requirement, names, TLSA records,
/// pins, version floor) and whether the server must take REQUIRETLS (RFC 8689 §4.2.1).
#[derive(Debug, Clone)]
pub(crate) struct SessionPlan {
    pub(crate) host: PlannedHost,
    pub(crate) requiretls: bool,
}

/// Greeted and introduced, no TLS. Cannot send mail on its own.
#[derive(Debug)]
pub struct PlainSession {
    conn: Conn<TcpStream>,
    caps: Capabilities,
    timeouts: Timeouts,
    helo_name: String,
    local_ip: Option<IpAddr>,
    peer_name: Option<String>,
    plan: SessionPlan,
}

/// TLS established, the peer not judged yet; nothing but judging can be done with it.
#[derive(Debug)]
pub struct TlsSession {
    conn: Conn<TlsStream<TcpStream>>,
    timeouts: Timeouts,
    helo_name: String,
    tls: TlsInfo,
    peer: PeerFacts,
    plan: SessionPlan,
}

/// TLS established, the peer accepted by the policy for its host, and EHLO repeated over it
/// (RFC 3207 §4.2).
#[derive(Debug)]
pub struct SecureSession {
    conn: Conn<TlsStream<TcpStream>>,
    caps: Capabilities,
    timeouts: Timeouts,
    tls: TlsInfo,
    auth: PeerAuth,
    plan: SessionPlan,
}

/// A session allowed to carry mail under the plan. Its fields are private to this module: the
/// only ways to get one are the two checked conversions.
#[derive(Debug)]
pub struct MailSession<S> {
    conn: Conn<S>,
    caps: Capabilities,
    timeouts: Timeouts,
}

/// Why STARTTLS did not give a TLS session.
#[derive(Debug)]
pub enum StartTlsError {
    /// The server answered STARTTLS with something other than 220; the plaintext session
    /// is still usable (under an opportunistic plan).
    Refused {
        session: Box<PlainSession>,
        reply: Reply,
    },
    /// The connection is unusable (handshake failed, injection attempt, I/O error).
    Broken(TransportError),
}

impl PlainSession {
    /// Connects, reads the greeting and introduces itself with EHLO, for `plan`. HELO after a
    /// refused EHLO (RFC 5321 §3.2) only when the plan allows plaintext: HELO cannot offer
    /// STARTTLS.
    pub(crate) async fn open(
        endpoint: &Endpoint<'_>,
        plan: SessionPlan,
        timeouts: Timeouts,
    ) -> Result<PlainSession, TransportError> {
        let stream = connect(endpoint, timeouts.connect).await?;
        let local_ip = stream.local_addr().ok().map(|addr| addr.ip());
        let mut conn = Conn::new(stream);
        let greeting = conn.read_reply(Stage::Greeting, timeouts.greeting).await?;
        if greeting.code != 220 {
            return Err(TransportError::Rejected {
                stage: Stage::Greeting,
                reply: greeting,
            });
        }
        let ehlo = format!("EHLO {}", endpoint.helo_name);
        let reply = conn.command(Stage::Ehlo, &ehlo, timeouts.command).await?;
        // RFC 5321 §4.1.1.1: the EHLO reply starts with the server's name (TLSRPT's
        // receiving-mx-helo); the greeting's first word otherwise.
        let peer_name = [&reply, &greeting]
            .into_iter()
            .filter(|r| r.code == 250 || r.code == 220)
            .find_map(|r| {
                r.lines
                    .first()?
                    .split_ascii_whitespace()
                    .next()
                    .map(str::to_owned)
            });
        let caps = if reply.code == 250 {
            Capabilities::from_ehlo(&reply)
        } else if reply.is_permanent() && plan.host.requirement.allows_plaintext() {
            // RFC 5321 §3.2: a client whose EHLO is rejected may fall back to HELO.
            let helo = format!("HELO {}", endpoint.helo_name);
            let reply = conn.command(Stage::Helo, &helo, timeouts.command).await?;
            if reply.code != 250 {
                return Err(TransportError::Rejected {
                    stage: Stage::Helo,
                    reply,
                });
            }
            Capabilities::default()
        } else {
            return Err(TransportError::Rejected {
                stage: Stage::Ehlo,
                reply,
            });
        };
        Ok(PlainSession {
            conn,
            caps,
            timeouts,
            helo_name: endpoint.helo_name.to_owned(),
            local_ip,
            peer_name,
            plan,
        })
    }

    /// Our address on this connection (TLSRPT's sending-mta-ip).
    pub fn local_ip(&self) -> Option<IpAddr> {
        self.local_ip
    }

    /// The name the server gave in its EHLO reply or greeting.
    pub fn peer_name(&self) -> Option<&str> {
        self.peer_name.as_deref()
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// The planned host this session is for.
    pub(crate) fn host(&self) -> &PlannedHost {
        &self.plan.host
    }

    /// Upgrades to TLS (RFC 3207) for the planned host: SNI is its name; the certificate checks
    /// the policy needs (web PKI for its names, DANE-TA for its TLSA records) are computed
    /// during the handshake and judged by [`TlsSession::judge`].
    pub(crate) async fn starttls(mut self, setup: &TlsSetup) -> Result<TlsSession, StartTlsError> {
        let command = self.timeouts.command;
        let reply = self
            .conn
            .command(Stage::StartTls, "STARTTLS", command)
            .await
            .map_err(StartTlsError::Broken)?;
        if reply.code != 220 {
            return Err(StartTlsError::Refused {
                session: Box::new(self),
                reply,
            });
        }
        // RFC 3207 §6 (and CVE-2011-0411): anything the server sent after its 220 would be
        // taken as coming from inside TLS; refuse rather than discard it.
        let stream = self
            .conn
            .into_stream_if_drained()
            .map_err(StartTlsError::Broken)?;
        let connector = setup.connector();
        let server_name = ServerName::try_from(self.plan.host.host.clone()).map_err(|error| {
            StartTlsError::Broken(TransportError::Handshake(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                error,
            )))
        })?;
        let tls_stream = tokio::time::timeout(command, connector.connect(server_name, stream))
            .await
            .map_err(|_| {
                StartTlsError::Broken(TransportError::Timeout {
                    stage: Stage::Handshake,
                    after: command,
                })
            })?
            .map_err(|error| StartTlsError::Broken(TransportError::Handshake(error)))?;
        let (_, connection) = tls_stream.get_ref();
        let version = connection.protocol_version();
        let findings = setup.findings(
            checks_for(&self.plan.host),
            connection,
            &self.plan.host.host,
        );
        let tls = TlsInfo {
            version: version_name(version),
            cipher: connection
                .negotiated_cipher_suite()
                .map_or_else(|| "unknown".to_owned(), |s| format!("{:?}", s.suite())),
            certificate: match &findings.webpki {
                strictmx_policy::WebpkiVerdict::Valid => CertificateCheck::Verified,
                problem => CertificateCheck::Failed(format!("{problem:?}")),
            },
            resumed: connection.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        };
        Ok(TlsSession {
            conn: Conn::new(tls_stream),
            timeouts: self.timeouts,
            helo_name: self.helo_name,
            tls,
            peer: findings.into_peer_facts(version),
            plan: self.plan,
        })
    }

    /// A mail session over plaintext, only when the planned host's requirement allows it.
    pub fn into_mail_session_if_allowed(
        self,
    ) -> Result<MailSession<TcpStream>, (Box<PlainSession>, TransportError)> {
        let requirement = &self.plan.host.requirement;
        if !requirement.allows_plaintext() {
            let requirement = requirement.as_str();
            return Err((
                Box::new(self),
                TransportError::RequirementNotMet { requirement },
            ));
        }
        Ok(MailSession {
            conn: self.conn,
            caps: self.caps,
            timeouts: self.timeouts,
        })
    }

    pub(crate) async fn quit(self) {
        self.conn.quit(self.timeouts.command).await;
    }
}

impl TlsSession {
    /// The planned host this session is for.
    pub(crate) fn host(&self) -> &PlannedHost {
        &self.plan.host
    }

    pub fn tls(&self) -> &TlsInfo {
        &self.tls
    }

    /// What the handshake showed, for the policy.
    pub fn peer(&self) -> &PeerFacts {
        &self.peer
    }

    /// The policy's judgement of this peer for the planned host (`judge_peer`: version floor,
    /// requirement, pins); only an accepted peer is introduced with EHLO and becomes a
    /// [`SecureSession`].
    pub(crate) async fn judge(self) -> Result<SecureSession, Judgement> {
        let auth = match judge_peer(&self.plan.host, &self.peer) {
            Ok(auth) => auth,
            Err(failure) => {
                return Err(Judgement::Refused {
                    session: Box::new(self),
                    failure,
                });
            }
        };
        let mut conn = self.conn;
        let command = self.timeouts.command;
        // RFC 3207 §4.2: forget what was learnt before TLS and ask again.
        let ehlo = format!("EHLO {}", self.helo_name);
        let broken = |error| Judgement::Broken { auth, error };
        let reply = conn
            .command(Stage::Ehlo, &ehlo, command)
            .await
            .map_err(broken)?;
        if reply.code != 250 {
            return Err(broken(TransportError::Rejected {
                stage: Stage::Ehlo,
                reply,
            }));
        }
        Ok(SecureSession {
            caps: Capabilities::from_ehlo(&reply),
            conn,
            timeouts: self.timeouts,
            tls: self.tls,
            auth,
            plan: self.plan,
        })
    }

    pub(crate) async fn quit(self) {
        self.conn.quit(self.timeouts.command).await;
    }
}

/// Why a TLS session did not become a `SecureSession`.
#[derive(Debug)]
pub(crate) enum Judgement {
    /// The policy refused the peer for this host; the session can only be closed.
    Refused {
        session: Box<TlsSession>,
        failure: PeerFailure,
    },
    /// The policy accepted the peer as `auth`, then EHLO over TLS failed; the connection is
    /// gone.
    Broken {
        auth: PeerAuth,
        error: TransportError,
    },
}

impl SecureSession {
    pub fn tls(&self) -> &TlsInfo {
        &self.tls
    }

    /// How the policy authenticated the peer.
    pub fn auth(&self) -> PeerAuth {
        self.auth
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Logs in with a route's credentials (RFC 4954): AUTH PLAIN (RFC 4616) when offered, else
    /// AUTH LOGIN. Only a `SecureSession` can do this, and only when the policy authenticated
    /// the peer (web PKI or DANE), so credentials never travel in plaintext or to a peer whose
    /// certificate did not verify. On failure the session is closed.
    pub(crate) async fn authenticate(
        mut self,
        credentials: &RouteCredentials,
    ) -> Result<SecureSession, TransportError> {
        let host = self.plan.host.host.clone();
        let host = host.as_str();
        let failure = match self.login(credentials, host).await {
            Ok(()) => return Ok(self),
            Err(failure) => failure,
        };
        if let TransportError::AuthRefused { reply, .. } = &failure {
            tracing::error!(mx = %host, user = %credentials.user, code = reply.code, "the next hop refused the route's credentials: check auth_user and auth_password_file");
        }
        self.quit().await;
        Err(failure)
    }

    async fn login(
        &mut self,
        credentials: &RouteCredentials,
        host: &str,
    ) -> Result<(), TransportError> {
        use base64::Engine;
        let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        if self.auth == PeerAuth::None {
            return Err(TransportError::AuthUnauthenticatedPeer {
                host: host.to_owned(),
                user: credentials.user.clone(),
            });
        }
        let limit = self.timeouts.command;
        let refused = |reply| TransportError::AuthRefused {
            host: host.to_owned(),
            user: credentials.user.clone(),
            reply,
        };
        let reply = if self.caps.auth_plain {
            // RFC 4616 §2: authzid (empty) NUL authcid NUL passwd, as an initial response
            // (RFC 4954 §4).
            let message = format!("\0{}\0{}", credentials.user, credentials.password);
            let line = format!("AUTH PLAIN {}", encode(message.as_bytes()));
            self.conn.secret_command(Stage::Auth, &line, limit).await?
        } else if self.caps.auth_login {
            let reply = self.conn.command(Stage::Auth, "AUTH LOGIN", limit).await?;
            if reply.code != 334 {
                return Err(refused(reply));
            }
            let user = encode(credentials.user.as_bytes());
            let reply = self.conn.secret_command(Stage::Auth, &user, limit).await?;
            if reply.code != 334 {
                return Err(refused(reply));
            }
            let password = encode(credentials.password.as_bytes());
            self.conn
                .secret_command(Stage::Auth, &password, limit)
                .await?
        } else {
            return Err(TransportError::AuthNotOffered {
                host: host.to_owned(),
            });
        };
        // RFC 4954 §6: 235 is success; anything else leaves us unauthenticated.
        if reply.code == 235 {
            Ok(())
        } else {
            Err(refused(reply))
        }
    }

    /// A mail session over TLS. RFC 8689 §4.2.1: under a REQUIRETLS plan the server must
    /// advertise REQUIRETLS after STARTTLS, otherwise this host cannot take the message.
    pub fn into_mail_session(
        self,
    ) -> Result<MailSession<TlsStream<TcpStream>>, (Box<SecureSession>, TransportError)> {
        if self.plan.requiretls && !self.caps.requiretls {
            return Err((Box::new(self), TransportError::RequireTlsNotOffered));
        }
        Ok(MailSession {
            conn: self.conn,
            caps: self.caps,
            timeouts: self.timeouts,
        })
    }

    pub(crate) async fn quit(self) {
        self.conn.quit(self.timeouts.command).await;
    }
}

/// What the verifier must compute for `host`'s requirement and pins.
pub(crate) fn checks_for(host: &PlannedHost) -> CertificateChecks {
    let pins = CertificateChecks {
        pins: host.pins.clone(),
        pin_names: pin_anchor_names(host),
        ..CertificateChecks::default()
    };
    match &host.requirement {
        TlsRequirement::Verified { names } => CertificateChecks {
            names: names.clone(),
            ..pins
        },
        TlsRequirement::Dane { records, names } => CertificateChecks {
            names: vec![host.host.clone()],
            dane_records: records.clone(),
            dane_names: names.clone(),
            ..pins
        },
        TlsRequirement::Opportunistic | TlsRequirement::Encrypted => CertificateChecks {
            // MTA-STS testing (RFC 8461 §5) is evaluated against the names it would demand.
            names: host
                .testing
                .as_ref()
                .and_then(TlsRequirement::required_names)
                .map_or_else(|| vec![host.host.clone()], <[String]>::to_vec),
            ..pins
        },
    }
}

/// One message as it goes on the wire to this server.
#[derive(Debug)]
pub(crate) struct Outgoing<'a> {
    pub(crate) mail_from: &'a str,
    pub(crate) params: &'a MailParams,
    pub(crate) smtputf8: bool,
    pub(crate) eight_bit: bool,
    /// (index into the envelope, address, parameters)
    pub(crate) recipients: Vec<(usize, &'a str, &'a RcptParams)>,
    pub(crate) body: &'a [u8],
    /// The transfer id for `TRANSID=<...>`, when the message is handed to another strictmx
    /// node (`transport::transfer`).
    pub(crate) transfer: Option<&'a str>,
}

/// The server's replies to one transaction, in order.
#[derive(Debug, Clone)]
pub(crate) struct TransactionReplies {
    pub(crate) mail: Reply,
    /// One reply per recipient sent, by envelope index.
    pub(crate) rcpts: Vec<(usize, Reply)>,
    /// The reply to DATA, when it was sent.
    pub(crate) data: Option<Reply>,
    /// The reply to the end of data, when the content was sent.
    pub(crate) end: Option<Reply>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> MailSession<S> {
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// MAIL, RCPT per recipient, DATA and the content; pipelined (RFC 2920) when offered.
    pub(crate) async fn transaction(
        &mut self,
        message: &Outgoing<'_>,
    ) -> Result<TransactionReplies, TransportError> {
        let (mail_line, rcpt_lines) = self.command_lines(message)?;
        if self.caps.pipelining {
            return self
                .pipelined(message, &mail_line, &rcpt_lines, false)
                .await
                .and_then(|done| done);
        }
        self.one_by_one(message, &mail_line, &rcpt_lines).await
    }

    /// RSET, then the transaction. With PIPELINING the RSET leads the same group, which RFC
    /// 2920 §3.1 allows, and costs no round trip of its own. The outer error is RSET's, or the
    /// group's sending: the server took nothing of the transaction, whose content was never
    /// sent, so the message may go over a new connection.
    pub(crate) async fn reset_and_transaction(
        &mut self,
        message: &Outgoing<'_>,
    ) -> Result<Result<TransactionReplies, TransportError>, TransportError> {
        let (mail_line, rcpt_lines) = match self.command_lines(message) {
            Ok(lines) => lines,
            Err(error) => return Ok(Err(error)),
        };
        if self.caps.pipelining {
            return self.pipelined(message, &mail_line, &rcpt_lines, true).await;
        }
        self.reset().await?;
        Ok(self.one_by_one(message, &mail_line, &rcpt_lines).await)
    }

    /// The MAIL line and one RCPT line per recipient.
    fn command_lines(
        &self,
        message: &Outgoing<'_>,
    ) -> Result<(String, Vec<String>), TransportError> {
        let extensions = self.caps.extensions();
        let unsafe_address = |source| TransportError::UnsafeAddress { source };
        let mail_line = mail_command(
            &extensions,
            &MailFrom {
                reverse_path: message.mail_from,
                params: message.params,
                content_len: message.body.len(),
                eight_bit: message.eight_bit,
                smtputf8: message.smtputf8,
            },
        )
        .map_err(unsafe_address)?;
        let mail_line = match message.transfer {
            Some(id) => format!("{mail_line} TRANSID=<{id}>"),
            None => mail_line,
        };
        let rcpt_lines = message
            .recipients
            .iter()
            .map(|(_, address, params)| rcpt_command(&extensions, address, params))
            .collect::<Result<Vec<String>, _>>()
            .map_err(unsafe_address)?;
        Ok((mail_line, rcpt_lines))
    }

    /// The commands in one group (led by RSET when `reset`), then their replies in order; see
    /// [`MailSession::reset_and_transaction`] for the two levels of error.
    async fn pipelined(
        &mut self,
        message: &Outgoing<'_>,
        mail_line: &str,
        rcpt_lines: &[String],
        reset: bool,
    ) -> Result<Result<TransactionReplies, TransportError>, TransportError> {
        let command = self.timeouts.command;
        let mut batch = String::with_capacity(64 + mail_line.len() + 64 * rcpt_lines.len());
        if reset {
            batch.push_str("RSET\r\n");
        }
        batch.push_str(mail_line);
        batch.push_str("\r\n");
        for line in rcpt_lines {
            batch.push_str(line);
            batch.push_str("\r\n");
        }
        batch.push_str("DATA\r\n");
        tracing::debug!(
            commands = rcpt_lines.len() + 2 + usize::from(reset),
            "send pipelined"
        );
        let sent = self.conn.send(Stage::Mail, batch.as_bytes(), command).await;
        if reset {
            sent?;
            let reply = self.conn.read_reply(Stage::Rset, command).await?;
            if reply.code != 250 {
                return Err(TransportError::Rejected {
                    stage: Stage::Rset,
                    reply,
                });
            }
        } else if let Err(error) = sent {
            return Ok(Err(error));
        }
        Ok(self.pipelined_replies(message, rcpt_lines.len()).await)
    }

    async fn pipelined_replies(
        &mut self,
        message: &Outgoing<'_>,
        rcpt_count: usize,
    ) -> Result<TransactionReplies, TransportError> {
        let command = self.timeouts.command;
        let mail = self.conn.read_reply(Stage::Mail, command).await?;
        let mut rcpts = Vec::with_capacity(rcpt_count);
        for (index, _, _) in &message.recipients {
            rcpts.push((*index, self.conn.read_reply(Stage::Rcpt, command).await?));
        }
        let data = self.conn.read_reply(Stage::Data, command).await?;
        let accepted = mail.is_positive() && rcpts.iter().any(|(_, r)| r.is_positive());
        let end = self.finish_data(&data, accepted, message.body).await?;
        Ok(TransactionReplies {
            mail,
            rcpts,
            data: Some(data),
            end,
        })
    }

    /// Without PIPELINING: each command waits for its reply, and the transaction stops at the
    /// first that leaves nothing to send.
    async fn one_by_one(
        &mut self,
        message: &Outgoing<'_>,
        mail_line: &str,
        rcpt_lines: &[String],
    ) -> Result<TransactionReplies, TransportError> {
        let command = self.timeouts.command;
        let mail = self.conn.command(Stage::Mail, mail_line, command).await?;
        let mut replies = TransactionReplies {
            mail,
            rcpts: Vec::new(),
            data: None,
            end: None,
        };
        if !replies.mail.is_positive() {
            return Ok(replies);
        }
        for ((index, _, _), line) in message.recipients.iter().zip(rcpt_lines) {
            let reply = self.conn.command(Stage::Rcpt, line, command).await?;
            replies.rcpts.push((*index, reply));
        }
        if !replies.rcpts.iter().any(|(_, r)| r.is_positive()) {
            return Ok(replies);
        }
        let data = self.conn.command(Stage::Data, "DATA", command).await?;
        replies.end = self.finish_data(&data, true, message.body).await?;
        replies.data = Some(data);
        Ok(replies)
    }

    /// After the reply to DATA: send the content when it is wanted, or end a DATA the server
    /// opened although no recipient was accepted (RFC 2920 §3.1) with an empty message.
    async fn finish_data(
        &mut self,
        data: &Reply,
        accepted: bool,
        body: &[u8],
    ) -> Result<Option<Reply>, TransportError> {
        if data.code != 354 {
            return Ok(None);
        }
        let limit = self.timeouts.data;
        if !accepted {
            self.conn.send(Stage::EndOfData, b".\r\n", limit).await?;
            self.conn.read_reply(Stage::EndOfData, limit).await?;
            return Ok(None);
        }
        // RFC 5321 §4.5.2: dot-stuffing; the content then ends with CRLF "." CRLF. Sent through
        // a buffer of about DATA_CHUNK octets, never a stuffed copy of the whole message; the
        // time limit applies to each send (RFC 5321 §4.5.3.2.5).
        let mut stuffer = DotStuffer::default();
        let mut buffer = Vec::with_capacity(body.len().min(DATA_CHUNK) + DATA_CHUNK / 32 + 5);
        for piece in body.chunks(DATA_CHUNK) {
            stuffer.push(piece, &mut buffer);
            if buffer.len() >= DATA_CHUNK {
                self.conn.send(Stage::Data, &buffer, limit).await?;
                buffer.clear();
            }
        }
        stuffer.finish(&mut buffer);
        buffer.extend_from_slice(b".\r\n");
        self.conn.send(Stage::Data, &buffer, limit).await?;
        Ok(Some(self.conn.read_reply(Stage::EndOfData, limit).await?))
    }

    /// RSET between two messages on one connection.
    pub(crate) async fn reset(&mut self) -> Result<(), TransportError> {
        let reply = self
            .conn
            .command(Stage::Rset, "RSET", self.timeouts.command)
            .await?;
        if reply.code == 250 {
            Ok(())
        } else {
            Err(TransportError::Rejected {
                stage: Stage::Rset,
                reply,
            })
        }
    }

    pub(crate) async fn quit(self) {
        self.conn.quit(self.timeouts.command).await;
    }
}

async fn connect(endpoint: &Endpoint<'_>, limit: Duration) -> Result<TcpStream, TransportError> {
    let addr = endpoint.addr;
    let io_error = |source| TransportError::Connect { addr, source };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(io_error)?;
    if let Some(source) = endpoint.source {
        socket.bind(SocketAddr::new(source, 0)).map_err(io_error)?;
    }
    // Commands and the message go out as whole writes; Nagle's algorithm would only hold back
    // the end-of-data line behind the body until the peer's delayed ACK (tens of milliseconds).
    socket.set_nodelay(true).map_err(io_error)?;
    tokio::time::timeout(limit, socket.connect(addr))
        .await
        .map_err(|_| TransportError::Timeout {
            stage: Stage::Connect,
            after: limit,
        })?
        .map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::sessions::tests::planned_host;

    /// A server that greets and answers EHLO without STARTTLS, then waits.
    async fn plaintext_server() -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let _ = stream.write_all(b"220 sink\r\n").await;
                let mut buf = [0u8; 512];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(b"250-sink\r\n250 PIPELINING\r\n").await;
                let _ = stream.read(&mut buf).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_plaintext_session_reaches_mail_from_only_when_the_plan_allows_plaintext() {
        let addr = plaintext_server().await;
        let timeouts = Timeouts {
            connect: Duration::from_secs(5),
            greeting: Duration::from_secs(5),
            command: Duration::from_secs(5),
            data: Duration::from_secs(5),
        };
        let endpoint = Endpoint {
            addr,
            helo_name: "client.test",
            source: None,
        };
        let requirements = [
            (TlsRequirement::Opportunistic, true),
            (TlsRequirement::Encrypted, false),
            (
                TlsRequirement::Verified {
                    names: vec!["mx.example".to_owned()],
                },
                false,
            ),
        ];
        for (requirement, allowed) in requirements {
            let plan = SessionPlan {
                host: planned_host(requirement.clone()),
                requiretls: false,
            };
            let session = PlainSession::open(&endpoint, plan, timeouts)
                .await
                .expect("session");
            let result = session.into_mail_session_if_allowed();
            assert_eq!(result.is_ok(), allowed, "{requirement:?}");
            if let Err((_, error)) = result {
                assert!(matches!(error, TransportError::RequirementNotMet { .. }));
            }
        }
    }
}
