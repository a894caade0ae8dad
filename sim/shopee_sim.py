"""Shopee Open Platform v2 simulator for invsync tests, demos and benchmarks.

An independent re-implementation (Python standard library only) of the parts
of the Shopee v2 API that invsync talks to:

* ``POST /api/v2/product/update_stock``   (Shop API sign)
* ``POST /api/v2/auth/access_token/get``  (Public API sign, token rotation)
* ``GET  /api/v2/product/get_model_list`` (Shop API sign)

Requests are verified the way Shopee does it (partner, timestamp window,
lower-hex HMAC-SHA256 sign, shop, access token, rate limit, body), so that a
signing or encoding bug in the client cannot go unnoticed.  A control API
under ``/_sim/`` configures partners, shops, items and fault injection, and
exposes the request log, the stock levels with their history, and counters.
See README.md in this directory for the details.

Usage:
    python3 sim/shopee_sim.py --host 127.0.0.1 --port 0 --port-file PATH
        [--tls-cert CERT --tls-key KEY] [--seed N] [--quiet]
"""

import argparse
import bisect
import contextlib
import hashlib
import hmac
import json
import os
import random
import re
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

PATH_UPDATE_STOCK = "/api/v2/product/update_stock"
PATH_REFRESH = "/api/v2/auth/access_token/get"
PATH_MODEL_LIST = "/api/v2/product/get_model_list"
PATH_ORDER_DETAIL = "/api/v2/order/get_order_detail"

TIMESTAMP_WINDOW = 300        # seconds a request timestamp may be off
PREVIOUS_TOKEN_GRACE = 300    # seconds the old access token lives on
DEFAULT_EXPIRE_IN = 14400     # access token lifetime (4 h)
MAX_STOCK_LIST = 50
MAX_BODY = 1 << 20
INT64_MAX = (1 << 63) - 1
DEFAULT_LOG_LIMIT = 1_000_000
DEFAULT_TIMEOUT_MS = 30000
DEFAULT_LATENCY_MS = 1000

THROTTLE_MESSAGE = ("Too many requests for the shop at the moment, "
                    "please try again later.")
MULTI_WAREHOUSE_MESSAGE = ("The merchant/shop has multi warehouse, "
                           "please input location id")

FAULT_KINDS = frozenset({
    "http_500", "http_503", "timeout", "reset", "malformed_json", "throttle",
    "latency", "error_server_busy", "empty_body", "apply_then_reset",
})

_CANONICAL_INT = re.compile(r"0|[1-9][0-9]{0,18}")


def base_string(partner_id, path, timestamp, access_token="", shop_id=""):
    """Shopee base string: plain concatenation, no separators.

    Public API: partner_id + path + timestamp.
    Shop API:   partner_id + path + timestamp + access_token + shop_id.
    """
    return f"{partner_id}{path}{timestamp}{access_token}{shop_id}"


def compute_sign(partner_key, base):
    """Lower-hex HMAC-SHA256 of the base string, keyed by the partner key.

    The key is used as its UTF-8 bytes, never hex-decoded.
    """
    return hmac.new(partner_key.encode("utf-8"), base.encode("utf-8"),
                    hashlib.sha256).hexdigest()


def parse_int(text):
    """Parse a canonical non-negative decimal integer, else None."""
    if isinstance(text, str) and _CANONICAL_INT.fullmatch(text):
        value = int(text)
        if value <= INT64_MAX:
            return value
    return None


def json_int(value):
    """Return value if it is a JSON integer (no bool, no float), else None."""
    return value if type(value) is int else None


def envelope(error, message, response=None):
    """Shopee's response envelope."""
    body = {"request_id": uuid.uuid4().hex, "error": error,
            "message": message, "warning": ""}
    if response is not None:
        body["response"] = response
    return body


@dataclass
class Reply:
    """An HTTP answer: a JSON payload or raw bytes."""
    status: int
    payload: dict = None
    raw: bytes = b""
    content_type: str = "application/json"
    headers: tuple = ()

    @property
    def error(self):
        return self.payload.get("error") if self.payload else None

    def body(self):
        if self.payload is None:
            return self.raw
        return json.dumps(self.payload, separators=(",", ":")).encode()


class ApiError(Exception):
    """Aborts request processing with a Shopee error envelope."""

    def __init__(self, status, error, message, response=None):
        super().__init__(message)
        self.reply = Reply(status, envelope(error, message, response))


