//! Config errors a person can act on: the file, the line, the key and why.
//!
//! Validation does not stop at the first problem: like a compiler it collects
//! every problem it can find, so one `vigil check` run shows them all.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// One thing wrong with the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `server[0].location[2].proxy_pass`.
    pub key: String,
    /// 1-based line in the file, when it could be found.
    pub line: Option<usize>,
    /// What is wrong and, where possible, what was expected.
    pub reason: String,
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{}: cannot read config: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    /// The file was read but is not a valid config.
    #[error("{}", Invalid { path, problems })]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The problems found, empty for a read error.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

struct Invalid<'a> {
    path: &'a Path,
    problems: &'a [Problem],
}

impl fmt::Display for Invalid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{}: {n} problem{}",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in self.problems {
            write!(f, "\n  {}", self.path.display())?;
            if let Some(line) = p.line {
                write!(f, ":{line}")?;
            }
            if p.key.is_empty() {
                write!(f, ": {}", p.reason)?;
            } else {
                write!(f, ": {}: {}", p.key, p.reason)?;
            }
        }
        Ok(())
    }
}

/// Collects problems while validating, tracking the key path we are in.
///
/// Validation code calls `at("server", i)` / `key("listen")` to build the
/// path of the value it is checking and `problem(...)` to record an issue.
#[derive(Debug, Default)]
pub struct Problems {
    problems: Vec<Problem>,
}

impl Problems {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem at `key`.
    pub fn add(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            line: None,
            reason: reason.into(),
        });
    }

    /// Records `result`'s error at `key` and returns the value, if any.
    pub fn check<T>(&mut self, key: impl Into<String>, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(reason) => {
                self.add(key, reason);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// Turns the collected problems into an error (with line numbers looked
    /// up in `source`), or `Ok(())` when there were none.
    pub fn finish(self, path: &Path, source: &str) -> Result<(), ConfigError> {
        if self.problems.is_empty() {
            return Ok(());
        }
        let problems = self
            .problems
            .into_iter()
            .map(|mut p| {
                p.line = p.line.or_else(|| line_of_key(source, &p.key));
                p
            })
            .collect();
        Err(ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        })
    }
}

/// Builds `parent.key` / `parent[index]` paths without noise at call sites.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

pub fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// Finds the line where `key` (a path such as `server[0].listen[1]`) is
/// written in `source`, by walking TOML's spanned parse tree.
pub fn line_of_key(source: &str, key: &str) -> Option<usize> {
    use toml::de::{DeTable, DeValue};

    if key.is_empty() {
        return None;
    }
    let root = DeTable::parse(source).ok()?;
    let mut span = root.span();
    let mut value: Option<&DeValue> = None;
    let mut table = Some(root.get_ref());
    for segment in parse_key_path(key) {
        match segment {
            Segment::Key(name) => {
                let t = table?;
                let (k, v) = t.iter().find(|(k, _)| k.get_ref().as_ref() == name)?;
                span = k.span();
                value = Some(v.get_ref());
            }
            Segment::Index(i) => {
                let DeValue::Array(items) = value? else {
                    return None;
                };
                let item = items.get(i)?;
                span = item.span();
                value = Some(item.get_ref());
            }
        }
        table = match value {
            Some(DeValue::Table(t)) => Some(t),
            _ => None,
        };
    }
    Some(line_at(source, span.start))
}

/// 1-based line number of byte `offset`.
pub fn line_at(source: &str, offset: usize) -> usize {
    source.as_bytes()[..offset.min(source.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn parse_key_path(key: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in key.split('.').filter(|p| !p.is_empty()) {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Segment::Key(name));
        }
        while let Some(close) = rest.find(']') {
            if let Ok(i) = rest[1..close].parse() {
                out.push(Segment::Index(i));
            }
            rest = &rest[close + 1..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = r#"
[admin]
listen = "127.0.0.1:9090"

[[server]]
listen = ["0.0.0.0:8080"]

  [[server.location]]
  path = "/"

  [[server.location]]
  path = "/api/"
  proxy_pass = "app"

[upstream.app]
servers = [
  { addr = "127.0.0.1:1" },
  { addr = "bad" },
]
"#;

    #[test]
    fn finds_lines_of_nested_keys() {
        assert_eq!(line_of_key(SOURCE, "admin.listen"), Some(3));
        assert_eq!(line_of_key(SOURCE, "server[0].listen"), Some(6));
        assert_eq!(line_of_key(SOURCE, "server[0].location[1].proxy_pass"), Some(13));
        assert_eq!(line_of_key(SOURCE, "upstream.app.servers[1].addr"), Some(18));
        assert_eq!(line_of_key(SOURCE, "upstream.app.servers[1]"), Some(18));
        assert_eq!(line_of_key(SOURCE, "server[3]"), None);
        assert_eq!(line_of_key(SOURCE, "nope"), None);
    }

    #[test]
    fn display_lists_every_problem_with_file_and_line() {
        let mut p = Problems::new();
        p.add("server[0].location[1].proxy_pass", "unknown upstream \"ap\"");
        p.add("", "no [[server]] and no [vrrp]: nothing to do");
        let err = p.finish(Path::new("vigil.toml"), SOURCE).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("vigil.toml: 2 problems"), "{text}");
        assert!(
            text.contains("vigil.toml:13: server[0].location[1].proxy_pass: unknown upstream"),
            "{text}"
        );
        assert!(text.contains("vigil.toml: no [[server]]"), "{text}");
    }
}
