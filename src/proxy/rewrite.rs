//! The rewrite engine (nginx's ngx_http_rewrite_module `rewrite`): runs a
//! list of rules over the request's URI. Pure: the caller renders
//! templates (it owns the request's variables) and acts on the outcome.
//!
//! nginx's rules, which the handler follows:
//! - server-level rules run once, before the location search; `last` and
//!   `break` both just stop them;
//! - location-level rules run when a location is chosen; `last` — or the
//!   end of the rules with a changed URI — searches the location again
//!   for the new URI; `break` stays in this location with it;
//! - each new search counts against the request's limit of 10 URI
//!   changes, shared with every other internal redirect (`try_files`, an
//!   index, `error_page`); past it the request gets 500 and a log line;
//! - a replacement starting with `http://`, `https://` or `$scheme`, or
//!   the flags `redirect` (302) / `permanent` (301), answer with a
//!   redirect at once.

use http::StatusCode;

use crate::config::Template;
use crate::config::rewrite::{Rewrite, RewriteFlag};
use crate::config::template::Captures;

/// The URI as the rules see and change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UriState {
    /// The normalized, decoded path (`$uri`).
    pub path: String,
    /// The query string without `?` (`$args`); `None` when empty.
    pub args: Option<String>,
    /// A rule changed the URI.
    pub changed: bool,
}

/// How a list of rules ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// The rules ran out (`state.changed` says whether any applied).
    Done,
    /// `last`.
    Last,
    /// `break`.
    Break,
    /// Answer with this redirect.
    Redirect {
        status: StatusCode,
        location: String,
    },
}

/// Renders a template for a rule that matched: with the rule's captures,
/// and `$uri` / `$args` as `state` has them.
pub(crate) type Render<'a> = dyn FnMut(&Template, &Captures, &UriState) -> String + 'a;

/// Runs `rules` over `state`.
pub(crate) fn run(rules: &[Rewrite], state: &mut UriState, render: &mut Render<'_>) -> Step {
    for rule in rules {
        let Some(captures) = Captures::of(&rule.regex, &state.path) else {
            continue;
        };
        let target = render(&rule.target, &captures, state);
        let query = rule.query.as_ref().map(|q| render(q, &captures, state));
        let args = combine_args(query, state.args.as_deref(), rule.append_args);
        if let RewriteFlag::Redirect(status) = rule.flag {
            let mut location = escape_location(&target);
            if let Some(a) = args {
                location.push('?');
                location.push_str(&a);
            }
            return Step::Redirect { status, location };
        }
        state.path = target;
        state.args = args;
        state.changed = true;
        match rule.flag {
            RewriteFlag::Last => return Step::Last,
            RewriteFlag::Break => return Step::Break,
            RewriteFlag::Continue | RewriteFlag::Redirect(_) => {}
        }
    }
    Step::Done
}

/// The new arguments: the replacement's, then (unless it ended with `?`)
/// the request's, joined with `&`.
fn combine_args(query: Option<String>, old: Option<&str>, append: bool) -> Option<String> {
    let old = old.filter(|o| append && !o.is_empty());
    match (query.filter(|q| !q.is_empty()), old) {
        (None, None) => None,
        (Some(q), None) => Some(q),
        (None, Some(o)) => Some(o.to_owned()),
        (Some(q), Some(o)) => Some(format!("{q}&{o}")),
    }
}

/// A redirect target may hold decoded bytes from captures (a space, UTF-8):
/// escape what cannot stand in a URI, keep everything else as written.
fn escape_location(target: &str) -> String {
    escape(target, b"\"<>\\^`{|}")
}

/// Rewritten arguments, likewise (and `#`, which would end the query).
pub(crate) fn escape_query(args: &str) -> String {
    escape(args, b"\"<>\\^`{|}#")
}

