"""Self-test of the TikTok Shop simulator (sim/tiktok_sim.py).

Starts the simulator in a subprocess on a free port and drives it over HTTP
with the standard library only.  Run from the repository root:

    python3 -m unittest sim/test_tiktok_sim.py
"""

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
from urllib.parse import urlencode

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import tiktok_sim  # noqa: E402  (needs the path above)

SIM = os.path.join(HERE, "tiktok_sim.py")
APP_KEY = "29a39d"
APP_SECRET = "e59af819cc"
SHOP = "ROW_RHkDDABBAAB8tKAVoAqsMTjsQZFLyNfY"
TOKO = "ROW_TokopediaShop0001"
TOKEN = "TTP_access_shop_0001"
REFRESH = "TTP_refresh_shop_0001"
TOKO_TOKEN = "TTP_access_toko_0001"
TOKO_REFRESH = "TTP_refresh_toko_0001"
PRODUCT = "1729382561353664372"
SKU_A = "1729592969712207013"            # one warehouse
SKU_B = "1729592969712207014"            # two warehouses
SKU_C = "1729592969712207015"            # one warehouse, configured to fail
WH = "7068517275539719942"
WH1, WH2 = "7068517275539719001", "7068517275539719002"
UPDATE = tiktok_sim.update_path(PRODUCT)
SEARCH = tiktok_sim.PATH_SEARCH
REFRESH_PATH = tiktok_sim.PATH_REFRESH
LOCKED = "Product locked for Promotion and stock can't be updated below " \
         "current stock"


def start_sim(*extra):
    """Start a simulator; return (process, port, port_file)."""
    tmpdir = tempfile.mkdtemp(prefix="tiktok_sim_test_")
    port_file = os.path.join(tmpdir, "port")
    proc = subprocess.Popen([sys.executable, SIM, "--host", "127.0.0.1",
                             "--port", "0", "--port-file", port_file,
                             "--seed", "7", "--quiet", *extra])
    deadline = time.monotonic() + 10
    while not os.path.exists(port_file):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("simulator did not start")
        time.sleep(0.02)
    with open(port_file) as f:
        return proc, int(f.read()), port_file


def stop_sim(proc):
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=10)


def compact(doc):
    return json.dumps(doc, separators=(",", ":")).encode()


def sku(sku_id, *levels):
    """{"id", "inventory"} from (warehouse_id or None, quantity) pairs."""
    inventory = []
    for warehouse, quantity in levels:
        level = {"quantity": quantity}
        if warehouse is not None:
            level = {"warehouse_id": warehouse, "quantity": quantity}
        inventory.append(level)
    return {"id": sku_id, "inventory": inventory}


class SigningTest(unittest.TestCase):
    """The vectors of marketplace-apis.md section 2.2."""

    def test_official_doc_vector(self):
        params = {"app_key": "29a39d", "timestamp": "1623812664"}
        path = "/authorization/202309/shops"
        self.assertEqual(
            tiktok_sim.sign_base("e59af819cc", path, params),
            b"e59af819cc/authorization/202309/shopsapp_key29a39d"
            b"timestamp1623812664e59af819cc")
        self.assertEqual(
            tiktok_sim.compute_sign("e59af819cc", path, params),
            "b596b73e0cc6de07ac26f036364178ab16b0a907af13d43f0a0cd2345f582dc8")

    def test_sdk_vectors(self):
        params = {"app_key": "68xu9ks5p4i8", "timestamp": "1696909648",
                  "shop_cipher": "ROW_xkMbgAAAeVAQra0eZWebFQq5aIK"}
        path = "/event/202309/webhooks"
        self.assertEqual(
            tiktok_sim.compute_sign("e59af819cc", path, params),
            "ed58e1b5e59865c22a7b828c1cab65007441f43cc91a6cb2f2cdc638e0995a37")
        body = (b'{"event_type":"PACKAGE_UPDATE",'
                b'"address":"https://partner.tiktokshop.com"}')
        self.assertEqual(
            tiktok_sim.compute_sign("e59af819cc", path, params, body,
                                    "application/json"),
            "701dd6deb2389fe4c469b89bd37fc56f96a6da6afeb4d01c9077a65169752fa7")
        # The body is not signed for multipart/form-data.
        self.assertEqual(
            tiktok_sim.compute_sign("e59af819cc", path, params, body,
                                    "multipart/form-data; boundary=x"),
            "ed58e1b5e59865c22a7b828c1cab65007441f43cc91a6cb2f2cdc638e0995a37")

    def test_ecomphp_vector(self):
        self.assertEqual(
            tiktok_sim.compute_sign("app_secret", "/test-api", {"foo": "bar"}),
            "d3cb7fe11ecae942802ceeca67e7cf10120cc12f1517d45fbc1c8cfe5413c80f")

    def test_inventory_vector(self):
        params = [("timestamp", "1623812664"), ("app_key", "29a39d"),
                  ("shop_cipher", "ROW_RHkDDABBAAB8tKAVoAqsMTjsQZFLyNfY"),
                  ("sign", "ignored"), ("access_token", "ignored")]
        body = compact({"skus": [sku("1729592969712207013",
                                     ("7068517275539719942", 999))]})
        self.assertEqual(
            tiktok_sim.compute_sign(
                "e59af819cc",
                "/product/202309/products/1729382561353664372/inventory/"
                "update", params, body, "application/json"),
            "1bc4db98fb26d22f8f9174f863a9511bd5a1eba3fd91697a7684c1f6de9f8edf")


