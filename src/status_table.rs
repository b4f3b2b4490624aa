//! `vigil status`: the `/status` document as tables for a person.

use std::fmt::Write;

use serde_json::Value;

/// Renders a `/status` document.
pub fn render(doc: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "vigil {} — config {} (generation {}), up {}, {} workers, {} connections",
        s(&doc["version"]),
        s(&doc["config"]),
        doc["generation"],
        uptime(doc["uptime_seconds"].as_u64().unwrap_or(0)),
        doc["workers"],
        doc["connections_active"],
    );
    if let Some(state) = doc["state"].as_str() {
        let _ = writeln!(out, "state: {state}");
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = doc["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            vec![
                s(&l["listen"]),
                s(&l["bound"]),
                yes_no(&l["tls"]),
                l["servers"]
                    .as_array()
                    .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    table(&mut out, &["LISTEN", "BOUND", "TLS", "SERVERS"], &rows);

    let mut rows = Vec::new();
    for u in doc["upstreams"].as_array().into_iter().flatten() {
        for srv in u["servers"].as_array().into_iter().flatten() {
            rows.push(vec![
                s(&u["name"]),
                s(&srv["addr"]),
                yes_no(&srv["up"]),
                s(&srv["health_check"]),
                srv["active_requests"].to_string(),
                srv["idle_connections"].to_string(),
                srv["weight"].to_string(),
                yes_no(&srv["backup"]),
            ]);
        }
    }
    if !rows.is_empty() {
        out.push('\n');
        table(
            &mut out,
            &[
                "UPSTREAM", "SERVER", "UP", "CHECK", "ACTIVE", "IDLE", "WEIGHT", "BACKUP",
            ],
            &rows,
        );
    }

    let rows: Vec<Vec<String>> = doc["vrrp"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            vec![
                s(&v["name"]),
                v["vrid"].to_string(),
                s(&v["interface"]),
                s(&v["state"]),
                format!("{}/{}", v["effective_priority"], v["priority"]),
                s(&v["master"]),
                s(&v["last_transition_reason"]),
            ]
        })
        .collect();
    if let Some(why) = doc["vrrp_unavailable"].as_str() {
        out.push_str(&format!(
            "\nVRRP unavailable (serving without the VIP): {why}\n"
        ));
    }
    if !rows.is_empty() {
        out.push('\n');
        table(
            &mut out,
            &[
                "VRRP",
                "VRID",
                "IFACE",
                "STATE",
                "PRIO (eff/conf)",
                "MASTER",
                "LAST CHANGE",
            ],
            &rows,
        );
    }
    out
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn yes_no(v: &Value) -> String {
    if v.as_bool().unwrap_or(false) {
        "yes"
    } else {
        "no"
    }
    .into()
}

fn uptime(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86_400 => format!("{}h{:02}m", secs / 3600, secs / 60 % 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs / 3600 % 24),
    }
}

fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (cell, w) in cells.zip(&widths) {
            let _ = write!(text, "{cell:<w$}  ");
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(out, &mut header.iter().copied());
    for row in rows {
        line(out, &mut row.iter().map(String::as_str));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_sections() {
        let doc = serde_json::json!({
            "version": "0.1.0", "config": "conf/vigil.toml", "generation": 2,
            "uptime_seconds": 3725, "workers": 2, "connections_active": 3,
            "listeners": [{"listen": "0.0.0.0:8080", "bound": "0.0.0.0:8080", "tls": false, "servers": ["_"]}],
            "upstreams": [{"name": "app", "servers": [{"addr": "127.0.0.1:9001", "up": true, "health_check": "up",
                "active_requests": 1, "idle_connections": 4, "weight": 3, "backup": false}]}],
            "vrrp": [{"name": "VI_1", "vrid": 51, "interface": "eth0", "state": "master",
                "priority": 100, "effective_priority": 100, "master": "10.0.0.1", "last_transition_reason": "master down timer"}],
        });
        let text = render(&doc);
        assert!(text.contains("generation 2), up 1h02m"), "{text}");
        assert!(text.contains("app       127.0.0.1:9001  yes"), "{text}");
        assert!(
            text.contains("VI_1  51    eth0   master  100/100"),
            "{text}"
        );
    }
}
