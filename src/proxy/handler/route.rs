//! Phases 2 and 3: select the location (server rewrites, the search) and
//! act (the location's rewrites, access, then `return`, static files or
//! `proxy_pass`), looping on internal redirects.

use super::*;

/// Routes the request (rewrites, location search, the location's action)
/// and answers it. `named`: start in this named location (an error page's
/// `@name`), skipping the server's rewrites and the search.
pub(super) async fn route(
    RequestCtx {
        rt,
        conn,
        server_index,
        host,
        original_uri,
    }: RequestCtx<'_>,
    exchange: &mut Exchange,
    mut parts: Parts,
    mut body: Option<RequestBody>,
    named: Option<usize>,
) -> Response<Body> {
    let server = rt.server(server_index);
    if let Some(redirect) = &server.redirect_https {
        let host = host
            .map(normalize_host)
            .unwrap_or_else(|| server.label.clone().into());
        let port = if redirect.port == 443 {
            String::new()
        } else {
            format!(":{}", redirect.port)
        };
        let target = format!(
            "https://{host}{port}{}",
            original_uri.path_and_query().map_or("/", |pq| pq.as_str())
        );
        return respond::redirect(StatusCode::MOVED_PERMANENTLY, &target);
    }
    let mut path = match NormalizedPath::of_target(&parts.uri) {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(uri = %parts.uri, error = %e, "bad request path");
            return respond::status(StatusCode::BAD_REQUEST);
        }
    };
    let env = VarsEnv {
        conn,
        remote: &exchange.remote,
        server_name: &server.label,
        host,
        original_uri,
        maps: &rt.config.maps,
        map_values: &exchange.map_values,
        request_id: &exchange.request_id,
    };
    let table = &rt.locations[server_index];
    let mut index = match named {
        Some(i) => i,
        None => {
            // Server-level rules run once, before the search; `last` and
            // `break` just end them (nginx's server rewrite phase).
            if !server.rewrites.is_empty() {
                if let Err(r) = rewrite_uri(&server.rewrites, &mut parts, &mut path, &env) {
                    return *r;
                }
            }
            match table.find(path.as_str()) {
                Some(i) => i,
                None => return respond::status(StatusCode::NOT_FOUND),
            }
        }
    };
    // The URI was rewritten: proxy_pass sends it whole (nginx ignores
    // proxy_pass's own URI part then).
    let mut rewritten = false;
    loop {
        let location = &server.locations[index];
        // Every internal redirect spends a URI change: none spent means
        // the client asked for this location itself.
        if location.internal && exchange.uri_changes_left == MAX_URI_CHANGES {
            return respond::status(StatusCode::NOT_FOUND);
        }
        exchange.location = Some(index);
        if !location.rewrites.is_empty() {
            let (step, changed) = match rewrite_uri(&location.rewrites, &mut parts, &mut path, &env)
            {
                Ok(done) => done,
                Err(r) => return *r,
            };
            rewritten |= changed;
            // `last`, or rules that changed the URI and ran out: search
            // again; `break` stays here.
            if step == Step::Last || (step == Step::Done && changed) {
                if !spend_uri_change(&mut exchange.uri_changes_left, original_uri) {
                    return respond::status(StatusCode::INTERNAL_SERVER_ERROR);
                }
                match table.find(path.as_str()) {
                    Some(i) => index = i,
                    None => return respond::status(StatusCode::NOT_FOUND),
                }
                continue;
            }
        }
        let captures = location_captures(location, path.as_str());
        // access: limit_req, limit_conn, allow/deny, auth_basic. Boxed,
        // with the variables it renders keys from, and only when the
        // location has any, so the request future stays small.
        if !location.edge.is_empty() {
            let state = exchange.edge.get_or_insert_default();
            let remote = exchange.remote;
            let (parts, path, captures) = (&parts, path.as_str(), captures.as_ref());
            let checked = Box::pin(async move {
                let vars = env.vars(parts, path, captures);
                crate::proxy::edge::access::access(
                    &location.edge,
                    &rt.edge,
                    state,
                    remote,
                    &parts.headers,
                    &vars,
                )
                .await
            })
            .await;
            if let ControlFlow::Break(r) = checked {
                return r;
            }
        }
        let vars = env.vars(&parts, path.as_str(), captures.as_ref());
        match &location.action {
            Action::Return(r) => return return_response(r, &vars),
            Action::Static(site) => {
                // Files that will be compressed on the way out must pass
                // through user space.
                let compressed = location.compression.as_deref().and_then(|c| {
                    let client = exchange.compress.as_ref()?;
                    compress::negotiate(&client.weights, c).map(|_| &c.types)
                });
                let sendfile = conn.sendfile(parts.version);
                let outcome = static_files::serve(site, &parts, &path, sendfile, compressed).await;
                if !matches!(outcome, Outcome::Response(_))
                    && !spend_uri_change(&mut exchange.uri_changes_left, original_uri)
                {
                    return respond::status(StatusCode::INTERNAL_SERVER_ERROR);
                }
                match outcome {
                    Outcome::Response(r) => return r,
                    Outcome::Named(name) => match table.named(&name) {
                        Some(i) => index = i,
                        None => return respond::status(StatusCode::INTERNAL_SERVER_ERROR),
                    },
                    Outcome::Redirect(target) => {
                        let Ok(uri) = target.parse::<Uri>() else {
                            return respond::status(StatusCode::INTERNAL_SERVER_ERROR);
                        };
                        let Ok(p) = NormalizedPath::parse(uri.path()) else {
                            return respond::status(StatusCode::INTERNAL_SERVER_ERROR);
                        };
                        // The target carries exactly the query nginx would
                        // keep (an index redirect keeps the request's; a
                        // try_files URI only what its template says).
                        parts.uri = uri;
                        path = p;
                        match table.find(path.as_str()) {
                            Some(i) => index = i,
                            None => return respond::status(StatusCode::NOT_FOUND),
                        }
                    }
                }
            }
            Action::Proxy(pass) => {
                let Some(pool) = rt.pass_pool(server_index, index) else {
                    return respond::status(StatusCode::INTERNAL_SERVER_ERROR);
                };
                let limit = location
                    .client_max_body_size
                    .or(server.client_max_body_size)
                    .unwrap_or(rt.config.http.client_max_body_size);
                if limit > 0 && content_length(&parts).is_some_and(|n| n > limit) {
                    return respond::status(StatusCode::PAYLOAD_TOO_LARGE);
                }
                let vars = RequestVars {
                    proxy_host: &pool.config.name,
                    ..vars
                };
                let set_headers = pass
                    .set_headers
                    .iter()
                    .map(|(name, t)| (name.clone(), t.render(&vars)))
                    .collect();
                let hash_key = match &pool.config.balance {
                    crate::config::BalanceMethod::Hash(t) => Some(t.render(&vars)),
                    _ => None,
                };
                let client = ClientInfo {
                    addr: exchange.remote,
                    addr_header: exchange
                        .remote_header
                        .as_deref()
                        .unwrap_or(&conn.peer_header),
                    scheme: conn.scheme(),
                    host,
                };
                let unprefixed;
                let pass = if rewritten && pass.replace_prefix.is_some() {
                    unprefixed = crate::config::ProxyPass {
                        replace_prefix: None,
                        ..pass.clone()
                    };
                    &unprefixed
                } else {
                    pass
                };
                return forward::forward(
                    pool,
                    pass,
                    ForwardRequest {
                        parts,
                        body: body.take(),
                        client,
                        normalized_path: path.as_str(),
                        set_headers,
                        hash_key,
                        max_body_size: limit,
                        body_timeout: rt.config.http.client_body_timeout,
                        body_buffer_size: rt.config.http.client_body_buffer_size,
                        body_temp_path: &rt.config.http.client_body_temp_path,
                        metrics: &rt.metrics,
                    },
                    &mut exchange.report,
                )
                .await;
            }
        }
    }
}

