//! `strictmx serve`: opens the spool, sets up DNS, MTA-STS and the
//! transport, binds every listener, then runs the inbound listeners, the queue runner, the
//! MTA-STS refresher, the control socket, the HTTP API, the metrics exporter and, with
//! `[cluster]`, the cluster task (heartbeats, shared TLSRPT counters and reports, the audit
//! index) until SIGTERM or SIGINT.
//!
//! Everything that can fail on bad configuration or a busy port fails before anything serves;
//! the DNSSEC self-test runs in the background once serving (DANE hosts defer until it passes,
//! and it is repeated within seconds after a failure). SIGHUP
//! reloads the policy (`reload`). On SIGTERM/SIGINT it stops accepting, then drains for
//! `server.shutdown_grace`. With `--drain` (or after `strictmx drain`) it empties its queue
//! (`drain`) and stops once it is empty.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use strictmx_cluster::{Cluster, SharedPolicies, SharedPostures};
use strictmx_config::Config;
use strictmx_delivery::runner::QueueRunner;
use strictmx_delivery::transport::Transport;
use strictmx_delivery::watch::PostureWatch;
use strictmx_inbound::Inbound;
use strictmx_protocol::ErrorChain;
use strictmx_resolve::{DnsResolver, FactGatherer, HttpsTimeouts, StsSource, report_client};
use strictmx_spool::Spool;
use strictmx_tlsrpt::ReportPoster;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::location::Location;
use crate::reload::Live;
use crate::{control, drain, logging, metrics, sd_notify, tlsrpt_cmd, webhook};

/// How long after the grace period the server still waits for its last replies to be sent.
const FAREWELL: std::time::Duration = std::time::Duration::from_secs(5);

pub fn run(config: Config, location: &Location, drain: Option<drain::Order>) -> ExitCode {
    let node = node_id(&config.data_dir);
    // Dropped last, when `run` returns: the records still waiting are written then.
    let _log = logging::init(&config.log, node.as_ref().ok().map(String::as_str));
    let node = match node {
        Ok(node) => node,
        Err(e) => {
            error!(error = format!("{e:#}"), "strictmx cannot start");
            return ExitCode::FAILURE;
        }
    };
    match location.file() {
        Some((path, found_by)) => {
            info!(config = %path.display(), found_by, "configuration loaded");
        }
        None => {
            warn!(detail = %location, "no configuration file: running on the embedded defaults")
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %ErrorChain(&e), "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config, node, drain)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = format!("{e:#}"), "strictmx stopped on an error");
            ExitCode::FAILURE
        }
    }
}

/// The node id of `data_dir` (created, with the directory, on first use).
fn node_id(data_dir: &std::path::Path) -> anyhow::Result<String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    Ok(strictmx_spool::node_id(data_dir)?)
}

