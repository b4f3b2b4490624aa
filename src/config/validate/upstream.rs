//! `[upstream.<name>]`: servers (resolved now), balancing, retries,
//! health checks and TLS to the servers.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::Validator;
use super::dur;
use crate::config::error::{index, join};
use crate::config::file::*;
use crate::config::*;

impl Validator<'_> {
    pub(super) fn upstream(&mut self, name: &str, f: &UpstreamFile) -> Option<UpstreamConfig> {
        let key = join("upstream", name);
        let balance = match f.balance.as_deref().unwrap_or("round_robin") {
            "round_robin" => BalanceMethod::RoundRobin,
            "least_conn" => BalanceMethod::LeastConn,
            "ip_hash" => BalanceMethod::IpHash,
            "random_two" => BalanceMethod::RandomTwo,
            "hash" => match &f.hash_key {
                Some(k) => BalanceMethod::Hash(self.template(join(&key, "hash_key"), k, None)?),
                None => {
                    self.problems.add(
                        join(&key, "hash_key"),
                        "balance = \"hash\" needs a hash_key, e.g. \"$request_uri\" or \"$cookie_session\"",
                    );
                    return None;
                }
            },
            other => {
                self.problems.add(
                    join(&key, "balance"),
                    format!(
                        "{other:?} is not a method; use round_robin, least_conn, ip_hash, hash or random_two"
                    ),
                );
                return None;
            }
        };
        if f.hash_key.is_some() && !matches!(balance, BalanceMethod::Hash(_)) {
            self.problems.add(
                join(&key, "hash_key"),
                "hash_key only applies with balance = \"hash\"",
            );
        }
        if f.servers.is_empty() {
            self.problems.add(
                join(&key, "servers"),
                "an upstream needs at least one server",
            );
        }
        // A bad tls table has been reported; the upstream still gets
        // built (TLS with defaults) so that the locations using it are not
        // also reported as naming an unknown upstream.
        let tls = f.tls.as_ref().map(|t| {
            self.upstream_tls(&join(&key, "tls"), t)
                .unwrap_or(UpstreamTls {
                    verify: true,
                    ca: None,
                    sni: None,
                })
        });
        let mut servers = Vec::new();
        let mut resolve = Vec::new();
        for (i, s) in f.servers.iter().enumerate() {
            servers.extend(self.upstream_server(
                &index(&join(&key, "servers"), i),
                s,
                tls.as_ref(),
                &mut resolve,
            ));
        }
        let sticky = matches!(balance, BalanceMethod::IpHash | BalanceMethod::Hash(_));
        if sticky && servers.iter().any(|s| s.backup) {
            // nginx refuses this too: a hash maps keys to fixed servers, so
            // "use the backup only when all primaries are down" has no
            // consistent meaning.
            self.problems.add(
                join(&key, "servers"),
                "backup servers cannot be used with ip_hash or hash balancing",
            );
        }
        if !servers.is_empty() && servers.iter().all(|s| s.backup) {
            self.problems.add(
                join(&key, "servers"),
                "every server is a backup; at least one must be a primary",
            );
        }
        let next_upstream = self.next_upstream(&join(&key, "next_upstream"), &f.next_upstream)?;
        let health_check = match &f.health_check {
            Some(h) => Some(self.health_check(&join(&key, "health_check"), h)?),
            None => None,
        };
        let keepalive = f.keepalive.unwrap_or(32);
        Some(UpstreamConfig {
            name: name.to_owned(),
            balance,
            servers,
            keepalive,
            keepalive_timeout: dur(f.keepalive_timeout, 60),
            connect_timeout: dur(f.connect_timeout, 60),
            read_timeout: dur(f.read_timeout, 60),
            send_timeout: dur(f.send_timeout, 60),
            tries: f.tries.unwrap_or(0),
            next_upstream_timeout: f
                .next_upstream_timeout
                .map(|d| d.0)
                .filter(|d| !d.is_zero()),
            next_upstream,
            health_check,
            tls,
            resolve_interval: match f.resolve_interval {
                Some(d) if d.0 < Duration::from_secs(1) => {
                    self.problems
                        .add(join(&key, "resolve_interval"), "must be at least 1s");
                    None
                }
                d => d.map(|d| d.0),
            },
            resolve,
        })
    }

    fn upstream_tls(&mut self, key: &str, f: &UpstreamTlsFile) -> Option<UpstreamTls> {
        let verify = f.verify.unwrap_or(true);
        let ca = match &f.ca {
            None => None,
            Some(p) => {
                let path = self.resolve(p);
                let certs = self
                    .problems
                    .check(join(key, "ca"), super::certificate::parse_ca(&path))?;
                Some(CaBundle { path, certs })
            }
        };
        if !verify && ca.is_some() {
            self.problems.add(
                join(key, "ca"),
                "ca has no effect with verify = false; remove one of them",
            );
        }
        if let Some(sni) = &f.sni {
            self.problems.check(join(key, "sni"), tls_name(sni))?;
        }
        Some(UpstreamTls {
            verify,
            ca,
            sni: f.sni.clone(),
        })
    }

    fn upstream_server(
        &mut self,
        key: &str,
        f: &UpstreamServerFile,
        tls: Option<&UpstreamTls>,
        resolve: &mut Vec<ResolveName>,
    ) -> Vec<UpstreamServer> {
        let weight = f.weight.unwrap_or(1);
        if weight == 0 {
            self.problems
                .add(join(key, "weight"), "weight must be at least 1");
        }
        let default_port = if tls.is_some() { 443 } else { 80 };
        let name = host_name(&f.addr, default_port);
        let addrs = match resolve_addr(&f.addr, default_port) {
            Ok(a) => a,
            // With a resolver configured, a name that does not resolve
            // now (a container not started yet) starts with no address
            // and is looked up again in the background.
            Err(e) if self.edge.has_resolver && name.is_some() => {
                self.warnings.push((
                    join(key, "addr"),
                    format!("{e}; it has no address until [http] resolver answers for it"),
                ));
                Vec::new()
            }
            Err(e) => {
                self.problems.add(join(key, "addr"), e);
                return Vec::new();
            }
        };
        let tls_name = match tls {
            None => None,
            Some(t) => {
                let name = t.sni.clone().unwrap_or_else(|| host_part(&f.addr));
                match self.problems.check(join(key, "addr"), tls_name(&name)) {
                    Some(n) => Some(n),
                    None => return Vec::new(),
                }
            }
        };
        let servers: Vec<UpstreamServer> = addrs
            .into_iter()
            .map(|addr| UpstreamServer {
                addr,
                label: addr.to_string(),
                weight: weight.max(1),
                max_fails: f.max_fails.unwrap_or(1),
                fail_timeout: dur(f.fail_timeout, 10),
                backup: f.backup,
                down: f.down,
                tls_name: tls_name.clone(),
                resolved_from: name.clone(),
            })
            .collect();
        if let Some((host, port)) = name {
            let any = SocketAddr::from(([0, 0, 0, 0], port));
            resolve.push(ResolveName {
                template: UpstreamServer {
                    addr: any,
                    label: any.to_string(),
                    weight: weight.max(1),
                    max_fails: f.max_fails.unwrap_or(1),
                    fail_timeout: dur(f.fail_timeout, 10),
                    backup: f.backup,
                    down: f.down,
                    tls_name,
                    resolved_from: Some((host.clone(), port)),
                },
                host,
                port,
            });
        }
        servers
    }

    fn next_upstream(&mut self, key: &str, f: &Option<Vec<String>>) -> Option<NextUpstream> {
        let Some(list) = f else {
            return Some(NextUpstream {
                error: true,
                timeout: true,
                ..Default::default()
            });
        };
        let mut n = NextUpstream::default();
        for (i, item) in list.iter().enumerate() {
            match item.as_str() {
                "error" => n.error = true,
                "timeout" => n.timeout = true,
                "http_500" => n.http_500 = true,
                "http_502" => n.http_502 = true,
                "http_503" => n.http_503 = true,
                "http_504" => n.http_504 = true,
                "http_429" => n.http_429 = true,
                "non_idempotent" => n.non_idempotent = true,
                "off" => {}
                other => self.problems.add(
                    index(key, i),
                    format!(
                        "{other:?} is not a condition; use error, timeout, http_500, http_502, \
                         http_503, http_504, http_429, non_idempotent or off"
                    ),
                ),
            }
        }
        if list.iter().any(|s| s == "off") && list.len() > 1 {
            self.problems
                .add(key, "\"off\" cannot be combined with other conditions");
        }
        Some(n)
    }

    fn health_check(&mut self, key: &str, f: &HealthCheckFile) -> Option<HealthCheck> {
        let path = f.path.clone().unwrap_or_else(|| "/".into());
        if !path.starts_with('/') {
            self.problems
                .add(join(key, "path"), "must start with /, e.g. \"/health\"");
        }
        let interval = dur(f.interval, 5);
        let timeout = f.timeout.map_or(Duration::from_secs(1), |d| d.0);
        if interval.is_zero() {
            self.problems
                .add(join(key, "interval"), "must be more than 0");
        }
        if timeout.is_zero() {
            self.problems
                .add(join(key, "timeout"), "must be more than 0");
        }
        let (rise, fall) = (f.rise.unwrap_or(2), f.fall.unwrap_or(3));
        if rise == 0 {
            self.problems.add(join(key, "rise"), "must be at least 1");
        }
        if fall == 0 {
            self.problems.add(join(key, "fall"), "must be at least 1");
        }
        let mut expect = Vec::new();
        match &f.expect_status {
            None => expect.push(200..=399),
            Some(list) => {
                for (i, v) in list.iter().enumerate() {
                    match status_range(v) {
                        Some(r) => expect.push(r),
                        None => self.problems.add(
                            index(&join(key, "expect_status"), i),
                            format!("{v} is not a status; use e.g. 200 or \"2xx\""),
                        ),
                    }
                }
            }
        }
        Some(HealthCheck {
            path,
            host: f.host.clone(),
            interval,
            timeout,
            rise: rise.max(1),
            fall: fall.max(1),
            expect,
        })
    }
}

