//! Load-balancing choices, as pure functions over a view of the servers.
//!
//! The pool gives each method a slice of [`PeerView`]s (weight, in-flight
//! requests, and whether the server may be chosen now: up and not already
//! tried for this request). Backup servers are a separate slice used only
//! when no primary is eligible, so the methods here never see both.

use std::net::IpAddr;

/// What a balancing method knows about one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerView {
    pub weight: u32,
    /// Requests in flight to this server.
    pub active: u32,
    /// Up, not marked down, not already tried for this request.
    pub eligible: bool,
}

/// nginx's smooth weighted round robin (ngx_http_upstream_get_peer):
/// every pick adds each eligible server's weight to its running score,
/// picks the highest score and subtracts the total from it. Weights 5,1,1
/// give `a a b a c a a`, spreading the heavy server's turns out instead of
/// sending it five in a row.
#[derive(Debug, Clone, Default)]
pub struct SmoothWeighted {
    current: Vec<i64>,
}

impl SmoothWeighted {
    pub fn new(servers: usize) -> Self {
        Self {
            current: vec![0; servers],
        }
    }

    /// Picks among eligible peers for which `allow(i)` holds.
    pub fn pick_where(
        &mut self,
        peers: &[PeerView],
        allow: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        if self.current.len() != peers.len() {
            self.current = vec![0; peers.len()];
        }
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, p) in peers.iter().enumerate() {
            if !p.eligible || !allow(i) {
                continue;
            }
            let w = i64::from(p.weight);
            self.current[i] += w;
            total += w;
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b] -= total;
        Some(b)
    }

    pub fn pick(&mut self, peers: &[PeerView]) -> Option<usize> {
        self.pick_where(peers, |_| true)
    }
}

/// nginx `least_conn`: the fewest in-flight requests relative to weight;
/// ties broken by weighted round robin among the tied servers.
pub fn least_conn(peers: &[PeerView], rr: &mut SmoothWeighted) -> Option<usize> {
    // active_a / weight_a < active_b / weight_b, without division.
    let less = |a: &PeerView, b: &PeerView| {
        u64::from(a.active) * u64::from(b.weight) < u64::from(b.active) * u64::from(a.weight)
    };
    let mut best: Option<usize> = None;
    for (i, p) in peers.iter().enumerate() {
        if p.eligible && best.is_none_or(|b| less(p, &peers[b])) {
            best = Some(i);
        }
    }
    let b = peers[best?];
    let tied = |i: usize| !less(&b, &peers[i]) && !less(&peers[i], &b);
    rr.pick_where(peers, tied)
}

/// Power of two random choices: sample two eligible servers, keep the one
/// with fewer in-flight requests per weight. Near-least-conn quality with
/// no shared round-robin state.
pub fn random_two(peers: &[PeerView], rng: &mut fastrand::Rng) -> Option<usize> {
    let eligible: Vec<usize> = (0..peers.len()).filter(|&i| peers[i].eligible).collect();
    match eligible.len() {
        0 => None,
        1 => Some(eligible[0]),
        n => {
            let a = eligible[rng.usize(..n)];
            let mut b = eligible[rng.usize(..n - 1)];
            if b == a {
                b = eligible[n - 1];
            }
            let (pa, pb) = (&peers[a], &peers[b]);
            // b is less loaded per weight: active_b / weight_b < active_a / weight_a.
            let b_lighter = u64::from(pb.active) * u64::from(pa.weight)
                < u64::from(pa.active) * u64::from(pb.weight);
            Some(if b_lighter { b } else { a })
        }
    }
}

