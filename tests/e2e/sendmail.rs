//! `strictmx sendmail` and the binary run as `sendmail` (issue 11): local programs hand a message
//! on standard input to the running server, which queues and delivers it like any submission.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use strictmx_test_support::relay::{Relay, TestDir};
use strictmx_test_support::smtp::{RcptScript, Sink};

use crate::bin;

/// A relay whose listener has a fixed port (sendmail reads it from the file) and whose route
/// for dest.test leads to `sink`.
async fn relay_for(dir: &TestDir, sink: &Sink) -> Relay {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "[[listener]]\naddress = \"127.0.0.1:{port}\"\nrole = \"relay\"\n\n\
         [[route]]\ndomain = \"dest.test\"\nnext_hop = \"{}\"\n",
        sink.addr
    );
    Relay::start(bin(), dir.path(), &config).await.unwrap()
}

fn run(program: &std::path::Path, args: &[&str], input: &[u8], login: &str) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .env("LOGNAME", login)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn sendmail_dash_t_sends_to_to_cc_and_bcc_and_never_shows_bcc() {
    let dir = TestDir::new("sendmail-t").unwrap();
    let sink = Sink::start(RcptScript::Accept).await.unwrap();
    let relay = relay_for(&dir, &sink).await;
    let config = relay.config_path.to_str().unwrap().to_owned();
    let message = b"To: Ann <ann@dest.test>\nCc: bob@dest.test\nBcc: carl@dest.test\nSubject: nightly\n\nbackup done\n.\nnot a terminator under -i\n";
    let out = run(
        bin(),
        &["sendmail", "-t", "-i", "--config", &config],
        message,
        "cronuser",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let got = sink.wait_for(1, Duration::from_secs(30)).await.unwrap();
    let mut rcpts = got[0].rcpts.clone();
    rcpts.sort();
    assert_eq!(rcpts, ["ann@dest.test", "bob@dest.test", "carl@dest.test"]);
    let body = got[0].body_text();
    // No -f: the login name at the server's host name; a From field is added for it.
    assert!(
        got[0].mail_from.starts_with("cronuser@"),
        "{}",
        got[0].mail_from
    );
    assert!(body.contains("\r\nFrom: cronuser@"), "{body}");
    assert!(!body.to_ascii_lowercase().contains("bcc:"), "{body}");
    assert!(
        body.contains("backup done\r\n.\r\nnot a terminator under -i\r\n"),
        "{body}"
    );
}

#[tokio::test]
async fn the_binary_named_sendmail_takes_sendmails_command_line() {
    let dir = TestDir::new("sendmail-link").unwrap();
    let sink = Sink::start(RcptScript::Accept).await.unwrap();
    let relay = relay_for(&dir, &sink).await;
    let link = dir.path().join("sendmail");
    std::os::unix::fs::symlink(bin(), &link).unwrap();
    let config = relay.config_path.to_str().unwrap().to_owned();
    // As cron calls it; without -i a lone dot ends the message.
    let out = run(
        &link,
        &[
            "-FCron Daemon",
            "-oi",
            "-oem",
            "-f",
            "cron@src.test",
            "-C",
            &config,
            "dora@dest.test",
        ],
        b"Subject: job\n\nfirst\n",
        "root",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = sink.wait_for(1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(got[0].mail_from, "cron@src.test");
    assert_eq!(got[0].rcpts, ["dora@dest.test"]);
    assert!(
        got[0]
            .body_text()
            .contains("From: Cron Daemon <cron@src.test>\r\n")
    );

    let out = run(
        &link,
        &["-C", &config, "erin@dest.test"],
        b"Subject: cut\n\nkept\n.\nlost\n",
        "root",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = sink.wait_for(2, Duration::from_secs(30)).await.unwrap();
    let body = got[1].body_text();
    assert!(
        body.contains("kept\r\n") && !body.contains("lost"),
        "{body}"
    );
}

// sysexits(3): usage errors are 64, a server that is not running is 75 (try again later).
#[tokio::test]
async fn sendmail_exits_with_sysexits_codes() {
    let dir = TestDir::new("sendmail-exit").unwrap();
    let sink = Sink::start(RcptScript::Accept).await.unwrap();
    let mut relay = relay_for(&dir, &sink).await;
    let config = relay.config_path.to_str().unwrap().to_owned();
    let no_rcpt = run(
        bin(),
        &["sendmail", "--config", &config],
        b"Subject: x\n\nhi\n",
        "root",
    );
    assert_eq!(
        no_rcpt.status.code(),
        Some(64),
        "{}",
        String::from_utf8_lossy(&no_rcpt.stderr)
    );
    let queue_mode = run(
        bin(),
        &["sendmail", "-bp", "--config", &config],
        b"",
        "root",
    );
    assert_eq!(queue_mode.status.code(), Some(64));
    assert_eq!(relay.terminate().await.unwrap(), Some(0));
    let down = run(
        bin(),
        &["sendmail", "--config", &config, "a@dest.test"],
        b"Subject: x\n\nhi\n",
        "root",
    );
    assert_eq!(
        down.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(String::from_utf8_lossy(&down.stderr).contains("is it running?"));
}
