//! Tracking: what lowers an instance's priority or puts it in Fault.
//!
//! keepalived semantics (keepalived.conf(5) `track_interface`,
//! `track_script`, `vrrp_script`): a tracked object with weight 0
//! (`"fault"`) puts the instance in Fault while it fails; a negative weight
//! is added to the priority while it fails; a positive weight is added
//! while it succeeds. The effective priority is clamped to 1..=254, and an
//! address owner (255) is never changed by weights.
//!
//! Every source writes its current [`TrackStatus`] into the instance's
//! [`TrackBoard`] (a `watch` channel); the instance recomputes its
//! [`Health`] with the pure [`health`] function whenever the board changes.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::machine::OWNER_PRIORITY;
use super::netif;
use crate::config::vrrp::{ScriptConfig, TrackEffect};

/// Health reported from outside the speaker (the proxy's self-probe and
/// upstream pools): a priority delta and/or a fault, with a reason a
/// person can read in `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExternalHealth {
    /// Added to the configured priority (negative to step back).
    pub priority_delta: i32,
    /// The instance must not hold the VIP (Fault state).
    pub fault: bool,
    /// Why, for logs and `/status` (e.g. "upstream app: 0/3 up").
    pub reason: String,
}

impl ExternalHealth {
    /// No effect.
    pub fn healthy() -> Self {
        Self::default()
    }
    /// Lower (or raise) the priority by `priority_delta`.
    pub fn delta(priority_delta: i32, reason: impl Into<String>) -> Self {
        Self {
            priority_delta,
            fault: false,
            reason: reason.into(),
        }
    }
    /// Forbid holding the VIP.
    pub fn fault(reason: impl Into<String>) -> Self {
        Self {
            priority_delta: 0,
            fault: true,
            reason: reason.into(),
        }
    }

    /// Its entry on the track board.
    pub fn status(&self) -> TrackStatus {
        if self.fault {
            TrackStatus::Fault(self.reason.clone())
        } else if self.priority_delta != 0 {
            TrackStatus::Delta(self.priority_delta, self.reason.clone())
        } else {
            TrackStatus::Ok
        }
    }
}

/// One tracked source's current contribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackStatus {
    /// No effect.
    Ok,
    /// Add this to the priority, and why.
    Delta(i32, String),
    /// Forbid holding the VIP, with a reason.
    Fault(String),
}

/// Every source's status, keyed by a stable source name
/// (`interface:eth1`, `script[0]`, `external`, `standby`, `sync:G`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrackBoard(pub BTreeMap<String, TrackStatus>);

/// Key prefix of entries written by the sync-group logic.
pub const SYNC_PREFIX: &str = "sync:";

impl TrackBoard {
    /// Sets `source` and says whether anything changed.
    pub fn set(&mut self, source: &str, status: TrackStatus) -> bool {
        if status == TrackStatus::Ok {
            return self.0.remove(source).is_some();
        }
        if self.0.get(source) == Some(&status) {
            return false;
        }
        self.0.insert(source.to_owned(), status);
        true
    }

    /// One line per active entry, for `/status`.
    pub fn describe(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(k, s)| match s {
                TrackStatus::Ok => format!("{k}: ok"),
                TrackStatus::Delta(d, why) => format!("{k}: {d:+} ({why})"),
                TrackStatus::Fault(why) => format!("{k}: fault ({why})"),
            })
            .collect()
    }

    /// The instance's own fault, ignoring what its sync group imposes (so
    /// a group cannot latch itself in Fault).
    pub fn own_fault(&self) -> Option<String> {
        self.0.iter().find_map(|(k, s)| match s {
            TrackStatus::Fault(why) if !k.starts_with(SYNC_PREFIX) => Some(why.clone()),
            _ => None,
        })
    }
}

/// What the board means for the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Fault(Vec<String>),
    Priority(u8),
}

