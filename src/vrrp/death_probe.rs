//! The death probe (`death_probe` in an instance's config): a Backup learns
//! that its Master's vigil is gone well before Master_Down_Interval.
//!
//! Every node with the probe on listens on one TCP port (the *listener*).
//! A Backup holds one idle connection to its Master's listener (the
//! *watch*). When the Master's process dies (SIGKILL, a crash, an OOM
//! kill), its kernel closes that connection at once: the Backup reads
//! end-of-stream (or a reset). The Backup then connects again, twice: if
//! the Master's kernel answers both with a reset ("connection refused"),
//! the host is up and nothing of vigil listens there any more. That is the
//! verdict, and the Backup takes over after a Skew_Time over
//! [`SKEW_WINDOW`] instead of waiting out Master_Down_Interval.
//!
//! TCP rather than UDP + ICMP "port unreachable": the kernel rate-limits
//! ICMP errors (one a second per peer after a burst of six, and 1,000 a
//! second for the whole host, which a UDP service's clients can use up),
//! so a verdict would come late exactly when a node fails repeatedly. A
//! reset to a SYN is not rate-limited, and the close at exit needs no
//! periodic traffic at all.
//!
//! Why this cannot make two Masters while the Master is alive:
//! - **Only a refusal counts, never silence.** A lost packet, a partition,
//!   a frozen process (SIGSTOP, a stalled host: its sockets stay open, so
//!   nothing is closed and its kernel still accepts connections) or a
//!   powered-off host (nothing answers) give no verdict, and plain VRRP
//!   decides, exactly as with the probe off. A connection that times out
//!   (TCP keepalive) is not a close. Dropping every probe packet therefore
//!   changes nothing.
//! - **Only an armed watch counts.** The Backup must have been connected
//!   to that Master's listener (proof that a vigil with the probe listens
//!   there) and seen the connection closed. A Master that never accepted
//!   (keepalived, a vigil with the probe off, a firewall rejecting the
//!   port) is never declared dead.
//! - **Two refusals in a row** after the close, and the verdict disarms the
//!   watch until the next connection: a live Master whose port starts
//!   being refused (a firewall rule added later, forged resets) causes at
//!   most one takeover, which its next advert undoes as any dual-master
//!   moment is undone (it outranks us, we yield).
//! - **The verdict only moves the Backup's Master_Down_Timer closer**; an
//!   advert from that Master in the meantime resets it, as every advert
//!   does.

use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::config::vrrp::DeathProbe;

/// The window a verdict's Skew_Time is computed over: (256 - priority) /
/// 256 of it, so that with several Backups the highest priority still
/// goes first, a few milliseconds apart.
pub const SKEW_WINDOW: Duration = Duration::from_millis(10);
/// Refusals in a row, after a close, that make a verdict.
const CONFIRMATIONS: u8 = 2;
/// Connections a listener keeps at once (one per Backup is the need; the
/// cap keeps strangers from using up file descriptors).
const MAX_WATCHERS: usize = 32;
/// How long a connection attempt may take before it counts as silence.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Retry delays while the Master does not accept: from the first to the
/// last, doubling.
const RETRY_FIRST: Duration = Duration::from_millis(10);
const RETRY_LAST: Duration = Duration::from_secs(1);

/// What the watch saw of the Master's listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// A connection was established: that vigil listens.
    Connected,
    /// The established connection was closed by the other side (end of
    /// stream, or a reset).
    Closed,
    /// A connection attempt was refused (a reset to the SYN).
    Refused,
}

/// The pure decision: what was [`Seen`] in, a verdict out. Timeouts and
/// lost packets are never fed in: silence is not evidence.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct DeathWatch {
    armed: bool,
    closed: bool,
    refusals: u8,
}

impl DeathWatch {
    /// Returns `true` when the Master is confirmed gone.
    pub fn observe(&mut self, seen: Seen) -> bool {
        match seen {
            Seen::Connected => {
                *self = DeathWatch {
                    armed: true,
                    ..DeathWatch::default()
                };
                false
            }
            Seen::Closed => {
                self.closed = self.armed;
                self.refusals = 0;
                false
            }
            Seen::Refused if !self.closed => false,
            Seen::Refused => {
                self.refusals += 1;
                if self.refusals < CONFIRMATIONS {
                    return false;
                }
                // One verdict per connection: a live Master that refuses
                // (a firewall, forged resets) moves the VIP at most once.
                *self = DeathWatch::default();
                true
            }
        }
    }
}

/// Counters for `/status` and `/metrics`.
#[derive(Debug, Default)]
pub struct ProbeCounters {
    /// Connections to the Master's listener established.
    pub connected: AtomicU64,
    /// Established connections the Master's side closed.
    pub closed: AtomicU64,
    /// Connection attempts refused.
    pub refused: AtomicU64,
    /// "The Master's vigil is gone".
    pub verdicts: AtomicU64,
}

