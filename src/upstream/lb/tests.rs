use std::collections::HashMap;
use std::rc::Rc;

use super::*;
use crate::upstream::Host;

fn hosts(weights: &[u32]) -> Vec<Rc<Host>> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Rc::new(Host::new(format!("10.0.0.{}:80", i + 1).parse().unwrap(), w)))
        .collect()
}

fn ctx<'a>(exclude: &'a [usize]) -> LbContext<'a> {
    LbContext { hash_key: None, exclude, now: Instant::now(), ignore_health: false }
}

fn counts(lb: &LoadBalancer, hs: &[Rc<Host>], n: usize) -> HashMap<usize, usize> {
    let mut c = HashMap::new();
    for _ in 0..n {
        *c.entry(lb.choose(hs, &ctx(&[])).unwrap()).or_default() += 1;
    }
    c
}

#[test]
fn names_follow_mosn_and_envoy() {
    assert_eq!(LbKind::from_name("LB_ROUNDROBIN"), Some(LbKind::RoundRobin));
    assert_eq!(LbKind::from_name("ROUND_ROBIN"), Some(LbKind::RoundRobin));
    assert_eq!(LbKind::from_name("LB_LEAST_REQUEST"), Some(LbKind::LeastRequest));
    assert_eq!(LbKind::from_name("LEAST_ACTIVE_REQUEST"), Some(LbKind::LeastRequest));
    assert_eq!(LbKind::from_name("WEIGHTED_ROUND_ROBIN"), Some(LbKind::WeightedRoundRobin));
    assert_eq!(LbKind::from_name("LB_MAGLEV"), Some(LbKind::Maglev));
    assert_eq!(LbKind::from_name("LB_NOPE"), None);
}

#[test]
fn round_robin_cycles_and_skips_excluded_and_unhealthy() {
    let hs = hosts(&[1, 1, 1]);
    let lb = LoadBalancer::new(LbKind::RoundRobin, &hs);
    let first = lb.choose(&hs, &ctx(&[])).unwrap();
    let seq: Vec<usize> = (0..6).map(|_| lb.choose(&hs, &ctx(&[])).unwrap()).collect();
    let expect: Vec<usize> = (1..=6).map(|k| (first + k) % 3).collect();
    assert_eq!(seq, expect);
    assert!((0..10).all(|_| lb.choose(&hs, &ctx(&[1])).unwrap() != 1));
    hs[2].mark_connect_failure();
    assert!((0..10).all(|_| lb.choose(&hs, &ctx(&[])).unwrap() != 2));
    assert_eq!(lb.choose(&hs, &ctx(&[0, 1])), None, "the only other host is unhealthy");
}

#[test]
fn smooth_weighted_is_exact_and_interleaved() {
    let hs = hosts(&[5, 1, 1]);
    let lb = LoadBalancer::new(LbKind::WeightedRoundRobin, &hs);
    let seq: Vec<usize> = (0..7).map(|_| lb.choose(&hs, &ctx(&[])).unwrap()).collect();
    assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0], "nginx's smooth order for 5,1,1");
    let c = counts(&lb, &hs, 700);
    assert_eq!((c[&0], c[&1], c[&2]), (500, 100, 100));
}

#[test]
fn random_spreads_over_all_hosts() {
    let hs = hosts(&[1, 1, 1, 1]);
    let c = counts(&LoadBalancer::new(LbKind::Random, &hs), &hs, 4000);
    assert!(c.values().all(|&n| (800..1200).contains(&n)), "{c:?}");
}

#[test]
fn least_request_prefers_idle_hosts() {
    let hs = hosts(&[1, 1, 1]);
    for _ in 0..50 {
        hs[0].inc_active();
        hs[1].inc_active();
    }
    let lb = LoadBalancer::new(LbKind::LeastRequest, &hs);
    let c = counts(&lb, &hs, 300);
    // Host 2 wins every draw it is part of: 2 of the 3 possible pairs.
    assert!(c[&2] > 170, "{c:?}");
    assert!(c.get(&0).copied().unwrap_or(0) + c.get(&1).copied().unwrap_or(0) < 130);
}

#[test]
fn maglev_is_consistent_and_moves_few_keys() {
    let hs = hosts(&[1, 1, 1, 1, 1]);
    let m = Maglev::new(&hs, 65537);
    let keys: Vec<String> = (0..2000).map(|i| format!("user-{i}")).collect();
    let before: Vec<usize> = keys.iter().map(|k| m.lookup(k.as_bytes())).collect();
    let mut per_host = [0usize; 5];
    for &h in &before {
        per_host[h] += 1;
    }
    assert!(per_host.iter().all(|&n| (300..500).contains(&n)), "{per_host:?}");
    // Same table from the same hosts: same answers.
    let again = Maglev::new(&hs, 65537);
    assert!(keys.iter().zip(&before).all(|(k, &h)| again.lookup(k.as_bytes()) == h));
    // Remove host 4: keys of other hosts mostly stay put.
    let fewer = Maglev::new(&hs[..4], 65537);
    let moved =
        keys.iter().zip(&before).filter(|(_, &h)| h != 4).filter(|(k, &h)| fewer.lookup(k.as_bytes()) != h).count();
    assert!(moved < 200, "{moved} keys of surviving hosts moved");
    // An ineligible owner hands the key to a stable second choice.
    let key = keys[0].as_bytes();
    let owner = before[0];
    let c = LbContext { hash_key: Some(key), exclude: &[owner], now: Instant::now(), ignore_health: false };
    let second = m.choose(&hs, &c, key).unwrap();
    assert_ne!(second, owner);
    assert_eq!(m.choose(&hs, &c, key), Some(second));
}
