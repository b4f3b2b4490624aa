//! `access_log` and `error_log`: where nginx logs, and what vigil can
//! keep of it.

use super::*;

impl<'a> Tr<'a> {
    pub(super) fn error_log(&mut self, d: &Directive) {
        let level = d.arg(1).unwrap_or("error");
        let vigil = match level {
            "debug" => "debug",
            "info" | "notice" => "info",
            "warn" => "warn",
            _ => "error",
        };
        if self.out.log.get("level").is_none() {
            self.out.log.set(
                "level",
                Value::str(vigil),
                format!("error_log, {}", d.place),
            );
        }
        let target = d.arg(0).unwrap_or_default();
        if target == "stderr" {
            self.use_(d);
        } else {
            self.note(
                d,
                Status::Approximated,
                format!("vigil writes its own log to stderr (the journal under systemd), at level {vigil}; not to {target}"),
                "let systemd or docker collect stderr",
            );
        }
    }

    /// `[log]`: vigil writes one access log for everything, so the first
    /// log written (http level first, then servers, then locations) is
    /// kept and the others are reported.
    pub(super) fn access_log(&mut self, http: &'a [Directive]) {
        let mut found: Vec<(usize, &'a Directive)> = Vec::new();
        collect_access_logs(http, 0, &mut found);
        found.sort_by_key(|(depth, _)| *depth);
        let chosen = found
            .iter()
            .find(|(_, d)| d.arg(0) != Some("off"))
            .map(|(_, d)| *d);
        let Some(chosen) = chosen else {
            if let Some((_, first)) = found.first() {
                self.out.log.set(
                    "access_log",
                    Value::str("off"),
                    format!("access_log off, {}", first.place),
                );
                for (_, d) in &found {
                    self.use_(d);
                }
            }
            return;
        };
        self.use_(chosen);
        let target = chosen.arg(0).unwrap_or_default();
        let target = match target {
            "/dev/stdout" => "stdout".to_owned(),
            "/dev/stderr" => "stderr".to_owned(),
            t if t.starts_with("syslog:") => {
                self.note(
                    chosen,
                    Status::NotSupported,
                    "vigil does not write to syslog",
                    "log to stdout (access_log = \"stdout\") and let journald or docker collect it",
                );
                "stdout".to_owned()
            }
            t => absolute(&self.opts.prefix, t),
        };
        self.out
            .log
            .set("access_log", Value::str(target), chosen.place.to_string());
        let mut approximations = Vec::new();
        for arg in chosen.texts().iter().skip(1) {
            if let Some(b) = arg.strip_prefix("buffer=") {
                if let Ok(s) = values::size(b) {
                    self.out
                        .log
                        .set("access_log_buffer", Value::str(s), "buffer=");
                }
            } else if let Some(f) = arg.strip_prefix("flush=") {
                if let Ok(t) = values::parse_time(f) {
                    self.out.log.set(
                        "access_log_flush",
                        Value::str(values::duration(t)),
                        "flush=",
                    );
                }
            } else if *arg == "combined" {
            } else if arg.starts_with("if=") {
                approximations.push("vigil logs every request (no if= condition)".to_owned());
            } else if arg.starts_with("gzip") {
                approximations.push("vigil does not compress its log".to_owned());
            } else {
                approximations.push(format!(
                    "vigil writes nginx's combined format plus request time and upstream (or json), not the log_format {arg:?}"
                ));
                if let Some(f) = self.log_formats.get(*arg).copied() {
                    self.note(
                        f,
                        Status::Approximated,
                        "vigil has two formats: combined (plus request time and upstream address) and json",
                        "set [log] access_log_format = \"json\" if your tools read JSON",
                    );
                }
            }
        }
        if !approximations.is_empty() {
            self.note(chosen, Status::Approximated, approximations.join("; "), "");
        }
        for (_, d) in &found {
            if self.used(d) {
                continue;
            }
            let why = if d.arg(0) == Some("off") {
                "vigil logs every request or none: one access log for all servers and locations"
            } else {
                "vigil writes one access log for all servers and locations (the first one found)"
            };
            self.note(d, Status::Approximated, why, "");
        }
        for (_, f) in self.log_formats.clone() {
            if !self.used(f) {
                self.note(
                    f,
                    Status::NotNeeded,
                    "no access_log that vigil keeps uses it",
                    "",
                );
            }
        }
    }
}

pub(super) fn collect_access_logs<'a>(
    ds: &'a [Directive],
    depth: usize,
    out: &mut Vec<(usize, &'a Directive)>,
) {
    for d in ds {
        if d.name == "access_log" {
            out.push((depth, d));
        }
        if matches!(
            d.name.as_str(),
            "server" | "location" | "if" | "limit_except"
        ) {
            collect_access_logs(d.children(), depth + 1, out);
        }
    }
}
