//! Differential test of `vigil import` against the real nginx: the same
//! nginx.conf runs in nginx and, imported, in vigil (127.0.0.1 only, each
//! on its own port, with the same two backends and the same document
//! root); both get the same requests, and their answers are compared:
//! status, `Location`, `Content-Type`, `Content-Encoding`,
//! `WWW-Authenticate`, the body (static files, error pages, returns), and
//! for proxied requests which backend answered and the URI and headers it
//! was sent.
//!
//! What is not compared, by design: the bodies of the error pages each
//! server writes itself (nginx's HTML says "nginx"), and headers each
//! writes its own way (`Server`, `Date`, `ETag` formats). A relative
//! `Location` (vigil) and nginx's absolute one for the same URL agree.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::backend::Backend;
use support::imported::{Answer, Imported, MIME, Nginx, nginx_for_differential};

/// One request with curl (no redirects followed, no decompression).
fn fetch(port: u16, path: &str, headers: &[&str]) -> Answer {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-i", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}{path}"));
    for h in headers {
        cmd.args(["-H", h]);
    }
    Answer::parse(&cmd.output().expect("run curl").stdout)
}

/// A request and what to compare.
struct Case {
    path: &'static str,
    headers: &'static [&'static str],
    /// Compare bodies (not for pages the servers write themselves).
    body: bool,
}

