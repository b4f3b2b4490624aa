//! A reusable network-namespace lab for integration tests and benchmarks.
//!
//! A [`Lab`] is a virtual LAN: a Linux bridge living in a namespace of its
//! own, and any number of node namespaces plugged into it with veth pairs.
//! Everything it creates is named with a per-lab prefix (tag + process id +
//! counter), so tests run in parallel, and everything is removed by `Drop`
//! — processes are killed, namespaces deleted — also when the test panics.
//! Namespaces left behind by a lab whose process died (SIGKILL, power cut)
//! are collected by the next `Lab::new`.
//!
//! Rules the lab keeps (see DESIGN.md, "Testing shape"): addresses exist only
//! inside the lab's namespaces, no namespace gets a default route, and the
//! root namespace is never touched beyond creating the namespaces.
//!
//! ```ignore
//! let lab = Lab::new("failover");
//! let a = lab.node("a");
//! lab.connect(&a, "eth0", &["10.231.7.1/24"]);
//! let pid = lab.spawn(&a, &[vigil, "run", "-c", cfg], "a.log");
//! lab.wait_until(Duration::from_secs(2), "VIP on a", || lab.has_addr(&a, "10.231.7.100"));
//! ```

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Prefix of every namespace a lab creates.
const PREFIX: &str = "vgl";

/// True when the process can create namespaces (root / CAP_NET_ADMIN
/// and CAP_SYS_ADMIN).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Returns true (and prints why) when the test must be skipped.
pub fn skip_unless_root(test: &str) -> bool {
    if !is_root() {
        eprintln!(
            "skipping {test}: needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to create network namespaces"
        );
        return true;
    }
    for tool in ["ip", "ping"] {
        if !tool_exists(tool) {
            // In CI a missing tool is a setup bug, not a reason to pass.
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: `{tool}` not found in CI; install it (apt-get install -y iproute2 iputils-ping)"
            );
            eprintln!(
                "skipping {test}: `{tool}` not found (apt-get install -y iproute2 iputils-ping)"
            );
            return true;
        }
    }
    false
}

/// Whether `tool` is on PATH.
pub fn tool_exists(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A node: one network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Short name given by the test.
    pub name: String,
    /// The namespace's full name.
    pub ns: String,
}

/// A process started in a node.
#[derive(Debug)]
struct Spawned {
    child: Child,
    label: String,
}

/// The lab. Dropping it removes everything it made.
pub struct Lab {
    prefix: String,
    bridge_ns: String,
    nodes: Mutex<Vec<String>>,
    processes: Mutex<Vec<Spawned>>,
    ports: AtomicUsize,
    dir: PathBuf,
}

static LABS: AtomicUsize = AtomicUsize::new(0);

impl Lab {
    /// Creates the bridge namespace with `br0` up. `tag` (a few letters)
    /// shows up in namespace names, to tell labs apart in `ip netns list`.
    pub fn new(tag: &str) -> Lab {
        collect_orphans();
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{PREFIX}-{}-{}-{tag}", std::process::id(), n);
        let dir = std::env::temp_dir().join(&prefix);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create lab directory");
        let lab = Lab {
            bridge_ns: format!("{prefix}-br"),
            prefix,
            nodes: Mutex::new(vec![]),
            processes: Mutex::new(vec![]),
            ports: AtomicUsize::new(0),
            dir,
        };
        lab.add_ns(&lab.bridge_ns.clone());
        // No IGMP snooping: VRRP multicast must be flooded like on a dumb
        // switch, whatever the querier situation.
        lab.ip(
            &lab.bridge_ns,
            &[
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ],
        );
        lab.ip(&lab.bridge_ns, &["link", "set", "br0", "up"]);
        lab
    }

    /// Creates a node namespace with loopback up and IPv6 DAD off (so
    /// link-local addresses are usable at once).
    pub fn node(&self, name: &str) -> Node {
        let ns = format!("{}-{name}", self.prefix);
        self.add_ns(&ns);
        self.ip(&ns, &["link", "set", "lo", "up"]);
        self.sysctl(&ns, "net.ipv6.conf.all.accept_dad", "0");
        self.sysctl(&ns, "net.ipv6.conf.default.accept_dad", "0");
        Node {
            name: name.to_owned(),
            ns,
        }
    }

