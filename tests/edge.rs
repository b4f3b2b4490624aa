//! Edge controls through a running vigil with real clients: allow/deny,
//! basic auth, limit_req, limit_conn, the real client address (headers
//! and PROXY protocol), and bad PROXY headers.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::backend::Backend;
use support::client::{self, request};
use support::vigil::TestVigil;

fn basic(user_pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

#[tokio::test]
async fn allow_deny_by_server_and_location() {
    let backend = Backend::start("app").await;
    let v = TestVigil::start(&format!(
        r#"
[log]
access_log = "off"

[[server]]
listen = ["127.0.0.1:0"]
access = ["allow 127.0.0.1", "deny all"]

  [[server.location]]
  path = "/"
  proxy_pass = "http://{b}"

  [[server.location]]
  path = "/private/"
  access = ["deny 127.0.0.0/8", "allow all"]
  proxy_pass = "http://{b}"

  [[server.location]]
  path = "= /status"
  access = ["deny all"]
  return = {{ status = 200, body = "ok" }}
"#,
        b = backend.addr
    ))
    .await;
    let addr = v.first_addr();
    assert_eq!(client::get(addr, "/").await.status, 200);
    assert_eq!(client::get(addr, "/private/x").await.status, 403);
    assert_eq!(
        client::get(addr, "/status").await.status,
        403,
        "return is guarded too"
    );
    assert_eq!(
        backend.requests(),
        1,
        "refused requests never reach the backend"
    );
}

fn htpasswd(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("htpasswd");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn basic_auth_with_reload_of_the_user_file() {
    let dir = tempfile::tempdir().unwrap();
    let bcrypt_hash = bcrypt::hash("s3cret", 4).unwrap();
    let users = htpasswd(
        dir.path(),
        &format!("alice:$apr1$sAlT1234$C6Td00y5SVZuzXWX2RtIO0\nbob:{bcrypt_hash}\nbroken line\n"),
    );
    let log = dir.path().join("access.log");
    let config = format!(
        r#"
[log]
access_log = "{log}"
access_log_buffer = 0

[[server]]
listen = ["127.0.0.1:0"]
auth_basic = "Staff only"
auth_basic_user_file = "{users}"

  [[server.location]]
  path = "/"
  return = {{ status = 200, body = "in" }}

  [[server.location]]
  path = "/public/"
  auth_basic = "off"
  return = {{ status = 200, body = "public" }}
"#,
        log = log.display(),
        users = users.display()
    );
    let v = TestVigil::start_in(dir, &config).await;
    let addr = v.first_addr();
    let with = |cred: &str| request("GET", "/", &[("authorization", cred)], "");

    let r = client::get(addr, "/").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"Staff only\"")
    );
    assert_eq!(
        client::send(addr, with(&basic("alice:secret pass")))
            .await
            .status,
        200
    );
    assert_eq!(
        client::send(addr, with(&basic("bob:s3cret"))).await.status,
        200
    );
    assert_eq!(
        client::send(addr, with(&basic("bob:s3cret"))).await.status,
        200,
        "cached"
    );
    assert_eq!(
        client::send(addr, with(&basic("bob:wrong"))).await.status,
        401
    );
    assert_eq!(
        client::send(addr, with(&basic("mallory:x"))).await.status,
        401
    );
    assert_eq!(client::send(addr, with("Bearer xyz")).await.status, 401);
    assert_eq!(client::get(addr, "/public/").await.status, 200);

    // The file is read again on reload: bob's new password works, the
    // old one no longer does.
    let new_hash = bcrypt::hash("n3w", 4).unwrap();
    std::fs::write(&users, format!("bob:{new_hash}\n")).unwrap();
    v.app.reload().await.unwrap();
    assert_eq!(
        client::send(addr, with(&basic("bob:n3w"))).await.status,
        200
    );
    assert_eq!(
        client::send(addr, with(&basic("bob:s3cret"))).await.status,
        401
    );
    assert_eq!(
        client::send(addr, with(&basic("alice:secret pass")))
            .await
            .status,
        401
    );

    // The log has the user name, never a password.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("127.0.0.1 - bob [")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("127.0.0.1 - - [")),
        "{text}"
    );
    for secret in ["s3cret", "n3w", "secret pass", "wrong"] {
        assert!(!text.contains(secret), "{secret} in the log: {text}");
    }
}

