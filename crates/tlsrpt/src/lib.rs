//! strictmx-tlsrpt: SMTP TLS reporting (RFC 8460). It counts every delivery session's policy
//! outcome in the spool, builds the daily aggregate report per recipient domain that publishes a
//! `_smtp._tls` record, checks it against the RFC's schema and sends it by `mailto:` (through our
//! own queue) and `https:`. Deciding a session's result type, and which report URIs of a record
//! are used, is left to `strictmx-policy` and the transport; DNS and HTTPS clients come from
//! `strictmx-resolve` through two small traits.
#![forbid(unsafe_code)]

mod day;
mod error;
mod mail;
mod recorder;
mod report;
pub mod schedule;
mod schema;
mod send;
mod settings;
mod store;

pub use day::Day;
pub use error::TlsrptError;
pub use mail::{ReportMail, build as build_mail};
pub use recorder::{MAX_DETAIL_ROWS, OVERFLOW_REASON, Recorder};
pub use report::{
    DateRange, FailureDetail, MxHost, PolicyDescription, PolicyReport, Report, Submitter, Summary,
    build_report, file_name, report_id, subject,
};
pub use schema::{SCHEMA, validate};
pub use send::{
    BoxFuture, DomainOutcome, Prepared, ReportPoster, Reporter, TxtLookup, checked_gzip,
};
pub use settings::TlsrptSettings;
pub use store::{CounterStore, LocalCounters, merge_counters};
pub use strictmx_policy::tlsrpt_record::{
    RecordProblem, RefusedRua, Rua, RuaRefusal, TlsrptRecord, parse_record, record_name,
    select_record,
};
