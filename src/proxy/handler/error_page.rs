//! `error_page`: a final error status answered from its configured page,
//! by an internal redirect that re-enters the act phase.

use super::*;

/// What an error page's internal redirect keeps of the request.
pub(super) struct Redirected {
    pub(super) method: http::Method,
    pub(super) headers: http::HeaderMap,
    pub(super) version: Version,
}

/// `error_page`: answers a final error status (vigil's own, or with
/// `proxy_intercept_errors` an upstream's) from the page configured for
/// it, at most once per request, as nginx (`recursive_error_pages off`).
pub(super) async fn error_page(
    ctx: RequestCtx<'_>,
    exchange: &mut Exchange,
    response: Response<Body>,
    request: Redirected,
) -> Response<Body> {
    let RequestCtx {
        rt,
        server_index,
        original_uri,
        ..
    } = ctx;
    let server = rt.server(server_index);
    let status = response.status();
    let location = exchange.location.map(|i| &server.locations[i]);
    let pages = match location {
        Some(l) if !l.error_pages.is_empty() => &l.error_pages,
        _ => &server.error_pages,
    };
    let Some(page) = crate::config::error_page::find(pages, status) else {
        return response;
    };
    if matches!(response.body(), Body::Upstream(_)) {
        let intercepts =
            location.is_some_and(|l| matches!(&l.action, Action::Proxy(p) if p.intercept_errors));
        if !intercepts {
            return response;
        }
    } else if location.is_some_and(|l| matches!(&l.action, Action::Return(r) if r.body.is_some())) {
        // `return` with a text is an answer, not an error (nginx sends it).
        return response;
    }
    // An intercepted upstream body is dropped unread: its connection is
    // closed, never reused.
    drop(response);
    let name = match &page.target {
        ErrorTarget::Redirect(url) => {
            let code = match page.response {
                ErrorResponse::Status(s) => s,
                _ => StatusCode::FOUND,
            };
            return respond::redirect(code, url);
        }
        ErrorTarget::Named(name) => Some(name),
        ErrorTarget::Uri(_) => None,
    };
    if !spend_uri_change(&mut exchange.uri_changes_left, original_uri) {
        return respond::status(StatusCode::INTERNAL_SERVER_ERROR);
    }
    let Redirected {
        method,
        mut headers,
        version,
    } = request;
    // The page is served whole and fresh: no body, no range, no
    // precondition of the original request applies to it.
    for h in [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::RANGE,
        header::IF_RANGE,
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_UNMODIFIED_SINCE,
    ] {
        headers.remove(h);
    }
    let mut req = Request::new(());
    *req.headers_mut() = headers;
    *req.version_mut() = version;
    let (mut parts, ()) = req.into_parts();
    let table = &rt.locations[server_index];
    let start = match (name, &page.target) {
        (Some(name), _) => {
            // A named location keeps the method and the URI.
            parts.method = method;
            parts.uri = original_uri.clone();
            match table.named(name) {
                Some(i) => Some(i),
                None => return respond::status(status),
            }
        }
        (None, ErrorTarget::Uri(uri)) => {
            parts.method = if method == http::Method::HEAD {
                http::Method::HEAD
            } else {
                http::Method::GET
            };
            match uri.parse::<Uri>() {
                Ok(u) => parts.uri = u,
                Err(_) => return respond::status(status),
            }
            None
        }
        (None, _) => return respond::status(status),
    };
    let mut page_response = route(ctx, exchange, parts, None, start).await;
    let answered = page_response.status();
    // A `return` with a text is the page's answer even with an error
    // status (nginx's JSON error idiom: `location = /404.json { return 404
    // '{...}'; }`); any other error means the page itself failed.
    let written = exchange
        .location
        .map(|i| &server.locations[i])
        .is_some_and(|l| matches!(&l.action, Action::Return(r) if r.body.is_some()));
    match page.response {
        ErrorResponse::Target => page_response,
        _ if answered.as_u16() >= 400 && !written => {
            tracing::warn!(
                uri = %original_uri,
                %status,
                page_status = %answered,
                "the error page could not be served; answering with vigil's own page"
            );
            respond::status(status)
        }
        ErrorResponse::Status(s) => {
            *page_response.status_mut() = s;
            page_response
        }
        ErrorResponse::Original => {
            *page_response.status_mut() = status;
            page_response
        }
    }
}