def require_int(obj, name, label, code, minimum=0):
    """Fetch a JSON integer field in [minimum, INT64_MAX] or raise ApiError."""
    value = obj.get(name)
    if value is None:
        raise ApiError(400, code,
                       f"invalid field {label}: value must Not Null")
    value = json_int(value)
    if value is None or not minimum <= value <= INT64_MAX:
        raise ApiError(400, code, f"invalid field {label}: must be an "
                                  f"integer >= {minimum}")
    return value


class TokenBucket:
    """Per-shop rate limiter: `rate` requests/s, bursts of up to `burst`."""

    def __init__(self, rate, burst):
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = time.monotonic()

    def take(self):
        now = time.monotonic()
        self.tokens = min(self.burst,
                          self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class Shop:
    partner_id: int
    shop_id: int
    access_token: str
    refresh_token: str
    access_expires_at: float
    expire_in: int
    locations: list
    limiter: TokenBucket = None
    previous_token: str = None
    previous_valid_until: float = 0.0
    spent_refresh_tokens: set = field(default_factory=set)


@dataclass
class Item:
    models: list
    fail_models: dict


@dataclass
class FaultRule:
    kind: str
    path: str = None
    shop_id: int = None
    probability: float = 1.0
    count: int = None
    delay_ms: int = None
    retry_after: int = None
    fired: int = 0

    @classmethod
    def from_json(cls, spec):
        if not isinstance(spec, dict):
            raise ValueError("each rule must be an object")
        kind = spec.get("kind")
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        rule = cls(kind=kind)
        path = spec.get("path")
        if path is not None and not isinstance(path, str):
            raise ValueError("path must be a string")
        rule.path = path
        probability = spec.get("probability", 1.0)
        if (isinstance(probability, bool)
                or not isinstance(probability, (int, float))
                or not 0 <= probability <= 1):
            raise ValueError("probability must be a number in [0, 1]")
        rule.probability = float(probability)
        for name in ("shop_id", "count", "delay_ms", "retry_after"):
            value = spec.get(name)
            if value is not None and (json_int(value) is None or value < 0):
                raise ValueError(f"{name} must be a non-negative integer")
            setattr(rule, name, value)
        if rule.delay_ms is None and kind in ("timeout", "latency"):
            rule.delay_ms = (DEFAULT_TIMEOUT_MS if kind == "timeout"
                             else DEFAULT_LATENCY_MS)
        return rule

    def matches(self, call):
        return ((self.path is None or self.path == call.path)
                and (self.shop_id is None or self.shop_id == call.shop_id)
                and (self.count is None or self.fired < self.count))

    def to_json(self):
        return {"kind": self.kind, "path": self.path, "shop_id": self.shop_id,
                "probability": self.probability, "count": self.count,
                "delay_ms": self.delay_ms, "retry_after": self.retry_after,
                "fired": self.fired}


def fault_reply(rule):
    """The canned answer of a fault that replies without processing."""
    kind = rule.kind
    if kind in ("http_500", "http_503"):
        status = 500 if kind == "http_500" else 503
        text = ("Internal Server Error" if status == 500
                else "Service Unavailable")
        html = (f"<html><head><title>{status} {text}</title></head>"
                f"<body><h1>{status} {text}</h1></body></html>\n")
        return Reply(status, raw=html.encode(), content_type="text/html")
    if kind == "throttle":
        headers = ()
        if rule.retry_after is not None:
            headers = (("Retry-After", str(rule.retry_after)),)
        return Reply(429, envelope("error_server", THROTTLE_MESSAGE),
                     headers=headers)
    if kind == "error_server_busy":
        return Reply(200, envelope("error_system_busy",
                                   "System is busy, please try again later."))
    if kind == "malformed_json":
        full = Reply(200, envelope("", "", {"failure_list": [],
                                            "success_list": []})).body()
        return Reply(200, raw=full[:len(full) // 2])
    if kind == "empty_body":
        return Reply(200, raw=b"")
    raise AssertionError(f"fault {kind} has no canned reply")


@dataclass
class Call:
    """One marketplace request, as received."""
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes
    arrived: float
    doc: object = None          # parsed JSON body, None if absent/invalid
    shop_id: int = None
    item_id: int = None
    applied: list = field(default_factory=list)
    failed: list = field(default_factory=list)

    @classmethod
    def parse(cls, method, path, query_string, headers, body):
        call = cls(method=method, path=path,
                   query=dict(parse_qsl(query_string,
                                        keep_blank_values=True)),
                   headers={name: headers.get(name)
                            for name in ("X-Correlation-ID", "Content-Type",
                                         "Host")},
                   body=body, arrived=time.time())
        if body:
            try:
                call.doc = json.loads(body.decode("utf-8"))
            except ValueError:
                call.doc = None
        doc = call.doc if isinstance(call.doc, dict) else {}
        call.shop_id = parse_int(call.query.get("shop_id"))
        if call.shop_id is None:
            call.shop_id = json_int(doc.get("shop_id"))
        call.item_id = json_int(doc.get("item_id"))
        if call.item_id is None:
            call.item_id = parse_int(call.query.get("item_id"))
        return call


class SimState:
    """All simulator state; every access holds `lock`."""

    def __init__(self, seed, log_limit):
        self.lock = threading.Lock()
        self.seed = seed
        self.log_limit = log_limit
        self.next_seq = 1
        self.reset()

    # ----- control API -----------------------------------------------------

    def reset(self):
        self.rng = random.Random(self.seed)
        self.partners = {}
        self.shops = {}
        self.items = {}
        self.orders = {}
        self.stock = {}
        self.history = {}
        self.faults = []
        self.log = []
        self.stats = {
            "requests": 0, "by_status": {}, "applied_updates": 0,
            "applied_levels": 0, "refreshes": 0,
            "spent_refresh_token_reuse": 0, "rejected_sign": 0,
            "rejected_auth": 0, "throttled": 0, "faults": {},
            "peak_per_second": {},
        }
        self.arrivals = {}

    def put_partner(self, spec):
        partner_id = json_int(spec.get("partner_id"))
        key = spec.get("partner_key")
        if partner_id is None or not isinstance(key, str) or not key:
            raise ValueError("need partner_id (int) and partner_key (str)")
        self.partners[partner_id] = key

    def put_shop(self, spec):
        partner_id = json_int(spec.get("partner_id"))
        if partner_id not in self.partners:
            raise ValueError("partner_id must be a registered partner")
        shop_id = json_int(spec.get("shop_id"))
        if shop_id is None:
            raise ValueError("shop_id must be an integer")
        tokens = [spec.get("access_token"), spec.get("refresh_token")]
        if not all(isinstance(t, str) and t for t in tokens):
            raise ValueError("access_token and refresh_token must be "
                             "non-empty strings")
        expire_in = spec.get("expire_in", DEFAULT_EXPIRE_IN)
        if json_int(expire_in) is None or expire_in <= 0:
            raise ValueError("expire_in must be a positive integer")
        expires_at = spec.get("access_expires_at", time.time() + expire_in)
        if isinstance(expires_at, bool) or not isinstance(expires_at,
                                                          (int, float)):
            raise ValueError("access_expires_at must be a unix time")
        locations = spec.get("locations") or []
        if (not isinstance(locations, list)
                or not all(isinstance(loc, str) and loc for loc in locations)):
            raise ValueError("locations must be a list of non-empty strings")
        self.shops[shop_id] = Shop(
            partner_id=partner_id, shop_id=shop_id, access_token=tokens[0],
            refresh_token=tokens[1], access_expires_at=float(expires_at),
            expire_in=expire_in, locations=list(locations),
            limiter=self._limiter(spec))

    @staticmethod
    def _limiter(spec):
        rate = spec.get("rate_limit_per_sec")
        if rate is None:
            return None
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) \
                or rate <= 0:
            raise ValueError("rate_limit_per_sec must be a positive number")
        burst = spec.get("rate_limit_burst", max(1.0, float(rate)))
        if isinstance(burst, bool) or not isinstance(burst, (int, float)) \
                or burst < 1:
            raise ValueError("rate_limit_burst must be a number >= 1")
        return TokenBucket(float(rate), float(burst))

    def put_item(self, spec):
        shop_id = json_int(spec.get("shop_id"))
        if shop_id not in self.shops:
            raise ValueError("shop_id must be a configured shop")
        item_id = json_int(spec.get("item_id"))
        if item_id is None:
            raise ValueError("item_id must be an integer")
        models = spec.get("models", [0])
        if (not isinstance(models, list) or not models
                or any(json_int(m) is None for m in models)):
            raise ValueError("models must be a non-empty list of integers")
        fail_models = spec.get("fail_models") or {}
        if not isinstance(fail_models, dict):
            raise ValueError("fail_models must be an object")
        failing = {}
        for key, reason in fail_models.items():
            model_id = parse_int(key)
            if model_id is None or not isinstance(reason, str):
                raise ValueError("fail_models maps model id strings to "
                                 "reason strings")
            failing[model_id] = reason
        self.items[(shop_id, item_id)] = Item(models=list(models),
                                              fail_models=failing)

    def put_order(self, spec):
        """An order get_order_detail returns: {shop_id, order_sn,
        order_status, update_time, lines: [{item_id, model_id?, qty}]}."""
        shop_id = json_int(spec.get("shop_id"))
        if shop_id not in self.shops:
            raise ValueError("shop_id must be a configured shop")
        order_sn = spec.get("order_sn")
        status = spec.get("order_status")
        update_time = json_int(spec.get("update_time"))
        lines = spec.get("lines")
        if not isinstance(order_sn, str) or not order_sn:
            raise ValueError("order_sn must be a non-empty string")
        if not isinstance(status, str) or update_time is None:
            raise ValueError("order_status (string) and update_time (int) "
                             "are required")
        if not isinstance(lines, list) or any(
                not isinstance(line, dict) or json_int(line.get("item_id")) is None
                or json_int(line.get("model_id", 0)) is None
                or json_int(line.get("qty")) is None for line in lines):
            raise ValueError("lines must be [{item_id, model_id?, qty}]")
        self.orders[(shop_id, order_sn)] = {
            "order_sn": order_sn, "order_status": status,
            "update_time": update_time, "create_time": update_time,
            "item_list": [{"item_id": json_int(line["item_id"]),
                           "model_id": json_int(line.get("model_id", 0)),
                           "item_sku": "", "model_sku": "",
                           "model_quantity_purchased": json_int(line["qty"])}
                          for line in lines]}

    def expire_token(self, spec):
        shop = self.shops.get(json_int(spec.get("shop_id")))
        if shop is None:
            raise ValueError("shop_id must be a configured shop")
        now = time.time()
        shop.access_expires_at = min(shop.access_expires_at, now)
        shop.previous_valid_until = min(shop.previous_valid_until, now)

    def set_faults(self, spec):
        rules = spec.get("rules")
        if not isinstance(rules, list):
            raise ValueError("rules must be a list")
        self.faults = [FaultRule.from_json(rule) for rule in rules]

    def shop_view(self, shop_id):
        shop = self.shops.get(shop_id)
        if shop is None:
            raise ValueError("shop_id must be a configured shop")
        return {
            "partner_id": shop.partner_id, "shop_id": shop.shop_id,
            "access_token": shop.access_token,
            "refresh_token": shop.refresh_token,
            "access_expires_at": shop.access_expires_at,
            "expire_in": shop.expire_in,
            "previous_access_token": shop.previous_token,
            "previous_valid_until": shop.previous_valid_until,
            "locations": shop.locations,
            "rate_limit_per_sec": shop.limiter.rate if shop.limiter else None,
        }

    def log_view(self, since, limit):
        start = 0
        if self.log:
            start = max(0, since - self.log[0]["seq"] + 1)
        entries = self.log[start:start + limit]
        last = self.next_seq - 1
        nxt = entries[-1]["seq"] if entries else min(since, last)
        return {"entries": entries, "next": nxt}

    def stock_view(self, shop_id):
        keys = set(self.stock)
        for (item_shop, item_id), item in self.items.items():
            locations = self.shops[item_shop].locations or [""]
            keys.update((item_shop, item_id, model_id, loc)
                        for model_id in item.models for loc in locations)
        rows = []
        for key in sorted(keys):
            if shop_id is not None and key[0] != shop_id:
                continue
            rows.append({"shop_id": key[0], "item_id": key[1],
                         "model_id": key[2], "location_id": key[3],
                         "stock": self.stock.get(key, 0),
                         "history": list(self.history.get(key, ()))})
        return {"stock": rows}

    def stats_view(self):
        stats = dict(self.stats)
        for name in ("by_status", "faults", "peak_per_second"):
            stats[name] = dict(stats[name])
        return stats

    def _count_arrival(self, call):
        """peak_per_second: per shop, the most requests that arrived within
        any sliding second, whatever became of them.  Requests are logged
        when they end, not in arrival order, so every window ending at an
        arrival within a second after this one is counted again."""
        if call.shop_id is None:
            return
        times = self.arrivals.setdefault(call.shop_id, [])
        bisect.insort(times, call.arrived)
        while times and times[0] < times[-1] - 120.0:
            del times[0]
        peaks = self.stats["peak_per_second"]
        key = str(call.shop_id)
        first = bisect.bisect_left(times, call.arrived)
        last = bisect.bisect_right(times, call.arrived + 1.0)
        for end in times[first:last]:
            count = (bisect.bisect_right(times, end)
                     - bisect.bisect_right(times, end - 1.0))
            peaks[key] = max(peaks.get(key, 0), count)

    # ----- marketplace -----------------------------------------------------

    def pick_fault(self, call):
        """The first matching rule whose random draw fires, or None."""
        with self.lock:
            for rule in self.faults:
                if rule.matches(call) and self.rng.random() < rule.probability:
                    rule.fired += 1
                    return rule
        return None

    def record(self, call, status, fault, error=None):
        """Log a request that was not processed."""
        with self.lock:
            self._log(call, status, fault, error)

    def process(self, call, fault=None, log_status=None):
        """Verify and execute a marketplace request; log it."""
        with self.lock:
            try:
                reply = self._route(call)
            except ApiError as exc:
                reply = exc.reply
            self._log(call, log_status or reply.status, fault, reply.error)
        return reply

    def _log(self, call, status, fault, error):
        stats = self.stats
        stats["requests"] += 1
        self._count_arrival(call)
        by_status = stats["by_status"]
        by_status[str(status)] = by_status.get(str(status), 0) + 1
        if fault is not None:
            stats["faults"][fault] = stats["faults"].get(fault, 0) + 1
        elif error == "error_server":
            stats["throttled"] += 1
        if error == "error_sign":
            stats["rejected_sign"] += 1
        elif error == "error_auth":
            stats["rejected_auth"] += 1
        self.log.append({
            "seq": self.next_seq, "time": call.arrived,
            "method": call.method, "path": call.path, "query": call.query,
            "headers": call.headers,
            "body": call.body.decode("utf-8", errors="replace"),
            "shop_id": call.shop_id, "item_id": call.item_id,
            "status": status, "error": error, "fault": fault,
            "applied": call.applied, "failed": call.failed,
        })
        self.next_seq += 1
        if len(self.log) > self.log_limit + self.log_limit // 10:
            del self.log[:len(self.log) - self.log_limit]

    def _route(self, call):
        handler = {
            ("POST", PATH_UPDATE_STOCK): self._update_stock,
            ("POST", PATH_REFRESH): self._refresh,
            ("GET", PATH_MODEL_LIST): self._model_list,
            ("GET", PATH_ORDER_DETAIL): self._order_detail,
        }.get((call.method, call.path))
        if handler is None:
            raise ApiError(404, "error_not_found", "Wrong path.")
        return handler(call)

    def _authenticate(self, call, shop_api):
        """Check partner, timestamp and sign; for Shop APIs also shop and
        access token.  Returns (partner_id, shop or None)."""
        query = call.query
        partner_id = parse_int(query.get("partner_id"))
        key = self.partners.get(partner_id)
        if key is None:
            raise ApiError(403, "invalid_partner_id", "Invalid partner_id.")
        timestamp = parse_int(query.get("timestamp"))
        if timestamp is None or abs(time.time() - timestamp) > \
                TIMESTAMP_WINDOW:
            raise ApiError(403, "error_param", "Invalid timestamp.")
        if shop_api:
            for name in ("access_token", "shop_id"):
                if not query.get(name):
                    raise ApiError(403, "error_param",
                                   f"Missing parameter {name}.")
            base = base_string(query["partner_id"], call.path,
                               query["timestamp"], query["access_token"],
                               query["shop_id"])
        else:
            base = base_string(query["partner_id"], call.path,
                               query["timestamp"])
        given = query.get("sign", "").encode("utf-8")
        if not hmac.compare_digest(given, compute_sign(key, base).encode()):
            raise ApiError(403, "error_sign", "Wrong sign.")
        if not shop_api:
            return partner_id, None
        shop = self._partner_shop(partner_id, parse_int(query["shop_id"]))
        self._check_access_token(shop, query["access_token"])
        return partner_id, shop

    def _partner_shop(self, partner_id, shop_id):
        shop = self.shops.get(shop_id)
        if shop is None or shop.partner_id != partner_id:
            raise ApiError(403, "error_auth", "Invalid shop_id.")
        return shop

    @staticmethod
    def _check_access_token(shop, token):
        now = time.time()
        if token == shop.access_token:
            if now >= shop.access_expires_at:
                raise ApiError(403, "error_auth", "Access token expired.")
        elif not (token == shop.previous_token
                  and now < shop.previous_valid_until):
            raise ApiError(403, "error_auth", "Invalid access_token.")

    @staticmethod
    def _check_rate(shop):
        if shop.limiter is not None and not shop.limiter.take():
            raise ApiError(429, "error_server", THROTTLE_MESSAGE)

    @staticmethod
    def _json_object(call, code):
        content_type = (call.headers["Content-Type"] or "").split(";")[0]
        if content_type.strip().lower() != "application/json":
            raise ApiError(400, code, "Content-Type must be application/json.")
        if not isinstance(call.doc, dict):
            raise ApiError(400, code,
                           "invalid request body: expected a JSON object")
        return call.doc

    def _update_stock(self, call):
        _, shop = self._authenticate(call, shop_api=True)
        self._check_rate(shop)
        code = "product.error_param"
        doc = self._json_object(call, code)
        item_id = require_int(doc, "item_id", "item_id", code, minimum=1)
        entries = self._stock_entries(doc.get("stock_list"), code)
        item = self.items.get((shop.shop_id, item_id))
        if item is None:
            raise ApiError(200, "product.error_item_not_found",
                           "Item not found.")
        self._check_locations(shop, entries, code)

        success, failure = [], []
        for model_id, location_id, stock in entries:
            if model_id not in item.models:
                reason = "Model not found."
            else:
                reason = item.fail_models.get(model_id)
            if reason is not None:
                failed = {"model_id": model_id, "failed_reason": reason}
                if location_id:
                    failed["location_id"] = location_id
                failure.append(failed)
                continue
            key = (shop.shop_id, item_id, model_id, location_id)
            self.stock[key] = stock
            self.history.setdefault(key, []).append(stock)
            success.append({"model_id": model_id, "location_id": location_id,
                            "stock": stock})
        call.applied, call.failed = success, failure
        response = {"failure_list": failure, "success_list": success}
        if not success:
            raise ApiError(200, "error_busi_update_stock_failed",
                           "Update stock failed, please check failure_list",
                           response)
        self.stats["applied_updates"] += 1
        self.stats["applied_levels"] += len(success)
        return Reply(200, envelope("", "", response))

    @staticmethod
    def _stock_entries(stock_list, code):
        """Validate stock_list; return [(model_id, location_id, stock)]."""
        if not isinstance(stock_list, list) or \
                not 1 <= len(stock_list) <= MAX_STOCK_LIST:
            raise ApiError(400, code, "invalid field stock_list: must hold "
                                      f"1 to {MAX_STOCK_LIST} entries")
        entries = []
        for i, entry in enumerate(stock_list):
            label = f"stock_list[{i}]"
            if not isinstance(entry, dict):
                raise ApiError(400, code,
                               f"invalid field {label}: must be an object")
            model_id = require_int(entry, "model_id", f"{label}.model_id",
                                   code)
            seller_stock = entry.get("seller_stock")
            if not isinstance(seller_stock, list) or not seller_stock:
                raise ApiError(400, code, f"invalid field {label}.seller_stock"
                                          ": must be a non-empty list")
            for j, level in enumerate(seller_stock):
                level_label = f"{label}.seller_stock[{j}]"
                if not isinstance(level, dict):
                    raise ApiError(400, code, f"invalid field {level_label}: "
                                              "must be an object")
                stock = require_int(level, "stock", f"{level_label}.stock",
                                    code)
                location_id = level.get("location_id", "")
                if not isinstance(location_id, str):
                    raise ApiError(400, code, f"invalid field {level_label}."
                                              "location_id: must be a string")
                entries.append((model_id, location_id, stock))
        pairs = [(model_id, location) for model_id, location, _ in entries]
        if len(set(pairs)) != len(pairs):
            raise ApiError(400, code, "invalid field stock_list: the same "
                                      "model_id and location_id twice")
        return entries

    @staticmethod
    def _check_locations(shop, entries, code):
        if shop.locations:
            for _, location_id, _ in entries:
                if not location_id:
                    raise ApiError(400, code, MULTI_WAREHOUSE_MESSAGE)
                if location_id not in shop.locations:
                    raise ApiError(400, code,
                                   "invalid field location_id: unknown "
                                   f"location {location_id}")
            return
        if any(location_id for _, location_id, _ in entries):
            raise ApiError(400, code,
                           "location_id is not allowed for this shop")

    def _refresh(self, call):
        partner_id, _ = self._authenticate(call, shop_api=False)
        code = "error_param"
        doc = self._json_object(call, code)
        refresh_token = doc.get("refresh_token")
        if not isinstance(refresh_token, str) or not refresh_token:
            raise ApiError(400, code, "invalid field refresh_token: "
                                      "must be a non-empty string")
        if require_int(doc, "partner_id", "partner_id", code) != partner_id:
            raise ApiError(400, code, "invalid field partner_id: does not "
                                      "match the query")
        shop = self._partner_shop(
            partner_id, require_int(doc, "shop_id", "shop_id", code))
        if refresh_token != shop.refresh_token:
            if refresh_token in shop.spent_refresh_tokens:
                self.stats["spent_refresh_token_reuse"] += 1
            raise ApiError(403, "error_auth", "Invalid refresh_token.")

        now = time.time()
        shop.spent_refresh_tokens.add(shop.refresh_token)
        shop.previous_token = shop.access_token
        shop.previous_valid_until = min(now + PREVIOUS_TOKEN_GRACE,
                                        shop.access_expires_at)
        shop.access_token = self._new_token()
        shop.refresh_token = self._new_token()
        shop.access_expires_at = now + shop.expire_in
        self.stats["refreshes"] += 1
        body = envelope("", "")
        body.update(access_token=shop.access_token,
                    refresh_token=shop.refresh_token,
                    expire_in=shop.expire_in, partner_id=partner_id,
                    shop_id=shop.shop_id)
        return Reply(200, body)

    def _new_token(self):
        return "%032x" % self.rng.getrandbits(128)

    def _model_list(self, call):
        _, shop = self._authenticate(call, shop_api=True)
        self._check_rate(shop)
        item_id = parse_int(call.query.get("item_id"))
        if item_id is None:
            raise ApiError(400, "product.error_param",
                           "invalid field item_id: must be an integer")
        item = self.items.get((shop.shop_id, item_id))
        if item is None:
            raise ApiError(200, "product.error_item_not_found",
                           "Item not found.")
        models = []
        for model_id in item.models:
            levels = [{"location_id": loc,
                       "stock": self.stock.get(
                           (shop.shop_id, item_id, model_id, loc), 0)}
                      for loc in shop.locations or [""]]
            total = sum(level["stock"] for level in levels)
            models.append({"model_id": model_id, "stock_info_v2": {
                "summary_info": {"total_reserved_stock": 0,
                                 "total_available_stock": total},
                "seller_stock": levels}})
        return Reply(200, envelope("", "", {"model": models}))


    def _order_detail(self, call):
        _, shop = self._authenticate(call, shop_api=True)
        self._check_rate(shop)
        numbers = call.query.get("order_sn_list", "")
        if not numbers:
            raise ApiError(400, "error_param",
                           "Wrong parameters, detail: order_sn_list is required.")
        numbers = numbers.split(",")
        if len(numbers) > 50:
            raise ApiError(400, "error_param",
                           "Wrong parameters, detail: at most 50 orders.")
        fields = call.query.get("response_optional_fields", "").split(",")
        found = []
        for order_sn in numbers:
            order = self.orders.get((shop.shop_id, order_sn))
            if order is None:
                continue
            order = dict(order)
            if "item_list" not in fields:
                del order["item_list"]
            found.append(order)
        if not found:
            raise ApiError(200, "error_not_found",
                           "Wrong parameters, detail: the order is not found.")
        return Reply(200, envelope("", "", {"order_list": found}))


class Handler(BaseHTTPRequestHandler):
    """Routes /_sim/* to the control API, everything else to Shopee."""

    protocol_version = "HTTP/1.1"
    wbufsize = -1                  # buffer so headers and body go out at once
    disable_nagle_algorithm = True
    timeout = 300                  # idle keep-alive connections

    def setup(self):
        self.abort_connection = False
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.timeout)
            self.request.do_handshake()
        super().setup()

    def finish(self):
        super().finish()
        if self.abort_connection:
            # The socket has SO_LINGER 0: closing it sends a RST.
            self.connection.close()

    def version_string(self):
        return "ShopeeSim/1.0"

    def log_message(self, format, *args):
        if not self.server.quiet:
            super().log_message(format, *args)

    def handle_expect_100(self):
        ok = super().handle_expect_100()
        self.wfile.flush()
        return ok

    def do_GET(self):
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _handle(self):
        body = self._read_body()
        if body is None:
            return
        path, _, query = self.path.partition("?")
        if path.startswith("/_sim/"):
            self._control(path, query, body)
        else:
            self._marketplace(path, query, body)

    def _read_body(self):
        if "Transfer-Encoding" in self.headers:
            self.close_connection = True
            self._send_json(411, {"error": "Content-Length required"})
            return None
        length = parse_int(self.headers.get("Content-Length", "0"))
        if length is None or length > MAX_BODY:
            self.close_connection = True
            self._send_json(413, {"error": "bad or too large Content-Length"})
            return None
        return self.rfile.read(length) if length else b""

    def _send(self, reply):
        body = reply.body()
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status, payload):
        self._send(Reply(status, payload))

    def _abort(self):
        """Drop the connection with a TCP reset and no answer."""
        self.close_connection = True
        self.abort_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                   struct.pack("ii", 1, 0))

    def _marketplace(self, path, query, body):
        state = self.server.state
        call = Call.parse(self.command, path, query, self.headers, body)
        rule = state.pick_fault(call)
        kind = rule.kind if rule else None
        if kind == "timeout":
            state.record(call, "timeout", kind)
            time.sleep(rule.delay_ms / 1000)
            self.close_connection = True
        elif kind == "reset":
            state.record(call, "reset", kind)
            self._abort()
        elif kind == "apply_then_reset":
            state.process(call, fault=kind, log_status="reset")
            self._abort()
        elif kind is None or kind == "latency":
            if kind == "latency":
                time.sleep(rule.delay_ms / 1000)
            self._send(state.process(call, fault=kind))
        else:
            reply = fault_reply(rule)
            state.record(call, reply.status, kind, reply.error)
            self._send(reply)

    def _control(self, path, query, body):
        state = self.server.state
        params = dict(parse_qsl(query))
        try:
            spec = json.loads(body.decode("utf-8")) if body else {}
            if not isinstance(spec, dict):
                raise ValueError("body must be a JSON object")
            with state.lock:
                result = control_action(state, self.command, path, params,
                                        spec)
        except ValueError as exc:
            self._send_json(400, {"error": str(exc)})
            return
        if result is None:
            self._send_json(404, {"error": f"no control endpoint "
                                           f"{self.command} {path}"})
            return
        self._send_json(200, result)


