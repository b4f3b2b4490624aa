//! General `rewrite` rules: what the idioms (whole-site redirects, a
//! prefix strip before `proxy_pass`) did not consume becomes vigil's
//! `rewrite = [{ regex, replacement, flag }]` on the same level, in order.
//! vigil runs them with nginx's rules (server rules before the location
//! search, a location's before its action; `last` searches again, `break`
//! stays, `redirect`/`permanent` answer), so only what its regex engine or
//! templates cannot express is left out, and reported.

use super::super::super::report::Status;
use super::super::super::toml_out::Value;
use super::super::parse::Directive;
use super::super::values::{self, VarContext};
use super::Tr;

impl<'a> Tr<'a> {
    /// The level's `rewrite`s the idioms left, as vigil rules (`None`:
    /// none to write). Those after the level's `return` or `break` are
    /// never reached in nginx.
    pub(crate) fn rewrites(
        &mut self,
        here: &'a [Directive],
        vars: &VarContext<'_>,
    ) -> Option<Value> {
        let end = here
            .iter()
            .position(|d| matches!(d.name.as_str(), "return" | "break"))
            .unwrap_or(here.len());
        for d in here[end..].iter().filter(|d| d.name == "rewrite") {
            if !self.used(d) {
                self.note(
                    d,
                    Status::NotNeeded,
                    "never reached: a return or break comes first",
                    "",
                );
            }
        }
        let mut rules = Vec::new();
        for d in here[..end].iter().filter(|d| d.name == "rewrite") {
            if self.used(d) {
                continue;
            }
            match rule(d, vars) {
                Ok(fields) => {
                    self.use_(d);
                    rules.push(Value::Inline(fields));
                }
                Err(why) => self.note(
                    d,
                    Status::NotSupported,
                    why,
                    "write the rule for vigil by hand (docs/CONFIG.md, rewrite), or move it into the application",
                ),
            }
        }
        (!rules.is_empty()).then_some(Value::Array(rules))
    }
}

/// `rewrite regex replacement [flag]` → the rule's fields.
fn rule(d: &Directive, vars: &VarContext<'_>) -> Result<Vec<(String, Value)>, String> {
    let args = d.texts();
    let (regex, replacement, flag) = match args.as_slice() {
        [r, x] => (*r, *x, None),
        [r, x, f] => (*r, *x, Some(*f)),
        _ => return Err("expected a regex, a replacement and an optional flag".into()),
    };
    if let Some(f) = flag {
        if !matches!(f, "last" | "break" | "redirect" | "permanent") {
            return Err(format!("unknown flag {f}"));
        }
    }
    let re = regex::Regex::new(regex).map_err(|_| {
        format!("the regex {regex} uses what vigil's regex engine lacks (look-around, back-references, possessive quantifiers)")
    })?;
    let replacement = values::template_in(replacement, vars, Some(&re))?;
    let mut fields = vec![
        ("regex".to_owned(), Value::str(regex)),
        ("replacement".to_owned(), Value::str(replacement)),
    ];
    if let Some(f) = flag {
        fields.push(("flag".to_owned(), Value::str(f)));
    }
    Ok(fields)
}
