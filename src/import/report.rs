//! The import report: every directive that was not translated as written,
//! with where it is, why, and what to do instead.

use std::fmt::Write;

use serde::Serialize;

/// Why a directive is in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// vigil has no such feature: the behaviour is lost.
    NotSupported,
    /// A directive the importer does not know (a third-party module?).
    Unknown,
    /// Translated, with a difference the report names.
    Approximated,
    /// vigil does this by itself, or it has no meaning for vigil.
    NotNeeded,
    /// Worth knowing; nothing was lost.
    Note,
}

impl Status {
    /// Whether something of the original behaviour was left out.
    pub fn left_out(self) -> bool {
        matches!(
            self,
            Status::NotSupported | Status::Unknown | Status::Approximated
        )
    }

    fn label(self) -> &'static str {
        match self {
            Status::NotSupported => "not supported",
            Status::Unknown => "unknown directive",
            Status::Approximated => "approximated",
            Status::NotNeeded => "not needed",
            Status::Note => "note",
        }
    }
}

/// One report line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// `file:line`, or empty for the input as a whole.
    pub place: String,
    /// The directive as written (shortened).
    pub directive: String,
    pub status: Status,
    pub why: String,
    /// What to do instead; may be empty.
    pub instead: String,
}

/// Every item, in the order the files were read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub items: Vec<Item>,
}

impl Report {
    pub fn add(
        &mut self,
        place: impl ToString,
        directive: impl Into<String>,
        status: Status,
        why: impl Into<String>,
        instead: impl Into<String>,
    ) {
        let item = Item {
            place: place.to_string(),
            directive: directive.into(),
            status,
            why: why.into(),
            instead: instead.into(),
        };
        // One line per place and directive is enough: a directive copied
        // into several vigil servers is reported once.
        if !self.items.contains(&item) {
            self.items.push(item);
        }
    }

    /// Whether anything was left out (the command then exits 3).
    pub fn left_out(&self) -> bool {
        self.items.iter().any(|i| i.status.left_out())
    }

    /// How many items have each status.
    pub fn counts(&self) -> Vec<(Status, usize)> {
        let mut counts: Vec<(Status, usize)> = Vec::new();
        for item in &self.items {
            match counts.iter_mut().find(|(s, _)| *s == item.status) {
                Some((_, n)) => *n += 1,
                None => counts.push((item.status, 1)),
            }
        }
        counts.sort();
        counts
    }

    /// Plain text: a summary line, then one line per item, most serious
    /// first, in file order within a status.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if self.items.is_empty() {
            out.push_str("vigil import: everything was translated\n");
            return out;
        }
        let summary: Vec<String> = self
            .counts()
            .iter()
            .map(|(s, n)| format!("{n} {}", s.label()))
            .collect();
        let _ = writeln!(out, "vigil import: {}", summary.join(", "));
        let mut items: Vec<&Item> = self.items.iter().collect();
        items.sort_by(|a, b| (a.status, place_key(&a.place)).cmp(&(b.status, place_key(&b.place))));
        for item in items {
            for part in [&item.place, &item.directive] {
                if !part.is_empty() {
                    let _ = write!(out, "{part}: ");
                }
            }
            let _ = write!(out, "{}: {}", item.status.label(), item.why);
            if !item.instead.is_empty() {
                let _ = write!(out, "; instead: {}", item.instead);
            }
            out.push('\n');
        }
        out
    }

    /// `{"left_out": bool, "counts": {...}, "items": [...]}`.
    pub fn json(&self) -> String {
        let counts: serde_json::Map<String, serde_json::Value> = self
            .counts()
            .into_iter()
            .map(|(s, n)| {
                (
                    serde_json::to_value(s)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    n.into(),
                )
            })
            .collect();
        let doc = serde_json::json!({
            "left_out": self.left_out(),
            "counts": counts,
            "items": self.items,
        });
        serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
    }
}

/// `file:line` → (file, line) for sorting in file order.
fn place_key(place: &str) -> (&str, u64) {
    match place.rsplit_once(':') {
        Some((file, line)) => match line.parse() {
            Ok(n) => (file, n),
            Err(_) => (place, 0),
        },
        None => (place, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_list_every_item() {
        let mut r = Report::default();
        r.add(
            "a.conf:3",
            "sendfile on",
            Status::NotNeeded,
            "vigil uses sendfile(2) itself",
            "",
        );
        r.add(
            "a.conf:9",
            "gunzip on",
            Status::NotSupported,
            "vigil does not decompress upstream responses",
            "let the upstream answer uncompressed",
        );
        r.add(
            "a.conf:9",
            "gunzip on",
            Status::NotSupported,
            "vigil does not decompress upstream responses",
            "let the upstream answer uncompressed",
        );
        assert_eq!(r.items.len(), 2);
        assert!(r.left_out());
        let t = r.text();
        assert!(
            t.starts_with("vigil import: 1 not supported, 1 not needed\n"),
            "{t}"
        );
        let gunzip = t.find("a.conf:9: gunzip on: not supported").unwrap();
        assert!(gunzip < t.find("a.conf:3").unwrap());
        assert!(t.contains("; instead: let the upstream"));
        let j: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(j["left_out"], true);
        assert_eq!(j["counts"]["not_needed"], 1);
        assert_eq!(j["items"][1]["status"], "not_supported");
    }

    #[test]
    fn notes_alone_leave_nothing_out() {
        let mut r = Report::default();
        r.add("", "", Status::Note, "x", "");
        r.add("", "worker_processes 4", Status::NotNeeded, "x", "");
        assert!(!r.left_out());
    }
}
