//! The two stacks under test, per router node, and how each fault is
//! injected into them. Both proxy to the same backend (a second `vigil
//! run` on the node's loopback answering with the node's name), so only the
//! proxy + VRRP layer differs.

use std::time::{Duration, Instant};

use crate::netns::{Lab, Node};
use crate::{VIP, VRID, advert_ms};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stack {
    Vigil,
    /// nginx + keepalived, configured as the usual guides do.
    Pair,
}

/// How an operator stops nginx + keepalived for maintenance.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StopOrder {
    /// `systemctl stop keepalived` (the VIP moves: priority 0), then
    /// `systemctl stop nginx` (SIGQUIT: graceful) — each waits for the
    /// daemon to exit. The careful order of maintenance runbooks.
    KeepalivedFirst,
    /// `systemctl stop keepalived nginx`: systemd runs both stop jobs at
    /// once (no ordering between the units), SIGTERM and SIGQUIT together.
    Together,
    /// `systemctl stop nginx`, then `systemctl stop keepalived` (or let
    /// `chk_nginx` notice): stop the service, then move the address.
    NginxFirst,
}

impl StopOrder {
    pub fn name(self) -> &'static str {
        match self {
            StopOrder::KeepalivedFirst => "keepalived-first",
            StopOrder::Together => "together",
            StopOrder::NginxFirst => "nginx-first",
        }
    }

    pub fn parse(s: &str) -> Option<StopOrder> {
        [
            StopOrder::KeepalivedFirst,
            StopOrder::Together,
            StopOrder::NginxFirst,
        ]
        .into_iter()
        .find(|o| o.name() == s)
    }
}

/// The keepalived health check: the proxied path through nginx, so a dead
/// backend (502) and a wedged nginx (no answer within curl's 1 s) both
/// fail it. Guides most often use `killall -0 nginx` / `pidof nginx`
/// (keepalived's own sample: `killall -0`), which sees neither: with it
/// the pair would never fail over in two of the three scenarios.
pub const CHK_NGINX: &str = "/usr/bin/curl -sf -o /dev/null -m 1 http://127.0.0.1/";

/// One router node: its backend, and its stack's processes.
pub struct Router {
    pub name: &'static str,
    pub node: Node,
    pub priority: u8,
    pub backend: u32,
    /// vigil's pid, or nginx's master pid.
    pub proxy: u32,
    /// keepalived's (parent) pid.
    pub keepalived: Option<u32>,
}

/// The backend on the node's loopback: answers `be-<node>`.
pub fn start_backend(lab: &Lab, vigil: &str, node: &Node, name: &str) -> u32 {
    let cfg = lab.write(
        &format!("{name}-backend.toml"),
        &format!(
            "[log]\naccess_log = \"off\"\n[http]\nworkers = 1\n[[server]]\nlisten = [\"127.0.0.1:9001\"]\n  \
             [[server.location]]\n  path = \"/\"\n  return = {{ status = 200, body = \"be-{name}\\n\" }}\n"
        ),
    );
    let pid = lab.spawn(
        node,
        &[vigil, "run", "-c", &cfg.display().to_string()],
        &format!("{name}-backend.log"),
    );
    wait_http(lab, node, "http://127.0.0.1:9001/", &format!("be-{name}"));
    pid
}

