//! `server` blocks → `[[server]]`: listen addresses (a server with plain
//! and TLS listeners becomes two, as a vigil server is one or the other),
//! names, certificates, the server-level rewrite idioms, and locations.

use std::collections::BTreeSet;

use super::super::super::out::{Block, Server};
use super::super::super::report::Status;
use super::super::super::toml_out::Value;
use super::super::parse::Directive;
use super::super::values::{self, VarContext};
use super::idioms::{self, Cond, Redirect, Ret};
use super::location::{Pattern, ServerCtx, pattern};
use super::{Chain, Tr, absolute};

mod locations;

use self::locations::drop_missing_named_pages;

/// One `listen`, read.
#[derive(Debug, Clone)]
pub(crate) struct Listen {
    /// As vigil writes it: `0.0.0.0:80`, `[::]:443`.
    pub addr: String,
    pub ssl: bool,
    pub http2: bool,
    pub default: bool,
}

/// What a server's own rewrite phase does to every request.
enum Whole {
    /// Everything is answered by this return.
    Return(Value, String),
    /// Plain HTTP: `redirect_https` (with a port when not 443).
    RedirectHttps(Option<u16>, String),
}

/// `listen` → address and flags; `None` (reported) when vigil cannot.
pub(crate) fn read_listen(d: &Directive) -> Result<(Listen, Vec<String>), String> {
    let first = d.arg(0).ok_or("listen without an address")?;
    if first.starts_with("unix:") {
        return Err("vigil listens on TCP addresses, not Unix sockets".into());
    }
    let addr = if let Ok(port) = first.parse::<u16>() {
        format!("0.0.0.0:{port}")
    } else if let Some(rest) = first.strip_prefix("*:") {
        let port: u16 = rest
            .parse()
            .map_err(|_| format!("{first:?} is not an address"))?;
        format!("0.0.0.0:{port}")
    } else if first.starts_with('[') {
        if first.contains("]:") {
            first.to_owned()
        } else {
            format!("{first}:80")
        }
    } else {
        let (host, port) = match first.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("{first:?} is not an address"))?,
            ),
            None => (first, 80),
        };
        let ip = if host.eq_ignore_ascii_case("localhost") {
            "127.0.0.1".to_owned()
        } else if host.parse::<std::net::Ipv4Addr>().is_ok() {
            host.to_owned()
        } else {
            return Err(format!("vigil listens on IP addresses; {host:?} is a name"));
        };
        format!("{ip}:{port}")
    };
    let mut l = Listen {
        addr,
        ssl: false,
        http2: false,
        default: false,
    };
    let mut other = Vec::new();
    for p in d.texts().iter().skip(1) {
        match *p {
            "ssl" => l.ssl = true,
            "http2" => l.http2 = true,
            "default_server" | "default" => l.default = true,
            "quic" | "http3" => return Err("vigil does not speak HTTP/3 (QUIC)".into()),
            other_param => other.push(other_param.to_owned()),
        }
    }
    Ok((l, other))
}

impl<'a> Tr<'a> {
    /// nginx decides TLS per address: if any server's `listen` on an
    /// address says ssl (or a server there has `ssl on`), the address is
    /// TLS for every server on it.
    pub(crate) fn ssl_addresses(
        &self,
        servers: &[&'a Directive],
        http: &Chain<'a>,
    ) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let http_ssl_on = http.get("ssl").is_some_and(|d| d.arg(0) == Some("on"));
        for s in servers {
            let ssl_on = http_ssl_on
                || s.children()
                    .iter()
                    .any(|d| d.name == "ssl" && d.arg(0) == Some("on"));
            for d in s.children().iter().filter(|d| d.name == "listen") {
                if let Ok((l, _)) = read_listen(d) {
                    if l.ssl || ssl_on {
                        out.insert(l.addr);
                    }
                }
            }
        }
        out
    }

