//! Failover benchmark: vigil vs keepalived, same settings, same run.
//!
//! A client namespace probes a UDP service on the VIP every millisecond.
//! Two routers (a: priority 100, b: priority 150, VRRPv3, `--advert-ms`
//! adverts, 100 ms by default) each run a small responder that answers
//! with its name. For each fault the outage is measured from the moment
//! the fault is injected on the master (b) to the first reply the client
//! gets from the new master (a):
//!
//! - `sigkill`:  SIGKILL of the VRRP daemon *and* the service on b (the
//!   node's software dies; for vigil, proxy and VRRP are one process);
//! - `sigstop`:  SIGSTOP of both (the node's software freezes; they are
//!   resumed and stopped after the trial);
//! - `linkdown`: b's interface is set down;
//! - `sigterm`:  graceful stop of the VRRP daemon (priority-0 resign).
//!
//! Daemons: `vigil`, `vigil+probe` (vigil with `death_probe`,
//! docs/VRRP.md) and `keepalived`, chosen with `--daemons`.
//!
//! Run through `bench/failover.sh` (installs what it needs, builds in
//! release mode). Needs root. Bounded: every wait has a deadline, and the
//! whole run stops after `--budget` seconds.
//!
//! Addresses: 10.231.240.0/24, inside the namespaces only.

#[path = "../tests/support/netns.rs"]
mod netns;

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use netns::{Lab, Node, is_root, tool_exists};

const PORT: u16 = 7777;
const VIP: &str = "10.231.240.100";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("responder") {
        responder(args.get(2).map_or("?", String::as_str));
        return;
    }
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let vigil = opt("--vigil").unwrap_or_else(|| "target/release/vigil".into());
    let trials: usize = opt("--trials").and_then(|t| t.parse().ok()).unwrap_or(5);
    let budget = Duration::from_secs(opt("--budget").and_then(|t| t.parse().ok()).unwrap_or(600));
    if !is_root() {
        eprintln!("failover bench: needs root (network namespaces)");
        std::process::exit(1);
    }
    if !tool_exists("keepalived") {
        eprintln!("failover bench: keepalived not installed (bench/failover.sh installs it)");
        std::process::exit(1);
    }
    let advert_ms: u64 = opt("--advert-ms")
        .and_then(|t| t.parse().ok())
        .filter(|ms| ms % 10 == 0 && (10..=40_950).contains(ms))
        .unwrap_or(100);
    let faults: Vec<Fault> = list(opt("--faults"), Fault::ALL, Fault::name);
    let daemons: Vec<Daemon> = list(opt("--daemons"), Daemon::ALL, Daemon::name);
    let started = Instant::now();
    let bench = Bench::new(&vigil, advert_ms);
    let mut results: Vec<(Fault, Daemon, Vec<Duration>)> = vec![];
    'outer: for &fault in &faults {
        for &daemon in &daemons {
            let mut samples = vec![];
            for trial in 0..trials {
                if started.elapsed() > budget {
                    eprintln!("budget of {budget:?} spent; stopping early");
                    results.push((fault, daemon, samples));
                    break 'outer;
                }
                match bench.trial(daemon, fault) {
                    Some(d) => {
                        eprintln!(
                            "{:<9} {:<10} trial {trial}: {:>7.1} ms",
                            fault.name(),
                            daemon.name(),
                            ms(d)
                        );
                        samples.push(d);
                    }
                    None => eprintln!(
                        "{:<9} {:<10} trial {trial}: no failover within 10 s",
                        fault.name(),
                        daemon.name()
                    ),
                }
            }
            results.push((fault, daemon, samples));
        }
    }
    println!();
    println!(
        "Outage (fault injected -> first reply from the new master), VRRPv3, advert interval {advert_ms} ms,"
    );
    println!(
        "priorities 150 (master) / 100 (backup), {trials} trials each, median [min..max] in ms:"
    );
    println!();
    print!("{:<10}", "fault");
    for d in &daemons {
        print!(" {:>26}", d.title());
    }
    println!();
    for &fault in &faults {
        print!("{:<10}", fault.name());
        for &d in &daemons {
            let v = results
                .iter()
                .find(|r| r.0 == fault && r.1 == d)
                .map(|r| r.2.clone())
                .unwrap_or_default();
            print!(" {:>26}", summary(&v));
        }
        println!();
    }
    println!();
    let skew = (256 - 100) as f64 * advert_ms as f64 / 256.0;
    println!(
        "(RFC 5798 bounds at {advert_ms} ms: Master_Down_Interval(100) = {:.1} ms, Skew_Time(100) = {skew:.1} ms)",
        3.0 * advert_ms as f64 + skew
    );
    println!("total bench time: {:.1} s", started.elapsed().as_secs_f64());
}

