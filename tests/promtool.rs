//! Prometheus sees what the docs promise (issue 14): a fresh vigil's
//! first `/metrics` passes `promtool check metrics` and already holds the
//! labelled counters whose label values are known (at 0), and the
//! alerting rules in docs/OPERATIONS.md (= conf/vigil-alerts.yml) pass
//! `promtool check rules` and their unit tests (`promtool test rules`).
//!
//! Needs `promtool` (Debian package `prometheus`); prints a skip message
//! without it. In-process vigil on 127.0.0.1, port 0; this test binary
//! has one vigil, so its metrics are the first scrape's.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use support::backend::Backend;
use support::client;
use support::prom::Scrape;
use support::vigil::TestVigil;

fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("skipped: promtool not installed (Debian package `prometheus`)");
    }
    found.then_some("promtool")
}

fn run(cmd: &mut Command, stdin: Option<&str>) -> (bool, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = stdin.unwrap_or_default().to_owned();
    let mut pipe = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || pipe.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn the_first_scrape_has_every_known_series_and_passes_promtool() {
    let backend = Backend::start("a").await;
    let vigil = TestVigil::start(&format!(
        r#"
[log]
access_log = "off"

[admin]
listen = "127.0.0.1:0"

[[server]]
listen = ["127.0.0.1:0"]
  [[server.location]]
  path = "/"
  proxy_pass = "app"

[upstream.app]
servers = [{{ addr = "{}" }}]
"#,
        backend.addr
    ))
    .await;
    let text = client::get(vigil.app.admin_addr().unwrap(), "/metrics")
        .await
        .text();
    let scrape = Scrape::parse(&text);
    // Present (not merely absent, which a sum would also call 0) and 0.
    let zero = |name: &str, labels: &[(&str, &str)]| {
        let sample = scrape
            .samples
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .unwrap_or_else(|| panic!("no {name} {labels:?} in the first scrape:\n{text}"));
        assert_eq!(sample.value, 0.0, "{name} {labels:?}");
    };
    zero("vigil_config_reloads_total", &[("result", "success")]);
    zero("vigil_config_reloads_total", &[("result", "failure")]);
    for reason in ["emfile", "enfile", "other"] {
        zero("vigil_accept_errors_total", &[("reason", reason)]);
    }
    for frame in ["settings", "ping"] {
        zero("vigil_http2_flood_closed_total", &[("frame", frame)]);
    }
    zero("vigil_upstream_retries_total", &[("upstream", "app")]);
    zero("vigil_connections_accepted_total", &[]);

    let Some(promtool) = promtool() else { return };
    let (ok, out) = run(
        Command::new(promtool).args(["check", "metrics"]),
        Some(&text),
    );
    assert!(ok, "promtool check metrics:\n{out}\n{text}");
}

#[test]
fn the_documented_alerts_pass_promtool() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules = std::fs::read_to_string(root.join("conf/vigil-alerts.yml")).unwrap();
    let doc = std::fs::read_to_string(root.join("docs/OPERATIONS.md")).unwrap();
    assert!(
        doc.contains(&format!("```yaml\n{rules}```")),
        "docs/OPERATIONS.md must show conf/vigil-alerts.yml verbatim"
    );
    let Some(promtool) = promtool() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vigil-alerts.yml"), &rules).unwrap();
    std::fs::copy(
        root.join("tests/data/vigil-alerts.test.yml"),
        dir.path().join("vigil-alerts.test.yml"),
    )
    .unwrap();
    let (ok, out) = run(
        Command::new(promtool)
            .current_dir(dir.path())
            .args(["check", "rules", "vigil-alerts.yml"]),
        None,
    );
    assert!(ok, "promtool check rules:\n{out}");
    let (ok, out) = run(
        Command::new(promtool).current_dir(dir.path()).args([
            "test",
            "rules",
            "vigil-alerts.test.yml",
        ]),
        None,
    );
    assert!(ok, "promtool test rules:\n{out}");
}
