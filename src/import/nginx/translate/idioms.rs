//! The rewrite module's directives in the forms that have a vigil
//! meaning: `return`, whole-site `rewrite` redirects, and the `if`
//! conditions of the https-redirect and host-check idioms.

use super::super::parse::Directive;
use super::super::values::{self, VarContext};

/// `if (...)`'s condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cond {
    /// `$var = value` (`eq`) or `$var != value`.
    Compare {
        var: String,
        value: String,
        eq: bool,
    },
    /// `$var ~ re`, `~*`, `!~`, `!~*`.
    Match {
        var: String,
        re: String,
        ci: bool,
        neg: bool,
    },
    /// `$var` alone, `-f path` and the rest.
    Other,
}

/// Reads an `if` block's condition.
pub(crate) fn condition(d: &Directive) -> Option<Cond> {
    let mut words: Vec<String> = d.args.iter().map(|w| w.text.clone()).collect();
    let first = words.first_mut()?;
    if first == "(" {
        words.remove(0);
    } else {
        *first = first.strip_prefix('(')?.to_owned();
    }
    let last = words.last_mut()?;
    if last == ")" {
        words.pop();
    } else {
        *last = last.strip_suffix(')')?.to_owned();
    }
    Some(match words.as_slice() {
        [var, op, value] if var.starts_with('$') => match op.as_str() {
            "=" => Cond::Compare {
                var: var.clone(),
                value: value.clone(),
                eq: true,
            },
            "!=" => Cond::Compare {
                var: var.clone(),
                value: value.clone(),
                eq: false,
            },
            "~" | "~*" | "!~" | "!~*" => Cond::Match {
                var: var.clone(),
                re: value.clone(),
                ci: op.ends_with('*'),
                neg: op.starts_with('!'),
            },
            _ => Cond::Other,
        },
        _ => Cond::Other,
    })
}

/// What a `return` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ret {
    /// A status, with a body text when given.
    Status(u16, Option<String>),
    /// A redirect: status and target (nginx syntax).
    Redirect(u16, String),
}

/// Reads `return code [text|URL]` or `return URL`.
pub(crate) fn ret(d: &Directive) -> Option<Ret> {
    match d.texts().as_slice() {
        [url] if is_url(url) => Some(Ret::Redirect(302, (*url).to_owned())),
        [code] => Some(Ret::Status(code.parse().ok()?, None)),
        [code, rest] => {
            let code: u16 = code.parse().ok()?;
            if matches!(code, 301 | 302 | 303 | 307 | 308) {
                Some(Ret::Redirect(code, (*rest).to_owned()))
            } else {
                Some(Ret::Status(code, Some((*rest).to_owned())))
            }
        }
        _ => None,
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://") || s.starts_with("$scheme")
}

/// A redirect as vigil writes it (`return = { status, location }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Redirect {
    pub status: u16,
    /// A vigil template.
    pub location: String,
    /// What differs from nginx, if anything.
    pub caveat: Option<String>,
}

/// Whether a redirect keeps the host and the request URI and only
/// switches to https (vigil's `redirect_https`): the port, if any.
pub(crate) fn https_redirect(r: &Redirect) -> Option<Option<u16>> {
    if r.status != 301 || r.caveat.is_some() {
        return None;
    }
    let rest = r.location.strip_prefix("https://$host")?;
    let rest = rest.strip_suffix("$request_uri")?;
    if rest.is_empty() {
        return Some(None);
    }
    let port: u16 = rest.strip_prefix(':')?.parse().ok()?;
    Some(Some(port))
}

/// The redirect a `return` makes, in vigil's syntax.
pub(crate) fn redirect(
    status: u16,
    target: &str,
    ctx: &VarContext<'_>,
) -> Result<Redirect, String> {
    let location = values::template(target, ctx)?;
    if !is_url(target) && !target.starts_with('/') {
        return Err(format!("{target:?} is neither a URL nor a path"));
    }
    let caveat = target.starts_with('/').then(|| {
        "nginx turns a path into an absolute URL (scheme, host and port of the request); vigil sends the path".to_owned()
    });
    Ok(Redirect {
        status,
        location,
        caveat,
    })
}

