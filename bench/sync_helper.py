#!/usr/bin/env python3
"""bench/sync_helper.py: the parts of bench/sync.sh that talk to the
simulators or crunch numbers (standard library only).

  setup URL CA PARTNER KEY SPEC...   Shopee: partner, shops (no rate limit)
                                     and items; SPEC is SHOP:ITEMS:MODELS
  setup-tiktok URL CA APP SECRET PLATFORM CIPHER N
                                     TikTok simulator: app, one shop
                                     (platform TIKTOK_SHOP or TOKOPEDIA,
                                     region ID, no rate limit, token
                                     tok-CIPHER) and products 1..N, product n
                                     with one SKU 100000+n in warehouse W1
  setup-lazada URL CA APP SECRET SELLER N
                                     Lazada simulator: app, one
                                     single-warehouse seller (token
                                     tok-SELLER, no rate limit) and items
                                     1..N, item n with one SKU 100000+n
  sign URL PARTNER KEY SHOP TOKEN    a signed Shopee update_stock URL (valid
                                     300 s)
  wrk CHANNEL BASE N BODYFILE LUAFILE
                                     the channel's push request for N
                                     listings (models, SKUs) as the worker
                                     sends it (body, content type, signed
                                     query, token header) as a wrk script;
                                     prints the URL to give wrk.  Also
                                     LUAFILE.floor: the URL as the worker
                                     sends it (Shopee's with its signed
                                     query too), then the header lines,
                                     for bench/http_floor
  latency CHANNEL URL CA SHOP LEVEL PGLOG STARTS
                                     commit-to-marketplace latencies: the
                                     simulator's arrival time of the first
                                     update setting listing n's level to
                                     LEVEL (n: the Shopee item, TikTok
                                     product or Lazada item), minus the
                                     commit time of the n-th pgbench
                                     transaction (its -l log); STARTS has
                                     "n started_at_epoch" lines (when the
                                     worker started the request)
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


def setup_tiktok(url, ca, app, secret, platform, cipher, n):
    sim = Sim(url, ca)
    sim.call("POST", "/_sim/apps", {"app_key": app, "app_secret": secret})
    sim.call("POST", "/_sim/shops", {
        "app_key": app, "shop_cipher": cipher, "region": "ID", "platform": platform,
        "access_token": f"tok-{cipher}", "refresh_token": f"ref-{cipher}",
        "rate_limit_per_sec": None})
    for p in range(1, int(n) + 1):
        sim.call("POST", "/_sim/products", {
            "shop_cipher": cipher, "product_id": str(p),
            "skus": {str(100000 + p): ["W1"]}})


def setup_lazada(url, ca, app, secret, seller, n):
    sim = Sim(url, ca)
    sim.call("POST", "/_sim/apps", {"app_key": app, "app_secret": secret})
    sim.call("POST", "/_sim/sellers", {
        "app_key": app, "seller_id": seller, "country": "sg",
        "access_token": f"tok-{seller}", "refresh_token": f"ref-{seller}",
        "multi_warehouse": False, "rate_limit_per_sec": None})
    for i in range(1, int(n) + 1):
        sim.call("POST", "/_sim/products", {
            "seller_id": seller, "item_id": i,
            "skus": [{"sku_id": 100000 + i, "seller_sku": f"LZ-{i}"}]})


def wrk(channel, base, n, bodyfile, luafile):
    """the request the worker sends for n listings, shaped as the adapters
    build them (adapters/shopee.c, tiktok.c, lazada.c)"""
    n = int(n)
    base = base.rstrip("/")
    headers = {}
    floor_url = None
    if channel == "shopee":
        # as before the per-channel runs: the body, no query
        url = f"{base}{PATH}"
        floor_url = signed_url(base, "2001234", "bench-partner-key", "7100001",
                               "tok-7100001")
        ctype = "application/json"
        body = json.dumps({"item_id": 1, "stock_list": [
            {"model_id": m, "seller_stock": [{"stock": 5}]} for m in range(n)]},
            separators=(",", ":"))
    elif channel in ("tiktok", "tokopedia"):
        path = "/product/202309/products/1/inventory/update"
        ctype = "application/json"
        body = json.dumps({"skus": [
            {"id": str(100001 + k), "inventory": [{"warehouse_id": "W1", "quantity": 5}]}
            for k in range(n)]}, separators=(",", ":"))
        secret = "bench-app-secret"
        params = {"app_key": "bench-app", "timestamp": str(int(time.time())),
                  "shop_cipher": "BENCH_CIPHER"}
        base_str = secret + path + "".join(k + params[k] for k in sorted(params)) + body + secret
        params["sign"] = hmac.new(secret.encode(), base_str.encode(), hashlib.sha256).hexdigest()
        url = f"{base}{path}?{urllib.parse.urlencode(params)}"
        headers["x-tts-access-token"] = "tok-BENCH_CIPHER"
    elif channel == "lazada":
        path = "/product/stock/sellable/update"
        ctype = "application/x-www-form-urlencoded"
        payload = "<Request><Product><Skus>" + "".join(
            f"<Sku><ItemId>{k + 1}</ItemId><SkuId>{100001 + k}</SkuId>"
            f"<SellableQuantity>5</SellableQuantity></Sku>" for k in range(n)) + \
            "</Skus></Product></Request>"
        params = {"app_key": "120001", "timestamp": str(int(time.time() * 1000)),
                  "sign_method": "sha256", "access_token": "tok-8100001", "payload": payload}
        msg = path + "".join(k + params[k] for k in sorted(params))
        sign = hmac.new(b"bench-app-secret", msg.encode(), hashlib.sha256).hexdigest().upper()
        query = {k: params[k] for k in sorted(params) if k != "payload"}
        query["sign"] = sign
        url = f"{base}{path}?{urllib.parse.urlencode(query)}"
        body = urllib.parse.urlencode({"payload": payload})
    else:
        raise SystemExit(f"unknown channel {channel}")
    with open(bodyfile, "w") as f:
        f.write(body)
    with open(luafile, "w") as f:
        f.write('wrk.method = "POST"\n')
        f.write(f'wrk.headers["Content-Type"] = "{ctype}"\n')
        for k, v in headers.items():
            f.write(f'wrk.headers["{k}"] = "{v}"\n')
        f.write(f'local f = io.open("{bodyfile}")\nwrk.body = f:read("*a")\nf:close()\n')
    with open(luafile + ".floor", "w") as f:
        f.write((floor_url or url) + "\n")
        f.write(f"Content-Type: {ctype}\n")
        for k, v in headers.items():
            f.write(f"{k}: {v}\n")
    print(url)


def signed_url(url, partner, key, shop, token):
    ts = str(int(time.time()))
    base = f"{partner}{PATH}{ts}{token}{shop}"
    sig = hmac.new(key.encode(), base.encode(), hashlib.sha256).hexdigest()
    q = urllib.parse.urlencode({"partner_id": partner, "timestamp": ts,
                                "access_token": token, "shop_id": shop, "sign": sig})
    return f"{url.rstrip('/')}{PATH}?{q}"


def sign(url, partner, key, shop, token):
    print(signed_url(url, partner, key, shop, token))


def pct(values, p):
    """nearest-rank percentile"""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def arrivals(channel, e, shop, level):
    """the listings (n) a simulator log entry set to level"""
    if e.get("status") != 200:
        return []
    if channel == "shopee":
        if e["shop_id"] == int(shop) and e["path"] == PATH and \
                any(a.get("stock") == level for a in e.get("applied") or []):
            return [e["item_id"]]
    elif channel in ("tiktok", "tokopedia"):
        if e.get("shop_cipher") == shop and e.get("product_id") and e.get("code") == 0 and \
                any(a.get("quantity") == level for a in e.get("applied") or []):
            return [int(e["product_id"])]
    elif channel == "lazada":
        if str(e.get("seller_id")) == shop and e.get("api_path") == "/product/stock/sellable/update":
            return [int(a["item_id"]) for a in e.get("applied") or [] if a.get("quantity") == level]
    return []


def latency(channel, url, ca, shop, level, pglog, starts):
    level = int(level)
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
            for n in arrivals(channel, e, shop, level):
                arrival.setdefault(n, e["time"])
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
    {"setup": setup, "setup-tiktok": setup_tiktok, "setup-lazada": setup_lazada,
     "sign": sign, "wrk": wrk, "latency": latency}[cmd](*args)
