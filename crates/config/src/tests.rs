//! Every example configuration validates, the embedded defaults are sane, and an unknown key is
//! rejected in every table with its line and key.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::*;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::parse(text, Path::new("test.toml"))
}

/// A well-formed argon2id hash of a password nobody has published.
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$CWBsMNbH8m8db191b4vZwg$Ng0wjmWyN1hrH4qY18Qr75qaH9NH/3XWc2unQNHSXIs";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A self-signed certificate for `localhost` and its key, as `cert.pem` and `key.pem` in `dir`.
pub(crate) fn tls_files(dir: &Path) -> (PathBuf, PathBuf) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("write the certificate");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write the key");
    (cert, key)
}

/// An example configuration, with the TLS files it names (under /etc/strictmx/tls, which does
/// not exist here) made in `dir`, so its file checks can pass.
fn example_with_tls_files(file: &str, dir: &Path) -> String {
    let text = std::fs::read_to_string(repo_root().join(file)).expect("read the example");
    let (cert, key) = tls_files(dir);
    text.replace(
        "/etc/strictmx/tls/fullchain.pem",
        &cert.display().to_string(),
    )
    .replace("/etc/strictmx/tls/privkey.pem", &key.display().to_string())
}

#[test]
fn every_example_configuration_validates_once_the_files_it_names_exist() {
    let dir = tempfile::tempdir().expect("temporary directory");
    for file in ["config/strictmx.toml", "docker/strictmx.toml"] {
        let text = example_with_tls_files(file, dir.path());
        if let Err(e) = Config::parse(&text, &repo_root().join(file)) {
            panic!("{file} does not validate:\n{e}");
        }
    }
}

#[test]
fn every_key_of_every_table_is_documented_in_the_example() {
    let text = std::fs::read_to_string(repo_root().join("config/strictmx.toml")).unwrap();
    // `key = ...` lines, commented out or not, under the table header above them.
    let mut documented = HashSet::new();
    let mut table = String::new();
    for line in text.lines() {
        let line = line.trim_start_matches('#').trim();
        let code = line.split('#').next().unwrap_or("").trim();
        if code.starts_with('[') && code.ends_with(']') {
            table = code.trim_matches(['[', ']']).to_string();
            continue;
        }
        if let Some((key, _)) = code.split_once('=') {
            let key = key.trim();
            if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                documented.insert(format!("{table}.{key}"));
            }
        }
    }
    let schema = keys::schema();
    for (path, _, table) in keys::tables(&schema) {
        for field in table.fields {
            if table.child(field).is_none() {
                let key = format!("{path}.{field}");
                assert!(
                    documented.contains(&key),
                    "{key} is not in config/strictmx.toml"
                );
            }
        }
    }
}

#[test]
fn the_example_configuration_has_no_user_anyone_can_log_in_as() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let text = example_with_tls_files("config/strictmx.toml", dir.path());
    let c = Config::parse(&text, &repo_root().join("config/strictmx.toml")).unwrap();
    assert!(c.inbound.users.is_empty());
    assert!(c.transport.tls_required_no.users.is_empty());
}

#[test]
fn the_embedded_defaults_listen_on_loopback_2525_and_trust_only_loopback() {
    let c = Config::embedded_default();
    assert_eq!(c.inbound.listeners.len(), 1);
    assert_eq!(c.inbound.listeners[0].address.to_string(), "127.0.0.1:2525");
    assert!(
        c.inbound
            .trusted_networks
            .iter()
            .all(|n| n.addr().is_loopback())
    );
    assert_eq!(c.data_dir, Path::new("data"));
    assert!(c.render().contains("[server]"));
}

#[test]
fn an_unknown_key_is_rejected_in_every_table() {
    let tables = [
        "[server]",
        "[log]",
        "[metrics]",
        "[control]",
        "[spool]",
        "[tls]",
        "[relay]",
        "[auth]",
        "[limits]",
        "[dns]",
        "[delivery]",
        "[retry]",
        "[mta_sts]",
        "[policy]",
        "[tlsrpt]",
    ];
    for table in tables {
        let text = format!("{table}\nno_such_key = 1\n");
        let errors = parse(&text).expect_err(table).0;
        assert_eq!(errors[0].line, 2, "{table}: {errors:?}");
        assert!(
            errors[0].message.contains("unknown key"),
            "{table}: {errors:?}"
        );
        assert!(
            errors[0].key.ends_with("no_such_key"),
            "{table}: {errors:?}"
        );
    }
    for array in [
        "[[listener]]\naddress = \"127.0.0.1:25\"",
        "[[route]]\ndomain = \"a.test\"\nnext_hop = \"b.test\"",
        "[[auth.user]]\nname = \"a\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$CWBsMNbH8m8db191b4vZwg$Ng0wjmWyN1hrH4qY18Qr75qaH9NH/3XWc2unQNHSXIs\"",
        "[[rule]]\nfail_closed = true",
    ] {
        let text = format!("{array}\nno_such_key = 1\n");
        let errors = parse(&text).expect_err(array).0;
        assert!(
            errors[0].message.contains("unknown key"),
            "{array}: {errors:?}"
        );
        assert!(
            errors[0].key.ends_with("[0].no_such_key"),
            "{array}: {errors:?}"
        );
    }
}

#[test]
fn validation_reports_every_problem_with_its_line_and_key() {
    let text = "[limits]\nmax_recipients = 0\ndata_timeout = \"later\"\n\n[[route]]\ndomain = \"not a domain\"\nnext_hop = \"mx.test:99999\"\n";
    let errors = parse(text).unwrap_err().0;
    let found: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(
        found,
        vec![
            (2, "limits.max_recipients"),
            (3, "limits.data_timeout"),
            (6, "route[0].domain"),
            (7, "route[0].next_hop"),
        ]
    );
    let shown = ConfigErrors(errors).to_string();
    assert!(
        shown.starts_with("test.toml:2:18: key `limits.max_recipients`: "),
        "{shown}"
    );
}

#[test]
fn a_submissions_listener_without_a_certificate_is_refused() {
    let errors = parse("[[listener]]\naddress = \"127.0.0.1:465\"\nrole = \"submissions\"\n")
        .unwrap_err()
        .0;
    assert_eq!(errors[0].key, "listener[0].role");
}

#[test]
fn relative_paths_are_relative_to_the_configuration_file() {
    let c = Config::parse(
        "[server]\ndata_dir = \"spool\"\n",
        Path::new("/etc/strictmx/strictmx.toml"),
    )
    .unwrap();
    assert_eq!(c.data_dir, Path::new("/etc/strictmx/spool"));
    assert_eq!(
        c.control_socket,
        Path::new("/etc/strictmx/spool/control.sock")
    );
}

