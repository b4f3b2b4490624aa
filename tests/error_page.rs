//! `error_page` through a running vigil: branded pages for vigil's own
//! 404/502/503/504, upstream errors with `proxy_intercept_errors`, named
//! locations, `=code` / `=`, redirects, one redirect at most, and config
//! errors for targets that do not exist.

mod support;

use std::net::SocketAddr;

use support::backend::{Backend, free_port};
use support::client::{self, request};
use support::vigil::TestVigil;

const MAINTENANCE: &str = "<h1>We'll be right back</h1>\n";

struct Site {
    vigil: TestVigil,
    addr: SocketAddr,
    _backends: Vec<Backend>,
}

/// A site whose `/app/` upstream is down (a port nothing listens on),
/// whose `/flaky/` upstream answers 503, and whose `/teapot/` upstream
/// answers 418 (no page for it).
async fn site() -> Site {
    let dead = free_port();
    let unavailable = Backend::always("flaky", 503).await;
    let teapot = Backend::always("teapot", 418).await;
    let fallback = Backend::start("fallback").await;
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("50x.html"), MAINTENANCE).unwrap();
    std::fs::write(www.join("404.html"), "<h1>not here</h1>\n").unwrap();
    std::fs::write(www.join("index.html"), "<h1>home</h1>\n").unwrap();
    let port = free_port();
    let config = format!(
        r#"
[log]
access_log = "off"

[[server]]
listen = ["127.0.0.1:{port}"]
root = "www"
error_page = [
  {{ codes = [500, 502, 503, 504], uri = "/50x.html" }},
  {{ codes = [404], uri = "/404.html" }},
]

  [[server.location]]
  path = "= /50x.html"
  internal = true

  [[server.location]]
  path = "/app/"
  proxy_pass = "http://127.0.0.1:{dead}"

  [[server.location]]
  path = "/flaky/"
  proxy_pass = "http://{flaky}"
  proxy_intercept_errors = true

  [[server.location]]
  path = "/passthrough/"
  proxy_pass = "http://{flaky}"

  [[server.location]]
  path = "/teapot/"
  proxy_pass = "http://{teapot}"
  proxy_intercept_errors = true

  [[server.location]]
  path = "/named/"
  error_page = [{{ codes = [404], uri = "@fallback", response = "=" }}]

  [[server.location]]
  path = "/gone/"
  error_page = [{{ codes = [404], uri = "/index.html", response = 200 }}]

  [[server.location]]
  path = "/moved/"
  error_page = [{{ codes = [404], uri = "https://example.com/new", response = 301 }}]

  [[server.location]]
  path = "/text/"
  return = {{ status = 503, body = "maintenance text\n" }}

  [[server.location]]
  path = "/bare/"
  return = {{ status = 503 }}

  # nginx's JSON error idiom: the page is a `return` with its own status.
  [[server.location]]
  path = "/json/"
  error_page = [{{ codes = [404], uri = "/404.json" }}]
  return = {{ status = 404 }}

  [[server.location]]
  path = "= /404.json"
  internal = true
  return = {{ status = 500, body = "{{\"error\":\"not found\"}}\n", content_type = "application/json" }}

  [[server.location]]
  path = "@fallback"
  proxy_pass = "http://{fb}"

  [[server.location]]
  path = "/"
"#,
        flaky = unavailable.addr,
        teapot = teapot.addr,
        fb = fallback.addr,
    );
    let vigil = TestVigil::start_in(dir, &config).await;
    let addr = vigil.first_addr();
    Site {
        vigil,
        addr,
        _backends: vec![unavailable, teapot, fallback],
    }
}

