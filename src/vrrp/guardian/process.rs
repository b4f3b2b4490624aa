//! The guardian process (`vigil __guardian`, started by the main process
//! with a pipe as its stdin and nothing else shared).
//!
//! It reads what the main process holds ([`wire`](super::wire)) until the
//! pipe reaches end-of-file, which the kernel causes when the main process
//! is gone, however it went (exit, SIGKILL, abort, the OOM killer: the
//! kernel closes every descriptor of a dead process). Whatever it still
//! holds then was left behind by a crash (a clean stop releases its VIPs
//! first) and is removed at once, so the dead node's kernel stops
//! answering ARP / ND for addresses the new master now owns.

use std::io::BufRead;
use std::process::ExitCode;
use std::time::Instant;

use super::wire::{Held, Line};
use crate::config::vrrp::Vip;
use crate::vrrp::vip::VipTable;

/// Runs the guardian until its input ends; then removes what is held.
pub fn serve() -> ExitCode {
    // Signals meant for vigil reach the guardian too when they go to the
    // process group (Ctrl-C in a terminal) or the cgroup (systemd stops a
    // unit with SIGTERM to every process): it must outlive the main
    // process to do its job, and it ends by itself right after.
    for signal in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ] {
        // SAFETY: setting a signal's disposition to SIG_IGN, no handler.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
    // The OOM killer should pick the main process, never its guardian
    // (lowering the score needs CAP_SYS_RESOURCE; without it the small
    // guardian is still far down the list).
    let _ = std::fs::write("/proc/self/oom_score_adj", "-1000");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start its runtime: {e}")),
    };
    // Netlink is opened now, not at the crash, so the removal costs one
    // request per VIP and nothing else.
    let vips = match runtime.block_on(async { VipTable::new() }) {
        Ok(v) => v,
        Err(e) => return fail(&e.to_string()),
    };
    let parent = std::os::unix::process::parent_id();
    let mut held = Held::default();
    let mut ok = true;
    let stdin = std::io::stdin().lock();
    for line in stdin.split(b'\n') {
        let Ok(line) = line else { break };
        match std::str::from_utf8(&line).ok().and_then(Line::parse) {
            Some(Line::Dying) => {
                ok &= remove_all(
                    &runtime,
                    &vips,
                    &held,
                    &format!("vigil (pid {parent}) is aborting"),
                );
                held.clear();
            }
            Some(l) => held.apply(l),
            None => say(&format!(
                "ignoring a line it cannot read: {:?}",
                String::from_utf8_lossy(&line)
            )),
        }
    }
    if !held.is_empty() {
        ok &= remove_all(
            &runtime,
            &vips,
            &held,
            &format!("vigil (pid {parent}) ended"),
        );
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Removes every held VIP at once; false if one could not be removed.
fn remove_all(runtime: &tokio::runtime::Runtime, vips: &VipTable, held: &Held, why: &str) -> bool {
    if held.is_empty() {
        return true;
    }
    let started = Instant::now();
    let failures = runtime.block_on(async {
        let removals = held.iter().map(|v| {
            let vips = vips.clone();
            async move {
                let vip = Vip {
                    addr: v.addr,
                    prefix: v.prefix,
                };
                (v, vips.remove(v.ifindex, &vip).await)
            }
        });
        let mut failures = 0;
        for (v, result) in futures_util::future::join_all(removals).await {
            if let Err(e) = result {
                failures += 1;
                say(&format!(
                    "cannot remove {}/{} (interface {}): {e}",
                    v.addr, v.prefix, v.ifindex
                ));
            }
        }
        failures
    });
    say(&format!(
        "{why} holding {} VIP(s): {} removed in {:.1} ms",
        held.len(),
        held.iter()
            .map(|v| format!("{}/{}", v.addr, v.prefix))
            .collect::<Vec<_>>()
            .join(" "),
        started.elapsed().as_secs_f64() * 1000.0
    ));
    failures == 0
}

fn fail(why: &str) -> ExitCode {
    say(why);
    ExitCode::FAILURE
}

/// A line on stderr (shared with vigil's log); never panics, even when the
/// reader of stderr is gone with the main process.
fn say(what: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "vigil-guardian: {what}");
}
