#!/usr/bin/env python3
"""bench/sync_helper.py: the parts of bench/sync.sh that talk to the Shopee
simulator or crunch numbers (standard library only).

  setup URL CA PARTNER KEY SPEC...   partner, shops (no rate limit) and items;
                                     SPEC is SHOP:ITEMS:MODELS
  sign URL PARTNER KEY SHOP TOKEN    a signed update_stock URL (valid 300 s)
  latency URL CA SHOP LEVEL PGLOG STARTS
                                     commit-to-marketplace latencies: the
                                     simulator's arrival time of the first
                                     update_stock setting LAT-n's item to
                                     LEVEL, minus the commit time of the n-th
                                     pgbench transaction (its -l log);
                                     STARTS has "n started_at_epoch" lines
                                     (when the worker started the request)
"""

import hashlib
import hmac
import http.client
import json
import math
import ssl
import sys
import time
import urllib.parse

PATH = "/api/v2/product/update_stock"


class Sim:
    def __init__(self, url, ca):
        u = urllib.parse.urlsplit(url)
        if u.scheme == "https":
            ctx = ssl.create_default_context(cafile=ca)
            self.conn = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=60)
        else:
            self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body)
        self.conn.request(method, path, body=data,
                          headers={"Content-Type": "application/json"})
        res = self.conn.getresponse()
        text = res.read()
        if res.status != 200:
            raise SystemExit(f"simulator {method} {path}: {res.status} {text[:200]!r}")
        return json.loads(text)


def setup(url, ca, partner, key, *specs):
    sim = Sim(url, ca)
    sim.call("POST", "/_sim/partners", {"partner_id": int(partner), "partner_key": key})
    for spec in specs:
        shop, items, models = (int(x) for x in spec.split(":"))
        sim.call("POST", "/_sim/shops", {
            "partner_id": int(partner), "shop_id": shop,
            "access_token": f"tok-{shop}", "refresh_token": f"ref-{shop}",
            "expire_in": 86400, "rate_limit_per_sec": None})
        for item in range(1, items + 1):
            sim.call("POST", "/_sim/items",
                     {"shop_id": shop, "item_id": item, "models": list(range(models))})


def sign(url, partner, key, shop, token):
    ts = str(int(time.time()))
    base = f"{partner}{PATH}{ts}{token}{shop}"
    sig = hmac.new(key.encode(), base.encode(), hashlib.sha256).hexdigest()
    q = urllib.parse.urlencode({"partner_id": partner, "timestamp": ts,
                                "access_token": token, "shop_id": shop, "sign": sig})
    print(f"{url.rstrip('/')}{PATH}?{q}")


def pct(values, p):
    """nearest-rank percentile"""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def latency(url, ca, shop, level, pglog, starts):
    shop, level = int(shop), int(level)
    # pgbench -l: client_id transaction_no latency script_no time_epoch time_us [lag]
    commits = []
    with open(pglog) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[2] != "skipped":
                commits.append((int(parts[1]), int(parts[4]) + int(parts[5]) / 1e6))
    commits.sort()
    commit_of = {i + 1: t for i, (_, t) in enumerate(commits)}  # LAT-n is the n-th transaction

    started = {}
    with open(starts) as f:
        for line in f:
            n, t = line.split()
            started.setdefault(int(n), float(t))

    sim = Sim(url, ca)
    arrival = {}
    since = 0
    while True:
        page = sim.call("GET", f"/_sim/log?since={since}&limit=5000")
        for e in page["entries"]:
            if e["shop_id"] == shop and e["path"] == PATH and e["status"] == 200 and \
                    any(a.get("stock") == level for a in e.get("applied") or []):
                arrival.setdefault(e["item_id"], e["time"])
        if not page["entries"]:
            break
        since = page["next"]

    total, pickup, wire = [], [], []
    for n, t_commit in commit_of.items():
        if n in arrival:
            total.append((arrival[n] - t_commit) * 1000)
            if n in started:
                pickup.append((started[n] - t_commit) * 1000)
                wire.append((arrival[n] - started[n]) * 1000)
    if not total:
        raise SystemExit("no latency samples matched")
    out = {"transactions": len(commit_of), "matched": len(total)}
    for name, vals in (("total", total), ("pickup", pickup), ("wire", wire)):
        if vals:
            out[name] = {"p50": pct(vals, 50), "p90": pct(vals, 90), "p99": pct(vals, 99),
                         "max": max(vals), "min": min(vals)}
    print(json.dumps(out))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"setup": setup, "sign": sign, "latency": latency}[cmd](*args)
