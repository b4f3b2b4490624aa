//! The buffered access log through a running vigil: lines reach the file
//! whole and in full after the flush interval, at a graceful stop, across
//! a reload, and across a logrotate-style rename + SIGUSR1; a stdout
//! nobody reads drops lines (counted) instead of stalling requests.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::backend::free_port;
use support::client::{self, Conn};
use support::vigil::TestVigil;

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");

fn config(port: u16, log: &str) -> String {
    format!(
        r#"
[log]
{log}

[[server]]
listen = ["127.0.0.1:{port}"]
  [[server.location]]
  path = "/"
  return = {{ status = 200, body = "ok\n" }}
"#
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Every line is one whole combined-format record; returns the request
/// paths in file order.
fn paths(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| {
            let request = line
                .split('"')
                .nth(1)
                .unwrap_or_else(|| panic!("torn line: {line:?}"));
            let mut words = request.split(' ');
            assert_eq!(words.next(), Some("GET"), "torn line: {line:?}");
            let path = words.next().unwrap_or_default().to_owned();
            assert_eq!(words.next(), Some("HTTP/1.1"), "torn line: {line:?}");
            assert!(line.ends_with("\"-\""), "torn line: {line:?}");
            path
        })
        .collect()
}

/// Polls (bounded) until `path` holds `lines` lines; returns its text.
async fn wait_lines(path: &Path, lines: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = read(path);
        if text.lines().count() >= lines || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get_many(addr: std::net::SocketAddr, prefix: &str, n: usize) {
    let mut conn = Conn::open(addr).await;
    for i in 0..n {
        let r = conn.get(&format!("/{prefix}/{i}")).await;
        assert_eq!(r.status, 200);
    }
}

fn expected(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("/{prefix}/{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_wait_in_the_buffer_until_the_flush_interval() {
    let port = free_port();
    let vigil = TestVigil::start(&config(
        port,
        "access_log = \"access.log\"\naccess_log_flush = \"300ms\"",
    ))
    .await;
    let log = vigil.dir.path().join("access.log");
    get_many(vigil.first_addr(), "a", 50).await;
    // 50 short lines are far below 64 KiB: nothing is written before the
    // sweep (the sweep itself may have run already, hence no assertion of
    // emptiness here), and all of it after.
    let text = wait_lines(&log, 50).await;
    assert_eq!(paths(&text), expected("a", 50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_is_written_without_waiting_for_the_timer() {
    let port = free_port();
    // An hour-long flush: only full buffers can reach the file.
    let vigil = TestVigil::start(&config(
        port,
        "access_log = \"access.log\"\naccess_log_buffer = \"4k\"\naccess_log_flush = \"1h\"",
    ))
    .await;
    let log = vigil.dir.path().join("access.log");
    get_many(vigil.first_addr(), "full", 400).await;
    let text = wait_lines(&log, 1).await;
    let got = paths(&text);
    assert!(!got.is_empty(), "no full buffer was written");
    // Whole buffers of whole lines; each worker's lines in order.
    for p in &got {
        assert!(expected("full", 400).contains(p), "{p}");
    }
    assert!(
        std::fs::metadata(&log).unwrap().len() >= 4096,
        "written before the buffer was full"
    );
    // The graceful stop writes the rest.
    vigil.app.stop().await;
    let mut all = paths(&read(&log));
    all.sort();
    let mut want = expected("full", 400);
    want.sort();
    assert_eq!(all, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_writes_every_buffered_line() {
    let port = free_port();
    let vigil = TestVigil::start(&config(
        port,
        "access_log = \"access.log\"\naccess_log_flush = \"1h\"",
    ))
    .await;
    let log = vigil.dir.path().join("access.log");
    get_many(vigil.first_addr(), "stop", 30).await;
    assert_eq!(read(&log), "", "written before the buffer was full");
    vigil.app.stop().await;
    assert_eq!(paths(&read(&log)), expected("stop", 30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_loses_no_buffered_line() {
    let port = free_port();
    let first = config(
        port,
        "access_log = \"first.log\"\naccess_log_flush = \"1h\"",
    );
    let vigil = TestVigil::start(&first).await;
    let dir = vigil.dir.path().to_owned();
    get_many(vigil.first_addr(), "one", 20).await;
    // Same log settings: the same writer and buffers carry on.
    vigil.reload(&first).await.unwrap();
    get_many(vigil.first_addr(), "two", 20).await;
    // Another file: the old log writes its buffers when the last request
    // of the old generation is done.
    vigil
        .reload(&config(
            port,
            "access_log = \"second.log\"\naccess_log_flush = \"1h\"",
        ))
        .await
        .unwrap();
    get_many(vigil.first_addr(), "three", 20).await;
    let old = paths(&wait_lines(&dir.join("first.log"), 40).await);
    // Each batch went over one connection, so to one worker, and keeps its
    // order; the two batches may have gone to different workers, whose
    // buffers are written in whichever order they finish (as nginx's
    // workers do), so the batches are compared one by one.
    let batch = |prefix: &str| -> Vec<String> {
        old.iter()
            .filter(|p| p.starts_with(&format!("/{prefix}/")))
            .cloned()
            .collect()
    };
    assert_eq!(old.len(), 40, "{old:?}");
    assert_eq!(batch("one"), expected("one", 20));
    assert_eq!(batch("two"), expected("two", 20));
    vigil.app.stop().await;
    assert_eq!(paths(&read(&dir.join("second.log"))), expected("three", 20));
}

/// A vigil process (signals need a real one); killed if the test fails.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} failed");
}

async fn spawn(dir: &Path, text: &str, stdout: Stdio) -> Process {
    let path = dir.join("vigil.toml");
    std::fs::write(&path, text).unwrap();
    let child = Command::new(VIGIL)
        .args(["run", "-c", path.to_str().unwrap()])
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Process(child)
}

async fn wait_listening(port: u16) -> std::net::SocketAddr {
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "vigil did not start listening");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    addr
}

/// Waits (bounded) for the process to exit after SIGTERM.
async fn wait_exit(p: &mut Process) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while p.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "vigil did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logrotate_rename_then_sigusr1_moves_new_lines_to_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let mut vigil = spawn(
        dir.path(),
        &config(
            port,
            "access_log = \"access.log\"\naccess_log_flush = \"1h\"",
        ),
        Stdio::null(),
    )
    .await;
    let addr = wait_listening(port).await;
    get_many(addr, "before", 25).await;
    // logrotate's nginx recipe: rename, then `kill -USR1` in postrotate.
    std::fs::rename(&log, &rotated).unwrap();
    signal(&vigil.0, "-USR1");
    // Reopening writes the buffered lines to the renamed file first, then
    // creates access.log again.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log.exists() {
        assert!(Instant::now() < deadline, "access.log was not reopened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    get_many(addr, "after", 25).await;
    signal(&vigil.0, "-TERM");
    wait_exit(&mut vigil).await;
    let old = paths(&read(&rotated));
    let new = paths(&read(&log));
    // A line is logged when its response body is done, which can be a
    // moment after the client has read it: the last "before" line may
    // race the signal into the new file. Nothing may be lost or doubled,
    // and nothing from after the reopen may go to the renamed file.
    assert!(
        old.len() >= 20,
        "buffered lines did not go to the old file: {old:?}"
    );
    assert!(old.iter().all(|p| p.starts_with("/before/")), "{old:?}");
    assert!(new.ends_with(&expected("after", 25)), "{new:?}");
    let mut all: Vec<String> = old.into_iter().chain(new).collect();
    all.sort();
    let mut want = expected("before", 25);
    want.extend(expected("after", 25));
    want.sort();
    assert_eq!(all, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdout_nobody_reads_drops_lines_instead_of_stalling() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let admin = free_port();
    let text = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin}\"\n{}",
        // Buffers of one line each: the 4 MiB queue fills fastest.
        config(port, "access_log = \"stdout\"\naccess_log_buffer = 0")
    );
    // A pipe whose reading end is held but never read: once its 64 KiB
    // are full, every write(2) to it blocks.
    let mut vigil = spawn(dir.path(), &text, Stdio::piped()).await;
    let addr = wait_listening(port).await;
    wait_listening(admin).await;
    let long = "x".repeat(3000);
    let mut conn = Conn::open(addr).await;
    let mut dropped = 0.0;
    // Bounded: 4 MiB of queue at ~3 KiB a line is ~1400 lines.
    for i in 0..20 {
        for _ in 0..200 {
            let r = conn.get(&format!("/{long}")).await;
            assert_eq!(r.status, 200, "requests must not stall behind the log");
        }
        let scrape = client::get(([127, 0, 0, 1], admin).into(), "/metrics").await;
        dropped = support::prom::Scrape::parse(&scrape.text())
            .value("vigil_access_log_dropped_total", &[]);
        if dropped > 0.0 {
            break;
        }
        assert!(i < 19, "no line was dropped");
    }
    assert!(dropped > 0.0);
    let stdout = vigil.0.stdout.take();
    signal(&vigil.0, "-TERM");
    drop(stdout);
    wait_exit(&mut vigil).await;
}
