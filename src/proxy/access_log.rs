//! The access log: nginx `combined` (plus request time and upstream
//! address) or JSON lines, to stdout, stderr or a file.
//!
//! Lines are formatted on the request's task and handed to one writer
//! thread through a bounded queue; the writer batches them into large
//! writes. A full queue drops lines (counted) rather than stalling
//! requests behind a slow disk or a blocked stdout.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode, Version};

use crate::config::{AccessLogFormat, AccessLogTarget, LogSettings};

/// One finished request, as the log sees it.
#[derive(Debug)]
pub struct Entry<'a> {
    pub remote: IpAddr,
    pub time: SystemTime,
    pub method: &'a Method,
    /// Path and query as the client sent them.
    pub uri: &'a str,
    pub version: Version,
    pub status: StatusCode,
    pub body_bytes: u64,
    pub referer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub host: Option<&'a str>,
    pub request_time: Duration,
    pub upstream: &'a [(SocketAddr, Option<StatusCode>)],
    pub upstream_time: Option<Duration>,
    pub server: &'a str,
    pub location: Option<&'a str>,
}

/// A handle to the log writer; cheap to clone.
#[derive(Debug, Clone)]
pub struct AccessLog {
    inner: Option<Arc<Writer>>,
    target: AccessLogTarget,
    format: AccessLogFormat,
}

#[derive(Debug)]
struct Writer {
    tx: SyncSender<String>,
    dropped: AtomicU64,
}

const QUEUE: usize = 16 * 1024;

