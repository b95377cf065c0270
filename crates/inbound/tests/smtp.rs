//! SMTP sessions against a real listener on 127.0.0.1:0 with an in-memory queue: capabilities
//! per role and TLS state, relay decisions, AUTH, STARTTLS, limits, timeouts, DSN parameters,
//! trace headers and queue failures.

mod common;
#[path = "smtp/dkim.rs"]
mod dkim;

use std::time::Duration;

use common::{PASSWORD, QueueMode, ReplyExt, TestServer, USER, b64, plain, test_cert, unused_path};
use strictmx_inbound::{Inbound, InboundError, Role, ServerTlsSettings};
use strictmx_protocol::{DsnRet, Notify, Orcpt};

fn capabilities(reply: &strictmx_protocol::Reply) -> Vec<String> {
    reply.lines.iter().skip(1).cloned().collect()
}

#[tokio::test]
async fn a_plaintext_relay_offers_starttls_but_neither_auth_nor_requiretls() {
    let server = TestServer::new(Role::Relay).with_tls().start();
    let mut client = server.connect().await;
    client.expect(220).await;
    let ehlo = client.command("EHLO client.test").await;
    let caps = capabilities(ehlo.code(250));
    for wanted in [
        "PIPELINING",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "DSN",
        "STARTTLS",
    ] {
        assert!(
            caps.iter().any(|c| c == wanted),
            "{wanted} missing from {caps:?}"
        );
    }
    assert!(
        caps.iter()
            .any(|c| c == &format!("SIZE {}", 25 * 1024 * 1024)),
        "{caps:?}"
    );
    assert!(!caps.iter().any(|c| c.starts_with("AUTH")), "{caps:?}");
    // RFC 8689 §4: REQUIRETLS only over TLS.
    assert!(!caps.iter().any(|c| c == "REQUIRETLS"), "{caps:?}");
}

#[tokio::test]
async fn after_starttls_auth_and_requiretls_are_offered_and_starttls_is_not() {
    let server = TestServer::new(Role::Relay).with_tls().start();
    let mut client = server.connect_starttls().await;
    let ehlo = client.command("EHLO client.test").await;
    let caps = capabilities(ehlo.code(250));
    assert!(caps.iter().any(|c| c == "AUTH PLAIN LOGIN"), "{caps:?}");
    assert!(caps.iter().any(|c| c == "REQUIRETLS"), "{caps:?}");
    assert!(!caps.iter().any(|c| c == "STARTTLS"), "{caps:?}");
}

// RFC 3207 §4.2: after TLS the client must EHLO again.
#[tokio::test]
async fn starttls_forgets_the_plaintext_ehlo() {
    let server = TestServer::new(Role::Relay).with_tls().start();
    let mut client = server.connect_starttls().await;
    client.command("MAIL FROM:<a@example.org>").await.code(503);
}

// RFC 3207 §6: commands pipelined after STARTTLS must be discarded, not run inside TLS.
#[tokio::test]
async fn commands_injected_after_starttls_are_discarded() {
    let server = TestServer::new(Role::Relay).with_tls().start();
    let mut client = server.connect().await;
    client.expect(220).await;
    client.command("EHLO client.test").await.code(250);
    client
        .send_raw(b"STARTTLS\r\nMAIL FROM:<evil@example.org>\r\n")
        .await;
    client.expect(220).await;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = server
        .tls_connector()
        .connect(name, client.into_inner())
        .await
        .expect("handshake");
    let mut client = common::Client::new(tls);
    client.command("EHLO client.test").await.code(250);
    // Had the injected MAIL run, this RCPT would be accepted.
    client
        .command("RCPT TO:<b@example.net>")
        .await
        .code(503)
        .has_status("5.5.1");
}

