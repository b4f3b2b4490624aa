//! A server's locations: flattening nested ones, named ones, and settings
//! left unused because no location reads them.

use super::*;

impl<'a> Tr<'a> {
    /// The server's locations, nested ones flattened, in vigil's order,
    /// plus a `/` standing for nginx's "no location matched" handling.
    pub(super) fn server_locations(
        &mut self,
        srv: &'a Directive,
        chain: &Chain<'a>,
        sctx: &ServerCtx<'_>,
    ) -> Vec<Block> {
        let mut flat: Vec<(&'a Directive, Chain<'a>, usize, Option<&'a Directive>, bool)> =
            Vec::new();
        flatten(srv.children(), chain, 0, None, false, &mut flat);
        let mut nested_regex = Vec::new();
        let mut rest = Vec::new();
        for (loc, c, depth, parent, under_regex) in flat {
            let is_regex = pattern(loc).is_ok_and(|p| p.is_regex());
            let block = self.location(loc, &c, depth, parent, sctx);
            let Some(block) = block else { continue };
            if is_regex && parent.is_some() && !under_regex {
                nested_regex.push((block, true));
            } else {
                rest.push((block, is_regex));
            }
        }
        let mut out = nested_regex;
        out.extend(rest);
        let has_root = out
            .iter()
            .any(|(b, _)| matches!(b.get("path"), Some(Value::Str(p)) if p == "/" || p == "^~ /"));
        if !has_root {
            // nginx answers a request no location matches with the
            // server's own settings: files from its root.
            let mut b = Block::new(format!(
                "no `location /` in the server at {}: nginx serves the server's root for requests no location matches",
                srv.place
            ));
            b.set("path", Value::str("/"), "");
            let loc_chain = chain.clone();
            let root = match loc_chain.get("root") {
                Some(r) => {
                    self.use_(r);
                    absolute(&self.opts.prefix, r.arg(0).unwrap_or_default())
                }
                None => absolute(&self.opts.prefix, "html"),
            };
            b.set("root", Value::str(root), "");
            let index = loc_chain.all("index");
            let names: Vec<String> = index
                .iter()
                .flat_map(|d| d.texts())
                .filter(|n| !n.contains('/') && !n.contains('$'))
                .map(str::to_owned)
                .collect();
            for d in index {
                self.use_(d);
            }
            if !names.is_empty() && names != ["index.html"] {
                b.set("index", Value::strs(&names), "");
            }
            if let Some(t) = srv.children().iter().find(|d| d.name == "try_files") {
                let list = t.texts();
                if list.len() >= 2
                    && list.iter().all(|e| {
                        e.starts_with("$uri")
                            || e.starts_with('/')
                            || e.starts_with('=')
                            || e.starts_with('@')
                    })
                {
                    self.use_(t);
                    b.set("try_files", Value::strs(&list), t.place.to_string());
                }
            }
            out.push((b, false));
        }
        let named: Vec<String> = out
            .iter()
            .filter_map(|(b, _)| match b.get("path") {
                Some(Value::Str(p)) if p.starts_with('@') => Some(p[1..].to_owned()),
                _ => None,
            })
            .collect();
        // A try_files pointing at a named location that was not kept.
        for (b, _) in &mut out {
            let missing = match b.get("try_files") {
                Some(Value::Array(list)) => match list.last() {
                    Some(Value::Str(last)) => last
                        .strip_prefix('@')
                        .filter(|n| !named.iter().any(|x| x == n))
                        .map(str::to_owned),
                    _ => None,
                },
                _ => None,
            };
            if let Some(n) = missing {
                b.remove("try_files");
                b.comment.push(format!(
                    "(try_files left out: location @{n} was not translated)"
                ));
            }
        }
        // Two nginx locations may become the same vigil path (a nested
        // one written like its parent): keep the first.
        let mut seen = BTreeSet::new();
        out.retain(|(b, _)| match b.get("path") {
            Some(Value::Str(p)) => seen.insert(p.clone()),
            _ => true,
        });
        out.into_iter().map(|(b, _)| b).collect()
    }

    /// Content settings of a server that answers every request with a
    /// return or redirect: nginx never uses them.
    pub(super) fn dead_server_settings(&mut self, here: &'a [Directive]) {
        for d in here {
            let content = d.name.starts_with("proxy_")
                || matches!(
                    d.name.as_str(),
                    "root"
                        | "index"
                        | "try_files"
                        | "expires"
                        | "add_header"
                        | "client_max_body_size"
                        | "default_type"
                );
            if content && !self.used(d) {
                self.note(d, Status::NotNeeded, "never used: the server answers every request with the return or redirect above", "");
            }
        }
    }
}

/// vigil refuses an error page aimed at a named location the server does
/// not have (one the import could not translate): such pages are left
/// out, saying so in the block's comment; the location itself is in the
/// report.
pub(super) fn drop_missing_named_pages(base: &mut Block, locations: &mut [Block]) {
    let named: Vec<String> = locations
        .iter()
        .filter_map(|b| match b.get("path") {
            Some(Value::Str(p)) if p.starts_with('@') => Some(p.clone()),
            _ => None,
        })
        .collect();
    let target = |page: &Value| match page {
        Value::Inline(fields) => fields.iter().find_map(|(k, v)| match v {
            Value::Str(u) if k == "uri" => Some(u.clone()),
            _ => None,
        }),
        _ => None,
    };
    for block in std::iter::once(base).chain(locations.iter_mut()) {
        let Some(Value::Array(pages)) = block.get("error_page") else {
            continue;
        };
        let (kept, lost): (Vec<Value>, Vec<Value>) = pages
            .iter()
            .cloned()
            .partition(|p| target(p).is_none_or(|u| !u.starts_with('@') || named.contains(&u)));
        for page in &lost {
            block.comment.push(format!(
                "(error_page to {} left out: that location was not translated)",
                target(page).unwrap_or_default()
            ));
        }
        if !lost.is_empty() {
            block.set("error_page", Value::Array(kept), "");
        }
    }
}

/// Locations in file order, nested ones with their chain and parent.
pub(super) fn flatten<'a>(
    ds: &'a [Directive],
    chain: &Chain<'a>,
    depth: usize,
    parent: Option<&'a Directive>,
    under_regex: bool,
    out: &mut Vec<(&'a Directive, Chain<'a>, usize, Option<&'a Directive>, bool)>,
) {
    for d in ds.iter().filter(|d| d.name == "location") {
        let c = chain.inside(d.children());
        let is_regex = pattern(d).is_ok_and(|p| matches!(p, Pattern::Regex { .. }));
        // Nested locations come before their parent: a nested regex is
        // tried before the parent's siblings in nginx.
        flatten(
            d.children(),
            &c,
            depth + 1,
            Some(d),
            under_regex || is_regex,
            out,
        );
        out.push((d, c, depth + 1, parent, under_regex));
    }
}
