#!/usr/bin/env python3
"""sim/http_proxy.py: a plain-http forward proxy for the tests (standard
library only).

A client that knows it talks to a proxy names the whole URL in its request
line (absolute form, RFC 9112 section 3.2.2): "POST http://host:port/path?query
HTTP/1.1".  This proxy writes every request line it receives, as received,
to --log (one a line), forwards an absolute-form request to its origin in
origin form, and relays the answer.  A request line without a scheme and
host is answered 400: the client did not address a proxy.

  http_proxy.py --port 0 --port-file F --log L
"""
import argparse
import http.client
import os
import http.server
import urllib.parse

# hop-by-hop fields, not forwarded (RFC 9110 section 7.6.1)
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization",
              "te", "trailer", "transfer-encoding", "upgrade"}


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def forward(self):
        with open(self.server.log_path, "a", encoding="utf-8") as log:
            log.write(self.requestline + "\n")
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if url.scheme != "http" or not url.netloc:
            self.answer(400, b'{"error":"the request line does not name a URL"}',
                        [("Content-Type", "application/json")])
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        origin = http.client.HTTPConnection(url.netloc, timeout=10)
        try:
            origin.request(self.command, url.path + ("?" + url.query if url.query else ""),
                           body=body, headers=headers)
            response = origin.getresponse()
            self.answer(response.status, response.read(),
                        [(k, v) for k, v in response.getheaders()
                         if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"])
        finally:
            origin.close()

    def answer(self, status, data, headers):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = forward
    do_POST = forward

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer((args.host, args.port), ProxyHandler)
    server.log_path = args.log
    with open(args.port_file + ".tmp", "w", encoding="utf-8") as f:
        f.write(str(server.server_address[1]))
    # renamed whole, so a reader never sees half a number
    os.replace(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
