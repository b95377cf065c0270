//! HTTP submissions (`--http`): N messages of SIZE as `POST /v1/messages` with `raw`, over C
//! keep-alive connections (plain HTTP on loopback), into the same relay configuration as the
//! SMTP sweep, delivered to the same sink; then the same N over SMTP at the same C on a fresh
//! relay, for the figure next to it. Both are durable: 202 and 250 come after the fdatasync.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use strictmx_test_support::smtp::Sink;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::generator::{self, Load, body, single};
use crate::harness::{self, Bench, Waited};
use crate::probe;
use crate::throughput::sink_options;

const TOKEN: &str = "bench-token-0123456789";

pub async fn run(n: usize, size: usize, conns: usize) -> anyhow::Result<()> {
    let (http_accepted, http_delivered, cpu) = http_run(n, size, conns).await?;
    let (smtp_accepted, smtp_delivered) = smtp_run(n, size, conns).await?;
    println!(
        "C={conns} {n} x {size} B: HTTP accepted {http_accepted:.0} msg/s, delivered {http_delivered}; relay CPU {cpu:.2} ms/msg | \
         SMTP accepted {smtp_accepted:.0} msg/s, delivered {smtp_delivered}"
    );
    Ok(())
}

fn delivered(waited: Waited, n: usize) -> String {
    match waited {
        Waited::Done(took) => format!("{:.0} msg/s", n as f64 / took.as_secs_f64()),
        Waited::Stalled { progress } => format!("STALLED at {progress}"),
    }
}

async fn http_run(n: usize, size: usize, conns: usize) -> anyhow::Result<(f64, String, f64)> {
    let sink = Sink::start_with("127.0.0.1:0".parse()?, sink_options(false)?).await?;
    let api = probe::free_port()?;
    let rest = format!(
        "[[route]]\ndomain = \"dest.test\"\nnext_hop = \"{}\"\n\n[http_api]\nlisten = \"{api}\"\n\n\
         [[http_api.token]]\nname = \"bench\"\ntoken_hash = \"{}\"\nsenders = [\"@src.test\"]\n",
        sink.addr,
        strictmx_inbound::hash_password(TOKEN),
    );
    let bench = Bench::start("", &rest, false).await?;
    let before = bench.usage().await;
    let start = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|c| tokio::spawn(submit(api, (c..n).step_by(conns).collect(), size)))
        .collect();
    for task in tasks {
        task.await??;
    }
    let accepted = n as f64 / start.elapsed().as_secs_f64();
    let waited = harness::wait("http delivery", start, Duration::from_millis(50), || {
        let got = sink.message_count();
        (got, got >= n)
    })
    .await;
    let ms = bench.cost_since(before).await.cpu_ms;
    bench.stop().await?;
    Ok((accepted, delivered(waited, n), ms / n as f64))
}

/// One keep-alive connection posting messages `ids`; every answer must be 202.
async fn submit(api: std::net::SocketAddr, ids: Vec<usize>, size: usize) -> anyhow::Result<()> {
    let tcp = TcpStream::connect(api).await?;
    tcp.set_nodelay(true)?;
    let mut tcp = BufReader::new(tcp);
    for id in ids {
        let raw = base64::engine::general_purpose::STANDARD.encode(body(size, id));
        let json = format!(r#"{{"from":"bench@src.test","to":["sink@dest.test"],"raw":"{raw}"}}"#);
        let request = format!(
            "POST /v1/messages HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
            json.len()
        );
        tcp.get_mut().write_all(request.as_bytes()).await?;
        let mut status = String::new();
        tcp.read_line(&mut status).await?;
        anyhow::ensure!(
            status.starts_with("HTTP/1.1 202"),
            "message {id}: {status:?}"
        );
        let mut length = 0;
        loop {
            let mut line = String::new();
            tcp.read_line(&mut line).await?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse()?;
            }
        }
        let mut answer = vec![0; length];
        tcp.read_exact(&mut answer).await?;
    }
    Ok(())
}

async fn smtp_run(n: usize, size: usize, conns: usize) -> anyhow::Result<(f64, String)> {
    let sink = Sink::start_with("127.0.0.1:0".parse()?, sink_options(false)?).await?;
    let routes = format!(
        "[[route]]\ndomain = \"dest.test\"\nnext_hop = \"{}\"\n",
        sink.addr
    );
    let bench = Bench::start("", &routes, false).await?;
    let load = Arc::new(Load {
        addr: bench.relay.smtp,
        envelope: single("sink@dest.test"),
        size,
        pace: None,
        acked: Arc::default(),
    });
    let start = Instant::now();
    let (submitted, error) = generator::run(load, n, conns).await;
    if let Some(e) = error {
        return Err(e);
    }
    let accepted = (n - submitted.refused) as f64 / start.elapsed().as_secs_f64();
    let waited = harness::wait("smtp delivery", start, Duration::from_millis(50), || {
        let got = sink.message_count();
        (got, got >= n - submitted.refused)
    })
    .await;
    bench.stop().await?;
    Ok((accepted, delivered(waited, n - submitted.refused)))
}
