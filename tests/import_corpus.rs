//! `vigil import` over the corpus (tests/corpus: real nginx and keepalived
//! configs from public repositories, see tests/corpus/SOURCES.md):
//!
//! - every file parses, except the ones broken upstream, which give a
//!   parse error naming file and line;
//! - every directive that the importer does not translate is in the report
//!   at its file:line (checked against the directive table, not against
//!   the translator's own bookkeeping);
//! - the written config is a vigil config: it deserializes into vigil's
//!   schema and, with certificates and upstream addresses swapped for
//!   local ones (as `vigil check` on the target host would find them),
//!   passes the whole validation `vigil check` runs.

mod support;

use support::imported::corpus;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use vigil::import::files::Disk;
use vigil::import::nginx::directives::{self, Fate};
use vigil::import::{Imported, Input, ParseError, Report, Status};

/// Files broken upstream, and the line nginx (and the importer) stops at.
const BROKEN: &[(&str, u32, &str)] = &[(
    "23-microservices-gateway.conf",
    44,
    "\"log_format\" directive is not allowed here",
)];

fn import(nginx: Option<&Path>, keepalived: Option<&Path>) -> Result<Imported, ParseError> {
    vigil::import::import(
        &Disk,
        &Input {
            nginx: nginx.map(Path::to_path_buf),
            keepalived: keepalived.map(Path::to_path_buf),
            ..Input::default()
        },
    )
}

fn reported(report: &Report) -> BTreeSet<String> {
    report.items.iter().map(|i| i.place.clone()).collect()
}

/// Every nginx directive whose fate is not "translated" must be reported
/// at its place.
fn check_nginx_coverage(path: &Path, report: &Report) {
    let parsed = vigil::import::nginx::parse::parse(&Disk, path, path.parent()).unwrap();
    let places = reported(report);
    let mut missing = Vec::new();
    fn walk(
        ds: &[vigil::import::nginx::Directive],
        in_upstream: bool,
        places: &BTreeSet<String>,
        missing: &mut Vec<String>,
    ) {
        for d in ds {
            let spec = if in_upstream {
                directives::upstream_spec(&d.name)
            } else {
                directives::spec(&d.name)
            };
            // These are translated in some forms only (whole-site
            // rewrite redirects, the https and host `if` idioms, `deny
            // all`); the other forms are reported.
            let partly = matches!(d.name.as_str(), "rewrite" | "if" | "deny");
            let must_report = !partly && !matches!(spec.map(|s| s.fate), Some(Fate::Translated));
            if must_report && !places.contains(&d.place.to_string()) {
                missing.push(format!("{}: {}", d.place, d.summary()));
            }
            let data = spec.is_some_and(|s| s.data) || spec.is_none();
            if !data {
                walk(d.children(), d.name == "upstream", places, missing);
            }
        }
    }
    walk(&parsed.directives, false, &places, &mut missing);
    assert!(
        missing.is_empty(),
        "{}: directives not translated and not in the report:\n{}\n--- report\n{}",
        path.display(),
        missing.join("\n"),
        report.text()
    );
}

/// keepalived keywords the importer translates; everything else must be
/// in the report.
const KEEPALIVED_TRANSLATED: &[&str] = &[
    "global_defs",
    "vrrp_version",
    "vrrp_garp_master_delay",
    "garp_master_delay",
    "vrrp_garp_master_repeat",
    "garp_master_repeat",
    "vrrp_garp_master_refresh",
    "garp_master_refresh",
    "vrrp_garp_interval",
    "vrrp_script",
    "vrrp_track_process",
    "script",
    "process",
    "interval",
    "timeout",
    "weight",
    "fall",
    "rise",
    "delay",
    "vrrp_instance",
    "interface",
    "virtual_router_id",
    "priority",
    "advert_int",
    "version",
    "nopreempt",
    "preempt",
    "preempt_delay",
    "virtual_ipaddress",
    "virtual_ipaddress_excluded",
    "unicast_src_ip",
    "unicast_peer",
    "authentication",
    "auth_type",
    "auth_pass",
    "track_script",
    "track_process",
    "track_interface",
    "notify",
    "notify_master",
    "notify_backup",
    "notify_fault",
    "notify_stop",
    "garp_interval",
    "vrrp_sync_group",
    "group",
];

fn check_keepalived_coverage(path: &Path, report: &Report) {
    let parsed = vigil::import::keepalived::parse::parse(&Disk, path).unwrap();
    let places = reported(report);
    let mut missing = Vec::new();
    fn walk(
        ss: &[vigil::import::keepalived::parse::Stmt],
        list: bool,
        places: &BTreeSet<String>,
        missing: &mut Vec<String>,
    ) {
        for s in ss {
            // Lines of address lists and tracked names are data.
            if !list
                && !KEEPALIVED_TRANSLATED.contains(&s.key())
                && !places.contains(&s.place.to_string())
            {
                missing.push(format!("{}: {}", s.place, s.summary()));
            }
            let data = matches!(
                s.key(),
                "virtual_ipaddress"
                    | "virtual_ipaddress_excluded"
                    | "unicast_peer"
                    | "track_script"
                    | "track_process"
                    | "track_interface"
                    | "group"
                    | "notification_email"
            );
            walk(s.children(), data, places, missing);
        }
    }
    walk(&parsed.stmts, false, &places, &mut missing);
    assert!(
        missing.is_empty(),
        "{}: statements not translated and not in the report:\n{}\n--- report\n{}",
        path.display(),
        missing.join("\n"),
        report.text()
    );
}

