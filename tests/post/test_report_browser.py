"""report.html in a real browser: Debian's chromium, headless, renders what `monitor export` wrote.

The stores are the simulator's, written by the real backfill; report.html comes from the real `monitor
export` in a subprocess. Chromium then (a) renders the page to a PNG, decoded here with zlib alone, and
(b) lays the page out and measures every chart as drawn: each mark (line, point, event line, heatmap
cell, a suspect's onset line and label) must lie inside its chart's plot area and be visible, and every
label inside its chart. The stores hold what strains a chart: a lost GPU, a counter reset, an error
spike, a hole in the data, one sample, two samples.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collectors.rack import gpu_label
from collectors.sim.rack import SimRack
from monitor.backfill import SimFrames, backfill
from monitor.report_charts import PALETTE
from monitor.timespec import iso
from storage.frame import Frame, batch_from_rows
from storage.writer import StoreWriter
from tests.post.conftest import END_S, SEED, monitor

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (.ci/run installs Debian's package): report.html is not checked "
    "in a browser here",
)
SINCE, UNTIL = "2025-06-15T15:00:00Z", "2025-06-15T15:10:00Z"
"""The export window: it holds every store below (all end at END_S, 15:06:40)."""
HOLE = (END_S - 119, END_S - 60)
"""The seconds [first, last) the `hole` store has nothing for: one minute of a three-minute run."""
STOPPED_MS = (END_S + 20) * 1000
CASES = {
    "gpu-lost": ("gpu-lost", 120),  # 71/72 GPUs for the last minute: partial points, XID markers
    "restart": ("restart", 120),  # a tray's counters restart from 0 at 60 s
    "nvlink-flap": ("nvlink-flap", 120),  # link errors jump from 0 to hundreds a second
    "one-sample": ("steady", 1),
    "two-samples": ("steady", 2),
}
ONSET = iso((END_S - 119 + 60) * 1000)
"""The faults' onset: each store's first tick (120 ticks at 1 s ending at END_S) plus the scenario's
fault_at (60 s, collectors.sim.scenarios)."""
_LOST, _FLAP = SimRack(SEED, "gpu-lost").scenario.fault, SimRack(SEED, "nvlink-flap").scenario.fault
ONSETS = {
    "gpu-lost": [f"onset of {gpu_label(_LOST.gpu)}: {ONSET}"],
    "nvlink-flap": [f"onset of {gpu_label(_FLAP.gpu)} link {_FLAP.link}: {ONSET}"],
}
"""Each case's suspects' onset marks, as their tooltips read: from the simulator's fault schedule."""
TIMELINES = ("Generated tokens/s", "Rack GPU power", "NVLink traffic (TX+RX)", "NVLink errors")
MEASURE_JS = """(() => {
  const box = (r) => ({left: r.left, top: r.top, right: r.right, bottom: r.bottom});
  const charts = [...document.querySelectorAll("svg")].map((svg) => ({
    chart: svg.getAttribute("aria-label"),
    svg: box(svg.getBoundingClientRect()),
    plots: [...svg.querySelectorAll("rect.plot")].map((p) => box(p.getBoundingClientRect())),
    marks: [...svg.querySelectorAll("g.marks > :not(title)")].map((m) => ({
      tag: m.tagName,
      cls: m.getAttribute("class") || "",
      vertices: m.points ? m.points.numberOfItems : 1,
      box: box(m.getBoundingClientRect()),
      what: (m.querySelector("title") || m.parentNode.querySelector("title") || {}).textContent || "",
    })),
    labels: [...svg.querySelectorAll("text")].map((t) => ({text: t.textContent,
                                                           box: box(t.getBoundingClientRect())})),
  }));
  const out = document.createElement("pre");
  out.id = "chart-check";
  out.textContent = JSON.stringify(charts);
  document.body.appendChild(out);
})();"""
"""Appended to a copy of the page (report.html itself has no script): what chromium laid out, as JSON."""


def _hole_frames(_start: float) -> Iterator[Frame]:
    """A steady rack for three minutes ending at END_S, with nothing recorded during HOLE."""
    sim = SimFrames(SEED, "steady", END_S - 179, 1.0, fast=True)
    try:
        for frame in sim:
            if not HOLE[0] * 1000 <= frame.ts_ms < HOLE[1] * 1000:
                yield frame
    finally:
        sim.close()


