//! strictmx-inbound: the SMTP listeners (relay, submission, submissions), the server-side
//! session state machine, AUTH, trusted networks and limits. Messages go to a `Queue` (the
//! spool); what happens to them afterwards is left to the spool and delivery crates.
#![forbid(unsafe_code)]

mod accept;
mod budget;
mod dkim;
mod error;
mod headers;
mod io;
mod queue;
mod server;
mod session;
mod settings;
mod throttle;
mod tls;
mod users;

pub use accept::{Accepted, Acceptor, Refusal, Submission};
pub use dkim::{DEFAULT_SIGNED_HEADERS, DkimError, DkimKey};
pub use error::InboundError;
pub use queue::{Queue, QueueError};
pub use server::{Inbound, InboundHandle};
pub use settings::{InboundSettings, Limits, ListenerSettings, Role, ServerTlsSettings, User};
pub use tls::describe as describe_tls;
pub use users::hash_password;