#[tokio::test]
async fn a_trusted_client_relays_and_the_message_gets_trace_headers() {
    let server = TestServer::new(Role::Relay).start();
    let mut client = server.connect().await;
    client.expect(220).await;
    client.command("EHLO client.test").await.code(250);
    client
        .command("MAIL FROM:<a@example.org>")
        .await
        .code(250)
        .has_status("2.1.0");
    client
        .command("RCPT TO:<b@example.net>")
        .await
        .code(250)
        .has_status("2.1.5");
    client.command("DATA").await.code(354);
    client
        .send_raw(b"From: a@example.org\r\nSubject: hi\r\n\r\n..leading dot\r\nbody\r\n.\r\n")
        .await;
    let queued = client.expect(250).await;
    // The id in the reply is the one our Received: field names (RFC 5321 §4.4).
    assert_eq!(queued.lines, ["Ok: queued as 000000000000ff01"]);
    client.command("QUIT").await.code(221);

    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    let (envelope, body) = &messages[0];
    assert_eq!(envelope.mail_from, "a@example.org");
    assert_eq!(envelope.recipients[0].address, "b@example.net");
    assert_eq!(envelope.client.helo, "client.test");
    assert_eq!(envelope.client.auth_user, None);
    let text = String::from_utf8(body.clone()).expect("ascii");
    assert!(
        text.starts_with("Received: from client.test ([127.0.0.1])\r\n\tby mx.test.example (strictmx) with ESMTP\r\n\tid 000000000000ff01;\r\n\t"),
        "{text}"
    );
    assert!(text.contains("\r\nMessage-ID: <"), "{text}");
    assert!(text.contains("@mx.test.example>\r\nDate: "), "{text}");
    // RFC 5321 §4.5.2: the extra leading dot is removed.
    assert!(text.ends_with("\r\n\r\n.leading dot\r\nbody\r\n"), "{text}");
}

// Never an open relay: outside trusted networks and without AUTH, every recipient is refused.
#[tokio::test]
async fn an_untrusted_unauthenticated_client_is_refused_for_every_recipient() {
    let server = TestServer::new(Role::Relay).untrusted().start();
    let mut client = server.connect().await;
    client.expect(220).await;
    client.command("EHLO client.test").await.code(250);
    client.command("MAIL FROM:<a@example.org>").await.code(250);
    for rcpt in ["b@example.net", "postmaster@mx.test.example", "c@localhost"] {
        client
            .command(&format!("RCPT TO:<{rcpt}>"))
            .await
            .code(550)
            .has_status("5.7.1");
    }
    client.command("DATA").await.code(503);
    assert!(server.messages().is_empty());
}

// RFC 2920 §3.1: a pipelined group is answered in order.
#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let server = TestServer::new(Role::Relay).start();
    let mut client = server.connect().await;
    client.expect(220).await;
    client
        .send_raw(
            b"EHLO client.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<bad>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n",
        )
        .await;
    for code in [250, 250, 250, 553, 250, 354] {
        client.expect(code).await;
    }
    client
        .send_raw(b"Subject: x\r\n\r\nx\r\n.\r\nRSET\r\nNOOP\r\nQUIT\r\n")
        .await;
    for code in [250, 250, 250, 221] {
        client.expect(code).await;
    }
    assert_eq!(server.messages()[0].0.recipients.len(), 2);
}

#[tokio::test]
async fn auth_plain_lets_an_untrusted_client_relay() {
    let server = TestServer::new(Role::Relay).with_tls().untrusted().start();
    let mut client = server.connect_starttls().await;
    client.command("EHLO client.test").await.code(250);
    client
        .command(&format!("AUTH PLAIN {}", plain(USER, PASSWORD)))
        .await
        .code(235)
        .has_status("2.7.0");
    client.command("AUTH PLAIN").await.code(503);
    client.command("MAIL FROM:<a@example.org>").await.code(250);
    client.command("RCPT TO:<b@example.net>").await.code(250);
    client.command("DATA").await.code(354);
    client.send_raw(b"Subject: x\r\n\r\nx\r\n.\r\n").await;
    client.expect(250).await;
    let (envelope, body) = &server.messages()[0];
    assert_eq!(envelope.client.auth_user.as_deref(), Some(USER));
    assert!(
        envelope
            .client
            .tls
            .as_deref()
            .is_some_and(|t| t.starts_with("TLSv1."))
    );
    let text = String::from_utf8_lossy(body);
    assert!(text.contains("with ESMTPSA (TLSv1."), "{text}");
}

