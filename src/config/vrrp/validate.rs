//! `[vrrp]` file → [`VrrpConfig`]: per-instance checks, then the checks
//! across instances (names, router ids, VIPs) and sync groups.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use super::*;
use crate::config::error::{Problems, index, join};
use crate::config::units::ConfigDuration;

/// Validates `[vrrp]` found at key path `key`, recording problems.
/// Returns the validated config only when there were none.
pub fn validate(file: &VrrpFile, key: &str, problems: &mut Problems) -> Option<VrrpConfig> {
    let mut v = Validator {
        problems,
        bad: false,
    };
    let mut instances = Vec::new();
    let list = join(key, "instance");
    for (i, inst) in file.instance.iter().enumerate() {
        if let Some(c) = v.instance(inst, &index(&list, i)) {
            instances.push(c);
        }
    }
    v.cross_instance(file, &instances, &list);
    let sync_groups = v.sync_groups(file, &join(key, "sync_group"));
    if v.bad {
        return None;
    }
    Some(VrrpConfig {
        instances,
        sync_groups,
    })
}

pub(super) struct Validator<'a> {
    problems: &'a mut Problems,
    bad: bool,
}

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
const IFNAMSIZ_MAX: usize = 15;

impl Validator<'_> {
    pub(super) fn add(&mut self, key: &str, reason: impl Into<String>) {
        self.bad = true;
        self.problems.add(key, reason);
    }

    fn instance(&mut self, f: &InstanceFile, key: &str) -> Option<InstanceConfig> {
        let before = self.bad;
        self.bad = false;
        let k = |name: &str| join(key, name);

        let name = match &f.name {
            Some(n) if !n.trim().is_empty() => n.clone(),
            Some(_) => {
                self.add(&k("name"), "must not be empty");
                String::new()
            }
            None => {
                self.add(key, "missing `name` (e.g. name = \"VI_1\")");
                String::new()
            }
        };
        let interface = match &f.interface {
            Some(i) => {
                if let Err(why) = check_interface_name(i) {
                    self.add(&k("interface"), why);
                }
                i.clone()
            }
            None => {
                self.add(key, "missing `interface` (e.g. interface = \"eth0\")");
                String::new()
            }
        };
        let vrid = match f.virtual_router_id {
            Some(id @ 1..=255) => id as u8,
            Some(id) => {
                self.add(
                    &k("virtual_router_id"),
                    format!("{id} is out of range; use 1..=255"),
                );
                0
            }
            None => {
                self.add(
                    key,
                    "missing `virtual_router_id` (1..=255, the same on every router of this VIP)",
                );
                0
            }
        };
        let priority = match f.priority.unwrap_or(100) {
            p @ 1..=255 => p as u8,
            p => {
                self.add(
                    &k("priority"),
                    format!("{p} is out of range; use 1..=254, or 255 for the address owner (0 is reserved for resigning)"),
                );
                100
            }
        };
        let version = match f.version.unwrap_or(3) {
            3 => Version::V3,
            2 => Version::V2,
            n => {
                self.add(&k("version"), format!("{n} is not a VRRP version; use 3 (RFC 5798) or 2 (RFC 3768, keepalived's default)"));
                Version::V3
            }
        };
        let advert_interval =
            self.advert_interval(f.advert_interval, version, &k("advert_interval"));

        // Addresses: advertised family = the first VIP's.
        let mut vips = Vec::new();
        let mut excluded_vips = Vec::new();
        match &f.virtual_ipaddress {
            None => self.add(
                key,
                "missing `virtual_ipaddress` (e.g. [\"192.168.56.100\"])",
            ),
            Some(list) if list.is_empty() => {
                self.add(&k("virtual_ipaddress"), "must list at least one address")
            }
            Some(list) => {
                let mut seen = BTreeSet::new();
                for (i, text) in list.iter().enumerate() {
                    let at = index(&k("virtual_ipaddress"), i);
                    match parse_vip(text) {
                        Ok(vip) => {
                            if !seen.insert(vip.addr) {
                                self.add(&at, format!("{} is listed twice", vip.addr));
                            }
                            let first_is_v6 = vips.first().is_some_and(|v: &Vip| v.addr.is_ipv6());
                            if vips.is_empty() || first_is_v6 == vip.addr.is_ipv6() {
                                vips.push(vip);
                            } else {
                                excluded_vips.push(vip);
                            }
                        }
                        Err(why) => self.add(&at, why),
                    }
                }
            }
        }
        let ipv6 = vips.first().is_some_and(|v| v.addr.is_ipv6());
        if ipv6 && version == Version::V2 {
            self.add(
                &k("version"),
                "VRRPv2 is IPv4-only (RFC 3768); use version = 3 for an IPv6 first address",
            );
        }
        if vips.len() > 255 {
            self.add(
                &k("virtual_ipaddress"),
                "at most 255 addresses of one family fit in an advertisement",
            );
        }

        let preempt = f.preempt.unwrap_or(true);
        let preempt_delay = f.preempt_delay.map_or(Duration::ZERO, |d| d.0);
        if preempt_delay > Duration::from_secs(1000) {
            self.add(&k("preempt_delay"), "at most 1000s (keepalived's limit)");
        }
        if !preempt && !preempt_delay.is_zero() {
            self.add(
                &k("preempt_delay"),
                "has no effect with preempt = false; remove one of them",
            );
        }

        let family_name = if ipv6 { "IPv6" } else { "IPv4" };
        let mut unicast_peers = Vec::new();
        for (i, text) in f.unicast_peer.iter().enumerate() {
            let at = index(&k("unicast_peer"), i);
            match text.parse::<IpAddr>() {
                Ok(a) if a.is_ipv6() != ipv6 => self.add(
                    &at,
                    format!("{a} is not {family_name} like the first virtual_ipaddress"),
                ),
                Ok(a) if a.is_multicast() || a.is_unspecified() => {
                    self.add(&at, format!("{a} is not a unicast address"))
                }
                Ok(a) if unicast_peers.contains(&a) => {
                    self.add(&at, format!("{a} is listed twice"))
                }
                Ok(a) => unicast_peers.push(a),
                Err(_) => self.add(&at, format!("{text:?} is not an IP address")),
            }
        }
        let unicast_src_ip = match &f.unicast_src_ip {
            None => None,
            Some(text) => match text.parse::<IpAddr>() {
                Ok(a) if a.is_ipv6() != ipv6 => {
                    self.add(
                        &k("unicast_src_ip"),
                        format!("{a} is not {family_name} like the first virtual_ipaddress"),
                    );
                    None
                }
                Ok(a) => {
                    if unicast_peers.is_empty() {
                        self.add(
                            &k("unicast_src_ip"),
                            "only applies with unicast_peer; add peers or remove it",
                        );
                    }
                    Some(a)
                }
                Err(_) => {
                    self.add(
                        &k("unicast_src_ip"),
                        format!("{text:?} is not an IP address"),
                    );
                    None
                }
            },
        };

        let unicast_ttl_check = f.unicast_ttl_check.unwrap_or(true);
        if !unicast_ttl_check && unicast_peers.is_empty() {
            self.add(
                &k("unicast_ttl_check"),
                "only applies with unicast_peer (multicast adverts always need TTL 255)",
            );
        }
        let garp = self.garp(f.garp.as_ref(), &k("garp"));
        let notify = f
            .notify
            .as_ref()
            .map_or_else(NotifyConfig::default, |n| NotifyConfig {
                master: n.master.clone(),
                backup: n.backup.clone(),
                fault: n.fault.clone(),
                stop: n.stop.clone(),
            });
        let track = self.track(f.track.as_ref(), &k("track"));

        let auth = match (f.auth_type.as_deref(), version) {
            (None, _) => {
                if f.auth_pass.is_some() {
                    self.add(&k("auth_pass"), "needs auth_type = \"pass\"");
                }
                Auth::None
            }
            (Some(_), Version::V3) => {
                self.add(&k("auth_type"), "VRRPv3 has no authentication (RFC 5798 removed it); remove it or use version = 2");
                Auth::None
            }
            (Some(t), Version::V2) if t.eq_ignore_ascii_case("none") => Auth::None,
            (Some(t), Version::V2) if t.eq_ignore_ascii_case("pass") => {
                match f.auth_pass.as_deref() {
                    Some(p) if !p.is_empty() && p.len() <= 8 => {
                        let mut pass = [0u8; 8];
                        pass[..p.len()].copy_from_slice(p.as_bytes());
                        Auth::Password(pass)
                    }
                    Some(_) => {
                        self.add(&k("auth_pass"), "must be 1 to 8 bytes (the v2 field is 8 octets; keepalived silently truncates longer ones)");
                        Auth::None
                    }
                    None => {
                        self.add(
                            key,
                            "auth_type = \"pass\" needs auth_pass (up to 8 characters)",
                        );
                        Auth::None
                    }
                }
            }
            (Some(t), Version::V2) => {
                self.add(&k("auth_type"), format!("{t:?} is not supported; use \"pass\" or \"none\" (AH was removed by RFC 3768)"));
                Auth::None
            }
        };
        let checksum_form = match f.v3_checksum_as_v2 {
            Some(true) if version == Version::V2 || ipv6 => {
                self.add(&k("v3_checksum_as_v2"), "only applies to VRRPv3 over IPv4");
                ChecksumForm::PseudoHeader
            }
            Some(true) => ChecksumForm::MessageOnly,
            _ => ChecksumForm::PseudoHeader,
        };

        let death_probe = self.death_probe(f.death_probe.as_ref(), &k("death_probe"));

        let ok = !self.bad;
        self.bad |= before;
        ok.then_some(InstanceConfig {
            name,
            interface,
            vrid,
            priority,
            version,
            advert_interval,
            vips,
            excluded_vips,
            preempt,
            preempt_delay,
            unicast_peers,
            unicast_src_ip,
            unicast_ttl_check,
            garp,
            notify,
            track,
            auth,
            checksum_form,
            death_probe,
        })
    }

    fn death_probe(&mut self, f: Option<&DeathProbeFile>, key: &str) -> Option<DeathProbe> {
        let table = match f? {
            DeathProbeFile::Switch(false) => return None,
            DeathProbeFile::Switch(true) => DeathProbeTable::default(),
            DeathProbeFile::Table(t) => t.clone(),
        };
        let port = match table.port {
            None => DeathProbe::DEFAULT_PORT,
            Some(p) => match u16::try_from(p) {
                Ok(p) if p > 0 => p,
                _ => {
                    self.add(
                        &format!("{key}.port"),
                        format!("{p} is not a TCP port (1..=65535)"),
                    );
                    DeathProbe::DEFAULT_PORT
                }
            },
        };
        Some(DeathProbe { port })
    }

    fn advert_interval(
        &mut self,
        d: Option<ConfigDuration>,
        version: Version,
        key: &str,
    ) -> Centiseconds {
        let Some(d) = d else {
            return Centiseconds::ONE_SECOND;
        };
        let d = d.0;
        match version {
            // RFC 5798 §5.2.7: 12 bits of centiseconds.
            Version::V3 => match Centiseconds::from_duration(d) {
                Some(cs) if cs.get() <= Centiseconds::V3_MAX => cs,
                Some(_) => {
                    self.add(key, "VRRPv3 allows at most 40.95s");
                    Centiseconds::ONE_SECOND
                }
                None => {
                    self.add(key, format!("{d:?} is not a whole number of centiseconds in 10ms..=40.95s (VRRPv3 resolution is 10ms)"));
                    Centiseconds::ONE_SECOND
                }
            },
            // RFC 3768 §5.3.7: whole seconds, 8 bits.
            Version::V2 => {
                let secs = d.as_secs();
                if d.subsec_nanos() != 0 || !(1..=255).contains(&secs) {
                    self.add(key, format!("{d:?}: VRRPv2 needs whole seconds 1s..=255s (keepalived would silently round it)"));
                    return Centiseconds::ONE_SECOND;
                }
                Centiseconds::new(secs as u16 * 100).unwrap_or(Centiseconds::ONE_SECOND)
            }
        }
    }

    fn garp(&mut self, f: Option<&GarpFile>, key: &str) -> GarpConfig {
        let mut g = GarpConfig::default();
        let Some(f) = f else { return g };
        if let Some(d) = f.delay {
            g.delay = d.0;
        }
        if let Some(r) = f.repeat {
            match u32::try_from(r) {
                Ok(r @ 0..=100) => g.repeat = r,
                _ => self.add(
                    &join(key, "repeat"),
                    format!("{r} is out of range; use 0..=100"),
                ),
            }
        }
        if let Some(i) = f.interval {
            if i.0 > Duration::from_secs(1) {
                self.add(
                    &join(key, "interval"),
                    "at most 1s between frames of a burst",
                );
            }
            g.interval = i.0;
        }
        if let Some(r) = f.refresh {
            if !r.0.is_zero() && r.0 < Duration::from_secs(1) {
                self.add(&join(key, "refresh"), "use 0s (off) or at least 1s");
            }
            g.refresh = r.0;
        }
        g
    }

    fn cross_instance(&mut self, file: &VrrpFile, instances: &[InstanceConfig], key: &str) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut routers: HashMap<(&str, u8, bool), usize> = HashMap::new();
        let mut vips: HashMap<IpAddr, usize> = HashMap::new();
        for (i, f) in file.instance.iter().enumerate() {
            let at = index(key, i);
            if let Some(name) = f.name.as_deref() {
                if let Some(first) = names.insert(name, i) {
                    self.add(
                        &join(&at, "name"),
                        format!("{name:?} is already used by {}", index(key, first)),
                    );
                }
            }
        }
        for c in instances {
            let i = file
                .instance
                .iter()
                .position(|f| f.name.as_deref() == Some(&c.name))
                .unwrap_or(0);
            let at = index(key, i);
            // RFC 5798 §7.1: the VRID identifies the router on the link.
            if let Some(first) = routers.insert((&c.interface, c.vrid, c.is_ipv6()), i) {
                self.add(
                    &join(&at, "virtual_router_id"),
                    format!(
                        "{} on {} is already used by {}",
                        c.vrid,
                        c.interface,
                        index(key, first)
                    ),
                );
            }
            for v in c.all_vips() {
                if let Some(first) = vips.insert(v.addr, i) {
                    if first != i {
                        self.add(
                            &join(&at, "virtual_ipaddress"),
                            format!("{} is also a VIP of {}", v.addr, index(key, first)),
                        );
                    }
                }
            }
        }
    }

    fn sync_groups(&mut self, file: &VrrpFile, key: &str) -> Vec<SyncGroup> {
        let known: BTreeSet<&str> = file
            .instance
            .iter()
            .filter_map(|i| i.name.as_deref())
            .collect();
        let mut member_of: HashMap<&str, usize> = HashMap::new();
        let mut out = Vec::new();
        for (g, f) in file.sync_group.iter().enumerate() {
            let at = index(key, g);
            let name = match &f.name {
                Some(n) if !n.is_empty() => n.clone(),
                _ => {
                    self.add(&at, "missing `name`");
                    continue;
                }
            };
            if f.instances.is_empty() {
                self.add(&join(&at, "instances"), "must list at least one instance");
            }
            for (j, inst) in f.instances.iter().enumerate() {
                let ik = index(&join(&at, "instances"), j);
                if !known.contains(inst.as_str()) {
                    self.add(&ik, format!("no [[vrrp.instance]] is named {inst:?}"));
                } else if let Some(first) = member_of.insert(inst, g) {
                    self.add(&ik, format!("{inst:?} is already in {}", index(key, first)));
                }
            }
            out.push(SyncGroup {
                name,
                instances: f.instances.clone(),
            });
        }
        out
    }
}

