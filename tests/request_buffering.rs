//! Request bodies are read whole before a server is picked (nginx's
//! `proxy_request_buffering on`): in memory up to
//! `client_body_buffer_size`, past it in an unlinked temporary file. Each
//! test drives a running vigil with real uploads and checks what reaches
//! the backend, when, and that the temporary directory stays empty.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use support::backend::{Backend, free_port};
use support::vigil::TestVigil;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// vigil in front of `servers`, large bodies spooled to `temp`, 16 KiB
/// held in memory. One failure takes a server out for 30 s, so a fault
/// wrongly blamed on a server shows.
async fn vigil(temp: &Path, location: &str, upstream: &str, servers: &[&Backend]) -> TestVigil {
    vigil_with(
        temp,
        location,
        upstream,
        servers,
        "max_fails = 1, fail_timeout = \"30s\"",
    )
    .await
}

async fn vigil_with(
    temp: &Path,
    location: &str,
    upstream: &str,
    servers: &[&Backend],
    server_options: &str,
) -> TestVigil {
    let port = free_port();
    let servers: Vec<String> = servers
        .iter()
        .map(|b| format!("{{ addr = \"{}\", {server_options} }}", b.addr))
        .collect();
    let config = format!(
        r#"
[log]
access_log = "off"

[http]
client_max_body_size = "10m"
client_body_buffer_size = "16k"
client_body_temp_path = "{temp}"

[[server]]
listen = ["127.0.0.1:{port}"]
  [[server.location]]
  path = "/"
  proxy_pass = "app"
  {location}

[upstream.app]
{upstream}
servers = [{servers}]
"#,
        temp = temp.display(),
        servers = servers.join(", "),
    );
    TestVigil::start(&config).await
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Sends a `Content-Length` upload of `body` in `pieces`, pausing between
/// them, calling `between` after each piece but the last.
async fn slow_upload(
    addr: SocketAddr,
    method: &str,
    body: &[u8],
    pieces: usize,
    mut between: impl FnMut(usize),
) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let size = body.len().div_ceil(pieces);
    let chunks: Vec<&[u8]> = body.chunks(size).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        s.write_all(chunk).await.unwrap();
        if i + 1 < chunks.len() {
            tokio::time::sleep(Duration::from_millis(60)).await;
            between(i);
        }
    }
    s
}

