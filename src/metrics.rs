//! Prometheus metrics (`/metrics` on the admin listener).
//!
//! Naming follows prometheus.io/docs/practices/naming: base units
//! (`_seconds`, `_bytes`), `_total` on counters, no high-cardinality labels
//! (a route is the configured location, never the raw path).
//!
//! VRRP series are labelled `vrrp_instance`, not `instance`: Prometheus
//! attaches its own `instance` label (the scrape target) and would rename a
//! clashing one to `exported_instance`.
//!
//! Request-path metrics are updated as requests finish. State that already
//! lives elsewhere (pool health, VRRP state and counters) is copied into
//! the registry when it is scraped, so the hot path never pays for it.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric vigil exports.
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_request_duration: HistogramVec,
    pub upstream_requests: IntCounterVec,
    pub upstream_response_duration: HistogramVec,
    pub upstream_retries: IntCounterVec,
    pub upstream_server_up: IntGaugeVec,
    pub connections_active: IntGauge,
    pub connections_parked: IntGauge,
    pub connections_accepted: IntCounter,
    pub config_reloads: IntCounterVec,
    pub config_generation: IntGauge,
    pub config_last_reload_success: IntGauge,
    /// 1 while `[vrrp]` is configured but cannot run (missing capability).
    pub vrrp_unavailable: IntGauge,
    pub access_log_dropped: IntCounter,
    pub tls_handshake_errors: IntCounter,
    pub tls_handshakes: IntCounterVec,
    /// Failed `accept` calls by reason (`emfile`, `enfile`, `other`).
    pub accept_errors: IntCounterVec,
    /// HTTP/2 connections closed for flooding control frames, by frame
    /// type (`settings`, `ping`).
    pub http2_flood_closed: IntCounterVec,
    /// Proxied request bodies read whole before a server was picked, by
    /// where they were held (`memory`, `file`); handles resolved once.
    pub request_bodies_in_memory: IntCounter,
    pub request_bodies_in_file: IntCounter,
    /// `limit_req` outcomes by zone (`passed`, `delayed`, `rejected`).
    pub limit_req_requests: IntCounterVec,
    /// `limit_conn` outcomes by zone (`passed`, `rejected`).
    pub limit_conn_requests: IntCounterVec,
    /// Connections closed for a missing or bad PROXY protocol header.
    pub proxy_protocol_errors: IntCounterVec,
    /// Upstream name lookups that failed (the last good addresses stay).
    pub upstream_resolve_failures: IntCounterVec,
    pub vrrp_state: IntGaugeVec,
    pub vrrp_priority: IntGaugeVec,
    pub vrrp_become_master: IntCounterVec,
    pub vrrp_adverts_sent: IntCounterVec,
    pub vrrp_adverts_received: IntCounterVec,
    pub vrrp_packets_discarded: IntCounterVec,
    /// The death probe, by result (connected, closed, refused, verdict).
    pub vrrp_death_probe: IntCounterVec,
    /// How late scheduled adverts went out (Adver_Timer deadline to send).
    pub vrrp_advert_lag: HistogramVec,
    /// Serializes scrapes (they refresh mirrored values before gathering).
    scrape: Mutex<()>,
    /// Counts kept outside the registry (per worker, see
    /// `proxy::worker_metrics`), merged in at every scrape.
    pending: Mutex<Vec<Weak<dyn Flush>>>,
}

/// Counts held outside the registry that a scrape must merge in first.
pub trait Flush: Send + Sync {
    /// Adds what is held to the registry's series and clears it.
    fn flush(&self);
}

/// Advert lag buckets: 0.5 ms to 1 s (a 10 ms advert interval to a node
/// stalled for seconds).
const ADVERT_LAG_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0,
];

