//! `[map.*]` variables through a running vigil: the websocket idiom of
//! nginx's docs with a real websocket client, per-host values in
//! `return` and `proxy_set_header`, regex captures, and config errors.

mod support;

use futures_util::{SinkExt, StreamExt};
use support::backend::{Backend, free_port, websocket_echo};
use support::client::{self, request};
use support::vigil::TestVigil;

#[tokio::test]
async fn websocket_idiom_works_as_written_in_nginx_docs() {
    let (ws_addr, _task) = websocket_echo().await;
    let plain = Backend::start("plain").await;
    let port = free_port();
    // nginx:
    //   map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    //   location /chat/ {
    //       proxy_pass http://backend;
    //       proxy_http_version 1.1;
    //       proxy_set_header Upgrade $http_upgrade;
    //       proxy_set_header Connection $connection_upgrade;
    //   }
    let config = format!(
        r#"
[log]
access_log = "off"

[map.connection_upgrade]
source = "$http_upgrade"
default = "upgrade"
entries = [["", "close"]]

[[server]]
listen = ["127.0.0.1:{port}"]

  [[server.location]]
  path = "/chat/"
  proxy_pass = "http://{ws_addr}"
  proxy_set_header = {{ Upgrade = "$http_upgrade", Connection = "$connection_upgrade" }}

  [[server.location]]
  path = "/"
  proxy_pass = "http://{plain}"
  proxy_set_header = {{ Upgrade = "$http_upgrade", Connection = "$connection_upgrade" }}
"#,
        plain = plain.addr
    );
    let vigil = TestVigil::start(&config).await;
    let addr = vigil.first_addr();

    let (mut ws, response) = tokio_tungstenite::connect_async(format!("ws://{addr}/chat/room"))
        .await
        .expect("websocket handshake through vigil");
    assert_eq!(response.status(), 101);
    for text in ["hello", "second message", "third"] {
        ws.send(tokio_tungstenite::tungstenite::Message::text(text))
            .await
            .unwrap();
        let echoed = ws.next().await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }
    ws.close(None).await.unwrap();

    // A plain request through the same idiom: no Upgrade, Connection: close
    // to the upstream (the map's '' entry), and a normal answer.
    let r = client::get(addr, "/plain").await;
    assert_eq!(r.status, 200);
    let seen = r.json();
    assert_eq!(seen["headers"]["connection"], "close");
    assert!(seen["headers"].get("upgrade").is_none());
}

