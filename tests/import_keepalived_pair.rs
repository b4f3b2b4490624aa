//! Issue 12, keepalived side of `vigil import`: "the imported config of a
//! corpus pair runs as a VRRP pair in network namespaces, beside
//! keepalived running the original. Both elect the same master, and both
//! move the VIP on the same faults."
//!
//! For each chosen corpus file (tests/corpus/keepalived, the same files as
//! /work/shared/corpus; see SOURCES.md) the test rewrites the original for
//! the lab (`Case::node_a`: interfaces, addresses, check and notify
//! scripts, listed per file), derives the peer's file the way SOURCES.md
//! says the corpus pairs differ (`Case::node_b`), and runs two labs in
//! lock step:
//!
//! - lab K: the real keepalived on the two rewritten files;
//! - lab V: vigil on `vigil import --keepalived` of the very same files.
//!
//! Both get the same faults in the same order (start, SIGKILL and restart
//! of the master, its eth0 down and up, its check failing and recovering).
//! After each, the test waits in both labs until the VIP is where the
//! config says it must be and stays there; the labs must agree at every
//! step. Finally neither keepalived nor vigil may have logged an error.
//!
//! Imported with `--keepalived` alone, a `vrrp_script` stays a script
//! (the importer turns an nginx check into `track.proxy` only when the
//! import has servers whose health vigil can probe). So both labs run the
//! same check command: `test -e` of a flag file, and one file removal
//! fails a node's check in both labs at once. One more run of 07 uses the
//! pair with nginx (`Case::nginx`), where the check becomes `track.proxy`.
//!
//! Needs root and keepalived; prints why it skips otherwise (and fails in
//! CI without keepalived). Subnets 10.231.50–55.0/24, inside the
//! namespaces only; the two labs of a file use the same addresses, each on
//! its own bridge.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use Action::{Check, Kill, Link, Start};
use regex::Regex;
use support::netns::{Lab, Node, skip_unless_root, tool_exists};

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");

/// One corpus file and what the lab changes in it.
struct Case {
    /// File name in tests/corpus/keepalived.
    file: &'static str,
    /// Lab tag and third octet: nodes .1 (a) and .2 (b), VIP .100.
    tag: &'static str,
    subnet: u8,
    /// Literal replacements on the original text (word-bounded), giving
    /// node a's file. `{A}`, `{B}`, `{VIP}` are the lab addresses,
    /// `{CHECK}` node a's check command, `{NOTIFY}` the recorder that
    /// replaces a notify script (see `NOTIFY`).
    rewrites: &'static [(&'static str, &'static str)],
    /// The peer's priority (lower than node a's).
    b_priority: u8,
    /// `advert_int`, for the time budgets.
    advert: Duration,
    /// Run the pair with nginx: lab K runs a real nginx beside keepalived
    /// and the check becomes a curl of it; lab V imports the same
    /// nginx.conf too, so the importer turns the check into `track.proxy`.
    nginx: bool,
}

impl Case {
    fn addr(&self, host: u8) -> String {
        format!("10.231.{}.{host}", self.subnet)
    }

    /// Node a's check command. Without nginx: it succeeds while the
    /// node's flag file exists, so the test fails the "nginx check" by
    /// removing it (both labs share the flag files). With nginx: a curl of
    /// the local server, an idiom the importer knows as an nginx check.
    fn check(&self, dir: &Path) -> String {
        if self.nginx {
            "/usr/bin/curl -s -f -o /dev/null http://127.0.0.1/".to_owned()
        } else {
            format!("/usr/bin/test -e {}/a-nginx-ok", dir.display())
        }
    }

