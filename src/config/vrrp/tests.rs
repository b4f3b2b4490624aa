use std::net::Ipv4Addr;

use serde::Deserialize;

use super::*;
use crate::config::error::Problems;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Root {
    vrrp: VrrpFile,
}

fn load(text: &str) -> Result<VrrpConfig, Vec<(String, String)>> {
    let root: Root = toml::from_str(text).expect("parses");
    let mut problems = Problems::new();
    let c = validate(&root.vrrp, "vrrp", &mut problems);
    match problems.finish(std::path::Path::new("t.toml"), text) {
        Ok(()) => Ok(c.expect("no problems means a config")),
        Err(e) => {
            assert!(c.is_none(), "problems but still a config");
            Err(e
                .problems()
                .iter()
                .map(|p| (p.key.clone(), p.reason.clone()))
                .collect())
        }
    }
}

const FULL: &str = r#"
[[vrrp.instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
priority = 100
advert_interval = "1s"
version = 3
virtual_ipaddress = ["192.168.56.100/24", "fd00::100/64", "192.168.56.101"]
preempt = true
preempt_delay = "0s"
unicast_peer = []
garp = { delay = "0s", repeat = 5, interval = "100ms", refresh = "0s" }
notify = { master = "echo m", backup = "echo b", fault = "echo f" }

[vrrp.instance.track]
interfaces = { eth1 = "fault", eth2 = -30 }
scripts = [ { run = "true", interval = "2s", timeout = "1s", weight = -20, fall = 2, rise = 2 } ]
proxy = true
probe_interval = "200ms"
upstreams = { app = -50 }

[[vrrp.instance]]
name = "VI_2"
interface = "eth0"
virtual_router_id = 52
version = 2
advert_interval = "3s"
auth_type = "pass"
auth_pass = "secret12"
virtual_ipaddress = ["10.0.0.1"]
unicast_peer = ["10.0.0.2", "10.0.0.3"]
unicast_src_ip = "10.0.0.9"

[[vrrp.sync_group]]
name = "G"
instances = ["VI_1", "VI_2"]
"#;

#[test]
fn full_example_validates() {
    let c = load(FULL).unwrap();
    let a = &c.instances[0];
    assert_eq!(a.name, "VI_1");
    assert_eq!(a.vrid, 51);
    assert_eq!(a.version, Version::V3);
    assert_eq!(a.advert_interval, Centiseconds::ONE_SECOND);
    assert_eq!(
        a.vips,
        vec![
            Vip {
                addr: "192.168.56.100".parse().unwrap(),
                prefix: 24
            },
            Vip {
                addr: "192.168.56.101".parse().unwrap(),
                prefix: 32
            },
        ]
    );
    assert_eq!(
        a.excluded_vips,
        vec![Vip {
            addr: "fd00::100".parse().unwrap(),
            prefix: 64
        }]
    );
    assert!(!a.is_ipv6());
    assert_eq!(
        a.track.interfaces,
        vec![
            ("eth1".into(), TrackEffect::Fault),
            ("eth2".into(), TrackEffect::Weight(-30))
        ]
    );
    assert_eq!(a.track.scripts[0].effect, TrackEffect::Weight(-20));
    assert_eq!(a.track.scripts[0].fall, 2);
    assert_eq!(a.track.proxy, Some(TrackEffect::Fault));
    assert_eq!(a.track.probe_timeout, a.track.probe_interval * 2);
    assert_eq!(
        a.track.upstreams,
        vec![("app".into(), TrackEffect::Weight(-50))]
    );
    assert_eq!(a.notify.master.as_deref(), Some("echo m"));
    let b = &c.instances[1];
    assert_eq!(b.version, Version::V2);
    assert_eq!(b.advert_interval.get(), 300);
    assert_eq!(b.auth, Auth::Password(*b"secret12"));
    assert_eq!(b.unicast_peers.len(), 2);
    assert_eq!(
        b.unicast_src_ip,
        Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)))
    );
    assert_eq!(c.group_of("VI_2").map(|g| g.name.as_str()), Some("G"));
}

