//! A server's metric handles, resolved on its first attempt and kept with
//! the server: `with_label_values` hashes its labels and takes a lock on
//! every call, which showed in the proxied request's profile (issue 16).
//!
//! The status code is an open label; the codes upstreams commonly answer
//! get a cached handle each, any other code takes the labelled lookup.

use std::sync::OnceLock;

use prometheus::{Histogram, IntCounter};

use crate::metrics::Metrics;

/// Status codes with a cached counter, in slot order.
const CACHED_CODES: [&str; 16] = [
    "200", "201", "204", "206", "301", "302", "304", "400", "401", "403", "404", "429", "500",
    "502", "503", "504",
];
/// The two outcomes without a status.
const ERROR: &str = "error";
const TIMEOUT: &str = "timeout";

#[derive(Debug, Default)]
pub struct PeerMetrics(OnceLock<Handles>);

#[derive(Debug)]
struct Handles {
    /// `vigil_upstream_response_duration_seconds{upstream}`.
    duration: Histogram,
    /// `vigil_upstream_retries_total{upstream}`.
    retries: IntCounter,
    /// `vigil_upstream_requests_total{upstream, server, code}`, one slot
    /// per entry of `CACHED_CODES`, then error and timeout.
    codes: [OnceLock<IntCounter>; CACHED_CODES.len() + 2],
}

impl PeerMetrics {
    fn handles(&self, metrics: &Metrics, upstream: &str) -> &Handles {
        self.0.get_or_init(|| Handles {
            duration: metrics
                .upstream_response_duration
                .with_label_values(&[upstream]),
            retries: metrics.upstream_retries.with_label_values(&[upstream]),
            codes: Default::default(),
        })
    }

    /// Counts one attempt on this server; `code` is a status code, or
    /// "error" / "timeout".
    pub fn attempt(&self, metrics: &Metrics, upstream: &str, server: &str, code: &str) {
        let slot = match code {
            ERROR => Some(CACHED_CODES.len()),
            TIMEOUT => Some(CACHED_CODES.len() + 1),
            _ => CACHED_CODES.iter().position(|c| *c == code),
        };
        let labels = [upstream, server, code];
        match slot {
            Some(i) => self.handles(metrics, upstream).codes[i]
                .get_or_init(|| metrics.upstream_requests.with_label_values(&labels))
                .inc(),
            None => metrics.upstream_requests.with_label_values(&labels).inc(),
        }
    }

    /// Time from sending the request to the response head.
    pub fn response_time(&self, metrics: &Metrics, upstream: &str, seconds: f64) {
        self.handles(metrics, upstream).duration.observe(seconds);
    }

    /// A request moved on to this server after a failed attempt.
    pub fn retry(&self, metrics: &Metrics, upstream: &str) {
        self.handles(metrics, upstream).retries.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_and_uncached_codes_count_under_the_same_labels() {
        let metrics = Metrics::new();
        let peer = PeerMetrics::default();
        for code in ["200", "200", "418", "error", "timeout", "504"] {
            peer.attempt(&metrics, "app", "a:1", code);
        }
        peer.retry(&metrics, "app");
        peer.response_time(&metrics, "app", 0.25);
        let count = |code: &str| {
            metrics
                .upstream_requests
                .with_label_values(&["app", "a:1", code])
                .get()
        };
        assert_eq!(count("200"), 2);
        assert_eq!(count("418"), 1);
        assert_eq!(count("error"), 1);
        assert_eq!(count("timeout"), 1);
        assert_eq!(count("504"), 1);
        assert_eq!(
            metrics.upstream_retries.with_label_values(&["app"]).get(),
            1
        );
        let h = metrics
            .upstream_response_duration
            .with_label_values(&["app"]);
        assert_eq!(h.get_sample_count(), 1);
    }
}
