//! Large static files, byte for byte. On plain HTTP/1.1 connections these
//! go out with `sendfile(2)` underneath hyper (see `proxy::sendfile`), so
//! the tests check what a client actually receives: whole files, ranges
//! and multipart ranges mixed on one keep-alive connection, pipelined
//! responses drained slowly (many partial writes), HTTP/2 (which does not
//! use sendfile), and a file truncated mid-response (the connection must
//! be cut short, never padded).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::client::{self, Conn, request};
use support::vigil::TestVigil;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIG: usize = 5 * 1024 * 1024 + 12_345;

/// Bytes that differ from position to position, so a misplaced or zeroed
/// range cannot pass for the right one.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

struct Site {
    vigil: TestVigil,
    addr: SocketAddr,
    big: Vec<u8>,
    other: Vec<u8>,
}

async fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let big = pattern(BIG, 7);
    let other = pattern(700_001, 99);
    std::fs::write(www.join("big.bin"), &big).unwrap();
    std::fs::write(www.join("other.bin"), &other).unwrap();
    let port = support::backend::free_port();
    let config = format!(
        r#"
[log]
access_log = "off"

[[server]]
listen = ["127.0.0.1:{port}"]
root = "www"
"#
    );
    let vigil = TestVigil::start_in(dir, &config).await;
    let addr = vigil.first_addr();
    Site {
        vigil,
        addr,
        big,
        other,
    }
}

fn same(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        let wrong = got[i..]
            .iter()
            .zip(&want[i..])
            .take_while(|(a, b)| a != b)
            .count();
        let zeros = got[i..i + wrong].iter().all(|b| *b == 0);
        panic!(
            "{what}: {wrong} wrong bytes from offset {i} (all zero: {zeros}) of {}",
            got.len()
        );
    }
}

#[tokio::test]
async fn whole_files_ranges_and_heads_mixed_on_one_connection() {
    let s = site().await;
    let mut conn = Conn::open(s.addr).await;
    for round in 0..3 {
        let r = conn.get("/big.bin").await;
        assert_eq!(r.status, 200);
        same(&format!("round {round} big"), &r.body, &s.big);

        let head = conn
            .send(request("HEAD", "/big.bin", &[], ""))
            .await
            .unwrap();
        assert_eq!(head.header("content-length"), Some(&*BIG.to_string()));
        assert!(head.body.is_empty());

        let r = range(&mut conn, "bytes=1000-300999").await;
        assert_eq!(r.status, 206);
        same("single range", &r.body, &s.big[1000..301_000]);

        // A suffix range that crosses several sendfile chunks.
        let r = range(&mut conn, "bytes=-2000000").await;
        assert_eq!(r.status, 206);
        same("suffix range", &r.body, &s.big[BIG - 2_000_000..]);

        let r = range(&mut conn, "bytes=0-99,4000000-4399999").await;
        assert_eq!(r.status, 206);
        let body = &r.body[..];
        let first = find(body, &s.big[..100]).expect("first part present");
        let second = find(body, &s.big[4_000_000..4_400_000]).expect("second part present");
        assert!(first < second, "parts in the order asked");

        let r = conn.get("/other.bin").await;
        same("other", &r.body, &s.other);
    }
    assert!(!conn.is_closed());
    drop(s.vigil);
}

