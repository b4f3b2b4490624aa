//! `map` blocks → `[map.<name>]` tables (but the WebSocket idiom, which
//! vigil's `websocket = true` replaces). A map's variable is then known to
//! every template the import writes, so `proxy_set_header X $tier` keeps
//! it. vigil looks maps up as nginx does (exact keys, host masks with
//! `hostnames`, regexes in order, `default`).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::super::super::out::Block;
use super::super::super::report::Status;
use super::super::super::toml_out::Value;
use super::super::parse::Directive;
use super::super::values::{self, VarContext};
use super::Tr;

impl<'a> Tr<'a> {
    /// Translates the http level's maps; their names go to `self.maps`.
    pub(crate) fn maps(&mut self, http: &'a [Directive]) {
        let mut candidates: Vec<&'a Directive> = Vec::new();
        for d in http.iter().filter(|d| d.name == "map") {
            self.map_idiom(d);
            if !self.used(d) {
                candidates.push(d);
            }
        }
        // Maps may use one another: a map that cannot be translated takes
        // its users with it, so retry without the failures until all hold.
        let mut names: Vec<String> = candidates.iter().filter_map(|d| map_name(d)).collect();
        let results = loop {
            let results: Vec<(&'a Directive, Result<Block, String>)> = candidates
                .iter()
                .map(|d| (*d, map_table(d, &names)))
                .collect();
            let failed: Vec<String> = results
                .iter()
                .filter(|(_, r)| r.is_err())
                .filter_map(|(d, _)| map_name(d))
                .collect();
            if failed.iter().all(|f| !names.contains(f)) {
                break results;
            }
            names.retain(|n| !failed.contains(n));
        };
        let mut seen = BTreeMap::new();
        for (d, result) in results {
            let name = map_name(d).unwrap_or_default();
            match result {
                Ok(block) if names.contains(&name) && seen.insert(name.clone(), ()).is_none() => {
                    self.use_(d);
                    self.out.tables.push((vec!["map".into(), name], block));
                }
                Ok(_) => self.note(d, Status::NotSupported, "the variable is defined twice", ""),
                Err(why) => self.note(
                    d,
                    Status::NotSupported,
                    why,
                    "write the values out where the variable is used, or write the map by hand (docs/CONFIG.md, [map.<name>])",
                ),
            }
        }
        self.maps = Arc::new(names);
    }
}

/// The variable a map defines, without `$`.
fn map_name(d: &Directive) -> Option<String> {
    d.arg(1)?.strip_prefix('$').map(str::to_owned)
}

fn map_table(d: &Directive, maps: &[String]) -> Result<Block, String> {
    let (Some(source), Some(name)) = (d.arg(0), map_name(d)) else {
        return Err("expected `map $source $variable { ... }`".into());
    };
    if crate::config::template::Template::parse(&format!("${{{name}}}")).is_ok() {
        return Err(format!("${name} is one of vigil's own variables"));
    }
    let ctx = VarContext {
        server_name: None,
        proxy_host: None,
        maps,
    };
    let mut block = Block::new(format!("{}, {}", d.summary(), d.place));
    block.set("source", Value::str(values::template(source, &ctx)?), "");
    let mut entries = Vec::new();
    for line in d.children() {
        let value = line.arg(0);
        match (line.name.as_str(), value) {
            ("hostnames", None) => block.set("hostnames", Value::Bool(true), ""),
            ("volatile", None) => {
                // Evaluated at most once per request in vigil: the same
                // answer nginx's cached value gives within one request,
                // except across internal redirects.
            }
            ("include", _) => {
                return Err("include inside a map: vigil's maps hold their entries".into());
            }
            ("default", Some(v)) => {
                block.set("default", Value::str(values::template(v, &ctx)?), "");
            }
            (key, Some(v)) => {
                let captures = match key.strip_prefix("~*").or_else(|| key.strip_prefix('~')) {
                    Some(re) => Some(regex::Regex::new(re).map_err(|_| {
                        format!("the regex key {key} uses what vigil's regex engine lacks (look-around, back-references)")
                    })?),
                    None => None,
                };
                let value = values::template_in(v, &ctx, captures.as_ref())?;
                entries.push(Value::Array(vec![Value::str(key), Value::str(value)]));
            }
            (other, None) => return Err(format!("a line `{other}` without a value")),
        }
    }
    if !entries.is_empty() {
        block.set("entries", Value::Array(entries), "");
    }
    Ok(block)
}