#[test]
fn the_control_socket_is_found_even_in_a_file_that_no_longer_validates() {
    let dir = std::env::temp_dir().join(format!("strictmx-config-socket-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("strictmx.toml");
    std::fs::write(
        &file,
        "[server]\ndata_dir = \"spool\"\n[limits]\nmax_recipients = 0\n",
    )
    .unwrap();
    assert!(Config::load(&file).is_err());
    assert_eq!(
        Config::control_socket_of(&file).unwrap(),
        dir.join("spool/control.sock")
    );
    std::fs::write(
        &file,
        "[control]\nsocket = \"/run/strictmx.sock\"\n[[rule]]\nrequire = 1\n",
    )
    .unwrap();
    assert_eq!(
        Config::control_socket_of(&file).unwrap(),
        Path::new("/run/strictmx.sock")
    );
    std::fs::write(&file, "[control\n").unwrap();
    assert_eq!(Config::control_socket_of(&file).unwrap_err().0[0].line, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn routes_to_the_same_domain_twice_are_refused() {
    let text = "[[route]]\ndomain = \"a.test\"\nnext_hop = \"b.test\"\n[[route]]\ndomain = \"A.test\"\nnext_hop = \"c.test\"\n";
    let errors = parse(text).unwrap_err().0;
    assert_eq!(errors[0].key, "route[1].domain");
}

#[test]
fn a_route_reads_its_password_from_the_file_and_prints_only_the_file() {
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(dir.path().join("relay-password"), "s3cret-relay\n").unwrap();
    let text = "[[route]]\ndomain = \"*\"\nnext_hop = \"[smtp.provider.example]:587\"\nauth_user = \"me@provider.example\"\nauth_password_file = \"relay-password\"\n\n[[route]]\ndomain = \"*.Partner.Example\"\nnext_hop = \"[2001:db8::25]\"\n";
    let c = Config::parse(text, &dir.path().join("strictmx.toml")).unwrap();
    let routes = &c.transport.routes;
    assert_eq!(routes[0].domain, "*");
    assert_eq!(
        (routes[0].host.as_str(), routes[0].port),
        ("smtp.provider.example", 587)
    );
    let credentials = routes[0].credentials.as_ref().expect("credentials");
    assert_eq!(credentials.user, "me@provider.example");
    // The first line of the file, without its newline.
    assert_eq!(credentials.password, "s3cret-relay");
    assert_eq!(routes[1].domain, "*.partner.example");
    assert_eq!(
        (routes[1].host.as_str(), routes[1].port),
        ("2001:db8::25", 25)
    );
    let rendered = c.render();
    assert!(!rendered.contains("s3cret-relay"), "{rendered}");
    let again = Config::parse(&rendered, &dir.path().join("strictmx.toml"))
        .unwrap_or_else(|e| panic!("{e}\n{rendered}"));
    assert_eq!(again.transport.routes, c.transport.routes);
}

#[test]
fn a_route_login_needs_both_keys_and_a_readable_password_file() {
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(dir.path().join("empty"), "\n").unwrap();
    let base = dir.path().join("strictmx.toml");
    let route =
        |extra: &str| format!("[[route]]\ndomain = \"a.test\"\nnext_hop = \"b.test:587\"\n{extra}");
    let rows = [
        (
            "auth_user = \"u\"\n",
            "route[0].auth_password_file",
            "needs auth_password_file",
        ),
        (
            "auth_password_file = \"empty\"\n",
            "route[0].auth_user",
            "needs auth_user",
        ),
        (
            "auth_user = \"u\"\nauth_password_file = \"missing\"\n",
            "route[0].auth_password_file",
            "cannot read",
        ),
        (
            "auth_user = \"u\"\nauth_password_file = \"empty\"\n",
            "route[0].auth_password_file",
            "first line",
        ),
        (
            "auth_password = \"inline\"\n",
            "route[0].auth_password",
            "unknown",
        ),
    ];
    for (extra, key, message) in rows {
        let errors = Config::parse(&route(extra), &base).unwrap_err().0;
        assert_eq!(errors[0].key, key, "{extra}");
        assert!(
            errors[0].message.contains(message),
            "{extra}: {}",
            errors[0].message
        );
    }
}

#[test]
fn the_effective_configuration_printed_by_check_config_reads_back_the_same() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = repo_root().join("config/strictmx.toml");
    let text = example_with_tls_files("config/strictmx.toml", dir.path());
    let original = Config::parse(&text, &root).unwrap();
    let rendered = original.render();
    let again = Config::parse(&rendered, &root).unwrap_or_else(|e| panic!("{e}\n{rendered}"));
    let settings = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(settings(&again.render()), settings(&rendered));
}

mod rules {
    use strictmx_policy::rules::{
        DomainPattern, MinRequirement, Pin, Relax, RuleMode, SenderPattern, TlsVersion,
    };

    use super::parse;

    const PIN: &str = "spki-sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

    #[test]
    fn every_rule_key_becomes_the_policy_crates_rule() {
        let text = format!(
            "[[rule]]\nname = \"bank\"\ndomains = [\"Bank.example\", \"*.bank.example\"]\nsenders = [\"reset@App.example\", \"@app.example\"]\nrequire = \"dane-only\"\npins = [\"{PIN}\", \"cert-sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"]\nmin_tls_version = \"TLSv1.3\"\nfail_closed = true\n"
        );
        let c = parse(&text).unwrap();
        let r = &c.transport.policy.rules[0];
        assert_eq!(r.name, "bank");
        assert_eq!(
            r.domains,
            vec![
                DomainPattern::Exact("bank.example".into()),
                DomainPattern::Below("bank.example".into())
            ]
        );
        assert_eq!(
            r.senders,
            vec![
                SenderPattern::Address("reset@app.example".into()),
                SenderPattern::Domain("app.example".into())
            ]
        );
        assert_eq!(r.require, Some(MinRequirement::DaneOnly));
        assert!(matches!(r.pins[0], Pin::Spki { sha256 } if sha256[0] == 0xe3));
        assert_eq!(r.pins[1], Pin::Certificate { sha256: [0; 32] });
        assert_eq!(r.min_tls_version, Some(TlsVersion::Tls13));
        assert!(r.fail_closed);
        assert_eq!(r.insecure_relax, None);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn a_rule_without_a_name_is_named_after_its_position() {
        let c = parse("[[rule]]\nrequire = \"encrypted\"\n[[rule]]\nfail_closed = true\n").unwrap();
        assert_eq!(c.transport.policy.rules[1].name, "rule[1]");
    }

    #[test]
    fn each_bad_rule_value_is_reported_at_its_line_and_key() {
        let text = "[[rule]]\n\
                    domains = [\"ok.example\",\n  \"bad_domain\"]\n\
                    senders = [\"nobody\"]\n\
                    require = \"paranoid\"\n\
                    pins = [\"spki-sha256:not base64\", \"spki-sha256:AAAA\", \"md5:AAAA\"]\n\
                    min_tls_version = \"TLSv1.1\"\n\
                    insecure_relax = \"plaintext\"\n\
                    [[rule]]\ndomains = [\"a.*.example\"]\nrequire = \"verified\"\n";
        let errors = parse(text).unwrap_err().0;
        let found: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.key.as_str())).collect();
        assert_eq!(
            found,
            vec![
                (3, "rule[0].domains[1]"),
                (4, "rule[0].senders[0]"),
                (5, "rule[0].require"),
                (6, "rule[0].pins[0]"),
                (6, "rule[0].pins[1]"),
                (6, "rule[0].pins[2]"),
                (7, "rule[0].min_tls_version"),
                (8, "rule[0].insecure_relax"),
                (10, "rule[1].domains[0]"),
            ]
        );
        assert!(errors[4].message.contains("bytes long"), "{:?}", errors[4]);
    }

    #[test]
    fn an_empty_list_is_refused_because_it_would_match_everything() {
        let errors = parse("[[rule]]\nrequire = \"verified\"\nsenders = []\n")
            .unwrap_err()
            .0;
        assert_eq!(
            (errors[0].line, errors[0].key.as_str()),
            (3, "rule[0].senders")
        );
    }

    /// The keys every exception must carry.
    const TERMS: &str = "expires = \"2099-01-31\"\nreason = \"ticket 4711\"\n";

    #[test]
    fn insecure_relax_needs_domains_and_must_not_contradict_require() {
        let errors = parse(&format!("[[rule]]\ninsecure_relax = \"encrypted\"\n{TERMS}[[rule]]\ndomains = [\"p.example\"]\nrequire = \"verified\"\ninsecure_relax = \"encrypted\"\n{TERMS}"))
            .unwrap_err()
            .0;
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            vec!["rule[0].insecure_relax", "rule[1].insecure_relax"]
        );
        assert!(errors[0].message.contains("domains"));
        assert!(errors[1].message.contains("contradicts"));
    }

    #[test]
    fn insecure_relax_is_accepted_with_a_loud_warning() {
        let c = parse(&format!("[[rule]]\nname = \"partner\"\ndomains = [\"partner.example\"]\ninsecure_relax = \"encrypted\"\n{TERMS}")).unwrap();
        let rule = &c.transport.policy.rules[0];
        assert_eq!(rule.insecure_relax, Some(Relax::Encrypted));
        assert_eq!(rule.expires, Some(4_073_500_800));
        assert_eq!(rule.reason.as_deref(), Some("ticket 4711"));
        assert_eq!(c.warnings.len(), 1);
        assert_eq!(c.warnings[0].line, 4);
        assert!(
            c.warnings[0]
                .message
                .contains("partner.example until 2099-01-31T00:00:00Z")
        );
        assert!(c.warnings[0].message.contains("not verified"));
    }

    // Issue 11, "Exceptions that expire": an exception without its end or its reason is refused,
    // naming the missing key at the line of the `insecure_relax` that needs it.
    #[test]
    fn an_exception_without_expires_or_reason_is_refused_naming_the_key_and_line() {
        let rows: &[(&str, &[(usize, &str)])] = &[
            ("reason = \"ticket 4711\"\n", &[(4, "rule[0].expires")]),
            ("expires = \"2099-01-31\"\n", &[(4, "rule[0].reason")]),
            ("", &[(4, "rule[0].expires"), (4, "rule[0].reason")]),
            (
                "expires = \"2099-01-31\"\nreason = \"  \"\n",
                &[(6, "rule[0].reason")],
            ),
            (
                "expires = \"31.01.2099\"\nreason = \"ticket 4711\"\n",
                &[(5, "rule[0].expires")],
            ),
        ];
        for (terms, want) in rows {
            let text = format!(
                "[[rule]]\nname = \"partner\"\ndomains = [\"partner.example\"]\ninsecure_relax = \"encrypted\"\n{terms}"
            );
            let errors = parse(&text).unwrap_err().0;
            let found: Vec<(usize, &str)> =
                errors.iter().map(|e| (e.line, e.key.as_str())).collect();
            assert_eq!(found, *want, "{terms}");
        }
        let errors = parse(
            "[[rule]]\ndomains = [\"p.example\"]\ninsecure_relax = \"encrypted\"\nreason = \"r\"\n",
        )
        .unwrap_err()
        .0;
        assert!(
            errors[0].message.contains("must say when it ends"),
            "{errors:?}"
        );
        let errors =
            parse("[[rule]]\nrequire = \"verified\"\nexpires = \"2099-01-31\"\nreason = \"\"\n")
                .unwrap_err()
                .0;
        assert!(
            errors[0].message.contains("must not be empty"),
            "{errors:?}"
        );
    }

    #[test]
    fn any_rule_may_expire_at_a_date_or_an_rfc_3339_time() {
        let c = parse("[[rule]]\nname = \"a\"\nrequire = \"verified\"\nexpires = \"2099-01-31T18:00:00+01:00\"\n[[rule]]\nname = \"b\"\nrequire = \"verified\"\n").unwrap();
        let rules = &c.transport.policy.rules;
        assert_eq!(rules[0].expires, Some(4_073_500_800 + 17 * 3600));
        assert_eq!(rules[1].expires, None);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    // Issue 11: `check-config` warns 7 days before an expiry, and of a rule already expired.
    #[test]
    fn a_rule_expiring_within_a_week_or_expired_is_a_warning_at_its_expires_line() {
        let now = crate::values::unix_now();
        let at = |secs: u64| crate::values::moment_text(secs);
        let rows = [
            (now + 3 * 86_400, Some("expires at")),
            (now + 7 * 86_400 - 60, Some("expires at")),
            (now + 8 * 86_400, None),
            (now - 60, Some("expired at")),
        ];
        for (expires, want) in rows {
            let text = format!(
                "[[rule]]\nname = \"partner\"\ndomains = [\"partner.example\"]\ninsecure_relax = \"encrypted\"\nexpires = \"{}\"\nreason = \"ticket 4711\"\n",
                at(expires)
            );
            let c = parse(&text).unwrap();
            let expiry: Vec<_> = c
                .warnings
                .iter()
                .filter(|w| w.key == "rule[0].expires")
                .collect();
            match want {
                None => assert!(expiry.is_empty(), "{expiry:?}"),
                Some(words) => {
                    assert_eq!(expiry.len(), 1, "{:?}", c.warnings);
                    assert_eq!(expiry[0].line, 5);
                    assert!(expiry[0].message.contains(words), "{}", expiry[0].message);
                    assert!(
                        expiry[0]
                            .message
                            .contains("exception `partner` (reason: ticket 4711)"),
                        "{}",
                        expiry[0].message
                    );
                }
            }
        }
        let three_days = crate::rules::expiry_warning(
            &strictmx_policy::rules::Rule {
                name: "r".into(),
                expires: Some(1_000_000 + 3 * 86_400),
                ..Default::default()
            },
            1_000_000,
        )
        .unwrap();
        assert!(three_days.contains("in 3days"), "{three_days}");
    }

    #[test]
    fn a_rule_runs_in_shadow_mode_only_when_asked_and_never_as_an_exception() {
        let c = parse("[[rule]]\nname = \"try\"\nrequire = \"dane-only\"\nmode = \"shadow\"\n[[rule]]\nname = \"on\"\nrequire = \"verified\"\nmode = \"enforce\"\n[[rule]]\nname = \"plain\"\nrequire = \"verified\"\n").unwrap();
        let modes: Vec<RuleMode> = c.transport.policy.rules.iter().map(|r| r.mode).collect();
        assert_eq!(
            modes,
            [RuleMode::Shadow, RuleMode::Enforce, RuleMode::Enforce]
        );
        let errors = parse(&format!("[[rule]]\nmode = \"audit\"\nrequire = \"verified\"\n[[rule]]\ndomains = [\"p.example\"]\ninsecure_relax = \"encrypted\"\nmode = \"shadow\"\n{TERMS}"))
            .unwrap_err()
            .0;
        let found: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.key.as_str())).collect();
        assert_eq!(found, [(2, "rule[0].mode"), (7, "rule[1].mode")]);
        assert!(errors[1].message.contains("stops nothing"), "{errors:?}");
    }

    #[test]
    fn a_pin_of_the_last_good_policy_is_a_duration_of_an_hour_or_more_within_the_watch_window() {
        let c = parse(
            "[[rule]]\nname = \"bank\"\ndomains = [\"bank.example\"]\npin_last_good = \"30d\"\n",
        )
        .unwrap();
        assert_eq!(c.transport.policy.rules[0].pin_last_good, Some(30 * 86_400));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let errors = parse("[[rule]]\nname = \"bank\"\npin_last_good = \"5m\"\n")
            .unwrap_err()
            .0;
        assert_eq!(
            (errors[0].line, errors[0].key.as_str()),
            (3, "rule[0].pin_last_good")
        );
        assert!(errors[0].message.contains("at least 1h"), "{errors:?}");
        let long =
            parse("[watch]\nkeep = \"10d\"\n[[rule]]\nname = \"bank\"\npin_last_good = \"30d\"\n")
                .unwrap();
        let warned: Vec<(usize, &str)> = long
            .warnings
            .iter()
            .map(|w| (w.line, w.key.as_str()))
            .collect();
        assert_eq!(warned, [(5, "rule[0].pin_last_good")]);
        assert!(
            long.warnings[0].message.contains("outlasts [watch] keep"),
            "{:?}",
            long.warnings
        );
    }

    #[test]
    fn a_rule_that_demands_nothing_is_a_warning() {
        let c = parse("[[rule]]\nname = \"idle\"\ndomains = [\"x.example\"]\n").unwrap();
        assert_eq!(c.warnings[0].key, "rule[0]");
    }

    #[test]
    fn two_rules_with_the_same_name_are_refused() {
        let errors = parse("[[rule]]\nname = \"a\"\nfail_closed = true\n[[rule]]\nname = \"a\"\nfail_closed = true\n")
            .unwrap_err()
            .0;
        assert_eq!(
            (errors[0].line, errors[0].key.as_str()),
            (5, "rule[1].name")
        );
    }
}

