//! From a URI path to a file path *relative to* the site's base directory
//! (`root` or `alias`), the only form the file system code accepts.
//!
//! Keeping the path relative is what lets `openat2(RESOLVE_BENEATH)` hold
//! the line (see `open.rs`); this module adds the checks that are about
//! URIs rather than the file system: the alias prefix must end on a
//! segment boundary, and no segment may be `.` or `..`.

use std::path::Path;

use crate::config::FileBase;

/// A path below a base directory: `/`-separated segments, none of them
/// empty, `.` or `..`, no NUL byte. Empty means the base itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RelPath(String);

impl RelPath {
    /// Builds a relative path from a URI path (or the rest of one after an
    /// alias prefix). Empty segments are skipped (`//` means `/`); `.`,
    /// `..` or NUL refuse the whole path. Normalized request paths never
    /// contain them, so a refusal here means a template or an alias prefix
    /// tried to climb.
    pub fn from_uri_path(path: &str) -> Option<RelPath> {
        let mut out = String::with_capacity(path.len());
        for segment in path.split('/') {
            match segment {
                "" => continue,
                "." | ".." => return None,
                s if s.contains('\0') => return None,
                s => {
                    if !out.is_empty() {
                        out.push('/');
                    }
                    out.push_str(s);
                }
            }
        }
        Some(RelPath(out))
    }

    /// The path to hand to `openat2`: `.` for the base itself.
    pub fn as_fs_str(&self) -> &str {
        if self.0.is_empty() { "." } else { &self.0 }
    }

    /// A file inside this directory (an `index` name): one plain segment.
    pub fn join(&self, name: &str) -> Option<RelPath> {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return None;
        }
        if self.0.is_empty() {
            return Some(RelPath(name.to_owned()));
        }
        Some(RelPath(format!("{}/{name}", self.0)))
    }

    /// A sibling with a suffix appended (`app.js` → `app.js.gz`). The base
    /// itself has no name to extend.
    pub fn with_suffix(&self, suffix: &str) -> Option<RelPath> {
        if self.0.is_empty() || suffix.contains(['/', '\0']) {
            return None;
        }
        Some(RelPath(format!("{}{suffix}", self.0)))
    }

    /// The absolute path, used as the open-file cache key.
    pub fn under(&self, base: &Path) -> std::path::PathBuf {
        if self.0.is_empty() {
            base.to_path_buf()
        } else {
            base.join(&self.0)
        }
    }
}

/// The directory a site's files live in.
pub(crate) fn base_dir(base: &FileBase) -> &Path {
    match base {
        FileBase::Root(dir) => dir,
        FileBase::Alias { dir, .. } => dir,
    }
}

/// Maps a (normalized) URI path to a file below the base directory.
///
/// - `root`: the whole URI path (nginx: root + URI).
/// - `alias`: the URI minus the location prefix. The prefix must end on a
///   segment boundary: with `location /static` and `alias /srv/assets/`,
///   nginx maps `/static../secret` to `/srv/assets/../secret` (the classic
///   "alias traversal"), and `/static_private/x` to `/srv/assets_private/x`
///   when the alias lacks its trailing slash. Both are refused here.
///   A URI that does not start with the prefix at all (a `try_files`
///   candidate such as `/fallback.png`) is taken whole, relative to the
///   alias directory, as nginx's try_files does.
pub(crate) fn map_uri(base: &FileBase, uri: &str) -> Option<RelPath> {
    match base {
        FileBase::Root(_) => RelPath::from_uri_path(uri),
        FileBase::Alias { prefix, .. } => {
            let rest = match uri.strip_prefix(prefix.as_str()) {
                Some(rest) if prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/') => {
                    rest
                }
                Some(_) => return None,
                None => uri,
            };
            RelPath::from_uri_path(rest)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use proptest::prelude::*;

    use super::*;

    fn root() -> FileBase {
        FileBase::Root(PathBuf::from("/srv/www"))
    }

    fn alias(prefix: &str, dir: &str) -> FileBase {
        FileBase::Alias {
            prefix: prefix.into(),
            dir: dir.into(),
        }
    }

    fn map(base: &FileBase, uri: &str) -> Option<String> {
        map_uri(base, uri).map(|r| r.as_fs_str().to_owned())
    }

    #[test]
    fn root_takes_the_whole_path() {
        assert_eq!(map(&root(), "/"), Some(".".into()));
        assert_eq!(map(&root(), "/a/b.css"), Some("a/b.css".into()));
        assert_eq!(map(&root(), "/a/"), Some("a".into()));
        assert_eq!(map(&root(), "/..a/b..c"), Some("..a/b..c".into()));
        assert_eq!(map(&root(), "/a/../b"), None);
        assert_eq!(map(&root(), "/a/./b"), None);
        assert_eq!(map(&root(), "/a\0b"), None);
    }

    #[test]
    fn alias_strips_the_prefix_on_a_segment_boundary() {
        let a = alias("/static/", "/srv/assets/");
        assert_eq!(map(&a, "/static/x.css"), Some("x.css".into()));
        assert_eq!(map(&a, "/static/"), Some(".".into()));
        assert_eq!(map(&a, "/static/d/e"), Some("d/e".into()));
        let a = alias("/static", "/srv/assets");
        assert_eq!(map(&a, "/static"), Some(".".into()));
        assert_eq!(map(&a, "/static/"), Some(".".into()));
        assert_eq!(map(&a, "/static/x"), Some("x".into()));
        // The alias traversal and the sibling-directory trick.
        assert_eq!(map(&a, "/static../secret"), None);
        assert_eq!(map(&a, "/static_private/x"), None);
        assert_eq!(map(&a, "/staticfoo"), None);
        // A try_files candidate outside the prefix.
        assert_eq!(map(&a, "/fallback.png"), Some("fallback.png".into()));
    }

    #[test]
    fn joins_and_suffixes() {
        let dir = RelPath::from_uri_path("/docs/").unwrap();
        assert_eq!(
            dir.join("index.html").unwrap().as_fs_str(),
            "docs/index.html"
        );
        let base = RelPath::from_uri_path("/").unwrap();
        assert_eq!(base.join("index.html").unwrap().as_fs_str(), "index.html");
        for bad in ["", ".", "..", "a/b", "/abs", "a\0"] {
            assert_eq!(dir.join(bad), None, "{bad:?}");
        }
        let file = RelPath::from_uri_path("/app.js").unwrap();
        assert_eq!(file.with_suffix(".gz").unwrap().as_fs_str(), "app.js.gz");
        assert_eq!(base.with_suffix(".gz"), None);
        assert_eq!(file.under(Path::new("/srv")), PathBuf::from("/srv/app.js"));
        assert_eq!(base.under(Path::new("/srv")), PathBuf::from("/srv"));
    }

    proptest! {
        #[test]
        fn never_leaves_the_base(uri in "/[a-z./]{0,30}", prefix in "/[a-z]{0,4}/?") {
            for base in [root(), alias(&prefix, "/srv/assets")] {
                if let Some(rel) = map_uri(&base, &uri) {
                    let s = rel.as_fs_str();
                    prop_assert!(!s.starts_with('/'));
                    prop_assert!(s == "." || !s.split('/').any(|seg| seg.is_empty() || seg == "." || seg == ".."));
                }
            }
        }
    }
}
