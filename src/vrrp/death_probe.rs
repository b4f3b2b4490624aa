//! The death probe (`death_probe` in an instance's config): a Backup learns
//! that its Master's vigil is gone sooner than Master_Down_Interval.
//!
//! Every node with the probe on answers small UDP datagrams on one port
//! (the responder). A Backup sends one to its Master every `interval`
//! (the prober). While the Master's vigil runs, the port is bound, so its
//! kernel delivers the probe and the responder echoes it. Once the process
//! is gone (SIGKILL, a crash, an abort), the socket is closed with it and
//! the Master's kernel answers the next probe with ICMP "port unreachable",
//! which a connected UDP socket reports as `ECONNREFUSED`. That answer is
//! positive evidence: the host is up, and nothing of vigil is listening.
//!
//! Why this cannot make two Masters while the Master is alive:
//! - Only a refusal counts. A lost probe, a lost echo, a partition, a
//!   frozen process (SIGSTOP: the socket stays bound, the kernel queues the
//!   probe) or a dead host (nothing answers at all) give no verdict, and
//!   plain VRRP (Master_Down_Interval) decides, exactly as without the
//!   probe. Dropping every probe therefore changes nothing.
//! - A refusal counts only after the same Master has echoed (the watch is
//!   *armed*): a Master that never answered (keepalived, an older vigil,
//!   the probe off there, a firewall rejecting the port) is never declared
//!   dead by it.
//! - Two refusals in a row are needed (the second probe goes out at once),
//!   and the verdict disarms the watch until the next echo: a refusal from
//!   a live Master (a firewall rule added later, a forged ICMP) can cause
//!   at most one takeover, which the live Master's next advert undoes as
//!   any dual-master moment is undone (it outranks us, we yield).
//! - The verdict only moves the Backup's Master_Down_Timer closer (a
//!   Skew_Time over the probe interval); an advert from that Master in the
//!   meantime resets the timer, as every advert does.
//!
//! The kernel rate-limits ICMP errors per destination (net.ipv4.
//! icmp_ratelimit, a burst of about six): after many refusals in a short
//! time a verdict may take longer, and plain VRRP still applies.

use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::config::vrrp::DeathProbe;

/// "vigil death probe", version 1; then a token and a sequence number.
const MAGIC: [u8; 8] = *b"VGDPv1\0\0";
const PROBE_LEN: usize = 24;
/// Refusals in a row, with no echo between, that make a verdict.
const CONFIRMATIONS: u8 = 2;

/// What one probe's answer says about the watched Master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The responder echoed our probe: that vigil is alive.
    Echo,
    /// The Master's host said nothing listens on the port.
    Refused,
}

/// The pure decision: [`Answer`]s in, a verdict out. A lost probe is not
/// an answer and is never fed in.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct DeathWatch {
    armed: bool,
    refusals: u8,
}

impl DeathWatch {
    /// Returns `true` when the Master is confirmed gone.
    pub fn observe(&mut self, answer: Answer) -> bool {
        match answer {
            Answer::Echo => {
                self.armed = true;
                self.refusals = 0;
                false
            }
            Answer::Refused if !self.armed => false,
            Answer::Refused => {
                self.refusals += 1;
                if self.refusals < CONFIRMATIONS {
                    return false;
                }
                // One verdict per echo: a live Master that refuses (a
                // firewall, a forged ICMP) moves the VIP at most once.
                *self = DeathWatch::default();
                true
            }
        }
    }

    /// Whether the next probe should go out now rather than on the tick
    /// (a refusal waits for its confirmation).
    pub fn confirming(&self) -> bool {
        self.refusals > 0
    }
}