#[tokio::test]
async fn auth_login_with_challenges_succeeds_and_a_wrong_password_fails() {
    let server = TestServer::new(Role::Relay).with_tls().untrusted().start();
    let mut client = server.connect_starttls().await;
    client.command("EHLO client.test").await.code(250);
    let challenge = client.command("AUTH LOGIN").await;
    assert_eq!(challenge.code(334).lines, ["VXNlcm5hbWU6"]);
    client.command(&b64(USER)).await.code(334);
    client
        .command(&b64("wrong"))
        .await
        .code(535)
        .has_status("5.7.8");
    client
        .command(&format!("AUTH LOGIN {}", b64(USER)))
        .await
        .code(334);
    client.command(&b64(PASSWORD)).await.code(235);
}

#[tokio::test]
async fn repeated_auth_failures_close_the_session() {
    let mut builder = TestServer::new(Role::Relay).with_tls().untrusted();
    builder.settings.limits.max_auth_failures = 2;
    let server = builder.start();
    let mut client = server.connect_starttls().await;
    client.command("EHLO client.test").await.code(250);
    client
        .command(&format!("AUTH PLAIN {}", plain(USER, "x")))
        .await
        .code(535);
    client
        .command(&format!("AUTH PLAIN {}", plain("mallory", PASSWORD)))
        .await
        .code(535);
    client.expect(421).await.has_status("4.7.0");
    assert!(client.closed().await);
}

// Issue 14: the failure budget belongs to the client address, not to the session, and a
// malformed exchange spends it as a wrong password does. RFC 4954 §6: 454 4.7.0 once it is spent.
#[tokio::test]
async fn auth_failures_count_across_sessions_and_a_spent_budget_is_refused_with_454() {
    let mut builder = TestServer::new(Role::Relay).with_tls().untrusted();
    builder.settings.limits.max_auth_failures = 10;
    builder.settings.limits.auth_failures_per_client = 3;
    let server = builder.start();
    let mut client = server.connect_starttls().await;
    client.command("EHLO client.test").await.code(250);
    for _ in 0..2 {
        client
            .command(&format!("AUTH PLAIN {}", plain(USER, "guess")))
            .await
            .code(535);
    }
    client.command("QUIT").await.code(221);

    let mut client = server.connect_starttls().await;
    client.command("EHLO client.test").await.code(250);
    client.command("AUTH PLAIN !!not-base64!!").await.code(501);
    client
        .command(&format!("AUTH PLAIN {}", plain(USER, PASSWORD)))
        .await
        .code(454)
        .has_status("4.7.0");
    assert!(client.closed().await);
}

// Issue 14 (sender login maps): an authenticated user sends only as its listed senders.
#[tokio::test]
async fn an_authenticated_user_may_send_only_from_its_allowed_senders() {
    let mut builder = TestServer::new(Role::Relay).with_tls().untrusted();
    builder.settings.users[0].senders = vec![strictmx_protocol::SenderPattern::Domain(
        "example.org".into(),
    )];
    let server = builder.start();
    let mut client = server.connect_starttls().await;
    client.command("EHLO client.test").await.code(250);
    client
        .command(&format!("AUTH PLAIN {}", plain(USER, PASSWORD)))
        .await
        .code(235);
    client
        .command("MAIL FROM:<ceo@corp.example>")
        .await
        .code(553)
        .has_status("5.7.1");
    client
        .command("MAIL FROM:<app@example.org>")
        .await
        .code(250);
    client.command("RSET").await.code(250);
    client.command("MAIL FROM:<>").await.code(250);
}

