//! The access log: nginx `combined` (plus request time and upstream
//! address) or JSON lines, to stdout, stderr or a file.
//!
//! Why it is shaped this way: a line per request must cost no system call
//! and no wake-up, as nginx's `access_log ... buffer=64k flush=1s` does.
//! So each worker formats lines into its own buffer (a mutex per worker,
//! never contended on the hot path) and hands the buffer over only when it
//! is full. One writer thread writes each handed-over buffer with one
//! `write(2)` of whole lines (to an `O_APPEND` file, so lines from
//! several writers — an old and a new process during a hand-over — never
//! tear or interleave), and every `flush` interval it sweeps the partly
//! filled buffers. A graceful stop, a reload that changes the log, and a
//! `SIGUSR1` reopen all sweep first, so no line is lost.
//!
//! The writer thread is what keeps a blocked stdout (a stalled pipe or
//! container log driver) from stalling requests: handed-over buffers queue
//! up to a byte limit, past which they are dropped and their lines counted
//! (`vigil_access_log_dropped_total`).

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode, Version};
use serde::Serialize;
use serde::ser::SerializeSeq;

use crate::config::{AccessLogFormat, AccessLogTarget, LogSettings};

mod format;
use self::format::{TimeLocal, combined, json};
pub use self::format::{iso_time, write_time_iso8601, write_time_local};

/// One finished request, as the log sees it.
#[derive(Debug)]
pub struct Entry<'a> {
    pub remote: IpAddr,
    /// `$remote_user`: the name basic auth accepted (never a password).
    pub user: Option<&'a str>,
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

/// A handle to the log; cheap to clone. The writer thread stops (after
/// writing everything buffered) when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct AccessLog {
    inner: Option<Arc<Writer>>,
    settings: LogSettings,
}

/// The request side's view of the writer.
#[derive(Debug)]
struct Writer {
    shared: Arc<Shared>,
    tx: Sender<Msg>,
}

/// One worker's part of the log: the lines not yet handed over, and the
/// current second's `$time_local`.
#[derive(Debug, Default)]
struct Shard {
    buf: Vec<u8>,
    clock: TimeLocal,
}

/// What the workers and the writer thread both touch.
#[derive(Debug)]
struct Shared {
    /// One per worker, indexed by [`crate::proxy::workers::current`].
    shards: Box<[Mutex<Shard>]>,
    /// A buffer holding this many bytes is handed to the writer.
    buffer: usize,
    /// Bytes handed over and not yet written.
    queued: AtomicUsize,
    /// Past this many queued bytes, handed-over buffers are dropped.
    queue_limit: usize,
    dropped: AtomicU64,
    /// Written buffers, emptied, for the workers to fill again.
    spare: Mutex<Vec<Vec<u8>>>,
}

#[derive(Debug)]
enum Msg {
    /// A worker's full buffer.
    Full(Vec<u8>),
    /// Write everything buffered, then answer.
    Flush(tokio::sync::oneshot::Sender<()>),
    /// Write everything buffered to the old file, then open the path again.
    Reopen,
}

/// Room a buffer has beyond `buffer`, so that the line that fills it
/// does not make it grow. Growing meant a realloc to twice the size (a
/// copy of the whole buffer) on every hand-over, and glibc's per-thread
/// arena moving its top up and down (`mprotect`, `madvise`). A line
/// longer than this still fits, at the cost of one realloc.
const LINE_ROOM: usize = 4096;

/// Spare buffers kept beyond one per worker.
const SPARE_EXTRA: usize = 2;

/// Whatever the queue holds beyond this is dropped (but at least four
/// full buffers fit).
const QUEUE_BYTES: usize = 4 << 20;

/// How long a graceful stop waits for the log to be written (a blocked
/// stdout must not hold the exit forever).
const FLUSH_WAIT: Duration = Duration::from_secs(5);