/// Counters for `/status` and `/metrics`.
#[derive(Debug, Default)]
pub struct ProbeCounters {
    pub sent: AtomicU64,
    pub echoes: AtomicU64,
    pub refusals: AtomicU64,
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

/// Binds the responder's socket on this node's advert source address.
/// Opened by the speaker, so a port in use fails the start with a clear
/// error. SO_REUSEPORT lets several instances (or two vigils on one host)
/// share the port: any bound socket keeps the kernel from refusing, which
/// errs on the side of no verdict.
pub(crate) fn bind_responder(source: IpAddr, ifindex: u32, port: u16) -> io::Result<UdpSocket> {
    let addr = socket_addr(source, port, ifindex);
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Echoes every well-formed probe to its sender, for as long as the
/// instance runs. The reply is the probe itself: no amplification.
pub(crate) async fn respond(socket: UdpSocket) {
    let mut buf = [0u8; 64];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) if n == PROBE_LEN && buf[..MAGIC.len()] == MAGIC => {
                let _ = socket.send_to(&buf[..n], from).await;
            }
            Ok(_) => {}
            // An ICMP error from a prober that went away: nothing to do.
            Err(e) => debug!("death probe responder: {e}"),
        }
    }
}

/// Probes whichever Master `targets` names (None while this node is not a
/// Backup following one) and sends its address on `verdicts` when it is
/// confirmed gone.
pub(crate) async fn probe(
    config: DeathProbe,
    source: IpAddr,
    ifindex: u32,
    mut targets: watch::Receiver<Option<IpAddr>>,
    verdicts: mpsc::Sender<IpAddr>,
    counters: Arc<ProbeCounters>,
) {
    let mut prober = Prober {
        token: fastrand::u64(..),
        seq: 0,
        counters,
    };
    loop {
        let target = *targets.borrow_and_update();
        let Some(master) = target else {
            if targets.changed().await.is_err() {
                return;
            }
            continue;
        };
        let socket = match connect(source, master, config.port, ifindex) {
            Ok(s) => s,
            Err(e) => {
                warn!(%master, "death probe: cannot open a socket to the master: {e}; plain VRRP timing applies");
                if targets.changed().await.is_err() {
                    return;
                }
                continue;
            }
        };
        debug!(%master, port = config.port, "death probe: watching the master");
        let mut watch = DeathWatch::default();
        let mut tick = tokio::time::interval(config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A refusal is confirmed by a probe sent at once, not a tick later.
        let mut confirm_now = false;
        let mut buf = [0u8; 64];
        loop {
            let answer = tokio::select! {
                biased;
                changed = targets.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
                got = socket.recv(&mut buf) => match got {
                    Ok(n) if prober.is_echo(&buf[..n]) => Some(Answer::Echo),
                    Ok(_) => None,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Some(Answer::Refused),
                    Err(_) => None,
                },
                _ = std::future::ready(()), if confirm_now => {
                    confirm_now = false;
                    prober.send(&socket).await
                }
                _ = tick.tick() => prober.send(&socket).await,
            };
            let Some(answer) = answer else { continue };
            let gone = prober.count(&mut watch, answer);
            confirm_now = watch.confirming();
            if gone {
                info!(%master, port = config.port, "death probe: the master's host refused the probe twice after answering it; its vigil is gone");
                if verdicts.send(master).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// One Backup's probes: a token random per task, so an echo is ours.
struct Prober {
    token: u64,
    seq: u64,
    counters: Arc<ProbeCounters>,
}

impl Prober {
    fn is_echo(&self, datagram: &[u8]) -> bool {
        datagram.len() == PROBE_LEN
            && datagram[..MAGIC.len()] == MAGIC
            && datagram[8..16] == self.token.to_be_bytes()
    }

    /// Sends one probe. A pending ICMP error surfaces here as well as on
    /// `recv`: that is an answer too.
    async fn send(&mut self, socket: &UdpSocket) -> Option<Answer> {
        self.seq += 1;
        let mut probe = [0u8; PROBE_LEN];
        probe[..8].copy_from_slice(&MAGIC);
        probe[8..16].copy_from_slice(&self.token.to_be_bytes());
        probe[16..].copy_from_slice(&self.seq.to_be_bytes());
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        match socket.send(&probe).await {
            Ok(_) => None,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Some(Answer::Refused),
            Err(_) => None,
        }
    }

    fn count(&self, watch: &mut DeathWatch, answer: Answer) -> bool {
        let c = &self.counters;
        match answer {
            Answer::Echo => c.echoes.fetch_add(1, Ordering::Relaxed),
            Answer::Refused => c.refusals.fetch_add(1, Ordering::Relaxed),
        };
        let gone = watch.observe(answer);
        if gone {
            c.verdicts.fetch_add(1, Ordering::Relaxed);
        }
        gone
    }
}

fn connect(source: IpAddr, master: IpAddr, port: u16, ifindex: u32) -> io::Result<UdpSocket> {
    let local = socket_addr(source, 0, ifindex);
    let socket = std::net::UdpSocket::bind(local)?;
    socket.connect(socket_addr(master, port, ifindex))?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The reference: a verdict exactly when the last two answers are
    /// refusals, an echo came before them, and no verdict was given since
    /// that echo.
    fn oracle(answers: &[Answer]) -> Vec<bool> {
        let mut out = vec![];
        let mut echo_since_verdict = false;
        let mut refusals_since_echo = 0;
        for a in answers {
            match a {
                Answer::Echo => {
                    echo_since_verdict = true;
                    refusals_since_echo = 0;
                    out.push(false);
                }
                Answer::Refused => {
                    refusals_since_echo += 1;
                    let dead = echo_since_verdict && refusals_since_echo == 2;
                    if dead {
                        echo_since_verdict = false;
                    }
                    out.push(dead);
                }
            }
        }
        out
    }

    #[test]
    fn every_answer_sequence_up_to_twelve_matches_the_reference() {
        for len in 0..=12u32 {
            for bits in 0..(1u32 << len) {
                let answers: Vec<Answer> = (0..len)
                    .map(|i| {
                        if bits >> i & 1 == 1 {
                            Answer::Refused
                        } else {
                            Answer::Echo
                        }
                    })
                    .collect();
                let mut w = DeathWatch::default();
                let got: Vec<bool> = answers.iter().map(|a| w.observe(*a)).collect();
                assert_eq!(got, oracle(&answers), "{answers:?}");
            }
        }
    }

    #[test]
    fn a_master_that_never_echoed_is_never_declared_gone() {
        let mut w = DeathWatch::default();
        for _ in 0..100 {
            assert!(!w.observe(Answer::Refused));
        }
    }

    #[test]
    fn one_refusal_is_not_death_and_asks_for_a_confirmation() {
        let mut w = DeathWatch::default();
        w.observe(Answer::Echo);
        assert!(!w.observe(Answer::Refused));
        assert!(w.confirming());
        assert!(!w.observe(Answer::Echo));
        assert!(!w.confirming());
        assert!(!w.observe(Answer::Refused));
        assert!(w.observe(Answer::Refused));
        // Disarmed until the next echo.
        assert!(!w.observe(Answer::Refused));
        assert!(!w.observe(Answer::Refused));
    }

    #[tokio::test]
    async fn a_closed_port_on_a_live_host_is_refused_and_a_bound_one_echoes() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let responder = bind_responder(lo, 0, 0).unwrap();
        let port = responder.local_addr().unwrap().port();
        let serving = tokio::spawn(respond(responder));
        let (targets_tx, targets) = watch::channel(Some(lo));
        let (verdicts_tx, mut verdicts) = mpsc::channel(1);
        let counters = Arc::new(ProbeCounters::default());
        let config = DeathProbe {
            port,
            interval: Duration::from_millis(5),
        };
        let prober = tokio::spawn(probe(config, lo, 0, targets, verdicts_tx, counters.clone()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while counters.echoes.load(Ordering::Relaxed) < 3 {
            assert!(tokio::time::Instant::now() < deadline, "no echo");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(verdicts.try_recv().is_err(), "alive, yet declared gone");
        // The responder goes away; the kernel now refuses the port.
        serving.abort();
        let _ = serving.await;
        let gone = tokio::time::timeout(Duration::from_secs(5), verdicts.recv())
            .await
            .expect("no verdict within 5 s")
            .unwrap();
        assert_eq!(gone, lo);
        assert!(counters.refusals.load(Ordering::Relaxed) >= 2);
        drop(targets_tx);
        let _ = prober.await;
    }
}
