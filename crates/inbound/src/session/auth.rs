//! AUTH (RFC 4954) with SASL PLAIN (RFC 4616) and LOGIN: only over TLS unless the listener
//! says otherwise; failures, malformed exchanges included, are slowed down and counted per
//! session and per client. Password checking is `users`'s, the client budget `throttle`'s.

use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use strictmx_protocol::{AuthMechanism, Reply, replies};
use tracing::{info, warn};

use super::{Session, State, Step};
use crate::Role;
use crate::io::{Io, Line, Wait};
use crate::queue::Queue;
use crate::throttle::Refusal;

/// A SASL exchange that ended without credentials to check.
enum Abort {
    /// The client sent something that is not a valid response: counted as a failed attempt.
    Malformed(Reply),
    /// Answer this and carry on (the client cancelled).
    Reply(Reply),
    /// The connection is gone or timed out; the step to return.
    End(Step),
}

impl<Q: Queue> Session<Q> {
    pub(super) async fn auth(
        &mut self,
        io: &mut Io,
        mechanism: AuthMechanism,
        initial_response: Option<String>,
    ) -> Step {
        match self.state {
            State::Connected => return self.reject(io, replies::bad_sequence("send EHLO first")),
            // RFC 4954 §4: AUTH is not permitted during a mail transaction.
            State::MailGiven(_) | State::RcptGiven(_) => {
                return self.reject(
                    io,
                    replies::bad_sequence("AUTH not allowed in a transaction"),
                );
            }
            State::Greeted => {}
        }
        if self.auth_user.is_some() {
            return self.reject(io, replies::already_authenticated());
        }
        if self.shared.users().is_empty() {
            return self.reply(io, replies::not_implemented());
        }
        if self.tls.is_none() && !self.listener.insecure_allow_plaintext_auth {
            // RFC 3207 §4 for submission; RFC 4954 §6 (538) elsewhere.
            let reply = if self.listener.role == Role::Submission {
                replies::starttls_required()
            } else {
                replies::encryption_required()
            };
            return self.reply(io, reply);
        }
        // A client that spent its failure budget, in this session or earlier ones, gets no
        // further password checks until the window has passed.
        if let Err(refusal) = self
            .shared
            .auth_throttle
            .admit(self.peer.ip(), Instant::now())
        {
            return self.auth_refused(io, refusal);
        }
        let credentials = match mechanism {
            AuthMechanism::Plain => self.plain(io, initial_response).await,
            AuthMechanism::Login => self.login(io, initial_response).await,
        };
        let (name, password) = match credentials {
            Ok(credentials) => credentials,
            Err(Abort::Malformed(reply)) => return self.auth_failed(io, None, reply).await,
            Err(Abort::Reply(reply)) => return self.reply(io, reply),
            Err(Abort::End(step)) => return step,
        };
        // The slot is taken only now, so a client slow to send its credentials holds none.
        let slot = match self
            .shared
            .auth_throttle
            .admit(self.peer.ip(), Instant::now())
        {
            Ok(slot) => slot,
            Err(refusal) => return self.auth_refused(io, refusal),
        };
        let verified = self.shared.users().verify(name.clone(), password).await;
        drop(slot);
        if verified {
            info!(ip = %self.peer.ip(), user = %name, outcome = "authenticated", "auth succeeded");
            self.auth_user = Some(name);
            return self.reply(io, replies::auth_ok());
        }
        self.auth_failed(io, Some(&name), replies::auth_failed())
            .await
    }

