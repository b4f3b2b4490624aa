//! A strict parser for the Prometheus text exposition format (0.0.4), so
//! tests read `/metrics` the way a Prometheus server would: TYPE lines,
//! label values with escapes (`\\`, `\"`, `\n`), and any character
//! (including `=` and spaces) inside quotes.

use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Default)]
pub struct Scrape {
    pub types: HashMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// Parses a whole exposition; panics with the line on any error.
    pub fn parse(text: &str) -> Scrape {
        let mut scrape = Scrape::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("line {n}: {line}"));
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "line {n}: unknown type {kind}"
                );
                scrape.types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            scrape
                .samples
                .push(parse_sample(line).unwrap_or_else(|e| panic!("line {n}: {e}: {line}")));
        }
        for s in &scrape.samples {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| s.name.strip_suffix(suffix))
                .filter(|base| scrape.types.get(*base).map(String::as_str) == Some("histogram"))
                .unwrap_or(&s.name);
            assert!(
                scrape.types.contains_key(family),
                "sample {} has no TYPE",
                s.name
            );
        }
        scrape
    }

    /// Sum of the samples named `name` whose labels include `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    pub fn kind(&self, name: &str) -> Option<&str> {
        self.types.get(name).map(String::as_str)
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            inner = inner.trim_start_matches(',');
            if let Some(after) = inner.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after_key) = inner.split_once("=\"").ok_or("label without =\"")?;
            let mut value = String::new();
            let mut chars = after_key.char_indices();
            let end = loop {
                match chars.next().ok_or("unterminated label value")? {
                    (_, '\\') => match chars.next().ok_or("bad escape")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        _ => return Err("bad escape".into()),
                    },
                    (i, '"') => break i,
                    (_, c) => value.push(c),
                }
            };
            labels.insert(key.to_owned(), value);
            inner = &after_key[end + 1..];
        }
    }
    finish(name, labels, rest)
}

fn finish(name: &str, labels: BTreeMap<String, String>, rest: &str) -> Result<Sample, String> {
    let value_text = rest.split_whitespace().next().ok_or("no value")?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|_| format!("bad value {v:?}"))?,
    };
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_escapes_and_equals_in_values() {
        let s = Scrape::parse(
            "# TYPE m counter\nm{a=\"= /x\",b=\"q\\\"\\\\\"} 3\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 2\n",
        );
        assert_eq!(s.value("m", &[("a", "= /x"), ("b", "q\"\\")]), 3.0);
        assert_eq!(s.value("h_count", &[]), 2.0);
    }
}
