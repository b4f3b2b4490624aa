//! vigil's own HTTP/1 path (`proxy/conn/own_h1`) against hyper's: the
//! same raw requests go to two vigils, one with `own_http1` on (the
//! default) and one with it off, and what comes back must be the same
//! bytes (Date values aside), including where the connection closes.
//! The corpus covers what the own path takes (plain heads, pipelining,
//! HEAD, HTTP/1.0, conditional and range requests, chunked and
//! compressed bodies, sendfile) and what it hands to hyper (bodies,
//! upgrades, malformed and oversized heads), with hand-overs in both
//! directions on one connection.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::backend::{Backend, free_port};
use support::vigil::TestVigil;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(own: bool, backend: &Backend, www: &std::path::Path) -> (TestVigil, SocketAddr) {
    let port = free_port();
    let config = format!(
        r#"
[log]
access_log = "off"

[http]
own_http1 = {own}
max_header_size = "4k"

[[server]]
listen = ["127.0.0.1:{port}"]
root = "{www}"
  [[server.location]]
  path = "/api/"
  proxy_pass = "app"
  [[server.location]]
  path = "/status/"
  proxy_pass = "app"
  [[server.location]]
  path = "/bytes/"
  proxy_pass = "app"
  [[server.location]]
  path = "/sleep/"
  proxy_pass = "app"
  [[server.location]]
  path = "= /echo"
  proxy_pass = "app"
  [[server.location]]
  path = "= /nocontent"
  proxy_pass = "app"
  [[server.location]]
  path = "/gz/"
  proxy_pass = "app"
  gzip = true
  gzip_types = ["*"]
  [[server.location]]
  path = "= /moved"
  return = {{ status = 301, location = "http://example.test/elsewhere" }}
  [[server.location]]
  path = "= /teapot"
  return = {{ status = 418, body = "short and stout\n" }}
  [[server.location]]
  path = "/"

[upstream.app]
servers = [{{ addr = "{}" }}]
"#,
        backend.addr,
        www = www.display(),
    );
    let vigil = TestVigil::start(&config).await;
    let addr = vigil.first_addr();
    (vigil, addr)
}

/// Sends `request` in `pieces` and reads until the server closes or is
/// quiet for a while; `<open>` marks a connection left open.
async fn exchange(addr: SocketAddr, pieces: &[Vec<u8>]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if piece == b"<shutdown>" {
            let _ = s.shutdown().await;
            continue;
        }
        if s.write_all(piece).await.is_err() {
            break;
        }
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_millis(400), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                out.extend_from_slice(b"<closed>");
                break;
            }
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => {
                out.extend_from_slice(b"<open>");
                break;
            }
        }
    }
    out
}

/// Blanks what differs between two runs: `Date` values and multipart
/// boundaries.
fn normalize(raw: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(raw).into_owned();
    if let Some(at) = text.find("boundary=") {
        let token: String = text[at + 9..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if !token.is_empty() {
            text = text.replace(&token, "BOUNDARY");
        }
    }
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive("\r\n") {
        if line
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case("date: "))
        {
            out.push_str("date: -\r\n");
        } else {
            out.push_str(line);
        }
    }
    out
}

