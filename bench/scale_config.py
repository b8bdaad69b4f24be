#!/usr/bin/env python3
"""scale_config.py: ferrymesh configs with large tables, for bench/scale.sh.

    scale_config.py KIND SIZE OUT --listen PORT --upstream-port PORT [--lb LB_TYPE]

writes a MOSN v2 JSON config to OUT (one worker's worth: one listener on
127.0.0.1:LISTEN, one cluster) and prints on stdout the value the load must
send to hit the LAST entry of the table, which a linear lookup finds last:

  bolt    SIZE routes in one "*" virtual host, route i matching the bolt
          header service == "com.example.S<i>:1.0" exactly, all to one
          cluster (bolt echo on 127.0.0.1:UPSTREAM).
          Prints the last route's service.
  http    SIZE prefix routes "/svc<i>/" in one "*" virtual host, each
          rewriting the prefix to "/" and going to one cluster (the nginx
          test upstream on 127.0.0.1:UPSTREAM).
          Prints the path to request: "/svc<SIZE>/small" (→ upstream /small).
  vhosts  SIZE virtual hosts with Istio-style domains: for service i
          "svc<i>.ns.svc.cluster.local", "svc<i>.ns" and "svc<i>", and on
          every 10th one also a "*.svc<i>.example.com" wildcard; each has one
          prefix "/" route to the nginx cluster. A last "*" virtual host
          (allow_any) answers 404 itself, so a request that misses its host
          shows up as an error instead of being served.
          Prints the Host to send: "svc<SIZE>.ns.svc.cluster.local".
  lb      one bolt route (service "com.example.S1:1.0") to a cluster of SIZE
          hosts 127.0.X.Y:UPSTREAM (X from 1, Y in 1..250), all served by one
          bolt echo on 0.0.0.0:UPSTREAM, with lb_type LB; for
          LB_WEIGHTED_ROUNDROBIN host weights cycle 1..5, else all 1.
          Prints the service.

Entries are numbered from 1, so the probe of a SIZE-entry table names SIZE.
Python 3 standard library only.
"""

import argparse
import json
import sys

SERVICE = "com.example.S{}:1.0"


def listener(port, downstream, upstream, router):
    return {
        "name": "scale",
        "address": f"127.0.0.1:{port}",
        "bind_port": True,
        "filter_chains": [{"filters": [{"type": "proxy", "config": {
            "downstream_protocol": downstream,
            "upstream_protocol": upstream,
            "router_config_name": router,
        }}]}],
    }


def cluster(name, addrs, lb="LB_ROUNDROBIN", weights=None):
    hosts = [{"address": a, "weight": (weights[i] if weights else 1)} for i, a in enumerate(addrs)]
    return {"name": name, "type": "SIMPLE", "lb_type": lb, "connect_timeout": "3s", "hosts": hosts}


def config(router_name, vhosts, lst, clusters):
    return {
        "servers": [{
            "default_log_level": "WARN",
            "routers": [{"router_config_name": router_name, "virtual_hosts": vhosts}],
            "listeners": [lst],
        }],
        "cluster_manager": {"clusters": clusters},
    }


def service_route(i, cluster_name):
    return {"match": {"headers": [{"name": "service", "value": SERVICE.format(i)}]},
            "route": {"cluster_name": cluster_name}}


def bolt(n, a):
    routes = [service_route(i, "echo") for i in range(1, n + 1)]
    cfg = config("scale", [{"name": "all", "domains": ["*"], "routers": routes}],
                 listener(a.listen, "bolt", "bolt", "scale"),
                 [cluster("echo", [f"127.0.0.1:{a.upstream_port}"])])
    return cfg, SERVICE.format(n)


def http(n, a):
    routes = [{"match": {"prefix": f"/svc{i}/"}, "route": {"cluster_name": "web", "prefix_rewrite": "/"}}
              for i in range(1, n + 1)]
    cfg = config("scale", [{"name": "all", "domains": ["*"], "routers": routes}],
                 listener(a.listen, "Auto", "Http1", "scale"),
                 [cluster("web", [f"127.0.0.1:{a.upstream_port}"])])
    return cfg, f"/svc{n}/small"


def vhosts(n, a):
    hosts = []
    for i in range(1, n + 1):
        domains = [f"svc{i}.ns.svc.cluster.local", f"svc{i}.ns", f"svc{i}"]
        if i % 10 == 0:
            domains.append(f"*.svc{i}.example.com")
        hosts.append({"name": f"svc{i}", "domains": domains,
                      "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "web"}}]})
    hosts.append({"name": "allow_any", "domains": ["*"],
                  "routers": [{"match": {"prefix": "/"},
                               "direct_response": {"status": 404, "body": "no virtual host\n"}}]})
    cfg = config("scale", hosts, listener(a.listen, "Auto", "Http1", "scale"),
                 [cluster("web", [f"127.0.0.1:{a.upstream_port}"])])
    return cfg, f"svc{n}.ns.svc.cluster.local"


def lb(n, a):
    if n > 250 * 254:
        sys.exit(f"scale_config.py: at most {250 * 254} hosts")
    addrs = [f"127.0.{1 + j // 250}.{1 + j % 250}:{a.upstream_port}" for j in range(n)]
    weights = [1 + j % 5 for j in range(n)] if a.lb.upper() == "LB_WEIGHTED_ROUNDROBIN" else None
    cfg = config("scale", [{"name": "all", "domains": ["*"], "routers": [service_route(1, "echo")]}],
                 listener(a.listen, "bolt", "bolt", "scale"),
                 [cluster("echo", addrs, a.lb, weights)])
    return cfg, SERVICE.format(1)


KINDS = {"bolt": bolt, "http": http, "vhosts": vhosts, "lb": lb}


def main():
    p = argparse.ArgumentParser(description="ferrymesh configs with large tables (bench/scale.sh)")
    p.add_argument("kind", choices=sorted(KINDS))
    p.add_argument("size", type=int)
    p.add_argument("out")
    p.add_argument("--listen", type=int, required=True, help="listener port on 127.0.0.1")
    p.add_argument("--upstream-port", type=int, required=True)
    p.add_argument("--lb", default="LB_ROUNDROBIN", help="lb_type (kind lb)")
    a = p.parse_args()
    if a.size < 1:
        p.error("size must be positive")
    cfg, probe = KINDS[a.kind](a.size, a)
    with open(a.out, "w") as f:
        json.dump(cfg, f, separators=(",", ":"))
        f.write("\n")
    print(probe)


if __name__ == "__main__":
    main()
