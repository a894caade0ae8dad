#!/usr/bin/python3
"""examples/webhook_handler.py: an example web handler for marketplace pushes.

invsync does not listen on a port: marketplaces (Shopee, TikTok Shop,
Tokopedia, Lazada) push order and stock changes to a URL you register with
them, and your web handler passes each push, untouched, to
invsync.handle_webhook() (README, "Webhooks and orders").  This is a small
but production-shaped handler doing exactly that, on Python 3's standard
library (http.server) and psycopg2 (Debian: python3-psycopg2, which
tools/setup installs):

  POST /webhooks/<channel>   channel = shopee | tiktok | tokopedia | lazada

  - reads the exact raw body (Content-Length required, 411 without it; at
    most --max-body bytes, 413 beyond, unread), never parses it;
  - passes every header as a JSON object of name: value, and for Shopee the
    URL the marketplace posted to *as registered* (--public-base-url + the
    request path), since Shopee signs that URL: behind a proxy or a load
    balancer the URL this process sees is not the one Shopee signed;
  - calls handle_webhook() over a small connection pool (--pool-size), as a
    role granted invsync_webhook (the --dsn's user), with
    invsync.correlation_id set to the request's X-Correlation-ID or
    X-Request-ID (when usable) or a new id, and a statement timeout;
  - answers as the README prescribes:
        accepted, duplicate, ignored      200, empty body
        IV030 bad signature               401
        IV031 malformed, IV034 channel    400 (also: a body that is not UTF-8)
        IV032 too large                   413
        IV033 unknown shop                200, empty body, logged as a warning
                                          (--unknown-shop-status 404 to have
                                          the marketplace retry instead)
        anything else (database down,     500: the marketplace retries, and
        timeout, pool exhausted)          a retry of a committed push is a
                                          duplicate
  - logs one JSON line per request on stderr: time, channel, HTTP status,
    outcome, event kind and key, SQLSTATE, correlation id, duration; never
    the body, the headers or a secret.

Run it (the role needs only invsync_webhook, e.g.
CREATE ROLE shop_webhooks LOGIN IN ROLE invsync_webhook):

  python3 examples/webhook_handler.py --port 8080 \\
      --dsn 'host=/var/run/postgresql dbname=shop user=shop_webhooks' \\
      --public-base-url https://hooks.example.com

and register https://hooks.example.com/webhooks/shopee (and .../tiktok,
.../tokopedia, .../lazada) with the marketplaces, TLS terminated by your
proxy.  The DSN may also come from the environment (INVSYNC_WEBHOOK_DSN, or
libpq's PGHOST, PGDATABASE, PGUSER...).  GET /healthz answers 200 without
touching the database.  --help lists every option.
"""

import argparse
import json
import os
import queue
import re
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2
import psycopg2.extensions

ROUTE = re.compile(r'^/webhooks/([a-z0-9_-]{1,32})/?$')
# what invsync.correlation_id accepts: printable ASCII, no space, quote or backslash
CORRELATION = re.compile(r'^[!#-\[\]-~]{1,128}$')
OUTCOMES = {
    'IV030': (401, 'bad_signature'),
    'IV031': (400, 'malformed'),
    'IV032': (413, 'too_large'),
    'IV033': (200, 'unknown_shop'),
    'IV034': (400, 'unknown_channel'),
}
CALL = ("SELECT set_config('invsync.correlation_id', %s, true);"
        "SELECT invsync.handle_webhook(%s, %s::jsonb, %s, %s)")


def log(**fields):
    fields = {'ts': time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime()) + 'Z', **fields}
    sys.stderr.write(json.dumps(fields, separators=(',', ':')) + '\n')
    sys.stderr.flush()


class PoolExhausted(Exception):
    pass


class Pool:
    """At most `size` connections, opened when needed; a connection that
    failed is closed, not returned.  acquire() waits at most `wait` s."""

    def __init__(self, dsn, size, wait, statement_timeout_ms):
        self.dsn = dsn
        self.wait = wait
        self.timeout_ms = statement_timeout_ms
        self.slots = threading.BoundedSemaphore(size)
        self.idle = queue.LifoQueue()

    def _connect(self):
        conn = psycopg2.connect(self.dsn, connect_timeout=3,
                                application_name='invsync-webhook-handler',
                                options='-c statement_timeout=%d' % self.timeout_ms)
        conn.set_client_encoding('UTF8')
        return conn

    def acquire(self):
        """(connection, reused?)"""
        if not self.slots.acquire(timeout=self.wait):
            raise PoolExhausted('no database connection free within %.1f s' % self.wait)
        try:
            conn = self.idle.get_nowait()
            if not conn.closed:
                return conn, True
        except queue.Empty:
            pass
        try:
            return self._connect(), False
        except BaseException:
            self.slots.release()
            raise

    def release(self, conn, broken=False):
        if broken or conn.closed:
            try:
                conn.close()
            except Exception:
                pass
        else:
            self.idle.put(conn)
        self.slots.release()


