//! The users who may AUTH: argon2 PHC hashes checked once at bind, verified off the async
//! runtime, plus `hash_password` for the CLI. The SASL dialogue itself is in `session::auth`.

use std::collections::HashMap;
use std::sync::Arc;

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use rand::RngCore;
use strictmx_protocol::SenderPattern;

use crate::{InboundError, User};

/// Hash a password for `[[auth.user]] password_hash` with argon2id, default parameters and a
/// random 16-byte salt.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .expect("invariant: argon2 default parameters accept any password and a 16-byte salt")
        .to_string()
}

/// The user table, shared by all sessions.
#[derive(Debug)]
pub(crate) struct Users {
    hashes: HashMap<String, String>,
    /// Users limited to some senders; a user not listed may use any.
    senders: HashMap<String, Vec<SenderPattern>>,
    /// Users whose messages carry a TLS floor.
    floors: HashMap<String, strictmx_spool::TlsFloor>,
    /// Verified when the name is unknown, so a wrong name costs as long as a wrong password.
    decoy: String,
}

impl Users {
    pub(crate) fn new(users: &[User]) -> Result<Users, InboundError> {
        let mut hashes = HashMap::with_capacity(users.len());
        let mut senders = HashMap::new();
        let mut floors = HashMap::new();
        for user in users {
            if let Some(floor) = user.require_tls {
                floors.insert(user.name.clone(), floor);
            }
            if !user.senders.is_empty() {
                senders.insert(user.name.clone(), user.senders.clone());
            }
            if PasswordHash::new(&user.argon2_phc_hash).is_err() {
                return Err(InboundError::InvalidPasswordHash {
                    user: user.name.clone(),
                });
            }
            if hashes
                .insert(user.name.clone(), user.argon2_phc_hash.clone())
                .is_some()
            {
                return Err(InboundError::DuplicateUser {
                    user: user.name.clone(),
                });
            }
        }
        let decoy = match users.first() {
            Some(user) => user.argon2_phc_hash.clone(),
            None => String::new(),
        };
        Ok(Users {
            hashes,
            senders,
            floors,
            decoy,
        })
    }

    /// Whether `user` may use `sender` as its envelope sender. The null sender (a bounce)
    /// claims no address, so it is always allowed.
    pub(crate) fn may_send_as(&self, user: &str, sender: &str) -> bool {
        sender.is_empty()
            || self
                .senders
                .get(user)
                .is_none_or(|allowed| allowed.iter().any(|pattern| pattern.matches(sender)))
    }

    /// The TLS floor of `user`'s messages, if the user has one.
    pub(crate) fn floor(&self, user: &str) -> Option<strictmx_spool::TlsFloor> {
        self.floors.get(user).copied()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Check a name and password on the blocking pool; argon2 takes tens of milliseconds and
    /// must not stall the sessions sharing this runtime thread.
    pub(crate) async fn verify(self: &Arc<Self>, name: String, password: Vec<u8>) -> bool {
        let users = Arc::clone(self);
        let check = tokio::task::spawn_blocking(move || {
            let (hash, known) = match users.hashes.get(&name) {
                Some(hash) => (hash.as_str(), true),
                None => (users.decoy.as_str(), false),
            };
            let matches = Argon2::default().verify_password(&password, hash).is_ok();
            known && matches
        });
        check.await.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_with_a_tls_floor_has_it_and_others_have_none() {
        let users = Users::new(&[
            User {
                name: "resets".into(),
                argon2_phc_hash: hash_password("x"),
                senders: Vec::new(),
                require_tls: Some(strictmx_spool::TlsFloor::Verified),
            },
            User {
                name: "newsletter".into(),
                argon2_phc_hash: hash_password("y"),
                senders: Vec::new(),
                require_tls: None,
            },
        ])
        .expect("users");
        assert_eq!(
            users.floor("resets"),
            Some(strictmx_spool::TlsFloor::Verified)
        );
        assert_eq!(users.floor("newsletter"), None);
        assert_eq!(users.floor("nobody"), None);
    }

    #[test]
    fn a_limited_user_may_send_only_as_its_senders_and_others_as_anyone() {
        let hash = hash_password("x");
        let users = Users::new(&[
            User {
                name: "billing".into(),
                argon2_phc_hash: hash.clone(),
                senders: vec![
                    SenderPattern::Address("invoices@shop.example".into()),
                    SenderPattern::Domain("billing.example".into()),
                ],
                require_tls: Some(strictmx_spool::TlsFloor::Verified),
            },
            User {
                name: "legacy".into(),
                argon2_phc_hash: hash,
                senders: Vec::new(),
                require_tls: None,
            },
        ])
        .expect("valid users");
        let cases = [
            ("billing", "invoices@shop.example", true),
            ("billing", "anyone@billing.example", true),
            ("billing", "ceo@shop.example", false),
            ("billing", "", true),
            ("legacy", "ceo@shop.example", true),
        ];
        for (user, sender, allowed) in cases {
            assert_eq!(
                users.may_send_as(user, sender),
                allowed,
                "{user} as {sender}"
            );
        }
    }

    #[tokio::test]
    async fn a_hashed_password_verifies_and_others_do_not() {
        let hash = hash_password("correct horse");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let users = Arc::new(
            Users::new(&[User {
                name: "alice".into(),
                argon2_phc_hash: hash,
                senders: Vec::new(),
                require_tls: None,
            }])
            .expect("valid hash"),
        );
        let cases = [
            ("alice", "correct horse", true),
            ("alice", "wrong", false),
            ("bob", "correct horse", false),
            ("", "", false),
        ];
        for (name, password, ok) in cases {
            assert_eq!(
                users.verify(name.into(), password.into()).await,
                ok,
                "{name}/{password}"
            );
        }
    }

    #[test]
    fn malformed_or_duplicate_users_are_refused_at_bind() {
        let bad = [User {
            name: "alice".into(),
            argon2_phc_hash: "plaintext".into(),
            senders: Vec::new(),
            require_tls: None,
        }];
        assert!(matches!(
            Users::new(&bad),
            Err(InboundError::InvalidPasswordHash { user }) if user == "alice"
        ));
        let hash = hash_password("x");
        let twice = [
            User {
                name: "a".into(),
                argon2_phc_hash: hash.clone(),
                senders: Vec::new(),
                require_tls: None,
            },
            User {
                name: "a".into(),
                argon2_phc_hash: hash,
                senders: Vec::new(),
                require_tls: None,
            },
        ];
        assert!(matches!(
            Users::new(&twice),
            Err(InboundError::DuplicateUser { .. })
        ));
    }
}