/// vigil as in tests/ha.rs, with the tighter probe timeout the wedged-
/// proxy target (≤ 0.4 s at 100 ms adverts) is meant for: the self-probe
/// runs every half advert interval (at least 10 ms), with a timeout of
/// three probe intervals.
pub fn vigil_config(lab: &Lab, name: &str, priority: u8) -> String {
    let advert = advert_ms();
    let probe = (advert / 2).max(10);
    let timeout = probe * 3;
    let text = format!(
        r#"[log]
access_log = "off"
level = "info"

[http]
workers = 2
shutdown_timeout = "5s"

[admin]
listen = "127.0.0.1:9090"
debug = true

[[server]]
listen = ["0.0.0.0:80"]
  [[server.location]]
  path = "/"
  proxy_pass = "app"

[upstream.app]
servers = [{{ addr = "127.0.0.1:9001", max_fails = 1, fail_timeout = "1s" }}]
health_check = {{ path = "/", interval = "100ms", timeout = "100ms", rise = 1, fall = 1 }}

[[vrrp.instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = {VRID}
priority = {priority}
advert_interval = "{advert}ms"
virtual_ipaddress = ["{VIP}"]

  [vrrp.instance.track]
  proxy = true
  probe_interval = "{probe}ms"
  probe_timeout = "{timeout}ms"
  upstreams = {{ app = -100 }}
"#
    );
    lab.write(&format!("{name}-vigil.toml"), &text)
        .display()
        .to_string()
}

/// nginx as operators run it in front of one local backend: upstream
/// keepalive, `proxy_next_upstream`, two workers (vigil: `workers = 2`).
/// Everything it writes stays in the lab directory.
pub fn nginx_config(lab: &Lab, name: &str) -> String {
    let dir = lab.dir().display().to_string();
    let tmp = format!("{dir}/{name}-nginx-tmp");
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
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    upstream app {{
        server 127.0.0.1:9001;
        keepalive 16;
    }}
    server {{
        listen 80;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout http_502 http_503 http_504;
            proxy_connect_timeout 1s;
        }}
    }}
}}
"#
    );
    lab.write(&format!("{name}-nginx.conf"), &text)
        .display()
        .to_string()
}

/// keepalived with the same VRRP settings as vigil, and the usual
/// `vrrp_script chk_nginx` (interval 1, weight -60, fall 2, rise 2):
/// 150 - 60 = 90 < 100, so a failing check hands the VIP to the backup.
/// (keepalived 2.2.7 takes whole seconds only, `interval` ≥ 1: a check
/// once a second is as fast as it goes; `fall 1` is the only shortcut.)
/// As a Backup, keepalived discards the lowered advert and takes over
/// when its Master_Down_Timer expires (RFC 5798 §6.4.2).
pub fn keepalived_config(lab: &Lab, name: &str, priority: u8, master: bool) -> String {
    let state = if master { "MASTER" } else { "BACKUP" };
    let ms = advert_ms();
    let advert = format!("{}.{:02}", ms / 1000, (ms % 1000) / 10);
    let text = format!(
        r#"global_defs {{
    router_id {name}
    script_user root
    enable_script_security
}}
vrrp_script chk_nginx {{
    script "{CHK_NGINX}"
    interval 1
    timeout 2
    weight -60
    fall 2
    rise 2
}}
vrrp_instance VI_1 {{
    state {state}
    interface eth0
    virtual_router_id {VRID}
    priority {priority}
    advert_int {advert}
    version 3
    virtual_ipaddress {{
        {VIP}/32
    }}
    track_script {{
        chk_nginx
    }}
}}
"#
    );
    lab.write(&format!("{name}-keepalived.conf"), &text)
        .display()
        .to_string()
}

impl Router {
    /// Starts the stack on this node and waits until its proxy serves.
    pub fn start(&mut self, lab: &Lab, stack: Stack, vigil: &str, master: bool) {
        let name = self.name;
        match stack {
            Stack::Vigil => {
                let cfg = vigil_config(lab, name, self.priority);
                self.proxy = lab.spawn(
                    &self.node,
                    &[vigil, "run", "-c", &cfg],
                    &format!("{name}-vigil.log"),
                );
                wait_http(lab, &self.node, "http://127.0.0.1/", &format!("be-{name}"));
            }
            Stack::Pair => {
                let conf = nginx_config(lab, name);
                let err = lab.path(&format!("{name}-nginx-error.log"));
                let prefix = format!("{}/", lab.dir().display());
                self.proxy = lab.spawn(
                    &self.node,
                    &[
                        "nginx",
                        "-p",
                        &prefix,
                        "-e",
                        &err.display().to_string(),
                        "-c",
                        &conf,
                    ],
                    &format!("{name}-nginx.log"),
                );
                wait_http(lab, &self.node, "http://127.0.0.1/", &format!("be-{name}"));
                let conf = keepalived_config(lab, name, self.priority, master);
                let pid = lab.path(&format!("{name}-keepalived.pid"));
                let vrrp = lab.path(&format!("{name}-keepalived-vrrp.pid"));
                let _ = std::fs::remove_file(&vrrp);
                self.keepalived = Some(lab.spawn(
                    &self.node,
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
                    &format!("{name}-keepalived.log"),
                ));
            }
        }
    }

