"""Self-test of the Lazada simulator (sim/lazada_sim.py).

Starts the simulator in a subprocess on a free port and drives it over HTTP
with the standard library only.  Run from the repository root:

    python3 -m unittest sim/test_lazada_sim.py
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
import urllib.parse
import urllib.request
from xml.sax.saxutils import escape

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import lazada_sim  # noqa: E402  (needs the path above)

SIM = os.path.join(HERE, "lazada_sim.py")
APP_KEY = "123456"
APP_SECRET = "test-app-secret"
SELLER = "1001"
MW_SELLER = "2002"
TOKEN = "50000accesstokenforseller1001"
REFRESH = "50001refreshtokenforseller1001"
MW_TOKEN = "50000accesstokenforseller2002"
MW_REFRESH = "50001refreshtokenforseller2002"
ITEM = 5000
MW_ITEM = 6000
ODD_SKU = "B&B 2+é<x>"          # needs XML escaping and URL encoding
UPDATE = lazada_sim.PATH_UPDATE
ITEM_GET = lazada_sim.PATH_ITEM_GET
REFRESH_PATH = lazada_sim.PATH_REFRESH
CREATE_PATH = lazada_sim.PATH_CREATE
SIGN_MESSAGE = "The request signature does not conform to lazada standards"


def start_sim(*extra):
    """Start a simulator; return (process, port, port_file)."""
    tmpdir = tempfile.mkdtemp(prefix="lazada_sim_test_")
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


def stop_sim(proc, port_file):
    """SIGTERM the simulator; return its exit status once the temporary
    directory of its port file is removed."""
    proc.send_signal(signal.SIGTERM)
    status = proc.wait(timeout=10)
    shutil.rmtree(os.path.dirname(port_file), ignore_errors=True)
    return status


def now_ms():
    return str(int(time.time() * 1000))


def sku_xml(sku_id=None, quantity=None, item_id=None, seller_sku=None,
            warehouses=None):
    parts = ["<Sku>"]
    if item_id is not None:
        parts.append(f"<ItemId>{item_id}</ItemId>")
    if sku_id is not None:
        parts.append(f"<SkuId>{sku_id}</SkuId>")
    if seller_sku is not None:
        parts.append(f"<SellerSku>{escape(seller_sku)}</SellerSku>")
    if quantity is not None:
        parts.append(f"<SellableQuantity>{quantity}</SellableQuantity>")
    if warehouses is not None:
        parts.append("<MultiWarehouseInventories>")
        for code, level in warehouses:
            parts.append("<MultiWarehouseInventory><WarehouseCode>"
                         f"{code}</WarehouseCode><SellableQuantity>{level}"
                         "</SellableQuantity></MultiWarehouseInventory>")
        parts.append("</MultiWarehouseInventories>")
    parts.append("</Sku>")
    return "".join(parts)


def payload(*skus):
    return ("<Request><Product><Skus>" + "".join(skus)
            + "</Skus></Product></Request>")


class SigningTest(unittest.TestCase):
    """The vectors of marketplace-apis.md section 3.2."""

    BASE = {"app_key": "123456", "access_token": "test",
            "timestamp": "1517820392000", "sign_method": "sha256"}

    def test_official_vector(self):
        params = dict(self.BASE, order_id="1234")
        message = lazada_sim.sign_string("/order/get", params)
        self.assertEqual(message, "/order/getaccess_tokentestapp_key123456"
                                  "order_id1234sign_methodsha256"
                                  "timestamp1517820392000")
        self.assertEqual(
            lazada_sim.compute_sign("helloworld", message),
            "4190D32361CFB9581350222F345CB77F3B19F0E31D162316848A2C1FFD5FAB4A")

    def test_comp_vector(self):
        params = dict(self.BASE, payload=payload(sku_xml(
            234, 20, item_id=234234234)))
        self.assertEqual(
            lazada_sim.compute_sign("helloworld", lazada_sim.sign_string(
                UPDATE, params)),
            "0D7B6906784B9492ACFB5A3582775CDB854DF8C977038E452E05A5C233A86368")

    def test_sign_itself_is_not_signed(self):
        params = dict(self.BASE, order_id="1234", sign="X")
        self.assertNotIn("signX", lazada_sim.sign_string("/order/get",
                                                         params))


class SimulatorTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.proc, cls.port, cls.port_file = start_sim()

    @classmethod
    def tearDownClass(cls):
        stop_sim(cls.proc, cls.port_file)

    def setUp(self):
        self.control("/_sim/reset")
        self.control("/_sim/apps", {"app_key": APP_KEY,
                                    "app_secret": APP_SECRET})
        self.put_seller()
        self.put_seller(MW_SELLER, access_token=MW_TOKEN,
                        refresh_token=MW_REFRESH, multi_warehouse=True)
        self.control("/_sim/products", {
            "seller_id": SELLER, "item_id": ITEM,
            "skus": [{"sku_id": 11, "seller_sku": "A-1"},
                     {"sku_id": 12, "seller_sku": ODD_SKU},
                     {"sku_id": 13, "seller_sku": "C-3"}]})
        self.control("/_sim/products", {
            "seller_id": MW_SELLER, "item_id": MW_ITEM,
            "skus": [{"sku_id": 21, "seller_sku": "MW-1",
                      "warehouses": ["WH1", "WH2"]}]})

    # ----- helpers ---------------------------------------------------------

    def put_seller(self, seller_id=SELLER, **fields):
        spec = {"app_key": APP_KEY, "seller_id": seller_id,
                "access_token": TOKEN, "refresh_token": REFRESH}
        spec.update(fields)
        self.control("/_sim/sellers", spec)

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

    def signed(self, api, business=None, token=TOKEN, timestamp=None,
               sign=None, secret=APP_SECRET, **system):
        """All parameters of a request, signed (sign=... overrides)."""
        params = {"app_key": APP_KEY, "sign_method": "sha256",
                  "timestamp": timestamp or now_ms()}
        if token is not None:
            params["access_token"] = token
        params.update(system)
        params.update(business or {})
        params["sign"] = sign or lazada_sim.compute_sign(
            secret, lazada_sim.sign_string(api, params))
        return params

    def send(self, api, params, method="POST", in_body=None, headers=None):
        """Send params (all in the form body for POST, all in the query
        for GET, or the names in `in_body` in the body); return
        (status, parsed JSON)."""
        if in_body is None:
            in_body = set(params) if method == "POST" else set()
        query = {k: v for k, v in params.items() if k not in in_body}
        form = {k: v for k, v in params.items() if k in in_body}
        target = "/rest" + api
        if query:
            target += "?" + urllib.parse.urlencode(query)
        body = urllib.parse.urlencode(form).encode() if form else None
        all_headers = {"Content-Type": "application/x-www-form-urlencoded"}
        all_headers.update(headers or {})
        status, _, raw = self.request(method, target, body, all_headers)
        return status, json.loads(raw)

    def update(self, *skus, token=TOKEN, **kw):
        return self.send(UPDATE, self.signed(
            UPDATE, {"payload": payload(*skus)}, token=token), **kw)

    def stock(self, seller_id=SELLER):
        rows = self.control(f"/_sim/stock?seller_id={seller_id}")["stock"]
        return {(r["sku_id"], r["warehouse_code"]):
                (r["quantity"], r["history"]) for r in rows}

    def last_log(self):
        return self.control("/_sim/log")["entries"][-1]

    def faults(self, *rules):
        self.control("/_sim/faults", {"rules": list(rules)})

    def assert_code(self, result, code, message=None, status=200):
        self.assertEqual(result[0], status, result[1])
        self.assertEqual(result[1]["code"], code, result[1])
        self.assertIn(result[1]["type"], ("ISV", "ISP", "SYSTEM"))
        if message is not None:
            self.assertEqual(result[1]["message"], message)
        self.assertRegex(result[1]["request_id"], r"^[0-9a-f]{8}[0-9]{17}$")

    def assert_ok(self, result):
        self.assertEqual(result[0], 200, result[1])
        self.assertEqual(result[1]["code"], "0", result[1])

    def raw_exchange(self, target, body, timeout=5):
        """POST a form on a raw socket; return the bytes read (b"" on a
        graceful close) or raise ConnectionResetError / socket.timeout."""
        data = urllib.parse.urlencode(body).encode()
        head = (f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(data)}\r\n\r\n").encode()
        with socket.create_connection(("127.0.0.1", self.port),
                                      timeout=timeout) as sock:
            sock.sendall(head + data)
            return sock.recv(65536)

    def update_form(self, *skus):
        return self.signed(UPDATE, {"payload": payload(*skus)})

    # ----- UpdateSellableQuantity ------------------------------------------

    def test_update_applies(self):
        result = self.update(sku_xml(11, 5, item_id=ITEM),
                             sku_xml(seller_sku=ODD_SKU, quantity=0),
                             headers={"X-Correlation-ID": "corr-1"})
        self.assert_ok(result)
        self.assertEqual(result[1]["data"], {})
        stock = self.stock()
        self.assertEqual(stock[(11, "dropshipping")], (5, [5]))
        self.assertEqual(stock[(12, "dropshipping")], (0, [0]))
        self.assertEqual(stock[(13, "dropshipping")], (0, []))
        entry = self.last_log()
        self.assertEqual(entry["headers"]["X-Correlation-ID"], "corr-1")
        self.assertEqual((entry["status"], entry["code"]), (200, "0"))
        self.assertEqual((entry["seller_id"], entry["app_key"]),
                         (SELLER, APP_KEY))
        self.assertEqual(entry["api_path"], UPDATE)
        self.assertEqual(entry["applied"], [
            {"item_id": ITEM, "sku_id": 11, "seller_sku": "A-1",
             "warehouse_code": "dropshipping", "quantity": 5},
            {"item_id": ITEM, "sku_id": 12, "seller_sku": ODD_SKU,
             "warehouse_code": "dropshipping", "quantity": 0}])
        self.assertEqual(entry["form"]["access_token"], "***")
        self.assertNotIn(TOKEN, entry["body"])
        self.assertIn("payload", entry["form"])
        stats = self.control("/_sim/stats")
        self.assertEqual((stats["applied_updates"], stats["applied_levels"]),
                         (1, 2))
        self.assertEqual(stats["by_code"], {"0": 1})

    def test_update_multi_warehouse(self):
        self.assert_ok(self.update(
            sku_xml(21, item_id=MW_ITEM, warehouses=[("WH1", 4), ("WH2", 6)]),
            token=MW_TOKEN))
        stock = self.stock(MW_SELLER)
        self.assertEqual(stock[(21, "WH1")], (4, [4]))
        self.assertEqual(stock[(21, "WH2")], (6, [6]))
        self.assertEqual(self.last_log()["seller_id"], MW_SELLER)

    def test_warehouse_form_must_match_seller(self):
        self.assert_code(self.update(sku_xml(21, 3), token=MW_TOKEN), "5")
        self.assert_code(self.update(sku_xml(11, warehouses=[
            ("dropshipping", 3)])), "5")
        self.assertEqual(self.stock()[(11, "dropshipping")], (0, []))

    def test_lower_case_sign_rejected(self):
        params = self.update_form(sku_xml(11, 1))
        params["sign"] = params["sign"].lower()
        self.assert_code(self.send(UPDATE, params), "IncompleteSignature",
                         SIGN_MESSAGE)
        self.assertEqual(self.stock()[(11, "dropshipping")], (0, []))
        self.assertEqual(self.control("/_sim/stats")["rejected_sign"], 1)

    def test_changed_payload_byte_rejected(self):
        params = self.update_form(sku_xml(11, 17))
        params["payload"] = params["payload"].replace("17", "18")
        self.assert_code(self.send(UPDATE, params), "IncompleteSignature")
        self.assertEqual(self.stock()[(11, "dropshipping")], (0, []))

    def test_sign_over_other_path_rejected(self):
        params = self.signed(ITEM_GET, {"payload": payload(sku_xml(11, 1))})
        self.assert_code(self.send(UPDATE, params), "IncompleteSignature")

    def test_params_split_between_query_and_body(self):
        params = self.update_form(sku_xml(seller_sku=ODD_SKU, quantity=8))
        self.assert_ok(self.send(UPDATE, params, in_body={"payload"}))
        self.assertEqual(self.stock()[(12, "dropshipping")], (8, [8]))
        entry = self.last_log()
        self.assertEqual(entry["query"]["access_token"], "***")
        self.assertEqual(set(entry["form"]), {"payload"})
        # Everything in the query, as the SDKs send a GET.
        params = self.update_form(sku_xml(seller_sku=ODD_SKU, quantity=9))
        self.assert_ok(self.send(UPDATE, params, method="GET"))
        self.assertEqual(self.stock()[(12, "dropshipping")], (9, [8, 9]))

    def test_gateway_checks(self):
        """One failure each, in the order of the checks."""
        body = {"payload": payload(sku_xml(11, 1))}
        stale = str(int(time.time() * 1000) - 7201 * 1000)
        cases = [
            ("empty value", dict(business=dict(body, extra="")), None,
             "InvalidParameter"),
            ("no app_key", {}, "app_key", "MissingParameter"),
            ("unknown app", dict(app_key="999"), None, "InvalidAppKey"),
            ("md5", dict(sign_method="md5"), None, "InvalidSignatureMethod"),
            ("seconds", dict(timestamp=str(int(time.time()))), None,
             "InvalidTimestamp"),
            ("stale", dict(timestamp=stale), None, "InvalidTimestamp"),
            ("no sign", {}, "sign", "MissingParameter"),
            ("no token", dict(token=None), None, "MISSING_PARAMETER"),
            ("bad token", dict(token="nope"), None, "IllegalAccessToken"),
        ]
        for name, args, drop, code in cases:
            with self.subTest(name):
                args.setdefault("business", body)
                params = self.signed(UPDATE, **args)
                params.pop(drop, None)
                self.assert_code(self.send(UPDATE, params), code)
        self.assertEqual(self.stock()[(11, "dropshipping")], (0, []))
        stats = self.control("/_sim/stats")
        self.assertEqual((stats["rejected_sign"], stats["rejected_auth"]),
                         (2, 1))

    def test_iso_timestamp_accepted(self):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        params = self.signed(UPDATE, {"payload": payload(sku_xml(11, 2))},
                             timestamp=stamp)
        self.assert_ok(self.send(UPDATE, params))

    def test_duplicate_param_rejected(self):
        params = self.update_form(sku_xml(11, 1))
        query = urllib.parse.urlencode({"app_key": APP_KEY})
        status, _, raw = self.request(
            "POST", f"/rest{UPDATE}?{query}",
            urllib.parse.urlencode(params).encode(),
            {"Content-Type": "application/x-www-form-urlencoded"})
        self.assert_code((status, json.loads(raw)), "InvalidParameter")

    def test_raw_body_types_rejected(self):
        params = self.update_form(sku_xml(11, 1))
        target = "/rest" + UPDATE + "?" + urllib.parse.urlencode(params)
        status, _, raw = self.request("POST", target, b"{}",
                                      {"Content-Type": "application/json"})
        self.assert_code((status, json.loads(raw)), "InvalidParameter")

    def test_too_many_skus(self):
        skus = [sku_xml(11, n) for n in range(51)]
        self.assert_code(self.update(*skus), "204")
        self.assertEqual(self.stock()[(11, "dropshipping")], (0, []))

    def test_fifty_skus_of_several_items(self):
        self.control("/_sim/products", {
            "seller_id": SELLER, "item_id": ITEM + 1,
            "skus": [{"sku_id": 100 + n, "seller_sku": f"X-{n}"}
                     for n in range(49)]})
        skus = [sku_xml(100 + n, n) for n in range(49)] + [sku_xml(11, 7)]
        self.assert_ok(self.update(*skus))
        self.assertEqual(self.control("/_sim/stats")["applied_levels"], 50)

    def test_partial_failure(self):
        self.control("/_sim/products", {
            "seller_id": SELLER, "item_id": ITEM,
            "skus": [{"sku_id": 11, "seller_sku": "A-1"},
                     {"sku_id": 12, "seller_sku": ODD_SKU},
                     {"sku_id": 13, "seller_sku": "C-3"}],
            "fail_skus": {"12": "Campaign stock lock"}})
        result = self.update(sku_xml(11, 7), sku_xml(12, 7),
                             sku_xml(seller_sku="nope", quantity=7),
                             sku_xml(99, 7, item_id=ITEM))
        self.assert_code(result, "501", "E501: Update product failed")
        self.assertEqual(result[1]["type"], "ISP")
        detail = result[1]["detail"]
        self.assertEqual(detail[0], {
            "field": "SkuId", "message": "Campaign stock lock",
            "seller_sku": ODD_SKU, "sku_id": "12", "item_id": str(ITEM)})
        self.assertEqual((detail[1]["field"], detail[1]["seller_sku"]),
                         ("SellerSku", "nope"))
        self.assertEqual((detail[2]["field"], detail[2]["sku_id"]),
                         ("SkuId", "99"))
        stock = self.stock()
        self.assertEqual(stock[(11, "dropshipping")], (7, [7]))
        self.assertEqual(stock[(12, "dropshipping")], (0, []))
        entry = self.last_log()
        self.assertEqual((len(entry["applied"]), len(entry["failed"])),
                         (1, 3))
        # Every SKU failing: still 501, nothing applied.
        self.assert_code(self.update(sku_xml(12, 1)), "501")
        self.assertEqual(self.control("/_sim/stats")["applied_updates"], 1)

    def test_payload_defences(self):
        bomb = ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]>'
                "<Request><Product><Skus><Sku><SkuId>11</SkuId>"
                "<SellableQuantity>1</SellableQuantity></Sku></Skus>"
                "</Product></Request>")
        cases = {
            "doctype": bomb,
            "not xml": "<Request><Product>",
            "negative": payload(sku_xml(11, -1)),
            "leading zero": payload(sku_xml(11, "01")),
            "spaces": payload(sku_xml(11, " 1")),
            "unknown element": payload("<Sku><SkuId>11</SkuId><Quantity>1"
                                       "</Quantity></Sku>"),
            "no id": payload("<Sku><SellableQuantity>1</SellableQuantity>"
                             "</Sku>"),
            "no skus": payload(),
            "twice": payload(sku_xml(11, 1), sku_xml(seller_sku="A-1",
                                                     quantity=2)),
        }
        for name, text in cases.items():
            with self.subTest(name):
                self.assert_code(self.send(UPDATE, self.signed(
                    UPDATE, {"payload": text})), "5")
        self.assertEqual(self.stock()[(11, "dropshipping")], (0, []))
        self.assert_code(self.send(UPDATE, self.signed(UPDATE)),
                         "MISSING_PARAMETER")

    def test_declaration_and_whitespace_allowed(self):
        text = ('<?xml version="1.0" encoding="UTF-8"?>\n<Request>\n '
                "<Product>\n  <Skus>\n   " + sku_xml(11, 3) +
                "\n  </Skus>\n </Product>\n</Request>\n")
        self.assert_ok(self.send(UPDATE, self.signed(UPDATE,
                                                     {"payload": text})))

    def test_item_mismatch_and_unknown_warehouse_fail(self):
        result = self.update(sku_xml(11, 1, item_id=ITEM + 7))
        self.assert_code(result, "501")
        self.assertEqual(result[1]["detail"][0]["field"], "ItemId")
        result = self.update(sku_xml(21, warehouses=[("WH9", 1)]),
                             token=MW_TOKEN)
        self.assertEqual(result[1]["detail"][0]["field"], "WarehouseCode")

    # ----- tokens ----------------------------------------------------------

    def refresh(self, refresh_token):
        return self.send(REFRESH_PATH, self.signed(
            REFRESH_PATH, {"refresh_token": refresh_token}, token=None))

    def test_expired_token(self):
        self.control("/_sim/expire_token", {"seller_id": SELLER})
        self.assert_code(self.update(sku_xml(11, 1)), "IllegalAccessToken",
                         "The specified access token is invalid or expired")
        self.assertEqual(self.last_log()["seller_id"], SELLER)
        self.assertEqual(self.control("/_sim/stats")["rejected_auth"], 1)

    def test_token_of_another_app_refused(self):
        self.control("/_sim/apps", {"app_key": "777", "app_secret": "s2"})
        params = self.signed(UPDATE, {"payload": payload(sku_xml(11, 1))},
                             secret="s2", app_key="777")
        self.assert_code(self.send(UPDATE, params), "IllegalAccessToken")

    def test_refresh_rotation(self):
        ends = time.time() + 100
        self.put_seller(refresh_expires_at=ends, access_ttl=3600)
        status, body = self.refresh(REFRESH)
        self.assertEqual((status, body["code"]), (200, "0"))
        self.assertEqual(body["expires_in"], 3600)
        self.assertLessEqual(body["refresh_expires_in"], 100)
        self.assertGreaterEqual(body["refresh_expires_in"], 98)
        self.assertEqual(body["country"], "sg")
        self.assertEqual(body["account_platform"], "seller_center")
        self.assertEqual(body["country_user_info_list"][0]["seller_id"],
                         SELLER)
        self.assertRegex(body["request_id"], r"^[0-9a-f]{8}[0-9]{17}$")
        new_token, new_refresh = body["access_token"], body["refresh_token"]
        self.assertNotEqual(new_token, TOKEN)
        self.assertNotEqual(new_refresh, REFRESH)
        self.assert_ok(self.update(sku_xml(11, 1), token=new_token))
        self.assert_ok(self.update(sku_xml(11, 2)))          # 300 s grace

        self.assert_code(self.refresh(REFRESH), "IllegalRefreshToken",
                         "The specified refresh token is invalid or expired")
        self.assert_code(self.refresh("never-issued"), "IllegalRefreshToken")
        status, second = self.refresh(new_refresh)
        self.assertEqual(second["code"], "0")
        self.assertLessEqual(second["refresh_expires_in"],
                             body["refresh_expires_in"])
        seller = self.control(f"/_sim/sellers?seller_id={SELLER}")
        self.assertEqual(seller["refresh_expires_at"], ends)
        self.assertEqual(seller["refresh_token"], second["refresh_token"])
        # Only the token just replaced keeps its grace period.
        self.assert_code(self.update(sku_xml(11, 3)), "IllegalAccessToken")
        self.assert_ok(self.update(sku_xml(11, 4), token=new_token))
        stats = self.control("/_sim/stats")
        self.assertEqual(stats["refreshes"], 2)
        self.assertEqual(stats["spent_refresh_token_reuse"], 1)
        self.assertEqual(self.last_log()["seller_id"], SELLER)

    def test_refresh_after_the_end_refused(self):
        self.put_seller(refresh_expires_at=time.time() + 0.5)
        status, body = self.refresh(REFRESH)
        self.assertEqual(body["code"], "0")
        self.assertEqual(body["refresh_expires_in"], 0)
        time.sleep(0.6)
        self.assert_code(self.refresh(body["refresh_token"]),
                         "IllegalRefreshToken")
        self.assert_ok(self.update(sku_xml(11, 1),
                                   token=body["access_token"]))

    def test_refresh_is_signed(self):
        params = self.signed(REFRESH_PATH, {"refresh_token": REFRESH},
                             token=None)
        params["refresh_token"] = REFRESH + "x"
        self.assert_code(self.send(REFRESH_PATH, params),
                         "IncompleteSignature")

    def test_create_token(self):
        self.control("/_sim/auth_codes", {"seller_id": SELLER,
                                          "code": "0_abc"})
        status, body = self.send(CREATE_PATH, self.signed(
            CREATE_PATH, {"code": "0_abc"}, token=None))
        self.assertEqual(body["code"], "0")
        self.assertEqual(body["country_user_info"][0]["seller_id"], SELLER)
        self.assert_ok(self.update(sku_xml(11, 1),
                                   token=body["access_token"]))
        self.assert_code(self.send(CREATE_PATH, self.signed(
            CREATE_PATH, {"code": "0_abc"}, token=None)), "InvalidCode")

    # ----- rate limit ------------------------------------------------------

    def test_rate_limit_and_peak(self):
        self.put_seller(rate_limit_per_sec=2, rate_limit_burst=2)
        self.assert_ok(self.update(sku_xml(11, 1)))
        self.assert_ok(self.update(sku_xml(11, 2)))
        self.assert_code(self.update(sku_xml(11, 3)), "ApiCallLimit",
                         "Api access frequency exceeds the limit. this ban "
                         "will last 1 seconds")
        stats = self.control("/_sim/stats")
        self.assertEqual(stats["throttled"], 1)
        self.assertEqual(stats["peak_per_second"], {SELLER: 3})
        self.assertEqual(self.stock()[(11, "dropshipping")], (2, [1, 2]))
        self.update(sku_xml(21, warehouses=[("WH1", 1)]), token=MW_TOKEN)
        self.assertEqual(self.control("/_sim/stats")["peak_per_second"],
                         {SELLER: 3, MW_SELLER: 1})

    # ----- faults ----------------------------------------------------------

    def test_reply_faults_are_not_applied(self):
        cases = {
            "http_500": (500, "text/html", None),
            "http_503": (503, "text/html", None),
            "malformed_json": (200, "application/json", None),
            "throttle": (200, "application/json", "ApiCallLimit"),
            "e901": (200, "application/json", "901"),
            "error_server_busy": (200, "application/json", "6"),
            "empty_body": (200, "application/json", None),
        }
        for done, (kind, (status, ctype, code)) in enumerate(cases.items()):
            with self.subTest(kind):
                self.faults({"kind": kind, "count": 1, "retry_after": 3})
                params = self.update_form(sku_xml(11, 9))
                got, headers, raw = self.request(
                    "POST", "/rest" + UPDATE,
                    urllib.parse.urlencode(params).encode(),
                    {"Content-Type": "application/x-www-form-urlencoded"})
                self.assertEqual(got, status)
                self.assertTrue(headers["Content-Type"].startswith(ctype))
                self.assertEqual(int(headers["Content-Length"]), len(raw))
                if kind == "malformed_json":
                    self.assertTrue(raw)
                    self.assertRaises(ValueError, json.loads, raw)
                elif kind == "empty_body":
                    self.assertEqual(raw, b"")
                elif code is not None:
                    self.assertEqual(json.loads(raw)["code"], code)
                if kind == "throttle":
                    self.assertEqual(headers["Retry-After"], "3")
                    self.assertIn("3 seconds", json.loads(raw)["message"])
                if kind == "e901":
                    self.assertTrue(json.loads(raw)["message"]
                                    .startswith("E901: The request is too "
                                                "frequent"))
                self.assertEqual(self.stock()[(11, "dropshipping")],
                                 (0, [0] * done))
                self.assert_ok(self.update(sku_xml(11, 0)))
        stats = self.control("/_sim/stats")
        self.assertEqual(stats["faults"]["e901"], 1)
        self.assertEqual(stats["throttled"], 0)
        self.assertEqual(stats["by_code"]["901"], 1)

    def test_reset_fault(self):
        self.faults({"kind": "reset", "path": UPDATE})
        with self.assertRaises(ConnectionResetError):
            self.raw_exchange("/rest" + UPDATE,
                              self.update_form(sku_xml(11, 9)))
        self.assertEqual(self.stock()[(11, "dropshipping")], (0, []))
        self.assertEqual(self.last_log()["status"], "reset")

    def test_apply_then_reset_fault(self):
        self.faults({"kind": "apply_then_reset", "count": 1})
        with self.assertRaises(ConnectionResetError):
            self.raw_exchange("/rest" + UPDATE,
                              self.update_form(sku_xml(11, 9)))
        self.assertEqual(self.stock()[(11, "dropshipping")], (9, [9]))
        entry = self.last_log()
        self.assertEqual((entry["status"], entry["fault"]),
                         ("reset", "apply_then_reset"))
        self.assertEqual(entry["applied"][0]["quantity"], 9)

    def test_timeout_fault(self):
        self.faults({"kind": "timeout", "delay_ms": 200})
        started = time.monotonic()
        reply = self.raw_exchange("/rest" + UPDATE,
                                  self.update_form(sku_xml(11, 9)))
        self.assertEqual(reply, b"")
        self.assertGreaterEqual(time.monotonic() - started, 0.2)
        self.assertEqual(self.stock()[(11, "dropshipping")], (0, []))
        self.assertEqual(self.last_log()["status"], "timeout")

    def test_hang_fault(self):
        self.faults({"kind": "hang", "count": 1})
        with self.assertRaises(socket.timeout):
            self.raw_exchange("/rest" + UPDATE,
                              self.update_form(sku_xml(11, 9)), timeout=0.3)
        entry = self.last_log()
        self.assertEqual((entry["status"], entry["fault"]), ("hang", "hang"))
        self.assertEqual(self.stock()[(11, "dropshipping")], (0, []))
        self.assert_ok(self.update(sku_xml(11, 1)))

    def test_latency_fault_applies(self):
        self.faults({"kind": "latency", "delay_ms": 100})
        started = time.monotonic()
        self.assert_ok(self.update(sku_xml(11, 4)))
        self.assertGreaterEqual(time.monotonic() - started, 0.1)
        self.assertEqual(self.stock()[(11, "dropshipping")], (4, [4]))

    def test_fault_matching(self):
        self.faults({"kind": "http_500", "path": ITEM_GET},
                    {"kind": "http_503", "seller_id": MW_SELLER},
                    {"kind": "throttle", "probability": 0},
                    {"kind": "e901", "path": "/rest" + UPDATE, "count": 2})
        self.assert_code(self.update(sku_xml(11, 1)), "901")
        self.assert_code(self.update(sku_xml(11, 1)), "901")
        self.assert_ok(self.update(sku_xml(11, 1)))
        params = self.signed(UPDATE, {"payload": payload(sku_xml(
            21, warehouses=[("WH1", 1)]))}, token=MW_TOKEN)
        status, _, _ = self.request(
            "POST", "/rest" + UPDATE, urllib.parse.urlencode(params).encode(),
            {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(status, 503)
        rules = self.control("/_sim/faults")["rules"]
        self.assertEqual([r["fired"] for r in rules], [0, 1, 0, 2])

    def test_bad_control_input(self):
        for path, body in (("/_sim/faults", {"rules": [{"kind": "boom"}]}),
                           ("/_sim/sellers", {"app_key": "nope"}),
                           ("/_sim/products", {"seller_id": SELLER,
                                               "item_id": 1, "skus": [
                                                   {"sku_id": 11,
                                                    "seller_sku": "Z"}]})):
            with self.subTest(path):
                self.assertEqual(self.request("POST", path, body)[0], 400)

    # ----- other endpoints, log, transport ---------------------------------

    def test_order_items(self):
        orders = "/order/items/get"
        self.control("/_sim/orders", {
            "seller_id": SELLER, "order_id": "31202", "items": [
                {"order_item_id": "98108", "item_id": 5, "sku_id": 6,
                 "status": "pending", "update_time": 1413371535},
                {"order_item_id": "98109", "item_id": 5, "sku_id": 6,
                 "status": "canceled", "update_time": 1413371535}]})
        result = self.send(orders, self.signed(orders, {"order_id": "31202"}),
                           method="GET")
        self.assert_ok(result)
        items = result[1]["data"]
        self.assertEqual([(i["order_item_id"], i["status"]) for i in items],
                         [("98108", "pending"), ("98109", "canceled")])
        self.assertEqual(items[0]["updated_at"], "2014-10-15 19:12:15 +0800")
        self.assertEqual((items[0]["sku_id"], items[0]["product_id"]),
                         ("6", "5"))
        # unknown order, bad sign, bad token; faults apply
        self.assert_code(self.send(orders, self.signed(
            orders, {"order_id": "999"}), method="GET"), "16")
        status, body = self.send(orders, self.signed(
            orders, {"order_id": "31202"}, sign="0" * 64), method="GET")
        self.assertNotEqual(body["code"], "0")
        status, body = self.send(orders, self.signed(
            orders, {"order_id": "31202"}, token="wrong"), method="GET")
        self.assertNotEqual(body["code"], "0")
        self.faults({"kind": "http_503", "count": 1, "path": orders})
        status, _, _ = self.request("GET", "/rest" + orders)
        self.assertEqual(status, 503)

    def test_item_get(self):
        self.update(sku_xml(12, 11))
        self.update(sku_xml(21, warehouses=[("WH2", 5)]), token=MW_TOKEN)
        result = self.send(ITEM_GET, self.signed(
            ITEM_GET, {"item_id": str(ITEM)}), method="GET")
        self.assert_ok(result)
        data = result[1]["data"]
        self.assertEqual(data["item_id"], ITEM)
        skus = {s["SkuId"]: s for s in data["skus"]}
        self.assertEqual(skus[12]["SellerSku"], ODD_SKU)
        self.assertEqual((skus[12]["quantity"], skus[12]["Available"]),
                         (11, 11))
        self.assertEqual(skus[11]["quantity"], 0)
        self.assertEqual(skus[12]["multiWarehouseInventories"][0]
                         ["warehouseCode"], "dropshipping")
        result = self.send(ITEM_GET, self.signed(
            ITEM_GET, {"item_id": str(MW_ITEM)}, token=MW_TOKEN),
            method="GET")
        levels = {level["warehouseCode"]: level["sellableQuantity"]
                  for level in result[1]["data"]["skus"][0]
                  ["multiWarehouseInventories"]}
        self.assertEqual(levels, {"WH1": 0, "WH2": 5})
        self.assert_code(self.send(ITEM_GET, self.signed(
            ITEM_GET, {"item_id": "77"}), method="GET"), "208")

    def test_unknown_path(self):
        status, _, raw = self.request("POST", "/rest/product/nope")
        self.assertEqual(status, 404)
        self.assertEqual(json.loads(raw)["code"], "InvalidApiPath")
        self.assertEqual(self.request("GET", "/order/get")[0], 404)
        self.assertEqual(self.last_log()["status"], 404)

    def test_log_paging_and_history(self):
        for level in (5, 7, 3):
            self.update(sku_xml(11, level))
        self.update(sku_xml(11, 1), token="bad")
        self.assertEqual(self.stock()[(11, "dropshipping")], (3, [5, 7, 3]))
        log = self.control("/_sim/log")
        seqs = [e["seq"] for e in log["entries"]]
        self.assertEqual(len(seqs), 4)
        self.assertEqual(log["next"], seqs[-1])
        page = self.control(f"/_sim/log?since={seqs[0]}&limit=2")
        self.assertEqual([e["seq"] for e in page["entries"]], seqs[1:3])
        last = self.control(f"/_sim/log?since={seqs[-1]}")
        self.assertEqual((last["entries"], last["next"]), ([], seqs[-1]))
        self.assertEqual(log["entries"][-1]["code"], "IllegalAccessToken")
        self.assertIsNone(log["entries"][-1]["seller_id"])

    def test_keep_alive(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            socks = []
            for level in range(3):
                conn.request("POST", "/rest" + UPDATE, urllib.parse.urlencode(
                    self.update_form(sku_xml(11, level))),
                    {"Content-Type": "application/x-www-form-urlencoded"})
                resp = conn.getresponse()
                self.assertEqual(resp.status, 200)
                self.assertEqual(json.loads(resp.read())["code"], "0")
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
                conn.request("POST", "/_sim/apps", json.dumps(
                    {"app_key": APP_KEY, "app_secret": APP_SECRET}))
                self.assertEqual(conn.getresponse().read(), b'{"ok":true}')
                params = {"app_key": APP_KEY, "sign_method": "sha256",
                          "timestamp": now_ms(), "refresh_token": "r"}
                params["sign"] = lazada_sim.compute_sign(
                    APP_SECRET, lazada_sim.sign_string(REFRESH_PATH, params))
                conn.request("POST", "/rest" + REFRESH_PATH,
                             urllib.parse.urlencode(params),
                             {"Content-Type":
                              "application/x-www-form-urlencoded"})
                resp = conn.getresponse()
                self.assertEqual(resp.status, 200)
                self.assertEqual(json.loads(resp.read())["code"],
                                 "IllegalRefreshToken")
                conn.close()
            finally:
                proc.send_signal(signal.SIGTERM)
                status = proc.wait(timeout=10)
            # A clean exit (status 0) deletes the port file.
            self.assertEqual(status, 0)
            self.assertFalse(os.path.exists(port_file))
            shutil.rmtree(os.path.dirname(port_file))


if __name__ == "__main__":
    unittest.main()
