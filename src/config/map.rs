//! `[map.<name>]`: nginx's `map $source $name { ... }`, a variable whose
//! value is looked up from another template's value. Parsed and checked
//! here; [`MapDef::select`] is the pure lookup the proxy runs (lazily,
//! once per request).
//!
//! ```toml
//! [map.connection_upgrade]          # map $http_upgrade $connection_upgrade {
//! source = "$http_upgrade"
//! default = "upgrade"               #     default upgrade;
//! entries = [["", "close"]]         #     ''      close;
//! ```                               # }
//!
//! Lookup order, as nginx: an exact key (compared ignoring case), then —
//! with `hostnames = true` — the longest `*.example.com` / `.example.com`
//! key, then the longest `www.example.*` key, then the first matching
//! regex (`~` case-sensitive, `~*` not) in file order, else `default`.
//! A key starting with `\` is literal (`\~tilde`).

use std::collections::HashMap;

use regex::{Regex, RegexBuilder};
use serde::Deserialize;

use super::template::{Captures, Scope, Template};

/// `[map.<name>]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapFile {
    /// The template whose value is looked up: `"$http_upgrade"`, `"$host"`.
    pub source: String,
    /// The value when no key matches (nginx: empty).
    pub default: Option<String>,
    /// `[key, value]` pairs, in order (regexes are tried in this order).
    #[serde(default)]
    pub entries: Vec<(String, String)>,
    /// Keys may be host-name masks (`*.example.com`, `.example.com`,
    /// `mail.*`).
    #[serde(default)]
    pub hostnames: bool,
}

/// A validated map.
#[derive(Debug, Clone)]
pub struct MapDef {
    pub name: String,
    pub source: Template,
    /// Lowercased exact keys.
    exact: HashMap<String, Template>,
    /// `(".example.com", also_bare, value)`, longest first.
    suffixes: Vec<(String, bool, Template)>,
    /// `("mail.", value)`, longest first.
    prefixes: Vec<(String, Template)>,
    regexes: Vec<(Regex, Template)>,
    pub default: Template,
}

/// One problem in a map: where (`None`: the map itself, `Some(i)`: entry
/// `i`; `source`/`default` named) and why.
#[derive(Debug, PartialEq, Eq)]
pub struct MapProblem {
    pub key: String,
    pub reason: String,
}

impl MapDef {
    /// Builds map `name` from `f`; `maps` are all map names (for values
    /// and sources that use other maps). Every problem is returned.
    pub fn build(name: &str, f: &MapFile, maps: &[String]) -> Result<MapDef, Vec<MapProblem>> {
        let mut problems = Vec::new();
        let plain = Scope {
            maps,
            captures: None,
        };
        let mut template =
            |key: String, text: &str, scope: Scope<'_>| match Template::parse_in(text, scope) {
                Ok(t) => Some(t),
                Err(reason) => {
                    problems.push(MapProblem { key, reason });
                    None
                }
            };
        let source = template("source".into(), &f.source, plain);
        let default = template("default".into(), f.default.as_deref().unwrap_or(""), plain);
        let mut exact = HashMap::new();
        let mut suffixes = Vec::new();
        let mut prefixes = Vec::new();
        let mut regexes = Vec::new();
        let mut entry_problems = Vec::new();
        for (i, (key, value)) in f.entries.iter().enumerate() {
            let at = format!("entries[{i}]");
            if let Some(pattern) = key.strip_prefix('~') {
                let (pattern, insensitive) = match pattern.strip_prefix('*') {
                    Some(p) => (p, true),
                    None => (pattern, false),
                };
                let re = match RegexBuilder::new(pattern)
                    .case_insensitive(insensitive)
                    .build()
                {
                    Ok(re) => re,
                    Err(e) => {
                        entry_problems.push(MapProblem {
                            key: at,
                            reason: format!("bad regex {pattern:?}: {e}"),
                        });
                        continue;
                    }
                };
                let scope = Scope {
                    maps,
                    captures: Some(&re),
                };
                if let Some(v) = template(at, value, scope) {
                    regexes.push((re, v));
                }
                continue;
            }
            let Some(v) = template(at.clone(), value, plain) else {
                continue;
            };
            let key = key.strip_prefix('\\').unwrap_or(key).to_ascii_lowercase();
            if f.hostnames {
                if let Some(rest) = key.strip_prefix("*.") {
                    suffixes.push((format!(".{rest}"), false, v));
                    continue;
                }
                if key.starts_with('.') && key.len() > 1 {
                    suffixes.push((key.clone(), true, v));
                    continue;
                }
                if let Some(rest) = key.strip_suffix(".*") {
                    prefixes.push((format!("{rest}."), v));
                    continue;
                }
            }
            if exact.insert(key.clone(), v).is_some() {
                entry_problems.push(MapProblem {
                    key: at,
                    reason: format!("duplicate key {key:?}"),
                });
            }
        }
        problems.extend(entry_problems);
        let (Some(source), Some(default)) = (source, default) else {
            return Err(problems);
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        suffixes.sort_by_key(|(s, _, _)| std::cmp::Reverse(s.len()));
        prefixes.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Ok(MapDef {
            name: name.to_owned(),
            source,
            exact,
            suffixes,
            prefixes,
            regexes,
            default,
        })
    }

