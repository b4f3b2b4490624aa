//! keepalived statements → `[[vrrp.instance]]`, `[vrrp.instance.track]`
//! and `[[vrrp.sync_group]]` (docs/VRRP.md has the key-by-key mapping).

use std::collections::BTreeMap;
use std::time::Duration;

use super::super::files::Files;
use super::super::nginx::values::duration;
use super::super::out::{Block, Instance, Output};
use super::super::report::{Report, Status};
use super::super::toml_out::Value;
use super::nginx_check::{self, Verdict};
use super::parse::{Parsed, Stmt};

mod tracking;

/// A `vrrp_script` or `vrrp_track_process`.
struct Check<'a> {
    stmt: &'a Stmt,
    /// The command (a process check becomes `pidof NAME`).
    run: String,
    interval: Option<Duration>,
    timeout: Option<Duration>,
    weight: Option<i64>,
    reverse: bool,
    fall: Option<i64>,
    rise: Option<i64>,
    /// Why it is an nginx check, when it is one.
    nginx: Option<Verdict>,
}

/// Defaults from `global_defs`.
#[derive(Default)]
struct Globals {
    version: Option<i64>,
    garp: Vec<(String, Value, String)>,
}

struct Tr<'a> {
    report: &'a mut Report,
    files: &'a dyn Files,
    checks: BTreeMap<String, Check<'a>>,
    globals: Globals,
    /// The config has servers, so track.proxy can be used.
    has_proxy: bool,
}

/// Translates `parsed` into `out`'s `[vrrp]` part.
pub fn translate(
    parsed: &Parsed,
    files: &dyn Files,
    out: &mut Output,
    report: &mut Report,
    has_proxy: bool,
) {
    for (place, what) in &parsed.missing {
        report.add(
            place,
            what.clone(),
            Status::NotSupported,
            "the included file could not be read; what it holds is not translated",
            "import again with the file present",
        );
    }
    let mut tr = Tr {
        report,
        files,
        checks: BTreeMap::new(),
        globals: Globals::default(),
        has_proxy,
    };
    for s in &parsed.stmts {
        match s.key() {
            "global_defs" => tr.global_defs(s),
            "vrrp_script" | "vrrp_track_process" => tr.check(s),
            _ => {}
        }
    }
    let mut tracked: Vec<String> = Vec::new();
    for s in &parsed.stmts {
        match s.key() {
            "global_defs" | "vrrp_script" | "vrrp_track_process" => {}
            "vrrp_instance" => {
                if let Some(i) = tr.instance(s, &mut tracked) {
                    out.instances.push(i);
                }
            }
            "vrrp_sync_group" => {
                if let Some(g) = tr.sync_group(s) {
                    out.sync_groups.push(g);
                }
            }
            "virtual_server" | "virtual_server_group" => tr.report.add(
                &s.place,
                s.summary(),
                Status::NotSupported,
                "an LVS (IPVS) virtual server: vigil balances HTTP itself, it does not program the kernel's load balancer",
                "for HTTP, use [[server]] + [upstream] in vigil; for other protocols keep keepalived's LVS part (or ipvsadm)",
            ),
            k if k.starts_with('@') || k.starts_with('$') || k.starts_with('~') => tr.report.add(
                &s.place,
                s.summary(),
                Status::NotSupported,
                "keepalived's conditional and parameter lines (@id, $NAME=, ~SEQ) are not expanded",
                "write each node's vigil config with its own values",
            ),
            "static_ipaddress" | "static_routes" | "static_rules" | "virtual_routes" | "virtual_rules" => tr.report.add(
                &s.place,
                s.summary(),
                Status::NotSupported,
                "vigil moves addresses, not routes or rules",
                "configure them with the system's network configuration",
            ),
            _ => tr.report.add(
                &s.place,
                s.summary(),
                Status::Unknown,
                "not a keepalived section the importer knows; not translated",
                "",
            ),
        }
    }
    for (name, c) in &tr.checks {
        if !tracked.contains(name) {
            tr.report.add(
                &c.stmt.place,
                c.stmt.summary(),
                Status::NotNeeded,
                "no vrrp_instance tracks it",
                "",
            );
        }
    }
}

