//! Proxy integration tests: vigil in-process on 127.0.0.1, real backends
//! started by each test, real HTTP clients.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use support::backend::{Backend, free_port};
use support::client::{self, Conn, request};
use support::vigil::TestVigil;

/// A config with one server on a free port proxying `/` to `upstream`.
fn proxy_config(upstream: &str, extra_location: &str) -> (String, u16) {
    let port = free_port();
    (
        format!(
            r#"
[log]
access_log = "off"

[[server]]
listen = ["127.0.0.1:{port}"]
{extra_location}
  [[server.location]]
  path = "/"
  proxy_pass = "app"

[upstream.app]
{upstream}
"#
        ),
        port,
    )
}

fn servers(list: &[String]) -> String {
    format!("servers = [{}]", list.join(", "))
}

fn addr_entry(b: &Backend, extra: &str) -> String {
    format!("{{ addr = \"{}\"{extra} }}", b.addr)
}

async fn count_backends(vigil: &TestVigil, path: &str, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    let mut conn = Conn::open(vigil.first_addr()).await;
    for _ in 0..n {
        let r = conn.get(path).await;
        assert_eq!(r.status, 200, "{}", r.text());
        *counts
            .entry(r.header("x-backend").unwrap().to_owned())
            .or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn round_robin_follows_weights() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let (config, _) = proxy_config(
        &servers(&[addr_entry(&a, ", weight = 3"), addr_entry(&b, "")]),
        "",
    );
    let vigil = TestVigil::start(&config).await;
    let counts = count_backends(&vigil, "/x", 40).await;
    assert_eq!(counts["a"], 30);
    assert_eq!(counts["b"], 10);
}

#[tokio::test]
async fn least_conn_avoids_the_busy_server() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let (config, _) = proxy_config(
        &format!(
            "balance = \"least_conn\"\n{}",
            servers(&[addr_entry(&a, ""), addr_entry(&b, "")])
        ),
        "",
    );
    let vigil = TestVigil::start(&config).await;
    let addr = vigil.first_addr();
    // Occupy one server with slow requests, then the fast ones must all go
    // to the other.
    let slow: Vec<_> = (0..3)
        .map(|_| tokio::spawn(async move { client::get(addr, "/sleep/600").await }))
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let busy = if a.requests() > b.requests() {
        "a"
    } else {
        "b"
    };
    let counts = count_backends(&vigil, "/fast", 10).await;
    assert_eq!(counts.get(busy), None, "{counts:?} while {busy} was busy");
    for s in slow {
        assert_eq!(s.await.unwrap().status, 200);
    }
}

#[tokio::test]
async fn ip_hash_and_consistent_hash_are_sticky() {
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let list: Vec<String> = backends.iter().map(|b| addr_entry(b, "")).collect();
    let (config, _) = proxy_config(&format!("balance = \"ip_hash\"\n{}", servers(&list)), "");
    let vigil = TestVigil::start(&config).await;
    let counts = count_backends(&vigil, "/x", 12).await;
    assert_eq!(counts.len(), 1, "one client, one server: {counts:?}");
    drop(vigil);

    let (config, _) = proxy_config(
        &format!(
            "balance = \"hash\"\nhash_key = \"$arg_user\"\n{}",
            servers(&list)
        ),
        "",
    );
    let vigil = TestVigil::start(&config).await;
    let mut owners = HashMap::new();
    let mut conn = Conn::open(vigil.first_addr()).await;
    for round in 0..3 {
        for user in 0..20 {
            let r = conn.get(&format!("/x?user={user}")).await;
            let backend = r.header("x-backend").unwrap().to_owned();
            let first = owners.entry(user).or_insert_with(|| backend.clone());
            assert_eq!(*first, backend, "user {user} moved in round {round}");
        }
    }
    let distinct: std::collections::HashSet<_> = owners.values().collect();
    assert!(distinct.len() >= 2, "20 keys should spread: {owners:?}");
}