async fn range(conn: &mut Conn, spec: &str) -> client::Reply {
    conn.send(request("GET", "/big.bin", &[("range", spec)], ""))
        .await
        .unwrap()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one HTTP/1.1 response with a Content-Length from `stream`, in
/// small pieces with pauses (so the server meets a full socket buffer
/// again and again), and returns its body.
async fn read_slowly(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Vec<u8> {
    let mut piece = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = find(pending, b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut piece).await.unwrap();
        assert!(n > 0, "closed before the response head");
        pending.extend_from_slice(&piece[..n]);
    };
    let head = String::from_utf8_lossy(&pending[..head_end]).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("content-length")
        .trim()
        .parse()
        .unwrap();
    let mut body = pending.split_off(head_end);
    pending.clear();
    let mut reads = 0;
    while body.len() < len {
        let n = stream.read(&mut piece).await.unwrap();
        assert!(n > 0, "closed after {} of {len} body bytes", body.len());
        body.extend_from_slice(&piece[..n]);
        reads += 1;
        if reads % 8 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // Whatever follows belongs to the next pipelined response.
    *pending = body.split_off(len);
    body
}

#[tokio::test]
async fn pipelined_responses_read_slowly_arrive_intact() {
    let s = site().await;
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    // A small receive buffer makes the server's writes partial.
    socket2::SockRef::from(&stream)
        .set_recv_buffer_size(16 * 1024)
        .unwrap();
    stream
        .write_all(
            b"GET /big.bin HTTP/1.1\r\nhost: t\r\n\r\n\
              GET /other.bin HTTP/1.1\r\nhost: t\r\n\r\n\
              GET /big.bin HTTP/1.1\r\nhost: t\r\n\r\n",
        )
        .await
        .unwrap();
    let mut pending = Vec::new();
    let got = tokio::time::timeout(Duration::from_secs(60), async {
        let a = read_slowly(&mut stream, &mut pending).await;
        let b = read_slowly(&mut stream, &mut pending).await;
        let c = read_slowly(&mut stream, &mut pending).await;
        (a, b, c)
    })
    .await
    .expect("three responses within a minute");
    same("first big", &got.0, &s.big);
    same("other", &got.1, &s.other);
    same("second big", &got.2, &s.big);
}

#[tokio::test]
async fn http2_large_file_is_intact() {
    let s = site().await;
    let r = client::get_h2(s.addr, "t", "/big.bin").await;
    assert_eq!(r.status, 200);
    same("h2 big", &r.body, &s.big);
}

#[tokio::test]
async fn clients_that_leave_midway_do_not_disturb_the_next() {
    let s = site().await;
    for _ in 0..5 {
        let mut stream = TcpStream::connect(s.addr).await.unwrap();
        stream
            .write_all(b"GET /big.bin HTTP/1.1\r\nhost: t\r\n\r\n")
            .await
            .unwrap();
        let mut some = [0u8; 4096];
        let _ = stream.read(&mut some).await.unwrap();
        drop(stream);
    }
    let r = client::get(s.addr, "/big.bin").await;
    same("after aborted clients", &r.body, &s.big);
}

/// Sends `GET path` on a connection with a small receive buffer and
/// returns it once the response head has arrived, with what was read.
async fn start_slow_download(addr: SocketAddr, path: &str) -> (TcpStream, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    socket2::SockRef::from(&stream)
        .set_recv_buffer_size(16 * 1024)
        .unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nhost: t\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut piece = [0u8; 8192];
    while find(&received, b"\r\n\r\n").is_none() {
        let n = stream.read(&mut piece).await.unwrap();
        assert!(n > 0, "closed before the response head");
        received.extend_from_slice(&piece[..n]);
    }
    (stream, received)
}

/// Reads until the server closes (or `body_limit` body bytes arrived) and
/// returns the body part of everything received.
async fn finish_download(
    mut stream: TcpStream,
    mut received: Vec<u8>,
    body_limit: usize,
) -> Vec<u8> {
    let body_at = find(&received, b"\r\n\r\n").unwrap() + 4;
    let limit = body_at.saturating_add(body_limit);
    let mut piece = [0u8; 64 * 1024];
    let read_rest = async {
        while received.len() < limit {
            match stream.read(&mut piece).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&piece[..n]),
            }
        }
    };
    let ended = tokio::time::timeout(Duration::from_secs(30), read_rest).await;
    assert!(
        ended.is_ok(),
        "the download hangs after {} bytes",
        received.len()
    );
    received.split_off(body_at)
}

/// How deploy tools replace files: write a new one, rename it over the
/// old. A response already under way keeps sending the old file whole
/// (its pages belong to the old inode); the next request gets the new one.
#[tokio::test]
async fn a_file_replaced_by_rename_mid_response_is_sent_whole() {
    let s = site().await;
    let www = s.vigil.dir.path().join("www");
    let old = pattern(24 * 1024 * 1024, 3);
    std::fs::write(www.join("release.bin"), &old).unwrap();
    let (stream, received) = start_slow_download(s.addr, "/release.bin").await;

    let new = pattern(3 * 1024 * 1024, 4);
    std::fs::write(www.join("release.bin.tmp"), &new).unwrap();
    std::fs::rename(www.join("release.bin.tmp"), www.join("release.bin")).unwrap();

    // Keep-alive: the server does not close, so read exactly the body.
    let body = finish_download(stream, received, old.len()).await;
    same("old file, in flight during the rename", &body, &old);
    let r = client::get(s.addr, "/release.bin").await;
    same("new file, next request", &r.body, &new);
}

/// Truncating a file in place while it is being sent (which no deploy
/// should do: see the rename test) cannot meet the Content-Length already
/// promised: the connection must end short, not hang, and everything up
/// to the new end of the file is the file. (Bytes past that point may be
/// stale or zero: with sendfile, as with nginx's, the socket holds
/// references to page-cache pages that the truncation then clears.)
#[tokio::test]
async fn a_file_truncated_mid_response_cuts_the_connection_short() {
    let s = site().await;
    // Larger than any socket buffers can swallow before the truncation.
    let path = s.vigil.dir.path().join("www/huge.bin");
    let huge = pattern(32 * 1024 * 1024, 3);
    std::fs::write(&path, &huge).unwrap();
    let (stream, received) = start_slow_download(s.addr, "/huge.bin").await;
    let kept = 1024 * 1024;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(kept as u64)
        .unwrap();
    let body = finish_download(stream, received, usize::MAX).await;
    assert!(
        body.len() < huge.len(),
        "a short file cannot fill the promised length"
    );
    let checked = body.len().min(kept);
    same("up to the new end", &body[..checked], &huge[..checked]);
}
