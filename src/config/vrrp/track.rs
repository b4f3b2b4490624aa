//! `[vrrp.instance.track]` validation: interfaces, scripts, the proxy
//! self-probe and upstream pools, each with its effect on the priority.

use std::time::Duration;

use super::validate::{Validator, check_interface_name};
use super::*;
use crate::config::error::{index, join};

impl Validator<'_> {
    pub(super) fn track(&mut self, f: Option<&TrackFile>, key: &str) -> TrackConfig {
        let mut t = TrackConfig {
            probe_interval: Duration::from_millis(200),
            probe_timeout: Duration::from_millis(400),
            ..TrackConfig::default()
        };
        let Some(f) = f else { return t };
        for (name, effect) in &f.interfaces {
            let at = join(&join(key, "interfaces"), name);
            if let Err(why) = check_interface_name(name) {
                self.add(&at, why);
            }
            if let Some(e) = self.effect(effect, &at) {
                t.interfaces.push((name.clone(), e));
            }
        }
        for (i, s) in f.scripts.iter().enumerate() {
            let at = index(&join(key, "scripts"), i);
            let run = match &s.run {
                Some(r) if !r.trim().is_empty() => r.clone(),
                _ => {
                    self.add(&at, "needs `run`, the command to execute");
                    continue;
                }
            };
            let interval = s.interval.map_or(Duration::from_secs(1), |d| d.0);
            if interval < Duration::from_millis(10) {
                self.add(&join(&at, "interval"), "at least 10ms");
            }
            let timeout = s.timeout.map_or(interval, |d| d.0);
            if timeout.is_zero() {
                self.add(&join(&at, "timeout"), "must be more than 0");
            }
            let effect = match &s.weight {
                None => Some(TrackEffect::Fault),
                Some(w) => self.effect(w, &join(&at, "weight")),
            };
            let mut count = |v: Option<i64>, name: &str| match v.unwrap_or(1) {
                n @ 1..=1000 => n as u32,
                n => {
                    self.add(
                        &join(&at, name),
                        format!("{n} is out of range; use 1..=1000"),
                    );
                    1
                }
            };
            let fall = count(s.fall, "fall");
            let rise = count(s.rise, "rise");
            if let Some(effect) = effect {
                t.scripts.push(ScriptConfig {
                    run,
                    interval,
                    timeout,
                    effect,
                    fall,
                    rise,
                });
            }
        }
        t.proxy = match &f.proxy {
            None | Some(ProxyTrackFile::Switch(false)) => None,
            Some(ProxyTrackFile::Switch(true)) => Some(TrackEffect::Fault),
            Some(ProxyTrackFile::Effect(e)) => self.effect(e, &join(key, "proxy")),
        };
        if let Some(p) = f.probe_interval {
            if p.0 < Duration::from_millis(10) {
                self.add(&join(key, "probe_interval"), "at least 10ms");
            }
            t.probe_interval = p.0;
        }
        t.probe_timeout = match f.probe_timeout {
            Some(d) if d.0 < Duration::from_millis(10) => {
                self.add(&join(key, "probe_timeout"), "at least 10ms");
                d.0
            }
            Some(d) => d.0,
            None => t.probe_interval * 2,
        };
        for (name, effect) in &f.upstreams {
            let at = join(&join(key, "upstreams"), name);
            if let Some(e) = self.effect(effect, &at) {
                t.upstreams.push((name.clone(), e));
            }
        }
        t
    }

    fn effect(&mut self, f: &TrackEffectFile, key: &str) -> Option<TrackEffect> {
        match f {
            TrackEffectFile::Word(w) if w == "fault" => Some(TrackEffect::Fault),
            TrackEffectFile::Word(w) => {
                self.add(
                    key,
                    format!("{w:?}: use \"fault\" or a weight in -253..=253"),
                );
                None
            }
            TrackEffectFile::Weight(0) => Some(TrackEffect::Fault),
            TrackEffectFile::Weight(w @ -253..=253) => Some(TrackEffect::Weight(*w as i32)),
            TrackEffectFile::Weight(w) => {
                self.add(
                    key,
                    format!("{w} is out of range; use -253..=253 (0 or \"fault\" = fault)"),
                );
                None
            }
        }
    }
}