#[test]
fn defaults() {
    let c = load(
        r#"
[[vrrp.instance]]
name = "v"
interface = "eth0"
virtual_router_id = 1
virtual_ipaddress = ["fd00::1"]
"#,
    )
    .unwrap();
    let i = &c.instances[0];
    assert_eq!(i.priority, 100);
    assert_eq!(i.version, Version::V3);
    assert!(i.preempt);
    assert!(i.is_ipv6());
    assert_eq!(i.vips[0].prefix, 128);
    assert_eq!(i.garp, GarpConfig::default());
    assert_eq!(i.checksum_form, ChecksumForm::PseudoHeader);
}

#[test]
fn every_problem_is_reported_with_its_key_path() {
    let errs = load(
        r#"
[[vrrp.instance]]
name = "a"
interface = "this-name-is-too-long"
virtual_router_id = 0
priority = 256
version = 4
advert_interval = "15ms"
virtual_ipaddress = ["10.0.0.1/33", "224.0.0.1", "nope"]
unicast_peer = ["fd00::1", "x"]
preempt = false
preempt_delay = "5s"
garp = { repeat = 1000 }
auth_type = "pass"

[vrrp.instance.track]
interfaces = { eth1 = "boom", eth2 = 999 }
scripts = [ { interval = "1s" }, { run = "x", fall = 0 } ]

[[vrrp.instance]]
name = "a"
interface = "eth0"
virtual_router_id = 5
version = 2
advert_interval = "1.5s"
virtual_ipaddress = ["10.0.0.7"]
auth_type = "pass"
auth_pass = "far-too-long"

[[vrrp.instance]]
interface = "eth0"

[[vrrp.sync_group]]
name = "g"
instances = ["zzz"]
"#,
    )
    .unwrap_err();
    let keys: Vec<&str> = errs.iter().map(|(k, _)| k.as_str()).collect();
    for expected in [
        "vrrp.instance[0].interface",
        "vrrp.instance[0].virtual_router_id",
        "vrrp.instance[0].priority",
        "vrrp.instance[0].version",
        "vrrp.instance[0].virtual_ipaddress[0]",
        "vrrp.instance[0].virtual_ipaddress[1]",
        "vrrp.instance[0].virtual_ipaddress[2]",
        "vrrp.instance[0].unicast_peer[0]",
        "vrrp.instance[0].unicast_peer[1]",
        "vrrp.instance[0].preempt_delay",
        "vrrp.instance[0].garp.repeat",
        "vrrp.instance[0].auth_type",
        "vrrp.instance[0].track.interfaces.eth1",
        "vrrp.instance[0].track.interfaces.eth2",
        "vrrp.instance[0].track.scripts[0]",
        "vrrp.instance[0].track.scripts[1].fall",
        "vrrp.instance[1].name",
        "vrrp.instance[1].advert_interval",
        "vrrp.instance[1].auth_pass",
        "vrrp.instance[2]",
        "vrrp.sync_group[0].instances[0]",
    ] {
        assert!(keys.contains(&expected), "missing {expected} in {errs:#?}");
    }
    let reason = |key: &str| {
        errs.iter()
            .find(|(k, _)| k == key)
            .map(|(_, r)| r.clone())
            .unwrap()
    };
    assert!(reason("vrrp.instance[0].priority").contains("1..=254"));
    assert!(reason("vrrp.instance[1].advert_interval").contains("whole seconds"));
    assert!(reason("vrrp.instance[0].auth_type").contains("VRRPv3 has no authentication"));
}