mod dns {
    use std::net::SocketAddr;
    use std::path::Path;

    use strictmx_resolve::DnssecMode;

    use super::{Config, parse};

    #[test]
    fn dnssec_defaults_to_validating_from_the_embedded_root_anchor() {
        let c = parse("[dns]\nnameservers = [\"192.0.2.1\"]\n").unwrap();
        assert_eq!(
            c.resolver.dnssec,
            DnssecMode::Validate { trust_anchor: None }
        );
        assert_eq!(
            Config::embedded_default().resolver.dnssec,
            DnssecMode::Validate { trust_anchor: None }
        );
    }

    #[test]
    fn a_trust_anchor_file_is_relative_to_the_configuration_and_must_hold_root_dnskeys() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let anchor = "../resolve/src/root-anchors.key";
        let c = Config::parse(
            &format!("[dns]\ndnssec = \"validate\"\ntrust_anchor = \"{anchor}\"\n"),
            &dir.join("strictmx.toml"),
        )
        .unwrap();
        assert_eq!(
            c.resolver.dnssec,
            DnssecMode::Validate {
                trust_anchor: Some(dir.join(anchor))
            }
        );
        for (file, complaint) in [
            ("/no/such/anchor.key", "cannot read"),
            ("Cargo.toml", "DNSKEY"),
        ] {
            let errors = Config::parse(
                &format!("[dns]\ntrust_anchor = \"{file}\"\n"),
                &dir.join("strictmx.toml"),
            )
            .unwrap_err()
            .0;
            assert_eq!(
                (errors[0].line, errors[0].key.as_str()),
                (2, "dns.trust_anchor")
            );
            assert!(errors[0].message.contains(complaint), "{errors:?}");
        }
    }

    #[test]
    fn trusting_the_resolver_is_refused_for_a_resolver_off_loopback_unless_listed() {
        let text = "[dns]\nnameservers = [\"127.0.0.1:53\",\n  \"192.0.2.53\"]\ndnssec = \"trust-resolver\"\n";
        let errors = parse(text).unwrap_err().0;
        assert_eq!(
            (errors[0].line, errors[0].key.as_str()),
            (3, "dns.nameservers[1]")
        );
        assert!(errors[0].message.contains("192.0.2.53:53"), "{errors:?}");

        let text = "[dns]\nnameservers = [\"192.0.2.53\"]\ndnssec = \"trust-resolver\"\ntrusted_nameservers = [\"192.0.2.53:53\"]\n";
        let c = parse(text).unwrap();
        assert_eq!(c.resolver.dnssec, DnssecMode::TrustResolver);
        let trusted: SocketAddr = "192.0.2.53:53".parse().unwrap();
        assert_eq!(c.resolver.trusted_nameservers, vec![trusted]);
    }

    #[test]
    fn the_settings_of_one_dnssec_mode_are_flagged_under_the_other() {
        let errors =
            parse("[dns]\ndnssec = \"trust-resolver\"\ntrust_anchor = \"/etc/hostname\"\n")
                .unwrap_err()
                .0;
        assert_eq!(errors[0].key, "dns.trust_anchor");
        let c = parse("[dns]\ntrusted_nameservers = [\"192.0.2.53\"]\n").unwrap();
        assert_eq!(c.warnings[0].key, "dns.trusted_nameservers");
    }

    #[test]
    fn an_unknown_dnssec_mode_is_an_error_at_its_line() {
        let errors = parse("[dns]\n\ndnssec = \"hope\"\n").unwrap_err().0;
        assert_eq!((errors[0].line, errors[0].key.as_str()), (3, "dns.dnssec"));
        assert!(errors[0].message.contains("trust-resolver"));
    }

    #[test]
    fn the_mx_host_lookup_limits_have_defaults_and_keys() {
        let defaults = parse("").unwrap().gather;
        assert_eq!(
            (
                defaults.max_hosts,
                defaults.host_concurrency,
                defaults.host_timeout
            ),
            (10, 4, std::time::Duration::from_secs(30))
        );
        let c = parse(
            "[dns]\nmax_mx_hosts = 3\nhost_lookups_at_once = 2\nhost_lookup_timeout = \"5s\"\n",
        )
        .unwrap()
        .gather;
        assert_eq!(
            (c.max_hosts, c.host_concurrency, c.host_timeout),
            (3, 2, std::time::Duration::from_secs(5))
        );
        let errors = parse("[dns]\nmax_mx_hosts = 0\n").unwrap_err().0;
        assert_eq!(
            (errors[0].line, errors[0].key.as_str()),
            (2, "dns.max_mx_hosts")
        );
    }
}