fn socket_addr(ip: IpAddr, port: u16, ifindex: u32) -> SocketAddr {
    match ip {
        // A link-local address (VRRPv3 over IPv6 adverts come from one)
        // means nothing without its interface.
        IpAddr::V6(v6) if v6.is_unicast_link_local() => {
            SocketAddr::V6(SocketAddrV6::new(v6, port, 0, ifindex))
        }
        _ => SocketAddr::new(ip, port),
    }
}

/// Dead peers' connections are found and dropped (never a verdict).
fn keepalive(socket: SockRef<'_>) -> io::Result<()> {
    socket.set_tcp_keepalive(
        &TcpKeepalive::new()
            .with_time(Duration::from_secs(1))
            .with_interval(Duration::from_secs(1))
            .with_retries(3),
    )
}

/// Binds the listener on this node's advert source address. Opened by
/// the speaker, so a port in use fails the start with a clear error.
/// SO_REUSEPORT lets several instances (or two vigils on one host) share
/// the port: any listening socket keeps the kernel from refusing, which
/// errs on the side of no verdict.
pub(crate) fn bind_listener(source: IpAddr, ifindex: u32, port: u16) -> io::Result<TcpListener> {
    let addr = socket_addr(source, port, ifindex);
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(MAX_WATCHERS as i32)?;
    TcpListener::from_std(socket.into())
}

/// Accepts the Backups' connections and holds them open for as long as
/// the instance runs. When this future is dropped (the instance stops) or
/// the process dies, the kernel closes them: that close is the signal.
pub(crate) async fn listen(listener: TcpListener) {
    let mut held = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) if held.len() < MAX_WATCHERS => {
                    let _ = keepalive(SockRef::from(&stream));
                    held.spawn(hold(stream));
                }
                Ok(_) => {} // over the cap: closed at once
                Err(e) => {
                    debug!("death probe listener: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = held.join_next() => {}
        }
    }
}

