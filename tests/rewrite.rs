//! `rewrite` through a running vigil, with the examples of nginx's
//! rewrite module docs, the corpus' idioms, the loop limit, and config
//! errors.

mod support;

use support::backend::{Backend, free_port};
use support::client::{self, request};
use support::vigil::TestVigil;

async fn start(body: &str) -> TestVigil {
    let port = free_port();
    TestVigil::start(&format!(
        "[log]\naccess_log = \"off\"\n\n[[server]]\nlisten = [\"127.0.0.1:{port}\"]\n{body}"
    ))
    .await
}

#[tokio::test]
async fn nginx_docs_server_level_example() {
    // server {
    //     rewrite ^(/download/.*)/media/(.*)\..*$ $1/mp3/$2.mp3 last;
    //     rewrite ^(/download/.*)/audio/(.*)\..*$ $1/mp3/$2.ra  last;
    //     return  403;
    // }
    let vigil = start(
        r#"
rewrite = [
  { regex = '^(/download/.*)/media/(.*)\..*$', replacement = "$1/mp3/$2.mp3", flag = "last" },
  { regex = '^(/download/.*)/audio/(.*)\..*$', replacement = "$1/mp3/$2.ra", flag = "last" },
]

  [[server.location]]
  path = "/download/"
  return = { status = 200, body = "$uri $args" }

  [[server.location]]
  path = "/"
  return = { status = 403 }
"#,
    )
    .await;
    let addr = vigil.first_addr();
    let r = client::get(addr, "/download/cdn/media/song.wma?x=1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "/download/cdn/mp3/song.mp3 x=1");
    let r = client::get(addr, "/download/a/audio/talk.wav").await;
    assert_eq!(r.text(), "/download/a/mp3/talk.ra ");
    assert_eq!(client::get(addr, "/other").await.status, 403);
}

#[tokio::test]
async fn nginx_docs_location_level_break_and_the_ten_cycle_limit() {
    // location /download/ {
    //     rewrite ^(/download/.*)/media/(.*)\..*$ $1/mp3/$2.mp3 break;
    // }
    // "If these directives are put inside the /download/ location, the last
    // flag should be replaced by break, or otherwise nginx will make 10
    // cycles and return the 500 error."
    let vigil = start(
        r#"
  [[server.location]]
  path = "/download/"
  rewrite = [{ regex = '^(/download/.*)/media/(.*)\..*$', replacement = "$1/mp3/$2.mp3", flag = "break" }]
  return = { status = 200, body = "break: $uri" }

  [[server.location]]
  path = "/loop/"
  rewrite = [{ regex = '^(/loop/.*)/media/(.*)\..*$', replacement = "$1/mp3/$2.mp3", flag = "last" }]
  return = { status = 200, body = "reached: $uri" }

  [[server.location]]
  path = "/forever/"
  rewrite = [{ regex = '^/forever/(.*)$', replacement = "/forever/x$1", flag = "last" }]
  return = { status = 200, body = "never" }
"#,
    )
    .await;
    let addr = vigil.first_addr();
    let r = client::get(addr, "/download/a/media/b.ogg").await;
    assert_eq!(r.text(), "break: /download/a/mp3/b.mp3");
    // With last the rewritten URI no longer matches the regex (it has no
    // extension after media/...), so the search ends after one restart.
    let r = client::get(addr, "/loop/a/media/b.ogg").await;
    assert_eq!(r.text(), "reached: /loop/a/mp3/b.mp3");
    // A rule that always matches: 10 restarts, then 500 (never a hang).
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        client::get(addr, "/forever/y"),
    )
    .await
    .expect("a rewrite loop must end");
    assert_eq!(r.status, 500);
}

#[tokio::test]
async fn arguments_redirects_and_chains() {
    let vigil = start(
        r#"
rewrite = [
  { regex = '^/users/(.*)$', replacement = "/show?user=$1?", flag = "last" },
  { regex = '^/keep/(.*)$', replacement = "/show?user=$1", flag = "last" },
  { regex = '^/moved/(.*)$', replacement = "/new/$1", flag = "permanent" },
  { regex = '^/temp/(.*)$', replacement = "/new/$1", flag = "redirect" },
  { regex = '^/mirror/(.*)$', replacement = "http://pkg.example.org/$1" },
  { regex = '^/a/(.*)$', replacement = "/b/$1" },
  { regex = '^/b/(.*)$', replacement = "/c/$1" },
]

  [[server.location]]
  path = "= /show"
  return = { status = 200, body = "user=$arg_user args=$args" }

  [[server.location]]
  path = "/c/"
  return = { status = 200, body = "c: $uri $request_uri" }
"#,
    )
    .await;
    let addr = vigil.first_addr();
    let r = client::get(addr, "/users/alice?ref=mail").await;
    assert_eq!(r.text(), "user=alice args=user=alice");
    let r = client::get(addr, "/keep/bob?ref=mail").await;
    assert_eq!(r.text(), "user=bob args=user=bob&ref=mail");
    let r = client::get(addr, "/moved/x?y=1").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/new/x?y=1"));
    let r = client::get(addr, "/temp/x").await;
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("/new/x"));
    let r = client::get(addr, "/mirror/FreeBSD:14/latest").await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("http://pkg.example.org/FreeBSD:14/latest")
    );
    let r = client::get(addr, "/a/z?q=1").await;
    assert_eq!(r.text(), "c: /c/z /a/z?q=1");
}