/// Request-duration buckets: 1 ms to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// A registry of vigil's metrics. `App` makes one and hands it down
    /// (the proxy's runtime carries it), so two vigils in one process —
    /// tests — count apart.
    pub fn new() -> Metrics {
        let metrics = Self::register();
        // Known label values exist from the start, at 0, so a rate() over
        // them works before the first event.
        for reason in ["emfile", "enfile", "other"] {
            metrics.accept_errors.with_label_values(&[reason]);
        }
        for result in ["ok", "failed", "timeout"] {
            metrics.tls_handshakes.with_label_values(&[result]);
        }
        for frame in ["settings", "ping"] {
            metrics.http2_flood_closed.with_label_values(&[frame]);
        }
        for reason in ["missing", "malformed", "too_long", "eof", "timeout", "io"] {
            metrics.proxy_protocol_errors.with_label_values(&[reason]);
        }
        // `increase(vigil_config_reloads_total{result="failure"}[5m]) > 0`
        // must fire on the first failure, which needs a 0 before it.
        for result in ["success", "failure"] {
            metrics.config_reloads.with_label_values(&[result]);
        }
        metrics
    }

    fn register() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let single_counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let single_gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };

        let build_info = gauge(
            "vigil_build_info",
            "Always 1; the labels say which vigil this is.",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        let request_bodies = counter(
            "vigil_request_bodies_buffered_total",
            "Proxied request bodies read whole before a server was picked, by where they were held: memory (up to client_body_buffer_size) or file (a temporary file in client_body_temp_path).",
            &["held_in"],
        );

        Metrics {
            http_requests: counter(
                "vigil_http_requests_total",
                "HTTP requests answered, by virtual server, location, method and status code.",
                &["server", "location", "method", "code"],
            ),
            http_request_duration: histogram(
                "vigil_http_request_duration_seconds",
                "Time from request head to the last byte of the response.",
                &["server", "location"],
            ),
            upstream_requests: counter(
                "vigil_upstream_requests_total",
                "Attempts sent to upstream servers, by status code (or error / timeout).",
                &["upstream", "server", "code"],
            ),
            upstream_response_duration: histogram(
                "vigil_upstream_response_duration_seconds",
                "Time from sending a request to an upstream server to its response head.",
                &["upstream"],
            ),
            upstream_retries: counter(
                "vigil_upstream_retries_total",
                "Requests moved to the next upstream server after a failed attempt.",
                &["upstream"],
            ),
            upstream_server_up: gauge(
                "vigil_upstream_server_up",
                "1 when the upstream server can take requests (not down by health checks or max_fails).",
                &["upstream", "server"],
            ),
            connections_active: single_gauge(
                "vigil_connections_active",
                "Client connections open now.",
            ),
            connections_parked: single_gauge(
                "vigil_connections_parked",
                "Open HTTP/1 client connections waiting for their next request with no buffers held (idle keep-alive, or nothing sent yet).",
            ),
            connections_accepted: single_counter(
                "vigil_connections_accepted_total",
                "Client connections accepted.",
            ),
            config_reloads: counter(
                "vigil_config_reloads_total",
                "Config reloads, by result (success / failure).",
                &["result"],
            ),
            config_generation: single_gauge(
                "vigil_config_generation",
                "Generation of the running config (1 = as started, +1 per successful reload).",
            ),
            config_last_reload_success: single_gauge(
                "vigil_config_last_reload_success_timestamp_seconds",
                "Unix time of the last successful config load.",
            ),
            vrrp_unavailable: single_gauge(
                "vigil_vrrp_unavailable",
                "1 while [vrrp] is configured but cannot run (a missing capability; see the log and /status): the node serves without the VIP.",
            ),
            access_log_dropped: single_counter(
                "vigil_access_log_dropped_total",
                "Access log lines dropped because the writer could not keep up.",
            ),
            tls_handshake_errors: single_counter(
                "vigil_tls_handshake_errors_total",
                "TLS handshakes that failed or timed out.",
            ),
            tls_handshakes: counter(
                "vigil_tls_handshakes_total",
                "TLS handshakes on client connections, by result (ok, failed: a bad client hello, a rejected certificate or plain HTTP to the HTTPS port, timeout: client_header_timeout passed).",
                &["result"],
            ),
            accept_errors: counter(
                "vigil_accept_errors_total",
                "Failed accepts of client connections, by reason (emfile: process fd limit, enfile: system fd limit, other).",
                &["reason"],
            ),
            request_bodies_in_memory: request_bodies.with_label_values(&["memory"]),
            request_bodies_in_file: request_bodies.with_label_values(&["file"]),
            http2_flood_closed: counter(
                "vigil_http2_flood_closed_total",
                "HTTP/2 connections closed for flooding control frames, by frame type.",
                &["frame"],
            ),
            limit_req_requests: counter(
                "vigil_limit_req_requests_total",
                "Requests checked by limit_req, by zone and result (passed, delayed, rejected).",
                &["zone", "result"],
            ),
            limit_conn_requests: counter(
                "vigil_limit_conn_requests_total",
                "Requests checked by limit_conn, by zone and result (passed, rejected).",
                &["zone", "result"],
            ),
            proxy_protocol_errors: counter(
                "vigil_proxy_protocol_errors_total",
                "Connections closed for their PROXY protocol header, by reason (missing, malformed, too_long, eof, timeout, io).",
                &["reason"],
            ),
            upstream_resolve_failures: counter(
                "vigil_upstream_resolve_failures_total",
                "Failed DNS lookups of upstream server names (the last good addresses are kept).",
                &["upstream", "name"],
            ),
            vrrp_state: gauge(
                "vigil_vrrp_state",
                "VRRP state: 0 init, 1 backup, 2 master, 3 fault (the keepalived exporters' encoding).",
                &["vrrp_instance", "vrid", "interface"],
            ),
            vrrp_priority: gauge(
                "vigil_vrrp_priority",
                "Effective VRRP priority (configured priority adjusted by health tracking).",
                &["vrrp_instance", "vrid", "interface"],
            ),
            vrrp_become_master: counter(
                "vigil_vrrp_become_master_total",
                "Transitions to master.",
                &["vrrp_instance", "vrid", "interface"],
            ),
            vrrp_death_probe: counter(
                "vigil_vrrp_death_probe_total",
                "Death probe of a backup (death_probe): connections to the master's listener, closes seen, refused attempts, and verdicts that the master's vigil is gone.",
                &["vrrp_instance", "vrid", "interface", "result"],
            ),
            vrrp_adverts_sent: counter(
                "vigil_vrrp_adverts_sent_total",
                "VRRP advertisements sent.",
                &["vrrp_instance", "vrid", "interface"],
            ),
            vrrp_adverts_received: counter(
                "vigil_vrrp_adverts_received_total",
                "VRRP advertisements received and accepted.",
                &["vrrp_instance", "vrid", "interface"],
            ),
            vrrp_packets_discarded: counter(
                "vigil_vrrp_packets_discarded_total",
                "VRRP packets discarded, by reason (RFC 5798 section 7.1 checks).",
                &["vrrp_instance", "vrid", "interface", "reason"],
            ),
            vrrp_advert_lag: {
                let h = HistogramVec::new(
                    HistogramOpts::new(
                        "vigil_vrrp_advert_lag_seconds",
                        "How late scheduled VRRP adverts went out (Adver_Timer deadline to send); a Backup takes over past its Skew_Time plus a few intervals.",
                    )
                    .buckets(ADVERT_LAG_BUCKETS.to_vec()),
                    &["vrrp_instance", "vrid", "interface"],
                )
                .expect("valid metric");
                registry
                    .register(Box::new(h.clone()))
                    .expect("unique metric");
                h
            },
            registry,
            scrape: Mutex::new(()),
            pending: Mutex::new(Vec::new()),
        }
    }

    /// Has every scrape flush `counts` first, for as long as they live.
    pub fn keep_flushed(&self, counts: Weak<dyn Flush>) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.retain(|c| c.strong_count() > 0);
        pending.push(counts);
    }

    /// Merges the counts held outside the registry into it.
    pub fn flush_pending(&self) {
        // Flushed outside the list's lock: the last holder of a series
        // may drop it meanwhile, and its drop flushes too.
        let live: Vec<Arc<dyn Flush>> = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for counts in live {
            counts.flush();
        }
    }

    /// Renders the Prometheus text format after `refresh` has copied
    /// scrape-time state into the registry.
    pub fn render(&self, refresh: impl FnOnce(&Metrics)) -> String {
        let _one_scrape_at_a_time = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.flush_pending();
        refresh(self);
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Sets a counter series to `value` (a counter kept elsewhere, such as a
/// VRRP instance's). A smaller value than before means the source was
/// restarted, which Prometheus understands as a counter reset.
pub fn mirror_counter(vec: &IntCounterVec, labels: &[&str], value: u64) {
    let counter = vec.with_label_values(labels);
    let current = counter.get();
    if value >= current {
        counter.inc_by(value - current);
    } else {
        let _ = vec.remove_label_values(labels);
        vec.with_label_values(labels).inc_by(value);
    }
}

/// [`mirror_counter`] for a counter without labels.
pub fn mirror_counter_single(counter: &IntCounter, value: u64) {
    let current = counter.get();
    if value >= current {
        counter.inc_by(value - current);
    } else {
        counter.reset();
        counter.inc_by(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrored_counters_follow_their_source() {
        let m = Metrics::new();
        let labels = ["test_mirror", "1", "eth9"];
        mirror_counter(&m.vrrp_adverts_sent, &labels, 5);
        mirror_counter(&m.vrrp_adverts_sent, &labels, 9);
        assert_eq!(m.vrrp_adverts_sent.with_label_values(&labels).get(), 9);
        mirror_counter(&m.vrrp_adverts_sent, &labels, 2);
        assert_eq!(m.vrrp_adverts_sent.with_label_values(&labels).get(), 2);
    }

    #[test]
    fn renders_text_format_with_build_info() {
        let text = Metrics::new().render(|_| {});
        assert!(text.contains("vigil_build_info{version=\""), "{text}");
        assert!(
            text.contains("# TYPE vigil_connections_active gauge"),
            "{text}"
        );
    }
}