    /// Node a's file: the original with this case's rewrites.
    fn node_a(&self, original: &str, dir: &Path) -> String {
        let mut text = original.to_owned();
        for (from, to) in self.rewrites {
            let to = to
                .replace("{A}", &self.addr(1))
                .replace("{B}", &self.addr(2))
                .replace("{VIP}", &self.addr(100))
                .replace("{CHECK}", &self.check(dir))
                .replace("{NOTIFY}", &dir.join("notify.sh").display().to_string());
            // Word-bounded where the text is a word (172.20.128.2 must not
            // match in 172.20.128.20); paths start with '/'.
            let edge = |c: Option<char>| {
                if c.is_some_and(|c| c.is_alphanumeric()) {
                    r"\b"
                } else {
                    ""
                }
            };
            let re = Regex::new(&format!(
                "{}{}{}",
                edge(from.chars().next()),
                regex::escape(from),
                edge(from.chars().last())
            ))
            .unwrap();
            assert!(re.is_match(&text), "{}: {from} not found", self.file);
            text = re.replace_all(&text, regex::NoExpand(&to)).into_owned();
        }
        text
    }

    /// The peer's file, derived from node a's as SOURCES.md says the
    /// corpus pairs differ: state BACKUP, a lower priority, unicast source
    /// and peer swapped; plus, lab-only, its own check flag.
    fn node_b(&self, a: &str) -> String {
        let state = Regex::new(r"(?m)^(\s*state\s+)MASTER\b").unwrap();
        let priority = Regex::new(r"(?m)^(\s*priority\s+)\d+").unwrap();
        let text = state.replace_all(a, "${1}BACKUP");
        let text = priority.replace_all(&text, format!("${{1}}{}", self.b_priority));
        let (ia, ib) = (self.addr(1), self.addr(2));
        let swap = Regex::new(&format!(
            r"\b({}|{})\b",
            regex::escape(&ia),
            regex::escape(&ib)
        ))
        .unwrap();
        let text = swap.replace_all(
            &text,
            |c: &regex::Captures| {
                if c[1] == ia { ib.clone() } else { ia.clone() }
            },
        );
        text.replace("/a-nginx-ok", "/b-nginx-ok")
    }
}

/// The notify recorder: appends a line with its arguments (keepalived's
/// generic `notify` passes TYPE NAME STATE PRIORITY, `notify_master` and
/// the like none) to a file named after the network namespace it runs in,
/// that is per lab and node.
const NOTIFY: &str =
    "#!/bin/sh\necho \"called: $*\" >> \"$(dirname \"$0\")/notify-$(ip netns identify).txt\"\n";

/// What the recorder saw on `node` of `side`, one call a line.
fn notified(dir: &Path, side: &Side, node: usize) -> String {
    let file = dir.join(format!("notify-{}.txt", side.nodes[node].ns));
    std::fs::read_to_string(file).unwrap_or_default()
}

/// A fault (or repair) applied to one node of both labs.
#[derive(Clone, Copy, Debug)]
enum Action {
    Start(usize),
    Kill(usize),
    Link(usize, bool),
    /// The node's "nginx check" fails (false) or succeeds again (true).
    Check(usize, bool),
}

/// Actions, then where the VIP must settle (node indexes, sorted), and
/// why: the config's meaning.
struct Step {
    actions: &'static [Action],
    holders: &'static [usize],
    what: &'static str,
    /// Where the VIP does not move, proof that the fault was seen: text
    /// that node's keepalived and vigil logs must show.
    seen: Option<(usize, &'static str, &'static str)>,
}

const A: usize = 0;
const B: usize = 1;
const NAMES: [&str; 2] = ["a", "b"];

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Keepalived,
    Vigil,
}

/// One lab: two nodes running either keepalived or vigil.
struct Side {
    kind: Kind,
    lab: Lab,
    nodes: [Node; 2],
    configs: [PathBuf; 2],
    pids: [Option<u32>; 2],
    runs: [usize; 2],
    vip: String,
}

