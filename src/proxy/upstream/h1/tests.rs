use bytes::BytesMut;
use proptest::prelude::*;

use super::*;

fn parse(raw: &[u8]) -> Result<Option<ResponseHead>, ParseError> {
    parse_with(raw, &Method::GET)
}

fn parse_with(raw: &[u8], method: &Method) -> Result<Option<ResponseHead>, ParseError> {
    let mut buf = BytesMut::from(raw);
    parse_response(&mut buf, method).map(|head| head.map(|h| *h))
}

fn head(raw: &[u8]) -> ResponseHead {
    parse(raw).unwrap().expect("complete head")
}

#[test]
fn a_plain_response_head() {
    let mut buf = BytesMut::from(
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello"[..],
    );
    let h = parse_response(&mut buf, &Method::GET).unwrap().unwrap();
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.version, Version::HTTP_11);
    assert_eq!(h.framing, Framing::Length(5));
    assert!(h.keep_alive);
    assert_eq!(h.reason, None, "canonical reason is not kept");
    let xa: Vec<_> = h.headers.get_all("x-a").iter().collect();
    assert_eq!(xa, ["1", "2"]);
    assert_eq!(&buf[..], b"hello", "the body stays in the buffer");
}

#[test]
fn partial_heads_ask_for_more() {
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    for cut in 0..raw.len() {
        assert!(parse(&raw[..cut]).unwrap().is_none(), "cut at {cut}");
    }
    assert_eq!(head(raw).framing, Framing::Empty);
}

