//! Config validation tests: good configs build, bad ones name file, line,
//! key and reason.

use std::path::Path;

use super::*;

mod edge;
mod upstream_tls;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/vigil/vigil.toml"))
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(text) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => e.problems().to_vec(),
    }
}

fn assert_problem(text: &str, key: &str, reason_part: &str) {
    let ps = problems(text);
    assert!(
        ps.iter()
            .any(|p| p.key == key && p.reason.contains(reason_part)),
        "expected a problem at {key:?} containing {reason_part:?}, got {ps:#?}"
    );
}

const FULL: &str = r#"
[http]
client_max_body_size = "10m"

[[server]]
listen = ["127.0.0.1:8080"]
server_name = ["example.com", "*.example.com"]

  [[server.location]]
  path = "= /healthz"
  return = { status = 200, body = "ok\n" }

  [[server.location]]
  path = "/static/"
  root = "/srv/www"
  index = ["index.html"]
  expires = "7d"
  gzip_static = true

  [[server.location]]
  path = "/"
  root = "www"
  try_files = ["$uri", "$uri/", "@app"]

  [[server.location]]
  path = "@app"
  proxy_pass = "app"

  [[server.location]]
  path = "/api/"
  proxy_pass = "http://app/v1/"

[[server]]
listen = ["127.0.0.1:8080"]
server_name = ["other.test"]
default_server = true
root = "/srv/other"

[upstream.app]
balance = "round_robin"
keepalive = 64
servers = [
  { addr = "127.0.0.1:9001", weight = 3, max_fails = 1, fail_timeout = "10s" },
  { addr = "127.0.0.1:9002" },
  { addr = "127.0.0.1:9003", backup = true },
]
health_check = { path = "/health", interval = "2s", timeout = "1s", rise = 2, fall = 3 }
"#;

