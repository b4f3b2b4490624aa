//! HTTP failover benchmark: vigil vs nginx + keepalived, under load.
//!
//! Each trial builds a fresh lab (network namespaces on this machine only,
//! 10.231.241.0/24): a client, and two routers a (master, priority 150) and
//! b (backup, 100), VRRPv3 at `--advert-ms` adverts (100 ms by default),
//! VIP 10.231.241.50. Each router
//! has its own backend on its loopback (a `vigil run` answering `be-a` /
//! `be-b`) and runs one of the stacks in front of it:
//!
//! - **vigil** (one process: proxy + VRRP, proxy health and upstream
//!   health tracked into the priority);
//! - **nginx + keepalived** (`proxy_pass` to the same backend, and a
//!   `vrrp_script chk_nginx` that curls the proxied path).
//!
//! While the client runs wrk, a strict keep-alive client and an open-loop
//! new-connection prober against the VIP, a fault is injected on a:
//!
//! - `planned`: planned stop. vigil: SIGTERM. The pair: see `StopOrder`.
//! - `wedged`: the proxy stops answering for `--stall-ms`. vigil: `POST
//!   /debug/stall` (every worker thread blocked; control thread alive).
//!   nginx: SIGSTOP of master and workers, SIGCONT after the same time.
//!   (keepalived keeps running in both cases, as vigil's control thread.)
//! - `upstreams`: a's backend is SIGKILLed (stays dead).
//!
//! Per trial: the outage (fault → first 2xx from be-b to a connection
//! opened after the fault), and the failed requests seen by wrk and by the
//! strict client over the whole window after the fault (which, for
//! `wedged`, includes the return of a: both stacks preempt by default).
//!
//! Run through `bench/failover.sh http` (installs what it needs, builds in
//! release mode). Needs root. Bounded: every wait has a deadline, the
//! whole run stops starting trials once `--budget` seconds are spent.

// The test helpers (load.rs reaches netns.rs as `super::netns`).
#[path = "failover_http/clients.rs"]
mod clients;
#[allow(dead_code)] // the bench uses a part of them
#[path = "../tests/support/load.rs"]
mod load;
#[path = "../tests/support/netns.rs"]
mod netns;
#[path = "failover_http/stacks.rs"]
mod stacks;

