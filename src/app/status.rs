//! What the admin API reports: `/healthz`, `/status` and the scrape-time
//! part of `/metrics`.

use std::sync::atomic::Ordering;

use serde_json::json;

use super::App;
use crate::metrics::Metrics;
use crate::vrrp;

impl App {
    /// Ok while serving; the reason when not (for `/healthz`).
    pub fn health(&self) -> Result<(), String> {
        use crate::proxy::server::Lifecycle;
        if self.standby.load(Ordering::Relaxed) {
            return Err("drained (standby): run `vigil undrain` to serve again".into());
        }
        if self.server.lifecycle() != Lifecycle::Serving {
            return Err("draining".into());
        }
        if let Some(speaker) = self.speaker() {
            let faults: Vec<String> = speaker
                .status()
                .into_iter()
                .filter(|i| i.state == vrrp::State::Fault)
                .map(|i| format!("VRRP instance {} in FAULT: {}", i.name, i.faults.join(", ")))
                .collect();
            if !faults.is_empty() {
                return Err(faults.join("; "));
            }
        }
        Ok(())
    }

    /// Copies scrape-time state (pool health, connection counts, log
    /// drops) into the metrics registry.
    pub fn refresh_metrics(&self, m: &Metrics) {
        let rt = self.server.runtime();
        m.upstream_server_up.reset();
        for (name, pool) in &rt.pools {
            // Every configured pool has its retry series from the start.
            m.upstream_retries.with_label_values(&[name.as_str()]);
            let now = std::time::Instant::now();
            for peer in &pool.peers {
                m.upstream_server_up
                    .with_label_values(&[name.as_str(), peer.server.label.as_str()])
                    .set(i64::from(peer.available(now)));
            }
        }
        crate::metrics::mirror_counter_single(&m.access_log_dropped, rt.access_log.dropped());
        m.vrrp_state.reset();
        m.vrrp_priority.reset();
        for i in self.speaker().map(|s| s.status()).unwrap_or_default() {
            let vrid = i.vrid.to_string();
            let labels = [i.name.as_str(), vrid.as_str(), i.interface.as_str()];
            let state = match i.state {
                vrrp::State::Initialize => 0,
                vrrp::State::Backup => 1,
                vrrp::State::Master => 2,
                vrrp::State::Fault => 3,
            };
            m.vrrp_state.with_label_values(&labels).set(state);
            // Present (at zero) before the first advert.
            m.vrrp_advert_lag.with_label_values(&labels);
            m.vrrp_priority
                .with_label_values(&labels)
                .set(i64::from(i.effective_priority));
            use crate::metrics::mirror_counter;
            mirror_counter(&m.vrrp_become_master, &labels, i.counters.become_master);
            mirror_counter(&m.vrrp_adverts_sent, &labels, i.counters.adverts_sent);
            mirror_counter(
                &m.vrrp_adverts_received,
                &labels,
                i.counters.adverts_received,
            );
            if i.death_probe {
                let c = &i.counters;
                for (result, count) in [
                    ("connected", c.death_probe_connected),
                    ("closed", c.death_probe_closed),
                    ("refused", c.death_probe_refused),
                    ("verdict", c.death_probe_verdicts),
                ] {
                    let l = [labels[0], labels[1], labels[2], result];
                    mirror_counter(&m.vrrp_death_probe, &l, count);
                }
            }
            for (reason, count) in &i.discards {
                let l = [labels[0], labels[1], labels[2], reason.name()];
                mirror_counter(&m.vrrp_packets_discarded, &l, *count);
            }
        }
    }

