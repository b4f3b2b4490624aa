//! Upstream names follow DNS without a reload: a DNS server the test runs
//! on 127.0.0.1 (`support::dns`) answers for the name, and vigil's
//! `[http] resolver` points at it. Backends listen on 127.0.0.2 and
//! 127.0.0.3 (loopback) on one port, so a change of address is a change
//! of backend.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use support::backend::{Backend, free_port};
use support::client;
use support::dns::{Answer, DnsServer};
use support::vigil::TestVigil;

const NAME: &str = "app.vigil.test";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn config(dns: SocketAddr, port: u16) -> String {
    format!(
        r#"
[http]
resolver = ["{dns}"]
resolver_timeout = "1s"

[log]
access_log = "off"

[[server]]
listen = ["127.0.0.1:0"]
  [[server.location]]
  path = "/"
  proxy_pass = "app"

[upstream.app]
servers = [{{ addr = "{NAME}:{port}", max_fails = 0 }}]
"#
    )
}

/// Who answers `/`, asked until `want` does or 10 s pass.
async fn wait_served_by(v: &TestVigil, want: &str) {
    let addr = v.first_addr();
    let mut last = String::new();
    for _ in 0..200 {
        let r = client::get(addr, "/").await;
        if r.status == 200 {
            last = r.json()["backend"].as_str().unwrap_or_default().to_owned();
            if last == want {
                return;
            }
        } else {
            last = format!("status {}", r.status);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never served by {want}; last answer: {last}");
}

fn failures(v: &TestVigil) -> u64 {
    v.app
        .metrics()
        .upstream_resolve_failures
        .with_label_values(&["app", NAME])
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_follows_dns_keeps_state_and_survives_failures() {
    let port = free_port();
    let a = Backend::start_on("a", SocketAddr::new(ip("127.0.0.2"), port)).await;
    let b = Backend::start_on("b", SocketAddr::new(ip("127.0.0.3"), port)).await;
    let dns = DnsServer::start().await;
    dns.set(NAME, Answer::Addrs(vec![ip("127.0.0.2")], 1));

    // The name is unknown to the system resolver: vigil starts with no
    // address for it and asks the configured resolver at once.
    let v = TestVigil::start(&config(dns.addr, port)).await;
    wait_served_by(&v, "a").await;

    // The answer changes: the pool follows at the TTL, without a reload.
    let generation = v.app.server.runtime().generation;
    dns.set(NAME, Answer::Addrs(vec![ip("127.0.0.3")], 1));
    wait_served_by(&v, "b").await;
    assert_eq!(v.app.server.runtime().generation, generation, "no reload");

    // A second address joins: the one that stays keeps its live state
    // (the same peer, with its idle connections and health).
    let before = peer(&v, "127.0.0.3");
    dns.set(
        NAME,
        Answer::Addrs(vec![ip("127.0.0.3"), ip("127.0.0.2")], 1),
    );
    for _ in 0..100 {
        if v.app.server.runtime().pools["app"].peers.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(v.app.server.runtime().pools["app"].peers.len(), 2);
    assert!(Arc::ptr_eq(&before, &peer(&v, "127.0.0.3")), "state kept");
    wait_served_by(&v, "a").await;
    wait_served_by(&v, "b").await;

    // Lookups fail (SERVFAIL, then silence): the last good addresses
    // stay, and the failures are counted.
    let failed_before = failures(&v);
    dns.set(NAME, Answer::Fail);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    dns.set(NAME, Answer::Silent);
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert!(failures(&v) > failed_before, "failures counted");
    assert_eq!(v.app.server.runtime().pools["app"].peers.len(), 2);
    wait_served_by(&v, "a").await;
    wait_served_by(&v, "b").await;

    // And it recovers when the name resolves again.
    dns.set(NAME, Answer::Addrs(vec![ip("127.0.0.2")], 1));
    for _ in 0..200 {
        if v.app.server.runtime().pools["app"].peers.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(v.app.server.runtime().pools["app"].peers.len(), 1);
    wait_served_by(&v, "a").await;
    assert!(dns.queries() > 3);
    drop((a, b));
}

fn peer(v: &TestVigil, ip: &str) -> Arc<vigil::proxy::upstream::pool::Peer> {
    let rt = v.app.server.runtime();
    rt.pools["app"]
        .peers
        .iter()
        .find(|p| p.server.addr.ip().to_string() == ip)
        .cloned()
        .unwrap_or_else(|| panic!("no peer {ip}"))
}

#[tokio::test]
async fn resolver_keys_are_validated() {
    let bad = "[http]\nresolver = [\"dns.example\"]\n[[server]]\nlisten = [\"127.0.0.1:0\"]\nroot = \"/srv\"\n";
    let e = vigil::config::Config::parse(bad, std::path::Path::new("v.toml")).unwrap_err();
    assert!(
        e.to_string()
            .contains("v.toml:2: http.resolver[0]: \"dns.example\" is not an IP address"),
        "{e}"
    );
    let bad = "[[server]]\nlisten = [\"127.0.0.1:0\"]\n[[server.location]]\npath = \"/\"\nproxy_pass = \"app\"\n[upstream.app]\nresolve_interval = \"100ms\"\nservers = [{ addr = \"127.0.0.1:1\" }]\n";
    let e = vigil::config::Config::parse(bad, std::path::Path::new("v.toml")).unwrap_err();
    assert!(
        e.to_string()
            .contains("upstream.app.resolve_interval: must be at least 1s"),
        "{e}"
    );
}