#[test]
fn the_issue_example_builds() {
    let c = parse(FULL).unwrap();
    assert_eq!(c.servers.len(), 2);
    assert_eq!(c.listeners.len(), 1);
    let l = &c.listeners[0];
    assert_eq!(l.servers, vec![0, 1]);
    assert_eq!(l.default_server, 1, "default_server = true wins");
    assert_eq!(c.http.client_max_body_size, 10 << 20);
    let app = &c.upstreams["app"];
    assert_eq!(app.servers.len(), 3);
    assert_eq!(app.servers[0].weight, 3);
    assert!(app.servers[2].backup);
    assert_eq!(app.keepalive, 64);
    let hc = app.health_check.as_ref().unwrap();
    assert!(hc.accepts(200) && hc.accepts(302) && !hc.accepts(500));
    let s = &c.servers[0];
    assert_eq!(s.locations.len(), 5);
    // Relative roots are relative to the config file's directory.
    match &s.locations[2].action {
        Action::Static(site) => {
            assert_eq!(site.base, FileBase::Root("/etc/vigil/www".into()));
            assert_eq!(site.try_files.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    match &s.locations[4].action {
        Action::Proxy(p) => {
            assert_eq!(p.upstream, "app");
            assert_eq!(
                p.replace_prefix,
                Some(ReplacePrefix {
                    location_prefix: "/api/".into(),
                    with: "/v1/".into()
                })
            );
        }
        other => panic!("{other:?}"),
    }
    // A server with only a root serves it from "/".
    assert_eq!(c.servers[1].locations.len(), 1);
}

#[test]
fn implicit_upstream_from_url() {
    let c = parse(
        r#"
[[server]]
listen = ["8080"]
  [[server.location]]
  path = "/"
  proxy_pass = "http://127.0.0.1:9000"
"#,
    )
    .unwrap();
    assert_eq!(c.listeners[0].addr.to_string(), "0.0.0.0:8080");
    let up = &c.upstreams["127.0.0.1:9000"];
    assert_eq!(up.servers[0].addr.to_string(), "127.0.0.1:9000");
}

#[test]
fn unknown_keys_are_errors_with_lines() {
    let err = parse(
        r#"
[[server]]
listen = ["8080"]
  [[server.location]]
  path = "/"
  proxy_pas = "app"
"#,
    )
    .unwrap_err();
    let p = &err.problems()[0];
    assert_eq!(p.line, Some(6), "{p:?}");
    assert!(p.reason.contains("unknown field `proxy_pas`"), "{p:?}");
    assert_eq!(p.key, "server[0].location[0].proxy_pas");
    let text = err.to_string();
    assert!(text.contains("vigil.toml:6"), "{text}");
}

#[test]
fn type_errors_name_the_key() {
    let err = parse("[[server]]\nlisten = 8080\n").unwrap_err();
    let p = &err.problems()[0];
    assert_eq!(p.key, "server[0].listen");
    assert_eq!(p.line, Some(2));
}

#[test]
fn toml_syntax_errors_have_a_line() {
    let err = parse("[[server]]\nlisten = [\"8080\"\n").unwrap_err();
    assert!(err.problems()[0].line.is_some(), "{err}");
}

#[test]
fn unknown_upstream_lists_the_known_ones() {
    assert_problem(
        r#"
[[server]]
listen = ["8080"]
  [[server.location]]
  path = "/"
  proxy_pass = "ap"
[upstream.app]
servers = [{ addr = "127.0.0.1:1" }]
"#,
        "server[0].location[0].proxy_pass",
        "unknown upstream \"ap\"; defined: app",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let ps = problems(
        r#"
[[server]]
listen = ["nope", "8080"]
server_name = ["bad name"]
  [[server.location]]
  path = "relative"
  root = "/x"
  [[server.location]]
  path = "/a"
  return = { status = 301 }
[upstream.u]
balance = "fastest"
servers = [{ addr = "127.0.0.1:1" }]
"#,
    );
    let keys: Vec<&str> = ps.iter().map(|p| p.key.as_str()).collect();
    for k in [
        "server[0].listen[0]",
        "server[0].server_name[0]",
        "server[0].location[0].path",
        "server[0].location[1].return.location",
        "upstream.u.balance",
    ] {
        assert!(keys.contains(&k), "missing {k} in {keys:?}");
    }
}

#[test]
fn location_and_upstream_rules() {
    let base = "[[server]]\nlisten = [\"8080\"]\n";
    let cases: &[(&str, &str, &str)] = &[
        (
            "[[server.location]]\npath = \"/\"\nproxy_pass = \"http://127.0.0.1:1\"\nroot = \"/x\"\n",
            "server[0].location[0]",
            "does one thing",
        ),
        (
            "[[server.location]]\npath = \"/\"\n",
            "server[0].location[0]",
            "nothing to do",
        ),
        (
            "[[server.location]]\npath = \"~ \\\\.php$\"\nproxy_pass = \"http://127.0.0.1:1/x/\"\n",
            "server[0].location[0].proxy_pass",
            "URI part",
        ),
        (
            "[[server.location]]\npath = \"/img/\"\nalias = \"/srv/img\"\n",
            "server[0].location[0].alias",
            "both end with /",
        ),
        (
            "[[server.location]]\npath = \"/\"\nroot = \"/x\"\ntry_files = [\"$uri\", \"@gone\"]\n",
            "server[0].location[0].try_files[1]",
            "no location \"@gone\"",
        ),
        (
            "[[server.location]]\npath = \"~ (\"\nroot = \"/x\"\n",
            "server[0].location[0].path",
            "bad regex",
        ),
        (
            "[[server.location]]\npath = \"/\"\nroot = \"/x\"\n[[server.location]]\npath = \"/\"\nroot = \"/y\"\n",
            "server[0].location[1].path",
            "duplicate location",
        ),
        (
            "[[server.location]]\npath = \"/\"\nproxy_pass = \"u\"\n[upstream.u]\nbalance = \"ip_hash\"\nservers = [{ addr = \"127.0.0.1:1\" }, { addr = \"127.0.0.1:2\", backup = true }]\n",
            "upstream.u.servers",
            "backup servers cannot",
        ),
        (
            "[[server.location]]\npath = \"/\"\nproxy_pass = \"u\"\n[upstream.u]\nbalance = \"hash\"\nservers = [{ addr = \"127.0.0.1:1\" }]\n",
            "upstream.u.hash_key",
            "needs a hash_key",
        ),
        (
            "[[server.location]]\npath = \"/\"\nproxy_pass = \"u\"\n[upstream.u]\nservers = [{ addr = \"127.0.0.1:1\", weight = 0 }]\n",
            "upstream.u.servers[0].weight",
            "at least 1",
        ),
        (
            "[[server.location]]\npath = \"/\"\nproxy_pass = \"u\"\n[upstream.u]\nservers = []\n",
            "upstream.u.servers",
            "at least one server",
        ),
        (
            "[[server.location]]\npath = \"/\"\nproxy_pass = \"u\"\n[upstream.u]\nservers = [{ addr = \"127.0.0.1:1\" }]\nnext_upstream = [\"error\", \"sometimes\"]\n",
            "upstream.u.next_upstream[1]",
            "not a condition",
        ),
        (
            "[[server.location]]\npath = \"/\"\nreturn = { status = 200 }\nexpires = \"1d\"\n",
            "server[0].location[0].expires",
            "no effect",
        ),
        (
            "[[server.location]]\npath = \"/\"\nreturn = { status = 200, body = \"$nope\" }\n",
            "server[0].location[0].return.body",
            "unknown variable",
        ),
        (
            "[[server.location]]\npath = \"/\"\nreturn = { status = 200 }\nrequest_buffering = false\n",
            "server[0].location[0].request_buffering",
            "no effect",
        ),
    ];
    for (extra, key, reason) in cases {
        assert_problem(&format!("{base}{extra}"), key, reason);
    }
}

#[test]
fn listener_rules() {
    assert_problem(
        r#"
[[server]]
listen = ["8080"]
default_server = true
root = "/x"
[[server]]
listen = ["8080"]
default_server = true
root = "/y"
"#,
        "server[1].default_server",
        "already has a default server",
    );
    assert_problem(
        r#"
[[server]]
listen = ["8080"]
root = "/x"
[[server]]
listen = ["127.0.0.1:8080"]
root = "/y"
"#,
        "server",
        "share a port",
    );
}

#[test]
fn empty_config_has_nothing_to_do() {
    assert_problem("", "", "nothing to do");
}

#[test]
fn worker_cpu_affinity_is_auto_or_off() {
    let base = "[[server]]\nlisten = [\"127.0.0.1:8080\"]\nroot = \"/srv\"\n";
    let c = parse(base).unwrap();
    assert_eq!(c.http.worker_cpu_affinity, CpuAffinity::Auto);
    let c = parse(&format!("[http]\nworker_cpu_affinity = \"off\"\n{base}")).unwrap();
    assert_eq!(c.http.worker_cpu_affinity, CpuAffinity::Off);
    assert_problem(
        &format!("[http]\nworker_cpu_affinity = \"0101\"\n{base}"),
        "http.worker_cpu_affinity",
        "use \"auto\" or \"off\"",
    );
}

#[test]
fn access_log_buffering_keys() {
    let base = "[[server]]\nlisten = [\"127.0.0.1:8080\"]\nroot = \"/srv\"\n";
    let c = parse(base).unwrap();
    assert_eq!(c.log.access_log_buffer, 64 * 1024);
    assert_eq!(c.log.access_log_flush, Duration::from_secs(1));
    let c = parse(&format!(
        "[log]\naccess_log_buffer = \"256k\"\naccess_log_flush = \"250ms\"\n{base}"
    ))
    .unwrap();
    assert_eq!(c.log.access_log_buffer, 256 * 1024);
    assert_eq!(c.log.access_log_flush, Duration::from_millis(250));
    let c = parse(&format!("[log]\naccess_log_buffer = 0\n{base}")).unwrap();
    assert_eq!(c.log.access_log_buffer, 0);
    assert_problem(
        &format!("[log]\naccess_log_buffer = \"17m\"\n{base}"),
        "log.access_log_buffer",
        "16m",
    );
    assert_problem(
        &format!("[log]\naccess_log_flush = \"0\"\n{base}"),
        "log.access_log_flush",
        "more than 0",
    );
}

#[test]
fn request_bodies_wait_in_a_directory_that_takes_files() {
    let base = "[[server]]\nlisten = [\"127.0.0.1:8080\"]\n[[server.location]]\npath = \"/\"\nproxy_pass = \"u\"\n[upstream.u]\nservers = [{ addr = \"127.0.0.1:1\" }]\n";
    let c = parse(base).unwrap();
    assert_eq!(c.http.client_body_buffer_size, 64 << 10);
    assert_eq!(c.http.client_body_temp_path, std::env::temp_dir());
    match &c.servers[0].locations[0].action {
        Action::Proxy(p) => assert!(p.request_buffering, "on by default, as in nginx"),
        other => panic!("{other:?}"),
    }
    let dir = tempfile::tempdir().unwrap();
    let set = format!(
        "[http]\nclient_body_buffer_size = \"128k\"\nclient_body_temp_path = \"{}\"\n{base}",
        dir.path().display()
    );
    let c = parse(&set).unwrap();
    assert_eq!(c.http.client_body_buffer_size, 128 << 10);
    assert_eq!(c.http.client_body_temp_path, dir.path());
    let missing = dir.path().join("missing");
    assert_problem(
        &format!(
            "[http]\nclient_body_temp_path = \"{}\"\n{base}",
            missing.display()
        ),
        "http.client_body_temp_path",
        "cannot create a file in",
    );
}
