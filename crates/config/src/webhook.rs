//! `[[webhook]]` → [`WebhookSettings`] for the sender and `strictmx_spool::WebhookTarget`s for
//! the outbox: where events are POSTed, the secret that signs them and which events each
//! endpoint wants.
//!
//! Queueing events is `strictmx-spool`'s and sending them the binary's; this checks the values.

use std::fmt::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use strictmx_spool::{WebhookEventKind, WebhookTarget};

use crate::error::Source;
use crate::raw::RawWebhook;
use crate::validate::{opt, path_in, quote, quote_list};
use crate::values;

/// The most events kept for one webhook unless `max_queued` says otherwise.
pub const DEFAULT_MAX_QUEUED: u64 = 100_000;

/// One `[[webhook]]`.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// `https://...`, or `http://` to a loopback address.
    pub url: String,
    /// The HMAC-SHA256 key of the `Strictmx-Signature` header.
    pub secret: Vec<u8>,
    /// Where the secret was read from, if from a file (shown instead of the secret).
    pub secret_file: Option<PathBuf>,
    pub events: Vec<WebhookEventKind>,
    pub max_queued: u64,
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("url", &self.url)
            .field("secret", &"<hidden>")
            .field("secret_file", &self.secret_file)
            .field("events", &self.events)
            .field("max_queued", &self.max_queued)
            .finish()
    }
}

impl WebhookSettings {
    /// What the spool needs to queue this webhook's events.
    pub fn target(&self) -> WebhookTarget {
        WebhookTarget {
            name: self.url.clone(),
            events: self.events.clone(),
            max_queued: self.max_queued,
        }
    }
}

pub(crate) fn build(
    raw: &[RawWebhook],
    src: &mut Source<'_>,
    base: Option<&Path>,
) -> Vec<WebhookSettings> {
    let mut hooks: Vec<WebhookSettings> = Vec::new();
    for (i, w) in raw.iter().enumerate() {
        let key = |name: &str| format!("webhook[{i}].{name}");
        let url = w.url.get_ref();
        if let Err(message) = check_url(url) {
            src.error(w.url.span(), key("url"), message);
            continue;
        }
        if hooks.iter().any(|h| &h.url == url) {
            src.error(
                w.url.span(),
                key("url"),
                "another [[webhook]] has this url: its events are queued under it",
            );
            continue;
        }
        let events = opt(
            src,
            &key("events"),
            &w.events,
            WebhookEventKind::ALL.to_vec(),
            events,
        );
        let max_queued = opt(
            src,
            &key("max_queued"),
            &w.max_queued,
            DEFAULT_MAX_QUEUED,
            |n| values::count(*n, 1).map(|n| n as u64),
        );
        let Ok((secret, secret_file)) = secret(w, src, base, &key) else {
            continue;
        };
        hooks.push(WebhookSettings {
            url: url.clone(),
            secret,
            secret_file,
            events,
            max_queued,
        });
    }
    hooks
}

