//! The container image, built and run as users run it (issue 17).
//!
//! The image is built from the project's `Dockerfile` with podman, without
//! a registry: a Debian base made with `mmdebstrap` from the machine's own
//! apt sources, imported as `localhost/debian:bookworm-slim`, and the
//! Dockerfile's `prebuilt` stage fed with the vigil binary cargo built for
//! these tests (`VIGIL_CONTAINER_BINARY` picks another, e.g. a release
//! build for `bench/container.sh`). Containers run with `--network host`
//! inside network namespaces the test creates, as the image's unprivileged
//! user:
//!
//! - with `--cap-add NET_ADMIN --cap-add NET_RAW`, two containers in two
//!   namespaces elect one master; `podman stop` of the master (a stop
//!   timeout longer than `shutdown_timeout`) drains and moves the VIP with
//!   0 failed requests on a client loop;
//! - without `--cap-add`, the same image and an HA config serve as a plain
//!   proxy and say that VRRP is unavailable, and why.
//!
//! It also checks `conf/docker-compose.ha.yml` against what the README and
//! the Dockerfile say. Needs root, podman, runc and mmdebstrap (`.ci/run`
//! installs them); prints a skip message otherwise.
//! Subnets 10.231.19.0/24 and 10.231.20.0/24, inside the namespaces only.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::load;
use support::netns::{Lab, Node, skip_unless_root, tool_exists};

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const IMAGE: &str = "localhost/vigil-test:latest";
const BASE: &str = "localhost/debian:bookworm-slim";

/// Skips (with the reason) unless the test can build and run containers.
fn skip(test: &str) -> bool {
    if skip_unless_root(test) {
        return true;
    }
    for tool in ["podman", "runc", "mmdebstrap"] {
        if !tool_exists(tool) {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: `{tool}` not found in CI; install it (apt-get install -y podman runc mmdebstrap)"
            );
            eprintln!(
                "skipping {test}: `{tool}` not found (apt-get install -y podman runc mmdebstrap)"
            );
            return true;
        }
    }
    false
}

/// podman as it works here: runc, cgroupfs, and no default ulimits (the
/// sandbox's hard limits are below podman's defaults). In `ns`, through
/// `nsenter --net`: `--network host` then means that namespace. (Not `ip
/// netns exec`, which mounts a fresh /sys without the cgroup hierarchy
/// runc needs.)
fn podman_in(ns: Option<&str>) -> Command {
    static CONF: OnceLock<PathBuf> = OnceLock::new();
    let conf = CONF.get_or_init(|| {
        let path =
            std::env::temp_dir().join(format!("vigil-containers-{}.conf", std::process::id()));
        std::fs::write(&path, "[containers]\ndefault_ulimits = []\n")
            .expect("write containers.conf");
        path
    });
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{ns}")).arg("podman");
            c
        }
        None => Command::new("podman"),
    };
    cmd.env("CONTAINERS_CONF", conf)
        .args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"]);
    cmd
}

fn podman() -> Command {
    podman_in(None)
}

fn run(mut cmd: Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Builds the image once per test binary; returns its facts.
fn image() -> &'static ImageFacts {
    static FACTS: OnceLock<ImageFacts> = OnceLock::new();
    FACTS.get_or_init(build_image)
}

#[derive(Debug)]
struct ImageFacts {
    /// Bytes, as `podman image inspect` reports them.
    size: u64,
    /// Of which the base.
    base_size: u64,
}

fn image_size(name: &str) -> u64 {
    let mut cmd = podman();
    cmd.args(["image", "inspect", "--format", "{{.Size}}", name]);
    text(&run(cmd, "podman image inspect"))
        .parse()
        .expect("image size")
}

