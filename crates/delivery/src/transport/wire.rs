//! Bytes on an SMTP client connection: bounded reply reading and writing, each with a timeout,
//! and the EHLO capabilities. What the replies mean is left to the session.

use std::time::Duration;

use strictmx_protocol::{Reply, ReplyParse, ServerExtensions};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::transport::error::{Stage, TransportError};

/// Bound on buffered, unparsed reply bytes; `Reply::parse` bounds lines and line length too.
const MAX_REPLY_BYTES: usize = 128 * 1024;
const READ_CHUNK: usize = 8 * 1024;
/// QUIT is a courtesy after the work is done: never wait longer than this for its reply.
const QUIT_WAIT: Duration = Duration::from_secs(30);

/// One SMTP connection (plain TCP or TLS) with its read buffer.
#[derive(Debug)]
pub(crate) struct Conn<S> {
    stream: S,
    buffer: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub(crate) fn new(stream: S) -> Self {
        Conn {
            stream,
            buffer: Vec::new(),
        }
    }

    /// The stream, provided nothing is buffered (used before a TLS handshake).
    pub(crate) fn into_stream_if_drained(self) -> Result<S, TransportError> {
        if self.buffer.is_empty() {
            Ok(self.stream)
        } else {
            Err(TransportError::DataBeforeHandshake)
        }
    }

    /// Reads one complete reply, waiting at most `limit` for all of it.
    pub(crate) async fn read_reply(
        &mut self,
        stage: Stage,
        limit: Duration,
    ) -> Result<Reply, TransportError> {
        tokio::time::timeout(limit, self.read_reply_unbounded(stage))
            .await
            .map_err(|_| TransportError::Timeout {
                stage,
                after: limit,
            })?
    }

    async fn read_reply_unbounded(&mut self, stage: Stage) -> Result<Reply, TransportError> {
        loop {
            match Reply::parse(&self.buffer) {
                Ok(ReplyParse::Complete { reply, consumed }) => {
                    self.buffer.drain(..consumed);
                    tracing::debug!(stage = stage.as_str(), code = reply.code, "reply");
                    return Ok(reply);
                }
                Ok(ReplyParse::Incomplete) => {}
                Err(source) => return Err(TransportError::MalformedReply { stage, source }),
            }
            if self.buffer.len() >= MAX_REPLY_BYTES {
                return Err(TransportError::MalformedReply {
                    stage,
                    source: strictmx_protocol::ProtocolError::LineTooLong {
                        length: self.buffer.len(),
                        limit: MAX_REPLY_BYTES,
                    },
                });
            }
            // Into the buffer's spare room: no zeroed chunk per read, no copy.
            self.buffer.reserve(READ_CHUNK);
            let read = self
                .stream
                .read_buf(&mut self.buffer)
                .await
                .map_err(|source| TransportError::Io { stage, source })?;
            if read == 0 {
                return Err(TransportError::Closed { stage });
            }
        }
    }

    /// Writes `bytes` and flushes, waiting at most `limit`.
    pub(crate) async fn send(
        &mut self,
        stage: Stage,
        bytes: &[u8],
        limit: Duration,
    ) -> Result<(), TransportError> {
        let write = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        tokio::time::timeout(limit, write)
            .await
            .map_err(|_| TransportError::Timeout {
                stage,
                after: limit,
            })?
            .map_err(|source| TransportError::Io { stage, source })
    }

    /// Sends a line that carries credentials and reads its reply; unlike `command`, the line
    /// is never logged.
    pub(crate) async fn secret_command(
        &mut self,
        stage: Stage,
        line: &str,
        limit: Duration,
    ) -> Result<Reply, TransportError> {
        tracing::debug!(stage = stage.as_str(), "send (credentials withheld)");
        self.send(stage, format!("{line}\r\n").as_bytes(), limit)
            .await?;
        self.read_reply(stage, limit).await
    }

    /// Sends a command line and reads its reply.
    pub(crate) async fn command(
        &mut self,
        stage: Stage,
        line: &str,
        limit: Duration,
    ) -> Result<Reply, TransportError> {
        tracing::debug!(stage = stage.as_str(), command = line, "send");
        self.send(stage, format!("{line}\r\n").as_bytes(), limit)
            .await?;
        self.read_reply(stage, limit).await
    }

    /// Ends the session politely; failures do not matter any more at this point.
    pub(crate) async fn quit(mut self, limit: Duration) {
        let limit = limit.min(QUIT_WAIT);
        if self.send(Stage::Rset, b"QUIT\r\n", limit).await.is_ok() {
            let _ = self.read_reply(Stage::Rset, limit).await;
        }
        let _ = tokio::time::timeout(limit, self.stream.shutdown()).await;
    }
}

