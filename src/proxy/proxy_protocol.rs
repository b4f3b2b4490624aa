//! The PROXY protocol (HAProxy's spec, versions 1 and 2): a load
//! balancer in front of vigil sends the client's address in a header
//! before the connection's first byte.
//!
//! [`parse`] is pure and total (fuzzed: `fuzz/fuzz_targets/proxy_protocol.rs`);
//! [`read_header`] takes exactly the header's bytes off a socket, so what
//! follows (TLS, HTTP) is untouched; `v1_header` (tests only, until
//! upstreams get headers) writes one.
//!
//! As nginx, the header only records the addresses: `$remote_addr`
//! becomes the header's source when the server trusts the peer
//! (`set_real_ip_from` + `real_ip_header = "proxy_protocol"`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The longest v1 header, CRLF included (spec §2.1).
const V1_MAX: usize = 107;
/// The v2 signature (spec §2.2).
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v2 address block (addresses + TLVs) accepted. The spec allows
/// 65535; load balancers send tens of bytes (AWS's VPC endpoint TLV, GCP's
/// PSC id), so anything past this is a flood, not a header.
const V2_MAX_PAYLOAD: usize = 4096;

/// What a header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// A client's connection relayed: its source and destination.
    Proxied { src: SocketAddr, dst: SocketAddr },
    /// v1 `UNKNOWN`, v2 `LOCAL`, or a family other than IP: the
    /// connection's own addresses apply (spec: health checks and the like).
    Local,
}

impl ProxyHeader {
    pub fn source(&self) -> Option<IpAddr> {
        match self {
            ProxyHeader::Proxied { src, .. } => Some(src.ip()),
            ProxyHeader::Local => None,
        }
    }
}

/// Why a header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyHeaderError {
    /// The connection does not start with either signature.
    NotProxyProtocol,
    /// v1 longer than 107 bytes without CRLF, or v2 past the size limit.
    TooLong,
    /// A field is missing or not what the spec allows.
    Malformed(&'static str),
    /// The connection closed before the header ended.
    Eof,
    /// No complete header within `proxy_protocol_timeout`.
    Timeout,
    Io(std::io::ErrorKind),
}

impl fmt::Display for ProxyHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyHeaderError::NotProxyProtocol => f.write_str("no PROXY protocol header"),
            ProxyHeaderError::TooLong => f.write_str("PROXY protocol header too long"),
            ProxyHeaderError::Malformed(why) => write!(f, "malformed PROXY protocol header: {why}"),
            ProxyHeaderError::Eof => {
                f.write_str("connection closed inside the PROXY protocol header")
            }
            ProxyHeaderError::Timeout => f.write_str("PROXY protocol header timed out"),
            ProxyHeaderError::Io(kind) => write!(f, "reading the PROXY protocol header: {kind}"),
        }
    }
}

impl ProxyHeaderError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ProxyHeaderError::NotProxyProtocol => "missing",
            ProxyHeaderError::TooLong => "too_long",
            ProxyHeaderError::Malformed(_) => "malformed",
            ProxyHeaderError::Eof => "eof",
            ProxyHeaderError::Timeout => "timeout",
            ProxyHeaderError::Io(_) => "io",
        }
    }
}

/// What [`parse`] made of the bytes so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header of `len` bytes.
    Complete(ProxyHeader, usize),
    /// A valid beginning; more bytes are needed.
    Incomplete,
}

