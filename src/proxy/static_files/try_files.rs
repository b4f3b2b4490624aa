//! `try_files`: expanding candidate templates into URIs, and the plan of
//! what the file-system hop must look at.
//!
//! nginx semantics (ngx_http_core_try_files_phase):
//! - a template ending in `/` tests for a directory, the slash is removed
//!   before expansion, and others test for a file (anything not a
//!   directory);
//! - the first candidate that exists becomes the request's URI and the
//!   static/index handlers run on it (so `$uri/` for `/docs` still ends in
//!   a 301 to `/docs/`, and for `/docs/` in the index file);
//! - if none exists, the last element decides: `=code`, `@name`, or a URI.

use super::percent::encode_path;
use super::rel_path::{RelPath, map_uri};
use crate::config::{FileBase, TryFile};
use crate::proxy::uri_path::resolve_dots;

/// One `try_files` candidate, expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    /// The URI this candidate stands for (decoded, normalized); it becomes
    /// the request's URI if chosen.
    pub uri: String,
    /// The template ended in `/`: only a directory will do.
    pub want_dir: bool,
    /// Where it lives; `None` when it cannot map below the base (an alias
    /// prefix trick), which counts as "does not exist".
    pub rel: Option<RelPath>,
}

/// What the file-system lookup has to do for a request.
#[derive(Debug, Clone)]
pub(crate) enum Plan {
    /// No `try_files`: serve the request path (nginx `root`/`alias` +
    /// static and index modules).
    Plain { uri: String, rel: Option<RelPath> },
    /// `try_files`: the first existing candidate wins.
    TryFiles(Vec<Candidate>),
}

impl Plan {
    pub fn new(base: &FileBase, try_files: &[TryFile], path: &str, args: Option<&str>) -> Plan {
        if try_files.is_empty() {
            return Plan::Plain {
                uri: path.to_owned(),
                rel: map_uri(base, path),
            };
        }
        let candidates = try_files
            .iter()
            .filter_map(|TryFile(template)| {
                let (template, want_dir) = match template.strip_suffix('/') {
                    // `try_files /` tests the base directory itself.
                    Some("") => ("/", true),
                    Some(t) => (t, true),
                    None => (template.as_str(), false),
                };
                // A candidate that climbs above `/` (e.g. `$uri/../../x`
                // for a shallow $uri) or is not absolute is skipped, as a
                // file that does not exist.
                let uri = normalize(&expand(template, path, args, false))?;
                let rel = map_uri(base, &uri);
                Some(Candidate { uri, want_dir, rel })
            })
            .collect();
        Plan::TryFiles(candidates)
    }

    /// The candidate a cached file can answer for without the file-system
    /// hop: the first one, when it names a file (try_files order forbids
    /// skipping ahead to a later candidate).
    pub fn first_file(&self) -> Option<(&str, &RelPath)> {
        let (uri, rel) = match self {
            Plan::Plain { uri, rel } => (uri, rel.as_ref()?),
            Plan::TryFiles(candidates) => {
                let first = candidates.first()?;
                if first.want_dir {
                    return None;
                }
                (&first.uri, first.rel.as_ref()?)
            }
        };
        (!uri.ends_with('/')).then_some((uri.as_str(), rel))
    }
}

/// Expands the fallback URI of `try_files ... /index.php?q=$uri&$args`.
/// The result is in URI form (the path percent-encoded) so that the
/// handler decodes it exactly once when it matches locations again.
pub(crate) fn expand_fallback(template: &str, path: &str, args: Option<&str>) -> String {
    expand(template, path, args, true)
}