use std::net::{Ipv4Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clients::WrkCounts;
use netns::{Lab, Node, is_root, tool_exists};
use stacks::{Router, Stack, StopOrder};

pub const NET: &str = "10.231.241";
pub const VIP: &str = "10.231.241.50";
pub const VRID: u8 = 241;
/// `--advert-ms` (100 by default), read by the stacks' configs.
static ADVERT_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(100);

pub fn advert_ms() -> u64 {
    ADVERT_MS.load(Ordering::Relaxed)
}

/// Set by SIGINT / SIGTERM: finish the trial in progress (bounded), print
/// the tables so far, and let the lab clean its namespaces up.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Load running before the fault (connections up, ARP and pools warm).
const WARMUP: Duration = Duration::from_millis(1500);
/// Every client gives up on a request after this (wrk: counted late).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    Planned,
    Wedged,
    Upstreams,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Planned => "planned",
            Scenario::Wedged => "wedged",
            Scenario::Upstreams => "upstreams",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Scenario::Planned => "planned stop of the master",
            Scenario::Wedged => "proxy wedged on the master",
            Scenario::Upstreams => "upstreams dead on the master (backend killed)",
        }
    }

    /// How long to watch after the fault: past the pair's detection
    /// (chk_nginx: 2 failures 1 s apart, then Master_Down_Interval) and,
    /// for `wedged`, past the proxy's return and the preemption back.
    fn window(self, stall: Duration) -> Duration {
        match self {
            Scenario::Planned => Duration::from_secs(4),
            Scenario::Wedged => stall + Duration::from_secs(4),
            Scenario::Upstreams => Duration::from_secs(5),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Variant {
    stack: Stack,
    /// The pair's planned-stop order (None: vigil, or another scenario).
    order: Option<StopOrder>,
}

impl Variant {
    fn label(self) -> String {
        match (self.stack, self.order) {
            (Stack::Vigil, _) => "vigil".into(),
            (Stack::Pair, None) => "nginx+keepalived".into(),
            (Stack::Pair, Some(o)) => format!("nginx+keepalived {}", o.name()),
        }
    }
}

struct Opts {
    vigil: String,
    trials: usize,
    budget: Duration,
    scenarios: Vec<Scenario>,
    orders: Vec<StopOrder>,
    wrk_connections: usize,
    wrk_delay_ms: u64,
    strict_connections: usize,
    pace: Duration,
    probe_every: Duration,
    stall: Duration,
    pcap: bool,
    pcap_filter: String,
    keep: Option<String>,
}

#[derive(Debug, Clone)]
struct TrialResult {
    outage: Option<Duration>,
    wrk: WrkCounts,
    strict_failed: usize,
    strict_ok: usize,
    /// The slowest successful strict-client request that ended after the
    /// fault (a held-off SYN costs a retransmission: about 1 s).
    strict_slowest_ok: Option<Duration>,
    /// New-connection probes opened after the fault that got no 2xx.
    probes_failed: usize,
    /// VIP timeline after the fault, from watchers in a and b.
    vip_on_b: Option<Duration>,
    vip_back_on_a: Option<Duration>,
    /// Failure kinds seen by the strict client, with counts.
    strict_kinds: Vec<(String, usize)>,
    notes: Vec<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: failover_http [--vigil PATH] [--trials N] [--budget SECONDS]\n\
         \x20      [--scenarios planned,wedged,upstreams] [--stop-orders keepalived-first,together,nginx-first]\n\
         \x20      [--wrk-connections N] [--wrk-delay-ms MS] [--stall-ms MS] [--advert-ms MS]\n\
         \x20      [--pcap] [--pcap-filter EXPR] [--keep DIR]\n\
         --pcap: tcpdump in the client namespace; --keep DIR: copy the lab files (logs, configs,\n\
         pcap, sockets at the end) of each trial that lost requests to DIR/<scenario>-<stack>-<trial>"
    );
    std::process::exit(2);
}

fn parse_opts() -> Opts {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut o = Opts {
        vigil: "target/release/vigil".into(),
        trials: 5,
        budget: Duration::from_secs(540),
        scenarios: vec![Scenario::Planned, Scenario::Wedged, Scenario::Upstreams],
        orders: vec![
            StopOrder::KeepalivedFirst,
            StopOrder::Together,
            StopOrder::NginxFirst,
        ],
        wrk_connections: 8,
        wrk_delay_ms: 5,
        strict_connections: 4,
        pace: Duration::from_millis(5),
        probe_every: Duration::from_millis(5),
        stall: Duration::from_millis(5000),
        pcap: false,
        // Connection starts and ends, and ARP: which node answered, RSTs.
        pcap_filter: "arp or (tcp port 80 and tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0)"
            .into(),
        keep: None,
    };
    let mut i = 0;
    let value = |i: &mut usize| -> String {
        *i += 1;
        args.get(*i).cloned().unwrap_or_else(|| usage())
    };
    let num = |s: String| -> u64 { s.parse().unwrap_or_else(|_| usage()) };
    while i < args.len() {
        match args[i].as_str() {
            "--vigil" => o.vigil = value(&mut i),
            "--trials" => o.trials = num(value(&mut i)) as usize,
            "--budget" => o.budget = Duration::from_secs(num(value(&mut i))),
            "--scenarios" => {
                o.scenarios = value(&mut i)
                    .split(',')
                    .map(|s| {
                        [Scenario::Planned, Scenario::Wedged, Scenario::Upstreams]
                            .into_iter()
                            .find(|x| x.name() == s)
                            .unwrap_or_else(|| usage())
                    })
                    .collect()
            }
            "--stop-orders" => {
                o.orders = value(&mut i)
                    .split(',')
                    .map(|s| StopOrder::parse(s).unwrap_or_else(|| usage()))
                    .collect()
            }
            "--wrk-connections" => o.wrk_connections = num(value(&mut i)).max(1) as usize,
            "--wrk-delay-ms" => o.wrk_delay_ms = num(value(&mut i)),
            "--stall-ms" => o.stall = Duration::from_millis(num(value(&mut i))),
            "--advert-ms" => {
                let ms = num(value(&mut i));
                if ms % 10 != 0 || !(10..=40_950).contains(&ms) {
                    usage();
                }
                ADVERT_MS.store(ms, Ordering::Relaxed);
            }
            "--pcap" => o.pcap = true,
            "--pcap-filter" => {
                o.pcap = true;
                o.pcap_filter = value(&mut i);
            }
            "--keep" => o.keep = Some(value(&mut i)),
            _ => usage(),
        }
        i += 1;
    }
    o
}

fn main() {
    let opts = parse_opts();
    if !is_root() {
        eprintln!("failover_http: needs root (network namespaces)");
        std::process::exit(1);
    }
    let mut missing: Vec<&str> = ["ip", "ping", "curl", "wrk", "nginx", "keepalived"]
        .into_iter()
        .filter(|t| !tool_exists(t))
        .collect();
    if opts.pcap && !tool_exists("tcpdump") {
        missing.push("tcpdump");
    }
    if !missing.is_empty() {
        eprintln!("failover_http: missing {missing:?} (bench/failover.sh installs them)");
        std::process::exit(1);
    }

    let mut plan: Vec<(Scenario, Variant)> = vec![];
    for &s in &opts.scenarios {
        plan.push((
            s,
            Variant {
                stack: Stack::Vigil,
                order: None,
            },
        ));
        if s == Scenario::Planned {
            for &o in &opts.orders {
                plan.push((
                    s,
                    Variant {
                        stack: Stack::Pair,
                        order: Some(o),
                    },
                ));
            }
        } else {
            plan.push((
                s,
                Variant {
                    stack: Stack::Pair,
                    order: None,
                },
            ));
        }
    }
    // SAFETY: the handler only stores to an atomic (async-signal-safe).
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let started = Instant::now();
    let load_before = loadavg();
    let mut results: Vec<Vec<TrialResult>> = vec![vec![]; plan.len()];
    let mut failed_setups: Vec<usize> = vec![0; plan.len()];
    // Trials interleaved (trial 0 of every row, then trial 1, ...) so a
    // change in the machine's load touches every row alike, and a spent
    // budget leaves every row with about as many trials.
    'outer: for trial in 0..opts.trials {
        for (k, &(scenario, variant)) in plan.iter().enumerate() {
            if STOP.load(Ordering::Relaxed) {
                eprintln!("interrupted; stopping");
                break 'outer;
            }
            let expected = scenario.window(opts.stall) + WARMUP + Duration::from_secs(6);
            if started.elapsed() + expected > opts.budget {
                eprintln!(
                    "budget of {:?} reached after {:.0} s; stopping",
                    opts.budget,
                    started.elapsed().as_secs_f64()
                );
                break 'outer;
            }
            let label = format!(
                "{:<9} {:<34} trial {trial}",
                scenario.name(),
                variant.label()
            );
            let tag = format!(
                "{}-{}-{trial}",
                scenario.name(),
                variant.label().replace([' ', '+'], "-")
            );
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                run_trial(&opts, scenario, variant, &tag)
            }));
            match outcome {
                Ok(Ok(r)) => {
                    eprintln!("{label}: {}", describe(&r));
                    results[k].push(r);
                }
                Ok(Err(why)) => {
                    eprintln!("{label}: not counted: {why}");
                    failed_setups[k] += 1;
                }
                Err(panic) => {
                    let why = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    eprintln!("{label}: not counted: trial aborted: {why}");
                    failed_setups[k] += 1;
                }
            }
        }
    }
    print_tables(&opts, &plan, &results, &failed_setups);
    println!(
        "machine: {} cores; load average before {load_before}, after {}; bench time {:.0} s",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg(),
        started.elapsed().as_secs_f64()
    );
}

