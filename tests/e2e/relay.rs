//! The relay core end to end: accept, deliver to a next hop, retry, bounce with DSNs, refuse to
//! relay for strangers, AUTH, the queue commands, and a clean stop on SIGTERM.

use std::time::Duration;

use strictmx_test_support::relay::{Relay, TestDir};
use strictmx_test_support::smtp::{Client, RcptScript, Sink};

use crate::{bin, message};

const WAIT: Duration = Duration::from_secs(30);

fn route(domain: &str, sink: &Sink) -> String {
    format!(
        "[[route]]\ndomain = \"{domain}\"\nnext_hop = \"{}\"\n\n",
        sink.addr
    )
}

/// Retries come quickly so that tests do not wait minutes.
const FAST_RETRY: &str = "[retry]\ninitial = \"1s\"\nmax_interval = \"2s\"\njitter = 0.0\ndestination_backoff = \"1s\"\n\n";

#[tokio::test]
async fn accepted_mail_reaches_the_next_hop_with_received_message_id_and_date_added() {
    let dir = TestDir::new("deliver").unwrap();
    let sink = Sink::start(RcptScript::Accept).await.unwrap();
    let relay = Relay::start(bin(), dir.path(), &route("dest.test", &sink))
        .await
        .unwrap();

    let mut c = Client::connect(relay.smtp).await.unwrap();
    let reply = c
        .send_mail(
            "app@src.test",
            &["alice@dest.test", "bob@dest.test"],
            &message("app@src.test", "alice@dest.test", "hello"),
        )
        .await
        .unwrap();
    assert_eq!(reply.code, 250, "{reply:?}");
    assert!(reply.text.contains("queued as"), "{reply:?}");

    let got = sink.wait_for(1, WAIT).await.unwrap();
    let m = &got[0];
    assert_eq!(m.mail_from, "app@src.test");
    assert_eq!(
        m.rcpts,
        vec!["alice@dest.test", "bob@dest.test"],
        "both recipients in one transaction"
    );
    let body = m.body_text();
    assert!(
        body.starts_with("Received: from "),
        "Received: is the first header: {body}"
    );
    assert!(
        body.contains("\r\nMessage-ID: <") || body.contains("\r\nMessage-Id: <"),
        "{body}"
    );
    assert!(body.contains("\r\nDate: "), "{body}");
    assert!(
        body.contains("\r\n.leading dot line\r\n"),
        "dot-stuffing undone on both hops: {body}"
    );

    let attempt = relay
        .wait_log(WAIT, |v| v["outcome"] == "delivered" && v["mx"].is_string())
        .await
        .unwrap();
    assert_eq!(attempt["domain"], "dest.test");
    // Issue 13: JSON logs carry JSON values, never Rust debug text ("Some(true)", "Relay").
    assert!(
        attempt["cert_verified"].is_null() || attempt["cert_verified"].is_boolean(),
        "{attempt}"
    );
    let accepted = relay
        .wait_log(WAIT, |v| v["message"] == "message accepted")
        .await
        .unwrap();
    assert_eq!(accepted["span"]["role"], "relay", "{accepted}");
    assert_eq!(accepted["user"], "", "{accepted}");
    assert_eq!(accepted["ip"], "127.0.0.1", "{accepted}");
}

#[tokio::test]
async fn a_recipient_deferred_with_4xx_is_retried_and_then_delivered() {
    let dir = TestDir::new("retry").unwrap();
    let sink = Sink::start(RcptScript::TempFailFirst).await.unwrap();
    let relay = Relay::start(
        bin(),
        dir.path(),
        &format!("{FAST_RETRY}{}", route("grey.test", &sink)),
    )
    .await
    .unwrap();

    let mut c = Client::connect(relay.smtp).await.unwrap();
    let reply = c
        .send_mail(
            "app@src.test",
            &["carol@grey.test"],
            &message("app@src.test", "carol@grey.test", "retry me"),
        )
        .await
        .unwrap();
    assert_eq!(reply.code, 250);

    let got = sink.wait_for(1, WAIT).await.unwrap();
    assert_eq!(got[0].rcpts, vec!["carol@grey.test"]);
    let deferred = relay
        .wait_log(WAIT, |v| v["outcome"] == "deferred")
        .await
        .unwrap();
    assert!(
        deferred["reply"].as_str().unwrap_or("").contains("451"),
        "{deferred}"
    );
}

