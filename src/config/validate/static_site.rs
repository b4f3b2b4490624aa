//! A `root` / `alias` location: index, try_files, expires, gzip_static.

use http::StatusCode;

use super::Validator;
use super::server::ServerDefaults;
use crate::config::error::{index, join};
use crate::config::file::*;
use crate::config::*;

impl Validator<'_> {
    pub(super) fn static_site(
        &mut self,
        key: &str,
        f: &LocationFile,
        pattern: &LocationPattern,
        defaults: &ServerDefaults,
    ) -> Option<StaticSite> {
        let base = if let Some(alias) = &f.alias {
            let prefix = match pattern {
                LocationPattern::Prefix { prefix, .. } => prefix.clone(),
                LocationPattern::Exact(p) => p.clone(),
                _ => {
                    self.problems.add(
                        join(key, "alias"),
                        "alias needs a prefix or exact location; use root in regex and named locations",
                    );
                    return None;
                }
            };
            // nginx pitfall: location "/img/" with alias "/srv/img" (no
            // trailing slash) maps /img/a.png to /srv/imga.png. Refuse it.
            if prefix.ends_with('/') != alias.to_string_lossy().ends_with('/') {
                self.problems.add(
                    join(key, "alias"),
                    format!(
                        "alias {:?} and location {prefix:?} must both end with / or both not \
                         (otherwise paths are glued together)",
                        alias.display()
                    ),
                );
            }
            FileBase::Alias {
                prefix,
                dir: self.resolve(alias),
            }
        } else if let Some(root) = &f.root {
            FileBase::Root(self.resolve(root))
        } else if let Some(root) = &defaults.root {
            FileBase::Root(root.clone())
        } else {
            self.problems.add(
                key,
                "this location has nothing to do: set proxy_pass, return, root or alias \
                 (or a root on the server)",
            );
            return None;
        };
        let dir = match &base {
            FileBase::Root(d) | FileBase::Alias { dir: d, .. } => d,
        };
        if !dir.is_dir() {
            // Not fatal: the directory may be mounted later, and nginx does
            // not check either; but say so, it is usually a typo.
            tracing::warn!(key, dir = %dir.display(), "static directory does not exist (yet)");
        }
        let (try_files, fallback) = match &f.try_files {
            None => (Vec::new(), None),
            Some(list) if list.len() < 2 => {
                self.problems.add(
                    join(key, "try_files"),
                    "try_files needs at least one file and a fallback, e.g. [\"$uri\", \"=404\"]",
                );
                return None;
            }
            Some(list) => {
                let (last, files) = list.split_last()?;
                let fallback = if let Some(code) = last.strip_prefix('=') {
                    match code
                        .parse::<u16>()
                        .ok()
                        .and_then(|c| StatusCode::from_u16(c).ok())
                    {
                        Some(s) => TryFallback::Status(s),
                        None => {
                            self.problems.add(
                                index(&join(key, "try_files"), list.len() - 1),
                                format!("{last:?} is not a status; write e.g. \"=404\""),
                            );
                            return None;
                        }
                    }
                } else if let Some(name) = last.strip_prefix('@') {
                    TryFallback::Named(name.to_owned())
                } else if last.starts_with('/') {
                    TryFallback::Uri(last.clone())
                } else {
                    self.problems.add(
                        index(&join(key, "try_files"), list.len() - 1),
                        "the last try_files entry must be \"=CODE\", \"@name\" or a URI starting with /",
                    );
                    return None;
                };
                for (j, file) in files.iter().enumerate() {
                    if !(file.starts_with('/') || file.starts_with("$uri")) {
                        self.problems.add(
                            index(&join(key, "try_files"), j),
                            format!("{file:?} must start with / or $uri"),
                        );
                    }
                }
                (files.iter().cloned().map(TryFile).collect(), Some(fallback))
            }
        };
        let expires = match f.expires.as_deref() {
            None | Some("off") => None,
            Some("epoch") => Some(Expires::Epoch),
            Some("max") => Some(Expires::Max),
            Some(d) => Some(Expires::After(
                self.problems.check(
                    join(key, "expires"),
                    super::units::ConfigDuration::parse(d)
                        .map(|d| d.0)
                        .map_err(|e| format!("{e}; or use \"off\", \"epoch\", \"max\"")),
                )?,
            )),
        };
        let index_files = f.index.clone().unwrap_or_else(|| defaults.index());
        for (j, name) in index_files.iter().enumerate() {
            if name.is_empty() || name.contains('/') || name == ".." || name == "." {
                self.problems.add(
                    index(&join(key, "index"), j),
                    format!("{name:?} must be a plain file name"),
                );
            }
        }
        Some(StaticSite {
            base,
            index: index_files,
            try_files,
            fallback,
            expires,
            gzip_static: f.gzip_static,
        })
    }
}
