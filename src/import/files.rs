//! The importer reads config files only through [`Files`], so the core
//! (lexers, parsers, translation) stays pure and is tested on in-memory
//! trees; [`Disk`] is the one implementation that touches the file system.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Read access to a tree of config files.
pub trait Files {
    /// The whole file as text (invalid UTF-8 is replaced, as a config
    /// with a stray Latin-1 comment byte still has to be read).
    fn read(&self, path: &Path) -> io::Result<String>;
    /// The names in a directory (not sorted, no `.` or `..`).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
}

/// The real file system.
pub struct Disk;

impl Files for Disk {
    fn read(&self, path: &Path) -> io::Result<String> {
        let bytes = std::fs::read(path)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }
}

/// Files held in memory, for tests and the fuzz target.
#[derive(Debug, Default, Clone)]
pub struct Memory {
    files: BTreeMap<PathBuf, String>,
}

impl Memory {
    pub fn new() -> Memory {
        Memory::default()
    }

    /// Adds (or replaces) a file.
    pub fn with(mut self, path: impl Into<PathBuf>, text: impl Into<String>) -> Memory {
        self.files.insert(path.into(), text.into());
        self
    }
}

impl Files for Memory {
    fn read(&self, path: &Path) -> io::Result<String> {
        self.files
            .get(&normalize(path))
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "No such file or directory"))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let dir = normalize(dir);
        let mut names: Vec<String> = Vec::new();
        for path in self.files.keys() {
            if let Ok(rest) = path.strip_prefix(&dir) {
                if let Some(Component::Normal(first)) = rest.components().next() {
                    let name = first.to_string_lossy().into_owned();
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
            }
        }
        if names.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "No such file or directory",
            ));
        }
        Ok(names)
    }
}

/// `a/./b/../c` → `a/c`, lexically (no symlinks are followed).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// True when `path` has glob characters (`*`, `?`, `[`), as nginx's and
/// keepalived's `include` decide whether to glob.
pub fn is_glob(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

/// The files matching a glob pattern (an absolute or relative path whose
/// components may hold `*`, `?` and `[...]`), sorted as glob(3) sorts
/// them. A component without glob characters is taken as is; a pattern
/// component never matches a name starting with `.` unless it does too.
pub fn glob(files: &dyn Files, pattern: &Path) -> Vec<PathBuf> {
    let mut found = vec![PathBuf::new()];
    let components: Vec<Component> = pattern.components().collect();
    // A literal last component is kept whether or not it exists: the
    // caller reports it when it cannot read it.
    for c in &components {
        let mut next = Vec::new();
        for base in &found {
            match c {
                Component::Normal(name) if is_glob(&name.to_string_lossy()) => {
                    let pat = name.to_string_lossy();
                    let dir = if base.as_os_str().is_empty() {
                        PathBuf::from(".")
                    } else {
                        base.clone()
                    };
                    let Ok(mut names) = files.list(&dir) else {
                        continue;
                    };
                    names.sort();
                    for n in names {
                        if n.starts_with('.') && !pat.starts_with('.') {
                            continue;
                        }
                        if fnmatch(&pat, &n) {
                            next.push(base.join(&n));
                        }
                    }
                }
                other => next.push(base.join(other.as_os_str())),
            }
        }
        found = next;
        if found.is_empty() {
            break;
        }
    }
    found.retain(|p| !p.as_os_str().is_empty());
    found
}

/// Shell-style matching of one name: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`
/// (and `[^x]`), `\` escapes the next character.
pub fn fnmatch(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matcher with one backtrack point for the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' => Some(pi + 1),
                '[' => match class(&p, pi, n[ni]) {
                    Some((true, end)) => Some(end),
                    Some((false, _)) => None,
                    // An unclosed `[` is a literal.
                    None => (n[ni] == '[').then_some(pi + 1),
                },
                '\\' if pi + 1 < p.len() => (p[pi + 1] == n[ni]).then_some(pi + 2),
                c => (c == n[ni]).then_some(pi + 1),
            }
        } else {
            None
        };
        match step {
            Some(next) => {
                pi = next;
                ni += 1;
            }
            None => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Matches `c` against the class starting at `p[start] == '['`: whether it
/// matched and the index after the closing `]`; `None` if unclosed.
fn class(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        let lo = p[i];
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if lo <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if lo == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnmatch_follows_the_shell() {
        assert!(fnmatch("*.conf", "a.conf"));
        assert!(fnmatch("*.conf", ".conf"));
        assert!(!fnmatch("*.conf", "a.conf.bak"));
        assert!(fnmatch("a?c", "abc"));
        assert!(!fnmatch("a?c", "ac"));
        assert!(fnmatch("[ab]*", "bx"));
        assert!(!fnmatch("[!ab]*", "bx"));
        assert!(fnmatch("[a-c]x", "bx"));
        assert!(fnmatch("*a*b*", "xxaxxbxx"));
        assert!(!fnmatch("*a*b", "xxaxxbxx"));
        assert!(fnmatch("\\*", "*"));
        assert!(fnmatch("[", "["));
        assert!(fnmatch("**", ""));
    }

    #[test]
    fn glob_lists_sorted_matches_and_skips_dot_files() {
        let m = Memory::new()
            .with("/etc/nginx/conf.d/b.conf", "")
            .with("/etc/nginx/conf.d/a.conf", "")
            .with("/etc/nginx/conf.d/.hidden.conf", "")
            .with("/etc/nginx/conf.d/c.txt", "")
            .with("/etc/nginx/sites/x/site.conf", "");
        assert_eq!(
            glob(&m, Path::new("/etc/nginx/conf.d/*.conf")),
            vec![
                PathBuf::from("/etc/nginx/conf.d/a.conf"),
                PathBuf::from("/etc/nginx/conf.d/b.conf")
            ]
        );
        assert_eq!(
            glob(&m, Path::new("/etc/nginx/sites/*/*.conf")),
            vec![PathBuf::from("/etc/nginx/sites/x/site.conf")]
        );
        assert!(glob(&m, Path::new("/etc/nope/*.conf")).is_empty());
    }

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        assert_eq!(normalize(Path::new("a/../../b")), PathBuf::from("../b"));
    }
}
