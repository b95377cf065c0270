//! The listener and the routes: HTTPS when the server has a certificate (the `[tls]` one,
//! reloads included), HTTP/1.1 on hyper, the axum router, the handlers, and graceful shutdown.
//! What a request means is `request`'s and `status`'s; acceptance is `strictmx_inbound`'s.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use http_body_util::LengthLimitError;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use strictmx_inbound::{Accepted, Acceptor, Refusal, Submission};
use strictmx_protocol::{MailParams, RcptParams, needs_smtputf8};
use strictmx_spool::{ClientInfo, EnvelopeRecipient, IdempotencyKey, Spool, format_id, parse_id};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::auth::{FailureLimit, InvalidTokenHash, Tokens};
use crate::request::{self, BadField, Requirement};
use crate::{HttpApiSettings, Token, status};

/// The OpenAPI document, as checked in.
pub const OPENAPI: &str = include_str!("../../../docs/http-api.openapi.json");

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often expired idempotency keys are pruned, and how many at a time.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const PRUNE_BATCH: usize = 1000;

/// Why the API could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HttpApiError {
    #[error("cannot listen on {address}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("http api tokens")]
    Token(#[from] InvalidTokenHash),
}

struct Shared {
    acceptor: Acceptor<Spool>,
    tokens: RwLock<Arc<Tokens>>,
    failures: FailureLimit,
    settings: HttpApiSettings,
}

impl Shared {
    fn tokens(&self) -> Arc<Tokens> {
        Arc::clone(&self.tokens.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The client of one connection, for every request on it.
#[derive(Debug, Clone)]
struct Client {
    ip: IpAddr,
    /// `TLSv1.3 TLS13_...`, or `None` over plain HTTP.
    tls: Option<String>,
}

/// The bound API, ready to serve.
pub struct HttpApi {
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HttpApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpApi")
            .field("listen", &self.shared.settings.listen)
            .finish_non_exhaustive()
    }
}

/// Replaces the tokens of a running API (reload).
#[derive(Clone)]
pub struct HttpApiHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HttpApiHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpApiHandle").finish_non_exhaustive()
    }
}

impl HttpApiHandle {
    /// Check and put in force new tokens; on an error the old ones stay.
    pub fn replace_tokens(&self, tokens: &[Token]) -> Result<(), InvalidTokenHash> {
        let tokens = Arc::new(Tokens::new(tokens)?);
        *self
            .shared
            .tokens
            .write()
            .unwrap_or_else(PoisonError::into_inner) = tokens;
        Ok(())
    }
}

impl HttpApi {
    /// Check the tokens and bind the listener; nothing is served yet.
    pub fn bind(
        settings: HttpApiSettings,
        acceptor: Acceptor<Spool>,
    ) -> Result<HttpApi, HttpApiError> {
        let tokens = Tokens::new(&settings.tokens)?;
        let bind_error = |source| HttpApiError::Bind {
            address: settings.listen,
            source,
        };
        let listener = std::net::TcpListener::bind(settings.listen).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let shared = Shared {
            acceptor,
            tokens: RwLock::new(Arc::new(tokens)),
            failures: FailureLimit::new(
                settings.auth_failures_per_client,
                settings.auth_failure_window,
            ),
            settings,
        };
        Ok(HttpApi {
            listener,
            shared: Arc::new(shared),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.shared.settings.listen)
    }

    /// Whether requests are served over TLS.
    pub fn is_https(&self) -> bool {
        self.shared.acceptor.tls().is_some()
    }

    pub fn handle(&self) -> HttpApiHandle {
        HttpApiHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Serve until `shutdown`, then stop accepting, let requests in flight finish for `grace`
    /// and close the rest.
    pub async fn run(self, shutdown: CancellationToken, grace: Duration) {
        let listener = match TcpListener::from_std(self.listener) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(%error, "cannot serve the http api");
                return;
            }
        };
        let router = router(Arc::clone(&self.shared));
        let graceful = GracefulShutdown::new();
        let spool = self.shared.acceptor.queue().clone();
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                _ = prune.tick() => {
                    prune_keys(&spool).await;
                    continue;
                }
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(%error, "http api accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let ip = peer.ip().to_canonical();
            let tls = self.shared.acceptor.tls();
            let router = router.clone();
            let watcher = graceful.watcher();
            let header_timeout = self.shared.settings.header_timeout;
            tokio::spawn(async move {
                let serve = |client: Client| {
                    let service = TowerToHyperService::new(router.layer(Extension(client)));
                    let mut builder = hyper::server::conn::http1::Builder::new();
                    builder
                        .timer(TokioTimer::new())
                        .header_read_timeout(header_timeout);
                    (builder, service)
                };
                match tls {
                    None => {
                        let (builder, service) = serve(Client { ip, tls: None });
                        let conn = builder.serve_connection(TokioIo::new(tcp), service);
                        let _ = watcher.watch(conn).await;
                    }
                    Some(acceptor) => {
                        let Ok(Ok(stream)) =
                            tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                        else {
                            return;
                        };
                        let described = strictmx_inbound::describe_tls(stream.get_ref().1);
                        let (builder, service) = serve(Client {
                            ip,
                            tls: Some(described),
                        });
                        let conn = builder.serve_connection(TokioIo::new(stream), service);
                        let _ = watcher.watch(conn).await;
                    }
                }
            });
        }
        drop(listener);
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            warn!(
                ?grace,
                "http api requests still busy after the grace period; closing them"
            );
        }
        info!("http api stopped");
    }
}