class OrderSigningTest(unittest.TestCase):
    """marketplace-apis.md section 7.3, COMP vector of Get Order Detail."""

    def test_order_detail_vector(self):
        params = [("app_key", "29a39d"),
                  ("ids", "576461413038785752,576461413038785753"),
                  ("shop_cipher", "ROW_RHkDDABBAAB8tKAVoAqsMTjsQZFLyNfY"),
                  ("timestamp", "1623812664")]
        self.assertEqual(
            tiktok_sim.compute_sign("e59af819cc", "/order/202309/orders",
                                    params),
            "483b0106bdc4dec3d1a6587a220f20a1d1f7226061300ad3f4cc5307a3ad295b")


class SimTestCase(unittest.TestCase):
    """Shared helpers; one simulator per class."""

    port = None
    https_context = None

    def connection(self, timeout=10):
        if self.https_context is not None:
            return http.client.HTTPSConnection(
                "127.0.0.1", self.port, context=self.https_context,
                timeout=timeout)
        return http.client.HTTPConnection("127.0.0.1", self.port,
                                          timeout=timeout)

    def request(self, method, target, body=None, headers=None):
        """Return (status, headers, raw body) for any status."""
        conn = self.connection()
        try:
            conn.request(method, target, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        finally:
            conn.close()

    def control(self, path, body=None, expect=200):
        method = "GET" if body is None and path != "/_sim/reset" else "POST"
        data = json.dumps(body or {}).encode() if method == "POST" else None
        status, _, raw = self.request(method, path, data)
        self.assertEqual(status, expect, raw)
        return json.loads(raw)

    def signed(self, path, doc=None, *, raw=None, sign_body=None,
               shop_cipher=SHOP, token=TOKEN, timestamp=None, sign=None,
               params=None, content_type="application/json",
               headers=None, method="POST"):
        """Send a signed API call; return (status, headers, parsed JSON)."""
        timestamp = int(time.time()) if timestamp is None else timestamp
        query = {"app_key": APP_KEY, "timestamp": str(timestamp)}
        if shop_cipher is not None:
            query["shop_cipher"] = shop_cipher
        query.update(params or {})
        body = raw if raw is not None else (
            compact(doc) if doc is not None else b"")
        if sign is None:
            sign = tiktok_sim.compute_sign(
                APP_SECRET, path, query,
                body if sign_body is None else sign_body, content_type)
        query["sign"] = sign
        all_headers = {}
        if content_type is not None:
            all_headers["Content-Type"] = content_type
        if token is not None:
            all_headers["x-tts-access-token"] = token
        all_headers.update(headers or {})
        status, resp_headers, data = self.request(
            method, f"{path}?{urlencode(query)}", body or None, all_headers)
        return status, resp_headers, json.loads(data)

    def update(self, *skus, path=UPDATE, **kwargs):
        status, _, doc = self.signed(path, {"skus": list(skus)}, **kwargs)
        return status, doc

    def refresh(self, refresh_token, app_secret=APP_SECRET,
                grant_type="refresh_token"):
        query = urlencode({"app_key": APP_KEY, "app_secret": app_secret,
                           "refresh_token": refresh_token,
                           "grant_type": grant_type})
        status, _, raw = self.request("GET", f"{REFRESH_PATH}?{query}")
        return status, json.loads(raw)

    def stock(self, cipher=SHOP):
        rows = self.control(f"/_sim/stock?shop_cipher={cipher}")["stock"]
        return {(r["product_id"], r["sku_id"], r["warehouse_id"]):
                (r["quantity"], r["history"]) for r in rows}

    def faults(self, *rules):
        self.control("/_sim/faults", {"rules": list(rules)})

    def last_log(self):
        return self.control("/_sim/log")["entries"][-1]

    def assert_code(self, result, status, code, message=None):
        self.assertEqual(result[0], status, result[1])
        self.assertEqual(result[1]["code"], code, result[1])
        if message is not None:
            self.assertIn(message, result[1]["message"])
        self.assertRegex(result[1]["request_id"], r"^[0-9]{14}[0-9A-F]{20}$")
        if code != 0:
            self.assertIsNone(result[1]["data"])

    def configure(self):
        self.control("/_sim/reset")
        self.control("/_sim/apps", {"app_key": APP_KEY,
                                    "app_secret": APP_SECRET})
        self.control("/_sim/shops", {
            "app_key": APP_KEY, "shop_cipher": SHOP, "region": "MY",
            "access_token": TOKEN, "refresh_token": REFRESH})
        self.control("/_sim/products", {
            "shop_cipher": SHOP, "product_id": PRODUCT,
            "skus": {SKU_A: [WH], SKU_B: [WH1, WH2], SKU_C: [WH]},
            "seller_skus": {SKU_A: "RED-S"},
            "fail_skus": {SKU_C: {"code": 12052393, "message": LOCKED}}})


class SimulatorTest(SimTestCase):

    @classmethod
    def setUpClass(cls):
        cls.proc, cls.port, _ = start_sim()

    @classmethod
    def tearDownClass(cls):
        stop_sim(cls.proc)

    def setUp(self):
        self.configure()

    # ----- Update Inventory ------------------------------------------------

    def test_order_detail(self):
        orders = "/order/202309/orders"
        self.control("/_sim/orders", {
            "shop_cipher": SHOP, "order_id": "5764614130387", "status":
            "AWAITING_SHIPMENT", "update_time": 1700000000,
            "lines": [{"product_id": "1729", "sku_id": "2729", "qty": 2}]})
        status, _, doc = self.signed(orders, method="GET", content_type=None,
                                     params={"ids": "5764614130387,999"})
        self.assertEqual((status, doc["code"]), (200, 0), doc)
        order = doc["data"]["orders"][0]
        self.assertEqual((order["status"], order["update_time"]),
                         ("AWAITING_SHIPMENT", 1700000000))
        # no quantity: one line item per unit
        self.assertEqual([item["sku_id"] for item in order["line_items"]],
                         ["2729", "2729"])
        self.assertEqual(len(doc["data"]["orders"]), 1)
        # signed, token and shop checked as any call
        status, _, doc = self.signed(orders, method="GET", content_type=None,
                                     params={"ids": "5764614130387"},
                                     sign="0" * 64)
        self.assertEqual(doc["code"], 106001)
        status, _, doc = self.signed(orders, method="GET", content_type=None,
                                     params={"ids": "5764614130387"},
                                     token="wrong")
        self.assertEqual(doc["code"], 101000)
        status, _, doc = self.signed(orders, method="GET", content_type=None,
                                     params={"ids": "5764614130387"},
                                     shop_cipher=None)
        self.assertEqual(doc["code"], 106013)
        # faults apply to it
        self.faults({"kind": "http_503", "count": 1, "path": orders})
        status, _, raw = self.request("GET", orders)
        self.assertEqual(status, 503)

    def test_good_update_applied(self):
        status, _, body = self.signed(
            UPDATE, {"skus": [sku(SKU_A, (WH, 5)),
                              sku(SKU_B, (WH2, 0), (WH1, 99999))]},
            headers={"X-Correlation-ID": "corr-1"},
            content_type="application/json; charset=utf-8")
        self.assert_code((status, body), 200, 0)
        self.assertEqual(body["message"], "Success")
        self.assertEqual(body["data"], {})
        stock = self.stock()
        self.assertEqual(stock[(PRODUCT, SKU_A, WH)], (5, [5]))
        self.assertEqual(stock[(PRODUCT, SKU_B, WH1)], (99999, [99999]))
        self.assertEqual(stock[(PRODUCT, SKU_B, WH2)], (0, [0]))
        self.assertEqual(stock[(PRODUCT, SKU_C, WH)], (0, []))
        # warehouse_id may be left out when the SKU has one warehouse.
        self.assert_code(self.update(sku(SKU_A, (None, 6))), 200, 0)
        self.assertEqual(self.stock()[(PRODUCT, SKU_A, WH)], (6, [5, 6]))

        entry = self.control("/_sim/log")["entries"][0]
        self.assertEqual(entry["headers"], {
            "x-correlation-id": "corr-1",
            "content-type": "application/json; charset=utf-8",
            "x-tts-access-token": True})
        self.assertNotIn(TOKEN, json.dumps(entry))
        self.assertEqual((entry["status"], entry["code"], entry["fault"]),
                         (200, 0, None))
        self.assertEqual((entry["shop_cipher"], entry["product_id"]),
                         (SHOP, PRODUCT))
        self.assertEqual(entry["applied"], [
            {"sku_id": SKU_A, "warehouse_id": WH, "quantity": 5},
            {"sku_id": SKU_B, "warehouse_id": WH2, "quantity": 0},
            {"sku_id": SKU_B, "warehouse_id": WH1, "quantity": 99999}])
        self.assertIn('"quantity":99999', entry["body"])
        stats = self.control("/_sim/stats")
        self.assertEqual((stats["applied_updates"], stats["applied_levels"]),
                         (2, 4))

    def test_bad_sign_rejected(self):
        doc = {"skus": [sku(SKU_A, (WH, 5))]}
        good = compact(doc)
        one_byte = good.replace(b"5", b"6")
        spaced = json.dumps(doc).encode()          # ", " and ": "
        self.assertNotEqual(spaced, good)
        ts = int(time.time())
        right = tiktok_sim.compute_sign(
            APP_SECRET, UPDATE, {"app_key": APP_KEY, "timestamp": str(ts),
                                 "shop_cipher": SHOP}, good)
        cases = {
            "one body byte changed": {"raw": one_byte, "sign_body": good},
            "re-serialized with spaces": {"raw": spaced, "sign_body": good},
            "upper-case sign": {"sign": right.upper(), "timestamp": ts},
            "sign of another path": {"sign": tiktok_sim.compute_sign(
                APP_SECRET, SEARCH, {"app_key": APP_KEY,
                                     "timestamp": str(ts),
                                     "shop_cipher": SHOP}, good),
                "timestamp": ts},
            "extra unsigned param": {"sign": right, "timestamp": ts,
                                     "params": {"version": "202309"}},
        }
        for name, args in cases.items():
            with self.subTest(name):
                status, _, body = self.signed(UPDATE, doc, **args)
                self.assert_code((status, body), 401, 106001, "'sign'")
        self.assert_code(self.update(sku(SKU_A, (WH, 5)), sign=""), 401,
                         36009004, "Missing credentials")
        self.assertEqual(self.stock()[(PRODUCT, SKU_A, WH)], (0, []))
        self.assertEqual(self.control("/_sim/stats")["rejected_sign"], 6)
        # The spaced body is fine when it is what was signed.
        status, _, body = self.signed(UPDATE, raw=spaced)
        self.assert_code((status, body), 200, 0)

    def test_common_checks_in_order(self):
        one = sku(SKU_A, (WH, 1))
        now = int(time.time())
        cases = [
            ("unknown app_key", {"params": {"app_key": "nope"}}, 401,
             36009004, "app_key"),
            ("stale timestamp", {"timestamp": now - 301}, 401, 36009004,
             "5 minutes"),
            ("future timestamp", {"timestamp": now + 45}, 401, 36009004,
             "30 seconds"),
            ("millisecond timestamp", {"timestamp": now * 1000}, 401,
             36009004, "10-digit"),
            ("form content type",
             {"content_type": "application/x-www-form-urlencoded"}, 400,
             36009022, None),
            ("missing shop_cipher", {"shop_cipher": None}, 400, 106013,
             "shop_cipher"),
            ("unknown shop_cipher", {"shop_cipher": "ROW_nope"}, 401,
             36009004, "shop_cipher"),
            ("missing token header", {"token": None}, 401, 101000,
             "x-tts-access-token"),
            ("wrong token", {"token": "TTP_wrong"}, 401, 101000, None),
        ]
        for name, args, status, code, message in cases:
            with self.subTest(name):
                self.assert_code(self.update(one, **args), status, code,
                                 message)
        # The future edge of the window is accepted.
        self.assert_code(self.update(one, timestamp=now + 25), 200, 0)
        self.assert_code(self.update(one, timestamp=now - 290), 200, 0)
        status, _, body = self.signed(UPDATE, raw=b"{not json")
        self.assert_code((status, body), 400, 36009022)
        status, _, body = self.signed(UPDATE, raw=b'{"skus":[],"skus":[]}')
        self.assert_code((status, body), 400, 36009022)
        self.assertEqual(self.stock()[(PRODUCT, SKU_A, WH)], (1, [1, 1]))
        self.assertEqual(self.control("/_sim/stats")["rejected_auth"], 4)

    def test_access_token_in_query_rejected(self):
        one = sku(SKU_A, (WH, 1))
        for token in (TOKEN, None):
            with self.subTest(header=token):
                self.assert_code(
                    self.update(one, token=token,
                                params={"access_token": TOKEN}),
                    401, 36009004, "access_token")
        entry = self.last_log()
        self.assertEqual(entry["query"]["access_token"], "REDACTED")
        self.assertEqual(self.stock()[(PRODUCT, SKU_A, WH)], (0, []))

    def test_expired_token(self):
        self.control("/_sim/expire_token", {"shop_cipher": SHOP})
        self.assert_code(self.update(sku(SKU_A, (WH, 1))), 401, 105002,
                         "expired")
        self.assertEqual(self.control("/_sim/stats")["rejected_auth"], 1)

    def test_warehouse_rules(self):
        cases = [
            ("one of two omitted", sku(SKU_B, (WH1, 1)), 12052037),
            ("empty inventory", sku(SKU_B), 12052037),
            ("no warehouse_id with two warehouses",
             sku(SKU_B, (None, 1), (WH2, 1)), 12019028),
            ("warehouse of another SKU", sku(SKU_B, (WH1, 1), (WH2, 1),
                                             (WH, 1)), 12052533),
            ("duplicate warehouse", sku(SKU_B, (WH1, 1), (WH1, 2),
                                        (WH2, 1)), 12052533),
            ("duplicate via omitted id", sku(SKU_C, (None, 1), (WH, 2)),
             12052533),
            ("inventory not a list", {"id": SKU_C, "inventory": {}},
             12019022),
            ("numeric warehouse_id",
             {"id": SKU_C, "inventory": [{"warehouse_id": 7, "quantity": 1}]},
             12019022),
        ]
        for name, entry, code in cases:
            with self.subTest(name):
                self.assert_code(self.update(sku(SKU_A, (WH, 3)), entry),
                                 400, code)
        self.assertEqual(self.stock()[(PRODUCT, SKU_A, WH)], (0, []))
        self.assert_code(self.update(sku(SKU_B, (WH2, 4), (WH1, 3))), 200, 0)

    def test_quantity_rules(self):
        cases = [
            ("float", 5.0, 12019024), ("string", "5", 12019024),
            ("bool", True, 12019024), ("null", None, 12019024),
            ("negative", -1, 12052055), ("too big", 100000, 12052055),
        ]
        for name, quantity, code in cases:
            with self.subTest(name):
                self.assert_code(self.update(sku(SKU_A, (WH, quantity))),
                                 400, code)
        status, _, body = self.signed(
            UPDATE, raw=b'{"skus":[{"id":"%s","inventory":[{"warehouse_id":'
                        b'"%s","quantity":1e1}]}]}' % (SKU_A.encode(),
                                                       WH.encode()))
        self.assert_code((status, body), 400, 12019024)
        self.assert_code(self.update(sku(SKU_A, (WH, 0))), 200, 0)
        self.assertEqual(self.stock()[(PRODUCT, SKU_A, WH)], (0, [0]))

    def test_reject_zero(self):
        self.control("/_sim/shops", {
            "app_key": APP_KEY, "shop_cipher": SHOP, "reject_zero": True,
            "access_token": TOKEN, "refresh_token": REFRESH})
        self.assert_code(self.update(sku(SKU_A, (WH, 0))), 400, 12052055,
                         "[1, 99999]")
        self.assert_code(self.update(sku(SKU_A, (WH, 1))), 200, 0)
        self.assertEqual(self.stock()[(PRODUCT, SKU_A, WH)], (1, [1]))

    def test_product_and_sku_rules(self):
        self.control("/_sim/products", {
            "shop_cipher": SHOP, "product_id": "42", "status": "FREEZE",
            "skus": {"4201": [WH]}})
        one = sku(SKU_A, (WH, 1))
        cases = [
            ("unknown product", {"path": tiktok_sim.update_path("999")},
             [one], 12052032),
            ("non-numeric product", {"path": tiktok_sim.update_path("x1")},
             [one], 12052031),
            ("frozen product", {"path": tiktok_sim.update_path("42")},
             [sku("4201", (WH, 1))], 12052901),
            ("SKU of another product", {}, [one, sku("4201", (WH, 1))],
             12052556),
            ("duplicate SKU", {}, [one, one], 12052553),
            ("numeric SKU id", {}, [{"id": 1, "inventory": []}], 12052036),
            ("no SKUs", {}, [], 12052902),
            ("101 SKUs", {}, [one] * 101, 12052050),
        ]
        for name, kwargs, skus, code in cases:
            with self.subTest(name):
                self.assert_code(self.update(*skus, **kwargs), 400, code)
        self.assertEqual(self.stock()[(PRODUCT, SKU_A, WH)], (0, []))

    def test_partial_failure(self):
        status, body = self.update(sku(SKU_C, (WH, 7)), sku(SKU_A, (WH, 7)),
                                   sku(SKU_B, (WH1, 7), ("777", 7)))
        self.assert_code((status, body), 200, 0)
        self.assertEqual(body["data"]["errors"], [
            {"code": 12052393, "message": LOCKED,
             "detail": {"sku_id": SKU_C, "extra_errors": [
                 {"warehouse_id": WH, "code": 12052393,
                  "message": LOCKED}]}},
            {"code": 12052990, "message": "The check failed.",
             "detail": {"sku_id": SKU_B, "extra_errors": [
                 {"warehouse_id": "777", "code": 12052097,
                  "message": "The warehouse does not exist"}]}}])
        stock = self.stock()
        self.assertEqual(stock[(PRODUCT, SKU_A, WH)], (7, [7]))
        self.assertEqual(stock[(PRODUCT, SKU_C, WH)], (0, []))
        self.assertEqual(stock[(PRODUCT, SKU_B, WH1)], (0, []))
        entry = self.last_log()
        self.assertEqual(entry["failed"], body["data"]["errors"])
        self.assertEqual([a["sku_id"] for a in entry["applied"]], [SKU_A])
        # Every SKU failing is still code 0 (the documented sample).
        status, body = self.update(sku(SKU_C, (WH, 8)))
        self.assert_code((status, body), 200, 0)
        self.assertEqual(len(body["data"]["errors"]), 1)
        self.assertEqual(self.control("/_sim/stats")["applied_updates"], 1)

    def test_rate_limit_and_peak(self):
        self.control("/_sim/shops", {
            "app_key": APP_KEY, "shop_cipher": SHOP,
            "access_token": TOKEN, "refresh_token": REFRESH,
            "rate_limit_per_sec": 1, "rate_limit_burst": 1})
        self.assert_code(self.update(sku(SKU_A, (WH, 1))), 200, 0)
        status, headers, body = self.signed(UPDATE,
                                            {"skus": [sku(SKU_A, (WH, 2))]})
        self.assert_code((status, body), 429, 36009002)
        self.assert_code(self.update(sku(SKU_A, (WH, 3)), sign="bad"), 401,
                         106001)
        stats = self.control("/_sim/stats")
        self.assertEqual(stats["throttled"], 1)
        self.assertEqual(stats["peak_per_second"], {SHOP: 3})
        self.assertEqual(self.stock()[(PRODUCT, SKU_A, WH)], (1, [1]))
        time.sleep(1.05)
        self.assert_code(self.update(sku(SKU_A, (WH, 4))), 200, 0)
        self.assertEqual(
            self.control("/_sim/stats")["peak_per_second"], {SHOP: 3})

    # ----- tokens ----------------------------------------------------------

    def test_refresh_rotates(self):
        refresh_expiry = int(time.time()) + 86400 * 30
        self.control("/_sim/shops", {
            "app_key": APP_KEY, "shop_cipher": SHOP, "access_ttl": 3600,
            "region": "MY",
            "access_token": TOKEN, "refresh_token": REFRESH,
            "refresh_expires_at": refresh_expiry})
        before = int(time.time())
        status, body = self.refresh(REFRESH)
        self.assert_code((status, body), 200, 0)
        self.assertEqual(body["message"], "success")
        data = body["data"]
        self.assertEqual(sorted(data), sorted([
            "access_token", "access_token_expire_in", "refresh_token",
            "refresh_token_expire_in", "open_id", "seller_name",
            "seller_base_region", "user_type"]))
        self.assertTrue(before + 3600 <= data["access_token_expire_in"]
                        <= int(time.time()) + 3600)
        self.assertEqual(data["refresh_token_expire_in"], refresh_expiry)
        self.assertEqual((data["user_type"], data["seller_base_region"]),
                         (0, "MY"))
        new_token, new_refresh = data["access_token"], data["refresh_token"]
        self.assertNotIn(new_refresh, (REFRESH, new_token))
        self.assert_code(self.update(sku(SKU_A, (WH, 1)), token=new_token),
                         200, 0)
        self.assert_code(self.update(sku(SKU_A, (WH, 2))), 200, 0)  # grace

        self.assert_code(self.refresh(REFRESH), 401, 105001)
        self.assert_code(self.refresh("TTP_never_issued"), 401, 105001)
        self.assert_code(self.refresh(new_refresh, app_secret="wrong"), 401,
                         36009004, "app_secret")
        self.assert_code(self.refresh(new_refresh, grant_type="x"), 400,
                         36009004)
        status, body = self.refresh(new_refresh)
        self.assert_code((status, body), 200, 0)
        self.assertEqual(body["data"]["refresh_token_expire_in"],
                         refresh_expiry)
        # Only the token just replaced keeps its grace period.
        self.assert_code(self.update(sku(SKU_A, (WH, 3))), 401, 101000)
        self.assert_code(self.update(sku(SKU_A, (WH, 4)), token=new_token),
                         200, 0)
        shop = self.control(f"/_sim/shops?shop_cipher={SHOP}")
        self.assertEqual(shop["refresh_token"], body["data"]["refresh_token"])
        self.assertEqual(shop["access_token"], body["data"]["access_token"])
        stats = self.control("/_sim/stats")
        self.assertEqual(stats["refreshes"], 2)
        self.assertEqual(stats["spent_refresh_token_reuse"], 1)
        entry = self.control("/_sim/log")["entries"][0]
        self.assertEqual(entry["path"], REFRESH_PATH)
        self.assertEqual(entry["query"]["app_secret"], "REDACTED")
        self.assertEqual(entry["shop_cipher"], SHOP)

    def test_refresh_without_rotation_and_expiry(self):
        self.control("/_sim/shops", {
            "app_key": APP_KEY, "shop_cipher": SHOP, "rotate_refresh": False,
            "access_token": TOKEN, "refresh_token": REFRESH})
        for _ in range(2):
            status, body = self.refresh(REFRESH)
            self.assert_code((status, body), 200, 0)
            self.assertEqual(body["data"]["refresh_token"], REFRESH)
        self.assertEqual(
            self.control("/_sim/stats")["spent_refresh_token_reuse"], 0)
        self.control("/_sim/shops", {
            "app_key": APP_KEY, "shop_cipher": SHOP,
            "access_token": TOKEN, "refresh_token": REFRESH,
            "refresh_expires_at": time.time() - 1})
        self.assert_code(self.refresh(REFRESH), 401, 105001, "expired")

    # ----- Tokopedia shops -------------------------------------------------

    def test_tokopedia_shop(self):
        self.control("/_sim/shops", {
            "app_key": APP_KEY, "shop_cipher": TOKO, "platform": "TOKOPEDIA",
            "region": "MY", "access_token": TOKO_TOKEN,
            "refresh_token": TOKO_REFRESH}, expect=400)
        self.control("/_sim/shops", {
            "app_key": APP_KEY, "shop_cipher": TOKO, "platform": "TOKOPEDIA",
            "access_token": TOKO_TOKEN, "refresh_token": TOKO_REFRESH})
        self.control("/_sim/products", {
            "shop_cipher": TOKO, "product_id": "5001",
            "listing_platforms": ["TOKOPEDIA", "TIKTOK_SHOP"],
            "skus": {"51": ["W5"], "52": ["W5"], "53": ["W5"]},
            "fail_skus": {"52": {"code": 12052393, "message": LOCKED,
                                 "listing_platform": "TIKTOK_SHOP"}}})
        self.control("/_sim/products", {
            "shop_cipher": TOKO, "product_id": "5002",
            "listing_platforms": ["TIKTOK_SHOP"], "skus": {"54": ["W5"]}})
        toko = {"shop_cipher": TOKO, "token": TOKO_TOKEN}
        status, body = self.update(
            sku("51", ("W5", 3)), sku("52", ("W5", 3)), sku("53", ("W9", 3)),
            path=tiktok_sim.update_path("5001"), **toko)
        self.assert_code((status, body), 200, 0)
        errors = body["data"]["errors"]
        self.assertEqual([(e["detail"]["sku_id"],
                           e["detail"]["listing_platform"], e["code"])
                          for e in errors],
                         [("52", "TIKTOK_SHOP", 12052393),
                          ("53", "TOKOPEDIA", 12052990)])
        stock = self.stock(TOKO)
        self.assertEqual(stock[("5001", "51", "W5")], (3, [3]))
        self.assertEqual(stock[("5001", "52", "W5")], (0, []))
        self.assert_code(self.update(sku("54", ("W5", 1)),
                                     path=tiktok_sim.update_path("5002"),
                                     **toko), 400, 12052048, "TOKOPEDIA")
        # The shop's own token only: the TikTok shop's is refused.
        self.assert_code(self.update(sku("51", ("W5", 1)),
                                     path=tiktok_sim.update_path("5001"),
                                     shop_cipher=TOKO), 401, 101000)
        # A product of the Tokopedia shop is not in the TikTok shop.
        self.assert_code(self.update(sku("51", ("W5", 1)),
                                     path=tiktok_sim.update_path("5001")),
                         400, 12052048)
        status, body = self.refresh(TOKO_REFRESH)
        self.assertEqual(body["data"]["seller_base_region"], "ID")

    # ----- Inventory Search ------------------------------------------------

    def test_inventory_search(self):
        self.update(sku(SKU_B, (WH1, 4), (WH2, 6)), sku(SKU_A, (WH, 2)))
        status, _, body = self.signed(SEARCH, {"product_ids": [PRODUCT,
                                                               "404"]})
        self.assert_code((status, body), 200, 0)
        [product] = body["data"]["inventory"]
        self.assertEqual(product["product_id"], PRODUCT)
        skus = {s["id"]: s for s in product["skus"]}
        self.assertEqual(skus[SKU_B]["total_available_quantity"], 10)
        self.assertEqual(skus[SKU_B]["warehouse_inventory"], [
            {"warehouse_id": WH1, "available_quantity": 4,
             "committed_quantity": 0},
            {"warehouse_id": WH2, "available_quantity": 6,
             "committed_quantity": 0}])
        self.assertEqual(skus[SKU_A]["seller_sku"], "RED-S")
        status, _, body = self.signed(SEARCH, {"product_ids": [PRODUCT],
                                               "sku_ids": [SKU_A]})
        self.assertEqual([s["id"] for s in
                          body["data"]["inventory"][0]["skus"]], [SKU_A])
        for doc, code in (({}, 12019008), ({"sku_ids": ["1"] * 601},
                                           12019015),
                          ({"product_ids": ["1"] * 101}, 12019120),
                          ({"product_ids": [1]}, 12019008)):
            status, _, body = self.signed(SEARCH, doc)
            self.assert_code((status, body), 400, code)

    # ----- faults ----------------------------------------------------------

    def test_reply_faults_are_not_applied(self):
        cases = {
            "http_500": (500, "text/html"),
            "http_503": (503, "text/html"),
            "malformed_json": (200, "application/json"),
            "throttle": (429, "application/json"),
            "error_server_busy": (200, "application/json"),
            "empty_body": (200, "application/json"),
        }
        body = compact({"skus": [sku(SKU_A, (WH, 9))]})
        for kind, (status, content_type) in cases.items():
            with self.subTest(kind):
                self.faults({"kind": kind, "count": 1, "retry_after": 3})
                ts = str(int(time.time()))
                query = {"app_key": APP_KEY, "timestamp": ts,
                         "shop_cipher": SHOP}
                query["sign"] = tiktok_sim.compute_sign(APP_SECRET, UPDATE,
                                                        query, body)
                got, headers, raw = self.request(
                    "POST", f"{UPDATE}?{urlencode(query)}", body,
                    {"Content-Type": "application/json",
                     "x-tts-access-token": TOKEN})
                self.assertEqual(got, status)
                self.assertEqual(headers["Content-Type"], content_type)
                self.assertEqual(int(headers["Content-Length"]), len(raw))
                if kind == "malformed_json":
                    self.assertRaises(ValueError, json.loads, raw)
                elif kind == "empty_body":
                    self.assertEqual(raw, b"")
                elif kind == "throttle":
                    self.assertEqual(headers["Retry-After"], "3")
                    self.assertEqual(json.loads(raw)["code"], 36009002)
                elif kind == "error_server_busy":
                    self.assertEqual(json.loads(raw)["code"], 36009003)
                self.assertEqual(self.stock()[(PRODUCT, SKU_A, WH)], (0, []))
        stats = self.control("/_sim/stats")
        self.assertEqual(stats["faults"]["http_503"], 1)
        self.assertEqual(stats["throttled"], 0)
        self.assert_code(self.update(sku(SKU_A, (WH, 1))), 200, 0)

    def raw_exchange(self, target, body, headers, timeout=5):
        """POST on a raw socket; return the bytes read (b"" on a graceful
        close) or raise ConnectionResetError / socket.timeout."""
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = (f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        with socket.create_connection(("127.0.0.1", self.port),
                                      timeout=timeout) as sock:
            sock.sendall(request)
            return sock.recv(65536)

    def signed_raw(self, quantity, timeout=5):
        body = compact({"skus": [sku(SKU_A, (WH, quantity))]})
        query = {"app_key": APP_KEY, "timestamp": str(int(time.time())),
                 "shop_cipher": SHOP}
        query["sign"] = tiktok_sim.compute_sign(APP_SECRET, UPDATE, query,
                                                body)
        return self.raw_exchange(f"{UPDATE}?{urlencode(query)}", body,
                                 {"Content-Type": "application/json",
                                  "x-tts-access-token": TOKEN}, timeout)

    def test_connection_faults(self):
        self.faults({"kind": "reset", "count": 1})
        with self.assertRaises(ConnectionResetError):
            self.signed_raw(9)
        self.assertEqual(self.last_log()["status"], "reset")

        self.faults({"kind": "apply_then_reset", "count": 1})
        with self.assertRaises(ConnectionResetError):
            self.signed_raw(8)
        entry = self.last_log()
        self.assertEqual((entry["status"], entry["fault"], entry["code"]),
                         ("reset", "apply_then_reset", 0))
        self.assertEqual(self.stock()[(PRODUCT, SKU_A, WH)], (8, [8]))

        self.faults({"kind": "timeout", "delay_ms": 200})
        started = time.monotonic()
        self.assertEqual(self.signed_raw(7), b"")
        self.assertGreaterEqual(time.monotonic() - started, 0.2)
        self.assertEqual(self.last_log()["status"], "timeout")

        self.faults({"kind": "hang"})
        started = time.monotonic()
        with self.assertRaises(socket.timeout):
            self.signed_raw(6, timeout=0.3)
        self.assertLess(time.monotonic() - started, 2)
        self.assertEqual(self.last_log()["status"], "hang")

        self.faults({"kind": "latency", "delay_ms": 150})
        started = time.monotonic()
        self.assert_code(self.update(sku(SKU_A, (WH, 5))), 200, 0)
        self.assertGreaterEqual(time.monotonic() - started, 0.15)
        self.assertEqual(self.stock()[(PRODUCT, SKU_A, WH)], (5, [8, 5]))
        self.assertEqual(self.control("/_sim/stats")["faults"], {
            "reset": 1, "apply_then_reset": 1, "timeout": 1, "hang": 1,
            "latency": 1})

    def test_fault_matching(self):
        self.control("/_sim/shops", {
            "app_key": APP_KEY, "shop_cipher": TOKO,
            "access_token": TOKO_TOKEN, "refresh_token": TOKO_REFRESH})
        self.faults({"kind": "http_500", "path": SEARCH},
                    {"kind": "http_503", "shop_cipher": TOKO},
                    {"kind": "throttle", "probability": 0},
                    {"kind": "error_server_busy", "count": 2,
                     "path": "/product/202309/products/*"},
                    {"kind": "empty_body", "path": REFRESH_PATH,
                     "shop_cipher": SHOP})
        busy = self.update(sku(SKU_A, (WH, 1)))
        self.assertEqual(busy[1]["code"], 36009003)
        self.assertEqual(self.update(sku(SKU_A, (WH, 1)))[1]["code"],
                         36009003)
        self.assert_code(self.update(sku(SKU_A, (WH, 1))), 200, 0)
        status, _, _ = self.request("POST", "/product/202309/inventory/"
                                    "search?shop_cipher=" + SHOP, b"{}")
        self.assertEqual(status, 500)
        status, _, _ = self.request("POST", f"{UPDATE}?shop_cipher={TOKO}",
                                    b"{}")
        self.assertEqual(status, 503)
        status, _, raw = self.request("GET", f"{REFRESH_PATH}?refresh_token="
                                      f"{REFRESH}")
        self.assertEqual((status, raw), (200, b""))
        rules = self.control("/_sim/faults")["rules"]
        self.assertEqual([r["fired"] for r in rules], [1, 1, 0, 2, 1])
        status, _, _ = self.request("POST", "/_sim/faults",
                                    b'{"rules":[{"kind":"explode"}]}')
        self.assertEqual(status, 400)

    # ----- transport and misc ----------------------------------------------

    def test_unknown_path_and_method(self):
        status, _, raw = self.request("POST", "/product/202309/nope", b"{}")
        self.assertEqual((status, json.loads(raw)["code"]), (404, 36009009))
        status, _, raw = self.request("GET", UPDATE)
        self.assertEqual((status, json.loads(raw)["code"]), (405, 36009010))
        status, _, raw = self.request("POST", REFRESH_PATH)
        self.assertEqual((status, json.loads(raw)["code"]), (405, 36009010))
        self.assertEqual(self.last_log()["status"], 405)

    def test_log_paging(self):
        for level in (5, 7, 3):
            self.update(sku(SKU_A, (WH, level)))
        log = self.control("/_sim/log")
        seqs = [e["seq"] for e in log["entries"]]
        self.assertEqual((len(seqs), log["next"]), (3, seqs[-1]))
        page = self.control(f"/_sim/log?since={seqs[0]}&limit=1")
        self.assertEqual([e["seq"] for e in page["entries"]], [seqs[1]])
        self.assertEqual(self.stock()[(PRODUCT, SKU_A, WH)], (3, [5, 7, 3]))

    def test_keep_alive(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            socks = []
            for level in range(3):
                body = compact({"skus": [sku(SKU_A, (WH, level))]})
                query = {"app_key": APP_KEY, "shop_cipher": SHOP,
                         "timestamp": str(int(time.time()))}
                query["sign"] = tiktok_sim.compute_sign(APP_SECRET, UPDATE,
                                                        query, body)
                conn.request("POST", f"{UPDATE}?{urlencode(query)}", body,
                             {"Content-Type": "application/json",
                              "x-tts-access-token": TOKEN})
                resp = conn.getresponse()
                self.assertEqual(resp.status, 200)
                resp.read()
                self.assertFalse(resp.will_close)
                socks.append(conn.sock)
            self.assertIs(socks[0], socks[2])
        finally:
            conn.close()


@unittest.skipUnless(shutil.which("openssl"), "needs the openssl tool")
class TlsTest(SimTestCase):

    def test_https_and_clean_exit(self):
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                 "-subj", "/CN=localhost", "-keyout", key, "-out", cert],
                check=True, capture_output=True)
            proc, self.port, port_file = start_sim("--tls-cert", cert,
                                                   "--tls-key", key)
            try:
                self.https_context = ssl.create_default_context(cafile=cert)
                self.https_context.check_hostname = False
                self.configure()
                self.assert_code(self.update(sku(SKU_A, (WH, 4))), 200, 0)
                status, body = self.refresh(REFRESH)
                self.assert_code((status, body), 200, 0)
                self.assertEqual(self.stock()[(PRODUCT, SKU_A, WH)],
                                 (4, [4]))
            finally:
                self.assertEqual(stop_sim(proc), 0)
            self.assertFalse(os.path.exists(port_file))


if __name__ == "__main__":
    unittest.main()
