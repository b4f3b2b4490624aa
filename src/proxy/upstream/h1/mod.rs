//! The HTTP/1.1 wire format of vigil's upstream client: request heads out,
//! response heads and chunked bodies in. Pure (bytes in, values or bytes
//! out); the I/O around it lives in `exchange.rs`.
//!
//! It replaced hyper's client (issue 16), which ran each upstream
//! connection in a task of its own, one channel hop away from the request,
//! and parsed and encoded through a second generic layer. It is exactly as
//! strict as that client was, rule for rule (hyper 1.x `role.rs`,
//! `decode.rs`): no obs-fold, no space before a header colon, at most
//! [`MAX_HEADERS`] fields and [`MAX_HEAD`] bytes of head, conflicting or
//! malformed `Content-Length` refused, `Transfer-Encoding` in HTTP/1.0
//! refused, chunk sizes of hex digits that fit in 64 bits with CRLF line
//! ends only. `tests/upstream_codec.rs` sends a corpus of malformed
//! responses through a running vigil and checks what reaches the client.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

use crate::proxy::header_names;
use crate::proxy::headers::{self, AddedFields, ConnectionOption};

/// Most header fields accepted in a response head (nginx's buffer-bound
/// equivalent: "upstream sent too big header", 502).
pub const MAX_HEADERS: usize = 100;
/// Largest response head, in bytes.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most bytes of chunk extensions in one body (hyper's bound).
const MAX_EXTENSIONS: u64 = 16 * 1024;
/// Most bytes of trailer section (hyper's bound).
const MAX_TRAILERS: usize = 16 * 1024;

/// Why a response could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("response head over {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
    #[error("invalid response head: {0}")]
    Head(httparse::Error),
    #[error("invalid or conflicting Content-Length")]
    ContentLength,
    #[error("Transfer-Encoding in an HTTP/1.0 response")]
    TransferEncodingOnHttp10,
    #[error("invalid chunked body: {0}")]
    Chunked(&'static str),
}

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: HEAD, 204, 304, or `Content-Length: 0`.
    Empty,
    Length(u64),
    Chunked,
    /// Read until the server closes; the connection is not reusable.
    UntilClose,
    /// 101 (or a 2xx to CONNECT): the connection becomes a tunnel.
    Upgrade,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    /// The end-to-end fields, as they are relayed: the hop-by-hop ones
    /// (RFC 9110 §7.6.1: the fixed list and those `Connection` names) are
    /// left out, and `Content-Length` too when `Transfer-Encoding` framed
    /// the body.
    pub headers: HeaderMap,
    /// The first `Upgrade` field: the protocol a 101 switches to.
    pub upgrade: Option<HeaderValue>,
    /// The reason phrase, when it is not the canonical one (relayed as is).
    pub reason: Option<Bytes>,
    /// Whether the connection may carry another request afterwards.
    pub keep_alive: bool,
    pub framing: Framing,
}

