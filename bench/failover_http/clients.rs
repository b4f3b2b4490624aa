//! The client side of a trial, all inside the client namespace:
//!
//! - **wrk**, the load the issue asks for, paced by a Lua `delay()` so the
//!   2-core machine is not saturated (a saturated machine delays VRRP
//!   adverts and would measure the scheduler, not the failover). A Lua
//!   script counts what wrk itself does not report (see [`WRK_LUA`]).
//! - an **open-loop prober**: a new connection every few milliseconds,
//!   whatever happened to the previous ones, each with `Connection:
//!   close`. The outage is read from it: the first 2xx from the other node
//!   to a probe *opened after* the fault. Open loop, because a closed-loop
//!   prober stuck on a dropped SYN or a frozen node would only notice the
//!   new master when its own timeout fires (a resolution of its timeout).
//!
//! The strict keep-alive client is `tests/support/load.rs` (paced).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::netns::{Lab, Node};

/// wrk script. wrk counts socket errors and responses ≥ 400, but:
///
/// - a request whose connection is closed by the server before any byte of
///   the response (EOF) is silently dropped: wrk reconnects and counts
///   nothing (the keep-alive close race of a graceful nginx stop);
/// - a request that never gets an answer (a frozen node; a VIP that moved
///   while the response was being sent, so the old node can no longer send
///   from that address) is never counted, as wrk has no request timeout;
///   `--timeout` only flags answers that came late.
///
/// With one connection per wrk thread (`-t N -c N`), each thread's Lua
/// state sees one connection, so the script can tell: when a thread starts
/// a request while its previous one is unanswered, that one failed
/// (`unanswered`: EOF, reset, refused — each connection attempt wrk makes,
/// as wrk retries a refused connection at once, without its delay); a
/// thread that ends with a request pending and no answer for ≥ 3 s is
/// `stuck` (`os.time()` has a 1 s resolution). `bad` is status ≥ 400.
///
/// The first `request()` call of thread 0 is wrk checking the request
/// format (`script_verify_request`), not a request: skipped.
pub const WRK_LUA: &str = r#"
local threads = {}
local n = 0
function setup(thread)
  thread:set("id", n)
  n = n + 1
  table.insert(threads, thread)
end
sent = 0
answered = 0
unanswered = 0
bad = 0
bad502 = 0
pending = false
verified = false
last = os.time()
function delay() return DELAY_MS end
function request()
  if id == 0 and not verified then verified = true return wrk.request() end
  if pending then unanswered = unanswered + 1 end
  pending = true
  sent = sent + 1
  return wrk.request()
end
function response(status, headers, body)
  pending = false
  answered = answered + 1
  if status >= 400 then bad = bad + 1 end
  if status == 502 then bad502 = bad502 + 1 end
  last = os.time()
end
function done(summary, latency, requests)
  local now = os.time()
  local s, a, u, b, b502, stuck = 0, 0, 0, 0, 0, 0
  for _, t in ipairs(threads) do
    s = s + t:get("sent")
    a = a + t:get("answered")
    u = u + t:get("unanswered")
    b = b + t:get("bad")
    b502 = b502 + t:get("bad502")
    if t:get("pending") and now - t:get("last") >= 3 then stuck = stuck + 1 end
  end
  io.write(string.format("FOBENCH sent=%d answered=%d unanswered=%d bad=%d bad502=%d stuck=%d\n", s, a, u, b, b502, stuck))
end
"#;

/// What one wrk run saw.
#[derive(Debug, Default, Clone)]
pub struct WrkCounts {
    pub sent: u64,
    pub answered: u64,
    /// Requests that got no answer (EOF, RST, refused), per the script.
    pub unanswered: u64,
    /// Answers with status ≥ 400.
    pub bad: u64,
    /// Of those, 502 (an upstream pool with no server left).
    pub bad_502: u64,
    /// Connections left waiting for an answer for ≥ 3 s at the end.
    pub stuck: u64,
    /// wrk's own line, for the record: connect, read, write, timeout.
    pub socket_errors: [u64; 4],
    /// wrk's "Non-2xx or 3xx responses".
    pub non_2xx: u64,
}

impl WrkCounts {
    /// Failed requests: no answer, answered ≥ 400, answered after the
    /// timeout (wrk's `timeout`), or stuck at the end.
    pub fn failed(&self) -> u64 {
        self.unanswered + self.bad + self.socket_errors[3] + self.stuck
    }

    pub fn parse(out: &str) -> Result<WrkCounts, String> {
        let mut c = WrkCounts::default();
        let mut found = false;
        for line in out.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("FOBENCH ") {
                found = true;
                for kv in rest.split_whitespace() {
                    let (k, v) = kv.split_once('=').ok_or("bad FOBENCH line")?;
                    let v: u64 = v.parse().map_err(|_| "bad FOBENCH number")?;
                    match k {
                        "sent" => c.sent = v,
                        "answered" => c.answered = v,
                        "unanswered" => c.unanswered = v,
                        "bad" => c.bad = v,
                        "bad502" => c.bad_502 = v,
                        "stuck" => c.stuck = v,
                        _ => {}
                    }
                }
            } else if let Some(rest) = line.strip_prefix("Socket errors:") {
                // "connect 0, read 3, write 0, timeout 0"
                for (i, part) in rest.split(',').enumerate().take(4) {
                    c.socket_errors[i] = part
                        .split_whitespace()
                        .last()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                }
            } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
                c.non_2xx = rest.trim().parse().unwrap_or(0);
            }
        }
        if found {
            Ok(c)
        } else {
            Err(format!("no summary in wrk's output:\n{out}"))
        }
    }
}