def control_action(state, method, path, params, spec):
    """Run a control request; the caller holds the state lock.

    Returns the JSON answer, or None if there is no such endpoint; raises
    ValueError for bad input.
    """
    def int_param(name, default=None):
        if name not in params:
            return default
        value = parse_int(params[name])
        if value is None:
            raise ValueError(f"{name} must be a non-negative integer")
        return value

    if method == "POST":
        action = {
            "/_sim/reset": lambda _: state.reset(),
            "/_sim/partners": state.put_partner,
            "/_sim/shops": state.put_shop,
            "/_sim/items": state.put_item,
            "/_sim/orders": state.put_order,
            "/_sim/expire_token": state.expire_token,
            "/_sim/faults": state.set_faults,
        }.get(path)
        if action is None:
            return None
        action(spec)
        return {"ok": True}
    if method != "GET":
        return None
    if path == "/_sim/log":
        return state.log_view(int_param("since", 0), int_param("limit", 1000))
    if path == "/_sim/stock":
        return state.stock_view(int_param("shop_id"))
    if path == "/_sim/stats":
        return state.stats_view()
    if path == "/_sim/shops":
        return state.shop_view(int_param("shop_id"))
    if path == "/_sim/faults":
        return {"rules": [rule.to_json() for rule in state.faults]}
    return None


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024

    def __init__(self, address, state, quiet=True, ssl_context=None):
        super().__init__(address, Handler)
        self.state = state
        self.quiet = quiet
        if ssl_context is not None:
            # The handshake runs in the connection's thread (Handler.setup),
            # not in the accept loop.
            self.socket = ssl_context.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False)

    def handle_error(self, request, client_address):
        # Clients going away and failed TLS handshakes are routine here.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def write_port_file(path, port):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as out:
        out.write(f"{port}\n")
    os.replace(tmp, path)


def _stop_on_signal(server):
    """Stop serve_forever() on SIGTERM or SIGINT.

    An exception raised from the handler could land inside a request's
    handling, where socketserver catches and prints it and serves on; so the
    handler asks for shutdown() instead, from a thread of its own, since
    shutdown() waits for serve_forever() to return."""
    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", help="write the bound port here")
    parser.add_argument("--tls-cert", help="PEM certificate: serve HTTPS")
    parser.add_argument("--tls-key", help="PEM private key for --tls-cert")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for fault draws and issued tokens")
    parser.add_argument("--log-limit", type=int, default=DEFAULT_LOG_LIMIT,
                        help="request log entries kept in memory")
    parser.add_argument("--quiet", action="store_true",
                        help="no per-request log lines on stderr")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")

    context = None
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
    state = SimState(args.seed, args.log_limit)
    server = SimServer((args.host, args.port), state, args.quiet, context)
    port = server.server_address[1]
    _stop_on_signal(server)
    if args.port_file:
        write_port_file(args.port_file, port)
    if not args.quiet:
        scheme = "https" if context else "http"
        print(f"shopee_sim listening on {scheme}://{args.host}:{port}",
              file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        if args.port_file:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(args.port_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
