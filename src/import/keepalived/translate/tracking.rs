//! Tracking (interfaces, processes, scripts: an nginx check becomes
//! `track.proxy`) and `vrrp_sync_group`.

use super::*;

impl<'a> Tr<'a> {
    /// One tracked script or process.
    pub(super) fn track(
        &mut self,
        t: &Stmt,
        name: &str,
        weight: Option<i64>,
        reverse: bool,
        scripts: &mut Vec<Value>,
        proxy: &mut Option<(Value, String)>,
    ) {
        let Some(c) = self.checks.get(name) else {
            self.add(
                t,
                Status::NotSupported,
                format!("no vrrp_script or vrrp_track_process named {name} was read"),
                "",
            );
            return;
        };
        let weight = weight.or(c.weight);
        let reverse = reverse || c.reverse;
        let effect = match weight {
            None | Some(0) => Value::str("fault"),
            Some(w) => Value::Int(w.clamp(-253, 253)),
        };
        if reverse {
            let s = c.stmt;
            self.report.add(
                &s.place,
                s.summary(),
                Status::NotSupported,
                "reverse weights are not supported",
                "",
            );
        }
        if let (Some(verdict), true) = (&c.nginx, self.has_proxy) {
            let (why, status) = match verdict {
                Verdict::Command(w) | Verdict::ScriptRead(w) => (w.clone(), Status::NotNeeded),
                Verdict::ByName(w) => (w.clone(), Status::Approximated),
            };
            let s = c.stmt;
            self.report.add(
                &s.place,
                s.summary(),
                status,
                format!(
                    "{why}: replaced by vigil's own proxy health (track.proxy, weight kept), which probes every worker and a real request through a listener every 200 ms; a failing proxy is seen after 2 rounds, not after the script's interval × fall"
                ),
                if status == Status::Approximated {
                    "check the script: if it does more than check nginx, track it as a script instead"
                } else {
                    ""
                },
            );
            if proxy.is_some() {
                self.add(t, Status::Approximated, "a second nginx check on this instance: vigil has one proxy health, with the first check's weight", "");
                return;
            }
            *proxy = Some((effect, format!("vrrp_script {name}, {}", c.stmt.place)));
            return;
        }
        if c.nginx.is_some() {
            let s = c.stmt;
            self.report.add(
                &s.place,
                s.summary(),
                Status::Note,
                "an nginx check, kept as a script: import with --nginx to use vigil's own proxy health (track.proxy) instead",
                "",
            );
        }
        let mut fields = vec![("run".to_owned(), Value::str(c.run.clone()))];
        if let Some(i) = c.interval {
            let i = i.max(Duration::from_millis(10));
            fields.push(("interval".into(), Value::str(duration(i))));
        }
        if let Some(d) = c.timeout {
            fields.push(("timeout".into(), Value::str(duration(d))));
        }
        fields.push(("weight".into(), effect));
        if let Some(f) = c.fall {
            fields.push(("fall".into(), Value::Int(f)));
        }
        if let Some(r) = c.rise {
            fields.push(("rise".into(), Value::Int(r)));
        }
        if c.stmt.key() == "vrrp_track_process" {
            let s = c.stmt;
            self.report.add(
                &s.place,
                s.summary(),
                Status::Approximated,
                "vigil tracks a process with a script: pidof",
                "",
            );
        }
        scripts.push(Value::Inline(fields));
    }

    pub(super) fn sync_group(&mut self, s: &'a Stmt) -> Option<Block> {
        let name = s.arg(0)?.to_owned();
        let mut b = Block::new(format!("vrrp_sync_group {name}, {}", s.place));
        b.set("name", Value::str(name), "");
        let mut members = Vec::new();
        for k in s.children() {
            match k.key() {
                "group" => members.extend(k.children().iter().flat_map(|m| m.words.clone())),
                _ => self.add(
                    k,
                    Status::NotSupported,
                    "vigil's sync groups have members only; notify and tracking are per instance",
                    "move it to each instance",
                ),
            }
        }
        b.set("instances", Value::strs(&members), "");
        Some(b)
    }
}
