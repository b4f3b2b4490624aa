//! VRRP soak: does a pair stay put under load? vigil and keepalived side
//! by side, the same stress at the same time (issue 15, "No false
//! failover").
//!
//! For each advert interval (`--intervals`, VRRPv3, default 10,20,50 ms),
//! two labs of network namespaces run at once for `--minutes`:
//!
//! - vigil lab (10.231.60.0/24, VRID 60): nodes a (priority 150) and b
//!   (100), preempt on, each a `vigil run` answering `return 200`;
//! - keepalived lab (10.231.61.0/24, VRID 61): the same pair with
//!   keepalived 2.2.7, and nginx (`return 200`) on each node.
//!
//! Each lab also has a load node (wrk) and an observer node. Stress, the
//! same for both labs, for the whole soak:
//!
//! - wrk `-t1 -c8` against each node's own address (four wrk in all: on
//!   two cores, more would make the run a wrk benchmark);
//! - CPU hogs (`sh -c 'while :; do :; done'`, `--hogs`, 2 by default),
//!   shared by both labs;
//! - every 30 s a burst of 5 config reloads 100 ms apart on both nodes:
//!   vigil `POST /reload`; keepalived SIGHUP and nginx SIGHUP (what
//!   `nginx -s reload` sends);
//! - the access logs (vigil `[log] access_log`, nginx `access_log`) go to a
//!   FIFO that the bench drains slowly: 4 KiB every 100 ms.
//!
//! The observer (a raw IP-protocol-112 socket in its own namespace on the
//! lab bridge) records every advert with the kernel receive time; the
//! figures come from that record only, so both daemons are judged alike
//! (see `vrrp_soak/observer.rs`). vigil's own `/metrics` (advert lag
//! histogram, transitions to master, dropped log lines) is printed beside.
//!
//! Run through `bench/vrrp_soak.sh` (needs root). Bounded: `--minutes` per
//! interval and a `--budget` in seconds for the whole run; Ctrl-C stops
//! the current soak, prints what was measured and removes the namespaces.

#[path = "../tests/support/netns.rs"]
mod netns;
#[path = "vrrp_soak/observer.rs"]
mod observer;
#[path = "vrrp_soak/stress.rs"]
mod stress;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use netns::{Lab, Node, is_root, tool_exists};
use observer::{Figures, Record};
use stress::{Hogs, LogReader, VigilMetrics, WrkResult};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// The first stretch after the pair settled that is left out of the
/// figures (the stress starts at its beginning).
const SETTLE: Duration = Duration::from_secs(5);
const RELOAD_EVERY: Duration = Duration::from_secs(30);
const RELOADS_PER_BURST: usize = 5;
const RELOAD_GAP: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Daemon {
    Vigil,
    Keepalived,
}

impl Daemon {
    fn name(self) -> &'static str {
        match self {
            Daemon::Vigil => "vigil",
            Daemon::Keepalived => "keepalived",
        }
    }
    fn net(self) -> &'static str {
        match self {
            Daemon::Vigil => "10.231.60",
            Daemon::Keepalived => "10.231.61",
        }
    }
    fn vrid(self) -> u8 {
        match self {
            Daemon::Vigil => 60,
            Daemon::Keepalived => 61,
        }
    }
    fn vip(self) -> String {
        format!("{}.100", self.net())
    }
}

/// `--hogs N` (2 by default): CPU hogs running through each soak.
static HOGS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(2);

/// `--proxy-probe MS`: vigil also tracks its own proxy (`track.proxy`)
/// with this self-probe interval and a timeout of three (0: off, the
/// default), so a false alarm of the self-check under load would show as
/// a transition too.
static PROXY_PROBE_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

struct Opts {
    intervals: Vec<u64>,
    minutes: f64,
    budget: Duration,
    vigil: String,
    out: Option<String>,
}