/// A wrk run in the background (a process of the lab).
pub struct Wrk {
    pub pid: u32,
    pub log: String,
    pub ends: Instant,
}

/// Starts wrk against `url` for `duration` (whole seconds): `connections`
/// connections, one thread each, each waiting `delay_ms` between requests.
pub fn start_wrk(
    lab: &Lab,
    client: &Node,
    url: &str,
    connections: usize,
    delay_ms: u64,
    duration: Duration,
    timeout: Duration,
) -> Wrk {
    let script = lab.write(
        "wrk.lua",
        &WRK_LUA.replace("DELAY_MS", &delay_ms.to_string()),
    );
    let secs = duration.as_secs().max(1);
    let log = "wrk.log".to_owned();
    let pid = lab.spawn(
        client,
        &[
            "wrk",
            "-t",
            &connections.to_string(),
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{secs}s"),
            "--timeout",
            // wrk takes whole seconds (s, m, h units only).
            &format!("{}s", timeout.as_secs().max(1)),
            "-s",
            &script.display().to_string(),
            url,
        ],
        &log,
    );
    Wrk {
        pid,
        log,
        ends: Instant::now() + Duration::from_secs(secs),
    }
}

impl Wrk {
    /// Waits for wrk to finish (bounded) and reads its counts.
    pub fn finish(self, lab: &Lab) -> Result<WrkCounts, String> {
        let left = self.ends.saturating_duration_since(Instant::now());
        // wrk stops at its next 100 ms tick after the duration.
        let _ = lab.wait_exit(self.pid, left + Duration::from_secs(5));
        WrkCounts::parse(&lab.read(&self.log))
    }
}

/// One probe: opened at `start`, over at `done`; the backend's name or why
/// it failed.
#[derive(Debug, Clone)]
pub struct Probe {
    pub start: Instant,
    pub done: Instant,
    pub result: Result<String, String>,
}

pub struct Prober {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Probe>>,
}

/// Opens a new connection to `target` every `every`, each with a request
/// `GET /` and `Connection: close`, and `timeout` for the whole exchange.
pub fn start_prober(
    lab: &Lab,
    client: &Node,
    target: SocketAddr,
    every: Duration,
    timeout: Duration,
) -> Prober {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = lab.run_in(client, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut tasks = Vec::new();
            let mut tick = tokio::time::interval(every);
            // After a scheduling hiccup, carry on at the same pace rather
            // than firing a burst of probes.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !flag.load(Ordering::Relaxed) {
                tick.tick().await;
                tasks.push(tokio::spawn(async move {
                    let start = Instant::now();
                    let result = tokio::time::timeout(timeout, probe(target))
                        .await
                        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
                    Probe {
                        start,
                        done: Instant::now(),
                        result,
                    }
                }));
            }
            let mut probes = Vec::with_capacity(tasks.len());
            for t in tasks {
                if let Ok(p) = t.await {
                    probes.push(p);
                }
            }
            probes
        })
    });
    Prober { stop, thread }
}

impl Prober {
    /// Stops probing; waits for the probes in flight (each bounded by its
    /// timeout) and returns them all.
    pub fn stop(self) -> Vec<Probe> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

async fn probe(target: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect(target)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let req = format!("GET / HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(512);
    // Connection: close, so the answer ends with the server's FIN.
    let mut chunk = [0u8; 1024];
    loop {
        match s.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
        if buf.len() > 64 * 1024 {
            return Err("answer too long".into());
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("no status line: {:?}", text.lines().next()))?;
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_owned();
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        Err(format!("status {status}: {body}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let out = "Running 10s test @ http://10.231.241.50/\n  8 threads and 8 connections\n  \
                   14000 requests in 10.00s, 1.2MB read\n  Socket errors: connect 0, read 3, write 1, timeout 2\n  \
                   Non-2xx or 3xx responses: 7\nRequests/sec: 1400.00\n\
                   FOBENCH sent=14010 answered=14000 unanswered=4 bad=7 stuck=1\n";
        let c = WrkCounts::parse(out).unwrap();
        assert_eq!(c.socket_errors, [0, 3, 1, 2]);
        assert_eq!(c.non_2xx, 7);
        assert_eq!(
            (c.sent, c.answered, c.unanswered, c.bad, c.stuck),
            (14010, 14000, 4, 7, 1)
        );
        assert_eq!(c.failed(), 4 + 7 + 2 + 1);
        assert!(WrkCounts::parse("garbage").is_err());
    }
}
