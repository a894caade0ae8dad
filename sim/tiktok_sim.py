"""TikTok Shop Partner API (202309) simulator for invsync tests and demos.

An independent re-implementation (Python standard library only) of the parts
of the TikTok Shop Partner API that invsync talks to, for TikTok Shop shops
and for Tokopedia shops reached through the TikTok API:

* ``POST /product/202309/products/{product_id}/inventory/update`` (signed)
* ``POST /product/202309/inventory/search``                      (signed)
* ``GET  /api/v2/token/refresh``         (auth host, not signed, rotation)

One server answers both the API host paths and the auth host paths.
Requests are verified the way TikTok does it (app key, timestamp window,
lower-hex HMAC-SHA256 sign over path, sorted query and raw body, shop
cipher, ``x-tts-access-token`` header, rate limit, body), so that a signing
or encoding bug in the client cannot go unnoticed.  A control API under
``/_sim/`` configures apps, shops, products and fault injection, and exposes
the request log, the stock levels with their history, and counters.
See tiktok.md in this directory for the details.

Usage:
    python3 sim/tiktok_sim.py --host 127.0.0.1 --port 0 --port-file PATH
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

API_VERSION = "202309"
PATH_SEARCH = f"/product/{API_VERSION}/inventory/search"
PATH_REFRESH = "/api/v2/token/refresh"
PATH_ORDERS = f"/order/{API_VERSION}/orders"
MAX_ORDER_IDS = 50
PATH_TOKEN_GET = "/api/v2/token/get"
UPDATE_RE = re.compile(rf"/product/{API_VERSION}/products/([^/]*)"
                       r"/inventory/update")


def update_path(product_id):
    return f"/product/{API_VERSION}/products/{product_id}/inventory/update"


TIMESTAMP_PAST = 300          # a timestamp may be this many seconds old
TIMESTAMP_FUTURE = 30         # ... or this many seconds ahead
PREVIOUS_TOKEN_GRACE = 300    # seconds the replaced access token lives on
DEFAULT_ACCESS_TTL = 7 * 86400
DEFAULT_REFRESH_TTL = 365 * 86400
MAX_SKUS = 100                # per product and per update request
MAX_QUANTITY = 99999
MAX_SEARCH_PRODUCTS = 100
MAX_SEARCH_SKUS = 600
MAX_BODY = 1 << 20
DEFAULT_LOG_LIMIT = 1_000_000
DEFAULT_TIMEOUT_MS = 30000
DEFAULT_LATENCY_MS = 1000
REDACTED = "REDACTED"

PLATFORMS = ("TIKTOK_SHOP", "TOKOPEDIA")
PRODUCT_STATUSES = frozenset({
    "DRAFT", "PENDING", "FAILED", "ACTIVATE", "SELLER_DEACTIVATED",
    "PLATFORM_DEACTIVATED", "FREEZE", "DELETED",
})

FAULT_KINDS = frozenset({
    "http_500", "http_503", "timeout", "reset", "malformed_json", "throttle",
    "latency", "error_server_busy", "empty_body", "apply_then_reset", "hang",
})

# ----- codes and messages (see tiktok.md for where each comes from) --------

C_TOO_MANY = 36009002
C_INTERNAL = 36009003
C_CREDENTIALS = 36009004
C_INVALID_PATH = 36009009
C_INVALID_METHOD = 36009010
C_FORMAT = 36009022
C_BAD_TOKEN = 101000
C_BAD_REFRESH = 105001
C_EXPIRED = 105002
C_SIGN = 106001
C_NO_CIPHER = 106013

M_TOO_MANY = ("Too many requests. You've made too many requests in a short "
              "period of time.")
M_INTERNAL = "Internal error. Please try again."
M_SIGN = "Invalid credentials. The 'sign' query parameter is invalid."
M_NO_SIGN = ("Missing credentials. The request does not include a required "
             "signature in the query.")
M_APP_KEY = "Invalid credentials. Invalid `app_key` query parameter."
M_TS_PAST = ("Invalid timestamp. The value of the `timestamp` query parameter "
             "must not be earlier than 5 minutes before the current time.")
M_TS_FUTURE = ("Invalid timestamp. The value of the `timestamp` query "
               "parameter must not exceed the current time by more than 30 "
               "seconds.")
M_TS_FORMAT = ("Invalid timestamp. The `timestamp` query parameter must be a "
               "10-digit Unix time in seconds.")
M_QUERY_TOKEN = ("Invalid credentials. The `access_token` query parameter is "
                 "not accepted; pass the token in the `x-tts-access-token` "
                 "header.")
M_FORMAT = ("Invalid request format. The request body format must be "
            "`application/json` for structured data or `multipart/form-data` "
            "for binary files.")
M_BAD_JSON = ("Invalid request format. The request body is not a valid JSON "
              "object.")
M_NO_CIPHER = ("Missing identifier. The `shop_cipher` query parameter is "
               "required to identify the target shop.")
M_BAD_CIPHER = ("Invalid identifier. The `shop_cipher` query parameter is "
                "invalid.")
M_BAD_TOKEN = ("Invalid query or header. The `x-tts-access-token` header is "
               "invalid.")
M_EXPIRED = ("Expired credentials. The `x-tts-access-token` header has "
             "expired.")

E_INVALID_PRODUCT_ID = (12052031, "Invalid product ID(s) found")
E_NO_PRODUCT = (12052032, "The product does not exist")
E_NOT_IN_SHOP = (12052048, "You cannot edit the specified product(s) as it "
                           "isn't listed in your account or shop.")
E_STATUS = (12052901, "The product in its current status is not available "
                      "for this operation. Change the product status and "
                      "try again.")
E_EMPTY_SKUS = (12052902, "The SKU list is empty. Either omit the list "
                          "entirely, or provide all required details.")
E_TOO_MANY_SKUS = (12052050, "A single product cannot have more than 100 "
                             "different SKUs")
E_SKU_ID = (12052036, "The SKU ID is necessary")
E_SKU_DUP = (12052553, "Sku id duplicate")
E_SKU_UNKNOWN = (12052556, "The SKU id not exist.")
E_WAREHOUSE = (12019022, "SKU must contain a valid warehouse.")
E_MULTI_WAREHOUSE = (12019028, "Multiple warehouses detected. Include all "
                               "warehouse IDs and the corresponding details "
                               "and try again.")
E_MISSING_WAREHOUSE = (12052037, "Couldn't update inventory. Missing "
                                 "warehouse IDs (all warehouses that stock "
                                 "the product must be included)")
E_CHANGED_WAREHOUSE = (12052533, "Removal, addition, and change of "
                                 "warehouses are not permitted. Please "
                                 "specify the original warehouses for the "
                                 "SKUs.")
E_STOCK_COUNT = (12019024, "stock count is invalid")
E_QUANTITY = (12052055, "The SKU inventory quantity for the warehouse must "
                        "be within allowed limits.")
E_CHECK_FAILED = (12052990, "The check failed.")
E_NO_WAREHOUSE = (12052097, "The warehouse does not exist")
E_SEARCH_IDS = (12019008, "Product id is invalid")
E_SEARCH_SKUS = (12019015, "The number of SKU exceed the limit")
E_SEARCH_PRODUCTS = (12019120, "The number of provided product IDs exceeds "
                               "the limit.")

_TIMESTAMP = re.compile(r"[1-9][0-9]{9}")
_DIGITS = re.compile(r"[1-9][0-9]{0,30}")
_INT = re.compile(r"0|[1-9][0-9]{0,18}")


# ----- signing ---------------------------------------------------------------

def _media_type(content_type):
    return (content_type or "").split(";")[0].strip().lower()


def sign_base(app_secret, path, params, body=b"", content_type=None):
    """The bytes TikTok signs (the "wrapped" string of the signing guide).

    ``params`` is a mapping or a list of (key, value) pairs holding the
    query parameters as sent (decoded).  ``sign`` and ``access_token`` are
    left out; the rest is sorted by the keys' UTF-8 bytes and concatenated
    as key + value, after the path.  The raw body is appended unless the
    media type is multipart/form-data.  The whole is wrapped in the secret.
    """
    pairs = params.items() if hasattr(params, "items") else params
    kept = sorted(((k, v) for k, v in pairs
                   if k not in ("sign", "access_token")),
                  key=lambda kv: kv[0].encode("utf-8"))
    secret = app_secret.encode("utf-8")
    parts = [secret, path.encode("utf-8")]
    parts.extend((k + v).encode("utf-8") for k, v in kept)
    if body and _media_type(content_type) != "multipart/form-data":
        parts.append(body)
    parts.append(secret)
    return b"".join(parts)


def compute_sign(app_secret, path, params, body=b"", content_type=None):
    """Lower-hex HMAC-SHA256 keyed by the app secret's UTF-8 bytes."""
    return hmac.new(app_secret.encode("utf-8"),
                    sign_base(app_secret, path, params, body, content_type),
                    hashlib.sha256).hexdigest()


