//! keepalived's grammar, as its `read_line` reads: one statement per line;
//! `!` and `#` start a comment anywhere outside double quotes (`\#` and
//! `\!` are the characters); a line ending in `\` continues on the next;
//! `{` and `}` outside quotes split a line (`global_defs{`, `group { a b
//! }`), and a `{` opens the block of the statement before it, on its line
//! or the next; words are split at blanks, a `"..."` being one word.
//! `include` (a glob, relative to the including file's directory) is read
//! in place.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::super::ParseError;
use super::super::files::{self, Files};
use super::super::nginx::Place;

/// One statement and its block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stmt {
    pub words: Vec<String>,
    pub block: Option<Vec<Stmt>>,
    pub place: Place,
}

impl Stmt {
    pub fn key(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }

    pub fn arg(&self, i: usize) -> Option<&str> {
        self.words.get(i + 1).map(String::as_str)
    }

    pub fn children(&self) -> &[Stmt] {
        self.block.as_deref().unwrap_or(&[])
    }

    /// The statement as written (shortened).
    pub fn summary(&self) -> String {
        let s = self
            .words
            .iter()
            .map(|w| {
                if w.contains(char::is_whitespace) || w.is_empty() {
                    format!("\"{w}\"")
                } else {
                    w.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        if s.chars().count() > 100 {
            s.chars().take(99).collect::<String>() + "…"
        } else {
            s
        }
    }
}

/// The statements of a file and what its includes left to say.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub stmts: Vec<Stmt>,
    /// `(where, what)`: includes that could not be read.
    pub missing: Vec<(Place, String)>,
}

/// One piece of a line: a statement's words, or a brace.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Words(Vec<String>, u32),
    Open(u32),
    Close(u32),
}

/// Reads `main` and its includes.
pub fn parse(files: &dyn Files, main: &Path) -> Result<Parsed, ParseError> {
    let mut parsed = Parsed::default();
    let mut stack = Vec::new();
    let pieces = read(files, main, &mut parsed, &mut stack)?;
    let mut pos = 0;
    parsed.stmts = block(&pieces, &mut pos, None)?;
    Ok(parsed)
}

/// Parses one text, includes left as statements; for tests and fuzzing.
pub fn parse_text(text: &str, name: &str) -> Result<Vec<Stmt>, ParseError> {
    let file: Arc<str> = Arc::from(name);
    let pieces: Vec<(Piece, Arc<str>)> = pieces(text, name)?
        .into_iter()
        .map(|p| (p, file.clone()))
        .collect();
    let mut pos = 0;
    block(&pieces, &mut pos, None)
}

fn read(
    files: &dyn Files,
    path: &Path,
    parsed: &mut Parsed,
    stack: &mut Vec<PathBuf>,
) -> Result<Vec<(Piece, Arc<str>)>, ParseError> {
    let name = path.display().to_string();
    if stack.len() > 32 || stack.iter().any(|p| p == path) {
        return Err(ParseError {
            file: name,
            line: 0,
            message: "includes itself".into(),
        });
    }
    let text = files.read(path).map_err(|e| ParseError {
        file: name.clone(),
        line: 0,
        message: format!("cannot read: {e}"),
    })?;
    stack.push(path.to_owned());
    let file: Arc<str> = Arc::from(name.as_str());
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut out = Vec::new();
    for piece in pieces(&text, &name)? {
        if let Piece::Words(words, line) = &piece {
            if words.first().map(String::as_str) == Some("include") {
                let place = Place {
                    file: file.clone(),
                    line: *line,
                };
                let Some(pattern) = words.get(1) else {
                    parsed
                        .missing
                        .push((place, "include without a file".into()));
                    continue;
                };
                let full = files::normalize(&dir.join(pattern));
                let matches = if files::is_glob(pattern) {
                    files::glob(files, &full)
                } else {
                    vec![full.clone()]
                };
                let mut found = false;
                for m in matches {
                    if files.read(&m).is_ok() {
                        found = true;
                        out.extend(read(files, &m, parsed, stack)?);
                    }
                }
                if !found {
                    parsed.missing.push((
                        place,
                        format!("include {}: no readable file", full.display()),
                    ));
                }
                continue;
            }
        }
        out.push((piece, file.clone()));
    }
    stack.pop();
    Ok(out)
}

/// A text's pieces, line by line.
fn pieces(text: &str, file: &str) -> Result<Vec<Piece>, ParseError> {
    let mut out = Vec::new();
    let mut pending = String::new();
    let mut pending_line = 0;
    for (i, raw) in text.split('\n').enumerate() {
        let line_no = i as u32 + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let (clean, continues) = decomment(raw).map_err(|message| ParseError {
            file: file.to_owned(),
            line: line_no,
            message,
        })?;
        if pending.is_empty() {
            pending_line = line_no;
        }
        pending.push_str(&clean);
        if continues {
            pending.push(' ');
            continue;
        }
        let line = std::mem::take(&mut pending);
        split_line(&line, pending_line, &mut out);
    }
    if !pending.is_empty() {
        split_line(&pending, pending_line, &mut out);
    }
    Ok(out)
}

/// Removes a comment; says whether the line ends in a continuation `\`.
fn decomment(line: &str) -> Result<(String, bool), String> {
    let mut out = String::with_capacity(line.len());
    let mut quote = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quote = !quote;
                out.push(c);
            }
            '\\' => match chars.peek() {
                None => return Ok((out, true)),
                Some('#' | '!') if !quote => out.extend(chars.next()),
                Some(_) => {
                    out.push(c);
                    out.extend(chars.next());
                }
            },
            '#' | '!' if !quote => break,
            c => out.push(c),
        }
    }
    if quote {
        return Err(format!("unterminated quote in {line:?}"));
    }
    Ok((out, false))
}

