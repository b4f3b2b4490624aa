//! Access-log lines (nginx's `combined`, or JSON) and the time formats
//! they and the `$time_*` variables use.

use super::*;

/// `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
/// "$http_referer" "$http_user_agent" $request_time "$upstream_addr"`.
pub(super) fn combined(e: &Entry<'_>, buf: &mut Vec<u8>) {
    // Writing into a Vec cannot fail.
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

/// Escapes `"`, `\` and control bytes as nginx does (`\xHH`), so a
/// hostile User-Agent cannot forge log lines.
pub(super) struct Escaped<'a>(&'a str);

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

pub(super) struct UpstreamAddrs<'a>(&'a [(SocketAddr, Option<StatusCode>)]);

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