/// The TOML as `vigil check` would read it on the target host: parsed
/// into vigil's schema, then validated whole with the certificates and
/// upstream host names swapped for local ones.
fn check_config(name: &str, toml_text: &str, dir: &Path, cert: &(PathBuf, PathBuf)) {
    let _: vigil::config::file::ConfigFile = toml::from_str(toml_text)
        .unwrap_or_else(|e| panic!("{name}: not vigil's schema: {e}\n{toml_text}"));
    let mut table: toml::Table = toml::from_str(toml_text).unwrap();
    // nginx's body directory (/var/lib/nginx/body) exists where nginx ran.
    if let Some(http) = table.get_mut("http").and_then(|h| h.as_table_mut()) {
        if http.contains_key("client_body_temp_path") {
            http.insert(
                "client_body_temp_path".into(),
                dir.display().to_string().into(),
            );
        }
    }
    if let Some(toml::Value::Array(servers)) = table.get_mut("server") {
        for s in servers {
            local_error_pages(s, dir);
            if let Some(tls) = s.get_mut("tls").and_then(|t| t.as_table_mut()) {
                tls.insert("cert".into(), cert.0.display().to_string().into());
                tls.insert("key".into(), cert.1.display().to_string().into());
            }
            // Implicit upstreams (proxy_pass "http://host:port/..."): a
            // local address, so the check resolves nothing.
            if let Some(toml::Value::Array(locations)) = s.get_mut("location") {
                for l in locations {
                    let Some(pass) = l.get("proxy_pass").and_then(|p| p.as_str()) else {
                        continue;
                    };
                    let Some(rest) = pass.strip_prefix("http://") else {
                        continue;
                    };
                    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                    if !host.contains(['.', ':']) {
                        continue;
                    }
                    let port = host.rsplit_once(':').map_or("80", |(_, p)| p);
                    let local = format!("http://127.0.0.1:{port}{path}");
                    l.as_table_mut()
                        .unwrap()
                        .insert("proxy_pass".into(), local.into());
                }
            }
        }
    }
    if let Some(toml::Value::Table(ups)) = table.get_mut("upstream") {
        for (_, u) in ups.iter_mut() {
            if let Some(toml::Value::Array(servers)) = u.get_mut("servers") {
                for s in servers {
                    let addr = s["addr"].as_str().unwrap().to_owned();
                    let port = addr.rsplit(':').next().unwrap();
                    s.as_table_mut()
                        .unwrap()
                        .insert("addr".into(), format!("127.0.0.1:{port}").into());
                }
            }
        }
    }
    let local = toml::to_string(&table).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, &local).unwrap();
    if let Err(e) = vigil::config::Config::parse(&local, &path) {
        panic!(
            "{name}: the imported config does not pass vigil check:\n{e}\n--- as imported\n{toml_text}"
        );
    }
}

/// vigil checks that an error page's file exists when the config loads;
/// the corpus's document roots do not exist here. Every root of the server
/// is moved under `dir` (as the differential harness would), and each
/// error page URI is created in each of them.
fn local_error_pages(server: &mut toml::Value, dir: &Path) {
    let uri_of = |v: &toml::Value| -> Vec<String> {
        v.get("error_page")
            .and_then(|p| p.as_array())
            .into_iter()
            .flatten()
            .filter_map(|p| p["uri"].as_str())
            .filter(|u| u.starts_with('/'))
            .map(|u| u.split('?').next().unwrap_or(u).to_owned())
            .collect()
    };
    let mut uris = uri_of(server);
    let mut roots = Vec::new();
    let mut relocate = |t: &mut toml::Table| {
        if let Some(root) = t.get("root").and_then(|r| r.as_str()).map(str::to_owned) {
            let local = dir.join("roots").join(root.trim_start_matches('/'));
            std::fs::create_dir_all(&local).unwrap();
            t.insert("root".into(), local.display().to_string().into());
            roots.push(local);
        }
    };
    relocate(server.as_table_mut().unwrap());
    if let Some(toml::Value::Array(locations)) = server.get_mut("location") {
        for l in locations {
            uris.extend(uri_of(l));
            relocate(l.as_table_mut().unwrap());
        }
    }
    for root in &roots {
        for uri in &uris {
            let file = root.join(uri.trim_start_matches('/'));
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, "error page\n").unwrap();
        }
    }
}

fn test_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let ca = support::tls::TestCa::new("import test CA");
    ca.leaf(&["localhost"]).write(dir, "any")
}