// Issue 13: users and the server certificate are replaced in a running server (reload); new
// sessions authenticate against the new users and handshake with the new certificate.
#[tokio::test]
async fn a_running_server_takes_new_users_and_a_renewed_certificate() {
    let mut server = TestServer::new(Role::Relay).with_tls().untrusted().start();
    let newcomer = strictmx_inbound::User {
        name: "bob".into(),
        argon2_phc_hash: strictmx_inbound::hash_password("bobs password"),
        senders: Vec::new(),
        require_tls: None,
    };
    let mut client = server.connect_starttls().await;
    client.command("EHLO client.test").await.code(250);
    client
        .command(&format!("AUTH PLAIN {}", plain("bob", "bobs password")))
        .await
        .code(535);

    server
        .handle
        .replace_users(&[newcomer])
        .expect("valid users");
    let renewed = test_cert();
    assert!(
        server
            .handle
            .replace_tls(&renewed.settings)
            .expect("valid certificate")
    );
    // The client now trusts only the renewed certificate: the handshake proves it is served.
    server.cert = Some(renewed);
    let mut client = server.connect_starttls().await;
    client.command("EHLO client.test").await.code(250);
    client
        .command(&format!("AUTH PLAIN {}", plain("bob", "bobs password")))
        .await
        .code(235);
    let mut client = server.connect_starttls().await;
    client.command("EHLO client.test").await.code(250);
    client
        .command(&format!("AUTH PLAIN {}", plain(USER, PASSWORD)))
        .await
        .code(535);
}

// Issue 14: password checks beyond the configured bound are refused, not queued.
#[tokio::test]
async fn auth_beyond_the_concurrent_check_bound_is_refused_with_454() {
    let mut builder = TestServer::new(Role::Relay).with_tls().untrusted();
    builder.settings.limits.max_concurrent_auth = 0;
    let server = builder.start();
    let mut client = server.connect_starttls().await;
    client.command("EHLO client.test").await.code(250);
    client
        .command(&format!("AUTH PLAIN {}", plain(USER, PASSWORD)))
        .await
        .code(454)
        .has_status("4.7.0");
    client.command("NOOP").await.code(250);
}

#[tokio::test]
async fn auth_over_plaintext_is_refused_unless_explicitly_allowed() {
    let server = TestServer::new(Role::Relay).with_tls().start();
    let mut client = server.connect().await;
    client.expect(220).await;
    client.command("EHLO client.test").await.code(250);
    client
        .command(&format!("AUTH PLAIN {}", plain(USER, PASSWORD)))
        .await
        .code(538)
        .has_status("5.7.11");

    let server = TestServer::new(Role::Relay)
        .insecure_plaintext_auth()
        .untrusted()
        .start();
    let mut client = server.connect().await;
    client.expect(220).await;
    let caps = capabilities(&client.command("EHLO client.test").await);
    assert!(caps.iter().any(|c| c == "AUTH PLAIN LOGIN"), "{caps:?}");
    client
        .command(&format!("AUTH PLAIN {}", plain(USER, PASSWORD)))
        .await
        .code(235);
}

// RFC 6409 §4.3 and RFC 3207: submission wants STARTTLS before AUTH, AUTH before MAIL.
#[tokio::test]
async fn submission_requires_starttls_then_auth_before_mail() {
    let server = TestServer::new(Role::Submission).with_tls().start();
    let mut client = server.connect().await;
    client.expect(220).await;
    client.command("EHLO client.test").await.code(250);
    client
        .command("MAIL FROM:<a@example.org>")
        .await
        .code(530)
        .has_status("5.7.0");
    client
        .command(&format!("AUTH PLAIN {}", plain(USER, PASSWORD)))
        .await
        .code(530);
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    client.command("STARTTLS").await.code(220);
    let tls = server
        .tls_connector()
        .connect(name, client.into_inner())
        .await
        .expect("tls");
    let mut client = common::Client::new(tls);
    client.command("EHLO client.test").await.code(250);
    // Trusted networks do not count on submission.
    client
        .command("MAIL FROM:<a@example.org>")
        .await
        .code(530)
        .has_status("5.7.0");
    client
        .command(&format!("AUTH PLAIN {}", plain(USER, PASSWORD)))
        .await
        .code(235);
    client.command("MAIL FROM:<a@example.org>").await.code(250);
}

// RFC 8314 §3.3: implicit TLS from the first byte.
#[tokio::test]
async fn submissions_speaks_tls_from_the_first_byte() {
    let server = TestServer::new(Role::Submissions).with_tls().start();
    let mut client = server.connect_tls().await;
    client.expect(220).await;
    let caps = capabilities(&client.command("EHLO client.test").await);
    assert!(caps.iter().any(|c| c == "AUTH PLAIN LOGIN"), "{caps:?}");
    assert!(!caps.iter().any(|c| c == "STARTTLS"), "{caps:?}");
    client
        .command(&format!("AUTH PLAIN {}", plain(USER, PASSWORD)))
        .await
        .code(235);
}

