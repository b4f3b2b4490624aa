//! `[map.*]` variables for one request: evaluated lazily, the first time
//! a template uses them, and then kept for the rest of the request (as
//! nginx caches a non-volatile map's value), so a map costs nothing on
//! requests that never use it and is looked up at most once on those that
//! do.

use std::sync::OnceLock;

use crate::config::map::MapDef;
use crate::config::template::{Captures, Var, Vars};

/// The per-request cache of map values (one slot per `[map.*]`).
#[derive(Debug, Default)]
pub(crate) struct MapValues(Box<[OnceLock<String>]>);

impl MapValues {
    /// Slots for `n` maps; no allocation when there are none.
    pub fn new(n: usize) -> Self {
        MapValues((0..n).map(|_| OnceLock::new()).collect())
    }

    /// Appends map `i`'s value: its source rendered with `vars`, looked up,
    /// the chosen value rendered (with the captures of a regex key).
    /// Maps that use each other in a loop are refused at load time, so
    /// the recursion through `vars` ends.
    pub fn write(&self, i: usize, defs: &[MapDef], vars: &dyn Vars, out: &mut String) {
        let (Some(slot), Some(def)) = (self.0.get(i), defs.get(i)) else {
            return;
        };
        let value = slot.get_or_init(|| {
            let source = def.source.render(vars);
            match def.select(&source) {
                (t, None) => t.render(vars),
                (t, Some(captures)) => t.render(&WithCaptures {
                    inner: vars,
                    captures: &captures,
                }),
            }
        });
        out.push_str(value);
    }
}

/// `vars` with `$1`.. taken from `captures` (a map's regex key).
pub(crate) struct WithCaptures<'a> {
    pub inner: &'a dyn Vars,
    pub captures: &'a Captures,
}

impl Vars for WithCaptures<'_> {
    fn write_var(&self, var: &Var, out: &mut String) {
        match var {
            Var::Capture(i) => out.push_str(self.captures.get(*i).unwrap_or("")),
            other => self.inner.write_var(other, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::config::map::MapFile;

    /// `$host` counts how often it is read.
    struct Counting {
        host: &'static str,
        reads: Cell<usize>,
        maps: Vec<MapDef>,
        values: MapValues,
    }

    impl Vars for Counting {
        fn write_var(&self, var: &Var, out: &mut String) {
            match var {
                Var::Host => {
                    self.reads.set(self.reads.get() + 1);
                    out.push_str(self.host);
                }
                Var::Map(i) => self.values.write(*i, &self.maps, self, out),
                _ => {}
            }
        }
    }

    fn maps() -> Vec<MapDef> {
        let names = vec!["site".to_owned(), "label".to_owned()];
        let site = MapFile {
            source: "$host".into(),
            default: Some("other".into()),
            entries: vec![("~^(\\w+)\\.example\\.com$".into(), "sub-$1".into())],
            hostnames: false,
        };
        let label = MapFile {
            source: "$site".into(),
            default: Some("[$site]".into()),
            entries: vec![],
            hostnames: false,
        };
        vec![
            MapDef::build("site", &site, &names).unwrap(),
            MapDef::build("label", &label, &names).unwrap(),
        ]
    }

    #[test]
    fn evaluated_once_and_only_when_used() {
        let v = Counting {
            host: "shop.example.com",
            reads: Cell::new(0),
            maps: maps(),
            values: MapValues::new(2),
        };
        let t = crate::config::Template::parse_in(
            "$label $site $label",
            crate::config::template::Scope {
                maps: &["site".to_owned(), "label".to_owned()],
                captures: None,
            },
        )
        .unwrap();
        assert_eq!(v.reads.get(), 0);
        assert_eq!(t.render(&v), "[sub-shop] sub-shop [sub-shop]");
        assert_eq!(v.reads.get(), 1, "the source is read once per request");
        assert_eq!(t.render(&v), "[sub-shop] sub-shop [sub-shop]");
        assert_eq!(v.reads.get(), 1);
    }
}