async fn prune_keys(spool: &Spool) {
    match spool.prune_idempotency(PRUNE_BATCH).await {
        Ok(0) => {}
        Ok(pruned) => tracing::debug!(pruned, "expired idempotency keys removed"),
        Err(error) => {
            warn!(error = %strictmx_protocol::ErrorChain(&error), "cannot prune idempotency keys")
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/messages", post(post_message))
        .route("/v1/messages/{id}", get(get_message))
        .route("/v1/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(shared)
}

/// Why a request body was not read.
enum Unreadable {
    /// Over `max_request_size`: declared so, or found so while reading.
    TooLarge,
    /// The connection failed while the body was read.
    Broken,
}

impl Unreadable {
    fn outcome(&self) -> &'static str {
        match self {
            Unreadable::TooLarge => "request_too_large",
            Unreadable::Broken => "body_unreadable",
        }
    }

    fn answer(&self) -> Response {
        match self {
            Unreadable::TooLarge => error(StatusCode::PAYLOAD_TOO_LARGE, "request_too_large"),
            Unreadable::Broken => error(StatusCode::BAD_REQUEST, "bad_request"),
        }
    }
}

/// The request body, read only once the client is known and only up to `limit`: a body whose
/// `Content-Length` is over the limit is refused before any of it is read.
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, Unreadable> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Unreadable::TooLarge);
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if e.into_inner().downcast_ref::<LengthLimitError>().is_some() {
            Unreadable::TooLarge
        } else {
            Unreadable::Broken
        }
    })
}

/// Every answer is JSON, the ones for paths and methods the API does not have too.
async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found")
}

async fn method_not_allowed() -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
}

/// A JSON response, counted by status.
fn answer(status: StatusCode, body: Vec<u8>) -> Response {
    metrics::counter!("strictmx_http_requests_total", "status" => status.as_u16().to_string())
        .increment(1);
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, code: &str) -> Response {
    answer(status, json!({ "error": code }).to_string().into_bytes())
}

fn bad_request(bad: &BadField) -> Response {
    let body = json!({ "error": "bad_request", "field": bad.field, "message": bad.message });
    answer(StatusCode::BAD_REQUEST, body.to_string().into_bytes())
}

fn unauthorized() -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, "unauthorized");
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

async fn openapi() -> Response {
    answer(StatusCode::OK, OPENAPI.as_bytes().to_vec())
}

/// The token of the request, or the refusal: 429 when the client failed too often, 401 for a
/// missing or wrong token (counted as a failure).
async fn authenticate(
    shared: &Shared,
    client: &Client,
    headers: &HeaderMap,
) -> Result<Token, Response> {
    if shared.failures.is_limited(client.ip, Instant::now()) {
        warn!(ip = %client.ip, outcome = "rate_limited", "http api request refused");
        return Err(error(StatusCode::TOO_MANY_REQUESTS, "too_many_failures"));
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let token = match presented {
        Some(presented) => shared.tokens().verify(presented).await,
        None => None,
    };
    token.ok_or_else(|| {
        shared.failures.fail(client.ip, Instant::now());
        warn!(ip = %client.ip, outcome = "unauthorized", "http api request refused");
        unauthorized()
    })
}

async fn post_message(
    State(shared): State<Arc<Shared>>,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let token = match authenticate(&shared, &client, &headers).await {
        Ok(token) => token,
        Err(refusal) => return refusal,
    };
    let body = match read_body(body, &headers, shared.settings.max_request_size).await {
        Ok(body) => body,
        Err(refusal) => {
            info!(ip = %client.ip, token = %token.name, outcome = refusal.outcome(), "http api request refused");
            return refusal.answer();
        }
    };
    let request = match request::parse(&body, shared.settings.max_recipients) {
        Ok(request) => request,
        Err(bad) => {
            info!(ip = %client.ip, token = %token.name, field = bad.field, outcome = "bad_request", "http api request refused");
            return bad_request(&bad);
        }
    };
    if !token.senders.iter().any(|p| p.matches(&request.from)) {
        shared.failures.fail(client.ip, Instant::now());
        warn!(ip = %client.ip, token = %token.name, from = %request.from, outcome = "forbidden", "http api sender not allowed for this token");
        return error(StatusCode::FORBIDDEN, "forbidden");
    }
    let acceptor = &shared.acceptor;
    let id = acceptor.reserve_id();
    let answer_body = json!({
        "id": format_id(id),
        "recipients": request.to,
        "require_tls": request.require_tls.as_str(),
    })
    .to_string()
    .into_bytes();
    let params = MailParams {
        smtputf8: needs_smtputf8(
            std::iter::once(request.from.as_str()).chain(request.to.iter().map(String::as_str)),
        ),
        // RFC 8689 §4: what MAIL FROM ... REQUIRETLS sets.
        requiretls: request.require_tls == Requirement::RequireTls,
        ..MailParams::default()
    };
    let protocol = if client.tls.is_some() {
        "HTTPS"
    } else {
        "HTTP"
    };
    let submission = Submission {
        from: request.from,
        params,
        recipients: request
            .to
            .into_iter()
            .map(|address| EnvelopeRecipient {
                address,
                params: RcptParams::default(),
            })
            .collect(),
        client: ClientInfo {
            ip: client.ip,
            helo: String::new(),
            auth_user: Some(token.name.clone()),
            tls: client.tls.clone(),
        },
        protocol: protocol.to_owned(),
        require_tls: match request.require_tls {
            Requirement::Floor(floor) => Some(floor),
            Requirement::Opportunistic | Requirement::RequireTls => None,
        },
        content: request.content,
        // Keys are the token's own: another token's key never collides.
        once: request.idempotency_key.map(|key| IdempotencyKey {
            key: format!("{}\n{key}", token.name),
            fingerprint: fingerprint(&body),
            answer: answer_body.clone(),
        }),
        transfer: None,
    };
    match acceptor.accept(id, submission).await {
        Ok(Accepted::Queued(_)) => answer(StatusCode::ACCEPTED, answer_body),
        Ok(Accepted::Repeat(first)) => {
            let mut response = answer(StatusCode::ACCEPTED, first);
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            response
        }
        Ok(Accepted::KeyReused) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
        }
        // The API sends no transfer id, so the queue never answers this here.
        Ok(Accepted::TransferRepeat(_)) => refused(Refusal::QueueFailed),
        Err(refusal) => refused(refusal),
    }
}