#[tokio::test]
async fn random_two_spreads_load() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let (config, _) = proxy_config(
        &format!(
            "balance = \"random_two\"\n{}",
            servers(&[addr_entry(&a, ""), addr_entry(&b, "")])
        ),
        "",
    );
    let vigil = TestVigil::start(&config).await;
    let counts = count_backends(&vigil, "/x", 60).await;
    // Sequential requests: every pick sees zero load, so it is random.
    assert!(counts.get("a").copied().unwrap_or(0) >= 10, "{counts:?}");
    assert!(counts.get("b").copied().unwrap_or(0) >= 10, "{counts:?}");
}

#[tokio::test]
async fn backup_serves_only_when_primaries_are_down() {
    let a = Backend::start("a").await;
    let backup = Backend::start("backup").await;
    let (config, _) = proxy_config(
        &servers(&[
            addr_entry(&a, ", max_fails = 1, fail_timeout = \"1s\""),
            addr_entry(&backup, ", backup = true"),
        ]),
        "",
    );
    let vigil = TestVigil::start(&config).await;
    let counts = count_backends(&vigil, "/x", 5).await;
    assert_eq!(counts.get("a"), Some(&5));
    let a_addr = a.addr;
    drop(a);
    // The first request finds a down (connect refused) and moves on.
    let counts = count_backends(&vigil, "/x", 5).await;
    assert_eq!(counts.get("backup"), Some(&5), "{counts:?}");
    // a comes back; after fail_timeout it gets traffic again.
    let _a = Backend::start_on("a", a_addr).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let counts = count_backends(&vigil, "/x", 5).await;
    assert_eq!(counts.get("a"), Some(&5), "{counts:?}");
}

#[tokio::test]
async fn passive_health_skips_a_dead_server_without_errors() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let (config, _) = proxy_config(
        &servers(&[
            addr_entry(&a, ", max_fails = 1, fail_timeout = \"30s\""),
            addr_entry(&b, ", max_fails = 1, fail_timeout = \"30s\""),
        ]),
        "",
    );
    let vigil = TestVigil::start(&config).await;
    let b_addr = b.addr;
    drop(b);
    // Every request succeeds: the one that hits b retries on a.
    let counts = count_backends(&vigil, "/x", 20).await;
    assert_eq!(counts.get("a"), Some(&20));
    // b restarted: still out for fail_timeout, so it gets nothing.
    let b = Backend::start_on("b", b_addr).await;
    let counts = count_backends(&vigil, "/x", 10).await;
    assert_eq!(counts.get("a"), Some(&10));
    assert_eq!(b.requests(), 0);
}

#[tokio::test]
async fn active_health_checks_take_servers_out_and_back() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let (config, _) = proxy_config(
        &format!(
            "{}\nhealth_check = {{ path = \"/health\", interval = \"100ms\", timeout = \"200ms\", rise = 2, fall = 1 }}",
            servers(&[
                addr_entry(&a, ", max_fails = 0"),
                addr_entry(&b, ", max_fails = 0")
            ])
        ),
        "",
    );
    let vigil = TestVigil::start(&config).await;
    let pool = vigil.app.server.runtime().pools["app"].clone();
    let b_addr = b.addr;
    drop(b);
    wait_for(Duration::from_secs(3), || pool.available_count() == 1).await;
    // With b out, every request goes to a on the first try.
    let counts = count_backends(&vigil, "/x", 10).await;
    assert_eq!(counts.get("a"), Some(&10));
    let b = Backend::start_on("b", b_addr).await;
    wait_for(Duration::from_secs(3), || pool.available_count() == 2).await;
    let counts = count_backends(&vigil, "/x", 10).await;
    assert_eq!(counts.get("b"), Some(&5), "{counts:?}");
    assert!(b.requests() >= 5);
}

