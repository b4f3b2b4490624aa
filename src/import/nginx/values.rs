//! nginx's value syntaxes (times, sizes, variables) turned into vigil's.

use std::time::Duration;

use crate::config::template::Template;

/// nginx's time syntax (`ngx_parse_time`): `30`, `30s`, `500ms`, `1h30m`,
/// `2d`, `1w`, `1M` (30 days), `1y` (365 days).
pub fn parse_time(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not an nginx time (e.g. 30s, 500ms, 1h30m)");
    if text.is_empty() {
        return Err(bad());
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut total_ms: u128 = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(bad());
        }
        let n: u128 = text[start..i].parse().map_err(|_| bad())?;
        let unit_ms: u128 = if text[i..].starts_with("ms") {
            i += 2;
            1
        } else {
            let unit = bytes.get(i).copied();
            if unit.is_some() {
                i += 1;
            }
            match unit {
                None | Some(b's') => 1000,
                Some(b'm') => 60_000,
                Some(b'h') => 3_600_000,
                Some(b'd') => 86_400_000,
                Some(b'w') => 7 * 86_400_000,
                Some(b'M') => 30 * 86_400_000,
                Some(b'y') => 365 * 86_400_000,
                _ => return Err(bad()),
            }
        };
        total_ms = total_ms.saturating_add(n.saturating_mul(unit_ms));
    }
    let ms = u64::try_from(total_ms).map_err(|_| bad())?;
    Ok(Duration::from_millis(ms))
}

/// A duration as vigil writes it: one unit, the largest that divides it.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    for (unit, size) in [("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)] {
        if s % size == 0 {
            return format!("{}{unit}", s / size);
        }
    }
    format!("{s}s")
}

/// nginx's size syntax (`10m`, `512k`, `1g`, bytes), as vigil writes it.
pub fn size(text: &str) -> Result<String, String> {
    let lower = text.to_ascii_lowercase();
    crate::config::units::ByteSize::parse(&lower)
        .map(|_| lower.clone())
        .map_err(|_| format!("{text:?} is not an nginx size (e.g. 10m, 512k)"))
}

/// What a variable becomes when a value is moved to vigil.
pub struct VarContext<'a> {
    /// `$server_name`: the server's first name.
    pub server_name: Option<&'a str>,
    /// `$proxy_host`: the host of the proxy_pass target as written.
    pub proxy_host: Option<&'a str>,
    /// The `[map.*]` variables the import made.
    pub maps: &'a [String],
}

/// Rewrites the nginx variables in `value` into vigil's template syntax:
/// variables fixed for the server (`$server_name`) or the location
/// (`$proxy_host`) become literal text; names vigil knows stay; anything
/// else is an error naming the variables vigil lacks.
pub fn template(value: &str, ctx: &VarContext<'_>) -> Result<String, String> {
    template_in(value, ctx, None)
}

/// Like [`template`], with the groups of `captures` (a rewrite's regex)
/// allowed as `$1`..`$9` and `$name`.
pub fn template_in(
    value: &str,
    ctx: &VarContext<'_>,
    captures: Option<&regex::Regex>,
) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut unknown = Vec::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, tail, braced) = if let Some(b) = after.strip_prefix('{') {
            match b.find('}') {
                Some(end) => (&b[..end], &b[end + 1..], true),
                None => return Err(format!("unclosed ${{ in {value:?}")),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..], false)
        };
        rest = tail;
        if name.is_empty() {
            return Err(format!("a lone $ in {value:?}"));
        }
        let literal = match name {
            "server_name" => ctx.server_name,
            "proxy_host" => ctx.proxy_host,
            _ => None,
        };
        if let Some(l) = literal {
            out.push_str(l);
            continue;
        }
        let written = if braced || tail.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            format!("${{{name}}}")
        } else {
            format!("${name}")
        };
        let scope = crate::config::template::Scope {
            maps: ctx.maps,
            captures,
        };
        let digits = name.chars().all(|c| c.is_ascii_digit());
        if Template::parse_in(&written, scope).is_err() || (digits && captures.is_none()) {
            unknown.push(format!("${name}"));
        }
        out.push_str(&written);
    }
    out.push_str(rest);
    if unknown.is_empty() {
        Ok(out)
    } else {
        unknown.dedup();
        Err(format!(
            "vigil has no variable {} (it knows $remote_addr, $host, $request_uri, $uri, $args, \
             $scheme, $server_port, $request_method, $request_id, $time_iso8601, $time_local, $msec, \
             $http_*, $cookie_*, $arg_*)",
            unknown.join(", ")
        ))
    }
}

/// Like [`template`], but leaves out the variables vigil lacks and names
/// them.
pub fn template_lossy(value: &str, ctx: &VarContext<'_>) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut dropped = Vec::new();
    let mut rest = value;
    loop {
        let Some(at) = rest.find('$') else {
            out.push_str(rest);
            break;
        };
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let end = if after.starts_with('{') {
            after.find('}').map_or(after.len(), |e| e + 1)
        } else {
            after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len())
        };
        let var = &rest[at..at + 1 + end];
        match template(var, ctx) {
            Ok(t) => out.push_str(&t),
            Err(_) => dropped.push(var.to_owned()),
        }
        rest = &after[end..];
    }
    (out, dropped)
}

/// Whether `value` uses any variable.
pub fn has_vars(value: &str) -> bool {
    value.contains('$')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let t = |s: &str| parse_time(s).unwrap().as_millis();
        assert_eq!(t("30"), 30_000);
        assert_eq!(t("30s"), 30_000);
        assert_eq!(t("500ms"), 500);
        assert_eq!(t("1h30m"), 5_400_000);
        assert_eq!(t("1y"), 365 * 86_400_000);
        assert_eq!(t("1M"), 30 * 86_400_000);
        assert!(parse_time("").is_err());
        assert!(parse_time("10x").is_err());
        assert!(parse_time("s").is_err());
        assert_eq!(duration(Duration::from_secs(600)), "10m");
        assert_eq!(duration(Duration::from_secs(90)), "90s");
        assert_eq!(duration(Duration::from_millis(5)), "5ms");
        assert_eq!(duration(Duration::from_secs(365 * 86400)), "365d");
        assert_eq!(duration(Duration::from_secs(604800)), "1w");
    }

    #[test]
    fn sizes() {
        assert_eq!(size("50M").unwrap(), "50m");
        assert_eq!(size("0").unwrap(), "0");
        assert!(size("10x").is_err());
    }

    #[test]
    fn variables() {
        let ctx = VarContext {
            server_name: Some("example.com"),
            proxy_host: Some("app"),
            maps: &[],
        };
        assert_eq!(
            template("https://$server_name$request_uri", &ctx).unwrap(),
            "https://example.com$request_uri"
        );
        assert_eq!(template("$proxy_host", &ctx).unwrap(), "app");
        assert_eq!(template("${host}x", &ctx).unwrap(), "${host}x");
        assert!(template("$hostx", &ctx).unwrap_err().contains("$hostx"));
        assert_eq!(template("$http_x_user", &ctx).unwrap(), "$http_x_user");
        let e = template("t=$connection $upstream_addr", &ctx).unwrap_err();
        assert!(e.contains("$connection, $upstream_addr"), "{e}");
        assert_eq!(
            template("$time_iso8601 $request_id", &ctx).unwrap(),
            "$time_iso8601 $request_id"
        );
        assert!(template("$1", &ctx).is_err());
    }
}
