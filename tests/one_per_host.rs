//! One host, one vigil (issue 14): a second `vigil run` that claims a
//! running vigil's virtual router or admin address exits 1, names the
//! holder, and disturbs nothing: the first keeps its VIP, and `vigil
//! reload` / `vigil status` still reach it.
//!
//! Needs root; prints a skip message otherwise. Subnet 10.231.45.0/24,
//! inside the namespaces only.

mod support;

use std::time::Duration;

use support::netns::{Lab, skip_unless_root};

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");

fn config(vrid: u8, admin_port: u16, listen_port: u16) -> String {
    format!(
        r#"
[log]
access_log = "off"

[http]
workers = 1

[admin]
listen = "127.0.0.1:{admin_port}"

[[server]]
listen = ["0.0.0.0:{listen_port}"]
  [[server.location]]
  path = "/"
  return = {{ status = 200, body = "first\n" }}

[[vrrp.instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = {vrid}
priority = 150
advert_interval = "100ms"
virtual_ipaddress = ["10.231.45.{vrid}/24"]
"#
    )
}

#[test]
fn a_second_vigil_exits_naming_the_first() {
    if skip_unless_root("a_second_vigil_exits_naming_the_first") {
        return;
    }
    let lab = Lab::new("onehost");
    let node = lab.node("a");
    lab.connect(&node, "eth0", &["10.231.45.1/24"]);
    let first_config = lab.write("first.toml", &config(45, 9090, 80));
    let first = lab.spawn(
        &node,
        &[VIGIL, "run", "-c", first_config.to_str().unwrap()],
        "first.log",
    );
    lab.wait_until(Duration::from_secs(10), "first is master", || {
        lab.has_addr(&node, "10.231.45.45")
    });

    // The same config; the same virtual router with another admin port
    // and listener; another virtual router on the same admin port.
    let cases = [
        ("same", config(45, 9090, 80), format!("pid {first}")),
        (
            "same-router",
            config(45, 9191, 8080),
            format!("pid {first}"),
        ),
        (
            "same-admin",
            config(46, 9090, 8081),
            "127.0.0.1:9090".to_owned(),
        ),
    ];
    for (name, text, names) in cases {
        let path = lab.write(&format!("{name}.toml"), &text);
        let out = lab.exec(&node, &[VIGIL, "run", "-c", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(&names), "{name}: {stderr}");
        if name != "same-admin" {
            assert!(stderr.contains("VRID 45"), "{name}: {stderr}");
        }
        // Nothing of the first was touched.
        assert!(lab.has_addr(&node, "10.231.45.45"), "{name}: VIP kept");
        assert!(!lab.has_addr(&node, "10.231.45.46"), "{name}");
    }
    // The admin API still reaches the first (and only the first).
    let out = lab.exec(
        &node,
        &[VIGIL, "reload", "-c", first_config.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = lab.exec(
        &node,
        &[VIGIL, "status", "--admin", "127.0.0.1:9090", "--json"],
    );
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(doc["generation"], 2);
    assert_eq!(doc["vrrp"][0]["state"], "master");
    // The first's log shows no second speaker (no other master heard).
    let log = lab.read("first.log");
    assert!(
        !log.contains("preempted") && !log.contains("-> Backup"),
        "{log}"
    );
    lab.signal(first, libc::SIGTERM);
    assert_eq!(lab.wait_exit(first, Duration::from_secs(10)), Some(0));
    // Released: the next vigil starts.
    let second = lab.spawn(
        &node,
        &[VIGIL, "run", "-c", first_config.to_str().unwrap()],
        "second.log",
    );
    lab.wait_until(Duration::from_secs(10), "second is master", || {
        lab.has_addr(&node, "10.231.45.45")
    });
    lab.signal(second, libc::SIGTERM);
    assert_eq!(lab.wait_exit(second, Duration::from_secs(10)), Some(0));
}
