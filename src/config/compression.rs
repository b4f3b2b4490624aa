//! On-the-fly compression settings (nginx `gzip*`, ngx_brotli's `brotli*`,
//! zstd-nginx-module's `zstd*`), validated. The same keys may be written
//! in `[http]`, `[[server]]` and `[[server.location]]`; each key is
//! inherited from the enclosing level unless set, as nginx merges each
//! directive on its own.

use super::units::ByteSize;

/// The compression keys of one level, as written. Collected from
/// `[http]`, `[[server]]` and `[[server.location]]` by `keys()`.
#[derive(Debug, Clone, Default)]
pub struct CompressionKeys {
    pub gzip: Option<bool>,
    pub gzip_comp_level: Option<i64>,
    pub gzip_types: Option<Vec<String>>,
    pub gzip_min_length: Option<ByteSize>,
    pub gzip_vary: Option<bool>,
    pub gzip_proxied: Option<Vec<String>>,
    pub gzip_http_version: Option<String>,
    pub brotli: Option<bool>,
    pub brotli_comp_level: Option<i64>,
    pub zstd: Option<bool>,
    pub zstd_comp_level: Option<i64>,
}

impl CompressionKeys {
    /// `self` with every unset key taken from `outer`.
    pub fn inherit(&self, outer: &CompressionKeys) -> CompressionKeys {
        fn pick<T: Clone>(inner: &Option<T>, outer: &Option<T>) -> Option<T> {
            inner.clone().or_else(|| outer.clone())
        }
        CompressionKeys {
            gzip: pick(&self.gzip, &outer.gzip),
            gzip_comp_level: pick(&self.gzip_comp_level, &outer.gzip_comp_level),
            gzip_types: pick(&self.gzip_types, &outer.gzip_types),
            gzip_min_length: pick(&self.gzip_min_length, &outer.gzip_min_length),
            gzip_vary: pick(&self.gzip_vary, &outer.gzip_vary),
            gzip_proxied: pick(&self.gzip_proxied, &outer.gzip_proxied),
            gzip_http_version: pick(&self.gzip_http_version, &outer.gzip_http_version),
            brotli: pick(&self.brotli, &outer.brotli),
            brotli_comp_level: pick(&self.brotli_comp_level, &outer.brotli_comp_level),
            zstd: pick(&self.zstd, &outer.zstd),
            zstd_comp_level: pick(&self.zstd_comp_level, &outer.zstd_comp_level),
        }
    }
}

/// Compression for a server or location: at least one coding is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compression {
    /// `gzip = true`: the level (1–9, nginx's default 1).
    pub gzip: Option<u32>,
    /// `brotli = true`: the quality (0–11, ngx_brotli's default 6).
    pub brotli: Option<u32>,
    /// `zstd = true`: the level (1–19, zstd-nginx-module's default 1).
    pub zstd: Option<i32>,
    pub types: MimeTypes,
    /// Responses whose Content-Length is below this stay as they are
    /// (nginx `gzip_min_length`, default 20); a length not known in
    /// advance is compressed.
    pub min_length: u64,
    /// Add `Vary: Accept-Encoding` to every response that could have been
    /// compressed (compressed or not).
    pub vary: bool,
    pub proxied: GzipProxied,
    /// `gzip_http_version = "1.0"`: also compress for HTTP/1.0 requests.
    pub http10: bool,
}

/// `gzip_types`: media types compressed. `text/html` is always in (nginx).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MimeTypes {
    /// `"*"`: every type.
    Any,
    /// Lowercased `type/subtype`, without parameters.
    List(Vec<String>),
}

impl MimeTypes {
    /// Whether a `Content-Type` value (parameters allowed) is listed.
    pub fn contains(&self, content_type: &str) -> bool {
        match self {
            MimeTypes::Any => true,
            MimeTypes::List(list) => {
                let essence = content_type
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                list.contains(&essence)
            }
        }
    }
}

/// `gzip_proxied`: whether to compress responses to requests that came
/// through a proxy (a `Via` header), by what the response says about
/// caching. nginx's parameters and order of checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GzipProxied {
    /// `off` (the default when nothing else is listed): never.
    pub any: bool,
    pub expired: bool,
    pub no_cache: bool,
    pub no_store: bool,
    pub private: bool,
    pub no_last_modified: bool,
    pub no_etag: bool,
    pub auth: bool,
}

impl GzipProxied {
    /// Parses the list: `["off"]`, `["any"]`, `["expired", "no-cache", ...]`.
    pub fn parse(items: &[String]) -> Result<GzipProxied, String> {
        let mut p = GzipProxied::default();
        for item in items {
            match item.as_str() {
                "off" => {
                    if items.len() > 1 {
                        return Err("\"off\" cannot be combined with other values".into());
                    }
                }
                "any" => p.any = true,
                "expired" => p.expired = true,
                "no-cache" => p.no_cache = true,
                "no-store" => p.no_store = true,
                "private" => p.private = true,
                "no_last_modified" => p.no_last_modified = true,
                "no_etag" => p.no_etag = true,
                "auth" => p.auth = true,
                other => {
                    return Err(format!(
                        "{other:?} is not a gzip_proxied value; use off, any, expired, \
                         no-cache, no-store, private, no_last_modified, no_etag or auth"
                    ));
                }
            }
        }
        Ok(p)
    }
}

