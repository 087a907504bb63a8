//! Load balancers, one state per worker and target, so picking a host takes no lock.
//!
//! Source: MOSN `pkg/upstream/cluster/loadbalancer.go` (`LB_ROUNDROBIN`, `LB_RANDOM`,
//! `LB_WEIGHTED_ROUNDROBIN`, `LB_LEAST_REQUEST`).

use std::cell::{Cell, RefCell};

use mosn_config::LbType;

use crate::cluster::Target;

/// Per-worker state of one target's load balancer.
#[derive(Debug)]
pub enum LbState {
    /// Round robin over the target's hosts.
    RoundRobin(Cell<usize>),
    /// Uniform random.
    Random,
    /// Smooth weighted round robin (nginx's algorithm): current weight per host.
    WeightedRoundRobin(RefCell<Vec<i64>>),
    /// Power of two choices over this worker's active requests per host.
    LeastRequest,
}

impl LbState {
    /// Fresh state for a target.
    pub fn new(t: &Target) -> Self {
        match t.cluster.lb {
            // Start each worker at a different host so N workers do not all hit host 0 first.
            LbType::RoundRobin => {
                LbState::RoundRobin(Cell::new(fastrand::usize(..t.hosts.len().max(1))))
            }
            LbType::Random => LbState::Random,
            LbType::WeightedRoundRobin => {
                LbState::WeightedRoundRobin(RefCell::new(vec![0; t.hosts.len()]))
            }
            LbType::LeastRequest => LbState::LeastRequest,
        }
    }

    /// Picks a host of `t` (an index into `t.cluster.hosts`), or `None` when it has no host.
    /// `active(host_id)` gives this worker's requests in flight to a host (for least request).
    pub fn pick(&self, t: &Target, active: &dyn Fn(usize) -> u32) -> Option<usize> {
        let n = t.hosts.len();
        if n == 0 {
            return None;
        }
        if n == 1 {
            return Some(t.hosts[0]);
        }
        let i = match self {
            LbState::RoundRobin(next) => {
                let i = next.get() % n;
                next.set(i + 1);
                i
            }
            LbState::Random => fastrand::usize(..n),
            LbState::WeightedRoundRobin(cur) => {
                let mut cur = cur.borrow_mut();
                let mut best = 0;
                for (k, &h) in t.hosts.iter().enumerate() {
                    cur[k] += t.cluster.hosts[h].weight as i64;
                    if cur[k] > cur[best] {
                        best = k;
                    }
                }
                cur[best] -= t.total_weight as i64;
                best
            }
            LbState::LeastRequest => {
                let a = fastrand::usize(..n);
                let mut b = fastrand::usize(..n - 1);
                if b >= a {
                    b += 1;
                }
                let load = |k: usize| active(t.cluster.hosts[t.hosts[k]].id);
                if load(b) < load(a) {
                    b
                } else {
                    a
                }
            }
        };
        Some(t.hosts[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterManager;
    use std::collections::BTreeMap;

    fn target(lb: &str, weights: &[u32]) -> ClusterManager {
        let hosts: Vec<String> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| format!(r#"{{"address":"127.0.0.1:{}","weight":{w}}}"#, 1000 + i))
            .collect();
        let json = format!(
            r#"{{"servers":[{{"listeners":[{{"address":"127.0.0.1:0","filter_chains":[{{"filters":[{{"type":"tcp_proxy","config":{{"cluster":"c"}}}}]}}]}}]}}],"cluster_manager":{{"clusters":[{{"name":"c","lb_type":"{lb}","hosts":[{}]}}]}}}}"#,
            hosts.join(",")
        );
        let cfg = mosn_config::from_str(&json).unwrap().config;
        let mut cm = ClusterManager::new(&cfg.clusters).unwrap();
        cm.resolve("c", &BTreeMap::new()).unwrap();
        cm
    }

    fn counts(cm: &ClusterManager, n: usize, active: &dyn Fn(usize) -> u32) -> Vec<usize> {
        let t = &cm.targets[0];
        let lb = LbState::new(t);
        let mut c = vec![0; t.hosts.len()];
        for _ in 0..n {
            c[lb.pick(t, active).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn round_robin_is_even() {
        let cm = target("LB_ROUNDROBIN", &[1, 1, 1]);
        assert_eq!(counts(&cm, 300, &|_| 0), vec![100, 100, 100]);
    }

    #[test]
    fn weighted_round_robin_follows_weights_smoothly() {
        let cm = target("LB_WEIGHTED_ROUNDROBIN", &[5, 1, 1]);
        assert_eq!(counts(&cm, 700, &|_| 0), vec![500, 100, 100]);
        // Smooth: host 0 never gets more than 3 picks in a row with weights 5,1,1.
        let t = &cm.targets[0];
        let lb = LbState::new(t);
        let seq: Vec<usize> = (0..7).map(|_| lb.pick(t, &|_| 0).unwrap()).collect();
        assert!(
            seq.windows(4).all(|w| !w.iter().all(|h| *h == 0)),
            "{seq:?}"
        );
    }

    #[test]
    fn random_covers_hosts() {
        let cm = target("LB_RANDOM", &[1, 1]);
        let c = counts(&cm, 10_000, &|_| 0);
        assert!(c.iter().all(|n| (4_500..5_500).contains(n)), "{c:?}");
    }

    #[test]
    fn least_request_avoids_the_busy_host() {
        let cm = target("LB_LEAST_REQUEST", &[1, 1, 1]);
        // Host id 0 is busy: P2C picks it only when both choices are it, which cannot happen.
        let c = counts(&cm, 3_000, &|id| if id == 0 { 10 } else { 0 });
        assert_eq!(c[0], 0, "{c:?}");
        assert!(c[1] > 1_000 && c[2] > 1_000, "{c:?}");
    }
}