mod mta_sts {
    use std::time::Duration;

    use super::{Config, parse};

    #[test]
    fn every_mta_sts_key_reaches_the_resolver_settings() {
        let c = parse("[mta_sts]\nenabled = false\nfetch_timeout = \"20s\"\nconnect_timeout = \"5s\"\nmax_policy_size = \"32KiB\"\nrefresh_before = \"12h\"\nrefresh_interval = \"10m\"\nforget_unused_after = \"7d\"\n").unwrap();
        let m = &c.mta_sts;
        assert!(!m.enabled);
        assert_eq!(m.fetch_timeout, Duration::from_secs(20));
        assert_eq!(m.connect_timeout, Duration::from_secs(5));
        assert_eq!(m.max_policy_size, 32 * 1024);
        assert_eq!(m.refresh_before, Duration::from_secs(12 * 3600));
        assert_eq!(m.refresh_interval, Duration::from_secs(600));
        assert_eq!(m.forget_unused_after, Duration::from_secs(7 * 86400));
    }

    #[test]
    fn policy_hosts_trust_the_same_extra_cas_as_receivers() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (ca, _) = super::tls_files(dir.path());
        let c = Config::parse(
            "[delivery]\nextra_ca_file = \"cert.pem\"\n",
            &dir.path().join("strictmx.toml"),
        )
        .unwrap();
        assert_eq!(c.mta_sts.extra_ca_file, Some(ca));
        assert!(Config::embedded_default().mta_sts.enabled);
    }

    #[test]
    fn an_extra_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (_, key) = super::tls_files(dir.path());
        let errors = Config::parse(
            "[delivery]\nextra_ca_file = \"key.pem\"\n",
            &dir.path().join("strictmx.toml"),
        )
        .unwrap_err()
        .0;
        assert_eq!(errors[0].key, "delivery.extra_ca_file");
        assert!(errors[0].message.contains(&key.display().to_string()));
        assert!(
            errors[0].message.contains("not a certificate"),
            "{errors:?}"
        );
    }

    #[test]
    fn bad_mta_sts_values_are_errors_at_their_lines() {
        let errors = parse(
            "[mta_sts]\nfetch_timeout = \"5s\"\nconnect_timeout = \"10s\"\nmax_policy_size = 10\n",
        )
        .unwrap_err()
        .0;
        let found: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.key.as_str())).collect();
        assert_eq!(
            found,
            vec![
                (3, "mta_sts.connect_timeout"),
                (4, "mta_sts.max_policy_size")
            ]
        );
    }
}