fn seconds(text: &str) -> Option<Duration> {
    let v: f64 = text.parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| Duration::from_micros((v * 1e6).round() as u64))
}

fn int(text: Option<&str>) -> Option<i64> {
    text?.parse().ok()
}

/// `addr/prefix` without the prefix (unicast addresses).
fn bare_addr(text: &str) -> &str {
    text.split('/').next().unwrap_or(text)
}

impl<'a> Tr<'a> {
    fn add(
        &mut self,
        s: &Stmt,
        status: Status,
        why: impl Into<String>,
        instead: impl Into<String>,
    ) {
        self.report.add(&s.place, s.summary(), status, why, instead);
    }

    fn global_defs(&mut self, g: &'a Stmt) {
        for s in g.children() {
            match s.key() {
                "router_id" | "enable_script_security" | "script_user" | "max_auto_priority"
                | "vrrp_skip_check_adv_addr" | "vrrp_check_unicast_src" | "vrrp_iptables"
                | "vrrp_ipsets" | "vrrp_no_swap" | "vrrp_rt_priority" | "vrrp_priority"
                | "checker_no_swap" | "checker_priority" | "dynamic_interfaces" | "process_names"
                | "vrrp_higher_prio_send_advert" | "vrrp_lower_prio_no_advert" => self.add(
                    s,
                    Status::NotNeeded,
                    "vigil has no counterpart to set (it runs scripts with sh -c as its own user, checks unicast sources and answers lower priorities itself)",
                    "",
                ),
                "notification_email" | "notification_email_from" | "smtp_server"
                | "smtp_connect_timeout" | "smtp_helo_name" | "smtp_alert" | "smtp_alert_vrrp" => self.add(
                    s,
                    Status::NotSupported,
                    "vigil sends no e-mail",
                    "send mail from a notify command, or alert on vigil's metrics (vigil_vrrp_state)",
                ),
                "vrrp_version" => match int(s.arg(0)) {
                    Some(v @ 2..=3) => self.globals.version = Some(v),
                    _ => self.add(s, Status::NotSupported, "not a VRRP version (2 or 3)", ""),
                },
                "vrrp_garp_master_delay" | "garp_master_delay" => self.garp(s, "delay"),
                "vrrp_garp_master_repeat" | "garp_master_repeat" => self.garp(s, "repeat"),
                "vrrp_garp_master_refresh" | "garp_master_refresh" => self.garp(s, "refresh"),
                "vrrp_garp_interval" => self.garp(s, "interval"),
                "vrrp_gna_interval" => self.add(
                    s,
                    Status::Approximated,
                    "vigil spaces IPv6 neighbour advertisements like gratuitous ARPs (garp.interval)",
                    "",
                ),
                "vrrp_garp_master_refresh_repeat" | "vrrp_garp_lower_prio_repeat" | "vrrp_garp_lower_prio_delay" => self.add(
                    s,
                    Status::NotSupported,
                    "vigil's gratuitous ARP bursts have one repeat count (garp.repeat)",
                    "",
                ),
                "vrrp_strict" => self.add(
                    s,
                    Status::NotNeeded,
                    "vigil always follows the RFC's receive checks; it has no strict mode to turn on (and allows unicast and v2 authentication, which strict mode refuses)",
                    "",
                ),
                "vrrp_mcast_group4" | "vrrp_mcast_group6" => self.add(
                    s,
                    Status::NotSupported,
                    "vigil sends adverts to the standard groups (224.0.0.18, ff02::12) or to unicast peers",
                    "use unicast_peer",
                ),
                k if k.starts_with("lvs_") || k.starts_with("checker_") || k.starts_with("snmp") || k.starts_with("enable_snmp") || k.starts_with("enable_traps") || k.starts_with("bfd_") => self.add(
                    s,
                    Status::NotSupported,
                    "an LVS, checker, SNMP or BFD setting; vigil has none of these parts",
                    "",
                ),
                _ => self.add(s, Status::Unknown, "not a global_defs keyword the importer knows", ""),
            }
        }
    }

    fn garp(&mut self, s: &Stmt, key: &str) {
        let value = match key {
            "repeat" => int(s.arg(0)).map(Value::Int),
            _ => s.arg(0).and_then(seconds).map(|d| Value::str(duration(d))),
        };
        match value {
            Some(v) => self
                .globals
                .garp
                .push((key.to_owned(), v, s.place.to_string())),
            None => self.add(s, Status::NotSupported, "not a number", ""),
        }
    }

