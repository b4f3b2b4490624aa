use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::*;

const ME: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
const LOW_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const HIGH_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));

fn cs(v: u16) -> Centiseconds {
    Centiseconds::new(v).unwrap()
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn params(priority: u8) -> Params {
    Params {
        rules: TimerRules::V3,
        priority,
        advert_interval: cs(100),
        preempt: true,
        preempt_delay: Duration::ZERO,
        primary_address: ME,
    }
}

fn advert(from: IpAddr, priority: u8) -> Event {
    Event::Advert {
        from,
        priority,
        interval: cs(100),
    }
}

fn transition(from: State, to: State, reason: TransitionReason) -> Action {
    Action::Transition { from, to, reason }
}

fn become_master(priority: u8, from: State, reason: TransitionReason) -> Vec<Action> {
    // A live Master that was preempted is given time to let go first.
    let announce = if reason == TransitionReason::Preempted {
        Action::AnnounceAfterYield
    } else {
        Action::Announce
    };
    vec![
        Action::SendAdvert { priority },
        Action::AddVips,
        announce,
        transition(from, State::Master, reason),
    ]
}

fn backup(p: Params) -> Machine {
    let mut m = Machine::new(p);
    m.step(Event::Startup, Duration::ZERO);
    m
}

fn master(p: Params) -> Machine {
    let mut m = backup(p);
    let at = m.next_deadline().unwrap();
    m.step(Event::Timer, at);
    assert_eq!(m.state(), State::Master);
    m
}

#[test]
fn startup_non_owner_becomes_backup_with_master_down_timer() {
    let mut m = Machine::new(params(100));
    assert_eq!(m.state(), State::Initialize);
    assert_eq!(m.next_deadline(), None);
    let a = m.step(Event::Startup, ms(1000));
    assert_eq!(
        a,
        vec![transition(
            State::Initialize,
            State::Backup,
            TransitionReason::Startup
        )]
    );
    // 1 s + Master_Down_Interval (3.609375 s).
    assert_eq!(m.next_deadline(), Some(Duration::from_micros(4_609_375)));
    // A second Startup is ignored.
    assert!(m.step(Event::Startup, ms(1500)).is_empty());
}

#[test]
fn startup_owner_becomes_master_at_once() {
    let mut m = Machine::new(params(255));
    let a = m.step(Event::Startup, Duration::ZERO);
    assert_eq!(
        a,
        become_master(255, State::Initialize, TransitionReason::AddressOwner)
    );
    assert_eq!(m.next_deadline(), Some(ms(1000)));
}

#[test]
fn backup_takes_over_exactly_at_master_down_interval() {
    let mut m = backup(params(100));
    assert!(
        m.step(Event::Timer, Duration::from_micros(3_609_374))
            .is_empty()
    );
    assert_eq!(m.state(), State::Backup);
    let a = m.step(Event::Timer, Duration::from_micros(3_609_375));
    assert_eq!(
        a,
        become_master(100, State::Backup, TransitionReason::MasterDown)
    );
    assert_eq!(m.next_deadline(), Some(Duration::from_micros(4_609_375)));
}

#[test]
fn backup_resets_timer_and_learns_interval_from_higher_master() {
    let mut m = backup(params(100));
    let a = m.step(
        Event::Advert {
            from: HIGH_ADDR,
            priority: 200,
            interval: cs(10),
        },
        ms(2000),
    );
    assert!(a.is_empty());
    // Learned 100 ms: MDI = 300 ms + 60.9375 ms.
    assert_eq!(
        m.next_deadline(),
        Some(ms(2000) + Duration::from_micros(360_937))
    );
    assert_eq!(m.master(), Some((HIGH_ADDR, 200)));
}

#[test]
fn v2_backup_does_not_learn_the_interval() {
    let mut m = backup(Params {
        rules: TimerRules::V2,
        ..params(100)
    });
    m.step(
        Event::Advert {
            from: HIGH_ADDR,
            priority: 200,
            interval: cs(300),
        },
        Duration::ZERO,
    );
    assert_eq!(m.next_deadline(), Some(Duration::from_micros(3_609_375)));
}

#[test]
fn backup_equal_priority_resets_timer() {
    let mut m = backup(params(100));
    m.step(advert(LOW_ADDR, 100), ms(3000));
    assert_eq!(
        m.next_deadline(),
        Some(ms(3000) + Duration::from_micros(3_609_375))
    );
}

#[test]
fn priority_zero_sets_timer_to_skew_time() {
    let mut m = backup(params(100));
    m.step(advert(HIGH_ADDR, 200), ms(1000));
    assert!(m.step(advert(HIGH_ADDR, 0), ms(1500)).is_empty());
    assert_eq!(
        m.next_deadline(),
        Some(ms(1500) + Duration::from_micros(609_375))
    );
    let a = m.step(Event::Timer, ms(1500) + Duration::from_micros(609_375));
    assert_eq!(
        a,
        become_master(100, State::Backup, TransitionReason::MasterResigned)
    );
}

#[test]
fn preempting_backup_takes_over_a_lower_master_after_skew() {
    let mut m = backup(params(150));
    assert!(m.step(advert(LOW_ADDR, 100), ms(500)).is_empty());
    let skew = Duration::from_micros(414_062);
    assert_eq!(m.next_deadline(), Some(ms(500) + skew));
    let a = m.step(Event::Timer, ms(500) + skew);
    assert_eq!(
        a,
        become_master(150, State::Backup, TransitionReason::Preempted)
    );
}

#[test]
fn nopreempt_backup_accepts_a_lower_master() {
    let mut m = backup(Params {
        preempt: false,
        ..params(150)
    });
    m.step(advert(LOW_ADDR, 100), ms(500));
    assert_eq!(
        m.next_deadline(),
        Some(ms(500) + Duration::from_micros(3_414_062))
    );
    assert_eq!(m.master(), Some((LOW_ADDR, 100)));
}

#[test]
fn preempt_delay_holds_back_preemption_but_not_failover() {
    let mut m = backup(Params {
        preempt_delay: ms(5000),
        ..params(150)
    });
    // A live lower master: takeover at first-heard + 5 s, not earlier.
    let mut t = ms(0);
    while t < ms(4500) {
        m.step(advert(LOW_ADDR, 100), t);
        assert_eq!(m.state(), State::Backup);
        t += ms(1000);
    }
    // Kept advertising until 4 s; the delay ends at 5 s.
    assert_eq!(m.next_deadline(), Some(ms(5000)));
    let a = m.step(Event::Timer, ms(5000));
    assert_eq!(
        a,
        become_master(150, State::Backup, TransitionReason::Preempted)
    );

    // A lower master that dies before the delay ends is replaced at its
    // Master_Down_Interval.
    let mut m = backup(Params {
        preempt_delay: ms(60_000),
        ..params(150)
    });
    m.step(advert(LOW_ADDR, 100), ms(1000));
    assert_eq!(
        m.next_deadline(),
        Some(ms(1000) + Duration::from_micros(3_414_062))
    );
    let a = m.step(Event::Timer, ms(1000) + Duration::from_micros(3_414_062));
    assert_eq!(
        a,
        become_master(150, State::Backup, TransitionReason::MasterDown)
    );
}

#[test]
fn master_sends_adverts_on_its_timer() {
    let mut m = master(params(100));
    let t0 = m.next_deadline().unwrap();
    assert!(m.step(Event::Timer, t0 - ms(1)).is_empty());
    assert_eq!(
        m.step(Event::Timer, t0),
        vec![Action::SendAdvert { priority: 100 }]
    );
    assert_eq!(m.next_deadline(), Some(t0 + ms(1000)));
}

#[test]
fn master_steps_down_for_higher_priority_and_learns_interval() {
    let mut m = master(params(100));
    let now = ms(10_000);
    let a = m.step(
        Event::Advert {
            from: LOW_ADDR,
            priority: 101,
            interval: cs(10),
        },
        now,
    );
    assert_eq!(
        a,
        vec![
            Action::SendAdvert { priority: 100 },
            Action::StopAnnouncing,
            Action::YieldVips,
            transition(
                State::Master,
                State::Backup,
                TransitionReason::HigherPriority
            ),
        ]
    );
    assert_eq!(
        m.next_deadline(),
        Some(now + Duration::from_micros(360_937))
    );
}

#[test]
fn master_tie_break_on_primary_address() {
    // Equal priority from a higher address wins (§6.4.3).
    let mut m = master(params(100));
    let a = m.step(advert(HIGH_ADDR, 100), ms(9000));
    assert_eq!(m.state(), State::Backup);
    assert!(a.contains(&Action::YieldVips));
    // Equal priority from a lower address loses: we assert ourselves.
    let mut m = master(params(100));
    let a = m.step(advert(LOW_ADDR, 100), ms(9000));
    assert_eq!(m.state(), State::Master);
    assert_eq!(
        a,
        vec![
            Action::SendAdvert { priority: 100 },
            Action::AnnounceAfterYield
        ]
    );
}

#[test]
fn master_answers_lower_priority_and_resignations_at_once() {
    let mut m = master(params(100));
    let a = m.step(advert(HIGH_ADDR, 50), ms(9000));
    assert_eq!(
        a,
        vec![
            Action::SendAdvert { priority: 100 },
            Action::AnnounceAfterYield
        ]
    );
    assert_eq!(m.next_deadline(), Some(ms(10_000)));
    let a = m.step(advert(HIGH_ADDR, 0), ms(9500));
    assert_eq!(
        a,
        vec![
            Action::SendAdvert { priority: 100 },
            Action::AnnounceAfterYield
        ]
    );
    assert_eq!(m.next_deadline(), Some(ms(10_500)));
}

#[test]
fn own_advert_is_ignored() {
    let mut m = master(params(100));
    assert!(m.step(advert(ME, 100), ms(9000)).is_empty());
    let mut b = backup(params(100));
    let before = b.next_deadline();
    b.step(advert(ME, 200), ms(1000));
    assert_eq!(b.next_deadline(), before);
}

#[test]
fn owners_elect_one_master() {
    let mut m = Machine::new(params(255));
    m.step(Event::Startup, Duration::ZERO);
    m.step(advert(HIGH_ADDR, 255), ms(100));
    assert_eq!(m.state(), State::Backup);
    let mut m = Machine::new(params(255));
    m.step(Event::Startup, Duration::ZERO);
    m.step(advert(LOW_ADDR, 255), ms(100));
    assert_eq!(m.state(), State::Master);
}

#[test]
fn shutdown_resigns_from_master_only() {
    let mut m = master(params(100));
    let a = m.step(Event::Shutdown, ms(9000));
    assert_eq!(
        a,
        vec![
            Action::ReleaseConnections,
            Action::SendAdvert { priority: 0 },
            Action::StopAnnouncing,
            Action::RemoveVips,
            transition(State::Master, State::Initialize, TransitionReason::Shutdown),
        ]
    );
    assert_eq!(m.next_deadline(), None);
    let mut b = backup(params(100));
    assert_eq!(
        b.step(Event::Shutdown, ms(1)),
        vec![transition(
            State::Backup,
            State::Initialize,
            TransitionReason::Shutdown
        )]
    );
    assert!(b.step(Event::Shutdown, ms(2)).is_empty());
}

#[test]
fn fault_from_master_resigns_and_recovers_as_backup() {
    let mut m = master(params(100));
    let a = m.step(Event::FaultRaised, ms(9000));
    assert_eq!(
        a,
        vec![
            Action::ReleaseConnections,
            Action::SendAdvert { priority: 0 },
            Action::StopAnnouncing,
            Action::RemoveVips,
            transition(State::Master, State::Fault, TransitionReason::Fault),
        ]
    );
    assert_eq!(m.next_deadline(), None);
    // Adverts and timers mean nothing in Fault.
    assert!(m.step(advert(HIGH_ADDR, 0), ms(9100)).is_empty());
    assert!(m.step(Event::Timer, ms(99_000)).is_empty());
    let a = m.step(Event::FaultCleared, ms(10_000));
    assert_eq!(
        a,
        vec![transition(
            State::Fault,
            State::Backup,
            TransitionReason::FaultCleared
        )]
    );
    assert_eq!(
        m.next_deadline(),
        Some(ms(10_000) + Duration::from_micros(3_609_375))
    );
}

#[test]
fn fault_before_startup_starts_in_fault() {
    let mut m = Machine::new(params(255));
    assert!(m.step(Event::FaultRaised, Duration::ZERO).is_empty());
    let a = m.step(Event::Startup, Duration::ZERO);
    assert_eq!(
        a,
        vec![transition(
            State::Initialize,
            State::Fault,
            TransitionReason::Fault
        )]
    );
    // The owner goes straight to Master when the fault clears.
    let a = m.step(Event::FaultCleared, ms(5));
    assert_eq!(
        a,
        become_master(255, State::Fault, TransitionReason::FaultCleared)
    );
}

#[test]
fn priority_change_is_advertised_at_once_by_the_master() {
    let mut m = master(params(100));
    let a = m.step(Event::PriorityChanged(70), ms(9200));
    assert_eq!(a, vec![Action::SendAdvert { priority: 70 }]);
    assert_eq!(m.next_deadline(), Some(ms(10_200)));
    assert!(m.step(Event::PriorityChanged(70), ms(9300)).is_empty());
}

#[test]
fn backup_that_now_outranks_the_master_preempts() {
    let mut m = backup(params(100));
    m.step(advert(HIGH_ADDR, 120), ms(1000));
    m.step(Event::PriorityChanged(130), ms(1100));
    // Skew for 130 at 1 s: 126/256 s = 492 187 µs.
    assert_eq!(
        m.next_deadline(),
        Some(ms(1100) + Duration::from_micros(492_187))
    );
    // Without preemption nothing changes.
    let mut m = backup(Params {
        preempt: false,
        ..params(100)
    });
    m.step(advert(HIGH_ADDR, 120), ms(1000));
    let before = m.next_deadline();
    m.step(Event::PriorityChanged(130), ms(1100));
    assert_eq!(m.next_deadline(), before);
}

fn any_event() -> impl Strategy<Value = Event> {
    let addr = prop_oneof![Just(LOW_ADDR), Just(HIGH_ADDR), Just(ME)];
    prop_oneof![
        Just(Event::Startup),
        Just(Event::Shutdown),
        Just(Event::Timer),
        Just(Event::FaultRaised),
        Just(Event::FaultCleared),
        (1u8..=254).prop_map(Event::PriorityChanged),
        (
            prop_oneof![Just(LOW_ADDR), Just(HIGH_ADDR), Just(ME)],
            1u64..=1000
        )
            .prop_map(|(from, within)| Event::MasterGone {
                from,
                within: ms(within)
            }),
        (addr, any::<u8>(), 1u16..=4095).prop_map(|(from, priority, i)| Event::Advert {
            from,
            priority,
            interval: cs(i)
        }),
    ]
}

/// A Backup following `HIGH_ADDR` (priority 200) at t = 1 s.
fn following_high(priority: u8) -> Machine {
    let mut m = backup(params(priority));
    m.step(advert(HIGH_ADDR, 200), ms(1000));
    m
}

fn gone(from: IpAddr, within_ms: u64) -> Event {
    Event::MasterGone {
        from,
        within: ms(within_ms),
    }
}

#[test]
fn master_gone_takes_over_after_a_skew_over_the_probe_interval() {
    let mut m = following_high(100);
    assert!(m.step(gone(HIGH_ADDR, 10), ms(1050)).is_empty());
    // (256 - 100) * 10 ms / 256 = 6.09 ms, far below Master_Down_Interval.
    assert_eq!(m.next_deadline(), Some(ms(1050) + ms(10) * 156 / 256));
    assert!(m.step(Event::Timer, ms(1055)).is_empty());
    assert_eq!(
        m.step(Event::Timer, ms(1057)),
        become_master(100, State::Backup, TransitionReason::MasterGone)
    );
}

#[test]
fn a_higher_priority_backup_goes_first_after_a_master_gone() {
    let mut high = following_high(150);
    let mut low = following_high(50);
    high.step(gone(HIGH_ADDR, 10), ms(1050));
    low.step(gone(HIGH_ADDR, 10), ms(1050));
    assert!(high.next_deadline() < low.next_deadline());
}

#[test]
fn master_gone_about_another_router_changes_nothing() {
    let mut m = following_high(100);
    let before = m.clone();
    assert!(m.step(gone(LOW_ADDR, 10), ms(1050)).is_empty());
    assert_eq!(m, before);
    // A Backup that never heard a Master has nobody to declare gone.
    let mut fresh = backup(params(100));
    let before = fresh.clone();
    fresh.step(gone(HIGH_ADDR, 10), ms(10));
    assert_eq!(fresh, before);
}

#[test]
fn an_advert_from_the_master_cancels_a_master_gone() {
    // A verdict that was wrong (a firewall started rejecting the probe on
    // a live Master): its next advert resets the timer as any advert does.
    let mut m = following_high(100);
    m.step(gone(HIGH_ADDR, 10), ms(1050));
    m.step(advert(HIGH_ADDR, 200), ms(1052));
    assert!(m.next_deadline() > Some(ms(1300)));
    assert!(m.step(Event::Timer, ms(1100)).is_empty());
    assert_eq!(m.state(), State::Backup);
}

#[test]
fn master_gone_never_delays_a_sooner_takeover() {
    let mut m = following_high(100);
    m.step(advert(HIGH_ADDR, 0), ms(1050)); // resigned: Skew_Time ~ 609 ms
    let resign = m.next_deadline();
    m.step(gone(HIGH_ADDR, 1000), ms(1051)); // a slow probe would be later
    assert_eq!(m.next_deadline(), resign);
}

#[test]
fn master_gone_is_ignored_by_a_master_and_in_fault() {
    let mut master = Machine::new(params(255));
    master.step(Event::Startup, ms(0));
    let before = master.clone();
    assert!(master.step(gone(HIGH_ADDR, 10), ms(5)).is_empty());
    assert_eq!(master, before);
    let mut fault = following_high(100);
    fault.step(Event::FaultRaised, ms(1010));
    let before = fault.clone();
    assert!(fault.step(gone(HIGH_ADDR, 10), ms(1050)).is_empty());
    assert_eq!(fault, before);
}

#[test]
fn adverts_keep_their_cadence_when_the_timer_fires_late() {
    let mut m = Machine::new(params(255));
    m.step(Event::Startup, ms(0));
    assert_eq!(m.next_deadline(), Some(ms(1000)));
    // Delivered 3 ms late: the next one is still due at 2 s.
    m.step(Event::Timer, ms(1003));
    assert_eq!(m.next_deadline(), Some(ms(2000)));
    // After a stall longer than an interval: one interval from now.
    m.step(Event::Timer, ms(3500));
    assert_eq!(m.next_deadline(), Some(ms(4500)));
}

proptest! {
    /// Whatever happens, VIPs are held exactly while Master, only Master and Backup
    /// run timers, and nothing panics.
    #[test]
    fn vips_are_held_exactly_while_master(
        priority in 1u8..=255,
        preempt in any::<bool>(),
        v2 in any::<bool>(),
        events in proptest::collection::vec((any_event(), 0u64..5000), 1..80),
    ) {
        let mut m = Machine::new(Params {
            rules: if v2 { TimerRules::V2 } else { TimerRules::V3 },
            preempt,
            ..params(priority)
        });
        let mut holding = false;
        let mut now = Duration::ZERO;
        for (event, dt) in events {
            now += ms(dt);
            let event = match (event, m.next_deadline()) {
                // Deliver timers when they are due, like the runtime does.
                (Event::Timer, Some(d)) => { now = now.max(d); Event::Timer }
                (e, _) => e,
            };
            let before = m.state();
            // Connections are released before addresses are removed.
            let mut released = false;
            for a in m.step(event, now) {
                match a {
                    Action::AddVips => { prop_assert!(!holding); holding = true; }
                    Action::ReleaseConnections => { prop_assert!(holding); released = true; }
                    Action::RemoveVips => { prop_assert!(holding && released); holding = false; }
                    Action::YieldVips => { prop_assert!(holding); holding = false; }
                    Action::Transition { from, to, .. } => {
                        prop_assert_eq!(from, before);
                        prop_assert_ne!(from, to);
                    }
                    Action::SendAdvert { priority: p } => {
                        prop_assert!(before == State::Master || m.state() == State::Master || p == 0);
                    }
                    _ => {}
                }
            }
            prop_assert_eq!(holding, m.state() == State::Master);
            prop_assert_eq!(m.next_deadline().is_some(), matches!(m.state(), State::Master | State::Backup));
        }
    }
}

#[test]
fn a_lower_priority_from_another_router_than_the_master_is_discarded() {
    // Following HIGH_ADDR (a live Master at 200), a preempting Backup at
    // 150 hears priority 1 from a third router (a yielding Master's last
    // advert, a forged one): RFC 5798 §6.4.2 discards it; nothing moves.
    let third: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 66));
    let mut m = backup(params(150));
    m.step(advert(HIGH_ADDR, 200), ms(1000));
    let deadline = m.next_deadline();
    assert!(m.step(advert(third, 1), ms(1005)).is_empty());
    assert_eq!(m.next_deadline(), deadline, "the Master_Down timer stands");
    assert_eq!(m.master(), Some((HIGH_ADDR, 200)));
    // The Master's own drop below us still preempts after Skew_Time.
    m.step(advert(HIGH_ADDR, 100), ms(1100));
    let at = m.next_deadline().unwrap();
    assert_eq!(at, ms(1100) + Duration::from_micros(414_062));
    assert_eq!(
        m.step(Event::Timer, at),
        become_master(150, State::Backup, TransitionReason::Preempted)
    );
}
