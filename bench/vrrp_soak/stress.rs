//! The stress of the VRRP soak (CPU hogs, a slow access-log reader) and
//! what is read back from wrk and from vigil's `/metrics`.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// CPU hogs in the root namespace (namespaces share the CPUs). Killed on
/// drop, and by the kernel should the bench itself die (PDEATHSIG).
pub struct Hogs(Vec<Child>);

impl Hogs {
    pub fn start(n: usize) -> Hogs {
        Hogs(
            (0..n)
                .map(|_| {
                    let mut c = Command::new("sh");
                    c.args(["-c", "while :; do :; done"])
                        .stdin(Stdio::null())
                        .stdout(Stdio::null());
                    // SAFETY: prctl is async-signal-safe.
                    unsafe {
                        c.pre_exec(|| {
                            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                            Ok(())
                        });
                    }
                    c.spawn().expect("spawn CPU hog")
                })
                .collect(),
        )
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A FIFO and its slow reader: 4 KiB, then 100 ms of sleep (40 KiB/s).
/// The reader keeps its end open from before any writer to after the
/// lab is gone, so writers never block on open and never see EPIPE; they
/// only find the pipe full.
pub struct LogReader {
    stop: Arc<AtomicBool>,
    bytes: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LogReader {
    pub fn start(path: &Path) -> LogReader {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("no NUL");
        // SAFETY: mkfifo reads a NUL-terminated path.
        let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o666) };
        assert_eq!(
            rc,
            0,
            "mkfifo {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .expect("open FIFO for reading");
        let stop = Arc::new(AtomicBool::new(false));
        let bytes = Arc::new(AtomicU64::new(0));
        let (s, b) = (stop.clone(), bytes.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s.load(Ordering::Relaxed) {
                if let Ok(n) = f.read(&mut buf) {
                    b.fetch_add(n as u64, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        LogReader {
            stop,
            bytes,
            thread: Some(thread),
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl Drop for LogReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// wrk's summary.
#[derive(Clone, Default)]
pub struct WrkResult {
    pub requests: u64,
    pub per_sec: f64,
    /// "Socket errors" and "Non-2xx" lines, as wrk prints them.
    pub errors: Vec<String>,
}

impl WrkResult {
    pub fn parse(text: &str) -> WrkResult {
        let mut w = WrkResult::default();
        for line in text.lines() {
            let l = line.trim();
            if let Some(v) = l.strip_prefix("Requests/sec:") {
                w.per_sec = v.trim().parse().unwrap_or(0.0);
            } else if l.contains("requests in") {
                w.requests = l
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
            } else if l.starts_with("Socket errors") || l.starts_with("Non-2xx") {
                w.errors.push(l.to_owned());
            }
        }
        w
    }
}

impl fmt::Display for WrkResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} reqs ({:.0}/s)", self.requests, self.per_sec)?;
        for e in &self.errors {
            write!(f, ", {e}")?;
        }
        Ok(())
    }
}

/// The VRRP-related figures of vigil's `/metrics`.
#[derive(Clone, Default, Debug)]
pub struct VigilMetrics {
    /// `vigil_vrrp_advert_lag_seconds` buckets: (le, cumulative count).
    pub lag_buckets: Vec<(f64, u64)>,
    pub lag_count: u64,
    pub lag_sum: f64,
    pub become_master: u64,
    pub adverts_sent: u64,
    pub log_dropped: u64,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
}

fn value(line: &str) -> f64 {
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

impl VigilMetrics {
    pub fn parse(text: &str) -> VigilMetrics {
        let mut m = VigilMetrics::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if line.starts_with("vigil_vrrp_advert_lag_seconds_bucket") {
                let le = line
                    .split("le=\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .map_or(f64::INFINITY, |v| v.parse().unwrap_or(f64::INFINITY));
                m.lag_buckets.push((le, value(line) as u64));
            } else if line.starts_with("vigil_vrrp_advert_lag_seconds_count") {
                m.lag_count += value(line) as u64;
            } else if line.starts_with("vigil_vrrp_advert_lag_seconds_sum") {
                m.lag_sum += value(line);
            } else if line.starts_with("vigil_vrrp_become_master_total") {
                m.become_master += value(line) as u64;
            } else if line.starts_with("vigil_vrrp_adverts_sent_total") {
                m.adverts_sent += value(line) as u64;
            } else if line.starts_with("vigil_access_log_dropped_total") {
                m.log_dropped += value(line) as u64;
            } else if line.starts_with("vigil_config_reloads_total") {
                if line.contains("\"success\"") {
                    m.reloads_ok += value(line) as u64;
                } else {
                    m.reloads_failed += value(line) as u64;
                }
            }
        }
        m
    }

    /// Both nodes together (buckets added by `le`).
    pub fn plus(mut self, o: &VigilMetrics) -> VigilMetrics {
        for (le, n) in &o.lag_buckets {
            match self.lag_buckets.iter_mut().find(|(l, _)| l == le) {
                Some(b) => b.1 += n,
                None => self.lag_buckets.push((*le, *n)),
            }
        }
        self.lag_count += o.lag_count;
        self.lag_sum += o.lag_sum;
        self.become_master += o.become_master;
        self.adverts_sent += o.adverts_sent;
        self.log_dropped += o.log_dropped;
        self.reloads_ok += o.reloads_ok;
        self.reloads_failed += o.reloads_failed;
        self
    }

    /// What happened between `before` and now.
    pub fn since(&self, before: &VigilMetrics) -> VigilMetrics {
        let mut d = self.clone();
        for b in &mut d.lag_buckets {
            let was = before
                .lag_buckets
                .iter()
                .find(|(l, _)| *l == b.0)
                .map_or(0, |x| x.1);
            b.1 = b.1.saturating_sub(was);
        }
        d.lag_count = d.lag_count.saturating_sub(before.lag_count);
        d.lag_sum -= before.lag_sum;
        d.become_master = d.become_master.saturating_sub(before.become_master);
        d.adverts_sent = d.adverts_sent.saturating_sub(before.adverts_sent);
        d.log_dropped = d.log_dropped.saturating_sub(before.log_dropped);
        d.reloads_ok = d.reloads_ok.saturating_sub(before.reloads_ok);
        d.reloads_failed = d.reloads_failed.saturating_sub(before.reloads_failed);
        d
    }

    /// For the table: transitions to master, and the lag percentiles.
    pub fn brief(&self) -> String {
        format!(
            "+{}, {} / {} / {} / {}",
            self.become_master,
            self.lag_le(50.0),
            self.lag_le(99.0),
            self.lag_le(99.9),
            self.lag_le(100.0)
        )
    }

    /// The histogram's `p` percentile as "≤ bucket bound", in ms.
    fn lag_le(&self, p: f64) -> String {
        if self.lag_count == 0 {
            return "-".into();
        }
        let want = (p / 100.0 * self.lag_count as f64).ceil() as u64;
        let mut b = self.lag_buckets.clone();
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
        match b.iter().find(|(_, n)| *n >= want.max(1)) {
            Some((le, _)) if le.is_finite() => format!("≤{}", le * 1000.0),
            _ => ">1000".into(),
        }
    }
}

impl fmt::Display for VigilMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mean = if self.lag_count > 0 {
            self.lag_sum / self.lag_count as f64 * 1000.0
        } else {
            0.0
        };
        write!(
            f,
            "become_master +{}, adverts sent {}, advert_lag n={} mean {:.3} ms p50 {} p99 {} p99.9 {} max {} ms, \
             access_log_dropped +{}, config reloads ok +{} failed +{}",
            self.become_master,
            self.adverts_sent,
            self.lag_count,
            mean,
            self.lag_le(50.0),
            self.lag_le(99.0),
            self.lag_le(99.9),
            self.lag_le(100.0),
            self.log_dropped,
            self.reloads_ok,
            self.reloads_failed,
        )
    }
}