/// Parses a header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    const V1_PREFIX: &[u8] = b"PROXY ";
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] == V1_PREFIX[..n] {
        if buf.len() < V1_PREFIX.len() {
            return Ok(Parsed::Incomplete);
        }
        return parse_v1(buf);
    }
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return parse_v2(buf);
    }
    Err(ProxyHeaderError::NotProxyProtocol)
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(cr) = window.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX {
            return Err(ProxyHeaderError::TooLong);
        }
        // A lone CR followed by anything but LF, or a LF alone, is never
        // going to become a header.
        if window
            .iter()
            .enumerate()
            .any(|(i, &b)| b == b'\n' || (b == b'\r' && i + 1 < window.len()))
        {
            return Err(ProxyHeaderError::Malformed("stray CR or LF"));
        }
        return Ok(Parsed::Incomplete);
    };
    let len = cr + 2;
    if buf[..cr].iter().any(|&b| b == b'\r' || b == b'\n') {
        return Err(ProxyHeaderError::Malformed("stray CR or LF"));
    }
    let line =
        std::str::from_utf8(&buf[6..cr]).map_err(|_| ProxyHeaderError::Malformed("not ASCII"))?;
    let mut fields = line.split(' ');
    let header = match fields.next() {
        // The rest of the line is ignored (spec §2.1).
        Some("UNKNOWN") => ProxyHeader::Local,
        Some(family @ ("TCP4" | "TCP6")) => {
            let mut next = |what| fields.next().ok_or(ProxyHeaderError::Malformed(what));
            let src = next("no source address")?;
            let dst = next("no destination address")?;
            let sport = port(next("no source port")?)?;
            let dport = port(next("no destination port")?)?;
            if fields.next().is_some() {
                return Err(ProxyHeaderError::Malformed("extra fields"));
            }
            let (src, dst) = if family == "TCP4" {
                (
                    IpAddr::V4(v1_addr::<Ipv4Addr>(src)?),
                    IpAddr::V4(v1_addr::<Ipv4Addr>(dst)?),
                )
            } else {
                (
                    IpAddr::V6(v1_addr::<Ipv6Addr>(src)?),
                    IpAddr::V6(v1_addr::<Ipv6Addr>(dst)?),
                )
            };
            ProxyHeader::Proxied {
                src: SocketAddr::new(src, sport),
                dst: SocketAddr::new(dst, dport),
            }
        }
        _ => {
            return Err(ProxyHeaderError::Malformed(
                "protocol is not TCP4, TCP6 or UNKNOWN",
            ));
        }
    };
    Ok(Parsed::Complete(header, len))
}

fn v1_addr<T: std::str::FromStr>(text: &str) -> Result<T, ProxyHeaderError> {
    text.parse()
        .map_err(|_| ProxyHeaderError::Malformed("bad address for the protocol"))
}

/// A port: 1 to 5 digits, no sign, no leading zero (spec §2.1), ≤ 65535.
fn port(text: &str) -> Result<u16, ProxyHeaderError> {
    let digits = !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    if !digits || (text.len() > 1 && text.starts_with('0')) {
        return Err(ProxyHeaderError::Malformed("bad port"));
    }
    text.parse()
        .map_err(|_| ProxyHeaderError::Malformed("port above 65535"))
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    if buf.len() < 16 {
        return Ok(Parsed::Incomplete);
    }
    let version = buf[12] >> 4;
    let command = buf[12] & 0x0f;
    if version != 2 {
        return Err(ProxyHeaderError::Malformed("version is not 2"));
    }
    let family = buf[13] >> 4;
    let transport = buf[13] & 0x0f;
    let payload = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if payload > V2_MAX_PAYLOAD {
        return Err(ProxyHeaderError::TooLong);
    }
    let len = 16 + payload;
    if buf.len() < len {
        return Ok(Parsed::Incomplete);
    }
    let body = &buf[16..len];
    let header = match command {
        0 => ProxyHeader::Local,
        1 => {
            if transport > 2 {
                return Err(ProxyHeaderError::Malformed("unknown transport"));
            }
            if transport == 2 {
                return Err(ProxyHeaderError::Malformed(
                    "datagram transport on a TCP listener",
                ));
            }
            match family {
                // AF_UNSPEC: the receiver uses the connection's addresses.
                0 => ProxyHeader::Local,
                1 => {
                    let a = body
                        .get(..12)
                        .ok_or(ProxyHeaderError::Malformed("short IPv4 address block"))?;
                    let ip =
                        |o: usize| IpAddr::V4(Ipv4Addr::new(a[o], a[o + 1], a[o + 2], a[o + 3]));
                    ProxyHeader::Proxied {
                        src: SocketAddr::new(ip(0), u16::from_be_bytes([a[8], a[9]])),
                        dst: SocketAddr::new(ip(4), u16::from_be_bytes([a[10], a[11]])),
                    }
                }
                2 => {
                    let a = body
                        .get(..36)
                        .ok_or(ProxyHeaderError::Malformed("short IPv6 address block"))?;
                    let ip = |o: usize| {
                        let mut b = [0u8; 16];
                        b.copy_from_slice(&a[o..o + 16]);
                        IpAddr::V6(Ipv6Addr::from(b))
                    };
                    ProxyHeader::Proxied {
                        src: SocketAddr::new(ip(0), u16::from_be_bytes([a[32], a[33]])),
                        dst: SocketAddr::new(ip(16), u16::from_be_bytes([a[34], a[35]])),
                    }
                }
                // AF_UNIX: no IP address to use.
                3 => {
                    if body.len() < 216 {
                        return Err(ProxyHeaderError::Malformed("short UNIX address block"));
                    }
                    ProxyHeader::Local
                }
                _ => return Err(ProxyHeaderError::Malformed("unknown address family")),
            }
        }
        _ => {
            return Err(ProxyHeaderError::Malformed(
                "command is neither LOCAL nor PROXY",
            ));
        }
    };
    Ok(Parsed::Complete(header, len))
}