#[tokio::test]
async fn listeners_that_need_tls_refuse_to_bind_without_a_certificate() {
    let builder = TestServer::new(Role::Submissions);
    let queue_settings = builder.settings.clone();
    let result = Inbound::bind(queue_settings, strictmx_test_queue());
    assert!(matches!(
        result,
        Err(InboundError::TlsRequired {
            role: Role::Submissions,
            ..
        })
    ));

    let mut settings = TestServer::new(Role::Relay).settings;
    settings.tls = Some(ServerTlsSettings {
        cert_path: unused_path(),
        key_path: test_cert().settings.key_path,
    });
    let result = Inbound::bind(settings, strictmx_test_queue());
    assert!(
        matches!(result, Err(InboundError::Certificate { .. })),
        "{result:?}"
    );
}

fn strictmx_test_queue() -> common::MemoryQueue {
    TestServer::new(Role::Relay).start_queue_only()
}

// RFC 1870 §6: 552 for a declared or actual size over the limit; the session goes on.
#[tokio::test]
async fn oversized_messages_are_refused_with_552_and_the_session_continues() {
    let mut builder = TestServer::new(Role::Relay);
    builder.settings.limits.max_message_size = 100;
    let server = builder.start();
    let mut client = server.connect().await;
    client.expect(220).await;
    client.command("EHLO client.test").await.code(250);
    client
        .command("MAIL FROM:<a@example.org> SIZE=101")
        .await
        .code(552)
        .has_status("5.3.4");
    client
        .command("MAIL FROM:<a@example.org> SIZE=50")
        .await
        .code(250);
    client.command("RCPT TO:<b@example.net>").await.code(250);
    client.command("DATA").await.code(354);
    let mut content = vec![b'x'; 150];
    content.extend_from_slice(b"\r\n.\r\n");
    client.send_raw(&content).await;
    client.expect(552).await.has_status("5.3.4");
    client.command("NOOP").await.code(250);
    assert!(server.messages().is_empty());
}

// RFC 5321 §4.5.3.1.10: 452 4.5.3 for recipients over the limit.
#[tokio::test]
async fn recipients_over_the_limit_get_452() {
    let mut builder = TestServer::new(Role::Relay);
    builder.settings.limits.max_recipients = 2;
    let server = builder.start();
    let mut client = server.connect().await;
    client.expect(220).await;
    client.command("EHLO client.test").await.code(250);
    client.command("MAIL FROM:<a@example.org>").await.code(250);
    client.command("RCPT TO:<b@example.net>").await.code(250);
    client.command("RCPT TO:<c@example.net>").await.code(250);
    client
        .command("RCPT TO:<d@example.net>")
        .await
        .code(452)
        .has_status("4.5.3");
}

// RFC 5321 §4.5.3.1.4 and §4.5.3.1.6: lines over 1000 octets are refused, not fatal.
#[tokio::test]
async fn over_long_lines_are_refused_without_ending_the_session() {
    let server = TestServer::new(Role::Relay).start();
    let mut client = server.connect().await;
    client.expect(220).await;
    let long = format!("NOOP {}\r\n", "a".repeat(2000));
    client.send_raw(long.as_bytes()).await;
    client.expect(500).await.has_status("5.5.2");
    client.command("EHLO client.test").await.code(250);
    client.command("MAIL FROM:<a@example.org>").await.code(250);
    client.command("RCPT TO:<b@example.net>").await.code(250);
    client.command("DATA").await.code(354);
    client
        .send_raw(format!("{}\r\n.\r\n", "y".repeat(1200)).as_bytes())
        .await;
    client.expect(500).await.has_status("5.5.6");
    client.command("NOOP").await.code(250);
    assert!(server.messages().is_empty());
}