    /// Count a failed or malformed attempt against the session and the client, and answer it
    /// after a delay that grows with the client's failures.
    async fn auth_failed(&mut self, io: &mut Io, name: Option<&str>, reply: Reply) -> Step {
        self.auth_failures += 1;
        let delay = self
            .shared
            .auth_throttle
            .failed(self.peer.ip(), Instant::now());
        warn!(ip = %self.peer.ip(), user = name.unwrap_or(""), failures = self.auth_failures, delay = ?delay, outcome = "auth_failed", "auth failed");
        metrics::counter!("strictmx_auth_failures_total").increment(1);
        // The delay slows guessing; it is a timer, so other sessions are not held up.
        tokio::time::sleep(delay).await;
        io.send(&reply);
        if self.auth_failures >= self.shared.settings.limits.max_auth_failures {
            io.send(&replies::too_many_auth_failures());
            return Step::Close;
        }
        Step::Continue
    }

    /// RFC 4954 §6: 454 4.7.0 is a temporary authentication failure. A spent budget also ends
    /// the session, since nothing it sends next will be checked.
    fn auth_refused(&mut self, io: &mut Io, refusal: Refusal) -> Step {
        warn!(ip = %self.peer.ip(), reason = refusal.as_str(), outcome = "auth_throttled", "auth refused without a password check");
        metrics::counter!("strictmx_auth_throttled_total", "reason" => refusal.as_str())
            .increment(1);
        match refusal {
            Refusal::Budget => {
                io.send(&replies::auth_budget_spent());
                Step::Close
            }
            Refusal::Busy => self.reply(io, replies::auth_busy()),
        }
    }

    /// RFC 4616 §2: `[authzid] NUL authcid NUL passwd`; we accept an authzid only when it
    /// names the same user.
    async fn plain(
        &mut self,
        io: &mut Io,
        initial_response: Option<String>,
    ) -> Result<(String, Vec<u8>), Abort> {
        let response = match initial_response {
            Some(response) => decode(response.as_bytes())?,
            None => self.challenge(io, "").await?,
        };
        let mut parts = response.split(|&b| b == 0);
        let (Some(authzid), Some(authcid), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Abort::Malformed(replies::auth_bad_encoding()));
        };
        let name = String::from_utf8(authcid.to_vec())
            .map_err(|_| Abort::Malformed(replies::auth_bad_encoding()))?;
        if !authzid.is_empty() && authzid != authcid {
            return Err(Abort::Malformed(replies::auth_failed()));
        }
        Ok((name, password.to_vec()))
    }

    /// The LOGIN mechanism: "Username:" and "Password:" challenges, base64 answers.
    async fn login(
        &mut self,
        io: &mut Io,
        initial_response: Option<String>,
    ) -> Result<(String, Vec<u8>), Abort> {
        let name = match initial_response {
            Some(response) => decode(response.as_bytes())?,
            None => self.challenge(io, "VXNlcm5hbWU6").await?,
        };
        let name =
            String::from_utf8(name).map_err(|_| Abort::Malformed(replies::auth_bad_encoding()))?;
        let password = self.challenge(io, "UGFzc3dvcmQ6").await?;
        Ok((name, password))
    }

    /// Send a 334 challenge and read the client's base64 answer (RFC 4954 §4).
    async fn challenge(&mut self, io: &mut Io, challenge: &str) -> Result<Vec<u8>, Abort> {
        io.send(&replies::auth_challenge(challenge));
        let timeout = self.shared.settings.limits.command_timeout;
        match io.read_line(timeout, &self.stop, Wait::Busy).await {
            Ok(Line::Complete(line)) => {
                let line = line.strip_suffix(b"\n").unwrap_or(&line);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line == b"*" {
                    return Err(Abort::Reply(replies::auth_cancelled()));
                }
                decode(line)
            }
            Ok(Line::TooLong) => Err(Abort::Malformed(replies::auth_bad_encoding())),
            Err(error) => Err(Abort::End(self.end_on_read_error(io, error))),
        }
    }
}

fn decode(text: &[u8]) -> Result<Vec<u8>, Abort> {
    // RFC 4954 §4: "=" is an empty response.
    if text == b"=" {
        return Ok(Vec::new());
    }
    STANDARD
        .decode(text)
        .map_err(|_| Abort::Malformed(replies::auth_bad_encoding()))
}
