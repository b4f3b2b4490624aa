//! `rewrite` and `error_page` at server and location level: regexes
//! compiled, replacements parsed with the regex's captures in scope, and
//! every error page's target checked against the server's locations (and
//! the file system, for a static file), so a page that cannot be served
//! is a config error rather than a surprise during an outage.

use std::path::PathBuf;

use regex::Regex;

use super::Validator;
use crate::config::error::{index, join};
use crate::config::error_page::{ErrorPage, ErrorPageFile, ErrorTarget};
use crate::config::rewrite::{Rewrite, RewriteFile, RewriteFlag, split_replacement};
use crate::config::*;

impl Validator<'_> {
    /// `rewrite = [...]` at `key` (a server or a location).
    pub(super) fn rewrites(&mut self, key: &str, files: &[RewriteFile]) -> Vec<Rewrite> {
        let mut out = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let k = index(&join(key, "rewrite"), i);
            let regex = match Regex::new(&f.regex) {
                Ok(re) => re,
                Err(e) => {
                    self.problems
                        .add(join(&k, "regex"), format!("bad regex: {e}"));
                    continue;
                }
            };
            let flag = self.problems.check(
                join(&k, "flag"),
                RewriteFlag::parse(f.flag.as_deref(), &f.replacement),
            );
            let (target, query, append_args) = split_replacement(&f.replacement);
            let rk = join(&k, "replacement");
            let target = self.template(&rk, target, Some(&regex));
            let query = match query {
                Some(q) => self.template(&rk, q, Some(&regex)).map(Some),
                None => Some(None),
            };
            if let (Some(target), Some(query), Some(flag)) = (target, query, flag) {
                out.push(Rewrite {
                    regex,
                    target,
                    query,
                    append_args,
                    flag,
                });
            }
        }
        out
    }

    /// `error_page = [...]` at `key`, parsed (targets checked later, with
    /// [`Self::check_error_pages`], once the server's locations exist).
    pub(super) fn error_pages(&mut self, key: &str, files: &[ErrorPageFile]) -> Vec<ErrorPage> {
        let mut out = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let k = index(&join(key, "error_page"), i);
            match ErrorPage::parse(f) {
                Ok(p) => out.push(p),
                Err((field, reason)) => self.problems.add(join(&k, field), reason),
            }
        }
        out
    }

    /// Every error page of a server (its own, and its locations') must
    /// lead somewhere: a named location that exists, or a URI that some
    /// location serves — and, for a static file, a file that exists now.
    pub(super) fn check_error_pages(
        &mut self,
        key: &str,
        server_pages: &[ErrorPage],
        locations: &[Location],
        location_keys: &[String],
    ) {
        let check = |this: &mut Self, k: String, page: &ErrorPage| {
            let reason = match &page.target {
                ErrorTarget::Redirect(_) => None,
                ErrorTarget::Named(name) => {
                    let exists = locations
                        .iter()
                        .any(|l| matches!(&l.pattern, LocationPattern::Named(n) if n == name));
                    (!exists).then(|| format!("no location \"@{name}\" in this server"))
                }
                ErrorTarget::Uri(uri) => uri_target_problem(uri, locations),
            };
            if let Some(reason) = reason {
                this.problems.add(k, reason);
            }
        };
        for (i, page) in server_pages.iter().enumerate() {
            check(self, join(&index(&join(key, "error_page"), i), "uri"), page);
        }
        for (loc, lkey) in locations.iter().zip(location_keys) {
            for (i, page) in loc.error_pages.iter().enumerate() {
                check(
                    self,
                    join(&index(&join(lkey, "error_page"), i), "uri"),
                    page,
                );
            }
        }
    }
}

/// Why `uri` cannot be served in this server, if it cannot.
fn uri_target_problem(uri: &str, locations: &[Location]) -> Option<String> {
    let path = uri.split('?').next().unwrap_or(uri);
    let Some(location) = find_location(locations, path) else {
        return Some(format!("no location of this server serves {path}"));
    };
    let Action::Static(site) = &location.action else {
        return None; // a return or a proxy: answered at run time
    };
    if !site.try_files.is_empty() || site.fallback.is_some() || path.ends_with('/') {
        return None;
    }
    let file: PathBuf = match &site.base {
        FileBase::Root(root) => root.join(path.trim_start_matches('/')),
        FileBase::Alias { prefix, dir } => match path.strip_prefix(prefix.as_str()) {
            Some(rest) => dir.join(rest),
            None => dir.clone(),
        },
    };
    if file.is_file() {
        None
    } else {
        Some(format!(
            "{path} would be the file {}, which does not exist (location {:?})",
            file.display(),
            location.label
        ))
    }
}

/// nginx's location search over a server's validated locations (for load
/// time checks only; requests use `proxy::router`'s tables).
fn find_location<'l>(locations: &'l [Location], path: &str) -> Option<&'l Location> {
    if let Some(l) = locations
        .iter()
        .find(|l| matches!(&l.pattern, LocationPattern::Exact(p) if p == path))
    {
        return Some(l);
    }
    let longest = locations
        .iter()
        .filter_map(|l| match &l.pattern {
            LocationPattern::Prefix { prefix, skip_regex } if path.starts_with(prefix.as_str()) => {
                Some((prefix.len(), *skip_regex, l))
            }
            _ => None,
        })
        .max_by_key(|(len, _, _)| *len);
    if let Some((_, true, l)) = longest {
        return Some(l);
    }
    locations
        .iter()
        .find(|l| matches!(&l.pattern, LocationPattern::Regex(re) if re.is_match(path)))
        .or(longest.map(|(_, _, l)| l))
}
