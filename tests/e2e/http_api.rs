//! The HTTP submission API through the real binary in the lab: a `verified` floor to a host
//! whose certificate names another host defers and never delivers, and the receipt says why; a
//! DANE delivery's receipt says `dane` from GET and `audit show`, also after a restart; an
//! idempotent retry sends one message; a wrong token gets 401, a foreign sender 403, bad JSON
//! 400 naming the field; the served OpenAPI document is the checked-in one; `reload` adds and
//! removes tokens without a restart.
//! Needs the lab (`tests/lab/up`).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use strictmx_test_support::lab::{Lab, unique_rcpt};
use strictmx_test_support::relay::{Relay, TestDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{bin, repo_root};

const WAIT: Duration = Duration::from_secs(45);
const TOKEN: &str = "e2e-token-0123456789";

/// A relay in the lab with the API on loopback, one token allowed to send from `@app.test`.
async fn relay_with_api(lab: &Lab, dir: &TestDir) -> Relay {
    let config = format!(
        "[dns]\nnameservers = [\"{}\"]\ntimeout = \"3s\"\ndnssec = \"validate\"\ntrust_anchor = \"{}\"\n\n\
         [delivery]\nextra_ca_file = \"{}\"\nnever_deliver_to = []\n\n\
         [retry]\ninitial = \"2s\"\n\n\
         [http_api]\nlisten = \"127.0.0.1:0\"\n\n\
         [[http_api.token]]\nname = \"webapp\"\ntoken_hash = \"{}\"\nsenders = [\"@app.test\"]\n",
        lab.nonvalidating_resolver(),
        lab.trust_anchor().display(),
        lab.ca_bundle().display(),
        strictmx_inbound::hash_password(TOKEN),
    );
    let relay = Relay::start(bin(), dir.path(), &config).await.unwrap();
    relay
        .wait_log(WAIT, |v| v["message"] == "DNSSEC self-test passed")
        .await
        .expect("the DNSSEC self-test passes with the lab's anchor");
    relay
}

/// Where the API of the running server listens (the last `http api listening` record).
fn api(relay: &Relay) -> SocketAddr {
    relay
        .logs()
        .iter()
        .rev()
        .find(|v| v["message"] == "http api listening")
        .and_then(|v| v["address"].as_str()?.parse().ok())
        .expect("the server logged where the http api listens")
}

/// One HTTP/1.1 request over a fresh connection: the status, the headers and the body.
async fn http(
    api: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut tcp = TcpStream::connect(api).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: relay.test\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(body).await.unwrap();
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).await.unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let headers = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = headers[9..12].parse().unwrap();
    let mut body = response[split + 4..].to_vec();
    if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = unchunk(&body);
    }
    (status, headers, body)
}

fn unchunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16)
                .unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
        data = &data[line_end + 4 + size..];
    }
}