    /// The `/status` document.
    pub fn status(&self) -> serde_json::Value {
        let rt = self.server.runtime();
        let now = std::time::Instant::now();
        let listeners: Vec<_> = self
            .server
            .local_addrs()
            .into_iter()
            .map(|(configured, local)| {
                let l = rt.config.listeners.iter().find(|l| l.addr == configured);
                json!({
                    "listen": configured.to_string(),
                    "bound": local.to_string(),
                    "tls": l.is_some_and(|l| l.tls),
                    "servers": l.map(|l| l.servers.iter().map(|&s| rt.config.servers[s].label.clone()).collect::<Vec<_>>()).unwrap_or_default(),
                })
            })
            .collect();
        let upstreams: Vec<_> = rt
            .pools
            .iter()
            .map(|(name, pool)| {
                let servers: Vec<_> = pool
                    .peers
                    .iter()
                    .map(|p| {
                        json!({
                            "addr": p.server.label,
                            "up": p.available(now),
                            "health_check": if pool.config.health_check.is_some() {
                                if p.is_healthy() { "up" } else { "down" }
                            } else { "off" },
                            "active_requests": p.active(),
                            "idle_connections": p.idle.len(),
                            "weight": p.server.weight,
                            "backup": p.server.backup,
                            "down": p.server.down,
                        })
                    })
                    .collect();
                json!({
                    "name": name,
                    "balance": format!("{:?}", pool.config.balance).to_lowercase(),
                    "available": pool.available_count(),
                    "servers": servers,
                })
            })
            .collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "config": self.config_path.display().to_string(),
            "generation": rt.generation,
            "uptime_seconds": self.started.elapsed().map(|d| d.as_secs()).unwrap_or(0),
            "workers": rt.config.http.workers,
            "worker_cpus": self.server.worker_cpus(),
            "worker_max_lag_ms": self.heartbeats.stalest().map_or(0, |(_, d)| d.as_millis() as u64),
            "connections_active": self.server.connections(),
            "listeners": listeners,
            "upstreams": upstreams,
            "state": match self.server.lifecycle() {
                _ if self.standby.load(Ordering::Relaxed) => "standby",
                crate::proxy::server::Lifecycle::Serving => "serving",
                crate::proxy::server::Lifecycle::Draining => "draining",
                crate::proxy::server::Lifecycle::Closing => "closing",
            },
            "vrrp_unavailable": self.vrrp_unavailable.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            "vrrp": self.speaker().map(|s| s.status()).unwrap_or_default().iter().map(vrrp_status).collect::<Vec<_>>(),
            "guardian": self.speaker().and_then(|s| s.guardian()).map(|g| json!({
                "pid": g.pid,
                "restarts": g.restarts,
                "vips_held": g.held,
            })),
        })
    }
}

fn vrrp_status(i: &vrrp::InstanceStatus) -> serde_json::Value {
    let state = match i.state {
        vrrp::State::Initialize => "init",
        vrrp::State::Backup => "backup",
        vrrp::State::Master => "master",
        vrrp::State::Fault => "fault",
    };
    json!({
        "name": i.name,
        "vrid": i.vrid,
        "interface": i.interface,
        "version": format!("{:?}", i.version),
        "state": state,
        "priority": i.configured_priority,
        "effective_priority": i.effective_priority,
        "master": i.master.map(|a| a.to_string()),
        "last_transition": i.last_transition.as_ref().map(|t| json!({
            "at": crate::proxy::access_log::iso_time(t.at),
            "from": format!("{:?}", t.from).to_lowercase(),
            "to": format!("{:?}", t.to).to_lowercase(),
            "reason": t.reason,
        })),
        "last_transition_reason": i.last_transition.as_ref().map(|t| t.reason.clone()),
        "vips": i.vips.iter().map(|v| format!("{}/{}", v.addr, v.prefix)).collect::<Vec<_>>(),
        "faults": i.faults,
        "tracking": i.tracking,
        "counters": {
            "adverts_sent": i.counters.adverts_sent,
            "adverts_received": i.counters.adverts_received,
            "become_master": i.counters.become_master,
            "priority_zero_sent": i.counters.priority_zero_sent,
            "priority_zero_received": i.counters.priority_zero_received,
        },
        "death_probe": i.death_probe.then(|| json!({
            "connected": i.counters.death_probe_connected,
            "closed": i.counters.death_probe_closed,
            "refused": i.counters.death_probe_refused,
            "verdicts": i.counters.death_probe_verdicts,
        })),
        "discards": i.discards.iter().filter(|(_, n)| *n > 0).map(|(r, n)| (r.name().to_owned(), json!(n))).collect::<serde_json::Map<_, _>>(),
    })
}
