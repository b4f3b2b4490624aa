//! File → [`Config`]: every check, cross-reference and default lives here,
//! one module per section of the file; this one runs them in order and
//! checks what crosses sections (`[vrrp]` tracking an upstream).

mod edge;
mod location;
mod server;
mod settings;
mod shaping;
mod static_site;
mod upstream;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::error::{Problems, join, line_at, line_of_key};
use super::file::*;
use super::*;

pub(super) fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let file = deserialize(text, path)?;
    let base_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let mut problems = Problems::new();
    let mut warnings = Vec::new();
    let config = Validator {
        problems: &mut problems,
        warnings: &mut warnings,
        base_dir: &base_dir,
        edge: edge::EdgeState::default(),
        compression: Default::default(),
        maps: Vec::new(),
    }
    .config(file, path);
    problems.finish(path, text)?;
    // Every problem is recorded before a `None` is returned, so an empty
    // problem list means the config was built.
    let mut config = config.ok_or_else(|| ConfigError::Invalid {
        path: path.to_owned(),
        problems: vec![Problem {
            key: String::new(),
            line: None,
            reason: "invalid config".into(),
        }],
    })?;
    config.warnings = warnings
        .into_iter()
        .map(|(key, reason)| {
            let place = match line_of_key(text, &key) {
                Some(line) => format!("{}:{line}", path.display()),
                None => path.display().to_string(),
            };
            format!("{place}: {key}: {reason}")
        })
        .collect();
    Ok(config)
}

/// Deserializes with the key path of any type error.
fn deserialize(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
    let invalid = |key: String, line: Option<usize>, reason: String| ConfigError::Invalid {
        path: path.to_owned(),
        problems: vec![Problem { key, line, reason }],
    };
    let de = toml::Deserializer::parse(text).map_err(|e| {
        invalid(
            String::new(),
            e.span().map(|s| line_at(text, s.start)),
            e.message().trim().to_owned(),
        )
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let line = inner.span().map(|s| line_at(text, s.start));
        let key = if key == "." { String::new() } else { key };
        invalid(key, line, inner.message().trim().to_owned())
    })
}

struct Validator<'a> {
    problems: &'a mut Problems,
    /// `(key, why)`: accepted, but worth telling (see [`Config::warnings`]).
    warnings: &'a mut Vec<(String, String)>,
    base_dir: &'a Path,
    edge: edge::EdgeState,
    /// `[http]`'s compression keys, inherited by every server.
    compression: compression::CompressionKeys,
    /// `[map.*]` names, in `Config::maps` order: templates may use them.
    maps: Vec<String>,
}