fn build_image() -> ImageFacts {
    let work = std::env::temp_dir().join(format!("vigil-image-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let mut exists = podman();
    exists.args(["image", "exists", BASE]);
    if !exists.status().is_ok_and(|s| s.success()) {
        // A minimal Debian from the machine's own apt sources: no mirror
        // is named, nothing comes from a container registry.
        let tar = work.join("base.tar");
        let mut cmd = Command::new("mmdebstrap");
        cmd.args([
            "--variant=minbase",
            "--quiet",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "bookworm",
        ])
        .arg(&tar)
        .arg(apt_sources());
        run(cmd, "mmdebstrap");
        let mut cmd = podman();
        cmd.arg("import").arg(&tar).arg(BASE);
        run(cmd, "podman import");
    }
    // The build context: what the Dockerfile copies, with the binary at
    // prebuilt/vigil.
    let ctx = work.join("context");
    for dir in ["conf", "www", "prebuilt"] {
        std::fs::create_dir_all(ctx.join(dir)).unwrap();
    }
    std::fs::copy(Path::new(ROOT).join("Dockerfile"), ctx.join("Dockerfile")).unwrap();
    std::fs::copy(
        Path::new(ROOT).join("conf/vigil.toml"),
        ctx.join("conf/vigil.toml"),
    )
    .unwrap();
    for entry in std::fs::read_dir(Path::new(ROOT).join("www")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), ctx.join("www").join(entry.file_name())).unwrap();
    }
    let binary = std::env::var("VIGIL_CONTAINER_BINARY").unwrap_or_else(|_| VIGIL.to_owned());
    let target = ctx.join("prebuilt/vigil");
    std::fs::copy(&binary, &target).unwrap();
    // As the compile stage does (a debug build shrinks from ~200 to ~30 MB).
    run(
        {
            let mut c = Command::new("strip");
            c.arg(&target);
            c
        },
        "strip",
    );
    let mut rmi = podman();
    rmi.args(["rmi", "--force", "--ignore", IMAGE]);
    let _ = rmi.output();
    let mut cmd = podman();
    cmd.args([
        "build",
        "--pull=never",
        "--network",
        "host",
        "--build-arg",
        "VIGIL_BINARY=prebuilt",
        "--build-arg",
        &format!("BASE={BASE}"),
        "-t",
        IMAGE,
    ])
    .arg(&ctx);
    let started = Instant::now();
    run(cmd, "podman build");
    eprintln!("image built in {:?}", started.elapsed());
    let _ = std::fs::remove_dir_all(&work);
    let facts = ImageFacts {
        size: image_size(IMAGE),
        base_size: image_size(BASE),
    };
    eprintln!(
        "FIGURE image size: {:.1} MB ({:.1} MB base + {:.1} MB vigil layers)",
        facts.size as f64 / 1e6,
        facts.base_size as f64 / 1e6,
        (facts.size - facts.base_size) as f64 / 1e6
    );
    facts
}

/// The machine's apt sources: deb822 if present, else the classic list.
fn apt_sources() -> PathBuf {
    let deb822 = Path::new("/etc/apt/sources.list.d/debian.sources");
    if deb822.exists() {
        deb822.to_owned()
    } else {
        PathBuf::from("/etc/apt/sources.list")
    }
}

/// A running container, removed on drop (also when the test panics).
struct Container {
    name: String,
}

impl Container {
    /// `podman run -d` inside `node`'s namespace with host networking and
    /// `dir` mounted as /etc/vigil.
    fn start(node: &Node, name: &str, dir: &Path, caps: bool) -> Container {
        let name = format!("vigil-test-{}-{name}", std::process::id());
        let mut cmd = podman_in(Some(&node.ns));
        cmd.args(["run", "-d", "--name", &name, "--network", "host"]);
        if caps {
            cmd.args(["--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW"]);
        }
        cmd.arg("-v")
            .arg(format!("{}:/etc/vigil:ro", dir.display()))
            .arg(IMAGE);
        let container = Container { name };
        run(cmd, "podman run");
        container
    }

    fn logs(&self) -> String {
        let mut cmd = podman();
        cmd.args(["logs", &self.name]);
        match cmd.output() {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("podman logs: {e}"),
        }
    }

    fn inspect(&self, format: &str) -> String {
        let mut cmd = podman();
        cmd.args(["inspect", "--format", format, &self.name]);
        text(&run(cmd, "podman inspect"))
    }

    /// `podman stop` with a timeout longer than `shutdown_timeout`.
    fn stop(&self, timeout: Duration) {
        let mut cmd = podman();
        cmd.args(["stop", "-t", &timeout.as_secs().to_string(), &self.name]);
        run(cmd, "podman stop");
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- podman logs {} ---\n{}", self.name, self.logs());
        }
        let mut cmd = podman();
        cmd.args(["rm", "--force", "--time", "0", &self.name]);
        let _ = cmd.output();
    }
}