pub(super) fn check_interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > IFNAMSIZ_MAX {
        return Err(format!(
            "{name:?}: an interface name is 1 to {IFNAMSIZ_MAX} bytes"
        ));
    }
    if name.contains(['/', ':', ' ', '\t']) {
        return Err(format!("{name:?} is not an interface name"));
    }
    Ok(())
}

/// Parses `"192.168.56.100"`, `"192.168.56.100/24"`, `"fd00::100/64"`.
fn parse_vip(text: &str) -> Result<Vip, String> {
    let (addr_text, prefix_text) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let addr: IpAddr = addr_text.trim().parse().map_err(|_| {
        format!("{text:?} is not an address (write e.g. \"192.168.56.100\" or \"fd00::100/64\")")
    })?;
    let max = if addr.is_ipv6() { 128 } else { 32 };
    let prefix = match prefix_text {
        None => max,
        Some(p) => match p.trim().parse::<u8>() {
            Ok(p) if (1..=max).contains(&p) => p,
            _ => return Err(format!("{text:?}: prefix length must be 1..={max}")),
        },
    };
    let unusable = addr.is_unspecified()
        || addr.is_loopback()
        || addr.is_multicast()
        || matches!(addr, IpAddr::V4(a) if a.is_broadcast())
        || matches!(addr, IpAddr::V6(a) if a.is_unicast_link_local());
    if unusable {
        return Err(format!(
            "{addr} cannot be a virtual address (unspecified, loopback, multicast, broadcast or link-local)"
        ));
    }
    Ok(Vip { addr, prefix })
}
