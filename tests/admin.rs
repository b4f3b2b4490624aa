//! Operations: the admin API (/metrics, /healthz, /status), hot reload
//! (bad and good configs under load), and the `vigil reload` / `vigil
//! status` commands.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::backend::{Backend, free_port};
use support::client::{self, Conn, request};
use support::prom::Scrape;
use support::vigil::TestVigil;

fn config(port: u16, admin: u16, server_name: &str, backend: &Backend, extra: &str) -> String {
    format!(
        r#"
[log]
access_log = "off"

[admin]
listen = "127.0.0.1:{admin}"

[[server]]
listen = ["127.0.0.1:{port}"]
server_name = ["{server_name}"]

  [[server.location]]
  path = "= /healthz"
  return = {{ status = 200, body = "ok\n" }}

  [[server.location]]
  path = "/api/"
  proxy_pass = "app"
{extra}
[upstream.app]
servers = [{{ addr = "{}" }}]
"#,
        backend.addr
    )
}

async fn admin_get(vigil: &TestVigil, path: &str) -> client::Reply {
    client::get(vigil.app.admin_addr().unwrap(), path).await
}

#[tokio::test]
async fn metrics_count_known_traffic_exactly() {
    let backend = Backend::start("a").await;
    let port = free_port();
    let vigil = TestVigil::start(&config(port, 0, "metrics.test", &backend, "")).await;
    let addr = vigil.first_addr();
    let mut conn = Conn::open(addr).await;
    for _ in 0..7 {
        assert_eq!(conn.get("/api/x").await.status, 200);
    }
    for _ in 0..3 {
        assert_eq!(conn.get("/healthz").await.status, 200);
    }
    for _ in 0..2 {
        assert_eq!(conn.get("/missing").await.status, 404);
    }
    drop(conn);
    let text = admin_get(&vigil, "/metrics").await.text();
    let scrape = Scrape::parse(&text);
    let value = |name: &str, labels: &[(&str, &str)]| scrape.value(name, labels);
    let server = ("server", "metrics.test");
    assert_eq!(
        value(
            "vigil_http_requests_total",
            &[
                server,
                ("location", "/api/"),
                ("method", "GET"),
                ("code", "200")
            ]
        ),
        7.0
    );
    assert_eq!(
        value(
            "vigil_http_requests_total",
            &[server, ("location", "= /healthz"), ("code", "200")]
        ),
        3.0
    );
    assert_eq!(
        value(
            "vigil_http_requests_total",
            &[server, ("location", ""), ("code", "404")]
        ),
        2.0
    );
    let backend_label = backend.addr.to_string();
    assert_eq!(
        value(
            "vigil_upstream_requests_total",
            &[
                ("upstream", "app"),
                ("server", &backend_label),
                ("code", "200")
            ]
        ),
        7.0
    );
    assert_eq!(
        value(
            "vigil_upstream_server_up",
            &[("upstream", "app"), ("server", &backend_label)]
        ),
        1.0
    );
    // Histograms: the count matches the requests of that route.
    assert_eq!(
        value(
            "vigil_http_request_duration_seconds_count",
            &[server, ("location", "/api/")]
        ),
        7.0
    );
    assert_eq!(
        scrape.kind("vigil_http_request_duration_seconds"),
        Some("histogram")
    );
    assert_eq!(scrape.kind("vigil_http_requests_total"), Some("counter"));
    for name in [
        "vigil_build_info",
        "vigil_connections_active",
        "vigil_config_generation",
        "vigil_connections_accepted_total",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
}

#[tokio::test]
async fn healthz_and_status() {
    let backend = Backend::start("a").await;
    let vigil = TestVigil::start(&config(free_port(), 0, "status.test", &backend, "")).await;
    let r = admin_get(&vigil, "/healthz").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok\n"));
    let status = admin_get(&vigil, "/status").await.json();
    assert_eq!(status["generation"], 1);
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert!(status["uptime_seconds"].is_u64());
    let listener = &status["listeners"][0];
    assert_eq!(listener["servers"][0], "status.test");
    assert_eq!(listener["tls"], false);
    let upstream = &status["upstreams"][0];
    assert_eq!(upstream["name"], "app");
    assert_eq!(upstream["available"], 1);
    let server = &upstream["servers"][0];
    assert_eq!(server["addr"], backend.addr.to_string());
    assert_eq!(server["up"], true);
    assert_eq!(server["health_check"], "off");
    assert!(status["vrrp"].is_array());
    assert_eq!(admin_get(&vigil, "/nope").await.status, 404);
}

/// Sends requests without pause until told to stop; counts failures.
fn load(
    addr: std::net::SocketAddr,
    path: &'static str,
) -> (
    Arc<AtomicBool>,
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let (s, o, f) = (stop.clone(), ok.clone(), failed.clone());
    let task = tokio::spawn(async move {
        let mut conns: Vec<Conn> = Vec::new();
        for _ in 0..4 {
            conns.push(Conn::open(addr).await);
        }
        let mut i = 0;
        while !s.load(Ordering::Relaxed) {
            let conn = &mut conns[i % 4];
            i += 1;
            match conn.send(client::request("GET", path, &[], "")).await {
                Ok(r) if r.status == 200 => o.fetch_add(1, Ordering::Relaxed),
                _ => {
                    // A closed keep-alive connection is not a failure of
                    // the proxy only if the request was never sent; count
                    // everything as failed to be strict.
                    *conn = Conn::open(addr).await;
                    f.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
    });
    (stop, ok, failed, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_bad_then_good() {
    let backend = Backend::start("a").await;
    let port = free_port();
    let good = config(port, 0, "reload.test", &backend, "");
    let vigil = TestVigil::start(&good).await;
    let addr = vigil.first_addr();
    let reloads = |scrape: &Scrape, result: &str| {
        scrape.value("vigil_config_reloads_total", &[("result", result)])
    };
    let before = Scrape::parse(&admin_get(&vigil, "/metrics").await.text());
    let (stop, ok, failed, task) = load(addr, "/api/load");
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A broken config: the running one keeps serving, the error says why.
    let bad = good.replace("proxy_pass = \"app\"", "proxy_pass = \"nope\"");
    let err = vigil.reload(&bad).await.unwrap_err();
    assert!(err.contains("unknown upstream \"nope\""), "{err}");
    assert!(
        err.contains("vigil.toml:"),
        "names the file and line: {err}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(admin_get(&vigil, "/status").await.json()["generation"], 1);

    // A good config with a new route: live at once, no request lost.
    let newer = config(
        port,
        0,
        "reload.test",
        &backend,
        "\n  [[server.location]]\n  path = \"= /new\"\n  return = { status = 200, body = \"new route\\n\" }\n",
    );
    assert_eq!(vigil.reload(&newer).await, Ok(2));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(client::get(addr, "/new").await.text(), "new route\n");
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
    assert!(
        ok.load(Ordering::Relaxed) > 50,
        "load ran: {}",
        ok.load(Ordering::Relaxed)
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests during reloads"
    );

    // Other tests in this binary reload too: compare before and after.
    let after = Scrape::parse(&admin_get(&vigil, "/metrics").await.text());
    assert!(reloads(&after, "failure") - reloads(&before, "failure") >= 1.0);
    assert!(reloads(&after, "success") - reloads(&before, "success") >= 1.0);
}

#[tokio::test]
async fn reload_adds_and_removes_listeners() {
    let backend = Backend::start("a").await;
    let (p1, p2) = (free_port(), free_port());
    let vigil = TestVigil::start(&config(p1, 0, "l.test", &backend, "")).await;
    let second = format!(
        "{}\n[[server]]\nlisten = [\"127.0.0.1:{p2}\"]\n  [[server.location]]\n  path = \"/\"\n  return = {{ status = 200, body = \"second\\n\" }}\n",
        config(p1, 0, "l.test", &backend, "")
    );
    vigil.reload(&second).await.unwrap();
    let r = client::get(format!("127.0.0.1:{p2}").parse().unwrap(), "/").await;
    assert_eq!(r.text(), "second\n");
    vigil
        .reload(&config(p1, 0, "l.test", &backend, ""))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", p2))
            .await
            .is_err(),
        "removed listener still open"
    );
    assert_eq!(
        client::get(vigil.first_addr(), "/healthz").await.status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_and_status_commands() {
    let backend = Backend::start("a").await;
    let port = free_port();
    let admin = free_port();
    let text = config(port, admin, "cli.test", &backend, "");
    let vigil = TestVigil::start(&text).await;
    let exe = env!("CARGO_BIN_EXE_vigil");
    let path = vigil.config_path.clone();
    let run = move |args: &[&str]| {
        let out = std::process::Command::new(exe).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let p = path.to_str().unwrap().to_owned();
    let (code, out, _) = tokio::task::spawn_blocking({
        let p = p.clone();
        move || run(&["reload", "-c", &p])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0));
    assert!(out.contains("generation 2"), "{out}");

    std::fs::write(&path, text.replace("[[server]]", "[[server]]\nbogus = 1")).unwrap();
    let (code, _, err) = tokio::task::spawn_blocking({
        let p = p.clone();
        move || run(&["reload", "-c", &p])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(1));
    assert!(err.contains("unknown field `bogus`"), "{err}");

    let (code, out, _) = tokio::task::spawn_blocking(move || {
        run(&["status", "--admin", &format!("127.0.0.1:{admin}")])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0));
    assert!(out.contains("generation 2"), "{out}");
    assert!(out.contains("UPSTREAM"), "{out}");
    assert!(out.contains(&backend.addr.to_string()), "{out}");
}

/// The API answers 422 only for a config mistake; what the host refuses
/// (here a listen address another process holds) is a 500. Either way the
/// running config stays.
#[tokio::test]
async fn reload_refusals_say_whose_they_are() {
    let backend = Backend::start("a").await;
    let port = free_port();
    let admin = free_port();
    let text = config(port, admin, "refuse.test", &backend, "");
    let vigil = TestVigil::start(&text).await;
    let api = std::net::SocketAddr::from(([127, 0, 0, 1], admin));
    let post_reload = move || {
        tokio::task::spawn_blocking(move || vigil::admin::request(api, "POST", "/reload").unwrap())
    };

    std::fs::write(
        &vigil.config_path,
        text.replace("[[server]]", "[[server]]\nbogus = 1"),
    )
    .unwrap();
    let (status, body) = post_reload().await.unwrap();
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("unknown field `bogus`"), "{body}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    std::fs::write(
        &vigil.config_path,
        text.replace(
            &format!("127.0.0.1:{port}\""),
            &format!("127.0.0.1:{busy}\""),
        ),
    )
    .unwrap();
    let (status, body) = post_reload().await.unwrap();
    assert_eq!(status, 500, "{body}");
    assert!(body.contains(&busy.to_string()), "{body}");
    // Still serving the first config.
    let r = client::send(
        vigil.first_addr(),
        request("GET", "/healthz", &[("host", "refuse.test")], ""),
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn check_command_reports_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[server]]\nlisten = [\"8080\"]\n  [[server.location]]\n  path = \"/\"\n  proxy_pass = \"missing\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["check", "-c", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:5: server[0].location[0].proxy_pass: unknown upstream \"missing\""),
        "{err}"
    );
    // The bundled example configs are valid (conf/tls.toml needs the
    // development certificates; tests/tls.rs covers it).
    for example in ["conf/vigil.toml", "conf/ha-a.toml", "conf/ha-b.toml"] {
        let good = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["check", "-c", example])
            .output()
            .unwrap();
        assert_eq!(
            good.status.code(),
            Some(0),
            "{example}: {}",
            String::from_utf8_lossy(&good.stderr)
        );
    }
}
