//! A session's byte stream: plain TCP or TLS, an input buffer framed into bounded lines or fed to
//! the DATA reader, and an output buffer flushed only when the session would wait for input
//! (RFC 2920 §3.2: answers to a pipelined group go out together, in order). Every wait has a
//! timeout and watches the shutdown tokens. What to answer is left to the session.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use strictmx_protocol::{DataProgress, DataReader, LineScan, Reply, scan_line};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::budget::Reservation;

/// The two shutdown signals a session watches: `soft` ends idle sessions, `hard` ends all.
#[derive(Debug, Clone)]
pub(crate) struct Stop {
    pub(crate) soft: CancellationToken,
    pub(crate) hard: CancellationToken,
}

/// Whether the session is between transactions, where a soft shutdown may end it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    Idle,
    Busy,
}

#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why no more input can be had.
#[derive(Debug)]
pub(crate) enum ReadError {
    Timeout,
    Shutdown,
    Closed,
    Failed(io::Error),
}

/// How message content ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataEnd {
    /// At CRLF `.` CRLF; what followed stays buffered for the next command.
    Complete,
    /// At a bare CR or LF, where the end of the message is ambiguous: the session must close.
    BareLineEnding,
}

/// One framed command line, or the news that one was too long and has been skipped.
#[derive(Debug)]
pub(crate) enum Line {
    Complete(Vec<u8>),
    TooLong,
}

#[derive(Debug)]
pub(crate) struct Io {
    stream: Stream,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Skipping the rest of an over-long line.
    discarding: bool,
    write_timeout: Duration,
}

const READ_CHUNK: usize = 16 * 1024;

impl Io {
    pub(crate) fn new(stream: Stream, write_timeout: Duration) -> Io {
        Io {
            stream,
            input: Vec::new(),
            output: Vec::new(),
            discarding: false,
            write_timeout,
        }
    }

    /// Give back the TCP stream for a TLS handshake; buffered input is dropped with this `Io`,
    /// so nothing a client pipelined after STARTTLS survives into the TLS session
    /// (RFC 3207 §6, CVE-2011-0411 class).
    pub(crate) fn into_plain(self) -> Option<TcpStream> {
        match self.stream {
            Stream::Plain(tcp) => Some(tcp),
            Stream::Tls(_) => None,
        }
    }

    pub(crate) fn has_buffered_input(&self) -> bool {
        !self.input.is_empty()
    }

    pub(crate) fn send(&mut self, reply: &Reply) {
        reply.write_to(&mut self.output);
    }

    pub(crate) async fn flush(&mut self) -> Result<(), ReadError> {
        if self.output.is_empty() {
            return Ok(());
        }
        let write = async {
            self.stream.write_all(&self.output).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.write_timeout, write).await {
            Ok(Ok(())) => {
                self.output.clear();
                Ok(())
            }
            Ok(Err(error)) => Err(ReadError::Failed(error)),
            Err(_) => Err(ReadError::Timeout),
        }
    }

    /// Flush what is pending, then close the write side politely.
    pub(crate) async fn close(mut self) {
        if self.flush().await.is_ok() {
            let _ = tokio::time::timeout(self.write_timeout, self.stream.shutdown()).await;
        }
    }

    /// The next command line, at most [`strictmx_protocol::MAX_LINE`] octets.
    pub(crate) async fn read_line(
        &mut self,
        timeout: Duration,
        stop: &Stop,
        wait: Wait,
    ) -> Result<Line, ReadError> {
        loop {
            if self.discarding {
                match self.input.iter().position(|&b| b == b'\n') {
                    Some(end) => {
                        self.input.drain(..=end);
                        self.discarding = false;
                        return Ok(Line::TooLong);
                    }
                    None => self.input.clear(),
                }
            } else {
                match scan_line(&self.input) {
                    LineScan::Line(length) => {
                        return Ok(Line::Complete(self.input.drain(..length).collect()));
                    }
                    LineScan::TooLong { discard, complete } => {
                        self.input.drain(..discard);
                        if complete {
                            return Ok(Line::TooLong);
                        }
                        self.discarding = true;
                    }
                    LineScan::Incomplete => {}
                }
            }
            self.fill(timeout, stop, wait).await?;
        }
    }

    /// Feed message content to `reader` until the end-of-data line, reserving the memory it
    /// keeps from `reservation` (and discarding the content once that fails); what follows the
    /// end stays buffered for the next command. After a bare CR or LF, buffered input is
    /// dropped: it may be a smuggled command.
    pub(crate) async fn read_data(
        &mut self,
        reader: &mut DataReader,
        reservation: &mut Reservation,
        timeout: Duration,
        stop: &Stop,
    ) -> Result<DataEnd, ReadError> {
        loop {
            if !self.input.is_empty() {
                if !reader.is_discarded() && !reservation.grow(self.input.len()) {
                    reader.discard();
                }
                match reader.feed(&self.input) {
                    DataProgress::Done { consumed } => {
                        self.input.drain(..consumed);
                        return Ok(DataEnd::Complete);
                    }
                    DataProgress::BareLineEnding => {
                        self.input.clear();
                        return Ok(DataEnd::BareLineEnding);
                    }
                    DataProgress::NeedMore => self.input.clear(),
                }
            }
            self.fill(timeout, stop, Wait::Busy).await?;
        }
    }

    /// Wait for more input, answering everything queued first.
    async fn fill(&mut self, timeout: Duration, stop: &Stop, wait: Wait) -> Result<(), ReadError> {
        self.flush().await?;
        self.input.reserve(READ_CHUNK);
        let read = tokio::select! {
            () = stop.soft.cancelled(), if wait == Wait::Idle => return Err(ReadError::Shutdown),
            () = stop.hard.cancelled() => return Err(ReadError::Shutdown),
            read = tokio::time::timeout(timeout, self.stream.read_buf(&mut self.input)) => read,
        };
        match read {
            Err(_) => Err(ReadError::Timeout),
            Ok(Err(error)) => Err(ReadError::Failed(error)),
            Ok(Ok(0)) => Err(ReadError::Closed),
            Ok(Ok(_)) => Ok(()),
        }
    }
}