mod sender_login_maps {
    use super::parse;
    use strictmx_policy::rules::SenderPattern;

    #[test]
    fn a_user_lists_the_senders_it_may_use() {
        let c = parse("[[auth.user]]\nname = \"app\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$CWBsMNbH8m8db191b4vZwg$Ng0wjmWyN1hrH4qY18Qr75qaH9NH/3XWc2unQNHSXIs\"\nsenders = [\"reset@app.example\", \"@billing.example\"]\n").unwrap();
        assert_eq!(
            c.inbound.users[0].senders,
            vec![
                SenderPattern::Address("reset@app.example".into()),
                SenderPattern::Domain("billing.example".into())
            ]
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn a_user_without_senders_may_use_any_and_is_warned_about() {
        let c = parse("[[auth.user]]\nname = \"app\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$CWBsMNbH8m8db191b4vZwg$Ng0wjmWyN1hrH4qY18Qr75qaH9NH/3XWc2unQNHSXIs\"\n").unwrap();
        assert!(c.inbound.users[0].senders.is_empty());
        assert_eq!(c.warnings[0].key, "auth.user[0].senders");
    }

    #[test]
    fn an_empty_or_malformed_sender_list_is_an_error_naming_the_entry() {
        let errors = parse("[[auth.user]]\nname = \"app\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$CWBsMNbH8m8db191b4vZwg$Ng0wjmWyN1hrH4qY18Qr75qaH9NH/3XWc2unQNHSXIs\"\nsenders = [\"@ok.example\", \"no-at-sign\"]\n")
            .unwrap_err()
            .0;
        assert_eq!(
            (errors[0].line, errors[0].key.as_str()),
            (4, "auth.user[0].senders[1]")
        );
        let errors =
            parse("[[auth.user]]\nname = \"app\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$CWBsMNbH8m8db191b4vZwg$Ng0wjmWyN1hrH4qY18Qr75qaH9NH/3XWc2unQNHSXIs\"\nsenders = []\n")
                .unwrap_err()
                .0;
        assert_eq!(errors[0].key, "auth.user[0].senders");
    }

    // Issue 10: a user's messages can carry a TLS floor, like an HTTP submission's require_tls.
    #[test]
    fn a_user_may_carry_a_tls_floor_and_a_bad_one_is_named() {
        let user = "[[auth.user]]\nname = \"app\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$CWBsMNbH8m8db191b4vZwg$Ng0wjmWyN1hrH4qY18Qr75qaH9NH/3XWc2unQNHSXIs\"\nsenders = [\"@app.example\"]\n";
        let c = parse(&format!("{user}require_tls = \"verified\"\n")).unwrap();
        assert_eq!(
            c.inbound.users[0].require_tls,
            Some(strictmx_spool::TlsFloor::Verified)
        );
        assert_eq!(parse(user).unwrap().inbound.users[0].require_tls, None);
        let errors = parse(&format!("{user}require_tls = \"strong\"\n"))
            .unwrap_err()
            .0;
        assert_eq!(
            (errors[0].line, errors[0].key.as_str()),
            (5, "auth.user[0].require_tls")
        );
    }
}

mod secrets_at_rest {
    use std::os::unix::fs::PermissionsExt;

    use super::parse;

    #[test]
    fn a_tls_key_or_users_file_readable_by_everyone_is_warned_about() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (_, key) = super::tls_files(dir.path());
        let users = dir.path().join("users");
        std::fs::write(&users, "").expect("write");
        let toml = format!(
            "[tls]\ncertificate = \"{0}/cert.pem\"\nprivate_key = \"{0}/key.pem\"\n[auth]\nusers_file = \"{0}/users\"\n",
            dir.path().display()
        );
        for (mode, warned) in [(0o644, true), (0o640, false), (0o600, false)] {
            for path in [&key, &users] {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                    .expect("chmod");
            }
            let c = parse(&toml).unwrap();
            let keys: Vec<&str> = c.warnings.iter().map(|w| w.key.as_str()).collect();
            let expected: &[&str] = if warned {
                &["tls.private_key", "auth.users_file"]
            } else {
                &[]
            };
            assert_eq!(keys, expected, "mode {mode:o}");
        }
    }
}

mod never_deliver_to {
    use super::parse;