#[tokio::test]
async fn a_rejected_recipient_bounces_with_a_dsn_to_the_sender() {
    let dir = TestDir::new("bounce").unwrap();
    let reject = Sink::start(RcptScript::Reject).await.unwrap();
    let sender_mx = Sink::start(RcptScript::Accept).await.unwrap();
    let config = format!(
        "{}{}",
        route("nowhere.test", &reject),
        route("src.test", &sender_mx)
    );
    let relay = Relay::start(bin(), dir.path(), &config).await.unwrap();

    let mut c = Client::connect(relay.smtp).await.unwrap();
    let reply = c
        .send_mail(
            "app@src.test",
            &["ghost@nowhere.test"],
            &message("app@src.test", "ghost@nowhere.test", "to a ghost"),
        )
        .await
        .unwrap();
    assert_eq!(reply.code, 250);

    let dsns = sender_mx.wait_for(1, WAIT).await.unwrap();
    let dsn = &dsns[0];
    assert_eq!(
        dsn.mail_from, "",
        "DSNs come from the null sender (RFC 3464 section 2)"
    );
    assert_eq!(dsn.rcpts, vec!["app@src.test"]);
    let body = dsn.body_text();
    assert!(body.contains("multipart/report"), "{body}");
    assert!(
        body.contains("report-type=delivery-status")
            || body.contains("report-type=\"delivery-status\""),
        "{body}"
    );
    assert!(
        body.contains("Final-Recipient: rfc822; ghost@nowhere.test")
            || body.contains("Final-Recipient: rfc822;ghost@nowhere.test"),
        "{body}"
    );
    assert!(body.contains("Action: failed"), "{body}");
    assert!(body.contains("Status: 5.1.1"), "{body}");
    assert!(
        body.contains("550 5.1.1"),
        "the remote diagnostic is quoted: {body}"
    );
    assert!(reject.received().is_empty());
}

// Issue 14: a destination that leads back to this relay's own listener is a loop. The message
// bounces with 5.4.6 ("loops back to myself") after one attempt instead of circling forever.
#[tokio::test]
async fn mail_whose_next_hop_is_the_relay_itself_bounces_as_a_loop() {
    let dir = TestDir::new("loop").unwrap();
    let sender_mx = Sink::start(RcptScript::Accept).await.unwrap();
    let own = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = format!(
        "[[listener]]\naddress = \"{own}\"\nrole = \"relay\"\n\n\
         [[route]]\ndomain = \"loop.test\"\nnext_hop = \"{own}\"\n\n{}",
        route("src.test", &sender_mx)
    );
    let relay = Relay::start(bin(), dir.path(), &config).await.unwrap();
    let mut c = Client::connect(relay.smtp).await.unwrap();
    let reply = c
        .send_mail(
            "app@src.test",
            &["bob@loop.test"],
            &message("app@src.test", "bob@loop.test", "round and round"),
        )
        .await
        .unwrap();
    assert_eq!(reply.code, 250);
    let dsns = sender_mx.wait_for(1, WAIT).await.unwrap();
    let body = dsns[0].body_text();
    assert!(body.contains("Status: 5.4.6"), "{body}");
    assert!(body.contains("loops back to myself"), "{body}");
    // Records below warn reach the log a few milliseconds after they were logged.
    relay
        .wait_log(WAIT, |l| l["message"] == "message accepted")
        .await
        .unwrap();
    let accepted = relay
        .logs()
        .iter()
        .filter(|l| l["message"] == "message accepted")
        .count();
    assert_eq!(accepted, 1, "the relay never received its own mail back");
}

#[tokio::test]
async fn null_sender_messages_never_get_a_dsn() {
    let dir = TestDir::new("nulldsn").unwrap();
    let reject = Sink::start(RcptScript::Reject).await.unwrap();
    let relay = Relay::start(bin(), dir.path(), &route("nowhere.test", &reject))
        .await
        .unwrap();

    let mut c = Client::connect(relay.smtp).await.unwrap();
    let reply = c
        .send_mail(
            "",
            &["ghost@nowhere.test"],
            &message("mailer-daemon@src.test", "ghost@nowhere.test", "a bounce"),
        )
        .await
        .unwrap();
    assert_eq!(reply.code, 250);
    relay
        .wait_log(WAIT, |v| v["outcome"] == "bounced")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let out = relay.cli(&["queue", "list", "--json"]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(0),
        "no DSN was queued: {list}"
    );
}

