"""Checks of the run report for tests/integration/report_tiny.sh (python3 standard library only).

  report_check.py wellformed FILE        the file parses as XML (XHTML-compatible markup)
  report_check.py offline FILE           no src/href leaves the file (only data: URIs and #anchors),
                                         and every embedded JPEG is a whole JPEG
  report_check.py png FILE               the screenshot is not blank (many pixels, not one colour)
  report_check.py dom FILE K STAGE...    the rendered DOM: the DAG with exactly these stages (and
                                         an edge), one curve per fold 0..K-1 with drawn series,
                                         the threshold plot with its marker and curve
  report_check.py state FILE STAGE ST    the DAG node STAGE is in state ST
  report_check.py count-state FILE ST N  exactly N DAG nodes are in state ST
Each prints what it found and exits 1 when the check fails.
"""
import base64
import re
import struct
import sys
import zlib
import xml.etree.ElementTree as ET
from html.parser import HTMLParser


def fail(msg):
    print("report_check: " + msg)
    sys.exit(1)


def wellformed(path):
    try:
        ET.parse(path)
    except ET.ParseError as e:
        fail("%s is not well-formed: %s" % (path, e))
    print("well-formed")


def offline(path):
    text = open(path, encoding="utf-8").read()
    refs = re.findall(r'\b(?:src|href)="([^"]*)"', text)
    bad = [r for r in refs if not (r.startswith("data:") or r.startswith("#"))]
    if bad:
        fail("links outside the file: %s" % bad[:5])
    jpegs = [r for r in refs if r.startswith("data:image/jpeg;base64,")]
    for r in jpegs:
        b = base64.b64decode(r.split(",", 1)[1], validate=True)
        if not (b[:3] == b"\xff\xd8\xff" and b[-2:] == b"\xff\xd9"):
            fail("an embedded image is not a whole JPEG")
    if re.search(r"url\(|@import", text):
        fail("CSS that loads something")
    print("offline: %d references, %d embedded JPEGs" % (len(refs), len(jpegs)))


def png_pixels(path):
    d = open(path, "rb").read()
    if d[:8] != b"\x89PNG\r\n\x1a\n":
        fail("%s is not a PNG" % path)
    pos, idat = 8, b""
    while pos < len(d):
        (n,) = struct.unpack(">I", d[pos:pos + 4])
        t, c = d[pos + 4:pos + 8], d[pos + 8:pos + 8 + n]
        pos += 12 + n
        if t == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", c[:10])
        elif t == b"IDAT":
            idat += c
    if depth != 8 or ctype not in (2, 6):
        fail("unexpected PNG format (depth %d, colour type %d)" % (depth, ctype))
    bpp = 3 if ctype == 2 else 4
    raw, stride, prev, rows, i = zlib.decompress(idat), w * bpp, bytearray(w * bpp), [], 0
    for _ in range(h):
        f = raw[i]
        line = bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, bpp, rows


def png(path):
    w, h, bpp, rows = png_pixels(path)
    colours, ink = {}, 0
    for y in range(0, h, 3):
        r = rows[y]
        for x in range(0, w, 3):
            px = r[x * bpp:x * bpp + 3]
            colours[px] = colours.get(px, 0) + 1
            ink += px != b"\xff\xff\xff"
    n = sum(colours.values())
    top = max(colours.values())
    print("screenshot %dx%d: %d colours, %.1f%% not white, the most common %.1f%%"
          % (w, h, len(colours), 100.0 * ink / n, 100.0 * top / n))
    if len(colours) < 16 or ink < 0.02 * n or top > 0.98 * n:
        fail("the screenshot is blank or nearly so")


class Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.nodes, self.edges, self.curves, self.thr = [], {}, 0, {}, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        self.stack.append((tag, a, cls))
        if tag == "g" and "node" in cls:
            self.nodes[a.get("data-stage")] = a.get("data-state")
        if tag == "path" and "edge" in cls:
            self.edges += 1
        if tag == "div" and "curve" in cls:
            self.curves[a.get("data-fold")] = 0
        if tag == "svg" and a.get("id") == "threshold-plot":
            self.thr = {"mark": 0, "points": 0}
        if tag == "path" and "series" in cls:
            pts = int(a.get("data-points") or 0)
            for t, aa, cc in reversed(self.stack[:-1]):
                if t == "div" and "curve" in cc:
                    self.curves[aa.get("data-fold")] += pts > 0
                    break
            if self.inside("threshold-plot"):
                self.thr["points"] += pts
        if tag == "line" and "mark" in cls and self.inside("threshold-plot"):
            self.thr["mark"] += 1

    def inside(self, id_):
        return any(t == "svg" and a.get("id") == id_ for t, a, _ in self.stack)

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        self.handle_endtag(tag)


def parse_dom(path):
    d = Dom()
    d.feed(open(path, encoding="utf-8").read())
    return d


def dom(path, k, stages):
    d = parse_dom(path)
    print("DAG: %d stages, %d edges; curves per fold: %s; threshold plot: %s"
          % (len(d.nodes), d.edges, d.curves, d.thr))
    if set(d.nodes) != set(stages):
        fail("the DAG's stages %s differ from the plan's %s" % (sorted(d.nodes), sorted(stages)))
    if d.edges < len(stages) - 1:
        fail("the DAG has too few edges")
    folds = {str(f) for f in range(k)}
    if set(d.curves) != folds or any(d.curves[f] < 1 for f in folds):
        fail("not one drawn curve per fold 0..%d" % (k - 1))
    if not d.thr or d.thr["mark"] != 1 or d.thr["points"] < 2:
        fail("no threshold plot with its chosen threshold and a curve")


def state(path, stage, want):
    got = parse_dom(path).nodes.get(stage)
    print("%s: %s" % (stage, got))
    if got != want:
        fail("%s is %s, not %s" % (stage, got, want))


def count_state(path, want, n):
    got = sum(1 for s in parse_dom(path).nodes.values() if s == want)
    print("%d stages %s" % (got, want))
    if got != int(n):
        fail("%d stages %s, not %s" % (got, want, n))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"wellformed": lambda: wellformed(*args), "offline": lambda: offline(*args),
     "png": lambda: png(*args), "dom": lambda: dom(args[0], int(args[1]), args[2:]),
     "state": lambda: state(*args), "count-state": lambda: count_state(*args)}[cmd]()
