//! The proxy on its own: `Server::start` with a config and a metrics
//! instance, no admin API, liveness or VRRP (issue 9). Two servers in one
//! process count into their own metrics.

mod support;

use std::path::Path;
use std::sync::Arc;

use support::backend::free_port;
use support::client;
use vigil::config::Config;
use vigil::metrics::Metrics;
use vigil::proxy::access_log::AccessLog;
use vigil::proxy::runtime::Runtime;
use vigil::proxy::server::Server;

fn start(body: &str) -> (Server, Arc<Metrics>, std::net::SocketAddr) {
    let port = free_port();
    let text = format!(
        r#"
[log]
access_log = "off"

[http]
workers = 1

[[server]]
listen = ["127.0.0.1:{port}"]

  [[server.location]]
  path = "/"
  return = {{ status = 200, body = "{body}" }}
"#
    );
    let config = Config::parse(&text, Path::new("alone.toml")).unwrap();
    let log = AccessLog::open(&config.log, config.http.workers).unwrap();
    let metrics = Arc::new(Metrics::new());
    let server = Server::start(Runtime::build(config, 1, None, log, metrics.clone())).unwrap();
    let addr = server.local_addrs()[0].1;
    (server, metrics, addr)
}

fn served(m: &Metrics) -> u64 {
    let text = m.render(|_| {});
    text.lines()
        .filter(|l| l.starts_with("vigil_http_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn a_proxy_without_the_rest_counts_into_its_own_metrics() {
    let (a, ma, addr_a) = start("a");
    let (b, mb, addr_b) = start("b");
    for _ in 0..3 {
        assert_eq!(client::get(addr_a, "/").await.text(), "a");
    }
    assert_eq!(client::get(addr_b, "/").await.text(), "b");
    assert_eq!(served(&ma), 3);
    assert_eq!(served(&mb), 1);
    a.shutdown(std::time::Duration::from_secs(1)).await;
    b.shutdown(std::time::Duration::from_secs(1)).await;
}
