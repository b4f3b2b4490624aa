//! What an instance task shares with the speaker handle: counters, the
//! status view, the tracking board and the hooks.

use super::*;

/// Counters readable at any time (exported by the proxy's /metrics).
#[derive(Debug, Default)]
pub struct Counters {
    pub adverts_sent: AtomicU64,
    pub adverts_received: AtomicU64,
    pub become_master: AtomicU64,
    pub priority_zero_sent: AtomicU64,
    pub priority_zero_received: AtomicU64,
    /// v3 adverts whose address list differs from ours (logged, accepted).
    pub address_list_mismatches: AtomicU64,
    pub send_errors: AtomicU64,
    /// The death probe's probes, echoes, refusals and verdicts.
    pub death_probe: Arc<crate::vrrp::death_probe::ProbeCounters>,
}

/// The last state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionRecord {
    pub at: SystemTime,
    pub from: State,
    pub to: State,
    pub reason: String,
}

/// What `status()` shows besides counters.
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub state: State,
    pub effective_priority: u8,
    pub master: Option<IpAddr>,
    pub last_transition: Option<TransitionRecord>,
    pub faults: Vec<String>,
    /// Every active tracking entry, e.g. `external: -60 (upstream app down)`.
    pub tracking: Vec<String>,
}

/// State shared between an instance task and the speaker handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: InstanceConfig,
    pub board: Arc<watch::Sender<TrackBoard>>,
    pub counters: Counters,
    pub discards: DiscardCounters,
    /// Discards counted before demultiplexing (VRID errors, bad IP
    /// envelopes), shared by every instance on the interface and family.
    pub interface_discards: Arc<DiscardCounters>,
    pub view: Mutex<View>,
    /// This instance's own fault (not the one its sync group imposes).
    pub own_fault: Mutex<Option<String>>,
    /// Told of every state change (the proxy closes connections to VIPs
    /// this node gives up).
    pub hook: Arc<HookSlot>,
}

/// Called with an instance's VIPs just before this node removes them (it
/// leaves Master, or finds it was frozen while Master). The proxy closes
/// its connections to those addresses while it can still reach the
/// clients from them; the removal waits for the returned future.
pub type ReleaseHook = Arc<
    dyn Fn(Vec<IpAddr>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

/// Told how late each scheduled advert went out, by instance: the gap
/// between its Adver_Timer deadline and the send. A Backup takes over when
/// adverts are late by more than its Skew_Time plus a few intervals, so
/// this is how close a node is to a false failover (issue 15).
pub type LagHook = Arc<dyn Fn(&InstanceConfig, Duration) + Send + Sync>;

/// Where the speaker keeps its [`ReleaseHook`] and [`LagHook`], shared by
/// instances.
#[derive(Default)]
pub struct HookSlot(
    std::sync::RwLock<Option<ReleaseHook>>,
    std::sync::RwLock<Option<LagHook>>,
);

impl HookSlot {
    pub fn set(&self, hook: ReleaseHook) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    pub fn get(&self) -> Option<ReleaseHook> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_lag(&self, hook: LagHook) {
        *self.1.write().unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    pub(super) fn lag(&self, config: &InstanceConfig, lag: Duration) {
        if let Some(hook) = &*self.1.read().unwrap_or_else(|e| e.into_inner()) {
            hook(config, lag);
        }
    }
}

impl std::fmt::Debug for HookSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HookSlot")
    }
}

impl Shared {
    pub fn new(
        config: InstanceConfig,
        interface_discards: Arc<DiscardCounters>,
        hook: Arc<HookSlot>,
    ) -> Self {
        let (board, _) = watch::channel(TrackBoard::default());
        Self {
            hook,
            view: Mutex::new(View {
                state: State::Initialize,
                effective_priority: config.priority,
                master: None,
                last_transition: None,
                faults: vec![],
                tracking: vec![],
            }),
            config,
            board: Arc::new(board),
            counters: Counters::default(),
            discards: DiscardCounters::default(),
            interface_discards,
            own_fault: Mutex::new(None),
        }
    }

    pub fn view(&self) -> View {
        self.view.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(super) fn update_view(&self, f: impl FnOnce(&mut View)) {
        f(&mut self.view.lock().unwrap_or_else(|e| e.into_inner()));
    }
}