#[test]
fn every_nginx_file_parses_and_reports_what_it_leaves_out() {
    let dir = tempfile::tempdir().unwrap();
    let cert = test_cert(dir.path());
    let mut parsed = 0;
    let files = corpus("nginx");
    assert_eq!(files.len(), 20, "the corpus has 20 nginx files");
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match (
            import(Some(path), None),
            BROKEN.iter().find(|(n, ..)| *n == name),
        ) {
            (Ok(imported), None) => {
                parsed += 1;
                check_nginx_coverage(path, &imported.report);
                check_config(&name, &imported.toml, dir.path(), &cert);
                for item in &imported.report.items {
                    assert!(!item.why.is_empty(), "{name}: {item:?}");
                }
            }
            (Err(e), Some((_, line, message))) => {
                assert_eq!(e.file, path.display().to_string());
                assert_eq!(e.line, *line, "{e}");
                assert!(e.message.contains(message), "{e}");
                parsed += 1;
            }
            (Ok(_), Some(_)) => panic!("{name} is broken upstream but imported without an error"),
            (Err(e), None) => panic!("{name} does not import: {e}"),
        }
    }
    assert_eq!(parsed, files.len());
}

#[test]
fn every_keepalived_file_parses_alone_and_with_its_nginx_pair() {
    let dir = tempfile::tempdir().unwrap();
    let cert = test_cert(dir.path());
    let files = corpus("keepalived");
    assert_eq!(files.len(), 13, "the corpus has 13 keepalived files");
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let alone = import(None, Some(path)).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_keepalived_coverage(path, &alone.report);
        check_config(&format!("ka-{name}"), &alone.toml, dir.path(), &cert);
        let pair = path
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("nginx")
            .join(&name);
        if pair.exists() {
            let both = import(Some(&pair), Some(path)).unwrap_or_else(|e| panic!("{name}: {e}"));
            check_keepalived_coverage(path, &both.report);
            check_nginx_coverage(&pair, &both.report);
            check_config(&format!("pair-{name}"), &both.toml, dir.path(), &cert);
        }
    }
}

/// The command: exit codes, the written files, the JSON report.
#[test]
fn the_import_command() {
    let vigil = env!("CARGO_BIN_EXE_vigil");
    let dir = tempfile::tempdir().unwrap();
    let nginx = &corpus("nginx")[0];
    let keepalived = &corpus("keepalived")[0];
    let out = dir.path().join("vigil.toml");
    let report = dir.path().join("report.json");
    let run = std::process::Command::new(vigil)
        .args(["import", "--nginx"])
        .arg(nginx)
        .arg("--keepalived")
        .arg(keepalived)
        .arg("-o")
        .arg(&out)
        .arg("--report")
        .arg(&report)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let toml_text = std::fs::read_to_string(&out).unwrap();
    assert!(toml_text.contains("[[vrrp.instance]]") && toml_text.contains("[[server]]"));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(doc["left_out"], true);
    assert!(
        doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["place"].is_string() && i["why"].is_string())
    );

    // Fully translated: exit 0, config on stdout, report on stderr.
    let simple = dir.path().join("simple.conf");
    std::fs::write(
        &simple,
        "server {\n listen 8080;\n location / {\n  proxy_pass http://127.0.0.1:9000;\n }\n}\n",
    )
    .unwrap();
    let run = std::process::Command::new(vigil)
        .args(["import", "--nginx"])
        .arg(&simple)
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        String::from_utf8_lossy(&run.stdout).contains("proxy_pass = \"http://127.0.0.1:9000\"")
    );

    // Broken: exit 1 with file:line.
    let broken = corpus("nginx")
        .into_iter()
        .find(|p| p.ends_with("23-microservices-gateway.conf"))
        .unwrap();
    let run = std::process::Command::new(vigil)
        .args(["import", "--nginx"])
        .arg(&broken)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains(
            "23-microservices-gateway.conf:44: \"log_format\" directive is not allowed here"
        ),
        "{err}"
    );
}

/// The worked example of docs/MIGRATING.md: a seed-style pair (static site
/// plus a balanced API, VIP 192.168.56.100) imports into a config vigil
/// accepts, with the nginx check script become `track.proxy`, and only
/// directives vigil does not need (or approximates) in the report.
#[test]
fn the_migrating_example_imports_into_a_valid_config() {
    let dir = tempfile::tempdir().unwrap();
    let cert = test_cert(dir.path());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/migrating");
    let imported = import(
        Some(&root.join("nginx.conf")),
        Some(&root.join("keepalived.conf")),
    )
    .unwrap();
    check_config("migrating-example", &imported.toml, dir.path(), &cert);
    assert!(imported.toml.contains("proxy = -60"), "{}", imported.toml);
    assert!(
        imported.toml.contains("proxy_pass = \"api\""),
        "{}",
        imported.toml
    );
    for item in &imported.report.items {
        assert!(
            matches!(item.status, Status::NotNeeded | Status::Approximated),
            "{item:?}"
        );
    }
}