async fn wait_for(deadline: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < deadline,
            "condition not met within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn retries_follow_nginx_rules() {
    let good = Backend::start("good").await;
    let dead_port = free_port();
    let (config, _) = proxy_config(
        &format!(
            "read_timeout = \"300ms\"\n{}",
            servers(&[
                format!("{{ addr = \"127.0.0.1:{dead_port}\", max_fails = 0 }}"),
                addr_entry(&good, ", max_fails = 0"),
            ])
        ),
        "",
    );
    let vigil = TestVigil::start(&config).await;
    let addr = vigil.first_addr();
    // Connect errors: retried for every method, body intact.
    for _ in 0..4 {
        let r = client::send(addr, request("POST", "/echo", &[], "payload")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "payload");
    }
    drop(vigil);

    // A server that accepted the request but is too slow: an idempotent
    // request moves on, a POST does not (nginx non_idempotent rule).
    let slow = Backend::start("slow").await;
    let fast = Backend::start("fast").await;
    let (config, _) = proxy_config(
        &format!(
            "read_timeout = \"300ms\"\n{}",
            servers(&[
                addr_entry(&slow, ", max_fails = 0"),
                addr_entry(&fast, ", max_fails = 0")
            ])
        ),
        "",
    );
    let vigil = TestVigil::start(&config).await;
    let addr = vigil.first_addr();
    let mut statuses = Vec::new();
    for _ in 0..2 {
        // Path /sleep/1000 is slow on both, so use a header-free trick: the
        // slow backend is the first in round robin order for request 1.
        let r = client::send(addr, request("GET", "/sleep/1000", &[], "")).await;
        statuses.push(r.status.as_u16());
    }
    // Both servers sleep on that path: GET tries both, then 504.
    assert_eq!(statuses, vec![504, 504]);
    let before = slow.requests() + fast.requests();
    let r = client::send(addr, request("POST", "/sleep/1000", &[], "x")).await;
    assert_eq!(r.status, 504);
    assert_eq!(
        slow.requests() + fast.requests() - before,
        1,
        "POST sent once"
    );
}

#[tokio::test]
async fn no_live_upstream_is_502_and_tries_are_bounded() {
    let ports = [free_port(), free_port(), free_port()];
    let list: Vec<String> = ports
        .iter()
        .map(|p| format!("{{ addr = \"127.0.0.1:{p}\" }}"))
        .collect();
    let (config, _) = proxy_config(&format!("tries = 2\n{}", servers(&list)), "");
    let vigil = TestVigil::start(&config).await;
    let r = client::get(vigil.first_addr(), "/").await;
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), "502 Bad Gateway\n");
}

#[tokio::test]
async fn retry_on_listed_status() {
    let sick = Backend::always("sick", 503).await;
    let good = Backend::start("good").await;
    let (config, _) = proxy_config(
        &format!(
            "next_upstream = [\"error\", \"timeout\", \"http_503\"]\n{}",
            servers(&[
                addr_entry(&sick, ", max_fails = 0"),
                addr_entry(&good, ", max_fails = 0")
            ])
        ),
        "",
    );
    let vigil = TestVigil::start(&config).await;
    // Every request succeeds: a 503 from the sick server moves it on.
    let counts = count_backends(&vigil, "/x", 6).await;
    assert_eq!(counts.get("good"), Some(&6));
    assert_eq!(sick.requests(), 3, "round robin still offered it half");
    drop(vigil);

    // When every server answers a listed status, the last answer is passed
    // on as it is (nginx does the same).
    let sick2 = Backend::always("sick2", 503).await;
    let (config, _) = proxy_config(
        &format!(
            "next_upstream = [\"http_503\"]\n{}",
            servers(&[
                addr_entry(&sick, ", max_fails = 0"),
                addr_entry(&sick2, ", max_fails = 0")
            ])
        ),
        "",
    );
    let vigil = TestVigil::start(&config).await;
    let r = client::get(vigil.first_addr(), "/x").await;
    assert_eq!(r.status, 503);
    // Without http_503 listed, a 503 is an answer like any other.
    drop(vigil);
    let (config, _) = proxy_config(
        &servers(&[addr_entry(&sick, ""), addr_entry(&good, "")]),
        "",
    );
    let vigil = TestVigil::start(&config).await;
    let before = good.requests();
    let r = client::get(vigil.first_addr(), "/x").await;
    assert!(r.status == 503 || r.status == 200);
    if r.status == 503 {
        assert_eq!(good.requests(), before, "not retried");
    }
}

