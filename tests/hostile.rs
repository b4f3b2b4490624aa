//! Hostile clients (issue 13): each test sends the exact input that used
//! to hurt vigil, through a running vigil, and checks both what the client
//! is answered and that the upstream pool is untouched (or that the
//! connection is closed, as it should be).

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::backend::{Backend, free_port};
use support::client::Conn;
use support::vigil::TestVigil;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Two servers that any single failure takes out for 30 s, so a fault
/// wrongly blamed on a server shows at once.
async fn strict_pool(http: &str) -> (TestVigil, SocketAddr, Backend, Backend) {
    strict_pool_with(http, "").await
}

async fn strict_pool_with(http: &str, location: &str) -> (TestVigil, SocketAddr, Backend, Backend) {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let port = free_port();
    let config = format!(
        r#"
[log]
access_log = "off"

[http]
{http}

[[server]]
listen = ["127.0.0.1:{port}"]
  [[server.location]]
  path = "/"
  proxy_pass = "app"
  {location}

[upstream.app]
read_timeout = "500ms"
servers = [
  {{ addr = "{}", max_fails = 1, fail_timeout = "30s" }},
  {{ addr = "{}", max_fails = 1, fail_timeout = "30s" }},
]
"#,
        a.addr, b.addr
    );
    let vigil = TestVigil::start(&config).await;
    let addr = vigil.first_addr();
    (vigil, addr, a, b)
}

/// Both servers are still in the pool and serve ordinary requests.
async fn pool_intact(vigil: &TestVigil, a: &Backend, b: &Backend) {
    let pool = vigil.app.server.runtime().pools["app"].clone();
    assert_eq!(pool.available_count(), 2, "a server was taken out");
    let (a0, b0) = (a.requests(), b.requests());
    let mut conn = Conn::open(vigil.first_addr()).await;
    for _ in 0..6 {
        assert_eq!(conn.get("/ok").await.status, 200);
    }
    assert!(a.requests() > a0 && b.requests() > b0, "traffic not spread");
}

/// Writes `bytes`, then reads the answer until the server closes or
/// `wait` passes.
async fn exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Each body fault is tried both ways: read whole before a server is
/// picked (the default; past 64 KiB into a temporary file) and streamed
/// to a server as it comes (the path the issue's probe took).
const BUFFERING: [&str; 2] = ["", "request_buffering = false"];

#[tokio::test]
async fn a_bad_chunk_size_is_400_and_ejects_nobody() {
    // A bad size at once, and after a chunk larger than what is held in
    // memory.
    let late = format!(
        "POST /f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n20000\r\n{}\r\nG\r\nhello\r\n0\r\n\r\n",
        "x".repeat(0x20000)
    );
    let early =
        "POST /f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nG\r\nhello\r\n0\r\n\r\n";
    for location in BUFFERING {
        let (vigil, addr, a, b) = strict_pool_with("", location).await;
        for request in [early, &late, early, &late] {
            let reply = exchange(addr, request.as_bytes(), Duration::from_secs(3)).await;
            assert!(reply.starts_with("HTTP/1.1 400"), "{location}: {reply}");
        }
        pool_intact(&vigil, &a, &b).await;
    }
}