#[test]
fn v3_interval_bounds_and_resolution() {
    let with = |interval: &str| {
        load(&format!(
            "[[vrrp.instance]]\nname = \"v\"\ninterface = \"eth0\"\nvirtual_router_id = 1\nvirtual_ipaddress = [\"10.0.0.1\"]\nadvert_interval = \"{interval}\"\n"
        ))
    };
    assert_eq!(with("10ms").unwrap().instances[0].advert_interval.get(), 1);
    assert_eq!(
        with("40.95s").unwrap().instances[0].advert_interval.get(),
        4095
    );
    assert!(with("41s").is_err());
    assert!(with("5ms").is_err());
    assert!(with("105ms").is_err());
}

#[test]
fn duplicate_vrid_and_vip_across_instances() {
    let errs = load(
        r#"
[[vrrp.instance]]
name = "a"
interface = "eth0"
virtual_router_id = 5
virtual_ipaddress = ["10.0.0.7"]

[[vrrp.instance]]
name = "b"
interface = "eth0"
virtual_router_id = 5
virtual_ipaddress = ["10.0.0.7"]
"#,
    )
    .unwrap_err();
    assert!(
        errs.iter()
            .any(|(k, r)| k == "vrrp.instance[1].virtual_router_id" && r.contains("already used"))
    );
    assert!(
        errs.iter()
            .any(|(k, r)| k == "vrrp.instance[1].virtual_ipaddress" && r.contains("also a VIP"))
    );
}

#[test]
fn unknown_keys_are_rejected() {
    let err = toml::from_str::<Root>("[[vrrp.instance]]\nname = \"a\"\nstate = \"MASTER\"\n")
        .err()
        .unwrap();
    assert!(err.to_string().contains("unknown field"), "{err}");
}

#[test]
fn unicast_ttl_check_is_on_by_default_and_only_for_unicast() {
    let with = |extra: &str| {
        load(&format!(
            "[[vrrp.instance]]\nname = \"v\"\ninterface = \"eth0\"\nvirtual_router_id = 1\nvirtual_ipaddress = [\"10.0.0.1\"]\n{extra}\n"
        ))
    };
    assert!(with("").unwrap().instances[0].unicast_ttl_check);
    let relaxed = with("unicast_peer = [\"10.0.0.2\"]\nunicast_ttl_check = false").unwrap();
    assert!(!relaxed.instances[0].unicast_ttl_check);
    let err = with("unicast_ttl_check = false").unwrap_err();
    assert_eq!(err[0].0, "vrrp.instance[0].unicast_ttl_check", "{err:?}");
    assert!(err[0].1.contains("unicast_peer"), "{err:?}");
}

#[test]
fn death_probe_is_off_by_default_and_takes_a_switch_or_a_table() {
    let with = |extra: &str| {
        load(&format!(
            "[[vrrp.instance]]\nname = \"v\"\ninterface = \"eth0\"\nvirtual_router_id = 1\nvirtual_ipaddress = [\"10.0.0.1\"]\n{extra}\n"
        ))
    };
    let probe = |extra: &str| with(extra).unwrap().instances[0].death_probe;
    assert_eq!(probe(""), None);
    assert_eq!(probe("death_probe = false"), None);
    let default = DeathProbe {
        port: DeathProbe::DEFAULT_PORT,
    };
    assert_eq!(probe("death_probe = true"), Some(default));
    assert_eq!(probe("death_probe = {}"), Some(default));
    assert_eq!(
        probe("death_probe = { port = 7000 }"),
        Some(DeathProbe { port: 7000 })
    );
    for bad in [
        "death_probe = { port = 0 }",
        "death_probe = { port = 70000 }",
    ] {
        let err = with(bad).unwrap_err();
        assert_eq!(
            err[0].0, "vrrp.instance[0].death_probe.port",
            "{bad}: {err:?}"
        );
    }
    let unknown = "[[vrrp.instance]]\nname = \"a\"\ndeath_probe = { interval = \"5ms\" }\n";
    assert!(toml::from_str::<Root>(unknown).is_err());
}
