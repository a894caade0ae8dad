#!/usr/bin/python3
"""bench/webhooks_helper.py: the parts of bench/webhooks.sh that build
signed pushes, talk to the simulators and the example handler, or crunch
numbers (standard library, and psycopg2 for e2e).

  pushes OUT M DUP_PCT PUBLIC T
        M signed pushes as CSV for COPY (n, channel, headers, body, url,
        order_id, known, dup), a third each Shopee, TikTok, Lazada, each an
        order status push with a new event key; half of the orders "known"
        (webhooks.sh records their lines first; their push cancels them: a
        release), the others new (the push queues a fetch); DUP_PCT % of the
        rows are a re-delivery of the row 400 before (a duplicate)
  pct LOG...
        p50/p90/p99/mean of pgbench -l logs (ms), as JSON
  e2e DSN PUBLIC HANDLER_URL SHOPEE_URL TT_URL LZ_URL CA N RATE
        N orders, one a sku, each put on the Shopee simulator then pushed
        (signed) through the example handler at RATE per second; when all
        are synced, the TikTok and Lazada simulators' arrival time of each
        sku's lowered level (99) minus the time the push was sent; JSON
"""

import csv
import hashlib
import hmac
import http.client
import json
import os
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sync_helper import Sim, arrivals, pct  # noqa: E402

SHOPEE_PARTNER, SHOPEE_KEY = "2001888", "bench-push-partner-key-0123456789"
TT_KEY, TT_SECRET = "tt-hook-app", "tt-hook-secret-0123456789abcdef"
LZ_KEY, LZ_SECRET = "120009", "lzd-hook-secret-0123456789abcdef"
HOOK_SHOPEE, HOOK_TT, HOOK_LZ = 9001, "7494049642642449001", "900001"


def hexmac(key, msg):
    return hmac.new(key.encode(), msg.encode(), hashlib.sha256).hexdigest()


def headers(sig, body):
    return json.dumps({"Authorization": sig, "Content-Type": "application/json",
                       "Content-Length": str(len(body.encode())),
                       "User-Agent": "marketplace-push/1.0", "Accept-Encoding": "gzip"},
                      separators=(",", ":"))


def shopee_push(shop, order, status, t, public):
    body = ('{"data":{"items":[],"ordersn":"%s","status":"%s","completed_scenario":"",'
            '"update_time":%d},"shop_id":%d,"code":3,"timestamp":%d}' % (order, status, t, shop, t))
    url = public + "/webhooks/shopee"
    return body, hexmac(SHOPEE_KEY, url + "|" + body), url


def pushes(out, m, dup_pct, public, t):
    m, dup_pct, t = int(m), int(dup_pct), int(t)
    rows = []
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        for n in range(1, m + 1):
            if n > 400 and (n * 7919) % 100 < dup_pct:
                row = list(rows[n - 401])
                row[0], row[7] = n, "t"
                rows.append(row)
                w.writerow(row)
                continue
            known = n % 2 == 0
            ch = ("shopee", "tiktok", "lazada")[n % 3]
            url = ""
            if ch == "shopee":
                order = "WH-%d" % n
                body, sig, url = shopee_push(HOOK_SHOPEE, order, "CANCELLED" if known else "READY_TO_SHIP",
                                             t, public)
            elif ch == "tiktok":
                order = "5764614130%08d" % n
                body = ('{"type":1,"tts_notification_id":"7327112393%09d","shop_id":"%s","timestamp":%d,'
                        '"data":{"order_id":"%s","order_status":"%s","is_on_hold_order":false,'
                        '"update_time":%d}}' % (n, HOOK_TT, t, order,
                                                 "CANCEL" if known else "AWAITING_SHIPMENT", t))
                sig = hexmac(TT_SECRET, TT_KEY + body)
            else:
                trade = "88%08d" % n
                order = trade + "/" + trade + "01"
                body = ('{"seller_id":"%s","message_type":0,"data":{"order_status":"%s",'
                        '"trade_order_id":"%s","trade_order_line_id":"%s01","status_update_time":%d},'
                        '"timestamp":%d}' % (HOOK_LZ, "canceled" if known else "pending",
                                             trade, trade, t, t * 1000))
                sig = hexmac(LZ_SECRET, LZ_KEY + body)
            row = [n, ch, headers(sig, body), body, url, order, "t" if known else "f", "f"]
            rows.append(row)
            w.writerow(row)


