//! A location that serves files: root/alias, index, try_files.

use super::*;

impl<'a> Tr<'a> {
    /// A location that serves files.
    pub(super) fn static_files(
        &mut self,
        loc: &'a Directive,
        pat: &Pattern,
        chain: &Chain<'a>,
        block: &mut Block,
    ) -> bool {
        if let Some(alias) = chain.local("alias").first().copied() {
            let a = alias.arg(0).unwrap_or_default();
            let prefix = match pat {
                Pattern::Exact(u) | Pattern::Prefix { uri: u, .. } => u.clone(),
                _ => {
                    self.note(
                        alias,
                        Status::NotSupported,
                        "vigil's alias works in prefix and exact locations; in a regex location nginx fills it from captures",
                        "use root, or a prefix location",
                    );
                    return false;
                }
            };
            if values::has_vars(a) {
                self.note(
                    alias,
                    Status::NotSupported,
                    "an alias with variables",
                    "use a fixed directory",
                );
                return false;
            }
            let mut dir = absolute(&self.opts.prefix, a);
            match (prefix.ends_with('/'), dir.ends_with('/')) {
                (false, true) if dir.len() > 1 => {
                    // /docs + /srv/docs/: nginx serves /docs/x from
                    // /srv/docs//x; the same files without the extra slash.
                    dir.pop();
                    self.use_(alias);
                }
                (true, false) => {
                    self.note(
                        alias,
                        Status::Approximated,
                        format!("nginx glues the paths: {prefix}x is read from {dir}x (a known pitfall); vigil reads {dir}/x"),
                        "end the alias with / as the location does",
                    );
                    dir.push('/');
                }
                _ => self.use_(alias),
            }
            block.set("alias", Value::str(dir), alias.place.to_string());
        } else {
            let (root, note) = match chain.get("root") {
                Some(r) if values::has_vars(r.arg(0).unwrap_or_default()) => {
                    self.note(
                        r,
                        Status::NotSupported,
                        "a root with variables",
                        "use a fixed directory",
                    );
                    return false;
                }
                Some(r) => {
                    self.use_(r);
                    (
                        absolute(&self.opts.prefix, r.arg(0).unwrap_or_default()),
                        r.place.to_string(),
                    )
                }
                None => (
                    absolute(&self.opts.prefix, "html"),
                    "no root: nginx's default, html in its prefix".to_owned(),
                ),
            };
            block.set("root", Value::str(root), note);
        }
        let index = chain.all("index");
        if !index.is_empty() {
            let mut names = Vec::new();
            for d in &index {
                self.use_(d);
                for n in d.texts() {
                    if n.contains('/') || values::has_vars(n) {
                        self.report.add(
                            &d.place,
                            d.summary(),
                            Status::NotSupported,
                            format!("vigil's index entries are file names; {n:?} is left out"),
                            "",
                        );
                    } else {
                        names.push(n.to_owned());
                    }
                }
            }
            if !names.is_empty() && names != ["index.html"] {
                block.set("index", Value::strs(&names), "");
            }
        }
        if let Some(t) = chain.local("try_files").first().copied() {
            match try_files(t) {
                Ok(list) => {
                    self.use_(t);
                    block.set("try_files", Value::strs(&list), t.place.to_string());
                }
                Err(e) => self.note(t, Status::NotSupported, e, ""),
            }
        }
        if let Some(g) = chain.get("gzip_static") {
            match g.arg(0) {
                Some("on") => {
                    self.use_(g);
                    block.set("gzip_static", Value::Bool(true), g.place.to_string());
                }
                Some("always") => {
                    self.note(
                        g,
                        Status::Approximated,
                        "vigil serves .gz files only to clients that accept gzip",
                        "",
                    );
                    block.set("gzip_static", Value::Bool(true), g.place.to_string());
                }
                _ => {}
            }
        }
        let _ = loc;
        true
    }
}

/// `try_files` in vigil's form: candidates starting with `$uri` or `/`,
/// and a last entry `=code`, `@name` or a URI.
pub(super) fn try_files(d: &Directive) -> Result<Vec<String>, String> {
    let list = d.texts();
    let Some((last, files)) = list.split_last() else {
        return Err("try_files needs at least one entry".into());
    };
    if files.is_empty() {
        return Err("a try_files with only a fallback".into());
    }
    for f in files {
        let ok = (f.starts_with("$uri") || f.starts_with('/'))
            && f.matches('$').count() == usize::from(f.starts_with("$uri"));
        if !ok {
            return Err(format!(
                "vigil's try_files candidates start with $uri or /, with no other variable; {f:?} does not"
            ));
        }
    }
    let ok = last.starts_with('=')
        || last.starts_with('@')
        || (last.starts_with('/') && !last.contains('$'));
    if !ok {
        return Err(format!(
            "vigil's try_files ends with =CODE, @name or a fixed URI; {last:?} does not"
        ));
    }
    Ok(list.iter().map(|s| (*s).to_owned()).collect())
}
