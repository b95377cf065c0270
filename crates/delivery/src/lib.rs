//! Delivery: executes plans over SMTP (transport) and runs the queue (runner, retries, DSNs).
//!
//! Policy decisions come from `strictmx-policy`; facts from `strictmx-resolve`; state from the spool.

pub mod dsn;
pub mod job;
pub mod retry;
pub mod runner;
pub mod transport;
pub mod watch;