/// Splits a line at braces outside quotes and into words.
fn split_line(line: &str, line_no: u32, out: &mut Vec<Piece>) {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    let flush = |words: &mut Vec<String>, out: &mut Vec<Piece>| {
        if !words.is_empty() {
            out.push(Piece::Words(std::mem::take(words), line_no));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let mut s = String::new();
                for q in chars.by_ref() {
                    if q == '"' {
                        break;
                    }
                    s.push(q);
                }
                if in_word {
                    word.push_str(&s);
                } else {
                    words.push(s);
                }
            }
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '{' | '}' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                flush(&mut words, out);
                out.push(if c == '{' {
                    Piece::Open(line_no)
                } else {
                    Piece::Close(line_no)
                });
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    flush(&mut words, out);
}

fn block(
    pieces: &[(Piece, Arc<str>)],
    pos: &mut usize,
    opened: Option<(u32, Arc<str>)>,
) -> Result<Vec<Stmt>, ParseError> {
    let mut out: Vec<Stmt> = Vec::new();
    // Whether the last statement may still take a block (`{` on the
    // next line).
    let mut can_open = false;
    while let Some((piece, file)) = pieces.get(*pos) {
        *pos += 1;
        match piece {
            Piece::Words(words, line) => {
                out.push(Stmt {
                    words: words.clone(),
                    block: None,
                    place: Place {
                        file: file.clone(),
                        line: *line,
                    },
                });
                can_open = true;
            }
            Piece::Open(line) => {
                let children = block(pieces, pos, Some((*line, file.clone())))?;
                match out.last_mut() {
                    Some(last) if can_open => last.block = Some(children),
                    _ => {
                        return Err(ParseError {
                            file: file.to_string(),
                            line: *line,
                            message: "'{' with no keyword before it".into(),
                        });
                    }
                }
                can_open = false;
            }
            Piece::Close(line) => {
                return match opened {
                    Some(_) => Ok(out),
                    None => Err(ParseError {
                        file: file.to_string(),
                        line: *line,
                        message: "extra '}' (no block is open)".into(),
                    }),
                };
            }
        }
    }
    match opened {
        None => Ok(out),
        Some((line, file)) => Err(ParseError {
            file: file.to_string(),
            line,
            message: "this '{' is never closed (missing '}')".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::files::Memory;
    use super::*;

    fn keys(s: &[Stmt]) -> Vec<String> {
        s.iter().map(|s| s.summary()).collect()
    }

    #[test]
    fn statements_blocks_and_comments() {
        let text = "! comment\nglobal_defs{\r\n  router_id a # trailing\n}\nvrrp_instance VI_1\n{\n  virtual_ipaddress { 10.0.0.1/24 dev eth0 }\n  notify_master \"/x.sh a#b\"\n}\n";
        let s = parse_text(text, "k.conf").unwrap();
        assert_eq!(keys(&s), ["global_defs", "vrrp_instance VI_1"]);
        assert_eq!(keys(s[0].children()), ["router_id a"]);
        let inst = s[1].children();
        assert_eq!(
            keys(inst),
            ["virtual_ipaddress", "notify_master \"/x.sh a#b\""]
        );
        assert_eq!(keys(inst[0].children()), ["10.0.0.1/24 dev eth0"]);
        assert_eq!(inst[1].place.line, 8);
    }

    #[test]
    fn continuation_and_escapes() {
        let s = parse_text("a b \\\n  c\nd \\#x\n", "k").unwrap();
        assert_eq!(keys(&s), ["a b c", "d #x"]);
    }

    #[test]
    fn unbalanced_braces_are_errors() {
        let e = parse_text("a {\n b\n", "k").unwrap_err();
        assert_eq!((e.line, e.message.contains("never closed")), (1, true));
        let e = parse_text("a\n}\n", "k").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(parse_text("x \"unterminated\n", "k").is_err());
    }

    #[test]
    fn includes_are_relative_to_the_file() {
        let m = Memory::new()
            .with(
                "/etc/keepalived/keepalived.conf",
                "include conf.d/*.conf\ninclude missing.conf\n",
            )
            .with("/etc/keepalived/conf.d/a.conf", "vrrp_instance A {\n}\n");
        let p = parse(&m, Path::new("/etc/keepalived/keepalived.conf")).unwrap();
        assert_eq!(keys(&p.stmts), ["vrrp_instance A"]);
        assert_eq!(
            p.stmts[0].place.to_string(),
            "/etc/keepalived/conf.d/a.conf:1"
        );
        assert_eq!(p.missing.len(), 1);
    }
}
