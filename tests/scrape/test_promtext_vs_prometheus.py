"""The parser's verdicts against a real Prometheus scraping the same pages (Debian's 2.42, on loopback).

Each page is served on 127.0.0.1 as text 0.0.4 and scraped by /usr/bin/prometheus once a second; a page
Prometheus fails has `up` 0 and no samples, one it reads has `up` 1 and its series queryable. The parser
must agree on each: refuse what Prometheus fails, and read the same series and values from the rest
(docs/parser.md; the one page we read on purpose though Prometheus fails it is CRLF). Skipped where the
prometheus binary is missing (.ci/run installs it).
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from collectors.promtext import ExpositionParser
from collectors.promtext_syntax import ExpositionError
from tests.peer_servers import need, prometheus_scraping

PAGES: dict[str, bytes] = {
    "bare-help-type": b"# HELP\n# TYPE\nm 1\n",
    "hash-no-blank": b"#TYPE a bogus\n#HELP a text\na 1\n",
    "repeated-and-late-metadata": b"# HELP m one\n# HELP m two\nm 1\n# TYPE m gauge\n# TYPE m counter\n",
    "histogram-without-le-and-bare-x": b'# TYPE h histogram\nh_bucket 1\nh 3\nh_bucket{le="x"} 2\n',
    "summary-without-quantile": b"# TYPE s summary\ns 1\ns_sum 2\n",
    "type-two-blanks": b"# TYPE m  gauge\nm 1\n",
    "type-upper-case": b"# TYPE m GAUGE\nm 1\n",
    "negative-timestamp": b"m 1 -5\n",
    "timestamp-beyond-int64": b"m 1 9223372036854775808\n",
    "value-1e400": b"m 1e400\n",
    "value-arabic-indic-digit": "a \u0661\n".encode(),
    "value-signed-nan": b"m -nan\n",
    "value-spellings": b"a inf\nb -Infinity\nc nAn\nd 1e-400\ne .5\n",
    "labels-without-comma": b'a{b="1" c="2"} 1\n',
    "value-right-after-name": b'm+1\nn{a="b"}2\n',
    "lone-comma": b"b{,} 2\n",
    "repeated-label-name": b'm{a="1",a="2"} 1\n',
    "name-label": b'm{__name__="x"} 1\n',
    "nul-starts-a-line": b"a 1\n\x00b 2\n",
    "not-utf8-in-comment": b"# caf\xe9\nm 1\n",
    "not-utf8-in-label-value": b'm{a="caf\xe9"} 1\n',
    "quoted-name": b'{"a.b"} 1\n',
    "empty-braces-no-name": b"{} 3.14\n",
    "escapes": b'm{a="q\\"\\\\\\n\\t"} 1\n',
    "crlf": b"# TYPE m gauge\r\nm 1\r\n",
}
DIFFER_ON_PURPOSE = {"crlf"}
"""docs/parser.md, 'Where we differ on purpose'."""


class _Pages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        page = PAGES.get(self.path.rsplit("/", 1)[-1])
        self.send_response(200 if page is not None else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(page or b"")

    def log_message(self, *args: object) -> None:
        pass


def _query(port: int, promql: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.load(answer)["data"]["result"]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A Prometheus scraping every page once a second; yields its port once each page was scraped."""
    need("prometheus")
    pages = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    threading.Thread(target=pages.serve_forever, daemon=True).start()
    jobs = "".join(
        f"  - job_name: '{name}'\n    metrics_path: /{name}\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{pages.server_port}']}}]\n"
        for name in PAGES
    )
    try:
        with prometheus_scraping(tmp_path_factory.mktemp("prometheus"), jobs) as server:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # waiting for a child's scrapes: nothing to await
                with contextlib.suppress(OSError, KeyError, ValueError):
                    if {r["metric"]["job"] for r in _query(server.port, "up")} == set(PAGES):
                        break
                time.sleep(0.5)
            else:
                pytest.fail(f"Prometheus did not scrape every page within 120 s; see {server.log_path}")
            time.sleep(1.5)  # one more scrape of each: its series are then surely queryable
            yield server.port
    finally:
        pages.shutdown()
        pages.server_close()


def _ours(page: bytes) -> set[tuple] | None:
    try:
        families = ExpositionParser().parse(page)
    except ExpositionError:
        return None
    return {
        (s.name, tuple(sorted(s.labels.items())), "NaN" if math.isnan(s.value) else s.value)
        for f in families.values()
        for s in f.samples
    }


def _theirs(port: int, job: str) -> set[tuple] | None:
    (up,) = _query(port, f'up{{job="{job}"}}')
    if up["value"][1] != "1":
        return None
    out = set()
    for series in _query(port, f'{{job="{job}",__name__!~"up|scrape_.+"}}'):
        labels = {k: v for k, v in series["metric"].items() if k not in ("job", "instance", "__name__")}
        value = float(series["value"][1])
        out.add(
            (
                series["metric"]["__name__"],
                tuple(sorted(labels.items())),
                "NaN" if math.isnan(value) else value,
            )
        )
    return out


@pytest.mark.parametrize("job", sorted(PAGES))
def test_the_parser_reads_what_prometheus_reads(prometheus: int, job: str) -> None:
    ours, theirs = _ours(PAGES[job]), _theirs(prometheus, job)
    if job in DIFFER_ON_PURPOSE:
        assert theirs is None and ours is not None
        return
    assert ours == theirs