def call_handle_webhook(pool, channel, headers, body, url, correlation_id):
    """handle_webhook()'s result (a dict).  A pooled connection that turns
    out dead (the server restarted) is replaced once: the call is
    idempotent, a retry of a push that did commit is a duplicate."""
    for attempt in (1, 2):
        conn, reused = pool.acquire()
        try:
            with conn.cursor() as cur:
                cur.execute(CALL, (correlation_id, channel, json.dumps(headers), body, url))
                result = cur.fetchone()[0]
            conn.commit()
            pool.release(conn)
            return result
        except psycopg2.Error as e:
            broken = conn.closed != 0
            if not broken:
                try:
                    conn.rollback()
                except psycopg2.Error:
                    broken = True
            pool.release(conn, broken=broken)
            if broken and e.pgcode is None and reused and attempt == 1:
                continue            # the connection had died while idle
            raise
        except BaseException:
            pool.release(conn, broken=True)
            raise


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'invsync-webhook-handler'
    sys_version = ''
    timeout = 30            # a client that stops sending is dropped

    def log_message(self, fmt, *args):     # one JSON line per request instead
        pass

    def _answer(self, status, text=b''):
        self.send_response(status)
        if text:
            self.send_header('Content-Type', 'text/plain; charset=utf-8')
        self.send_header('Content-Length', str(len(text)))
        if self.close_connection:
            self.send_header('Connection', 'close')
        self.end_headers()
        if text:
            self.wfile.write(text)

    def do_GET(self):
        if self.path == '/healthz':
            self._answer(200, b'ok\n')
        else:
            self._answer(404, b'not found\n')

    def do_POST(self):
        cfg = self.server.cfg
        start = time.monotonic()
        rec = {'method': 'POST', 'path': self.path[:200], 'remote': self.client_address[0]}
        supplied = self.headers.get('X-Correlation-ID') or self.headers.get('X-Request-ID') or ''
        correlation_id = supplied if CORRELATION.match(supplied) else 'wh-' + uuid.uuid4().hex
        rec['correlation_id'] = correlation_id
        status, outcome = 500, 'error'
        try:
            status, outcome = self._handle(cfg, rec, correlation_id)
        finally:
            rec.update(status=status, outcome=outcome,
                       ms=round((time.monotonic() - start) * 1000, 2))
            if outcome == 'unknown_shop':
                rec['level'] = 'warning'
                rec['alert'] = 'a push names a shop invsync does not know: set shops.push_shop_id or ignore it'
            elif status >= 500:
                rec['level'] = 'error'
            log(**rec)

    def _refuse(self, status, outcome, text):
        self.close_connection = True        # the body was not read
        self._answer(status, text)
        return status, outcome

    def _handle(self, cfg, rec, correlation_id):
        m = ROUTE.match(self.path.split('?', 1)[0])
        if not m:
            return self._refuse(404, 'no_route', b'not found\n')
        channel = rec['channel'] = m.group(1)
        if self.headers.get('Transfer-Encoding'):
            return self._refuse(411, 'no_length', b'Content-Length required\n')
        length = self.headers.get('Content-Length')
        if length is None:
            return self._refuse(411, 'no_length', b'Content-Length required\n')
        if not length.isdigit():
            return self._refuse(400, 'malformed', b'bad Content-Length\n')
        length = int(length)
        rec['bytes'] = length
        if length > cfg.max_body:
            # read (and drop) a body up to 4 times the limit, so that the
            # client gets the answer rather than a reset; beyond, hang up
            if length <= 4 * cfg.max_body:
                left = length
                while left > 0:
                    chunk = self.rfile.read(min(left, 65536))
                    if not chunk:
                        break
                    left -= len(chunk)
            return self._refuse(413, 'too_large', b'body too large\n')
        body = self.rfile.read(length)
        if len(body) != length:
            return self._refuse(400, 'malformed', b'short body\n')
        try:
            text = body.decode('utf-8')
            if '\x00' in text:
                raise ValueError('NUL')
        except ValueError:
            self._answer(400, b'body is not UTF-8 text\n')
            return 400, 'malformed'
        headers = {}
        for name, value in self.headers.items():
            headers[name] = headers[name] + ', ' + value if name in headers else value
        url = cfg.public_base_url + self.path if channel == 'shopee' else None
        try:
            result = call_handle_webhook(self.server.pool, channel, headers, text, url,
                                         correlation_id)
        except psycopg2.Error as e:
            rec['sqlstate'] = e.pgcode
            if e.pgcode in OUTCOMES:
                status, outcome = OUTCOMES[e.pgcode]
                if e.pgcode == 'IV033':
                    status = cfg.unknown_shop_status
                    rec['message'] = (e.diag.message_primary or '')[:120]
                self._answer(status, b'' if status == 200 else outcome.encode() + b'\n')
                return status, outcome
            first = (e.diag.message_primary or str(e) or '').strip().splitlines()
            rec['error'] = '%s: %s' % (type(e).__name__, first[0][:200] if first else '')
            self._answer(500, b'try again later\n')
            return 500, 'error'
        except PoolExhausted as e:
            rec['error'] = str(e)
            self._answer(500, b'try again later\n')
            return 500, 'error'
        rec['event'] = result.get('event')
        rec['event_key'] = (result.get('event_key') or '')[:200]
        self._answer(200)
        return 200, result.get('status', 'accepted')


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def main(argv=None):
    p = argparse.ArgumentParser(
        description='Example web handler: POST /webhooks/<channel> -> invsync.handle_webhook().',
        epilog='The answers and why: README.md, "Webhooks and orders".')
    p.add_argument('--host', default='127.0.0.1', help='address to listen on (default 127.0.0.1)')
    p.add_argument('--port', type=int, default=8080, help='port (default 8080; 0: a free one)')
    p.add_argument('--port-file', help='write the port listened on to this file once ready')
    p.add_argument('--dsn', default=os.environ.get('INVSYNC_WEBHOOK_DSN', ''),
                   help='libpq connection string of a role granted invsync_webhook '
                        '(default $INVSYNC_WEBHOOK_DSN, else libpq\'s PG* variables)')
    p.add_argument('--public-base-url', default=os.environ.get('INVSYNC_WEBHOOK_PUBLIC_URL'),
                   required=os.environ.get('INVSYNC_WEBHOOK_PUBLIC_URL') is None,
                   help='scheme and host (and any path prefix a proxy strips) of the URL '
                        'registered with the marketplaces, e.g. https://hooks.example.com: '
                        'Shopee signs the URL it posts to (default $INVSYNC_WEBHOOK_PUBLIC_URL)')
    p.add_argument('--pool-size', type=int, default=4, help='database connections at most (default 4)')
    p.add_argument('--pool-wait', type=float, default=2.0,
                   help='seconds a request waits for a free connection before a 500 (default 2)')
    p.add_argument('--statement-timeout-ms', type=int, default=2000,
                   help='statement_timeout of the call (default 2000; Lazada waits 500 ms, TikTok 3 s)')
    p.add_argument('--max-body', type=int, default=256 * 1024,
                   help='largest body read, in bytes (default 262144, handle_webhook\'s limit)')
    p.add_argument('--unknown-shop-status', type=int, default=200, choices=(200, 404),
                   help='answer to a push for a shop invsync does not know (IV033): 200 (default, '
                        'logged) or 404 to have the marketplace retry')
    cfg = p.parse_args(argv)
    cfg.public_base_url = cfg.public_base_url.rstrip('/')
    if not re.match(r'^https?://[^/?#\s]+(/[^?#\s]*)?$', cfg.public_base_url):
        p.error('--public-base-url: scheme and host, e.g. https://hooks.example.com')

    server = Server((cfg.host, cfg.port), Handler)
    server.cfg = cfg
    server.pool = Pool(cfg.dsn, cfg.pool_size, cfg.pool_wait, cfg.statement_timeout_ms)
    port = server.server_address[1]

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    log(level='info', msg='listening', host=cfg.host, port=port,
        public_base_url=cfg.public_base_url, pool_size=cfg.pool_size)
    if cfg.port_file:
        tmp = cfg.port_file + '.tmp'
        with open(tmp, 'w') as f:
            f.write('%d\n' % port)
        os.rename(tmp, cfg.port_file)
    server.serve_forever()
    server.server_close()
    log(level='info', msg='stopped')


if __name__ == '__main__':
    main()
