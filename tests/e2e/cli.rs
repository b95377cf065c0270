//! The command line: configuration checking with located errors, where the configuration is
//! found, and the example configuration.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use strictmx_test_support::relay::{Relay, TestDir};

use crate::{bin, repo_root};

/// A self-signed certificate and its key in `dir`, as `cert.pem` and `key.pem`.
fn tls_files(dir: &Path) -> (PathBuf, PathBuf) {
    let tls = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, tls.cert.pem()).unwrap();
    std::fs::write(&key, tls.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Tests never send DNS off loopback, even if a file got as far as serving.
const NO_DNS: &str = "[dns]\nnameservers = [\"127.0.0.1:9\"]\ntimeout = \"1s\"\nattempts = 1\n";

#[test]
fn the_example_configuration_validates_where_the_tls_files_it_names_exist() {
    let dir = TestDir::new("example").unwrap();
    let (cert, key) = tls_files(dir.path());
    let text = std::fs::read_to_string(repo_root().join("config/strictmx.toml"))
        .unwrap()
        .replace(
            "/etc/strictmx/tls/fullchain.pem",
            &cert.display().to_string(),
        )
        .replace("/etc/strictmx/tls/privkey.pem", &key.display().to_string());
    let file = dir.path().join("strictmx.toml");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("hostname = \"relay.example.org\""), "{text}");
    assert!(text.contains("# 0 user(s) configured"), "{text}");
}

#[test]
fn check_config_takes_its_file_as_config_like_every_other_command_issue_13() {
    let dir = TestDir::new("checkflag").unwrap();
    let file = dir.path().join("strictmx.toml");
    std::fs::write(&file, "[server]\nhostname = \"relay.test\"\n").unwrap();
    for args in [
        &["check-config", "--config"][..],
        &["check-config", "-c"],
        &["check-config"],
    ] {
        let out = Command::new(bin()).args(args).arg(&file).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("(from {})", file.display())),
            "{text}"
        );
    }
    let out = Command::new(bin())
        .arg("check-config")
        .arg(&file)
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "both a FILE and --config are refused"
    );
}