#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (ws_addr, _task) = support::backend::websocket_echo().await;
    let (config, port) = proxy_config(&format!("servers = [{{ addr = \"{ws_addr}\" }}]"), "");
    let config = config.replace(
        "proxy_pass = \"app\"",
        "proxy_pass = \"app\"\n  websocket = true",
    );
    let _vigil = TestVigil::start(&config).await;
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/chat"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    for i in 0..5 {
        ws.send(Message::Text(format!("hello {i}").into()))
            .await
            .unwrap();
        let echoed = ws.next().await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), format!("hello {i}"));
    }
    ws.send(Message::Binary(vec![0u8, 1, 2, 255].into()))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap().into_data().as_ref(),
        &[0u8, 1, 2, 255]
    );
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn http2_client_to_http1_upstream() {
    let a = Backend::start("a").await;
    let (config, _) = proxy_config(&servers(&[addr_entry(&a, "")]), "");
    let vigil = TestVigil::start(&config).await;
    let r = client::get_h2(vigil.first_addr(), "shop.test:8080", "/h2?x=1").await;
    assert_eq!(r.status, 200);
    let seen = r.json();
    assert_eq!(seen["version"], "HTTP/1.1");
    assert_eq!(seen["uri"], "/h2?x=1");
    assert_eq!(seen["headers"]["host"], "shop.test:8080");
    assert_eq!(seen["headers"]["x-forwarded-host"], "shop.test:8080");
}

#[tokio::test]
async fn forwarding_headers_and_hop_by_hop_removal() {
    let a = Backend::start("a").await;
    let (config, _) = proxy_config(&servers(&[addr_entry(&a, "")]), "");
    let vigil = TestVigil::start(&config).await;
    let r = client::send(
        vigil.first_addr(),
        request(
            "GET",
            "/h",
            &[
                ("host", "example.com"),
                ("x-forwarded-for", "203.0.113.9"),
                ("connection", "x-hop"),
                ("x-hop", "secret"),
                ("keep-alive", "timeout=5"),
                ("proxy-authorization", "Basic Zm9vOmJhcg=="),
                ("x-end-to-end", "kept"),
            ],
            "",
        ),
    )
    .await;
    let h = &r.json()["headers"];
    assert_eq!(h["host"], "example.com", "Host kept");
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "example.com");
    assert_eq!(h["x-end-to-end"], "kept");
    for gone in ["x-hop", "keep-alive", "proxy-authorization"] {
        assert!(h.get(gone).is_none(), "{gone} was forwarded: {h}");
    }
}

/// `forwarding_headers = false` (what `vigil import` writes): nginx's
/// behaviour, the request's own values pass and only `proxy_set_header`
/// adds; `$proxy_add_x_forwarded_for` appends the client as nginx does.
#[tokio::test]
async fn forwarding_headers_off_as_nginx() {
    let a = Backend::start("a").await;
    let (config, _) = proxy_config(
        &servers(&[addr_entry(&a, "")]),
        r#"  [[server.location]]
  path = "/nginx/"
  proxy_pass = "app"
  forwarding_headers = false
  proxy_set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for" }
  [[server.location]]
  path = "/bare/"
  proxy_pass = "app"
  forwarding_headers = false"#,
    );
    let vigil = TestVigil::start(&config).await;
    let headers = [
        ("host", "example.com"),
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-proto", "gopher"),
    ];
    let r = client::send(vigil.first_addr(), request("GET", "/nginx/h", &headers, "")).await;
    let h = &r.json()["headers"];
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "gopher", "the client's own value");
    assert!(
        h.get("x-real-ip").is_none() && h.get("x-forwarded-host").is_none(),
        "{h}"
    );
    let r = client::send(
        vigil.first_addr(),
        request("GET", "/bare/h", &headers[..1], ""),
    )
    .await;
    let h = &r.json()["headers"];
    for absent in [
        "x-forwarded-for",
        "x-real-ip",
        "x-forwarded-proto",
        "x-forwarded-host",
    ] {
        assert!(h.get(absent).is_none(), "{absent} added: {h}");
    }
}