/// Reads a header off `stream`, taking exactly its bytes: it peeks, and
/// consumes only what is certainly header (never a byte of the TLS or
/// HTTP that follows).
pub async fn read_header(stream: &mut TcpStream) -> Result<ProxyHeader, ProxyHeaderError> {
    let mut header = Vec::with_capacity(V1_MAX);
    // On the heap: a connection task's future stays small.
    let mut peeked = vec![0u8; 16 + V2_MAX_PAYLOAD];
    loop {
        let room = peeked.len() - header.len();
        let n = stream
            .peek(&mut peeked[..room])
            .await
            .map_err(|e| ProxyHeaderError::Io(e.kind()))?;
        if n == 0 {
            return Err(ProxyHeaderError::Eof);
        }
        let before = header.len();
        header.extend_from_slice(&peeked[..n]);
        match parse(&header)? {
            Parsed::Complete(h, len) => {
                consume(stream, len - before).await?;
                return Ok(h);
            }
            Parsed::Incomplete => {
                // Every byte so far belongs to the header: take them, so
                // the next peek waits for new ones instead of spinning.
                consume(stream, n).await?;
            }
        }
    }
}

async fn consume(stream: &mut TcpStream, mut n: usize) -> Result<(), ProxyHeaderError> {
    let mut sink = [0u8; 512];
    while n > 0 {
        let take = n.min(sink.len());
        stream
            .read_exact(&mut sink[..take])
            .await
            .map_err(|e| ProxyHeaderError::Io(e.kind()))?;
        n -= take;
    }
    Ok(())
}

/// A v1 header for an upstream connection: the client's address and the
/// address it connected to. Only the tests write headers so far (sending
/// one to upstreams is not built yet).
#[cfg(test)]
pub fn v1_header(src: SocketAddr, dst: SocketAddr) -> String {
    let src_ip = src.ip().to_canonical();
    let dst_ip = dst.ip().to_canonical();
    match (src_ip, dst_ip) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            format!("PROXY TCP4 {s} {d} {} {}\r\n", src.port(), dst.port())
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            format!("PROXY TCP6 {s} {d} {} {}\r\n", src.port(), dst.port())
        }
        // Mixed families (an IPv6 client on a v4 upstream path): the spec
        // has no way to say it; say the client as v6 on both sides.
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            format!(
                "PROXY TCP6 {} {} {} {}\r\n",
                v6(s),
                v6(d),
                src.port(),
                dst.port()
            )
        }
    }
}

#[cfg(test)]
mod tests;