/// Reads (and discards) until the Backup goes away.
async fn hold(mut stream: TcpStream) {
    let mut buf = [0u8; 64];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// Watches whichever Master `targets` names (None while this node is not a
/// Backup following one) and sends its address on `verdicts` when it is
/// confirmed gone.
pub(crate) async fn watch(
    config: DeathProbe,
    source: IpAddr,
    ifindex: u32,
    mut targets: watch::Receiver<Option<IpAddr>>,
    verdicts: mpsc::Sender<IpAddr>,
    counters: Arc<ProbeCounters>,
) {
    loop {
        let target = *targets.borrow_and_update();
        let Some(master) = target else {
            if targets.changed().await.is_err() {
                return;
            }
            continue;
        };
        debug!(%master, port = config.port, "death probe: watching the master");
        let mut watcher = Watcher {
            addr: socket_addr(master, config.port, ifindex),
            local: socket_addr(source, 0, ifindex),
            counters: &counters,
            state: DeathWatch::default(),
        };
        tokio::select! {
            changed = targets.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = watcher.until_gone() => {
                info!(%master, port = config.port, "death probe: the master closed our connection and its host refuses new ones; its vigil is gone");
                if verdicts.send(master).await.is_err() {
                    return;
                }
                // Nothing more to say about this Master until it changes.
                if targets.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

struct Watcher<'a> {
    addr: SocketAddr,
    local: SocketAddr,
    counters: &'a ProbeCounters,
    state: DeathWatch,
}

impl Watcher<'_> {
    /// Returns once the Master is confirmed gone; runs forever otherwise.
    async fn until_gone(&mut self) {
        let mut retry = RETRY_FIRST;
        loop {
            let Some(mut stream) = self.connect().await else {
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_LAST);
                continue;
            };
            retry = RETRY_FIRST;
            let mut buf = [0u8; 64];
            let closed = loop {
                match stream.read(&mut buf).await {
                    Ok(0) => break true,
                    Ok(_) => {}
                    Err(e) => {
                        break matches!(
                            e.kind(),
                            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                        );
                    }
                }
            };
            drop(stream);
            if !closed {
                // A keepalive timeout or another error: silence, not a
                // close. Connect again; no verdict can follow from it.
                self.state = DeathWatch::default();
                continue;
            }
            self.counters.closed.fetch_add(1, Ordering::Relaxed);
            self.state.observe(Seen::Closed);
            // Confirm at once: a refusal is the answer of a live host
            // with nothing listening.
            for _ in 0..CONFIRMATIONS {
                match self.connect_once().await {
                    Ok(stream) => {
                        // It listens again (a restart, a reload): alive.
                        self.counters.connected.fetch_add(1, Ordering::Relaxed);
                        self.state.observe(Seen::Connected);
                        drop(stream);
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        self.counters.refused.fetch_add(1, Ordering::Relaxed);
                        if self.state.observe(Seen::Refused) {
                            self.counters.verdicts.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                    Err(_) => break, // silence: no verdict
                }
            }
        }
    }

    /// One connection, counted and fed to the watch; `None` when refused
    /// or silent.
    async fn connect(&mut self) -> Option<TcpStream> {
        match self.connect_once().await {
            Ok(stream) => {
                self.counters.connected.fetch_add(1, Ordering::Relaxed);
                self.state.observe(Seen::Connected);
                Some(stream)
            }
            Err(e) => {
                if e.kind() == io::ErrorKind::ConnectionRefused {
                    self.counters.refused.fetch_add(1, Ordering::Relaxed);
                    self.state.observe(Seen::Refused);
                }
                None
            }
        }
    }

    async fn connect_once(&self) -> io::Result<TcpStream> {
        let socket = match self.addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.bind(self.local)?;
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(self.addr))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        if let Err(e) = keepalive(SockRef::from(&stream)) {
            warn!("death probe: cannot set TCP keepalive: {e}");
        }
        Ok(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Seen; 3] = [Seen::Connected, Seen::Closed, Seen::Refused];

    /// The reference, written the other way round: a verdict exactly when
    /// this refusal is the second in a row right after a close, a
    /// connection came before that close, and no verdict was given since
    /// that connection.
    fn oracle(seen: &[Seen]) -> Vec<bool> {
        let mut out = vec![];
        let mut last_connect: Option<usize> = None;
        let mut last_verdict: Option<usize> = None;
        for (i, s) in seen.iter().enumerate() {
            let dead = *s == Seen::Refused
                && i >= 2
                && seen[i - 1] == Seen::Refused
                && seen[i - 2] == Seen::Closed
                && last_connect.is_some_and(|c| c < i - 2 && last_verdict.is_none_or(|v| v < c));
            if *s == Seen::Connected {
                last_connect = Some(i);
            }
            if dead {
                last_verdict = Some(i);
            }
            out.push(dead);
        }
        out
    }

    #[test]
    fn every_sequence_up_to_nine_matches_the_reference() {
        for len in 0..=9u32 {
            for n in 0..3u32.pow(len) {
                let seen: Vec<Seen> = (0..len)
                    .map(|i| ALL[(n / 3u32.pow(i) % 3) as usize])
                    .collect();
                let mut w = DeathWatch::default();
                let got: Vec<bool> = seen.iter().map(|s| w.observe(*s)).collect();
                assert_eq!(got, oracle(&seen), "{seen:?}");
            }
        }
    }

    #[test]
    fn a_master_that_never_accepted_is_never_declared_gone() {
        let mut w = DeathWatch::default();
        for s in [Seen::Closed, Seen::Refused, Seen::Refused, Seen::Refused] {
            assert!(!w.observe(s));
        }
    }

    #[test]
    fn one_refusal_is_not_death_and_a_verdict_disarms() {
        let mut w = DeathWatch::default();
        w.observe(Seen::Connected);
        w.observe(Seen::Closed);
        assert!(!w.observe(Seen::Refused));
        assert!(w.observe(Seen::Refused));
        // Disarmed until the next connection.
        for s in [Seen::Closed, Seen::Refused, Seen::Refused] {
            assert!(!w.observe(s));
        }
    }

    #[tokio::test]
    async fn a_closed_listener_on_a_live_host_is_a_verdict_and_a_live_one_is_not() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let listener = bind_listener(lo, 0, 0).unwrap();
        let port = listener.local_addr().unwrap().port();
        let serving = tokio::spawn(listen(listener));
        let (targets_tx, targets) = watch::channel(Some(lo));
        let (verdicts_tx, mut verdicts) = mpsc::channel(1);
        let counters = Arc::new(ProbeCounters::default());
        let watching = tokio::spawn(watch(
            DeathProbe { port },
            lo,
            0,
            targets,
            verdicts_tx,
            counters.clone(),
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while counters.connected.load(Ordering::Relaxed) < 1 {
            assert!(tokio::time::Instant::now() < deadline, "never connected");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(verdicts.try_recv().is_err(), "alive, yet declared gone");
        // The listener and its connections go away, as at process exit.
        serving.abort();
        let _ = serving.await;
        let gone = tokio::time::timeout(Duration::from_secs(5), verdicts.recv())
            .await
            .expect("no verdict within 5 s")
            .unwrap();
        assert_eq!(gone, lo);
        assert_eq!(counters.closed.load(Ordering::Relaxed), 1);
        assert_eq!(counters.refused.load(Ordering::Relaxed), 2);
        drop(targets_tx);
        let _ = watching.await;
    }
}
