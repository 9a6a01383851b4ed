#!/usr/bin/env python3
"""Loopback Kaggle API + storage server for fluke's tests (Python 3 stdlib only).

Implements the current protocol (SPECS.md section 6): POST /v1/competitions.CompetitionApiService/
<Method> with JSON bodies (lowerCamelCase, defaults omitted, errors {"code":4xx,"message":...}),
Bearer and Basic credential checks, 302 redirects to a storage path that serves Range requests,
Last-Modified and x-goog-hash, a PUT upload target for submissions, and a Hugging Face style
/<owner>/<repo>/resolve/main/<file> path.

It records every request that reaches a storage or upload path WITH an Authorization header as a
violation, and so is an API call that arrives before a Retry-After it was given has passed; GET
/_state returns the violations and the request log so tests can assert on them.

Usage: server.py --mode MODE [--token T] [--user U --key K] [--size BYTES] [--file PATH]
                 [--zip-year Y] [--data-dir DIR]
Prints "PORT <n>" on stdout once listening on 127.0.0.1 (port chosen by the OS).

Modes (one per test):
  ok            everything works
  retry429      the first API call answers 429 with Retry-After: 1 (an API call that comes
                sooner is recorded as a violation, as for every Retry-After below)
  err500        the first API call and the first storage GET answer 500
  drop          the first storage GET sends half the body, then drops the connection
  stall         the first storage GET sends half the body, then goes silent until the client
                hangs up (at most --stall-max seconds); /_state "stalls" says which came first
  trunczip_once the first archive download is a truncated zip (consistent length, no md5)
  trunczip      every archive download is truncated
  badmd5        every storage answer carries a wrong x-goog-hash md5
  zipslip       the archive holds an entry "../evil.txt"
  abspath       the archive holds an entry "/tmp/fluke-abs-evil.txt"
  symlink       the archive holds a symlink escaping the tree ("link" -> "../../etc")
  rules         DownloadDataFiles/DownloadDataFile answer 403 "You must accept this competition's rules"
  expire        the credentials stop working after 2 API calls (401)
  norange       storage ignores Range (no Accept-Ranges; always 200)
  hf404safetensors  Hugging Face: model.safetensors is a 404, pytorch_model.bin exists
  submit_error  GetSubmission ends in ERROR
  downgrade     (with --tls) redirects point at plain http://
  oddheaders    the first API call is a 503 with an HTTP-date Retry-After; storage sends a
                malformed x-goog-hash (ignored) and odd header spacing
With --tls CERT KEY the server speaks HTTPS only.
With --serve-dir DIR, the files of DIR are storage objects too: a Hugging Face request for one of
their names gets it (instead of the random blob), and /releases/download/<tag>/<name> (GitHub
release assets) redirects to it (404 for other names).
With --size N, /storage/big.bin is an N-byte object (with x-goog-hash) and
/storage/big-nomd5.bin the same object without it (benchmarks).
"""
import argparse
import base64
import hashlib
import io
import json
import os
import random
import select
import socket
import sys
import threading
import time
import zipfile
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API = "/v1/competitions.CompetitionApiService/"
COMPETITION = "happy-whale-and-dolphin"
LAST_MODIFIED = formatdate(time.time() - 3600, usegmt=True)


