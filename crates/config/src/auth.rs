//! `[auth]` → the users of `strictmx_inbound::InboundSettings`: `[[auth.user]]` tables (name,
//! argon2 hash, allowed senders) and `auth.users_file` (lines `name:$argon2id$...`; `#`
//! comments).
//!
//! Checking a password at AUTH time and enforcing the senders are `strictmx-inbound`'s; this
//! checks that each hash is an argon2 PHC string and not a published one (`published`).

use std::fmt::Write;
use std::path::Path;

use strictmx_inbound::{InboundSettings, User};
use strictmx_policy::rules::SenderPattern;
use toml::Spanned;

use crate::error::Source;
use crate::files::warn_if_world_readable;
use crate::raw::{RawAuth, RawUser};
use crate::validate::path_in;

/// Users from `[[auth.user]]`, then from `auth.users_file`.
pub(crate) fn build(auth: &RawAuth, src: &mut Source<'_>, base: Option<&Path>) -> Vec<User> {
    let mut users = Vec::new();
    for (i, u) in auth.users.iter().enumerate() {
        users.extend(user(i, u, src));
    }
    if let Some(file) = &auth.users_file {
        users_file(file, src, base, &mut users);
    }
    users
}

/// One `[[auth.user]]`, or `None` (with the error recorded) when its name or hash is unusable.
fn user(i: usize, u: &RawUser, src: &mut Source<'_>) -> Option<User> {
    let name = u.name.get_ref().trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        src.error(
            u.name.span(),
            format!("auth.user[{i}].name"),
            "a user name must be non-empty and without spaces",
        );
        return None;
    }
    if let Err(m) = check_hash(u.password_hash.get_ref()) {
        src.error(
            u.password_hash.span(),
            format!("auth.user[{i}].password_hash"),
            m,
        );
        return None;
    }
    let senders = user_senders(u, i, name, src);
    let require_tls = u.require_tls.as_ref().and_then(|floor| {
        floor
            .get_ref()
            .parse::<strictmx_spool::TlsFloor>()
            .map_err(|m| src.error(floor.span(), format!("auth.user[{i}].require_tls"), m))
            .ok()
    });
    Some(User {
        name: name.to_string(),
        argon2_phc_hash: u.password_hash.get_ref().clone(),
        senders,
        require_tls,
    })
}

/// The users of `auth.users_file`, each bad line an error naming the file and line.
fn users_file(
    file: &Spanned<String>,
    src: &mut Source<'_>,
    base: Option<&Path>,
    users: &mut Vec<User>,
) {
    let Ok(path) = path_in(base)(file.get_ref()) else {
        src.error(file.span(), "auth.users_file", "a path must not be empty");
        return;
    };
    warn_if_world_readable(src, file.span(), "auth.users_file", &path);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            src.error(
                file.span(),
                "auth.users_file",
                format!("cannot read {}: {e}", path.display()),
            );
            return;
        }
    };
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line
            .split_once(':')
            .ok_or_else(|| "expected `name:$argon2id$...`".to_string())
            .and_then(|(name, hash)| check_hash(hash).map(|()| (name, hash)));
        match parsed {
            Ok((name, hash)) => users.push(User {
                name: name.to_string(),
                argon2_phc_hash: hash.to_string(),
                senders: Vec::new(),
                require_tls: None,
            }),
            Err(m) => src.error(
                file.span(),
                "auth.users_file",
                format!("{} line {}: {m}", path.display(), n + 1),
            ),
        }
    }
}

/// `[[auth.user]] senders`: the envelope senders the user may use. Left out, the user may use
/// any sender, which is allowed but said loudly: one app could then send as another.
fn user_senders(u: &RawUser, i: usize, name: &str, src: &mut Source<'_>) -> Vec<SenderPattern> {
    let Some(list) = &u.senders else {
        src.warn(
            u.name.span(),
            format!("auth.user[{i}].senders"),
            format!("not set: `{name}` may send as any address once authenticated"),
        );
        return Vec::new();
    };
    if list.is_empty() {
        src.error(
            u.name.span(),
            format!("auth.user[{i}].senders"),
            "an empty list allows no sender: list addresses or @domains, or leave the key out",
        );
    }
    let mut senders = Vec::with_capacity(list.len());
    for (j, text) in list.iter().enumerate() {
        match crate::rules::sender_pattern(text.get_ref()) {
            Ok(pattern) => senders.push(pattern),
            Err(m) => src.error(text.span(), format!("auth.user[{i}].senders[{j}]"), m),
        }
    }
    senders
}

pub(crate) fn check_hash(hash: &str) -> Result<(), String> {
    if let Some(place) = crate::published::published_in(hash) {
        return Err(format!(
            "this hash is published in {place}, so its password is known to everyone: make a new one with `strictmx hash-password`"
        ));
    }
    let argon2 = hash.starts_with("$argon2id$")
        || hash.starts_with("$argon2i$")
        || hash.starts_with("$argon2d$");
    if argon2 && argon2::PasswordHash::new(hash).is_ok() {
        Ok(())
    } else {
        Err("the password hash must be an argon2 PHC string ($argon2id$v=19$m=...,t=...,p=...$SALT$HASH); make one with `strictmx hash-password`".into())
    }
}

pub(crate) fn render(i: &InboundSettings, o: &mut String) {
    let _ = writeln!(o, "[auth]\n# {} user(s) configured\n", i.users.len());
}
