//! Log output: human-readable or JSON lines on standard error, filtered by `log.level` or RUST_LOG.
//!
//! What gets logged, with which fields, is each crate's business; this only installs the sink.

use std::io::IsTerminal;

use strictmx_config::{LogFormat, LogSettings};
use tracing_subscriber::EnvFilter;

use crate::json_log::{JsonFields, JsonLines};

/// `node` (this node's id) goes into every JSON record; the human format leaves it to the
/// lines that name it.
pub fn init(settings: &LogSettings, node: Option<&str>) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(settings.level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
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
