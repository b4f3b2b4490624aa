//! Access-log lines (nginx's `combined`, or JSON) and the time formats
//! they and the `$time_*` variables use.

use super::*;

/// `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
/// "$http_referer" "$http_user_agent" $request_time "$upstream_addr"`.
///
/// Written byte by byte, without `core::fmt`: this runs once per request,
/// and the formatting machinery (padding, `Write` adapters, a call per
/// character of an escaped field) cost more than the rest of the line.
/// `clock` holds the current second's `$time_local`.
pub(super) fn combined(e: &Entry<'_>, clock: &mut TimeLocal, buf: &mut Vec<u8>) {
    push_ip(buf, e.remote);
    buf.extend_from_slice(b" - ");
    push_escaped(buf, e.user.unwrap_or("-"));
    buf.extend_from_slice(b" [");
    buf.extend_from_slice(clock.text(e.time));
    buf.extend_from_slice(b"] \"");
    buf.extend_from_slice(e.method.as_str().as_bytes());
    buf.push(b' ');
    push_escaped(buf, e.uri);
    buf.push(b' ');
    push_version(buf, e.version);
    buf.extend_from_slice(b"\" ");
    // Always three digits: `StatusCode` holds 100..=999.
    buf.extend_from_slice(e.status.as_str().as_bytes());
    buf.push(b' ');
    push_u64(buf, e.body_bytes);
    buf.extend_from_slice(b" \"");
    push_escaped(buf, e.referer.unwrap_or("-"));
    buf.extend_from_slice(b"\" \"");
    push_escaped(buf, e.user_agent.unwrap_or("-"));
    buf.extend_from_slice(b"\" ");
    push_u64(buf, e.request_time.as_secs());
    let ms = e.request_time.subsec_millis();
    buf.extend_from_slice(&[
        b'.',
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
    ]);
    buf.extend_from_slice(b" \"");
    push_upstream_addrs(buf, e.upstream);
    buf.extend_from_slice(b"\"\n");
}

/// nginx's `$time_local` for the current second, made again only when
/// the second changes (nginx itself updates it once a second).
#[derive(Debug, Default)]
pub(super) struct TimeLocal {
    secs: Option<u64>,
    text: String,
}

impl TimeLocal {
    /// `10/Oct/2000:13:55:36 +0000` for `t`.
    pub(super) fn text(&mut self, t: SystemTime) -> &[u8] {
        // The same second `parts` takes (times before 1970 are 1970).
        let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        if self.secs != Some(secs) {
            self.text.clear();
            let _ = write!(self.text, "{}", NginxTime(t));
            self.secs = Some(secs);
        }
        self.text.as_bytes()
    }
}

/// Escapes `"`, `\` and control bytes as nginx does (`\xHH`), so a
/// hostile User-Agent cannot forge log lines. Byte-wise: every byte of a
/// multi-byte UTF-8 character is 0x80 or above and passes through.
fn push_escaped(buf: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b < 0x20 || b == 0x7f || b == b'"' || b == b'\\' {
            buf.extend_from_slice(&bytes[start..i]);
            buf.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
            start = i + 1;
        }
    }
    buf.extend_from_slice(&bytes[start..]);
}

fn push_u64(buf: &mut Vec<u8>, n: u64) {
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// As `Display` writes it; IPv6 (its zero-run compression and mapped
/// forms) goes through `Display`.
fn push_ip(buf: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => push_ipv4(buf, v4),
        IpAddr::V6(v6) => {
            let _ = write!(buf, "{v6}");
        }
    }
}

fn push_ipv4(buf: &mut Vec<u8>, ip: std::net::Ipv4Addr) {
    let mut itoa = itoa::Buffer::new();
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            buf.push(b'.');
        }
        buf.extend_from_slice(itoa.format(octet).as_bytes());
    }
}

/// `127.0.0.1:9001, 127.0.0.1:9002`, or `-` when no upstream was tried.
fn push_upstream_addrs(buf: &mut Vec<u8>, list: &[(SocketAddr, Option<StatusCode>)]) {
    if list.is_empty() {
        buf.push(b'-');
        return;
    }
    for (i, (addr, _)) in list.iter().enumerate() {
        if i > 0 {
            buf.extend_from_slice(b", ");
        }
        match addr {
            SocketAddr::V4(v4) => {
                push_ipv4(buf, *v4.ip());
                buf.push(b':');
                buf.extend_from_slice(itoa::Buffer::new().format(v4.port()).as_bytes());
            }
            SocketAddr::V6(v6) => {
                let _ = write!(buf, "{v6}");
            }
        }
    }
}