// RFC 5321 §2.3.8; issue 14 (SMTP smuggling, CVE-2023-51764 class): every way of ending DATA
// other than CRLF.CRLF is refused with a 5xx and the session closed, so the transaction
// smuggled behind it never runs and nothing is queued.
#[tokio::test]
async fn a_bare_cr_or_lf_in_content_is_refused_and_the_session_closed() {
    let server = TestServer::new(Role::Relay).start();
    let smuggled = "MAIL FROM:<ceo@corp.example>\r\nRCPT TO:<x@example.net>\r\nDATA\r\n\
                    Subject: smuggled\r\n\r\nsmuggled\r\n.\r\n";
    for ending in ["\n.\n", "\n.\r\n", "\r.\r", "\r\n.\r", "\r\n.\n"] {
        let mut client = server.connect().await;
        client.expect(220).await;
        client.command("EHLO client.test").await.code(250);
        client.open_data().await;
        client
            .send_raw(format!("Subject: first\r\n\r\nhello{ending}{smuggled}").as_bytes())
            .await;
        client.expect(550).await.has_status("5.6.0");
        assert!(client.closed().await, "{ending:?}: the session must close");
    }
    assert!(server.messages().is_empty(), "{:?}", server.messages());
}

// RFC 5321 §6.3; issue 14: more than 100 Received: fields means a loop: 554 5.4.6, nothing queued.
#[tokio::test]
async fn a_message_with_more_than_100_received_fields_is_refused_as_a_loop() {
    let server = TestServer::new(Role::Relay).start();
    for (hops, code) in [(100, 250), (101, 554)] {
        let mut client = server.connect().await;
        client.expect(220).await;
        client.command("EHLO client.test").await.code(250);
        client.open_data().await;
        let trace = "Received: from a by b; Thu, 1 Jan 2026 00:00:00 +0000\r\n".repeat(hops);
        client
            .send_raw(format!("{trace}Subject: hops\r\n\r\nbody\r\n.\r\n").as_bytes())
            .await;
        let reply = client.expect(code).await;
        if code == 554 {
            reply.has_status("5.4.6");
        }
    }
    assert_eq!(server.messages().len(), 1);
}

// Issue 14: content held in memory by all sessions has a bound; a message that finds it spent is
// read to its end and refused with 452 4.3.1, and the memory comes back afterwards.
#[tokio::test]
async fn a_message_beyond_the_memory_budget_is_refused_with_452_and_the_budget_recovers() {
    let mut builder = TestServer::new(Role::Relay);
    builder.settings.limits.max_body_memory = 4096;
    let server = builder.start();
    let mut client = server.connect().await;
    client.expect(220).await;
    client.command("EHLO client.test").await.code(250);
    for (lines, code) in [(200, 452), (2, 250)] {
        client.open_data().await;
        let text = "0123456789012345678901234567890123456789\r\n".repeat(lines);
        client
            .send_raw(format!("Subject: big\r\n\r\n{text}.\r\n").as_bytes())
            .await;
        let reply = client.expect(code).await;
        if code == 452 {
            reply.has_status("4.3.1");
        }
    }
    assert_eq!(server.messages().len(), 1);
}

// Issue 14: an IPv4 client reaching an IPv6 socket is seen as its IPv4 address, so an IPv4
// trusted network covers it (it used to be ::ffff:127.0.0.1, outside 127.0.0.0/8).
#[tokio::test]
async fn an_ipv4_client_on_a_dual_stack_listener_is_matched_against_ipv4_trusted_networks() {
    let mut builder = TestServer::new(Role::Relay);
    builder.settings.listeners[0].address = "[::ffff:127.0.0.1]:0".parse().expect("address");
    let server = builder.start();
    let port = server.addr().port();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect over IPv4");
    let mut client = common::Client::new(tcp);
    client.expect(220).await;
    client.command("EHLO client.test").await.code(250);
    client.command("MAIL FROM:<a@example.org>").await.code(250);
    client.command("RCPT TO:<b@example.net>").await.code(250);
    let (envelope, _) = {
        client.command("DATA").await.code(354);
        client.send_raw(b"Subject: v4\r\n\r\nx\r\n.\r\n").await;
        client.expect(250).await;
        server.messages().remove(0)
    };
    assert_eq!(envelope.client.ip, std::net::IpAddr::from([127, 0, 0, 1]));
}