# ----- small helpers ---------------------------------------------------------

def parse_int(text):
    """Parse a canonical non-negative decimal integer, else None."""
    if isinstance(text, str) and _INT.fullmatch(text):
        return int(text)
    return None


def json_int(value):
    """Return value if it is a JSON integer (no bool, no float), else None."""
    return value if type(value) is int else None


def new_request_id():
    """Like TikTok's: UTC yyyymmddhhmmss then 20 upper-case hex digits."""
    return (time.strftime("%Y%m%d%H%M%S", time.gmtime())
            + uuid.uuid4().hex[:20].upper())


def envelope(code, message, data=None):
    """TikTok's response envelope (keys in Go's sorted order)."""
    return {"code": code, "data": data, "message": message,
            "request_id": new_request_id()}


def _no_constants(name):
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def strict_json(raw):
    """Parse UTF-8 JSON; reject NaN/Infinity and duplicate object keys."""
    return json.loads(raw.decode("utf-8"), parse_constant=_no_constants,
                      object_pairs_hook=_unique_keys)


@dataclass
class Reply:
    """An HTTP answer: a JSON payload or raw bytes."""
    status: int
    payload: dict = None
    raw: bytes = b""
    content_type: str = "application/json"
    headers: tuple = ()

    @property
    def code(self):
        return self.payload.get("code") if self.payload else None

    def body(self):
        if self.payload is None:
            return self.raw
        return json.dumps(self.payload, separators=(",", ":")).encode()


class ApiError(Exception):
    """Aborts request processing with a TikTok error envelope.

    ``stat`` names the counter the rejection adds to ("sign", "auth",
    "throttle") or is None."""

    def __init__(self, status, code, message, stat=None):
        super().__init__(message)
        self.reply = Reply(status, envelope(code, message))
        self.stat = stat


def reject(pair, detail=None):
    """A 400 business rejection from a (code, message) pair."""
    code, message = pair
    if detail:
        message = f"{message} ({detail})"
    return ApiError(400, code, message)


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
    app_key: str
    shop_cipher: str
    shop_id: str
    region: str
    platform: str
    access_token: str
    refresh_token: str
    access_expires_at: float
    refresh_expires_at: float
    access_ttl: int
    rotate_refresh: bool
    reject_zero: bool
    seller_name: str
    open_id: str
    warehouses: list
    limiter: TokenBucket = None
    previous_token: str = None
    previous_valid_until: float = 0.0
    spent_refresh_tokens: set = field(default_factory=set)


