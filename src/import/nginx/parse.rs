//! Tokens → directives, with `include` expanded in place as nginx does
//! while it reads (a glob includes every match, sorted; a relative path is
//! taken from the configuration prefix, the directory of the main file
//! unless told otherwise, and from the including file's directory when it
//! is not there). A missing include is recorded, not fatal: the importer
//! reports it and translates the rest.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::super::ParseError;
use super::super::files::{self, Files};
use super::lex::{self, Token, Word};

/// Where something was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub file: Arc<str>,
    pub line: u32,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One directive: `name args;` or `name args { block }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<Word>,
    pub block: Option<Vec<Directive>>,
    pub place: Place,
}

impl Directive {
    /// The argument texts.
    pub fn texts(&self) -> Vec<&str> {
        self.args.iter().map(|w| w.text.as_str()).collect()
    }

    /// The `i`th argument's text, if any.
    pub fn arg(&self, i: usize) -> Option<&str> {
        self.args.get(i).map(|w| w.text.as_str())
    }

    /// The block's directives (empty for a simple directive).
    pub fn children(&self) -> &[Directive] {
        self.block.as_deref().unwrap_or(&[])
    }

    /// How the directive reads, shortened for a report line.
    pub fn summary(&self) -> String {
        let mut s = self.name.clone();
        for a in &self.args {
            s.push(' ');
            // As written where that reads back the same; backslashes of
            // regexes need no quoting to be read.
            if a.text.is_empty() || a.text.contains([' ', '\t', '\n', ';', '{', '}', '"', '\'']) {
                s.push_str(&lex::quote(&a.text));
            } else {
                s.push_str(&a.text);
            }
        }
        const MAX: usize = 100;
        if s.chars().count() > MAX {
            s = s.chars().take(MAX - 1).collect::<String>() + "…";
        }
        s
    }
}

/// What reading the files left to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncludeNote {
    /// `include` of a file that could not be read.
    Missing {
        place: Place,
        path: PathBuf,
        why: String,
    },
    /// `include` of a glob that matched nothing (nginx accepts this).
    NoMatch { place: Place, pattern: PathBuf },
    /// `include` of a relative path found next to the including file, not
    /// in the prefix where nginx looks.
    BesideFile { place: Place, path: PathBuf },
}

/// The parsed configuration: top-level directives and include notes.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub directives: Vec<Directive>,
    pub includes: Vec<IncludeNote>,
    /// Every file read, in order.
    pub files: Vec<PathBuf>,
}

/// How deep includes may nest before we call it a loop.
const MAX_INCLUDE_DEPTH: usize = 32;

/// Reads `main` and everything it includes.
pub fn parse(files: &dyn Files, main: &Path, prefix: Option<&Path>) -> Result<Parsed, ParseError> {
    let text = files.read(main).map_err(|e| ParseError {
        file: main.display().to_string(),
        line: 0,
        message: format!("cannot read: {e}"),
    })?;
    let prefix = prefix
        .map(Path::to_path_buf)
        .or_else(|| main.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let mut reader = Reader {
        files,
        prefix,
        parsed: Parsed::default(),
        stack: Vec::new(),
    };
    let directives = reader.file(main, &text)?;
    reader.parsed.directives = directives;
    Ok(reader.parsed)
}

/// Parses one text with no includes expanded (`include` stays a
/// directive); for tests and the fuzz target.
pub fn parse_text(text: &str, name: &str) -> Result<Vec<Directive>, ParseError> {
    let file: Arc<str> = Arc::from(name);
    let tokens = lex::tokens(text, name)?;
    let mut pos = 0;
    let out = block(&tokens, &mut pos, &file, None, &mut |_, d| Ok(vec![d]))?;
    Ok(out)
}

struct Reader<'a> {
    files: &'a dyn Files,
    prefix: PathBuf,
    parsed: Parsed,
    /// Files being read, to refuse include loops.
    stack: Vec<PathBuf>,
}

impl Reader<'_> {
    fn file(&mut self, path: &Path, text: &str) -> Result<Vec<Directive>, ParseError> {
        let name = path.display().to_string();
        if self.stack.len() >= MAX_INCLUDE_DEPTH || self.stack.iter().any(|p| p == path) {
            return Err(ParseError {
                file: name,
                line: 0,
                message: format!(
                    "includes itself (through {})",
                    self.stack
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(" → ")
                ),
            });
        }
        self.stack.push(path.to_owned());
        self.parsed.files.push(path.to_owned());
        let file: Arc<str> = Arc::from(name.as_str());
        let tokens = lex::tokens(text, &name)?;
        let mut pos = 0;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let result = block(&tokens, &mut pos, &file, None, &mut |reader_file, d| {
            if d.name == "include" && d.block.is_none() {
                self.include(&d, &dir, reader_file)
            } else {
                Ok(vec![d])
            }
        });
        self.stack.pop();
        result
    }

    /// Expands one `include`.
    fn include(
        &mut self,
        d: &Directive,
        dir: &Path,
        _file: &Arc<str>,
    ) -> Result<Vec<Directive>, ParseError> {
        let [arg] = d.args.as_slice() else {
            return Err(ParseError {
                file: d.place.file.to_string(),
                line: d.place.line,
                message: format!(
                    "invalid number of arguments in \"include\" directive (1 expected, {} given)",
                    d.args.len()
                ),
            });
        };
        let written = Path::new(&arg.text);
        let in_prefix = files::normalize(&self.prefix.join(written));
        let beside = files::normalize(&dir.join(written));
        let mut out = Vec::new();
        if files::is_glob(&arg.text) {
            let mut matches = files::glob(self.files, &in_prefix);
            if matches.is_empty() && written.is_relative() && beside != in_prefix {
                matches = files::glob(self.files, &beside);
                if !matches.is_empty() {
                    self.parsed.includes.push(IncludeNote::BesideFile {
                        place: d.place.clone(),
                        path: beside.clone(),
                    });
                }
            }
            if matches.is_empty() {
                self.parsed.includes.push(IncludeNote::NoMatch {
                    place: d.place.clone(),
                    pattern: in_prefix,
                });
            }
            for m in matches {
                out.extend(self.read_included(d, &m)?);
            }
            return Ok(out);
        }
        let path = if written.is_relative()
            && self.files.read(&in_prefix).is_err()
            && self.files.read(&beside).is_ok()
        {
            self.parsed.includes.push(IncludeNote::BesideFile {
                place: d.place.clone(),
                path: beside.clone(),
            });
            beside
        } else {
            in_prefix
        };
        self.read_included(d, &path)
    }

    fn read_included(&mut self, d: &Directive, path: &Path) -> Result<Vec<Directive>, ParseError> {
        match self.files.read(path) {
            Ok(text) => self.file(path, &text),
            Err(e) => {
                self.parsed.includes.push(IncludeNote::Missing {
                    place: d.place.clone(),
                    path: path.to_owned(),
                    why: e.to_string(),
                });
                Ok(Vec::new())
            }
        }
    }
}

type Expand<'a> = dyn FnMut(&Arc<str>, Directive) -> Result<Vec<Directive>, ParseError> + 'a;

/// Reads directives until the matching `}` (`opened` is the line of its
/// `{`) or, at the top (`opened` = None), the end of the tokens.
fn block(
    tokens: &[Token],
    pos: &mut usize,
    file: &Arc<str>,
    opened: Option<u32>,
    expand: &mut Expand<'_>,
) -> Result<Vec<Directive>, ParseError> {
    let err = |line: u32, message: String| ParseError {
        file: file.to_string(),
        line,
        message,
    };
    let mut out = Vec::new();
    let mut args: Vec<Word> = Vec::new();
    loop {
        let Some(token) = tokens.get(*pos) else {
            let last = tokens.last().map_or(1, token_line);
            if !args.is_empty() {
                return Err(err(
                    last,
                    "unexpected end of file, expecting \";\" or \"}\"".into(),
                ));
            }
            return match opened {
                Some(line) => Err(err(
                    last,
                    format!(
                        "unexpected end of file, expecting \"}}\" (to close the block opened on line {line})"
                    ),
                )),
                None => Ok(out),
            };
        };
        *pos += 1;
        match token {
            Token::Word(w) => args.push(w.clone()),
            Token::End(line) => {
                if args.is_empty() {
                    return Err(err(*line, "unexpected \";\"".into()));
                }
                let d = directive(std::mem::take(&mut args), None, file);
                out.extend(expand(file, d)?);
            }
            Token::Open(line) => {
                if args.is_empty() {
                    return Err(err(*line, "unexpected \"{\"".into()));
                }
                let children = block(tokens, pos, file, Some(*line), expand)?;
                let d = directive(std::mem::take(&mut args), Some(children), file);
                out.extend(expand(file, d)?);
            }
            Token::Close(line) => {
                if !args.is_empty() {
                    return Err(err(
                        *line,
                        format!(
                            "unexpected \"}}\": the directive \"{}\" on line {} has no \";\"",
                            args[0].text, args[0].line
                        ),
                    ));
                }
                return match opened {
                    Some(_) => Ok(out),
                    None => Err(err(*line, "unexpected \"}\"".into())),
                };
            }
        }
    }
}

fn token_line(t: &Token) -> u32 {
    match t {
        Token::Word(w) => w.line + w.text.matches('\n').count() as u32,
        Token::End(l) | Token::Open(l) | Token::Close(l) => *l,
    }
}

fn directive(mut words: Vec<Word>, block: Option<Vec<Directive>>, file: &Arc<str>) -> Directive {
    let first = words.remove(0);
    Directive {
        name: first.text,
        args: words,
        block,
        place: Place {
            file: file.clone(),
            line: first.line,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::files::Memory;
    use super::*;

    #[test]
    fn nests_blocks() {
        let d = parse_text(
            "http {\n  server {\n    listen 80;\n    location / { root /srv; }\n  }\n}\n",
            "n.conf",
        )
        .unwrap();
        assert_eq!(d.len(), 1);
        let server = &d[0].children()[0];
        assert_eq!(server.name, "server");
        assert_eq!(server.place.line, 2);
        let loc = &server.children()[1];
        assert_eq!(loc.texts(), ["/"]);
        assert_eq!(loc.children()[0].place.to_string(), "n.conf:4");
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse_text("http {\n server {\n listen 80\n }\n", "x.conf").unwrap_err();
        assert_eq!(e.line, 4);
        assert!(
            e.message.contains("\"listen\" on line 3 has no \";\""),
            "{}",
            e.message
        );
        let e = parse_text("http {\n server {\n", "x.conf").unwrap_err();
        assert!(e.message.contains("expecting \"}\""), "{}", e.message);
        let e = parse_text("a;\n}\n", "x.conf").unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (2, "unexpected \"}\""));
        let e = parse_text("a b", "x.conf").unwrap_err();
        assert!(e.message.contains("expecting \";\""), "{}", e.message);
        let e = parse_text(";", "x.conf").unwrap_err();
        assert_eq!(e.message, "unexpected \";\"");
    }

    #[test]
    fn includes_expand_in_place_from_the_prefix() {
        let m = Memory::new()
            .with(
                "/etc/nginx/nginx.conf",
                "http {\n include conf.d/*.conf;\n include mime.types;\n include missing.conf;\n}\n",
            )
            .with("/etc/nginx/conf.d/b.conf", "server { listen 81; }\n")
            .with("/etc/nginx/conf.d/a.conf", "server { listen 80; }\n")
            .with("/etc/nginx/mime.types", "types { text/html html; }\n");
        let p = parse(&m, Path::new("/etc/nginx/nginx.conf"), None).unwrap();
        let http = &p.directives[0];
        let names: Vec<String> = http
            .children()
            .iter()
            .map(|d| format!("{} {}", d.name, d.place))
            .collect();
        assert_eq!(
            names,
            [
                "server /etc/nginx/conf.d/a.conf:1",
                "server /etc/nginx/conf.d/b.conf:1",
                "types /etc/nginx/mime.types:1"
            ]
        );
        assert!(matches!(
            &p.includes[..],
            [IncludeNote::Missing { place, .. }] if place.line == 4
        ));
        assert_eq!(p.files.len(), 4);
    }

    #[test]
    fn a_relative_include_falls_back_to_the_including_file() {
        let m = Memory::new()
            .with(
                "/etc/nginx/sites/site.conf",
                "server { include snip.conf; }",
            )
            .with("/etc/nginx/sites/snip.conf", "listen 80;");
        let p = parse(
            &m,
            Path::new("/etc/nginx/sites/site.conf"),
            Some(Path::new("/etc/nginx")),
        )
        .unwrap();
        assert_eq!(p.directives[0].children()[0].name, "listen");
        assert!(matches!(&p.includes[..], [IncludeNote::BesideFile { .. }]));
    }

    #[test]
    fn include_loops_are_errors() {
        let m = Memory::new().with("/a.conf", "include /a.conf;");
        let e = parse(&m, Path::new("/a.conf"), None).unwrap_err();
        assert!(e.message.contains("includes itself"), "{}", e.message);
    }
}