#[tokio::test]
async fn a_client_outside_the_trusted_networks_without_auth_cannot_relay() {
    let dir = TestDir::new("openrelay").unwrap();
    let relay = Relay::start(
        bin(),
        dir.path(),
        "[relay]\ntrusted_networks = [\"10.99.0.0/16\"]\n",
    )
    .await
    .unwrap();
    let mut c = Client::connect(relay.smtp).await.unwrap();
    assert_eq!(c.command("EHLO stranger.test").await.unwrap().code, 250);
    assert_eq!(
        c.command("MAIL FROM:<spammer@src.test>")
            .await
            .unwrap()
            .code,
        250
    );
    let rcpt = c.command("RCPT TO:<victim@dest.test>").await.unwrap();
    assert_eq!(rcpt.code, 550, "{rcpt:?}");
    assert!(rcpt.text.starts_with("5.7.1"), "{rcpt:?}");
}

#[tokio::test]
async fn a_recipient_domain_that_is_not_a_host_name_is_refused_at_rcpt() {
    // Issue 14: the domain would go to DNS and into an MTA-STS URL.
    let dir = TestDir::new("hostname").unwrap();
    let relay = Relay::start(bin(), dir.path(), "").await.unwrap();
    let mut c = Client::connect(relay.smtp).await.unwrap();
    assert_eq!(c.command("EHLO app.test").await.unwrap().code, 250);
    assert_eq!(
        c.command("MAIL FROM:<app@src.test>").await.unwrap().code,
        250
    );
    for rcpt in [
        "RCPT TO:<a@evil.test/#>",
        "RCPT TO:<a@foo_bar.test>",
        "RCPT TO:<a@-x.test>",
    ] {
        let reply = c.command(rcpt).await.unwrap();
        assert_eq!(reply.code, 501, "{rcpt}: {reply:?}");
        assert!(reply.text.starts_with("5.1.3"), "{rcpt}: {reply:?}");
    }
    // The session goes on: a host name is still accepted.
    let ok = c.command("RCPT TO:<b@dest.test>").await.unwrap();
    assert_eq!(ok.code, 250, "{ok:?}");
}

/// `strictmx hash-password` for `password`.
fn hash_password(password: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(bin())
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

// Issue 13: a user added to the file is in force after `strictmx reload`, no restart needed.
#[tokio::test]
async fn a_user_added_to_the_file_can_authenticate_after_reload() {
    let dir = TestDir::new("reloadusers").unwrap();
    let hash = hash_password("s3cret-Pass");
    let user = |name: &str| {
        format!(
            "[[auth.user]]\nname = \"{name}\"\npassword_hash = \"{hash}\"\nsenders = [\"@src.test\"]\n\n"
        )
    };
    let listener = "[[listener]]\naddress = \"127.0.0.1:0\"\nrole = \"submission\"\ninsecure_allow_plaintext_auth = true\n\n";
    let relay = Relay::start(bin(), dir.path(), &format!("{listener}{}", user("billing")))
        .await
        .unwrap();
    // "\0ops\0s3cret-Pass"
    let ops = "AUTH PLAIN AG9wcwBzM2NyZXQtUGFzcw==";
    let mut c = Client::connect(relay.smtp).await.unwrap();
    assert_eq!(c.command("EHLO app.test").await.unwrap().code, 250);
    assert_eq!(c.command(ops).await.unwrap().code, 535);

    let text = std::fs::read_to_string(&relay.config_path).unwrap();
    std::fs::write(&relay.config_path, format!("{text}\n{}", user("ops"))).unwrap();
    let out = relay.cli(&["reload"]).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("auth: 2 user(s) now in force"), "{stdout}");
    assert!(
        !stdout.contains("[auth]"),
        "not named as needing a restart: {stdout}"
    );

    let mut c = Client::connect(relay.smtp).await.unwrap();
    assert_eq!(c.command("EHLO app.test").await.unwrap().code, 250);
    assert_eq!(c.command(ops).await.unwrap().code, 235);
}