    #[test]
    fn loopback_and_unspecified_are_refused_by_default_and_the_list_can_be_replaced() {
        let c = parse("").unwrap();
        let nets: Vec<String> = c
            .transport
            .never_deliver_to
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(nets, ["127.0.0.0/8", "::1/128", "0.0.0.0/8", "::/128"]);
        let c = parse("[delivery]\nnever_deliver_to = [\"10.9.0.0/16\"]\n").unwrap();
        assert_eq!(c.transport.never_deliver_to.len(), 1);
        let c = parse("[delivery]\nnever_deliver_to = []\n").unwrap();
        assert!(c.transport.never_deliver_to.is_empty());
        let errors = parse("[delivery]\nnever_deliver_to = [\"10.9.0.1/16\"]\n")
            .unwrap_err()
            .0;
        assert_eq!(errors[0].key, "delivery.never_deliver_to[0]");
    }
}

mod inbound_limits {
    use super::parse;

    #[test]
    fn the_edge_limits_are_read_and_checked() {
        let c = parse("[limits]\nauth_failures_per_client = 5\nauth_failure_window = \"10m\"\nmax_concurrent_auth = 2\nmax_received_headers = 50\nmax_body_memory = \"64MiB\"\n").unwrap();
        let l = &c.inbound.limits;
        assert_eq!(l.auth_failures_per_client, 5);
        assert_eq!(l.auth_failure_window, std::time::Duration::from_secs(600));
        assert_eq!(l.max_concurrent_auth, 2);
        assert_eq!(l.max_received_headers, 50);
        assert_eq!(l.max_body_memory, 64 * 1024 * 1024);
        let errors = parse("[limits]\nmax_body_memory = \"64KiB\"\nmax_concurrent_auth = 0\n")
            .unwrap_err()
            .0;
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["limits.max_body_memory", "limits.max_concurrent_auth"]
        );
    }
}

mod tls_required_no {
    use super::parse;

    #[test]
    fn nobody_may_relax_policy_with_tls_required_no_by_default() {
        let c = parse("").unwrap();
        assert!(c.transport.tls_required_no.users.is_empty());
        assert!(c.transport.tls_required_no.networks.is_empty());
    }

    #[test]
    fn users_and_networks_are_granted_the_header() {
        let c = parse("[[auth.user]]\nname = \"ops\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$CWBsMNbH8m8db191b4vZwg$Ng0wjmWyN1hrH4qY18Qr75qaH9NH/3XWc2unQNHSXIs\"\nsenders = [\"@ops.example\"]\n[policy]\ntls_required_no_users = [\"ops\"]\ntls_required_no_networks = [\"10.1.0.0/16\", \"192.0.2.7\"]\n").unwrap();
        let p = &c.transport.tls_required_no;
        assert_eq!(p.users, vec!["ops".to_string()]);
        let nets: Vec<String> = p.networks.iter().map(ToString::to_string).collect();
        assert_eq!(nets, vec!["10.1.0.0/16", "192.0.2.7/32"]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn an_unknown_user_is_a_warning_and_a_bad_network_an_error() {
        let c = parse("[policy]\ntls_required_no_users = [\"ghost\"]\n").unwrap();
        assert_eq!(c.warnings[0].key, "policy.tls_required_no_users[0]");
        let errors = parse("[policy]\ntls_required_no_networks = [\"10.1.2.3/8\"]\n")
            .unwrap_err()
            .0;
        assert_eq!(
            (errors[0].line, errors[0].key.as_str()),
            (2, "policy.tls_required_no_networks[0]")
        );
    }
}

mod tlsrpt {
    use std::time::Duration;

    use super::{Config, parse};

    #[test]
    fn reporting_is_off_by_default_and_submits_as_the_hostname() {
        let c = parse("[server]\nhostname = \"relay.test\"\n").unwrap();
        assert!(!c.tlsrpt.enabled);
        assert_eq!(c.tlsrpt.submitter, "relay.test");
        assert!(!Config::embedded_default().tlsrpt.enabled);
    }

    #[test]
    fn every_tlsrpt_key_reaches_the_reporter_settings() {
        let c = parse("[tlsrpt]\nenabled = true\norganization_name = \"Org\"\ncontact_info = \"mailto:a@org.test\"\nsubmitter = \"Relay.Org.test\"\nmail_from = \"r@Org.test\"\nexclude_domains = [\"skip.test\"]\nsend_delay_max = \"2h\"\nkeep_days = 3\nhttps_attempts = 2\nhttps_backoff = \"10s\"\nhttps_timeout = \"5s\"\n").unwrap();
        let t = &c.tlsrpt;
        assert!(t.enabled);
        assert_eq!(t.organization_name, "Org");
        assert_eq!(t.contact_info, "mailto:a@org.test");
        assert_eq!(t.submitter, "relay.org.test");
        assert_eq!(t.mail_from, "r@org.test");
        assert_eq!(t.exclude_domains, vec!["skip.test".to_string()]);
        assert_eq!(t.send_delay_max, Duration::from_secs(7200));
        assert_eq!((t.keep_days, t.https_attempts), (3, 2));
        assert_eq!(t.https_backoff, Duration::from_secs(10));
        assert_eq!(t.https_timeout, Duration::from_secs(5));
    }

    #[test]
    fn report_addresses_and_https_reach_only_what_the_tlsrpt_table_allows() {
        let defaults = parse("").unwrap().tlsrpt;
        assert_eq!((defaults.max_rua, defaults.https_concurrency), (5, 8));
        assert_eq!(defaults.https_extra_ca_file, None);
        assert!(defaults.insecure_https_allow_networks.is_empty());
        let dir = tempfile::tempdir().expect("temporary directory");
        let (ca, _) = super::tls_files(dir.path());
        let c = Config::parse(
            "[tlsrpt]\nmax_rua = 2\nhttps_concurrency = 3\nhttps_extra_ca_file = \"cert.pem\"\ninsecure_https_allow_networks = [\"127.77.0.0/16\", \"::1\"]\n",
            &dir.path().join("strictmx.toml"),
        )
        .unwrap();
        let t = &c.tlsrpt;
        assert_eq!((t.max_rua, t.https_concurrency), (2, 3));
        assert_eq!(t.https_extra_ca_file, Some(ca));
        let nets: Vec<String> = t
            .insecure_https_allow_networks
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(nets, ["127.77.0.0/16", "::1/128"]);
    }

    #[test]
    fn bad_report_limits_files_and_networks_are_errors_at_their_lines() {
        let errors = parse("[tlsrpt]\nmax_rua = 0\nhttps_concurrency = 0\nhttps_extra_ca_file = \"/no/such/ca.pem\"\ninsecure_https_allow_networks = [\"10.0.0.1/8\"]\n")
            .unwrap_err()
            .0;
        let keys: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.key.as_str())).collect();
        assert_eq!(
            keys,
            vec![
                (2, "tlsrpt.max_rua"),
                (3, "tlsrpt.https_concurrency"),
                (4, "tlsrpt.https_extra_ca_file"),
                (5, "tlsrpt.insecure_https_allow_networks[0]"),
            ]
        );
    }

