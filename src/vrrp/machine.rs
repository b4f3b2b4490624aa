//! The VRRP state machine of RFC 5798 §6.4 (and RFC 3768 §6.4 for v2),
//! plus the Fault state keepalived users know.
//!
//! Pure: [`Machine::step`] takes an [`Event`] and the current time and
//! returns the [`Action`]s to perform; it owns no socket and reads no clock.
//! Time is a `Duration` since any fixed origin the caller picks (the
//! speaker uses its start instant; the simulation uses virtual time).
//! [`Machine::next_deadline`] tells the caller when to deliver
//! [`Event::Timer`].
//!
//! Deviations from the RFC text, on purpose:
//! - Accept_Mode is always on (RFC 5798 §6.1): the VIP exists to receive
//!   traffic. keepalived does the same by default, for v2 too.
//! - A Master that hears a lower priority re-advertises at once (RFC 9568
//!   §6.4.3; keepalived's default) and re-announces its addresses once the
//!   other side has yielded, which heals client ARP caches after a split
//!   brain.
//! - Taking over from a live lower-priority Master (preemption), the
//!   addresses are announced once it has yielded, not at once: its
//!   connections close cleanly instead of being reset (see
//!   [`Action::AnnounceAfterYield`]).
//! - Fast preemption: a preempting Backup that hears a lower priority does
//!   not wait out the whole Master_Down_Interval (RFC 5798 §6.4.2 says
//!   "discard" and let the timer run); it takes over after Skew_Time, the
//!   same convergence rule the RFC uses for a priority-0 advert. This is
//!   what makes a health-driven priority drop move the VIP at once. With
//!   `preempt_delay` it waits that long after first hearing the lower
//!   priority. A lower-priority master that falls silent is still replaced
//!   at Master_Down_Interval after its last advert. Only the Master we
//!   follow can trigger it; a lower priority from any other router is
//!   discarded, as the RFC says.
//! - Owner adverts are processed, not discarded (RFC 9568 erratum 8298), so
//!   two routers configured as owner still elect one Master.

use std::net::IpAddr;
use std::time::Duration;

use super::timers::{Centiseconds, TimerRules, master_down_interval, skew_time};

/// Priority of the address owner (RFC 5798 §5.2.4).
pub const OWNER_PRIORITY: u8 = 255;
/// Priority a resigning Master sends (RFC 5798 §5.2.4).
pub const RESIGN_PRIORITY: u8 = 0;

/// What the machine needs to know about its own router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub rules: TimerRules,
    /// Effective priority, 1..=255 (255 only for the owner).
    pub priority: u8,
    /// Advertisement_Interval (RFC 5798 §6.1).
    pub advert_interval: Centiseconds,
    /// Preempt_Mode (RFC 5798 §6.1); `false` is keepalived's `nopreempt`.
    pub preempt: bool,
    /// Minimum time a lower-priority Master is tolerated before preempting.
    pub preempt_delay: Duration,
    /// Our primary address: IPv4 primary or IPv6 link-local (§6.1), used to
    /// break priority ties (§6.4.3).
    pub primary_address: IpAddr,
}

/// The externally visible state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Initialize,
    Backup,
    Master,
    /// Not participating: a tracked interface or check failed, or the node
    /// was put in standby. Sends nothing, holds no VIP.
    Fault,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Initialize => "init",
            State::Backup => "backup",
            State::Master => "master",
            State::Fault => "fault",
        }
    }
}

/// Why a transition happened (RFC 8347 `new-master-reason` where it fits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransitionReason {
    /// Initialize → Backup on startup.
    Startup,
    /// Initialize → Master: we own the addresses (priority 255).
    AddressOwner,
    /// Backup → Master: no advert for Master_Down_Interval (`no-response`).
    MasterDown,
    /// Backup → Master after Skew_Time: the Master sent priority 0.
    MasterResigned,
    /// Backup → Master: the Master's host said its vigil is gone (the
    /// optional death probe, `vrrp::death_probe`).
    MasterGone,
    /// Backup → Master: the Master had a lower priority (`preempted`).
    Preempted,
    /// Master → Backup: heard a higher priority, or equal priority from a
    /// higher address (`priority`).
    HigherPriority,
    /// → Initialize: shutdown / resign.
    Shutdown,
    /// → Fault.
    Fault,
    /// Fault → Backup/Master.
    FaultCleared,
}