@dataclass
class Product:
    status: str
    listing_platforms: list
    skus: dict                  # sku_id -> [warehouse_id]
    seller_skus: dict
    fail_skus: dict             # sku_id -> {code, message, listing_platform}


@dataclass
class FaultRule:
    kind: str
    path: str = None
    shop_cipher: str = None
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
        for name in ("path", "shop_cipher"):
            value = spec.get(name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a string")
            setattr(rule, name, value)
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

    def _path_matches(self, path):
        if self.path is None:
            return True
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path

    def matches(self, call):
        return (self._path_matches(call.path)
                and (self.shop_cipher is None
                     or self.shop_cipher == call.shop_cipher)
                and (self.count is None or self.fired < self.count))

    def to_json(self):
        return {"kind": self.kind, "path": self.path,
                "shop_cipher": self.shop_cipher,
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
        return Reply(429, envelope(C_TOO_MANY, M_TOO_MANY), headers=headers)
    if kind == "error_server_busy":
        return Reply(200, envelope(C_INTERNAL, M_INTERNAL))
    if kind == "malformed_json":
        full = Reply(200, envelope(0, "Success", {"errors": []})).body()
        return Reply(200, raw=full[:len(full) // 2])
    if kind == "empty_body":
        return Reply(200, raw=b"")
    raise AssertionError(f"fault {kind} has no canned reply")


@dataclass
class Call:
    """One marketplace request, as received."""
    method: str
    path: str
    pairs: list                 # query (key, value) pairs in order, decoded
    query: dict                 # first value of each key
    content_type: str
    correlation_id: str
    access_token: str           # the x-tts-access-token header, or None
    body: bytes
    arrived: float
    shop_cipher: str = None
    product_id: str = None
    applied: list = field(default_factory=list)
    failed: list = field(default_factory=list)

    @classmethod
    def parse(cls, method, path, query_string, headers, body):
        pairs = parse_qsl(query_string, keep_blank_values=True)
        query = {}
        for key, value in pairs:
            query.setdefault(key, value)
        call = cls(method=method, path=path, pairs=pairs, query=query,
                   content_type=headers.get("Content-Type"),
                   correlation_id=headers.get("X-Correlation-ID"),
                   access_token=headers.get("x-tts-access-token"),
                   body=body, arrived=time.time())
        call.shop_cipher = query.get("shop_cipher") or None
        match = UPDATE_RE.fullmatch(path)
        if match:
            call.product_id = match.group(1)
        return call

    def logged_query(self):
        query = dict(self.query)
        for secret in ("app_secret", "access_token"):
            if secret in query:
                query[secret] = REDACTED
        return query


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
        self.shops = {}
        self.products = {}          # (shop_cipher, product_id) -> Product
        self.orders = {}            # (shop_cipher, order_id) -> order
        self.stock = {}             # (cipher, product, sku, warehouse) -> n
        self.history = {}
        self.faults = []
        self.log = []
        self.arrivals = {}          # shop_cipher -> deque of monotonic times
        self.stats = {
            "requests": 0, "by_status": {}, "applied_updates": 0,
            "applied_levels": 0, "refreshes": 0,
            "spent_refresh_token_reuse": 0, "rejected_sign": 0,
            "rejected_auth": 0, "throttled": 0, "faults": {},
            "peak_per_second": {},
        }

    def put_app(self, spec):
        app_key, secret = spec.get("app_key"), spec.get("app_secret")
        if not (isinstance(app_key, str) and app_key
                and isinstance(secret, str) and secret):
            raise ValueError("need app_key and app_secret (non-empty "
                             "strings)")
        self.apps[app_key] = secret

    @staticmethod
    def _number(spec, name, default, minimum=None):
        value = spec.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or (minimum is not None and value < minimum):
            raise ValueError(f"{name} must be a number"
                             + (f" >= {minimum}" if minimum is not None
                                else ""))
        return value

    @staticmethod
    def _flag(spec, name, default):
        value = spec.get(name, default)
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
        return value

    def put_shop(self, spec):
        app_key = spec.get("app_key")
        if app_key not in self.apps:
            raise ValueError("app_key must be a registered app")
        cipher = spec.get("shop_cipher")
        if not isinstance(cipher, str) or not cipher:
            raise ValueError("shop_cipher must be a non-empty string")
        platform = spec.get("platform", "TIKTOK_SHOP")
        if platform not in PLATFORMS:
            raise ValueError(f"platform must be one of {PLATFORMS}")
        region = spec.get("region", "ID")
        if not isinstance(region, str) or not re.fullmatch(r"[A-Z]{2}",
                                                           region):
            raise ValueError("region must be a two-letter upper-case code")
        if platform == "TOKOPEDIA" and region != "ID":
            raise ValueError("a TOKOPEDIA shop must have region ID")
        tokens = [spec.get("access_token"), spec.get("refresh_token")]
        if not all(isinstance(t, str) and t for t in tokens):
            raise ValueError("access_token and refresh_token must be "
                             "non-empty strings")
        for other in self.shops.values():
            if other.shop_cipher != cipher and other.app_key == app_key \
                    and other.refresh_token == tokens[1]:
                raise ValueError("another shop of this app has that "
                                 "refresh_token")
        access_ttl = spec.get("access_ttl", DEFAULT_ACCESS_TTL)
        if json_int(access_ttl) is None or access_ttl <= 0:
            raise ValueError("access_ttl must be a positive integer")
        now = time.time()
        access_expires = self._number(spec, "access_expires_at",
                                      now + access_ttl)
        refresh_expires = self._number(spec, "refresh_expires_at",
                                       now + DEFAULT_REFRESH_TTL)
        shop_id = spec.get("shop_id", str(7494000000000000000
                                          + int(hashlib.sha256(
                                              cipher.encode()).hexdigest(),
                                              16) % 10**15))
        if not isinstance(shop_id, str) or not shop_id:
            raise ValueError("shop_id must be a non-empty string")
        warehouses = spec.get("warehouses", [])
        if not isinstance(warehouses, list) or not all(
                isinstance(w, str) and w for w in warehouses):
            raise ValueError("warehouses must be a list of non-empty "
                             "strings")
        seller_name = spec.get("seller_name", f"Sim seller {cipher}")
        if not isinstance(seller_name, str):
            raise ValueError("seller_name must be a string")
        self.shops[cipher] = Shop(
            app_key=app_key, shop_cipher=cipher, shop_id=shop_id,
            region=region, platform=platform, access_token=tokens[0],
            refresh_token=tokens[1], access_expires_at=float(access_expires),
            refresh_expires_at=float(refresh_expires), access_ttl=access_ttl,
            rotate_refresh=self._flag(spec, "rotate_refresh", True),
            reject_zero=self._flag(spec, "reject_zero", False),
            seller_name=seller_name,
            open_id=hashlib.sha256(f"open:{cipher}".encode()).hexdigest()[:40],
            warehouses=list(warehouses), limiter=self._limiter(spec))

    @staticmethod
    def _limiter(spec):
        rate = spec.get("rate_limit_per_sec")
        if rate is None:
            return None
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) \
                or rate <= 0:
            raise ValueError("rate_limit_per_sec must be a positive number")
        burst = spec.get("rate_limit_burst")
        if burst is None:
            burst = max(1.0, float(rate))
        if isinstance(burst, bool) or not isinstance(burst, (int, float)) \
                or burst < 1:
            raise ValueError("rate_limit_burst must be a number >= 1")
        return TokenBucket(float(rate), float(burst))

    def _shop_for_control(self, spec):
        shop = self.shops.get(spec.get("shop_cipher"))
        if shop is None:
            raise ValueError("shop_cipher must be a configured shop")
        return shop

    def put_product(self, spec):
        shop = self._shop_for_control(spec)
        product_id = spec.get("product_id")
        if not isinstance(product_id, str) or not _DIGITS.fullmatch(
                product_id):
            raise ValueError("product_id must be a string of digits")
        status = spec.get("status", "ACTIVATE")
        if status not in PRODUCT_STATUSES:
            raise ValueError(f"status must be one of "
                             f"{sorted(PRODUCT_STATUSES)}")
        platforms = spec.get("listing_platforms", [shop.platform])
        if not isinstance(platforms, list) or not platforms or any(
                p not in PLATFORMS for p in platforms):
            raise ValueError(f"listing_platforms must be a non-empty list "
                             f"from {PLATFORMS}")
        skus = spec.get("skus")
        if not isinstance(skus, dict) or not 1 <= len(skus) <= MAX_SKUS:
            raise ValueError(f"skus must map 1 to {MAX_SKUS} SKU ids to "
                             "warehouse id lists")
        for sku_id, warehouses in skus.items():
            if not sku_id or not isinstance(warehouses, list) \
                    or not warehouses \
                    or not all(isinstance(w, str) and w for w in warehouses) \
                    or len(set(warehouses)) != len(warehouses):
                raise ValueError(f"SKU {sku_id!r}: need a non-empty list of "
                                 "distinct warehouse id strings")
        seller_skus = spec.get("seller_skus", {})
        if not isinstance(seller_skus, dict) or not all(
                k in skus and isinstance(v, str)
                for k, v in seller_skus.items()):
            raise ValueError("seller_skus maps configured SKU ids to "
                             "strings")
        fail_skus = {}
        raw_fail = spec.get("fail_skus", {})
        if not isinstance(raw_fail, dict):
            raise ValueError("fail_skus must be an object")
        for sku_id, reason in raw_fail.items():
            if not isinstance(reason, dict):
                raise ValueError("fail_skus maps SKU ids to {code, message, "
                                 "listing_platform?}")
            code = reason.get("code", E_CHECK_FAILED[0])
            message = reason.get("message", E_CHECK_FAILED[1])
            platform = reason.get("listing_platform")
            if json_int(code) is None or code == 0 \
                    or not isinstance(message, str) \
                    or (platform is not None and platform not in PLATFORMS):
                raise ValueError(f"fail_skus[{sku_id!r}]: code must be a "
                                 "non-zero integer, message a string, "
                                 f"listing_platform one of {PLATFORMS}")
            fail_skus[sku_id] = {"code": code, "message": message,
                                 "listing_platform": platform}
        self.products[(shop.shop_cipher, product_id)] = Product(
            status=status, listing_platforms=list(platforms),
            skus={k: list(v) for k, v in skus.items()},
            seller_skus=dict(seller_skus), fail_skus=fail_skus)

    def put_order(self, spec):
        """An order Get Order Detail returns: {shop_cipher, order_id,
        status, update_time, lines: [{product_id, sku_id, qty?,
        combined_listing_skus?}]}; each line becomes qty line items, one per
        unit, as TikTok has no quantity field."""
        shop = self._shop_for_control(spec)
        order_id = spec.get("order_id")
        status = spec.get("status")
        update_time = json_int(spec.get("update_time"))
        lines = spec.get("lines")
        if not isinstance(order_id, str) or not order_id:
            raise ValueError("order_id must be a non-empty string")
        if not isinstance(status, str) or update_time is None:
            raise ValueError("status (string) and update_time (int) are required")
        if not isinstance(lines, list) or any(
                not isinstance(line, dict) or not isinstance(line.get("sku_id"), str)
                or json_int(line.get("qty", 1)) is None for line in lines):
            raise ValueError("lines must be [{product_id, sku_id, qty?}]")
        items = []
        for line in lines:
            for _ in range(json_int(line.get("qty", 1))):
                item = {"id": str(self.rng.randrange(10**17, 10**18)),
                        "sku_id": line["sku_id"],
                        "product_id": str(line.get("product_id", "")),
                        "seller_sku": line.get("seller_sku", ""),
                        "display_status": status}
                if line.get("combined_listing_skus"):
                    item["combined_listing_skus"] = line["combined_listing_skus"]
                items.append(item)
        self.orders[(shop.shop_cipher, order_id)] = {
            "id": order_id, "status": status, "update_time": update_time,
            "create_time": update_time, "line_items": items}

    def expire_token(self, spec):
        shop = self._shop_for_control(spec)
        now = time.time()
        shop.access_expires_at = min(shop.access_expires_at, now)
        shop.previous_valid_until = min(shop.previous_valid_until, now)

    def set_faults(self, spec):
        rules = spec.get("rules")
        if not isinstance(rules, list):
            raise ValueError("rules must be a list")
        self.faults = [FaultRule.from_json(rule) for rule in rules]

    def shop_view(self, cipher):
        shop = self.shops.get(cipher)
        if shop is None:
            raise ValueError("shop_cipher must be a configured shop")
        limiter = shop.limiter
        return {
            "app_key": shop.app_key, "shop_cipher": shop.shop_cipher,
            "shop_id": shop.shop_id, "region": shop.region,
            "platform": shop.platform, "access_token": shop.access_token,
            "refresh_token": shop.refresh_token,
            "access_expires_at": shop.access_expires_at,
            "refresh_expires_at": shop.refresh_expires_at,
            "access_ttl": shop.access_ttl,
            "rotate_refresh": shop.rotate_refresh,
            "reject_zero": shop.reject_zero,
            "previous_access_token": shop.previous_token,
            "previous_valid_until": shop.previous_valid_until,
            "spent_refresh_tokens": sorted(shop.spent_refresh_tokens),
            "warehouses": sorted(self._shop_warehouses(shop.shop_cipher)),
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

    def stock_view(self, cipher):
        keys = set(self.stock)
        for (shop_cipher, product_id), product in self.products.items():
            keys.update((shop_cipher, product_id, sku_id, warehouse)
                        for sku_id, warehouses in product.skus.items()
                        for warehouse in warehouses)
        rows = []
        for key in sorted(keys):
            if cipher is not None and key[0] != cipher:
                continue
            rows.append({"shop_cipher": key[0], "product_id": key[1],
                         "sku_id": key[2], "warehouse_id": key[3],
                         "quantity": self.stock.get(key, 0),
                         "history": list(self.history.get(key, ()))})
        return {"stock": rows}

    def stats_view(self):
        stats = dict(self.stats)
        for name in ("by_status", "faults", "peak_per_second"):
            stats[name] = dict(stats[name])
        return stats

    # ----- marketplace -----------------------------------------------------

    def arrive(self, call):
        """Count the arrival for peak_per_second; attribute refreshes to a
        shop for fault matching and the log."""
        with self.lock:
            if call.shop_cipher is not None:
                now = time.monotonic()
                window = self.arrivals.setdefault(call.shop_cipher,
                                                  collections.deque())
                window.append(now)
                while window[0] <= now - 1.0:
                    window.popleft()
                peaks = self.stats["peak_per_second"]
                peaks[call.shop_cipher] = max(peaks.get(call.shop_cipher, 0),
                                              len(window))
            elif call.path == PATH_REFRESH:
                token = call.query.get("refresh_token")
                for shop in self.shops.values():
                    if token and (token == shop.refresh_token
                                  or token in shop.spent_refresh_tokens):
                        call.shop_cipher = shop.shop_cipher
                        break

    def pick_fault(self, call):
        """The first matching rule whose random draw fires, or None."""
        with self.lock:
            for rule in self.faults:
                if rule.matches(call) and self.rng.random() < rule.probability:
                    rule.fired += 1
                    return rule
        return None

    def record(self, call, status, fault, code=None):
        """Log a request that was not processed."""
        with self.lock:
            self._log(call, status, fault, code)

    def process(self, call, fault=None, log_status=None):
        """Verify and execute a marketplace request; log it."""
        with self.lock:
            stat = None
            try:
                reply = self._route(call)
            except ApiError as exc:
                reply, stat = exc.reply, exc.stat
            if stat == "sign":
                self.stats["rejected_sign"] += 1
            elif stat == "auth":
                self.stats["rejected_auth"] += 1
            elif stat == "throttle":
                self.stats["throttled"] += 1
            self._log(call, log_status or reply.status, fault, reply.code)
        return reply

    def _log(self, call, status, fault, code):
        stats = self.stats
        stats["requests"] += 1
        by_status = stats["by_status"]
        by_status[str(status)] = by_status.get(str(status), 0) + 1
        if fault is not None:
            stats["faults"][fault] = stats["faults"].get(fault, 0) + 1
        self.log.append({
            "seq": self.next_seq, "time": call.arrived,
            "method": call.method, "path": call.path,
            "query": call.logged_query(),
            "headers": {"x-correlation-id": call.correlation_id,
                        "content-type": call.content_type,
                        "x-tts-access-token": call.access_token is not None},
            "body": call.body.decode("utf-8", errors="replace"),
            "shop_cipher": call.shop_cipher, "product_id": call.product_id,
            "status": status, "code": code, "fault": fault,
            "applied": call.applied, "failed": call.failed,
        })
        self.next_seq += 1
        if len(self.log) > self.log_limit + self.log_limit // 10:
            del self.log[:len(self.log) - self.log_limit]

    def _route(self, call):
        if UPDATE_RE.fullmatch(call.path):
            route = ("POST", self._update)
        else:
            route = {PATH_SEARCH: ("POST", self._search),
                     PATH_ORDERS: ("GET", self._orders),
                     PATH_REFRESH: ("GET", self._refresh)}.get(call.path)
        if route is None:
            raise ApiError(404, C_INVALID_PATH,
                           "Invalid path. The specified path does not match "
                           "any available endpoint.")
        if call.method != route[0]:
            raise ApiError(405, C_INVALID_METHOD,
                           "Invalid method. The HTTP method used is not "
                           "supported by this endpoint.")
        return route[1](call)

    # ----- verification of signed API calls ---------------------------------

    def _authenticate(self, call):
        """The common checks of a signed API call, in TikTok's order; returns
        the shop, its rate limit already charged."""
        query = call.query
        app_key = query.get("app_key")
        secret = self.apps.get(app_key)
        if secret is None:
            raise ApiError(401, C_CREDENTIALS, M_APP_KEY, "auth")
        timestamp = query.get("timestamp", "")
        if not _TIMESTAMP.fullmatch(timestamp):
            raise ApiError(401, C_CREDENTIALS, M_TS_FORMAT)
        now = time.time()
        if int(timestamp) < now - TIMESTAMP_PAST:
            raise ApiError(401, C_CREDENTIALS, M_TS_PAST)
        if int(timestamp) > now + TIMESTAMP_FUTURE:
            raise ApiError(401, C_CREDENTIALS, M_TS_FUTURE)
        if "access_token" in query:
            raise ApiError(401, C_CREDENTIALS, M_QUERY_TOKEN, "auth")
        given = query.get("sign")
        if not given:
            raise ApiError(401, C_CREDENTIALS, M_NO_SIGN, "sign")
        expected = compute_sign(secret, call.path, call.pairs, call.body,
                                call.content_type)
        if not hmac.compare_digest(given.encode("utf-8"), expected.encode()):
            raise ApiError(401, C_SIGN, M_SIGN, "sign")
        if call.method != "GET" and \
                _media_type(call.content_type) != "application/json":
            raise ApiError(400, C_FORMAT, M_FORMAT)
        cipher = query.get("shop_cipher")
        if not cipher:
            raise ApiError(400, C_NO_CIPHER, M_NO_CIPHER)
        shop = self.shops.get(cipher)
        if shop is None or shop.app_key != app_key:
            raise ApiError(401, C_CREDENTIALS, M_BAD_CIPHER, "auth")
        self._check_access_token(shop, call.access_token)
        if shop.limiter is not None and not shop.limiter.take():
            raise ApiError(429, C_TOO_MANY, M_TOO_MANY, "throttle")
        return shop

    @staticmethod
    def _check_access_token(shop, token):
        now = time.time()
        if token is not None and token == shop.access_token:
            if now >= shop.access_expires_at:
                raise ApiError(401, C_EXPIRED, M_EXPIRED, "auth")
        elif not (token is not None and token == shop.previous_token
                  and now < shop.previous_valid_until):
            raise ApiError(401, C_BAD_TOKEN, M_BAD_TOKEN, "auth")

    @staticmethod
    def _json_object(call):
        try:
            doc = strict_json(call.body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise ApiError(400, C_FORMAT, M_BAD_JSON)
        return doc

    def _shop_warehouses(self, cipher):
        known = set(self.shops[cipher].warehouses)
        for (shop_cipher, _), product in self.products.items():
            if shop_cipher == cipher:
                for warehouses in product.skus.values():
                    known.update(warehouses)
        return known

    # ----- Update Inventory --------------------------------------------------

    def _update(self, call):
        shop = self._authenticate(call)
        doc = self._json_object(call)
        product_id = call.product_id
        if not _DIGITS.fullmatch(product_id):
            raise reject(E_INVALID_PRODUCT_ID, product_id)
        product = self.products.get((shop.shop_cipher, product_id))
        if product is None:
            if any(pid == product_id for _, pid in self.products):
                raise reject(E_NOT_IN_SHOP)
            raise reject(E_NO_PRODUCT)
        if product.status != "ACTIVATE":
            raise reject(E_STATUS, f"status {product.status}")
        if shop.platform not in product.listing_platforms:
            raise reject(E_NOT_IN_SHOP, "the product is not listed on "
                                        f"{shop.platform}")
        entries = self._sku_entries(doc.get("skus"), product, shop)
        self.check_warehouses(shop, product, entries)

        known = self._shop_warehouses(shop.shop_cipher)
        errors, applied = [], []
        for sku_id, levels in entries:
            unknown = [w for w, _ in levels if w not in known]
            fail = product.fail_skus.get(sku_id)
            if unknown:
                error = self._sku_error(
                    shop, product, sku_id, E_CHECK_FAILED,
                    [{"warehouse_id": w, "code": E_NO_WAREHOUSE[0],
                      "message": E_NO_WAREHOUSE[1]} for w in unknown])
            elif fail is not None:
                error = self._sku_error(
                    shop, product, sku_id, (fail["code"], fail["message"]),
                    [{"warehouse_id": w, "code": fail["code"],
                      "message": fail["message"]} for w, _ in levels],
                    fail["listing_platform"])
            else:
                for warehouse, quantity in levels:
                    key = (shop.shop_cipher, product_id, sku_id, warehouse)
                    self.stock[key] = quantity
                    self.history.setdefault(key, []).append(quantity)
                    applied.append({"sku_id": sku_id,
                                    "warehouse_id": warehouse,
                                    "quantity": quantity})
                continue
            errors.append(error)
        call.applied, call.failed = applied, errors
        if applied:
            self.stats["applied_updates"] += 1
            self.stats["applied_levels"] += len(applied)
        data = {"errors": errors} if errors else {}
        return Reply(200, envelope(0, "Success", data))

    @staticmethod
    def _sku_error(shop, product, sku_id, pair, extra, platform=None):
        detail = {"sku_id": sku_id, "extra_errors": extra}
        if shop.platform == "TOKOPEDIA":
            if platform is None:
                platform = ("TOKOPEDIA"
                            if "TOKOPEDIA" in product.listing_platforms
                            else product.listing_platforms[0])
            detail["listing_platform"] = platform
        return {"code": pair[0], "message": pair[1], "detail": detail}

    @staticmethod
    def _sku_entries(skus, product, shop):
        """Validate the whole `skus` array (any failure rejects the request,
        nothing applied); return [(sku_id, [(warehouse_id, quantity)])]."""
        if not isinstance(skus, list) or not skus:
            raise reject(E_EMPTY_SKUS)
        if len(skus) > MAX_SKUS:
            raise reject(E_TOO_MANY_SKUS)
        seen = set()
        for i, sku in enumerate(skus):
            sku_id = sku.get("id") if isinstance(sku, dict) else None
            if not isinstance(sku_id, str) or not sku_id:
                raise reject(E_SKU_ID, f"skus[{i}].id must be a non-empty "
                                       "string")
            if sku_id in seen:
                raise reject(E_SKU_DUP, sku_id)
            seen.add(sku_id)
            if sku_id not in product.skus:
                raise reject(E_SKU_UNKNOWN, sku_id)

        minimum = 1 if shop.reject_zero else 0
        entries = []
        for sku in skus:
            sku_id = sku["id"]
            assigned = product.skus[sku_id]
            inventory = sku.get("inventory")
            if not isinstance(inventory, list):
                raise reject(E_WAREHOUSE, f"SKU {sku_id}: inventory must be "
                                          "a list")
            if not inventory:
                raise reject(E_MISSING_WAREHOUSE, f"SKU {sku_id}")
            levels = []
            for level in inventory:
                if not isinstance(level, dict):
                    raise reject(E_WAREHOUSE, f"SKU {sku_id}: inventory "
                                              "entries must be objects")
                if "warehouse_id" in level:
                    warehouse = level["warehouse_id"]
                    if not isinstance(warehouse, str) or not warehouse:
                        raise reject(E_WAREHOUSE, f"SKU {sku_id}: "
                                     "warehouse_id must be a non-empty "
                                     "string")
                elif len(assigned) == 1:
                    warehouse = assigned[0]
                else:
                    raise reject(E_MULTI_WAREHOUSE, f"SKU {sku_id}")
                quantity = level.get("quantity")
                if json_int(quantity) is None:
                    raise reject(E_STOCK_COUNT, f"SKU {sku_id}: quantity "
                                 "must be a JSON integer")
                if not minimum <= quantity <= MAX_QUANTITY:
                    raise reject(E_QUANTITY, f"SKU {sku_id}: quantity "
                                 f"{quantity} not in [{minimum}, "
                                 f"{MAX_QUANTITY}]")
                for name in ("backorder_quantity", "handling_time"):
                    if name in level and (json_int(level[name]) is None
                                          or level[name] < 0):
                        raise reject(E_STOCK_COUNT, f"SKU {sku_id}: {name} "
                                     "must be a non-negative integer")
                levels.append((warehouse, quantity))
            entries.append((sku_id, levels))
        return entries

    def check_warehouses(self, shop, product, entries):
        """Every SKU must list exactly its assigned warehouses.  A SKU that
        names a warehouse unknown to the shop is left to the per-SKU errors
        instead."""
        known = self._shop_warehouses(shop.shop_cipher)
        for sku_id, levels in entries:
            assigned = product.skus[sku_id]
            listed = [w for w, _ in levels]
            if len(set(listed)) != len(listed):
                raise reject(E_CHANGED_WAREHOUSE, f"SKU {sku_id}: a "
                                                  "warehouse listed twice")
            if any(w not in known for w in listed):
                continue
            extra = [w for w in listed if w not in assigned]
            if extra:
                raise reject(E_CHANGED_WAREHOUSE, f"SKU {sku_id}: warehouse "
                                                  f"{extra[0]} is not "
                                                  "assigned to it")
            missing = [w for w in assigned if w not in listed]
            if missing:
                raise reject(E_MISSING_WAREHOUSE, f"SKU {sku_id}: warehouse "
                                                  f"{missing[0]} omitted")

    # ----- Inventory Search --------------------------------------------------

    def _search(self, call):
        shop = self._authenticate(call)
        doc = self._json_object(call)
        sku_ids, product_ids = doc.get("sku_ids"), doc.get("product_ids")
        for ids in (sku_ids, product_ids):
            if ids is not None and (not isinstance(ids, list) or not all(
                    isinstance(i, str) and i for i in ids)):
                raise reject(E_SEARCH_IDS, "ids must be lists of strings")
        products = {pid: product
                    for (cipher, pid), product in self.products.items()
                    if cipher == shop.shop_cipher}
        found = {}                  # product_id -> [sku_id], in request order
        if sku_ids:
            if len(sku_ids) > MAX_SEARCH_SKUS:
                raise reject(E_SEARCH_SKUS)
            owner = {sku: pid for pid, product in products.items()
                     for sku in product.skus}
            for sku in sku_ids:
                if sku in owner and sku not in found.get(owner[sku], ()):
                    found.setdefault(owner[sku], []).append(sku)
        elif product_ids:
            if len(product_ids) > MAX_SEARCH_PRODUCTS:
                raise reject(E_SEARCH_PRODUCTS)
            for pid in product_ids:
                if pid in products and pid not in found:
                    found[pid] = list(products[pid].skus)
        else:
            raise reject(E_SEARCH_IDS, "give product_ids or sku_ids")
        inventory = []
        for pid, skus in found.items():
            rows = []
            for sku in skus:
                levels = [{"warehouse_id": w,
                           "available_quantity": self.stock.get(
                               (shop.shop_cipher, pid, sku, w), 0),
                           "committed_quantity": 0}
                          for w in products[pid].skus[sku]]
                rows.append({
                    "id": sku,
                    "seller_sku": products[pid].seller_skus.get(sku, ""),
                    "total_available_quantity": sum(
                        level["available_quantity"] for level in levels),
                    "total_committed_quantity": 0,
                    "warehouse_inventory": levels})
            inventory.append({"product_id": pid, "skus": rows})
        return Reply(200, envelope(0, "Success", {"inventory": inventory}))

    def _orders(self, call):
        """Get Order Detail (202309): ids is one signed value, order ids
        joined by commas; orders the shop does not hold are left out."""
        shop = self._authenticate(call)
        ids = call.query.get("ids", "")
        ids = [i for i in ids.split(",") if i]
        if not ids or len(ids) > MAX_ORDER_IDS:
            raise ApiError(400, 36009001, "Invalid parameter. ids must name "
                           f"1 to {MAX_ORDER_IDS} orders.")
        orders = [self.orders[(shop.shop_cipher, i)] for i in ids
                  if (shop.shop_cipher, i) in self.orders]
        return Reply(200, envelope(0, "Success", {"orders": orders}))

    # ----- token refresh (auth host) -----------------------------------------

    def _refresh(self, call):
        query = call.query
        app_key = query.get("app_key")
        secret = self.apps.get(app_key)
        if secret is None:
            raise ApiError(401, C_CREDENTIALS, M_APP_KEY, "auth")
        if not hmac.compare_digest(query.get("app_secret", "").encode(),
                                   secret.encode()):
            raise ApiError(401, C_CREDENTIALS, "Invalid credentials. The "
                           "`app_secret` query parameter is invalid.", "auth")
        if query.get("grant_type") != "refresh_token":
            raise ApiError(400, C_CREDENTIALS, "Invalid grant_type. Only "
                           "`refresh_token` is accepted.")
        token = query.get("refresh_token", "")
        shops = [s for s in self.shops.values() if s.app_key == app_key]
        shop = next((s for s in shops if token and s.refresh_token == token),
                    None)
        if shop is None:
            if token and any(token in s.spent_refresh_tokens for s in shops):
                self.stats["spent_refresh_token_reuse"] += 1
            raise ApiError(401, C_BAD_REFRESH, "Invalid credentials. The "
                           "`refresh_token` is invalid.", "auth")
        now = time.time()
        if now >= shop.refresh_expires_at:
            raise ApiError(401, C_BAD_REFRESH, "Invalid credentials. The "
                           "`refresh_token` has expired; the seller must "
                           "authorize the app again.", "auth")

        shop.previous_token = shop.access_token
        shop.previous_valid_until = min(now + PREVIOUS_TOKEN_GRACE,
                                        shop.access_expires_at)
        shop.access_token = self._new_token()
        shop.access_expires_at = float(int(now) + shop.access_ttl)
        if shop.rotate_refresh:
            shop.spent_refresh_tokens.add(shop.refresh_token)
            shop.refresh_token = self._new_token()
        self.stats["refreshes"] += 1
        return Reply(200, envelope(0, "success", {
            "access_token": shop.access_token,
            "access_token_expire_in": int(shop.access_expires_at),
            "refresh_token": shop.refresh_token,
            "refresh_token_expire_in": int(shop.refresh_expires_at),
            "open_id": shop.open_id,
            "seller_name": shop.seller_name,
            "seller_base_region": shop.region,
            "user_type": 0,
        }))

    def _new_token(self):
        return "TTP_%032x" % self.rng.getrandbits(128)


class Handler(BaseHTTPRequestHandler):
    """Routes /_sim/* to the control API, everything else to TikTok."""

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
        return "TikTokShopSim/1.0"

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

    def _hang(self, limit_ms):
        """Answer nothing; read and drop whatever comes until the client
        closes the connection (or limit_ms, if set, has passed)."""
        self.close_connection = True
        deadline = None
        if limit_ms is not None:
            deadline = time.monotonic() + limit_ms / 1000
        sock = self.connection
        while True:
            wait = 1.0
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return
            sock.settimeout(wait)
            try:
                if not sock.recv(65536):
                    return
            except socket.timeout:
                continue
            except (OSError, ssl.SSLError):
                return

    def _marketplace(self, path, query, body):
        state = self.server.state
        call = Call.parse(self.command, path, query, self.headers, body)
        state.arrive(call)
        rule = state.pick_fault(call)
        kind = rule.kind if rule else None
        if kind == "timeout":
            state.record(call, "timeout", kind)
            time.sleep(rule.delay_ms / 1000)
            self.close_connection = True
        elif kind == "hang":
            state.record(call, "hang", kind)
            self._hang(rule.delay_ms)
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
            state.record(call, reply.status, kind, reply.code)
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
            "/_sim/shops": state.put_shop,
            "/_sim/products": state.put_product,
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
        return state.stock_view(params.get("shop_cipher"))
    if path == "/_sim/stats":
        return state.stats_view()
    if path == "/_sim/shops":
        return state.shop_view(params.get("shop_cipher"))
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
    """Stop serve_forever() on SIGTERM or SIGINT, from a thread of its own
    (shutdown() waits for serve_forever() to return)."""
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
        print(f"tiktok_sim listening on {scheme}://{args.host}:{port}",
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