def _stopped_after_the_last_sample(store: Path) -> None:
    """The store's last row: recording stopped (the disk full) 20 s after its last sample."""
    row = {"ts": STOPPED_MS, "kind": "recording_stopped", "source": "recording", "detail": "disk full"}
    with StoreWriter(store, compaction="off") as writer:
        writer.append(Frame(STOPPED_MS, {"events": batch_from_rows("events", [row])}))


def _export(store: Path, out: Path) -> Path:
    done = monitor("export", "--store", str(store), "--since", SINCE, "--until", UNTIL, "-o", str(out))
    assert done.returncode == 0, done.stderr
    return out / "report.html"


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each case's report.html, as `monitor export` writes it."""
    root = tmp_path_factory.mktemp("browser")
    out = {}
    for case, (scenario, seconds) in CASES.items():
        backfill(root / case, seconds, scenario=scenario, seed=SEED, end_s=END_S)
        if case == "gpu-lost":
            _stopped_after_the_last_sample(root / case)
        out[case] = _export(root / case, root / f"{case}.bundle")
    backfill(root / "hole", 120, end_s=END_S, frames=_hole_frames)
    out["hole"] = _export(root / "hole", root / "hole.bundle")
    return out


def _chromium(*args: str, profile: Path, size: tuple[int, int] = (1200, 900)) -> str:
    """Headless chromium on `args`; its stdout. As root it runs only without its sandbox; a container's
    small /dev/shm would crash it, hence --disable-dev-shm-usage."""
    done = subprocess.run(
        [CHROMIUM or "chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
         "--no-first-run", "--disable-dev-shm-usage", f"--window-size={size[0]},{size[1]}", *args],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def measure(page: Path, tmp: Path) -> list[dict[str, Any]]:
    """Every chart of `page` as chromium laid it out (boxes in CSS px of the page)."""
    probe = tmp / f"{page.parent.name}.measure.html"
    probe.write_text(page.read_text().replace("</body>", f"<script>{MEASURE_JS}</script></body>"))
    dom = _chromium("--dump-dom", probe.as_uri(), profile=tmp / "profile")
    found = re.search(r'<pre id="chart-check">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    return json.loads(html.unescape(found.group(1)))


def _outside(inner: dict[str, float], outer: dict[str, float], slack: float = 0.01) -> bool:
    return (
        inner["left"] < outer["left"] - slack
        or inner["top"] < outer["top"] - slack
        or inner["right"] > outer["right"] + slack
        or inner["bottom"] > outer["bottom"] + slack
    )


def _centre(box: dict[str, float]) -> dict[str, float]:
    x, y = (box["left"] + box["right"]) / 2, (box["top"] + box["bottom"]) / 2
    return {"left": x, "right": x, "top": y, "bottom": y}


def check_charts(charts: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Assert each chart's marks lie inside its one plot area, visibly, and its labels inside it.

    A point mark (a circle) counts by its centre: the ring round a point at the edge may cross it.
    Returns each chart's marks by name.
    """
    assert len(charts) == 8, [c["chart"] for c in charts]  # 4 timelines + 4 heatmaps
    out = {}
    for chart in charts:
        name = chart["chart"]
        assert len(chart["plots"]) == 1, name
        plot, svg = chart["plots"][0], chart["svg"]
        # The plot area as the page lays it out (hand-read, as in test_export.py): 46 px of labels on
        # the left, 10 px spare on the right; 90 px tall on a timeline, 72 rows of 5 px on a heatmap.
        edges = (plot["left"] - svg["left"], svg["right"] - plot["right"], plot["bottom"] - plot["top"])
        assert edges == (46, 10, 90 if name in TIMELINES else 72 * 5), (name, plot, svg)
        for mark in chart["marks"]:
            where = _centre(mark["box"]) if mark["tag"] == "circle" else mark["box"]
            assert not _outside(where, plot), (name, mark, plot)
            width, height = (
                mark["box"]["right"] - mark["box"]["left"],
                mark["box"]["bottom"] - mark["box"]["top"],
            )
            assert width > 0 or height > 0, ("drawn as nothing", name, mark)
        for label in chart["labels"]:
            assert not _outside(label["box"], chart["svg"], slack=0.5), ("label cut off", name, label)
            assert label["box"]["right"] - label["box"]["left"] > 0, ("no font drew it", name, label)
        out[name] = chart["marks"]
    return out


@pytest.mark.parametrize("case", [*CASES, "hole"])
def test_every_chart_point_lies_inside_its_plot_area(
    case: str, pages: dict[str, Path], tmp_path: Path
) -> None:
    marks = check_charts(measure(pages[case], tmp_path))
    drawn = ("polyline", "circle")
    points = {name: sum(m["vertices"] for m in marks[name] if m["tag"] in drawn) for name in TIMELINES}
    if case == "one-sample":
        # One tick: no counter has a rate yet; power has its one point, drawn as a dot.
        assert points == dict.fromkeys(TIMELINES, 0) | {"Rack GPU power": 1}
    elif case == "two-samples":
        assert all(1 <= n <= 2 for n in points.values()), points
    else:
        assert all(n >= 60 for n in points.values()), points  # 120 steps over 2-3 minutes
    events = {m["what"].split()[1] for m in marks["Rack GPU power"] if m["tag"] == "line" and not m["cls"]}
    if case == "gpu-lost":  # the fault, and the recording stopping 20 s after the last sample
        assert events == {"xid", "gpu_lost", "recording_stopped"}, events
    if case == "nvlink-flap":
        assert events == {"xid", "link_down"}, events
    if case == "hole":
        # A minute with nothing recorded breaks each line in two instead of bridging it.
        for name in TIMELINES:
            lines = [m for m in marks[name] if m["tag"] == "polyline"]
            assert len(lines) == 2, (name, [m["box"] for m in lines])
            assert lines[0]["box"]["right"] < lines[1]["box"]["left"]
    for name in TIMELINES:  # each suspect's onset: a line and its label, both inside the plot area
        onsets = {(m["tag"], m["what"]) for m in marks[name] if m["cls"] == "onset"}
        assert onsets == {(tag, what) for tag in ("line", "text") for what in ONSETS.get(case, [])}, onsets
    for heat in ("Power per GPU", "GPU temperature per GPU"):
        assert {m["what"] for m in marks[heat]} >= {"T01.G1", "T18.G4"}, heat


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB or RGBA pixels) of an 8-bit non-interlaced PNG: chunks, CRCs,
    zlib and the five scanline filters (PNG spec, section 9), nothing else."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    pos, idat, header = 8, [], b""
    while pos < len(data):
        (size,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + size]
        assert struct.unpack(">I", data[pos + 8 + size : pos + 12 + size])[0] == zlib.crc32(kind + body), kind
        header = body if kind == b"IHDR" else header
        idat += [body] if kind == b"IDAT" else []
        pos += 12 + size
        if kind == b"IEND":
            break
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    bpp = 3 if colour == 2 else 4
    stride, raw = width * bpp, zlib.decompress(b"".join(idat))
    assert len(raw) == height * (stride + 1)
    rows, prev = [], bytes(stride)
    for r in range(height):
        at = r * (stride + 1)
        prev = _unfilter(raw[at], bytearray(raw[at + 1 : at + 1 + stride]), prev, bpp)
        rows.append(prev)
    return width, height, rows


def _unfilter(kind: int, line: bytearray, prev: bytes, bpp: int) -> bytes:
    """One scanline back from its filter: 0 none, 1 sub, 2 up, 3 average, 4 Paeth."""
    if kind == 2:
        return bytes((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
    for i in range(len(line)) if kind else ():
        left = line[i - bpp] if i >= bpp else 0
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + prev[i]) // 2) & 0xFF
        else:
            up, up_left = prev[i], prev[i - bpp] if i >= bpp else 0
            guess = left + up - up_left
            near = min(
                (abs(guess - left), 0, left), (abs(guess - up), 1, up), (abs(guess - up_left), 2, up_left)
            )
            line[i] = (line[i] + near[2]) & 0xFF
    return bytes(line)


def test_chromium_renders_the_report_to_a_real_png(pages: dict[str, Path], tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    size = (1200, 2000)  # the summary, the four timelines and the first two heatmaps
    _chromium(f"--screenshot={shot}", pages["gpu-lost"].as_uri(), profile=tmp_path / "profile", size=size)
    width, height, rows = decode_png(shot.read_bytes())
    assert (width, height) == size
    bpp = len(rows[0]) // width
    colours = Counter(row[i : i + 3] for row in rows for i in range(0, len(row), bpp))
    # A page, not a blank or an error screen: mostly white paper, with text and charts on it.
    white = colours[b"\xff\xff\xff"] / (width * height)
    assert 0.4 < white < 0.97, white
    assert len(colours) > 50, len(colours)
    # The timelines' line colour and the heatmaps' palette, painted in many pixels each.
    assert colours[bytes.fromhex("1f5fbf")] > 200, colours.most_common(8)
    painted = [c for c in PALETTE if colours[bytes.fromhex(c[1:])] > 100]
    assert len(painted) >= 8, (painted, colours.most_common(20))
