//! Bearer tokens: argon2 hashes checked on the blocking pool, a token that verified once
//! remembered by its SHA-256 so later requests cost no argon2, and a per-client-address limit
//! on failures. Refusals say nothing about why.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use ring::digest;

use crate::Token;

/// The most client addresses whose failures are remembered; beyond it the oldest windows go.
const MAX_TRACKED_CLIENTS: usize = 10_000;

/// The tokens in force, with what has verified.
#[derive(Debug)]
pub(crate) struct Tokens {
    tokens: Vec<Token>,
    /// SHA-256 of a presented token that verified → its index in `tokens`.
    verified: Mutex<HashMap<[u8; 32], usize>>,
}

/// A token's hash is not an argon2 PHC string.
#[derive(Debug, thiserror::Error)]
#[error("token {name} has a token_hash that is not an argon2 phc string")]
pub struct InvalidTokenHash {
    pub name: String,
}

impl Tokens {
    pub(crate) fn new(tokens: &[Token]) -> Result<Tokens, InvalidTokenHash> {
        if let Some(bad) = tokens
            .iter()
            .find(|t| PasswordHash::new(&t.argon2_phc_hash).is_err())
        {
            return Err(InvalidTokenHash {
                name: bad.name.clone(),
            });
        }
        Ok(Tokens {
            tokens: tokens.to_vec(),
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// The token `presented` is, if any.
    pub(crate) async fn verify(self: &Arc<Self>, presented: &str) -> Option<Token> {
        let sha: [u8; 32] = digest::digest(&digest::SHA256, presented.as_bytes())
            .as_ref()
            .try_into()
            .ok()?;
        let known = self
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&sha)
            .copied();
        if let Some(index) = known {
            return self.tokens.get(index).cloned();
        }
        let tokens = Arc::clone(self);
        let presented = presented.as_bytes().to_vec();
        let found = check(tokens, presented).await?;
        self.verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sha, found);
        self.tokens.get(found).cloned()
    }
}

/// argon2 takes tens of milliseconds: off the async threads.
async fn check(tokens: Arc<Tokens>, presented: Vec<u8>) -> Option<usize> {
    tokio::task::spawn_blocking(move || {
        tokens.tokens.iter().position(|t| {
            PasswordHash::new(&t.argon2_phc_hash)
                .is_ok_and(|hash| Argon2::default().verify_password(&presented, &hash).is_ok())
        })
    })
    .await
    .ok()
    .flatten()
}

/// Failed authentications per client address in a fixed window.
#[derive(Debug)]
pub(crate) struct FailureLimit {
    max: u32,
    window: Duration,
    clients: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl FailureLimit {
    pub(crate) fn new(max: u32, window: Duration) -> FailureLimit {
        FailureLimit {
            max,
            window,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `ip` has used up its failures for now.
    pub(crate) fn is_limited(&self, ip: IpAddr, now: Instant) -> bool {
        let clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        clients.get(&ip).is_some_and(|(start, count)| {
            now.duration_since(*start) < self.window && *count >= self.max
        })
    }

    pub(crate) fn fail(&self, ip: IpAddr, now: Instant) {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if clients.len() >= MAX_TRACKED_CLIENTS && !clients.contains_key(&ip) {
            let window = self.window;
            clients.retain(|_, (start, _)| now.duration_since(*start) < window);
            if clients.len() >= MAX_TRACKED_CLIENTS {
                clients.clear();
            }
        }
        let entry = clients.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_limited_after_its_failures_until_the_window_passes() {
        let limit = FailureLimit::new(2, Duration::from_secs(60));
        let ip = IpAddr::from([192, 0, 2, 1]);
        let other = IpAddr::from([192, 0, 2, 2]);
        let t0 = Instant::now();
        assert!(!limit.is_limited(ip, t0));
        limit.fail(ip, t0);
        assert!(!limit.is_limited(ip, t0));
        limit.fail(ip, t0);
        assert!(limit.is_limited(ip, t0));
        assert!(!limit.is_limited(other, t0), "limits are per address");
        assert!(!limit.is_limited(ip, t0 + Duration::from_secs(61)));
    }

    #[tokio::test]
    async fn the_right_token_verifies_and_a_wrong_one_does_not() {
        let token = Token {
            name: "app".into(),
            argon2_phc_hash: strictmx_inbound::hash_password("s3cret-token"),
            senders: Vec::new(),
        };
        let tokens = Arc::new(Tokens::new(&[token]).expect("valid hash"));
        assert_eq!(
            tokens.verify("s3cret-token").await.map(|t| t.name),
            Some("app".into())
        );
        assert_eq!(
            tokens.verify("s3cret-token").await.map(|t| t.name),
            Some("app".into()),
            "from memory"
        );
        assert!(tokens.verify("wrong").await.is_none());
        let bad = Token {
            name: "bad".into(),
            argon2_phc_hash: "plain".into(),
            senders: Vec::new(),
        };
        assert!(Tokens::new(&[bad]).is_err());
    }
}