#[tokio::test]
async fn an_authenticated_submitter_outside_the_trusted_networks_may_relay() {
    let dir = TestDir::new("auth").unwrap();
    let sink = Sink::start(RcptScript::Accept).await.unwrap();
    let hash = hash_password("s3cret-Pass");
    let config = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\nrole = \"submission\"\ninsecure_allow_plaintext_auth = true\n\n\
         [relay]\ntrusted_networks = [\"10.99.0.0/16\"]\n\n\
         [[auth.user]]\nname = \"billing\"\npassword_hash = \"{hash}\"\n\n{}",
        route("dest.test", &sink)
    );
    let relay = Relay::start(bin(), dir.path(), &config).await.unwrap();

    let mut c = Client::connect(relay.smtp).await.unwrap();
    assert_eq!(c.command("EHLO app.test").await.unwrap().code, 250);
    assert_eq!(
        c.command("AUTH PLAIN AGJpbGxpbmcAd3JvbmctcGFzcw==")
            .await
            .unwrap()
            .code,
        535,
        "wrong password"
    );
    // "\0billing\0s3cret-Pass"
    let ok = c
        .command("AUTH PLAIN AGJpbGxpbmcAczNjcmV0LVBhc3M=")
        .await
        .unwrap();
    assert_eq!(ok.code, 235, "{ok:?}");
    let reply = c
        .transaction(
            "billing@src.test",
            &["dave@dest.test"],
            &message("billing@src.test", "dave@dest.test", "invoice"),
        )
        .await
        .unwrap();
    assert_eq!(reply.code, 250, "{reply:?}");
    let got = sink.wait_for(1, WAIT).await.unwrap();
    assert!(
        got[0].body_text().contains("ESMTPA"),
        "Received: records the authenticated submission"
    );
}