#[tokio::test]
async fn request_bodies_stream_both_ways() {
    let a = Backend::start("a").await;
    let (config, _) = proxy_config(&servers(&[addr_entry(&a, "")]), "");
    let vigil = TestVigil::start(&config).await;
    let addr = vigil.first_addr();
    // Content-Length body.
    let r = client::send(addr, request("PUT", "/echo", &[], "hello body")).await;
    assert_eq!(r.text(), "hello body");
    // Chunked request body.
    let raw = client::raw(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.ends_with("hello world"), "{raw}");
    // A large streamed response arrives whole.
    let r = client::get(addr, "/bytes/3000000").await;
    assert_eq!(r.body.len(), 3_000_000);
}

#[tokio::test]
async fn body_limits_give_413() {
    let a = Backend::start("a").await;
    let (config, _) = proxy_config(
        &servers(&[addr_entry(&a, "")]),
        "client_max_body_size = \"1k\"",
    );
    let vigil = TestVigil::start(&config).await;
    let addr = vigil.first_addr();
    let ok = "x".repeat(1024);
    assert_eq!(
        client::send(addr, request("POST", "/echo", &[], &ok))
            .await
            .status,
        200
    );
    let big = "x".repeat(1025);
    let r = client::send(addr, request("POST", "/echo", &[], &big)).await;
    assert_eq!(r.status, 413);
    // Chunked, no Content-Length: caught while streaming.
    let chunk = "y".repeat(800);
    let body = format!("320\r\n{chunk}\r\n320\r\n{chunk}\r\n0\r\n\r\n");
    let raw = client::raw(
        addr,
        format!("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{body}").as_bytes(),
        Duration::from_secs(2),
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
}

#[tokio::test]
async fn slowloris_is_cut_off() {
    let a = Backend::start("a").await;
    let (config, port) = proxy_config(&servers(&[addr_entry(&a, "")]), "");
    let config = config.replace(
        "[[server]]",
        "[http]\nclient_header_timeout = \"300ms\"\n\n[[server]]",
    );
    let _vigil = TestVigil::start(&config).await;
    let start = Instant::now();
    // Headers that never finish.
    let reply = client::raw(
        format!("127.0.0.1:{port}").parse().unwrap(),
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: 1",
        Duration::from_secs(5),
    )
    .await;
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "connection held {took:?}");
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 408"),
        "{reply}"
    );
}

#[tokio::test]
async fn malformed_and_oversized_requests() {
    let a = Backend::start("a").await;
    let (config, port) = proxy_config(&servers(&[addr_entry(&a, "")]), "");
    let config = config.replace(
        "[[server]]",
        "[http]\nmax_header_size = \"8k\"\n\n[[server]]",
    );
    let _vigil = TestVigil::start(&config).await;
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let bad = client::raw(addr, b"NOT A REQUEST\r\n\r\n", Duration::from_secs(2)).await;
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let reply = client::raw(addr, huge.as_bytes(), Duration::from_secs(2)).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    // Paths that climb above the root are refused before routing.
    for path in [
        "/../etc/passwd",
        "/%2e%2e/etc/passwd",
        "/a/%2e%2e/%2e%2e/x",
        "/x%00y",
    ] {
        let r = client::get(addr, path).await;
        assert_eq!(r.status, 400, "{path}");
    }
    assert_eq!(a.requests(), 0);
}