const fn case(path: &'static str, headers: &'static [&'static str], body: bool) -> Case {
    Case {
        path,
        headers,
        body,
    }
}

fn nginx_conf(dir: &Path, port: u16, a: u16, b: u16) -> String {
    let d = dir.display();
    format!(
        r#"worker_processes 1;
pid {d}/nginx-{port}.pid;
error_log {d}/nginx-{port}.error.log;
events {{ worker_connections 64; }}
http {{
    include {MIME};
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path {d}/tmp-body;
    proxy_temp_path {d}/tmp-proxy;
    fastcgi_temp_path {d}/tmp-fastcgi;
    uwsgi_temp_path {d}/tmp-uwsgi;
    scgi_temp_path {d}/tmp-scgi;
    limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;
    map $uri $section {{
        default other;
        ~^/api/(?<area>[a-z]+) api-$area;
        /about about-page;
    }}
    gzip on;
    gzip_types text/plain application/json;
    gzip_min_length 10;
    upstream pool {{ server 127.0.0.1:{a}; }}
    upstream other {{ server 127.0.0.1:{b}; }}
    server {{
        listen 127.0.0.1:{port};
        server_name _;
        root {d}/www;
        index index.html;
        error_page 404 /404.html;
        rewrite ^/old/(.*)$ /new/$1 last;
        location / {{ try_files $uri $uri/ =404; }}
        location /new/ {{ }}
        location /api/ {{ proxy_pass http://pool; proxy_set_header X-Section $section; }}
        location /v2/ {{ proxy_pass http://other/; }}
        location = /go {{ return 301 https://example.test/landing; }}
        location = /hello {{ default_type text/plain; return 200 "hello $request_method\n"; }}
        location /moved/ {{ rewrite ^/moved/(.*)$ /new/$1 permanent; }}
        location /private/ {{ deny all; }}
        location /limited/ {{ limit_req zone=one burst=1 nodelay; limit_req_status 429; }}
        location /staff/ {{ auth_basic "Staff"; auth_basic_user_file {d}/htpasswd; }}
        location ~ \.json$ {{ add_header X-Json yes; }}
    }}
}}
"#
    )
}

fn write_site(dir: &Path) {
    let www = dir.join("www");
    for sub in ["", "new", "private", "limited", "staff", "docs"] {
        std::fs::create_dir_all(www.join(sub)).unwrap();
    }
    let text = "a text file, long enough for gzip to be worth it\n".repeat(8);
    for f in [
        "a.txt",
        "new/a.txt",
        "private/a.txt",
        "limited/a.txt",
        "staff/a.txt",
    ] {
        std::fs::write(www.join(f), &text).unwrap();
    }
    std::fs::write(www.join("index.html"), "<h1>home</h1>\n").unwrap();
    std::fs::write(www.join("docs/index.html"), "<h1>docs</h1>\n").unwrap();
    std::fs::write(www.join("404.html"), "<p>no such page</p>\n").unwrap();
    std::fs::write(www.join("style.css"), "body { color: red }\n").unwrap();
    std::fs::write(www.join("data.json"), "{\"ok\": true}\n").unwrap();
    // Readable by nginx's workers (nobody) as well.
    let _ = Command::new("chmod").args(["-R", "a+rX"]).arg(dir).status();
}

fn wait_serving(port: u16, what: &str) {
    let start = Instant::now();
    while fetch(port, "/index.html", &[]).status != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what} did not start on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The facts compared for one answer, as text (a proxied answer: the
/// backend's description, reduced to what the config decides).
fn facts(a: &Answer, port: u16, compare_body: bool) -> BTreeMap<&'static str, String> {
    let mut f = BTreeMap::new();
    f.insert("status", a.status.to_string());
    let own = format!("127.0.0.1:{port}");
    for (key, name) in [
        ("location", "location"),
        ("content-encoding", "content-encoding"),
        ("www-authenticate", "www-authenticate"),
        ("x-json", "x-json"),
        ("x-backend", "x-backend"),
    ] {
        if let Some(v) = a.headers.get(name) {
            let mut v = v.replace(&own, "SELF");
            // nginx makes a redirect to a path absolute (absolute_redirect
            // on); vigil sends the path, which a client resolves against
            // the request's URL (RFC 9110 §10.2.2): the same place.
            if key == "location" && v.starts_with('/') {
                v = format!("http://SELF{v}");
            }
            f.insert(key, v);
        }
    }
    if compare_body {
        if let Some(ct) = a.headers.get("content-type") {
            // nginx adds no charset; compare the media type.
            f.insert(
                "content-type",
                ct.split(';').next().unwrap_or("").trim().to_owned(),
            );
        }
        if a.headers.contains_key("x-backend") {
            let d: serde_json::Value = serde_json::from_slice(&a.body).unwrap_or_default();
            f.insert("upstream uri", d["uri"].to_string());
            f.insert("upstream x-section", d["headers"]["x-section"].to_string());
        } else if !a.headers.contains_key("content-encoding") {
            f.insert("body", String::from_utf8_lossy(&a.body).into_owned());
        }
    }
    f
}

#[test]
fn imported_config_answers_as_nginx_does() {
    let Some(nginx) = nginx_for_differential() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b) = rt.block_on(async { (Backend::start("a").await, Backend::start("b").await) });
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write_site(dir);
    let hash = Command::new("openssl")
        .args(["passwd", "-apr1", "secret"])
        .output()
        .unwrap();
    std::fs::write(
        dir.join("htpasswd"),
        format!("staff:{}", String::from_utf8_lossy(&hash.stdout)),
    )
    .unwrap();
    let _ = Command::new("chmod").args(["-R", "a+rX"]).arg(dir).status();

    let (np, vp) = (support::backend::free_port(), support::backend::free_port());
    let (ap, bp) = (a.addr.port(), b.addr.port());
    let nginx_conf_path = dir.join("nginx.conf");
    std::fs::write(&nginx_conf_path, nginx_conf(dir, np, ap, bp)).unwrap();
    let vigil_src = dir.join("for-vigil.conf");
    std::fs::write(&vigil_src, nginx_conf(dir, vp, ap, bp)).unwrap();

    let _nginx = Nginx(
        Command::new(nginx)
            .arg("-c")
            .arg(&nginx_conf_path)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let vigil = Imported::start(&vigil_src, &dir.join("vigil.toml"));
    let imported = &vigil.toml;
    wait_serving(np, "nginx");
    wait_serving(vp, "vigil");

    const AUTH: &str = "Authorization: Basic c3RhZmY6c2VjcmV0"; // staff:secret
    let cases = [
        case("/", &[], true),
        case("/index.html", &[], true),
        case("/docs/", &[], true),
        case("/style.css", &[], true),
        case("/data.json", &[], true),
        case("/missing", &[], true),
        case("/old/a.txt", &[], true),
        case("/new/a.txt", &[], true),
        case("/moved/a.txt?x=1", &[], false),
        case("/go", &[], false),
        case("/hello", &[], true),
        case("/private/a.txt", &[], false),
        case("/limited/a.txt", &[], true),
        case("/limited/a.txt", &[], true),
        case("/limited/a.txt", &[], false),
        case("/staff/a.txt", &[], false),
        case("/staff/a.txt", &[AUTH], true),
        case("/api/users/7", &[], true),
        case("/api/orders?page=2", &[], true),
        case("/v2/thing", &[], true),
        case("/a.txt", &["Accept-Encoding: gzip"], true),
        case("/a.txt", &[], true),
    ];
    let mut agree = 0;
    let mut table = String::new();
    let mut differences = Vec::new();
    for c in &cases {
        let n = facts(&fetch(np, c.path, c.headers), np, c.body);
        let v = facts(&fetch(vp, c.path, c.headers), vp, c.body);
        let same = n == v;
        agree += usize::from(same);
        table.push_str(&format!(
            "{:<28} {:<24} nginx {:>3}  vigil {:>3}  {}\n",
            c.path,
            c.headers.first().map_or("", |h| &h[..h.len().min(22)]),
            n["status"],
            v["status"],
            if same { "agree" } else { "DIFFER" }
        ));
        if !same {
            differences.push(format!("{}:\n  nginx {n:?}\n  vigil {v:?}", c.path));
        }
    }
    eprintln!(
        "differential: {agree} of {} requests agree\n{table}",
        cases.len()
    );
    assert!(
        differences.is_empty(),
        "{} differences:\n{}\n--- imported\n{imported}",
        differences.len(),
        differences.join("\n")
    );
}
