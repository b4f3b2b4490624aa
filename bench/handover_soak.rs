//! Hand-over soak: many hand-overs of each kind under load, every failed
//! request counted by kind (issue 14).
//!
//! One lab for the whole run (network namespaces on this machine only,
//! 10.231.242.0/24): a client, and two vigil nodes a (priority 150) and b
//! (100), VRRPv3 at 100 ms adverts, preemption on, VIP 10.231.242.50. Each
//! node proxies to its own backend on its loopback (a second `vigil run`
//! answering `be-a` / `be-b`), tracks that pool (-100) and a second link
//! `eth1` (fault).
//!
//! A cycle takes the VIP from a to b one way, then gives it back by
//! preemption when a recovers:
//!
//! - `planned`: SIGTERM of a (drain, priority 0, exit); a restarts;
//! - `upstream`: a's backend SIGKILLed (a's pool is dead: its priority
//!   drops to 50); the backend restarts;
//! - `interface`: a's tracked `eth1` down (FAULT); up again;
//!
//! and every way back is a `preemption`. Each half runs under its own load:
//! wrk (keep-alive connections, paced) and an open-loop client opening a
//! new connection every few ms. A request fails if it gets no answer, an
//! error status, or an answer after the timeout. 502s of the `upstream`
//! kind are counted apart: between the backend's death and the hand-over,
//! a answers 502 (its only server is gone), as documented.
//!
//! Run through `bench/handover_soak.sh` (needs root). Bounded: `--cycles`
//! per kind and a `--budget` in seconds, whichever ends first.

#[path = "failover_http/clients.rs"]
mod clients;
#[path = "../tests/support/netns.rs"]
mod netns;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clients::{Probe, WrkCounts};
use netns::{Lab, Node, is_root, tool_exists};

const NET: &str = "10.231.242";
const VIP: &str = "10.231.242.50";
const VRID: u8 = 242;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Planned,
    Upstream,
    Interface,
    Preemption,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Planned => "planned stop",
            Kind::Upstream => "upstream pool death",
            Kind::Interface => "tracked interface down",
            Kind::Preemption => "preemption",
        }
    }
}

#[derive(Default, Debug)]
struct Tally {
    handovers: u64,
    /// Hand-overs that did not happen within the deadline.
    missed: u64,
    wrk: WrkCounts,
    probes: u64,
    probe_failed: u64,
    probe_502: u64,
    /// The slowest successful new-connection request.
    probe_slowest: Duration,
    /// Examples of failed probes, for the record.
    examples: Vec<String>,
}

struct Opts {
    vigil: PathBuf,
    cycles: u64,
    budget: Duration,
    half: Duration,
    wrk_connections: usize,
    wrk_delay_ms: u64,
    probe_every: Duration,
    /// The fault kinds each cycle runs (`--kinds planned,upstream,interface`).
    kinds: Vec<Kind>,
}

struct NodeProcs {
    node: Node,
    vigil: String,
    name: &'static str,
    config: PathBuf,
    backend_config: PathBuf,
    proxy: u32,
    backend: u32,
    starts: usize,
}

fn main() {
    let opts = parse_args();
    if !is_root() {
        eprintln!("needs root (network namespaces)");
        std::process::exit(1);
    }
    for tool in ["ip", "wrk"] {
        if !tool_exists(tool) {
            eprintln!("needs {tool}");
            std::process::exit(1);
        }
    }
    // SAFETY: installs a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let lab = Lab::new("soak");
    let client = lab.node("client");
    lab.connect(&client, "eth0", &[&format!("{NET}.100/24")]);
    let mut a = router(&lab, &opts, "a", 1, 150);
    let mut b = router(&lab, &opts, "b", 2, 100);
    start_proxy(&lab, &mut a);
    wait(&lab, Duration::from_secs(10), || lab.has_addr(&a.node, VIP));
    start_proxy(&lab, &mut b);
    // Let the client's ARP entry age past Linux's 1 s locktime.
    let _ = lab.exec(&client, &["ping", "-c", "1", "-W", "1", VIP]);
    std::thread::sleep(Duration::from_millis(1500));

    let started = Instant::now();
    let mut tallies: BTreeMap<Kind, Tally> = BTreeMap::new();
    let target: SocketAddr = format!("{VIP}:80").parse().unwrap();
    let kinds = opts.kinds.clone();
    let mut cycle = 0;
    'cycles: while cycle < opts.cycles {
        for &kind in &kinds {
            if STOP.load(Ordering::Relaxed) || started.elapsed() > opts.budget {
                break 'cycles;
            }
            // The fault: the VIP goes from a to b.
            let t = half(&lab, &client, &opts, target, kind, || {
                match kind {
                    Kind::Planned => {
                        lab.signal(a.proxy, libc::SIGTERM);
                        let _ = lab.wait_exit(a.proxy, Duration::from_secs(10));
                    }
                    Kind::Upstream => lab.kill(a.backend),
                    Kind::Interface => lab.set_link(&a.node, "eth1", false),
                    Kind::Preemption => unreachable!(),
                }
                moved(&lab, &b.node, &a.node)
            });
            add(&mut tallies, kind, t);
            // The repair: a takes the VIP back by preemption.
            let t = half(&lab, &client, &opts, target, Kind::Preemption, || {
                match kind {
                    Kind::Planned => start_proxy(&lab, &mut a),
                    Kind::Upstream => start_backend(&lab, &mut a),
                    Kind::Interface => lab.set_link(&a.node, "eth1", true),
                    Kind::Preemption => unreachable!(),
                }
                moved(&lab, &a.node, &b.node)
            });
            add(&mut tallies, Kind::Preemption, t);
        }
        cycle += 1;
        eprintln!(
            "cycle {cycle}/{} done at {:.0} s",
            opts.cycles,
            started.elapsed().as_secs_f64()
        );
        // The figures so far, should the run be cut short.
        if cycle % 10 == 0 {
            print_table(&tallies, started.elapsed(), &opts);
        }
    }
    print_table(&tallies, started.elapsed(), &opts);
}