fn curl(lab: &Lab, node: &Node, url: &str) -> Option<String> {
    let out = lab.exec(node, &["curl", "-sf", "--max-time", "2", url]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A node's config, in its own directory (mounted as /etc/vigil).
fn node_config(lab: &Lab, name: &str, listen: &str, vrrp: &str) -> PathBuf {
    let dir = lab.path(&format!("etc-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("vigil.toml"),
        format!(
            r#"
[log]
access_log = "off"

[http]
workers = 2
shutdown_timeout = "3s"

[admin]
listen = "127.0.0.1:9090"

[[server]]
listen = ["{listen}"]
  [[server.location]]
  path = "/"
  return = {{ status = 200, body = "node-{name}\n" }}
{vrrp}
"#
        ),
    )
    .unwrap();
    dir
}

fn vrrp(subnet: u8, priority: u8) -> String {
    format!(
        r#"
[[vrrp.instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = {subnet}
priority = {priority}
advert_interval = "100ms"
virtual_ipaddress = ["10.231.{subnet}.50/24"]
garp = {{ repeat = 3, interval = "50ms" }}
"#
    )
}

#[test]
fn containers_elect_a_master_and_podman_stop_hands_the_vip_over() {
    if skip("containers_elect_a_master_and_podman_stop_hands_the_vip_over") {
        return;
    }
    image();
    let s = 19;
    let vip = format!("10.231.{s}.50");
    let lab = Lab::new("ctr");
    let client = lab.node("client");
    lab.connect(&client, "eth0", &[&format!("10.231.{s}.100/24")]);
    let a = lab.node("a");
    let b = lab.node("b");
    lab.connect(&a, "eth0", &[&format!("10.231.{s}.1/24")]);
    lab.connect(&b, "eth0", &[&format!("10.231.{s}.2/24")]);
    let a_dir = node_config(&lab, "a", "0.0.0.0:80", &vrrp(s, 150));
    let b_dir = node_config(&lab, "b", "0.0.0.0:80", &vrrp(s, 100));

    let started = Instant::now();
    let ca = Container::start(&a, "a", &a_dir, true);
    lab.wait_until(Duration::from_secs(20), "node a serves", || {
        curl(&lab, &a, "http://127.0.0.1/").is_some()
    });
    eprintln!(
        "FIGURE start-up to the first served request: {:?}",
        started.elapsed()
    );
    lab.wait_until(Duration::from_secs(5), "VIP on a", || {
        lab.has_addr(&a, &vip)
    });
    let cb = Container::start(&b, "b", &b_dir, true);
    lab.wait_until(Duration::from_secs(20), "node b serves", || {
        curl(&lab, &b, "http://127.0.0.1/").is_some()
    });
    // One master: a (priority 150); b stays backup.
    std::thread::sleep(Duration::from_millis(500));
    assert!(lab.has_addr(&a, &vip) && !lab.has_addr(&b, &vip));
    assert_eq!(ca.inspect("{{.Config.User}}"), "vigil");
    let pid: u32 = ca.inspect("{{.State.Pid}}").parse().unwrap();
    let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .map(|l| l.split_whitespace().nth(1).unwrap().to_owned())
        .unwrap();
    assert_eq!(uid, "10001", "vigil runs as the image's unprivileged user");
    let metrics = curl(&lab, &a, "http://127.0.0.1:9090/metrics").expect("/metrics answers");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("vigil_vrrp_state{") && l.ends_with(" 2")),
        "a reports master:\n{metrics}"
    );
    assert!(metrics.contains("vigil_vrrp_unavailable 0"), "{metrics}");
    let metrics_b = curl(&lab, &b, "http://127.0.0.1:9090/metrics").expect("/metrics answers");
    assert!(
        metrics_b
            .lines()
            .any(|l| l.starts_with("vigil_vrrp_state{") && l.ends_with(" 1")),
        "b reports backup:\n{metrics_b}"
    );
    // Idle RSS of the master's vigil process, inside its container.
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .map(str::to_owned)
        .unwrap_or_default();
    eprintln!("FIGURE idle {rss}");

    // The client learns the VIP's MAC first (see tests/ha.rs: the kernel
    // ignores ARP updates to an entry younger than a second).
    assert!(lab.ping(&client, &vip));
    std::thread::sleep(Duration::from_millis(1100));
    let load = load::start(
        &lab,
        &client,
        format!("{vip}:80").parse().unwrap(),
        4,
        Duration::from_secs(4),
    );
    std::thread::sleep(Duration::from_millis(800));
    // Longer than shutdown_timeout (3 s): the drain completes before any
    // SIGKILL.
    ca.stop(Duration::from_secs(15));
    lab.wait_until(Duration::from_secs(3), "VIP on b only", || {
        lab.has_addr(&b, &vip) && !lab.has_addr(&a, &vip)
    });
    std::thread::sleep(Duration::from_millis(800));
    let report = load.stop();
    assert!(
        report.failures().is_empty(),
        "podman stop lost requests: {}\n{}\n{}",
        report.summary(),
        ca.logs(),
        cb.logs()
    );
    assert!(report.served_by("node-a") > 0 && report.served_by("node-b") > 0);
    assert_eq!(ca.inspect("{{.State.ExitCode}}"), "0", "{}", ca.logs());
    eprintln!("podman stop under load: {}", report.summary());
}

#[test]
fn without_capabilities_the_image_serves_and_says_vrrp_is_unavailable() {
    if skip("without_capabilities_the_image_serves_and_says_vrrp_is_unavailable") {
        return;
    }
    image();
    let s = 20;
    let lab = Lab::new("ctrnc");
    let n = lab.node("n");
    lab.connect(&n, "eth0", &[&format!("10.231.{s}.1/24")]);
    let dir = node_config(&lab, "n", "0.0.0.0:8080", &vrrp(s, 100));
    let c = Container::start(&n, "nocaps", &dir, false);
    lab.wait_until(Duration::from_secs(20), "the plain proxy serves", || {
        curl(&lab, &n, "http://127.0.0.1:8080/").is_some_and(|b| b == "node-n\n")
    });
    let logs = c.logs();
    assert!(
        logs.contains("VRRP unavailable, serving as a plain proxy") && logs.contains("--cap-add"),
        "{logs}"
    );
    let status = curl(&lab, &n, "http://127.0.0.1:9090/status").expect("/status");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let why = status["vrrp_unavailable"].as_str().unwrap_or_default();
    assert!(why.contains("CAP_NET_"), "{status}");
    let metrics = curl(&lab, &n, "http://127.0.0.1:9090/metrics").unwrap();
    assert!(metrics.contains("vigil_vrrp_unavailable 1"), "{metrics}");
    assert!(!lab.has_addr(&n, &format!("10.231.{s}.50")));
}

/// The compose file says what the README and the Dockerfile say: host
/// networking, the two capabilities, the config mount, and a stop grace
/// period longer than any `shutdown_timeout` the shipped configs use.
#[test]
fn compose_file_matches_the_readme() {
    let text = std::fs::read_to_string(Path::new(ROOT).join("conf/docker-compose.ha.yml")).unwrap();
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).expect("compose file is YAML");
    let svc = &docs[0]["services"]["vigil"];
    assert_eq!(svc["network_mode"].as_str(), Some("host"));
    let caps: Vec<&str> = svc["cap_add"]
        .as_vec()
        .expect("cap_add")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(caps, ["NET_ADMIN", "NET_RAW"]);
    let volumes: Vec<&str> = svc["volumes"]
        .as_vec()
        .expect("volumes")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(volumes.contains(&"/etc/vigil:/etc/vigil:ro"), "{volumes:?}");
    assert_eq!(svc["build"]["context"].as_str(), Some(".."));
    let grace = svc["stop_grace_period"]
        .as_str()
        .expect("stop_grace_period");
    let grace: u64 = grace.trim_end_matches('s').parse().expect("seconds");
    // The compose file runs the HA pair's configs.
    for conf in ["ha-a.toml", "ha-b.toml"] {
        let c = std::fs::read_to_string(Path::new(ROOT).join("conf").join(conf)).unwrap();
        let t: toml::Value = toml::from_str(&c).unwrap();
        let timeout = t
            .get("http")
            .and_then(|h| h.get("shutdown_timeout"))
            .and_then(|v| v.as_str())
            .unwrap_or("30s"); // the default
        let secs: u64 = timeout.trim_end_matches('s').parse().unwrap();
        assert!(
            secs < grace,
            "{conf}: shutdown_timeout {timeout} >= stop_grace_period {grace}s"
        );
    }
    // The image's user and entry point, as the compose file relies on.
    let dockerfile = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("USER vigil"));
    assert!(dockerfile.contains("CMD [\"run\", \"-c\", \"/etc/vigil/vigil.toml\"]"));
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    assert!(readme.contains("docker-compose.ha.yml"));
    assert!(readme.contains("--cap-add NET_ADMIN --cap-add NET_RAW"));
}
