//! `[[dkim]]` → the inbound crate's `DkimKey`s: one key per `From:` domain, loaded and checked
//! here so that `check-config` names a missing or unusable key file by line.
//!
//! Choosing the key for a message and signing it is `strictmx-inbound`'s (`dkim.rs`).

use std::fmt::Write;
use std::path::Path;

use strictmx_inbound::{DEFAULT_SIGNED_HEADERS, DkimError, DkimKey};
use strictmx_protocol::ErrorChain;

use crate::error::Source;
use crate::raw::RawDkim;
use crate::validate::path_in;
use crate::values;

pub(crate) fn build(raw: &[RawDkim], src: &mut Source<'_>, base: Option<&Path>) -> Vec<DkimKey> {
    let mut keys: Vec<DkimKey> = Vec::new();
    for (i, table) in raw.iter().enumerate() {
        let k = |key: &str| format!("dkim[{i}].{key}");
        let (Some(domain), Some(selector), Some(key_file)) =
            (&table.domain, &table.selector, &table.key_file)
        else {
            // The table has no span of its own: point at the first key it does have.
            let span = [&table.domain, &table.selector, &table.key_file]
                .into_iter()
                .flatten()
                .map(|v| v.span())
                .next()
                .unwrap_or(0..0);
            for (name, present) in [
                ("domain", table.domain.is_some()),
                ("selector", table.selector.is_some()),
                ("key_file", table.key_file.is_some()),
            ] {
                if !present {
                    src.error(
                        span.clone(),
                        k(name),
                        "every [[dkim]] table needs domain, selector and key_file",
                    );
                }
            }
            continue;
        };
        let domain_name = match values::domain(domain.get_ref()) {
            Ok(d) => d,
            Err(m) => {
                src.error(domain.span(), k("domain"), m);
                continue;
            }
        };
        if let Some(j) = keys.iter().position(|key| key.domain() == domain_name) {
            src.error(
                domain.span(),
                k("domain"),
                format!("dkim[{j}] already signs for {domain_name}: give each domain one key"),
            );
            continue;
        }
        // RFC 6376 §3.1: a selector is one or more DNS labels.
        let selector_name = match values::domain(selector.get_ref()) {
            Ok(s) => s,
            Err(m) => {
                src.error(selector.span(), k("selector"), m);
                continue;
            }
        };
        let headers = match &table.headers {
            None => DEFAULT_SIGNED_HEADERS
                .iter()
                .map(|h| h.to_string())
                .collect(),
            Some(list) => match field_names(list.get_ref()) {
                Ok(names) => names,
                Err(m) => {
                    src.error(list.span(), k("headers"), m);
                    continue;
                }
            },
        };
        let path = match path_in(base)(key_file.get_ref()) {
            Ok(p) => p,
            Err(m) => {
                src.error(key_file.span(), k("key_file"), m);
                continue;
            }
        };
        match DkimKey::load(&domain_name, &selector_name, headers, &path) {
            Ok(key) => keys.push(key),
            Err(e @ DkimError::FromNotSigned) => {
                let span = table.headers.as_ref().map_or(domain.span(), |h| h.span());
                src.error(span, k("headers"), e.to_string());
            }
            Err(e) => src.error(
                key_file.span(),
                k("key_file"),
                match e {
                    DkimError::Read { .. } => format!("{}; {}", ErrorChain(&e), key_hint()),
                    _ => format!("{}: {}; {}", path.display(), ErrorChain(&e), key_hint()),
                },
            ),
        }
    }
    keys
}

fn key_hint() -> &'static str {
    "make one with `openssl genpkey -algorithm ed25519` or `-algorithm RSA -pkeyopt rsa_keygen_bits:2048`"
}

/// RFC 5322 §3.6.8: a field name is printable US-ASCII except the colon. `DKIM-Signature`
/// cannot sign itself (RFC 6376 §3.5, `h=`).
fn field_names(list: &[String]) -> Result<Vec<String>, String> {
    if list.is_empty() {
        return Err("list the header fields to sign; From is required (RFC 6376 §5.4)".into());
    }
    for name in list {
        if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
            return Err(format!("`{name}` is not a header field name"));
        }
        if name.eq_ignore_ascii_case("dkim-signature") {
            return Err("DKIM-Signature cannot be signed by itself (RFC 6376 §3.5)".into());
        }
    }
    Ok(list.to_vec())
}

