//! The arrows between vigil's top-level parts (docs/ARCHITECTURE.md, issue
//! 9): every `use crate::` line and inline `crate::` path in src/ is mapped
//! from its file's part to the part it names, and any arrow outside the
//! allowed list fails, naming the file and the edge.

use std::collections::BTreeSet;
use std::path::Path;

/// (from, to) arrows that are allowed. `app` may import every part.
/// `privileges` and `status_table` are small shared leaves (capabilities,
/// thread priorities, table rendering) that import nothing of vigil; main
/// and app use them, and proxy and vrrp put their threads and scripts back
/// to normal priority through `privileges`.
const ALLOWED: &[(&str, &str)] = &[
    ("main", "app"),
    ("liveness", "proxy"),
    ("liveness", "vrrp"),
    ("liveness", "config"),
    ("admin", "metrics"),
    ("proxy", "config"),
    ("proxy", "metrics"),
    ("vrrp", "config"),
    ("main", "privileges"),
    ("proxy", "privileges"),
    ("vrrp", "privileges"),
    ("main", "status_table"),
    // The allocator's per-thread spares: the proxy workers turn them on.
    ("proxy", "spare_blocks"),
    ("main", "import"),
    ("import", "config"),
    // fuzzing: entry points for fuzz/ into the parsers of each part.
    ("fuzzing", "config"),
    ("fuzzing", "proxy"),
    ("fuzzing", "vrrp"),
    ("fuzzing", "import"),
];

/// Known debts: arrows that break the layout and are being removed. Each
/// is named so that it can only shrink; one that no longer occurs fails
/// the test too, so the list is kept honest. None are left: admin talks
/// to a `Control` trait and liveness to a `Watched` one, both
/// implemented by app.
const KNOWN_DEBTS: &[(&str, &str)] = &[];

/// The top-level part a source file belongs to.
fn part_of(rel: &Path) -> String {
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// Every `crate::<part>` named in `text`, skipping comment lines.
fn imported_parts(text: &str) -> BTreeSet<String> {
    let mut parts = BTreeSet::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            // `vigil::crate::` cannot occur; `$crate::` is a macro path.
            let before = &rest[..at];
            rest = &rest[at + "crate::".len()..];
            if before.ends_with('$') || before.ends_with(|c: char| c.is_alphanumeric() || c == '_')
            {
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                parts.insert(name);
            }
        }
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn imports_follow_the_allowed_arrows() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    let mut seen_debts = BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let from = part_of(rel);
        if from == "lib" || from == "app" {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for to in imported_parts(&text) {
            let edge = (from.as_str(), to.as_str());
            if to == from || ALLOWED.contains(&edge) {
                continue;
            }
            if KNOWN_DEBTS.contains(&edge) {
                seen_debts.insert(edge.0.to_owned() + " -> " + edge.1);
                continue;
            }
            wrong.push(format!("src/{}: {from} -> {to}", rel.display()));
        }
    }
    assert!(
        wrong.is_empty(),
        "arrows outside the layout:\n{}",
        wrong.join("\n")
    );
    for (from, to) in KNOWN_DEBTS {
        assert!(
            seen_debts.contains(&format!("{from} -> {to}")),
            "known debt {from} -> {to} no longer occurs: remove it from KNOWN_DEBTS"
        );
    }
}