#[tokio::test]
async fn the_queue_commands_list_show_hold_release_and_delete_a_stuck_message() {
    let dir = TestDir::new("queuecli").unwrap();
    // Nothing listens on the next hop: the message stays queued.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config =
        format!("{FAST_RETRY}[[route]]\ndomain = \"down.test\"\nnext_hop = \"{closed}\"\n");
    let relay = Relay::start(bin(), dir.path(), &config).await.unwrap();

    let mut c = Client::connect(relay.smtp).await.unwrap();
    let reply = c
        .send_mail(
            "app@src.test",
            &["erin@down.test"],
            &message("app@src.test", "erin@down.test", "stuck"),
        )
        .await
        .unwrap();
    assert_eq!(reply.code, 250);
    relay
        .wait_log(WAIT, |v| v["outcome"] == "deferred")
        .await
        .unwrap();

    let json = |args: &[&str]| {
        let out = relay.cli(args).unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let list = json(&["queue", "list", "--json"]);
    let id = list[0]["id"].as_str().unwrap().to_string();
    assert_eq!(list[0]["sender"], "app@src.test");

    // The attempt is logged while the job runs and recorded when it ends: wait for the record.
    let deadline = std::time::Instant::now() + WAIT;
    let shown = loop {
        let shown = json(&["queue", "show", &id, "--json"]);
        if !shown["attempts"][0].is_null() || std::time::Instant::now() > deadline {
            break shown;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let attempt = &shown["attempts"][0];
    assert_eq!(attempt["domain"], "down.test");
    assert_eq!(attempt["outcome"], "deferred");
    assert_eq!(attempt["ip"], "127.0.0.1");

    let text = relay.cli(&["queue", "show", &id]).unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("erin@down.test"));

    json(&["queue", "hold", &id, "--json"]);
    assert_eq!(json(&["queue", "list", "--json"])[0]["held"], true);
    json(&["queue", "release", &id, "--json"]);
    assert_eq!(json(&["queue", "list", "--json"])[0]["held"], false);
    json(&["queue", "delete", &id, "--json"]);
    assert_eq!(
        json(&["queue", "list", "--json"]).as_array().map(Vec::len),
        Some(0)
    );

    let missing = relay.cli(&["queue", "show", &id]).unwrap();
    assert!(!missing.status.success());
}

// Issue 11: wildcard routes, through the binary: an exact route wins, then the longest
// wildcard, then the catch-all; a wildcard never takes its own apex.
#[tokio::test]
async fn wildcard_routes_send_each_domain_to_its_most_specific_next_hop() {
    let dir = TestDir::new("wildroutes").unwrap();
    let exact = Sink::start(RcptScript::Accept).await.unwrap();
    let deep = Sink::start(RcptScript::Accept).await.unwrap();
    let wide = Sink::start(RcptScript::Accept).await.unwrap();
    let smarthost = Sink::start(RcptScript::Accept).await.unwrap();
    let config = format!(
        "{}{}{}{}",
        route("*", &smarthost),
        route("*.partner.test", &wide),
        route("*.eu.partner.test", &deep),
        route("eu.partner.test", &exact),
    );
    let relay = Relay::start(bin(), dir.path(), &config).await.unwrap();
    let mut c = Client::connect(relay.smtp).await.unwrap();
    let cases = [
        ("a@eu.partner.test", &exact),
        ("b@shop.eu.partner.test", &deep),
        ("c@us.partner.test", &wide),
        ("d@partner.test", &smarthost),
        ("e@elsewhere.test", &smarthost),
    ];
    for (rcpt, _) in cases {
        let reply = c
            .send_mail(
                "app@src.test",
                &[rcpt],
                &message("app@src.test", rcpt, "routed"),
            )
            .await
            .unwrap();
        assert_eq!(reply.code, 250);
    }
    for (sink, count) in [(&exact, 1), (&deep, 1), (&wide, 1), (&smarthost, 2)] {
        sink.wait_for(count, Duration::from_secs(30)).await.unwrap();
    }
    for (rcpt, sink) in cases {
        let got = sink.wait_for(1, Duration::from_secs(1)).await.unwrap();
        assert!(
            got.iter().any(|m| m.rcpts == [rcpt]),
            "{rcpt} went elsewhere"
        );
    }
}

// A recipient domain in U-labels (SMTPUTF8, RFC 6531 §3.2) is one destination with its A-label
// (RFC 5890 §2.3.2.1): routes and rules written with the A-label apply to it, so a rule cannot
// be sidestepped by writing the domain the other way. The address goes on as written.
#[tokio::test]
async fn a_u_label_recipient_domain_is_routed_and_ruled_by_its_a_label() {
    let dir = TestDir::new("idn").unwrap();
    let plain = Sink::start(RcptScript::Accept).await.unwrap();
    let guarded = Sink::start(RcptScript::Accept).await.unwrap();
    let config = format!(
        "{}{}[[rule]]\nname = \"buecher-tls\"\ndomains = [\"xn--bcher-kva.test\"]\nrequire = \"encrypted\"\n\n",
        route("xn--mnchen-3ya.test", &plain),
        route("xn--bcher-kva.test", &guarded),
    );
    let relay = Relay::start(bin(), dir.path(), &config).await.unwrap();
    let mut c = Client::connect(relay.smtp).await.unwrap();
    assert_eq!(c.command("EHLO client.test").await.unwrap().code, 250);
    for rcpt in ["jörg@München.test", "anna@bücher.test"] {
        let mail = c
            .command("MAIL FROM:<app@src.test> SMTPUTF8")
            .await
            .unwrap();
        assert_eq!(mail.code, 250, "{mail:?}");
        let reply = c.command(&format!("RCPT TO:<{rcpt}>")).await.unwrap();
        assert_eq!(reply.code, 250, "{rcpt}: {reply:?}");
        let reply = c
            .data(&message("app@src.test", rcpt, "international"))
            .await
            .unwrap();
        assert_eq!(reply.code, 250, "{rcpt}: {reply:?}");
    }

    let got = plain.wait_for(1, WAIT).await.unwrap();
    assert_eq!(
        got[0].rcpts,
        ["jörg@München.test"],
        "the address as written"
    );
    assert!(got[0].mail_params.contains("SMTPUTF8"), "{:?}", got[0]);
    let delivered = relay
        .wait_log(WAIT, |v| {
            v["message"] == "delivery attempt" && v["outcome"] == "delivered"
        })
        .await
        .unwrap();
    assert_eq!(delivered["domain"], "xn--mnchen-3ya.test", "{delivered}");

    // The rule names the A-label; the sink offers no STARTTLS, so the mail must wait.
    let deferred = relay
        .wait_log(WAIT, |v| {
            v["message"] == "delivery attempt" && v["domain"] == "xn--bcher-kva.test"
        })
        .await
        .unwrap();
    assert_eq!(deferred["outcome"], "deferred", "{deferred}");
    assert_eq!(deferred["policy"], "rule", "{deferred}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        guarded.message_count(),
        0,
        "nothing in plaintext under the rule"
    );
}

// Issue 11: bulk queue operations select by domain, sender and age, show the count and act
// only once confirmed; `queue summary` gives the queue's shape by destination.
#[tokio::test]
async fn bulk_queue_commands_act_on_what_the_selector_picks_once_confirmed() {
    let dir = TestDir::new("bulkqueue").unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = format!(
        "[retry]\ninitial = \"1h\"\n\n\
         [[route]]\ndomain = \"down.test\"\nnext_hop = \"{closed}\"\n\n\
         [[route]]\ndomain = \"dead.test\"\nnext_hop = \"{closed}\"\n"
    );
    let relay = Relay::start(bin(), dir.path(), &config).await.unwrap();
    let mut c = Client::connect(relay.smtp).await.unwrap();
    for (from, to) in [
        ("app@src.test", "a@down.test"),
        ("app@src.test", "b@down.test"),
        ("cron@other.test", "c@dead.test"),
    ] {
        let reply = c
            .send_mail(from, &[to], &message(from, to, "stuck"))
            .await
            .unwrap();
        assert_eq!(reply.code, 250);
    }
    let json = |args: &[&str]| {
        let out = relay.cli(args).unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let deadline = std::time::Instant::now() + WAIT;
    while json(&["queue", "list", "--json"]).as_array().map(Vec::len) != Some(3) {
        assert!(
            std::time::Instant::now() < deadline,
            "three messages queued"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let summary = json(&["queue", "summary", "--json"]);
    let rows: Vec<(&str, u64)> = summary
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["domain"].as_str().unwrap(),
                r["recipients"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, [("TOTAL", 3), ("down.test", 2), ("dead.test", 1)]);
    let table = relay.cli(&["queue", "summary"]).unwrap();
    assert!(String::from_utf8_lossy(&table.stdout).contains("down.test"));

    let listed = json(&["queue", "list", "--domain", "dead.test", "--json"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert_eq!(listed[0]["sender"], "cron@other.test");

    // Shown and asked; "n" (or no answer at all) changes nothing.
    for answer in [&b"n\n"[..], b""] {
        let out = relay
            .cli_with_input(&["queue", "hold", "--domain", "down.test"], answer)
            .unwrap();
        assert!(!out.status.success());
        let asked = String::from_utf8_lossy(&out.stderr);
        assert!(asked.contains("2 message(s) match"), "{asked}");
        assert!(asked.contains("hold 2 message(s)? [y/N]"), "{asked}");
    }
    assert!(
        json(&["queue", "list", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["held"] == false)
    );

    let out = relay
        .cli_with_input(&["queue", "hold", "--domain", "down.test"], b"y\n")
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let held: Vec<bool> = json(&["queue", "list", "--domain", "down.test", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["held"] == true)
        .collect();
    assert_eq!(held, [true, true]);

    let deleted = json(&[
        "queue",
        "delete",
        "--sender",
        "@other.test",
        "--yes",
        "--json",
    ]);
    assert_eq!(
        (deleted["done"].as_u64(), deleted["recipients"].as_u64()),
        (Some(1), Some(1))
    );
    let left = json(&["queue", "list", "--json"]);
    assert_eq!(left.as_array().map(Vec::len), Some(2));

    // Nothing older than a day is queued; a bulk command without a selector is refused.
    let none = json(&["queue", "bounce", "--older-than", "1d", "--yes", "--json"]);
    assert_eq!(none["count"], 0);
    let refused = relay.cli(&["queue", "bounce", "--yes"]).unwrap();
    assert_eq!(refused.status.code(), Some(64));

    let bounced = json(&["queue", "bounce", "--all", "--yes", "--json"]);
    assert_eq!(bounced["done"], 2);
    assert_eq!(bounced["dsns"], 2);
}

// Issue 14: queued mail and the control socket are for the server's user only, whatever the
// umask: the data directory 0700, the spool 0600, the control socket 0600.
#[tokio::test]
async fn the_spool_and_the_control_socket_are_private_to_the_server_user() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TestDir::new("private").unwrap();
    let relay = Relay::start(bin(), dir.path(), "").await.unwrap();
    let mode = |path: std::path::PathBuf| {
        std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(dir.path().join("data")), 0o700);
    assert_eq!(mode(dir.path().join("data/spool.redb")), 0o600);
    assert_eq!(mode(dir.path().join("control.sock")), 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".control-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    drop(relay);
}

// Issue 13 and docs/inbound.md: a client still in DATA when the grace period ends gets
// 421 4.3.2 before the connection closes, and the server still exits cleanly.
#[tokio::test]
async fn a_client_stalled_in_data_gets_421_when_the_shutdown_grace_ends() {
    let dir = TestDir::new("stalled").unwrap();
    let mut relay = Relay::start(bin(), dir.path(), "").await.unwrap();
    let mut c = Client::connect(relay.smtp).await.unwrap();
    assert_eq!(c.command("EHLO client.test").await.unwrap().code, 250);
    assert_eq!(c.command("MAIL FROM:<a@src.test>").await.unwrap().code, 250);
    assert_eq!(c.command("RCPT TO:<b@dest.test>").await.unwrap().code, 250);
    assert_eq!(c.command("DATA").await.unwrap().code, 354);
    c.send_raw(b"Subject: never finished\r\n").await.unwrap();
    let stop = tokio::spawn(async move { relay.terminate().await });
    // The test relay's shutdown_grace is 5 s.
    let reply = tokio::time::timeout(Duration::from_secs(15), c.read_reply())
        .await
        .expect("a reply before the connection closes")
        .unwrap();
    assert_eq!(
        (reply.code, reply.text.get(..5)),
        (421, Some("4.3.2")),
        "{reply:?}"
    );
    assert_eq!(stop.await.unwrap().unwrap(), Some(0));
}

// Issue 13: an operator's `queue retry` overrides destination backoff, so mail goes out at
// once instead of when the backoff ends; `queue list` says why each recipient waits.
#[tokio::test]
async fn queue_retry_clears_the_destination_backoff_and_queue_list_shows_it() {
    let dir = TestDir::new("retryclear").unwrap();
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = format!(
        "[retry]\ninitial = \"1h\"\njitter = 0.0\ndestination_backoff = \"1h\"\n\n\
         [[route]]\ndomain = \"later.test\"\nnext_hop = \"{down}\"\n"
    );
    let relay = Relay::start(bin(), dir.path(), &config).await.unwrap();
    let mut c = Client::connect(relay.smtp).await.unwrap();
    let reply = c
        .send_mail(
            "app@src.test",
            &["dora@later.test"],
            &message("app@src.test", "dora@later.test", "wait for me"),
        )
        .await
        .unwrap();
    assert_eq!(reply.code, 250);
    relay
        .wait_log(WAIT, |v| v["message"] == "destination backed off")
        .await
        .unwrap();
    let list = relay.cli(&["queue", "list"]).unwrap();
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(list.contains("destination backed off until"), "{list}");
    assert!(list.contains("last: "), "{list}");

    let sink = Sink::start_at(down, RcptScript::Accept).await.unwrap();
    let retry = relay.cli(&["queue", "retry", "--all", "--yes"]).unwrap();
    let retry = String::from_utf8_lossy(&retry.stdout).into_owned();
    assert!(
        retry.contains("1 destination backoff(s) cleared"),
        "{retry}"
    );
    let got = sink.wait_for(1, Duration::from_secs(15)).await.unwrap();
    assert_eq!(got[0].rcpts, vec!["dora@later.test"]);
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly_and_the_queue_survives_it() {
    let dir = TestDir::new("sigterm").unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = format!("[[route]]\ndomain = \"down.test\"\nnext_hop = \"{closed}\"\n");
    let mut relay = Relay::start(bin(), dir.path(), &config).await.unwrap();
    let mut c = Client::connect(relay.smtp).await.unwrap();
    let reply = c
        .send_mail(
            "app@src.test",
            &["frank@down.test"],
            &message("app@src.test", "frank@down.test", "kept"),
        )
        .await
        .unwrap();
    assert_eq!(reply.code, 250);
    c.quit().await.unwrap();

    assert_eq!(relay.terminate().await.unwrap(), Some(0));
    relay.restart().await.unwrap();
    let out = relay.cli(&["queue", "list", "--json"]).unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
}

#[tokio::test]
async fn the_metrics_endpoint_counts_sessions_accepted_messages_and_delivery_attempts() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = TestDir::new("metrics").unwrap();
    let sink = Sink::start(RcptScript::Accept).await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = format!(
        "[metrics]\nlisten = \"{port}\"\n\n{}",
        route("dest.test", &sink)
    );
    let relay = Relay::start(bin(), dir.path(), &config).await.unwrap();
    let mut c = Client::connect(relay.smtp).await.unwrap();
    let reply = c
        .send_mail(
            "app@src.test",
            &["gina@dest.test"],
            &message("app@src.test", "gina@dest.test", "counted"),
        )
        .await
        .unwrap();
    assert_eq!(reply.code, 250);
    sink.wait_for(1, WAIT).await.unwrap();

    let get = |path: &'static str| async move {
        let mut s = tokio::net::TcpStream::connect(port).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        text
    };
    let scrape = || get("/metrics");
    // Issue 13: only /metrics is served, and every metric has its help text.
    let other = get("/").await;
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = scrape().await;
        let has = |name: &str| {
            text.lines()
                .any(|l| l.starts_with(name) && !l.ends_with(" 0"))
        };
        if has("strictmx_messages_accepted_total")
            && has("strictmx_delivery_attempts_total")
            && has("strictmx_sessions_total")
            && text.contains("strictmx_queue_messages")
        {
            assert!(
                text.contains("# HELP strictmx_messages_accepted_total messages accepted"),
                "{text}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics missing:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// Issue 13: with its resolver dead (a closed loopback UDP port) and the default DNS timeouts
// (5 s, 2 attempts), the relay greets and accepts mail at once; the DNSSEC self-test runs in
// the background instead of holding the listeners back for 10 s or more.
#[tokio::test]
async fn a_relay_whose_resolver_is_dead_greets_and_accepts_mail_within_two_seconds_of_start() {
    let dir = TestDir::new("deaddns").unwrap();
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let config = format!("[dns]\nnameservers = [\"{dead}\"]\ntimeout = \"5s\"\nattempts = 2\n\n");
    let started = std::time::Instant::now();
    let relay = Relay::start(bin(), dir.path(), &config).await.unwrap();
    let mut client = Client::connect(relay.smtp).await.unwrap();
    let reply = client
        .send_mail(
            "app@src.test",
            &["user@dest.test"],
            &message("app@src.test", "user@dest.test", "dead dns"),
        )
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(reply.code, 250, "{reply:?}");
    assert!(
        elapsed < Duration::from_secs(2),
        "greeting and acceptance took {elapsed:?}"
    );
}

// Issue 11: when several unrelated destinations stop offering STARTTLS at once, the relay
// raises one site-wide alarm (a middlebox on our own path is the likely cause), keeps each
// change for `policy changes`, and `explain` shows the banner.
#[tokio::test]
async fn destinations_that_drop_starttls_together_raise_one_site_wide_alarm() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use strictmx_test_support::smtp::{SinkOptions, self_signed_tls};

    let dir = TestDir::new("downgrade-alarm").unwrap();
    let on = Arc::new(AtomicBool::new(true));
    let mut routes = String::new();
    let domains = ["one.test", "two.test", "three.test"];
    let mut sinks = Vec::new();
    for domain in domains {
        let options = SinkOptions {
            starttls: Some(self_signed_tls().unwrap()),
            starttls_on: Some(on.clone()),
            ..SinkOptions::default()
        };
        let sink = Sink::start_with("127.0.0.1:0".parse().unwrap(), options)
            .await
            .unwrap();
        routes.push_str(&route(domain, &sink));
        sinks.push(sink);
    }
    let config = format!(
        "[watch]\nalarm_destinations = 3\nalarm_window = \"10m\"\n\n\
         [delivery]\nmax_messages_per_connection = 1\n\n{routes}"
    );
    let relay = Relay::start(bin(), dir.path(), &config).await.unwrap();
    let send_all = |round: usize| {
        let relay_smtp = relay.smtp;
        async move {
            let mut c = Client::connect(relay_smtp).await.unwrap();
            for domain in domains {
                let rcpt = format!("r{round}@{domain}");
                let reply = c
                    .send_mail(
                        "app@src.test",
                        &[&rcpt],
                        &message("app@src.test", &rcpt, "x"),
                    )
                    .await
                    .unwrap();
                assert_eq!(reply.code, 250);
            }
        }
    };
    send_all(1).await;
    for sink in &sinks {
        sink.wait_for(1, WAIT).await.unwrap();
    }
    // Our own path starts stripping STARTTLS for every destination.
    on.store(false, Ordering::Relaxed);
    send_all(2).await;
    for sink in &sinks {
        sink.wait_for(2, WAIT).await.unwrap();
    }
    relay
        .wait_log(WAIT, |v| {
            v["level"] == "ERROR"
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("site-wide STARTTLS downgrade alarm"))
        })
        .await
        .unwrap();
    let out = relay.cli(&["policy", "changes", "--json"]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut changed: Vec<&str> = answer["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["domain"].as_str().unwrap())
        .collect();
    changed.sort();
    assert_eq!(changed, ["one.test", "three.test", "two.test"]);
    assert_eq!(
        answer["alarm"]["destinations"].as_array().map(Vec::len),
        Some(3)
    );
    // One alarm, not three unrelated destination warnings for the last two drops.
    let warned = relay
        .logs()
        .iter()
        .filter(|v| v["message"] == "destination policy weakened")
        .count();
    assert!(warned < 3, "{warned} per-destination warnings");
    let explained = relay.cli(&["explain", "one.test"]).unwrap();
    let text = String::from_utf8_lossy(&explained.stdout);
    assert!(
        text.contains("SITE-WIDE STARTTLS DOWNGRADE ALARM"),
        "{text}"
    );
    assert!(text.contains("no longer offers STARTTLS"), "{text}");
}
