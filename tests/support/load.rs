//! A steady HTTP load for failover tests: a few keep-alive connections
//! sending requests back to back, every outcome recorded with its time.
//!
//! It is strict: any request without a complete 2xx response counts as
//! failed, including one lost on a keep-alive connection the server closed
//! at the very moment it was sent (no automatic retry).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::netns::{Lab, Node};

/// One request's outcome.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// When the request started, since the load started.
    pub at: Duration,
    /// When it ended.
    pub done: Duration,
    /// When the connection it used was opened (None: it could not be).
    pub connection_opened: Option<Duration>,
    /// The response body (the backend names itself), or the error.
    pub result: Result<String, String>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
}

impl Report {
    pub fn ok(&self) -> usize {
        self.outcomes.iter().filter(|o| o.result.is_ok()).count()
    }

    pub fn failures(&self) -> Vec<&Outcome> {
        self.outcomes.iter().filter(|o| o.result.is_err()).collect()
    }

    /// Successful answers whose body contains `who`.
    pub fn served_by(&self, who: &str) -> usize {
        self.outcomes
            .iter()
            .filter(|o| o.result.as_ref().is_ok_and(|b| b.contains(who)))
            .count()
    }

    /// The first success served by `who` at or after `from`.
    pub fn first_served_by_after(&self, who: &str, from: Duration) -> Option<Duration> {
        self.outcomes
            .iter()
            .filter(|o| o.at >= from && o.result.as_ref().is_ok_and(|b| b.contains(who)))
            .map(|o| o.at)
            .min()
    }

    /// Longest time without a success, within [from, to].
    pub fn longest_gap(&self, from: Duration, to: Duration) -> Duration {
        let mut times: Vec<Duration> = self
            .outcomes
            .iter()
            .filter(|o| o.result.is_ok() && o.at >= from && o.at <= to)
            .map(|o| o.at)
            .collect();
        times.sort();
        let mut gap = Duration::ZERO;
        let mut last = from;
        for t in times {
            gap = gap.max(t - last);
            last = t;
        }
        gap.max(to.saturating_sub(last))
    }

    pub fn summary(&self) -> String {
        let f = self.failures();
        let mut s = format!("{} ok, {} failed", self.ok(), f.len());
        for o in f.iter().take(10) {
            s.push_str(&format!("\n  {:?}..{:?}: {:?}", o.at, o.done, o.result));
        }
        s
    }
}

/// Handle to a running load; `stop` ends it and returns the report.
pub struct Load {
    stop: Arc<AtomicBool>,
    started: Instant,
    thread: std::thread::JoinHandle<Report>,
}

impl Load {
    /// Time since the load started (to relate events to outcomes).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn stop(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("load thread")
    }
}

/// Starts `connections` keep-alive request loops against `target` from
/// inside `client`'s namespace.
pub fn start(
    lab: &Lab,
    client: &Node,
    target: SocketAddr,
    connections: usize,
    timeout: Duration,
) -> Load {
    start_with(lab, client, target, connections, timeout, false)
}

/// Like [`start`], with a new connection for every request when `fresh`
/// (a prober: measures when *new* clients are served again).
pub fn start_with(
    lab: &Lab,
    client: &Node,
    target: SocketAddr,
    connections: usize,
    timeout: Duration,
    fresh: bool,
) -> Load {
    start_paced(
        lab,
        client,
        target,
        connections,
        timeout,
        fresh,
        Duration::ZERO,
    )
}

/// Like [`start_with`], each loop waiting `pace` after every request: a
/// steady load that leaves CPU to the daemons under test (benchmarks on a
/// small shared machine). `Duration::ZERO` sends back to back.
pub fn start_paced(
    lab: &Lab,
    client: &Node,
    target: SocketAddr,
    connections: usize,
    timeout: Duration,
    fresh: bool,
    pace: Duration,
) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let flag = stop.clone();
    let thread = lab.run_in(client, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let loops: Vec<_> = (0..connections)
                .map(|_| {
                    tokio::spawn(request_loop(
                        target,
                        flag.clone(),
                        started,
                        timeout,
                        fresh,
                        pace,
                    ))
                })
                .collect();
            let mut report = Report::default();
            for l in loops {
                report.outcomes.extend(l.await.unwrap_or_default());
            }
            report.outcomes.sort_by_key(|o| o.at);
            report
        })
    });
    Load {
        stop,
        started,
        thread,
    }
}

async fn request_loop(
    target: SocketAddr,
    stop: Arc<AtomicBool>,
    started: Instant,
    timeout: Duration,
    fresh: bool,
    pace: Duration,
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let mut sender: Option<http1::SendRequest<Empty<Bytes>>> = None;
    let mut opened: Option<Duration> = None;
    while !stop.load(Ordering::Relaxed) {
        if fresh {
            sender = None;
        }
        if sender.as_ref().is_none_or(|s| s.is_closed()) {
            opened = None;
        }
        let at = started.elapsed();
        let result = tokio::time::timeout(
            timeout,
            one_request(target, &mut sender, &mut opened, started),
        )
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
        if result.is_err() {
            sender = None;
            // Do not spin while nothing answers.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        outcomes.push(Outcome {
            at,
            done: started.elapsed(),
            connection_opened: opened,
            result,
        });
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
    }
    outcomes
}

async fn one_request(
    target: SocketAddr,
    sender: &mut Option<http1::SendRequest<Empty<Bytes>>>,
    opened: &mut Option<Duration>,
    started: Instant,
) -> Result<String, String> {
    if sender.as_ref().is_none_or(|s| s.is_closed()) {
        *opened = Some(started.elapsed());
        let stream = TcpStream::connect(target)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (s, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        *sender = Some(s);
    }
    let s = sender.as_mut().expect("just set");
    s.ready().await.map_err(|e| format!("ready: {e}"))?;
    let req = Request::get("/")
        .header("host", target.to_string())
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let resp = s
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("status {status}: {}", body.trim()))
    }
}