    fn check(&mut self, s: &'a Stmt) {
        let Some(name) = s.arg(0) else {
            self.add(s, Status::NotSupported, "a check without a name", "");
            return;
        };
        let process = s.key() == "vrrp_track_process";
        let mut c = Check {
            stmt: s,
            run: String::new(),
            interval: None,
            timeout: None,
            weight: None,
            reverse: false,
            fall: None,
            rise: None,
            nginx: None,
        };
        for k in s.children() {
            match k.key() {
                "script" => c.run = k.words[1..].join(" "),
                "process" => {
                    let p = k.arg(0).unwrap_or_default();
                    c.run = format!("pidof {p}");
                    if k.words.len() > 2 {
                        self.add(
                            k,
                            Status::Approximated,
                            "process parameters are not matched; any process of that name counts",
                            "",
                        );
                    }
                }
                "interval" => c.interval = k.arg(0).and_then(seconds),
                "timeout" => c.timeout = k.arg(0).and_then(seconds),
                "delay" => c.interval = c.interval.or(k.arg(0).and_then(seconds)),
                "weight" => {
                    c.weight = int(k.arg(0));
                    c.reverse = k.arg(1) == Some("reverse");
                }
                "fall" => c.fall = int(k.arg(0)),
                "rise" => c.rise = int(k.arg(0)),
                "quorum" if k.arg(0) == Some("1") => {}
                "user" => self.add(
                    k,
                    Status::NotSupported,
                    "vigil runs scripts as its own user",
                    "use sudo -u in the command",
                ),
                "init_fail" => self.add(
                    k,
                    Status::NotSupported,
                    "vigil starts a script as succeeding",
                    "",
                ),
                _ => self.add(
                    k,
                    Status::NotSupported,
                    "not a setting vigil's script tracking has",
                    "",
                ),
            }
        }
        c.nginx = if process {
            let p = c.run.trim_start_matches("pidof ").to_owned();
            (p == "nginx").then(|| Verdict::Command(format!("it tracks the process {p}")))
        } else {
            nginx_check::judge(&c.run, self.files)
        };
        if c.run.is_empty() {
            self.add(s, Status::NotSupported, "no script or process to run", "");
            return;
        }
        self.checks.insert(name.to_owned(), c);
    }