    /// Waits until this node runs VRRP as a backup.
    pub fn wait_backup(&self, lab: &Lab, stack: Stack) {
        let name = self.name;
        lab.wait_until(
            Duration::from_secs(10),
            &format!("{name} is a VRRP backup"),
            || match stack {
                Stack::Vigil => {
                    let out = lab.exec(
                        &self.node,
                        &["curl", "-s", "-m", "1", "http://127.0.0.1:9090/status"],
                    );
                    String::from_utf8_lossy(&out.stdout).contains("\"backup\"")
                }
                Stack::Pair => lab
                    .read(&format!("{name}-keepalived.log"))
                    .contains("Entering BACKUP STATE"),
            },
        );
    }

    /// Planned stop of this node's stack. For vigil: SIGTERM (drain, then
    /// resign). For the pair, in `order` (see [`StopOrder`]); "waits for the
    /// daemon to exit" as `systemctl stop` does (bounded).
    pub fn planned_stop(&self, lab: &Lab, stack: Stack, order: StopOrder) {
        match stack {
            Stack::Vigil => lab.signal(self.proxy, libc::SIGTERM),
            Stack::Pair => {
                let ka = self.keepalived.expect("keepalived running");
                match order {
                    StopOrder::KeepalivedFirst => {
                        lab.signal(ka, libc::SIGTERM);
                        wait_gone(ka, Duration::from_secs(5));
                        lab.signal(self.proxy, libc::SIGQUIT);
                    }
                    StopOrder::Together => {
                        lab.signal(ka, libc::SIGTERM);
                        lab.signal(self.proxy, libc::SIGQUIT);
                    }
                    StopOrder::NginxFirst => {
                        lab.signal(self.proxy, libc::SIGQUIT);
                        wait_gone(self.proxy, Duration::from_secs(5));
                        lab.signal(ka, libc::SIGTERM);
                    }
                }
            }
        }
    }

    /// Wedges the proxy: vigil's workers blocked for `how_long` (they come
    /// back on their own); nginx's master and workers SIGSTOPped (the
    /// caller sends SIGCONT after `how_long` with [`Router::unwedge`]).
    pub fn wedge(&self, lab: &Lab, stack: Stack, how_long: Duration) {
        match stack {
            Stack::Vigil => {
                let out = lab.exec(
                    &self.node,
                    &[
                        "curl",
                        "-s",
                        "-m",
                        "2",
                        "-X",
                        "POST",
                        &format!(
                            "http://127.0.0.1:9090/debug/stall?ms={}",
                            how_long.as_millis()
                        ),
                    ],
                );
                let said = String::from_utf8_lossy(&out.stdout);
                assert!(said.contains("stalling"), "stall refused: {said}");
            }
            Stack::Pair => {
                for pid in self.nginx_processes() {
                    lab.signal(pid, libc::SIGSTOP);
                }
            }
        }
    }

    pub fn unwedge(&self, lab: &Lab, stack: Stack) {
        if stack == Stack::Pair {
            for pid in self.nginx_processes() {
                lab.signal(pid, libc::SIGCONT);
            }
        }
    }

    /// nginx's master and its workers. (Not the process group: nginx runs
    /// in the foreground here, in the bench's own group.)
    fn nginx_processes(&self) -> Vec<u32> {
        let mut pids = vec![self.proxy];
        pids.extend(children(self.proxy));
        pids
    }
}

/// Polls `url` inside `node` until the answer contains `want` (10 s).
pub fn wait_http(lab: &Lab, node: &Node, url: &str, want: &str) {
    lab.wait_until(
        Duration::from_secs(10),
        &format!("{url} in {} answers {want}", node.name),
        || {
            let out = lab.exec(node, &["curl", "-s", "-m", "1", url]);
            String::from_utf8_lossy(&out.stdout).contains(want)
        },
    );
}

/// Waits (bounded) until `pid` no longer exists. Used where `systemctl
/// stop` would wait; the lab reaps the process later.
fn wait_gone(pid: u32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        // A zombie (exited, not yet reaped by the lab) counts as gone.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = state
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        if state.is_empty() || zombie {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!("  (pid {pid} still running after {timeout:?})");
}

/// Direct children of `pid`, from /proc.
fn children(pid: u32) -> Vec<u32> {
    let mut out = vec![];
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // "pid (comm) state ppid ...": comm may contain spaces and ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}
