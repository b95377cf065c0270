//! A `[[route]]` to a smarthost with `auth_user` and `auth_password_file`, through the binary:
//! an in-test next hop on 127.0.0.1 offers STARTTLS with a certificate from a private CA (which
//! the relay trusts through `[delivery] extra_ca_file`) and AUTH PLAIN after it, checks the
//! credentials and takes the mail only from a client that logged in.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use strictmx_test_support::relay::{Relay, TestDir};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::{bin, submit};

const USER: &str = "relay-user@provider.test";
const PASSWORD: &str = "correct horse battery staple";

/// What the smarthost saw.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// `(user, password, over TLS)` of each AUTH PLAIN.
    logins: Vec<(String, String, bool)>,
    /// Bodies of the messages it took.
    messages: Vec<String>,
}

/// A CA and a leaf for 127.0.0.1 signed by it: (server config, CA PEM).
fn certificates() -> (Arc<rustls::ServerConfig>, String) {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("leaf params")
        .signed_by(&leaf_key, &ca)
        .expect("leaf");
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).expect("key der");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .expect("server config");
    (Arc::new(config), ca.pem())
}

/// Starts the smarthost on 127.0.0.1; returns its address and what it sees.
async fn smarthost(tls: Arc<rustls::ServerConfig>) -> (std::net::SocketAddr, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shared = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (tls, seen) = (tls.clone(), shared.clone());
            tokio::spawn(async move {
                let mut plain = BufReader::new(tcp);
                reply(&mut plain, "220 smarthost.test ESMTP").await;
                if !dialogue(&mut plain, &seen, false).await {
                    return;
                }
                let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                if let Ok(stream) = acceptor.accept(plain.into_inner()).await {
                    dialogue(&mut BufReader::new(stream), &seen, true).await;
                }
            });
        }
    });
    (addr, seen)
}

async fn reply<S: AsyncRead + AsyncWrite + Unpin>(s: &mut BufReader<S>, text: &str) {
    let _ = s
        .get_mut()
        .write_all(format!("{text}\r\n").as_bytes())
        .await;
}

/// One SMTP dialogue; returns true when the client asked for STARTTLS (only before TLS).
async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    seen: &Mutex<Seen>,
    tls: bool,
) -> bool {
    let mut logged_in = false;
    loop {
        let mut line = String::new();
        if s.read_line(&mut line).await.unwrap_or(0) == 0 {
            return false;
        }
        let line = line.trim_end().to_owned();
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            // RFC 4954 §4: AUTH only over TLS, as a provider's relay does.
            let ext = if tls {
                "250 AUTH PLAIN"
            } else {
                "250 STARTTLS"
            };
            reply(s, &format!("250-smarthost.test\r\n{ext}")).await;
        } else if upper == "STARTTLS" && !tls {
            reply(s, "220 2.0.0 go ahead").await;
            return true;
        } else if upper.starts_with("AUTH PLAIN ") && tls {
            // RFC 4616 §2: authzid NUL authcid NUL passwd.
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(line[11..].trim())
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&decoded).into_owned();
            let mut parts = text.split('\0').skip(1);
            let (user, password) = (
                parts.next().unwrap_or("").to_owned(),
                parts.next().unwrap_or("").to_owned(),
            );
            logged_in = user == USER && password == PASSWORD;
            seen.lock().unwrap().logins.push((user, password, tls));
            let answer = if logged_in {
                "235 2.7.0 authentication succeeded"
            } else {
                "535 5.7.8 authentication credentials invalid"
            };
            reply(s, answer).await;
        } else if upper.starts_with("MAIL") && !logged_in {
            reply(s, "530 5.7.0 authentication required").await;
        } else if upper.starts_with("MAIL") || upper.starts_with("RCPT") || upper == "RSET" {
            reply(s, "250 2.0.0 ok").await;
        } else if upper == "DATA" {
            reply(s, "354 go ahead").await;
            let mut body = String::new();
            loop {
                let mut data = String::new();
                if s.read_line(&mut data).await.unwrap_or(0) == 0 || data == ".\r\n" {
                    break;
                }
                body.push_str(&data);
            }
            seen.lock().unwrap().messages.push(body);
            reply(s, "250 2.0.0 queued").await;
        } else if upper == "QUIT" {
            reply(s, "221 2.0.0 bye").await;
            return false;
        } else {
            reply(s, "502 5.5.2 not here").await;
        }
    }
}

// RFC 4954 §4, RFC 4616: the route logs in with AUTH PLAIN over STARTTLS verified against the
// configured CA, with the password from its file, and then hands over the mail.
#[tokio::test]
async fn a_smarthost_route_logs_in_over_verified_starttls_and_delivers() {
    let dir = TestDir::new("smarthost").unwrap();
    let (tls, ca_pem) = certificates();
    let (addr, seen) = smarthost(tls).await;
    let ca_file = dir.path().join("smarthost-ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let password_file = dir.path().join("relay-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(
        &password_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let config = format!(
        "[delivery]\nextra_ca_file = \"{}\"\n\n\
         [[route]]\ndomain = \"*\"\nnext_hop = \"{addr}\"\nauth_user = \"{USER}\"\n\
         auth_password_file = \"{}\"\n",
        ca_file.display(),
        password_file.display()
    );
    let relay = Relay::start(bin(), dir.path(), &config).await.unwrap();
    submit(&relay, "someone@anywhere.test").await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().messages.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing delivered; seen {:?}; logs {:#?}",
            seen.lock().unwrap(),
            relay.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.logins,
        [(USER.to_owned(), PASSWORD.to_owned(), true)],
        "one login, over TLS, with the file's password"
    );
    assert!(seen.messages[0].contains("Subject: end-to-end"), "{seen:?}");
    let attempt = relay
        .wait_log(Duration::from_secs(10), |v| {
            v["message"] == "delivery attempt" && v["outcome"] == "delivered"
        })
        .await
        .unwrap();
    assert_eq!(attempt["requirement"], "verified", "{attempt}");
    assert_eq!(attempt["cert_verified"], true, "{attempt}");
}