#[tokio::test]
async fn break_before_proxy_pass_sends_the_rewritten_uri() {
    // The corpus idiom: location /api/ { rewrite ^/api/(.*)$ /$1 break;
    // proxy_pass http://backend_app; }
    let backend = Backend::start("app").await;
    let vigil = start(&format!(
        r#"
  [[server.location]]
  path = "/api/"
  rewrite = [{{ regex = '^/api/(.*)$', replacement = "/$1", flag = "break" }}]
  proxy_pass = "http://{}"

  [[server.location]]
  path = "/v2/"
  rewrite = [{{ regex = '^/v2/(.*)$', replacement = "/internal/$1", flag = "break" }}]
  proxy_pass = "http://{}/ignored/"
"#,
        backend.addr, backend.addr
    ))
    .await;
    let addr = vigil.first_addr();
    let r = client::get(addr, "/api/users/7?full=1").await;
    assert_eq!(r.json()["uri"], "/users/7?full=1");
    // nginx: after a rewrite the URI part of proxy_pass is ignored.
    let r = client::get(addr, "/v2/a%20b").await;
    assert_eq!(r.json()["uri"], "/internal/a%20b");
}

/// nginx allows 10 URI changes per request: a chain of 10 `last`
/// rewrites across locations is answered, one more is a 500.
#[tokio::test]
async fn ten_uri_changes_are_allowed_and_the_eleventh_is_a_cycle() {
    let mut body = String::new();
    for i in 0..11 {
        body.push_str(&format!(
            "  [[server.location]]\n  path = \"/c{i}/\"\n  rewrite = [{{ regex = '^/c{i}/(.*)$', replacement = \"/c{}/$1\", flag = \"last\" }}]\n",
            i + 1
        ));
    }
    body.push_str("  [[server.location]]\n  path = \"/c11/\"\n  return = { status = 200, body = \"end $uri\" }\n");
    let vigil = start(&body).await;
    let addr = vigil.first_addr();
    let r = client::get(addr, "/c1/x").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "end /c11/x"));
    let r = client::get(addr, "/c0/x").await;
    assert_eq!(r.status, 500);
}

#[test]
fn rewrite_mistakes_are_config_errors_with_lines() {
    let text = r#"
[[server]]
listen = ["127.0.0.1:1"]
rewrite = [
  { regex = "^/(a", replacement = "/b" },
  { regex = "^/(a)$", replacement = "/b/$2" },
  { regex = "^/(a)$", replacement = "/b/$1", flag = "sometimes" },
  { regex = "^/(a)$", replacement = "/b/$nosuch" },
]

  [[server.location]]
  path = "/"
  return = { status = 200 }
"#;
    let err = vigil::config::Config::parse(text, std::path::Path::new("r.toml"))
        .unwrap_err()
        .to_string();
    for want in [
        "r.toml:5: server[0].rewrite[0].regex: bad regex",
        "r.toml:6: server[0].rewrite[1].replacement: $2 refers to capture 2, but the regex \"^/(a)$\" has 1 group",
        "r.toml:7: server[0].rewrite[2].flag: \"sometimes\" is not a rewrite flag",
        "r.toml:8: server[0].rewrite[3].replacement: unknown variable $nosuch",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

#[tokio::test]
async fn a_location_with_only_rewrites_is_allowed() {
    let vigil = start(
        r#"
  [[server.location]]
  path = "/old/"
  rewrite = [{ regex = '^/old/(.*)$', replacement = "/new/$1", flag = "last" }]

  [[server.location]]
  path = "/new/"
  return = { status = 200, body = "new $uri" }
"#,
    )
    .await;
    let addr = vigil.first_addr();
    assert_eq!(client::get(addr, "/old/x").await.text(), "new /new/x");
    let _ = request("GET", "/", &[], "");
}