/// `HTTP/1.1`, as http's `Debug` spells versions.
fn push_version(buf: &mut Vec<u8>, v: Version) {
    let text: &[u8] = if v == Version::HTTP_11 {
        b"HTTP/1.1"
    } else if v == Version::HTTP_2 {
        b"HTTP/2.0"
    } else if v == Version::HTTP_10 {
        b"HTTP/1.0"
    } else if v == Version::HTTP_3 {
        b"HTTP/3.0"
    } else if v == Version::HTTP_09 {
        b"HTTP/0.9"
    } else {
        let _ = write!(buf, "{v:?}");
        return;
    };
    buf.extend_from_slice(text);
}

/// One JSON object per line, fields in a fixed order.
pub(super) fn json(e: &Entry<'_>, buf: &mut Vec<u8>) {
    #[derive(Serialize)]
    struct Line<'a> {
        #[serde(serialize_with = "as_display")]
        time: IsoTime,
        remote_addr: IpAddr,
        remote_user: Option<&'a str>,
        method: &'a str,
        uri: &'a str,
        #[serde(serialize_with = "as_display")]
        protocol: Protocol,
        status: u16,
        body_bytes_sent: u64,
        referer: Option<&'a str>,
        user_agent: Option<&'a str>,
        host: Option<&'a str>,
        request_time: f64,
        #[serde(serialize_with = "upstreams")]
        upstream: &'a [(SocketAddr, Option<StatusCode>)],
        upstream_response_time: Option<f64>,
        server: &'a str,
        location: Option<&'a str>,
    }
    let line = Line {
        time: IsoTime(e.time),
        remote_addr: e.remote,
        remote_user: e.user,
        method: e.method.as_str(),
        uri: e.uri,
        protocol: Protocol(e.version),
        status: e.status.as_u16(),
        body_bytes_sent: e.body_bytes,
        referer: e.referer,
        user_agent: e.user_agent,
        host: e.host,
        request_time: e.request_time.as_secs_f64(),
        upstream: e.upstream,
        upstream_response_time: e.upstream_time.map(|d| d.as_secs_f64()),
        server: e.server,
        location: e.location,
    };
    // Serializing plain strings and numbers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buf, &line);
    buf.push(b'\n');
}

pub(super) fn as_display<T: std::fmt::Display, S: serde::Serializer>(
    v: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

pub(super) fn upstreams<S: serde::Serializer>(
    list: &&[(SocketAddr, Option<StatusCode>)],
    s: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Upstream {
        addr: SocketAddr,
        status: Option<u16>,
    }
    let mut seq = s.serialize_seq(Some(list.len()))?;
    for (addr, status) in list.iter() {
        seq.serialize_element(&Upstream {
            addr: *addr,
            status: status.map(|s| s.as_u16()),
        })?;
    }
    seq.end()
}

/// `HTTP/1.1`, as http's Debug spells versions.
pub(super) struct Protocol(Version);

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
pub(super) fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

pub(super) fn parts(t: SystemTime) -> (i64, u32, u32, u64, u64, u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil((secs / 86_400) as i64);
    let s = secs % 86_400;
    (y, m, day, s / 3600, s / 60 % 60, s % 60, d.subsec_millis())
}

/// `10/Oct/2000:13:55:36 +0000` (UTC; containers rarely have a local zone).
pub(super) struct NginxTime(SystemTime);

impl std::fmt::Display for NginxTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let (y, m, d, hh, mm, ss, _) = parts(self.0);
        write!(
            f,
            "{d:02}/{}/{y}:{hh:02}:{mm:02}:{ss:02} +0000",
            MONTHS[(m - 1) as usize]
        )
    }
}

/// `2000-10-10T13:55:36.123Z`.
pub(super) struct IsoTime(SystemTime);

impl std::fmt::Display for IsoTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (y, m, d, hh, mm, ss, ms) = parts(self.0);
        write!(f, "{y}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z")
    }
}

