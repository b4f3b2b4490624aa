//! The request metrics' series, resolved per location so that a finished
//! request does no label hashing.
//!
//! `vigil_http_requests_total{server,location,method,code}` and
//! `vigil_http_request_duration_seconds{server,location}`: the server and
//! location labels are fixed by the config, so each generation keeps one
//! [`LocationSeries`] per (server, location), and one per server for the
//! requests no location answered (`location=""`). Each worker counts into
//! its own slot of it, merged into the shared series at every scrape
//! (`worker_metrics`). A series is resolved the first time a request
//! counts into it, so /metrics shows the same series as when every
//! request looked its labels up. Methods and codes are open sets: the
//! common methods each keep a few slots for the codes seen at the
//! location, and anything else goes through `with_label_values` as before.
//!
//! The slots count into clones of the series the vec holds, so two
//! generations with the same labels count into one series: a reload
//! neither resets nor splits a count.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{Method, StatusCode};

use crate::config::VirtualServer;
use crate::metrics::Metrics;
use crate::proxy::worker_metrics::{CodeCounts, LazyHistogram, Pending, WorkerSeries};

/// One generation's request series, by [`VirtualServer::index`].
#[derive(Debug)]
pub struct RequestMetrics {
    servers: Box<[Option<ServerSeries>]>,
}

impl RequestMetrics {
    pub fn new(servers: &[std::sync::Arc<VirtualServer>]) -> RequestMetrics {
        let len = servers.iter().map(|s| s.index + 1).max().unwrap_or(0);
        let mut by_index: Vec<Option<ServerSeries>> = (0..len).map(|_| None).collect();
        for s in servers {
            by_index[s.index] = Some(ServerSeries {
                unrouted: LocationSeries::new(&s.label, ""),
                locations: s
                    .locations
                    .iter()
                    .map(|l| LocationSeries::new(&s.label, &l.label))
                    .collect(),
            });
        }
        RequestMetrics {
            servers: by_index.into(),
        }
    }

    /// Counts one finished request of the server with index `server`
    /// ([`VirtualServer::index`]) answered by its location `location` (an
    /// index into its locations; `None`: no location).
    pub fn record(
        &self,
        metrics: &Metrics,
        server: usize,
        location: Option<usize>,
        method: &Method,
        status: StatusCode,
        elapsed: Duration,
    ) {
        // Indexes come from the same generation's config; a miss would be
        // a bug, and costs only the fast path.
        let series =
            self.servers
                .get(server)
                .and_then(Option::as_ref)
                .and_then(|s| match location {
                    None => Some(&s.unrouted),
                    Some(i) => s.locations.get(i),
                });
        match series {
            Some(series) => series.record(metrics, method, status, elapsed),
            None => tracing::debug!("request metrics: no series for server {server}"),
        }
    }
}

#[derive(Debug)]
struct ServerSeries {
    /// Requests no location answered.
    unrouted: LocationSeries,
    locations: Box<[LocationSeries]>,
}

/// How many distinct codes each common method keeps handles for at one
/// location; more codes than this take the slow path.
const CODE_SLOTS: usize = 8;

/// Methods with slots of their own (see [`method_slot`]).
const METHODS: usize = 5;

/// The series of one (server, location).
#[derive(Debug)]
struct LocationSeries {
    server: String,
    location: String,
    /// Made on the first request counted (with the metrics it counts
    /// into), so an unused location shows no series.
    counts: OnceLock<Arc<WorkerSeries<LocationCounts>>>,
}

/// A worker's counts for one location, not yet in the shared series.
struct LocationCounts {
    duration: LazyHistogram,
    /// Per common method: codes in the order first seen.
    by_method: [CodeCounts<StatusCode>; METHODS],
}

impl Pending for LocationCounts {
    fn flush(&mut self) {
        self.duration.flush();
        for codes in &mut self.by_method {
            codes.flush();
        }
    }
}

impl LocationSeries {
    fn new(server: &str, location: &str) -> LocationSeries {
        LocationSeries {
            server: server.to_owned(),
            location: location.to_owned(),
            counts: OnceLock::new(),
        }
    }

    fn record(&self, metrics: &Metrics, method: &Method, status: StatusCode, elapsed: Duration) {
        let counts = self.counts.get_or_init(|| {
            WorkerSeries::new(metrics, || LocationCounts {
                duration: LazyHistogram::default(),
                by_method: std::array::from_fn(|_| CodeCounts::new(CODE_SLOTS)),
            })
        });
        let resolve = || {
            metrics.http_requests.with_label_values(&[
                self.server.as_str(),
                self.location.as_str(),
                method.as_str(),
                status.as_str(),
            ])
        };
        counts.with(|counts| {
            match method_slot(method) {
                Some(row) => counts.by_method[row].inc(status, resolve),
                None => resolve().inc(),
            }
            counts.duration.observe(elapsed.as_secs_f64(), || {
                metrics
                    .http_request_duration
                    .with_label_values(&[&self.server, &self.location])
            });
        });
    }
}