/// The ESMTP extensions a server advertised in its EHLO reply that the client uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub starttls: bool,
    pub pipelining: bool,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    pub dsn: bool,
    /// RFC 1870: the advertised maximum; `None` when absent or `SIZE 0` (no fixed limit).
    pub size_limit: Option<u64>,
    /// Whether SIZE was advertised at all (then `SIZE=` may be sent).
    pub size: bool,
    /// RFC 8689 §2: the server takes the REQUIRETLS parameter (meaningful only after STARTTLS).
    pub requiretls: bool,
    /// RFC 4954 §3: `AUTH` lists PLAIN (RFC 4616) among its mechanisms.
    pub auth_plain: bool,
    /// `AUTH` lists LOGIN (the older mechanism some relays still offer alone).
    pub auth_login: bool,
    /// The server is a strictmx node that takes our transfers (`TRANSFER_KEYWORD`).
    pub transfer: bool,
}

impl Capabilities {
    /// What the server's extensions let a `MAIL` or `RCPT` command carry.
    pub fn extensions(&self) -> ServerExtensions {
        ServerExtensions {
            size: self.size,
            eight_bit_mime: self.eight_bit_mime,
            smtputf8: self.smtputf8,
            requiretls: self.requiretls,
            dsn: self.dsn,
        }
    }

    /// Parses the extension lines of an EHLO reply (every line after the first).
    pub fn from_ehlo(reply: &Reply) -> Self {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "STARTTLS" => caps.starttls = true,
                "PIPELINING" => caps.pipelining = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "DSN" => caps.dsn = true,
                "REQUIRETLS" => caps.requiretls = true,
                strictmx_protocol::TRANSFER_KEYWORD => caps.transfer = true,
                "AUTH" => {
                    for mechanism in words.by_ref() {
                        match mechanism.to_ascii_uppercase().as_str() {
                            "PLAIN" => caps.auth_plain = true,
                            "LOGIN" => caps.auth_login = true,
                            _ => {}
                        }
                    }
                }
                "SIZE" => {
                    caps.size = true;
                    caps.size_limit = words
                        .next()
                        .and_then(|limit| limit.parse::<u64>().ok())
                        .filter(|limit| *limit > 0);
                }
                _ => {}
            }
        }
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ehlo(lines: &[&str]) -> Reply {
        Reply {
            code: 250,
            status: None,
            lines: lines.iter().map(|l| (*l).to_owned()).collect(),
        }
    }

    #[test]
    fn ehlo_keywords_are_recognised_in_any_case() {
        let caps = Capabilities::from_ehlo(&ehlo(&[
            "mx.example greets you",
            "starttls",
            "PIPELINING",
            "8BITMIME",
            "SMTPUTF8",
            "DSN",
            "SIZE 1000",
            "RequireTLS",
            "AUTH CRAM-MD5 plain",
            "xstrictmx-transfer",
        ]));
        assert_eq!(
            caps,
            Capabilities {
                starttls: true,
                pipelining: true,
                eight_bit_mime: true,
                smtputf8: true,
                dsn: true,
                size_limit: Some(1000),
                size: true,
                requiretls: true,
                auth_plain: true,
                auth_login: false,
                transfer: true,
            }
        );
    }

    #[test]
    fn the_greeting_line_is_never_taken_for_a_keyword() {
        let caps = Capabilities::from_ehlo(&ehlo(&["STARTTLS"]));
        assert!(!caps.starttls);
    }

    // RFC 1870 §4: "SIZE 0" (or no number) means no fixed maximum.
    #[test]
    fn size_zero_or_garbage_means_no_limit() {
        for line in ["SIZE 0", "SIZE", "SIZE lots"] {
            let caps = Capabilities::from_ehlo(&ehlo(&["mx", line]));
            assert!(caps.size, "{line}");
            assert_eq!(caps.size_limit, None, "{line}");
        }
    }

    #[tokio::test]
    async fn a_reply_that_never_ends_is_cut_off_not_buffered_forever() {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let line = format!("250-{}\r\n", "x".repeat(900));
            loop {
                if server.write_all(line.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
        let mut conn = Conn::new(client);
        let error = conn
            .read_reply(Stage::Ehlo, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(error, TransportError::MalformedReply { .. }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn garbage_instead_of_a_reply_is_an_error_not_a_panic() {
        let (client, mut server) = tokio::io::duplex(1024);
        server.write_all(b"hello there\r\n").await.expect("write");
        let mut conn = Conn::new(client);
        let error = conn
            .read_reply(Stage::Greeting, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(error, TransportError::MalformedReply { .. }),
            "{error:?}"
        );
    }
}
