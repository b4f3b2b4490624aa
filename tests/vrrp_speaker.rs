//! The `Speaker` API as the proxy uses it, in-process: a test thread
//! enters a node's network namespace and runs the speaker on its own tokio
//! runtime, against a vigil binary as the peer. Covers status(),
//! set_external() (priority delta and fault, effective at once),
//! set_standby(), reload() and resign_all(); plus the binary without
//! capabilities (VRRP named as unavailable, the proxy still serving).
//!
//! Subnet 10.231.31.0/24, inside the namespaces only.

mod support;

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use support::netns::{Lab, skip_unless_root};
use vigil::config::error::Problems;
use vigil::config::vrrp::{VrrpConfig, VrrpFile, validate};
use vigil::vrrp::{ExternalHealth, Speaker, State, VrrpError};

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");

fn config(toml_text: &str) -> VrrpConfig {
    #[derive(serde::Deserialize)]
    struct Root {
        vrrp: VrrpFile,
    }
    let root: Root = toml::from_str(toml_text).expect("test config parses");
    let mut problems = Problems::new();
    let c = validate(&root.vrrp, "vrrp", &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    c.expect("valid")
}

fn instance(name: &str, vrid: u8, priority: u8, vip: &str) -> String {
    format!(
        "[[vrrp.instance]]\nname = \"{name}\"\ninterface = \"eth0\"\nvirtual_router_id = {vrid}\npriority = {priority}\n\
         advert_interval = \"100ms\"\nvirtual_ipaddress = [\"{vip}\"]\n"
    )
}

/// Moves the calling thread into namespace `ns` (sockets it opens from now
/// on belong there).
fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("open netns");
    // SAFETY: setns on a valid namespace fd affects only this thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

async fn until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

#[test]
fn speaker_api_against_a_peer() {
    if skip_unless_root("speaker_api_against_a_peer") {
        return;
    }
    let lab = Lab::new("api");
    let a = lab.node("a");
    let b = lab.node("b");
    lab.connect(&a, "eth0", &["10.231.31.1/24"]);
    lab.connect(&b, "eth0", &["10.231.31.2/24"]);
    let vip = "10.231.31.100";
    let peer_cfg = lab.write("b.toml", &instance("VI_1", 31, 100, vip));
    let _peer = lab.spawn(
        &b,
        &[VIGIL, "run", "-c", &peer_cfg.display().to_string()],
        "b.log",
    );
    let ns = a.ns.clone();
    let on_a = || lab.has_addr(&a, vip);
    let on_b = || lab.has_addr(&b, vip);

    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter(&ns);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let speaker = Speaker::start(config(&instance("VI_1", 31, 150, vip)))
                        .await
                        .expect("start");
                    let state = |s: &Speaker| s.status()[0].state;

                    // Election and status.
                    until(Duration::from_secs(2), "a is master", || {
                        state(&speaker) == State::Master && on_a() && !on_b()
                    })
                    .await;
                    until(Duration::from_secs(1), "adverts counted", || {
                        speaker.status()[0].counters.adverts_sent >= 3
                    })
                    .await;
                    let st = &speaker.status()[0];
                    assert_eq!(
                        (st.name.as_str(), st.vrid, st.interface.as_str()),
                        ("VI_1", 31, "eth0")
                    );
                    assert_eq!((st.configured_priority, st.effective_priority), (150, 150));
                    assert_eq!(st.master, Some("10.231.31.1".parse().unwrap()));
                    assert_eq!(st.counters.become_master, 1);
                    assert!(
                        st.last_transition
                            .as_ref()
                            .is_some_and(|t| t.to == State::Master)
                    );
                    assert_eq!(st.vips.len(), 1);

                    // A health-driven priority drop moves the VIP at once:
                    // the peer (100) takes over after its Skew_Time (61 ms),
                    // not its Master_Down_Interval (361 ms).
                    let t = Instant::now();
                    speaker
                        .set_external("VI_1", ExternalHealth::delta(-60, "upstream app: 1/3 up"))
                        .unwrap();
                    until(Duration::from_secs(2), "b takes over", on_b).await;
                    let took = t.elapsed();
                    assert!(
                        took < Duration::from_millis(340),
                        "priority drop took {took:?}, expected about Skew_Time"
                    );
                    // a, alive, keeps the VIP through the yield window
                    // (200 ms) while it closes its connections, then
                    // drops it.
                    until(Duration::from_secs(2), "a lets go", || !on_a()).await;
                    until(Duration::from_secs(1), "a backup at 90", || {
                        let s = &speaker.status()[0];
                        s.state == State::Backup
                            && s.effective_priority == 90
                            && s.master == Some("10.231.31.2".parse().unwrap())
                    })
                    .await;

                    // Healthy again: a (150) preempts b (100).
                    speaker
                        .set_external("VI_1", ExternalHealth::healthy())
                        .unwrap();
                    until(Duration::from_secs(2), "a back", || on_a() && !on_b()).await;

                    // An external fault: a resigns, b takes over, status says why.
                    speaker
                        .set_external("VI_1", ExternalHealth::fault("proxy self-probe failing"))
                        .unwrap();
                    until(Duration::from_secs(2), "b on fault", || on_b() && !on_a()).await;
                    let st = &speaker.status()[0];
                    assert_eq!(st.state, State::Fault);
                    assert!(
                        st.faults.iter().any(|f| f.contains("self-probe")),
                        "{:?}",
                        st.faults
                    );
                    assert!(st.counters.priority_zero_sent >= 1);
                    speaker
                        .set_external("VI_1", ExternalHealth::healthy())
                        .unwrap();
                    until(Duration::from_secs(2), "a back after fault", || {
                        on_a() && !on_b()
                    })
                    .await;

                    // Standby (drain --no-exit) and back.
                    speaker.set_standby(true);
                    until(Duration::from_secs(2), "standby hands over", || {
                        on_b() && !on_a()
                    })
                    .await;
                    tokio::time::sleep(Duration::from_millis(800)).await;
                    assert_eq!(state(&speaker), State::Fault, "standby never takes the VIP");
                    assert!(on_b() && !on_a());
                    speaker.set_standby(false);
                    // The VIP is added before the transition is recorded:
                    // wait for both, or `before` below could miss it.
                    until(Duration::from_secs(2), "a back after standby", || {
                        on_a() && !on_b() && state(&speaker) == State::Master
                    })
                    .await;

                    // Reload with the same config: no transition at all.
                    let before = speaker.status()[0].counters.become_master;
                    speaker
                        .reload(config(&instance("VI_1", 31, 150, vip)))
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let st = &speaker.status()[0];
                    assert_eq!(
                        (st.state, st.counters.become_master),
                        (State::Master, before),
                        "unchanged instance kept running"
                    );

                    // Add a second instance (no peer: it becomes master), then
                    // change the first and remove the second.
                    let two = format!(
                        "{}{}",
                        instance("VI_1", 31, 150, vip),
                        instance("VI_2", 32, 150, "10.231.31.101")
                    );
                    speaker.reload(config(&two)).await.unwrap();
                    until(Duration::from_secs(2), "VI_2 master", || {
                        lab.has_addr(&a, "10.231.31.101")
                    })
                    .await;
                    assert_eq!(speaker.status().len(), 2);
                    speaker
                        .reload(config(&instance("VI_1", 31, 140, vip)))
                        .await
                        .unwrap();
                    until(Duration::from_secs(2), "VI_2 removed", || {
                        !lab.has_addr(&a, "10.231.31.101")
                    })
                    .await;
                    until(
                        Duration::from_secs(2),
                        "VI_1 restarted and master again",
                        || {
                            let s = speaker.status();
                            s.len() == 1
                                && s[0].state == State::Master
                                && s[0].configured_priority == 140
                                && on_a()
                        },
                    )
                    .await;

                    assert!(matches!(
                        speaker.set_external("nope", ExternalHealth::healthy()),
                        Err(VrrpError::UnknownInstance(_))
                    ));

                    // Resign: priority 0, VIP removed, b takes over after Skew_Time.
                    let t = Instant::now();
                    speaker.resign_all().await;
                    assert!(!on_a(), "VIP removed on resign");
                    until(Duration::from_secs(1), "b after resign", on_b).await;
                    assert!(
                        t.elapsed() < Duration::from_millis(500),
                        "resign took {:?}",
                        t.elapsed()
                    );
                    assert!(speaker.status().is_empty());
                });
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
    });
}