fn corpus() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let one = |s: &str| vec![s.as_bytes().to_vec()];
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(5000));
    let big_field = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(5000)
    );
    let huge_field = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "c".repeat(20000)
    );
    let many_fields: String = (0..101).map(|i| format!("X-F{i}: v\r\n")).collect();
    vec![
        (
            "static file",
            one("GET /1k.txt HTTP/1.1\r\nHost: t\r\n\r\n"),
        ),
        (
            "static HEAD",
            one("HEAD /1k.txt HTTP/1.1\r\nHost: t\r\n\r\n"),
        ),
        (
            "static 1 MiB (sendfile)",
            one("GET /1m.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        ),
        (
            "index and directory redirect",
            one("GET /dir HTTP/1.1\r\nHost: t\r\n\r\nGET /dir/ HTTP/1.1\r\nHost: t\r\n\r\n"),
        ),
        ("not found", one("GET /missing HTTP/1.1\r\nHost: t\r\n\r\n")),
        (
            "conditional 304",
            one("GET /1k.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: *\r\n\r\n"),
        ),
        (
            "range 206",
            one("GET /1k.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=10-19\r\n\r\n"),
        ),
        (
            "multi-range",
            one("GET /1k.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-1,5-6\r\n\r\n"),
        ),
        (
            "unsatisfiable range",
            one("GET /1k.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=5000-\r\n\r\n"),
        ),
        (
            "static POST refused",
            one("POST /1k.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi"),
        ),
        (
            "return redirect",
            one("GET /moved HTTP/1.1\r\nHost: t\r\n\r\n"),
        ),
        (
            "return body",
            one("GET /teapot HTTP/1.1\r\nHost: t\r\n\r\n"),
        ),
        (
            "proxied",
            one("GET /api/x?y=1 HTTP/1.1\r\nHost: t\r\nUser-Agent: t/1\r\n\r\n"),
        ),
        (
            "proxied HEAD",
            one("HEAD /api/x HTTP/1.1\r\nHost: t\r\n\r\n"),
        ),
        (
            "proxied 204",
            one("GET /nocontent HTTP/1.1\r\nHost: t\r\n\r\n"),
        ),
        (
            "proxied error status",
            one("GET /status/503 HTTP/1.1\r\nHost: t\r\n\r\n"),
        ),
        (
            "proxied chunked body",
            one("GET /bytes/40000 HTTP/1.1\r\nHost: t\r\n\r\n"),
        ),
        (
            "gzip, chunked",
            one("GET /gz/x HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n"),
        ),
        (
            "HTTP/1.0 closes",
            one("GET /api/x HTTP/1.0\r\nHost: t\r\n\r\n"),
        ),
        (
            "HTTP/1.0 keep-alive",
            one(
                "GET /api/x HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\nGET /1k.txt HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n",
            ),
        ),
        (
            "HTTP/1.0 chunked upstream body",
            one("GET /bytes/100 HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n"),
        ),
        ("HTTP/1.0 without Host", one("GET /1k.txt HTTP/1.0\r\n\r\n")),
        (
            "Connection: close",
            one(
                "GET /api/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\nHost: t\r\n\r\n",
            ),
        ),
        (
            "pipelined three",
            one(
                "GET /api/a HTTP/1.1\r\nHost: t\r\n\r\nGET /1k.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /api/c HTTP/1.1\r\nHost: t\r\n\r\n",
            ),
        ),
        (
            "head in pieces",
            vec![
                b"GET /api/x HT".to_vec(),
                b"TP/1.1\r\nHo".to_vec(),
                b"st: t\r\n\r\n".to_vec(),
            ],
        ),
        (
            "body, then plain (to hyper and back)",
            one(
                "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhelloGET /api/x HTTP/1.1\r\nHost: t\r\n\r\n",
            ),
        ),
        (
            "plain, then chunked body",
            one(
                "GET /api/x HTTP/1.1\r\nHost: t\r\n\r\nPOST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            ),
        ),
        (
            "Content-Length: 0",
            one("GET /api/x HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"),
        ),
        (
            "Expect: 100-continue",
            one(
                "PUT /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
            ),
        ),
        (
            "CL and TE",
            one(
                "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ),
        ),
        (
            "two lengths",
            one(
                "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            ),
        ),
        (
            "bad chunk size",
            one("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
        ),
        ("not HTTP", one("NOT A REQUEST\r\n\r\n")),
        (
            "obs-fold",
            one("GET / HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n"),
        ),
        (
            "space before colon",
            one("GET / HTTP/1.1\r\nHost : t\r\n\r\n"),
        ),
        (
            "control byte in a value",
            one("GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x01b\r\n\r\n"),
        ),
        ("bare LF", one("GET /1k.txt HTTP/1.1\nHost: t\n\n")),
        ("HTTP/2.0 line", one("GET / HTTP/2.0\r\nHost: t\r\n\r\n")),
        ("no Host", one("GET /1k.txt HTTP/1.1\r\n\r\n")),
        (
            "two Hosts",
            one("GET /1k.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        ),
        (
            "absolute form",
            one("GET http://t/1k.txt HTTP/1.1\r\nHost: t\r\n\r\n"),
        ),
        (
            "asterisk form",
            one("OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n"),
        ),
        (
            "traversal",
            one("GET /../etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n"),
        ),
        (
            "encoded traversal",
            one("GET /%2e%2e/etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n"),
        ),
        ("long target", one(&long_target)),
        ("big field", one(&big_field)),
        ("huge field", one(&huge_field)),
        (
            "101 fields",
            one(&format!("GET / HTTP/1.1\r\nHost: t\r\n{many_fields}\r\n")),
        ),
        (
            "unknown method",
            one("BREW /api/x HTTP/1.1\r\nHost: t\r\n\r\n"),
        ),
        (
            "websocket upgrade refused upstream",
            one(
                "GET /api/x HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            ),
        ),
        (
            "client closes early",
            vec![
                b"GET /sleep/200 HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
                b"<shutdown>".to_vec(),
            ],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_own_path_answers_as_hyper_does() {
    let backend = Backend::start("a").await;
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("1k.txt"), "k".repeat(1024)).unwrap();
    std::fs::write(www.path().join("1m.bin"), vec![7u8; 1 << 20]).unwrap();
    std::fs::create_dir(www.path().join("dir")).unwrap();
    std::fs::write(www.path().join("dir/index.html"), "<p>index</p>\n").unwrap();
    let (_own, own) = start(true, &backend, www.path()).await;
    let (_hyper, hyper) = start(false, &backend, www.path()).await;
    let cases = corpus();
    let runs = cases.iter().map(|(name, pieces)| async move {
        let (a, b) = tokio::join!(exchange(own, pieces), exchange(hyper, pieces));
        (*name, normalize(&a), normalize(&b))
    });
    let results = futures_util::future::join_all(runs).await;
    let mut differ = Vec::new();
    for (name, own, hyper) in &results {
        assert!(!hyper.is_empty(), "{name}: nothing from hyper");
        if own != hyper {
            differ.push(format!(
                "--- {name}\nown:   {:?}\nhyper: {:?}",
                own.chars().take(600).collect::<String>(),
                hyper.chars().take(600).collect::<String>()
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} cases differ:\n{}",
        differ.len(),
        results.len(),
        differ.join("\n")
    );
}