#[test]
fn strictmx_config_names_the_file_when_no_flag_does_issue_13() {
    let dir = TestDir::new("checkenv").unwrap();
    let file = dir.path().join("from-env.toml");
    std::fs::write(&file, format!("[limits]\nmax_recipients = 0\n{NO_DNS}")).unwrap();
    let out = Command::new(bin())
        .arg("check-config")
        .env("STRICTMX_CONFIG", &file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = stderr(&out);
    assert!(err.contains("(from STRICTMX_CONFIG)"), "{err}");
    assert!(
        err.contains("from-env.toml:2:18: key `limits.max_recipients`"),
        "{err}"
    );
    let out = Command::new(bin())
        .arg("serve")
        .env("STRICTMX_CONFIG", &file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
}

#[tokio::test]
async fn serve_logs_which_configuration_file_it_runs_on() {
    let dir = TestDir::new("location-log").unwrap();
    let relay = Relay::start(bin(), dir.path(), "").await.unwrap();
    let config = relay.config_path.display().to_string();
    let logged = relay.logs().into_iter().any(|v| {
        v["message"] == "configuration loaded"
            && v["config"] == config
            && v["found_by"] == "--config"
    });
    assert!(logged, "{:#?}", relay.logs());
}

#[test]
fn missing_or_swapped_tls_files_are_configuration_errors_before_anything_starts_issue_13() {
    let dir = TestDir::new("tlsfiles").unwrap();
    let (cert, key) = tls_files(dir.path());
    let file = dir.path().join("strictmx.toml");
    let cases = [
        (
            dir.path().join("no-fullchain.pem"),
            key.clone(),
            "tls.certificate",
            "cannot read",
        ),
        (
            cert.clone(),
            cert.clone(),
            "tls.private_key",
            "holds a certificate, not a private key",
        ),
    ];
    for (certificate, private_key, key_name, complaint) in cases {
        std::fs::write(
            &file,
            format!(
                "[[listener]]\naddress = \"127.0.0.1:0\"\nrole = \"submissions\"\n[tls]\ncertificate = \"{}\"\nprivate_key = \"{}\"\n{NO_DNS}",
                certificate.display(),
                private_key.display()
            ),
        )
        .unwrap();
        let out = Command::new(bin())
            .args(["check-config", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(&format!("key `{key_name}`")), "{err}");
        assert!(err.contains(complaint), "{err}");
        let started = Instant::now();
        let out = Command::new(bin())
            .args(["serve", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
        assert!(stderr(&out).contains(complaint));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
}

#[test]
fn the_password_hash_the_example_shipped_is_refused_by_check_config_and_serve_issue_13() {
    let dir = TestDir::new("publishedhash").unwrap();
    let file = dir.path().join("strictmx.toml");
    std::fs::write(
        &file,
        format!(
            "[[auth.user]]\nname = \"billing-app\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$sBN/mlu0BB/y2+aAKt8i2w$RaY8C1ztvj/Enk6t6s10braX5ki/xiYH1mQqyhZSas8\"\nsenders = [\"@billing.example\"]\n{NO_DNS}"
        ),
    )
    .unwrap();
    for command in ["check-config", "serve"] {
        let out = Command::new(bin())
            .args([command, "--config"])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{command}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("strictmx.toml:3:17: key `auth.user[0].password_hash`"),
            "{err}"
        );
        assert!(err.contains("example-only-change-me"), "{err}");
    }
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
        "[server]\nhostname = \"relay.test\"\nmax_speed = 3\n\n[[rule]]    # the first\nfail_closed = true\n[[rule]]    # password resets only to a verified receiver\nrequires = \"verified\"\n",
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
        err.contains("bad.toml:3:1: key `server.max_speed`: unknown key"),
        "{err}"
    );
    assert!(
        err.contains("bad.toml:8:1: key `rule[1].requires`: unknown key: did you mean `require`?"),
        "{err}"
    );
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

// Issue 13: when the MX lookup fails, `explain` still shows the trail (the failure with its
// RFC 5321 §5.1 consequence, the matching rules) and the wait in humantime, not Debug form.
#[tokio::test]
async fn explain_shows_the_why_trail_and_matching_rules_when_the_mx_lookup_fails() {
    let dir = TestDir::new("explain-mxfail").unwrap();
    // The harness points DNS at a loopback port where nothing listens (1 s, 1 attempt).
    let rules = "[[rule]]\nname = \"bank\"\ndomains = [\"bank.test\"]\nrequire = \"verified\"\n\n\
                 [[rule]]\nname = \"elsewhere\"\ndomains = [\"other.test\"]\nrequire = \"verified\"\n";
    let relay = Relay::start(bin(), dir.path(), rules).await.unwrap();
    let out = relay.cli(&["explain", "bank.test"]).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(75), "{stdout}");
    for expected in [
        "Decision: DEFER (try again later): MX lookup for bank.test",
        "Why:\n  - MX lookup failed: ",
        "a temporary failure, so the mail is queued and retried later (RFC 5321 §5.1)",
        "  - matching rule(s): bank\n",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert!(!stdout.contains("elsewhere"), "{stdout}");
    if stdout.contains("timed out after") {
        assert!(stdout.contains("timed out after 1s"), "{stdout}");
        assert!(
            !stdout.contains("timed out after 1."),
            "Debug form: {stdout}"
        );
    }
    let json = relay.cli(&["explain", "bank.test", "--json"]).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["outcome"]["kind"], "defer", "{value}");
    assert!(
        value["outcome"]["why"]
            .as_array()
            .is_some_and(|why| why.iter().any(|w| w == "matching rule(s): bank")),
        "{value}"
    );
}

// Issue 11: the shipped unit runs strictmx hardened, as a dedicated user with only the capability
// to bind ports below 1024, and verifies with systemd's own checker where it is installed.
#[test]
fn the_systemd_unit_is_hardened_and_systemd_accepts_it() {
    let unit = std::fs::read_to_string(repo_root().join("config/strictmx.service")).unwrap();
    for directive in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=strictmx",
        "StateDirectory=strictmx",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/strictmx",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "UMask=0077",
    ] {
        assert!(
            unit.lines().any(|line| line.trim() == directive),
            "{directive} missing"
        );
    }
    let Ok(found) = Command::new("systemd-analyze").arg("--version").output() else {
        return;
    };
    assert!(found.status.success());
    let dir = TestDir::new("unit").unwrap();
    let copy = dir.path().join("strictmx.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/strictmx", &bin().display().to_string()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

// Issue 11: under systemd (Type=notify) the server says READY=1 once it serves, and STOPPING=1
// when SIGTERM starts the shutdown.
#[tokio::test]
async fn serve_tells_systemd_when_it_is_ready_and_when_it_stops() {
    let dir = TestDir::new("sdnotify").unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let env = [("NOTIFY_SOCKET", socket_path.to_str().unwrap())];
    let mut relay = Relay::start_with_env(bin(), dir.path(), NO_DNS, &env)
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).unwrap();
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    // The listener is up by then.
    assert!(std::net::TcpStream::connect(relay.smtp).is_ok());
    assert_eq!(relay.terminate().await.unwrap(), Some(0));
    let n = socket.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1");
}

// Issue 11: manual pages and shell completions come from the command-line definition itself, so
// they list every command and option the binary has.
#[test]
fn man_pages_and_completions_are_generated_from_the_command_line() {
    let dir = TestDir::new("man").unwrap();
    let out = Command::new(bin())
        .arg("man")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let page = std::fs::read_to_string(dir.path().join("strictmx.1")).unwrap();
    assert!(page.contains(".TH strictmx 1"), "{page}");
    let queue = std::fs::read_to_string(dir.path().join("strictmx-queue-hold.1")).unwrap();
    for option in ["domain", "sender", "older", "yes"] {
        assert!(
            queue.contains(option),
            "{option} missing from strictmx-queue-hold.1"
        );
    }
    assert!(dir.path().join("strictmx-sendmail.1").exists());

    let out = Command::new(bin())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(
        script.contains("summary") && script.contains("--older-than"),
        "{script}"
    );
    let file = dir.path().join("strictmx.bash");
    std::fs::write(&file, &script).unwrap();
    let checked = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(checked.status.success(), "{}", stderr(&checked));
}
