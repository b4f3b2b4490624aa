//! On-the-fly compression through a running vigil: real clients (curl
//! with --compressed, hyper over HTTP/1.1 and HTTP/2), a scripted upstream
//! that writes raw HTTP (so it can pause mid-stream or break its framing),
//! static files.

mod support;

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use support::backend::free_port;
use support::client::{self, Conn, request};
use support::vigil::TestVigil;

/// A JSON body large enough to be worth compressing.
fn json_body() -> String {
    let items: Vec<String> = (0..400)
        .map(|i| format!("{{\"id\":{i},\"name\":\"item {i}\",\"tags\":[\"a\",\"b\"]}}"))
        .collect();
    format!("[{}]", items.join(","))
}

/// An upstream that answers by path with raw HTTP/1.1:
/// - `/json`: 200 application/json with a strong ETag, Content-Length;
/// - `/encoded`: already gzip-encoded;
/// - `/notransform`: Cache-Control: no-transform;
/// - `/partial`: a 206;
/// - `/empty`: 204;
/// - `/png`: image/png;
/// - `/events`: server-sent events, chunked; the second event is written
///   only once `release` is notified;
/// - `/broken`: chunked with an invalid chunk size after some data.
struct Scripted {
    addr: SocketAddr,
    release: Arc<Notify>,
    _task: tokio::task::JoinHandle<()>,
}

impl Scripted {
    async fn start() -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let release = Arc::new(Notify::new());
        let r = release.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, r.clone()));
            }
        });
        Scripted {
            addr,
            release,
            _task: task,
        }
    }
}

async fn serve(mut stream: TcpStream, release: Arc<Notify>) {
    loop {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
        let json = json_body();
        let simple = |status: &str, headers: &str, body: &[u8]| {
            let mut out = format!(
                "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            out.extend_from_slice(body);
            out
        };
        let reply = match path.as_str() {
            "/json" => simple(
                "200 OK",
                "Content-Type: application/json\r\nETag: \"abc-1\"\r\nAccept-Ranges: bytes\r\n",
                json.as_bytes(),
            ),
            "/encoded" => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                std::io::Write::write_all(&mut e, json.as_bytes()).unwrap();
                simple(
                    "200 OK",
                    "Content-Type: application/json\r\nContent-Encoding: gzip\r\n",
                    &e.finish().unwrap(),
                )
            }
            "/notransform" => simple(
                "200 OK",
                "Content-Type: application/json\r\nCache-Control: no-transform\r\n",
                json.as_bytes(),
            ),
            "/partial" => simple(
                "206 Partial Content",
                "Content-Type: application/json\r\nContent-Range: bytes 0-99/5000\r\n",
                &json.as_bytes()[..100],
            ),
            "/empty" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
            "/png" => simple("200 OK", "Content-Type: image/png\r\n", &[0u8; 4000]),
            "/events" => {
                let start = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                             Transfer-Encoding: chunked\r\n\r\n";
                let event = |text: &str| {
                    let data = format!("data: {text}\n\n");
                    format!("{:x}\r\n{data}\r\n", data.len())
                };
                if stream
                    .write_all(format!("{start}{}", event("first")).as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
                release.notified().await;
                format!("{}0\r\n\r\n", event("second")).into_bytes()
            }
            "/broken" => {
                let data = "x".repeat(3000);
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{data}\r\nzz-not-a-size\r\n",
                    data.len()
                )
                .into_bytes()
            }
            _ => simple("404 Not Found", "Content-Type: text/plain\r\n", b"none\n"),
        };
        if stream.write_all(&reply).await.is_err() {
            return;
        }
        if path == "/broken" {
            // Leave the connection open and silent: vigil must not reuse
            // it, whatever this side does.
            tokio::time::sleep(Duration::from_secs(5)).await;
            return;
        }
    }
}

fn config(port: u16, upstream: SocketAddr, root: &str, extra: &str) -> String {
    format!(
        r#"
[log]
access_log = "off"

[http]
gzip = true
gzip_types = ["application/json", "text/event-stream", "text/css"]
{extra}

[[server]]
listen = ["127.0.0.1:{port}"]

  [[server.location]]
  path = "/static/"
  root = "{root}"

  [[server.location]]
  path = "/"
  proxy_pass = "http://{upstream}"
"#
    )
}