/// A `rewrite` that redirects every request (`rewrite ^/(.*)$ http://x/$1
/// permanent;`), when vigil can say the same thing with `return`.
pub(crate) fn rewrite_redirect(d: &Directive, ctx: &VarContext<'_>) -> Option<Redirect> {
    let (regex, replacement, flag) = match d.texts().as_slice() {
        [r, x] => ((*r).to_owned(), (*x).to_owned(), ""),
        [r, x, f] => ((*r).to_owned(), (*x).to_owned(), *f),
        _ => return None,
    };
    let status = match flag {
        "permanent" => 301,
        "redirect" => 302,
        "" | "last" | "break" if is_url(&replacement) => 302,
        _ => return None,
    };
    if !is_url(&replacement) {
        return None;
    }
    // What `$1` holds for a pattern that matches every path.
    enum Capture {
        None,
        WholeUri,
        UriWithoutSlash,
    }
    let capture = match regex.as_str() {
        "^" | "^/" | "/" | ".*" | "^.*" | "^.*$" | "^/.*" | "^/.*$" => Capture::None,
        "^(.*)" | "^(.*)$" | "(.*)" | "(.*)$" => Capture::WholeUri,
        "^/(.*)" | "^/(.*)$" => Capture::UriWithoutSlash,
        _ => return None,
    };
    let has_query = replacement.contains('?');
    let (base, uses_capture) = match (&capture, replacement.strip_suffix("$1")) {
        (Capture::None, _) => (replacement.clone(), false),
        (_, None) if !replacement.contains('$') || !has_dollar_digit(&replacement) => {
            (replacement.clone(), false)
        }
        (Capture::WholeUri, Some(b)) => (b.to_owned(), true),
        (Capture::UriWithoutSlash, Some(b)) => (b.strip_suffix('/')?.to_owned(), true),
        _ => return None,
    };
    if has_dollar_digit(&base) {
        return None;
    }
    let mut location = values::template(&base, ctx).ok()?;
    if uses_capture {
        if has_query {
            // `$1` is followed by nothing, so the query was written before
            // it: not expressible with $request_uri.
            return None;
        }
        // $1 + nginx's appended "?args" is the request URI (nginx uses
        // the decoded path and escapes it again; vigil passes it as sent).
        location.push_str("$request_uri");
    } else if !has_query {
        // nginx appends the request's "?args": not a fixed redirect. A
        // vigil rewrite rule does the same (translate/rewrite.rs).
        return None;
    }
    Some(Redirect {
        status,
        location,
        caveat: None,
    })
}

fn has_dollar_digit(s: &str) -> bool {
    s.as_bytes()
        .windows(2)
        .any(|w| w[0] == b'$' && w[1].is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::super::super::parse::parse_text;
    use super::*;

    fn first(text: &str) -> Directive {
        parse_text(text, "t").unwrap().remove(0)
    }

    const CTX: VarContext<'static> = VarContext {
        server_name: Some("example.com"),
        proxy_host: None,
        maps: &[],
    };

    #[test]
    fn conditions() {
        assert_eq!(
            condition(&first("if ($scheme = http) { }")),
            Some(Cond::Compare {
                var: "$scheme".into(),
                value: "http".into(),
                eq: true
            })
        );
        assert_eq!(
            condition(&first("if ( $host != \"www.a.com\" ) { }")),
            Some(Cond::Compare {
                var: "$host".into(),
                value: "www.a.com".into(),
                eq: false
            })
        );
        assert_eq!(
            condition(&first("if ($request_method != \"PURGE\") { }")),
            Some(Cond::Compare {
                var: "$request_method".into(),
                value: "PURGE".into(),
                eq: false
            })
        );
        assert!(matches!(
            condition(&first("if ($http_user_agent ~* bot) { }")),
            Some(Cond::Match {
                ci: true,
                neg: false,
                ..
            })
        ));
        assert_eq!(condition(&first("if (-f /x) { }")), Some(Cond::Other));
        assert_eq!(
            condition(&first("if ($cookie_sessionid) { }")),
            Some(Cond::Other)
        );
    }

    #[test]
    fn returns() {
        assert_eq!(ret(&first("return 404;")), Some(Ret::Status(404, None)));
        assert_eq!(
            ret(&first("return 200 \"ok\";")),
            Some(Ret::Status(200, Some("ok".into())))
        );
        assert_eq!(
            ret(&first("return https://x$request_uri;")),
            Some(Ret::Redirect(302, "https://x$request_uri".into()))
        );
        assert_eq!(
            ret(&first("return 301 https://$host$request_uri;")),
            Some(Ret::Redirect(301, "https://$host$request_uri".into()))
        );
        let r = redirect(301, "https://$host$request_uri", &CTX).unwrap();
        assert_eq!(https_redirect(&r), Some(None));
        let r = redirect(301, "https://$host:8443$request_uri", &CTX).unwrap();
        assert_eq!(https_redirect(&r), Some(Some(8443)));
        let r = redirect(301, "https://$server_name$request_uri", &CTX).unwrap();
        assert_eq!(r.location, "https://example.com$request_uri");
        assert_eq!(https_redirect(&r), None);
    }

    #[test]
    fn whole_site_rewrites() {
        let r = rewrite_redirect(
            &first("rewrite ^/(.*) http://www.x.com/group/$1 last;"),
            &CTX,
        )
        .unwrap();
        assert_eq!(
            (r.status, r.location.as_str()),
            (302, "http://www.x.com/group$request_uri")
        );
        assert!(r.caveat.is_none());
        let r =
            rewrite_redirect(&first("rewrite ^(.*)$ https://x.com$1 permanent;"), &CTX).unwrap();
        assert_eq!(
            (r.status, r.location.as_str()),
            (301, "https://x.com$request_uri")
        );
        // nginx appends ?args here: left to a general rewrite rule.
        assert!(
            rewrite_redirect(&first("rewrite ^(.*) http://www.x.com permanent;"), &CTX).is_none()
        );
        let r =
            rewrite_redirect(&first("rewrite ^/(.*) http://x/zt/?ref=a permanent;"), &CTX).unwrap();
        assert_eq!(r.location, "http://x/zt/?ref=a");
        assert!(r.caveat.is_none());
        assert!(
            rewrite_redirect(&first("rewrite ^/(.*) http://x/?ref=a$1 permanent;"), &CTX).is_none()
        );
        assert!(rewrite_redirect(&first("rewrite ^/api/(.*)$ /$1 break;"), &CTX).is_none());
        assert!(rewrite_redirect(&first("rewrite ^/a(.*) http://x/$1 permanent;"), &CTX).is_none());
    }
}