def pct_cmd(*logs):
    # pgbench -l: client_id transaction_no latency_us script_no time_epoch time_us
    lat = []
    for log in logs:
        with open(log) as f:
            for line in f:
                p = line.split()
                if len(p) >= 6 and p[2] not in ("skipped", "failed"):
                    lat.append(int(p[2]) / 1000)
    print(json.dumps({"n": len(lat), "p50": pct(lat, 50), "p90": pct(lat, 90),
                      "p99": pct(lat, 99), "mean": sum(lat) / len(lat)}))


def e2e(dsn, public, handler_url, shopee_url, tt_url, lz_url, ca, n, rate):
    import psycopg2
    n, rate = int(n), float(rate)
    shopee = Sim(shopee_url, ca)
    u = urllib.parse.urlsplit(handler_url)
    handler = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    sent, answer_ms, statuses = {}, [], {}
    t = int(time.time()) - 60
    next_at = time.monotonic()
    for i in range(1, n + 1):
        order = "E2E-%d" % i
        shopee.call("POST", "/_sim/orders", {
            "shop_id": 7001, "order_sn": order, "order_status": "READY_TO_SHIP", "update_time": t,
            "lines": [{"item_id": i, "model_id": 0, "qty": 1}]})
        body, sig, _ = shopee_push(7001, order, "READY_TO_SHIP", t, public)
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        next_at += 1 / rate
        sent[i] = time.time()
        t0 = time.monotonic()
        handler.request("POST", "/webhooks/shopee", body=body.encode(),
                        headers={"Authorization": sig, "Content-Type": "application/json",
                                 "X-Correlation-ID": "e2e-%d" % i})
        res = handler.getresponse()
        res.read()
        answer_ms.append((time.monotonic() - t0) * 1000)
        statuses[res.status] = statuses.get(res.status, 0) + 1

    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    deadline = time.time() + 120
    while time.time() < deadline:
        cur.execute("""SELECT (SELECT count(*) FROM invsync.marketplace_orders
                                WHERE order_id LIKE 'E2E-%%' AND effect = 'reserve'),
                              (SELECT count(*) FROM invsync.sync_queue q JOIN invsync.listings l
                                   ON l.tenant_id = q.tenant_id AND l.listing_id = q.listing_id
                                WHERE l.sku LIKE 'E2E-%%' AND q.state <> 'synced')""")
        reserved, pending = cur.fetchone()
        if reserved == n and pending == 0:
            break
        time.sleep(0.2)
    # when the worker's transaction that reserved committed (the ledger row's
    # time is its start: close enough), and when the fetch request started
    cur.execute("""SELECT split_part(idempotency_key, ':', 4), extract(epoch FROM recorded_at)
                     FROM invsync.ledger WHERE idempotency_key LIKE 'mp:shopee:%%:E2E-%%:reserve'""")
    reserved_at = {int(k.split("-")[1]): float(v) for k, v in cur.fetchall()}
    cur.execute("""SELECT correlation_id, extract(epoch FROM min(started_at)) FROM invsync.sync_attempts
                    WHERE kind = 'order_fetch' AND correlation_id LIKE 'e2e-%%' GROUP BY 1""")
    fetch_at = {int(k.split("-")[1]): float(v) for k, v in cur.fetchall()}

    out = {"orders": n, "rate": rate, "answers": statuses, "reserved": len(reserved_at),
           "handler_ms": {"p50": pct(answer_ms, 50), "p99": pct(answer_ms, 99)}}
    for ch, url, shop in (("tiktok", tt_url, "TT7301"), ("lazada", lz_url, "7501")):
        sim = Sim(url, ca)
        arrival, since = {}, 0
        while True:
            page = sim.call("GET", "/_sim/log?since=%d&limit=5000" % since)
            for e in page["entries"]:
                for k in arrivals(ch, e, shop, 99):
                    arrival.setdefault(k, e["time"])
            if not page["entries"]:
                break
            since = page["next"]
        total = [(arrival[k] - sent[k]) * 1000 for k in sent if k in arrival]
        if not total:
            raise SystemExit("e2e: no arrival on %s matched" % ch)
        out[ch] = {"matched": len(total), "p50": pct(total, 50), "p90": pct(total, 90),
                   "p99": pct(total, 99), "max": max(total)}
    for name, a, b in (("push_to_fetch", sent, fetch_at), ("push_to_reserve", sent, reserved_at)):
        v = [(b[k] - a[k]) * 1000 for k in a if k in b]
        if v:
            out[name] = {"p50": pct(v, 50), "p99": pct(v, 99)}
    print(json.dumps(out))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"pushes": pushes, "pct": pct_cmd, "e2e": e2e}[cmd](*args)
