//! The listeners: binding, the accept loops, session admission (total and per-IP limits,
//! answered with 421 4.7.0 at connect) and graceful shutdown. The SMTP dialogue of an admitted
//! connection is left to `session`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use strictmx_protocol::replies;
use strictmx_spool::Spool;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span, warn};

use crate::budget::BodyBudget;
use crate::io::Stop;
use crate::queue::Queue;
use crate::session;
use crate::throttle::AuthThrottle;
use crate::users::Users;
use crate::{InboundError, InboundSettings, ListenerSettings, Role};

/// How long a refused client gets to read its 421 before the socket is closed.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What every session of this server shares.
pub(crate) struct Shared<Q> {
    pub(crate) settings: InboundSettings,
    pub(crate) queue: Q,
    /// Swapped whole by [`InboundHandle`] on reload; sessions take a clone and never hold the
    /// lock across an await.
    users: RwLock<Arc<Users>>,
    tls: RwLock<Option<TlsAcceptor>>,
    /// The `[[dkim]]` keys in force; `settings.dkim` holds the ones the server started with.
    dkim: RwLock<Arc<[crate::DkimKey]>>,
    pub(crate) auth_throttle: AuthThrottle,
    pub(crate) body_budget: BodyBudget,
    sessions: Arc<Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl<Q> std::fmt::Debug for Shared<Q> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("settings", &self.settings)
            .field("tls", &self.tls().is_some())
            .finish_non_exhaustive()
    }
}

