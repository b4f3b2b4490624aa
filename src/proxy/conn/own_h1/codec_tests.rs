use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty, Full, StreamBody};

use super::*;

fn parse(raw: &[u8]) -> (Head, BytesMut) {
    let mut buf = BytesMut::from(raw);
    let head = parse_head(&mut buf);
    (head, buf)
}

fn taken(raw: &[u8]) -> (Request<RequestBody>, RequestFacts, BytesMut) {
    match parse(raw) {
        (Head::Taken(r, f), rest) => (r, f, rest),
        (other, _) => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
    }
}

#[test]
fn a_plain_head_is_taken_and_split_off() {
    let (req, facts, rest) = taken(
        b"GET /a/b?c=d HTTP/1.1\r\nHost: example.test\r\nX-Odd: caf\xc3\xa9 \x80\r\nX-Two: 1\r\nx-two: 2\r\n\r\nGET /next",
    );
    assert_eq!(req.method(), Method::GET);
    assert_eq!(req.uri(), "/a/b?c=d");
    assert_eq!(req.version(), Version::HTTP_11);
    assert_eq!(req.headers()["host"], "example.test");
    assert_eq!(req.headers()["x-odd"].as_bytes(), b"caf\xc3\xa9 \x80");
    let twos: Vec<_> = req.headers().get_all("x-two").iter().collect();
    assert_eq!(twos, ["1", "2"]);
    assert!(facts.keep_alive && !facts.head);
    // A pipelined request's start stays.
    assert_eq!(&rest[..], b"GET /next");
    assert!(http_body::Body::is_end_stream(req.body()));
}

#[test]
fn incomplete_heads_wait_for_more() {
    for raw in [
        &b""[..],
        b"G",
        b"GET / HTTP/1.1\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\r",
    ] {
        let (head, rest) = parse(raw);
        assert!(matches!(head, Head::Partial), "{raw:?}: {head:?}");
        assert_eq!(&rest[..], raw, "bytes kept");
    }
}

/// Everything but the plainest request goes to hyper, bytes untouched:
/// its framing rules and its refusals stay the only ones.
#[test]
fn bodies_upgrades_and_malformed_heads_are_hyper_s() {
    let many_fields: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\n{many_fields}\r\n");
    for raw in [
        &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
        b"NOT A REQUEST\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHo st: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\x01b\r\n\r\n",
        b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
        b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
        many.as_bytes(),
    ] {
        let (head, rest) = parse(raw);
        assert!(
            matches!(head, Head::Hyper),
            "{:?}: {head:?}",
            String::from_utf8_lossy(raw)
        );
        assert_eq!(&rest[..], raw, "bytes untouched");
    }
}

/// hyper's keep-alive rule for requests.
/// hyper (httparse) takes bare LF line ends; so does this path.
#[test]
fn bare_line_feeds_are_taken_as_hyper_takes_them() {
    let (req, _, rest) = taken(b"GET /x HTTP/1.1\nHost: a\n\nnext");
    assert_eq!(req.headers()["host"], "a");
    assert_eq!(&rest[..], b"next");
}

#[test]
fn keep_alive_follows_the_version_and_connection_fields() {
    for (raw, keep) in [
        (&b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..], true),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            false,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: CLOSE\r\n\r\n",
            false,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: te, close\r\n\r\n",
            false,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n",
            true,
        ),
        (b"GET / HTTP/1.0\r\nHost: a\r\n\r\n", false),
        (
            b"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
            true,
        ),
        (
            b"GET / HTTP/1.0\r\nHost: a\r\nConnection: Keep-Alive\r\n\r\n",
            true,
        ),
        (
            b"GET / HTTP/1.0\r\nHost: a\r\nConnection: close, keep-alive\r\n\r\n",
            false,
        ),
        (
            b"GET / HTTP/1.0\r\nHost: a\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
            false,
        ),
        (
            b"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
            false,
        ),
    ] {
        let (_, facts, _) = taken(raw);
        assert_eq!(facts.keep_alive, keep, "{:?}", String::from_utf8_lossy(raw));
    }
    let (_, facts, _) = taken(b"HEAD / HTTP/1.0\r\nHost: a\r\n\r\n");
    assert!(facts.head);
    assert_eq!(facts.version, Version::HTTP_10);
}

/// The response bodies of the encoding matrix, by what hyper learns of
/// them before reading.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Ended,
    Known(usize),
    Unknown(usize),
}

type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn body(shape: Shape) -> (TestBody, BodySize) {
    match shape {
        Shape::Ended => (Empty::new().boxed(), BodySize::Ended),
        Shape::Known(n) => (
            Full::new(Bytes::from(vec![b'x'; n])).boxed(),
            BodySize::Known(n as u64),
        ),
        Shape::Unknown(n) => {
            let chunk = Ok::<_, Infallible>(http_body::Frame::data(Bytes::from(vec![b'y'; n])));
            (
                StreamBody::new(futures_util::stream::iter([chunk])).boxed(),
                BodySize::Unknown,
            )
        }
    }
}