#[tokio::test]
async fn maps_work_wherever_variables_do() {
    let backend = Backend::start("b").await;
    let port = free_port();
    let config = format!(
        r#"
[log]
access_log = "off"

[map.tenant]
source = "$host"
hostnames = true
default = "public"
entries = [
  ["shop.example.com", "shop"],
  ["*.corp.example.com", "corp"],
  ["~^(?<team>[a-z]+)\\.dev\\.example\\.com$", "dev-$team"],
]

[map.tier]
source = "$tenant"
default = "standard"
entries = [["corp", "gold"], ["~^dev-", "sandbox"]]

[[server]]
listen = ["127.0.0.1:{port}"]
add_header = {{ X-Tier = "$tier" }}

  [[server.location]]
  path = "= /whoami"
  return = {{ status = 200, body = "$tenant/$tier\n" }}

  [[server.location]]
  path = "~ ^/user/(?<id>\\d+)$"
  return = {{ status = 200, body = "user $id of $tenant ($1)\n" }}

  [[server.location]]
  path = "/"
  proxy_pass = "http://{b}"
  proxy_set_header = {{ X-Tenant = "$tenant", X-Tier = "$tier" }}
  # nginx's CORS idiom: add_header Access-Control-Allow-Origin $http_origin;
  add_header = {{ Access-Control-Allow-Origin = "$http_origin", X-Served-For = "$host$uri" }}
"#,
        b = backend.addr
    );
    let vigil = TestVigil::start(&config).await;
    let addr = vigil.first_addr();
    let ask = |host: &'static str, path: &'static str| async move {
        client::send(addr, request("GET", path, &[("host", host)], "")).await
    };
    assert_eq!(
        ask("shop.example.com", "/whoami").await.text(),
        "shop/standard\n"
    );
    assert_eq!(
        ask("SHOP.example.com", "/whoami").await.text(),
        "shop/standard\n"
    );
    assert_eq!(
        ask("a.b.corp.example.com", "/whoami").await.text(),
        "corp/gold\n"
    );
    assert_eq!(
        ask("ann.dev.example.com", "/whoami").await.text(),
        "dev-ann/sandbox\n"
    );
    assert_eq!(
        ask("other.org", "/whoami").await.text(),
        "public/standard\n"
    );
    assert_eq!(
        ask("shop.example.com", "/user/42").await.text(),
        "user 42 of shop (42)\n"
    );
    let seen = ask("x.corp.example.com", "/api").await.json();
    assert_eq!(seen["headers"]["x-tenant"], "corp");
    assert_eq!(seen["headers"]["x-tier"], "gold");

    // add_header values with variables and maps, rendered per response.
    let r = ask("x.corp.example.com", "/whoami").await;
    assert_eq!(r.header("x-tier"), Some("gold"));
    let r = client::send(
        addr,
        request(
            "GET",
            "/api",
            &[("host", "shop.example.com"), ("origin", "https://app.test")],
            "",
        ),
    )
    .await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.test")
    );
    assert_eq!(r.header("x-served-for"), Some("shop.example.com/api"));
    // The server's add_header applies too (docs/CONFIG.md: both apply),
    // and a value that renders empty adds nothing.
    assert_eq!(r.header("x-tier"), Some("standard"));
    let r = ask("shop.example.com", "/api").await;
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[test]
fn map_and_variable_mistakes_are_config_errors_with_lines() {
    let text = r#"
[map.a]
source = "$b"

[map.b]
source = "$a"

[map.host]
source = "$uri"

[map.bad]
source = "$uri"
entries = [
  ["~^/(x)$", "$2"],
  ["~(", "y"],
]

[[server]]
listen = ["127.0.0.1:1"]

  [[server.location]]
  path = "/"
  return = { status = 200, body = "$nosuch" }

  [[server.location]]
  path = "/p/"
  return = { status = 200, body = "$1" }
"#;
    let err = vigil::config::Config::parse(text, std::path::Path::new("m.toml"))
        .unwrap_err()
        .to_string();
    for want in [
        "m.toml:14: map.bad.entries[0]: $2 refers to capture 2, but the regex \"^/(x)$\" has 1 group",
        "m.toml:15: map.bad.entries[1]: bad regex",
        "m.toml:8: map.host: $host is a built-in variable",
        "m.toml:23: server[0].location[0].return.body: unknown variable $nosuch",
        "m.toml:27: server[0].location[1].return.body: $1: there is no regex here",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    // The cycle is reported once the maps themselves are sound.
    let cycle = "[map.a]\nsource = \"$b\"\n\n[map.b]\nsource = \"$a\"\n\n[[server]]\nlisten = [\"127.0.0.1:1\"]\n  [[server.location]]\n  path = \"/\"\n  return = { status = 200, body = \"$a\" }\n";
    let err = vigil::config::Config::parse(cycle, std::path::Path::new("c.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("c.toml:2: map.a.source: maps depend on each other in a loop: $a → $b → $a"),
        "{err}"
    );
}

/// nginx's `$request_id` (one value per request, wherever it is used) and
/// its clock variables, as the corpus's health and tracing idioms use them.
#[tokio::test]
async fn request_id_and_time_variables() {
    let backend = Backend::start("b").await;
    let port = free_port();
    let config = format!(
        r#"
[log]
access_log = "off"

[[server]]
listen = ["127.0.0.1:{port}"]

  [[server.location]]
  path = "= /health"
  return = {{ status = 200, body = "$time_iso8601|$time_local|$msec|$request_id" }}

  [[server.location]]
  path = "/"
  proxy_pass = "http://{b}"
  proxy_set_header = {{ X-Request-ID = "$request_id" }}
  add_header = {{ X-Request-ID = "$request_id" }}
"#,
        b = backend.addr
    );
    let vigil = TestVigil::start(&config).await;
    let addr = vigil.first_addr();
    let body = client::get(addr, "/health").await.text();
    let parts: Vec<&str> = body.split('|').collect();
    let iso = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$").unwrap();
    assert!(iso.is_match(parts[0]), "{body}");
    let local = regex::Regex::new(r"^\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000$").unwrap();
    assert!(local.is_match(parts[1]), "{body}");
    let msec = regex::Regex::new(r"^\d{10}\.\d{3}$").unwrap();
    assert!(msec.is_match(parts[2]), "{body}");
    let id = regex::Regex::new(r"^[0-9a-f]{32}$").unwrap();
    assert!(id.is_match(parts[3]), "{body}");
    // The upstream and the client see the same id; the next request
    // gets another.
    let r = client::get(addr, "/x").await;
    let sent = r.json()["headers"]["x-request-id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(id.is_match(&sent), "{sent}");
    assert_eq!(r.header("x-request-id"), Some(sent.as_str()));
    let again = client::get(addr, "/x").await;
    assert_ne!(again.header("x-request-id"), Some(sent.as_str()));
}