    /// The value template for source value `value`, with the captures of
    /// the regex key that matched (its value may use `$1`).
    pub fn select(&self, value: &str) -> (&Template, Option<Captures>) {
        let lower;
        let key = if value.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = value.to_ascii_lowercase();
            lower.as_str()
        } else {
            value
        };
        if let Some(t) = self.exact.get(key) {
            return (t, None);
        }
        let host = key.strip_suffix('.').unwrap_or(key);
        for (suffix, also_bare, t) in &self.suffixes {
            if (host.ends_with(suffix.as_str()) && host.len() > suffix.len())
                || (*also_bare && host == &suffix[1..])
            {
                return (t, None);
            }
        }
        for (prefix, t) in &self.prefixes {
            if host.starts_with(prefix.as_str()) && host.len() > prefix.len() {
                return (t, None);
            }
        }
        for (re, t) in &self.regexes {
            if let Some(c) = Captures::of(re, value) {
                return (t, Some(c));
            }
        }
        (&self.default, None)
    }

    /// The maps this one's source and values use (for cycle checks).
    pub fn uses(&self) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(&self.source)
            .chain(std::iter::once(&self.default))
            .chain(self.exact.values())
            .chain(self.suffixes.iter().map(|(_, _, t)| t))
            .chain(self.prefixes.iter().map(|(_, t)| t))
            .chain(self.regexes.iter().map(|(_, t)| t))
            .flat_map(|t| t.vars())
            .filter_map(|v| match v {
                super::template::Var::Map(i) => Some(*i),
                _ => None,
            })
    }
}