/// One half-cycle under its own load: `act` injects the change and says
/// whether the VIP moved in time.
fn half(
    lab: &Lab,
    client: &Node,
    opts: &Opts,
    target: SocketAddr,
    kind: Kind,
    act: impl FnOnce() -> bool,
) -> Tally {
    let wrk = clients::start_wrk(
        lab,
        client,
        &format!("http://{VIP}/"),
        opts.wrk_connections,
        opts.wrk_delay_ms,
        opts.half,
        Duration::from_secs(2),
    );
    let prober = clients::start_prober(
        lab,
        client,
        target,
        opts.probe_every,
        Duration::from_secs(2),
    );
    let began = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    let ok = act();
    // The rest of the half: the new master's second gratuitous-ARP burst
    // and settled connections, before the next change.
    let rest = opts.half.saturating_sub(began.elapsed());
    std::thread::sleep(rest);
    let probes = prober.stop();
    let wrk = wrk.finish(lab).unwrap_or_else(|e| {
        eprintln!("{}: {e}", kind.name());
        WrkCounts::default()
    });
    let mut t = Tally {
        handovers: u64::from(ok),
        missed: u64::from(!ok),
        wrk,
        ..Tally::default()
    };
    count_probes(&mut t, &probes, kind);
    t
}

fn count_probes(t: &mut Tally, probes: &[Probe], kind: Kind) {
    t.probes = probes.len() as u64;
    for p in probes {
        if p.result.is_ok() {
            t.probe_slowest = t.probe_slowest.max(p.done - p.start);
        }
        if let Err(why) = &p.result {
            if why.starts_with("status 502") && kind == Kind::Upstream {
                t.probe_502 += 1;
            } else {
                t.probe_failed += 1;
                if t.examples.len() < 3 {
                    t.examples.push(why.clone());
                }
            }
        }
    }
}

fn add(tallies: &mut BTreeMap<Kind, Tally>, kind: Kind, t: Tally) {
    let total = tallies.entry(kind).or_default();
    total.handovers += t.handovers;
    total.missed += t.missed;
    total.wrk.sent += t.wrk.sent;
    total.wrk.answered += t.wrk.answered;
    total.wrk.unanswered += t.wrk.unanswered;
    total.wrk.bad += t.wrk.bad;
    total.wrk.bad_502 += t.wrk.bad_502;
    total.wrk.stuck += t.wrk.stuck;
    for i in 0..4 {
        total.wrk.socket_errors[i] += t.wrk.socket_errors[i];
    }
    total.probes += t.probes;
    total.probe_failed += t.probe_failed;
    total.probe_502 += t.probe_502;
    total.probe_slowest = total.probe_slowest.max(t.probe_slowest);
    for e in t.examples {
        if total.examples.len() < 5 {
            total.examples.push(e);
        }
    }
}