#[test]
fn missing_capability_is_named_and_the_proxy_still_serves() {
    if skip_unless_root("missing_capability_is_named_and_the_proxy_still_serves") {
        return;
    }
    if !support::netns::tool_exists("setpriv") {
        eprintln!("skipping: setpriv (util-linux) not found");
        return;
    }
    // Runs as `nobody` with no capabilities, as a container started
    // without `--cap-add`: VRRP fails before touching any interface (so no
    // namespace is needed), and the proxy serves on its own address.
    let dir = std::env::temp_dir().join(format!("vigil-caps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (port, admin) = (support::backend::free_port(), support::backend::free_port());
    let cfg = dir.join("caps.toml");
    std::fs::write(
        &cfg,
        format!(
            "[log]\naccess_log = \"off\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             [[server]]\nlisten = [\"127.0.0.1:{port}\"]\n  [[server.location]]\n  path = \"/\"\n  \
             return = {{ status = 200, body = \"plain\" }}\n{}",
            instance("VI_1", 1, 100, "10.231.31.200")
        ),
    )
    .unwrap();
    let stderr_path = dir.join("stderr.log");
    let mut child = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            VIGIL,
            "run",
            "-c",
        ])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let curl = |url: String| {
        let out = std::process::Command::new("curl")
            .args(["-s", "--max-time", "2", &url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let start = Instant::now();
    while curl(format!("http://127.0.0.1:{port}/")) != "plain" {
        if start.elapsed() > Duration::from_secs(10) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!(
                "vigil did not serve without capabilities:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = curl(format!("http://127.0.0.1:{admin}/status"));
    let metrics = curl(format!("http://127.0.0.1:{admin}/metrics"));
    let _ = child.kill();
    let _ = child.wait();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    for said in [
        "VRRP unavailable, serving as a plain proxy",
        "CAP_NET_RAW",
        "setcap cap_net_admin,cap_net_raw+ep",
        "--cap-add NET_ADMIN --cap-add NET_RAW",
    ] {
        assert!(stderr.contains(said), "log lacks {said:?}:\n{stderr}");
    }
    let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    assert!(
        status["vrrp_unavailable"]
            .as_str()
            .is_some_and(|w| w.contains("CAP_NET_RAW")),
        "{status}"
    );
    assert!(
        metrics.lines().any(|l| l == "vigil_vrrp_unavailable 1"),
        "{metrics}"
    );
}

#[test]
fn sync_group_members_fail_over_together() {
    if skip_unless_root("sync_group_members_fail_over_together") {
        return;
    }
    let lab = Lab::new("sync");
    let a = lab.node("a");
    let b = lab.node("b");
    lab.connect(&a, "eth0", &["10.231.32.1/24"]);
    lab.connect(&b, "eth0", &["10.231.32.2/24"]);
    // A stand-in for a second network whose loss must move both VIPs.
    // (a veth pair inside the node: carrier while both ends are up).
    lab.ip(
        &a.ns,
        &[
            "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1",
        ],
    );
    lab.ip(&a.ns, &["link", "set", "uplink1", "up"]);
    lab.ip(&a.ns, &["link", "set", "uplink0", "up"]);
    let (vip1, vip2) = ("10.231.32.100", "10.231.32.101");
    let peer = format!(
        "{}{}",
        instance("VI_1", 41, 100, vip1),
        instance("VI_2", 42, 100, vip2)
    );
    let peer_cfg = lab.write("b.toml", &peer);
    let _peer = lab.spawn(
        &b,
        &[VIGIL, "run", "-c", &peer_cfg.display().to_string()],
        "b.log",
    );
    let ours = format!(
        "{}{}[vrrp.instance.track]\ninterfaces = {{ uplink0 = \"fault\" }}\n\n[[vrrp.sync_group]]\nname = \"G\"\ninstances = [\"VI_1\", \"VI_2\"]\n",
        instance("VI_1", 41, 150, vip1),
        instance("VI_2", 42, 150, vip2)
    );
    let ns = a.ns.clone();
    let on = |node: &support::netns::Node, vip: &str| lab.has_addr(node, vip);
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter(&ns);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let speaker = Speaker::start(config(&ours)).await.expect("start");
                    until(Duration::from_secs(2), "both VIPs on a", || {
                        on(&a, vip1) && on(&a, vip2)
                    })
                    .await;
                    // Only VI_2 tracks uplink0, but the group moves both.
                    lab.set_link(&a, "uplink0", false);
                    until(Duration::from_secs(2), "both VIPs on b", || {
                        on(&b, vip1) && on(&b, vip2) && !on(&a, vip1) && !on(&a, vip2)
                    })
                    .await;
                    let st = speaker.status();
                    assert!(st.iter().all(|s| s.state == State::Fault), "{st:#?}");
                    let vi1 = st.iter().find(|s| s.name == "VI_1").unwrap();
                    assert!(
                        vi1.faults.iter().any(|f| f.contains("sync group G")),
                        "{:?}",
                        vi1.faults
                    );
                    lab.set_link(&a, "uplink0", true);
                    until(Duration::from_secs(2), "both VIPs back on a", || {
                        on(&a, vip1) && on(&a, vip2) && !on(&b, vip1) && !on(&b, vip2)
                    })
                    .await;
                    speaker.resign_all().await;
                });
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
    });
}

#[test]
fn lab_cleans_up_even_when_a_test_panics() {
    if skip_unless_root("lab_cleans_up_even_when_a_test_panics") {
        return;
    }
    let mut names = vec![];
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = Lab::new("panic");
        let n = lab.node("n");
        lab.connect(&n, "eth0", &["10.231.33.1/24"]);
        lab.spawn(&n, &["sleep", "60"], "sleep.log");
        names.push(n.ns.clone());
        names.push(lab.dir().display().to_string());
        panic!("boom");
    }));
    assert!(result.is_err());
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(!list.contains(&names[0]), "namespace left behind: {list}");
    assert!(
        !std::path::Path::new(&names[1]).exists(),
        "lab directory left behind"
    );
}
