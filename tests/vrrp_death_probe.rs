//! The death probe (`death_probe`) between two vigil nodes in network
//! namespaces: a killed Master is replaced on the probe's verdict, and
//! nothing else moves the VIP — dropped probes, a frozen Master, or a live
//! Master whose port starts being refused.
//!
//! The adverts are 1 s apart, so Master_Down_Interval (about 3.6 s) and the
//! probe's verdict (a few ms after the Master's death) are far apart, and
//! each test tells them apart by the transition reason a logs, not by a
//! timing.
//!
//! Needs root (and nft for the firewall cases); prints a skip message
//! otherwise. Subnets: 10.231.66–69.0/24, inside the namespaces only.

mod support;

use std::time::Duration;

use support::netns::{Lab, Node, skip_unless_root, tool_exists};

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");
const PORT: u16 = 5798;

/// What a logs when the probe's verdict made it Master.
const BY_PROBE: &str = "backup -> master (the master's vigil is gone";
/// What a logs when adverts stopped for Master_Down_Interval.
const BY_SILENCE: &str = "backup -> master (no advertisement within Master_Down_Interval)";

struct Router {
    node: Node,
    config: String,
    log: String,
}

/// a (priority 100, Backup) and b (150, Master), both with the probe on.
struct Pair {
    lab: Lab,
    a: Router,
    b: Router,
    vip: String,
}

fn pair(tag: &str, subnet: u8) -> Pair {
    let lab = Lab::new(tag);
    let na = lab.node("a");
    let nb = lab.node("b");
    lab.connect(&na, "eth0", &[&format!("10.231.{subnet}.1/24")]);
    lab.connect(&nb, "eth0", &[&format!("10.231.{subnet}.2/24")]);
    let vip = format!("10.231.{subnet}.100");
    let router = |node: Node, priority: u8| {
        let text = format!(
            "[[vrrp.instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\n\
             virtual_router_id = {subnet}\npriority = {priority}\nadvert_interval = \"1s\"\n\
             virtual_ipaddress = [\"{vip}\"]\n\
             death_probe = {{ port = {PORT} }}\n"
        );
        let config = lab
            .write(&format!("{}.toml", node.name), &text)
            .display()
            .to_string();
        Router {
            log: format!("{}.log", node.name),
            node,
            config,
        }
    };
    let a = router(na, 100);
    let b = router(nb, 150);
    Pair { lab, a, b, vip }
}

impl Pair {
    fn start(&self, r: &Router) -> u32 {
        let pid = self
            .lab
            .spawn(&r.node, &[VIGIL, "run", "-c", &r.config], &r.log);
        self.lab
            .wait_until(Duration::from_secs(10), "vigil started", || {
                self.lab.read(&r.log).contains("VRRP instance started")
            });
        pid
    }

    fn holds(&self, r: &Router) -> bool {
        self.lab.has_addr(&r.node, &self.vip)
    }

    /// Starts both; b wins the election and a's probe is armed (a has
    /// followed b long enough to hear echoes). Returns b's pid.
    fn elect_b(&self) -> u32 {
        let b = self.start(&self.b);
        self.lab
            .wait_until(Duration::from_secs(8), "b is master", || {
                self.holds(&self.b)
            });
        self.start(&self.a);
        // a hears b's next advert, then connects to b's listener.
        std::thread::sleep(Duration::from_millis(1500));
        assert!(!self.holds(&self.a), "a took the VIP:\n{}", self.lab.logs());
        b
    }

    fn a_masters(&self) -> usize {
        self.lab
            .read(&self.a.log)
            .matches("backup -> master")
            .count()
    }

