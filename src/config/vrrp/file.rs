//! `[vrrp]` as written in the file: keepalived-familiar names, so a
//! keepalived.conf ports line by line (see docs/VRRP.md).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::units::ConfigDuration;

/// `[vrrp]` as written in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpFile {
    /// `[[vrrp.instance]]`: one virtual router each.
    #[serde(default)]
    pub instance: Vec<InstanceFile>,
    /// `[[vrrp.sync_group]]`: instances that fail over together.
    #[serde(default)]
    pub sync_group: Vec<SyncGroupFile>,
}

/// `[[vrrp.instance]]` (keepalived's `vrrp_instance`). Integers are read
/// wide and checked by [`super::validate()`], so an out-of-range value is reported
/// with its key path and the valid range rather than as a parse error.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceFile {
    pub name: Option<String>,
    pub interface: Option<String>,
    pub virtual_router_id: Option<i64>,
    pub priority: Option<i64>,
    pub advert_interval: Option<ConfigDuration>,
    pub version: Option<i64>,
    pub virtual_ipaddress: Option<Vec<String>>,
    pub preempt: Option<bool>,
    pub preempt_delay: Option<ConfigDuration>,
    #[serde(default)]
    pub unicast_peer: Vec<String>,
    pub unicast_src_ip: Option<String>,
    pub unicast_ttl_check: Option<bool>,
    pub garp: Option<GarpFile>,
    pub notify: Option<NotifyFile>,
    pub track: Option<TrackFile>,
    pub auth_type: Option<String>,
    pub auth_pass: Option<String>,
    pub v3_checksum_as_v2: Option<bool>,
    pub death_probe: Option<DeathProbeFile>,
}

/// `death_probe = true | false | { port }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DeathProbeFile {
    Switch(bool),
    Table(DeathProbeTable),
}

/// `death_probe = { port }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeathProbeTable {
    pub port: Option<i64>,
}

/// `garp = { delay, repeat, interval, refresh }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GarpFile {
    pub delay: Option<ConfigDuration>,
    pub repeat: Option<i64>,
    pub interval: Option<ConfigDuration>,
    pub refresh: Option<ConfigDuration>,
}

/// `notify = { master, backup, fault, stop }`: shell commands.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyFile {
    pub master: Option<String>,
    pub backup: Option<String>,
    pub fault: Option<String>,
    pub stop: Option<String>,
}

/// `[vrrp.instance.track]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackFile {
    #[serde(default)]
    pub interfaces: BTreeMap<String, TrackEffectFile>,
    #[serde(default)]
    pub scripts: Vec<ScriptFile>,
    /// `true` / `"fault"`: Fault while the self-probe fails; a weight:
    /// added to the priority while it fails; `false`: off.
    pub proxy: Option<ProxyTrackFile>,
    pub probe_interval: Option<ConfigDuration>,
    pub probe_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub upstreams: BTreeMap<String, TrackEffectFile>,
}

/// `proxy = true | false | "fault" | <weight>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ProxyTrackFile {
    Switch(bool),
    Effect(TrackEffectFile),
}

/// `"fault"` or a priority weight.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TrackEffectFile {
    Weight(i64),
    Word(String),
}

/// One `scripts = [ { run = "...", ... } ]` entry (keepalived's
/// `vrrp_script` + `track_script`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptFile {
    pub run: Option<String>,
    pub interval: Option<ConfigDuration>,
    pub timeout: Option<ConfigDuration>,
    pub weight: Option<TrackEffectFile>,
    pub fall: Option<i64>,
    pub rise: Option<i64>,
}

/// `[[vrrp.sync_group]]` (keepalived's `vrrp_sync_group`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncGroupFile {
    pub name: Option<String>,
    #[serde(default)]
    pub instances: Vec<String>,
}