/// nginx's `$time_iso8601`: `2000-10-10T13:55:36+00:00`.
pub fn write_time_iso8601(t: SystemTime, out: &mut String) {
    use std::fmt::Write;
    let (y, m, d, hh, mm, ss, _) = parts(t);
    let _ = write!(out, "{y}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}+00:00");
}

/// nginx's `$time_local`: `10/Oct/2000:13:55:36 +0000`.
pub fn write_time_local(t: SystemTime, out: &mut String) {
    use std::fmt::Write;
    let _ = write!(out, "{}", NginxTime(t));
}

/// `2000-10-10T13:55:36.123Z`.
pub fn iso_time(t: SystemTime) -> String {
    IsoTime(t).to_string()
}

/// The combined line as it was written through `core::fmt` before
/// [`combined`] wrote bytes: the reference the byte writer is tested
/// against.
#[cfg(test)]
pub(super) mod reference {
    use super::*;

    pub(in super::super) fn combined(e: &Entry<'_>, buf: &mut Vec<u8>) {
        let _ = writeln!(
            buf,
            "{} - {} [{}] \"{} {} {:?}\" {} {} \"{}\" \"{}\" {}.{:03} \"{}\"",
            e.remote,
            Escaped(e.user.unwrap_or("-")),
            NginxTime(e.time),
            e.method,
            Escaped(e.uri),
            e.version,
            e.status.as_u16(),
            e.body_bytes,
            Escaped(e.referer.unwrap_or("-")),
            Escaped(e.user_agent.unwrap_or("-")),
            e.request_time.as_secs(),
            e.request_time.subsec_millis(),
            UpstreamAddrs(e.upstream),
        );
    }

