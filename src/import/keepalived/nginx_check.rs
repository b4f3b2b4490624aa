//! Does a `vrrp_script` only check nginx? Then vigil's own proxy health
//! (`track.proxy`) replaces it: vigil probes itself every 200 ms through
//! a real listener, which is what the script approximated.

use std::path::Path;

use super::super::files::Files;

/// How a script was judged to be an nginx check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The command itself checks nginx.
    Command(String),
    /// The script file was read and only checks (or restarts) nginx.
    ScriptRead(String),
    /// The file could not be read; its name says it checks nginx.
    ByName(String),
}

/// Judges a script command line.
pub fn judge(command: &str, files: &dyn Files) -> Option<Verdict> {
    let command = command.trim();
    if let Some(why) = command_checks_nginx(command) {
        return Some(Verdict::Command(why));
    }
    let program = command.split_whitespace().next()?;
    let program = program.trim_matches(|c| c == '"' || c == '\'');
    if !program.starts_with('/') {
        return None;
    }
    match files.read(Path::new(program)) {
        Ok(text) => script_checks_nginx(&text).map(Verdict::ScriptRead),
        Err(_) => {
            let name = Path::new(program)
                .file_name()?
                .to_string_lossy()
                .to_ascii_lowercase();
            let checks = [
                "check", "chk", "pid", "monitor", "health", "alive", "status", "running",
            ];
            (name.contains("nginx") && checks.iter().any(|c| name.contains(c))).then(|| {
                Verdict::ByName(format!(
                    "{program} could not be read; its name says it checks nginx"
                ))
            })
        }
    }
}

/// One command that checks whether nginx runs or answers.
fn command_checks_nginx(cmd: &str) -> Option<String> {
    let cmd = cmd
        .trim_start_matches("/bin/sh -c ")
        .trim_start_matches("/bin/bash -c ")
        .trim_start_matches("sh -c ")
        .trim_start_matches("bash -c ")
        .trim_matches(|c| c == '"' || c == '\'');
    let words: Vec<&str> = cmd
        .split(|c: char| c.is_whitespace() || c == ';' || c == '|' || c == '&')
        .filter(|w| !w.is_empty())
        .collect();
    let prog = |w: &str| w.rsplit('/').next().unwrap_or(w).to_owned();
    let first = prog(words.first()?);
    let last_is_nginx = words.iter().any(|w| prog(w) == "nginx");
    match first.as_str() {
        "killall" | "pkill" if words.contains(&"-0") && last_is_nginx => {
            Some(format!("`{cmd}` checks that an nginx process exists"))
        }
        "pidof" | "pgrep" if last_is_nginx => {
            Some(format!("`{cmd}` checks that an nginx process exists"))
        }
        "systemctl" if words.contains(&"is-active") && last_is_nginx => {
            Some(format!("`{cmd}` checks that the nginx service runs"))
        }
        "service" if words.get(1).copied() == Some("nginx") && words.contains(&"status") => {
            Some(format!("`{cmd}` checks that the nginx service runs"))
        }
        "curl" | "wget" => {
            let url = words
                .iter()
                .find(|w| w.starts_with("http://") || w.starts_with("https://"))?;
            let host = url.split("://").nth(1)?.split(['/', ':']).next()?;
            let host = if url.split("://").nth(1)?.starts_with('[') {
                url.split("://")
                    .nth(1)?
                    .split(']')
                    .next()?
                    .trim_start_matches('[')
            } else {
                host
            };
            matches!(host, "localhost" | "127.0.0.1" | "::1" | "0.0.0.0")
                .then(|| format!("`{cmd}` fetches a page from the local web server"))
        }
        _ => None,
    }
}