    #[test]
    fn enabled_reporting_needs_the_identity_rfc_8460_requires() {
        let errors = parse("[tlsrpt]\nenabled = true\norganization_name = \"Org\"\n")
            .unwrap_err()
            .0;
        let keys: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.key.as_str())).collect();
        assert_eq!(
            keys,
            vec![(2, "tlsrpt.contact_info"), (2, "tlsrpt.mail_from")]
        );
    }

    #[test]
    fn bad_tlsrpt_values_are_errors_at_their_lines() {
        let errors = parse("[tlsrpt]\nmail_from = \"nobody\"\nkeep_days = 0\nsend_delay_max = \"1d\"\nexclude_domains = [\"bad domain\"]\n")
            .unwrap_err()
            .0;
        let keys: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.key.as_str())).collect();
        assert_eq!(
            keys,
            vec![
                (2, "tlsrpt.mail_from"),
                (3, "tlsrpt.keep_days"),
                (4, "tlsrpt.send_delay_max"),
                (5, "tlsrpt.exclude_domains[0]"),
            ]
        );
    }
}

mod trusted_networks {
    use std::path::Path;

    use super::{Config, parse};

    #[test]
    fn trusting_the_whole_internet_is_an_error_naming_line_and_key() {
        for net in ["0.0.0.0/0", "::/0"] {
            let text = format!("[relay]\ntrusted_networks = [\"127.0.0.0/8\", \"{net}\"]\n");
            let errors = parse(&text).expect_err(net).0;
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(
                (errors[0].line, errors[0].key.as_str()),
                (2, "relay.trusted_networks[1]"),
                "{net}"
            );
            assert!(errors[0].message.contains("open relay"), "{}", errors[0]);
        }
    }

    #[test]
    fn a_bridge_subnet_with_its_gateway_and_a_wide_network_are_warned_about() {
        let c = parse("[relay]\ntrusted_networks = [\"172.28.0.0/16\", \"10.0.0.0/8\"]\n")
            .expect("valid, with warnings");
        let found: Vec<(usize, &str)> = c
            .warnings
            .iter()
            .map(|w| (w.line, w.key.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (2, "relay.trusted_networks[0]"),
                (2, "relay.trusted_networks[1]"),
                (2, "relay.trusted_networks[1]"),
            ]
        );
        assert!(
            c.warnings[0].message.contains("172.28.0.1"),
            "{}",
            c.warnings[0]
        );
        assert!(c.warnings[1].message.contains("wider than a /16"));
        assert_eq!(
            c.inbound.trusted_networks.len(),
            2,
            "warnings still apply the list"
        );
    }

    #[test]
    fn the_shipped_docker_configuration_trusts_no_gateway() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let c = Config::load(&root.join("docker/strictmx.toml")).expect("docker config");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert!(
            c.inbound
                .trusted_networks
                .iter()
                .all(|net| net.prefix_len() == 32 || net.addr().is_loopback()),
            "{:?}",
            c.inbound.trusted_networks
        );
    }
}

mod published_hashes {
    use super::{Config, parse};

    const PUBLISHED: &str = "$argon2id$v=19$m=19456,t=2,p=1$sBN/mlu0BB/y2+aAKt8i2w$RaY8C1ztvj/Enk6t6s10braX5ki/xiYH1mQqyhZSas8";

    #[test]
    fn a_user_with_the_hash_the_example_once_shipped_is_refused_issue_13() {
        let text = format!(
            "[[auth.user]]\nname = \"billing-app\"\npassword_hash = \"{PUBLISHED}\"\nsenders = [\"@billing.example\"]\n"
        );
        let errors = parse(&text).unwrap_err().0;
        assert_eq!(
            (errors[0].line, errors[0].key.as_str()),
            (3, "auth.user[0].password_hash")
        );
        assert!(
            errors[0].message.contains("example-only-change-me"),
            "{errors:?}"
        );
        assert!(errors[0].message.contains("strictmx hash-password"));
    }

    #[test]
    fn a_users_file_line_with_a_published_hash_is_refused_naming_the_line() {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::write(
            dir.path().join("users"),
            format!("# apps\nok:{}\nbilling:{PUBLISHED}\n", super::HASH),
        )
        .expect("write");
        let errors = Config::parse(
            "[auth]\nusers_file = \"users\"\n",
            &dir.path().join("strictmx.toml"),
        )
        .unwrap_err()
        .0;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            (errors[0].line, errors[0].key.as_str()),
            (2, "auth.users_file")
        );
        assert!(errors[0].message.contains("users line 3"), "{errors:?}");
        assert!(errors[0].message.contains("published"), "{errors:?}");
    }

    #[test]
    fn a_placeholder_from_the_readme_is_not_taken_for_a_hash() {
        for placeholder in ["$argon2id$...", "$argon2id$v=19$m=19456,t=2,p=1$..."] {
            let text =
                format!("[[auth.user]]\nname = \"app\"\npassword_hash = \"{placeholder}\"\n");
            let errors = parse(&text).unwrap_err().0;
            assert_eq!(errors[0].key, "auth.user[0].password_hash");
            assert!(errors[0].message.contains("PHC"), "{errors:?}");
        }
    }
}