fn run_trial(
    opts: &Opts,
    scenario: Scenario,
    variant: Variant,
    tag: &str,
) -> Result<TrialResult, String> {
    let lab = Lab::new("fohttp");
    let client = lab.node("client");
    lab.connect(&client, "eth0", &[&format!("{NET}.100/24")]);
    let mut routers = vec![];
    for (name, host, priority) in [("a", 1, 150), ("b", 2, 100)] {
        let node = lab.node(name);
        lab.connect(&node, "eth0", &[&format!("{NET}.{host}/24")]);
        let backend = stacks::start_backend(&lab, &opts.vigil, &node, name);
        routers.push(Router {
            name,
            node,
            priority,
            backend,
            proxy: 0,
            keepalived: None,
        });
    }
    let mut b = routers.pop().expect("b");
    let mut a = routers.pop().expect("a");
    let stack = variant.stack;

    // a first, so the trial starts from a known master.
    a.start(&lab, stack, &opts.vigil, true);
    lab.wait_until(Duration::from_secs(10), "VIP on a", || {
        lab.has_addr(&a.node, VIP)
    });
    // The client learns the VIP's MAC now. Linux ignores an ARP update for
    // an entry changed less than `locktime` (1 s) ago: a fault right after
    // the first packet would measure the kernel's ARP cache, not the stack.
    stacks::wait_http(&lab, &client, &format!("http://{VIP}/"), "be-a");
    b.start(&lab, stack, &opts.vigil, false);
    b.wait_backup(&lab, stack);
    std::thread::sleep(Duration::from_millis(1100));

    if opts.pcap {
        lab.spawn(
            &client,
            &[
                "tcpdump",
                "-i",
                "eth0",
                "-n",
                "-tt",
                "-l",
                "-e",
                &opts.pcap_filter,
            ],
            "client-pcap.log",
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    let window = scenario.window(opts.stall);
    let watch_a = VipWatch::start(&lab, &a.node);
    let watch_b = VipWatch::start(&lab, &b.node);
    let target: SocketAddr = format!("{VIP}:80").parse().expect("VIP");
    let wrk = clients::start_wrk(
        &lab,
        &client,
        &format!("http://{VIP}/"),
        opts.wrk_connections,
        opts.wrk_delay_ms,
        (WARMUP + window + Duration::from_millis(1500)).max(Duration::from_secs(1)),
        REQUEST_TIMEOUT,
    );
    let strict = load::start_paced(
        &lab,
        &client,
        target,
        opts.strict_connections,
        REQUEST_TIMEOUT,
        false,
        opts.pace,
    );
    let prober = clients::start_prober(&lab, &client, target, opts.probe_every, REQUEST_TIMEOUT);
    std::thread::sleep(WARMUP);

    // The master must still be a: under load on a small machine a spurious
    // failover before the fault would make the trial meaningless.
    let healthy = lab.has_addr(&a.node, VIP) && !lab.has_addr(&b.node, VIP);
    let t0 = Instant::now();
    let strict_t0 = strict.elapsed();
    let mut notes = vec![];
    if healthy {
        match scenario {
            Scenario::Planned => {
                a.planned_stop(&lab, stack, variant.order.unwrap_or(StopOrder::Together))
            }
            Scenario::Wedged => a.wedge(&lab, stack, opts.stall),
            Scenario::Upstreams => lab.kill(a.backend),
        }
        if scenario == Scenario::Wedged && stack == Stack::Pair {
            sleep_until(t0 + opts.stall);
            a.unwedge(&lab, stack);
        }
        sleep_until(t0 + window);
        if opts.keep.is_some() {
            // The sockets at the end of the window, load still running:
            // what each side still holds (kept with the lab's files).
            for node in [&a.node, &b.node, &client] {
                let out = lab.exec(node, &["ss", "-tanoi", "( sport = :80 or dport = :80 )"]);
                lab.write(
                    &format!("{}-sockets.txt", node.name),
                    &String::from_utf8_lossy(&out.stdout),
                );
            }
        }
    }
    let probes = prober.stop();
    let report = strict.stop();
    let wrk = wrk.finish(&lab);
    let va = watch_a.stop();
    let vb = watch_b.stop();
    if !healthy {
        return Err(format!(
            "the VIP left a before the fault (spurious failover under load)\n{}",
            lab.logs()
        ));
    }
    let wrk = wrk?;
    if scenario == Scenario::Planned && stack == Stack::Vigil {
        match lab.wait_exit(a.proxy, Duration::from_secs(10)) {
            Some(0) => {}
            other => notes.push(format!("vigil on a exited with {other:?}")),
        }
    }

    let outage = probes
        .iter()
        .filter(|p| p.start >= t0 && p.result.as_ref().is_ok_and(|b| b.contains("be-b")))
        .map(|p| p.done - t0)
        .min();
    let probes_failed = probes
        .iter()
        .filter(|p| p.start >= t0 && p.result.is_err())
        .count();
    let pre_fault: Vec<_> = report
        .failures()
        .into_iter()
        .filter(|o| o.done < strict_t0)
        .collect();
    if !pre_fault.is_empty() {
        notes.push(format!(
            "{} strict-client failures before the fault, e.g. {:?}",
            pre_fault.len(),
            pre_fault[0].result
        ));
    }
    let after: Vec<_> = report
        .failures()
        .into_iter()
        .filter(|o| o.done >= strict_t0)
        .collect();
    let mut strict_kinds: Vec<(String, usize)> = vec![];
    for o in &after {
        let kind = kind_of(o.result.as_ref().err().map_or("", String::as_str));
        match strict_kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => strict_kinds.push((kind, 1)),
        }
    }
    let vip_on_b = vb
        .iter()
        .find(|(t, on)| *on && *t >= t0)
        .map(|(t, _)| *t - t0);
    let vip_back_on_a = vip_on_b.and_then(|on_b| {
        va.iter()
            .find(|(t, on)| *on && *t >= t0 + on_b)
            .map(|(t, _)| *t - t0)
    });
    let strict_slowest_ok = report
        .outcomes
        .iter()
        .filter(|o| o.result.is_ok() && o.done >= strict_t0)
        .map(|o| o.done - o.at)
        .max();
    let mut result = TrialResult {
        outage,
        wrk,
        strict_failed: after.len(),
        strict_ok: report.ok(),
        strict_slowest_ok,
        probes_failed,
        vip_on_b,
        vip_back_on_a,
        strict_kinds,
        notes,
    };
    // Keep the lab's files (logs, configs, pcap) of trials that lost
    // requests, for a look at why.
    if let Some(dir) = &opts.keep {
        if result.wrk.failed() > 0 || result.strict_failed > 0 {
            let to = std::path::Path::new(dir).join(tag);
            match copy_dir(lab.dir(), &to) {
                Ok(()) => result
                    .notes
                    .push(format!("lab files kept in {}", to.display())),
                Err(e) => result.notes.push(format!("cannot keep the lab files: {e}")),
            }
        }
    }
    Ok(result)
}

/// A short name for a strict-client error, to group them.
fn kind_of(err: &str) -> String {
    let e = err.to_ascii_lowercase();
    let kind = if e.starts_with("no answer within") {
        "timeout"
    } else if e.contains("refused") {
        "refused"
    } else if e.contains("reset") {
        "reset"
    } else if e.starts_with("status") {
        return err.split(':').next().unwrap_or(err).to_owned();
    } else if e.contains("incomplete") || e.contains("closed") || e.contains("eof") {
        "closed"
    } else {
        return err.chars().take(40).collect();
    };
    kind.to_owned()
}

fn describe(r: &TrialResult) -> String {
    let mut s = format!(
        "outage {}; wrk failed {} of {} (unanswered {}, bad {}, late {}, stuck {}; wrk: socket errors {:?}, non-2xx {}); \
         strict failed {} of {}",
        r.outage
            .map_or("none".into(), |d| format!("{:.0} ms", ms(d))),
        r.wrk.failed(),
        r.wrk.sent,
        r.wrk.unanswered,
        r.wrk.bad,
        r.wrk.socket_errors[3],
        r.wrk.stuck,
        r.wrk.socket_errors,
        r.wrk.non_2xx,
        r.strict_failed,
        r.strict_failed + r.strict_ok,
    );
    if !r.strict_kinds.is_empty() {
        let kinds: Vec<String> = r
            .strict_kinds
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        s.push_str(&format!(" ({})", kinds.join(", ")));
    }
    s.push_str(&format!(
        "; slowest ok {}; new connections failed {}; VIP on b at {}",
        r.strict_slowest_ok
            .map_or("-".into(), |d| format!("{:.0} ms", ms(d))),
        r.probes_failed,
        r.vip_on_b
            .map_or("-".into(), |d| format!("{:.0} ms", ms(d)))
    ));
    if let Some(d) = r.vip_back_on_a {
        s.push_str(&format!(", back on a at {:.0} ms", ms(d)));
    }
    for n in &r.notes {
        s.push_str(&format!("\n    note: {n}"));
    }
    s
}

fn print_tables(
    opts: &Opts,
    plan: &[(Scenario, Variant)],
    results: &[Vec<TrialResult>],
    failed_setups: &[usize],
) {
    println!();
    println!(
        "HTTP failover under load: vigil vs nginx + keepalived 2.2.7 (VRRPv3, {} ms adverts, priorities 150/100, preempt)",
        advert_ms()
    );
    println!(
        "load: wrk {} connections ({} ms between requests), strict keep-alive client {} connections ({} ms apart),",
        opts.wrk_connections,
        opts.wrk_delay_ms,
        opts.strict_connections,
        opts.pace.as_millis()
    );
    println!(
        "a new connection every {} ms (prober); {} s request timeout. Per trial, median [min..max]:",
        opts.probe_every.as_millis(),
        REQUEST_TIMEOUT.as_secs()
    );
    println!(
        "  outage     fault -> first 2xx from b's backend on a connection opened after the fault, ms"
    );
    println!(
        "  wrk        wrk requests without an answer, >= 400, answered after the timeout, or stuck"
    );
    println!(
        "             (wrk retries a refused connection at once: a refusal window counts every try)"
    );
    println!("  strict     keep-alive client requests without a 2xx within the timeout");
    println!(
        "  new conns  prober connections opened after the fault without a 2xx within the timeout"
    );
    println!("  slowest    slowest successful strict-client request after the fault, ms");
    println!("  wrk reqs   requests wrk sent in the run (stuck connections send no more)");
    println!("  ratio      nginx+keepalived / vigil, of the medians: outage; wrk failed");
    for &scenario in &opts.scenarios {
        println!();
        let extra = match scenario {
            Scenario::Wedged => format!(", {} ms", opts.stall.as_millis()),
            _ => String::new(),
        };
        println!("== {}{extra}", scenario.title());
        println!(
            "{:<34} {:>17} {:>17} {:>13} {:>13} {:>17} {:>8} {:>12}",
            "stack", "outage", "wrk", "strict", "new conns", "slowest", "wrk reqs", "ratio"
        );
        let vigil = plan
            .iter()
            .position(|&(s, v)| s == scenario && v.stack == Stack::Vigil)
            .map(|k| &results[k]);
        for (k, &(s, v)) in plan.iter().enumerate() {
            if s != scenario {
                continue;
            }
            let rs = &results[k];
            let outages: Vec<f64> = rs.iter().filter_map(|r| r.outage).map(ms).collect();
            let wrk: Vec<f64> = rs.iter().map(|r| r.wrk.failed() as f64).collect();
            let strict: Vec<f64> = rs.iter().map(|r| r.strict_failed as f64).collect();
            let probes: Vec<f64> = rs.iter().map(|r| r.probes_failed as f64).collect();
            let slowest: Vec<f64> = rs
                .iter()
                .filter_map(|r| r.strict_slowest_ok)
                .map(ms)
                .collect();
            let reqs: Vec<f64> = rs.iter().map(|r| r.wrk.sent as f64).collect();
            let no_failover = rs.iter().filter(|r| r.outage.is_none()).count();
            let ratio = match (v.stack, vigil) {
                (Stack::Pair, Some(vr)) => {
                    let vo: Vec<f64> = vr.iter().filter_map(|r| r.outage).map(ms).collect();
                    let vw: Vec<f64> = vr.iter().map(|r| r.wrk.failed() as f64).collect();
                    format!(
                        "{}; {}",
                        ratio(median(&outages), median(&vo)),
                        ratio(median(&wrk), median(&vw))
                    )
                }
                _ => String::new(),
            };
            let mut label = v.label();
            if failed_setups[k] > 0 || no_failover > 0 {
                let mut why = vec![format!("n={}", rs.len())];
                if failed_setups[k] > 0 {
                    why.push(format!("{} not counted", failed_setups[k]));
                }
                if no_failover > 0 {
                    why.push(format!("{no_failover} no failover"));
                }
                label.push_str(&format!(" ({})", why.join(", ")));
            }
            println!(
                "{:<34} {:>17} {:>17} {:>13} {:>13} {:>17} {:>8} {:>12}",
                label,
                summary(&outages),
                summary(&wrk),
                summary(&strict),
                summary(&probes),
                summary(&slowest),
                median(&reqs).map_or("-".into(), |m| format!("{m:.0}")),
                ratio
            );
        }
    }
    println!();
}

fn ratio(pair: Option<f64>, vigil: Option<f64>) -> String {
    match (pair, vigil) {
        (Some(p), Some(v)) if v > 0.0 => format!("{:.1}x", p / v),
        (Some(p), Some(_)) if p > 0.0 => "inf".into(),
        (Some(_), Some(_)) => "=".into(),
        _ => "-".into(),
    }
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

fn summary(v: &[f64]) -> String {
    let Some(m) = median(v) else {
        return "-".into();
    };
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{m:.0} [{min:.0}..{max:.0}]")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn sleep_until(t: Instant) {
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)?.flatten() {
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// Watches whether the VIP is configured in a node, from a thread inside
/// that namespace (getifaddrs every 2 ms: no process spawned per look).
/// Records each change with its time.
struct VipWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(Instant, bool)>>,
}

impl VipWatch {
    fn start(lab: &Lab, node: &Node) -> VipWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let vip: Ipv4Addr = VIP.parse().expect("VIP");
        let thread = lab.run_in(node, move || {
            let mut changes = vec![];
            let mut last = None;
            while !flag.load(Ordering::Relaxed) {
                let now = has_ipv4(vip);
                if last != Some(now) {
                    changes.push((Instant::now(), now));
                    last = Some(now);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            changes
        });
        VipWatch { stop, thread }
    }

    fn stop(self) -> Vec<(Instant, bool)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// Whether `addr` is configured on an interface of this thread's network
/// namespace.
fn has_ipv4(addr: Ipv4Addr) -> bool {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` on success; freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return false;
    }
    let want = u32::from(addr).to_be();
    let mut found = false;
    let mut p = list;
    while !p.is_null() {
        // SAFETY: p is a node of the list getifaddrs returned, not freed yet.
        let ifa = unsafe { &*p };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr whose family says its
            // real type; AF_INET means sockaddr_in.
            unsafe {
                if i32::from((*ifa.ifa_addr).sa_family) == libc::AF_INET {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    if sin.sin_addr.s_addr == want {
                        found = true;
                        break;
                    }
                }
            }
        }
        p = ifa.ifa_next;
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    found
}
