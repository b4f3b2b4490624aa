//! A server's metric series, resolved on its first attempt and kept with
//! the server: `with_label_values` hashes its labels and takes a lock on
//! every call, which showed in the proxied request's profile (issue 16).
//! Attempts and response times are counted per worker and merged into
//! the shared series at every scrape (`worker_metrics`).
//!
//! The status code is an open label: the first codes a server answers
//! get a counter each in a worker's slot ([`CodeCounts`]), any other code
//! takes the labelled lookup.

use std::sync::{Arc, OnceLock};

use http::StatusCode;
use prometheus::IntCounter;

use crate::metrics::Metrics;
use crate::proxy::worker_metrics::{CodeCounts, LazyHistogram, Pending, WorkerSeries};

/// Codes with a counter of their own per server and worker: a server
/// answers for every route and method of its pool, so more than a
/// location's few.
const CODE_SLOTS: usize = 16;

/// The `code` label of an attempt: the status answered, or why none was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptCode {
    Status(StatusCode),
    Error,
    Timeout,
}

impl AttemptCode {
    fn label(&self) -> &str {
        match self {
            AttemptCode::Status(status) => status.as_str(),
            AttemptCode::Error => "error",
            AttemptCode::Timeout => "timeout",
        }
    }
}

#[derive(Debug, Default)]
pub struct PeerMetrics(OnceLock<Handles>);

#[derive(Debug)]
struct Handles {
    /// `vigil_upstream_retries_total{upstream}` (rare: shared).
    retries: IntCounter,
    /// Attempts and response times, per worker.
    counts: Arc<WorkerSeries<PeerCounts>>,
}

/// A worker's counts for one server, not yet in the shared series.
struct PeerCounts {
    /// `vigil_upstream_response_duration_seconds{upstream}`.
    duration: LazyHistogram,
    /// `vigil_upstream_requests_total{upstream, server, code}`.
    codes: CodeCounts<AttemptCode>,
}

impl Pending for PeerCounts {
    fn flush(&mut self) {
        self.duration.flush();
        self.codes.flush();
    }
}

impl PeerMetrics {
    fn handles(&self, metrics: &Metrics, upstream: &str) -> &Handles {
        self.0.get_or_init(|| Handles {
            retries: metrics.upstream_retries.with_label_values(&[upstream]),
            counts: WorkerSeries::new(metrics, || PeerCounts {
                duration: LazyHistogram::default(),
                codes: CodeCounts::new(CODE_SLOTS),
            }),
        })
    }

    /// Counts one attempt on this server.
    pub fn attempt(&self, metrics: &Metrics, upstream: &str, server: &str, code: AttemptCode) {
        self.handles(metrics, upstream).counts.with(|counts| {
            counts.codes.inc(code, || {
                metrics
                    .upstream_requests
                    .with_label_values(&[upstream, server, code.label()])
            })
        });
    }

    /// Time from sending the request to the response head.
    pub fn response_time(&self, metrics: &Metrics, upstream: &str, seconds: f64) {
        self.handles(metrics, upstream).counts.with(|counts| {
            counts.duration.observe(seconds, || {
                metrics
                    .upstream_response_duration
                    .with_label_values(&[upstream])
            })
        });
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
        let status = |c| AttemptCode::Status(StatusCode::from_u16(c).unwrap());
        for code in [
            status(200),
            status(200),
            status(418),
            AttemptCode::Error,
            AttemptCode::Timeout,
            status(504),
        ] {
            peer.attempt(&metrics, "app", "a:1", code);
        }
        peer.retry(&metrics, "app");
        peer.response_time(&metrics, "app", 0.25);
        metrics.flush_pending();
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

    #[test]
    fn codes_past_the_slots_count_under_their_labels() {
        let metrics = Metrics::new();
        let peer = PeerMetrics::default();
        let codes = (200..200 + CODE_SLOTS as u16 + 4).map(|c| StatusCode::from_u16(c).unwrap());
        for (i, status) in codes.clone().enumerate() {
            for _ in 0..=i {
                peer.attempt(&metrics, "app", "a:1", AttemptCode::Status(status));
            }
        }
        metrics.flush_pending();
        for (i, status) in codes.enumerate() {
            let labels = ["app", "a:1", status.as_str()];
            let count = metrics.upstream_requests.with_label_values(&labels).get();
            assert_eq!(count, i as u64 + 1, "{status}");
        }
    }
}