impl TransitionReason {
    pub fn describe(self) -> &'static str {
        match self {
            TransitionReason::Startup => "startup",
            TransitionReason::AddressOwner => "address owner (priority 255)",
            TransitionReason::MasterDown => "no advertisement within Master_Down_Interval",
            TransitionReason::MasterResigned => "master resigned (priority 0)",
            TransitionReason::MasterGone => {
                "the master's vigil is gone (its host refused the death probe)"
            }
            TransitionReason::Preempted => "preempted a lower-priority master",
            TransitionReason::HigherPriority => "higher-priority advertisement received",
            TransitionReason::Shutdown => "shutdown",
            TransitionReason::Fault => "fault",
            TransitionReason::FaultCleared => "fault cleared",
        }
    }
}

/// An input to the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// RFC 5798 §6.4.1 Startup.
    Startup,
    /// RFC 5798 §6.4.2/§6.4.3 Shutdown: a Master resigns with priority 0.
    Shutdown,
    /// A deadline returned by [`Machine::next_deadline`] has passed.
    Timer,
    /// An advert that passed every receive check (`receive.rs`).
    Advert {
        from: IpAddr,
        priority: u8,
        interval: Centiseconds,
    },
    /// The Master at `from` is confirmed dead: its host closed the death
    /// probe's connection and refuses new ones. A Backup following that
    /// Master takes over after a Skew_Time computed over `within` instead
    /// of the advert interval, so that with several Backups the highest
    /// priority still goes first.
    MasterGone { from: IpAddr, within: Duration },
    /// Tracking changed the effective priority.
    PriorityChanged(u8),
    /// A tracked interface/check failed, or standby was requested.
    FaultRaised,
    /// All faults are gone.
    FaultCleared,
}

/// What the caller must do, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send an ADVERTISEMENT with this priority (0 = resign).
    SendAdvert { priority: u8 },
    /// Add the virtual addresses to the interface.
    AddVips,
    /// Remove them (always after [`Action::ReleaseConnections`]).
    RemoveVips,
    /// Close the proxy's connections to the VIPs and hold new ones, while
    /// still Master and before the priority-0 advert: a Backup takes over
    /// Skew_Time after that advert and announces at once, so whatever is
    /// still served here then is reset by its kernel (the clients' next
    /// packets go to it). A planned stop has drained the proxy already;
    /// a fault has not.
    ReleaseConnections,
    /// Another Master took over while we are alive: let go of the
    /// addresses as a release does, but keep them until that Master
    /// announces them (its [`Action::AnnounceAfterYield`] window), so that
    /// clients never point at a node that no longer has them.
    YieldVips,
    /// Start (or restart) gratuitous ARP / unsolicited NA for the VIPs.
    Announce,
    /// Announce once the other Master has had time to let go of the VIPs
    /// (the caller's yield window). Used when the other Master is alive:
    /// we preempted it, or heard it in a dual-master moment. Until it has
    /// closed its connections and removed the addresses, its clients stay
    /// with it; announcing at once would send their next packets to us,
    /// and our kernel would reset connections it never saw.
    AnnounceAfterYield,
    /// Stop any announcement still scheduled.
    StopAnnouncing,
    /// The state changed (for status, logs and notify hooks).
    Transition {
        from: State,
        to: State,
        reason: TransitionReason,
    },
}

/// The Master_Down_Timer of a Backup (RFC 5798 §6.2) and why it is set
/// to what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MasterDownTimer {
    deadline: Duration,
    cause: TransitionReason,
}

/// A preempting Backup's view of a lower-priority Master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LowerMaster {
    since: Duration,
    last_heard: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Inner {
    Initialize,
    Backup {
        timer: MasterDownTimer,
        /// Master_Adver_Interval, learned from the Master (v3, §6.4.2).
        master_adver_interval: Centiseconds,
        master: Option<(IpAddr, u8)>,
        lower: Option<LowerMaster>,
    },
    Master {
        /// Adver_Timer (RFC 5798 §6.2).
        adver_deadline: Duration,
    },
    Fault,
}

/// One virtual router's protocol state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    params: Params,
    inner: Inner,
    /// A fault is active; Startup and FaultCleared consult it.
    faulted: bool,
}

