#!/usr/bin/env python3
"""Loopback Bazel HTTP cache for fluke's remote-cache tests (Python 3 stdlib only).

GET / HEAD / PUT of /[<prefix>/](ac|cas)/<lowercase hex>, stored as files under --root
(<root>/ac/<hex>, <root>/cas/<hex>, written to a temporary name and renamed). GET honours
"Range: bytes=N-" (206 with Content-Range). Like nginx WebDAV, it accepts any hex name and never
re-hashes what it stores. With --token T every request must carry "Authorization: Bearer T"
(else 401).

Every request is logged to --log as one line: "<METHOD> <path> <status> auth=<ok|none|bad>"
(then " range=N-" for a Range request, " dropped" for a dropped answer),
so tests can check the order of PUTs, that a read-only client never PUTs, and that the token was
sent (the log never holds the token itself).

Faults: --faults FILE is re-read on every request; each line is "key=value ..." with
  fault=500|drop|stall|corrupt|missing|slow  what to do
  method=GET|HEAD|PUT                 only for this method (default: any)
  kind=ac|cas                         only for this kind (default: any)
  times=N                             only the first N matching requests (default: all)
  minsize=N                           only objects of at least N bytes
  seconds=S                           slow: sleep S seconds before answering
"drop" sends the headers and half the body, then closes the connection ("stall": waits
seconds=S first, logging "stalled" when it starts to wait); "corrupt" flips one
byte of a GET body; "missing" answers 404 as if the object were absent.

Prints "PORT <n>" on stdout once listening on 127.0.0.1 (port chosen by the OS).
"""
import argparse
import os
import re
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATH_RE = re.compile(r"^(?:/[A-Za-z0-9._-]+)*/(ac|cas)/([0-9a-f]+)$")
RANGE_RE = re.compile(r"^bytes=(\d+)-$")

args = None
lock = threading.Lock()
used = {}  # fault line -> times used


def log(line):
    with lock:
        with open(args.log, "a") as f:
            f.write(line + "\n")


def fault_for(method, kind, size):
    if not args.faults or not os.path.exists(args.faults):
        return None
    with open(args.faults) as f:
        lines = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    for line in lines:
        kv = dict(w.split("=", 1) for w in line.split() if "=" in w)
        if kv.get("method", method) != method or kv.get("kind", kind) != kind:
            continue
        if size < int(kv.get("minsize", "0")):
            continue
        with lock:
            n = used.get(line, 0)
            if "times" in kv and n >= int(kv["times"]):
                continue
            used[line] = n + 1
        return kv
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):  # quiet: the request log is ours
        pass

    def answer(self, status, body=b"", headers=None, send_body=True):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body and body:
            self.wfile.write(body)
        log("%s %s %d auth=%s%s" % (self.command, self.path, status, self.auth, self.extra()))

    def extra(self):
        r = self.headers.get("Range")
        return " range=" + r[6:] if r and r.startswith("bytes=") else ""

    def check(self):
        h = self.headers.get("Authorization")
        self.auth = "none" if h is None else ("ok" if args.token and h == "Bearer " + args.token else "bad")
        if args.token and self.auth != "ok":
            self.drain()
            self.answer(401, b"unauthorized\n")
            return None
        m = PATH_RE.match(self.path)
        if not m:
            self.drain()
            self.answer(400, b"bad path\n")
            return None
        kind, name = m.group(1), m.group(2)
        path = os.path.join(args.root, kind, name)
        size = os.path.getsize(path) if os.path.isfile(path) else 0
        flt = fault_for(self.command, kind, size)
        if flt and flt.get("fault") == "slow":
            time.sleep(float(flt.get("seconds", "5")))
        if flt and flt.get("fault") == "500":
            self.drain()
            self.answer(500, b"injected failure\n")
            return None
        return kind, name, path, flt

    def drain(self):
        n = int(self.headers.get("Content-Length") or 0)
        while n > 0:
            chunk = self.rfile.read(min(n, 1 << 16))
            if not chunk:
                break
            n -= len(chunk)

    def do_HEAD(self):
        self.get(head=True)

    def do_GET(self):
        self.get(head=False)

    def get(self, head):
        r = self.check()
        if not r:
            return
        kind, name, path, flt = r
        if (flt and flt.get("fault") == "missing") or not os.path.isfile(path):
            self.answer(404, b"", send_body=not head)
            return
        with open(path, "rb") as f:
            data = f.read()
        start, status, hdr = 0, 200, {"Accept-Ranges": "bytes"}
        m = RANGE_RE.match(self.headers.get("Range", ""))
        if m and not head:
            start = int(m.group(1))
            if start >= len(data):
                self.answer(416, b"", {"Content-Range": "bytes */%d" % len(data)})
                return
            status = 206
            hdr["Content-Range"] = "bytes %d-%d/%d" % (start, len(data) - 1, len(data))
        body = data[start:]
        if flt and flt.get("fault") == "corrupt" and body and not head:
            i = len(body) // 2
            body = body[:i] + bytes([body[i] ^ 0x20]) + body[i + 1:]
        if flt and flt.get("fault") in ("drop", "stall") and not head and len(body) > 1:
            self.send_response(status)
            for k, v in hdr.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            if flt.get("fault") == "stall":
                log("%s %s %d auth=%s%s stalled" % (self.command, self.path, status, self.auth, self.extra()))
                time.sleep(float(flt.get("seconds", "30")))
            log("%s %s %d auth=%s%s dropped" % (self.command, self.path, status, self.auth, self.extra()))
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if head:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            log("%s %s %d auth=%s" % (self.command, self.path, status, self.auth))
            return
        self.answer(status, body, hdr)

    def do_PUT(self):
        r = self.check()
        if not r:
            return
        kind, name, path, flt = r
        n = int(self.headers.get("Content-Length") or 0)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path))
        with os.fdopen(fd, "wb") as f:
            left = n
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                f.write(chunk)
                left -= len(chunk)
        if left:
            os.unlink(tmp)
            self.answer(400, b"short body\n")
            return
        os.rename(tmp, path)
        self.answer(201)


def main():
    global args
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--token")
    p.add_argument("--faults")
    args = p.parse_args()
    os.makedirs(os.path.join(args.root, "ac"), exist_ok=True)
    os.makedirs(os.path.join(args.root, "cas"), exist_ok=True)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    print("PORT %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