#[tokio::test]
async fn limit_req_burst_nodelay_status_and_metrics() {
    let v = TestVigil::start(
        r#"
[log]
access_log = "off"

[limit_req_zone.edge_test_burst]
key = "$binary_remote_addr"
rate = "1r/m"

[limit_req_zone.edge_test_delay]
key = "$binary_remote_addr"
rate = "10r/s"

[[server]]
listen = ["127.0.0.1:0"]

  [[server.location]]
  path = "/"
  limit_req = [{ zone = "edge_test_burst", burst = 2, nodelay = true }]
  limit_req_status = 429
  return = { status = 200 }

  [[server.location]]
  path = "/slow/"
  limit_req = [{ zone = "edge_test_delay", burst = 5 }]
  return = { status = 200 }
"#,
    )
    .await;
    let addr = v.first_addr();
    let mut conn = client::Conn::open(addr).await;
    let statuses: Vec<u16> = {
        let mut s = Vec::new();
        for _ in 0..5 {
            s.push(conn.get("/").await.status.as_u16());
        }
        s
    };
    // The first request and a burst of two pass at once; then refused.
    assert_eq!(statuses, [200, 200, 200, 429, 429]);

    // Without nodelay, excess requests are slowed to the rate (10r/s:
    // 100 ms apart), not refused.
    let start = Instant::now();
    for _ in 0..4 {
        assert_eq!(conn.get("/slow/x").await.status, 200);
    }
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "three excess requests at 10r/s wait ~300 ms: {:?}",
        start.elapsed()
    );

    let m = &v.app.metrics().limit_req_requests;
    assert_eq!(m.with_label_values(&["edge_test_burst", "passed"]).get(), 3);
    assert_eq!(
        m.with_label_values(&["edge_test_burst", "rejected"]).get(),
        2
    );
    assert_eq!(m.with_label_values(&["edge_test_delay", "passed"]).get(), 1);
    assert_eq!(
        m.with_label_values(&["edge_test_delay", "delayed"]).get(),
        3
    );
}

/// nginx's allow-list idiom: a map gives trusted clients an empty key,
/// which no zone counts.
#[tokio::test]
async fn limit_req_zone_key_from_a_map() {
    let v = TestVigil::start(
        r#"
[log]
access_log = "off"

[map.limit_key]
source = "$http_x_tier"
default = "$binary_remote_addr"
entries = [["premium", ""]]

[limit_req_zone.edge_test_mapped]
key = "$limit_key"
rate = "1r/m"

[[server]]
listen = ["127.0.0.1:0"]

  [[server.location]]
  path = "/"
  limit_req = [{ zone = "edge_test_mapped", nodelay = true }]
  limit_req_status = 429
  return = { status = 200 }
"#,
    )
    .await;
    let mut conn = client::Conn::open(v.first_addr()).await;
    let mut statuses = Vec::new();
    for tier in ["premium", "premium", "premium", "basic", "basic"] {
        let req = client::request("GET", "/", &[("x-tier", tier)], "");
        statuses.push(conn.send(req).await.unwrap().status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429]);
}

#[tokio::test]
async fn limit_conn_counts_requests_in_progress() {
    let backend = Backend::start("app").await;
    let v = TestVigil::start(&format!(
        r#"
[log]
access_log = "off"

[limit_conn_zone.edge_test_conn]
key = "$remote_addr"

[[server]]
listen = ["127.0.0.1:0"]
limit_conn = [{{ zone = "edge_test_conn", limit = 1 }}]

  [[server.location]]
  path = "/"
  proxy_pass = "http://{b}"
"#,
        b = backend.addr
    ))
    .await;
    let addr = v.first_addr();
    let slow = tokio::spawn(async move { client::get(addr, "/sleep/800").await.status });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(client::get(addr, "/").await.status, 503);
    assert_eq!(slow.await.unwrap(), 200);
    // The count was given back when the slow response ended.
    assert_eq!(client::get(addr, "/").await.status, 200);
    let m = &v.app.metrics().limit_conn_requests;
    assert_eq!(
        m.with_label_values(&["edge_test_conn", "rejected"]).get(),
        1
    );
}

