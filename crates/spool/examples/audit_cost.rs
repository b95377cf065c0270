//! Measures what the audit trail costs the spool per message: C submitters each submit a
//! 2 KB message and record its delivery (with one attempt record) while submitting the next,
//! as the relay does, once with `[audit] enabled` and once without, alternating for a few
//! rounds in fresh spools. Prints wall time and process CPU time per message, and the bytes
//! the store keeps per message afterwards. Run with
//! `cargo run --release -p strictmx-spool --example audit_cost [-- MESSAGES ROUNDS C...]`.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, SystemTime};

use strictmx_protocol::{MailParams, RcptParams};
use strictmx_spool::{
    AttemptOutcome, AttemptRecord, AuditSettings, ClientInfo, Envelope, EnvelopeRecipient,
    MessageKind, PeerAuth, RecipientState, RecipientUpdate, Spool, SpoolSettings,
};

fn envelope() -> Envelope {
    Envelope {
        mail_from: "bench@example.org".into(),
        params: MailParams::default(),
        recipients: vec![EnvelopeRecipient {
            address: "rcpt@example.net".into(),
            params: RcptParams::default(),
        }],
        received_at: SystemTime::now(),
        client: ClientInfo {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            helo: "bench".into(),
            auth_user: Some("app".into()),
            tls: Some("TLSv1.3".into()),
        },
        kind: MessageKind::Normal,
        require_tls: None,
    }
}

/// A 2 KB message with the kind of Message-ID inbound adds: seconds, then random hex.
fn body(n: usize) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut b = format!(
        "Message-ID: <{now}.{:024x}@relay.example.org>\r\nSubject: bench\r\n\r\n",
        (n as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834)
    )
    .into_bytes();
    b.resize(2048, b'x');
    b
}

fn delivery() -> (Vec<RecipientUpdate>, Vec<AttemptRecord>) {
    let now = SystemTime::now();
    let update = RecipientUpdate {
        index: 0,
        state: RecipientState::Delivered {
            at: now,
            mx: "mx.example.net".into(),
            reply: "250 2.0.0 Ok: queued as 4XyZ".into(),
        },
    };
    let attempt = AttemptRecord {
        at: now,
        domain: "example.net".into(),
        mx: Some("mx.example.net".into()),
        ip: Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))),
        tls_version: Some("TLSv1.3".into()),
        cipher: Some("TLS13_AES_256_GCM_SHA384".into()),
        cert_verified: Some(true),
        auth: PeerAuth::Dane,
        policy: "dane".into(),
        rules: Vec::new(),
        requirement: Some("dane".into()),
        result_type: None,
        recipients: vec![0],
        outcome: AttemptOutcome::Delivered,
        reply: "250 2.0.0 Ok: queued as 4XyZ".into(),
        duration_ms: 3,
        exceptions: Vec::new(),
        shadow: Vec::new(),
    };
    (vec![update], vec![attempt])
}

/// User plus system CPU time of this process.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map_or(Vec::new(), |(_, rest)| rest.split(' ').collect());
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    // CLK_TCK is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// Bytes this process handed to `write` calls so far (`wchar` of /proc/self/io).
fn written() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// One submitter: submit, then record that message's delivery while submitting the next.
async fn submitter(spool: Spool, messages: usize, offset: usize) {
    let mut previous: Option<tokio::task::JoinHandle<()>> = None;
    for n in 0..messages {
        let id = spool
            .submit(envelope(), body(offset + n))
            .await
            .expect("submit");
        if let Some(recording) = previous.take() {
            recording.await.expect("record task");
        }
        let spool = spool.clone();
        previous = Some(tokio::spawn(async move {
            let (updates, attempts) = delivery();
            spool.record(id, updates, attempts).await.expect("record");
        }));
    }
    if let Some(recording) = previous {
        recording.await.expect("record task");
    }
}

/// What one round cost per message.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    wall: Duration,
    cpu: Duration,
    /// Bytes written to the store file.
    written: u64,
    /// Bytes of store file left.
    kept: u64,
}

async fn round(messages: usize, concurrency: usize, audit: bool) -> Cost {
    let dir = tempfile::tempdir().expect("temporary directory");
    let settings = SpoolSettings {
        data_dir: dir.path().join("spool"),
        audit: AuditSettings {
            enabled: audit,
            ..AuditSettings::default()
        },
        ..SpoolSettings::default()
    };
    let spool = Spool::open(&settings).expect("open");
    let per = messages / concurrency;
    let (started, cpu_before, written_before) = (Instant::now(), cpu(), written());
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..concurrency {
        tasks.spawn(submitter(spool.clone(), per, c * per));
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("submitter");
    }
    let (wall, used) = (started.elapsed(), cpu().saturating_sub(cpu_before));
    let bytes = written().saturating_sub(written_before);
    drop(spool);
    let size = std::fs::metadata(settings.data_dir.join("spool.redb")).map_or(0, |m| m.len());
    let n = (per * concurrency) as u32;
    Cost {
        wall: wall / n,
        cpu: used / n,
        written: bytes / u64::from(n),
        kept: size / u64::from(n),
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let messages = args.first().copied().unwrap_or(5000);
    let rounds = args.get(1).copied().unwrap_or(3);
    let concurrencies = match args.get(2..) {
        Some(c) if !c.is_empty() => c.to_vec(),
        _ => vec![1, 10],
    };
    for &c in &concurrencies {
        let mut totals = [Cost::default(); 2];
        for r in 0..rounds {
            // Alternate which goes first, so that drift in the machine's load evens out.
            let order = if r % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for audit in order {
                let cost = round(messages, c, audit).await;
                let t = &mut totals[usize::from(audit)];
                t.wall += cost.wall;
                t.cpu += cost.cpu;
                t.written += cost.written;
                t.kept += cost.kept;
            }
        }
        let [off, on] = totals.map(|t| Cost {
            wall: t.wall / rounds as u32,
            cpu: t.cpu / rounds as u32,
            written: t.written / rounds as u64,
            kept: t.kept / rounds as u64,
        });
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        for (name, cost) in [("off", off), ("on", on)] {
            println!(
                "C={c} N={messages} rounds={rounds} audit {name:>3}: {:7.1} us wall, {:6.1} us CPU, {:6} B written, {:5} B kept per message",
                us(cost.wall),
                us(cost.cpu),
                cost.written,
                cost.kept
            );
        }
        println!(
            "C={c} audit cost per message: {:+.1} us wall, {:+.1} us CPU, {:+} B written",
            us(on.wall) - us(off.wall),
            us(on.cpu) - us(off.cpu),
            on.written as i64 - off.written as i64
        );
    }
}