    pub(crate) fn server(
        &mut self,
        srv: &'a Directive,
        http: &Chain<'a>,
        ssl_addrs: &BTreeSet<String>,
    ) {
        let chain = http.inside(srv.children());
        let here = srv.children();
        let place = srv.place.to_string();

        // Listen addresses.
        let mut listens: Vec<Listen> = Vec::new();
        let mut proxy_protocol = false;
        for d in here.iter().filter(|d| d.name == "listen") {
            match read_listen(d) {
                Ok((mut l, other)) => {
                    self.use_(d);
                    if ssl_addrs.contains(&l.addr) {
                        l.ssl = true;
                    }
                    for o in other {
                        if o == "proxy_protocol" {
                            proxy_protocol = true;
                        } else {
                            self.report.add(
                                &d.place,
                                d.summary(),
                                Status::NotNeeded,
                                format!("{o}: a socket option vigil chooses itself (it always uses SO_REUSEPORT per worker)"),
                                "",
                            );
                        }
                    }
                    if l.http2 {
                        self.http2_on = true;
                    } else {
                        self.http2_off = true;
                    }
                    if !listens.iter().any(|x| x.addr == l.addr) {
                        listens.push(l);
                    }
                }
                Err(e) => self.note(d, Status::NotSupported, e, ""),
            }
        }
        if here.iter().all(|d| d.name != "listen") {
            listens.push(Listen {
                addr: "0.0.0.0:80".into(),
                ssl: ssl_addrs.contains("0.0.0.0:80"),
                http2: false,
                default: false,
            });
        }
        if let Some(d) = chain.get("http2") {
            self.use_(d);
            if d.arg(0) == Some("on") {
                self.http2_on = true;
            }
        }
        if let Some(d) = chain.get("ssl") {
            self.note(
                d,
                Status::NotNeeded,
                "the old way to say listen ... ssl; read as that",
                "",
            );
        }

        // Names.
        let mut names: Vec<String> = Vec::new();
        for d in here.iter().filter(|d| d.name == "server_name") {
            self.use_(d);
            for n in d.texts() {
                if n.is_empty() || n == "_" {
                    continue;
                }
                if n.starts_with('$') {
                    self.report.add(
                        &d.place,
                        d.summary(),
                        Status::NotSupported,
                        format!("{n} is not a name vigil can match"),
                        "",
                    );
                    continue;
                }
                names.push(n.to_owned());
            }
            if let Some(suspect) = d.texts().iter().skip(1).find(|n| {
                matches!(
                    **n,
                    "ssl" | "on" | "off" | "listen" | "root" | "return" | "index" | "location"
                )
            }) {
                self.report.add(
                    &d.place,
                    d.summary(),
                    Status::Note,
                    format!("{suspect:?} is read as a server name: is a ';' missing at the end of the line?"),
                    "",
                );
            }
        }
        let first_name = here
            .iter()
            .find(|d| d.name == "server_name")
            .and_then(|d| d.arg(0))
            .unwrap_or("");
        let maps = self.maps.clone();
        let vars = VarContext {
            server_name: Some(first_name),
            proxy_host: None,
            maps: &maps,
        };

        // Certificates.
        let has_tls = listens.iter().any(|l| l.ssl);
        let mut tls = None;
        if has_tls {
            let certs = chain.all("ssl_certificate");
            let keys = chain.all("ssl_certificate_key");
            match (certs.first(), keys.first()) {
                (Some(c), Some(k)) => {
                    let (cp, kp) = (c.arg(0).unwrap_or_default(), k.arg(0).unwrap_or_default());
                    if values::has_vars(cp) || values::has_vars(kp) || cp.starts_with("data:") {
                        self.note(c, Status::NotSupported, "certificates chosen per request (variables, data:) are not supported", "name the files");
                    } else {
                        self.use_(c);
                        self.use_(k);
                        tls = Some(Value::Inline(vec![
                            ("cert".into(), Value::str(absolute(&self.opts.conf_prefix, cp))),
                            ("key".into(), Value::str(absolute(&self.opts.conf_prefix, kp))),
                        ]));
                    }
                    for extra in certs.iter().skip(1).chain(keys.iter().skip(1)) {
                        self.note(
                            extra,
                            Status::Approximated,
                            "vigil takes one certificate per server; nginx's second one (often ECDSA beside RSA) is left out",
                            "",
                        );
                    }
                }
                _ => self.report.add(
                    &srv.place,
                    "server",
                    Status::NotSupported,
                    "it has ssl listeners but no ssl_certificate (nginx refuses this too): the TLS listeners are left out",
                    "",
                ),
            }
        }

        // HSTS: from the server (or http) level add_header.
        let hsts = chain
            .all("add_header")
            .into_iter()
            .find(|d| {
                d.arg(0)
                    .is_some_and(|n| n.eq_ignore_ascii_case("strict-transport-security"))
            })
            .filter(|d| !chain.is_local(d) || srv.children().iter().any(|x| std::ptr::eq(x, *d)));
        let mut hsts_value = None;
        if let Some(h) = hsts {
            if tls.is_some() {
                self.use_(h);
                hsts_value = h.arg(1).map(str::to_owned);
            } else if !has_tls {
                self.note(h, Status::NotNeeded, "browsers ignore HSTS sent over plain HTTP (RFC 6797 §8.1); vigil sends it over TLS only", "");
            }
        }

        // The server's own rewrite phase.
        let mut whole: Option<Whole> = None;
        let mut plain_whole: Option<Whole> = None;
        let mut host_splits: Vec<(Cond, Value, &'a Directive)> = Vec::new();
        for d in here {
            if whole.is_some() {
                break;
            }
            match d.name.as_str() {
                "return" => {
                    if let Some(r) = idioms::ret(d) {
                        whole = self.whole_return(d, r, &chain, &vars);
                    }
                }
                "rewrite" => {
                    if let Some(r) = idioms::rewrite_redirect(d, &vars) {
                        self.use_(d);
                        whole = Some(self.whole_redirect(d, r));
                    }
                }
                "if" => {
                    let Some(cond) = idioms::condition(d) else {
                        continue;
                    };
                    let [inner] = d.children() else { continue };
                    if inner.name != "return" {
                        continue;
                    }
                    let Some(r) = idioms::ret(inner) else {
                        continue;
                    };
                    match &cond {
                        Cond::Compare { var, value, eq }
                            if var == "$scheme"
                                && ((*eq && value == "http") || (!eq && value == "https")) =>
                        {
                            if let Some(w) = self.whole_return(inner, r, &chain, &vars) {
                                self.use_(d);
                                plain_whole = Some(w);
                            }
                        }
                        Cond::Compare { var, value, .. }
                            if var == "$host" || var == "$http_host" =>
                        {
                            let value = value.to_ascii_lowercase();
                            if !names.iter().any(|n| n.eq_ignore_ascii_case(&value)) {
                                self.note(d, Status::NotSupported, format!("a host check for {value}, which is not one of this server's names"), "write a server with that name");
                                continue;
                            }
                            if let Some(w) = self.whole_return(inner, r, &chain, &vars) {
                                self.use_(d);
                                let v = match w {
                                    Whole::Return(v, _) => v,
                                    Whole::RedirectHttps(port, _) => redirect_value(
                                        301,
                                        &format!(
                                            "https://$host{}$request_uri",
                                            port.map(|p| format!(":{p}")).unwrap_or_default()
                                        ),
                                    ),
                                };
                                host_splits.push((cond.clone(), v, d));
                            }
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }

        // Locations (unless every request is answered before them).
        let sctx = ServerCtx {
            name: Some(first_name),
            hsts_from_server: hsts_value.is_some(),
        };
        let locations = if whole.is_some() {
            for d in here.iter().filter(|d| d.name == "location") {
                self.note(
                    d,
                    Status::NotNeeded,
                    "never reached: the server answers every request before choosing a location",
                    "",
                );
            }
            self.dead_server_settings(here);
            Vec::new()
        } else {
            self.server_locations(srv, &chain, &sctx)
        };

        // Server-level settings.
        let mut base = Block::new(format!("server, {place}"));
        if proxy_protocol {
            // vigil takes it per server (every server on an address must
            // agree, as nginx's listen options are per address).
            base.set(
                "proxy_protocol",
                Value::Bool(true),
                "listen ... proxy_protocol",
            );
        }
        self.edge_server(&chain, &mut base);
        if whole.is_none() {
            if let Some(rules) = self.rewrites(here, &vars) {
                base.set("rewrite", rules, "");
            }
        }
        let mut locations = locations;
        drop_missing_named_pages(&mut base, &mut locations);
        let mut body_size = None;
        if let Some(d) = here.iter().find(|d| d.name == "client_max_body_size") {
            if let Some(s) = d.arg(0).and_then(|a| values::size(a).ok()) {
                self.use_(d);
                body_size = Some((Value::str(s), d.place.to_string()));
            }
        }
        for (name, key) in [
            ("client_header_timeout", "client_header_timeout"),
            ("client_body_timeout", "client_body_timeout"),
            ("send_timeout", "send_timeout"),
        ] {
            if let Some(d) = here.iter().find(|d| d.name == name) {
                if let Some(t) = d.arg(0).and_then(|a| values::parse_time(a).ok()) {
                    self.server_setting(key, values::duration(t), d);
                }
            }
        }
        let find = |name: &str| here.iter().find(|d| d.name == name);
        self.body_buffering(
            find("client_body_buffer_size"),
            find("client_body_temp_path"),
            true,
        );
        if let Some(d) = here
            .iter()
            .find(|d| d.name == "large_client_header_buffers")
        {
            if let Some(s) = d.arg(1).and_then(|a| values::size(a).ok()) {
                self.server_setting("max_header_size", s, d);
            }
        }
        self.common_settings(&Chain::new(vec![here]));
        for d in here.iter().filter(|d| d.name == "error_log") {
            self.error_log(d);
        }

        let default = listens.iter().any(|l| l.default);
        if default && listens.iter().any(|l| !l.default) {
            self.report.add(
                &srv.place,
                "server",
                Status::Approximated,
                "default_server on some of its listen addresses only: vigil makes it the default on all of them",
                "",
            );
        }
        let variants: Vec<(bool, Vec<String>)> = [false, true]
            .into_iter()
            .map(|ssl| {
                (
                    ssl,
                    listens
                        .iter()
                        .filter(|l| l.ssl == ssl)
                        .map(|l| l.addr.clone())
                        .collect::<Vec<_>>(),
                )
            })
            .filter(|(ssl, addrs)| !addrs.is_empty() && (!ssl || tls.is_some()))
            .collect();

        // Host-check servers first: vigil, like nginx, prefers exact names
        // whatever the order, but a reader sees them next to the original.
        let mut own_names = names.clone();
        let mut own_default = default;
        for (cond, value, d) in &host_splits {
            let Cond::Compare {
                value: host, eq, ..
            } = cond
            else {
                continue;
            };
            let host = host.to_ascii_lowercase();
            let (split_names, split_default) = if *eq {
                own_names.retain(|n| !n.eq_ignore_ascii_case(&host));
                (vec![host.clone()], false)
            } else {
                let others: Vec<String> = own_names
                    .iter()
                    .filter(|n| !n.eq_ignore_ascii_case(&host))
                    .cloned()
                    .collect();
                own_names = vec![host.clone()];
                let was_default = own_default;
                own_default = false;
                (others, was_default)
            };
            for (ssl, addrs) in &variants {
                let mut b = Block::new(format!(
                    "server, {place}: requests for which `{}` ({}) holds",
                    d.summary(),
                    d.place
                ));
                b.set("listen", Value::strs(addrs), "");
                if !split_names.is_empty() {
                    b.set("server_name", Value::strs(&split_names), "");
                }
                if split_default {
                    b.set("default_server", Value::Bool(true), "");
                }
                if *ssl {
                    if let Some(t) = &tls {
                        b.set("tls", t.clone(), "");
                    }
                }
                let mut loc = Block::new(format!("{}, {}", d.summary(), d.place));
                loc.set("path", Value::str("/"), "");
                loc.set("return", value.clone(), "");
                self.out.servers.push(Server {
                    block: b,
                    locations: vec![loc],
                });
            }
        }

        for (ssl, addrs) in &variants {
            let mut b = base.clone();
            if *ssl {
                b.comment = vec![format!("server, {place} (its TLS listeners)")];
            } else if variants.len() > 1 {
                b.comment = vec![format!("server, {place} (its plain-HTTP listeners)")];
            }
            b.set("listen", Value::strs(addrs), "");
            if !own_names.is_empty() {
                b.set("server_name", Value::strs(&own_names), "");
            }
            if own_default {
                b.set("default_server", Value::Bool(true), "");
            }
            if let Some((v, note)) = &body_size {
                b.set("client_max_body_size", v.clone(), note.clone());
            }
            let this_whole = if *ssl {
                whole.as_ref()
            } else {
                plain_whole.as_ref().or(whole.as_ref())
            };
            let mut locs = locations.clone();
            match this_whole {
                Some(Whole::RedirectHttps(port, note)) if !*ssl => {
                    b.set("redirect_https", Value::Bool(true), note.clone());
                    if let Some(p) = port {
                        b.set("https_port", Value::Int((*p).into()), "");
                    }
                    locs.clear();
                }
                Some(Whole::RedirectHttps(port, note)) => {
                    let mut loc = Block::new(note.clone());
                    loc.set("path", Value::str("/"), "");
                    loc.set(
                        "return",
                        redirect_value(
                            301,
                            &format!(
                                "https://$host{}$request_uri",
                                port.map(|p| format!(":{p}")).unwrap_or_default()
                            ),
                        ),
                        "",
                    );
                    locs = vec![loc];
                }
                Some(Whole::Return(v, note)) => {
                    let mut loc = Block::new(note.clone());
                    loc.set("path", Value::str("/"), "");
                    loc.set("return", v.clone(), "");
                    locs = vec![loc];
                }
                None => {}
            }
            if *ssl {
                if let Some(t) = &tls {
                    b.set("tls", t.clone(), "");
                }
                if let Some(h) = &hsts_value {
                    b.set(
                        "hsts",
                        Value::str(h.clone()),
                        "add_header Strict-Transport-Security",
                    );
                }
            }
            if locs.is_empty() && b.get("redirect_https").is_none() {
                continue;
            }
            self.out.servers.push(Server {
                block: b,
                locations: locs,
            });
        }
        base.keys.clear();
    }

    /// A server-level `return`: what answers every request.
    fn whole_return(
        &mut self,
        d: &'a Directive,
        r: Ret,
        chain: &Chain<'a>,
        vars: &VarContext<'_>,
    ) -> Option<Whole> {
        if let Ret::Redirect(status, target) = &r {
            if let Ok(red) = idioms::redirect(*status, target, vars) {
                if let Some(port) = idioms::https_redirect(&red) {
                    self.use_(d);
                    return Some(Whole::RedirectHttps(
                        port,
                        format!("{}, {}", d.summary(), d.place),
                    ));
                }
            }
        }
        let v = self.return_value(d, r, chain, vars)?;
        Some(Whole::Return(v, format!("{}, {}", d.summary(), d.place)))
    }

    fn whole_redirect(&mut self, d: &'a Directive, r: Redirect) -> Whole {
        if let Some(c) = &r.caveat {
            self.report
                .add(&d.place, d.summary(), Status::Approximated, c.clone(), "");
        }
        if let Some(port) = idioms::https_redirect(&r) {
            return Whole::RedirectHttps(port, format!("{}, {}", d.summary(), d.place));
        }
        Whole::Return(
            redirect_value(r.status, &r.location),
            format!("{}, {}", d.summary(), d.place),
        )
    }
}

fn redirect_value(status: u16, location: &str) -> Value {
    Value::Inline(vec![
        ("status".into(), Value::Int(status.into())),
        ("location".into(), Value::str(location)),
    ])
}
