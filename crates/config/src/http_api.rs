//! `[http_api]` and its `[[http_api.token]]`s → `strictmx_http_api::HttpApiSettings`: where it
//! listens, the bounds on requests and failures, and the tokens with the senders each may use.
//! Plain HTTP is allowed on loopback only, unless `insecure_plaintext` says otherwise.
//!
//! Serving, authenticating and rate limiting are `strictmx-http-api`'s; this checks the values.

use std::fmt::Write;

use strictmx_http_api::{HttpApiSettings, Token};
use strictmx_inbound::User;

use crate::error::Source;
use crate::raw::{RawHttpApi, RawToken};
use crate::validate::{dur, opt, quote, quote_duration, quote_list, req};
use crate::values;

/// `[http_api]`; `users` are the SMTP users, whose names a token must not take.
pub(crate) fn build(
    raw: &RawHttpApi,
    tls: bool,
    users: &[User],
    src: &mut Source<'_>,
) -> Option<HttpApiSettings> {
    let d = HttpApiSettings::default();
    let errors = src.errors.len();
    let listen = req(src, "http_api.listen", &raw.listen, d.listen, |t| {
        values::socket_addr(t)
    });
    let insecure_plaintext = raw
        .insecure_plaintext
        .as_ref()
        .is_some_and(|v| *v.get_ref());
    if !tls && !insecure_plaintext && !listen.ip().is_loopback() {
        src.error(
            raw.listen.span(),
            "http_api.listen",
            format!("{listen} is not loopback and there is no [tls] certificate: tokens and mail would cross the network in clear; set [tls], listen on loopback, or set http_api.insecure_plaintext = true"),
        );
    }
    let max_request_size = opt(
        src,
        "http_api.max_request_size",
        &raw.max_request_size,
        d.max_request_size,
        |v| {
            let n = values::size(v)?;
            if n < 1024 {
                return Err(format!(
                    "{n} bytes is too small for a request with a message"
                ));
            }
            usize::try_from(n).map_err(|_| format!("{n} bytes is too large"))
        },
    );
    let max_recipients = opt(
        src,
        "http_api.max_recipients",
        &raw.max_recipients,
        d.max_recipients,
        |n| values::count(*n, 1),
    );
    let auth_failures_per_client = opt(
        src,
        "http_api.auth_failures_per_client",
        &raw.auth_failures_per_client,
        d.auth_failures_per_client,
        |n| values::count(*n, 1).map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
    );
    let auth_failure_window = opt(
        src,
        "http_api.auth_failure_window",
        &raw.auth_failure_window,
        d.auth_failure_window,
        dur,
    );
    let tokens = tokens(&raw.tokens, users, src);
    if src.errors.len() > errors {
        return None;
    }
    Some(HttpApiSettings {
        listen,
        insecure_plaintext,
        tokens,
        max_request_size,
        max_recipients,
        auth_failures_per_client,
        auth_failure_window,
        ..d
    })
}

fn tokens(raw: &[RawToken], users: &[User], src: &mut Source<'_>) -> Vec<Token> {
    let mut tokens: Vec<Token> = Vec::with_capacity(raw.len());
    for (i, t) in raw.iter().enumerate() {
        let key = |name: &str| format!("http_api.token[{i}].{name}");
        let name = t.name.get_ref().trim();
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c.is_control()) {
            src.error(
                t.name.span(),
                key("name"),
                "a token name must be non-empty and without spaces",
            );
            continue;
        }
        if tokens.iter().any(|other| other.name == name) {
            src.error(
                t.name.span(),
                key("name"),
                "another [[http_api.token]] has this name",
            );
            continue;
        }
        // A message belongs to the submitter's name (the audit trail's `auth_user`), and GET
        // shows a token the messages submitted under its name: an SMTP user of the same name
        // would see the token's messages, and the token the user's.
        if users.iter().any(|user| user.name == name) {
            src.error(
                t.name.span(),
                key("name"),
                "an SMTP user ([[auth.user]] or auth.users_file) has this name; a token must have a name of its own",
            );
            continue;
        }
        if let Err(m) = crate::auth::check_hash(t.token_hash.get_ref()) {
            src.error(t.token_hash.span(), key("token_hash"), m);
            continue;
        }
        if t.senders.get_ref().is_empty() {
            src.error(
                t.senders.span(),
                key("senders"),
                "an empty list allows no sender: list the addresses or @domains this token may use",
            );
            continue;
        }
        let mut senders = Vec::new();
        for (j, text) in t.senders.get_ref().iter().enumerate() {
            match crate::rules::sender_pattern(text.get_ref()) {
                Ok(pattern) => senders.push(pattern),
                Err(m) => src.error(text.span(), key(&format!("senders[{j}]")), m),
            }
        }
        tokens.push(Token {
            name: name.to_owned(),
            argon2_phc_hash: t.token_hash.get_ref().clone(),
            senders,
        });
    }
    tokens
}