#[tokio::test]
async fn vigils_own_errors_get_the_branded_page_with_their_status() {
    let s = site().await;
    // 502: the upstream is down.
    let r = client::get(s.addr, "/app/x").await;
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), MAINTENANCE);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    // Also for a POST (the page is fetched with GET, as nginx).
    let r = client::send(s.addr, request("POST", "/app/form", &[], "a=1")).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), MAINTENANCE);
    // The page's location is internal: asked for directly, it is 404
    // (then the 404 page), as nginx answers.
    let r = client::get(s.addr, "/50x.html").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "<h1>not here</h1>\n");
    // HEAD: the status and no body.
    let r = client::send(s.addr, request("HEAD", "/app/x", &[], "")).await;
    assert_eq!(r.status, 502);
    assert!(r.body.is_empty());
    // 404 from the static files.
    let r = client::get(s.addr, "/missing.html").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "<h1>not here</h1>\n");
    // A conditional request does not turn the page into a 304.
    let r = client::send(
        s.addr,
        request(
            "GET",
            "/app/x",
            &[("if-modified-since", "Sun, 01 Jan 2090 00:00:00 GMT")],
            "",
        ),
    )
    .await;
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), MAINTENANCE);
    // `return` without text is an error nginx pages; with text it is not.
    let r = client::get(s.addr, "/bare/").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (503, MAINTENANCE));
    let r = client::get(s.addr, "/text/").await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (503, "maintenance text\n")
    );
}

#[tokio::test]
async fn upstream_errors_only_with_proxy_intercept_errors() {
    let s = site().await;
    let r = client::get(s.addr, "/flaky/x").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), MAINTENANCE);
    let r = client::get(s.addr, "/passthrough/x").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), "flaky 503\n");
    // A status with no page passes even with intercept on.
    let r = client::get(s.addr, "/teapot/x").await;
    assert_eq!(r.status, 418);
    assert_eq!(r.text(), "teapot 418\n");
}

#[tokio::test]
async fn named_locations_codes_and_redirects() {
    let s = site().await;
    // error_page 404 = @fallback: the fallback's own answer and status.
    let r = client::get(s.addr, "/named/thing?x=1").await;
    assert_eq!(r.status, 200);
    let seen = r.json();
    assert_eq!(seen["backend"], "fallback");
    assert_eq!(seen["uri"], "/named/thing?x=1");
    // error_page 404 =200 /index.html.
    let r = client::get(s.addr, "/gone/thing").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "<h1>home</h1>\n");
    // error_page 404 =301 https://...
    let r = client::get(s.addr, "/moved/thing").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://example.com/new"));
}

/// A page location that answers with `return <error> "text"` is the page
/// (nginx sends the text, with the original status), not a failed page.
#[tokio::test]
async fn a_returned_text_is_the_page_even_with_an_error_status() {
    let s = site().await;
    let r = client::get(s.addr, "/json/missing").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "{\"error\":\"not found\"}\n");
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn a_page_that_fails_is_not_paged_again() {
    let s = site().await;
    std::fs::remove_file(s.vigil.dir.path().join("www/50x.html")).unwrap();
    let r = client::get(s.addr, "/app/x").await;
    // The original status with vigil's own short page: no second redirect.
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), "502 Bad Gateway\n");
}

#[test]
fn targets_that_do_not_exist_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("www")).unwrap();
    let text = r#"
[[server]]
listen = ["127.0.0.1:1"]
root = "www"
error_page = [
  { codes = [502], uri = "/50x.html" },
  { codes = [404], uri = "@nowhere" },
  { codes = [200], uri = "/x" },
]

  [[server.location]]
  path = "/api/"
  return = { status = 200 }
  error_page = [{ codes = [500], uri = "/nothing/here", response = "maybe" }]

  [[server.location]]
  path = "/"
"#;
    let path = dir.path().join("e.toml");
    let err = vigil::config::Config::parse(text, &path)
        .unwrap_err()
        .to_string();
    for want in [
        "e.toml:6: server[0].error_page[0].uri: /50x.html would be the file",
        "e.toml:7: server[0].error_page[1].uri: no location \"@nowhere\" in this server",
        "e.toml:8: server[0].error_page[2].codes: 200 is not an error status",
        "e.toml:14: server[0].location[0].error_page[0].response",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    // Without a root nothing serves /elsewhere.
    let text = "[[server]]\nlisten = [\"127.0.0.1:1\"]\n  [[server.location]]\n  path = \"= /only\"\n  return = { status = 200 }\n  error_page = [{ codes = [500], uri = \"/elsewhere\" }]\n";
    let err = vigil::config::Config::parse(text, &path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("e.toml:6: server[0].location[0].error_page[0].uri: no location of this server serves /elsewhere"),
        "{err}"
    );
}