/// The slot row of the methods most requests use.
fn method_slot(method: &Method) -> Option<usize> {
    if *method == Method::GET {
        Some(0)
    } else if *method == Method::HEAD {
        Some(1)
    } else if *method == Method::POST {
        Some(2)
    } else if *method == Method::PUT {
        Some(3)
    } else if *method == Method::DELETE {
        Some(4)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn config() -> Config {
        let text = r#"
[[server]]
listen = ["127.0.0.1:8080"]
server_name = ["a.test"]
  [[server.location]]
  path = "/"
  return = { status = 200 }
  [[server.location]]
  path = "= /exact"
  return = { status = 204 }

[[server]]
listen = ["127.0.0.1:8080"]
server_name = ["b.test"]
  [[server.location]]
  path = "/b/"
  return = { status = 200 }
"#;
        Config::parse(text, Path::new("/etc/vigil/vigil.toml")).unwrap()
    }

    /// What every request did before handles were kept: look the labels
    /// up.
    fn record_by_labels(
        m: &Metrics,
        c: &Config,
        server: usize,
        location: Option<usize>,
        method: &Method,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let s = &c.servers[server];
        let location = location.map_or("", |i| s.locations[i].label.as_str());
        m.http_requests
            .with_label_values(&[&s.label, location, method.as_str(), status.as_str()])
            .inc();
        m.http_request_duration
            .with_label_values(&[&s.label, location])
            .observe(elapsed.as_secs_f64());
    }

    #[test]
    fn handles_count_what_label_lookups_counted() {
        let c = config();
        let methods = [
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
            Method::from_bytes(b"PROPFIND").unwrap(),
        ];
        // More codes than a method has slots for.
        let codes: Vec<StatusCode> = [
            200, 404, 200, 304, 500, 502, 503, 504, 301, 302, 200, 418, 499,
        ]
        .into_iter()
        .map(|c| StatusCode::from_u16(c).unwrap())
        .collect();
        let places = [
            (0, None),
            (0, Some(0)),
            (0, Some(1)),
            (1, None),
            (1, Some(0)),
        ];
        let (old, new) = (Metrics::new(), Metrics::new());
        let handles = RequestMetrics::new(&c.servers);
        let mut n = 0u64;
        for round in 0..3 {
            for (server, location) in places {
                for method in &methods {
                    for &code in &codes[..codes.len() - round] {
                        n += 1;
                        let elapsed = Duration::from_micros(n * 137 % 5_000_000);
                        record_by_labels(&old, &c, server, location, method, code, elapsed);
                        handles.record(&new, server, location, method, code, elapsed);
                    }
                }
            }
        }
        assert_eq!(new.render(|_| {}), old.render(|_| {}));
        let s = &c.servers[0];
        assert_eq!(
            new.http_requests
                .with_label_values(&[&s.label, "/", "GET", "200"])
                .get(),
            9
        );
    }

    #[test]
    fn nothing_shows_until_a_request_counts() {
        let c = config();
        let m = Metrics::new();
        let handles = RequestMetrics::new(&c.servers);
        let before = m.render(|_| {});
        assert!(!before.contains("vigil_http_requests_total{"), "{before}");
        handles.record(&m, 1, Some(0), &Method::GET, StatusCode::OK, Duration::ZERO);
        let after = m.render(|_| {});
        assert!(after.contains("vigil_http_requests_total{code=\"200\",location=\"/b/\",method=\"GET\",server=\"b.test\"} 1"), "{after}");
        assert!(!after.contains("location=\"= /exact\""), "{after}");
    }

    #[test]
    fn a_new_generation_counts_into_the_same_series() {
        let c = config();
        let m = Metrics::new();
        let (first, second) = (
            RequestMetrics::new(&c.servers),
            RequestMetrics::new(&c.servers),
        );
        first.record(&m, 0, Some(0), &Method::GET, StatusCode::OK, Duration::ZERO);
        second.record(&m, 0, Some(0), &Method::GET, StatusCode::OK, Duration::ZERO);
        m.flush_pending();
        let s = &c.servers[0];
        let labels = [s.label.as_str(), "/", "GET", "200"];
        assert_eq!(m.http_requests.with_label_values(&labels).get(), 2);
        assert_eq!(
            m.http_request_duration
                .with_label_values(&[&s.label, "/"])
                .get_sample_count(),
            2
        );
    }

    #[test]
    fn racing_threads_lose_no_count() {
        let c = config();
        let m = Metrics::new();
        let handles = RequestMetrics::new(&c.servers);
        std::thread::scope(|scope| {
            for t in 0..4u16 {
                let (m, handles) = (&m, &handles);
                scope.spawn(move || {
                    for i in 0..2_000u16 {
                        let code = StatusCode::from_u16(200 + (i + t) % 12).unwrap();
                        handles.record(m, 0, Some(0), &Method::GET, code, Duration::ZERO);
                    }
                });
            }
        });
        m.flush_pending();
        let s = &c.servers[0];
        let total: u64 = (200..212)
            .map(|code: u16| {
                m.http_requests
                    .with_label_values(&[&s.label, "/", "GET", &code.to_string()])
                    .get()
            })
            .sum();
        assert_eq!(total, 8_000);
    }
}
