//! The crash guardian: a small process that removes this node's VIPs when
//! the main process dies without releasing them (SIGKILL, an abort, the
//! OOM killer). Left on the interface, a dead node's VIP keeps being
//! answered by its kernel (ARP / ND), and clients that re-resolve it land
//! on a dead host (keepalived issues #65, #2361).
//!
//! The main process starts `vigil __guardian` ([`serve`]) with a pipe as
//! its stdin and shares nothing else with it; every VIP change goes down
//! the pipe ([`wire`]) before the VIP is added and after it is removed.
//! When the main process dies, the kernel closes its end of the pipe and
//! the guardian removes what is still held, within milliseconds.
//!
//! If the guardian dies, the main process notices at once (a pidfd
//! becomes readable), starts a new one and tells it what is held. The
//! stale-VIP cleanup at start stays as the second line of defence (a
//! `kill -9` of the whole process group or cgroup kills both).

mod process;
pub mod wire;

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tracing::{error, info, warn};

pub use process::serve;
use wire::{Held, HeldVip, Line};

/// The subcommand that runs [`serve`] (hidden from `vigil --help`).
pub const SUBCOMMAND: &str = "__guardian";

static EXECUTABLE: OnceLock<PathBuf> = OnceLock::new();

/// The guardian of this process, for the panic hook.
static CURRENT: Mutex<Option<Weak<Inner>>> = Mutex::new(None);

/// Every panic ends the process: built with `panic = "abort"`, or after
/// [`abort_on_panic`].
static PANIC_ABORTS: AtomicBool = AtomicBool::new(cfg!(panic = "abort"));

/// Lets VRRP speakers of this process start a guardian by running
/// `executable __guardian`. `vigil run` passes `/proc/self/exe`, which
/// still names the running binary after a package upgrade replaced the
/// file. Without this call (the library in a test, say) there is none.
pub fn enable(executable: impl Into<PathBuf>) {
    if EXECUTABLE.set(executable.into()).is_err() {
        return;
    }
    // When a panic ends the process, the guardian is told before the
    // panic is reported: the report can take seconds (RUST_BACKTRACE=1
    // symbolizes a backtrace), and the VIPs should not wait for it.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if PANIC_ABORTS.load(Ordering::Relaxed) {
            tell_dying();
        }
        report(info);
    }));
}

/// From now on a panic aborts the process after being reported, as under
/// `panic = "abort"` (the `/debug/crash` test hook).
pub fn abort_on_panic() {
    PANIC_ABORTS.store(true, Ordering::Relaxed);
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::abort();
    }));
}

/// Tells the guardian that this process is about to die. From a panic
/// hook: never blocks on a lock the panicking thread may hold.
fn tell_dying() {
    let current = match CURRENT.try_lock() {
        Ok(c) => c.as_ref().and_then(Weak::upgrade),
        Err(_) => None,
    };
    let Some(inner) = current else { return };
    if let Ok(mut state) = inner.state.try_lock() {
        if let Some(running) = state.running.as_mut() {
            let _ = running.stdin.write_all(Line::Dying.to_string().as_bytes());
        }
    }
}

/// The main process's handle on its guardian. Cheap to clone; the guardian
/// is told to finish (its pipe closed) when the last clone goes.
#[derive(Debug, Clone)]
pub struct Guardian {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    executable: PathBuf,
    state: Mutex<State>,
    restarts: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    held: Held,
    running: Option<Running>,
}

#[derive(Debug)]
struct Running {
    child: Child,
    stdin: ChildStdin,
}

/// What `/status` shows of the guardian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardianStatus {
    /// None while it could not be started (retried every second).
    pub pid: Option<u32>,
    /// New guardians started after the first one died.
    pub restarts: u64,
    pub held: usize,
}