#[tokio::test]
async fn transparency_list() {
    let a = Backend::start("a").await;
    let (config, port) = proxy_config(&servers(&[addr_entry(&a, "")]), "");
    let _vigil = TestVigil::start(&config).await;
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    // HTTP/1.0 with Host.
    let r = client::raw(
        addr,
        b"GET /v HTTP/1.0\r\nHost: old.test\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(
        r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200"),
        "{r}"
    );
    assert!(r.contains("\"host\":\"old.test\""), "{r}");
    // HTTP/1.0 without Host: upstream still gets a Host (the pool name).
    let r = client::raw(addr, b"GET /v HTTP/1.0\r\n\r\n", Duration::from_secs(2)).await;
    assert!(r.contains(" 200 "), "{r}");
    assert!(r.contains("\"host\":\"app\""), "{r}");
    // HEAD: headers, no body.
    let r = client::raw(
        addr,
        b"HEAD /v HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.ends_with("\r\n\r\n"), "HEAD response has a body: {r}");
    // 204 and 304 carry no body and no chunked framing.
    let r = client::raw(
        addr,
        b"GET /nocontent HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 204"), "{r}");
    assert!(!r.to_ascii_lowercase().contains("transfer-encoding"), "{r}");
    let r = client::raw(
        addr,
        b"GET /status/304 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 304"), "{r}");
    assert!(r.ends_with("\r\n\r\n"), "{r}");
    // Keep-alive works across many requests on one client connection.
    let mut conn = Conn::open(addr).await;
    for i in 0..50 {
        let r = conn.get(&format!("/k{i}")).await;
        assert_eq!(r.status, 200);
    }
}

#[tokio::test]
async fn upstream_keepalive_reuses_connections() {
    let a = Backend::start("a").await;
    let (config, _) = proxy_config(&servers(&[addr_entry(&a, "")]), "");
    let vigil = TestVigil::start(&config).await;
    let pool = vigil.app.server.runtime().pools["app"].clone();
    let mut conn = Conn::open(vigil.first_addr()).await;
    for _ in 0..20 {
        assert_eq!(conn.get("/x").await.status, 200);
    }
    assert_eq!(
        pool.peers[0].idle.len(),
        1,
        "one upstream connection reused"
    );
}

#[tokio::test]
async fn return_and_redirects() {
    let port = free_port();
    let config = format!(
        r#"
[log]
access_log = "off"
[[server]]
listen = ["127.0.0.1:{port}"]
  [[server.location]]
  path = "= /healthz"
  return = {{ status = 200, body = "ok $host\n" }}
  [[server.location]]
  path = "/old/"
  return = {{ status = 301, location = "$scheme://$host/new$request_uri" }}
"#
    );
    let vigil = TestVigil::start(&config).await;
    let addr = vigil.first_addr();
    let r = client::send(
        addr,
        request("GET", "/healthz", &[("host", "Example.COM:8080")], ""),
    )
    .await;
    assert_eq!(r.text(), "ok example.com\n");
    let r = client::send(
        addr,
        request("GET", "/old/page?a=1", &[("host", "x.test")], ""),
    )
    .await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("http://x.test/new/old/page?a=1"));
    let r = client::get(addr, "/nothing").await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let a = Backend::start("a").await;
    let (config, _) = proxy_config(&servers(&[addr_entry(&a, "")]), "");
    let vigil = TestVigil::start(&config).await;
    let addr = vigil.first_addr();
    let in_flight = tokio::spawn(async move { client::get(addr, "/sleep/500").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let left = vigil.app.server.shutdown(Duration::from_secs(5)).await;
    assert_eq!(left, 0);
    assert_eq!(in_flight.await.unwrap().status, 200);
    // No longer accepting.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