/// `--faults a,b` / `--daemons a,b`: the named ones, in `all`'s order.
fn list<T: Copy>(arg: Option<String>, all: &[T], name: fn(T) -> &'static str) -> Vec<T> {
    match arg {
        None => all.to_vec(),
        Some(names) => {
            let wanted: Vec<&str> = names.split(',').collect();
            all.iter()
                .copied()
                .filter(|t| wanted.contains(&name(*t)))
                .collect()
        }
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Fault {
    Sigkill,
    Sigstop,
    LinkDown,
    Sigterm,
}

impl Fault {
    const ALL: &[Fault] = &[
        Fault::Sigkill,
        Fault::Sigstop,
        Fault::LinkDown,
        Fault::Sigterm,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::Sigkill => "sigkill",
            Fault::Sigstop => "sigstop",
            Fault::LinkDown => "linkdown",
            Fault::Sigterm => "sigterm",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Daemon {
    Vigil,
    VigilProbe,
    Keepalived,
}

impl Daemon {
    const ALL: &[Daemon] = &[Daemon::Vigil, Daemon::VigilProbe, Daemon::Keepalived];

    fn name(self) -> &'static str {
        match self {
            Daemon::Vigil => "vigil",
            Daemon::VigilProbe => "vigil+probe",
            Daemon::Keepalived => "keepalived",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Daemon::Keepalived => "keepalived 2.2.7",
            d => d.name(),
        }
    }
}

struct Bench {
    lab: Lab,
    a: Node,
    b: Node,
    vigil: String,
    replies: mpsc::Receiver<(Instant, String)>,
}

struct Running {
    daemon_pid: u32,
    responder_pid: u32,
}

impl Bench {
    fn new(vigil: &str, advert_ms: u64) -> Bench {
        let lab = Lab::new("bench");
        let client = lab.node("client");
        let a = lab.node("a");
        let b = lab.node("b");
        lab.connect(&client, "eth0", &["10.231.240.10/24"]);
        lab.connect(&a, "eth0", &["10.231.240.1/24"]);
        lab.connect(&b, "eth0", &["10.231.240.2/24"]);
        // keepalived reads advert_int in seconds (centisecond steps, v3).
        let advert_int = format!("{}.{:02}", advert_ms / 1000, (advert_ms % 1000) / 10);
        for (node, prio) in [(&a, 100), (&b, 150)] {
            let v = format!(
                "[[vrrp.instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 240\npriority = {prio}\n\
                 advert_interval = \"{advert_ms}ms\"\nvirtual_ipaddress = [\"{VIP}\"]\n\
                 garp = {{ repeat = 5, interval = \"0s\", delay = \"5s\" }}\n"
            );
            lab.write(&format!("{}.toml", node.name), &v);
            let probe = "death_probe = true\n";
            lab.write(&format!("{}-probe.toml", node.name), &(v + probe));
            let k = format!(
                "global_defs {{\n  router_id {name}\n}}\nvrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  \
                 virtual_router_id 240\n  priority {prio}\n  advert_int {advert_int}\n  version 3\n  \
                 virtual_ipaddress {{\n    {VIP}/32\n  }}\n}}\n",
                name = node.name
            );
            lab.write(&format!("{}.conf", node.name), &k);
        }
        let (tx, replies) = mpsc::channel();
        let ns = client.ns.clone();
        std::thread::spawn(move || prober(&ns, tx));
        Bench {
            lab,
            a,
            b,
            vigil: vigil.to_owned(),
            replies,
        }
    }

    fn start(&self, daemon: Daemon, node: &Node) -> Running {
        let me = std::env::current_exe()
            .expect("own path")
            .display()
            .to_string();
        let responder_pid = self.lab.spawn(
            node,
            &[&me, "responder", &node.name],
            &format!("{}-resp.log", node.name),
        );
        let daemon_pid = match daemon {
            Daemon::Vigil | Daemon::VigilProbe => {
                let file = if daemon == Daemon::VigilProbe {
                    format!("{}-probe.toml", node.name)
                } else {
                    format!("{}.toml", node.name)
                };
                let cfg = self.lab.path(&file).display().to_string();
                self.lab.spawn(
                    node,
                    &[&self.vigil, "run", "-c", &cfg],
                    &format!("{}-vigil.log", node.name),
                )
            }
            Daemon::Keepalived => {
                let cfg = self
                    .lab
                    .path(&format!("{}.conf", node.name))
                    .display()
                    .to_string();
                let pid = self
                    .lab
                    .path(&format!("{}-ka.pid", node.name))
                    .display()
                    .to_string();
                let vrrp = self
                    .lab
                    .path(&format!("{}-vrrp.pid", node.name))
                    .display()
                    .to_string();
                let _ = std::fs::remove_file(&vrrp);
                self.lab.spawn(
                    node,
                    &[
                        "keepalived",
                        "-n",
                        "-G",
                        "-P",
                        "-f",
                        &cfg,
                        "-p",
                        &pid,
                        "-r",
                        &vrrp,
                    ],
                    &format!("{}-ka.log", node.name),
                )
            }
        };
        Running {
            daemon_pid,
            responder_pid,
        }
    }

    /// SIGKILL of the daemon (keepalived: its VRRP child too, or the child
    /// would shut down gracefully on its parent's death).
    fn kill_daemon(&self, daemon: Daemon, node: &Node, r: &Running) {
        if daemon == Daemon::Keepalived {
            let vrrp = self.lab.path(&format!("{}-vrrp.pid", node.name));
            if let Some(pid) = std::fs::read_to_string(vrrp)
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok())
            {
                self.lab.signal(pid, libc::SIGKILL);
            }
        }
        self.lab.signal(r.daemon_pid, libc::SIGKILL);
    }

    fn stop_all(&self, daemon: Daemon, node: &Node, r: &Running) {
        self.signal_all(daemon, node, r, libc::SIGCONT);
        self.kill_daemon(daemon, node, r);
        self.lab.signal(r.responder_pid, libc::SIGKILL);
        let _ = self.lab.wait_exit(r.daemon_pid, Duration::from_secs(5));
        let _ = self.lab.wait_exit(r.responder_pid, Duration::from_secs(5));
        // Leftover VIP after SIGKILL, and the link, back to a clean slate.
        let _ = self.lab.exec(
            node,
            &["ip", "addr", "del", &format!("{VIP}/32"), "dev", "eth0"],
        );
        self.lab.set_link(node, "eth0", true);
    }

    /// Signals the daemon (keepalived: its VRRP child too) and the service.
    fn signal_all(&self, daemon: Daemon, node: &Node, r: &Running, signal: i32) {
        if daemon == Daemon::Keepalived {
            let vrrp = self.lab.path(&format!("{}-vrrp.pid", node.name));
            if let Some(pid) = std::fs::read_to_string(vrrp)
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok())
            {
                self.lab.signal(pid, signal);
            }
        }
        self.lab.signal(r.daemon_pid, signal);
        self.lab.signal(r.responder_pid, signal);
    }

    /// One measurement, from a clean start.
    fn trial(&self, daemon: Daemon, fault: Fault) -> Option<Duration> {
        let ra = self.start(daemon, &self.a);
        let rb = self.start(daemon, &self.b);
        // Wait until b is master and the client is served by b.
        let ready = self.wait_for_reply("b", Duration::from_secs(10)).is_some()
            && self.lab.has_addr(&self.b, VIP)
            && !self.lab.has_addr(&self.a, VIP);
        let outage = if ready {
            std::thread::sleep(Duration::from_millis(300));
            while self.replies.try_recv().is_ok() {}
            let t0 = Instant::now();
            match fault {
                Fault::Sigkill => {
                    self.kill_daemon(daemon, &self.b, &rb);
                    self.lab.signal(rb.responder_pid, libc::SIGKILL);
                }
                Fault::Sigstop => self.signal_all(daemon, &self.b, &rb, libc::SIGSTOP),
                Fault::LinkDown => self.lab.set_link(&self.b, "eth0", false),
                Fault::Sigterm => self.lab.signal(rb.daemon_pid, libc::SIGTERM),
            }
            self.wait_for_reply_after("a", t0, Duration::from_secs(10))
                .map(|t| t - t0)
        } else {
            eprintln!("setup failed: b never became master\n{}", self.lab.logs());
            None
        };
        self.stop_all(daemon, &self.b, &rb);
        self.stop_all(daemon, &self.a, &ra);
        outage
    }

    fn wait_for_reply(&self, from: &str, timeout: Duration) -> Option<Instant> {
        self.wait_for_reply_after(from, Instant::now(), timeout)
    }

    fn wait_for_reply_after(
        &self,
        from: &str,
        after: Instant,
        timeout: Duration,
    ) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.replies.recv_timeout(left) {
                Ok((at, who)) if who == from && at >= after => return Some(at),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }
}

/// Probes VIP:PORT from the client namespace every millisecond and reports
/// every reply with its arrival time. Stops when the bench is gone.
fn prober(ns: &str, tx: mpsc::Sender<(Instant, String)>) {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("open client netns");
    // SAFETY: setns on a valid netns fd changes only this thread.
    assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
    let sock = UdpSocket::bind("0.0.0.0:0").expect("bind prober");
    sock.set_read_timeout(Some(Duration::from_micros(500))).ok();
    let target = format!("{VIP}:{PORT}");
    let mut buf = [0u8; 64];
    let mut next = Instant::now();
    loop {
        if Instant::now() >= next {
            let _ = sock.send_to(b"probe", &target);
            next += Duration::from_millis(1);
        }
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let who = String::from_utf8_lossy(&buf[..n]).into_owned();
            if tx.send((Instant::now(), who)).is_err() {
                return;
            }
        }
    }
}

/// The service on each router: answers every datagram with the node name.
fn responder(name: &str) {
    let sock = UdpSocket::bind(("0.0.0.0", PORT)).expect("bind responder");
    let mut buf = [0u8; 64];
    loop {
        if let Ok((_, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(name.as_bytes(), from);
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &[Duration]) -> Option<Duration> {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied()
}

fn summary(v: &[Duration]) -> String {
    let Some(m) = median(v) else {
        return "-".into();
    };
    let min = v.iter().min().copied().unwrap_or_default();
    let max = v.iter().max().copied().unwrap_or_default();
    format!(
        "{:.0} [{:.0}..{:.0}] (n={})",
        ms(m),
        ms(min),
        ms(max),
        v.len()
    )
}
