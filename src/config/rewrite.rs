//! `rewrite` rules (nginx's ngx_http_rewrite_module), validated: a regex
//! matched against the normalized URI, a replacement template that may
//! use its captures, and a flag.

use http::StatusCode;
use regex::Regex;
use serde::Deserialize;

use super::template::Template;

/// `rewrite = [{ regex = "^/old/(.*)$", replacement = "/new/$1", flag = "last" }]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteFile {
    pub regex: String,
    pub replacement: String,
    /// `last`, `break`, `redirect`, `permanent`; none = go on with the
    /// next rule.
    pub flag: Option<String>,
}

/// One validated rule. The replacement is split at its first literal
/// `?` (as nginx compiles it), so a `?` that comes from a capture stays in
/// the path.
#[derive(Debug, Clone)]
pub struct Rewrite {
    pub regex: Regex,
    /// The replacement up to its first `?`: a path (decoded, as `$uri`),
    /// or the URL of a redirect. May use `$1`..`$9`, named groups of
    /// `regex`, and any variable.
    pub target: Template,
    /// What follows the first `?` (without a final `?`): new arguments.
    pub query: Option<Template>,
    /// The request's arguments are appended (after `query`, with `&`)
    /// unless the replacement ends with `?`.
    pub append_args: bool,
    pub flag: RewriteFlag,
}

/// Splits a replacement at its first `?`: `(target, query, append_args)`.
pub fn split_replacement(text: &str) -> (&str, Option<&str>, bool) {
    let append_args = !text.ends_with('?');
    match text.split_once('?') {
        None => (text, None, true),
        Some((target, rest)) => {
            let rest = rest.strip_suffix('?').unwrap_or(rest);
            (target, (!rest.is_empty()).then_some(rest), append_args)
        }
    }
}

/// What happens after a rule's regex matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewriteFlag {
    /// No flag: the URI changes and the next rule is tried; at the end of
    /// a location's rules a changed URI restarts the location search.
    Continue,
    /// `last`: stop the rules; in a location, search the location for the
    /// new URI.
    Last,
    /// `break`: stop the rules; in a location, stay in it with the new URI.
    Break,
    /// `redirect` (302), `permanent` (301), or a replacement that starts
    /// with `http://`, `https://` or `$scheme` (302).
    Redirect(StatusCode),
}

impl RewriteFlag {
    /// Parses the flag; `replacement` decides the implicit redirect.
    pub fn parse(flag: Option<&str>, replacement: &str) -> Result<RewriteFlag, String> {
        let absolute = replacement.starts_with("http://")
            || replacement.starts_with("https://")
            || replacement.starts_with("$scheme");
        Ok(match flag {
            None if absolute => RewriteFlag::Redirect(StatusCode::FOUND),
            None => RewriteFlag::Continue,
            // nginx: an absolute replacement redirects whatever the flag.
            Some("last" | "break") if absolute => RewriteFlag::Redirect(StatusCode::FOUND),
            Some("last") => RewriteFlag::Last,
            Some("break") => RewriteFlag::Break,
            Some("redirect") => RewriteFlag::Redirect(StatusCode::FOUND),
            Some("permanent") => RewriteFlag::Redirect(StatusCode::MOVED_PERMANENTLY),
            Some(other) => {
                return Err(format!(
                    "{other:?} is not a rewrite flag; use last, break, redirect or permanent \
                     (or leave it out)"
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacements_split_at_the_first_question_mark() {
        assert_eq!(split_replacement("/new/$1"), ("/new/$1", None, true));
        assert_eq!(
            split_replacement("/show?user=$1?"),
            ("/show", Some("user=$1"), false)
        );
        assert_eq!(
            split_replacement("/show?user=$1"),
            ("/show", Some("user=$1"), true)
        );
        assert_eq!(split_replacement("/x?"), ("/x", None, false));
        assert_eq!(split_replacement("/x?a=1?b"), ("/x", Some("a=1?b"), true));
    }

    #[test]
    fn flags() {
        use RewriteFlag::*;
        assert_eq!(RewriteFlag::parse(None, "/x").unwrap(), Continue);
        assert_eq!(RewriteFlag::parse(Some("last"), "/x").unwrap(), Last);
        assert_eq!(RewriteFlag::parse(Some("break"), "/x").unwrap(), Break);
        assert_eq!(
            RewriteFlag::parse(Some("redirect"), "/x").unwrap(),
            Redirect(StatusCode::FOUND)
        );
        assert_eq!(
            RewriteFlag::parse(Some("permanent"), "/x").unwrap(),
            Redirect(StatusCode::MOVED_PERMANENTLY)
        );
        for absolute in ["http://a/$1", "https://b/", "$scheme://$host/x"] {
            assert_eq!(
                RewriteFlag::parse(None, absolute).unwrap(),
                Redirect(StatusCode::FOUND)
            );
            assert_eq!(
                RewriteFlag::parse(Some("last"), absolute).unwrap(),
                Redirect(StatusCode::FOUND)
            );
            assert_eq!(
                RewriteFlag::parse(Some("permanent"), absolute).unwrap(),
                Redirect(StatusCode::MOVED_PERMANENTLY)
            );
        }
        assert!(RewriteFlag::parse(Some("forever"), "/x").is_err());
    }
}
