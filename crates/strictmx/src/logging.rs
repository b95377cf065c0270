//! Log output: human-readable or JSON lines on standard error, filtered by `log.level` or RUST_LOG.
//! On a terminal each record is written as it comes; otherwise records are gathered for a few
//! milliseconds and written together (`log_output`).
//!
//! What gets logged, with which fields, is each crate's business; this only installs the sink.

use std::io::{IsTerminal, Stderr};

use strictmx_config::{LogFormat, LogSettings};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::json_log::{JsonFields, JsonLines};
use crate::log_output::{self, FLUSH_AFTER};

/// Writes the records still waiting when dropped: hold it until the server exits.
pub type LogGuard = Option<log_output::Guard<Stderr>>;

/// `node` (this node's id) goes into every JSON record; the human format leaves it to the
/// lines that name it.
pub fn init(settings: &LogSettings, node: Option<&str>) -> LogGuard {
    if std::io::stderr().is_terminal() {
        install(settings, node, std::io::stderr, true);
        return None;
    }
    let (batched, guard) = log_output::start(std::io::stderr(), FLUSH_AFTER);
    install(settings, node, batched, false);
    Some(guard)
}

fn install<W>(settings: &LogSettings, node: Option<&str>, writer: W, ansi: bool)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(settings.level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let result = match settings.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder
            .fmt_fields(JsonFields)
            .event_format(JsonLines {
                node: node.map(str::to_owned),
            })
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("logging was already set up: {e}");
    }
}
