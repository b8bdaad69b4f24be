//! One worker's counters as it hands them to a scrape, and their sum.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::{ListenerStats, Stats, UpstreamStats};

/// A host as one worker sees it.
#[derive(Debug)]
pub struct HostSnapshot {
    pub cluster: String,
    pub addr: SocketAddr,
    pub weight: u32,
    pub healthy: bool,
    pub stats: UpstreamStats,
}

/// One worker's counters, copied out of its `Cell`s on its own thread.
#[derive(Default, Debug)]
pub struct Snapshot {
    pub worker: Stats,
    pub listeners: Vec<(String, ListenerStats)>,
    pub clusters: Vec<(String, UpstreamStats)>,
    pub hosts: Vec<HostSnapshot>,
}

/// A host summed over the workers.
#[derive(Default, Debug)]
pub struct HostTotals {
    pub weight: u32,
    /// Workers that count the host healthy, out of `workers`.
    pub healthy_in: u32,
    pub workers: u32,
    pub stats: UpstreamStats,
}

/// What the control plane itself counts.
#[derive(Default, Debug, Clone)]
pub struct ControlCounts {
    /// The version of the configuration serving now (1 = the one started with).
    pub version: u64,
    pub applied: u64,
    pub refused: u64,
    pub workers: usize,
    pub uptime_seconds: f64,
}

/// Every worker's counters summed, by listener, cluster and host.
#[derive(Default, Debug)]
pub struct Totals {
    pub control: ControlCounts,
    pub worker: Stats,
    pub listeners: BTreeMap<String, ListenerStats>,
    pub clusters: BTreeMap<String, UpstreamStats>,
    pub hosts: BTreeMap<(String, SocketAddr), HostTotals>,
}

impl Totals {
    /// Adds one worker's snapshot.
    pub fn add(&mut self, s: &Snapshot) {
        s.worker.add_to(&self.worker);
        for (name, l) in &s.listeners {
            l.add_to(self.listeners.entry(name.clone()).or_default());
        }
        for (name, c) in &s.clusters {
            c.add_to(self.clusters.entry(name.clone()).or_default());
        }
        for h in &s.hosts {
            let t = self.hosts.entry((h.cluster.clone(), h.addr)).or_default();
            t.weight = h.weight;
            t.workers += 1;
            t.healthy_in += u32::from(h.healthy);
            h.stats.add_to(&t.stats);
        }
    }
}