impl Guardian {
    /// Starts the guardian if [`enable`] was called. Must run inside tokio
    /// (a task watches the guardian).
    pub fn start_if_enabled() -> std::io::Result<Option<Guardian>> {
        let Some(executable) = EXECUTABLE.get() else {
            return Ok(None);
        };
        let running = spawn(executable)?;
        info!(pid = running.child.id(), "VIP guardian started");
        let guardian = Guardian {
            inner: Arc::new(Inner {
                executable: executable.clone(),
                state: Mutex::new(State {
                    held: Held::default(),
                    running: Some(running),
                }),
                restarts: AtomicU64::new(0),
            }),
        };
        tokio::spawn(watch(Arc::downgrade(&guardian.inner)));
        *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::downgrade(&guardian.inner));
        Ok(Some(guardian))
    }

    /// Called before `vip` is added.
    pub fn hold(&self, vip: HeldVip) {
        self.send(Line::Hold(vip));
    }

    /// Called after `vip` was removed.
    pub fn release(&self, vip: HeldVip) {
        self.send(Line::Release(vip));
    }

    pub fn status(&self) -> GuardianStatus {
        let state = lock(&self.inner.state);
        GuardianStatus {
            pid: state.running.as_ref().map(|r| r.child.id()),
            restarts: self.inner.restarts.load(Ordering::Relaxed),
            held: state.held.len(),
        }
    }

    fn send(&self, line: Line) {
        let mut state = lock(&self.inner.state);
        state.held.apply(line);
        let Some(running) = state.running.as_mut() else {
            // None now; the next one is told everything (`replay`).
            return;
        };
        // One short line is far below PIPE_BUF: written whole, and the
        // guardian reads as fast as it is told, so this never blocks.
        if let Err(e) = running.stdin.write_all(line.to_string().as_bytes()) {
            warn!("VIP guardian unreachable ({e}); starting a new one");
            self.inner.restart(&mut state);
        }
    }
}

impl Inner {
    /// Replaces the guardian (the old one is gone or cannot be told) and
    /// brings the new one up to date.
    fn restart(&self, state: &mut State) {
        if let Some(mut old) = state.running.take() {
            let _ = old.child.kill();
            let _ = old.child.wait();
        }
        let mut running = match spawn(&self.executable) {
            Ok(r) => r,
            Err(e) => {
                error!(
                    "cannot start a VIP guardian: {e}; a crash now would leave the VIPs on the \
                     interface until the next start (retrying every second)"
                );
                return;
            }
        };
        if let Err(e) = running.stdin.write_all(state.held.replay().as_bytes()) {
            error!("the new VIP guardian is unreachable: {e}");
        }
        self.restarts.fetch_add(1, Ordering::Relaxed);
        info!(
            pid = running.child.id(),
            held = state.held.len(),
            "VIP guardian restarted"
        );
        state.running = Some(running);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the pipe tells the guardian to finish; it removes what
        // is still held (nothing after a clean resign). Reaped off-thread.
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(Running { mut child, stdin }) = state.running.take() {
            drop(stdin);
            std::thread::spawn(move || child.wait());
        }
    }
}

fn spawn(executable: &PathBuf) -> std::io::Result<Running> {
    let mut child = Command::new(executable)
        .arg0("vigil-guardian")
        .arg(SUBCOMMAND)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("no pipe to the guardian"))?;
    Ok(Running { child, stdin })
}

/// Restarts the guardian whenever it exits, for as long as the handle
/// lives.
async fn watch(inner: Weak<Inner>) {
    loop {
        let pid = match inner.upgrade() {
            Some(i) => lock(&i.state).running.as_ref().map(|r| r.child.id()),
            None => return,
        };
        match pid {
            Some(pid) => exited(pid).await,
            None => tokio::time::sleep(Duration::from_secs(1)).await,
        }
        let Some(i) = inner.upgrade() else { return };
        let mut state = lock(&i.state);
        let gone = match state.running.as_mut() {
            Some(r) if Some(r.child.id()) == pid => match r.child.try_wait() {
                Ok(Some(status)) => Some(status.to_string()),
                Ok(None) => None,
                Err(e) => Some(e.to_string()),
            },
            Some(_) => None,
            None => Some("not running".into()),
        };
        if let Some(how) = gone {
            warn!("VIP guardian exited ({how}); starting a new one");
            i.restart(&mut state);
        }
    }
}

/// Resolves when process `pid` (our child, not yet reaped, so the pid
/// cannot be reused) has exited: its pidfd turns readable. Kernels without
/// pidfd_open (before 5.3) are polled instead.
async fn exited(pid: u32) {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd >= 0 {
        // SAFETY: the kernel just returned this descriptor; we own it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays
        // open and the same file for as long as it is registered.
        let registered = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        };
        if let Ok(fd) = registered {
            let _ = fd.readable().await;
            return;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
