//! Every example configuration validates, the embedded defaults are sane, and an unknown key is
//! rejected in every table with its line and key.

use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::parse(text, Path::new("test.toml"))
}

#[test]
fn every_example_configuration_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for file in ["config/strictmx.toml", "docker/strictmx.toml"] {
        let path = root.join(file);
        if let Err(e) = Config::load(&path) {
            panic!("{file} does not validate:\n{e}");
        }
    }
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
    ];
    for table in tables {
        let text = format!("{table}\nno_such_key = 1\n");
        let errors = parse(&text).expect_err(table).0;
        assert_eq!(errors[0].line, 2, "{table}: {errors:?}");
        assert!(
            errors[0].message.contains("unknown field"),
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
        "[[auth.user]]\nname = \"a\"\npassword_hash = \"$argon2id$x\"",
    ] {
        let text = format!("{array}\nno_such_key = 1\n");
        let errors = parse(&text).expect_err(array).0;
        assert!(
            errors[0].message.contains("unknown field"),
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
fn routes_to_the_same_domain_twice_are_refused() {
    let text = "[[route]]\ndomain = \"a.test\"\nnext_hop = \"b.test\"\n[[route]]\ndomain = \"A.test\"\nnext_hop = \"c.test\"\n";
    let errors = parse(text).unwrap_err().0;
    assert_eq!(errors[0].key, "route[1].domain");
}

#[test]
fn the_effective_configuration_printed_by_check_config_reads_back_the_same() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/strictmx.toml");
    let original = Config::load(&root).unwrap();
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