/// One router node and its processes.
struct Router {
    name: &'static str,
    node: Node,
    addr: String,
    priority: u8,
    /// vigil's pid, or keepalived's (parent) pid.
    vrrp: u32,
    /// vigil's pid again, or nginx's master pid.
    proxy: u32,
}

/// One lab: a pair of routers, a load node, an observer.
struct Pair {
    daemon: Daemon,
    interval_ms: u64,
    lab: Lab,
    routers: Vec<Router>,
    load: Node,
    record: Arc<Record>,
    observer: Option<std::thread::JoinHandle<()>>,
    readers: Vec<LogReader>,
}

/// What one soak measured for one pair.
struct Outcome {
    daemon: Daemon,
    interval_ms: u64,
    minutes: f64,
    figures: Figures,
    observer_drops: u32,
    observer_error: Option<String>,
    reloads_ok: usize,
    reloads_failed: usize,
    wrk: Vec<(String, WrkResult)>,
    log_bytes: u64,
    vigil: Option<VigilMetrics>,
}

fn main() {
    let opts = parse_args();
    if !is_root() {
        eprintln!("vrrp_soak: needs root (network namespaces)");
        std::process::exit(1);
    }
    let missing: Vec<&str> = ["ip", "curl", "wrk", "nginx", "keepalived"]
        .into_iter()
        .filter(|t| !tool_exists(t))
        .collect();
    if !missing.is_empty() {
        eprintln!("vrrp_soak: missing {missing:?} (bench/vrrp_soak.sh installs them)");
        std::process::exit(1);
    }
    // SAFETY: installs a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let started = Instant::now();
    let deadline = started + opts.budget;
    let mut outcomes: Vec<Outcome> = vec![];
    for &interval in &opts.intervals {
        if STOP.load(Ordering::Relaxed) {
            break;
        }
        // Set-up and tear-down take about 20 s; leave them room.
        let left = deadline.saturating_duration_since(Instant::now());
        if left < Duration::from_secs(60) {
            eprintln!("budget nearly spent: skipping {interval} ms and the rest");
            break;
        }
        let soak = Duration::from_secs_f64(opts.minutes * 60.0).min(left - Duration::from_secs(40));
        outcomes.extend(run_interval(&opts, interval, soak));
    }
    let table = render(&outcomes, started.elapsed());
    println!("\n{table}");
    if let Some(path) = &opts.out {
        match std::fs::write(path, &table) {
            Ok(()) => eprintln!("table written to {path}"),
            Err(e) => eprintln!("cannot write {path}: {e}"),
        }
    }
}