fn decode(coding: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => {
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .unwrap();
        }
        "br" => {
            brotli::Decompressor::new(data, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        "zstd" => out = zstd::stream::decode_all(data).unwrap(),
        other => panic!("unexpected coding {other}"),
    }
    out
}

async fn get(addr: SocketAddr, path: &str, accept: &str) -> client::Reply {
    let headers: Vec<(&str, &str)> = if accept.is_empty() {
        vec![]
    } else {
        vec![("accept-encoding", accept)]
    };
    client::send(addr, request("GET", path, &headers, "")).await
}

#[tokio::test]
async fn proxied_json_is_compressed_for_clients_that_ask() {
    let up = Scripted::start().await;
    let port = free_port();
    let vigil = TestVigil::start(&config(
        port,
        up.addr,
        "www",
        "brotli = true\nzstd = true\ngzip_comp_level = 6",
    ))
    .await;
    let addr = vigil.first_addr();
    let json = json_body();

    for (accept, coding) in [
        ("gzip", "gzip"),
        ("gzip, deflate, br", "br"),
        ("gzip, deflate, br, zstd", "zstd"),
        ("br;q=0.5, gzip", "gzip"),
    ] {
        let r = get(addr, "/json", accept).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), Some(coding), "{accept}");
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
        assert_eq!(r.header("etag"), Some("W/\"abc-1\""));
        assert!(r.header("content-length").is_none());
        assert!(r.header("accept-ranges").is_none());
        assert!(r.body.len() < json.len() / 3, "{coding}: {}", r.body.len());
        assert_eq!(decode(coding, &r.body), json.as_bytes(), "{coding}");
    }

    // No Accept-Encoding, or identity preferred: as sent, with Vary.
    for accept in ["", "identity", "gzip;q=0.2, identity"] {
        let r = get(addr, "/json", accept).await;
        assert!(r.header("content-encoding").is_none(), "{accept:?}");
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
        assert_eq!(r.header("etag"), Some("\"abc-1\""));
        assert_eq!(r.body, json.as_bytes());
    }

    // HTTP/2 clients too.
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("http://test{}", "/json"))
        .header("accept-encoding", "gzip")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(decode("gzip", &body), json.as_bytes());
}

#[tokio::test]
async fn responses_that_must_not_be_touched_are_not() {
    let up = Scripted::start().await;
    let port = free_port();
    let vigil = TestVigil::start(&config(port, up.addr, "www", "")).await;
    let addr = vigil.first_addr();

    let r = get(addr, "/encoded", "gzip").await;
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(
        decode("gzip", &r.body),
        json_body().as_bytes(),
        "encoded once only"
    );

    for path in ["/notransform", "/partial", "/png"] {
        let r = get(addr, path, "gzip, br, zstd").await;
        assert!(r.header("content-encoding").is_none(), "{path}");
        assert!(r.header("vary").is_none(), "{path}");
        assert!(r.header("content-length").is_some(), "{path}");
    }
    let r = get(addr, "/empty", "gzip").await;
    assert_eq!(r.status, 204);
    assert!(r.header("content-encoding").is_none());

    let r = client::send(
        addr,
        request("HEAD", "/json", &[("accept-encoding", "gzip")], ""),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-encoding").is_none());
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn curl_compressed_gets_the_same_bytes() {
    let up = Scripted::start().await;
    let port = free_port();
    let vigil = TestVigil::start(&config(port, up.addr, "www", "")).await;
    let addr = vigil.first_addr();
    let url = format!("http://{addr}/json");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-s", "--compressed", "-D", "/dev/stderr", &url])
            .output()
    })
    .await
    .unwrap();
    let Ok(out) = out else {
        eprintln!("SKIP: curl is not installed");
        return;
    };
    let head = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert_eq!(out.stdout, json_body().as_bytes());
}

#[tokio::test]
async fn server_sent_events_flow_while_the_upstream_pauses() {
    let up = Scripted::start().await;
    let port = free_port();
    let vigil = TestVigil::start(&config(port, up.addr, "www", "zstd = true\nbrotli = true")).await;
    let addr = vigil.first_addr();
    for accept in ["gzip", "br", "zstd"] {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get("/events")
            .header("host", "test")
            .header("accept-encoding", accept)
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.headers()["content-encoding"], accept);
        let mut body = resp.into_body();
        // The first event must arrive and decode before the upstream
        // sends anything more (it waits for us).
        let mut received = Vec::new();
        let first = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let frame = body.frame().await.unwrap().unwrap();
                received.extend_from_slice(frame.data_ref().unwrap());
                let text = decode_prefix(accept, &received);
                if text.contains("data: first\n\n") {
                    return text;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{accept}: the first event was held back"));
        assert_eq!(first, "data: first\n\n");
        up.release.notify_one();
        while let Some(frame) = body.frame().await {
            received.extend_from_slice(frame.unwrap().data_ref().map_or(&[][..], |d| d));
        }
        assert_eq!(
            decode(accept, &received),
            b"data: first\n\ndata: second\n\n",
            "{accept}"
        );
    }
}

