"""Lazada Open Platform (LazOP) simulator for invsync tests and demos.

An independent re-implementation (Python standard library only) of the parts
of the Lazada Open Platform that invsync talks to.  One server stands for
every country gateway and for the auth gateway; API paths live under /rest:

* ``POST /rest/product/stock/sellable/update``  (UpdateSellableQuantity)
* ``GET  /rest/product/item/get``               (GetProductItem)
* ``POST /rest/auth/token/refresh``             (RefreshAccessToken)
* ``POST /rest/auth/token/create``              (GenerateAccessToken)

Requests are verified the way Lazada does it (app_key, sign_method, timestamp
window, UPPER-hex HMAC-SHA256 sign over the API path and every parameter,
access token, per-seller rate limit, XML payload), so that a signing or
encoding bug in the client cannot go unnoticed.  A control API under
``/_sim/`` configures apps, sellers, products and fault injection, and
exposes the request log, the stock levels with their history, and counters.
See lazada.md in this directory for the details.

Usage:
    python3 sim/lazada_sim.py --host 127.0.0.1 --port 0 --port-file PATH
        [--tls-cert CERT --tls-key KEY] [--seed N] [--log-limit N] [--quiet]
"""

import argparse
import collections
import contextlib
import hashlib
import hmac
import json
import os
import random
import re
import select
import signal
import socket
import ssl
import string
import struct
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

PREFIX = "/rest"
PATH_UPDATE = "/product/stock/sellable/update"
PATH_ITEM_GET = "/product/item/get"
PATH_REFRESH = "/auth/token/refresh"
PATH_CREATE = "/auth/token/create"
PATH_ORDER_ITEMS = "/order/items/get"
SELLER_APIS = frozenset({PATH_UPDATE, PATH_ITEM_GET, PATH_ORDER_ITEMS})
AUTH_APIS = frozenset({PATH_REFRESH, PATH_CREATE})

TIMESTAMP_WINDOW = 7200          # seconds a request timestamp may be off
PREVIOUS_TOKEN_GRACE = 300       # seconds the replaced access token lives on
DEFAULT_ACCESS_TTL = 30 * 86400  # online app: 30 days
DEFAULT_REFRESH_TTL = 180 * 86400
AUTH_CODE_TTL = 1800             # an authorization code lives 30 min
MAX_SKUS = 50
MAX_QUANTITY = (1 << 31) - 1
MAX_BODY = 1 << 20
MAX_PAYLOAD = 1 << 20
INT64_MAX = (1 << 63) - 1
DEFAULT_LOG_LIMIT = 1_000_000
DEFAULT_TIMEOUT_MS = 30000
DEFAULT_LATENCY_MS = 1000
DEFAULT_WAREHOUSE = "dropshipping"
COUNTRIES = ("sg", "my", "ph", "th", "id", "vn")
JSON_TYPE = "application/json;charset=UTF-8"
FORM_TYPE = "application/x-www-form-urlencoded"
REDACTED = "***"

SIGN_MESSAGE = "The request signature does not conform to lazada standards"
ACCESS_TOKEN_MESSAGE = "The specified access token is invalid or expired"
REFRESH_TOKEN_MESSAGE = "The specified refresh token is invalid or expired"
E901_MESSAGE = ("E901: The request is too frequent, or the requested "
                "functionality is temporarily disabled.")

FAULT_KINDS = frozenset({
    "http_500", "http_503", "timeout", "reset", "malformed_json", "throttle",
    "latency", "error_server_busy", "empty_body", "apply_then_reset", "hang",
    "e901",
})

_CANONICAL_INT = re.compile(r"0|[1-9][0-9]{0,18}")
_MILLIS = re.compile(r"[1-9][0-9]{12}")
_ISO_UTC = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_DTD = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_TOKEN_CHARS = string.ascii_letters + string.digits


def sign_string(api_path, params):
    """Lazada's string to sign: the API path, then name+value of every
    parameter except ``sign``, sorted by name, with no separators.

    Values are the raw (URL-decoded) strings."""
    return api_path + "".join(f"{name}{params[name]}"
                              for name in sorted(params) if name != "sign")


def compute_sign(app_secret, message):
    """UPPER-hex HMAC-SHA256 of the string to sign, keyed by the app secret
    (its UTF-8 bytes)."""
    return hmac.new(app_secret.encode("utf-8"), message.encode("utf-8"),
                    hashlib.sha256).hexdigest().upper()


def parse_int(text, minimum=0, maximum=INT64_MAX):
    """Parse a canonical decimal integer in [minimum, maximum], else None."""
    if isinstance(text, str) and _CANONICAL_INT.fullmatch(text):
        value = int(text)
        if minimum <= value <= maximum:
            return value
    return None


def json_int(value):
    """Return value if it is a JSON integer (no bool, no float), else None."""
    return value if type(value) is int else None


def id_string(value):
    """A control-API id (seller_id, app_key): a non-empty string or a
    non-negative integer, returned as a string; None otherwise."""
    if isinstance(value, str) and value:
        return value
    if json_int(value) is not None and value >= 0:
        return str(value)
    return None


def parse_timestamp(text):
    """Unix seconds of a Lazada timestamp (13-digit milliseconds or
    ``2017-11-11T12:00:00Z``), or None if it has neither form."""
    if _MILLIS.fullmatch(text):
        return int(text) / 1000.0
    if _ISO_UTC.fullmatch(text):
        try:
            moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            return None
        return moment.replace(tzinfo=timezone.utc).timestamp()
    return None


_request_counter = 0


def new_request_id():
    """A request id shaped like Lazada's: 8 hex, 13-digit ms, 4 digits."""
    global _request_counter
    _request_counter = (_request_counter + 1) % 10000
    return "%s%013d%04d" % (uuid.uuid4().hex[:8], int(time.time() * 1000),
                            _request_counter)


def success(data=None):
    return {"code": "0", "data": {} if data is None else data,
            "request_id": new_request_id()}


def error_body(code, kind, message, detail=None):
    body = {"code": code, "type": kind, "message": message}
    if detail is not None:
        body["detail"] = detail
    body["request_id"] = new_request_id()
    return body


