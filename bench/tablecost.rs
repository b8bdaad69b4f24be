//! tablecost: what a route table costs to hold and to build, by size.
//!
//! For each kind of table (bolt routes on `service`, HTTP prefix routes,
//! virtual hosts with Istio-style domains) and each size, it loads a whole
//! config with `config::load_str`, as `ferrymesh start` does, and reports:
//! heap bytes held per entry once loaded (a counting allocator; the growth
//! from the 10-entry table, so the config's fixed parts cancel), the peak of
//! heap in use while loading, and the time to compile the route table and to
//! load the whole file. Heap is what the allocator hands out, not RSS: a
//! process's RSS may also keep what parsing freed.
//!
//! `tablecost [--sizes 10,100,1000,10000] [--kinds bolt,http,vhosts] [--json]`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use serde_json::{json, Value};

struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator with the caller's
// own arguments; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = IN_USE.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK.fetch_max(now, Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn listener(router: &str, protocol: &str) -> Value {
    json!({"name": "scale", "address": "127.0.0.1:1", "bind_port": true,
        "filter_chains": [{"filters": [{"type": "proxy", "config": {
            "downstream_protocol": protocol, "upstream_protocol": protocol, "router_config_name": router}}]}]})
}

/// A config whose router has `n` entries of `kind`.
fn config(kind: &str, n: usize) -> String {
    let (vhosts, protocol) = match kind {
        "bolt" => {
            let routes: Vec<Value> = (1..=n)
                .map(|i| {
                    json!({"match": {"headers": [{"name": "service", "value": format!("com.example.S{i}:1.0")}]},
                    "route": {"cluster_name": "c"}})
                })
                .collect();
            (vec![json!({"name": "all", "domains": ["*"], "routers": routes})], "bolt")
        }
        "http" => {
            let routes: Vec<Value> = (1..=n)
                .map(|i| json!({"match": {"prefix": format!("/svc{i}/")}, "route": {"cluster_name": "c", "prefix_rewrite": "/"}}))
                .collect();
            (vec![json!({"name": "all", "domains": ["*"], "routers": routes})], "Http1")
        }
        _ => {
            let mut v: Vec<Value> = (1..=n)
                .map(|i| {
                    let mut domains =
                        vec![format!("svc{i}.ns.svc.cluster.local"), format!("svc{i}.ns"), format!("svc{i}")];
                    if i % 10 == 0 {
                        domains.push(format!("*.svc{i}.example.com"));
                    }
                    json!({"name": format!("svc{i}"), "domains": domains,
                        "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "c"}}]})
                })
                .collect();
            v.push(json!({"name": "any", "domains": ["*"], "routers": [{"match": {"prefix": "/"}, "direct_response": {"status": 404}}]}));
            (v, "Http1")
        }
    };
    json!({"servers": [{"routers": [{"router_config_name": "r", "virtual_hosts": vhosts}],
        "listeners": [listener("r", protocol)]}],
        "cluster_manager": {"clusters": [{"name": "c", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
            "hosts": [{"address": "127.0.0.1:2"}]}]}})
    .to_string()
}

struct Cost {
    held: usize,
    peak: usize,
    compile_ms: f64,
    load_ms: f64,
}

fn measure(kind: &str, n: usize) -> Result<Cost, String> {
    let text = config(kind, n);
    let base = IN_USE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let started = Instant::now();
    let settings = ferrymesh::config::load_str(&text, false).map_err(|e| e.to_string())?;
    let load_ms = started.elapsed().as_secs_f64() * 1000.0;
    let held = IN_USE.load(Relaxed) - base;
    let peak = PEAK.load(Relaxed) - base;
    let compile_ms = settings.routers.iter().map(|(_, t)| t.built_in().as_secs_f64() * 1000.0).sum();
    drop(settings);
    Ok(Cost { held, peak, compile_ms, load_ms })
}

fn main() {
    let mut sizes = vec![10usize, 100, 1000, 10_000];
    let mut kinds = vec!["bolt".to_string(), "http".into(), "vhosts".into()];
    let mut as_json = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--json" => as_json = true,
            "--sizes" => {
                let v = args.next().unwrap_or_default();
                sizes = v.split(',').filter_map(|s| s.trim().parse().ok()).collect();
            }
            "--kinds" => kinds = args.next().unwrap_or_default().split(',').map(str::to_string).collect(),
            other => {
                eprintln!("tablecost: unknown flag {other}\nusage: tablecost [--sizes 10,100] [--kinds bolt,http,vhosts] [--json]");
                std::process::exit(2);
            }
        }
    }
    if !as_json {
        println!("| table | entries | heap held | bytes per entry (over 10) | peak heap while loading | compile ms | load ms |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
    }
    for kind in &kinds {
        let mut small: Option<(usize, usize)> = None;
        for &n in &sizes {
            let cost = match measure(kind, n) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("tablecost: {kind} {n}: {e}");
                    std::process::exit(1);
                }
            };
            let per = small.filter(|&(sn, _)| n > sn).map(|(sn, sh)| (cost.held as f64 - sh as f64) / (n - sn) as f64);
            if small.is_none() {
                small = Some((n, cost.held));
            }
            if as_json {
                println!(
                    "{}",
                    json!({"kind": kind, "entries": n, "held": cost.held, "per_entry": per, "peak": cost.peak,
                        "compile_ms": cost.compile_ms, "load_ms": cost.load_ms})
                );
            } else {
                println!(
                    "| {kind} | {n} | {} | {} | {} | {:.1} | {:.1} |",
                    cost.held,
                    per.map_or("—".into(), |p| format!("{p:.0}")),
                    cost.peak,
                    cost.compile_ms,
                    cost.load_ms
                );
            }
        }
    }
}