/// Decodes what can be decoded of an unfinished stream.
fn decode_prefix(coding: &str, data: &[u8]) -> String {
    let mut reader: Box<dyn Read + '_> = match coding {
        "gzip" => Box::new(flate2::read::GzDecoder::new(data)),
        "br" => Box::new(brotli::Decompressor::new(data, 4096)),
        _ => Box::new(zstd::stream::read::Decoder::new(data).unwrap()),
    };
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = reader.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_broken_upstream_body_ends_that_response_and_nothing_else() {
    let up = Scripted::start().await;
    let port = free_port();
    let vigil = TestVigil::start(&config(port, up.addr, "www", "")).await;
    let addr = vigil.first_addr();
    let mut conn = Conn::open(addr).await;
    let broken = conn
        .send(request(
            "GET",
            "/broken",
            &[("accept-encoding", "gzip")],
            "",
        ))
        .await;
    assert!(
        broken.is_err(),
        "a truncated body must reach the client as an error, got {:?}",
        broken.map(|r| r.status)
    );
    // The pool still serves, on new connections, many times over.
    for _ in 0..5 {
        let r = get(addr, "/json", "gzip").await;
        assert_eq!(r.status, 200);
        assert_eq!(decode("gzip", &r.body), json_body().as_bytes());
    }
}

#[tokio::test]
async fn static_files_are_compressed_by_type() {
    let up = Scripted::start().await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let static_dir = dir.path().join("www/static");
    std::fs::create_dir_all(&static_dir).unwrap();
    let css = "body { color: red; }\n".repeat(20_000); // 420 KB: streamed
    std::fs::write(static_dir.join("app.css"), &css).unwrap();
    std::fs::write(static_dir.join("small.css"), "a { b: c }\n".repeat(50)).unwrap();
    std::fs::write(static_dir.join("pic.png"), vec![7u8; 300_000]).unwrap();
    let vigil = TestVigil::start_in(dir, &config(port, up.addr, "www", "")).await;
    let addr = vigil.first_addr();

    for path in ["/static/app.css", "/static/small.css"] {
        let r = get(addr, path, "gzip").await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{path}");
        let etag = r.header("etag").unwrap();
        assert!(etag.starts_with("W/\""), "{etag}");
        let want = std::fs::read(vigil.dir.path().join(format!("www{path}"))).unwrap();
        assert_eq!(decode("gzip", &r.body), want, "{path}");
        // The weak ETag revalidates.
        let again = client::send(
            addr,
            request(
                "GET",
                path,
                &[("accept-encoding", "gzip"), ("if-none-match", etag)],
                "",
            ),
        )
        .await;
        assert_eq!(again.status, 304, "{path}");
    }
    // Not a listed type: sent as is (by sendfile on this plain connection).
    let r = get(addr, "/static/pic.png", "gzip").await;
    assert!(r.header("content-encoding").is_none());
    assert_eq!(r.body.len(), 300_000);
    assert!(r.body.iter().all(|&b| b == 7));
    // A range is a range of the file itself.
    let r = client::send(
        addr,
        request(
            "GET",
            "/static/app.css",
            &[("accept-encoding", "gzip"), ("range", "bytes=0-9")],
            "",
        ),
    )
    .await;
    assert_eq!(r.status, 206);
    assert!(r.header("content-encoding").is_none());
    assert_eq!(&r.body[..], &css.as_bytes()[..10]);
}

#[tokio::test]
async fn compression_keys_are_validated_with_file_and_line() {
    let text = r#"
[[server]]
listen = ["127.0.0.1:1"]
gzip = true
gzip_comp_level = 12

  [[server.location]]
  path = "/"
  return = { status = 200 }
  gzip_types = ["json"]
"#;
    let err = vigil::config::Config::parse(text, std::path::Path::new("v.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("v.toml:5: server[0].gzip_comp_level: 12 is not a level from 1 to 9"),
        "{err}"
    );
    assert!(
        err.contains("v.toml:10: server[0].location[0].gzip_types"),
        "{err}"
    );
}