impl Validator<'_> {
    fn config(&mut self, file: ConfigFile, path: &Path) -> Option<Config> {
        let http = self.http(&file.http);
        self.edge.has_resolver = !http.resolver.is_empty();
        self.compression = file.http.compression();
        self.compression_at("http", &self.compression.clone(), &Default::default());
        let log = self.log(&file.log);
        let admin = file.admin.as_ref().and_then(|a| self.admin(a));
        let vrrp = file
            .vrrp
            .as_ref()
            .and_then(|v| super::vrrp::validate(v, "vrrp", self.problems));

        // Maps first: zone keys may use them (nginx's allow-list idiom,
        // `map ... $limit_key { trusted ""; default $binary_remote_addr; }`).
        let maps = self.maps(&file.map);
        self.edge_globals(&file);

        let mut upstreams = BTreeMap::new();
        for (name, up) in &file.upstream {
            if let Some(u) = self.upstream(name, up) {
                upstreams.insert(name.clone(), Arc::new(u));
            }
        }

        let mut servers = Vec::new();
        for (i, server) in file.server.iter().enumerate() {
            if let Some(s) = self.server(i, server, &mut upstreams) {
                servers.push(s);
            }
        }
        if file.server.is_empty() && file.vrrp.is_none() {
            self.problems.add(
                "",
                "nothing to do: the config has no [[server]] and no [vrrp] section",
            );
        }
        let listeners = self.listeners(&file.server, &servers);
        if let Some(v) = &vrrp {
            self.check_tracking(v, &upstreams, !file.server.is_empty());
        }

        if !self.problems.is_empty() {
            return None;
        }
        Some(Config {
            path: path.to_owned(),
            servers: servers.into_iter().map(|(s, _)| Arc::new(s)).collect(),
            listeners,
            upstreams,
            http,
            log,
            admin,
            vrrp,
            limit_req_zones: self.edge.req_zones(),
            limit_conn_zones: self.edge.conn_zones(),
            maps,
            warnings: Vec::new(),
        })
    }

    /// Checks the compression keys written at `key` (a level of the
    /// file), and returns them merged over `outer` with the settings they
    /// make. A bad key is reported once, at the level that wrote it.
    fn compression_at(
        &mut self,
        key: &str,
        own: &compression::CompressionKeys,
        outer: &compression::CompressionKeys,
    ) -> (compression::CompressionKeys, Option<Arc<Compression>>) {
        if let Err((name, reason)) = compression::build(own) {
            self.problems.add(join(key, name), reason);
        }
        let merged = own.inherit(outer);
        let settings = compression::build(&merged).ok().flatten().map(Arc::new);
        (merged, settings)
    }

    /// Parses a template at `key` with the maps in scope, and the groups of
    /// `captures` (a regex location's, a rewrite's) as `$1`, `$name`.
    fn template(
        &mut self,
        key: impl Into<String>,
        text: &str,
        captures: Option<&regex::Regex>,
    ) -> Option<Template> {
        let scope = template::Scope {
            maps: &self.maps,
            captures,
        };
        let parsed = Template::parse_in(text, scope);
        self.problems.check(key, parsed)
    }

    /// `[map.*]`: names first (maps may use each other), then each map,
    /// then cycles.
    fn maps(&mut self, files: &BTreeMap<String, map::MapFile>) -> Vec<map::MapDef> {
        self.maps = files.keys().cloned().collect();
        let mut defs = Vec::new();
        for (name, f) in files {
            let key = join("map", name);
            let valid_name = !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid_name {
                self.problems.add(
                    &key,
                    format!("{name:?} is not a variable name (letters, digits, _)"),
                );
                continue;
            }
            if Template::parse(&format!("${{{name}}}")).is_ok() {
                self.problems.add(
                    &key,
                    format!("${name} is a built-in variable; choose another name"),
                );
                continue;
            }
            match map::MapDef::build(name, f, &self.maps) {
                Ok(def) => defs.push(def),
                Err(problems) => {
                    for p in problems {
                        self.problems.add(join(&key, &p.key), p.reason);
                    }
                }
            }
        }
        if defs.len() == files.len() {
            let deps: Vec<Vec<usize>> = defs.iter().map(|d| d.uses().collect()).collect();
            if let Some((at, chain)) = map::find_cycle(&self.maps, &deps) {
                self.problems.add(
                    join(&join("map", &self.maps[at]), "source"),
                    format!("maps depend on each other in a loop: ${chain}"),
                );
            }
        }
        defs
    }

    /// Relative paths are relative to the config file's directory.
    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base_dir.join(p)
        }
    }

    /// `[vrrp.instance.track]` refers to the proxy: check the references.
    fn check_tracking(
        &mut self,
        vrrp: &super::vrrp::VrrpConfig,
        upstreams: &BTreeMap<String, Arc<UpstreamConfig>>,
        has_servers: bool,
    ) {
        for (i, instance) in vrrp.instances.iter().enumerate() {
            let key = format!("vrrp.instance[{i}].track");
            for (name, _) in &instance.track.upstreams {
                if !upstreams.contains_key(name) {
                    let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
                    self.problems.add(
                        join(&join(&key, "upstreams"), name),
                        format!(
                            "unknown upstream {name:?}; defined: {}",
                            if known.is_empty() {
                                "none".into()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                }
            }
            if instance.track.proxy.is_some() && !has_servers {
                self.problems.add(
                    join(&key, "proxy"),
                    "there is no [[server]] to probe; remove proxy or add a server",
                );
            }
        }
    }
}

fn dur(v: Option<units::ConfigDuration>, default_secs: u64) -> Duration {
    v.map_or(Duration::from_secs(default_secs), |d| d.0)
}