/// What identifies a request for its idempotency key: a SHA-256 of its JSON with the members of
/// every object in name order, so that a retry that serializes the same request differently
/// (spacing, member order) is still a repeat, and one that changes anything is not.
fn fingerprint(body: &[u8]) -> Vec<u8> {
    // The body parsed already (request::parse); a map without `preserve_order` sorts by name.
    let canonical = serde_json::from_slice::<serde_json::Value>(body)
        .map(|value| value.to_string().into_bytes())
        .unwrap_or_else(|_| body.to_vec());
    ring::digest::digest(&ring::digest::SHA256, &canonical)
        .as_ref()
        .to_vec()
}

fn refused(refusal: Refusal) -> Response {
    match refusal {
        Refusal::TooBig => error(StatusCode::PAYLOAD_TOO_LARGE, "message_too_big"),
        Refusal::LongLine => bad_request(&BadField {
            field: "raw",
            message: "a line is longer than 998 octets".into(),
        }),
        Refusal::Loop { hops } => bad_request(&BadField {
            field: "raw",
            message: format!("{hops} Received: fields: the message is looping"),
        }),
        Refusal::Memory | Refusal::QueueBusy => {
            let mut response = error(StatusCode::SERVICE_UNAVAILABLE, "try_again_later");
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            response
        }
        Refusal::QueueFailed => error(StatusCode::INTERNAL_SERVER_ERROR, "queue_failed"),
    }
}

async fn get_message(
    State(shared): State<Arc<Shared>>,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let token = match authenticate(&shared, &client, &headers).await {
        Ok(token) => token,
        Err(refusal) => return refusal,
    };
    let Ok(id) = parse_id(&id) else {
        return error(StatusCode::NOT_FOUND, "not_found");
    };
    let spool = shared.acceptor.queue().clone();
    let name = token.name.clone();
    let view = tokio::task::spawn_blocking(move || status::view(&spool, id, &name)).await;
    match view {
        Ok(Ok(Some(view))) => answer(StatusCode::OK, view.to_string().into_bytes()),
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, "not_found"),
        Ok(Err(e)) => {
            warn!(error = %strictmx_protocol::ErrorChain(&e), "http api cannot read a message's status");
            error(StatusCode::INTERNAL_SERVER_ERROR, "spool_error")
        }
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "spool_error"),
    }
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    /// A retry that writes the same request differently is the same request; any change to
    /// what it asks is another.
    #[test]
    fn a_fingerprint_ignores_spacing_and_member_order_and_nothing_else() {
        let first = fingerprint(br#"{"from":"a@app.test","to":["b@x.test"],"subject":"hi"}"#);
        let reordered = fingerprint(
            b"{ \"subject\": \"hi\",\n  \"to\": [\"b@x.test\"], \"from\": \"a@app.test\" }",
        );
        assert_eq!(first, reordered);
        let changed = fingerprint(br#"{"from":"a@app.test","to":["c@x.test"],"subject":"hi"}"#);
        assert_ne!(first, changed);
        let reversed_list =
            fingerprint(br#"{"from":"a@app.test","to":["c@x.test","b@x.test"],"subject":"hi"}"#);
        let list =
            fingerprint(br#"{"from":"a@app.test","to":["b@x.test","c@x.test"],"subject":"hi"}"#);
        assert_ne!(
            list, reversed_list,
            "the order of a list is part of the request"
        );
    }
}