    pub(in super::super) fn escaped(s: &str) -> impl std::fmt::Display + '_ {
        Escaped(s)
    }

    /// Escapes `"`, `\` and control bytes as nginx does (`\xHH`), so a
    /// hostile User-Agent cannot forge log lines.
    struct Escaped<'a>(&'a str);

    impl std::fmt::Display for Escaped<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            for c in self.0.chars() {
                match c {
                    '"' | '\\' => write!(f, "\\x{:02X}", c as u32)?,
                    c if (c as u32) < 0x20 || c as u32 == 0x7f => write!(f, "\\x{:02X}", c as u32)?,
                    c => f.write_char(c)?,
                }
            }
            Ok(())
        }
    }

    struct UpstreamAddrs<'a>(&'a [(SocketAddr, Option<StatusCode>)]);

    impl std::fmt::Display for UpstreamAddrs<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            if self.0.is_empty() {
                return f.write_str("-");
            }
            for (i, (addr, _)) in self.0.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{addr}")?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};

    use proptest::prelude::*;

    use super::*;

    /// An [`Entry`]'s owned parts.
    #[derive(Debug, Clone)]
    struct Owned {
        remote: IpAddr,
        user: Option<String>,
        time: SystemTime,
        method: Method,
        uri: String,
        version: Version,
        status: StatusCode,
        body_bytes: u64,
        referer: Option<String>,
        user_agent: Option<String>,
        request_time: Duration,
        upstream: Vec<(SocketAddr, Option<StatusCode>)>,
    }

    impl Owned {
        fn entry(&self) -> Entry<'_> {
            Entry {
                remote: self.remote,
                user: self.user.as_deref(),
                time: self.time,
                method: &self.method,
                uri: &self.uri,
                version: self.version,
                status: self.status,
                body_bytes: self.body_bytes,
                referer: self.referer.as_deref(),
                user_agent: self.user_agent.as_deref(),
                host: None,
                request_time: self.request_time,
                upstream: &self.upstream,
                upstream_time: None,
                server: "s",
                location: None,
            }
        }
    }

    /// Text with what must be escaped (quotes, backslashes, control
    /// bytes, DEL) and multi-byte UTF-8 mixed in, or anything at all.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[\"\\\\\\x00-\\x1f\\x7f a-z/?=%éß€\u{80}\u{9f}\u{2028}😀]{0,40}",
            any::<String>(),
        ]
    }

    fn ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
            // Mostly zero groups, so `::` compression and the IPv4-mapped
            // forms come up.
            proptest::collection::vec(prop_oneof![Just(0u16), Just(0xffff), any::<u16>()], 8)
                .prop_map(|g| IpAddr::V6(Ipv6Addr::new(
                    g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]
                ))),
        ]
    }

    fn socket_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (ip(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port)),
            (ip(), any::<u16>(), 0u32..3).prop_map(|(ip, port, scope)| {
                let v6 = match ip {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => v6,
                };
                SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope))
            }),
        ]
    }

    fn method() -> impl Strategy<Value = Method> {
        prop_oneof![
            Just(Method::GET),
            Just(Method::HEAD),
            Just(Method::POST),
            Just(Method::PUT),
            Just(Method::DELETE),
            Just(Method::OPTIONS),
            Just(Method::PATCH),
            Just(Method::CONNECT),
            Just(Method::TRACE),
            // Extension methods, inline (short) and allocated (long).
            "[A-Z_-]{1,30}".prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
        ]
    }

    fn version() -> impl Strategy<Value = Version> {
        prop_oneof![
            Just(Version::HTTP_09),
            Just(Version::HTTP_10),
            Just(Version::HTTP_11),
            Just(Version::HTTP_2),
            Just(Version::HTTP_3),
        ]
    }

    fn status() -> impl Strategy<Value = StatusCode> {
        (100u16..1000).prop_map(|s| StatusCode::from_u16(s).unwrap())
    }

    /// A few seconds (so consecutive lines share or change the cached
    /// `$time_local`), far ones (five-digit years) and times before 1970.
    fn time() -> impl Strategy<Value = SystemTime> {
        prop_oneof![
            (0u64..4, 0u64..1000).prop_map(
                |(s, ms)| UNIX_EPOCH + Duration::from_millis((1_700_000_000 + s) * 1000 + ms)
            ),
            (0u64..400_000_000_000).prop_map(|s| UNIX_EPOCH + Duration::from_secs(s)),
            (1u64..1_000_000_000).prop_map(|s| UNIX_EPOCH - Duration::from_secs(s)),
        ]
    }

    fn owned() -> impl Strategy<Value = Owned> {
        (
            (ip(), proptest::option::of(text()), time(), method(), text()),
            (version(), status(), any::<u64>()),
            (proptest::option::of(text()), proptest::option::of(text())),
            (
                prop_oneof![
                    (0u64..100_000, 0u32..1_000_000_000),
                    (any::<u64>(), 0u32..1_000_000_000)
                ]
                .prop_map(|(s, ns)| Duration::new(s, ns)),
                proptest::collection::vec((socket_addr(), proptest::option::of(status())), 0..4),
            ),
        )
            .prop_map(
                |(
                    (remote, user, time, method, uri),
                    (version, status, body_bytes),
                    (referer, user_agent),
                    (request_time, upstream),
                )| Owned {
                    remote,
                    user,
                    time,
                    method,
                    uri,
                    version,
                    status,
                    body_bytes,
                    referer,
                    user_agent,
                    request_time,
                    upstream,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The byte writer writes what the `core::fmt` formatter wrote,
        /// byte for byte, line after line through one cached clock.
        #[test]
        fn combined_matches_the_fmt_formatter(entries in proptest::collection::vec(owned(), 1..8)) {
            let mut clock = TimeLocal::default();
            let (mut fast, mut slow) = (Vec::new(), Vec::new());
            for owned in &entries {
                let e = owned.entry();
                combined(&e, &mut clock, &mut fast);
                reference::combined(&e, &mut slow);
                prop_assert_eq!(
                    String::from_utf8_lossy(&fast),
                    String::from_utf8_lossy(&slow)
                );
                prop_assert_eq!(&fast, &slow);
            }
        }
    }

    #[test]
    fn every_escaped_byte_is_spelled_as_nginx_does() {
        let mut all = String::new();
        for c in (0u8..=0x7f).map(char::from) {
            all.push(c);
        }
        all.push_str("é😀\u{80}");
        let mut fast = Vec::new();
        push_escaped(&mut fast, &all);
        let slow = format!("{}", reference::escaped(&all));
        assert_eq!(String::from_utf8(fast).unwrap(), slow);
        assert!(slow.starts_with("\\x00\\x01"), "{slow}");
        assert!(slow.contains(" !\\x22#"), "{slow}");
        assert!(slow.contains("[\\x5C]"), "{slow}");
        assert!(slow.ends_with("}~\\x7Fé😀\u{80}"), "{slow}");
    }
}
