//! Idle HTTP/1 connections give their buffers back (issue 13): after a
//! second with nothing under way, a keep-alive connection waits on its
//! bare socket, and the next request gets a fresh hyper connection. Each
//! test checks that nothing a client sends is lost or misread across
//! that hand-over, and that the timeouts still hold.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::backend::{Backend, free_port};
use support::vigil::TestVigil;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn proxy(http: &str, location: &str) -> (TestVigil, SocketAddr, Backend) {
    let backend = Backend::start("a").await;
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
servers = [{{ addr = "{}" }}]
"#,
        backend.addr
    );
    let vigil = TestVigil::start(&config).await;
    let addr = vigil.first_addr();
    (vigil, addr, backend)
}

fn parked(vigil: &TestVigil) -> i64 {
    vigil.app.server.runtime().metrics.connections_parked.get()
}

/// Waits until `n` connections are parked. vigil checks every second and
/// parks a connection that was idle through a whole check interval, so
/// this takes 1-2 s; the bound is for a loaded machine.
async fn until_parked(vigil: &TestVigil, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(8);
    while parked(vigil) != n {
        assert!(
            Instant::now() < deadline,
            "{} connections parked, not {n}",
            parked(vigil)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads one response with a Content-Length body; returns its status
/// line and body.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("a content-length");
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                buf.drain(..end + 4 + len);
                let status = head.lines().next().unwrap_or_default().to_owned();
                return (status, body);
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline.into(), s.read(&mut chunk))
            .await
            .expect("a response within 5 s")
            .unwrap();
        assert!(
            n > 0,
            "closed before a whole response; got {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// How long until the server closes `s` (reading and dropping anything
/// it sends), at most `max`.
async fn closed_after(s: &mut TcpStream, max: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((start + max).into(), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn an_idle_connection_parks_and_serves_its_next_requests() {
    let (vigil, addr, backend) = proxy("", "").await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    for i in 0..2 {
        s.write_all(format!("GET /r{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let (status, body) = read_response(&mut s, &mut buf).await;
        assert!(status.ends_with("200 OK"), "{status}");
        assert!(body.contains(&format!("/r{i}")), "{body}");
        until_parked(&vigil, 1).await;
    }
    assert_eq!(backend.requests(), 2);
    drop(s);
    // A closed connection is not counted.
    until_parked(&vigil, 0).await;
}

#[tokio::test]
async fn a_busy_connection_is_not_parked() {
    let (vigil, addr, _backend) = proxy("", "").await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2500) {
        s.write_all(b"GET /busy HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        read_response(&mut s, &mut buf).await;
        assert_eq!(parked(&vigil), 0);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_pipelined_request_cut_by_parking_is_answered() {
    let (vigil, addr, backend) = proxy("", "").await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The second request's head is cut short: hyper holds its first half
    // when the connection parks; the second half comes after.
    s.write_all(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\nGET /second HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let (status, body) = read_response(&mut s, &mut buf).await;
    assert!(
        status.ends_with("200 OK") && body.contains("/first"),
        "{status} {body}"
    );
    until_parked(&vigil, 1).await;
    s.write_all(b"st: t\r\n\r\n").await.unwrap();
    let (status, body) = read_response(&mut s, &mut buf).await;
    assert!(
        status.ends_with("200 OK") && body.contains("/second"),
        "{status} {body}"
    );
    assert_eq!(backend.requests(), 2);
}

#[tokio::test]
async fn a_parked_connection_closes_after_client_header_timeout() {
    let (vigil, addr, _backend) = proxy("client_header_timeout = \"3s\"", "").await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    // Requests with parks between them: the idle timeout counts from the
    // last response, not from accept (the first request's deadline).
    for _ in 0..2 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        read_response(&mut s, &mut buf).await;
        until_parked(&vigil, 1).await;
    }
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let (status, _) = read_response(&mut s, &mut buf).await;
    assert!(status.ends_with("200 OK"), "{status}");
    let closed = closed_after(&mut s, Duration::from_secs(8)).await;
    let closed = closed.expect("the idle connection is closed");
    assert!(
        closed >= Duration::from_millis(2500) && closed < Duration::from_millis(4500),
        "closed {closed:?} after the response, not about 3 s"
    );
}

#[tokio::test]
async fn a_head_sent_slowly_across_parks_still_times_out() {
    let (vigil, addr, backend) = proxy("client_header_timeout = \"3s\"", "").await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    read_response(&mut s, &mut buf).await;
    // A slowloris after a first request: the next head begins and the
    // connection parks with half a head; the rest comes a byte at a
    // time. Parking must not restart the head's clock: the deadline runs
    // from before the park (about 2 s after it here), where the fresh
    // hyper connection's own header timeout would give 3 s.
    s.write_all(b"GET /slow HTTP/1.1\r\n").await.unwrap();
    until_parked(&vigil, 1).await;
    let parked_at = Instant::now();
    let mut closed = None;
    for b in b"Host: t\r\nX-A: b\r\nX-B: c\r\n".iter() {
        if s.write_all(&[*b]).await.is_err() {
            closed = Some(parked_at.elapsed());
            break;
        }
        let mut probe = [0u8; 256];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(300), s.read(&mut probe)).await
        {
            closed = Some(parked_at.elapsed());
            break;
        }
    }
    let closed = closed.expect("the slow head was not cut off");
    assert!(
        closed < Duration::from_millis(2600),
        "cut off {closed:?} after the park (client_header_timeout is 3 s, \
         about 1 s of it spent before the park)"
    );
    assert_eq!(
        backend.requests(),
        1,
        "the slow request reached the upstream"
    );
}

#[tokio::test]
async fn a_websocket_upgrade_after_parking_tunnels() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (ws_addr, _task) = support::backend::websocket_echo().await;
    let port = free_port();
    let config = format!(
        r#"
[log]
access_log = "off"

[[server]]
listen = ["127.0.0.1:{port}"]
  [[server.location]]
  path = "/"
  proxy_pass = "app"
  websocket = true

[upstream.app]
servers = [{{ addr = "{ws_addr}" }}]
"#
    );
    let vigil = TestVigil::start(&config).await;
    // Connected, then silent past the parking delay: the handshake is the
    // first thing the fresh hyper connection reads.
    let s = TcpStream::connect(vigil.first_addr()).await.unwrap();
    until_parked(&vigil, 1).await;
    let (mut ws, resp) = tokio_tungstenite::client_async(format!("ws://127.0.0.1:{port}/chat"), s)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::Text("after parking".into()))
        .await
        .unwrap();
    let echoed = ws.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "after parking");
    ws.close(None).await.unwrap();
}