#[test]
fn keep_alive_follows_version_and_connection() {
    assert!(head(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
    assert!(!head(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keep_alive);
    assert!(
        !head(b"HTTP/1.1 200 OK\r\nConnection: foo, Close\r\nContent-Length: 0\r\n\r\n").keep_alive
    );
    assert!(!head(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
    assert!(
        head(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").keep_alive
    );
    // `close` wins over `keep-alive`, in one value or across fields, in
    // either order.
    for connection in [
        &b"Connection: keep-alive, close\r\n"[..],
        b"Connection: close, keep-alive\r\n",
        b"Connection: keep-alive\r\nConnection: close\r\n",
        b"Connection: close\r\nConnection: keep-alive\r\n",
    ] {
        for version in [&b"HTTP/1.0"[..], b"HTTP/1.1"] {
            let raw = [
                version,
                b" 200 OK\r\n",
                connection,
                b"Content-Length: 0\r\n\r\n",
            ]
            .concat();
            assert!(!head(&raw).keep_alive, "{}", String::from_utf8_lossy(&raw));
        }
    }
    // A body delimited by the close cannot be followed by anything.
    assert!(!head(b"HTTP/1.1 200 OK\r\n\r\n").keep_alive);
}

#[test]
fn framing_follows_rfc_9112_section_6_3() {
    assert_eq!(
        head(b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n").framing,
        Framing::Empty
    );
    assert_eq!(
        head(b"HTTP/1.1 304 Not Modified\r\n\r\n").framing,
        Framing::Empty
    );
    let h = parse_with(
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
        &Method::HEAD,
    )
    .unwrap()
    .unwrap();
    assert_eq!(h.framing, Framing::Empty);
    assert_eq!(
        head(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n").framing,
        Framing::Upgrade
    );
    assert_eq!(
        head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").framing,
        Framing::Chunked
    );
    assert_eq!(
        head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n").framing,
        Framing::Chunked
    );
    // Transfer-Encoding decides over Content-Length.
    assert_eq!(
        head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n").framing,
        Framing::Chunked
    );
    // Chunked not last: the body runs to the close.
    assert_eq!(
        head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n").framing,
        Framing::UntilClose
    );
    assert_eq!(
        head(b"HTTP/1.1 200 OK\r\n\r\n").framing,
        Framing::UntilClose
    );
    // Equal repeated lengths are one length.
    assert_eq!(
        head(b"HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\nContent-Length: 7\r\n\r\n").framing,
        Framing::Length(7)
    );
}

/// `parse_response` builds values without `HeaderValue`'s check, on the
/// word of httparse: every byte it lets into a value must be one
/// `HeaderValue` takes, alone and in company.
#[test]
fn every_value_httparse_accepts_is_a_header_value() {
    for b in 0..=255u8 {
        for value in [vec![b], vec![b'a', b, b'z'], vec![b'a', b, b, b'z']] {
            let mut raw = b"HTTP/1.1 200 OK\r\nX-V: ".to_vec();
            raw.extend_from_slice(&value);
            raw.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
            match parse(&raw) {
                // A bare LF ends a line for httparse: then the value is
                // what came before it, checked like any other.
                Ok(Some(head)) => {
                    for v in head.headers.values() {
                        assert!(
                            HeaderValue::from_bytes(v.as_bytes()).is_ok(),
                            "byte {b:#04x}: {v:?}"
                        );
                    }
                    if (b >= 0x20 && b != 0x7f) || b == b'\t' {
                        let got = head.headers.get("x-v").expect("the field");
                        assert_eq!(got.as_bytes(), value.trim_ascii(), "byte {b:#04x}");
                    }
                }
                Ok(None) => panic!("byte {b:#04x}: a complete head read as partial"),
                Err(_) => assert!(b < 0x20 && b != b'\t' || b == 0x7f, "byte {b:#04x} refused"),
            }
        }
    }
}

proptest! {
    /// Any value bytes: what httparse lets through, `HeaderValue` takes.
    #[test]
    fn accepted_values_pass_the_header_value_check(value in proptest::collection::vec(any::<u8>(), 0..40)) {
        let mut raw = b"HTTP/1.1 200 OK\r\nX-V: ".to_vec();
        raw.extend_from_slice(&value);
        raw.extend_from_slice(b"\r\n\r\n");
        if let Ok(Some(head)) = parse(&raw) {
            for v in head.headers.values() {
                prop_assert!(HeaderValue::from_bytes(v.as_bytes()).is_ok(), "{:?}", v);
            }
        }
    }
}

#[test]
fn interim_responses_are_skipped() {
    let mut buf = BytesMut::from(
        &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"[..],
    );
    let h = parse_response(&mut buf, &Method::POST).unwrap().unwrap();
    assert_eq!(h.status, StatusCode::CREATED);
    assert!(buf.is_empty());
    // An interim response alone: wait for the final one.
    assert!(parse(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap().is_none());
}

#[test]
fn an_unusual_reason_phrase_is_kept() {
    assert_eq!(
        head(b"HTTP/1.1 200 Fine\r\nContent-Length: 0\r\n\r\n")
            .reason
            .as_deref(),
        Some(&b"Fine"[..])
    );
    assert_eq!(
        head(b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n")
            .reason
            .as_deref(),
        Some(&b""[..])
    );
}

#[test]
fn malformed_heads_are_refused() {
    let bad: &[(&[u8], ParseError)] = &[
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            ParseError::ContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
            ParseError::ContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            ParseError::ContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5 5\r\n\r\n",
            ParseError::ContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
            ParseError::ContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            ParseError::ContentLength,
        ),
        (
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            ParseError::TransferEncodingOnHttp10,
        ),
    ];
    for (raw, want) in bad {
        assert_eq!(
            parse(raw).unwrap_err(),
            *want,
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
    // Shapes httparse refuses: obs-fold, a space before the colon, a bad
    // status line, a bare CR, a NUL in a value.
    for raw in [
        &b"HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/2.0 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\rX-A: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: a\0b\r\n\r\n",
    ] {
        assert!(
            matches!(parse(raw), Err(ParseError::Head(_))),
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn head_limits() {
    let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(parse(&many).unwrap_err(), ParseError::TooManyHeaders);

    let mut large = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
    large.resize(MAX_HEAD + 10, b'a');
    assert_eq!(
        parse(&large).unwrap_err(),
        ParseError::HeadTooLarge,
        "incomplete and too large"
    );
    large.extend_from_slice(b"\r\n\r\n");
    assert_eq!(parse(&large).unwrap_err(), ParseError::HeadTooLarge);
}

#[test]
fn request_heads() {
    let none = AddedFields::default();
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, HeaderValue::from_static("app"));
    let mut out = Vec::new();
    encode_request_head(
        &mut out,
        &Method::GET,
        "/a?b",
        (&headers, &none),
        RequestFraming::None,
    );
    assert_eq!(out, b"GET /a?b HTTP/1.1\r\nhost: app\r\n\r\n");

    out.clear();
    encode_request_head(
        &mut out,
        &Method::POST,
        "/",
        (&headers, &none),
        RequestFraming::Length(12),
    );
    assert_eq!(
        out,
        b"POST / HTTP/1.1\r\nhost: app\r\ncontent-length: 12\r\n\r\n"
    );

    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
    out.clear();
    encode_request_head(
        &mut out,
        &Method::PUT,
        "/",
        (&headers, &none),
        RequestFraming::Length(3),
    );
    assert_eq!(
        out, b"PUT / HTTP/1.1\r\nhost: app\r\ncontent-length: 3\r\n\r\n",
        "not twice"
    );

    out.clear();
    encode_request_head(
        &mut out,
        &Method::POST,
        "/",
        (&headers, &none),
        RequestFraming::Chunked,
    );
    assert_eq!(
        out,
        b"POST / HTTP/1.1\r\nhost: app\r\ntransfer-encoding: chunked\r\n\r\n"
    );
}

#[test]
fn added_fields_replace_the_clients_of_their_name() {
    let mut headers = HeaderMap::new();
    headers.append("x-real-ip", HeaderValue::from_static("forged"));
    headers.insert(header::HOST, HeaderValue::from_static("app"));
    headers.append("x-real-ip", HeaderValue::from_static("forged too"));
    let mut added = AddedFields::default();
    added.set(
        HeaderName::from_static("x-real-ip"),
        HeaderValue::from_static("192.0.2.1"),
    );
    let mut out = Vec::new();
    encode_request_head(
        &mut out,
        &Method::GET,
        "/",
        (&headers, &added),
        RequestFraming::None,
    );
    assert_eq!(
        out,
        b"GET / HTTP/1.1\r\nhost: app\r\nx-real-ip: 192.0.2.1\r\n\r\n"
    );
}

#[test]
fn request_framing_rules() {
    let mut headers = HeaderMap::new();
    assert_eq!(request_framing(&headers, false, None), RequestFraming::None);
    assert_eq!(
        request_framing(&headers, true, Some(4)),
        RequestFraming::Length(4)
    );
    assert_eq!(
        request_framing(&headers, true, None),
        RequestFraming::Chunked
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("9"));
    assert_eq!(
        request_framing(&headers, true, None),
        RequestFraming::Length(9)
    );
}

/// Decodes `input` fed in pieces of `step` bytes; data joined, or the error.
fn decode_all(input: &[u8], step: usize) -> Result<(Vec<u8>, Vec<u8>), ParseError> {
    let mut decoder = ChunkedDecoder::default();
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let mut fed = 0;
    loop {
        match decoder.decode(&mut buf)? {
            Chunk::Data(d) => {
                assert!(!d.is_empty());
                data.extend_from_slice(&d);
            }
            Chunk::End => return Ok((data, buf.to_vec())),
            Chunk::NeedMore => {
                if fed == input.len() {
                    return Err(ParseError::Chunked("input ended"));
                }
                let end = (fed + step).min(input.len());
                buf.extend_from_slice(&input[fed..end]);
                fed = end;
            }
        }
    }
}

#[test]
fn chunked_bodies_decode() {
    let body = b"5\r\nhello\r\n6;name=value\r\n world\r\n0\r\n\r\nNEXT";
    for step in 1..=body.len() {
        let (data, rest) = decode_all(body, step).unwrap();
        assert_eq!(data, b"hello world", "step {step}");
        // What follows the body is left for the next response.
        assert!(b"NEXT".starts_with(&rest));
    }
    let (data, _) = decode_all(
        b"A  \t;ext\r\n0123456789\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n",
        3,
    )
    .unwrap();
    assert_eq!(data, b"0123456789");
    let (data, _) = decode_all(b"000000000000000000000003\r\nabc\r\n0\r\n\r\n", 7).unwrap();
    assert_eq!(data, b"abc");
}

#[test]
fn malformed_chunked_bodies_are_refused() {
    for raw in [
        &b"G\r\nhello\r\n0\r\n\r\n"[..], // not a hex size (issue 13's request, as a response)
        b"\r\nhello\r\n0\r\n\r\n",       // no size
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n", // bare LF after the size
        b"5\r\rhello\r\n0\r\n\r\n",
        b"5 5\r\nhello\r\n0\r\n\r\n",    // digits after a blank
        b"5;a\nb\r\nhello\r\n0\r\n\r\n", // LF in an extension
        b"5\r\nhelloX\r\n0\r\n\r\n",     // longer than its size
        b"5\r\nhello\n0\r\n\r\n",        // bare LF after the data
        b"5\r\nhello\rX0\r\n\r\n",
        b"10000000000000000\r\n", // 2^64: overflows
        b"0\r\nbad trailer\r\n\r\n",
    ] {
        let got = decode_all(raw, 1);
        assert!(
            matches!(got, Err(ParseError::Chunked(_))),
            "{:?} gave {got:?}",
            String::from_utf8_lossy(raw)
        );
    }
    // A body that ends before its last chunk is incomplete, not done.
    assert!(decode_all(b"5\r\nhello\r\n", 4).is_err());
    // Extensions and trailers are bounded.
    let mut long = b"1;".to_vec();
    long.resize(MAX_EXTENSIONS as usize + 10, b'a');
    assert!(decode_all(&long, 1000).is_err());
    let mut trailers = b"0\r\n".to_vec();
    for i in 0..2000 {
        trailers.extend_from_slice(format!("X-{i}: vvvvvvvvvvvv\r\n").as_bytes());
    }
    assert!(decode_all(&trailers, 4096).is_err());
}

/// Encodes `chunks` as a chunked body, with optional extensions and
/// blanks after the sizes, as senders vary.
fn encode_chunked(chunks: &[Vec<u8>], decorate: &[bool]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let fancy = decorate.get(i).copied().unwrap_or(false);
        if fancy {
            out.extend_from_slice(format!("{:X} ;x=\"y\"\r\n", c.len()).as_bytes());
        } else {
            out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        }
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[test]
fn chunk_size_lines() {
    let line = |len| ChunkSizeLine::new(len).chunk().to_vec();
    assert_eq!(line(0), b"0\r\n");
    assert_eq!(line(0x10), b"10\r\n");
    assert_eq!(line(0xabc), b"abc\r\n");
    assert_eq!(line(usize::MAX), format!("{:x}\r\n", usize::MAX).as_bytes());
    // Taken in pieces, as a socket may.
    let mut l = ChunkSizeLine::new(0x1f2e);
    l.advance(3);
    assert_eq!(l.chunk(), b"e\r\n");
    l.advance(3);
    assert_eq!(l.remaining(), 0);
}

proptest! {
    /// A chunk size line is what `format!` writes.
    #[test]
    fn chunk_size_lines_match_format(len in any::<usize>(), shift in 0..usize::BITS) {
        // Small sizes too, not only the huge ones `any` mostly draws.
        let len = len >> shift;
        let line = ChunkSizeLine::new(len);
        let expected = format!("{len:x}\r\n");
        prop_assert_eq!(line.chunk(), expected.as_bytes());
    }

    /// Any body, cut into any chunks, read in any pieces, decodes to itself.
    #[test]
    fn chunked_round_trip(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 0..8),
        decorate in prop::collection::vec(any::<bool>(), 0..8),
        step in 1usize..64,
    ) {
        let wire = encode_chunked(&chunks, &decorate);
        let (data, rest) = decode_all(&wire, step).unwrap();
        prop_assert_eq!(data, chunks.concat());
        prop_assert!(rest.is_empty());
    }

    /// Any byte flipped in a valid chunked body gives the same data, an
    /// error, or a wait for more: never other data presented as complete.
    #[test]
    fn corrupted_chunked_bodies_never_pass_as_other_data(
        chunks in prop::collection::vec(prop::collection::vec(b'a'..=b'z', 1..40), 1..4),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut wire = encode_chunked(&chunks, &[]);
        let i = at.index(wire.len());
        let original = wire[i];
        wire[i] = byte;
        let in_data = original.is_ascii_lowercase();
        if let Ok((data, _)) = decode_all(&wire, 5) {
            if !in_data {
                // Framing bytes: only equivalent spellings decode (hex
                // case, say), and then to the same data.
                prop_assert_eq!(data, chunks.concat());
            }
        }
    }

    /// Feeding a response head byte by byte or whole gives the same head.
    #[test]
    fn heads_parse_the_same_in_any_pieces(cut in 0usize..60) {
        let raw = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc";
        let cut = cut.min(raw.len());
        let mut buf = BytesMut::from(&raw[..cut]);
        let first = parse_response(&mut buf, &Method::GET).unwrap();
        buf.extend_from_slice(&raw[cut..]);
        let h = match first {
            Some(h) => h,
            None => parse_response(&mut buf, &Method::GET).unwrap().unwrap(),
        };
        prop_assert_eq!(h.status, StatusCode::NOT_FOUND);
        prop_assert_eq!(h.framing, Framing::Length(3));
        prop_assert_eq!(&buf[..], b"abc");
    }
}

#[test]
fn hop_by_hop_fields_are_left_out_of_the_relayed_head() {
    let h = head(
        b"HTTP/1.1 200 OK\r\nX-Gone: 1\r\nConnection: keep-alive, X-Gone, x-later\r\n\
          Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n\
          Trailer: X-T\r\nUpgrade: h2c\r\nProxy-Authenticate: Basic\r\nX-Later: 2\r\n\
          X-Kept: 3\r\nContent-Length: 0\r\n\r\n",
    );
    let mut names: Vec<_> = h.headers.keys().map(|n| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["content-length", "x-kept"]);
    assert!(h.keep_alive, "Connection is still read");
    assert_eq!(h.upgrade.as_ref().map(|v| v.as_bytes()), Some(&b"h2c"[..]));
    let plain = head(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(plain.upgrade, None);
}

#[test]
fn a_switch_keeps_its_first_upgrade_value() {
    let h = head(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Upgrade: other\r\nSec-WebSocket-Accept: x\r\n\r\n",
    );
    assert_eq!(h.framing, Framing::Upgrade);
    assert_eq!(
        h.upgrade.as_ref().map(|v| v.as_bytes()),
        Some(&b"websocket"[..])
    );
    let names: Vec<_> = h.headers.keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["sec-websocket-accept"]);
}

#[test]
fn transfer_encoding_drops_content_length_in_either_order() {
    for raw in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"[..],
    ] {
        let h = head(raw);
        assert_eq!(h.framing, Framing::Chunked);
        assert!(h.headers.is_empty(), "{:?}", h.headers);
    }
}