impl<Q> Shared<Q> {
    /// The users in force now.
    pub(crate) fn users(&self) -> Arc<Users> {
        Arc::clone(&self.users.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The DKIM keys in force now.
    pub(crate) fn dkim(&self) -> Arc<[crate::DkimKey]> {
        Arc::clone(&self.dkim.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The server certificate in force now; `None` offers no TLS.
    pub(crate) fn tls(&self) -> Option<TlsAcceptor> {
        self.tls
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Changes what a running server authenticates with, without a restart: the users (and the
/// users file's contents), the server certificate and key (a renewal) and the DKIM keys.
/// Sessions already past their handshake or AUTH keep what they had.
#[derive(Clone)]
pub struct InboundHandle {
    shared: Arc<dyn Reloadable>,
}

impl std::fmt::Debug for InboundHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundHandle").finish_non_exhaustive()
    }
}

/// What [`InboundHandle`] needs of the shared state, whatever the queue type.
trait Reloadable: Send + Sync {
    fn replace_users(&self, users: &[crate::User]) -> Result<(), InboundError>;
    fn replace_tls(&self, tls: &crate::ServerTlsSettings) -> Result<bool, InboundError>;
    fn replace_dkim(&self, keys: &[crate::DkimKey]);
}

impl<Q: Queue> Reloadable for Shared<Q> {
    fn replace_users(&self, users: &[crate::User]) -> Result<(), InboundError> {
        let users = Arc::new(Users::new(users)?);
        *self.users.write().unwrap_or_else(PoisonError::into_inner) = users;
        Ok(())
    }

    fn replace_tls(&self, tls: &crate::ServerTlsSettings) -> Result<bool, InboundError> {
        let mut current = self.tls.write().unwrap_or_else(PoisonError::into_inner);
        if current.is_none() {
            // Listeners were bound knowing there was no TLS; offering it now needs a restart.
            return Ok(false);
        }
        *current = Some(crate::tls::acceptor(tls)?);
        Ok(true)
    }

    fn replace_dkim(&self, keys: &[crate::DkimKey]) {
        *self.dkim.write().unwrap_or_else(PoisonError::into_inner) = keys.into();
    }
}

impl InboundHandle {
    /// Check and put in force a new user list; on an error the old one stays.
    pub fn replace_users(&self, users: &[crate::User]) -> Result<(), InboundError> {
        self.shared.replace_users(users)
    }

    /// Re-read the certificate chain and key (the same paths or new ones); new handshakes use
    /// them. Returns false, changing nothing, when the server started without TLS. On an error
    /// the old certificate stays.
    pub fn replace_tls(&self, tls: &crate::ServerTlsSettings) -> Result<bool, InboundError> {
        self.shared.replace_tls(tls)
    }

    /// Put in force new DKIM keys (already loaded and checked, as configuration does):
    /// messages accepted afterwards are signed with them.
    pub fn replace_dkim(&self, keys: &[crate::DkimKey]) {
        self.shared.replace_dkim(keys);
    }
}

/// The bound listeners, ready to serve.
#[derive(Debug)]
pub struct Inbound<Q: Queue = Spool> {
    listeners: Vec<(std::net::TcpListener, ListenerSettings)>,
    shared: Arc<Shared<Q>>,
}

impl<Q: Queue> Inbound<Q> {
    /// Check the settings, load the certificate and bind every listener. Nothing is served yet,
    /// and any problem is reported before the first connection is accepted.
    pub fn bind(settings: InboundSettings, queue: Q) -> Result<Inbound<Q>, InboundError> {
        if settings.listeners.is_empty() {
            return Err(InboundError::NoListeners);
        }
        let tls = settings
            .tls
            .as_ref()
            .map(crate::tls::acceptor)
            .transpose()?;
        for listener in &settings.listeners {
            let needs_tls = match listener.role {
                Role::Relay => false,
                Role::Submission => !listener.insecure_allow_plaintext_auth,
                Role::Submissions => true,
            };
            if needs_tls && tls.is_none() {
                return Err(InboundError::TlsRequired {
                    address: listener.address,
                    role: listener.role,
                });
            }
        }
        let users = Arc::new(Users::new(&settings.users)?);
        let mut listeners = Vec::with_capacity(settings.listeners.len());
        for listener in &settings.listeners {
            let bind_error = |source| InboundError::Bind {
                address: listener.address,
                source,
            };
            let socket = std::net::TcpListener::bind(listener.address).map_err(bind_error)?;
            socket.set_nonblocking(true).map_err(bind_error)?;
            listeners.push((socket, listener.clone()));
        }
        let shared = Shared {
            auth_throttle: AuthThrottle::new(&settings.limits),
            body_budget: BodyBudget::new(settings.limits.max_body_memory),
            sessions: Arc::new(Semaphore::new(settings.limits.max_sessions)),
            per_ip: Mutex::new(HashMap::new()),
            dkim: RwLock::new(settings.dkim.as_slice().into()),
            settings,
            queue,
            users: RwLock::new(users),
            tls: RwLock::new(tls),
        };
        Ok(Inbound {
            listeners,
            shared: Arc::new(shared),
        })
    }

    /// The acceptance path of this server, for submissions that do not come over SMTP.
    pub fn acceptor(&self) -> crate::Acceptor<Q> {
        crate::Acceptor::new(Arc::clone(&self.shared))
    }

    /// Reaches this server's users and certificate after it started (reload).
    pub fn handle(&self) -> InboundHandle {
        InboundHandle {
            shared: Arc::clone(&self.shared) as Arc<dyn Reloadable>,
        }
    }

    /// The bound addresses (with the real port when 0 was asked for) and their roles, in the
    /// order of the settings.
    pub fn local_addrs(&self) -> Vec<(SocketAddr, Role)> {
        self.listeners
            .iter()
            .map(|(socket, settings)| {
                let address = socket.local_addr().unwrap_or(settings.address);
                (address, settings.role)
            })
            .collect()
    }

    /// Serve until `shutdown` is cancelled, then stop accepting, end idle sessions with
    /// `421 4.3.2`, give the others `shutdown_grace` to finish, and end the rest.
    pub async fn run(self, shutdown: CancellationToken) {
        let stop = Stop {
            soft: shutdown.clone(),
            hard: CancellationToken::new(),
        };
        let tracker = TaskTracker::new();
        for (socket, settings) in self.listeners {
            let listener = match TcpListener::from_std(socket) {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::error!(address = %settings.address, %error, "cannot serve listener");
                    continue;
                }
            };
            let shared = Arc::clone(&self.shared);
            let accept = accept_loop(listener, settings, shared, stop.clone(), tracker.clone());
            tracker.spawn(accept);
        }
        shutdown.cancelled().await;
        tracker.close();
        let grace = self.shared.settings.shutdown_grace;
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            warn!(grace = ?grace, "sessions still busy after the grace period; closing them");
            stop.hard.cancel();
            tracker.wait().await;
        }
        info!("inbound listeners stopped");
    }
}

async fn accept_loop<Q: Queue>(
    listener: TcpListener,
    settings: ListenerSettings,
    shared: Arc<Shared<Q>>,
    stop: Stop,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.soft.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            // An IPv4 client reaching an IPv6 socket appears as ::ffff:a.b.c.d; every check
            // (trusted networks, permissions, limits, logs) sees the IPv4 address it is.
            Ok((tcp, peer)) => (tcp, SocketAddr::new(peer.ip().to_canonical(), peer.port())),
            Err(error) => {
                warn!(address = %settings.address, %error, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Replies are written whole; without this, a reply that follows another one before the
        // client's ACK waits out the client's delayed ACK (about 40 ms on Linux).
        if let Err(error) = tcp.set_nodelay(true) {
            warn!(%error, "cannot disable Nagle's algorithm on a session");
        }
        let span = info_span!("session", ip = %peer.ip(), port = peer.port(), role = settings.role.as_str());
        match admit(&shared, peer.ip()) {
            Some(admission) => {
                let session = session::serve(
                    Arc::clone(&shared),
                    settings.clone(),
                    tcp,
                    peer,
                    stop.clone(),
                    admission,
                );
                tracker.spawn(session.instrument(span));
            }
            None => {
                tracker.spawn(refuse(tcp).instrument(span));
            }
        }
    }
}

/// A session's claim on the total and per-IP limits, released on drop.
#[derive(Debug)]
pub(crate) struct Admission {
    _permit: OwnedSemaphorePermit,
    per_ip: Arc<dyn PerIpRelease>,
    ip: IpAddr,
}

/// Lets an [`Admission`] give back its per-IP slot without knowing the queue type.
trait PerIpRelease: Send + Sync + std::fmt::Debug {
    fn release(&self, ip: IpAddr);
}

impl<Q: Queue> PerIpRelease for Shared<Q> {
    fn release(&self, ip: IpAddr) {
        let mut counts = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&ip);
            }
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.per_ip.release(self.ip);
        metrics::gauge!("strictmx_sessions_active").decrement(1.0);
    }
}

fn admit<Q: Queue>(shared: &Arc<Shared<Q>>, ip: IpAddr) -> Option<Admission> {
    let Ok(permit) = Arc::clone(&shared.sessions).try_acquire_owned() else {
        warn!(%ip, outcome = "refused", "too many sessions in total");
        return None;
    };
    {
        let mut counts = shared.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(ip).or_insert(0);
        if *count >= shared.settings.limits.max_sessions_per_ip {
            warn!(%ip, outcome = "refused", "too many sessions from this address");
            return None;
        }
        *count += 1;
    }
    metrics::counter!("strictmx_sessions_total").increment(1);
    metrics::gauge!("strictmx_sessions_active").increment(1.0);
    let per_ip: Arc<dyn PerIpRelease> = Arc::clone(shared) as Arc<dyn PerIpRelease>;
    Some(Admission {
        _permit: permit,
        per_ip,
        ip,
    })
}

/// RFC 5321 §3.1: a server may answer 421 at connect instead of 220 and close.
async fn refuse(mut tcp: TcpStream) {
    metrics::counter!("strictmx_sessions_refused_total").increment(1);
    let reply = replies::too_many_sessions().to_string();
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
        tcp.write_all(reply.as_bytes()).await?;
        tcp.shutdown().await
    })
    .await;
}
