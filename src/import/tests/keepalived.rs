//! keepalived: instances, tracking, sync groups, LVS.

use super::*;

fn keepalived(conf: &str, with_nginx: bool, extra: &[(&str, &str)]) -> (toml::Table, Report) {
    let mut files = Memory::new().with("/etc/keepalived/keepalived.conf", conf);
    for (p, t) in extra {
        files = files.with(*p, *t);
    }
    if with_nginx {
        files = files.with(
            "/etc/nginx/nginx.conf",
            "events {}\nhttp { server { listen 80; location / { return 204; } } }\n",
        );
    }
    let imported = import(
        &files,
        &Input {
            keepalived: Some("/etc/keepalived/keepalived.conf".into()),
            nginx: with_nginx.then(|| "/etc/nginx/nginx.conf".into()),
            ..Input::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let _: crate::config::file::ConfigFile =
        toml::from_str(&imported.toml).unwrap_or_else(|e| panic!("{e}\n{}", imported.toml));
    (toml::from_str(&imported.toml).unwrap(), imported.report)
}

#[test]
fn a_vrrp_instance_with_every_key() {
    let (t, r) = keepalived(
        "global_defs {\n router_id x\n vrrp_garp_master_delay 2\n}\n\
         vrrp_instance VI_1 {\n state MASTER\n interface eth0@if5\n virtual_router_id 51\n priority 150\n advert_int 0.5\n nopreempt\n preempt_delay 30\n\
         unicast_src_ip 10.0.0.1/24\n unicast_peer {\n 10.0.0.2\n }\n authentication {\n auth_type PASS\n auth_pass 123456789\n }\n\
         virtual_ipaddress {\n 10.0.0.100/24 dev eth0 label eth0:vip\n }\n virtual_ipaddress_excluded {\n fd00::1\n }\n\
         track_interface {\n eth0\n eth1 weight -30\n }\n notify_master \"/m.sh a\"\n notify /n.sh\n garp_master_repeat 3\n}\n",
        false,
        &[],
    );
    let i = &t["vrrp"]["instance"][0];
    assert_eq!(i["name"].as_str(), Some("VI_1"));
    assert_eq!(i["interface"].as_str(), Some("eth0"));
    assert_eq!(i["virtual_router_id"].as_integer(), Some(51));
    assert_eq!(i["version"].as_integer(), Some(2));
    assert_eq!(i["advert_interval"].as_str(), Some("1s"));
    assert!(has(&r, "advert_int 0.5", Status::Approximated));
    assert_eq!(i["preempt"].as_bool(), Some(false));
    assert_eq!(i["preempt_delay"].as_str(), Some("30s"));
    assert_eq!(i["unicast_src_ip"].as_str(), Some("10.0.0.1"));
    assert_eq!(i["auth_pass"].as_str(), Some("12345678"));
    assert_eq!(
        i["virtual_ipaddress"].as_array().unwrap(),
        &[
            toml::Value::from("10.0.0.100/24"),
            toml::Value::from("fd00::1")
        ]
    );
    assert!(has(
        &r,
        "10.0.0.100/24 dev eth0 label eth0:vip",
        Status::Approximated
    ));
    assert_eq!(i["garp"]["delay"].as_str(), Some("2s"));
    assert_eq!(i["garp"]["repeat"].as_integer(), Some(3));
    assert_eq!(
        i["notify"]["master"].as_str(),
        Some("/m.sh a; /n.sh INSTANCE VI_1 MASTER \"$VIGIL_PRIORITY\"")
    );
    assert_eq!(i["track"]["interfaces"]["eth1"].as_integer(), Some(-30));
    assert!(i["track"]["interfaces"].get("eth0").is_none());
    assert!(has(&r, "state MASTER", Status::NotNeeded));
}

#[test]
fn nginx_checks_become_proxy_tracking() {
    let conf = "vrrp_script chk { script \"killall -0 nginx\"\n interval 2\n weight -20 }\n\
                vrrp_script other { script \"/usr/local/bin/check_db.sh\"\n interval 5\n fall 2\n rise 3 }\n\
                vrrp_instance V { interface eth0\n virtual_router_id 1\n virtual_ipaddress {\n 10.0.0.9\n }\n track_script {\n chk\n other weight 10\n }\n}\n";
    let (t, r) = keepalived(conf, true, &[]);
    let track = &t["vrrp"]["instance"][0]["track"];
    assert_eq!(track["proxy"].as_integer(), Some(-20));
    let s = &track["scripts"][0];
    assert_eq!(s["run"].as_str(), Some("/usr/local/bin/check_db.sh"));
    assert_eq!(s["weight"].as_integer(), Some(10));
    assert_eq!(s["fall"].as_integer(), Some(2));
    assert!(has(&r, "vrrp_script chk", Status::NotNeeded));
    // Without an nginx config there is no proxy to track: kept as a script.
    let (t, r) = keepalived(conf, false, &[]);
    let track = &t["vrrp"]["instance"][0]["track"];
    assert!(track.get("proxy").is_none());
    assert_eq!(track["scripts"].as_array().unwrap().len(), 2);
    assert!(has(&r, "vrrp_script chk", Status::Note));
}

#[test]
fn vrrp3_sync_groups_processes_and_lvs() {
    let (t, r) = keepalived(
        "global_defs { vrrp_version 3 }\nvrrp_track_process p { process nginx\n weight 50 }\n\
         vrrp_sync_group G { group { A B } }\n\
         vrrp_instance A { interface eth0\n virtual_router_id 1\n advert_int 0.2\n authentication { auth_type PASS\n auth_pass x }\n virtual_ipaddress { 10.0.0.1 }\n track_process { p } }\n\
         vrrp_instance B { interface eth1\n virtual_router_id 2\n virtual_ipaddress { 10.0.1.1 }\n use_vmac }\n\
         virtual_server 10.0.0.1 80 { real_server 10.0.0.5 80 { } }\n",
        true,
        &[],
    );
    let a = &t["vrrp"]["instance"][0];
    assert_eq!(a["version"].as_integer(), Some(3));
    assert_eq!(a["advert_interval"].as_str(), Some("200ms"));
    assert!(a.get("auth_type").is_none());
    assert_eq!(a["track"]["proxy"].as_integer(), Some(50));
    assert_eq!(
        t["vrrp"]["sync_group"][0]["instances"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(has(&r, "use_vmac", Status::NotSupported));
    assert!(has(&r, "virtual_server 10.0.0.1 80", Status::NotSupported));
    assert!(has(&r, "authentication", Status::NotNeeded));
}