@dataclass
class Reply:
    """An HTTP answer: a JSON payload or raw bytes."""
    status: int
    payload: dict = None
    raw: bytes = b""
    content_type: str = JSON_TYPE
    headers: tuple = ()
    stat: str = None            # "sign", "auth" or "throttle" for stats

    @property
    def code(self):
        return self.payload.get("code") if self.payload else None

    def body(self):
        if self.payload is None:
            return self.raw
        return json.dumps(self.payload, separators=(",", ":")).encode()


class ApiError(Exception):
    """Aborts request processing with a Lazada error envelope (HTTP 200
    unless stated)."""

    def __init__(self, code, kind, message, detail=None, status=200,
                 stat=None):
        super().__init__(message)
        self.reply = Reply(status, error_body(code, kind, message, detail),
                           stat=stat)


def missing(name):
    """Gateway-level missing system parameter."""
    return ApiError("MissingParameter", "ISV",
                    f'the input parameter "{name}" that is mandatory for '
                    "processing this request is not supplied",
                    stat="sign" if name == "sign" else None)


def missing_business(name):
    """API-level missing parameter (shape of the doc's envelope example)."""
    return ApiError("MISSING_PARAMETER", "ISV",
                    f"missing required parameter: {name}")


def invalid_parameter(message):
    return ApiError("InvalidParameter", "ISV", message)


def e005(message):
    return ApiError("5", "ISV", f"E005: Invalid Request Format: {message}")


class TokenBucket:
    """Per-seller rate limiter: `rate` requests/s, bursts of up to `burst`."""

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
class Seller:
    app_key: str
    seller_id: str
    country: str
    access_token: str
    refresh_token: str
    access_expires_at: float
    refresh_expires_at: float
    access_ttl: int
    refresh_ttl: int
    multi_warehouse: bool
    limiter: TokenBucket = None
    previous_token: str = None
    previous_valid_until: float = 0.0
    spent_refresh_tokens: set = field(default_factory=set)


@dataclass
class Sku:
    sku_id: int
    seller_sku: str
    warehouses: list


@dataclass
class Product:
    item_id: int
    skus: dict                  # sku_id -> Sku, in configuration order
    fail_skus: dict             # sku_id -> reason


