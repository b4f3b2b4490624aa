//! Choosing the virtual server and the location for a request, exactly as
//! nginx does. Pure functions over tables built once per config load.
//!
//! Virtual server (ngx_http_core_module "server_name"): exact name, then
//! the longest `*.suffix` wildcard, then the longest `prefix.*` wildcard,
//! then the first matching regex in file order, else the default server.
//!
//! Location ("location" directive): an `=` exact match stops the search;
//! otherwise the longest matching prefix is remembered, and if it is `^~`
//! regexes are skipped; regexes are tried in file order and the first
//! match wins; else the remembered prefix.

use regex::Regex;

use super::fast_map::FastMap;
use crate::config::{ListenerConfig, Location, LocationPattern, ServerName, VirtualServer};

/// The virtual servers on one listen address.
#[derive(Debug, Clone)]
pub struct VirtualHosts {
    exact: FastMap<String, usize>,
    /// `(".example.com", also_bare, server)`, longest suffix first.
    suffixes: Vec<(String, bool, usize)>,
    /// `("www.example.", server)`, longest prefix first.
    prefixes: Vec<(String, usize)>,
    regexes: Vec<(Regex, usize)>,
    default: usize,
    /// One server on the address: every request goes to it, so the host
    /// needs no normalising or lookup (nginx skips the search too).
    single: bool,
}

impl VirtualHosts {
    /// Builds the table for `listener`; server indexes are positions in
    /// `servers` (the config's server list).
    pub fn new(listener: &ListenerConfig, servers: &[std::sync::Arc<VirtualServer>]) -> Self {
        let mut table = VirtualHosts {
            exact: FastMap::default(),
            suffixes: Vec::new(),
            prefixes: Vec::new(),
            regexes: Vec::new(),
            default: listener.default_server,
            single: listener.servers.len() == 1,
        };
        for &i in &listener.servers {
            for name in &servers[i].names {
                match name {
                    // The first server to claim a name keeps it (nginx warns
                    // "conflicting server name ... ignored").
                    ServerName::Exact(n) => {
                        table.exact.entry(n.clone()).or_insert(i);
                    }
                    ServerName::Suffix { suffix, also_bare } => {
                        table.suffixes.push((suffix.clone(), *also_bare, i))
                    }
                    ServerName::Prefix(p) => table.prefixes.push((p.clone(), i)),
                    ServerName::Regex(r) => table.regexes.push((r.clone(), i)),
                }
            }
        }
        // Stable sorts: among equal lengths the first in the file wins.
        table
            .suffixes
            .sort_by_key(|(s, _, _)| std::cmp::Reverse(s.len()));
        table
            .prefixes
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        table
    }

    /// The server for a `Host` / `:authority` value (any case, with or
    /// without port); `None` means no host was sent.
    pub fn select(&self, host: Option<&str>) -> usize {
        if self.single {
            return self.default;
        }
        let Some(host) = host.map(normalize_host).filter(|h| !h.is_empty()) else {
            return self.default;
        };
        if let Some(&i) = self.exact.get(host.as_ref()) {
            return i;
        }
        for (suffix, also_bare, i) in &self.suffixes {
            if (host.ends_with(suffix.as_str()) && host.len() > suffix.len())
                || (*also_bare && host == suffix[1..])
            {
                return *i;
            }
        }
        for (prefix, i) in &self.prefixes {
            if host.starts_with(prefix.as_str()) && host.len() > prefix.len() {
                return *i;
            }
        }
        for (re, i) in &self.regexes {
            if re.is_match(&host) {
                return *i;
            }
        }
        self.default
    }
}

/// Lowercases and strips the port and a trailing dot. Borrowed when the
/// host is already in that form (the usual case).
pub fn normalize_host(host: &str) -> std::borrow::Cow<'_, str> {
    let without_port = if host.starts_with('[') {
        // IPv6 literal: keep the brackets, drop ":port" after them.
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        match host.rfind(':') {
            Some(i) => &host[..i],
            None => host,
        }
    };
    let trimmed = without_port.strip_suffix('.').unwrap_or(without_port);
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(trimmed)
    }
}