/// Waits until `to` holds the VIP and `from` does not.
fn moved(lab: &Lab, to: &Node, from: &Node) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if lab.has_addr(to, VIP) && !lab.has_addr(from, VIP) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn wait(lab: &Lab, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() > deadline {
            panic!("timed out\n{}", lab.logs());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn router(lab: &Lab, opts: &Opts, name: &'static str, host: u8, priority: u8) -> NodeProcs {
    let node = lab.node(name);
    lab.connect(&node, "eth0", &[&format!("{NET}.{host}/24")]);
    lab.connect(&node, "eth1", &[]);
    let backend_config = lab.write(
        &format!("{name}-backend.toml"),
        &format!(
            "[log]\naccess_log = \"off\"\n[http]\nworkers = 1\n[[server]]\nlisten = [\"127.0.0.1:9001\"]\n  [[server.location]]\n  path = \"/\"\n  return = {{ status = 200, body = \"be-{name}\\n\" }}\n"
        ),
    );
    let config = lab.write(
        &format!("{name}.toml"),
        &format!(
            r#"
[log]
access_log = "off"
level = "info"

[http]
workers = 2
shutdown_timeout = "5s"

[admin]
listen = "127.0.0.1:9090"

[[server]]
listen = ["0.0.0.0:80"]
  [[server.location]]
  path = "/"
  proxy_pass = "app"

[upstream.app]
servers = [{{ addr = "127.0.0.1:9001", max_fails = 1, fail_timeout = "1s" }}]
health_check = {{ path = "/", interval = "100ms", timeout = "1s", rise = 1, fall = 1 }}

[[vrrp.instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = {VRID}
priority = {priority}
advert_interval = "100ms"
virtual_ipaddress = ["{VIP}/24"]
preempt = true
garp = {{ repeat = 3, interval = "50ms" }}

  [vrrp.instance.track]
  proxy = true
  probe_interval = "50ms"
  probe_timeout = "300ms"
  upstreams = {{ app = -100 }}
  interfaces = {{ eth1 = "fault" }}
"#
        ),
    );
    let mut n = NodeProcs {
        node,
        vigil: opts.vigil.display().to_string(),
        name,
        config,
        backend_config,
        proxy: 0,
        backend: 0,
        starts: 0,
    };
    start_backend(lab, &mut n);
    n
}

fn start_backend(lab: &Lab, n: &mut NodeProcs) {
    n.starts += 1;
    n.backend = lab.spawn(
        &n.node,
        &[&n.vigil, "run", "-c", n.backend_config.to_str().unwrap()],
        &format!("{}-backend-{}.log", n.name, n.starts),
    );
    wait(lab, Duration::from_secs(10), || {
        lab.exec(
            &n.node,
            &[
                "curl",
                "-sf",
                "-o",
                "/dev/null",
                "-m",
                "1",
                "http://127.0.0.1:9001/",
            ],
        )
        .status
        .success()
    });
}

fn start_proxy(lab: &Lab, n: &mut NodeProcs) {
    n.starts += 1;
    let vigil = n.vigil.clone();
    n.proxy = lab.spawn(
        &n.node,
        &[&vigil, "run", "-c", n.config.to_str().unwrap()],
        &format!("{}-proxy-{}.log", n.name, n.starts),
    );
    wait(lab, Duration::from_secs(10), || {
        lab.exec(
            &n.node,
            &[&vigil, "status", "--admin", "127.0.0.1:9090", "--json"],
        )
        .status
        .success()
    });
}

fn print_table(tallies: &BTreeMap<Kind, Tally>, took: Duration, opts: &Opts) {
    println!(
        "\nhand-over soak: {:.0} s, half-cycles of {:?}, wrk {} connections (delay {} ms) + a new connection every {:?}",
        took.as_secs_f64(),
        opts.half,
        opts.wrk_connections,
        opts.wrk_delay_ms,
        opts.probe_every
    );
    println!(
        "{:<24} {:>9} {:>7} {:>10} {:>10} {:>10} {:>8} {:>10}",
        "kind",
        "hand-overs",
        "missed",
        "wrk reqs",
        "wrk failed",
        "new conns",
        "failed",
        "502 (doc)"
    );
    for (kind, t) in tallies {
        let wrk_failed = t.wrk.failed()
            - if *kind == Kind::Upstream {
                t.wrk.bad_502
            } else {
                0
            };
        println!(
            "{:<24} {:>9} {:>7} {:>10} {:>10} {:>10} {:>8} {:>10} {:>8.0}ms",
            kind.name(),
            t.handovers,
            t.missed,
            t.wrk.sent,
            wrk_failed,
            t.probes,
            t.probe_failed,
            if *kind == Kind::Upstream {
                (t.wrk.bad_502 + t.probe_502).to_string()
            } else {
                "-".into()
            },
            t.probe_slowest.as_secs_f64() * 1000.0
        );
        for e in &t.examples {
            println!("    e.g. {e}");
        }
    }
}

fn parse_args() -> Opts {
    let mut opts = Opts {
        vigil: PathBuf::from("target/release/vigil"),
        cycles: 200,
        budget: Duration::from_secs(3600),
        half: Duration::from_secs(2),
        wrk_connections: 4,
        wrk_delay_ms: 2,
        probe_every: Duration::from_millis(5),
        kinds: vec![Kind::Planned, Kind::Upstream, Kind::Interface],
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--vigil" => opts.vigil = PathBuf::from(value()),
            "--cycles" => opts.cycles = value().parse().expect("--cycles N"),
            "--budget" => opts.budget = Duration::from_secs(value().parse().expect("--budget S")),
            "--half" => opts.half = Duration::from_secs(value().parse().expect("--half S")),
            "--wrk-connections" => opts.wrk_connections = value().parse().expect("N"),
            "--wrk-delay-ms" => opts.wrk_delay_ms = value().parse().expect("MS"),
            "--probe-every-ms" => {
                opts.probe_every = Duration::from_millis(value().parse().expect("MS"))
            }
            "--kinds" => {
                opts.kinds = value()
                    .split(',')
                    .map(|k| match k {
                        "planned" => Kind::Planned,
                        "upstream" => Kind::Upstream,
                        "interface" => Kind::Interface,
                        other => {
                            panic!("--kinds: unknown kind {other} (planned, upstream, interface)")
                        }
                    })
                    .collect()
            }
            other => panic!("unknown option {other}"),
        }
    }
    opts
}
