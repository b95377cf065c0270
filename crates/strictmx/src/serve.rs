//! `strictmx serve`: opens the spool, binds every listener, then runs the inbound listeners, the
//! queue runner, the control socket and the metrics exporter until SIGTERM or SIGINT.
//!
//! Everything that can fail on bad configuration or a busy port fails before anything serves.
//! On a signal it stops accepting, then drains for `server.shutdown_grace`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use strictmx_config::Config;
use strictmx_delivery::runner::QueueRunner;
use strictmx_delivery::transport::Transport;
use strictmx_inbound::Inbound;
use strictmx_resolve::DnsResolver;
use strictmx_spool::Spool;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::{control, logging, metrics};

pub fn run(config: Config) -> ExitCode {
    logging::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = format!("{e:#}"), "strictmx stopped on an error");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let spool = Spool::open(&config.spool)
        .with_context(|| format!("opening the spool in {}", config.data_dir.display()))?;
    let resolver = DnsResolver::new(&config.resolver).context("setting up the DNS resolver")?;
    let transport = Arc::new(
        Transport::new(config.transport.clone(), resolver)
            .context("setting up outbound delivery")?,
    );
    let inbound =
        Inbound::bind(config.inbound.clone(), spool.clone()).context("binding the listeners")?;
    let control =
        control::Server::bind(&config.control_socket, spool.clone(), config.queue.clone())
            .with_context(|| {
                format!(
                    "binding the control socket {}",
                    config.control_socket.display()
                )
            })?;
    if let Some(addr) = config.metrics_listen {
        metrics::install(addr)
            .with_context(|| format!("starting the metrics exporter on {addr}"))?;
    }

    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;

    for (address, role) in inbound.local_addrs() {
        info!(%address, ?role, "listening");
    }
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    tracker.spawn(inbound.run(token.clone()));
    tracker
        .spawn(QueueRunner::new(spool.clone(), transport, config.queue.clone()).run(token.clone()));
    tracker.spawn(control.run(token.clone()));
    tracker.spawn(metrics::sample_spool(spool.clone(), token.clone()));
    tracker.close();
    info!(hostname = %config.hostname, data_dir = %config.data_dir.display(), "strictmx is serving");

    tokio::select! {
        _ = sigterm.recv() => info!("SIGTERM: shutting down"),
        _ = sigint.recv() => info!("SIGINT: shutting down"),
    }
    token.cancel();
    if tokio::time::timeout(config.shutdown_grace, tracker.wait())
        .await
        .is_err()
    {
        warn!(grace = ?config.shutdown_grace, "shutdown grace period over; abandoning what is still running (queued mail stays queued)");
    }
    info!("stopped");
    Ok(())
}