impl AccessLog {
    /// Opens the target (creating the file if needed) and starts the writer.
    pub fn open(settings: &LogSettings) -> io::Result<AccessLog> {
        let out: Box<dyn Write + Send> = match &settings.access_log {
            AccessLogTarget::Off => {
                return Ok(AccessLog {
                    inner: None,
                    target: AccessLogTarget::Off,
                    format: settings.access_log_format,
                });
            }
            AccessLogTarget::Stdout => Box::new(io::stdout()),
            AccessLogTarget::Stderr => Box::new(io::stderr()),
            AccessLogTarget::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        io::Error::new(e.kind(), format!("access log {}: {e}", path.display()))
                    })?,
            ),
        };
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("vigil-access-log".into())
            .spawn(move || write_loop(rx, out))?;
        Ok(AccessLog {
            inner: Some(Arc::new(Writer {
                tx,
                dropped: AtomicU64::new(0),
            })),
            target: settings.access_log.clone(),
            format: settings.access_log_format,
        })
    }

    /// A log that writes nothing (tests, `access_log = "off"`).
    pub fn off() -> AccessLog {
        AccessLog {
            inner: None,
            target: AccessLogTarget::Off,
            format: AccessLogFormat::Combined,
        }
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// True when `settings` would open the same log (reload keeps it).
    pub fn same_as(&self, settings: &LogSettings) -> bool {
        self.target == settings.access_log && self.format == settings.access_log_format
    }

    /// Lines lost because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |w| w.dropped.load(Ordering::Relaxed))
    }

    pub fn write(&self, entry: &Entry<'_>) {
        let Some(writer) = &self.inner else {
            return;
        };
        let line = match self.format {
            AccessLogFormat::Combined => combined(entry),
            AccessLogFormat::Json => json(entry),
        };
        match writer.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                writer.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

fn write_loop(rx: Receiver<String>, out: Box<dyn Write + Send>) {
    let mut out = io::BufWriter::with_capacity(64 * 1024, out);
    while let Ok(line) = rx.recv() {
        let _ = out.write_all(line.as_bytes());
        // Batch whatever else is queued, then flush once.
        while let Ok(line) = rx.try_recv() {
            let _ = out.write_all(line.as_bytes());
        }
        let _ = out.flush();
    }
}

/// `$remote_addr - - [$time_local] "$request" $status $body_bytes_sent
/// "$http_referer" "$http_user_agent" $request_time "$upstream_addr"`.
pub fn combined(e: &Entry<'_>) -> String {
    let mut s = String::with_capacity(200);
    let _ = writeln!(
        s,
        "{} - - [{}] \"{} {} {:?}\" {} {} \"{}\" \"{}\" {}.{:03} \"{}\"",
        e.remote,
        nginx_time(e.time),
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
    s
}

/// One JSON object per line.
pub fn json(e: &Entry<'_>) -> String {
    let upstream: Vec<serde_json::Value> = e
        .upstream
        .iter()
        .map(|(addr, status)| {
            serde_json::json!({ "addr": addr.to_string(), "status": status.map(|s| s.as_u16()) })
        })
        .collect();
    let mut line = serde_json::json!({
        "time": iso_time(e.time),
        "remote_addr": e.remote.to_string(),
        "method": e.method.as_str(),
        "uri": e.uri,
        "protocol": format!("{:?}", e.version),
        "status": e.status.as_u16(),
        "body_bytes_sent": e.body_bytes,
        "referer": e.referer,
        "user_agent": e.user_agent,
        "host": e.host,
        "request_time": e.request_time.as_secs_f64(),
        "upstream": upstream,
        "upstream_response_time": e.upstream_time.map(|d| d.as_secs_f64()),
        "server": e.server,
        "location": e.location,
    })
    .to_string();
    line.push('\n');
    line
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

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
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

fn parts(t: SystemTime) -> (i64, u32, u32, u64, u64, u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil((secs / 86_400) as i64);
    let s = secs % 86_400;
    (y, m, day, s / 3600, s / 60 % 60, s % 60, d.subsec_millis())
}

/// `10/Oct/2000:13:55:36 +0000` (UTC; containers rarely have a local zone).
pub fn nginx_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d, hh, mm, ss, _) = parts(t);
    format!(
        "{d:02}/{}/{y}:{hh:02}:{mm:02}:{ss:02} +0000",
        MONTHS[(m - 1) as usize]
    )
}

/// `2000-10-10T13:55:36.123Z`.
pub fn iso_time(t: SystemTime) -> String {
    let (y, m, d, hh, mm, ss, ms) = parts(t);
    format!("{y}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(
        upstream: &'a [(SocketAddr, Option<StatusCode>)],
        ua: Option<&'a str>,
    ) -> Entry<'a> {
        Entry {
            remote: "192.0.2.1".parse().unwrap(),
            time: UNIX_EPOCH + Duration::from_secs(971_186_136),
            method: &Method::GET,
            uri: "/a?b=1",
            version: Version::HTTP_11,
            status: StatusCode::OK,
            body_bytes: 612,
            referer: None,
            user_agent: ua,
            host: Some("example.com"),
            request_time: Duration::from_millis(2_345),
            upstream,
            upstream_time: Some(Duration::from_millis(2)),
            server: "example.com",
            location: Some("/"),
        }
    }

    #[test]
    fn combined_format() {
        let up = [
            (
                "127.0.0.1:9001".parse().unwrap(),
                Some(StatusCode::BAD_GATEWAY),
            ),
            ("127.0.0.1:9002".parse().unwrap(), Some(StatusCode::OK)),
        ];
        assert_eq!(
            combined(&entry(&up, Some("curl/8"))),
            "192.0.2.1 - - [10/Oct/2000:13:55:36 +0000] \"GET /a?b=1 HTTP/1.1\" 200 612 \"-\" \
             \"curl/8\" 2.345 \"127.0.0.1:9001, 127.0.0.1:9002\"\n"
        );
        let line = combined(&entry(&[], Some("evil\"\n- - [fake")));
        assert!(line.contains("\"evil\\x22\\x0A- - [fake\""), "{line}");
        assert!(line.ends_with("\"-\"\n"));
        assert_eq!(line.matches('\n').count(), 1);
    }

    #[test]
    fn json_format_is_one_parseable_line() {
        let up = [("127.0.0.1:9001".parse().unwrap(), Some(StatusCode::OK))];
        let line = json(&entry(&up, None));
        assert_eq!(line.matches('\n').count(), 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "2000-10-10T13:55:36.000Z");
        assert_eq!(v["status"], 200);
        assert_eq!(v["upstream"][0]["addr"], "127.0.0.1:9001");
        assert_eq!(v["user_agent"], serde_json::Value::Null);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(civil(20_785), (2026, 11, 28));
        assert_eq!(
            iso_time(UNIX_EPOCH + Duration::from_millis(1_795_824_000_500)),
            "2026-11-28T00:00:00.500Z"
        );
    }
}