mod tls_files {
    use std::path::Path;

    use super::{Config, tls_files};

    fn check(dir: &Path, certificate: &str, private_key: &str) -> Vec<(usize, String, String)> {
        let text =
            format!("[tls]\ncertificate = \"{certificate}\"\nprivate_key = \"{private_key}\"\n");
        match Config::parse(&text, &dir.join("strictmx.toml")) {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .0
                .into_iter()
                .map(|e| (e.line, e.key, e.message))
                .collect(),
        }
    }

    #[test]
    fn a_certificate_and_its_own_key_pass() {
        let dir = tempfile::tempdir().expect("temporary directory");
        tls_files(dir.path());
        assert_eq!(check(dir.path(), "cert.pem", "key.pem"), vec![]);
    }

    #[test]
    fn missing_files_are_refused_at_their_keys_issue_13() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let found = check(dir.path(), "fullchain.pem", "privkey.pem");
        let keys: Vec<(usize, &str)> = found.iter().map(|(l, k, _)| (*l, k.as_str())).collect();
        assert_eq!(keys, [(2, "tls.certificate"), (3, "tls.private_key")]);
        assert!(found[0].2.contains("fullchain.pem"), "{found:?}");
        assert!(found[0].2.contains("No such file"), "{found:?}");
    }

    #[test]
    fn swapped_files_are_named_for_what_they_hold() {
        let dir = tempfile::tempdir().expect("temporary directory");
        tls_files(dir.path());
        let found = check(dir.path(), "key.pem", "cert.pem");
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].1, "tls.certificate");
        assert!(
            found[0]
                .2
                .contains("holds a private key, not a certificate")
        );
        assert_eq!(found[1].1, "tls.private_key");
        assert!(
            found[1]
                .2
                .contains("holds a certificate, not a private key")
        );
        let found = check(dir.path(), "cert.pem", "cert.pem");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].1, "tls.private_key");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let other = dir.path().join("other");
        std::fs::create_dir(&other).expect("mkdir");
        tls_files(dir.path());
        tls_files(&other);
        let found = check(dir.path(), "cert.pem", "other/key.pem");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].0, found[0].1.as_str()), (3, "tls.private_key"));
        assert!(
            found[0]
                .2
                .contains("is not the private key of the certificate"),
            "{found:?}"
        );
    }

    #[test]
    fn a_file_that_is_not_pem_is_refused() {
        let dir = tempfile::tempdir().expect("temporary directory");
        tls_files(dir.path());
        std::fs::write(dir.path().join("garbage.pem"), "not a certificate\n").expect("write");
        let found = check(dir.path(), "garbage.pem", "key.pem");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].2.contains("holds no PEM certificate"), "{found:?}");
    }
}

mod reading {
    use super::parse;

    fn found(text: &str) -> Vec<(usize, String, String)> {
        parse(text)
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| (e.line, e.key, e.message))
            .collect()
    }

    #[test]
    fn an_unknown_key_under_a_commented_header_is_named_by_its_path_issue_13() {
        let text = "[[rule]]                            # the bank\nname = \"bank\"\nfail_closed = true\n\n[[rule]]                            # password resets only to a verified receiver\nname = \"resets\"\nrequires = \"verified\"\n";
        let found = found(text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].0, found[0].1.as_str()), (7, "rule[1].requires"));
        assert_eq!(found[0].2, "unknown key: did you mean `require`?");
    }

    #[test]
    fn every_unknown_key_is_reported_in_file_order() {
        let text = "[server]\nhostnme = \"a.test\"\n[limits]\nmax_recipient = 5\n[dns]\ntrusted_networks = []\n[sever]\nx = 1\n";
        let found = found(text);
        let keys: Vec<(usize, &str)> = found.iter().map(|(l, k, _)| (*l, k.as_str())).collect();
        assert_eq!(
            keys,
            [
                (2, "server.hostnme"),
                (4, "limits.max_recipient"),
                (6, "dns.trusted_networks"),
                (7, "sever"),
            ]
        );
        assert!(found[0].2.contains("`hostname`"));
        assert!(found[1].2.contains("`max_recipients`"));
        assert!(found[2].2.contains("belongs in [relay]"), "{found:?}");
        assert!(found[3].2.contains("`server`"));
    }

    #[test]
    fn a_key_with_no_near_miss_lists_what_its_table_takes() {
        let found = found("[[listener]]\naddress = \"127.0.0.1:25\"\ncolour = \"blue\"\n");
        assert_eq!(found[0].1, "listener[0].colour");
        assert_eq!(
            found[0].2,
            "unknown key: [[listener]] takes `address`, `role`, `insecure_allow_plaintext_auth`"
        );
    }

    #[test]
    fn a_table_that_can_repeat_must_be_written_as_an_array_of_tables() {
        let found = found("[listener]\naddress = \"127.0.0.1:25\"\n");
        assert_eq!(found[0].1, "listener");
        assert!(found[0].2.contains("[[listener]]"), "{found:?}");
    }

    #[test]
    fn wrong_types_unknown_keys_and_bad_values_are_all_reported_together_in_file_order() {
        let text = "[limits]\nmax_recipients = \"many\"\nmax_sessions = 0\n[dns]\ntimeout = 5\n[[route]]\ndomain = \"a.test\"\n[[rule]]\nrequired = \"verified\"\n";
        let found = found(text);
        let keys: Vec<(usize, &str)> = found.iter().map(|(l, k, _)| (*l, k.as_str())).collect();
        assert_eq!(
            keys,
            [
                (2, "limits.max_recipients"),
                (3, "limits.max_sessions"),
                (5, "dns.timeout"),
                (6, "route[0]"),
                (9, "rule[0].required"),
            ]
        );
        assert_eq!(
            found[3].2,
            "missing key `next_hop`, which every [[route]] needs"
        );
    }

    #[test]
    fn a_wrong_required_key_is_not_reported_again_as_missing() {
        let found = found("[[listener]]\naddress = 25\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].1, "listener[0].address");
    }

    #[test]
    fn what_follows_from_a_key_taken_out_is_not_reported() {
        // `private_key` is wrong, so it is read as absent; "needs its private key" would be noise.
        let found = found("[tls]\ncertificate = \"cert.pem\"\nprivate_key = 5\n");
        let keys: Vec<&str> = found.iter().map(|(_, k, _)| k.as_str()).collect();
        assert_eq!(keys, ["tls.private_key"]);
    }

    #[test]
    fn every_syntax_error_is_reported_with_its_line() {
        let found = found("[server\nhostname = \"a.test\"\n[limits]\nmax_recipients = = 3\n");
        let lines: Vec<usize> = found.iter().map(|(l, _, _)| *l).collect();
        assert_eq!(lines, [1, 4], "{found:?}");
    }
}