    fn nft(&self, node: &Node, rule: &str) {
        let script = format!(
            "nft add table inet probe && \
             nft add chain inet probe input '{{ type filter hook input priority 0; }}' && \
             nft add rule inet probe input {rule}"
        );
        let out = self.lab.sh(node, &script);
        assert!(
            out.status.success(),
            "nft: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn skip_without_nft(test: &str) -> bool {
    if tool_exists("nft") {
        return false;
    }
    eprintln!("SKIP {test}: needs nft (apt-get install nftables)");
    true
}

#[test]
fn a_killed_master_is_replaced_on_the_probes_verdict() {
    if skip_unless_root("a_killed_master_is_replaced_on_the_probes_verdict") {
        return;
    }
    let p = pair("dpkill", 66);
    let b = p.elect_b();
    p.lab.kill(b);
    p.lab
        .wait_until(Duration::from_secs(8), "a takes the VIP", || p.holds(&p.a));
    let a_log = p.lab.read(&p.a.log);
    assert!(a_log.contains(BY_PROBE), "{}", p.lab.logs());
    assert!(
        a_log.contains("its vigil is gone"),
        "no verdict logged:\n{}",
        p.lab.logs()
    );
    assert_eq!(p.a_masters(), 1, "{}", p.lab.logs());
}

#[test]
fn dropped_probes_change_nothing() {
    let test = "dropped_probes_change_nothing";
    if skip_unless_root(test) || skip_without_nft(test) {
        return;
    }
    let p = pair("dpdrop", 67);
    let b = p.elect_b();
    // Every probe packet is dropped from now on, both ways; a's watch was
    // armed (connected). Its connection goes silent, TCP keepalive gives
    // up on it after about 4 s, and reconnecting times out.
    p.nft(&p.b.node, &format!("tcp dport {PORT} drop"));
    p.nft(&p.a.node, &format!("tcp sport {PORT} drop"));
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        p.a_masters(),
        0,
        "a moved on lost probes:\n{}",
        p.lab.logs()
    );
    assert!(p.holds(&p.b) && !p.holds(&p.a), "{}", p.lab.logs());
    // And b's death is then found as plain VRRP finds it: by silence.
    p.lab.kill(b);
    p.lab
        .wait_until(Duration::from_secs(8), "a takes the VIP", || p.holds(&p.a));
    let a_log = p.lab.read(&p.a.log);
    assert!(a_log.contains(BY_SILENCE), "{}", p.lab.logs());
    assert!(!a_log.contains(BY_PROBE), "{}", p.lab.logs());
}

#[test]
fn a_frozen_master_is_not_declared_gone() {
    if skip_unless_root("a_frozen_master_is_not_declared_gone") {
        return;
    }
    let p = pair("dpstop", 68);
    let b = p.elect_b();
    // Frozen for less than a's Master_Down_Interval (3.61 s): its sockets
    // stay open, so nothing is closed and nothing is refused.
    p.lab.signal(b, libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(2000));
    p.lab.signal(b, libc::SIGCONT);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(p.a_masters(), 0, "{}", p.lab.logs());
    assert!(p.holds(&p.b) && !p.holds(&p.a), "{}", p.lab.logs());
}

#[test]
fn a_live_master_refusing_the_probe_moves_the_vip_at_most_once() {
    let test = "a_live_master_refusing_the_probe_moves_the_vip_at_most_once";
    if skip_unless_root(test) || skip_without_nft(test) {
        return;
    }
    let p = pair("dprej", 69);
    p.elect_b();
    // A firewall on the live Master starts resetting the probe port, as
    // forged resets would: a's connection is reset at its next keepalive
    // (1 s idle) and reconnecting is refused, so one verdict. Then b's
    // next advert outranks a, which yields, and a refused port is never
    // trusted again without a connection.
    p.nft(
        &p.b.node,
        &format!("tcp dport {PORT} reject with tcp reset"),
    );
    p.lab
        .wait_until(Duration::from_secs(6), "the verdict", || p.a_masters() == 1);
    p.lab
        .wait_until(Duration::from_secs(5), "b keeps the VIP", || {
            p.holds(&p.b) && !p.holds(&p.a)
        });
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(p.a_masters(), 1, "{}", p.lab.logs());
    assert!(p.holds(&p.b) && !p.holds(&p.a), "{}", p.lab.logs());
}