#[tokio::test]
async fn real_ip_from_trusted_headers_feeds_access_and_upstream() {
    let backend = Backend::start("app").await;
    let v = TestVigil::start(&format!(
        r#"
[log]
access_log = "off"

[http]
set_real_ip_from = ["127.0.0.1"]
real_ip_header = "X-Forwarded-For"
real_ip_recursive = true

[[server]]
listen = ["127.0.0.1:0"]
access = ["deny 198.51.100.0/24", "allow all"]

  [[server.location]]
  path = "/"
  proxy_pass = "http://{b}"

  [[server.location]]
  path = "= /addr"
  return = {{ status = 200, body = "$remote_addr" }}
"#,
        b = backend.addr
    ))
    .await;
    let addr = v.first_addr();
    let xff = |v: &str| request("GET", "/addr", &[("x-forwarded-for", v)], "");
    assert_eq!(
        client::send(addr, xff("203.0.113.7")).await.text(),
        "203.0.113.7"
    );
    // Recursive: trusted hops from the right are skipped.
    assert_eq!(
        client::send(addr, xff("192.0.2.1, 203.0.113.7, 127.0.0.1"))
            .await
            .text(),
        "203.0.113.7"
    );
    assert_eq!(client::get(addr, "/addr").await.text(), "127.0.0.1");
    // allow/deny sees the real address.
    let denied = request("GET", "/", &[("x-forwarded-for", "198.51.100.9")], "");
    assert_eq!(client::send(addr, denied).await.status, 403);
    // The upstream is told the real address.
    let r = client::send(
        addr,
        request("GET", "/", &[("x-forwarded-for", "203.0.113.7")], ""),
    )
    .await;
    let headers = &r.json()["headers"];
    assert_eq!(headers["x-real-ip"], "203.0.113.7", "{headers}");
    assert_eq!(
        headers["x-forwarded-for"], "203.0.113.7, 203.0.113.7",
        "{headers}"
    );
}

fn proxy_config(backend: SocketAddr, timeout: &str) -> String {
    format!(
        r#"
[log]
access_log = "off"

[http]
proxy_protocol_timeout = "{timeout}"

[[server]]
listen = ["127.0.0.1:0"]
proxy_protocol = true
set_real_ip_from = ["127.0.0.1"]
real_ip_header = "proxy_protocol"

  [[server.location]]
  path = "/"
  proxy_pass = "http://{backend}"

  [[server.location]]
  path = "= /addr"
  return = {{ status = 200, body = "$remote_addr" }}
"#
    )
}

/// Sends `bytes`, then reads everything until the server closes.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    client::raw(addr, bytes, Duration::from_secs(5)).await
}

#[tokio::test]
async fn proxy_protocol_v1_v2_and_bad_headers() {
    let backend = Backend::start("app").await;
    let v = TestVigil::start(&proxy_config(backend.addr, "1s")).await;
    let addr = v.first_addr();
    let get = b"GET /addr HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

    let v1 = [
        b"PROXY TCP4 203.0.113.9 10.0.0.1 5555 80\r\n".as_slice(),
        get,
    ]
    .concat();
    let r = exchange(addr, &v1).await;
    assert!(
        r.starts_with("HTTP/1.1 200") && r.ends_with("203.0.113.9"),
        "{r}"
    );

    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend_from_slice(&[198, 51, 100, 4, 10, 0, 0, 1, 0x15, 0xb3, 0, 80]);
    let r = exchange(addr, &[v2.as_slice(), get].concat()).await;
    assert!(r.ends_with("198.51.100.4"), "{r}");

    // LOCAL (a balancer's health check): the connection's own address.
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    let r = exchange(addr, &[local.as_slice(), get].concat()).await;
    assert!(r.ends_with("127.0.0.1"), "{r}");

    // The upstream hears the client from the header.
    let r = exchange(
        addr,
        &[
            b"PROXY TCP6 2001:db8::5 ::1 5555 80\r\n".as_slice(),
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ]
        .concat(),
    )
    .await;
    assert!(r.contains("\"x-real-ip\":\"2001:db8::5\""), "{r}");

    // No header, a bad one, or a truncated one: closed without a word.
    for bad in [
        get.as_slice(),
        b"PROXY TCP4 256.0.0.1 10.0.0.1 1 2\r\nGET / HTTP/1.1\r\n\r\n",
        b"PROXY UDP4 1.1.1.1 2.2.2.2 1 2\r\n",
        b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\n",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x12\x00\x0c000000000000",
    ] {
        let r = exchange(addr, bad).await;
        assert_eq!(r, "", "{:?}", String::from_utf8_lossy(bad));
    }

    // A header that never ends is cut off at proxy_protocol_timeout.
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"PROXY TCP4 1.1.").await.unwrap();
    let mut out = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("closed by the header timeout")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(start.elapsed() >= Duration::from_millis(900));
    let m = &v.app.metrics().proxy_protocol_errors;
    assert!(m.with_label_values(&["timeout"]).get() >= 1);
    assert!(m.with_label_values(&["missing"]).get() >= 1);
    assert!(m.with_label_values(&["malformed"]).get() >= 1);
    // Still serving.
    let r = exchange(addr, &v1).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

#[tokio::test]
async fn a_proxy_header_without_proxy_protocol_is_a_bad_request() {
    let v = TestVigil::start(
        "[log]\naccess_log = \"off\"\n[[server]]\nlisten = [\"127.0.0.1:0\"]\n[[server.location]]\npath = \"/\"\nreturn = { status = 200 }\n",
    )
    .await;
    let r = exchange(
        v.first_addr(),
        b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
}
