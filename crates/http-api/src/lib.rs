//! strictmx-http-api: the HTTP submission API. `POST /v1/messages` takes a message as JSON and
//! hands it to the acceptance path SMTP submission uses (`strictmx_inbound::Acceptor`),
//! answering 202 only after the spool commit; `GET /v1/messages/{id}` answers each recipient's
//! state and security receipt, live from the queue or from the audit trail; `GET
//! /v1/openapi.json` serves `docs/http-api.openapi.json`. Delivery is left to the queue runner.
#![forbid(unsafe_code)]

mod auth;
mod request;
mod server;
mod settings;
mod status;

pub use auth::InvalidTokenHash;
pub use request::{BadField, MessageRequest, Requirement, parse as parse_request};
pub use server::{HttpApi, HttpApiError, HttpApiHandle, OPENAPI};
pub use settings::{HttpApiSettings, Token};