/// A script whose every command checks, restarts or gives up on nginx
/// (the classic nginx_check.sh: if nginx is gone, start it; if it is
/// still gone, stop keepalived).
fn script_checks_nginx(text: &str) -> Option<String> {
    let mut mentions_nginx = false;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let lower = line.to_ascii_lowercase();
        if lower.contains("nginx") {
            mentions_nginx = true;
        }
        // Every process or service a line names must be nginx or
        // keepalived.
        let words: Vec<&str> = lower
            .split(|c: char| c.is_whitespace() || "();|&`$\"'=[]".contains(c))
            .filter(|w| !w.is_empty())
            .collect();
        for (i, w) in words.iter().enumerate() {
            let names_a_process = matches!(
                *w,
                "pidof"
                    | "pgrep"
                    | "killall"
                    | "pkill"
                    | "-c"
                    | "is-active"
                    | "restart"
                    | "start"
                    | "stop"
                    | "status"
                    | "service"
            );
            if !names_a_process {
                continue;
            }
            let next = words[i + 1..].iter().find(|n| {
                !n.starts_with('-')
                    && **n != "--no-header"
                    && !n.chars().all(|c| c.is_ascii_digit())
            });
            if let Some(n) = next {
                let n = n.rsplit('/').next().unwrap_or(n);
                let ok = n.contains("nginx")
                    || n.contains("keepalived")
                    || matches!(
                        n,
                        "then"
                            | "fi"
                            | "else"
                            | "wc"
                            | "grep"
                            | "-l"
                            | "exit"
                            | "echo"
                            | "sleep"
                            | "if"
                    );
                if !ok {
                    return None;
                }
            }
        }
        let first = words.first().copied().unwrap_or("");
        let allowed = [
            "#!/bin/bash",
            "#!/bin/sh",
            "if",
            "then",
            "else",
            "elif",
            "fi",
            "exit",
            "echo",
            "sleep",
            "ps",
            "pidof",
            "pgrep",
            "killall",
            "pkill",
            "systemctl",
            "service",
            "curl",
            "wget",
            "nc",
            "test",
            "[",
            "kill",
            "cat",
            "logger",
            "date",
            "return",
            "counter",
            "a",
            "b",
            "n",
            "num",
            "count",
            "status",
            "nginx",
            "/usr/sbin/nginx",
            "/usr/local/nginx/sbin/nginx",
            "do",
            "done",
            "while",
            "for",
            "true",
            "false",
            "set",
            "local",
            "export",
            "result",
            "code",
        ];
        let first_prog = first.rsplit('/').next().unwrap_or(first);
        let assignment = line.split_once('=').is_some_and(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if !(assignment
            || allowed.contains(&first)
            || allowed.contains(&first_prog)
            || first.starts_with("/etc/init.d/nginx"))
        {
            return None;
        }
    }
    mentions_nginx.then(|| "the script only checks (and restarts) nginx".to_owned())
}

#[cfg(test)]
mod tests {
    use super::super::super::files::Memory;
    use super::*;

    #[test]
    fn commands() {
        let m = Memory::new();
        for c in [
            "killall -0 nginx",
            "pidof nginx",
            "/usr/bin/pgrep -x nginx",
            "systemctl is-active --quiet nginx",
            "/usr/bin/curl -f http://localhost:80 || exit 1",
            "curl -s -o /dev/null http://127.0.0.1/health",
        ] {
            assert!(matches!(judge(c, &m), Some(Verdict::Command(_))), "{c}");
        }
        for c in [
            "pidof redis-server",
            "curl -f http://10.0.0.5/",
            "/bin/true",
            "systemctl is-active haproxy",
        ] {
            assert_eq!(judge(c, &m), None, "{c}");
        }
    }

    #[test]
    fn scripts_are_read_or_judged_by_name() {
        let classic = "#!/bin/bash\nA=`ps -C nginx --no-header |wc -l`\nif [ $A -eq 0 ];then\n    /usr/local/nginx/sbin/nginx\n    sleep 2\n    if [ `ps -C nginx --no-header |wc -l` -eq 0 ];then\n        killall keepalived\n    fi\nfi\n";
        let other = "#!/bin/sh\npidof redis-server || exit 1\n";
        let m = Memory::new()
            .with("/etc/keepalived/nginx_check.sh", classic)
            .with("/etc/keepalived/check_redis.sh", other);
        assert!(matches!(
            judge("/etc/keepalived/nginx_check.sh", &m),
            Some(Verdict::ScriptRead(_))
        ));
        assert_eq!(judge("/etc/keepalived/check_redis.sh", &m), None);
        assert!(matches!(
            judge("/usr/local/bin/check_nginx.sh", &m),
            Some(Verdict::ByName(_))
        ));
        assert!(matches!(
            judge("\"/usr/libexec/keepalived/nginx-ha-check.sh\"", &m),
            Some(Verdict::ByName(_))
        ));
        assert_eq!(
            judge("/etc/keepalived/scripts/check_service_health.sh", &m),
            None
        );
        assert_eq!(
            judge("/usr/libexec/keepalived/nginx-ha-manual-failover", &m),
            None
        );
    }
}