    /// Plugs `node` into the bridge with a veth named `ifname` on the node
    /// side, brings it up and adds `addrs` (CIDR) to it. No route besides
    /// the connected subnets is ever added.
    /// Returns the bridge port's name (see [`Lab::isolate`]).
    pub fn connect(&self, node: &Node, ifname: &str, addrs: &[&str]) -> String {
        let port = format!("p{}", self.ports.fetch_add(1, Ordering::Relaxed));
        self.ip(
            &node.ns,
            &[
                "link",
                "add",
                ifname,
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                &self.bridge_ns,
            ],
        );
        self.ip(&self.bridge_ns, &["link", "set", &port, "master", "br0"]);
        self.ip(&self.bridge_ns, &["link", "set", &port, "up"]);
        for a in addrs {
            self.ip(&node.ns, &["addr", "add", a, "dev", ifname]);
        }
        self.ip(&node.ns, &["link", "set", ifname, "up"]);
        port
    }

    /// Bridge port isolation: isolated ports cannot reach each other, but
    /// still reach (and are reached by) the other ports. Isolating both
    /// routers' ports cuts VRRP between them while the client still sees
    /// both: a split brain.
    pub fn isolate(&self, port: &str, on: bool) {
        let out = Command::new("bridge")
            .args([
                "-n",
                &self.bridge_ns,
                "link",
                "set",
                "dev",
                port,
                "isolated",
            ])
            .arg(if on { "on" } else { "off" })
            .output()
            .expect("run bridge");
        assert!(
            out.status.success(),
            "bridge link set {port} isolated: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Sets a node's interface up or down (a cable pull, seen from the node).
    pub fn set_link(&self, node: &Node, ifname: &str, up: bool) {
        self.ip(
            &node.ns,
            &["link", "set", ifname, if up { "up" } else { "down" }],
        );
    }

    /// `ip -n NS args...`, panicking with the output on failure.
    pub fn ip(&self, ns: &str, args: &[&str]) -> String {
        let mut full = vec!["-n", ns];
        full.extend_from_slice(args);
        let out = run("ip", &full);
        assert!(
            out.status.success(),
            "ip {}: {}",
            full.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `cmd` inside `node` and returns its output (does not panic).
    pub fn exec(&self, node: &Node, cmd: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", &node.ns];
        full.extend_from_slice(cmd);
        run("ip", &full)
    }

    /// Runs a shell snippet inside `node`.
    pub fn sh(&self, node: &Node, script: &str) -> Output {
        self.exec(node, &["sh", "-c", script])
    }

    /// Starts `cmd` inside `node` with stdout and stderr to `log` (a file
    /// name in the lab directory). Returns the pid; the process is killed
    /// when the lab is dropped.
    pub fn spawn(&self, node: &Node, cmd: &[&str], log: &str) -> u32 {
        let log_file = std::fs::File::create(self.path(log)).expect("create log");
        let err_file = log_file.try_clone().expect("dup log");
        // `ip netns exec` enters the namespace and execs the command, so
        // the pid we get is the command's own.
        let child = Command::new("ip")
            .args(["netns", "exec", &node.ns])
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(err_file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let pid = child.id();
        self.processes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Spawned {
                child,
                label: format!("{}:{log}", node.name),
            });
        pid
    }

    /// Runs `f` on a new thread that lives inside `node`'s network
    /// namespace: every socket it opens belongs to that namespace. Lets a
    /// test drive a client from a namespace without an extra binary.
    pub fn run_in<T: Send + 'static>(
        &self,
        node: &Node,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{}", node.ns);
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: setns only switches this thread's network namespace;
            // the fd is valid for the call.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to a spawned process.
    pub fn signal(&self, pid: u32, signal: i32) {
        // SAFETY: kill has no memory preconditions; pid came from spawn.
        unsafe {
            libc::kill(pid as i32, signal);
        }
    }

    /// Waits for a spawned process to exit; returns its exit code (None if
    /// killed by a signal), or panics after `timeout`.
    pub fn wait_exit(&self, pid: u32, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            {
                let mut procs = self.processes.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(i) = procs.iter().position(|p| p.child.id() == pid) {
                    if let Ok(Some(status)) = procs[i].child.try_wait() {
                        procs.remove(i);
                        return status.code();
                    }
                } else {
                    return None;
                }
            }
            assert!(
                start.elapsed() < timeout,
                "process {pid} did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills with SIGKILL and reaps.
    pub fn kill(&self, pid: u32) {
        self.signal(pid, libc::SIGKILL);
        self.wait_exit(pid, Duration::from_secs(5));
    }

    /// A file path inside the lab's private directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `contents` to a file in the lab directory and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, contents).expect("write lab file");
        p
    }

    /// Reads a log written by a spawned process.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// The addresses (without prefix) on `ifname` in `node`.
    pub fn addrs(&self, node: &Node, ifname: &str) -> Vec<String> {
        let out = self.exec(node, &["ip", "-o", "addr", "show", "dev", ifname]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                words.find(|w| *w == "inet" || *w == "inet6")?;
                words
                    .next()
                    .map(|a| a.split('/').next().unwrap_or(a).to_owned())
            })
            .collect()
    }

    /// Whether `addr` is configured on any interface of `node`.
    pub fn has_addr(&self, node: &Node, addr: &str) -> bool {
        let out = self.exec(node, &["ip", "-o", "addr", "show"]);
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .any(|w| w.split('/').next() == Some(addr))
    }

    /// The MAC address of `ifname` in `node`.
    pub fn mac(&self, node: &Node, ifname: &str) -> String {
        let out = self.exec(node, &["cat", &format!("/sys/class/net/{ifname}/address")]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The link-layer address `node` has cached for `addr`, if any.
    pub fn neighbour(&self, node: &Node, addr: &str) -> Option<String> {
        let out = self.exec(node, &["ip", "neigh", "show", addr]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut words = text.split_whitespace();
        words.find(|w| *w == "lladdr")?;
        words.next().map(str::to_owned)
    }

    /// One ping from `node` to `addr` (IPv4 or IPv6) with a 1 s timeout.
    pub fn ping(&self, node: &Node, addr: &str) -> bool {
        self.exec(node, &["ping", "-c", "1", "-W", "1", "-n", "-q", addr])
            .status
            .success()
    }

    /// Polls `condition` every 10 ms until it holds; panics with `what`
    /// after `timeout`. Returns how long it took.
    pub fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        mut condition: impl FnMut() -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            if condition() {
                return start.elapsed();
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for: {what}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every log in the lab directory, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            let mut entries: Vec<_> = entries.flatten().collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".log") {
                    let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(40).collect();
                    out.push_str(&format!("--- {name} (last {} lines)\n", tail.len()));
                    for l in tail.into_iter().rev() {
                        out.push_str(l);
                        out.push('\n');
                    }
                }
            }
        }
        out
    }

    /// The lab directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn add_ns(&self, ns: &str) {
        let out = run("ip", &["netns", "add", ns]);
        assert!(
            out.status.success(),
            "ip netns add {ns}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ns.to_owned());
    }

    fn sysctl(&self, ns: &str, key: &str, value: &str) {
        let _ = run(
            "ip",
            &[
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                &format!("{key}={value}"),
            ],
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let mut procs =
            std::mem::take(&mut *self.processes.lock().unwrap_or_else(|e| e.into_inner()));
        for p in &mut procs {
            let _ = p.child.kill();
        }
        for p in &mut procs {
            let _ = p.child.wait();
            let _ = &p.label;
        }
        // Kill anything else still running inside our namespaces (e.g. a
        // daemon that forked), then delete them.
        let nodes = std::mem::take(&mut *self.nodes.lock().unwrap_or_else(|e| e.into_inner()));
        for ns in nodes.iter().rev() {
            delete_ns(ns);
        }
        if std::env::var_os("VIGIL_KEEP_LAB_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn delete_ns(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill has no memory preconditions.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
    let _ = Command::new("ip").args(["netns", "del", ns]).output();
}

/// Deletes namespaces of labs whose process no longer exists.
fn collect_orphans() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            let Some(rest) = name.strip_prefix(&format!("{PREFIX}-")) else {
                continue;
            };
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                delete_ns(name);
            }
        }
    });
}
