//! The `trust-resolver` DNSSEC mode's client: one question to a trusted validating resolver with the
//! DO and AD bits set, the AD bit of the reply read as "secure" (RFC 6840 §5.7, §5.8).
//!
//! Deliberately small: UDP with a TCP retry on truncation, servers tried in order, no cache
//! (the validating resolver caches). Which resolvers may be trusted is checked by `resolver`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_resolver::proto::op::{Edns, Message, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RecordType};
use strictmx_policy::Dnssec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::answer::{Answer, normalise};
use crate::error::ResolveError;
use crate::resolver::record_type_label;

/// RFC 9715 / DNS flag day 2020: the EDNS buffer size that avoids IP fragmentation.
const EDNS_PAYLOAD: u16 = 1232;
/// Largest DNS message over TCP (RFC 1035 §4.2.2: two-octet length).
const MAX_TCP_MESSAGE: usize = 65_535;

/// Asks the configured resolvers and trusts their AD bit.
#[derive(Debug, Clone)]
pub(crate) struct AdClient {
    pub(crate) servers: Vec<SocketAddr>,
    pub(crate) timeout: Duration,
    pub(crate) attempts: usize,
}

/// Why one exchange with one server failed; the last one is reported.
enum Exchange {
    Timeout,
    Io(std::io::Error),
    Malformed(String),
}

impl AdClient {
    pub(crate) async fn query(
        &self,
        name: &Name,
        record_type: RecordType,
    ) -> Result<Answer, ResolveError> {
        let started = Instant::now();
        let label = record_type_label(record_type);
        let display = normalise(&name.to_ascii());
        let mut last = Exchange::Timeout;
        for _ in 0..self.attempts.max(1) {
            for server in &self.servers {
                match self.exchange(*server, name, record_type).await {
                    Ok(reply) => return answer_from(reply, &display, label),
                    Err(failure) => last = failure,
                }
            }
        }
        Err(match last {
            Exchange::Timeout => ResolveError::Timeout {
                name: display,
                record_type: label,
                elapsed: started.elapsed(),
            },
            Exchange::Io(error) => ResolveError::ServerFailure {
                name: display,
                record_type: label,
                response_code: format!("no reply: {error}"),
            },
            Exchange::Malformed(reason) => ResolveError::ServerFailure {
                name: display,
                record_type: label,
                response_code: format!("malformed reply: {reason}"),
            },
        })
    }

    /// One question to one server: UDP first, TCP when the reply is truncated.
    async fn exchange(
        &self,
        server: SocketAddr,
        name: &Name,
        record_type: RecordType,
    ) -> Result<Message, Exchange> {
        let request = request(name, record_type);
        let bytes = request
            .to_vec()
            .map_err(|e| Exchange::Malformed(e.to_string()))?;
        let reply = tokio::time::timeout(self.timeout, udp(server, &bytes))
            .await
            .map_err(|_| Exchange::Timeout)??;
        let reply = check(reply, &request)?;
        if !reply.metadata.truncation {
            return Ok(reply);
        }
        let reply = tokio::time::timeout(self.timeout, tcp(server, &bytes))
            .await
            .map_err(|_| Exchange::Timeout)??;
        check(reply, &request)
    }
}

/// A recursive query asking for DNSSEC records (DO, RFC 3225) and for the AD bit (RFC 6840 §5.7:
/// a stub sets AD in the query to say it understands it).
fn request(name: &Name, record_type: RecordType) -> Message {
    let mut message = Message::query();
    message.add_query(Query::query(name.clone(), record_type));
    message.metadata.recursion_desired = true;
    message.metadata.authentic_data = true;
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    edns.set_dnssec_ok(true);
    message.set_edns(edns);
    message
}

/// The reply must answer our question under our id (RFC 5452 §9.1: anything else is spoofing
/// or a stray packet and is dropped).
fn check(reply: Message, request: &Message) -> Result<Message, Exchange> {
    if reply.metadata.id != request.metadata.id || reply.queries != request.queries {
        return Err(Exchange::Malformed(
            "reply does not match the question".into(),
        ));
    }
    Ok(reply)
}

async fn udp(server: SocketAddr, bytes: &[u8]) -> Result<Message, Exchange> {
    let local: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(local).await.map_err(Exchange::Io)?;
    socket.connect(server).await.map_err(Exchange::Io)?;
    socket.send(bytes).await.map_err(Exchange::Io)?;
    let mut buffer = vec![0; usize::from(EDNS_PAYLOAD).max(512)];
    let read = socket.recv(&mut buffer).await.map_err(Exchange::Io)?;
    Message::from_vec(&buffer[..read]).map_err(|e| Exchange::Malformed(e.to_string()))
}

async fn tcp(server: SocketAddr, bytes: &[u8]) -> Result<Message, Exchange> {
    let length =
        u16::try_from(bytes.len()).map_err(|_| Exchange::Malformed("question too large".into()))?;
    let mut stream = TcpStream::connect(server).await.map_err(Exchange::Io)?;
    let mut framed = length.to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await.map_err(Exchange::Io)?;
    let reply_length = usize::from(stream.read_u16().await.map_err(Exchange::Io)?);
    let mut buffer = vec![0; reply_length.min(MAX_TCP_MESSAGE)];
    stream.read_exact(&mut buffer).await.map_err(Exchange::Io)?;
    Message::from_vec(&buffer).map_err(|e| Exchange::Malformed(e.to_string()))
}

/// RFC 6840 §5.8: a validating resolver sets AD only when every record in the answer and
/// authority sections validated; its SERVFAIL covers bogus data (RFC 4035 §5.5).
fn answer_from(reply: Message, name: &str, label: &'static str) -> Result<Answer, ResolveError> {
    let dnssec = if reply.metadata.authentic_data {
        Dnssec::Secure
    } else {
        Dnssec::Insecure
    };
    match reply.metadata.response_code {
        ResponseCode::NoError => Ok(Answer {
            records: reply.answers,
            dnssec,
            nxdomain: false,
        }),
        ResponseCode::NXDomain => Ok(Answer {
            records: Vec::new(),
            dnssec,
            nxdomain: true,
        }),
        code => Err(ResolveError::ServerFailure {
            name: name.to_owned(),
            record_type: label,
            response_code: code.to_string(),
        }),
    }
}