fn escape(text: &str, also: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_graphic() && !also.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::rewrite::split_replacement;
    use crate::config::template::{Scope, Var, Vars};

    fn rule(regex: &str, replacement: &str, flag: Option<&str>) -> Rewrite {
        let re = regex::Regex::new(regex).unwrap();
        let (target, query, append_args) = split_replacement(replacement);
        let scope = Scope {
            maps: &[],
            captures: Some(&re),
        };
        Rewrite {
            target: Template::parse_in(target, scope).unwrap(),
            query: query.map(|q| Template::parse_in(q, scope).unwrap()),
            append_args,
            flag: RewriteFlag::parse(flag, replacement).unwrap(),
            regex: re,
        }
    }

    /// `$1`.., `$uri`, `$args`, `$scheme` (https), `$host` (example.com).
    struct TestVars<'a>(&'a Captures, &'a UriState);
    impl Vars for TestVars<'_> {
        fn write_var(&self, var: &Var, out: &mut String) {
            match var {
                Var::Capture(i) => out.push_str(self.0.get(*i).unwrap_or("")),
                Var::Uri => out.push_str(&self.1.path),
                Var::Args => out.push_str(self.1.args.as_deref().unwrap_or("")),
                Var::Scheme => out.push_str("https"),
                Var::Host => out.push_str("example.com"),
                Var::RequestUri => out.push_str("/original?x=1"),
                _ => {}
            }
        }
    }

    fn go(rules: &[Rewrite], uri: &str) -> (Step, UriState) {
        let (path, args) = match uri.split_once('?') {
            Some((p, a)) => (p, Some(a.to_owned())),
            None => (uri, None),
        };
        let mut state = UriState {
            path: path.to_owned(),
            args,
            changed: false,
        };
        let step = run(rules, &mut state, &mut |t, c, s| t.render(&TestVars(c, s)));
        (step, state)
    }

    fn uri(s: &UriState) -> String {
        match &s.args {
            Some(a) => format!("{}?{a}", s.path),
            None => s.path.clone(),
        }
    }

    /// nginx's rewrite module docs, server level:
    ///   rewrite ^(/download/.*)/media/(.*)\..*$ $1/mp3/$2.mp3 last;
    ///   rewrite ^(/download/.*)/audio/(.*)\..*$ $1/mp3/$2.ra  last;
    #[test]
    fn docs_download_example() {
        let rules = [
            rule(
                r"^(/download/.*)/media/(.*)\..*$",
                "$1/mp3/$2.mp3",
                Some("last"),
            ),
            rule(
                r"^(/download/.*)/audio/(.*)\..*$",
                "$1/mp3/$2.ra",
                Some("last"),
            ),
        ];
        let (step, s) = go(&rules, "/download/cdn/media/song.wma");
        assert_eq!(step, Step::Last);
        assert_eq!(uri(&s), "/download/cdn/mp3/song.mp3");
        let (step, s) = go(&rules, "/download/x/audio/talk.wav?q=1");
        assert_eq!(step, Step::Last);
        assert_eq!(uri(&s), "/download/x/mp3/talk.ra?q=1");
        let (step, s) = go(&rules, "/download/x/video/a.mp4");
        assert_eq!(step, Step::Done);
        assert!(!s.changed);
        // In a location, `break` keeps the rewritten URI there.
        let rules = [rule(
            r"^(/download/.*)/media/(.*)\..*$",
            "$1/mp3/$2.mp3",
            Some("break"),
        )];
        let (step, s) = go(&rules, "/download/a/media/b.ogg");
        assert_eq!(step, Step::Break);
        assert_eq!(s.path, "/download/a/mp3/b.mp3");
    }

    /// nginx docs: `rewrite ^/users/(.*)$ /show?user=$1? last;` — the
    /// trailing `?` drops the original arguments.
    #[test]
    fn docs_trailing_question_mark_drops_arguments() {
        let rules = [rule(r"^/users/(.*)$", "/show?user=$1?", Some("last"))];
        let (_, s) = go(&rules, "/users/alice?ref=mail");
        assert_eq!(uri(&s), "/show?user=alice");
        let rules = [rule(r"^/users/(.*)$", "/show?user=$1", Some("last"))];
        let (_, s) = go(&rules, "/users/alice?ref=mail");
        assert_eq!(uri(&s), "/show?user=alice&ref=mail");
        let rules = [rule(r"^/old$", "/new?", None)];
        let (_, s) = go(&rules, "/old?a=1");
        assert_eq!(uri(&s), "/new");
        let rules = [rule(r"^/old$", "/new", None)];
        let (_, s) = go(&rules, "/old?a=1");
        assert_eq!(uri(&s), "/new?a=1");
    }

    #[test]
    fn rules_without_a_flag_chain() {
        let rules = [
            rule(r"^/a/(.*)$", "/b/$1", None),
            rule(r"^/b/(.*)$", "/c/$1", None),
            rule(r"^/zzz$", "/never", None),
        ];
        let (step, s) = go(&rules, "/a/x");
        assert_eq!(step, Step::Done);
        assert!(s.changed);
        assert_eq!(s.path, "/c/x");
    }

    #[test]
    fn redirects() {
        // corpus: rewrite ^/(.*)$ http://pkg.freebsd.org/$1 redirect;
        let rules = [rule(
            r"^/(.*)$",
            "http://pkg.freebsd.org/$1",
            Some("redirect"),
        )];
        let (step, _) = go(&rules, "/FreeBSD:14/latest?x=1");
        assert_eq!(
            step,
            Step::Redirect {
                status: StatusCode::FOUND,
                location: "http://pkg.freebsd.org/FreeBSD:14/latest?x=1".into()
            }
        );
        // An absolute replacement redirects even without a flag.
        let rules = [rule(r"^/(.*)$", "https://www.example.com/$1", None)];
        assert!(matches!(go(&rules, "/a").0, Step::Redirect { status, .. } if status == 302));
        let rules = [rule(
            r"^",
            "$scheme://$host$request_uri?",
            Some("permanent"),
        )];
        assert_eq!(
            go(&rules, "/ignored?y=2").0,
            Step::Redirect {
                status: StatusCode::MOVED_PERMANENTLY,
                location: "https://example.com/original?x=1".into()
            }
        );
        // A relative redirect, with a decoded space escaped.
        let rules = [rule(r"^/old/(.*)$", "/new/$1", Some("permanent"))];
        assert_eq!(
            go(&rules, "/old/a b").0,
            Step::Redirect {
                status: StatusCode::MOVED_PERMANENTLY,
                location: "/new/a%20b".into()
            }
        );
    }

    #[test]
    fn a_question_mark_from_a_capture_stays_in_the_path() {
        let rules = [rule(r"^/q/(.*)$", "/r/$1", Some("break"))];
        // The request had no args; `what?` was a decoded %3F in the path.
        let mut state = UriState {
            path: "/q/what?".into(),
            args: None,
            changed: false,
        };
        let step = run(&rules, &mut state, &mut |t, c, s| t.render(&TestVars(c, s)));
        assert_eq!(step, Step::Break);
        assert_eq!(state.path, "/r/what?");
        assert_eq!(state.args, None);
    }

    use proptest::prelude::*;

    proptest! {
        /// A rule that does not match leaves the URI alone; one that
        /// matches `^(.*)$` with `$1` as replacement changes nothing but
        /// the flag.
        #[test]
        fn identity_rules_keep_the_uri(path in "/[a-z0-9/._-]{0,30}", args in proptest::option::of("[a-z]=[0-9]{1,3}")) {
            let uri_in = match &args { Some(a) => format!("{path}?{a}"), None => path.clone() };
            let (step, s) = go(&[rule(r"^/never-matches-this$", "/x", None)], &uri_in);
            prop_assert_eq!(step, Step::Done);
            prop_assert!(!s.changed);
            let (step, s) = go(&[rule(r"^(.*)$", "$1", Some("break"))], &uri_in);
            prop_assert_eq!(step, Step::Break);
            prop_assert_eq!(uri(&s), uri_in);
        }
    }
}