async fn post(api: SocketAddr, body: &Value) -> (u16, String, Value) {
    let (status, headers, body) = http(
        api,
        "POST",
        "/v1/messages",
        Some(TOKEN),
        body.to_string().as_bytes(),
    )
    .await;
    (
        status,
        headers,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

async fn status_of(api: SocketAddr, id: &str) -> Value {
    let (status, _, body) = http(api, "GET", &format!("/v1/messages/{id}"), Some(TOKEN), b"").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// GET until `ready` holds of the answer.
async fn wait_status(api: SocketAddr, id: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let view = status_of(api, id).await;
        if ready(&view) {
            return view;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting: {view}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn reset(rcpt: &str, require_tls: &str) -> Value {
    json!({
        "from": "reset@app.test",
        "to": [rcpt],
        "subject": "Your reset link",
        "text": "https://app.test/reset/1234",
        "require_tls": require_tls,
    })
}

#[tokio::test]
async fn verified_to_a_host_with_the_wrong_certificate_defers_and_the_receipt_says_why() {
    let lab = Lab::get().unwrap();
    let dir = TestDir::new("http-verified").unwrap();
    let relay = relay_with_api(&lab, &dir).await;
    let api = api(&relay);
    let rcpt = unique_rcpt("wronghost.test");
    let (status, _, accepted) = post(api, &reset(&rcpt, "verified")).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["recipients"], json!([rcpt]));
    let id = accepted["id"].as_str().unwrap();
    let view = wait_status(api, id, |v| {
        v["recipients"][0]["attempts"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    })
    .await;
    let recipient = &view["recipients"][0];
    assert_eq!(view["in_queue"], true, "{view}");
    assert_eq!(recipient["state"], "queued", "{view}");
    assert_eq!(recipient["require_tls"], "verified", "{view}");
    let attempt = &recipient["attempts"][0];
    assert_eq!(attempt["outcome"], "deferred", "{view}");
    assert_eq!(attempt["requirement"], "verified", "{view}");
    assert_eq!(attempt["policy"], "message-floor", "{view}");
    assert_eq!(
        attempt["result_type"], "certificate-host-mismatch",
        "{view}"
    );
    assert!(
        lab.received_for("mx.wronghost.test", &rcpt)
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_dane_delivery_answers_dane_from_get_and_audit_show_also_after_a_restart() {
    let lab = Lab::get().unwrap();
    let dir = TestDir::new("http-dane").unwrap();
    let mut relay = relay_with_api(&lab, &dir).await;
    let rcpt = unique_rcpt("dane-ok.test");
    let (status, _, accepted) = post(api(&relay), &reset(&rcpt, "dane")).await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap().to_owned();
    let done = wait_status(api(&relay), &id, |v| v["in_queue"] == false).await;
    let recipient = &done["recipients"][0];
    assert_eq!(recipient["state"], "delivered", "{done}");
    assert_eq!(recipient["receipt"]["auth"], "dane", "{done}");
    assert_eq!(recipient["receipt"]["requirement"], "dane", "{done}");
    assert_eq!(recipient["require_tls"], "dane", "{done}");
    assert_eq!(lab.received_for("mx.dane-ok.test", &rcpt).unwrap().len(), 1);

    relay.terminate().await.unwrap();
    relay.restart().await.unwrap();
    assert_eq!(
        status_of(api(&relay), &id).await,
        done,
        "the same answer after a restart"
    );
    let out = relay.cli(&["audit", "show", &id, "--json"]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    let record = &shown["records"][0];
    assert_eq!(record["receipt"]["auth"], "dane", "{shown}");
    assert_eq!(record["submitter"]["auth_user"], "webapp", "{shown}");
}

#[tokio::test]
async fn an_idempotent_retry_sends_one_message() {
    let lab = Lab::get().unwrap();
    let dir = TestDir::new("http-idempotent").unwrap();
    let relay = relay_with_api(&lab, &dir).await;
    let api = api(&relay);
    let rcpt = unique_rcpt("dane-ok.test");
    let mut request = reset(&rcpt, "opportunistic");
    request["idempotency_key"] = json!("reset-1234");
    let (status, headers, first) = post(api, &request).await;
    assert_eq!(status, 202, "{first}");
    assert!(!headers.to_ascii_lowercase().contains("idempotent-replayed"));
    let (status, headers, again) = post(api, &request).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again, first, "the first answer, repeated");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("idempotent-replayed: true"),
        "{headers}"
    );
    // The same key on another request is a client's mistake, not a repeat: refused, nothing
    // queued (docs/http-api.md).
    let mut other = request.clone();
    other["subject"] = json!("another message");
    let (status, _, refused) = post(api, &other).await;
    assert_eq!(
        (status, refused),
        (422, json!({"error": "idempotency_key_reused"}))
    );
    wait_status(api, first["id"].as_str().unwrap(), |v| {
        v["in_queue"] == false
    })
    .await;
    // Long enough for a second message, had one been queued, to arrive too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(lab.received_for("mx.dane-ok.test", &rcpt).unwrap().len(), 1);
    let queue = relay.cli(&["queue", "list", "--json"]).unwrap();
    assert!(queue.status.success());
}

#[tokio::test]
async fn wrong_tokens_foreign_senders_and_bad_json_are_refused_without_detail() {
    let dir = TestDir::new("http-refusals").unwrap();
    let config = format!(
        "[http_api]\nlisten = \"127.0.0.1:0\"\nauth_failures_per_client = 3\n\n\
         [[http_api.token]]\nname = \"webapp\"\ntoken_hash = \"{}\"\nsenders = [\"@app.test\"]\n",
        strictmx_inbound::hash_password(TOKEN),
    );
    let relay = Relay::start(bin(), dir.path(), &config).await.unwrap();
    let api = api(&relay);
    let good = reset("someone@example.test", "verified");

    let (status, _, body) = http(api, "POST", "/v1/messages", Some(TOKEN), b"{\"from\": ").await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, &body["field"]), (400, &json!("body")), "{body}");
    let mut no_to = good.clone();
    no_to.as_object_mut().unwrap().remove("to");
    let (status, _, body) = post(api, &no_to).await;
    assert_eq!((status, &body["field"]), (400, &json!("to")), "{body}");
    let mut bad_tls = good.clone();
    bad_tls["require_tls"] = json!("strong");
    let (status, _, body) = post(api, &bad_tls).await;
    assert_eq!(
        (status, &body["field"]),
        (400, &json!("require_tls")),
        "{body}"
    );
    assert!(
        relay
            .cli(&["queue", "list", "--json"])
            .unwrap()
            .status
            .success()
    );

    let (status, _, served) = http(api, "GET", "/v1/openapi.json", None, b"").await;
    assert_eq!(status, 200);
    let file = std::fs::read(repo_root().join("docs/http-api.openapi.json")).unwrap();
    assert_eq!(served, file, "the served document is the checked-in one");
    serde_json::from_slice::<Value>(&served).expect("the document is JSON");

    let (status, _, body) = http(
        api,
        "POST",
        "/v1/messages",
        Some("wrong"),
        good.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"error": "unauthorized"})
    );
    let (status, _, _) = http(
        api,
        "POST",
        "/v1/messages",
        None,
        good.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 401);

    let mut foreign = good.clone();
    foreign["from"] = json!("ceo@bank.test");
    let (status, _, body) = post(api, &foreign).await;
    assert_eq!((status, body), (403, json!({"error": "forbidden"})));

    // Three failures so far (two 401, one 403): the next request is limited, even with the
    // right token.
    let (status, _, _) = post(api, &good).await;
    assert_eq!(status, 429);
}

/// Every answer is JSON with an `error` code, as docs/http-api.openapi.json says, also where
/// the framework would answer in text: a body over `max_request_size` (refused from its
/// `Content-Length`, before it is read), a path the API does not have, a method a path does
/// not take. Without a token the oversized body is only a 401.
#[tokio::test]
async fn oversized_bodies_unknown_paths_and_wrong_methods_get_json_errors() {
    let dir = TestDir::new("http-json-errors").unwrap();
    let config = format!(
        "[http_api]\nlisten = \"127.0.0.1:0\"\nmax_request_size = \"2KiB\"\n\n\
         [[http_api.token]]\nname = \"webapp\"\ntoken_hash = \"{}\"\nsenders = [\"@app.test\"]\n",
        strictmx_inbound::hash_password(TOKEN),
    );
    let relay = Relay::start(bin(), dir.path(), &config).await.unwrap();
    let api = api(&relay);

    for (token, status, code) in [
        (Some(TOKEN), 413, "request_too_large"),
        (None, 401, "unauthorized"),
    ] {
        let mut tcp = TcpStream::connect(api).await.unwrap();
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let head = format!(
            "POST /v1/messages HTTP/1.1\r\nHost: relay.test\r\n{auth}Content-Type: application/json\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n"
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut response))
            .await
            .expect("answered without the body")
            .unwrap();
        let text = String::from_utf8_lossy(&response);
        let (headers, body) = text.split_once("\r\n\r\n").expect("a header block");
        assert_eq!(headers[9..12].parse::<u16>().unwrap(), status, "{text}");
        assert!(
            headers
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{text}"
        );
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body, json!({ "error": code }));
    }

    let (status, headers, body) = http(api, "GET", "/v1/nothing", Some(TOKEN), b"").await;
    assert_eq!(status, 404, "{headers}");
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"error": "not_found"})
    );
    let (status, headers, body) = http(api, "DELETE", "/v1/messages", Some(TOKEN), b"").await;
    assert_eq!(status, 405, "{headers}");
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"error": "method_not_allowed"})
    );
}