/// The whole answer, as (head, body).
async fn answer(mut s: TcpStream) -> (String, Vec<u8>) {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("no answer within 10 s")
        .unwrap();
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no response head");
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    (head, out[split + 4..].to_vec())
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// The issue's slow upload (1.2 MB at a steady pace): the server sees
/// nothing until the last byte is in, then gets it whole; the body never
/// shows in the temporary directory.
#[tokio::test]
async fn a_large_slow_upload_reaches_the_server_whole_once_it_has_arrived() {
    let temp = tempfile::tempdir().unwrap();
    let backend = Backend::start("a").await;
    let vigil = vigil(temp.path(), "", "", &[&backend]).await;
    let body = payload(1_200_000);
    let s = slow_upload(vigil.first_addr(), "POST", &body, 12, |_| {
        assert_eq!(backend.requests(), 0, "the server waits on the upload");
        assert_eq!(entries(temp.path()), 0, "a named file was left visible");
    })
    .await;
    let (head, echoed) = answer(s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(echoed.len(), body.len());
    assert!(echoed == body, "the body changed on its way");
    assert_eq!(backend.requests(), 1);
    assert_eq!(entries(temp.path()), 0);
    let metrics = &vigil.app.server.runtime().metrics;
    assert_eq!(metrics.request_bodies_in_file.get(), 1);
    assert_eq!(metrics.request_bodies_in_memory.get(), 0);
}

/// Many slow uploads at once share the upstream's keep-alive connections:
/// each reaches the server only when whole, so they do not each pin one.
#[tokio::test]
async fn concurrent_slow_uploads_do_not_each_hold_an_upstream_request() {
    let temp = tempfile::tempdir().unwrap();
    let backend = Backend::start("a").await;
    let vigil = vigil(temp.path(), "", "", &[&backend]).await;
    let addr = vigil.first_addr();
    let body = payload(100_000);
    let uploads: Vec<_> = (0..20)
        .map(|_| {
            let body = body.clone();
            tokio::spawn(
                async move { answer(slow_upload(addr, "PUT", &body, 5, |_| ()).await).await },
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(backend.requests(), 0, "a server is waiting on an upload");
    for u in uploads {
        let (head, echoed) = u.await.unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(echoed == body);
    }
    assert_eq!(backend.requests(), 20);
}

/// A chunked upload held whole goes upstream with its length (nginx does
/// the same): servers that refuse chunked requests take it.
#[tokio::test]
async fn a_chunked_upload_goes_upstream_with_a_content_length() {
    let temp = tempfile::tempdir().unwrap();
    let backend = Backend::start("a").await;
    let vigil = vigil(temp.path(), "", "", &[&backend]).await;
    for len in [1_000, 200_000] {
        let mut s = TcpStream::connect(vigil.first_addr()).await.unwrap();
        s.write_all(
            b"POST /describe HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .await
        .unwrap();
        for chunk in payload(len).chunks(30_000) {
            s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await
                .unwrap();
            s.write_all(chunk).await.unwrap();
            s.write_all(b"\r\n").await.unwrap();
        }
        s.write_all(b"0\r\n\r\n").await.unwrap();
        let (head, body) = answer(s).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(seen["body_len"], len);
        assert_eq!(seen["headers"]["content-length"], len.to_string());
        assert!(seen["headers"].get("transfer-encoding").is_none(), "{seen}");
    }
    // 1,000 bytes stayed in memory, 200,000 went to a file.
    let metrics = &vigil.app.server.runtime().metrics;
    assert_eq!(metrics.request_bodies_in_memory.get(), 1);
    assert_eq!(metrics.request_bodies_in_file.get(), 1);
}

/// `request_buffering = false` (nginx `proxy_request_buffering off`): the
/// server gets the request while the client is still sending, as
/// streaming applications need.
#[tokio::test]
async fn request_buffering_off_streams_the_body_as_it_comes() {
    let temp = tempfile::tempdir().unwrap();
    let backend = Backend::start("a").await;
    let vigil = vigil(temp.path(), "request_buffering = false", "", &[&backend]).await;
    let body = payload(300_000);
    let mut seen_midway = false;
    let s = slow_upload(vigil.first_addr(), "POST", &body, 10, |i| {
        if i >= 3 && backend.requests() == 1 {
            seen_midway = true;
        }
    })
    .await;
    assert!(seen_midway, "the body did not stream");
    let (head, echoed) = answer(s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(echoed == body);
}

/// A body vigil holds can be sent again: a PUT the first server fails
/// with a listed status goes whole to the next one (nginx does this with
/// request buffering on); a POST is not sent twice.
#[tokio::test]
async fn a_held_body_is_sent_again_to_the_next_server() {
    let temp = tempfile::tempdir().unwrap();
    let failing = Backend::always("bad", 502).await;
    let good = Backend::start("good").await;
    let vigil = vigil_with(
        temp.path(),
        "",
        "next_upstream = [\"error\", \"timeout\", \"http_502\"]",
        &[&failing, &good],
        "max_fails = 0",
    )
    .await;
    // In memory, and spooled. Round robin puts the failing server first
    // for at least one of two requests in a row.
    for len in [5_000, 300_000] {
        let failed_before = failing.requests();
        for _ in 0..2 {
            let body = payload(len);
            let (head, echoed) =
                answer(slow_upload(vigil.first_addr(), "PUT", &body, 2, |_| ()).await).await;
            assert!(head.starts_with("HTTP/1.1 200"), "{len}: {head}");
            assert!(echoed == body, "{len}: the retried body differs");
        }
        assert!(failing.requests() > failed_before, "{len}: no retry tested");
    }
    let before = good.requests() + failing.requests();
    let (head, _) =
        answer(slow_upload(vigil.first_addr(), "POST", &payload(300_000), 2, |_| ()).await).await;
    assert!(head.starts_with("HTTP/1.1 "), "{head}");
    assert_eq!(
        good.requests() + failing.requests() - before,
        1,
        "POST sent twice"
    );
}

/// The temporary directory vanished after start: a large upload gets 500
/// (logged), no server is blamed, and bodies held in memory still pass.
#[tokio::test]
async fn a_temp_dir_that_vanished_is_500_and_ejects_nobody() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("spool");
    std::fs::create_dir(&dir).unwrap();
    let backend = Backend::start("a").await;
    let vigil = vigil(&dir, "", "", &[&backend]).await;
    std::fs::remove_dir(&dir).unwrap();
    let (head, _) =
        answer(slow_upload(vigil.first_addr(), "POST", &payload(100_000), 1, |_| ()).await).await;
    assert!(head.starts_with("HTTP/1.1 500"), "{head}");
    assert_eq!(backend.requests(), 0);
    let pool = vigil.app.server.runtime().pools["app"].clone();
    assert_eq!(pool.available_count(), 1, "the server was blamed");
    let body = payload(10_000);
    let (head, echoed) =
        answer(slow_upload(vigil.first_addr(), "POST", &body, 1, |_| ()).await).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(echoed == body);
}

/// A client that gives up halfway through a spooled upload costs the
/// servers nothing: no request reaches them.
#[tokio::test]
async fn an_upload_abandoned_halfway_never_reaches_a_server() {
    let temp = tempfile::tempdir().unwrap();
    let backend = Backend::start("a").await;
    let vigil = vigil(temp.path(), "", "", &[&backend]).await;
    let mut s = TcpStream::connect(vigil.first_addr()).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 500000\r\n\r\n")
        .await
        .unwrap();
    s.write_all(&payload(200_000)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(s);
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(300) {
        assert_eq!(backend.requests(), 0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(entries(temp.path()), 0);
}

/// `Expect: 100-continue` (curl sends it for bodies over 1 MiB): vigil
/// answers 100 itself when it starts reading, takes the body whole, and
/// the server's own interim 100, if it sends one, is not relayed.
#[tokio::test]
async fn an_upload_that_expects_100_continue_is_held_too() {
    let temp = tempfile::tempdir().unwrap();
    let backend = Backend::start("a").await;
    let vigil = vigil(temp.path(), "", "", &[&backend]).await;
    let body = payload(300_000);
    let mut s = TcpStream::connect(vigil.first_addr()).await.unwrap();
    s.write_all(
        format!(
            "PUT /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut interim = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut interim))
        .await
        .expect("no 100 Continue")
        .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    assert_eq!(backend.requests(), 0);
    s.write_all(&body).await.unwrap();
    let (head, echoed) = answer(s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(echoed == body);
}