#[tokio::test]
async fn an_abort_mid_upload_ejects_nobody() {
    for location in BUFFERING {
        let (vigil, addr, a, b) = strict_pool_with("", location).await;
        for sent in [5_000, 100_000] {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n")
                .await
                .unwrap();
            s.write_all(&vec![b'x'; sent]).await.unwrap();
            // Long enough for vigil to open the upstream request (when it
            // streams) or the temporary file.
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(s);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        pool_intact(&vigil, &a, &b).await;
    }
}

#[tokio::test]
async fn a_stalled_body_is_408_and_ejects_nobody() {
    for location in BUFFERING {
        let (vigil, addr, a, b) =
            strict_pool_with("client_body_timeout = \"300ms\"", location).await;
        for sent in [10, 100_000] {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n")
                .await
                .unwrap();
            s.write_all(&vec![b'y'; sent]).await.unwrap();
            let mut out = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
            let reply = String::from_utf8_lossy(&out);
            assert!(
                reply.starts_with("HTTP/1.1 408"),
                "{location}, {sent}: {reply}"
            );
        }
        pool_intact(&vigil, &a, &b).await;
    }
}

/// `read_timeout = 500ms`, an upload taking three times that, streamed
/// (`request_buffering = false`) to a server that waits for it: the
/// timeout waits for the body, as nginx's proxy_read_timeout does. (With
/// buffering, the default, the server sees the body only once it is
/// whole: tests/request_buffering.rs.)
#[tokio::test]
async fn read_timeout_starts_after_a_slow_upload() {
    let (vigil, addr, a, b) = strict_pool_with("", "request_buffering = false").await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let (chunks, size) = (15, 10_000);
    s.write_all(
        format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            chunks * size
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let start = Instant::now();
    for _ in 0..chunks {
        s.write_all(&vec![b'y'; size]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let reply = String::from_utf8_lossy(&out);
    assert!(start.elapsed() > Duration::from_millis(1000));
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with(&"y".repeat(chunks * size)), "body lost");
    pool_intact(&vigil, &a, &b).await;
}

/// A slow small upload is read whole before a server is picked: no
/// upstream connection waits on the client meanwhile.
#[tokio::test]
async fn a_slow_small_upload_holds_no_upstream_connection() {
    let (vigil, addr, a, b) = strict_pool("").await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 10000\r\n\r\n",
    )
    .await
    .unwrap();
    for _ in 0..9 {
        s.write_all(&[b'z'; 1000]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(
        a.requests() + b.requests(),
        0,
        "a server is waiting on the upload"
    );
    s.write_all(&[b'z'; 1000]).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let reply = String::from_utf8_lossy(&out);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with(&"z".repeat(10_000)), "body lost");
    pool_intact(&vigil, &a, &b).await;
}

/// A vigil with `client_header_timeout = 400ms` in front of one backend.
async fn short_header_timeout() -> (TestVigil, SocketAddr, Backend) {
    let a = Backend::start("a").await;
    let port = free_port();
    let config = format!(
        r#"
[log]
access_log = "off"

[http]
client_header_timeout = "400ms"
max_header_size = "8k"

[[server]]
listen = ["127.0.0.1:{port}"]
  [[server.location]]
  path = "/"
  proxy_pass = "app"

[upstream.app]
servers = [{{ addr = "{}" }}]
"#,
        a.addr
    );
    let vigil = TestVigil::start(&config).await;
    let addr = vigil.first_addr();
    (vigil, addr, a)
}

/// Reads until the server closes; the time that took, if within `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((start + limit).into(), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn silent_connections_are_closed_after_client_header_timeout() {
    let (_vigil, addr, _a) = short_header_timeout().await;
    // Never a byte; the first bytes of the HTTP/2 preface (the protocol
    // is still unknown); a keep-alive connection gone quiet after one
    // request.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut preface = TcpStream::connect(addr).await.unwrap();
    preface.write_all(b"PRI * HT").await.unwrap();
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    for (name, s) in [
        ("silent", &mut silent),
        ("partial preface", &mut preface),
        ("idle keep-alive", &mut idle),
    ] {
        let took = closed_within(s, Duration::from_secs(5)).await;
        assert!(took.is_some(), "{name} connection still open after 5 s");
    }
}

/// vigil as its own process with 64 fds: silent connections exhaust
/// them; accept backs off and logs at most once a second, counts the
/// failures in /metrics, and serves again once the silent connections
/// are timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fd_exhaustion_backs_off_logs_sparsely_and_recovers() {
    let a = Backend::start("a").await;
    let port = free_port();
    let admin = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vigil.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[log]
access_log = "off"

[http]
client_header_timeout = "2s"
workers = 1

[admin]
listen = "127.0.0.1:{admin}"

[[server]]
listen = ["127.0.0.1:{port}"]
  [[server.location]]
  path = "/"
  proxy_pass = "app"

[upstream.app]
servers = [{{ addr = "{}" }}]
"#,
            a.addr
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("vigil.log")).unwrap();
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 64 && exec {} run -c {}",
            env!("CARGO_BIN_EXE_vigil"),
            config.display()
        ))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let start = Instant::now();
    while TcpStream::connect(admin).await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "vigil did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // More silent connections than vigil has fds: the kernel completes
    // them all (backlog), vigil cannot accept the rest.
    let mut silent = Vec::new();
    for _ in 0..100 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let text = std::fs::read_to_string(dir.path().join("vigil.log")).unwrap();
    let lines = text.matches("accept failed").count();
    assert!(
        (1..=3).contains(&lines),
        "{lines} accept-failure lines:\n{text}"
    );
    // Silent connections time out (2 s from accept), fds come back, and
    // the connections still queued are served: a client gets through.
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        exchange(
            addr,
            b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            Duration::from_secs(10),
        ),
    )
    .await
    .unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let metrics = exchange(
        admin,
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    let emfile = metrics
        .lines()
        .find(|l| l.starts_with("vigil_accept_errors_total{reason=\"emfile\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(emfile >= 1.0, "EMFILE not counted:\n{metrics}");
    drop(silent);
}

fn h2_frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags, 0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// PING and SETTINGS floods (CVE-2019-9512 / -9515 shaped) get the
/// connection closed; an ordinary HTTP/2 client is served meanwhile.
#[tokio::test]
async fn h2_ping_and_settings_floods_are_closed() {
    let (vigil, addr, _a) = short_header_timeout().await;
    for (kind, payload, label) in [(6u8, vec![0u8; 8], "ping"), (4u8, vec![], "settings")] {
        let counter = vigil
            .app
            .metrics()
            .http2_flood_closed
            .with_label_values(&[label]);
        let before = counter.get();
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(h2_frame(4, 0, &[]));
        for _ in 0..2000 {
            bytes.extend(h2_frame(kind, 0, &payload));
        }
        // vigil may close before it has read everything.
        let _ = s.write_all(&bytes).await;
        let took = closed_within(&mut s, Duration::from_secs(5)).await;
        assert!(took.is_some(), "{label} flood: connection still open");
        assert!(counter.get() > before, "{label} flood not counted");
        let r = support::client::get_h2(addr, "t", "/x").await;
        assert_eq!(r.status, 200);
    }
}

/// RFC 9112 §3.2 Host rules, 414 and 501, through a running vigil; the
/// backend sees only what vigil routed on.
#[tokio::test]
async fn host_target_and_coding_rules() {
    let (vigil, addr, a) = short_header_timeout().await;
    let ask = |bytes: &'static [u8]| exchange(addr, bytes, Duration::from_secs(3));
    for (input, want) in [
        (&b"GET /x HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n"[..], "HTTP/1.1 400"),
        (b"GET /x HTTP/1.1\r\nHost: t@evil\r\n\r\n", "HTTP/1.1 400"),
        // HTTP/1.1 without Host (HTTP/1.0 may omit it: below).
        (b"GET /x HTTP/1.1\r\n\r\n", "HTTP/1.1 400"),
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "HTTP/1.1 501",
        ),
    ] {
        let reply = ask(input).await;
        assert!(reply.starts_with(want), "{}: {reply}", String::from_utf8_lossy(input));
    }
    let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(10_000));
    let reply = exchange(addr, long.as_bytes(), Duration::from_secs(3)).await;
    assert!(reply.starts_with("HTTP/1.1 414"), "{reply}");
    assert_eq!(a.requests(), 0, "a refused request reached the backend");
    let reply = ask(b"GET /x HTTP/1.0\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.0 200"), "{reply}");
    // Absolute form: the target's host is routed on and forwarded.
    let reply =
        ask(b"GET http://public.test/x HTTP/1.1\r\nHost: admin.test\r\nConnection: close\r\n\r\n")
            .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"host\":\"public.test\""), "{reply}");
    assert!(!reply.contains("admin.test"), "{reply}");
    // HTTP/2: a host header that contradicts :authority.
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("http://shop.test/x")
        .header("host", "admin.test")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 400);
    drop(vigil);
}