/// The locations of one server, arranged for nginx's search order.
#[derive(Debug, Clone, Default)]
pub struct Locations {
    exact: FastMap<String, usize>,
    /// `(prefix, skip_regex, location)`, longest prefix first.
    prefixes: Vec<(String, bool, usize)>,
    regexes: Vec<(Regex, usize)>,
    named: FastMap<String, usize>,
}

impl Locations {
    pub fn new(locations: &[Location]) -> Self {
        let mut table = Locations::default();
        for (i, loc) in locations.iter().enumerate() {
            match &loc.pattern {
                LocationPattern::Exact(p) => {
                    table.exact.insert(p.clone(), i);
                }
                LocationPattern::Prefix { prefix, skip_regex } => {
                    table.prefixes.push((prefix.clone(), *skip_regex, i))
                }
                LocationPattern::Regex(r) => table.regexes.push((r.clone(), i)),
                LocationPattern::Named(n) => {
                    table.named.insert(n.clone(), i);
                }
            }
        }
        table
            .prefixes
            .sort_by_key(|(p, _, _)| std::cmp::Reverse(p.len()));
        table
    }

    /// The location for a normalized path, or `None` (→ 404).
    pub fn find(&self, path: &str) -> Option<usize> {
        if let Some(&i) = self.exact.get(path) {
            return Some(i);
        }
        let longest = self
            .prefixes
            .iter()
            .find(|(prefix, _, _)| path.starts_with(prefix.as_str()));
        if let Some((_, true, i)) = longest {
            return Some(*i);
        }
        for (re, i) in &self.regexes {
            if re.is_match(path) {
                return Some(*i);
            }
        }
        longest.map(|(_, _, i)| *i)
    }