/// Parses one response head from the front of `buf`, skipping interim 1xx
/// responses (101 excepted). `Ok(None)`: not complete yet, read more.
pub fn parse_response(
    buf: &mut BytesMut,
    method: &Method,
) -> Result<Option<Box<ResponseHead>>, ParseError> {
    // Filled in place by `parse_head`: returned inside `RawHead`, the
    // inline array would be copied on the way out and again here.
    let mut fields = Fields::new();
    loop {
        let Some(RawHead {
            len,
            code,
            reason,
            version,
        }) = parse_head(buf, &mut fields)?
        else {
            return Ok(None);
        };
        // Invariant: httparse accepts exactly three digits.
        let status =
            StatusCode::from_u16(code).map_err(|_| ParseError::Head(httparse::Error::Status))?;
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            // 100 Continue, 103 Early Hints...: the final response follows.
            buf.advance(len);
            continue;
        }
        let head = buf.split_to(len).freeze();
        let reason = (Some(&head[reason.0..reason.1])
            != status.canonical_reason().map(str::as_bytes))
        .then(|| head.slice(reason.0..reason.1));
        let mut headers = HeaderMap::with_capacity(fields.len());
        let mut keep_alive = version == Version::HTTP_11;
        let mut saw_close = false;
        // What the framing rules read, gathered here rather than looked
        // up in the map afterwards.
        let mut lengths = Lengths::default();
        let mut last_coding: Option<HeaderValue> = None;
        let mut upgrade = None;
        // Fields a `Connection` value names: removed once all are in.
        let mut listed: Vec<HeaderName> = Vec::new();
        for &(name, value) in &fields {
            let name = header_names::from_wire(&head[name.0 as usize..name.1 as usize])
                .map_err(|_| ParseError::Head(httparse::Error::HeaderName))?;
            // SAFETY: httparse accepted these bytes as a field value (HTAB,
            // SP, VCHAR, obs-text), exactly what `HeaderValue` requires; the
            // check would walk each byte again (~300 instructions a
            // response). hyper's client and own_h1's codec do the same;
            // tests: every_value_httparse_accepts_is_a_header_value.
            let value = unsafe {
                HeaderValue::from_maybe_shared_unchecked(
                    head.slice(value.0 as usize..value.1 as usize),
                )
            };
            if name == header::CONTENT_LENGTH {
                lengths.add(&value);
            } else if headers::always_hop_by_hop(&name) {
                // RFC 9110 §7.6.1: read here, never relayed; dropping them
                // now spares a map insert and a removal per field.
                if name == header::CONNECTION {
                    // One pass over the tokens: `close` anywhere wins over
                    // `keep-alive`, which only an HTTP/1.0 head needs.
                    let mut keep_alive_token = false;
                    for option in headers::connection_options(&value) {
                        match option {
                            ConnectionOption::Close => saw_close = true,
                            ConnectionOption::KeepAlive => keep_alive_token = true,
                            ConnectionOption::Field(name) => listed.push(name),
                            ConnectionOption::Upgrade | ConnectionOption::Other => {}
                        }
                    }
                    if saw_close {
                        keep_alive = false;
                    } else if !keep_alive {
                        keep_alive = keep_alive_token;
                    }
                } else if name == header::TRANSFER_ENCODING {
                    last_coding = Some(value);
                } else if name == header::UPGRADE {
                    upgrade.get_or_insert(value);
                }
                continue;
            }
            headers.append(name, value);
        }
        for name in listed {
            headers.remove(name);
        }
        let framing = framing(status, version, method, last_coding.as_ref(), lengths)?;
        if last_coding.is_some() {
            // RFC 9112 §6.3: with both, Transfer-Encoding decides the
            // framing and Content-Length must go; relayed, it would frame
            // the client's copy wrongly (issue 13: a body of `HTTP/`).
            headers.remove(header::CONTENT_LENGTH);
        }
        if framing == Framing::UntilClose || framing == Framing::Upgrade {
            keep_alive = false;
        }
        // Boxed: the head is ~190 bytes and is handed up through the
        // exchange, the attempt and the retry loop (six copies unboxed).
        return Ok(Some(Box::new(ResponseHead {
            status,
            version,
            headers,
            upgrade,
            reason,
            keep_alive,
            framing,
        })));
    }
}

/// Offsets of a name or value inside the head.
type Span = (u32, u32);

/// A head as httparse saw it, by offsets into the buffer, so that the
/// head can be frozen and sliced (no value copied) once the borrow ends.
struct RawHead {
    len: usize,
    code: u16,
    reason: (usize, usize),
    version: Version,
}

/// The head's fields, by offsets. Inline up to 16 fields, the usual head:
/// a `MAX_HEADERS` array would be zeroed for every response.
type Fields = smallvec::SmallVec<[(Span, Span); 16]>;

fn parse_head(buf: &[u8], fields: &mut Fields) -> Result<Option<RawHead>, ParseError> {
    let mut raw = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut raw,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(ParseError::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::TooManyHeaders),
        Err(e) => return Err(ParseError::Head(e)),
    };
    if len > MAX_HEAD {
        return Err(ParseError::HeadTooLarge);
    }
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
    fields.clear();
    fields.extend(response.headers.iter().map(|h| {
        let n = offset(h.name.as_bytes());
        let v = offset(h.value);
        ((n, n + h.name.len() as u32), (v, v + h.value.len() as u32))
    }));
    let reason = response.reason.unwrap_or("");
    let r = if reason.is_empty() {
        (0, 0)
    } else {
        let r = offset(reason.as_bytes()) as usize;
        (r, r + reason.len())
    };
    let version = if response.version == Some(1) {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    // Invariant: a complete parse has a code.
    let code = response.code.unwrap_or(0);
    Ok(Some(RawHead {
        len,
        code,
        reason: r,
        version,
    }))
}