/// Both pairs at one interval, side by side.
fn run_interval(opts: &Opts, interval_ms: u64, soak: Duration) -> Vec<Outcome> {
    eprintln!("== {interval_ms} ms adverts: setting up both labs");
    let mut pairs = vec![
        Pair::new(Daemon::Vigil, interval_ms),
        Pair::new(Daemon::Keepalived, interval_ms),
    ];
    for p in &mut pairs {
        p.start(&opts.vigil);
    }
    for p in &pairs {
        p.wait_settled();
    }
    std::thread::sleep(SETTLE);
    let before: Vec<Option<VigilMetrics>> = pairs.iter().map(Pair::vigil_metrics).collect();
    let log_before: Vec<u64> = pairs.iter().map(Pair::log_bytes).collect();
    eprintln!(
        "== {interval_ms} ms adverts: soak of {:.1} min under stress",
        soak.as_secs_f64() / 60.0
    );
    let start_ns = observer::now_ns();
    let began = Instant::now();
    let hogs = Hogs::start(HOGS.load(Ordering::Relaxed));
    let wrks: Vec<Vec<(String, u32)>> = pairs.iter().map(|p| p.start_wrk(soak)).collect();
    let stop_reloads = &AtomicBool::new(false);
    let reloads: Vec<(usize, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = pairs
            .iter()
            .map(|p| s.spawn(move || p.reload_loop(stop_reloads)))
            .collect();
        let mut next_report = began + Duration::from_secs(60);
        while began.elapsed() < soak && !STOP.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            if Instant::now() >= next_report {
                next_report += Duration::from_secs(60);
                for p in &pairs {
                    let f = p.figures(start_ns, observer::now_ns());
                    eprintln!(
                        "   {:>4.0} s {:<10} transitions {} dual-master {:.1} ms lag max {:.2} ms",
                        began.elapsed().as_secs_f64(),
                        p.daemon.name(),
                        f.transitions.len(),
                        f.dual_ms,
                        f.lag(100.0).unwrap_or(f64::NAN)
                    );
                }
            }
        }
        stop_reloads.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or((0, 0)))
            .collect()
    });
    let end_ns = observer::now_ns();
    let took = began.elapsed();
    drop(hogs);
    let wrk: Vec<Vec<(String, WrkResult)>> = pairs
        .iter()
        .zip(wrks)
        .map(|(p, w)| p.finish_wrk(w))
        .collect();
    let after: Vec<Option<VigilMetrics>> = pairs.iter().map(Pair::vigil_metrics).collect();
    let mut out = vec![];
    for (i, mut p) in pairs.into_iter().enumerate() {
        let figures = p.figures(start_ns, end_ns);
        p.record.stop.store(true, Ordering::Relaxed);
        if let Some(h) = p.observer.take() {
            let _ = h.join();
        }
        let vigil = match (&before[i], &after[i]) {
            (Some(b), Some(a)) => Some(a.since(b)),
            _ => None,
        };
        if vigil.is_none() && p.daemon == Daemon::Vigil {
            eprintln!("could not read vigil's /metrics");
        }
        let log_bytes = p.log_bytes() - log_before[i];
        // The daemons' logs, kept for a look at any transition.
        let logs = std::path::PathBuf::from(format!(
            "{}.logs/{interval_ms}ms-{}",
            opts.out.as_deref().unwrap_or("/tmp/vrrp_soak"),
            p.daemon.name()
        ));
        if std::fs::create_dir_all(&logs).is_ok() {
            for e in std::fs::read_dir(p.lab.dir())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".log") || name.ends_with(".conf") || name.ends_with(".toml") {
                    let _ = std::fs::copy(e.path(), logs.join(&name));
                }
            }
            // Every advert seen (also before the window), for a second look.
            let csv: String = p
                .record
                .adverts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|a| format!("{},{},{},{}\n", a.t_ns, a.src, a.vrid, a.priority))
                .collect();
            let _ = std::fs::write(
                logs.join("adverts.csv"),
                format!("t_ns,src,vrid,priority # window {start_ns}..{end_ns}\n{csv}"),
            );
            eprintln!("   {} logs kept in {}", p.daemon.name(), logs.display());
        }
        for t in &figures.transitions {
            eprintln!("   {} at {interval_ms} ms: transition {t}", p.daemon.name());
        }
        out.push(Outcome {
            daemon: p.daemon,
            interval_ms,
            minutes: took.as_secs_f64() / 60.0,
            observer_drops: p.record.dropped.load(Ordering::Relaxed),
            observer_error: p
                .record
                .error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            figures,
            reloads_ok: reloads[i].0,
            reloads_failed: reloads[i].1,
            wrk: wrk[i].clone(),
            log_bytes,
            vigil,
        });
        // The lab (processes, namespaces) goes first, then the log
        // readers, so no writer ever sees its reader gone.
        let readers = std::mem::take(&mut p.readers);
        drop(p);
        drop(readers);
    }
    out
}

impl Drop for Pair {
    fn drop(&mut self) {
        // The observer thread ends within 100 ms (its receive timeout).
        self.record.stop.store(true, Ordering::Relaxed);
    }
}