/// The response head hyper's server writes for `request` and a response
/// built by `make`, with its `Date` value blanked.
async fn hyper_head(
    request: &[u8],
    make: impl Fn() -> Response<TestBody> + Send + Sync + 'static,
) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (client, server) = tokio::io::duplex(1 << 16);
    let make = std::sync::Arc::new(make);
    let service = hyper::service::service_fn(move |_req| {
        let make = make.clone();
        async move { Ok::<_, Infallible>(make()) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(server), service);
    let served = tokio::spawn(conn);
    let (mut rd, mut wr) = tokio::io::split(client);
    wr.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = rd.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "hyper closed before a head: {:?}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
    }
    served.abort();
    let end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    out.truncate(end);
    blank_date(&out)
}

/// hyper appends the `, chunked` a non-chunked `transfer-encoding` needs
/// to whichever field line follows it as well (its flag for it is not
/// reset): `connection: close, chunked`. Here it goes where it belongs.
fn without_leaked_chunked(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    text.split("\r\n")
        .map(|line| {
            if line.starts_with("transfer-encoding: ") {
                line.to_string()
            } else {
                line.strip_suffix(", chunked").unwrap_or(line).to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
        .into_bytes()
}

fn blank_date(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    text.split("\r\n")
        .map(|line| {
            if line.to_ascii_lowercase().starts_with("date: ") {
                "date: -".to_string()
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
        .into_bytes()
}

/// Every combination of request version, method, keep-alive, status,
/// response fields and body shape: the head written here is byte for
/// byte the one hyper writes (Date aside), and the framing agrees with it.
#[tokio::test]
async fn response_heads_match_hyper_s() {
    let requests: [&[u8]; 6] = [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
        b"HEAD / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
    ];
    let statuses = [200u16, 201, 204, 301, 304, 404, 418, 500, 599];
    type Fields = &'static [(&'static str, &'static str)];
    let field_sets: [Fields; 8] = [
        &[],
        &[("content-type", "text/plain"), ("x-a", "1"), ("x-a", "2")],
        &[("connection", "close")],
        &[("connection", "keep-alive")],
        &[("connection", "x-hop"), ("connection", "close")],
        &[("date", "Thu, 01 Jan 1970 00:00:00 GMT")],
        &[("transfer-encoding", "chunked")],
        &[("transfer-encoding", "gzip")],
    ];
    let shapes = [Shape::Ended, Shape::Known(5), Shape::Unknown(3)];
    let reasons = [None, Some("Fine Thanks")];
    let mut checked = 0;
    for request in requests {
        let (_, facts, _) = taken(request);
        for (status, reason) in statuses.into_iter().flat_map(|s| reasons.map(|r| (s, r))) {
            for fields in field_sets {
                for shape in shapes {
                    let make = move || {
                        let mut r = Response::new(body(shape).0);
                        *r.status_mut() = StatusCode::from_u16(status).unwrap();
                        if let Some(reason) = reason {
                            r.extensions_mut()
                                .insert(hyper::ext::ReasonPhrase::from_static(reason.as_bytes()));
                        }
                        for (k, v) in fields {
                            r.headers_mut().append(*k, HeaderValue::from_static(v));
                        }
                        r
                    };
                    let mut expected = hyper_head(request, make).await;
                    if fields
                        .iter()
                        .any(|(k, v)| *k == "transfer-encoding" && *v != "chunked")
                    {
                        expected = without_leaked_chunked(&expected);
                    }
                    let (parts, size) = {
                        let (p, b) = make().into_parts();
                        let size = body(shape).1;
                        drop(b);
                        (p, size)
                    };
                    let mut ours = Vec::new();
                    let encoded =
                        encode_head(&mut ours, facts, facts.keep_alive, parts, size, b"-")
                            .unwrap_or_else(|_| panic!("refused: {status} {fields:?} {shape:?}"));
                    let ours = blank_date(&ours);
                    assert_eq!(
                        String::from_utf8_lossy(&ours),
                        String::from_utf8_lossy(&expected),
                        "request {:?}, status {status} {reason:?}, fields {fields:?}, body {shape:?}",
                        String::from_utf8_lossy(request)
                    );
                    let text = String::from_utf8_lossy(&ours).to_ascii_lowercase();
                    match encoded.framing {
                        Framing::Chunked => assert!(text.contains("transfer-encoding:")),
                        Framing::Length(n) => {
                            assert!(text.contains(&format!("content-length: {n}\r\n")), "{text}")
                        }
                        Framing::UntilClose => assert!(encoded.last),
                        Framing::Empty => {}
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 6 * 9 * 2 * 8 * 3);
}

#[test]
fn conflicting_lengths_are_refused() {
    let (_, facts, _) = taken(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    let head = |fields: &[(&'static str, &'static str)]| {
        let mut r = Response::new(());
        for (k, v) in fields {
            r.headers_mut().append(*k, HeaderValue::from_static(v));
        }
        r.into_parts().0
    };
    for fields in [
        &[("content-length", "5"), ("content-length", "6")][..],
        &[("content-length", "x")],
        &[("transfer-encoding", "chunked"), ("content-length", "5")],
        &[("content-length", "5"), ("transfer-encoding", "chunked")],
    ] {
        let mut dst = Vec::new();
        let got = encode_head(&mut dst, facts, true, head(fields), BodySize::Unknown, b"-");
        assert_eq!(got, Err(BadResponse), "{fields:?}");
    }
}