/// Pure: the effective priority or fault for `configured` under `board`.
pub fn health(configured: u8, board: &TrackBoard) -> Health {
    let faults: Vec<String> = board
        .0
        .values()
        .filter_map(|s| match s {
            TrackStatus::Fault(why) => Some(why.clone()),
            _ => None,
        })
        .collect();
    if !faults.is_empty() {
        return Health::Fault(faults);
    }
    if configured == OWNER_PRIORITY {
        return Health::Priority(OWNER_PRIORITY);
    }
    let delta: i32 = board
        .0
        .values()
        .map(|s| match s {
            TrackStatus::Delta(d, _) => *d,
            _ => 0,
        })
        .sum();
    Health::Priority((i32::from(configured) + delta).clamp(1, 254) as u8)
}

/// The status a tracked object produces given whether it is healthy.
pub fn status_for(effect: TrackEffect, healthy: bool, what: &str) -> TrackStatus {
    match (effect, healthy) {
        (TrackEffect::Fault, false) => TrackStatus::Fault(format!("{what} failed")),
        (TrackEffect::Fault, true) => TrackStatus::Ok,
        (TrackEffect::Weight(w), false) if w < 0 => TrackStatus::Delta(w, format!("{what} failed")),
        (TrackEffect::Weight(w), true) if w > 0 => TrackStatus::Delta(w, format!("{what} healthy")),
        (TrackEffect::Weight(_), _) => TrackStatus::Ok,
    }
}

/// keepalived's rise/fall debouncing: a script's result only flips the
/// state after `fall` consecutive failures or `rise` consecutive successes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiseFall {
    rise: u32,
    fall: u32,
    healthy: bool,
    streak: u32,
}

impl RiseFall {
    /// Starts healthy (keepalived's default without `init_fail`).
    pub fn new(rise: u32, fall: u32) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
            healthy: true,
            streak: 0,
        }
    }

    /// Records one result and returns the debounced state.
    pub fn record(&mut self, ok: bool) -> bool {
        if ok == self.healthy {
            self.streak = 0;
        } else {
            self.streak += 1;
            let needed = if ok { self.rise } else { self.fall };
            if self.streak >= needed {
                self.healthy = ok;
                self.streak = 0;
            }
        }
        self.healthy
    }
}

/// How often link state is polled. An ioctl per tracked interface every
/// 100 ms is negligible and needs no netlink subscription.
pub const LINK_POLL: Duration = Duration::from_millis(100);

/// Polls the link state of `interfaces` and writes it to the board until
/// the board's receivers are gone.
pub async fn watch_links(
    board: Arc<watch::Sender<TrackBoard>>,
    interfaces: Vec<(String, TrackEffect)>,
) {
    let mut tick = tokio::time::interval(LINK_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if board.is_closed() {
            return;
        }
        for (name, effect) in &interfaces {
            let up = netif::is_running(name);
            let status = status_for(*effect, up, &format!("interface {name}"));
            board.send_if_modified(|b| b.set(&format!("interface:{name}"), status));
        }
    }
}