impl Pair {
    fn new(daemon: Daemon, interval_ms: u64) -> Pair {
        let tag = match daemon {
            Daemon::Vigil => "vsoak",
            Daemon::Keepalived => "ksoak",
        };
        let lab = Lab::new(tag);
        let net = daemon.net();
        let mut routers = vec![];
        for (name, host, priority) in [("a", 1, 150), ("b", 2, 100)] {
            let node = lab.node(name);
            let addr = format!("{net}.{host}");
            lab.connect(&node, "eth0", &[&format!("{addr}/24")]);
            routers.push(Router {
                name,
                node,
                addr,
                priority,
                vrrp: 0,
                proxy: 0,
            });
        }
        let load = lab.node("load");
        lab.connect(&load, "eth0", &[&format!("{net}.10/24")]);
        let obs = lab.node("obs");
        lab.connect(&obs, "eth0", &[&format!("{net}.200/24")]);
        let record = Arc::new(Record::default());
        let r = record.clone();
        let observer = Some(lab.run_in(&obs, move || observer::observe("eth0", &r)));
        // The FIFOs and their slow readers exist before any writer opens
        // them (an open for writing waits for a reader).
        let readers = routers
            .iter()
            .map(|r| LogReader::start(&lab.path(&format!("{}-access.fifo", r.name))))
            .collect();
        Pair {
            daemon,
            interval_ms,
            lab,
            routers,
            load,
            record,
            observer,
            readers,
        }
    }

    fn start(&mut self, vigil: &str) {
        for i in 0..self.routers.len() {
            let (vrrp, proxy) = match self.daemon {
                Daemon::Vigil => {
                    let cfg = self.vigil_config(&self.routers[i]);
                    let r = &self.routers[i];
                    let pid = self.lab.spawn(
                        &r.node,
                        &[vigil, "run", "-c", &cfg],
                        &format!("{}-vigil.log", r.name),
                    );
                    (pid, pid)
                }
                Daemon::Keepalived => {
                    let r = &self.routers[i];
                    let conf = self.nginx_config(r);
                    let prefix = format!("{}/", self.lab.dir().display());
                    let err = self.lab.path(&format!("{}-nginx-error.log", r.name));
                    let nginx = self.lab.spawn(
                        &r.node,
                        &[
                            "nginx",
                            "-p",
                            &prefix,
                            "-e",
                            &err.display().to_string(),
                            "-c",
                            &conf,
                        ],
                        &format!("{}-nginx.log", r.name),
                    );
                    let conf = self.keepalived_config(r);
                    let pid = self.lab.path(&format!("{}-keepalived.pid", r.name));
                    let vrrp = self.lab.path(&format!("{}-keepalived-vrrp.pid", r.name));
                    let ka = self.lab.spawn(
                        &r.node,
                        &[
                            "keepalived",
                            "-n",
                            "-l",
                            "-D",
                            "-G",
                            "-P",
                            "-f",
                            &conf,
                            "-p",
                            &pid.display().to_string(),
                            "-r",
                            &vrrp.display().to_string(),
                        ],
                        &format!("{}-keepalived.log", r.name),
                    );
                    (ka, nginx)
                }
            };
            self.routers[i].vrrp = vrrp;
            self.routers[i].proxy = proxy;
        }
        for r in &self.routers {
            let url = format!("http://{}/", r.addr);
            self.lab.wait_until(
                Duration::from_secs(15),
                &format!("{url} answers in {}", self.daemon.name()),
                || {
                    let out = self.lab.exec(&r.node, &["curl", "-s", "-m", "1", &url]);
                    String::from_utf8_lossy(&out.stdout).contains("ok")
                },
            );
        }
    }

    /// Waits until a holds the VIP and b does not.
    fn wait_settled(&self) {
        let vip = self.daemon.vip();
        let (a, b) = (&self.routers[0], &self.routers[1]);
        self.lab.wait_until(
            Duration::from_secs(20),
            &format!("{} pair settled (VIP on a only)", self.daemon.name()),
            || self.lab.has_addr(&a.node, &vip) && !self.lab.has_addr(&b.node, &vip),
        );
    }

