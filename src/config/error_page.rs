//! `error_page` (nginx's core directive), validated: which final statuses
//! are answered from another URI, a named location or a redirect, and
//! with which status.

use http::StatusCode;
use serde::Deserialize;

/// `error_page = [{ codes = [502, 503], uri = "/50x.html", response = 200 }]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorPageFile {
    pub codes: Vec<u16>,
    /// `/50x.html`, `@fallback`, or `https://example.com/oops` (redirect).
    pub uri: String,
    /// nginx's `=code` (a number) or `=` (the string `"="`: the status
    /// the target answers with).
    pub response: Option<ResponseFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ResponseFile {
    Code(u16),
    Text(String),
}

/// One validated `error_page`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPage {
    pub codes: Vec<u16>,
    pub target: ErrorTarget,
    pub response: ErrorResponse,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorTarget {
    /// An internal redirect to this URI (path, optional `?query`); the
    /// method becomes GET (HEAD stays HEAD), as nginx.
    Uri(String),
    /// Continue in this named location, method unchanged.
    Named(String),
    /// Answer with a redirect to this URL (the status is `response`'s,
    /// 302 by default).
    Redirect(String),
}

/// The status of the final answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorResponse {
    /// The original error status (nginx's default).
    Original,
    /// `=code`.
    Status(StatusCode),
    /// `=`: whatever the target answers.
    Target,
}

impl ErrorPage {
    /// Parses one entry; errors name the field (`codes`, `uri`,
    /// `response`).
    pub fn parse(f: &ErrorPageFile) -> Result<ErrorPage, (&'static str, String)> {
        if f.codes.is_empty() {
            return Err((
                "codes",
                "list at least one status, e.g. [502, 503, 504]".into(),
            ));
        }
        for &c in &f.codes {
            if !(300..=599).contains(&c) || c == 499 {
                return Err((
                    "codes",
                    format!("{c} is not an error status (300 to 599, not 499)"),
                ));
            }
        }
        let uri = f.uri.trim();
        let redirect = uri.starts_with("http://") || uri.starts_with("https://");
        let target = if let Some(name) = uri.strip_prefix('@') {
            if name.is_empty() || name.contains(['/', ' ']) {
                return Err(("uri", format!("{uri:?} is not a named location")));
            }
            ErrorTarget::Named(name.to_owned())
        } else if redirect {
            if http::HeaderValue::from_str(uri).is_err() {
                return Err(("uri", format!("{uri:?} cannot be sent as a Location")));
            }
            ErrorTarget::Redirect(uri.to_owned())
        } else if uri.starts_with('/') {
            if uri.parse::<http::uri::PathAndQuery>().is_err() {
                return Err(("uri", format!("{uri:?} is not a valid URI path")));
            }
            ErrorTarget::Uri(uri.to_owned())
        } else {
            return Err((
                "uri",
                format!(
                    "{uri:?}: write a path (/50x.html), a named location (@app) or an http(s):// URL"
                ),
            ));
        };
        let response = match &f.response {
            None => ErrorResponse::Original,
            Some(ResponseFile::Text(t)) if t == "=" => ErrorResponse::Target,
            Some(ResponseFile::Text(t)) => {
                return Err((
                    "response",
                    format!("{t:?}: write a status code (response = 200) or \"=\""),
                ));
            }
            Some(ResponseFile::Code(c)) => match StatusCode::from_u16(*c) {
                Ok(s) if (200..=599).contains(c) => ErrorResponse::Status(s),
                _ => return Err(("response", format!("{c} is not a status code"))),
            },
        };
        if let ErrorTarget::Redirect(_) = target {
            match response {
                ErrorResponse::Original => {}
                ErrorResponse::Status(s) if matches!(s.as_u16(), 301 | 302 | 303 | 307 | 308) => {}
                _ => {
                    return Err((
                        "response",
                        "a redirect target takes 301, 302, 303, 307 or 308 (302 when not set)"
                            .into(),
                    ));
                }
            }
        }
        Ok(ErrorPage {
            codes: f.codes.clone(),
            target,
            response,
        })
    }
}

/// The entry for `status` in `pages`, if any (the first that lists it).
pub fn find(pages: &[ErrorPage], status: StatusCode) -> Option<&ErrorPage> {
    pages.iter().find(|p| p.codes.contains(&status.as_u16()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(
        codes: &[u16],
        uri: &str,
        response: Option<ResponseFile>,
    ) -> Result<ErrorPage, &'static str> {
        ErrorPage::parse(&ErrorPageFile {
            codes: codes.to_vec(),
            uri: uri.into(),
            response,
        })
        .map_err(|(k, _)| k)
    }

    #[test]
    fn nginx_forms() {
        // error_page 500 502 503 504 /50x.html;
        let p = page(&[500, 502, 503, 504], "/50x.html", None).unwrap();
        assert_eq!(p.target, ErrorTarget::Uri("/50x.html".into()));
        assert_eq!(p.response, ErrorResponse::Original);
        // error_page 404 =200 /empty.gif;
        let p = page(&[404], "/empty.gif", Some(ResponseFile::Code(200))).unwrap();
        assert_eq!(p.response, ErrorResponse::Status(StatusCode::OK));
        // error_page 404 = @fallback;
        let p = page(&[404], "@fallback", Some(ResponseFile::Text("=".into()))).unwrap();
        assert_eq!(p.target, ErrorTarget::Named("fallback".into()));
        assert_eq!(p.response, ErrorResponse::Target);
        // error_page 403 http://example.com/forbidden.html;
        let p = page(&[403], "http://example.com/forbidden.html", None).unwrap();
        assert_eq!(
            p.target,
            ErrorTarget::Redirect("http://example.com/forbidden.html".into())
        );
        // error_page 404 =301 http://example.com/notfound.html;
        assert!(page(&[404], "https://e.com/", Some(ResponseFile::Code(301))).is_ok());
    }

    #[test]
    fn mistakes_name_their_field() {
        assert_eq!(page(&[], "/x", None).unwrap_err(), "codes");
        assert_eq!(page(&[200], "/x", None).unwrap_err(), "codes");
        assert_eq!(page(&[499], "/x", None).unwrap_err(), "codes");
        assert_eq!(page(&[404], "x.html", None).unwrap_err(), "uri");
        assert_eq!(page(&[404], "@", None).unwrap_err(), "uri");
        assert_eq!(
            page(&[404], "/x", Some(ResponseFile::Text("ok".into()))).unwrap_err(),
            "response"
        );
        assert_eq!(
            page(&[404], "/x", Some(ResponseFile::Code(99))).unwrap_err(),
            "response"
        );
        assert_eq!(
            page(&[404], "https://e.com/", Some(ResponseFile::Code(200))).unwrap_err(),
            "response"
        );
    }

    #[test]
    fn the_first_entry_listing_a_status_wins() {
        let pages = [
            page(&[502, 504], "/a", None).unwrap(),
            page(&[502], "/b", None).unwrap(),
        ];
        assert_eq!(
            find(&pages, StatusCode::BAD_GATEWAY).unwrap().target,
            ErrorTarget::Uri("/a".into())
        );
        assert!(find(&pages, StatusCode::NOT_FOUND).is_none());
    }
}