/// Runs a health-check script on its interval and writes its debounced
/// result to the board.
pub async fn run_script(board: Arc<watch::Sender<TrackBoard>>, index: usize, script: ScriptConfig) {
    let mut debounce = RiseFall::new(script.rise, script.fall);
    let mut tick = tokio::time::interval(script.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let key = format!("script[{index}]");
    loop {
        tick.tick().await;
        if board.is_closed() {
            return;
        }
        let ok = run_once(&script).await;
        let healthy = debounce.record(ok);
        let status = status_for(script.effect, healthy, &format!("script {:?}", script.run));
        board.send_if_modified(|b| b.set(&key, status));
    }
}

/// One run: exit status 0 within the timeout is success.
async fn run_once(script: &ScriptConfig) -> bool {
    let child = crate::privileges::shell(&script.run)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    match tokio::time::timeout(script.timeout, child.wait()).await {
        Ok(Ok(status)) => status.success(),
        _ => false, // timed out (the child is killed on drop) or wait failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board(entries: &[(&str, TrackStatus)]) -> TrackBoard {
        let mut b = TrackBoard::default();
        for (k, s) in entries {
            b.set(k, s.clone());
        }
        b
    }

    #[test]
    fn weights_add_up_and_clamp() {
        assert_eq!(health(100, &TrackBoard::default()), Health::Priority(100));
        let b = board(&[
            ("a", TrackStatus::Delta(-30, "x".into())),
            ("b", TrackStatus::Delta(-20, "x".into())),
        ]);
        assert_eq!(health(100, &b), Health::Priority(50));
        let b = board(&[("a", TrackStatus::Delta(-253, "x".into()))]);
        assert_eq!(health(100, &b), Health::Priority(1));
        let b = board(&[("a", TrackStatus::Delta(200, "x".into()))]);
        assert_eq!(health(100, &b), Health::Priority(254));
        // The owner is never changed by weights.
        assert_eq!(health(255, &b), Health::Priority(255));
        let b = board(&[("a", TrackStatus::Delta(-50, "x".into()))]);
        assert_eq!(health(255, &b), Health::Priority(255));
    }

    #[test]
    fn any_fault_wins() {
        let b = board(&[
            ("a", TrackStatus::Delta(10, "x".into())),
            (
                "interface:eth1",
                TrackStatus::Fault("interface eth1 failed".into()),
            ),
        ]);
        assert_eq!(
            health(255, &b),
            Health::Fault(vec!["interface eth1 failed".into()])
        );
        assert_eq!(b.own_fault().as_deref(), Some("interface eth1 failed"));
        let s = board(&[("sync:G", TrackStatus::Fault("group".into()))]);
        assert!(matches!(health(100, &s), Health::Fault(_)));
        assert_eq!(s.own_fault(), None);
    }

    #[test]
    fn effects_follow_keepalived() {
        assert_eq!(status_for(TrackEffect::Fault, true, "x"), TrackStatus::Ok);
        assert!(matches!(
            status_for(TrackEffect::Fault, false, "x"),
            TrackStatus::Fault(_)
        ));
        assert_eq!(
            status_for(TrackEffect::Weight(-20), false, "x"),
            TrackStatus::Delta(-20, "x failed".into())
        );
        assert_eq!(
            status_for(TrackEffect::Weight(-20), true, "x"),
            TrackStatus::Ok
        );
        assert_eq!(
            status_for(TrackEffect::Weight(15), true, "x"),
            TrackStatus::Delta(15, "x healthy".into())
        );
        assert_eq!(
            status_for(TrackEffect::Weight(15), false, "x"),
            TrackStatus::Ok
        );
    }

    #[test]
    fn board_reports_changes_only() {
        let mut b = TrackBoard::default();
        assert!(!b.set("a", TrackStatus::Ok));
        assert!(b.set("a", TrackStatus::Delta(-1, "x".into())));
        assert!(!b.set("a", TrackStatus::Delta(-1, "x".into())));
        assert!(b.set("a", TrackStatus::Ok));
        assert!(b.0.is_empty());
    }

    #[test]
    fn rise_and_fall_debounce() {
        let mut d = RiseFall::new(2, 3);
        assert!(d.record(false));
        assert!(d.record(false));
        assert!(!d.record(false)); // third failure
        assert!(!d.record(true));
        assert!(!d.record(false)); // streak reset
        assert!(!d.record(true));
        assert!(d.record(true)); // second success in a row
    }

    #[tokio::test]
    async fn scripts_report_through_the_board() {
        let (tx, mut rx) = watch::channel(TrackBoard::default());
        let tx = Arc::new(tx);
        let script = ScriptConfig {
            run: "exit 1".into(),
            interval: Duration::from_millis(10),
            timeout: Duration::from_secs(1),
            effect: TrackEffect::Weight(-20),
            fall: 2,
            rise: 1,
        };
        let task = tokio::spawn(run_script(tx.clone(), 0, script));
        tokio::time::timeout(
            Duration::from_secs(5),
            rx.wait_for(|b| matches!(b.0.get("script[0]"), Some(TrackStatus::Delta(-20, _)))),
        )
        .await
        .expect("script failure reported")
        .unwrap();
        task.abort();
        // A script that hangs past its timeout fails.
        let slow = ScriptConfig {
            run: "sleep 5".into(),
            timeout: Duration::from_millis(50),
            ..ScriptConfig {
                run: String::new(),
                interval: Duration::from_millis(10),
                timeout: Duration::ZERO,
                effect: TrackEffect::Fault,
                fall: 1,
                rise: 1,
            }
        };
        assert!(!run_once(&slow).await);
    }
}
