//! Phase 4, decorate: add_header and HSTS on the way out (compression
//! follows in `handle`).

use super::*;

/// Statuses nginx's `add_header` applies to (without `always`).
pub(super) fn add_header_applies(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
    )
}

/// `vars` is there when some `add_header` is a template.
pub(super) fn decorate(
    response: &mut Response<Body>,
    server: &VirtualServer,
    location: Option<&Location>,
    tls: bool,
    vars: Option<&RequestVars<'_>>,
) {
    if add_header_applies(response.status()) {
        let headers = response.headers_mut();
        for (name, value) in server
            .add_header
            .iter()
            .chain(location.into_iter().flat_map(|l| l.add_header.iter()))
        {
            match value {
                HeaderText::Fixed(v) => {
                    headers.insert(name.clone(), v.clone());
                }
                HeaderText::Template(t) => {
                    // As nginx: an empty value adds nothing; neither does
                    // one that is not a valid header value.
                    let rendered = vars.map(|v| t.render(v)).unwrap_or_default();
                    if rendered.is_empty() {
                        continue;
                    }
                    if let Ok(v) = HeaderValue::from_str(&rendered) {
                        headers.insert(name.clone(), v);
                    }
                }
            }
        }
    }
    if tls {
        if let Some(hsts) = &server.hsts {
            response
                .headers_mut()
                .insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
    }
}