/// A map that depends on itself through other maps, as the chain of
/// names (`a → b → a`), if any. `deps[i]` are the maps map `i` uses.
pub fn find_cycle(names: &[String], deps: &[Vec<usize>]) -> Option<(usize, String)> {
    // 0 = unvisited, 1 = on the current path, 2 = done.
    fn visit(i: usize, deps: &[Vec<usize>], state: &mut [u8], path: &mut Vec<usize>) -> bool {
        match state[i] {
            1 => {
                path.push(i);
                return true;
            }
            2 => return false,
            _ => {}
        }
        state[i] = 1;
        path.push(i);
        for &d in &deps[i] {
            if d < deps.len() && visit(d, deps, state, path) {
                return true;
            }
        }
        path.pop();
        state[i] = 2;
        false
    }
    let mut state = vec![0u8; deps.len()];
    for start in 0..deps.len() {
        let mut path = Vec::new();
        if visit(start, deps, &mut state, &mut path) {
            let last = *path.last()?;
            let from = path.iter().position(|&p| p == last)?;
            let chain: Vec<&str> = path[from..].iter().map(|&i| names[i].as_str()).collect();
            return Some((last, chain.join(" → $")));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::config::template::{Var, Vars};

    fn map(entries: &[(&str, &str)], default: &str, hostnames: bool) -> MapDef {
        let f = MapFile {
            source: "$host".into(),
            default: Some(default.into()),
            entries: entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            hostnames,
        };
        MapDef::build("m", &f, &["m".into()]).unwrap()
    }

    /// Renders a selected value with the captures it came with.
    struct Caps(Option<Captures>);
    impl Vars for Caps {
        fn write_var(&self, var: &Var, out: &mut String) {
            if let (Var::Capture(i), Some(c)) = (var, &self.0) {
                out.push_str(c.get(*i).unwrap_or(""));
            }
        }
    }

    fn lookup(m: &MapDef, value: &str) -> String {
        let (t, caps) = m.select(value);
        t.render(&Caps(caps))
    }

    #[test]
    fn websocket_idiom() {
        let m = map(&[("", "close")], "upgrade", false);
        assert_eq!(lookup(&m, ""), "close");
        assert_eq!(lookup(&m, "websocket"), "upgrade");
    }

    #[test]
    fn nginx_lookup_order() {
        let m = map(
            &[
                ("~^www\\.(?<site>.+)$", "regex $site"),
                ("*.example.com", "wild suffix"),
                ("www.example.com", "exact"),
                ("mail.*", "wild prefix"),
                (".example.org", "dot"),
                ("~*^API\\.", "api"),
                ("\\~tilde", "literal"),
            ],
            "none",
            true,
        );
        assert_eq!(lookup(&m, "WWW.Example.com"), "exact");
        assert_eq!(lookup(&m, "a.b.example.com"), "wild suffix");
        assert_eq!(lookup(&m, "example.com"), "none");
        assert_eq!(lookup(&m, "example.org"), "dot");
        assert_eq!(lookup(&m, "x.example.org."), "dot");
        assert_eq!(lookup(&m, "mail.example.net"), "wild prefix");
        assert_eq!(lookup(&m, "www.example.net"), "regex example.net");
        assert_eq!(lookup(&m, "api.test"), "api");
        assert_eq!(lookup(&m, "~tilde"), "literal");
        assert_eq!(lookup(&m, "other"), "none");
    }

    #[test]
    fn without_hostnames_masks_are_plain_keys() {
        let m = map(&[("*.example.com", "star")], "", false);
        assert_eq!(lookup(&m, "*.example.com"), "star");
        assert_eq!(lookup(&m, "a.example.com"), "");
    }

    #[test]
    fn regexes_are_tried_in_order_and_keep_their_captures() {
        let m = map(
            &[("~^/img/(.*)$", "image $1"), ("~^/(.*)$", "other $1")],
            "",
            false,
        );
        assert_eq!(lookup(&m, "/img/a.png"), "image a.png");
        assert_eq!(lookup(&m, "/css/a.css"), "other css/a.css");
    }

    #[test]
    fn problems_name_the_entry() {
        let f = MapFile {
            source: "$nope".into(),
            default: None,
            entries: vec![
                ("~(unclosed".into(), "x".into()),
                ("~^(a)$".into(), "$2".into()),
                ("a".into(), "1".into()),
                ("A".into(), "2".into()),
                ("b".into(), "$1".into()),
            ],
            hostnames: false,
        };
        let p = MapDef::build("m", &f, &[]).unwrap_err();
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "source",
                "entries[1]",
                "entries[4]",
                "entries[0]",
                "entries[3]"
            ]
        );
        assert!(p[1].reason.contains("has 1 group"), "{}", p[1].reason);
        assert!(p[3].reason.contains("bad regex"), "{}", p[3].reason);
        assert!(p[4].reason.contains("duplicate"), "{}", p[4].reason);
    }

    #[test]
    fn cycles_are_found() {
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(find_cycle(&names, &[vec![1], vec![2], vec![]]), None);
        let (at, chain) = find_cycle(&names, &[vec![1], vec![2], vec![0]]).unwrap();
        assert_eq!(at, 0);
        assert_eq!(chain, "a → $b → $c → $a");
        assert_eq!(
            find_cycle(&names, &[vec![], vec![1], vec![]]).unwrap().1,
            "b → $b"
        );
    }

    proptest! {
        /// An exact key always wins over the default, in any case.
        #[test]
        fn exact_keys_match_ignoring_case(key in "[a-zA-Z0-9.-]{1,20}") {
            let m = map(&[(&key, "hit")], "miss", false);
            prop_assert_eq!(lookup(&m, &key.to_ascii_uppercase()), "hit");
            prop_assert_eq!(lookup(&m, &format!("{key}x")), "miss");
        }
    }
}
