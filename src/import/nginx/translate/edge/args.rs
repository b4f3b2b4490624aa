//! One directive's arguments → its vigil value: zones, error pages,
//! limits, access targets (pure, each with its error text).

use super::*;

/// `limit_req_zone $key zone=name:10m rate=10r/s` (or `limit_conn_zone
/// $key zone=name:10m`): the zone's name and table.
pub(super) fn zone(d: &Directive, req: bool, maps: &[String]) -> Result<(String, Block), String> {
    let key = d.arg(0).ok_or("no key")?;
    let key = values::template(
        key,
        &VarContext {
            server_name: None,
            proxy_host: None,
            maps,
        },
    )?;
    let mut name = None;
    let mut size = None;
    let mut rate = None;
    for a in d.texts().iter().skip(1) {
        if let Some(z) = a.strip_prefix("zone=") {
            let (n, s) = z.split_once(':').ok_or("zone= without a size")?;
            name = Some(n.to_owned());
            size = Some(values::size(s)?);
        } else if let Some(r) = a.strip_prefix("rate=") {
            rate = Some(r.to_owned());
        } else if *a == "sync" {
            return Err(
                "`sync` (nginx Plus zone synchronization): vigil's zones are per node".into(),
            );
        } else {
            return Err(format!("unknown parameter {a}"));
        }
    }
    let name = name.ok_or("no zone=")?;
    let mut block = Block::new(format!("{}, {}", d.summary(), d.place));
    block.set("key", Value::str(key), "");
    if req {
        block.set("rate", Value::str(rate.ok_or("no rate=")?), "");
    }
    if let Some(s) = size {
        block.set("size", Value::str(s), "");
    }
    Ok((name, block))
}

/// `error_page code ... [=[response]] uri`.
pub(super) fn error_page(d: &Directive) -> Result<Vec<(String, Value)>, String> {
    let args = d.texts();
    let (target, rest) = args.split_last().ok_or("no target")?;
    if values::has_vars(target) {
        return Err(format!(
            "the target {target} uses variables; vigil's error_page targets are fixed"
        ));
    }
    let mut codes = Vec::new();
    let mut response = None;
    for a in rest {
        if let Some(r) = a.strip_prefix('=') {
            response = Some(if r.is_empty() {
                Value::str("=")
            } else {
                Value::Int(r.parse().map_err(|_| format!("={r} is not a status"))?)
            });
        } else {
            let code: i64 = a.parse().map_err(|_| format!("{a} is not a status"))?;
            if !(300..=599).contains(&code) {
                return Err(format!(
                    "vigil's error pages answer statuses 300-599, not {code}"
                ));
            }
            codes.push(Value::Int(code));
        }
    }
    if codes.is_empty() {
        return Err("no status".into());
    }
    let mut fields = vec![
        ("codes".to_owned(), Value::Array(codes)),
        ("uri".to_owned(), Value::str(*target)),
    ];
    if let Some(r) = response {
        fields.push(("response".to_owned(), r));
    }
    Ok(fields)
}

/// `limit_req zone=name [burst=n] [nodelay | delay=n]`.
pub(super) fn limit_req(d: &Directive) -> Result<(String, Vec<(String, Value)>), String> {
    let mut zone = None;
    let mut fields = Vec::new();
    for a in d.texts() {
        if let Some(z) = a.strip_prefix("zone=") {
            zone = Some(z.to_owned());
        } else if let Some(b) = a.strip_prefix("burst=") {
            let n: i64 = b
                .parse()
                .map_err(|_| format!("burst={b} is not a number"))?;
            fields.push(("burst".to_owned(), Value::Int(n)));
        } else if a == "nodelay" {
            fields.push(("nodelay".to_owned(), Value::Bool(true)));
        } else if let Some(n) = a.strip_prefix("delay=") {
            let n: i64 = n
                .parse()
                .map_err(|_| format!("delay={n} is not a number"))?;
            fields.push(("delay".to_owned(), Value::Int(n)));
        } else {
            return Err(format!("unknown parameter {a}"));
        }
    }
    let zone = zone.ok_or("no zone=")?;
    fields.insert(0, ("zone".to_owned(), Value::str(zone.clone())));
    Ok((zone, fields))
}

/// `limit_conn zone n`.
pub(super) fn limit_conn(d: &Directive) -> Result<(String, Vec<(String, Value)>), String> {
    let zone = d.arg(0).ok_or("no zone")?.to_owned();
    let n: i64 = d
        .arg(1)
        .and_then(|n| n.parse().ok())
        .ok_or("no number of connections")?;
    Ok((
        zone.clone(),
        vec![
            ("zone".to_owned(), Value::str(zone)),
            ("limit".to_owned(), Value::Int(n)),
        ],
    ))
}

/// An allow/deny target as vigil writes it: `all`, an address, or a
/// range with its host bits cleared (nginx accepts `10.0.0.1/8` with a
/// warning and uses 10.0.0.0/8; vigil refuses it).
pub(super) fn access_target(t: &str) -> Result<String, String> {
    if t == "all" {
        return Ok(t.to_owned());
    }
    if t.starts_with("unix:") {
        return Err("unix: (connections over a unix socket): vigil listens on TCP only".into());
    }
    let (addr, len) = match t.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (t, None),
    };
    let ip: std::net::IpAddr = addr
        .parse()
        .map_err(|_| format!("{t} is not an address or CIDR range"))?;
    let Some(len) = len else {
        return Ok(ip.to_string());
    };
    let len: u8 = len.parse().map_err(|_| format!("{t}: bad prefix length"))?;
    let masked = match ip {
        std::net::IpAddr::V4(v4) if len <= 32 => {
            let bits = u32::from(v4) & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            std::net::IpAddr::from(std::net::Ipv4Addr::from(bits))
        }
        std::net::IpAddr::V6(v6) if len <= 128 => {
            let bits = u128::from(v6) & u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            std::net::IpAddr::from(std::net::Ipv6Addr::from(bits))
        }
        _ => return Err(format!("{t}: prefix length too long")),
    };
    Ok(format!("{masked}/{len}"))
}