impl Side {
    fn new(kind: Kind, case: &Case) -> Side {
        let tag = format!(
            "{}{}",
            if kind == Kind::Keepalived { "k" } else { "v" },
            case.tag
        );
        let lab = Lab::new(&tag);
        let nodes = NAMES.map(|n| lab.node(n));
        for (i, n) in nodes.iter().enumerate() {
            lab.connect(n, "eth0", &[&format!("{}/24", case.addr(i as u8 + 1))]);
        }
        Side {
            kind,
            lab,
            nodes,
            configs: [PathBuf::new(), PathBuf::new()],
            pids: [None; 2],
            runs: [0; 2],
            vip: case.addr(100),
        }
    }

    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Keepalived => "keepalived",
            Kind::Vigil => "vigil",
        }
    }

    fn log(&self, i: usize, run: usize) -> String {
        format!("{}-{}-{run}.log", self.name(), NAMES[i])
    }

    /// Starts node `i` and waits until its VRRP state machine runs (time
    /// budgets count from there: start-up alone can take seconds under
    /// load).
    fn start(&mut self, i: usize) {
        let run = self.runs[i];
        self.runs[i] += 1;
        let log = self.log(i, run);
        let cfg = self.configs[i].display().to_string();
        let (pid, ready) = match self.kind {
            Kind::Keepalived => {
                // Own pid files per node; -P: VRRP only; -G: no syslog.
                let pid = self.pid_file(i, "ka");
                let vrrp_pid = self.pid_file(i, "vrrp");
                let _ = std::fs::remove_file(&vrrp_pid);
                let cmd = [
                    "keepalived",
                    "-n",
                    "-l",
                    "-D",
                    "-G",
                    "-P",
                    "-f",
                    &cfg,
                    "-p",
                    &pid,
                    "-r",
                    &vrrp_pid,
                ];
                (
                    self.lab.spawn(&self.nodes[i], &cmd, &log),
                    "Startup complete",
                )
            }
            // RUST_LOG: an imported nginx.conf sets the level to error
            // (its error_log), which would hide the start-up line waited for.
            Kind::Vigil => (
                self.lab.spawn(
                    &self.nodes[i],
                    &["env", "RUST_LOG=info", VIGIL, "run", "-c", &cfg],
                    &log,
                ),
                "VRRP instance started",
            ),
        };
        self.pids[i] = Some(pid);
        self.lab.wait_until(
            Duration::from_secs(20),
            &format!("{} on {} started", self.name(), NAMES[i]),
            || self.lab.read(&log).contains(ready),
        );
    }

    fn pid_file(&self, i: usize, what: &str) -> String {
        self.lab
            .path(&format!("{what}-{}.pid", NAMES[i]))
            .display()
            .to_string()
    }

    /// SIGKILL. For keepalived, its VRRP child first: killing only the
    /// parent makes the child shut down cleanly (releasing the VIP).
    fn kill(&mut self, i: usize) {
        let pid = self.pids[i].take().expect("kill a running node");
        if self.kind == Kind::Keepalived {
            if let Some(child) = std::fs::read_to_string(self.pid_file(i, "vrrp"))
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok())
            {
                self.lab.signal(child, libc::SIGKILL);
            }
        }
        self.lab.kill(pid);
    }

    fn apply(&mut self, action: Action) {
        match action {
            Action::Start(i) => self.start(i),
            Action::Kill(i) => self.kill(i),
            Action::Link(i, up) => self.lab.set_link(&self.nodes[i], "eth0", up),
            // The flag files are shared: see `Pair::apply`.
            Action::Check(..) => {}
        }
    }

    /// Which running nodes have the VIP now. A killed node is left out:
    /// keepalived leaves its VIP behind after SIGKILL, while vigil's crash
    /// guardian removes it (docs/OPERATIONS.md); that is by design, not a
    /// translation matter (see `stale`).
    fn holders(&self) -> Vec<usize> {
        (0..2)
            .filter(|&i| self.pids[i].is_some() && self.lab.has_addr(&self.nodes[i], &self.vip))
            .collect()
    }

    /// Waits until node `i`'s current log shows `text`.
    fn seen(&self, i: usize, text: &str, budget: Duration) -> Result<(), String> {
        let log = self.log(i, self.runs[i] - 1);
        let start = Instant::now();
        while !self.lab.read(&log).contains(text) {
            if start.elapsed() > budget {
                return Err(format!("{}: {log} never showed {text:?}", self.name()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Killed nodes that still have the VIP.
    fn stale(&self) -> Vec<usize> {
        (0..2)
            .filter(|&i| self.pids[i].is_none() && self.lab.has_addr(&self.nodes[i], &self.vip))
            .collect()
    }

    /// Waits until exactly `want` hold the VIP, then for that to last
    /// `hold` (a later move, such as a preemption that should not happen,
    /// would show within it). Returns what it saw last on failure.
    fn settle(&self, want: &[usize], budget: Duration, hold: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let mut since: Option<Instant> = None;
        loop {
            let now = self.holders();
            if now == want {
                let s = *since.get_or_insert_with(Instant::now);
                if s.elapsed() >= hold {
                    return Ok(s - start);
                }
            } else {
                since = None;
            }
            if start.elapsed() > budget {
                return Err(format!(
                    "{}: VIP on {} after {budget:?}, want {}",
                    self.name(),
                    names(&now),
                    names(want)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn names(nodes: &[usize]) -> String {
    if nodes.is_empty() {
        return "none".into();
    }
    nodes
        .iter()
        .map(|&i| NAMES[i])
        .collect::<Vec<_>>()
        .join("+")
}

/// Both labs, and the flag files of the node checks they share.
struct Pair {
    k: Side,
    v: Side,
    dir: PathBuf,
    nginx: bool,
}

impl Pair {
    fn apply(&mut self, action: Action) {
        if let Action::Check(i, ok) = action {
            if self.nginx {
                // The web server stops answering on port 80, in both labs
                // alike: keepalived's curl is refused, and so is vigil's
                // self-probe (track.proxy). A reset, not a drop, so that
                // neither waits for a timeout (07 sets none).
                for side in [&self.k, &self.v] {
                    let script = if ok {
                        "nft delete table inet lab".to_owned()
                    } else {
                        "nft add table inet lab && \
                         nft add chain inet lab input '{ type filter hook input priority 0; }' && \
                         nft add rule inet lab input tcp dport 80 reject with tcp reset"
                            .to_owned()
                    };
                    let out = side.lab.sh(&side.nodes[i], &script);
                    assert!(
                        out.status.success(),
                        "{script}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            } else {
                let flag = self.dir.join(format!("{}-nginx-ok", NAMES[i]));
                if ok {
                    std::fs::write(flag, "").unwrap();
                } else {
                    std::fs::remove_file(flag).unwrap();
                }
            }
        }
        self.k.apply(action);
        self.v.apply(action);
    }

    fn logs(&self) -> String {
        format!(
            "=== keepalived lab\n{}=== vigil lab\n{}",
            self.k.lab.logs(),
            self.v.lab.logs()
        )
    }
}

/// `vigil import --keepalived` of `conf` (and `--nginx` of `nginx`) into
/// `out` (exit 0 or 3: a config is written either way), checked with
/// `vigil check`. Returns the config.
fn import(conf: &Path, nginx: Option<&Path>, out: &Path) -> toml::Table {
    let report = out.with_extension("report");
    let mut import = Command::new(VIGIL);
    import.args(["import", "--keepalived"]).arg(conf);
    if let Some(n) = nginx {
        import.arg("--nginx").arg(n);
    }
    let import = import
        .arg("-o")
        .arg(out)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    let toml = std::fs::read_to_string(out).unwrap_or_default();
    let report = std::fs::read_to_string(&report).unwrap_or_default();
    assert!(
        matches!(import.status.code(), Some(0) | Some(3)),
        "import of {}: {}\n{toml}\n{report}",
        conf.display(),
        String::from_utf8_lossy(&import.stderr)
    );
    let check = Command::new(VIGIL)
        .args(["check", "-c"])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "vigil check of the import of {}: {}\n{toml}\n{report}",
        conf.display(),
        String::from_utf8_lossy(&check.stderr)
    );
    toml::from_str(&toml).unwrap()
}

/// A stand-in for the pair's nginx.conf (the corpus's nginx/07 serves TLS
/// and uwsgi apps the lab does not have): one server on port 80, which
/// both the keepalived check (curl) and vigil's self-probe reach on
/// 127.0.0.1. Files in `dir`.
fn nginx_conf(dir: &Path, node: &str) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;\npid {d}/nginx-{node}.pid;\nerror_log {d}/nginx-{node}-error.log;\n\
         events {{\n    worker_connections 64;\n}}\n\
         http {{\n    access_log off;\n    server {{\n        listen 80;\n        \
         location / {{\n            return 200 \"{node}\\n\";\n        }}\n    }}\n}}\n"
    )
}

/// No vigil logged an error (a failed notify, a netlink error...).
fn assert_vigil_clean(side: &Side) {
    for i in 0..2 {
        for run in 0..side.runs[i] {
            let log = side.lab.read(&side.log(i, run));
            if let Some(line) = log.lines().find(|l| l.contains(" ERROR ")) {
                panic!("vigil logged an error: {line}\n--- full log\n{log}");
            }
        }
    }
}

/// keepalived must not have logged an error about any config line or
/// packet (warnings about script security are not errors).
fn assert_keepalived_clean(side: &Side) {
    let complaints = [
        "error",
        "invalid",
        "unknown",
        "bogus",
        "mismatch",
        "wrong",
        "not found",
        "cannot",
        "can't",
        "unable",
        "too short",
    ];
    let mut all = String::new();
    for i in 0..2 {
        for run in 0..side.runs[i] {
            all.push_str(&side.lab.read(&side.log(i, run)));
        }
    }
    assert!(
        all.contains("Entering MASTER STATE"),
        "keepalived never ran as master:\n{all}"
    );
    for line in all.lines() {
        let l = line.to_ascii_lowercase();
        if let Some(word) = complaints.iter().find(|w| l.contains(*w)) {
            panic!("keepalived logged an error ({word}): {line}\n--- full log\n{all}");
        }
    }
}

fn have_keepalived(test: &str) -> bool {
    if skip_unless_root(test) {
        return false;
    }
    if !tool_exists("keepalived") {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: keepalived is not installed in CI (apt-get install -y keepalived)"
        );
        eprintln!("skipping {test}: keepalived not installed (apt-get install -y keepalived)");
        return false;
    }
    true
}

fn run(case: &Case, steps: &[Step]) {
    if !have_keepalived(case.file) {
        return;
    }
    let original = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/corpus/keepalived")
            .join(case.file),
    )
    .unwrap();

    // The rewritten originals, the check flags and the notify recorder
    // live in the keepalived lab's directory; the vigil lab imports and
    // uses the same files.
    let mut k = Side::new(Kind::Keepalived, case);
    let dir = k.lab.dir().to_path_buf();
    k.configs = [dir.join("a.conf"), dir.join("b.conf")];
    let a = case.node_a(&original, &dir);
    let b = case.node_b(&a);
    std::fs::write(&k.configs[A], &a).unwrap();
    std::fs::write(&k.configs[B], &b).unwrap();
    for n in NAMES {
        std::fs::write(dir.join(format!("{n}-nginx-ok")), "").unwrap();
    }
    let notify = dir.join("notify.sh");
    std::fs::write(&notify, NOTIFY).unwrap();
    std::fs::set_permissions(&notify, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    if case.nginx {
        // nginx runs for the whole test, in lab K only: in lab V vigil
        // is the proxy.
        for i in [A, B] {
            let conf = dir.join(format!("nginx-{}.conf", NAMES[i]));
            std::fs::write(&conf, nginx_conf(&dir, NAMES[i])).unwrap();
            let conf = conf.display().to_string();
            let err = dir.join(format!("nginx-{}-start.log", NAMES[i]));
            let err = err.display().to_string();
            let cmd = ["nginx", "-e", &err, "-c", &conf, "-g", "daemon off;"];
            k.lab
                .spawn(&k.nodes[i], &cmd, &format!("nginx-{}.log", NAMES[i]));
            k.lab
                .wait_until(Duration::from_secs(20), "nginx answers", || {
                    k.lab
                        .sh(&k.nodes[i], "curl -s -f -o /dev/null http://127.0.0.1/")
                        .status
                        .success()
                });
        }
    }

    let mut v = Side::new(Kind::Vigil, case);
    for i in [A, B] {
        let out = v.lab.path(&format!("{}.toml", NAMES[i]));
        let nginx = case
            .nginx
            .then(|| dir.join(format!("nginx-{}.conf", NAMES[i])));
        let config = import(&k.configs[i], nginx.as_deref(), &out);
        if case.nginx {
            // The point of this variant: the curl check became vigil's
            // own proxy health, with 07's effect (no weight: fault).
            let proxy = &config["vrrp"]["instance"][0]["track"]["proxy"];
            assert_eq!(proxy.as_str(), Some("fault"), "{config:#?}");
        }
        v.configs[i] = out;
    }

    let mut pair = Pair {
        k,
        v,
        dir,
        nginx: case.nginx,
    };
    // keepalived's Master_Down_Interval is 3 adverts + up to 1 s of skew;
    // a preemption that should not happen would show within `hold`.
    let hold = case.advert * 3 + Duration::from_secs(3);
    let budget = case.advert * 12 + Duration::from_secs(20);
    let mut table = String::new();
    for (n, step) in steps.iter().enumerate() {
        for &action in step.actions {
            pair.apply(action);
        }
        let (k, v) = std::thread::scope(|s| {
            let k = s.spawn(|| pair.k.settle(step.holders, budget, hold));
            let v = s.spawn(|| pair.v.settle(step.holders, budget, hold));
            (k.join().unwrap(), v.join().unwrap())
        });
        let outcome = |side: &Side, r: &Result<Duration, String>| {
            let mut text = r
                .as_ref()
                .map_or_else(|e| e.clone(), |t| format!("after {t:.1?}"));
            let stale = side.stale();
            if !stale.is_empty() {
                text.push_str(&format!(" (killed {} still has it)", names(&stale)));
            }
            text
        };
        let line = format!(
            "step {n} {:?}: VIP on {} ({}): keepalived {}, vigil {}\n",
            step.actions,
            names(step.holders),
            step.what,
            outcome(&pair.k, &k),
            outcome(&pair.v, &v),
        );
        table.push_str(&line);
        let (k_seen, v_seen) = match step.seen {
            Some((i, k_text, v_text)) => (
                pair.k.seen(i, k_text, budget),
                pair.v.seen(i, v_text, budget),
            ),
            None => (Ok(()), Ok(())),
        };
        assert!(
            k.is_ok() && v.is_ok() && k_seen.is_ok() && v_seen.is_ok(),
            "{}: the labs disagree or miss the config's outcome\n{table}{k_seen:?} {v_seen:?}\n{}",
            case.file,
            pair.logs()
        );
    }
    eprintln!("{}:\n{table}", case.file);
    if case.rewrites.iter().any(|(_, to)| to.contains("{NOTIFY}")) {
        // The notify commands ran for the same transitions, with the same
        // arguments (for the generic `notify`, the import rebuilds
        // keepalived's arguments from vigil's environment).
        for i in [A, B] {
            let (k, v) = (
                notified(&pair.dir, &pair.k, i),
                notified(&pair.dir, &pair.v, i),
            );
            assert!(!k.is_empty(), "keepalived never ran notify on {}", NAMES[i]);
            assert_eq!(k, v, "notify calls on {}: keepalived, then vigil", NAMES[i]);
        }
    }
    assert_keepalived_clean(&pair.k);
    assert_vigil_clean(&pair.v);
}

/// Unicast with PASS authentication, `state MASTER`, a service check that
/// is not an nginx check (interval 2, timeout 2, fall 3, no weight), and
/// the generic `notify` script, replaced by a recorder whose calls must be
/// the same in both labs.
#[test]
fn flask_uwsgi_redis_ha() {
    let case = Case {
        file: "03-flask-uwsgi-redis-ha.conf",
        tag: "03",
        subnet: 55,
        rewrites: &[
            ("10.211.55.5", "{A}"),
            ("10.211.55.6", "{B}"),
            ("10.211.55.10", "{VIP}"),
            ("/etc/keepalived/scripts/check_service_health.sh", "{CHECK}"),
            ("/etc/keepalived/scripts/notify.sh", "{NOTIFY}"),
        ],
        b_priority: 90,
        advert: Duration::from_secs(1),
        nginx: false,
    };
    run(&case, &fault_check_steps());
}

/// Multicast, VRRPv2 with PASS authentication, `state MASTER`, no check.
#[test]
fn lb_nginx_keepalived_iphash() {
    let case = Case {
        file: "02-lb-nginx-keepalived-iphash.conf",
        tag: "02",
        subnet: 50,
        rewrites: &[("ens33", "eth0"), ("192.168.1.80", "{VIP}")],
        b_priority: 100,
        advert: Duration::from_secs(1),
        nginx: false,
    };
    run(
        &case,
        &[
            Step {
                actions: &[Start(A), Start(B)],
                holders: &[A],
                what: "the higher priority (150) is elected",
                seen: None,
            },
            Step {
                actions: &[Kill(A)],
                holders: &[B],
                what: "b takes over",
                seen: None,
            },
            Step {
                actions: &[Start(A)],
                holders: &[A],
                what: "a returns and preempts (preempt is the default)",
                seen: None,
            },
            Step {
                actions: &[Link(A, false)],
                holders: &[B],
                what: "a's link down: fault, b takes over",
                seen: None,
            },
            Step {
                actions: &[Link(A, true)],
                holders: &[A],
                what: "a's link up: it preempts again",
                seen: None,
            },
        ],
    );
}

/// The standard fault sequence for a pair whose check has no weight
/// (a failing check means FAULT).
fn fault_check_steps() -> Vec<Step> {
    vec![
        Step {
            actions: &[Start(A), Start(B)],
            holders: &[A],
            what: "the higher priority is elected",
            seen: None,
        },
        Step {
            actions: &[Kill(A)],
            holders: &[B],
            what: "b takes over",
            seen: None,
        },
        Step {
            actions: &[Start(A)],
            holders: &[A],
            what: "a returns and preempts",
            seen: None,
        },
        Step {
            actions: &[Link(A, false)],
            holders: &[B],
            what: "a's link down: fault, b takes over",
            seen: None,
        },
        Step {
            actions: &[Link(A, true)],
            holders: &[A],
            what: "a's link up: it preempts again",
            seen: None,
        },
        Step {
            actions: &[Check(A, false)],
            holders: &[B],
            what: "a's check fails; it has no weight: fault, b takes over",
            seen: None,
        },
        Step {
            actions: &[Check(A, true)],
            holders: &[A],
            what: "a's check succeeds again: it preempts",
            seen: None,
        },
    ]
}

/// Unicast with PASS authentication, `state MASTER`, the check
/// `pidof nginx` (interval 2, no weight, fall and rise 1).
#[test]
fn docker_ssl_redirect() {
    let case = Case {
        file: "07-docker-ssl-redirect.conf",
        tag: "07",
        subnet: 51,
        rewrites: REWRITES_07,
        b_priority: 100,
        advert: Duration::from_secs(1),
        nginx: false,
    };
    run(&case, &fault_check_steps());
}

/// 07's node addresses, VIP and check.
const REWRITES_07: &[(&str, &str)] = &[
    ("172.20.128.2", "{A}"),
    ("172.20.128.3", "{B}"),
    ("172.20.128.4", "{VIP}"),
    ("pidof nginx", "{CHECK}"),
];

/// 07 as the pair it is, nginx + keepalived on each node: lab K runs a
/// real nginx beside keepalived, whose check is a curl of it; lab V
/// imports that nginx.conf with the keepalived.conf, so the check becomes
/// vigil's own proxy health (`track.proxy`), and the same fault (port 80
/// refused) fails vigil's self-probe.
#[test]
fn docker_ssl_redirect_with_nginx() {
    let case = Case {
        file: "07-docker-ssl-redirect.conf",
        tag: "07n",
        subnet: 54,
        rewrites: REWRITES_07,
        b_priority: 100,
        advert: Duration::from_secs(1),
        nginx: true,
    };
    run(&case, &fault_check_steps());
}

/// Unicast without authentication, both nodes `state BACKUP`, `accept`,
/// an nginx check script (interval 1, fall 3, rise 5, no weight).
#[test]
fn rp_node1_unicast() {
    let case = Case {
        file: "06-rp-node1-unicast.conf",
        tag: "06",
        subnet: 53,
        rewrites: &[
            ("ens18", "eth0"),
            ("10.20.30.54", "{A}"),
            ("10.20.30.55", "{B}"),
            ("10.20.30.60", "{VIP}"),
            ("/usr/local/bin/check_nginx.sh", "{CHECK}"),
        ],
        b_priority: 89,
        advert: Duration::from_secs(1),
        nginx: false,
    };
    run(&case, &fault_check_steps());
}

/// `nopreempt`, `advert_int 2`, a check with weight +20 (fall 2, rise 1),
/// `track_interface` of its own interface, notify_master/backup/fault/stop
/// (one script, called without arguments: the recorder counts the calls),
/// mail settings in global_defs.
#[test]
fn web_ha_track_interface_cn() {
    let case = Case {
        file: "43-web-ha-track-interface-cn.conf",
        tag: "43",
        subnet: 52,
        rewrites: &[
            ("ens32", "eth0"),
            ("172.28.230.38", "{VIP}"),
            ("/etc/keepalived/scripts/monitor_nginx.sh", "{CHECK}"),
            ("/etc/keepalived/scripts/notify.sh", "{NOTIFY}"),
        ],
        // The file's own comment: "priority 100   # backup 90".
        b_priority: 90,
        advert: Duration::from_secs(2),
        nginx: false,
    };
    run(
        &case,
        &[
            // Two BACKUPs with nopreempt started together would elect
            // whichever timer runs out first (6.53 s for a, 6.57 s for b):
            // start-up jitter, not the config, would decide. So a first.
            Step {
                actions: &[Start(A)],
                holders: &[A],
                what: "a alone becomes master",
                seen: None,
            },
            Step {
                actions: &[Start(B)],
                holders: &[A],
                what: "b (90+20) hears a (100+20) and stays backup",
                seen: None,
            },
            Step {
                actions: &[Kill(A)],
                holders: &[B],
                what: "b takes over",
                seen: None,
            },
            Step {
                actions: &[Start(A)],
                holders: &[B],
                what: "nopreempt: a returns with the higher priority and stays backup",
                seen: None,
            },
            Step {
                actions: &[Link(B, false)],
                holders: &[A],
                what: "the master's (b's) link down: fault, a takes over",
                seen: None,
            },
            Step {
                actions: &[Link(B, true)],
                holders: &[A],
                what: "b's link up: it stays backup",
                seen: None,
            },
            Step {
                actions: &[Check(A, false)],
                holders: &[A],
                what: "a's check fails: a drops to 100, under b's 110, but nopreempt: b does not take over",
                seen: Some((
                    A,
                    "Changing effective priority from 120 to 100",
                    "effective priority 120 -> 100",
                )),
            },
            Step {
                actions: &[Kill(A)],
                holders: &[B],
                what: "a killed: b takes over",
                seen: None,
            },
            Step {
                actions: &[Check(A, true), Start(A)],
                holders: &[B],
                what: "a returns, check fine again (120 > 110), and stays backup: nopreempt",
                seen: None,
            },
        ],
    );
}