    /// A named location (`@app`).
    pub fn named(&self, name: &str) -> Option<usize> {
        self.named.get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::config::Config;

    fn config(text: &str) -> Config {
        Config::parse(text, Path::new("/tmp/t.toml")).unwrap()
    }

    fn locations(paths: &[&str]) -> (Locations, Vec<String>) {
        let mut text = String::from("[[server]]\nlisten = [\"8080\"]\n");
        for p in paths {
            text.push_str(&format!(
                "[[server.location]]\npath = {p:?}\nreturn = {{ status = 200 }}\n"
            ));
        }
        let c = config(&text);
        let labels = c.servers[0]
            .locations
            .iter()
            .map(|l| l.label.clone())
            .collect();
        (Locations::new(&c.servers[0].locations), labels)
    }

    /// The example from nginx's documentation of the location directive:
    /// "/" → A, "/index.html" → B, "/documents/document.html" → C,
    /// "/images/1.gif" → D, "/documents/1.jpg" → E.
    #[test]
    fn nginx_documentation_example() {
        let (table, labels) = locations(&[
            "= /",                   // A
            "/",                     // B
            "/documents/",           // C
            "^~ /images/",           // D
            "~* \\.(gif|jpg|jpeg)$", // E
        ]);
        let find = |p: &str| table.find(p).map(|i| labels[i].as_str());
        assert_eq!(find("/"), Some("= /"));
        assert_eq!(find("/index.html"), Some("/"));
        assert_eq!(find("/documents/document.html"), Some("/documents/"));
        assert_eq!(find("/images/1.gif"), Some("^~ /images/"));
        assert_eq!(find("/documents/1.jpg"), Some("~* \\.(gif|jpg|jpeg)$"));
        assert_eq!(find("/documents/1.JPG"), Some("~* \\.(gif|jpg|jpeg)$"));
    }

    #[test]
    fn precedence_rules() {
        let (table, labels) = locations(&[
            "/api/",
            "/api/v2/",
            "~ ^/api/v2/special",
            "~ ^/api/",
            "^~ /static/",
            "~ \\.css$",
            "= /exact",
            "/exact",
            "@named",
        ]);
        let find = |p: &str| table.find(p).map(|i| labels[i].as_str());
        // Regexes beat a plain prefix, first regex in file order wins.
        assert_eq!(find("/api/v2/special/x"), Some("~ ^/api/v2/special"));
        assert_eq!(find("/api/v2/other"), Some("~ ^/api/"));
        // ^~ as longest prefix skips the regexes.
        assert_eq!(find("/static/site.css"), Some("^~ /static/"));
        // Regex applies when the longest prefix is plain.
        assert_eq!(find("/other/site.css"), Some("~ \\.css$"));
        // Exact wins over the equal prefix; the prefix still takes longer paths.
        assert_eq!(find("/exact"), Some("= /exact"));
        assert_eq!(find("/exactly"), Some("/exact"));
        // Nothing matches: 404; named locations are never matched by path.
        assert_eq!(find("/nothing"), None);
        assert_eq!(find("@named"), None);
        assert_eq!(
            table.named("named").map(|i| labels[i].as_str()),
            Some("@named")
        );
        // Matching is case-sensitive for prefixes.
        assert_eq!(find("/API/"), None);
    }

    #[test]
    fn shorter_prefix_is_remembered_when_longer_does_not_match() {
        let (table, labels) = locations(&["/", "/a/b/c/", "/a/"]);
        let find = |p: &str| table.find(p).map(|i| labels[i].as_str());
        assert_eq!(find("/a/b/x"), Some("/a/"));
        assert_eq!(find("/a/b/c/d"), Some("/a/b/c/"));
        assert_eq!(find("/z"), Some("/"));
    }

    #[test]
    fn virtual_host_selection() {
        let c = config(
            r#"
[[server]]
listen = ["8080"]
server_name = ["fallback.test"]
root = "/0"
[[server]]
listen = ["8080"]
server_name = ["example.com", "www.example.com"]
root = "/1"
[[server]]
listen = ["8080"]
server_name = ["*.example.com"]
root = "/2"
[[server]]
listen = ["8080"]
server_name = ["*.api.example.com", "mail.*"]
root = "/3"
[[server]]
listen = ["8080"]
server_name = ["~^node\\d+\\.test$", ".org.test"]
default_server = true
root = "/4"
"#,
        );
        let servers: Vec<Arc<VirtualServer>> = c.servers.clone();
        let hosts = VirtualHosts::new(&c.listeners[0], &servers);
        for (host, want) in [
            (Some("example.com"), 1),
            (Some("EXAMPLE.com:8080"), 1),
            (Some("example.com."), 1),
            (Some("www.example.com"), 1),
            (Some("shop.example.com"), 2),
            (Some("a.b.example.com"), 2),
            (Some("v1.api.example.com"), 3),
            (Some("mail.example.net"), 3),
            (Some("node12.test"), 4),
            (Some("org.test"), 4),
            (Some("x.org.test"), 4),
            (Some("unknown.test"), 4),
            (Some("fallback.test"), 0),
            (Some("[::1]:8080"), 4),
            (None, 4),
            (Some(""), 4),
        ] {
            assert_eq!(hosts.select(host), want, "{host:?}");
        }
    }

    #[test]
    fn default_server_is_the_first_without_a_flag() {
        let c = config(
            "[[server]]\nlisten = [\"8080\"]\nserver_name = [\"a.test\"]\nroot = \"/a\"\n\
             [[server]]\nlisten = [\"8080\"]\nserver_name = [\"b.test\"]\nroot = \"/b\"\n",
        );
        let hosts = VirtualHosts::new(&c.listeners[0], &c.servers);
        assert_eq!(hosts.select(Some("c.test")), 0);
        assert_eq!(hosts.select(Some("b.test")), 1);
    }

    #[test]
    fn a_lone_server_takes_every_host() {
        // As nginx: with one server on the address its names never
        // decide anything, so no host is looked up.
        let c = config(
            "[[server]]\nlisten = [\"8080\"]\nserver_name = [\"a.test\"]\nroot = \"/a\"\n\
             [[server]]\nlisten = [\"8081\"]\nserver_name = [\"b.test\"]\nroot = \"/b\"\n",
        );
        for (listener, want) in [(0, 0), (1, 1)] {
            let hosts = VirtualHosts::new(&c.listeners[listener], &c.servers);
            for host in [
                Some("a.test"),
                Some("B.TEST:8081"),
                Some("other"),
                Some(""),
                None,
            ] {
                assert_eq!(hosts.select(host), want, "{listener} {host:?}");
            }
        }
    }

    #[test]
    fn host_normalization() {
        assert_eq!(normalize_host("Example.COM:80"), "example.com");
        assert_eq!(normalize_host("[::1]:443"), "[::1]");
        assert_eq!(normalize_host("[::1]"), "[::1]");
        assert_eq!(normalize_host("a.test."), "a.test");
        assert!(matches!(
            normalize_host("a.test"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