/// `https://host...`, or `http://` to a loopback address: events carry addresses and must
/// not cross a network in the clear.
fn check_url(url: &str) -> Result<(), String> {
    let (plain, rest) = match url.split_once("://") {
        Some(("https", rest)) => (false, rest),
        Some(("http", rest)) => (true, rest),
        _ => {
            return Err(format!(
                "{url:?} must start with https:// (or http:// to a loopback address)"
            ));
        }
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    if host.is_empty() || authority.contains('@') {
        return Err(format!("{url:?} must name a host (and no user)"));
    }
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if plain && !loopback {
        return Err(format!(
            "{url:?} is plain http to a host that is not loopback: use https://"
        ));
    }
    Ok(())
}

fn events(list: &Vec<String>) -> Result<Vec<WebhookEventKind>, String> {
    let mut out = Vec::new();
    for name in list {
        let kind = WebhookEventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .ok_or_else(|| {
                format!("unknown event {name:?}: expected delivered, deferred, bounced, expanded or deleted")
            })?;
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    if out.is_empty() {
        return Err("must name at least one event (or be left out for all)".into());
    }
    Ok(out)
}

/// `secret` or `secret_file` (its first line), exactly one; the file readable by its owner
/// only.
fn secret(
    w: &RawWebhook,
    src: &mut Source<'_>,
    base: Option<&Path>,
    key: &dyn Fn(&str) -> String,
) -> Result<(Vec<u8>, Option<PathBuf>), ()> {
    let (secret, path) = match (&w.secret, &w.secret_file) {
        (Some(s), None) => (s.get_ref().clone(), None),
        (None, Some(file)) => {
            let path = path_in(base)(file.get_ref())
                .map_err(|m| src.error(file.span(), key("secret_file"), m))?;
            let text = read_owner_only(&path)
                .map_err(|m| src.error(file.span(), key("secret_file"), m))?;
            // The first line, without its line end: `echo secret > file` works as expected.
            (text.lines().next().unwrap_or("").to_owned(), Some(path))
        }
        (Some(s), Some(_)) => {
            src.error(
                s.span(),
                key("secret"),
                "set secret or secret_file, not both",
            );
            return Err(());
        }
        (None, None) => {
            src.error(
                w.url.span(),
                key("secret"),
                "a webhook needs secret or secret_file: the key that signs its events",
            );
            return Err(());
        }
    };
    if secret.len() < 16 {
        let (span, name) = match (&w.secret, &w.secret_file) {
            (Some(s), _) => (s.span(), "secret"),
            (_, Some(f)) => (f.span(), "secret_file"),
            _ => (w.url.span(), "secret"),
        };
        src.error(span, key(name), "the secret must be at least 16 characters");
        return Err(());
    }
    Ok((secret.into_bytes(), path))
}

fn read_owner_only(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} is readable by others (mode {mode:o}): chmod 600 it",
            path.display()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

pub(crate) fn render(hooks: &[WebhookSettings], o: &mut String) {
    for h in hooks {
        let _ = writeln!(o, "[[webhook]]\nurl = {}", quote(&h.url));
        match &h.secret_file {
            Some(path) => {
                let _ = writeln!(o, "secret_file = {}", quote(&path.display().to_string()));
            }
            None => {
                // Never printed; a placeholder long enough to be a valid secret keeps the
                // rendered file parseable.
                let _ = writeln!(
                    o,
                    "# the inline secret is not shown: put the real one back before using this\nsecret = \"<inline secret, not shown>\""
                );
            }
        }
        let _ = writeln!(
            o,
            "events = {}\nmax_queued = {}\n",
            quote_list(h.events.iter().map(|e| e.as_str())),
            h.max_queued
        );
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use crate::Config;

    use super::*;

    fn parse(text: &str) -> Result<Config, crate::ConfigErrors> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn a_webhook_takes_every_event_unless_it_names_some() {
        let text = "[[webhook]]\nurl = \"https://hooks.example/a\"\nsecret = \"0123456789abcdef\"\n\n[[webhook]]\nurl = \"http://127.0.0.1:8080/b\"\nsecret = \"0123456789abcdef\"\nevents = [\"bounced\", \"expanded\"]\nmax_queued = 10\n";
        let config = parse(text).expect("valid");
        assert_eq!(config.webhooks.len(), 2);
        assert_eq!(config.webhooks[0].events, WebhookEventKind::ALL);
        assert_eq!(config.webhooks[0].max_queued, DEFAULT_MAX_QUEUED);
        assert_eq!(
            config.webhooks[1].events,
            [WebhookEventKind::Bounced, WebhookEventKind::Expanded]
        );
        let targets = &config.spool.webhooks.hooks;
        assert_eq!(targets[1].name, "http://127.0.0.1:8080/b");
        assert_eq!(targets[1].max_queued, 10);
    }

    #[test]
    fn plain_http_off_loopback_unknown_events_and_missing_secrets_are_errors_at_their_lines() {
        let cases: &[(&str, usize, &str, &str)] = &[
            (
                "url = \"http://hooks.example/a\"\nsecret = \"0123456789abcdef\"\n",
                2,
                "webhook[0].url",
                "not loopback",
            ),
            (
                "url = \"ftp://hooks.example/a\"\nsecret = \"0123456789abcdef\"\n",
                2,
                "webhook[0].url",
                "https://",
            ),
            (
                "url = \"https://hooks.example/a\"\nsecret = \"0123456789abcdef\"\nevents = [\"opened\"]\n",
                4,
                "webhook[0].events",
                "unknown event",
            ),
            (
                "url = \"https://hooks.example/a\"\n",
                2,
                "webhook[0].secret",
                "needs secret",
            ),
            (
                "url = \"https://hooks.example/a\"\nsecret = \"short\"\n",
                3,
                "webhook[0].secret",
                "at least 16",
            ),
            (
                "url = \"https://hooks.example/a\"\nsecret = \"0123456789abcdef\"\nmax_queued = 0\n",
                4,
                "webhook[0].max_queued",
                "too small",
            ),
        ];
        for (body, line, key, says) in cases {
            let text = format!("[[webhook]]\n{body}");
            let errors = parse(&text).expect_err(body).0;
            assert_eq!(
                (errors[0].line, errors[0].key.as_str()),
                (*line, *key),
                "{body}"
            );
            assert!(errors[0].message.contains(says), "{body}: {errors:?}");
        }
        let errors = parse("[[webhook]]\nurl = \"https://a.example\"\nsecret = \"0123456789abcdef\"\nretries = 3\n")
            .expect_err("unknown")
            .0;
        assert_eq!(errors[0].line, 4);
        assert!(errors[0].message.contains("unknown key"), "{errors:?}");
    }

    #[test]
    fn a_secret_file_must_be_readable_by_its_owner_only() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let file = dir.path().join("hook.secret");
        std::fs::write(&file, "s3cr3t-s3cr3t-s3cr3t\n").expect("write");
        let text = format!(
            "[[webhook]]\nurl = \"https://hooks.example/a\"\nsecret_file = {:?}\n",
            file.display().to_string()
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let errors = parse(&text).expect_err("readable by others").0;
        assert_eq!(
            (errors[0].line, errors[0].key.as_str()),
            (3, "webhook[0].secret_file")
        );
        assert!(errors[0].message.contains("chmod 600"), "{errors:?}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let config = parse(&text).expect("valid");
        assert_eq!(config.webhooks[0].secret, b"s3cr3t-s3cr3t-s3cr3t");
        let shown = config.render();
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(
            shown.contains("[[webhook]]\nurl = \"https://hooks.example/a\"\nsecret_file = "),
            "{shown}"
        );
    }

    #[test]
    fn an_inline_secret_is_never_rendered_and_the_rendered_file_still_parses() {
        let config = parse(
            "[[webhook]]\nurl = \"https://hooks.example/a\"\nsecret = \"inline-secret-0123456789\"\n",
        )
        .expect("valid");
        let shown = config.render();
        assert!(!shown.contains("inline-secret"), "{shown}");
        let again = parse(&shown).expect("the rendered configuration parses");
        assert_eq!(again.webhooks[0].url, "https://hooks.example/a");
    }
}