async fn serve(
    config: Config,
    node: String,
    drain_order: Option<drain::Order>,
) -> anyhow::Result<()> {
    for warning in &config.warnings {
        warn!(warning = %warning, "configuration warning");
    }
    let spool = Spool::open(&config.spool)
        .with_context(|| format!("opening the spool in {}", config.data_dir.display()))?;
    let cluster = cluster(&config, &node)?;
    let inbound =
        Inbound::bind(config.inbound.clone(), spool.clone()).context("binding the listeners")?;
    // Delivery must know where we listen, so mail routed back to us bounces as a loop.
    let mut transport_settings = config.transport.clone();
    transport_settings.own_listeners = inbound
        .local_addrs()
        .into_iter()
        .map(|(address, _)| address)
        .collect();
    let gatherer = Arc::new(gatherer(&config, &spool, cluster.as_ref())?);
    let mut watch = PostureWatch::load(spool.clone(), config.watch)
        .context("loading the destination postures")?;
    if let Some(cluster) = &cluster {
        watch = watch.with_shared(SharedPostures::shared(cluster));
    }
    let watch = Arc::new(watch);
    let transport = Arc::new(
        Transport::new(transport_settings, gatherer.clone())
            .context("setting up outbound delivery")?
            .with_watch(watch.clone()),
    );
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    let client = strictmx_resolve::webhook_client(HttpsTimeouts::default())
        .context("building the webhook HTTP client")?;
    let webhooks = Arc::new(webhook::Webhooks::start(
        &spool,
        &config.webhooks,
        client,
        &tracker,
        &token,
    ));
    let http_api = match &config.http_api {
        Some(settings) => Some(
            strictmx_http_api::HttpApi::bind(settings.clone(), inbound.acceptor())
                .with_context(|| format!("binding the HTTP API on {}", settings.listen))?,
        ),
        None => None,
    };
    let (drain_handle, drain_orders) = drain::DrainHandle::new(drain_order);
    let live = Arc::new(
        Live::new(config.clone(), transport.clone())
            .with_inbound(inbound.handle())
            .with_webhooks(webhooks)
            .with_cluster(cluster.clone())
            .with_http_api(http_api.as_ref().map(strictmx_http_api::HttpApi::handle))
            .with_drain(drain_handle),
    );
    let shared_counters = cluster
        .as_ref()
        .map(|c| strictmx_cluster::SharedCounters::new(c.clone(), spool.clone()));
    let reporting = tlsrpt(
        &config,
        &spool,
        &gatherer,
        shared_counters
            .clone()
            .map(|c| Arc::new(c) as Arc<dyn strictmx_tlsrpt::CounterStore>),
        &tracker,
        &token,
    )?;
    let control = control::Server::bind(
        &config.control_socket,
        spool.clone(),
        config.queue.clone(),
        live.clone(),
    )
    .with_context(|| {
        format!(
            "binding the control socket {}",
            config.control_socket.display()
        )
    })?
    .with_tlsrpt(reporting.as_ref().map(|t| t.reporter.clone()));
    let mut runner = QueueRunner::new(spool.clone(), transport.clone(), config.queue.clone())
        .with_watch(watch.clone());
    let listeners = token.child_token();
    let drained = CancellationToken::new();
    let drain = drain::Drain {
        spool: spool.clone(),
        runner: runner.handle(),
        transport,
        listeners: listeners.clone(),
        drained: drained.clone(),
    };
    let control = control.with_runner(runner.handle()).with_watch(watch);
    let exporter = match config.metrics_listen {
        Some(addr) => Some(
            metrics::install(addr)
                .with_context(|| format!("starting the metrics exporter on {addr}"))?,
        ),
        None => None,
    };

    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;

    for (address, role) in inbound.local_addrs() {
        info!(%address, role = role.as_str(), "listening");
    }
    tracker.spawn(inbound.run(listeners.clone()));
    tracker.spawn(drain.run(drain_orders, token.clone()));
    if let Some(cluster) = cluster {
        let reports = shared_counters.zip(reporting.as_ref().map(|t| t.reporter.clone()));
        let audit = strictmx_cluster::SharedAudit::new(
            cluster.clone(),
            spool.clone(),
            config.spool.audit.keep,
        );
        tracker.spawn(strictmx_cluster::run(
            cluster,
            reports,
            Some(audit),
            token.clone(),
        ));
    }
    if let Some(api) = http_api {
        let scheme = if api.is_https() { "https" } else { "http" };
        info!(address = %api.local_addr(), scheme, "http api listening");
        // A drain closes it with the SMTP listeners.
        tracker.spawn(api.run(listeners, config.shutdown_grace));
    }
    if let Some(t) = reporting {
        // Every job's TLS sessions are counted for the daily reports.
        runner = runner.with_tlsrpt(t.recorder);
    }
    tracker.spawn(runner.run(token.clone()));
    tracker.spawn(control.run(token.clone()));
    // Mail is served meanwhile; DANE destinations defer until the test passes.
    tracker.spawn(gatherer.clone().run_self_test(token.clone()));
    tracker.spawn(gatherer.run_refresher(token.clone()));
    tracker.spawn(metrics::sample_spool(spool.clone(), token.clone()));
    ::metrics::gauge!("strictmx_node_info", "node" => node.clone()).set(1.0);
    if let Some(exporter) = exporter {
        tracker.spawn(exporter.run(token.clone()));
    }
    tracker.close();
    info!(hostname = %config.hostname, data_dir = %config.data_dir.display(), node = %node, "strictmx is serving");
    sd_notify::notify("READY=1\nSTATUS=serving");

    loop {
        tokio::select! {
            _ = sigterm.recv() => break info!("SIGTERM: shutting down"),
            _ = sigint.recv() => break info!("SIGINT: shutting down"),
            () = drained.cancelled() => break info!("drained: shutting down"),
            _ = sighup.recv() => {
                info!("SIGHUP: reloading the configuration");
                // Success and failure are both logged by `reload`.
                let _ = live.reload();
            }
        }
    }
    sd_notify::notify("STOPPING=1");
    token.cancel();
    // The listeners give busy sessions `shutdown_grace`, then answer them 421 4.3.2; the
    // farewell lets those replies reach the clients before anything is abandoned.
    if tokio::time::timeout(config.shutdown_grace + FAREWELL, tracker.wait())
        .await
        .is_err()
    {
        warn!(grace = ?config.shutdown_grace, "shutdown grace period over; abandoning what is still running (queued mail stays queued)");
    }
    info!("stopped");
    Ok(())
}