/// `reload` puts new tokens in force and takes removed ones out, without a restart: a token
/// added to the file works at once, and the one removed gets 401.
#[tokio::test]
async fn reload_adds_and_removes_tokens_without_a_restart() {
    const SECOND: &str = "e2e-second-token-9876543210";
    let dir = TestDir::new("http-token-reload").unwrap();
    let token = |name: &str, secret: &str| {
        format!(
            "[[http_api.token]]\nname = \"{name}\"\ntoken_hash = \"{}\"\nsenders = [\"@app.test\"]\n",
            strictmx_inbound::hash_password(secret)
        )
    };
    let head = "[http_api]\nlisten = \"127.0.0.1:0\"\n\n";
    let first = token("webapp", TOKEN);
    let relay = Relay::start(bin(), dir.path(), &format!("{head}{first}"))
        .await
        .unwrap();
    let api = api(&relay);
    let pid = relay.pid();
    let body = reset("someone@example.test", "opportunistic").to_string();
    let send = |secret: &'static str| {
        let body = body.clone();
        async move {
            http(api, "POST", "/v1/messages", Some(secret), body.as_bytes())
                .await
                .0
        }
    };
    assert_eq!(send(TOKEN).await, 202);
    assert_eq!(send(SECOND).await, 401);

    let text = std::fs::read_to_string(&relay.config_path).unwrap();
    let rewritten = text.replace(&first, "").replace(head, "") + head + &token("batch", SECOND);
    assert!(!rewritten.contains("name = \"webapp\""), "{rewritten}");
    std::fs::write(&relay.config_path, rewritten).unwrap();
    let out = relay.cli(&["reload"]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(send(SECOND).await, 202, "the new token works at once");
    assert_eq!(send(TOKEN).await, 401, "the removed token is refused");
    assert_eq!(relay.pid(), pid, "no restart");
}