/// Substitutes nginx variables in a template, in one pass (text that a
/// variable expands to is never scanned again, so a request path holding
/// `$uri` stays literal).
///
/// Known: `$uri` and `$document_uri` (the normalized path), `$args` and
/// `$query_string` (the raw query), `$is_args` (`?` if there is a query).
/// Each may be written `${name}`. Anything else stays as written; config
/// validation is the place to refuse unknown variables.
pub(crate) fn expand(template: &str, path: &str, args: Option<&str>, uri_form: bool) -> String {
    let mut out = String::with_capacity(template.len() + path.len());
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        let (name, consumed) = match after.strip_prefix('{') {
            Some(braced) => match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            },
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        match name {
            "uri" | "document_uri" if uri_form => out.push_str(&encode_path(path)),
            "uri" | "document_uri" => out.push_str(path),
            "args" | "query_string" => out.push_str(args.unwrap_or("")),
            "is_args" => out.push_str(if args.is_some_and(|a| !a.is_empty()) {
                "?"
            } else {
                ""
            }),
            _ => {
                out.push('$');
                rest = after;
                continue;
            }
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    out
}

/// Resolves `.`, `..` and `//` in an expanded candidate, without decoding
/// anything (the path in it is already decoded: decoding again would turn
/// a file named `%2e%2e` into `..`). `None` if it is not absolute or
/// climbs above `/`.
pub(crate) fn normalize(candidate: &str) -> Option<String> {
    if !candidate.starts_with('/') || candidate.contains('\0') {
        return None;
    }
    resolve_dots(candidate).ok()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use proptest::prelude::*;

    use super::*;

    fn root() -> FileBase {
        FileBase::Root(PathBuf::from("/srv/www"))
    }

    fn plan(templates: &[&str], path: &str) -> Vec<(String, bool, Option<String>)> {
        let tf: Vec<TryFile> = templates.iter().map(|t| TryFile(t.to_string())).collect();
        match Plan::new(&root(), &tf, path, Some("a=1")) {
            Plan::TryFiles(c) => c
                .into_iter()
                .map(|c| (c.uri, c.want_dir, c.rel.map(|r| r.as_fs_str().to_owned())))
                .collect(),
            Plan::Plain { .. } => panic!("plain"),
        }
    }

    #[test]
    fn spa_idiom() {
        assert_eq!(
            plan(&["$uri", "$uri/", "/index.html"], "/about"),
            vec![
                ("/about".into(), false, Some("about".into())),
                ("/about".into(), true, Some("about".into())),
                ("/index.html".into(), false, Some("index.html".into())),
            ]
        );
        assert_eq!(
            plan(&["$uri", "$uri/"], "/docs/"),
            vec![
                ("/docs/".into(), false, Some("docs".into())),
                ("/docs/".into(), true, Some("docs".into()))
            ]
        );
        assert_eq!(
            plan(&["$uri.html"], "/about"),
            vec![("/about.html".into(), false, Some("about.html".into()))]
        );
        assert_eq!(
            plan(&["/"], "/x"),
            vec![("/".into(), true, Some(".".into()))]
        );
    }

    #[test]
    fn climbing_candidates_are_dropped_or_stay_inside() {
        assert_eq!(plan(&["$uri/../../../etc/passwd"], "/a"), vec![]);
        assert_eq!(plan(&["/..$uri"], "/a"), vec![]);
        assert_eq!(
            plan(&["$uri/../b"], "/a/x"),
            vec![("/a/b".into(), false, Some("a/b".into()))]
        );
        assert_eq!(plan(&["relative$uri"], "/a"), vec![]);
        // A decoded `%2e%2e` in the request path is a file name, not `..`.
        assert_eq!(
            plan(&["$uri"], "/%2e%2e/secret"),
            vec![("/%2e%2e/secret".into(), false, Some("%2e%2e/secret".into()))]
        );
    }

    #[test]
    fn expansion() {
        assert_eq!(expand("$uri", "/a b", None, false), "/a b");
        assert_eq!(expand("${uri}x", "/a", None, false), "/ax");
        assert_eq!(
            expand("/i.php?q=$uri&$args", "/a b", Some("x=1"), true),
            "/i.php?q=/a%20b&x=1"
        );
        assert_eq!(
            expand("/i.php$is_args$args", "/a", Some("x=1"), true),
            "/i.php?x=1"
        );
        assert_eq!(expand("/i.php$is_args$args", "/a", None, true), "/i.php");
        assert_eq!(
            expand("/i.php$is_args$query_string", "/a", Some(""), true),
            "/i.php"
        );
        assert_eq!(expand("$document_uri", "/a", None, false), "/a");
        // Unknown variables, lone dollars and unterminated braces stay.
        assert_eq!(expand("/$host/$uri", "/a", None, false), "/$host//a");
        assert_eq!(expand("/x$", "/a", None, false), "/x$");
        assert_eq!(expand("/${uri", "/a", None, false), "/${uri");
        assert_eq!(expand("$urix", "/a", None, false), "$urix");
        // One pass: a path containing "$uri" is not expanded again.
        assert_eq!(expand("$uri", "/$uri", None, false), "/$uri");
        assert_eq!(expand_fallback("/$uri", "/%41", None), "//%2541");
    }

    #[test]
    fn normalization() {
        for (c, want) in [
            ("/", Some("/")),
            ("/a//b", Some("/a/b")),
            ("/a/./b/", Some("/a/b/")),
            ("/a/..", Some("/")),
            ("/a/b/..", Some("/a/")),
            ("/..", None),
            ("/a/../..", None),
            ("a", None),
            ("", None),
            ("/a\0", None),
        ] {
            assert_eq!(normalize(c).as_deref(), want, "{c:?}");
        }
    }

    #[test]
    fn first_file_is_the_cacheable_candidate() {
        let tf = |ts: &[&str]| {
            ts.iter()
                .map(|t| TryFile(t.to_string()))
                .collect::<Vec<_>>()
        };
        let p = Plan::new(&root(), &tf(&["$uri", "/index.html"]), "/a.css", None);
        assert_eq!(
            p.first_file().map(|(u, r)| (u, r.as_fs_str())),
            Some(("/a.css", "a.css"))
        );
        let p = Plan::new(&root(), &tf(&["$uri/", "$uri"]), "/a.css", None);
        assert_eq!(p.first_file(), None);
        let p = Plan::new(&root(), &[], "/dir/", None);
        assert_eq!(p.first_file(), None);
        let p = Plan::new(&root(), &[], "/a.css", None);
        assert!(p.first_file().is_some());
    }

    proptest! {
        #[test]
        fn normalized_candidates_are_normal(c in "/[a-z./]{0,30}") {
            if let Some(n) = normalize(&c) {
                prop_assert!(n.starts_with('/'));
                prop_assert!(!n.contains("//"));
                prop_assert!(!n.split('/').any(|s| s == "." || s == ".."));
                prop_assert_eq!(normalize(&n), Some(n.clone()));
            }
        }

        #[test]
        fn expansion_never_panics(t in "[$/{}a-z_]{0,20}", p in "/[$a-z{}]{0,10}") {
            let _ = expand(&t, &p, Some("q"), true);
            let _ = expand(&t, &p, None, false);
        }
    }
}
