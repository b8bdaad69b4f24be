//! Upstream: clusters and the load balancers that pick one of their hosts.
//!
//! Every worker builds its own [`Cluster`] objects from the shared
//! [`ClusterSpec`]s, so host state (requests in flight, health, balancer
//! cursors) lives in `Cell`s on one thread and the hot path takes no lock.
//! The cost: least-request balancing sees only its own worker's requests, and
//! a host found dead by one worker is found dead again by the others. A
//! cluster holds its hosts (`crate::host`, below the stream layer, whose
//! pools count against them) and a pool per host (`crate::stream`).

pub mod lb;

use std::net::SocketAddr;
use std::rc::Rc;

use crate::config::ClusterSpec;
use crate::host::{HealthSet, Host};
use crate::stats::UpstreamStats;
use crate::stream::http::HttpPool;
use crate::stream::pool::{Pick, RpcPools};
use lb::{LbContext, LoadBalancer};

/// A cluster as one worker runs it: hosts, a balancer, and a pool per host.
pub struct Cluster {
    pub spec: ClusterSpec,
    pub hosts: Vec<Rc<Host>>,
    /// RPC pools, per host and protocol family.
    pub pools: Vec<Rc<RpcPools>>,
    /// HTTP pools, one per host.
    pub http_pools: Vec<Rc<HttpPool>>,
    health: Rc<HealthSet>,
    lb: LoadBalancer,
    /// What this worker counts for the cluster (its hosts count into it too).
    pub stats: Rc<UpstreamStats>,
}

impl Cluster {
    pub fn new(spec: &ClusterSpec) -> Cluster {
        Cluster::build(spec, None)
    }

    /// The cluster as `spec` now describes it, keeping from `self` what
    /// still holds: the counters, and every host whose address is still in
    /// the list, with its pooled connections and passive health (no
    /// reconnect storm after a change), unless the settings of the pools
    /// themselves changed.
    pub fn update(&self, spec: &ClusterSpec) -> Cluster {
        Cluster::build(spec, Some(self))
    }

    fn build(spec: &ClusterSpec, old: Option<&Cluster>) -> Cluster {
        let health = Rc::new(HealthSet::new(spec.hosts.len()));
        let cluster_name: Rc<str> = Rc::from(spec.name.as_str());
        let stats = old.map_or_else(Rc::default, |o| o.stats.clone());
        let keep_pools = old.is_some_and(|o| o.spec.same_pools(spec));
        let by_addr: std::collections::HashMap<SocketAddr, usize> =
            old.map(|o| o.hosts.iter().enumerate().map(|(i, h)| (h.addr, i)).collect()).unwrap_or_default();
        let mut hosts = Vec::with_capacity(spec.hosts.len());
        let mut pools = Vec::with_capacity(spec.hosts.len());
        let mut http_pools = Vec::with_capacity(spec.hosts.len());
        for (i, h) in spec.hosts.iter().enumerate() {
            let kept = old.zip(by_addr.get(&h.addr)).map(|(o, &j)| (o, j));
            let host = match kept {
                Some((o, j)) => {
                    let host = o.hosts[j].clone();
                    host.reseat(h.weight, health.clone(), i);
                    host
                }
                None => Rc::new(Host::counted(h.addr, h.weight, health.clone(), i, stats.clone())),
            };
            let tls = if h.tls_disable { None } else { spec.tls.clone() };
            let same_tls = host.set_dial(tls, cluster_name.clone());
            match kept {
                Some((o, j)) if keep_pools && same_tls => {
                    pools.push(o.pools[j].clone());
                    http_pools.push(o.http_pools[j].clone());
                }
                _ => {
                    pools.push(Rc::default());
                    http_pools.push(HttpPool::new(host.clone(), spec.connect_timeout, spec.idle_timeout));
                }
            }
            hosts.push(host);
        }
        let lb = LoadBalancer::new(spec.lb, &hosts);
        Cluster { spec: spec.clone(), hosts, pools, http_pools, health, lb, stats }
    }

    /// A connection to host `i` for one frame of `codec` ([`RpcPools::pick`]).
    pub fn rpc_pick(&self, i: usize, codec: &'static dyn crate::protocol::Codec) -> Pick {
        self.pools[i].pick(&self.hosts[i], &self.spec, codec)
    }

    /// Picks a host index, skipping unhealthy hosts and those in `exclude`.
    /// When no host is healthy, health is ignored (panic mode); `None` only
    /// when the cluster is empty or every host was tried.
    pub fn choose(&self, hash_key: Option<&[u8]>, exclude: &[usize]) -> Option<usize> {
        self.lb.pick(&self.hosts, &self.health, &LbContext { hash_key, exclude })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HostSpec, KeepaliveSpec};
    use crate::upstream::lb::LbKind;
    use std::time::Duration;

    fn spec(hosts: &[(&str, u32)]) -> ClusterSpec {
        ClusterSpec {
            name: "c".into(),
            lb: LbKind::RoundRobin,
            hosts: hosts
                .iter()
                .map(|(a, w)| HostSpec { addr: a.parse().unwrap(), weight: *w, tls_disable: false })
                .collect(),
            connect_timeout: Duration::from_secs(1),
            max_request_per_conn: 0,
            connections_per_host: 1,
            keepalive: KeepaliveSpec::default(),
            idle_timeout: None,
            max_frame: 1 << 20,
            tls: None,
        }
    }

    /// A changed cluster keeps the hosts still listed: the same objects (so
    /// their pools and counters), their passive health at their new places,
    /// their new weights; a new host starts fresh.
    #[tokio::test(start_paused = true)]
    async fn an_update_keeps_the_hosts_that_stay() {
        let old = Cluster::new(&spec(&[("127.0.0.1:1", 1), ("127.0.0.1:2", 1)]));
        old.hosts[0].mark_connect_failure();
        old.hosts[1].count(|s| s.requests.inc());
        let new = old.update(&spec(&[("127.0.0.1:3", 1), ("127.0.0.1:2", 5), ("127.0.0.1:1", 1)]));
        assert!(Rc::ptr_eq(&new.hosts[1], &old.hosts[1]) && Rc::ptr_eq(&new.hosts[2], &old.hosts[0]));
        assert!(Rc::ptr_eq(&new.pools[1], &old.pools[1]), "the pool (and its connections) stays");
        assert_eq!(new.hosts[1].weight(), 5);
        assert_eq!(new.hosts[1].stats.requests.get(), 1);
        assert!(Rc::ptr_eq(&new.stats, &old.stats), "the cluster's counters carry on");
        // 127.0.0.1:1 is still backed off, now at index 2.
        let picks: Vec<usize> = (0..20).map(|_| new.choose(None, &[]).unwrap()).collect();
        assert!(picks.iter().all(|&i| i != 2), "{picks:?}");
        assert!(picks.contains(&0) && picks.contains(&1));
        // A change of a connection setting keeps the hosts, not the pools.
        let mut other = spec(&[("127.0.0.1:2", 1)]);
        other.connections_per_host = 2;
        let rebuilt = new.update(&other);
        assert!(Rc::ptr_eq(&rebuilt.hosts[0], &old.hosts[1]));
        assert!(!Rc::ptr_eq(&rebuilt.pools[0], &old.pools[1]));
    }
}
