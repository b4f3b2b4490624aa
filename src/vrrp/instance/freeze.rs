//! A Master that finds it was frozen (SIGSTOP, a VM pause, a stalled
//! runtime): did anyone take over meanwhile?

use super::*;

/// After a stall, frames due this soon are skipped too: `check_freeze`
/// reads the queued adverts (up to `QUEUED_READ` at a time) and may step
/// back meanwhile.
pub(super) const STALL_SETTLE: Duration = Duration::from_millis(25);

/// After a stall, how long the receive task is given to hand over what
/// the kernel queued meanwhile (it runs as soon as the process does; the
/// wait adds to the stall, so it stays short).
const QUEUED_READ: Duration = Duration::from_millis(5);

/// The packets queued for an instance, read until none arrives for
/// [`QUEUED_READ`] (at most 64: a stalled second's worth at 20 ms adverts
/// from a few routers).
async fn read_queued(packets: &mut mpsc::Receiver<Packet>) -> Vec<Packet> {
    let mut out = Vec::new();
    while out.len() < 64 {
        match tokio::time::timeout(QUEUED_READ, packets.recv()).await {
            Ok(Some(p)) => out.push(p),
            Ok(None) | Err(_) => break,
        }
    }
    out
}

/// How long a node that was frozen while Master stays out of the election
/// (see `check_freeze`).
const FREEZE_HOLD: Duration = Duration::from_secs(60);

impl Runner {
    /// A Master that has not sent an advert for 3 × Advertisement_Interval
    /// was stalled (SIGSTOP, a stalled runtime, a VM pause) long enough
    /// that a Backup *may* have taken over: whether one did depends on its
    /// Master_Down_Interval (3 × interval + its Skew_Time), which we cannot
    /// know. So we look: a Backup that took over advertised as Master
    /// meanwhile, and those adverts wait for us in the socket. If one came
    /// from another router, asserting mastership now with our normal
    /// priority would preempt it back and cut its fresh connections: a
    /// second outage. So step back instead: advertise priority 1 (the peer
    /// answers and we become Backup, RFC 5798 §6.4.3), and hold that for
    /// `FREEZE_HOLD` (longer when `preempt_delay` says so) before competing
    /// normally again. If none came, nobody took over (the stall was
    /// shorter than every peer's Master_Down_Interval): carry on as Master,
    /// as RFC 5798 and keepalived do. An address owner (255) keeps its
    /// priority. Returns the packets read while looking, to be handled as
    /// usual afterwards.
    pub(super) async fn check_freeze(
        &mut self,
        packets: &mut mpsc::Receiver<Packet>,
    ) -> Vec<Packet> {
        if self.machine.state() != State::Master {
            return Vec::new();
        }
        let Some(last) = self.last_advert else {
            return Vec::new();
        };
        let interval = self.shared.config.advert_interval.as_duration();
        let silent = Instant::now().saturating_duration_since(last);
        if silent < interval * 3 {
            return Vec::new();
        }
        let priority = self.shared.config.priority;
        if priority == crate::vrrp::machine::OWNER_PRIORITY {
            return Vec::new();
        }
        let queued = read_queued(packets).await;
        let taken_over = queued.iter().any(|p| self.is_other_master(p));
        if !taken_over {
            info!(
                instance = self.name(),
                ?silent,
                "stalled while Master, but no other router took over: carrying on"
            );
            return queued;
        }
        let hold = FREEZE_HOLD.max(self.shared.config.preempt_delay);
        warn!(
            instance = self.name(),
            ?silent,
            ?hold,
            "this node was frozen while Master and a peer took over; stepping back so it keeps the VIP"
        );
        let reason = format!("frozen for {silent:?} while Master; stepping back for {hold:?}");
        // Counts as "sent" so the check does not repeat before the step.
        self.last_advert = Some(Instant::now());
        // The peer's announcements are the ones clients must keep: ours
        // stop now, not when its answer makes us Backup.
        self.stop_announcing();
        // The peer holds the VIP now: connections to it here are dead ends
        // already; let the proxy close them before the next response goes
        // out with keep-alive.
        self.release_vips().await;
        set_track(
            &self.shared,
            "freeze",
            TrackStatus::Delta(1 - i32::from(priority), reason),
        );
        self.apply_board().await;
        let shared = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            if let Some(shared) = shared.upgrade() {
                set_track(&shared, "freeze", TrackStatus::Ok);
            }
        });
        queued
    }

    /// Whether `p` is a valid advert from another router that is Master
    /// (only a Master advertises; priority 0 is one resigning). Counts
    /// nothing: the packet is handled again afterwards.
    pub(super) fn is_other_master(&self, p: &Packet) -> bool {
        // The policy refuses our own address (`own`).
        self.policy
            .check(&p.envelope())
            .is_ok_and(|a| a.advert.priority != crate::vrrp::machine::RESIGN_PRIORITY)
    }
}