impl AccessLog {
    /// Opens the target (creating the file if needed) and starts the
    /// writer. `workers` sizes the per-worker buffers.
    pub fn open(settings: &LogSettings, workers: usize) -> io::Result<AccessLog> {
        let out = match &settings.access_log {
            AccessLogTarget::Off => {
                return Ok(AccessLog {
                    inner: None,
                    settings: settings.clone(),
                });
            }
            AccessLogTarget::Stdout => Output::Stdout,
            AccessLogTarget::Stderr => Output::Stderr,
            AccessLogTarget::File(path) => Output::File {
                file: open_append(path)?,
                path: path.clone(),
            },
        };
        let buffer = settings.access_log_buffer;
        let shared = Arc::new(Shared {
            shards: (0..workers.max(1))
                .map(|_| {
                    Mutex::new(Shard {
                        buf: Vec::with_capacity(buffer + LINE_ROOM),
                        clock: TimeLocal::default(),
                    })
                })
                .collect(),
            buffer,
            queued: AtomicUsize::new(0),
            queue_limit: QUEUE_BYTES.max(buffer.saturating_mul(4)),
            dropped: AtomicU64::new(0),
            spare: Mutex::new(Vec::new()),
        });
        let (tx, rx) = mpsc::channel();
        let thread_shared = shared.clone();
        let flush = settings.access_log_flush;
        std::thread::Builder::new()
            .name("vigil-access-log".into())
            .spawn(move || {
                crate::privileges::normal_thread_priority();
                write_loop(&thread_shared, &rx, out, flush)
            })?;
        Ok(AccessLog {
            inner: Some(Arc::new(Writer { shared, tx })),
            settings: settings.clone(),
        })
    }

    /// A log that writes nothing (tests, `access_log = "off"`).
    pub fn off() -> AccessLog {
        AccessLog {
            inner: None,
            settings: LogSettings {
                access_log: AccessLogTarget::Off,
                access_log_format: AccessLogFormat::Combined,
                access_log_buffer: 0,
                access_log_flush: Duration::from_secs(1),
                level: String::new(),
            },
        }
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// True when `settings` would open the same log (reload keeps it).
    pub fn same_as(&self, settings: &LogSettings) -> bool {
        let a = &self.settings;
        a.access_log == settings.access_log
            && a.access_log_format == settings.access_log_format
            && a.access_log_buffer == settings.access_log_buffer
            && a.access_log_flush == settings.access_log_flush
    }

    /// Lines lost because the writer could not keep up (or could not
    /// write).
    pub fn dropped(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |w| w.shared.dropped.load(Ordering::Relaxed))
    }

    /// Formats `entry` into this worker's buffer; hands the buffer to the
    /// writer when it is full. No system call otherwise.
    pub fn write(&self, entry: &Entry<'_>) {
        let Some(writer) = &self.inner else {
            return;
        };
        let shared = &writer.shared;
        let shard = &shared.shards[crate::proxy::workers::current() % shared.shards.len()];
        let full = {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let Shard { buf, clock } = &mut *shard;
            format_line(self.settings.access_log_format, entry, clock, buf);
            (buf.len() >= shared.buffer).then(|| std::mem::replace(buf, shared.empty_buffer()))
        };
        if let Some(full) = full {
            writer.hand_over(full);
        }
    }

    /// Writes everything buffered so far and waits (bounded) until it is
    /// written: the last step of a graceful stop.
    pub async fn flush(&self) {
        let Some(writer) = &self.inner else {
            return;
        };
        let (ack, done) = tokio::sync::oneshot::channel();
        if writer.tx.send(Msg::Flush(ack)).is_ok()
            && tokio::time::timeout(FLUSH_WAIT, done).await.is_err()
        {
            tracing::warn!("the access log is not being written (blocked output?)");
        }
    }

    /// `SIGUSR1`: writes what is buffered to the current file, then opens
    /// the path again (logrotate has renamed the old file). Nothing for
    /// stdout and stderr.
    pub fn reopen(&self) {
        if let Some(writer) = &self.inner {
            let _ = writer.tx.send(Msg::Reopen);
        }
    }
}

impl Writer {
    fn hand_over(&self, buf: Vec<u8>) {
        let shared = &self.shared;
        let len = buf.len();
        // One buffer is always let through, however large, so a queue
        // limit below the buffer size cannot drop everything.
        let before = shared.queued.fetch_add(len, Ordering::Relaxed);
        if before > 0 && before + len > shared.queue_limit {
            // The writer is stuck (blocked stdout): drop rather than stall.
            shared.queued.fetch_sub(len, Ordering::Relaxed);
            shared.dropped.fetch_add(lines(&buf), Ordering::Relaxed);
            shared.recycle(buf);
            return;
        }
        if self.tx.send(Msg::Full(buf)).is_err() {
            shared.queued.fetch_sub(len, Ordering::Relaxed);
        }
    }
}

impl Shared {
    /// A buffer to fill: a written one if there is one (no allocation, and
    /// no memory handed back and forth between the writer and a worker's
    /// malloc arena), else a new one.
    fn empty_buffer(&self) -> Vec<u8> {
        let spare = self
            .spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        spare.unwrap_or_else(|| Vec::with_capacity(self.buffer + LINE_ROOM))
    }