impl Machine {
    pub fn new(params: Params) -> Self {
        Self {
            params,
            inner: Inner::Initialize,
            faulted: false,
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn state(&self) -> State {
        match self.inner {
            Inner::Initialize => State::Initialize,
            Inner::Backup { .. } => State::Backup,
            Inner::Master { .. } => State::Master,
            Inner::Fault => State::Fault,
        }
    }

    /// The current Master's address and priority, when known.
    pub fn master(&self) -> Option<(IpAddr, u8)> {
        match &self.inner {
            Inner::Backup { master, .. } => *master,
            Inner::Master { .. } => Some((self.params.primary_address, self.params.priority)),
            _ => None,
        }
    }

    /// When [`Event::Timer`] must be delivered next, if at all.
    pub fn next_deadline(&self) -> Option<Duration> {
        match &self.inner {
            Inner::Backup { timer, .. } => Some(timer.deadline),
            Inner::Master { adver_deadline } => Some(*adver_deadline),
            Inner::Initialize | Inner::Fault => None,
        }
    }

    /// Applies `event` at time `now` and returns the actions to perform.
    pub fn step(&mut self, event: Event, now: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Startup => {
                if matches!(self.inner, Inner::Initialize) {
                    self.start(now, TransitionReason::Startup, &mut out);
                }
            }
            Event::Shutdown => self.shutdown(&mut out),
            Event::Timer => self.timer(now, &mut out),
            Event::Advert {
                from,
                priority,
                interval,
            } => self.advert(from, priority, interval, now, &mut out),
            Event::MasterGone { from, within } => self.master_gone(from, within, now),
            Event::PriorityChanged(p) => self.priority_changed(p, now, &mut out),
            Event::FaultRaised => {
                self.faulted = true;
                match self.inner {
                    Inner::Master { .. } => {
                        out.push(Action::ReleaseConnections);
                        // Resign so the backups take over after Skew_Time
                        // instead of Master_Down_Interval (the send may
                        // fail if the link itself is down; that's fine).
                        out.push(Action::SendAdvert {
                            priority: RESIGN_PRIORITY,
                        });
                        out.push(Action::StopAnnouncing);
                        out.push(Action::RemoveVips);
                        self.go(
                            State::Master,
                            Inner::Fault,
                            TransitionReason::Fault,
                            &mut out,
                        );
                    }
                    Inner::Backup { .. } => {
                        self.go(
                            State::Backup,
                            Inner::Fault,
                            TransitionReason::Fault,
                            &mut out,
                        );
                    }
                    Inner::Initialize | Inner::Fault => {}
                }
            }
            Event::FaultCleared => {
                self.faulted = false;
                if matches!(self.inner, Inner::Fault) {
                    self.start(now, TransitionReason::FaultCleared, &mut out);
                }
            }
        }
        out
    }

    /// RFC 5798 §6.4.1: Initialize on Startup (also leaving Fault).
    fn start(&mut self, now: Duration, reason: TransitionReason, out: &mut Vec<Action>) {
        let from = self.state();
        if self.faulted {
            if from != State::Fault {
                self.go(from, Inner::Fault, TransitionReason::Fault, out);
            }
            return;
        }
        if self.params.priority == OWNER_PRIORITY {
            let reason = if reason == TransitionReason::Startup {
                TransitionReason::AddressOwner
            } else {
                reason
            };
            self.become_master(from, now, reason, out);
        } else {
            // "Set Master_Adver_Interval to Advertisement_Interval" and
            // "Set the Master_Down_Timer to Master_Down_Interval".
            let interval = self.params.advert_interval;
            let inner = Inner::Backup {
                timer: MasterDownTimer {
                    deadline: now + self.master_down_interval(interval),
                    cause: TransitionReason::MasterDown,
                },
                master_adver_interval: interval,
                master: None,
                lower: None,
            };
            self.go(from, inner, reason, out);
        }
    }

    fn shutdown(&mut self, out: &mut Vec<Action>) {
        let from = self.state();
        if from == State::Master {
            out.push(Action::ReleaseConnections);
            // §6.4.3 Shutdown: "Send an ADVERTISEMENT with Priority = 0".
            out.push(Action::SendAdvert {
                priority: RESIGN_PRIORITY,
            });
            out.push(Action::StopAnnouncing);
            out.push(Action::RemoveVips);
        }
        if from != State::Initialize {
            self.go(from, Inner::Initialize, TransitionReason::Shutdown, out);
        }
    }

    fn timer(&mut self, now: Duration, out: &mut Vec<Action>) {
        match self.inner {
            Inner::Backup { timer, .. } if now >= timer.deadline => {
                // §6.4.2: Master_Down_Timer fires → Master.
                self.become_master(State::Backup, now, timer.cause, out);
            }
            Inner::Master { adver_deadline } if now >= adver_deadline => {
                // §6.4.3: Adver_Timer fires → send, reset. From the
                // deadline, not from now: a timer delivered a little late
                // (the timer wheel's millisecond, a busy CPU) would
                // otherwise push every later advert back by as much, and
                // Backups would see gaps longer than the interval all the
                // time. After a stall longer than an interval, from now.
                let interval = self.params.advert_interval.as_duration();
                let next = adver_deadline + interval;
                self.inner = Inner::Master {
                    adver_deadline: if next > now { next } else { now + interval },
                };
                out.push(Action::SendAdvert {
                    priority: self.params.priority,
                });
            }
            _ => {}
        }
    }

    fn advert(
        &mut self,
        from: IpAddr,
        priority: u8,
        interval: Centiseconds,
        now: Duration,
        out: &mut Vec<Action>,
    ) {
        if from == self.params.primary_address {
            return; // our own advert, looped back
        }
        let ours = self.params.priority;
        let rules = self.params.rules;
        match &mut self.inner {
            Inner::Backup {
                timer,
                master_adver_interval,
                master,
                lower,
            } => {
                if priority == RESIGN_PRIORITY {
                    // §6.4.2: "Set the Master_Down_Timer to Skew_Time".
                    timer.deadline = now + skew_time(rules, ours, *master_adver_interval);
                    timer.cause = TransitionReason::MasterResigned;
                    *lower = None;
                } else if !self.params.preempt || priority >= ours {
                    // §6.4.2: learn Master_Adver_Interval (v3), recompute
                    // (RFC 9568 recomputes Skew_Time too, which we do since
                    // both derive from it), reset Master_Down_Timer.
                    if rules == TimerRules::V3 {
                        *master_adver_interval = interval;
                    }
                    timer.deadline =
                        now + master_down_interval(rules, ours, *master_adver_interval);
                    timer.cause = TransitionReason::MasterDown;
                    *master = Some((from, priority));
                    *lower = None;
                } else if master.is_some_and(|(current, _)| current != from) {
                    // Preempt_Mode and a lower priority from a router that
                    // is not the Master we follow: discarded, as the RFC
                    // says. Fast preemption reacts to the current Master's
                    // own adverts only: a third router's (a yielding
                    // Master's last advert, a stale or forged one) must
                    // not move the VIP away from a live Master.
                } else {
                    // Preempt_Mode and a lower priority: the RFC discards the
                    // advert; we also schedule the takeover (fast preemption,
                    // see the module doc).
                    *master = Some((from, priority));
                    let seen = lower.get_or_insert(LowerMaster {
                        since: now,
                        last_heard: now,
                    });
                    seen.last_heard = now;
                    let skew = skew_time(rules, ours, *master_adver_interval);
                    let preempt_at = (seen.since + self.params.preempt_delay).max(now + skew);
                    let silent_at = now + master_down_interval(rules, ours, *master_adver_interval);
                    if preempt_at <= silent_at {
                        *timer = MasterDownTimer {
                            deadline: preempt_at,
                            cause: TransitionReason::Preempted,
                        };
                    } else {
                        *timer = MasterDownTimer {
                            deadline: silent_at,
                            cause: TransitionReason::MasterDown,
                        };
                    }
                }
            }
            Inner::Master { adver_deadline } => {
                let higher =
                    priority > ours || (priority == ours && from > self.params.primary_address);
                if priority == RESIGN_PRIORITY {
                    // §6.4.3: another Master resigned; assert ourselves now.
                    // It held the addresses too (a dual-master moment, or
                    // the one we preempted letting go): once it has, our
                    // announcement is the one clients must keep.
                    out.push(Action::SendAdvert { priority: ours });
                    out.push(Action::AnnounceAfterYield);
                    *adver_deadline = now + self.params.advert_interval.as_duration();
                } else if higher {
                    // §6.4.3: → Backup, learning the new Master's interval.
                    let learned = if rules == TimerRules::V3 {
                        interval
                    } else {
                        self.params.advert_interval
                    };
                    // Not in the RFC: one last advert as we yield. The new
                    // Master may have become one without hearing us (a
                    // split brain healing, its advert reached us first);
                    // hearing our lower priority tells it that we held the
                    // addresses, so it announces them again once we have
                    // let go (see the lower-priority case below). It is the
                    // advert the race could as well have delivered first,
                    // so peers see nothing a dual-master moment does not
                    // already show them. (Priority 0 would say the same,
                    // but sends every other Backup to Skew_Time.)
                    out.push(Action::SendAdvert { priority: ours });
                    out.push(Action::StopAnnouncing);
                    out.push(Action::YieldVips);
                    let inner = Inner::Backup {
                        timer: MasterDownTimer {
                            deadline: now + master_down_interval(rules, ours, learned),
                            cause: TransitionReason::MasterDown,
                        },
                        master_adver_interval: learned,
                        master: Some((from, priority)),
                        lower: None,
                    };
                    self.go(State::Master, inner, TransitionReason::HigherPriority, out);
                } else {
                    // RFC 9568 §6.4.3: a lower priority is discarded, but the
                    // Active router advertises at once to assert itself. The
                    // other side yields on hearing it; announcing once it has
                    // (not now, while its clients are still connected to it)
                    // moves every client here without a reset, and a burst
                    // sent after its last gratuitous ARP is the one clients
                    // keep.
                    out.push(Action::SendAdvert { priority: ours });
                    out.push(Action::AnnounceAfterYield);
                    *adver_deadline = now + self.params.advert_interval.as_duration();
                }
            }
            Inner::Initialize | Inner::Fault => {}
        }
    }

    fn master_gone(&mut self, from: IpAddr, within: Duration, now: Duration) {
        let ours = self.params.priority;
        if let Inner::Backup { timer, master, .. } = &mut self.inner {
            // Only the Master we follow: a verdict about any other router
            // says nothing about who holds the addresses.
            if master.is_some_and(|(current, _)| current == from) {
                let at = now + within * u32::from(256 - u16::from(ours)) / 256;
                // Never later than the timer already set (a resign's
                // Skew_Time may be sooner).
                if at < timer.deadline {
                    *timer = MasterDownTimer {
                        deadline: at,
                        cause: TransitionReason::MasterGone,
                    };
                }
            }
        }
    }

    fn priority_changed(&mut self, priority: u8, now: Duration, out: &mut Vec<Action>) {
        if priority == self.params.priority {
            return;
        }
        self.params.priority = priority;
        match self.inner {
            Inner::Master { .. } => {
                // Tell the backups at once: a preempting backup of higher
                // priority takes over after its Skew_Time.
                out.push(Action::SendAdvert { priority });
                self.inner = Inner::Master {
                    adver_deadline: now + self.params.advert_interval.as_duration(),
                };
            }
            Inner::Backup {
                master: Some((from, master_priority)),
                master_adver_interval,
                ..
            } if self.params.preempt && priority > master_priority => {
                // We now outrank the Master: preempt as if we had just
                // heard its (now lower) priority.
                self.advert(from, master_priority, master_adver_interval, now, out);
            }
            _ => {}
        }
    }

    fn become_master(
        &mut self,
        from: State,
        now: Duration,
        reason: TransitionReason,
        out: &mut Vec<Action>,
    ) {
        // §6.4.1/§6.4.2: send an ADVERTISEMENT, announce the addresses
        // (gratuitous ARP / unsolicited NA), start the Adver_Timer.
        out.push(Action::SendAdvert {
            priority: self.params.priority,
        });
        out.push(Action::AddVips);
        out.push(if reason == TransitionReason::Preempted {
            Action::AnnounceAfterYield
        } else {
            Action::Announce
        });
        let inner = Inner::Master {
            adver_deadline: now + self.params.advert_interval.as_duration(),
        };
        self.go(from, inner, reason, out);
    }

    fn go(&mut self, from: State, inner: Inner, reason: TransitionReason, out: &mut Vec<Action>) {
        self.inner = inner;
        let to = self.state();
        if from != to {
            out.push(Action::Transition { from, to, reason });
        }
    }

    fn master_down_interval(&self, master_adver_interval: Centiseconds) -> Duration {
        master_down_interval(
            self.params.rules,
            self.params.priority,
            master_adver_interval,
        )
    }
}

#[cfg(test)]
mod tests;