@dataclass
class FaultRule:
    kind: str
    path: str = None
    seller_id: str = None
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
        seller_id = spec.get("seller_id")
        if seller_id is not None:
            rule.seller_id = id_string(seller_id)
            if rule.seller_id is None:
                raise ValueError("seller_id must be a string or an integer")
        probability = spec.get("probability", 1.0)
        if (isinstance(probability, bool)
                or not isinstance(probability, (int, float))
                or not 0 <= probability <= 1):
            raise ValueError("probability must be a number in [0, 1]")
        rule.probability = float(probability)
        for name in ("count", "delay_ms", "retry_after"):
            value = spec.get(name)
            if value is not None and (json_int(value) is None or value < 0):
                raise ValueError(f"{name} must be a non-negative integer")
            setattr(rule, name, value)
        if rule.delay_ms is None and kind in ("timeout", "latency"):
            rule.delay_ms = (DEFAULT_TIMEOUT_MS if kind == "timeout"
                             else DEFAULT_LATENCY_MS)
        return rule

    def matches(self, call):
        return ((self.path is None or self.path in (call.path, call.api_path))
                and (self.seller_id is None
                     or self.seller_id == call.seller_id)
                and (self.count is None or self.fired < self.count))

    def to_json(self):
        return {"kind": self.kind, "path": self.path,
                "seller_id": self.seller_id, "probability": self.probability,
                "count": self.count, "delay_ms": self.delay_ms,
                "retry_after": self.retry_after, "fired": self.fired}


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
        seconds = rule.retry_after if rule.retry_after is not None else 1
        headers = ()
        if rule.retry_after is not None:
            headers = (("Retry-After", str(rule.retry_after)),)
        return Reply(200, error_body(
            "ApiCallLimit", "ISP", "Api access frequency exceeds the limit. "
            f"this ban will last {seconds} seconds"), headers=headers)
    if kind == "e901":
        return Reply(200, error_body("901", "ISP", E901_MESSAGE))
    if kind == "error_server_busy":
        return Reply(200, error_body("6", "ISP",
                                     "E006: Unexpected internal error"))
    if kind == "malformed_json":
        full = Reply(200, success()).body()
        return Reply(200, raw=full[:len(full) // 2])
    if kind == "empty_body":
        return Reply(200, raw=b"")
    raise AssertionError(f"fault {kind} has no canned reply")


def _ascii_printable(text):
    return all(33 <= ord(ch) <= 126 for ch in text)


def parse_pairs(text, where):
    """Strictly decode an urlencoded string into [(name, value)].

    Raises ApiError for raw non-ASCII bytes or spaces, broken %-escapes,
    invalid UTF-8 and empty names."""
    if not _ascii_printable(text):
        raise invalid_parameter(f"the {where} must be percent-encoded ASCII")
    if _BAD_PERCENT.search(text):
        raise invalid_parameter(f"the {where} has a malformed %-escape")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8",
                          errors="strict")
    except UnicodeDecodeError:
        raise invalid_parameter(f"the {where} is not UTF-8 once decoded")
    for name, _ in pairs:
        if not name:
            raise invalid_parameter(f"the {where} has a parameter with an "
                                    "empty name")
    return pairs


def loose_dict(text):
    """Decode an urlencoded string for the log, never failing."""
    result = {}
    for name, value in parse_qsl(text, keep_blank_values=True,
                                 errors="replace"):
        if name == "access_token":
            value = REDACTED
        if name in result:
            old = result[name]
            result[name] = (old if isinstance(old, list) else [old]) + [value]
        else:
            result[name] = value
    return result


def redact_body(text):
    return re.sub(r"(^|&)access_token=[^&]*", r"\1access_token=" + REDACTED,
                  text)


@dataclass
class Call:
    """One marketplace request, as received."""
    method: str
    path: str
    query_string: str
    headers: dict
    body: bytes
    arrived: float
    arrived_mono: float
    api_path: str = None        # the part after /rest, None if no /rest
    params: dict = None         # every parameter, strictly decoded
    param_error: ApiError = None
    access_token: str = None    # as sent, for seller attribution
    refresh_token: str = None
    seller_id: str = None
    applied: list = field(default_factory=list)
    failed: list = field(default_factory=list)

    @classmethod
    def parse(cls, method, path, query_string, headers, body):
        call = cls(method=method, path=path, query_string=query_string,
                   headers={name: headers.get(name)
                            for name in ("X-Correlation-ID", "Content-Type",
                                         "Host")},
                   body=body, arrived=time.time(),
                   arrived_mono=time.monotonic())
        if path.startswith(PREFIX + "/"):
            call.api_path = path[len(PREFIX):]
        try:
            call.params = call._strict_params()
        except ApiError as exc:
            call.param_error = exc
        # Attribution (log, faults, peak_per_second) happens before any
        # check, so it reads the tokens leniently.
        for text in (query_string, call.form_text() or ""):
            for name, value in parse_qsl(text, keep_blank_values=True,
                                         errors="replace"):
                if name == "access_token" and call.access_token is None:
                    call.access_token = value
                elif name == "refresh_token" and call.refresh_token is None:
                    call.refresh_token = value
        return call

    def content_type(self):
        value = self.headers["Content-Type"] or ""
        return value.split(";")[0].strip().lower()

    def form_text(self):
        """The body as text if it is a form body, else None."""
        if not self.body or self.content_type() != FORM_TYPE:
            return None
        return self.body.decode("utf-8", errors="replace")

    def _strict_params(self):
        pairs = parse_pairs(self.query_string, "query string")
        if self.body:
            value = self.headers["Content-Type"] or ""
            media, _, rest = value.partition(";")
            if media.strip().lower() != FORM_TYPE:
                raise invalid_parameter(
                    f"a request body must be {FORM_TYPE}, not "
                    f"{value or 'untyped'}")
            charset = re.search(r"charset\s*=\s*\"?([^\";\s]+)", rest, re.I)
            if charset and charset.group(1).lower() not in ("utf-8", "utf8"):
                raise invalid_parameter("the form body charset must be UTF-8")
            try:
                text = self.body.decode("ascii")
            except UnicodeDecodeError:
                raise invalid_parameter(
                    "the form body must be percent-encoded ASCII")
            pairs += parse_pairs(text, "form body")
        params = {}
        for name, value in pairs:
            if name in params:
                raise invalid_parameter(
                    f'the parameter "{name}" appears more than once')
            if value == "":
                raise invalid_parameter(
                    f'the parameter "{name}" has an empty value; do not send '
                    "empty parameters (the official SDKs disagree on "
                    "signing them)")
            params[name] = value
        return params


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
        self.apps = {}
        self.sellers = {}
        self.products = {}          # (seller_id, item_id) -> Product
        self.orders = {}            # (seller_id, order_id) -> [item]
        self.sku_item = {}          # (seller_id, sku_id) -> item_id
        self.seller_sku_index = {}  # (seller_id, seller_sku) -> sku_id
        self.token_owner = {}       # any access/refresh token -> seller_id
        self.auth_codes = {}        # code -> (seller_id, expires_at)
        self.stock = {}             # (seller, item, sku, warehouse) -> qty
        self.history = {}
        self.faults = []
        self.log = []
        self.arrivals = {}          # seller_id -> deque of monotonic times
        self.stats = {
            "requests": 0, "by_status": {}, "by_code": {},
            "applied_updates": 0, "applied_levels": 0, "refreshes": 0,
            "spent_refresh_token_reuse": 0, "rejected_sign": 0,
            "rejected_auth": 0, "throttled": 0, "faults": {},
            "peak_per_second": {},
        }

    def put_app(self, spec):
        app_key = id_string(spec.get("app_key"))
        secret = spec.get("app_secret")
        if app_key is None or not isinstance(secret, str) or not secret:
            raise ValueError("need app_key (string) and app_secret (string)")
        self.apps[app_key] = secret

    def put_seller(self, spec):
        app_key = id_string(spec.get("app_key"))
        if app_key not in self.apps:
            raise ValueError("app_key must be a registered app")
        seller_id = id_string(spec.get("seller_id"))
        if seller_id is None:
            raise ValueError("seller_id must be a string or an integer")
        country = spec.get("country", "sg")
        if country not in COUNTRIES + ("cb",):
            raise ValueError("country must be one of "
                             + ", ".join(COUNTRIES + ("cb",)))
        tokens = [spec.get("access_token"), spec.get("refresh_token")]
        if not all(isinstance(t, str) and t for t in tokens):
            raise ValueError("access_token and refresh_token must be "
                             "non-empty strings")
        for token in tokens:
            owner = self.token_owner.get(token)
            if owner is not None and owner != seller_id:
                raise ValueError(f"token {token} belongs to seller {owner}")
        now = time.time()
        ttls = {}
        for name, default in (("access_ttl", DEFAULT_ACCESS_TTL),
                              ("refresh_ttl", DEFAULT_REFRESH_TTL)):
            value = spec.get(name, default)
            if json_int(value) is None or value <= 0:
                raise ValueError(f"{name} must be a positive integer")
            ttls[name] = value
        times = {}
        for name, default in (
                ("access_expires_at", now + ttls["access_ttl"]),
                ("refresh_expires_at", now + ttls["refresh_ttl"])):
            value = spec.get(name, default)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a unix time")
            times[name] = float(value)
        multi = spec.get("multi_warehouse", False)
        if not isinstance(multi, bool):
            raise ValueError("multi_warehouse must be a boolean")
        if not multi:
            for (owner, _), product in self.products.items():
                if owner == seller_id and any(
                        len(sku.warehouses) > 1
                        for sku in product.skus.values()):
                    raise ValueError("the seller has SKUs in several "
                                     "warehouses; it must stay "
                                     "multi_warehouse")
        self.sellers[seller_id] = Seller(
            app_key=app_key, seller_id=seller_id, country=country,
            access_token=tokens[0], refresh_token=tokens[1],
            access_expires_at=times["access_expires_at"],
            refresh_expires_at=times["refresh_expires_at"],
            access_ttl=ttls["access_ttl"], refresh_ttl=ttls["refresh_ttl"],
            multi_warehouse=multi, limiter=self._limiter(spec))
        for token in tokens:
            self.token_owner[token] = seller_id

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

    def _seller(self, spec):
        seller = self.sellers.get(id_string(spec.get("seller_id")))
        if seller is None:
            raise ValueError("seller_id must be a configured seller")
        return seller

    def put_order(self, spec):
        """A trade order /order/items/get returns: {seller_id, order_id,
        items: [{order_item_id, item_id, sku_id, status, update_time,
        seller_sku?}]}, one item per unit, each with its own status."""
        seller = self._seller(spec)
        order_id = id_string(spec.get("order_id"))
        items = spec.get("items")
        if not order_id:
            raise ValueError("order_id must be given")
        if not isinstance(items, list) or not items or any(
                not isinstance(i, dict) or not id_string(i.get("order_item_id"))
                or not isinstance(i.get("status"), str)
                or json_int(i.get("update_time")) is None for i in items):
            raise ValueError("items must be [{order_item_id, item_id, sku_id, "
                             "status, update_time}]")
        out = []
        for item in items:
            updated = time.strftime("%Y-%m-%d %H:%M:%S +0800", time.gmtime(
                json_int(item["update_time"]) + 8 * 3600))
            out.append({"order_id": order_id,
                        "order_item_id": id_string(item["order_item_id"]),
                        "status": item["status"],
                        "sku": item.get("seller_sku", ""),
                        "sku_id": id_string(item.get("sku_id")),
                        "product_id": id_string(item.get("item_id")),
                        "shop_sku": "", "name": "", "variation": "",
                        "created_at": updated, "updated_at": updated})
        self.orders[(seller.seller_id, order_id)] = out

    def put_product(self, spec):
        seller = self._seller(spec)
        sid = seller.seller_id
        item_id = json_int(spec.get("item_id"))
        if item_id is None or item_id < 1:
            raise ValueError("item_id must be a positive integer")
        raw_skus = spec.get("skus")
        if not isinstance(raw_skus, list) or not raw_skus:
            raise ValueError("skus must be a non-empty list")
        skus = {}
        seller_skus = set()
        for raw in raw_skus:
            if not isinstance(raw, dict):
                raise ValueError("each sku must be an object")
            sku_id = json_int(raw.get("sku_id"))
            seller_sku = raw.get("seller_sku")
            if sku_id is None or sku_id < 1:
                raise ValueError("sku_id must be a positive integer")
            if not isinstance(seller_sku, str) or not seller_sku:
                raise ValueError("seller_sku must be a non-empty string")
            warehouses = raw.get("warehouses", [DEFAULT_WAREHOUSE])
            if (not isinstance(warehouses, list) or not warehouses
                    or not all(isinstance(w, str) and w for w in warehouses)
                    or len(set(warehouses)) != len(warehouses)):
                raise ValueError("warehouses must be a non-empty list of "
                                 "distinct non-empty strings")
            if not seller.multi_warehouse and len(warehouses) != 1:
                raise ValueError("a single-warehouse seller's SKU has "
                                 "exactly one warehouse")
            if sku_id in skus or seller_sku in seller_skus:
                raise ValueError("sku_id and seller_sku must be unique")
            other = self.sku_item.get((sid, sku_id))
            if other is not None and other != item_id:
                raise ValueError(f"sku_id {sku_id} belongs to item {other}")
            other = self.seller_sku_index.get((sid, seller_sku))
            if other is not None and self.sku_item.get((sid, other)) \
                    != item_id:
                raise ValueError(f"seller_sku {seller_sku} is used by "
                                 "another item")
            skus[sku_id] = Sku(sku_id, seller_sku, list(warehouses))
            seller_skus.add(seller_sku)
        fail_skus = spec.get("fail_skus") or {}
        if not isinstance(fail_skus, dict):
            raise ValueError("fail_skus must be an object")
        failing = {}
        for key, reason in fail_skus.items():
            sku_id = parse_int(key)
            if sku_id is None or not isinstance(reason, str) or not reason:
                raise ValueError("fail_skus maps sku id strings to reason "
                                 "strings")
            failing[sku_id] = reason
        old = self.products.get((sid, item_id))
        if old is not None:
            for sku in old.skus.values():
                self.sku_item.pop((sid, sku.sku_id), None)
                self.seller_sku_index.pop((sid, sku.seller_sku), None)
        for sku in skus.values():
            self.sku_item[(sid, sku.sku_id)] = item_id
            self.seller_sku_index[(sid, sku.seller_sku)] = sku.sku_id
        self.products[(sid, item_id)] = Product(item_id, skus, failing)

    def put_auth_code(self, spec):
        seller = self._seller(spec)
        code = spec.get("code")
        if not isinstance(code, str) or not code:
            raise ValueError("code must be a non-empty string")
        self.auth_codes[code] = (seller.seller_id,
                                 time.time() + AUTH_CODE_TTL)

    def expire_token(self, spec):
        seller = self._seller(spec)
        now = time.time()
        seller.access_expires_at = min(seller.access_expires_at, now)
        seller.previous_valid_until = min(seller.previous_valid_until, now)
        refresh = spec.get("refresh", False)
        if not isinstance(refresh, bool):
            raise ValueError("refresh must be a boolean")
        if refresh:
            seller.refresh_expires_at = min(seller.refresh_expires_at, now)

    def set_faults(self, spec):
        rules = spec.get("rules")
        if not isinstance(rules, list):
            raise ValueError("rules must be a list")
        self.faults = [FaultRule.from_json(rule) for rule in rules]

    def seller_view(self, seller_id):
        seller = self.sellers.get(seller_id)
        if seller is None:
            raise ValueError("seller_id must be a configured seller")
        limiter = seller.limiter
        return {
            "app_key": seller.app_key, "seller_id": seller.seller_id,
            "country": seller.country,
            "access_token": seller.access_token,
            "refresh_token": seller.refresh_token,
            "access_expires_at": seller.access_expires_at,
            "refresh_expires_at": seller.refresh_expires_at,
            "access_ttl": seller.access_ttl,
            "refresh_ttl": seller.refresh_ttl,
            "previous_access_token": seller.previous_token,
            "previous_valid_until": seller.previous_valid_until,
            "multi_warehouse": seller.multi_warehouse,
            "rate_limit_per_sec": limiter.rate if limiter else None,
            "rate_limit_burst": limiter.burst if limiter else None,
        }

    def log_view(self, since, limit):
        start = 0
        if self.log:
            start = max(0, since - self.log[0]["seq"] + 1)
        entries = self.log[start:start + limit]
        last = self.next_seq - 1
        nxt = entries[-1]["seq"] if entries else min(since, last)
        return {"entries": entries, "next": nxt}

    def stock_view(self, seller_id):
        rows = {}
        for (sid, item_id), product in self.products.items():
            for sku in product.skus.values():
                for warehouse in sku.warehouses:
                    rows[(sid, item_id, sku.sku_id, warehouse)] = \
                        sku.seller_sku
        for key in self.stock:
            rows.setdefault(key, None)
        result = []
        for key in sorted(rows):
            if seller_id is not None and key[0] != seller_id:
                continue
            result.append({"seller_id": key[0], "item_id": key[1],
                           "sku_id": key[2], "seller_sku": rows[key],
                           "warehouse_code": key[3],
                           "quantity": self.stock.get(key, 0),
                           "history": list(self.history.get(key, ()))})
        return {"stock": result}

    def stats_view(self):
        stats = dict(self.stats)
        for name in ("by_status", "by_code", "faults", "peak_per_second"):
            stats[name] = dict(stats[name])
        return stats

    # ----- marketplace -----------------------------------------------------

    def admit(self, call):
        """Attribute a new request to its seller (by access token, or by
        refresh token on the auth APIs) and count it for peak_per_second."""
        with self.lock:
            if call.api_path in AUTH_APIS:
                if call.refresh_token is not None:
                    call.seller_id = self.token_owner.get(call.refresh_token)
                elif call.api_path == PATH_CREATE and call.params:
                    code = self.auth_codes.get(call.params.get("code"))
                    call.seller_id = code[0] if code else None
            elif call.access_token is not None:
                call.seller_id = self.token_owner.get(call.access_token)
            if call.seller_id is None or call.api_path not in SELLER_APIS \
                    or call.method not in ("GET", "POST"):
                return
            window = self.arrivals.setdefault(call.seller_id,
                                              collections.deque())
            now = call.arrived_mono
            window.append(now)
            while window and window[0] <= now - 1.0:
                window.popleft()
            peaks = self.stats["peak_per_second"]
            peaks[call.seller_id] = max(peaks.get(call.seller_id, 0),
                                        len(window))

    def pick_fault(self, call):
        """The first matching rule whose random draw fires, or None."""
        with self.lock:
            for rule in self.faults:
                if rule.matches(call) and self.rng.random() < rule.probability:
                    rule.fired += 1
                    return rule
        return None

    def record(self, call, status, fault, reply=None):
        """Log a request that was not processed."""
        with self.lock:
            self._log(call, status, fault, reply)

    def process(self, call, fault=None, log_status=None):
        """Verify and execute a marketplace request; log it."""
        with self.lock:
            try:
                reply = self._route(call)
            except ApiError as exc:
                reply = exc.reply
            self._log(call, log_status or reply.status, fault, reply)
        return reply

    def _log(self, call, status, fault, reply):
        stats = self.stats
        stats["requests"] += 1
        by_status = stats["by_status"]
        by_status[str(status)] = by_status.get(str(status), 0) + 1
        code = reply.code if reply is not None else None
        if code is not None:
            stats["by_code"][code] = stats["by_code"].get(code, 0) + 1
        if fault is not None:
            stats["faults"][fault] = stats["faults"].get(fault, 0) + 1
        stat = reply.stat if reply is not None else None
        if stat == "sign":
            stats["rejected_sign"] += 1
        elif stat == "auth":
            stats["rejected_auth"] += 1
        elif stat == "throttle":
            stats["throttled"] += 1
        form = call.form_text()
        body = call.body.decode("utf-8", errors="replace")
        self.log.append({
            "seq": self.next_seq, "time": call.arrived,
            "method": call.method, "path": call.path,
            "api_path": call.api_path,
            "query": loose_dict(call.query_string),
            "form": loose_dict(form) if form is not None else {},
            "headers": call.headers,
            "body": redact_body(body) if form is not None else body,
            "app_key": (call.params or {}).get("app_key"),
            "seller_id": call.seller_id,
            "status": status, "code": code, "fault": fault,
            "applied": call.applied, "failed": call.failed,
        })
        self.next_seq += 1
        if len(self.log) > self.log_limit + self.log_limit // 10:
            del self.log[:len(self.log) - self.log_limit]

    def _route(self, call):
        handler = {
            PATH_UPDATE: self._update,
            PATH_ITEM_GET: self._item_get,
            PATH_ORDER_ITEMS: self._order_items,
            PATH_REFRESH: self._refresh,
            PATH_CREATE: self._create,
        }.get(call.api_path)
        if handler is None or call.method not in ("GET", "POST"):
            raise ApiError("InvalidApiPath", "ISV",
                           "The specified API path is invalid", status=404)
        if call.param_error is not None:
            raise call.param_error
        app_key, params = self._verify_sign(call)
        seller = None
        if call.api_path in SELLER_APIS:
            seller = self._check_access_token(app_key, params)
            if seller.limiter is not None and not seller.limiter.take():
                raise ApiError("ApiCallLimit", "ISP",
                               "Api access frequency exceeds the limit. "
                               "this ban will last 1 seconds",
                               stat="throttle")
        return handler(call, app_key, params, seller)

    # ----- verification ----------------------------------------------------

    def _verify_sign(self, call):
        """app_key, sign_method, timestamp and sign, in that order."""
        params = call.params
        app_key = params.get("app_key")
        if app_key is None:
            raise missing("app_key")
        secret = self.apps.get(app_key)
        if secret is None:
            raise ApiError("InvalidAppKey", "ISV",
                           "The specified App Key is invalid")
        method = params.get("sign_method")
        if method is None:
            raise missing("sign_method")
        if method != "sha256":
            raise ApiError("InvalidSignatureMethod", "ISV",
                           f"sign_method {method} is not supported; "
                           "use sha256", stat="sign")
        timestamp = params.get("timestamp")
        if timestamp is None:
            raise missing("timestamp")
        moment = parse_timestamp(timestamp)
        if moment is None or abs(time.time() - moment) > TIMESTAMP_WINDOW:
            raise ApiError("InvalidTimestamp", "ISV",
                           "The request timestamp is invalid: use unix "
                           "milliseconds (13 digits) or "
                           "yyyy-MM-ddTHH:mm:ssZ, within 7200 s of UTC")
        given = params.get("sign")
        if given is None:
            raise missing("sign")
        expected = compute_sign(secret, sign_string(call.api_path, params))
        if not hmac.compare_digest(given.encode("utf-8"), expected.encode()):
            raise ApiError("IncompleteSignature", "ISV", SIGN_MESSAGE,
                           stat="sign")
        return app_key, params

    def _check_access_token(self, app_key, params):
        token = params.get("access_token")
        if token is None:
            raise missing_business("access_token")
        seller = self.sellers.get(self.token_owner.get(token))
        now = time.time()
        if seller is not None and seller.app_key == app_key:
            if token == seller.access_token and now < seller.access_expires_at:
                return seller
            if token == seller.previous_token and \
                    now < seller.previous_valid_until:
                return seller
        raise ApiError("IllegalAccessToken", "ISV", ACCESS_TOKEN_MESSAGE,
                       stat="auth")

    # ----- UpdateSellableQuantity ------------------------------------------

    def _update(self, call, app_key, params, seller):
        payload = params.get("payload")
        if payload is None:
            raise missing_business("payload")
        entries = parse_stock_payload(payload)
        sid = seller.seller_id
        for entry in entries:
            if seller.multi_warehouse and entry["levels"][0][0] is None:
                raise e005("this seller has several warehouses: use "
                           "<MultiWarehouseInventories> in every <Sku>")
            if not seller.multi_warehouse and \
                    entry["levels"][0][0] is not None:
                raise e005("this seller has a single warehouse: "
                           "<MultiWarehouseInventories> is not allowed")

        plan, failed, seen = [], [], set()
        for entry in entries:
            sku, item_id, problem = self._resolve_sku(sid, entry)
            if sku is not None:
                if sku.sku_id in seen:
                    raise e005(f"SKU {sku.sku_id} appears more than once")
                seen.add(sku.sku_id)
            if problem is None:
                levels = []
                for code, quantity in entry["levels"]:
                    if code is None:
                        code = sku.warehouses[0]
                    elif code not in sku.warehouses:
                        problem = ("WarehouseCode",
                                   f"warehouse {code} is not bound to SKU "
                                   f"{sku.sku_id}")
                        break
                    levels.append((code, quantity))
            if problem is None:
                reason = self.products[(sid, item_id)].fail_skus.get(
                    sku.sku_id)
                if reason is not None:
                    problem = ("SkuId" if entry["sku_id"] is not None
                               else "SellerSku", reason)
            if problem is not None:
                failed.append({
                    "field": problem[0], "message": problem[1],
                    "seller_sku": entry["seller_sku"]
                    or (sku.seller_sku if sku else ""),
                    "sku_id": str(entry["sku_id"] or (sku.sku_id if sku
                                                      else "")),
                    "item_id": str(entry["item_id"] or (item_id or "")),
                })
                continue
            plan.append((item_id, sku, levels))

        applied = []
        for item_id, sku, levels in plan:
            for code, quantity in levels:
                key = (sid, item_id, sku.sku_id, code)
                self.stock[key] = quantity
                self.history.setdefault(key, []).append(quantity)
                applied.append({"item_id": item_id, "sku_id": sku.sku_id,
                                "seller_sku": sku.seller_sku,
                                "warehouse_code": code,
                                "quantity": quantity})
        call.applied, call.failed = applied, failed
        if applied:
            self.stats["applied_updates"] += 1
            self.stats["applied_levels"] += len(applied)
        if failed:
            raise ApiError("501", "ISP", "E501: Update product failed",
                           detail=failed)
        return Reply(200, success())

    def _resolve_sku(self, sid, entry):
        """(Sku or None, item_id or None, (field, message) or None)."""
        if entry["sku_id"] is not None:
            field_name = "SkuId"
            item_id = self.sku_item.get((sid, entry["sku_id"]))
            sku_id = entry["sku_id"]
        else:
            field_name = "SellerSku"
            sku_id = self.seller_sku_index.get((sid, entry["seller_sku"]))
            item_id = self.sku_item.get((sid, sku_id))
        if item_id is None:
            return None, None, (field_name, "SKU not exist")
        sku = self.products[(sid, item_id)].skus[sku_id]
        if entry["item_id"] is not None and entry["item_id"] != item_id:
            return sku, item_id, ("ItemId", f"SKU {sku_id} does not belong "
                                            f"to item {entry['item_id']}")
        if entry["seller_sku"] is not None and \
                entry["seller_sku"] != sku.seller_sku:
            return sku, item_id, ("SellerSku", "SellerSku does not match "
                                               f"SkuId {sku_id}")
        return sku, item_id, None

    # ----- GetProductItem --------------------------------------------------

    def _item_get(self, call, app_key, params, seller):
        sid = seller.seller_id
        item_text = params.get("item_id")
        seller_sku = params.get("seller_sku")
        if item_text is not None:
            item_id = parse_int(item_text, minimum=1)
            if item_id is None:
                raise e005("item_id must be a positive integer")
        elif seller_sku is not None:
            item_id = self.sku_item.get(
                (sid, self.seller_sku_index.get((sid, seller_sku))))
            if item_id is None:
                raise ApiError("207", "ISV", "E207: SKU not exist")
        else:
            raise ApiError("200", "ISV", "E200: Empty SellerSku")
        product = self.products.get((sid, item_id))
        if product is None:
            raise ApiError("208", "ISV", "E208: Item not exist")
        country = seller.country.upper() if seller.country != "cb" else "SG"
        skus = []
        for sku in product.skus.values():
            levels = []
            for code in sku.warehouses:
                quantity = self.stock.get((sid, item_id, sku.sku_id, code), 0)
                levels.append({"warehouseCode": code, "quantity": quantity,
                               "sellableQuantity": quantity,
                               "totalQuantity": quantity,
                               "occupyQuantity": 0, "withholdQuantity": 0})
            total = sum(level["sellableQuantity"] for level in levels)
            skus.append({"SkuId": sku.sku_id, "SellerSku": sku.seller_sku,
                         "ShopSku": f"{item_id}_{country}-{sku.sku_id}",
                         "Status": "active", "quantity": total,
                         "Available": total,
                         "multiWarehouseInventories": levels,
                         "fblWarehouseInventories": [],
                         "channelInventories": []})
        return Reply(200, success({"item_id": item_id, "itemId": item_id,
                                   "status": "Active", "skus": skus}))

    def _order_items(self, call, app_key, params, seller):
        order_text = params.get("order_id")
        if not order_text:
            raise ApiError("MissingParameter", "ISV",
                           "The input parameter \"order_id\" that is "
                           "mandatory for processing this request is not "
                           "supplied")
        items = self.orders.get((seller.seller_id, order_text))
        if items is None:
            raise ApiError("16", "ISV", "E016: \"%s\" Invalid Order ID"
                           % order_text)
        return Reply(200, success([dict(item) for item in items]))

    # ----- tokens ----------------------------------------------------------

    def _new_token(self, prefix):
        return prefix + "".join(self.rng.choice(_TOKEN_CHARS)
                                for _ in range(55))

    def _issue(self, seller, now):
        """Replace the seller's tokens; the old access token keeps a grace
        period, the old refresh token is spent."""
        seller.spent_refresh_tokens.add(seller.refresh_token)
        seller.previous_token = seller.access_token
        seller.previous_valid_until = min(now + PREVIOUS_TOKEN_GRACE,
                                          seller.access_expires_at)
        seller.access_token = self._new_token("50000")
        seller.refresh_token = self._new_token("50001")
        seller.access_expires_at = now + seller.access_ttl
        self.token_owner[seller.access_token] = seller.seller_id
        self.token_owner[seller.refresh_token] = seller.seller_id

    def _token_answer(self, seller, now, list_name):
        countries = COUNTRIES if seller.country == "cb" else (seller.country,)
        infos = [{"country": country, "seller_id": seller.seller_id,
                  "user_id": seller.seller_id,
                  "short_code": f"{country.upper()}{seller.seller_id}"}
                 for country in countries]
        return Reply(200, {
            "access_token": seller.access_token,
            "refresh_token": seller.refresh_token,
            "expires_in": seller.access_ttl,
            "refresh_expires_in": max(0, int(seller.refresh_expires_at
                                             - now)),
            "country": seller.country,
            "account_platform": "seller_center",
            "account": f"seller{seller.seller_id}@sim.invalid",
            "account_id": None,
            list_name: infos,
            "code": "0", "request_id": new_request_id(),
        })

    def _refresh(self, call, app_key, params, _):
        token = params.get("refresh_token")
        if token is None:
            raise missing_business("refresh_token")
        seller = self.sellers.get(self.token_owner.get(token))
        now = time.time()
        if seller is None or seller.app_key != app_key:
            raise ApiError("IllegalRefreshToken", "ISV",
                           REFRESH_TOKEN_MESSAGE, stat="auth")
        if token != seller.refresh_token:
            if token in seller.spent_refresh_tokens:
                self.stats["spent_refresh_token_reuse"] += 1
            raise ApiError("IllegalRefreshToken", "ISV",
                           REFRESH_TOKEN_MESSAGE, stat="auth")
        if now >= seller.refresh_expires_at:
            raise ApiError("IllegalRefreshToken", "ISV",
                           REFRESH_TOKEN_MESSAGE, stat="auth")
        self._issue(seller, now)
        self.stats["refreshes"] += 1
        return self._token_answer(seller, now, "country_user_info_list")

    def _create(self, call, app_key, params, _):
        code = params.get("code")
        if code is None:
            raise missing_business("code")
        found = self.auth_codes.pop(code, None)
        now = time.time()
        seller = self.sellers.get(found[0]) if found else None
        if seller is None or now >= found[1] or seller.app_key != app_key:
            raise ApiError("InvalidCode", "ISV",
                           "Invalid authorization code", stat="auth")
        self._issue(seller, now)
        seller.refresh_expires_at = now + seller.refresh_ttl
        return self._token_answer(seller, now, "country_user_info")


# ----- XML payload ---------------------------------------------------------

SKU_CHILDREN = frozenset({"ItemId", "SkuId", "SellerSku", "SellableQuantity",
                          "MultiWarehouseInventories"})


def _only_whitespace(text):
    return text is None or not text.strip()


def _children(element, allowed, where):
    """The element's children as {tag: element}; each tag at most once."""
    if not _only_whitespace(element.text):
        raise e005(f"<{where}> holds text")
    found = {}
    for child in element:
        if not _only_whitespace(child.tail):
            raise e005(f"text after <{child.tag}> in <{where}>")
        if child.tag not in allowed:
            raise e005(f"unexpected <{child.tag}> in <{where}>")
        if child.tag in found:
            raise e005(f"<{child.tag}> appears twice in <{where}>")
        found[child.tag] = child
    return found


def _repeated(element, tag, where):
    """The element's children, which must all be <tag>."""
    if not _only_whitespace(element.text):
        raise e005(f"<{where}> holds text")
    items = list(element)
    for child in items:
        if child.tag != tag or not _only_whitespace(child.tail):
            raise e005(f"<{where}> may only hold <{tag}> elements")
    return items


def _leaf(element, where):
    """The exact text of a leaf element; it must be non-empty."""
    if len(element):
        raise e005(f"<{element.tag}> in <{where}> has child elements")
    if not element.text:
        raise e005(f"<{element.tag}> in <{where}> is empty")
    return element.text


def _leaf_int(element, where, minimum, maximum):
    text = _leaf(element, where)
    value = parse_int(text, minimum, maximum)
    if value is None:
        raise e005(f"<{element.tag}> {text!r} in <{where}> must be an "
                   f"integer from {minimum} to {maximum} (no sign, no "
                   "spaces, no leading zeros)")
    return value


def parse_stock_payload(payload):
    """Parse and validate an UpdateSellableQuantity payload.

    Returns [{item_id, sku_id, seller_sku, levels: [(warehouse or None,
    quantity)]}]; raises ApiError (code 5 or 204) for a bad payload."""
    if len(payload.encode("utf-8")) > MAX_PAYLOAD:
        raise e005("payload exceeds 1 MB")
    if _DTD.search(payload):
        raise e005("DOCTYPE and ENTITY declarations are not allowed")
    try:
        root = ElementTree.fromstring(payload)
    except ElementTree.ParseError as exc:
        raise e005(f"payload is not well-formed XML ({exc})")
    if root.tag != "Request":
        raise e005("the root element must be <Request>")
    product = _children(root, {"Product"}, "Request").get("Product")
    if product is None:
        raise e005("<Request> needs a <Product>")
    skus = _children(product, {"Skus"}, "Product").get("Skus")
    if skus is None:
        raise e005("<Product> needs <Skus>")
    sku_elements = _repeated(skus, "Sku", "Skus")
    if not sku_elements:
        raise e005("<Skus> holds no <Sku>")
    if len(sku_elements) > MAX_SKUS:
        raise ApiError("204", "ISV", "E204: Too many SKU in one request "
                                     f"({len(sku_elements)} > {MAX_SKUS})")
    entries = []
    for index, sku in enumerate(sku_elements, 1):
        where = f"Sku #{index}"
        parts = _children(sku, SKU_CHILDREN, where)
        entry = {"item_id": None, "sku_id": None, "seller_sku": None}
        if "ItemId" in parts:
            entry["item_id"] = _leaf_int(parts["ItemId"], where, 1, INT64_MAX)
        if "SkuId" in parts:
            entry["sku_id"] = _leaf_int(parts["SkuId"], where, 1, INT64_MAX)
        if "SellerSku" in parts:
            entry["seller_sku"] = _leaf(parts["SellerSku"], where)
        if entry["sku_id"] is None and entry["seller_sku"] is None:
            raise e005(f"<{where}> needs <SkuId> or <SellerSku>")
        single = parts.get("SellableQuantity")
        multi = parts.get("MultiWarehouseInventories")
        if (single is None) == (multi is None):
            raise e005(f"<{where}> needs exactly one of <SellableQuantity> "
                       "and <MultiWarehouseInventories>")
        if single is not None:
            entry["levels"] = [(None, _leaf_int(single, where, 0,
                                                MAX_QUANTITY))]
        else:
            levels = []
            inventories = _repeated(multi, "MultiWarehouseInventory", where)
            if not inventories:
                raise e005(f"<MultiWarehouseInventories> in <{where}> is "
                           "empty")
            for inventory in inventories:
                fields = _children(inventory, {"WarehouseCode",
                                               "SellableQuantity"}, where)
                if len(fields) != 2:
                    raise e005(f"<MultiWarehouseInventory> in <{where}> needs "
                               "<WarehouseCode> and <SellableQuantity>")
                code = _leaf(fields["WarehouseCode"], where)
                if any(code == seen for seen, _ in levels):
                    raise e005(f"warehouse {code} appears twice in <{where}>")
                levels.append((code, _leaf_int(fields["SellableQuantity"],
                                               where, 0, MAX_QUANTITY)))
            entry["levels"] = levels
        entries.append(entry)
    return entries


# ----- HTTP ----------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    """Routes /_sim/* to the control API, everything else to Lazada."""

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
        return "LazadaSim/1.0"

    def log_message(self, format, *args):
        if not self.server.quiet:
            super().log_message(format, *args)

    def handle_expect_100(self):
        ok = super().handle_expect_100()
        self.wfile.flush()
        return ok

    def do_GET(self):
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

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
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status, payload):
        self._send(Reply(status, payload, content_type="application/json"))

    def _abort(self):
        """Drop the connection with a TCP reset and no answer."""
        self.close_connection = True
        self.abort_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                   struct.pack("ii", 1, 0))

    def _hang(self):
        """Never answer; return once the client closes the connection.
        Anything else it sends is read and dropped."""
        self.close_connection = True
        sock = self.connection
        while True:
            readable, _, _ = select.select([sock], [], [], 1.0)
            if not readable:
                continue
            try:
                if not sock.recv(65536):
                    return
            except ssl.SSLWantReadError:
                continue
            except OSError:
                return

    def _marketplace(self, path, query, body):
        state = self.server.state
        call = Call.parse(self.command, path, query, self.headers, body)
        state.admit(call)
        rule = state.pick_fault(call)
        kind = rule.kind if rule else None
        if kind == "timeout":
            state.record(call, "timeout", kind)
            time.sleep(rule.delay_ms / 1000)
            self.close_connection = True
        elif kind == "hang":
            state.record(call, "hang", kind)
            self._hang()
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
            state.record(call, reply.status, kind, reply)
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
            "/_sim/apps": state.put_app,
            "/_sim/sellers": state.put_seller,
            "/_sim/products": state.put_product,
            "/_sim/orders": state.put_order,
            "/_sim/auth_codes": state.put_auth_code,
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
        return state.stock_view(params.get("seller_id"))
    if path == "/_sim/stats":
        return state.stats_view()
    if path == "/_sim/sellers":
        return state.seller_view(params.get("seller_id"))
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

    shutdown() waits for serve_forever() to return, so it runs in a thread
    of its own rather than in the handler."""
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
        print(f"lazada_sim listening on {scheme}://{args.host}:{port}"
              f"{PREFIX}", file=sys.stderr, flush=True)
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