/// Spends one of the request's URI changes; `false`, with nginx's log
/// line, when none is left (the request then gets 500).
pub(super) fn spend_uri_change(left: &mut usize, original_uri: &Uri) -> bool {
    if *left == 0 {
        tracing::error!(
            uri = %original_uri,
            "rewrite or internal redirection cycle while processing the request; answering 500"
        );
        return false;
    }
    *left -= 1;
    true
}

/// Runs rewrite `rules` over the request's URI, updating `parts.uri` and
/// `path` when they change it. A redirect is the response (`Err`), and so
/// is a 500 for a rewritten URI that cannot be used.
pub(super) fn rewrite_uri(
    rules: &[Rewrite],
    parts: &mut Parts,
    path: &mut NormalizedPath,
    env: &VarsEnv<'_>,
) -> Result<(Step, bool), Box<Response<Body>>> {
    let mut state = UriState {
        path: path.as_str().to_owned(),
        args: parts
            .uri
            .query()
            .filter(|q| !q.is_empty())
            .map(str::to_owned),
        changed: false,
    };
    let step = {
        let base = env.vars(parts, path.as_str(), None);
        rewrite::run(rules, &mut state, &mut |t, captures, st| {
            t.render(&RequestVars {
                path: &st.path,
                query: st.args.as_deref(),
                captures: Some(captures),
                ..base
            })
        })
    };
    if let Step::Redirect { status, location } = &step {
        return Err(Box::new(respond::redirect(*status, location)));
    }
    if state.changed {
        let raw = forward::encode_path(&state.path);
        let target = match &state.args {
            Some(a) => format!("{raw}?{}", rewrite::escape_query(a)),
            None => raw.clone(),
        };
        match (target.parse::<Uri>(), NormalizedPath::parse(&raw)) {
            (Ok(uri), Ok(p)) => {
                parts.uri = uri;
                *path = p;
            }
            _ => {
                tracing::warn!(uri = %target, "a rewrite made a URI that cannot be used");
                return Err(Box::new(respond::status(StatusCode::INTERNAL_SERVER_ERROR)));
            }
        }
    }
    Ok((step, state.changed))
}

/// A regex location's groups, when its templates use them (`$1`).
pub(super) fn location_captures(location: &Location, path: &str) -> Option<Captures> {
    let crate::config::LocationPattern::Regex(re) = &location.pattern else {
        return None;
    };
    let templates: Vec<&crate::config::Template> = match &location.action {
        Action::Return(r) => r.body.iter().chain(r.location.iter()).collect(),
        Action::Proxy(p) => p.set_headers.iter().map(|(_, t)| t).collect(),
        Action::Static(_) => Vec::new(),
    };
    templates
        .iter()
        .any(|t| t.vars().any(|v| matches!(v, Var::Capture(_))))
        .then(|| Captures::of(re, path))
        .flatten()
}

pub(super) fn return_response(r: &ReturnAction, vars: &RequestVars<'_>) -> Response<Body> {
    let mut response = match &r.location {
        Some(location) => respond::redirect(r.status, &location.render(vars)),
        None => {
            let mut resp = Response::new(match &r.body {
                Some(body) => Body::full(body.render(vars)),
                None => Body::empty(),
            });
            *resp.status_mut() = r.status;
            if r.body.is_some() {
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, r.content_type.clone());
            }
            resp
        }
    };
    if r.location.is_some() {
        if let Some(body) = &r.body {
            *response.body_mut() = Body::full(body.render(vars));
        }
    }
    response
}
