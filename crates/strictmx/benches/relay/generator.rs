//! The load generator: SMTP submitters that send numbered messages, each carrying its number in
//! an `X-Bench-Id` header, so that what reaches a sink can be told apart (duplicates, missing).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strictmx_test_support::smtp::Client;

/// Whether every submitter of this run pipelines (`--pipeline`): MAIL, the RCPTs and DATA go in
/// one write and their replies are read after it (RFC 2920 §3.1), as a submitting MTA does.
/// Otherwise each command waits for its reply, as issue 9's generator did.
static PIPELINING: AtomicBool = AtomicBool::new(false);

/// Makes every submitter of this run pipeline; set once, before any load starts.
pub fn pipeline() {
    PIPELINING.store(true, Ordering::Relaxed);
}

/// The sender and the recipients of message number `n`.
pub type Envelope = Arc<dyn Fn(usize) -> (String, Vec<String>) + Send + Sync>;

/// Every message from `bench@src.test` to the one recipient `to`.
pub fn single(to: &str) -> Envelope {
    let to = to.to_owned();
    Arc::new(move |_| ("bench@src.test".to_owned(), vec![to.clone()]))
}

/// A message of about `size` bytes numbered `n`.
pub fn body(size: usize, n: usize) -> Vec<u8> {
    let mut b = format!(
        "From: <bench@src.test>\r\nTo: <sink@dest.test>\r\nSubject: bench {n}\r\nX-Bench-Id: {n}\r\n\r\n"
    )
    .into_bytes();
    let line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
    while b.len() + line.len() <= size {
        b.extend_from_slice(line);
    }
    b
}

/// The number in a received body's `X-Bench-Id` header.
pub fn id_of(body: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(&body[..body.len().min(512)]).ok()?;
    let at = text.find("\r\nX-Bench-Id: ")? + 14;
    text[at..].split("\r\n").next()?.parse().ok()
}

/// What to send where, shared by all submitters of a run.
pub struct Load {
    pub addr: SocketAddr,
    pub envelope: Envelope,
    pub size: usize,
    /// Message `n` is not sent before `start + n / rate` (`(start, rate)`); `None`: at once.
    pub pace: Option<(Instant, f64)>,
    /// The numbers of the messages answered 250, kept even when a submitter fails.
    pub acked: Arc<Mutex<Vec<usize>>>,
}

/// What the submitters saw: `.`→`250` latencies, and how many messages got 452.
#[derive(Debug, Default)]
pub struct Submitted {
    pub latencies: Vec<Duration>,
    pub refused: usize,
}

/// Submits messages `0..n` over `conns` connections (connection `c` sends `c`, `c + conns`, ...);
/// returns what they saw and the first error, if any.
pub async fn run(load: Arc<Load>, n: usize, conns: usize) -> (Submitted, Option<anyhow::Error>) {
    let tasks: Vec<_> = (0..conns)
        .map(|c| {
            let ids = (c..n).step_by(conns).collect();
            tokio::spawn(submit(load.clone(), ids))
        })
        .collect();
    let mut all = Submitted::default();
    let mut error = None;
    for t in tasks {
        match t.await {
            Ok(Ok(s)) => {
                all.latencies.extend(s.latencies);
                all.refused += s.refused;
            }
            Ok(Err(e)) => error = error.or(Some(e)),
            Err(e) => error = error.or(Some(e.into())),
        }
    }
    all.latencies.sort();
    (all, error)
}

/// One submitter: EHLO once, then transactions back to back (or paced).
async fn submit(load: Arc<Load>, ids: Vec<usize>) -> anyhow::Result<Submitted> {
    let mut c = Client::connect(load.addr).await?;
    let ehlo = c.command("EHLO bench.test").await?;
    anyhow::ensure!(ehlo.code == 250, "EHLO refused");
    let pipelining = PIPELINING.load(Ordering::Relaxed);
    anyhow::ensure!(
        !pipelining
            || ehlo
                .text
                .lines()
                .any(|l| l.eq_ignore_ascii_case("PIPELINING")),
        "--pipeline, but the server does not offer PIPELINING"
    );
    let mut seen = Submitted {
        latencies: Vec::with_capacity(ids.len()),
        refused: 0,
    };
    for n in ids {
        if let Some((start, rate)) = load.pace {
            tokio::time::sleep_until((start + Duration::from_secs_f64(n as f64 / rate)).into())
                .await;
        }
        let (from, rcpts) = (load.envelope)(n);
        let wire = body(load.size, n);
        let reply = if pipelining {
            pipelined(&mut c, &from, &rcpts, wire).await?
        } else {
            transaction(&mut c, &from, &rcpts, wire).await?
        };
        match reply {
            (452, _) => seen.refused += 1,
            (250, latency) => {
                seen.latencies.push(latency);
                load.acked.lock().expect("acked lock poisoned").push(n);
            }
            (code, _) => anyhow::bail!("end of data answered {code}"),
        }
    }
    c.quit().await?;
    Ok(seen)
}

/// MAIL, RCPT..., DATA; returns the code of the reply to the final `.` and how long it took.
async fn transaction(
    c: &mut Client,
    from: &str,
    rcpts: &[String],
    wire: Vec<u8>,
) -> anyhow::Result<(u16, Duration)> {
    anyhow::ensure!(
        c.command(&format!("MAIL FROM:<{from}>")).await?.code == 250,
        "MAIL refused"
    );
    for rcpt in rcpts {
        anyhow::ensure!(
            c.command(&format!("RCPT TO:<{rcpt}>")).await?.code == 250,
            "RCPT refused"
        );
    }
    anyhow::ensure!(c.command("DATA").await?.code == 354, "DATA refused");
    end_of_data(c, wire).await
}

/// The same transaction pipelined: one write for MAIL, RCPT... and DATA, then their replies in
/// order; the body follows the 354.
async fn pipelined(
    c: &mut Client,
    from: &str,
    rcpts: &[String],
    wire: Vec<u8>,
) -> anyhow::Result<(u16, Duration)> {
    let mut commands = format!("MAIL FROM:<{from}>\r\n");
    for rcpt in rcpts {
        commands.push_str("RCPT TO:<");
        commands.push_str(rcpt);
        commands.push_str(">\r\n");
    }
    commands.push_str("DATA\r\n");
    c.send_raw(commands.as_bytes()).await?;
    anyhow::ensure!(c.read_reply().await?.code == 250, "MAIL refused");
    for _ in rcpts {
        anyhow::ensure!(c.read_reply().await?.code == 250, "RCPT refused");
    }
    anyhow::ensure!(c.read_reply().await?.code == 354, "DATA refused");
    end_of_data(c, wire).await
}

/// Sends the body and the final `.`; returns the reply's code and how long it took after the `.`.
async fn end_of_data(c: &mut Client, mut wire: Vec<u8>) -> anyhow::Result<(u16, Duration)> {
    if !wire.ends_with(b"\r\n") {
        wire.extend_from_slice(b"\r\n");
    }
    c.send_raw(&wire).await?;
    let start = Instant::now();
    c.send_raw(b".\r\n").await?;
    let reply = c.read_reply().await?;
    Ok((reply.code, start.elapsed()))
}