def zip_dir(root):
    """The competition archive made from a real directory (end-to-end tests of the CLI)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for dirpath, _, files in sorted(os.walk(root)):
            for f in sorted(files):
                full = os.path.join(dirpath, f)
                z.write(full, os.path.relpath(full, root))
    return buf.getvalue()


def make_zip(mode, year=None):
    rnd = random.Random(7)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        if year:  # the same files with other timestamps: a different zip, the same data
            real = z.writestr

            def dated(name, data):
                zi = name if isinstance(name, zipfile.ZipInfo) else zipfile.ZipInfo(name, (year, 1, 1, 0, 0, 0))
                zi.compress_type = zipfile.ZIP_DEFLATED
                real(zi, data)
            z.writestr = dated
        z.writestr("train.csv", "image,species,individual_id\n"
                   "a.jpg,beluga,id1\nb.jpg,fin_whale,id2\n")
        z.writestr("sample_submission.csv", "image,predictions\nc.jpg,new_individual id1 id2 id3 id4\n")
        z.writestr("train_images/a.jpg", rnd.randbytes(30000))
        z.writestr("train_images/b.jpg", rnd.randbytes(20000))
        z.writestr("test_images/c.jpg", rnd.randbytes(25000))
        if mode == "zipslip":
            z.writestr(zipfile.ZipInfo("../evil.txt"), "gotcha")
        if mode == "abspath":
            z.writestr(zipfile.ZipInfo("/tmp/fluke-abs-evil.txt"), "gotcha")
        if mode == "symlink":
            zi = zipfile.ZipInfo("link")
            zi.create_system = 3
            zi.external_attr = (0o120777 << 16)
            z.writestr(zi, "../../etc")
    return buf.getvalue()


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.args = args
        self.mode = args.mode
        self.violations = []
        self.log = []
        self.api_calls = 0
        self.storage_gets = 0
        self.archive_gets = 0
        self.polls = 0
        self.not_before = None  # (monotonic deadline, why): set by a Retry-After answer
        self.stalls = []        # per stalled GET: {"outcome": "client hung up"|"gave up", "s": ...}
        self.uploads = {}
        self.submissions = {}
        self.zip = zip_dir(args.data_dir) if args.data_dir else make_zip(args.mode, args.zip_year)
        rnd = random.Random(11)
        self.files = {
            "train.csv": b"image,species,individual_id\na.jpg,beluga,id1\nb.jpg,fin_whale,id2\n",
            "sample_submission.csv": b"image,predictions\nc.jpg,new_individual id1 id2 id3 id4\n",
            "blob.bin": rnd.randbytes(300000),
        }
        self.served = set()
        for n in sorted(os.listdir(args.serve_dir)) if args.serve_dir else []:
            with open(os.path.join(args.serve_dir, n), "rb") as f:
                self.files[n] = f.read()
            self.served.add(n)
        # A large object served from disk with sendfile (benchmark, --size).
        self.big_path = None
        if args.size:
            self.big_path = args.file or "/tmp/fluke-bench-%d.bin" % os.getpid()
            if not os.path.exists(self.big_path) or os.path.getsize(self.big_path) != args.size:
                chunk = random.Random(3).randbytes(1 << 20)
                with open(self.big_path, "wb") as f:
                    left = args.size
                    while left:
                        n = min(left, len(chunk))
                        f.write(chunk[:n])
                        left -= n
            h = hashlib.md5()
            with open(self.big_path, "rb") as f:
                for b in iter(lambda: f.read(1 << 22), b""):
                    h.update(b)
            self.big_md5 = h.digest()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls between header and body writes
    server_version = "fluke-test-kaggle/1"

    def log_message(self, fmt, *a):  # keep test output clean
        pass

    @property
    def st(self):
        return self.server.state

    def record(self, **kw):
        with self.st.lock:
            kw.setdefault("path", self.path.split("?")[0])
            kw.setdefault("method", self.command)
            kw.setdefault("range", self.headers.get("Range"))
            kw.setdefault("auth", bool(self.headers.get("Authorization")))
            self.st.log.append(kw)

    def send_json(self, code, obj, extra=None):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def error(self, code, msg, extra=None):
        self.send_json(code, {"code": code, "message": msg}, extra)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def auth_ok(self):
        a = self.headers.get("Authorization") or ""
        args = self.st.args
        if args.token and a == "Bearer " + args.token:
            return True
        if args.user and args.key:
            want = base64.b64encode(("%s:%s" % (args.user, args.key)).encode()).decode()
            if a == "Basic " + want:
                return True
        return False

    # ------------------------------------------------------------------ storage

    def check_no_auth(self):
        if self.headers.get("Authorization"):
            with self.st.lock:
                self.st.violations.append("Authorization reached %s %s" %
                                          (self.command, self.path.split("?")[0]))

    def serve_bytes(self, data, md5=None, path=None, size=None, drop=False, fail500=False,
                    stall=False):
        mode = self.st.mode
        total = size if size is not None else len(data)
        if fail500:
            return self.error(500, "backend error")
        start = 0
        rng = self.headers.get("Range")
        status = 200
        if rng and mode != "norange" and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            if start >= total:
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % total)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        length = total - start
        self.send_header("Content-Length", str(length))
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, total - 1, total))
        if mode != "norange":
            self.send_header("Accept-Ranges", "bytes")
        self.send_header("Last-Modified", LAST_MODIFIED)
        self.send_header("Content-Type", "application/octet-stream")
        if mode == "oddheaders":
            self.send_header("x-goog-hash", "crc32c=AAAAAA==, md5=!!not*base64!!")
            self.send_header("X-Goog-Hash", "md5=")
            md5 = None
        if md5 is not None:
            if mode == "badmd5":
                md5 = hashlib.md5(b"not the data").digest()
            self.send_header("x-goog-hash", "crc32c=AAAAAA==,md5=" + base64.b64encode(md5).decode())
        self.end_headers()
        if drop or stall:
            half = start + length // 2
            if data is not None:
                self.wfile.write(data[start:half])
            else:
                with open(path, "rb") as f:
                    f.seek(start)
                    self.wfile.write(f.read(half - start))
            self.wfile.flush()
            if stall:
                self.stall_until_hangup()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if data is not None:
            self.wfile.write(data[start:])
        else:
            self.wfile.flush()
            with open(path, "rb") as f:
                self.connection.sendfile(f, start, length)

    def stall_until_hangup(self):
        """Silence until the client closes the connection (an event, not a clock: a client
        that waits it out is seen as one) or --stall-max seconds pass."""
        t0 = time.monotonic()
        outcome = "gave up"
        while time.monotonic() - t0 < self.st.args.stall_max:
            r, _, _ = select.select([self.connection], [], [], 0.5)
            if not r:
                continue
            try:
                if self.connection.recv(1, socket.MSG_PEEK) == b"":
                    outcome = "client hung up"
                    break
            except OSError:
                outcome = "client hung up"
                break
            time.sleep(0.05)  # unexpected bytes from the client: keep stalling
        with self.st.lock:
            self.st.stalls.append({"outcome": outcome, "s": round(time.monotonic() - t0, 2)})

    def do_storage(self):
        self.check_no_auth()
        name = self.path.split("?")[0][len("/storage/"):]
        with self.st.lock:
            self.st.storage_gets += 1
            first = self.st.storage_gets == 1
        mode = self.st.mode
        self.record(kind="storage")
        drop = mode == "drop" and first
        stall = mode == "stall" and first
        fail = mode == "err500" and first
        if name == "archive.zip":
            with self.st.lock:
                self.st.archive_gets += 1
                n = self.st.archive_gets
            data = self.st.zip
            if mode == "trunczip" or (mode == "trunczip_once" and n == 1):
                data = data[: len(data) * 2 // 3]
                return self.serve_bytes(data, md5=None, fail500=fail)
            return self.serve_bytes(data, md5=hashlib.md5(data).digest(), drop=drop, fail500=fail,
                                    stall=stall)
        if name in ("big.bin", "big-nomd5.bin") and self.st.big_path:
            md5 = self.st.big_md5 if name == "big.bin" else None
            return self.serve_bytes(None, md5=md5, path=self.st.big_path,
                                    size=self.st.args.size, drop=drop, fail500=fail)
        if name.startswith("files/") and name[6:] in self.st.files:
            data = self.st.files[name[6:]]
            return self.serve_bytes(data, md5=hashlib.md5(data).digest(), drop=drop, fail500=fail)
        return self.error(404, "no such object")

    # ------------------------------------------------------------------ API

    def api(self, method, req):
        st = self.st
        mode = st.mode
        now = time.monotonic()
        with st.lock:
            st.api_calls += 1
            calls = st.api_calls
            if st.not_before and now < st.not_before[0] - 0.01:
                st.violations.append("API call %.3f s before the end of %s" %
                                     (st.not_before[0] - now, st.not_before[1]))
        if mode == "retry429" and calls == 1:
            with st.lock:
                st.not_before = (time.monotonic() + 1, "Retry-After: 1")
            return self.error(429, "Too many requests", {"Retry-After": "1"})
        if mode == "err500" and calls == 1:
            return self.error(500, "Internal error")
        if mode == "oddheaders" and calls == 1:
            wall = time.time()
            date = formatdate(wall + 2, usegmt=True)  # whole seconds: 1-2 s ahead
            with st.lock:
                st.not_before = (time.monotonic() + (int(wall + 2) - wall), "Retry-After: " + date)
            return self.error(503, "Slow down", {"Retry-After": date})
        if not self.auth_ok() or (mode == "expire" and calls > 2):
            return self.error(401, "Unauthenticated")
        comp = req.get("competitionName")
        if method in ("ListDataFiles", "DownloadDataFiles", "DownloadDataFile",
                      "StartSubmissionUpload", "CreateSubmission") and comp != COMPETITION:
            return self.error(404, "Competition not found")
        if method == "ListDataFiles":
            names = ["train.csv", "sample_submission.csv", "blob.bin"]
            # Small pages so that clients must follow nextPageToken.
            start = int(req.get("pageToken") or 0)
            page = names[start:start + 2]
            out = {"files": [{"name": n, "totalBytes": len(st.files[n]),
                              "creationDate": "2022-02-01T00:00:00Z"} for n in page]}
            if start + 2 < len(names):
                out["nextPageToken"] = str(start + 2)
            return self.send_json(200, out)
        if method in ("DownloadDataFiles", "DownloadDataFile"):
            if mode == "rules":
                return self.error(403, "You must accept this competition's rules before you'll be "
                                  "able to download files.")
            if method == "DownloadDataFiles":
                target = "/storage/archive.zip" if not st.big_path else "/storage/big.bin"
            else:
                fn = req.get("fileName")
                if fn not in st.files:
                    return self.error(404, "File not found")
                target = "/storage/files/" + fn
            sig = "?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Signature=deadbeefsignature"
            scheme = "https" if st.args.tls and mode != "downgrade" else "http"
            self.send_response(302)
            self.send_header("Location", "%s://127.0.0.1:%d%s%s" %
                             (scheme, self.server.server_address[1], target, sig))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if method == "StartSubmissionUpload":
            for f in ("contentLength", "fileName"):
                if f not in req:
                    return self.error(400, "missing " + f)
            tok = "blob-token-%d" % calls
            with st.lock:
                st.uploads[tok] = {"length": int(req["contentLength"]), "data": None}
            return self.send_json(200, {"token": tok, "createUrl": "http://127.0.0.1:%d/upload/%s"
                                        % (self.server.server_address[1], tok)})
        if method == "CreateSubmission":
            tok = req.get("blobFileTokens")
            with st.lock:
                up = st.uploads.get(tok)
            if not up or up["data"] is None:
                return self.error(400, "blob not uploaded")
            if not up["data"].startswith(b"image,predictions"):
                return self.error(400, "bad submission header")
            ref = 1000 + calls
            with st.lock:
                st.submissions[ref] = {"polls": 0, "description": req.get("submissionDescription")}
            return self.send_json(200, {"message": "Successfully submitted to Happywhale",
                                        "ref": ref})
        if method == "GetSubmission":
            ref = req.get("ref")
            with st.lock:
                sub = st.submissions.get(int(ref)) if ref is not None else None
                if sub:
                    sub["polls"] += 1
                    polls = sub["polls"]
            if not sub:
                return self.error(404, "Submission not found")
            if polls == 1:
                return self.send_json(200, {})  # status omitted = PENDING (the default)
            if polls == 2:
                return self.send_json(200, {"status": "PENDING"})
            if mode == "submit_error":
                return self.send_json(200, {"status": "ERROR",
                                            "errorDescription": "Submission has 2 rows, expected 27956"})
            return self.send_json(200, {"status": "COMPLETE", "publicScore": "0.84321",
                                        "privateScore": "0.83210", "ref": int(ref)})
        return self.error(404, "Unknown method " + method)

    # ------------------------------------------------------------------ verbs

    def do_POST(self):
        body = self.read_body()
        path = self.path.split("?")[0]
        if not path.startswith(API):
            self.record(kind="other")
            return self.error(404, "not found")
        self.record(kind="api", api=path[len(API):])
        if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
            return self.error(400, "Content-Type must be application/json")
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            return self.error(400, "malformed JSON")
        return self.api(path[len(API):], req)

    def do_PUT(self):
        self.check_no_auth()
        body = self.read_body()
        self.record(kind="upload")
        tok = self.path.split("?")[0][len("/upload/"):]
        with self.st.lock:
            up = self.st.uploads.get(tok)
            if up is not None and len(body) == up["length"]:
                up["data"] = body
                ok = True
            else:
                ok = False
        if not ok:
            return self.error(400, "unknown upload or wrong length")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/_state":
            with self.st.lock:
                state = {"violations": self.st.violations, "log": self.st.log,
                         "stalls": self.st.stalls,
                         "api_calls": self.st.api_calls, "storage_gets": self.st.storage_gets,
                         "submissions": {str(k): v for k, v in self.st.submissions.items()}}
            return self.send_json(200, state)
        if path.startswith("/storage/"):
            return self.do_storage()
        if "/resolve/main/" in path:  # Hugging Face hub
            self.check_no_auth()
            self.record(kind="hf")
            fname = path.rsplit("/", 1)[1]
            if self.st.mode == "hf404safetensors" and fname == "model.safetensors":
                return self.error(404, "Entry not found")
            if self.st.served and fname not in self.st.served:
                return self.error(404, "Entry not found")
            if fname not in ("model.safetensors", "pytorch_model.bin") and fname not in self.st.served:
                return self.error(404, "Entry not found")
            # Like the hub: a redirect to a content host with a signed URL.
            self.send_response(302)
            obj = fname if fname in self.st.served else "blob.bin"
            self.send_header("Location", "/storage/files/%s?Signature=xyz" % obj)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path.startswith("/releases/download/"):  # GitHub release assets
            self.check_no_auth()
            self.record(kind="release")
            fname = path.rsplit("/", 1)[1]
            if fname not in self.st.served:
                return self.error(404, "Not Found")
            self.send_response(302)
            self.send_header("Location", "/storage/files/%s?X-Amz-Signature=abc" % fname)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.record(kind="other")
        return self.error(404, "not found")


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Clients abort transfers on purpose (a skipped download); that is not a server error.
        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="ok")
    ap.add_argument("--token", default="")
    ap.add_argument("--user", default="")
    ap.add_argument("--key", default="")
    ap.add_argument("--size", type=int, default=0)
    ap.add_argument("--file", default="")
    ap.add_argument("--zip-year", type=int, default=0)
    ap.add_argument("--data-dir", default="", help="serve this directory as the competition zip")
    ap.add_argument("--serve-dir", default="", help="serve these files to HF and release requests")
    ap.add_argument("--max-life", type=float, default=600.0)
    ap.add_argument("--stall-max", type=float, default=60.0)
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    args = ap.parse_args()
    # Never outlive the test that started us (its assertions may skip the shutdown).
    parent = os.getppid()

    def watchdog():
        t0 = time.time()
        while os.getppid() == parent and time.time() - t0 < args.max_life:
            time.sleep(0.5)
        os._exit(0)
    threading.Thread(target=watchdog, daemon=True).start()
    srv = Server(("127.0.0.1", 0), Handler)
    if args.tls:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls[0], args.tls[1])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.state = State(args)
    print("PORT %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