/// RFC 9112 §6.3, in hyper's order. `last_coding`: the last
/// `Transfer-Encoding` field; `lengths`: the `Content-Length` fields.
fn framing(
    status: StatusCode,
    version: Version,
    method: &Method,
    last_coding: Option<&HeaderValue>,
    lengths: Lengths,
) -> Result<Framing, ParseError> {
    match status.as_u16() {
        101 => return Ok(Framing::Upgrade),
        204 | 304 => return Ok(Framing::Empty),
        _ => {}
    }
    if *method == Method::HEAD {
        return Ok(Framing::Empty);
    }
    if *method == Method::CONNECT && status.is_success() {
        return Ok(Framing::Upgrade);
    }
    if let Some(last_coding) = last_coding {
        if version == Version::HTTP_10 {
            return Err(ParseError::TransferEncodingOnHttp10);
        }
        // Chunked must be the final coding; otherwise the body runs to
        // the close (a response, unlike a request, may do that).
        let chunked = Some(last_coding)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        return Ok(if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    match lengths {
        Lengths::Absent => Ok(Framing::UntilClose),
        Lengths::Agreed(0) => Ok(Framing::Empty),
        Lengths::Agreed(n) => Ok(Framing::Length(n)),
        Lengths::Invalid => Err(ParseError::ContentLength),
    }
}

/// What the `Content-Length` fields of a head said so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Lengths {
    #[default]
    Absent,
    /// Every value (comma lists included) the same plain decimal number.
    Agreed(u64),
    /// A value malformed, or two that differ.
    Invalid,
}

impl Lengths {
    fn add(&mut self, value: &HeaderValue) {
        // Split and trimmed as bytes (`str::split` and `trim` cost more
        // than the usual one-number value is worth). A value that is not
        // text has a byte that is neither a digit, a comma nor a blank,
        // so some part of it fails `decimal`.
        for part in value.as_bytes().split(|&b| b == b',') {
            *self = match (*self, decimal(part.trim_ascii())) {
                (Lengths::Invalid, _) | (_, None) => Lengths::Invalid,
                (Lengths::Agreed(f), Some(n)) if f != n => Lengths::Invalid,
                (_, Some(n)) => Lengths::Agreed(n),
            };
        }
    }
}

/// The `Content-Length`, when every value (comma lists included) is the
/// same plain decimal number; `None` when absent, malformed or conflicting.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut lengths = Lengths::default();
    for value in headers.get_all(header::CONTENT_LENGTH) {
        lengths.add(value);
    }
    match lengths {
        Lengths::Agreed(n) => Some(n),
        Lengths::Absent | Lengths::Invalid => None,
    }
}

/// Digits only: no sign, no space, no overflow.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// How the request body goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body; the head is written as it is.
    None,
    /// `Content-Length` (added when the head lacks it).
    Length(u64),
    /// `Transfer-Encoding: chunked` (added; any `Content-Length` dropped).
    Chunked,
}

/// Chooses the request body's framing. `known` is the body's exact size
/// when vigil holds it whole. Hop-by-hop fields (Transfer-Encoding among
/// them) are already gone from `headers`.
pub fn request_framing(headers: &HeaderMap, has_body: bool, known: Option<u64>) -> RequestFraming {
    if !has_body {
        return RequestFraming::None;
    }
    match (content_length(headers), known) {
        (Some(n), _) => RequestFraming::Length(n),
        (None, Some(n)) => RequestFraming::Length(n),
        (None, None) => RequestFraming::Chunked,
    }
}

/// Writes `METHOD target HTTP/1.1`, the fields and the framing field.
pub fn encode_request_head(
    dst: &mut Vec<u8>,
    method: &Method,
    target: &str,
    (headers, added): (&HeaderMap, &AddedFields),
    framing: RequestFraming,
) {
    dst.extend_from_slice(method.as_str().as_bytes());
    dst.push(b' ');
    dst.extend_from_slice(target.as_bytes());
    dst.extend_from_slice(b" HTTP/1.1\r\n");
    let has_length = headers::has(headers, &header::CONTENT_LENGTH);
    for (name, value) in headers {
        if framing == RequestFraming::Chunked && name == header::CONTENT_LENGTH
            || added.replaces(name)
        {
            continue;
        }
        field(dst, name, value);
    }
    for (name, value) in added.iter() {
        field(dst, name, value);
    }
    match framing {
        RequestFraming::Length(n) if !has_length => {
            dst.extend_from_slice(b"content-length: ");
            dst.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            dst.extend_from_slice(b"\r\n");
        }
        RequestFraming::Chunked => dst.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    dst.extend_from_slice(b"\r\n");
}

fn field(dst: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    dst.extend_from_slice(name.as_str().as_bytes());
    dst.extend_from_slice(b": ");
    dst.extend_from_slice(value.as_bytes());
    dst.extend_from_slice(b"\r\n");
}

/// The line that starts a chunk of `len` bytes, `{len:x}\r\n`, built on
/// the stack: a streamed chunked upload sends one per chunk, so it must
/// not cost an allocation. A [`Buf`], for a writer that takes it in pieces.
#[derive(Debug, Clone, Copy)]
pub struct ChunkSizeLine {
    /// The line, right-aligned.
    buf: [u8; CHUNK_SIZE_LINE_MAX],
    /// Where the rest of the line starts in `buf`.
    start: usize,
}

/// The hex digits of `usize::MAX`, then CRLF.
const CHUNK_SIZE_LINE_MAX: usize = 2 * size_of::<usize>() + 2;

impl ChunkSizeLine {
    pub fn new(len: usize) -> ChunkSizeLine {
        let mut buf = [0; CHUNK_SIZE_LINE_MAX];
        let mut start = CHUNK_SIZE_LINE_MAX - 2;
        buf[start..].copy_from_slice(b"\r\n");
        let mut rest = len;
        loop {
            start -= 1;
            buf[start] = b"0123456789abcdef"[rest & 0xf];
            rest >>= 4;
            if rest == 0 {
                break;
            }
        }
        ChunkSizeLine { buf, start }
    }
}

impl Buf for ChunkSizeLine {
    fn remaining(&self) -> usize {
        self.buf.len() - self.start
    }

    fn chunk(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn advance(&mut self, cnt: usize) {
        assert!(cnt <= self.remaining(), "advance past a chunk size line");
        self.start += cnt;
    }
}

/// What the chunked decoder found.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    Data(Bytes),
    /// The last chunk and the trailer section are read (trailers are
    /// checked and dropped, as nginx drops them).
    End,
    /// The buffer ends inside the framing: read more.
    NeedMore,
}

/// A `Transfer-Encoding: chunked` decoder over a read buffer.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: ChunkState,
    size: u64,
    extensions: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting the first hex digit.
    #[default]
    Start,
    Size,
    /// Blanks after the size.
    SizeBlank,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Trailers,
    End,
}