/// nginx `ip_hash`: the first three octets of an IPv4 client (the whole
/// address for IPv6) pick a server by weight; the same client keeps its
/// server while that server is up. If the chosen server is not eligible
/// the hash is perturbed and tried again (20 times, as nginx), then
/// `None` tells the caller to fall back to round robin.
pub fn ip_hash(peers: &[PeerView], client: IpAddr) -> Option<usize> {
    let bytes: Vec<u8> = match client {
        IpAddr::V4(v4) => v4.octets()[..3].to_vec(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets()[..3].to_vec(),
            None => v6.octets().to_vec(),
        },
    };
    let total: u64 = peers.iter().map(|p| u64::from(p.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut hash: u64 = 89;
    for _ in 0..20 {
        for &b in &bytes {
            hash = (hash * 113 + u64::from(b)) % 6271;
        }
        let mut w = hash % total;
        let mut chosen = 0;
        while w >= u64::from(peers[chosen].weight) {
            w -= u64::from(peers[chosen].weight);
            chosen += 1;
        }
        if peers[chosen].eligible {
            return Some(chosen);
        }
    }
    None
}

/// A ketama ring for consistent hashing: 160 points per unit of weight,
/// so adding or removing one of N servers moves only about 1/N of the keys.
/// Points are derived from the server's label (its address), so two vigil
/// nodes with the same config map every key to the same server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashRing {
    /// `(point, server)`, sorted by point.
    points: Vec<(u32, usize)>,
}

const POINTS_PER_WEIGHT: u32 = 160;

impl HashRing {
    pub fn new<'a>(servers: impl IntoIterator<Item = (&'a str, u32)>) -> Self {
        let mut points = Vec::new();
        for (i, (label, weight)) in servers.into_iter().enumerate() {
            for n in 0..POINTS_PER_WEIGHT * weight {
                let mut h = crc32fast::Hasher::new();
                h.update(label.as_bytes());
                h.update(&n.to_le_bytes());
                points.push((h.finalize(), i));
            }
        }
        points.sort_unstable();
        Self { points }
    }

    /// The first eligible server clockwise from the key's point.
    pub fn pick(&self, peers: &[PeerView], key: &[u8]) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let h = crc32fast::hash(key);
        let start = self.points.partition_point(|&(p, _)| p < h);
        (0..self.points.len())
            .map(|k| self.points[(start + k) % self.points.len()].1)
            .find(|&i| peers.get(i).is_some_and(|p| p.eligible))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn peers(weights: &[u32]) -> Vec<PeerView> {
        weights
            .iter()
            .map(|&weight| PeerView {
                weight,
                active: 0,
                eligible: true,
            })
            .collect()
    }

    #[test]
    fn smooth_round_robin_matches_nginx_sequence() {
        let p = peers(&[5, 1, 1]);
        let mut rr = SmoothWeighted::new(3);
        let picks: String = (0..7)
            .map(|_| ["a", "b", "c"][rr.pick(&p).unwrap()])
            .collect();
        assert_eq!(picks, "aabacaa");
    }

    #[test]
    fn round_robin_skips_ineligible_and_returns_none_when_empty() {
        let mut p = peers(&[1, 1, 1]);
        p[1].eligible = false;
        let mut rr = SmoothWeighted::new(3);
        let picks: Vec<usize> = (0..4).map(|_| rr.pick(&p).unwrap()).collect();
        assert_eq!(picks, vec![0, 2, 0, 2]);
        for x in &mut p {
            x.eligible = false;
        }
        assert_eq!(rr.pick(&p), None);
    }

    proptest! {
        /// Over one full cycle (sum of weights) every server gets exactly
        /// its weight in picks.
        #[test]
        fn round_robin_is_exactly_weighted(weights in prop::collection::vec(1u32..10, 1..8)) {
            let p = peers(&weights);
            let mut rr = SmoothWeighted::new(p.len());
            let total: u32 = weights.iter().sum();
            let mut counts = vec![0u32; p.len()];
            for _ in 0..total * 3 {
                counts[rr.pick(&p).unwrap()] += 1;
            }
            for (c, w) in counts.iter().zip(&weights) {
                prop_assert_eq!(*c, w * 3);
            }
        }

        #[test]
        fn least_conn_picks_a_minimum(actives in prop::collection::vec(0u32..20, 1..8)) {
            let mut p = peers(&vec![1; actives.len()]);
            for (x, a) in p.iter_mut().zip(&actives) {
                x.active = *a;
            }
            let mut rr = SmoothWeighted::new(p.len());
            let i = least_conn(&p, &mut rr).unwrap();
            prop_assert_eq!(p[i].active, *actives.iter().min().unwrap());
        }

        #[test]
        fn consistent_hash_moves_few_keys_when_a_server_goes(n in 3usize..8, gone in 0usize..8) {
            let gone = gone % n;
            let labels: Vec<String> = (0..n).map(|i| format!("10.0.0.{i}:80")).collect();
            let ring = HashRing::new(labels.iter().map(|l| (l.as_str(), 1)));
            let all = peers(&vec![1; n]);
            let mut without = all.clone();
            without[gone].eligible = false;
            let mut moved = 0;
            for k in 0..2000u32 {
                let key = k.to_string();
                let before = ring.pick(&all, key.as_bytes()).unwrap();
                let after = ring.pick(&without, key.as_bytes()).unwrap();
                prop_assert_ne!(after, gone);
                if before != gone {
                    // Keys on surviving servers never move.
                    prop_assert_eq!(before, after);
                } else {
                    moved += 1;
                }
            }
            // Roughly 1/n of the keys lived on the removed server.
            let expected = 2000.0 / n as f64;
            prop_assert!((moved as f64) < expected * 1.6, "moved {} expected ~{}", moved, expected);
        }
    }

    #[test]
    fn least_conn_respects_weight_and_breaks_ties_round_robin() {
        let mut p = peers(&[2, 1]);
        p[0].active = 3; // 1.5 per weight
        p[1].active = 2; // 2 per weight
        let mut rr = SmoothWeighted::new(2);
        assert_eq!(least_conn(&p, &mut rr), Some(0));
        // Equal load: round robin between the tied servers.
        let p = peers(&[1, 1, 1]);
        let picks: Vec<usize> = (0..6).map(|_| least_conn(&p, &mut rr).unwrap()).collect();
        let mut sorted = picks.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 0, 1, 1, 2, 2]);
    }

    #[test]
    fn random_two_prefers_the_less_loaded() {
        let mut p = peers(&[1, 1]);
        p[0].active = 10;
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..100 {
            assert_eq!(random_two(&p, &mut rng), Some(1));
        }
        // Spread among equals.
        let p = peers(&[1, 1, 1, 1]);
        let mut counts = [0; 4];
        for _ in 0..4000 {
            counts[random_two(&p, &mut rng).unwrap()] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
        assert_eq!(random_two(&peers(&[]), &mut rng), None);
    }

    #[test]
    fn ip_hash_is_sticky_per_slash_24_and_moves_when_down() {
        let mut p = peers(&[1, 1, 1]);
        let a: IpAddr = "192.168.1.10".parse().unwrap();
        let b: IpAddr = "192.168.1.200".parse().unwrap();
        let first = ip_hash(&p, a).unwrap();
        assert_eq!(ip_hash(&p, b), Some(first), "same /24, same server");
        for _ in 0..10 {
            assert_eq!(ip_hash(&p, a), Some(first));
        }
        // Spread over many /24s.
        let mut counts = [0; 3];
        for x in 0..255u8 {
            let ip: IpAddr = format!("10.{x}.{}.1", x.wrapping_mul(7)).parse().unwrap();
            counts[ip_hash(&p, ip).unwrap()] += 1;
        }
        assert!(counts.iter().all(|&c| c > 40), "{counts:?}");
        p[first].eligible = false;
        let moved = ip_hash(&p, a).unwrap();
        assert_ne!(moved, first);
    }

    #[test]
    fn hash_ring_is_deterministic_across_builds() {
        let labels = ["10.0.0.1:80", "10.0.0.2:80"];
        let r1 = HashRing::new(labels.iter().map(|l| (*l, 1)));
        let r2 = HashRing::new(labels.iter().map(|l| (*l, 1)));
        assert_eq!(r1, r2);
        let p = peers(&[1, 1]);
        let mut counts = [0; 2];
        for k in 0..1000 {
            counts[r1.pick(&p, format!("/page/{k}").as_bytes()).unwrap()] += 1;
        }
        assert!(counts.iter().all(|&c| c > 350), "{counts:?}");
    }
}
