//! nginx's tokenizer, rule for rule as `ngx_conf_read_token` reads a file:
//!
//! - words are separated by spaces, tabs, CR and LF; `;` ends a
//!   directive, `{` opens a block and `}` closes one;
//! - `"..."` and `'...'` are words when they start a word; inside them
//!   `;`, `{`, `}` and `#` are plain characters; after the closing quote
//!   only a space, `;`, `{` or `)` may follow (`if ($a = "b")`);
//! - `#` starts a comment only where a word could start (`a#b` is a word);
//! - `\` makes the next character plain (`\;`, `\ `, `\"`); when the word
//!   is stored, `\"`, `\'` and `\\` become the character and `\t`, `\r`,
//!   `\n` a tab, CR, LF; every other `\x` is kept as written (regexes);
//! - `${` inside a word is part of a variable, not a block (`${name}`).

use super::super::ParseError;

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Word(Word),
    /// `;`, at this line.
    End(u32),
    /// `{`.
    Open(u32),
    /// `}`.
    Close(u32),
}

/// A word as nginx stores it (escapes processed), with where it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    /// Written in quotes: `""` is an empty word, and `if` needs to know.
    pub quoted: bool,
    pub line: u32,
}

/// Splits `text` (the contents of `file`) into tokens.
pub fn tokens(text: &str, file: &str) -> Result<Vec<Token>, ParseError> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut line: u32 = 1;
    let err = |line: u32, message: String| ParseError {
        file: file.to_owned(),
        line,
        message,
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            ' ' | '\t' | '\r' => i += 1,
            ';' => {
                out.push(Token::End(line));
                i += 1;
            }
            '{' => {
                out.push(Token::Open(line));
                i += 1;
            }
            '}' => {
                out.push(Token::Close(line));
                i += 1;
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '"' | '\'' => {
                let start_line = line;
                let quote = c;
                i += 1;
                let mut raw = String::new();
                loop {
                    let Some(&ch) = chars.get(i) else {
                        return Err(err(
                            line,
                            format!(
                                "unexpected end of file in a {quote}...{quote} string started on line {start_line}"
                            ),
                        ));
                    };
                    if ch == '\n' {
                        line += 1;
                    }
                    if ch == '\\' {
                        raw.push(ch);
                        if let Some(&next) = chars.get(i + 1) {
                            if next == '\n' {
                                line += 1;
                            }
                            raw.push(next);
                        }
                        i += 2;
                        continue;
                    }
                    i += 1;
                    if ch == quote {
                        break;
                    }
                    raw.push(ch);
                }
                out.push(Token::Word(Word {
                    text: unescape(&raw),
                    quoted: true,
                    line: start_line,
                }));
                match chars.get(i) {
                    None | Some(' ' | '\t' | '\r' | '\n' | ';' | '{' | ')') => {}
                    Some(other) => {
                        return Err(err(
                            line,
                            format!("unexpected \"{other}\" after a quoted string"),
                        ));
                    }
                }
            }
            _ => {
                let start_line = line;
                let mut raw = String::new();
                let mut variable = false;
                while let Some(&ch) = chars.get(i) {
                    if ch == '{' && variable {
                        raw.push(ch);
                        i += 1;
                        variable = false;
                        continue;
                    }
                    variable = false;
                    match ch {
                        ' ' | '\t' | '\r' | '\n' | ';' | '{' => break,
                        '\\' => {
                            raw.push(ch);
                            if let Some(&next) = chars.get(i + 1) {
                                if next == '\n' {
                                    line += 1;
                                }
                                raw.push(next);
                            }
                            i += 2;
                        }
                        '$' => {
                            variable = true;
                            raw.push(ch);
                            i += 1;
                        }
                        _ => {
                            raw.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push(Token::Word(Word {
                    text: unescape(&raw),
                    quoted: false,
                    line: start_line,
                }));
            }
        }
    }
    Ok(out)
}

/// nginx's escape processing when a word is stored.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some('"' | '\'' | '\\') => {
                    out.extend(chars.next());
                    continue;
                }
                Some('t') => {
                    chars.next();
                    out.push('\t');
                    continue;
                }
                Some('r') => {
                    chars.next();
                    out.push('\r');
                    continue;
                }
                Some('n') => {
                    chars.next();
                    out.push('\n');
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    out
}

/// Writes `text` as one nginx word that reads back as `text`: bare when
/// that is safe, else double-quoted with `"` and `\` escaped.
pub fn quote(text: &str) -> String {
    let bare = !text.is_empty()
        && !text.starts_with(['"', '\'', '#'])
        && !text.contains([' ', '\t', '\r', '\n', ';', '{', '}', '\\', '"', '\'', '#']);
    if bare {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        tokens(text, "t")
            .unwrap()
            .into_iter()
            .map(|t| match t {
                Token::Word(w) => w.text,
                Token::End(_) => ";".into(),
                Token::Open(_) => "{".into(),
                Token::Close(_) => "}".into(),
            })
            .collect()
    }

    #[test]
    fn words_blocks_and_comments() {
        assert_eq!(
            words("server { listen 80; # comment\n server_name a#b; }"),
            [
                "server",
                "{",
                "listen",
                "80",
                ";",
                "server_name",
                "a#b",
                ";",
                "}"
            ]
        );
        assert_eq!(words("a;b{c}"), ["a", ";", "b", "{", "c}"]);
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(
            words(r#"return 200 "a \"b\" \\ \n;{}#";"#),
            ["return", "200", "a \"b\" \\ \n;{}#", ";"]
        );
        assert_eq!(
            words(r"location ~ \.php$ {"),
            ["location", "~", r"\.php$", "{"]
        );
        assert_eq!(words("a 'x y' \"\";"), ["a", "x y", "", ";"]);
        assert_eq!(words(r"a b\;c;"), ["a", r"b\;c", ";"]);
    }

    #[test]
    fn variables_with_braces_stay_in_the_word() {
        assert_eq!(words("set $a ${b}c;"), ["set", "$a", "${b}c", ";"]);
        assert_eq!(words("a x${y};"), ["a", "x${y}", ";"]);
    }

    #[test]
    fn a_paren_may_follow_a_quoted_string() {
        assert_eq!(
            words("if ($a != \"PURGE\") {"),
            ["if", "($a", "!=", "PURGE", ")", "{"]
        );
        let e = tokens("a \"b\"c;", "f.conf").unwrap_err();
        assert_eq!((e.line, e.file.as_str()), (1, "f.conf"));
        assert!(e.message.contains("unexpected \"c\""), "{}", e.message);
    }

    #[test]
    fn lines_are_counted_in_strings_too() {
        let t = tokens("a \"x\ny\";\nb;", "f").unwrap();
        assert!(matches!(&t[3], Token::Word(w) if w.text == "b" && w.line == 3));
        let e = tokens("a \"x\n\n", "f").unwrap_err();
        assert!(e.message.contains("started on line 1"), "{}", e.message);
    }

    #[test]
    fn quote_round_trips() {
        for s in [
            "plain", "", "a b", "x\"y", r"\.php$", "$host", "a;b", "#x", "{", "é",
        ] {
            let q = quote(s);
            let back = words(&format!("d {q};"));
            assert_eq!(back, ["d", s, ";"], "{q}");
        }
    }
}