/// `Upgrade` is passed on only where the location says `websocket =
/// true`; elsewhere a WebSocket server never sees the upgrade, so nothing
/// is tunnelled past the routing rules.
#[tokio::test]
async fn upgrade_is_tunnelled_only_where_the_location_opts_in() {
    let (ws_addr, _task) = support::backend::websocket_echo().await;
    let port = free_port();
    let config = format!(
        r#"
[log]
access_log = "off"

[[server]]
listen = ["127.0.0.1:{port}"]
  [[server.location]]
  path = "/ws"
  proxy_pass = "http://{ws_addr}"
  websocket = true
  [[server.location]]
  path = "/"
  proxy_pass = "http://{ws_addr}"
"#
    );
    let vigil = TestVigil::start(&config).await;
    let addr = vigil.first_addr();
    let handshake = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
    };
    let opted_in = exchange(
        addr,
        handshake("/ws").as_bytes(),
        Duration::from_millis(500),
    )
    .await;
    assert!(opted_in.starts_with("HTTP/1.1 101"), "{opted_in}");
    let other = exchange(addr, handshake("/x").as_bytes(), Duration::from_millis(500)).await;
    assert!(
        !other.starts_with("HTTP/1.1 101"),
        "tunnelled without opt-in: {other}"
    );
    assert!(other.starts_with("HTTP/1.1 "), "{other}");
}

/// Upstream response framing and size limits: both Content-Length and
/// Transfer-Encoding → Content-Length dropped; a 500 KiB head or 150
/// header fields → 502.
#[tokio::test]
async fn upstream_response_framing_and_head_limits() {
    let smuggle = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n".to_vec();
    let mut huge = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n".to_vec();
    huge.extend(format!("X-Big: {}\r\n\r\nok", "h".repeat(500 * 1024)).into_bytes());
    let mut many = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n".to_vec();
    for i in 0..150 {
        many.extend(format!("X-H{i}: v\r\n").into_bytes());
    }
    many.extend(b"\r\nok");
    let mut backends = Vec::new();
    for r in [smuggle, huge, many] {
        backends.push(support::backend::scripted(r).await);
    }
    let port = free_port();
    let config = format!(
        r#"
[log]
access_log = "off"

[[server]]
listen = ["127.0.0.1:{port}"]
  [[server.location]]
  path = "/both"
  proxy_pass = "http://{}"
  [[server.location]]
  path = "/huge"
  proxy_pass = "http://{}"
  [[server.location]]
  path = "/many"
  proxy_pass = "http://{}"
"#,
        backends[0].0, backends[1].0, backends[2].0
    );
    let vigil = TestVigil::start(&config).await;
    let addr = vigil.first_addr();
    let r = support::client::get(addr, "/both").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello world");
    assert_ne!(r.header("content-length"), Some("5"));
    for path in ["/huge", "/many"] {
        let r = support::client::get(addr, path).await;
        assert_eq!(r.status, 502, "{path}");
    }
}