    fn vigil_config(&self, r: &Router) -> String {
        let fifo = self.lab.path(&format!("{}-access.fifo", r.name));
        let text = format!(
            r#"[log]
access_log = "{fifo}"
level = "info"

[http]
workers = 2

[admin]
listen = "127.0.0.1:9090"

[[server]]
listen = ["0.0.0.0:80"]
  [[server.location]]
  path = "/"
  return = {{ status = 200, body = "ok\n" }}

[[vrrp.instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = {vrid}
priority = {prio}
advert_interval = "{iv}ms"
virtual_ipaddress = ["{vip}"]
preempt = true
# On, so a false verdict under load would show up as a transition.
death_probe = true
{track}"#,
            track = match PROXY_PROBE_MS.load(Ordering::Relaxed) {
                0 => String::new(),
                ms => format!(
                    "\n  [vrrp.instance.track]\n  proxy = true\n  probe_interval = \"{ms}ms\"\n  probe_timeout = \"{}ms\"\n",
                    ms * 3
                ),
            },
            fifo = fifo.display(),
            vrid = self.daemon.vrid(),
            prio = r.priority,
            iv = self.interval_ms,
            vip = self.daemon.vip(),
        );
        self.lab
            .write(&format!("{}-vigil.toml", r.name), &text)
            .display()
            .to_string()
    }

    /// Two workers like vigil's `workers = 2`; the access log unbuffered,
    /// nginx's default.
    fn nginx_config(&self, r: &Router) -> String {
        let dir = self.lab.dir().display().to_string();
        let tmp = format!("{dir}/{}-nginx-tmp", r.name);
        std::fs::create_dir_all(&tmp).expect("nginx temp dir");
        let text = format!(
            r#"worker_processes 2;
daemon off;
pid {dir}/{name}-nginx.pid;
error_log {dir}/{name}-nginx-error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log {dir}/{name}-access.fifo combined;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 80;
        location / {{
            return 200 "ok\n";
        }}
    }}
}}
"#,
            name = r.name
        );
        self.lab
            .write(&format!("{}-nginx.conf", r.name), &text)
            .display()
            .to_string()
    }

    /// The same VRRP settings as vigil's (keepalived preempts by default).
    fn keepalived_config(&self, r: &Router) -> String {
        let text = format!(
            "global_defs {{\n    router_id {name}\n}}\nvrrp_instance VI_1 {{\n    state BACKUP\n    \
             interface eth0\n    virtual_router_id {vrid}\n    priority {prio}\n    advert_int {adv}\n    \
             version 3\n    virtual_ipaddress {{\n        {vip}/32\n    }}\n}}\n",
            name = r.name,
            vrid = self.daemon.vrid(),
            prio = r.priority,
            adv = self.interval_ms as f64 / 1000.0,
            vip = self.daemon.vip(),
        );
        self.lab
            .write(&format!("{}-keepalived.conf", r.name), &text)
            .display()
            .to_string()
    }

    fn start_wrk(&self, soak: Duration) -> Vec<(String, u32)> {
        let secs = soak.as_secs().max(1).to_string();
        self.routers
            .iter()
            .map(|r| {
                let log = format!("wrk-{}.log", r.name);
                let url = format!("http://{}/", r.addr);
                let pid = self.lab.spawn(
                    &self.load,
                    &[
                        "wrk",
                        "-t1",
                        "-c8",
                        "-d",
                        &format!("{secs}s"),
                        "--timeout",
                        "2s",
                        &url,
                    ],
                    &log,
                );
                (log, pid)
            })
            .collect()
    }

    fn finish_wrk(&self, wrks: Vec<(String, u32)>) -> Vec<(String, WrkResult)> {
        wrks.into_iter()
            .zip(&self.routers)
            .map(|((log, pid), r)| {
                // Ends by itself at -d; SIGINT (wrk prints its summary) if
                // the soak was cut short.
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline
                    && std::path::Path::new(&format!("/proc/{pid}")).exists()
                {
                    if self.lab.read(&log).contains("Requests/sec") {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                self.lab.signal(pid, libc::SIGINT);
                std::thread::sleep(Duration::from_millis(300));
                (r.name.to_owned(), WrkResult::parse(&self.lab.read(&log)))
            })
            .collect()
    }

    /// A burst of reloads on both nodes every RELOAD_EVERY, the first
    /// halfway through the first period. Returns (ok, failed).
    fn reload_loop(&self, stop: &AtomicBool) -> (usize, usize) {
        let (mut ok, mut failed) = (0, 0);
        let mut next = Instant::now() + RELOAD_EVERY / 2;
        while !stop.load(Ordering::Relaxed) {
            if Instant::now() < next {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            next += RELOAD_EVERY;
            let burst = Instant::now();
            for k in 0..RELOADS_PER_BURST {
                let at = burst + RELOAD_GAP * k as u32;
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                for r in &self.routers {
                    if self.reload(r) {
                        ok += 1;
                    } else {
                        failed += 1;
                    }
                }
            }
        }
        (ok, failed)
    }

    fn reload(&self, r: &Router) -> bool {
        match self.daemon {
            Daemon::Vigil => {
                let out = self.lab.exec(
                    &r.node,
                    &[
                        "curl",
                        "-s",
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{http_code}",
                        "-m",
                        "5",
                        "-X",
                        "POST",
                        "http://127.0.0.1:9090/reload",
                    ],
                );
                String::from_utf8_lossy(&out.stdout).trim() == "200"
            }
            Daemon::Keepalived => {
                // SAFETY: kill has no memory preconditions.
                let k = unsafe { libc::kill(r.vrrp as i32, libc::SIGHUP) } == 0;
                // SAFETY: as above.
                let n = unsafe { libc::kill(r.proxy as i32, libc::SIGHUP) } == 0;
                k && n
            }
        }
    }

    fn log_bytes(&self) -> u64 {
        self.readers.iter().map(LogReader::bytes).sum()
    }

    fn figures(&self, start: i64, end: i64) -> Figures {
        let ads = self
            .record
            .adverts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        observer::analyze(&ads, self.daemon.vrid(), self.interval_ms, start, end)
    }

    /// vigil's own figures, summed over both nodes (None for keepalived).
    fn vigil_metrics(&self) -> Option<VigilMetrics> {
        if self.daemon != Daemon::Vigil {
            return None;
        }
        let mut all: Option<VigilMetrics> = None;
        for r in &self.routers {
            let out = self.lab.exec(
                &r.node,
                &["curl", "-s", "-m", "5", "http://127.0.0.1:9090/metrics"],
            );
            if !out.status.success() {
                return None;
            }
            let m = VigilMetrics::parse(&String::from_utf8_lossy(&out.stdout));
            all = Some(match all {
                None => m,
                Some(a) => a.plus(&m),
            });
        }
        all
    }
}

fn render(outcomes: &[Outcome], took: Duration) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "VRRP soak, VRRPv3, priorities 150/100, preempt on; stress: wrk -t1 -c8 on each node, {} CPU hogs{}, \
         {RELOADS_PER_BURST} reloads {}ms apart every {}s, access log to a FIFO drained at 40 KiB/s.\n\
         Figures from a raw-socket observer on each lab's bridge (kernel receive times), first {}s after settling excluded.\n\
         lag = gap between consecutive adverts of the same router minus the interval.\n\n",
        HOGS.load(Ordering::Relaxed),
        match PROXY_PROBE_MS.load(Ordering::Relaxed) {
            0 => String::new(),
            ms => format!(", vigil tracking its proxy (self-probe every {ms} ms, timeout {} ms)", ms * 3),
        },
        RELOAD_GAP.as_millis(),
        RELOAD_EVERY.as_secs(),
        SETTLE.as_secs(),
    ));
    s.push_str(
        "| interval | daemon | minutes | transitions | dual-master ms | lag p50/p99/p99.9/max ms \
         | daemon's own: transitions to master, lag p50/p99/p99.9/max ms (histogram bucket bounds) |\n",
    );
    s.push_str("|---|---|---|---|---|---|---|\n");
    for o in outcomes {
        let f = &o.figures;
        let lag = |p| f.lag(p).map_or("-".into(), |v: f64| format!("{v:.2}"));
        s.push_str(&format!(
            "| {} ms | {} | {:.1} | {} | {:.1} | {} / {} / {} / {} | {} |\n",
            o.interval_ms,
            o.daemon.name(),
            o.minutes,
            f.transitions.len(),
            f.dual_ms,
            lag(50.0),
            lag(99.0),
            lag(99.9),
            lag(100.0),
            o.vigil
                .as_ref()
                .map_or("- (no such metric)".into(), VigilMetrics::brief),
        ));
    }
    s.push_str("\nDetails:\n");
    for o in outcomes {
        let f = &o.figures;
        s.push_str(&format!(
            "- {} ms {}: {} adverts ({}), {} priority-0, observer drops {}{}; dual-master stretches {}; \
             reloads ok {} failed {}; log drained {} KiB; wrk",
            o.interval_ms,
            o.daemon.name(),
            f.adverts,
            f.by_source
                .iter()
                .map(|(a, n)| format!("{a}: {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            f.resigns,
            o.observer_drops,
            o.observer_error
                .as_ref()
                .map_or(String::new(), |e| format!(" (observer error: {e})")),
            f.dual_stretches,
            o.reloads_ok,
            o.reloads_failed,
            o.log_bytes / 1024,
        ));
        for (node, w) in &o.wrk {
            s.push_str(&format!(" {node}: {w};"));
        }
        s.push('\n');
        if !f.transitions.is_empty() {
            s.push_str(&format!(
                "  transitions (s into the soak): {}\n",
                f.transitions
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        if let Some(v) = &o.vigil {
            s.push_str(&format!("  vigil /metrics over the soak: {v}\n"));
        }
    }
    s.push_str(&format!(
        "\ntotal bench time: {:.0} s\n",
        took.as_secs_f64()
    ));
    s
}

fn parse_args() -> Opts {
    let mut opts = Opts {
        intervals: vec![10, 20, 50],
        minutes: 10.0,
        budget: Duration::from_secs(3 * 3600),
        vigil: "target/release/vigil".into(),
        out: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--intervals" => {
                opts.intervals = value()
                    .split(',')
                    .map(|v| {
                        let ms: u64 = v.trim().parse().expect("--intervals 10,20,50 (ms)");
                        assert!(
                            ms >= 10 && ms % 10 == 0,
                            "VRRPv3 intervals are whole centiseconds: {ms}"
                        );
                        ms
                    })
                    .collect()
            }
            "--minutes" => opts.minutes = value().parse().expect("--minutes N"),
            "--hogs" => HOGS.store(value().parse().expect("--hogs N"), Ordering::Relaxed),
            "--proxy-probe" => PROXY_PROBE_MS.store(
                value().parse().expect("--proxy-probe MS"),
                Ordering::Relaxed,
            ),
            "--budget" => opts.budget = Duration::from_secs(value().parse().expect("--budget S")),
            "--vigil" => opts.vigil = value(),
            "--out" => opts.out = Some(value()),
            "-h" | "--help" => {
                eprintln!(
                    "vrrp_soak [--intervals 10,20,50] [--minutes N] [--hogs N] [--proxy-probe MS] [--budget S] [--vigil PATH] [--out FILE]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown option {other}"),
        }
    }
    opts
}