pub(crate) fn render(keys: &[DkimKey], out: &mut String) {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    for key in keys {
        let headers: Vec<String> = key.headers().iter().map(|h| q(h)).collect();
        let _ = writeln!(
            out,
            "[[dkim]]\ndomain = {}\nselector = {}\nkey_file = {}\t# {}\nheaders = [{}]\n",
            q(key.domain()),
            q(key.selector()),
            q(&key
                .key_file()
                .map(|p| p.display().to_string())
                .unwrap_or_default()),
            key.algorithm(),
            headers.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use crate::Config;

    fn ed25519_key(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("dkim.pem");
        let out = Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(&path)
            .status()
            .expect("openssl runs");
        assert!(out.success());
        path
    }

    fn parse(text: &str, dir: &Path) -> Result<Config, String> {
        Config::parse(text, &dir.join("strictmx.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_dkim_table_loads_its_key_with_the_default_headers() {
        let dir = tempfile::tempdir().expect("temporary directory");
        ed25519_key(dir.path());
        let c = parse(
            "[[dkim]]\ndomain = \"App.Example\"\nselector = \"s1\"\nkey_file = \"dkim.pem\"\n",
            dir.path(),
        )
        .expect("valid");
        let key = &c.inbound.dkim[0];
        assert_eq!(
            (key.domain(), key.selector(), key.algorithm()),
            ("app.example", "s1", "ed25519")
        );
        assert_eq!(key.headers()[..2], ["From", "From"]);
        assert_eq!(key.key_file(), Some(dir.path().join("dkim.pem").as_path()));
        assert!(c.render().contains("[[dkim]]\ndomain = \"app.example\""));
    }

    #[test]
    fn a_missing_or_unusable_key_file_is_named_with_file_line_and_key() {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::write(
            dir.path().join("cert.pem"),
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let text = "[server]\nhostname = \"relay.test\"\n\n[[dkim]]\ndomain = \"a.example\"\nselector = \"s1\"\nkey_file = \"missing.pem\"\n\n[[dkim]]\ndomain = \"b.example\"\nselector = \"s1\"\nkey_file = \"cert.pem\"\n";
        let errors = parse(text, dir.path()).expect_err("invalid");
        assert!(
            errors.contains("strictmx.toml:7:12: key `dkim[0].key_file`"),
            "{errors}"
        );
        assert!(errors.contains("missing.pem"), "{errors}");
        assert!(
            errors.contains("strictmx.toml:12:12: key `dkim[1].key_file`"),
            "{errors}"
        );
        assert!(errors.contains("no RSA"), "{errors}");
    }

    #[test]
    fn bad_domains_selectors_headers_and_duplicates_are_refused() {
        let dir = tempfile::tempdir().expect("temporary directory");
        ed25519_key(dir.path());
        for (table, expected) in [
            (
                "domain = \"a..example\"\nselector = \"s1\"\nkey_file = \"dkim.pem\"",
                "dkim[0].domain",
            ),
            (
                "domain = \"a.example\"\nselector = \"s 1\"\nkey_file = \"dkim.pem\"",
                "dkim[0].selector",
            ),
            // RFC 6376 §5.4: From must be signed.
            (
                "domain = \"a.example\"\nselector = \"s1\"\nkey_file = \"dkim.pem\"\nheaders = [\"To\"]",
                "From",
            ),
            (
                "domain = \"a.example\"\nselector = \"s1\"\nkey_file = \"dkim.pem\"\nheaders = [\"From\", \"Bad:Name\"]",
                "not a header field name",
            ),
            (
                "domain = \"a.example\"\nselector = \"s1\"\nkey_file = \"dkim.pem\"\nheaders = [\"From\", \"DKIM-Signature\"]",
                "RFC 6376 §3.5",
            ),
            (
                "domain = \"a.example\"\nselector = \"s1\"",
                "dkim[0].key_file",
            ),
            (
                "domain = \"a.example\"\nselector = \"s1\"\nkey_file = \"dkim.pem\"\n\n[[dkim]]\ndomain = \"A.example\"\nselector = \"s2\"\nkey_file = \"dkim.pem\"",
                "dkim[0] already signs for a.example",
            ),
            (
                "domain = \"a.example\"\nselector = \"s1\"\nkey_file = \"dkim.pem\"\nsigner = \"x\"",
                "signer",
            ),
        ] {
            let errors = parse(&format!("[[dkim]]\n{table}\n"), dir.path()).expect_err(table);
            assert!(errors.contains(expected), "{table}: {errors}");
        }
    }
}