/// `host:port` (port defaults to `default_port`: 80, or 443 for TLS),
/// resolved now to every address.
pub(super) fn resolve_addr(text: &str, default_port: u16) -> Result<Vec<SocketAddr>, String> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(vec![a]);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, default_port)]);
    }
    // Fuzz builds never wait on DNS (docs/FUZZING.md).
    if cfg!(fuzzing) {
        return Err(format!(
            "cannot resolve {text:?}: not resolved in fuzz builds"
        ));
    }
    let with_port = if text
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        text.to_owned()
    } else {
        format!("{text}:{default_port}")
    };
    let addrs: Vec<SocketAddr> = with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {text:?}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{text:?} resolved to no address"));
    }
    Ok(addrs)
}

/// `(host, port)` when `text` names a host rather than an IP address:
/// such a server is looked up again in the background.
pub(super) fn host_name(text: &str, default_port: u16) -> Option<(String, u16)> {
    if text.parse::<SocketAddr>().is_ok() || text.parse::<IpAddr>().is_ok() {
        return None;
    }
    match text.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None => Some((text.to_owned(), default_port)),
    }
}

/// The host of `host:port`, `host`, `ip`, `ip:port` or `[v6]:port`.
pub(super) fn host_part(text: &str) -> String {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return a.ip().to_string();
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return ip.to_string();
    }
    match text.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host.to_owned(),
        _ => text.to_owned(),
    }
}

/// The name an upstream's certificate is verified against: a DNS name
/// (also sent as SNI) or an IP address (verified against IP SANs).
pub(super) fn tls_name(name: &str) -> Result<rustls::pki_types::ServerName<'static>, String> {
    rustls::pki_types::ServerName::try_from(name.to_owned()).map_err(|_| {
        format!("{name:?} is not a DNS name or IP address to verify the upstream's certificate")
    })
}

fn status_range(v: &toml::Value) -> Option<std::ops::RangeInclusive<u16>> {
    match v {
        toml::Value::Integer(i) => {
            let code = u16::try_from(*i).ok().filter(|c| (100..=599).contains(c))?;
            Some(code..=code)
        }
        toml::Value::String(s) => {
            let b = s.as_bytes();
            if b.len() == 3 && (b'1'..=b'5').contains(&b[0]) && &s[1..] == "xx" {
                let base = u16::from(b[0] - b'0') * 100;
                Some(base..=base + 99)
            } else {
                s.parse::<u16>()
                    .ok()
                    .filter(|c| (100..=599).contains(c))
                    .map(|c| c..=c)
            }
        }
        _ => None,
    }
}