pub(crate) fn render(api: Option<&HttpApiSettings>, o: &mut String) {
    let Some(api) = api else {
        let _ = writeln!(o, "# [http_api] is off\n");
        return;
    };
    let _ = writeln!(
        o,
        "[http_api]\nlisten = {}\ninsecure_plaintext = {}\nmax_request_size = {}\nmax_recipients = {}\nauth_failures_per_client = {}\nauth_failure_window = {}\n",
        quote(&api.listen.to_string()),
        api.insecure_plaintext,
        api.max_request_size,
        api.max_recipients,
        api.auth_failures_per_client,
        quote_duration(api.auth_failure_window),
    );
    for token in &api.tokens {
        let senders = token.senders.iter().map(|p| match p {
            strictmx_protocol::SenderPattern::Address(a) => a.clone(),
            strictmx_protocol::SenderPattern::Domain(d) => format!("@{d}"),
        });
        let _ = writeln!(
            o,
            "[[http_api.token]]\nname = {}\ntoken_hash = {}\nsenders = {}\n",
            quote(&token.name),
            quote(&token.argon2_phc_hash),
            quote_list(senders),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::Config;

    fn parse(text: &str) -> Result<Config, crate::ConfigErrors> {
        Config::parse(text, Path::new("test.toml"))
    }

    fn hash() -> String {
        strictmx_inbound::hash_password("a-token-for-tests")
    }

    #[test]
    fn the_api_is_off_unless_its_table_is_there_and_takes_its_defaults() {
        assert!(parse("").expect("valid").http_api.is_none());
        let text = format!(
            "[http_api]\nlisten = \"127.0.0.1:8025\"\n\n[[http_api.token]]\nname = \"app\"\ntoken_hash = \"{}\"\nsenders = [\"@app.example\", \"reset@other.example\"]\n",
            hash()
        );
        let config = parse(&text).expect("valid");
        let api = config.http_api.as_ref().expect("on");
        assert_eq!(api.listen.port(), 8025);
        assert_eq!(api.max_recipients, 100);
        assert_eq!(api.tokens[0].name, "app");
        assert!(api.tokens[0].senders[0].matches("x@app.example"));
        let again = parse(&config.render()).expect("the rendered configuration parses");
        assert_eq!(again.http_api, config.http_api);
    }

    #[test]
    fn plain_http_off_loopback_bad_tokens_and_bounds_are_errors_at_their_lines() {
        let token = |extra: &str| {
            format!(
                "\n[[http_api.token]]\nname = \"app\"\ntoken_hash = \"{}\"\nsenders = [\"@app.example\"]\n{extra}",
                hash()
            )
        };
        let cases = [
            ("listen = \"0.0.0.0:8025\"\n".to_owned(), 2, "http_api.listen", "not loopback"),
            ("listen = \"nowhere\"\n".to_owned(), 2, "http_api.listen", ""),
            ("listen = \"127.0.0.1:1\"\nmax_recipients = 0\n".to_owned(), 3, "http_api.max_recipients", "too small"),
            ("listen = \"127.0.0.1:1\"\nmax_request_size = 10\n".to_owned(), 3, "http_api.max_request_size", "too small"),
            (
                "listen = \"127.0.0.1:1\"\n\n[[http_api.token]]\nname = \"app\"\ntoken_hash = \"plain\"\nsenders = [\"@a.example\"]\n".to_owned(),
                6,
                "http_api.token[0].token_hash",
                "argon2",
            ),
            (
                "listen = \"127.0.0.1:1\"\n\n[[http_api.token]]\nname = \"app\"\ntoken_hash = \"x\"\nsenders = []\n".replace("\"x\"", &format!("\"{}\"", hash())),
                7,
                "http_api.token[0].senders",
                "allows no sender",
            ),
            (format!("listen = \"127.0.0.1:1\"\n{}", token("retries = 1\n")), 8, "", "unknown key"),
        ];
        for (body, line, key, says) in cases {
            let text = format!("[http_api]\n{body}");
            let errors = parse(&text).expect_err(&body).0;
            assert_eq!(errors[0].line, line, "{body}: {errors:?}");
            if !key.is_empty() {
                assert_eq!(errors[0].key, key, "{body}");
            }
            assert!(errors[0].message.contains(says), "{body}: {errors:?}");
        }
        // A token named like an SMTP user would share that user's messages on GET.
        let shared_name = format!(
            "[[auth.user]]\nname = \"app\"\npassword_hash = \"{}\"\n\n[http_api]\nlisten = \"127.0.0.1:1\"\n{}",
            strictmx_inbound::hash_password("a-password-for-tests"),
            token("")
        );
        let errors = parse(&shared_name).expect_err("a shared name").0;
        assert_eq!(
            (errors[0].line, errors[0].key.as_str()),
            (9, "http_api.token[0].name"),
            "{errors:?}"
        );
        assert!(errors[0].message.contains("SMTP user"), "{errors:?}");
        let open = "[http_api]\nlisten = \"0.0.0.0:8025\"\ninsecure_plaintext = true\n";
        assert!(parse(open).expect("allowed when said").http_api.is_some());
    }
}