    fn instance(&mut self, s: &'a Stmt, tracked: &mut Vec<String>) -> Option<Instance> {
        let name = s.arg(0).unwrap_or("VI").to_owned();
        let mut b = Block::new(format!("vrrp_instance {name}, {}", s.place));
        b.set("name", Value::str(name.clone()), "");
        let mut track = Block::new(format!("tracking of {name}"));
        let mut interfaces: Vec<(String, Value)> = Vec::new();
        let mut scripts: Vec<Value> = Vec::new();
        let mut proxy: Option<(Value, String)> = None;
        let mut vips: Vec<String> = Vec::new();
        let mut excluded: Vec<String> = Vec::new();
        let mut notify: Vec<(String, String)> = Vec::new();
        let mut generic_notify: Option<String> = None;
        let mut garp = self.globals.garp.clone();
        let mut auth: Option<(String, String, &Stmt)> = None;
        let mut version = self.globals.version;
        let mut interface: Option<String> = None;
        let mut advert: Option<(f64, &Stmt)> = None;
        for k in s.children() {
            match k.key() {
                "state" => self.add(k, Status::NotNeeded, "the priority decides who is master; every vigil starts as backup (an owner, priority 255, as master)", ""),
                "interface" => {
                    let i = k.arg(0).unwrap_or_default();
                    let clean = i.split('@').next().unwrap_or(i).to_owned();
                    if clean != i {
                        self.add(k, Status::Note, format!("{i} is how `ip link` shows {clean} (the @ifN names its peer); the interface is {clean}"), "");
                    }
                    interface = Some(clean.clone());
                    b.set("interface", Value::str(clean), k.place.to_string());
                }
                "virtual_router_id" => {
                    if let Some(n) = int(k.arg(0)) {
                        b.set("virtual_router_id", Value::Int(n), "");
                    }
                }
                "priority" => {
                    if let Some(n) = int(k.arg(0)) {
                        b.set("priority", Value::Int(n), "");
                    }
                }
                "advert_int" => match k.arg(0).and_then(|a| a.parse::<f64>().ok()) {
                    Some(v) if v > 0.0 => advert = Some((v, k)),
                    _ => self.add(k, Status::NotSupported, "not an interval in seconds", ""),
                },
                "version" => match int(k.arg(0)) {
                    Some(v @ 2..=3) => version = Some(v),
                    _ => self.add(k, Status::NotSupported, "not a VRRP version (2 or 3)", ""),
                },
                "nopreempt" => b.set("preempt", Value::Bool(false), "nopreempt"),
                "preempt" => {}
                "preempt_delay" => {
                    if let Some(d) = k.arg(0).and_then(seconds) {
                        b.set("preempt_delay", Value::str(duration(d)), "");
                    }
                }
                "virtual_ipaddress" | "virtual_ipaddress_excluded" => {
                    for line in k.children() {
                        let addr = line.key().to_owned();
                        let mut rest = line.words[1..].iter();
                        while let Some(w) = rest.next() {
                            match w.as_str() {
                                "dev" => {
                                    let dev = rest.next().cloned().unwrap_or_default();
                                    if interface.as_deref().is_some_and(|i| i != dev) {
                                        self.add(line, Status::Approximated, format!("vigil puts every VIP on the instance's interface, not on {dev}"), "make a vrrp instance on that interface");
                                    }
                                }
                                "label" => {
                                    rest.next();
                                    self.add(line, Status::Approximated, "vigil labels its VIPs INTERFACE:vigil", "");
                                }
                                "brd" | "broadcast" | "scope" | "metric" | "preferred_lft" => {
                                    rest.next();
                                    self.add(line, Status::NotNeeded, "vigil adds VIPs as host addresses (/32, /128) or with the prefix given", "");
                                }
                                "no_track" | "home" | "nodad" => {}
                                other => self.add(line, Status::NotSupported, format!("{other}: not an address option vigil has"), ""),
                            }
                        }
                        if k.key() == "virtual_ipaddress" {
                            vips.push(addr);
                        } else {
                            excluded.push(addr);
                        }
                    }
                }
                "unicast_src_ip" => {
                    let a = k.arg(0).unwrap_or_default();
                    if a.contains('/') {
                        self.add(k, Status::Note, "the /prefix is dropped: an advert's source is an address", "");
                    }
                    b.set("unicast_src_ip", Value::str(bare_addr(a)), "");
                }
                "unicast_peer" => {
                    let peers: Vec<String> = k.children().iter().map(|p| bare_addr(p.key()).to_owned()).collect();
                    for p in k.children() {
                        if p.words.len() > 1 {
                            self.add(p, Status::NotSupported, "vigil checks the TTL of unicast adverts itself (255)", "");
                        }
                    }
                    b.set("unicast_peer", Value::strs(&peers), "");
                    // keepalived accepts unicast adverts whatever their TTL.
                    b.set(
                        "unicast_ttl_check",
                        Value::Bool(false),
                        "keepalived accepts any TTL from unicast peers",
                    );
                }
                "authentication" => {
                    let mut t = None;
                    let mut p = None;
                    for a in k.children() {
                        match a.key() {
                            "auth_type" => t = a.arg(0).map(str::to_owned),
                            "auth_pass" => p = a.arg(0).map(str::to_owned),
                            _ => self.add(a, Status::Unknown, "not an authentication keyword", ""),
                        }
                    }
                    match (t.as_deref().map(str::to_ascii_uppercase).as_deref(), p) {
                        (Some("PASS"), Some(pass)) => auth = Some(("pass".into(), pass, k)),
                        (Some("AH"), _) => self.add(k, Status::NotSupported, "IPsec AH authentication is not supported (RFC 5798 removed authentication)", "use PASS with version 2, or none"),
                        (Some(other), _) => self.add(k, Status::NotNeeded, format!("{other} is not a keepalived auth type (PASS, AH): keepalived runs without authentication, and so does vigil"), ""),
                        (None, _) => self.add(k, Status::NotNeeded, "no auth_type: no authentication", ""),
                    }
                }
                "track_script" | "track_process" => {
                    for t in k.children() {
                        let n = t.key().to_owned();
                        tracked.push(n.clone());
                        let weight = if t.arg(0) == Some("weight") { int(t.arg(1)) } else { None };
                        let reverse = t.arg(2) == Some("reverse");
                        self.track(t, &n, weight, reverse, &mut scripts, &mut proxy);
                    }
                }
                "track_interface" => {
                    for t in k.children() {
                        let effect = match (t.arg(0), int(t.arg(1))) {
                            (Some("weight"), Some(0)) | (None, _) => Value::str("fault"),
                            (Some("weight"), Some(w)) => Value::Int(w),
                            _ => Value::str("fault"),
                        };
                        if t.arg(2) == Some("reverse") {
                            self.add(t, Status::NotSupported, "reverse weights are not supported", "");
                        }
                        if interface.as_deref() == Some(t.key()) && effect == Value::str("fault") {
                            self.add(t, Status::NotNeeded, "vigil always tracks the instance's own interface (link down = fault)", "");
                            continue;
                        }
                        interfaces.push((t.key().to_owned(), effect));
                    }
                }
                "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" => {
                    let state = k.key().trim_start_matches("notify_").to_owned();
                    notify.push((state, k.words[1..].join(" ")));
                }
                "notify" => generic_notify = Some(k.words[1..].join(" ")),
                "garp_master_delay" => self.garp_key(k, "delay", &mut garp),
                "garp_master_repeat" => self.garp_key(k, "repeat", &mut garp),
                "garp_master_refresh" => self.garp_key(k, "refresh", &mut garp),
                "garp_interval" => self.garp_key(k, "interval", &mut garp),
                "garp_master_refresh_repeat" | "garp_lower_prio_repeat" | "garp_lower_prio_delay" | "gna_interval" => self.add(
                    k,
                    Status::Approximated,
                    "vigil's gratuitous ARP bursts have one repeat count and interval (garp.repeat, garp.interval)",
                    "",
                ),
                "accept" => self.add(k, Status::NotNeeded, "vigil always accepts traffic for its VIPs (RFC 5798 Accept_Mode on)", ""),
                "no_accept" => self.add(k, Status::NotSupported, "vigil always accepts traffic for its VIPs", ""),
                "use_vmac" | "vmac_xmit_base" => self.add(k, Status::NotSupported, "vigil uses the interface's MAC and gratuitous ARP, not a virtual MAC", "nothing to do unless your switches require the VRRP MAC"),
                "smtp_alert" => self.add(k, Status::NotSupported, "vigil sends no e-mail", "send mail from a notify command"),
                "dont_track_primary" => self.add(k, Status::NotSupported, "vigil always tracks the instance's own interface", ""),
                "track_file" | "track_bfd" => self.add(k, Status::NotSupported, "vigil tracks interfaces, scripts, its proxy and upstream pools", "track a script that tests the file"),
                "native_ipv6" | "check_unicast_src" | "higher_prio_send_advert" | "kernel_rx_buf_size" | "debug" => {
                    self.add(k, Status::NotNeeded, "vigil behaves this way (or needs no setting)", "")
                }
                "mcast_src_ip" => self.add(k, Status::NotSupported, "vigil sends multicast adverts from the interface's primary address", "use unicast_src_ip with unicast_peer"),
                "strict_mode" => self.add(k, Status::NotNeeded, "vigil always follows the RFC's receive checks", ""),
                "virtual_routes" | "virtual_rules" => self.add(k, Status::NotSupported, "vigil moves addresses, not routes or rules", "add the routes from a notify command"),
                "notify_master_rx_lower_pri" | "notify_deleted" => self.add(k, Status::NotSupported, "vigil runs notify commands on master, backup, fault and stop", ""),
                _ => self.add(k, Status::Unknown, "not a vrrp_instance keyword the importer knows", ""),
            }
        }
        // Version: keepalived's default is 2.
        let version = version.unwrap_or(2);
        b.set(
            "version",
            Value::Int(version),
            if self.globals.version.is_some() {
                "vrrp_version"
            } else {
                ""
            },
        );
        if let Some((secs, k)) = advert {
            let d = if version == 2 && secs.fract() != 0.0 {
                let rounded = secs.round().max(1.0);
                self.add(
                    k,
                    Status::Approximated,
                    format!(
                        "VRRPv2 intervals are whole seconds: {rounded}s (keepalived rounds too)"
                    ),
                    "use version 3 for sub-second adverts",
                );
                Duration::from_secs(rounded as u64)
            } else {
                Duration::from_micros((secs * 1e6).round() as u64)
            };
            b.set("advert_interval", Value::str(duration(d)), "");
        } else {
            b.set("advert_interval", Value::str("1s"), "keepalived's default");
        }
        if !excluded.is_empty() {
            let first_v4 = vips.first().is_some_and(|v| !v.contains(':'));
            let same_family = excluded.iter().any(|e| e.contains(':') != first_v4);
            if same_family {
                self.report.add(
                    &s.place,
                    "virtual_ipaddress_excluded",
                    Status::Approximated,
                    "vigil advertises every VIP of the advertised family; keepalived leaves the excluded ones out of its adverts (a keepalived v2 peer then sees a different address list)",
                    "",
                );
            }
            vips.extend(excluded);
        }
        if vips.is_empty() {
            self.report.add(
                &s.place,
                s.summary(),
                Status::NotSupported,
                "no virtual_ipaddress: the instance is left out",
                "",
            );
            return None;
        }
        b.set("virtual_ipaddress", Value::strs(&vips), "");
        if let Some((t, pass, k)) = auth {
            if version == 3 {
                self.add(
                    k,
                    Status::NotNeeded,
                    "VRRPv3 has no authentication (keepalived ignores it with version 3 too)",
                    "",
                );
            } else {
                let mut pass = pass;
                if pass.len() > 8 {
                    self.add(k, Status::Approximated, "keepalived uses the first 8 characters of auth_pass; so does this translation", "");
                    pass = pass.chars().take(8).collect();
                }
                b.set("auth_type", Value::str(t), "");
                b.set("auth_pass", Value::str(pass), "");
            }
        }
        if !garp.is_empty() {
            let mut fields: Vec<(String, Value)> = Vec::new();
            for (k, v, _) in garp {
                fields.retain(|(x, _)| *x != k);
                fields.push((k, v));
            }
            b.set("garp", Value::Inline(fields), "");
        }
        if notify.is_empty() && generic_notify.is_none() {
        } else {
            let mut fields: Vec<(String, Value)> = Vec::new();
            for state in ["master", "backup", "fault", "stop"] {
                let mut cmds: Vec<String> = notify
                    .iter()
                    .filter(|(s, _)| s == state)
                    .map(|(_, c)| c.clone())
                    .collect();
                if let Some(g) = &generic_notify {
                    // keepalived calls `notify` with: INSTANCE name STATE priority.
                    cmds.push(format!(
                        "{g} INSTANCE {name} {} \"$VIGIL_PRIORITY\"",
                        state.to_ascii_uppercase()
                    ));
                }
                if !cmds.is_empty() {
                    fields.push((state.to_owned(), Value::str(cmds.join("; "))));
                }
            }
            b.set("notify", Value::Inline(fields), "notify commands run with sh -c; VIGIL_INSTANCE, VIGIL_STATE, VIGIL_PRIORITY are set");
        }
        if !interfaces.is_empty() {
            track.set("interfaces", Value::Inline(interfaces), "track_interface");
        }
        if !scripts.is_empty() {
            track.set("scripts", Value::Array(scripts), "track_script");
        }
        if let Some((v, note)) = proxy {
            track.set("proxy", v, note);
        }
        Some(Instance {
            block: b,
            track: (!track.keys.is_empty()).then_some(track),
        })
    }

    fn garp_key(&mut self, s: &Stmt, key: &str, garp: &mut Vec<(String, Value, String)>) {
        let value = match key {
            "repeat" => int(s.arg(0)).map(Value::Int),
            _ => s.arg(0).and_then(seconds).map(|d| Value::str(duration(d))),
        };
        match value {
            Some(v) => garp.push((key.to_owned(), v, s.place.to_string())),
            None => self.add(s, Status::NotSupported, "not a number", ""),
        }
    }
}
