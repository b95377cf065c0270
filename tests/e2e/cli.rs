//! The command line: configuration checking with located errors, and the example configuration.

use std::process::Command;

use strictmx_test_support::relay::TestDir;

use crate::{bin, repo_root};

#[test]
fn the_example_configuration_validates() {
    let out = Command::new(bin())
        .arg("check-config")
        .arg(repo_root().join("config/strictmx.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("hostname = \"relay.example.org\""), "{text}");
}

#[test]
fn check_config_names_the_file_line_and_key_of_each_problem_and_exits_64() {
    let dir = TestDir::new("badconfig").unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[server]\nhostname = \"relay.test\"\n\n[limits]\nmax_recipients = 0\ncommand_timeout = \"soon\"\n").unwrap();
    let out = Command::new(bin())
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:5:18: key `limits.max_recipients`"),
        "{err}"
    );
    assert!(
        err.contains("bad.toml:6:19: key `limits.command_timeout`"),
        "{err}"
    );

    std::fs::write(
        &file,
        "[server]\nhostname = \"relay.test\"\nmax_speed = 3\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:3:1: key `server.max_speed`"),
        "{err}"
    );
    assert!(err.contains("unknown field"), "{err}");
}

#[test]
fn serve_refuses_an_invalid_configuration_before_binding_anything() {
    let dir = TestDir::new("badserve").unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[[listener]]\naddress = \"127.0.0.1:notaport\"\n").unwrap();
    let out = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listener[0].address"));
}
