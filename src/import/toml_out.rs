//! A small TOML writer: the importer's output is written by hand (not
//! serialized) so every block can carry a comment naming its source.

use std::fmt::Write;

/// A TOML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    Array(Vec<Value>),
    /// An inline table, keys in this order.
    Inline(Vec<(String, Value)>),
}

impl Value {
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    pub fn strs<S: AsRef<str>>(items: &[S]) -> Value {
        Value::Array(items.iter().map(|s| Value::str(s.as_ref())).collect())
    }

    fn write(&self, out: &mut String) {
        match self {
            Value::Str(s) => out.push_str(&string(s)),
            Value::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Bool(b) => {
                let _ = write!(out, "{b}");
            }
            Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Value::Inline(pairs) => {
                if pairs.is_empty() {
                    out.push_str("{}");
                    return;
                }
                out.push_str("{ ");
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&key(k));
                    out.push_str(" = ");
                    v.write(out);
                }
                out.push_str(" }");
            }
        }
    }
}

/// A key, bare when TOML allows it.
pub fn key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        k.to_owned()
    } else {
        string(k)
    }
}

/// A basic string with TOML escapes.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A document being written, top to bottom.
#[derive(Debug, Default)]
pub struct Doc {
    out: String,
}

impl Doc {
    pub fn new() -> Doc {
        Doc::default()
    }

    /// `# text`, one line per line of `text`.
    pub fn comment(&mut self, text: &str) {
        for line in text.lines() {
            if line.is_empty() {
                self.out.push_str("#\n");
            } else {
                let _ = writeln!(self.out, "# {line}");
            }
        }
    }

    pub fn blank(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with("\n\n") {
            self.out.push('\n');
        }
    }

    /// `[path]`; `path` parts are given separately and quoted as needed.
    pub fn table(&mut self, path: &[&str]) {
        let _ = writeln!(self.out, "[{}]", dotted(path));
    }

    /// `[[path]]`.
    pub fn array_table(&mut self, path: &[&str]) {
        let _ = writeln!(self.out, "[[{}]]", dotted(path));
    }

    pub fn kv(&mut self, k: &str, v: &Value) {
        self.kv_note(k, v, "");
    }

    /// `key = value  # note` (no comment when `note` is empty).
    pub fn kv_note(&mut self, k: &str, v: &Value, note: &str) {
        self.out.push_str(&key(k));
        self.out.push_str(" = ");
        v.write(&mut self.out);
        if !note.is_empty() {
            self.out.push_str("  # ");
            self.out.push_str(&note.replace('\n', " "));
        }
        self.out.push('\n');
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn dotted(path: &[&str]) -> String {
    path.iter().map(|p| key(p)).collect::<Vec<_>>().join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_valid_toml() {
        let mut d = Doc::new();
        d.comment("from nginx.conf:3\nsecond line");
        d.table(&["upstream", "api.v1"]);
        d.kv(
            "servers",
            &Value::Array(vec![Value::Inline(vec![
                ("addr".into(), Value::str("10.0.0.1:80")),
                ("weight".into(), Value::Int(3)),
                ("backup".into(), Value::Bool(true)),
            ])]),
        );
        d.blank();
        d.array_table(&["server"]);
        d.kv_note("listen", &Value::strs(&["0.0.0.0:80"]), "a.conf:4");
        d.kv(
            "add_header",
            &Value::Inline(vec![("X-Quote \"q\"".into(), Value::str("a\\b\n\u{1}"))]),
        );
        d.kv("empty", &Value::Inline(vec![]));
        let text = d.finish();
        let parsed: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(
            parsed["upstream"]["api.v1"]["servers"][0]["weight"].as_integer(),
            Some(3)
        );
        assert_eq!(
            parsed["server"][0]["add_header"]["X-Quote \"q\""].as_str(),
            Some("a\\b\n\u{1}")
        );
        assert!(
            text.contains("listen = [\"0.0.0.0:80\"]  # a.conf:4\n"),
            "{text}"
        );
    }
}