#[tokio::test]
async fn a_silent_client_gets_421_after_the_command_timeout() {
    let mut builder = TestServer::new(Role::Relay);
    builder.settings.limits.command_timeout = Duration::from_millis(200);
    let server = builder.start();
    let mut client = server.connect().await;
    client.expect(220).await;
    client.expect(421).await.has_status("4.4.2");
    assert!(client.closed().await);
}

#[tokio::test]
async fn a_stalled_data_transfer_gets_421_after_the_data_timeout() {
    let mut builder = TestServer::new(Role::Relay);
    builder.settings.limits.data_timeout = Duration::from_millis(200);
    let server = builder.start();
    let mut client = server.connect().await;
    client.expect(220).await;
    client.command("EHLO client.test").await.code(250);
    client.command("MAIL FROM:<a@example.org>").await.code(250);
    client.command("RCPT TO:<b@example.net>").await.code(250);
    client.command("DATA").await.code(354);
    client.send_raw(b"Subject: partial\r\n").await;
    client.expect(421).await.has_status("4.4.2");
    assert!(server.messages().is_empty());
}

// RFC 3461 §4: NOTIFY, ORCPT, RET and ENVID are stored for the DSNs delivery may send.
#[tokio::test]
async fn dsn_parameters_are_stored_with_the_envelope() {
    let server = TestServer::new(Role::Relay).start();
    let mut client = server.connect().await;
    client.expect(220).await;
    client.command("EHLO client.test").await.code(250);
    client
        .command("MAIL FROM:<a@example.org> RET=HDRS ENVID=QQ314159 BODY=8BITMIME SIZE=20")
        .await
        .code(250);
    client
        .command("RCPT TO:<b@example.net> NOTIFY=FAILURE,DELAY ORCPT=rfc822;b+2Bold@example.net")
        .await
        .code(250);
    client.command("DATA").await.code(354);
    client.send_raw(b"Subject: x\r\n\r\nx\r\n.\r\n").await;
    client.expect(250).await;
    let (envelope, _) = &server.messages()[0];
    assert_eq!(envelope.params.ret, Some(DsnRet::Headers));
    assert_eq!(envelope.params.envid.as_deref(), Some("QQ314159"));
    assert_eq!(envelope.params.size, Some(20));
    let rcpt = &envelope.recipients[0].params;
    assert_eq!(
        rcpt.notify,
        Some(Notify {
            failure: true,
            delay: true,
            ..Notify::default()
        })
    );
    assert_eq!(
        rcpt.orcpt,
        Some(Orcpt {
            addr_type: "rfc822".into(),
            address: "b+old@example.net".into()
        })
    );
}

// RFC 8689 §4.1: REQUIRETLS is accepted only on a TLS session and then stored.
#[tokio::test]
async fn requiretls_is_refused_in_plaintext_and_stored_over_tls() {
    let server = TestServer::new(Role::Relay).with_tls().start();
    let mut client = server.connect().await;
    client.expect(220).await;
    client.command("EHLO client.test").await.code(250);
    client
        .command("MAIL FROM:<a@example.org> REQUIRETLS")
        .await
        .code(555);

    let mut client = server.connect_starttls().await;
    client.command("EHLO client.test").await.code(250);
    client
        .command("MAIL FROM:<a@example.org> REQUIRETLS")
        .await
        .code(250);
    client.command("RCPT TO:<b@example.net>").await.code(250);
    client.command("DATA").await.code(354);
    client.send_raw(b"Subject: x\r\n\r\nx\r\n.\r\n").await;
    client.expect(250).await;
    assert!(server.messages()[0].0.params.requiretls);
}

#[tokio::test]
async fn queue_failures_are_answered_with_4xx_and_nothing_is_half_accepted() {
    for (mode, code, status) in [
        (QueueMode::FailTransient, 452, "4.3.1"),
        (QueueMode::FailPermanent, 451, "4.3.0"),
    ] {
        let server = TestServer::new(Role::Relay).queue_mode(mode).start();
        let mut client = server.connect().await;
        client.expect(220).await;
        client.command("EHLO client.test").await.code(250);
        client.command("MAIL FROM:<a@example.org>").await.code(250);
        client.command("RCPT TO:<b@example.net>").await.code(250);
        client.command("DATA").await.code(354);
        client.send_raw(b"Subject: x\r\n\r\nx\r\n.\r\n").await;
        client.expect(code).await.has_status(status);
        // The transaction is over either way.
        client.command("RCPT TO:<b@example.net>").await.code(503);
    }
}