impl ChunkedDecoder {
    /// Consumes framing from `buf` and returns the next data, the end, or
    /// a request for more bytes.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Chunk, ParseError> {
        use ChunkState::*;
        loop {
            if self.state == End {
                return Ok(Chunk::End);
            }
            if self.state == Data {
                if buf.is_empty() {
                    return Ok(Chunk::NeedMore);
                }
                let n = (buf.len() as u64).min(self.size) as usize;
                self.size -= n as u64;
                if self.size == 0 {
                    self.state = DataCr;
                }
                return Ok(Chunk::Data(buf.split_to(n).freeze()));
            }
            if self.state == Trailers {
                return self.trailers(buf);
            }
            let Some(&b) = buf.first() else {
                return Ok(Chunk::NeedMore);
            };
            buf.advance(1);
            self.state = match (self.state, b) {
                (Start | Size, _) if b.is_ascii_hexdigit() => {
                    let digit = (b as char).to_digit(16).unwrap_or(0);
                    self.size = self
                        .size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(u64::from(digit)))
                        .ok_or(ParseError::Chunked("chunk size overflows"))?;
                    Size
                }
                (Start, _) => return Err(ParseError::Chunked("missing chunk size")),
                (Size | SizeBlank, b' ' | b'\t') => SizeBlank,
                (Size | SizeBlank, b';') => Extension,
                (Size | SizeBlank, b'\r') => SizeLf,
                (Size, _) => return Err(ParseError::Chunked("invalid chunk size")),
                (SizeBlank, _) => {
                    return Err(ParseError::Chunked("invalid blank after chunk size"));
                }
                (Extension, b'\r') => SizeLf,
                (Extension, b'\n') => {
                    return Err(ParseError::Chunked("bare LF in chunk extension"));
                }
                (Extension, _) => {
                    self.extensions += 1;
                    if self.extensions >= MAX_EXTENSIONS {
                        return Err(ParseError::Chunked("chunk extensions over the limit"));
                    }
                    Extension
                }
                (SizeLf, b'\n') if self.size == 0 => Trailers,
                (SizeLf, b'\n') => Data,
                (SizeLf, _) => return Err(ParseError::Chunked("chunk size line without LF")),
                (DataCr, b'\r') => DataLf,
                (DataCr, _) => return Err(ParseError::Chunked("chunk data longer than its size")),
                (DataLf, b'\n') => Start,
                (DataLf, _) => return Err(ParseError::Chunked("chunk data without CRLF")),
                (Data | Trailers | End, _) => unreachable!("handled above"),
            };
        }
    }

    /// The trailer section after the last chunk: an empty line, or fields
    /// and an empty line, all CRLF-terminated.
    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Chunk, ParseError> {
        if buf.len() < 2 {
            return Ok(Chunk::NeedMore);
        }
        if buf.starts_with(b"\r\n") {
            buf.advance(2);
            self.state = ChunkState::End;
            return Ok(Chunk::End);
        }
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            if buf.len() > MAX_TRAILERS {
                return Err(ParseError::Chunked("trailers over the limit"));
            }
            return Ok(Chunk::NeedMore);
        };
        let section = &buf[..end + 4];
        if section.len() > MAX_TRAILERS {
            return Err(ParseError::Chunked("trailers over the limit"));
        }
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::parse_headers(section, &mut fields) {
            Ok(httparse::Status::Complete((n, _))) if n == section.len() => {}
            _ => return Err(ParseError::Chunked("invalid trailer section")),
        }
        buf.advance(end + 4);
        self.state = ChunkState::End;
        Ok(Chunk::End)
    }
}

#[cfg(test)]
mod tests;