/// Builds the validated settings from merged keys; `None` when no coding
/// is on. Errors name the key (without its path).
pub fn build(keys: &CompressionKeys) -> Result<Option<Compression>, (&'static str, String)> {
    let level =
        |key: &'static str, v: Option<i64>, range: std::ops::RangeInclusive<i64>, default| {
            let v = v.unwrap_or(default);
            if range.contains(&v) {
                Ok(v)
            } else {
                Err((
                    key,
                    format!(
                        "{v} is not a level from {} to {}",
                        range.start(),
                        range.end()
                    ),
                ))
            }
        };
    // Levels are checked even where compression is off, so a typo does
    // not wait for the day someone turns it on.
    let gzip = level("gzip_comp_level", keys.gzip_comp_level, 1..=9, 1)? as u32;
    let brotli = level("brotli_comp_level", keys.brotli_comp_level, 0..=11, 6)? as u32;
    // Above 19 zstd's "ultra" levels need windows of up to 128 MiB per
    // response: not for on-the-fly compression.
    let zstd = level("zstd_comp_level", keys.zstd_comp_level, 1..=19, 1)? as i32;
    let mut types = vec!["text/html".to_owned()];
    let mut any = false;
    for t in keys.gzip_types.iter().flatten() {
        let t = t.trim().to_ascii_lowercase();
        if t == "*" {
            any = true;
            continue;
        }
        let valid = t.split_once('/').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && t.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"/!#$&^_.+-".contains(&c))
        });
        if !valid {
            return Err((
                "gzip_types",
                format!("{t:?} is not a media type like \"application/json\" (or \"*\")"),
            ));
        }
        if !types.contains(&t) {
            types.push(t);
        }
    }
    let proxied = GzipProxied::parse(keys.gzip_proxied.as_deref().unwrap_or(&[]))
        .map_err(|e| ("gzip_proxied", e))?;
    let http10 = match keys.gzip_http_version.as_deref() {
        None | Some("1.1") => false,
        Some("1.0") => true,
        Some(other) => {
            return Err((
                "gzip_http_version",
                format!("{other:?} is not \"1.0\" or \"1.1\""),
            ));
        }
    };
    let on = |k: Option<bool>| k.unwrap_or(false);
    if !on(keys.gzip) && !on(keys.brotli) && !on(keys.zstd) {
        return Ok(None);
    }
    Ok(Some(Compression {
        gzip: on(keys.gzip).then_some(gzip),
        brotli: on(keys.brotli).then_some(brotli),
        zstd: on(keys.zstd).then_some(zstd),
        types: if any {
            MimeTypes::Any
        } else {
            MimeTypes::List(types)
        },
        min_length: keys.gzip_min_length.map_or(20, |s| s.0),
        vary: keys.gzip_vary.unwrap_or(true),
        proxied,
        http10,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(f: impl FnOnce(&mut CompressionKeys)) -> CompressionKeys {
        let mut k = CompressionKeys::default();
        f(&mut k);
        k
    }

    #[test]
    fn off_unless_a_coding_is_on() {
        assert_eq!(build(&keys(|_| {})).unwrap(), None);
        assert_eq!(build(&keys(|k| k.gzip = Some(false))).unwrap(), None);
        let c = build(&keys(|k| k.gzip = Some(true))).unwrap().unwrap();
        assert_eq!(c.gzip, Some(1));
        assert_eq!((c.brotli, c.zstd), (None, None));
        assert_eq!(c.types, MimeTypes::List(vec!["text/html".into()]));
        assert_eq!(c.min_length, 20);
        assert!(c.vary && !c.http10 && c.proxied == GzipProxied::default());
    }

    #[test]
    fn inner_levels_override_outer_key_by_key() {
        let http = keys(|k| {
            k.gzip = Some(true);
            k.gzip_comp_level = Some(5);
            k.gzip_types = Some(vec!["application/json".into()]);
        });
        let loc = keys(|k| k.gzip_comp_level = Some(9));
        let c = build(&loc.inherit(&http)).unwrap().unwrap();
        assert_eq!(c.gzip, Some(9));
        assert!(c.types.contains("application/json; charset=utf-8"));
        assert!(c.types.contains("TEXT/HTML"));
        assert!(!c.types.contains("image/png"));
        let off = keys(|k| k.gzip = Some(false));
        assert_eq!(build(&off.inherit(&http)).unwrap(), None);
    }

    #[test]
    fn bad_values_name_their_key() {
        let bad = |f: fn(&mut CompressionKeys)| build(&keys(f)).unwrap_err().0;
        assert_eq!(bad(|k| k.gzip_comp_level = Some(10)), "gzip_comp_level");
        assert_eq!(bad(|k| k.gzip_comp_level = Some(0)), "gzip_comp_level");
        assert_eq!(bad(|k| k.brotli_comp_level = Some(12)), "brotli_comp_level");
        assert_eq!(bad(|k| k.zstd_comp_level = Some(22)), "zstd_comp_level");
        assert_eq!(
            bad(|k| k.gzip_types = Some(vec!["json".into()])),
            "gzip_types"
        );
        assert_eq!(
            bad(|k| k.gzip_proxied = Some(vec!["sometimes".into()])),
            "gzip_proxied"
        );
        assert_eq!(
            bad(|k| k.gzip_proxied = Some(vec!["off".into(), "any".into()])),
            "gzip_proxied"
        );
        assert_eq!(
            bad(|k| k.gzip_http_version = Some("2".into())),
            "gzip_http_version"
        );
    }

    #[test]
    fn star_takes_every_type() {
        let c = build(&keys(|k| {
            k.zstd = Some(true);
            k.gzip_types = Some(vec!["*".into()]);
        }))
        .unwrap()
        .unwrap();
        assert!(c.types.contains("image/png"));
        assert_eq!(c.zstd, Some(1));
    }
}