#[tokio::test]
async fn sessions_over_the_per_address_limit_get_421_at_connect() {
    let mut builder = TestServer::new(Role::Relay);
    builder.settings.limits.max_sessions_per_ip = 1;
    let server = builder.start();
    let mut first = server.connect().await;
    first.expect(220).await;
    let mut second = server.connect().await;
    second.expect(421).await.has_status("4.7.0");
    assert!(second.closed().await);
    first.command("QUIT").await.code(221);
    assert!(first.closed().await);
    // The slot is free again once the first session ended.
    let mut third = server.connect().await;
    third.expect(220).await;
}

#[tokio::test]
async fn too_many_bad_commands_end_the_session() {
    let mut builder = TestServer::new(Role::Relay);
    builder.settings.limits.max_bad_commands = 3;
    let server = builder.start();
    let mut client = server.connect().await;
    client.expect(220).await;
    client.command("FOO").await.code(500);
    client.command("MAIL FROM:<a@example.org>").await.code(503);
    client.command("BAR").await.code(500);
    client.expect(421).await.has_status("4.7.0");
    assert!(client.closed().await);
}

#[tokio::test]
async fn shutdown_sends_421_to_idle_sessions_and_stops_the_server() {
    let server = TestServer::new(Role::Relay).start();
    let mut client = server.connect().await;
    client.expect(220).await;
    client.command("EHLO client.test").await.code(250);
    server.shutdown.cancel();
    client.expect(421).await.has_status("4.3.2");
    assert!(client.closed().await);
    tokio::time::timeout(Duration::from_secs(10), server.task)
        .await
        .expect("run returns after shutdown")
        .expect("run does not panic");
}

// RFC 6531 §3.4: non-ASCII addresses need SMTPUTF8.
#[tokio::test]
async fn non_ascii_addresses_need_smtputf8() {
    let server = TestServer::new(Role::Relay).start();
    let mut client = server.connect().await;
    client.expect(220).await;
    client.command("EHLO client.test").await.code(250);
    client
        .command("MAIL FROM:<jörg@example.de>")
        .await
        .code(553)
        .has_status("5.6.7");
    client
        .command("MAIL FROM:<jörg@example.de> SMTPUTF8")
        .await
        .code(250);
    client.command("RCPT TO:<björn@example.se>").await.code(250);
}

// Transfers between strictmx nodes (docs/inbound.md, "Extensions"): the keyword and TRANSID
// only for clients that may relay.
#[tokio::test]
async fn transfers_are_offered_to_and_taken_from_trusted_clients_only() {
    let trusted = TestServer::new(Role::Relay).start();
    let mut client = trusted.connect().await;
    client.expect(220).await;
    let ehlo = client.command("EHLO node-a.test").await;
    let caps = capabilities(ehlo.code(250));
    assert!(caps.iter().any(|c| c == "XSTRICTMX-TRANSFER"), "{caps:?}");
    client
        .command("MAIL FROM:<a@example.org> TRANSID=<00aa.00bb@strictmx>")
        .await
        .code(250);
    client.command("RCPT TO:<b@example.net>").await.code(250);
    client.command("DATA").await.code(354);
    client.send_raw(b"Subject: x\r\n\r\nx\r\n.\r\n").await;
    client.expect(250).await;
    assert_eq!(trusted.messages().len(), 1);

    let untrusted = TestServer::new(Role::Relay).untrusted().start();
    let mut client = untrusted.connect().await;
    client.expect(220).await;
    let ehlo = client.command("EHLO outsider.test").await;
    let caps = capabilities(ehlo.code(250));
    assert!(!caps.iter().any(|c| c == "XSTRICTMX-TRANSFER"), "{caps:?}");
    client
        .command("MAIL FROM:<a@example.org> TRANSID=<00aa.00bb@strictmx>")
        .await
        .code(550);
    assert!(untrusted.messages().is_empty());
}