    /// Keeps a written buffer for [`Shared::empty_buffer`], unless enough
    /// are kept or it grew for a long line.
    fn recycle(&self, mut buf: Vec<u8>) {
        if buf.capacity() > self.buffer + LINE_ROOM {
            return;
        }
        let mut spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
        if spare.len() < self.shards.len() + SPARE_EXTRA {
            buf.clear();
            spare.push(buf);
        }
    }
}

fn lines(buf: &[u8]) -> u64 {
    buf.iter().filter(|&&b| b == b'\n').count() as u64
}

fn open_append(path: &std::path::Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("access log {}: {e}", path.display())))
}

/// Where the writer thread writes.
enum Output {
    Stdout,
    Stderr,
    File { path: PathBuf, file: File },
}

impl Output {
    /// One buffer of whole lines, in one `write(2)` where the kernel takes
    /// it whole (always, for a regular file opened `O_APPEND`).
    fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(buf)?;
                out.flush()
            }
            Output::Stderr => io::stderr().lock().write_all(buf),
            Output::File { file, .. } => file.write_all(buf),
        }
    }

    fn reopen(&mut self) {
        if let Output::File { path, file } = self {
            match open_append(path) {
                Ok(new) => *file = new,
                Err(e) => tracing::error!("cannot reopen: {e}; still writing the old file"),
            }
        }
    }
}

/// The writer thread: writes handed-over buffers, sweeps the workers'
/// buffers every `flush`, and on the way out (the last handle dropped)
/// sweeps once more.
fn write_loop(shared: &Shared, rx: &Receiver<Msg>, mut out: Output, flush: Duration) {
    // Only the first failure of a run is reported: a full disk must not
    // flood the error log once per buffer.
    let mut failing = false;
    let mut write = |out: &mut Output, buf: &[u8]| {
        if buf.is_empty() {
            return;
        }
        match out.write(buf) {
            Ok(()) => failing = false,
            Err(e) => {
                shared.dropped.fetch_add(lines(buf), Ordering::Relaxed);
                if !std::mem::replace(&mut failing, true) {
                    tracing::error!("access log write failed: {e}; lines are dropped");
                }
            }
        }
    };
    let sweep = |out: &mut Output, write: &mut dyn FnMut(&mut Output, &[u8])| {
        for shard in &shared.shards {
            let buf = {
                let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
                if shard.buf.is_empty() {
                    continue;
                }
                std::mem::replace(&mut shard.buf, shared.empty_buffer())
            };
            write(out, &buf);
            shared.recycle(buf);
        }
    };
    let mut next_sweep = Instant::now() + flush;
    loop {
        let msg = rx.recv_timeout(next_sweep.saturating_duration_since(Instant::now()));
        match msg {
            Ok(Msg::Full(buf)) => {
                write(&mut out, &buf);
                shared.queued.fetch_sub(buf.len(), Ordering::Relaxed);
                shared.recycle(buf);
            }
            Ok(Msg::Flush(ack)) => {
                sweep(&mut out, &mut write);
                let _ = ack.send(());
            }
            Ok(Msg::Reopen) => {
                sweep(&mut out, &mut write);
                out.reopen();
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                sweep(&mut out, &mut write);
                return;
            }
        }
        // Checked after every message too, so a steady stream of full
        // buffers from a busy worker does not starve a quiet one's sweep.
        if Instant::now() >= next_sweep {
            sweep(&mut out, &mut write);
            next_sweep = Instant::now() + flush;
        }
    }
}

/// Appends one line for `e` in `format` to `buf`; `clock` is the
/// writer's cached `$time_local`.
fn format_line(format: AccessLogFormat, e: &Entry<'_>, clock: &mut TimeLocal, buf: &mut Vec<u8>) {
    match format {
        AccessLogFormat::Combined => combined(e, clock, buf),
        AccessLogFormat::Json => json(e, buf),
    }
}

#[cfg(test)]
mod tests {
    use super::format::civil;
    use super::*;

    fn line(format: AccessLogFormat, e: &Entry<'_>) -> String {
        let mut buf = Vec::new();
        format_line(format, e, &mut TimeLocal::default(), &mut buf);
        String::from_utf8(buf).unwrap()
    }

    fn combined(e: &Entry<'_>) -> String {
        line(AccessLogFormat::Combined, e)
    }

    fn json(e: &Entry<'_>) -> String {
        line(AccessLogFormat::Json, e)
    }

    fn entry<'a>(
        upstream: &'a [(SocketAddr, Option<StatusCode>)],
        ua: Option<&'a str>,
    ) -> Entry<'a> {
        Entry {
            remote: "192.0.2.1".parse().unwrap(),
            user: None,
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