/// The resolver in the configured DNSSEC mode and MTA-STS on the spool's cache. The DNSSEC
/// self-test does not run here: `run_self_test` runs it in the background once serving, and
/// until it passes DANE destinations defer (a broken setup never stops the server).
fn gatherer(
    config: &Config,
    spool: &Spool,
    cluster: Option<&Cluster>,
) -> anyhow::Result<FactGatherer> {
    let resolver = DnsResolver::new(&config.resolver).context("setting up the DNS resolver")?;
    let mut sts = StsSource::new(resolver.clone(), spool.clone(), config.mta_sts.clone())
        .context("setting up MTA-STS")?;
    if let Some(cluster) = cluster {
        sts = sts.with_shared(SharedPolicies::shared(cluster));
    }
    Ok(FactGatherer::untested(resolver, sts, config.gather))
}

/// With `[cluster] database`: the node's handle on the shared database, publishing the hash of
/// its rules. The database is reached lazily: one that is down now does not stop the node.
fn cluster(config: &Config, node: &str) -> anyhow::Result<Option<Cluster>> {
    let Some(database) = &config.cluster.database else {
        return Ok(None);
    };
    let cluster = Cluster::new(
        database,
        config.cluster.clone(),
        node.to_owned(),
        config.hostname.clone(),
    )
    .context("setting up the cluster database")?;
    cluster.set_rules_hash(strictmx_cluster::rules_hash(&config.effective_rules()));
    info!(database = %database.url, node, "cluster mode: sharing state through PostgreSQL");
    Ok(Some(cluster))
}

/// With `[tlsrpt] enabled`: the TLSRPT recorder and daily report task, posting `https:` reports
/// with the report client (public addresses only unless `insecure_https_allow_networks`; the
/// web PKI roots plus only `[tlsrpt] https_extra_ca_file`). The queue runner feeds the
/// recorder; the reporter answers `strictmx tlsrpt`.
fn tlsrpt(
    config: &Config,
    spool: &Spool,
    gatherer: &FactGatherer,
    shared: Option<Arc<dyn strictmx_tlsrpt::CounterStore>>,
    tracker: &TaskTracker,
    token: &CancellationToken,
) -> anyhow::Result<Option<tlsrpt_cmd::Tlsrpt>> {
    if !config.tlsrpt.enabled {
        return Ok(None);
    }
    let resolver = gatherer.resolver().clone();
    let settings = &config.tlsrpt;
    let client = report_client(
        &resolver,
        settings.https_extra_ca_file.as_deref(),
        &settings.insecure_https_allow_networks,
        HttpsTimeouts {
            total: settings.https_timeout,
            ..HttpsTimeouts::default()
        },
    )
    .context("setting up the HTTPS client for TLSRPT reports")?;
    let poster: Arc<dyn ReportPoster> = Arc::new(client);
    let started = tlsrpt_cmd::start(
        spool,
        config.tlsrpt.clone(),
        resolver,
        poster,
        shared,
        tracker,
        token,
    );
    info!(
        organization = %config.tlsrpt.organization_name,
        "TLSRPT reporting is on: daily reports after midnight UTC"
    );
    Ok(started)
}
