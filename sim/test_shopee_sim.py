"""Self-test of the Shopee simulator (sim/shopee_sim.py).

Starts the simulator in a subprocess on a free port and drives it over HTTP
with the standard library only.  Run from the repository root:

    python3 -m unittest sim/test_shopee_sim.py
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
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import shopee_sim  # noqa: E402  (needs the path above)

SIM = os.path.join(HERE, "shopee_sim.py")
DOC_KEY = "57615053704d6470644f554a78656d50484143644964436a5568777544524579"
PARTNER_ID = 847892
PARTNER_KEY = "test-partner-key"
SHOP_ID = 14701711
WAREHOUSE_SHOP_ID = 14701712
TOKEN = "59777174636562737266615546704c6d"
REFRESH = "72656672657368746f6b656e30303031"
ITEM_ID = 1000
UPDATE = shopee_sim.PATH_UPDATE_STOCK
REFRESH_PATH = shopee_sim.PATH_REFRESH
MODEL_LIST = shopee_sim.PATH_MODEL_LIST


def start_sim(*extra):
    """Start a simulator; return (process, port, port_file)."""
    tmpdir = tempfile.mkdtemp(prefix="shopee_sim_test_")
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


def stock_entry(model_id, stock, location_id=None):
    level = {"stock": stock}
    if location_id is not None:
        level["location_id"] = location_id
    return {"model_id": model_id, "seller_stock": [level]}


class SigningTest(unittest.TestCase):
    """The [COMP] vectors of marketplace-apis.md section 1.2."""

    def test_public_vector(self):
        base = shopee_sim.base_string(847892, "/api/v2/shop/auth_partner",
                                      1655714431)
        self.assertEqual(base, "847892/api/v2/shop/auth_partner1655714431")
        self.assertEqual(
            shopee_sim.compute_sign(DOC_KEY, base),
            "ec7539db4814c81ea28c8ef7824149f4e80c229ffd47e629bd3ebcafbd8f8f03")

    def test_shop_vector(self):
        base = shopee_sim.base_string(847892, UPDATE, 1655714431,
                                      "59777174636562737266615546704c6d",
                                      14701711)
        self.assertEqual(base, "847892/api/v2/product/update_stock1655714431"
                               "59777174636562737266615546704c6d14701711")
        self.assertEqual(
            shopee_sim.compute_sign(DOC_KEY, base),
            "15fb9b380608ff5bdb5ea6fc73f577130deb901a64afe57c6caf47bf1fd9032c")


class SimulatorTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.proc, cls.port, _ = start_sim()

    @classmethod
    def tearDownClass(cls):
        stop_sim(cls.proc)

    def setUp(self):
        self.control("/_sim/reset")
        self.control("/_sim/partners", {"partner_id": PARTNER_ID,
                                        "partner_key": PARTNER_KEY})
        self.put_shop()
        self.put_shop(shop_id=WAREHOUSE_SHOP_ID, locations=["WH1", "WH2"])
        self.control("/_sim/items", {"shop_id": SHOP_ID, "item_id": ITEM_ID,
                                     "models": [1, 2, 3]})
        self.control("/_sim/items", {"shop_id": WAREHOUSE_SHOP_ID,
                                     "item_id": ITEM_ID, "models": [0]})

    # ----- helpers ---------------------------------------------------------

    def put_shop(self, shop_id=SHOP_ID, **fields):
        spec = {"partner_id": PARTNER_ID, "shop_id": shop_id,
                "access_token": TOKEN, "refresh_token": REFRESH,
                "locations": []}
        spec.update(fields)
        self.control("/_sim/shops", spec)

    def request(self, method, target, body=None, headers=None):
        """Return (status, headers, raw body) for any status."""
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body)
            data = data.encode() if isinstance(data, str) else data
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{target}", data=data,
            method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as err:
            with err:
                return err.code, err.headers, err.read()

    def control(self, path, body=None):
        method = "GET" if body is None and path != "/_sim/reset" else "POST"
        status, _, raw = self.request(method, path,
                                      body if method == "POST" else None)
        self.assertEqual(status, 200, raw)
        return json.loads(raw)

    def signed(self, path, shop_id=SHOP_ID, token=TOKEN, timestamp=None,
               sign=None, public=False, extra=""):
        timestamp = int(time.time()) if timestamp is None else timestamp
        if public:
            base = shopee_sim.base_string(PARTNER_ID, path, timestamp)
            query = f"partner_id={PARTNER_ID}&timestamp={timestamp}"
        else:
            base = shopee_sim.base_string(PARTNER_ID, path, timestamp, token,
                                          shop_id)
            query = (f"partner_id={PARTNER_ID}&timestamp={timestamp}"
                     f"&access_token={token}&shop_id={shop_id}")
        if sign is None:
            sign = shopee_sim.compute_sign(PARTNER_KEY, base)
        return f"{path}?{query}&sign={sign}{extra}"

    def update(self, stock_list, item_id=ITEM_ID, headers=None, **sign_args):
        headers = headers or {"Content-Type": "application/json"}
        status, _, raw = self.request(
            "POST", self.signed(UPDATE, **sign_args),
            {"item_id": item_id, "stock_list": stock_list}, headers)
        return status, json.loads(raw)

    def refresh(self, refresh_token, shop_id=SHOP_ID):
        status, _, raw = self.request(
            "POST", self.signed(REFRESH_PATH, public=True),
            {"refresh_token": refresh_token, "partner_id": PARTNER_ID,
             "shop_id": shop_id}, {"Content-Type": "application/json"})
        return status, json.loads(raw)

    def stock(self, shop_id=SHOP_ID):
        rows = self.control(f"/_sim/stock?shop_id={shop_id}")["stock"]
        return {(r["item_id"], r["model_id"], r["location_id"]):
                (r["stock"], r["history"]) for r in rows}

    def faults(self, *rules):
        self.control("/_sim/faults", {"rules": list(rules)})

    def assert_error(self, result, status, error, message=None):
        self.assertEqual(result[0], status, result[1])
        self.assertEqual(result[1]["error"], error)
        if message is not None:
            self.assertEqual(result[1]["message"], message)
        self.assertRegex(result[1]["request_id"], r"^[0-9a-f]{32}$")

    def raw_exchange(self, target, body):
        """Send a POST on a raw socket; return the bytes read (b"" on a
        graceful close) or raise ConnectionResetError."""
        payload = json.dumps(body).encode()
        head = (f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n").encode()
        with socket.create_connection(("127.0.0.1", self.port),
                                      timeout=5) as sock:
            sock.sendall(head + payload)
            return sock.recv(65536)

    # ----- update_stock ----------------------------------------------------

    def test_signed_update_applies(self):
        status, body = self.update(
            [stock_entry(1, 5), stock_entry(2, 0)],
            headers={"Content-Type": "application/json",
                     "X-Correlation-ID": "corr-1"})
        self.assertEqual(status, 200)
        self.assertEqual(body["error"], "")
        self.assertEqual(body["warning"], "")
        self.assertEqual(body["response"]["failure_list"], [])
        self.assertEqual(body["response"]["success_list"],
                         [{"model_id": 1, "location_id": "", "stock": 5},
                          {"model_id": 2, "location_id": "", "stock": 0}])
        stock = self.stock()
        self.assertEqual(stock[(ITEM_ID, 1, "")], (5, [5]))
        self.assertEqual(stock[(ITEM_ID, 2, "")], (0, [0]))
        self.assertEqual(stock[(ITEM_ID, 3, "")], (0, []))
        entry = self.control("/_sim/log")["entries"][-1]
        self.assertEqual(entry["headers"]["X-Correlation-ID"], "corr-1")
        self.assertEqual(entry["status"], 200)
        self.assertEqual(entry["shop_id"], SHOP_ID)
        self.assertEqual(entry["item_id"], ITEM_ID)
        self.assertEqual(len(entry["applied"]), 2)
        self.assertEqual(self.control("/_sim/stats")["applied_updates"], 1)

    def test_auth_rejections(self):
        good = shopee_sim.compute_sign(PARTNER_KEY, shopee_sim.base_string(
            PARTNER_ID, UPDATE, int(time.time()), TOKEN, SHOP_ID))
        cases = [
            ("wrong sign", {"sign": "0" * 64}, 403, "error_sign",
             "Wrong sign."),
            ("upper-case sign", {"sign": good.upper()}, 403, "error_sign",
             "Wrong sign."),
            ("stale timestamp", {"timestamp": int(time.time()) - 301}, 403,
             "error_param", "Invalid timestamp."),
            ("future timestamp", {"timestamp": int(time.time()) + 400}, 403,
             "error_param", "Invalid timestamp."),
            ("bad token", {"token": "f" * 32}, 403, "error_auth",
             "Invalid access_token."),
            ("unknown shop", {"shop_id": 99}, 403, "error_auth",
             "Invalid shop_id."),
        ]
        for name, args, status, error, message in cases:
            with self.subTest(name):
                self.assert_error(self.update([stock_entry(1, 9)], **args),
                                  status, error, message)
        self.assertEqual(self.stock()[(ITEM_ID, 1, "")], (0, []))
        stats = self.control("/_sim/stats")
        self.assertEqual(stats["rejected_sign"], 2)
        self.assertEqual(stats["rejected_auth"], 2)

    def test_sign_over_other_path_rejected(self):
        target = self.signed(MODEL_LIST).replace(MODEL_LIST, UPDATE)
        status, _, raw = self.request(
            "POST", target, {"item_id": ITEM_ID,
                             "stock_list": [stock_entry(1, 1)]},
            {"Content-Type": "application/json"})
        self.assertEqual((status, json.loads(raw)["error"]),
                         (403, "error_sign"))

    def test_unknown_partner(self):
        status, _, raw = self.request(
            "POST", self.signed(UPDATE).replace(str(PARTNER_ID), "1", 1),
            {"item_id": ITEM_ID, "stock_list": [stock_entry(1, 1)]},
            {"Content-Type": "application/json"})
        self.assertEqual(status, 403)
        self.assertEqual(json.loads(raw)["error"], "invalid_partner_id")

    def test_expired_token(self):
        self.control("/_sim/expire_token", {"shop_id": SHOP_ID})
        self.assert_error(self.update([stock_entry(1, 1)]), 403, "error_auth",
                          "Access token expired.")

    def test_param_errors(self):
        code = "product.error_param"
        cases = [
            ("negative stock", [stock_entry(1, -1)], "stock"),
            ("float stock", [stock_entry(1, 1.5)], "stock"),
            ("string model", [stock_entry("1", 1)], "model_id"),
            ("empty list", [], "stock_list"),
            ("51 entries", [stock_entry(1, 1)] * 51, "stock_list"),
            ("empty seller_stock", [{"model_id": 1, "seller_stock": []}],
             "seller_stock"),
            ("duplicate model", [stock_entry(1, 1), stock_entry(1, 2)],
             "stock_list"),
        ]
        for name, stock_list, field in cases:
            with self.subTest(name):
                result = self.update(stock_list)
                self.assert_error(result, 400, code)
                self.assertIn(field, result[1]["message"])
        self.assert_error(self.update([stock_entry(1, 1)], item_id="1000"),
                          400, code)
        self.assert_error(
            self.update([stock_entry(1, 1)],
                        headers={"Content-Type": "text/plain"}), 400, code)
        self.assertEqual(self.stock()[(ITEM_ID, 1, "")], (0, []))

    def test_item_not_found(self):
        self.assert_error(self.update([stock_entry(1, 1)], item_id=5), 200,
                          "product.error_item_not_found", "Item not found.")

    def test_location_rules(self):
        wh = {"shop_id": WAREHOUSE_SHOP_ID}
        self.assert_error(self.update([stock_entry(0, 1)], **wh), 400,
                          "product.error_param",
                          shopee_sim.MULTI_WAREHOUSE_MESSAGE)
        self.assert_error(self.update([stock_entry(0, 1, "WH9")], **wh), 400,
                          "product.error_param")
        self.assert_error(self.update([stock_entry(1, 1, "WH1")]), 400,
                          "product.error_param",
                          "location_id is not allowed for this shop")
        both = {"model_id": 0, "seller_stock": [
            {"location_id": "WH1", "stock": 4},
            {"location_id": "WH2", "stock": 6}]}
        status, body = self.update([both], **wh)
        self.assertEqual((status, body["error"]), (200, ""))
        stock = self.stock(WAREHOUSE_SHOP_ID)
        self.assertEqual(stock[(ITEM_ID, 0, "WH1")], (4, [4]))
        self.assertEqual(stock[(ITEM_ID, 0, "WH2")], (6, [6]))

    def test_partial_and_total_failure(self):
        self.control("/_sim/items", {"shop_id": SHOP_ID, "item_id": ITEM_ID,
                                     "models": [1, 2, 3],
                                     "fail_models": {"2": "in promotion"}})
        status, body = self.update([stock_entry(1, 7), stock_entry(2, 7),
                                    stock_entry(9, 7)])
        self.assertEqual((status, body["error"]), (200, ""))
        self.assertEqual(body["response"]["success_list"],
                         [{"model_id": 1, "location_id": "", "stock": 7}])
        failed = body["response"]["failure_list"]
        self.assertEqual([f["model_id"] for f in failed], [2, 9])
        self.assertEqual(failed[0]["failed_reason"], "in promotion")
        status, body = self.update([stock_entry(2, 8), stock_entry(9, 8)])
        self.assert_error((status, body), 200,
                          "error_busi_update_stock_failed")
        self.assertEqual(len(body["response"]["failure_list"]), 2)
        self.assertEqual(body["response"]["success_list"], [])
        self.assertEqual(self.stock()[(ITEM_ID, 2, "")], (0, []))
        entry = self.control("/_sim/log")["entries"][-1]
        self.assertEqual((entry["applied"], len(entry["failed"])), ([], 2))

    def test_rate_limit(self):
        self.put_shop(rate_limit_per_sec=1)
        self.assertEqual(self.update([stock_entry(1, 1)])[0], 200)
        self.assert_error(self.update([stock_entry(1, 2)]), 429,
                          "error_server", shopee_sim.THROTTLE_MESSAGE)
        self.assertEqual(self.control("/_sim/stats")["throttled"], 1)
        self.assertEqual(self.stock()[(ITEM_ID, 1, "")], (1, [1]))

    # ----- tokens ----------------------------------------------------------

    def test_refresh_rotation(self):
        status, body = self.refresh(REFRESH)
        self.assertEqual((status, body["error"]), (200, ""))
        self.assertEqual(body["expire_in"], 14400)
        self.assertEqual((body["partner_id"], body["shop_id"]),
                         (PARTNER_ID, SHOP_ID))
        new_token, new_refresh = body["access_token"], body["refresh_token"]
        self.assertRegex(new_token, r"^[0-9a-f]{32}$")
        self.assertNotEqual(new_refresh, REFRESH)
        self.assertEqual(self.update([stock_entry(1, 1)], token=new_token)[0],
                         200)
        self.assertEqual(self.update([stock_entry(1, 2)])[0], 200)  # grace

        self.assert_error(self.refresh(REFRESH), 403, "error_auth",
                          "Invalid refresh_token.")
        self.assert_error(self.refresh("never-issued"), 403, "error_auth")
        status, body = self.refresh(new_refresh)
        self.assertEqual(status, 200)
        # Only the token just replaced keeps its grace period.
        self.assert_error(self.update([stock_entry(1, 3)]), 403,
                          "error_auth", "Invalid access_token.")
        self.assertEqual(self.update([stock_entry(1, 4)], token=new_token)[0],
                         200)
        shop = self.control(f"/_sim/shops?shop_id={SHOP_ID}")
        self.assertEqual(shop["refresh_token"], body["refresh_token"])
        stats = self.control("/_sim/stats")
        self.assertEqual(stats["refreshes"], 2)
        self.assertEqual(stats["spent_refresh_token_reuse"], 1)

    def test_refresh_sign_is_public(self):
        status, _, raw = self.request(
            "POST", self.signed(REFRESH_PATH, public=True, sign="0" * 64),
            {"refresh_token": REFRESH, "partner_id": PARTNER_ID,
             "shop_id": SHOP_ID}, {"Content-Type": "application/json"})
        self.assertEqual((status, json.loads(raw)["error"]),
                         (403, "error_sign"))

    def test_old_token_grace_ends(self):
        self.put_shop(access_expires_at=time.time() + 0.5)
        status, body = self.refresh(REFRESH)
        self.assertEqual(status, 200)
        self.assertEqual(self.update([stock_entry(1, 1)])[0], 200)
        time.sleep(0.6)
        self.assert_error(self.update([stock_entry(1, 2)]), 403,
                          "error_auth", "Invalid access_token.")
        self.assertEqual(self.update([stock_entry(1, 3)],
                                     token=body["access_token"])[0], 200)

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
        for done, (kind, (status, content_type)) in enumerate(cases.items()):
            with self.subTest(kind):
                self.faults({"kind": kind, "count": 1, "retry_after": 3})
                got_status, headers, raw = self.request(
                    "POST", self.signed(UPDATE),
                    {"item_id": ITEM_ID, "stock_list": [stock_entry(1, 9)]},
                    {"Content-Type": "application/json"})
                self.assertEqual(got_status, status)
                self.assertEqual(headers["Content-Type"], content_type)
                self.assertEqual(int(headers["Content-Length"]), len(raw))
                if kind == "malformed_json":
                    self.assertTrue(raw)
                    self.assertRaises(ValueError, json.loads, raw)
                elif kind == "empty_body":
                    self.assertEqual(raw, b"")
                elif kind == "throttle":
                    self.assertEqual(headers["Retry-After"], "3")
                    self.assertEqual(json.loads(raw)["error"], "error_server")
                elif kind == "error_server_busy":
                    self.assertEqual(json.loads(raw)["error"],
                                     "error_system_busy")
                self.assertEqual(self.stock()[(ITEM_ID, 1, "")],
                                 (0, [0] * done))
                self.assertEqual(self.update([stock_entry(1, 0)])[0], 200)
        stats = self.control("/_sim/stats")
        self.assertEqual(stats["faults"]["http_503"], 1)
        self.assertEqual(stats["throttled"], 0)

    def test_reset_fault(self):
        self.faults({"kind": "reset", "path": UPDATE})
        with self.assertRaises(ConnectionResetError):
            self.raw_exchange(self.signed(UPDATE),
                              {"item_id": ITEM_ID,
                               "stock_list": [stock_entry(1, 9)]})
        self.assertEqual(self.stock()[(ITEM_ID, 1, "")], (0, []))
        self.assertEqual(self.control("/_sim/log")["entries"][-1]["status"],
                         "reset")

    def test_apply_then_reset_fault(self):
        self.faults({"kind": "apply_then_reset", "count": 1})
        with self.assertRaises(ConnectionResetError):
            self.raw_exchange(self.signed(UPDATE),
                              {"item_id": ITEM_ID,
                               "stock_list": [stock_entry(1, 9)]})
        self.assertEqual(self.stock()[(ITEM_ID, 1, "")], (9, [9]))
        entry = self.control("/_sim/log")["entries"][-1]
        self.assertEqual((entry["status"], entry["fault"]),
                         ("reset", "apply_then_reset"))
        self.assertEqual(entry["applied"][0]["stock"], 9)

    def test_timeout_fault(self):
        self.faults({"kind": "timeout", "delay_ms": 200})
        started = time.monotonic()
        reply = self.raw_exchange(self.signed(UPDATE),
                                  {"item_id": ITEM_ID,
                                   "stock_list": [stock_entry(1, 9)]})
        self.assertEqual(reply, b"")
        self.assertGreaterEqual(time.monotonic() - started, 0.2)
        self.assertEqual(self.stock()[(ITEM_ID, 1, "")], (0, []))
        self.assertEqual(self.control("/_sim/log")["entries"][-1]["status"],
                         "timeout")

    def test_latency_fault_applies(self):
        self.faults({"kind": "latency", "delay_ms": 150})
        started = time.monotonic()
        self.assertEqual(self.update([stock_entry(1, 4)])[0], 200)
        self.assertGreaterEqual(time.monotonic() - started, 0.15)
        self.assertEqual(self.stock()[(ITEM_ID, 1, "")], (4, [4]))

    def test_fault_matching(self):
        self.faults({"kind": "http_500", "path": MODEL_LIST},
                    {"kind": "http_503", "shop_id": WAREHOUSE_SHOP_ID},
                    {"kind": "throttle", "probability": 0},
                    {"kind": "error_server_busy", "count": 2})
        busy = "error_system_busy"
        self.assertEqual(self.update([stock_entry(1, 1)])[1]["error"], busy)
        self.assertEqual(self.update([stock_entry(1, 1)])[1]["error"], busy)
        self.assertEqual(self.update([stock_entry(1, 1)])[1]["error"], "")
        status, _, _ = self.request(
            "POST", self.signed(UPDATE, shop_id=WAREHOUSE_SHOP_ID),
            {"item_id": ITEM_ID, "stock_list": [stock_entry(0, 1, "WH1")]},
            {"Content-Type": "application/json"})
        self.assertEqual(status, 503)
        rules = self.control("/_sim/faults")["rules"]
        self.assertEqual([r["fired"] for r in rules], [0, 1, 0, 2])

    def test_bad_fault_rule(self):
        status, _, _ = self.request("POST", "/_sim/faults",
                                    {"rules": [{"kind": "explode"}]})
        self.assertEqual(status, 400)

    # ----- other endpoints, log, transport ---------------------------------

    def test_model_list(self):
        self.update([stock_entry(2, 11)])
        status, _, raw = self.request(
            "GET", self.signed(MODEL_LIST, extra=f"&item_id={ITEM_ID}"))
        body = json.loads(raw)
        self.assertEqual((status, body["error"]), (200, ""))
        levels = {m["model_id"]: m["stock_info_v2"]["seller_stock"]
                  for m in body["response"]["model"]}
        self.assertEqual(levels[2], [{"location_id": "", "stock": 11}])
        self.assertEqual(levels[1], [{"location_id": "", "stock": 0}])

    def test_order_detail(self):
        detail = "/api/v2/order/get_order_detail"
        self.control("/_sim/orders", {
            "shop_id": SHOP_ID, "order_sn": "240101ABC", "order_status":
            "READY_TO_SHIP", "update_time": 1700000000,
            "lines": [{"item_id": ITEM_ID, "model_id": 2, "qty": 3}]})
        status, _, raw = self.request("GET", self.signed(
            detail, extra="&order_sn_list=240101ABC"
                          "&response_optional_fields=item_list"))
        body = json.loads(raw)
        self.assertEqual((status, body["error"]), (200, ""))
        order = body["response"]["order_list"][0]
        self.assertEqual((order["order_status"], order["update_time"]),
                         ("READY_TO_SHIP", 1700000000))
        self.assertEqual(order["item_list"][0]["model_quantity_purchased"], 3)
        # lines only when asked for; unknown order; signed like a Shop API
        status, _, raw = self.request("GET", self.signed(
            detail, extra="&order_sn_list=240101ABC"))
        self.assertNotIn("item_list",
                         json.loads(raw)["response"]["order_list"][0])
        status, _, raw = self.request("GET", self.signed(
            detail, extra="&order_sn_list=NOPE"))
        self.assertEqual(json.loads(raw)["error"], "error_not_found")
        status, _, raw = self.request("GET", self.signed(
            detail, sign="0" * 64, extra="&order_sn_list=240101ABC"))
        self.assertEqual((status, json.loads(raw)["error"]), (403, "error_sign"))
        status, _, raw = self.request("GET", self.signed(
            detail, token="wrong", extra="&order_sn_list=240101ABC"))
        self.assertEqual((status, json.loads(raw)["error"]), (403, "error_auth"))
        # faults apply to it as to any path
        self.faults({"kind": "http_503", "count": 1, "path": detail})
        status, _, _ = self.request("GET", self.signed(
            detail, extra="&order_sn_list=240101ABC"))
        self.assertEqual(status, 503)

    def test_unknown_path(self):
        status, _, raw = self.request("POST", "/api/v2/product/nope", {})
        self.assertEqual(status, 404)
        self.assertEqual(json.loads(raw)["message"], "Wrong path.")
        self.assertEqual(self.control("/_sim/log")["entries"][-1]["status"],
                         404)

    def test_log_paging_and_history(self):
        for level in (5, 7, 3):
            self.update([stock_entry(1, level)])
        self.update([stock_entry(1, 1)], sign="bad")
        self.assertEqual(self.stock()[(ITEM_ID, 1, "")], (3, [5, 7, 3]))
        log = self.control("/_sim/log")
        seqs = [e["seq"] for e in log["entries"]]
        self.assertEqual(len(seqs), 4)
        self.assertEqual(log["next"], seqs[-1])
        page = self.control(f"/_sim/log?since={seqs[0]}&limit=2")
        self.assertEqual([e["seq"] for e in page["entries"]], seqs[1:3])
        self.assertEqual(page["next"], seqs[2])
        last = self.control(f"/_sim/log?since={seqs[-1]}")
        self.assertEqual((last["entries"], last["next"]), ([], seqs[-1]))
        self.assertEqual(log["entries"][-1]["error"], "error_sign")
        self.assertIn("sign", log["entries"][-1]["query"])

    def test_keep_alive(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            socks = []
            for _ in range(3):
                conn.request("POST", self.signed(UPDATE),
                             json.dumps({"item_id": ITEM_ID,
                                         "stock_list": [stock_entry(1, 1)]}),
                             {"Content-Type": "application/json"})
                resp = conn.getresponse()
                self.assertEqual(resp.status, 200)
                resp.read()
                self.assertFalse(resp.will_close)
                socks.append(conn.sock)
            self.assertIs(socks[0], socks[2])
        finally:
            conn.close()


@unittest.skipUnless(shutil.which("openssl"), "needs the openssl tool")
class TlsTest(unittest.TestCase):

    def test_https_and_clean_exit(self):
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                 "-subj", "/CN=localhost", "-keyout", key, "-out", cert],
                check=True, capture_output=True)
            proc, port, port_file = start_sim("--tls-cert", cert,
                                              "--tls-key", key)
            try:
                context = ssl.create_default_context(cafile=cert)
                context.check_hostname = False
                conn = http.client.HTTPSConnection("127.0.0.1", port,
                                                   context=context, timeout=5)
                conn.request("GET", "/_sim/stats")
                resp = conn.getresponse()
                self.assertEqual(resp.status, 200)
                self.assertEqual(json.loads(resp.read())["requests"], 0)
                conn.close()
            finally:
                self.assertEqual(stop_sim(proc), 0)
            self.assertFalse(os.path.exists(port_file))


if __name__ == "__main__":
    unittest.main()
