"""The report's fast path (rollup buckets inside, raw rows at the edges, links read only in suspect
minutes) against sums over the raw rows, where it could go wrong.

The store holds a whole day, compacted into day files (raw and 1 min / 1 h rollups), then a compacted
hour and a quarter of an hour still open. Inside it: counters that restart exactly on a minute and on
an hour boundary (the pair across two buckets is the reset), a counter missing at one sample, a GPU
that vanishes mid-day, and NVLink error bursts placed against the buckets: three growths in 30 s
across a minute boundary (fires), two growths (does not), three growths 75 s apart (does not), three
across an hour boundary whose second hour holds no growth pair of its own (fires), a link down for
one sample, and a burst in the open hour. Windows start and end mid-minute inside the day file and
in the open hour. Expected values come from tests/post/store_fixtures.py, over raw Parquet rows.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collectors.alert_rules import AlertRules
from monitor.report import endpoint_spans, summarize
from monitor.report_html import series_in
from monitor.report_links import LINK_ERRORS, link_faults
from monitor.report_nvlink import DIRECTIONS, coarsened, link_increases
from monitor.timespec import Window
from storage.frame import Frame, batch_from_columns, batch_from_rows
from storage.layout import read_manifest
from storage.reader import StoreReader
from tests.post.store_fixtures import first_firing, per_series, raw_rows, write_store
from tests.storage.synth import T0, gpu_batch

STEP_MS = 15_000
MINUTE, HOUR = 60_000 // STEP_MS, 3_600_000 // STEP_MS
"""Ticks a minute and an hour."""
TICKS = 24 * HOUR + HOUR + 15 * MINUTE
ENERGY_RESET = 6 * HOUR + 17 * MINUTE  # GPU 0's energy restarts on a minute boundary
TOKENS_RESET = 9 * HOUR  # e1's tokens restart on an hour boundary
TX_RESET = 12 * HOUR + 41 * MINUTE  # link (0, 1)'s TX restarts on a minute boundary
ENERGY_GAP = 8 * HOUR + 3 * MINUTE + 2  # GPU 1 reports no energy at this one tick
GPU_GONE = 10 * HOUR + 2  # GPU 2's last tick
BURST = 7 * HOUR + 22 * MINUTE  # (0, 0): growth at BURST - 1, BURST, BURST + 1 (:45, :00, :15)
PAIR = 11 * HOUR + 5 * MINUTE + 1  # (0, 1): two growths, BURST-like, no firing
SPREAD = 14 * HOUR + 30 * MINUTE  # (1, 0): growth every 75 s, three times
ACROSS_HOUR = 17 * HOUR  # (1, 0): then growth at 16:59:30, 16:59:45, 17:00:00 (17:00's own pairs: none)
DOWN = 16 * HOUR + 8 * MINUTE + 3  # (1, 1) inactive at this one tick
LATE_BURST = 24 * HOUR + HOUR + 6 * MINUTE + 1  # (1, 1): three growths in the open quarter hour
LINKS = ((0, 0), (0, 1), (1, 0), (1, 1))
E2_FROM, E2_UNTIL = 3 * HOUR + 10 * MINUTE + 1, 19 * HOUR + 4 * MINUTE + 3  # e2's first and last tick
E2_ENGINE = 9 * HOUR + 30 * MINUTE + 2  # e2 restarts as another engine: a second series
E2_MOVED = 12 * HOUR + 7 * MINUTE + 1  # e2's GPUs change; at its last tick it names none


def _errors(link: tuple[int, int], tick: int) -> int:
    grows = {
        (0, 0): (BURST - 1, BURST, BURST + 1),
        (0, 1): (PAIR, PAIR + 1),
        (1, 0): (SPREAD, SPREAD + 5, SPREAD + 10, ACROSS_HOUR - 2, ACROSS_HOUR - 1, ACROSS_HOUR),
        (1, 1): (LATE_BURST, LATE_BURST + 1, LATE_BURST + 3),
    }[link]
    return 7 + sum(1 for g in grows if tick >= g)


def _nvlink(ts: int, tick: int) -> pa.RecordBatch:
    tx = [tick * 1_000 + 5 * g + k for g, k in LINKS]
    if tick >= TX_RESET:
        tx[1] = (tick - TX_RESET) * 700 + 2
    return batch_from_columns(
        "nvlink",
        {
            "ts": [ts] * len(LINKS),
            "gpu": [g for g, _ in LINKS],
            "link": [k for _, k in LINKS],
            "state": [0 if (link == (1, 1) and tick == DOWN) else 1 for link in LINKS],
            "tx_kib": tx,
            "rx_kib": [tick * 900 + g for g, _ in LINKS],
            "rx_errors": [_errors(link, tick) for link in LINKS],
            "symbol_errors": [3] * len(LINKS),
            "recovery": [0] * len(LINKS),
            "recovery_failed": [0] * len(LINKS),
        },
    )


def _frame(tick: int) -> Frame:
    ts = T0 + tick * STEP_MS
    gpus = 3 if tick <= GPU_GONE else 2
    gpu = gpu_batch(ts, tick, gpus)
    energy: list[int | None] = [tick * 600_000 + g for g in range(gpus)]
    if tick >= ENERGY_RESET:
        energy[0] = (tick - ENERGY_RESET) * 500_000 + 11
    if tick == ENERGY_GAP:
        energy[1] = None
    gpu = gpu.set_column(gpu.schema.get_field_index("energy_mj"), "energy_mj", pa.array(energy, pa.int64()))
    serving = []
    for e in ("e0", "e1"):
        tokens = tick * 1_200 if e == "e0" else tick * 800
        if e == "e1" and tick >= TOKENS_RESET:
            tokens = (tick - TOKENS_RESET) * 650 + 1
        serving.append(
            {"ts": ts, "endpoint": e, "engine": "vllm", "gpus": "0" if e == "e0" else "1", "state": 0}
            | {"generation_tokens": tokens, "prompt_tokens": tick * 40}
        )
    if E2_FROM <= tick <= E2_UNTIL:
        gpus = None if tick == E2_UNTIL else "2" if tick < E2_MOVED else "2,3"
        engine, began = ("vllm", E2_FROM) if tick < E2_ENGINE else ("sglang", E2_ENGINE)
        serving.append(
            {"ts": ts, "endpoint": "e2", "engine": engine, "gpus": gpus, "state": 0}
            | {"generation_tokens": (tick - began) * 300, "prompt_tokens": (tick - began) * 20}
        )
    batches = {"gpu": gpu, "serving": batch_from_rows("serving", serving), "nvlink": _nvlink(ts, tick)}
    return Frame(ts, batches)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_store(tmp_path_factory.mktemp("fast") / "store", (_frame(t) for t in range(TICKS)))


WINDOWS = {
    # Both edges mid-minute inside the day file, across the resets, the gap and the vanishing GPU.
    "inside the day file": Window(
        T0 + 5 * 3_600_000 + 30 * 60_000 + 7_000, T0 + 20 * 3_600_000 + 45 * 60_000 + 53_000
    ),
    # From mid-minute in the day file to mid-minute in the open quarter hour.
    "day file to open hour": Window(
        T0 + 3 * 3_600_000 + 7 * 60_000 + 22_500, T0 + 25 * 3_600_000 + 9 * 60_000 + 41_000
    ),
}


def test_the_day_is_compacted_and_rollups_are_read(store: Path) -> None:
    with StoreReader(store) as reader:
        levels = {f.level for f in reader.manifest.of("nvlink")}
        assert "day" in levels and reader.manifest.of("nvlink_1m"), levels


@pytest.mark.parametrize("name", list(WINDOWS))
def test_counter_figures_equal_raw_rows(store: Path, name: str) -> None:
    window = WINDOWS[name]
    since, until = window.since_ms, window.until_ms
    with StoreReader(store) as reader:
        summary = summarize(reader, window)
        rated = reader.rates("nvlink", ("tx_kib", "rx_kib"), since, until).to_pylist()
    energy = per_series(raw_rows(store, "gpu", since, until), ("gpu",), "energy_mj")
    assert (2,) in energy and summary["energy"]["joules"] == pytest.approx(
        sum(i for i, _ in energy.values()) / 1000
    )
    serving = raw_rows(store, "serving", since, until)
    tokens = per_series(serving, ("endpoint", "engine"), "generation_tokens")
    got = summary["serving"]
    assert got["generated_tokens"] == pytest.approx(sum(i for i, _ in tokens.values()))
    assert got["tokens_per_s"] == pytest.approx(sum(i / s for i, s in tokens.values()))
    nvlink = raw_rows(store, "nvlink", since, until)
    for column in ("tx_kib", "rx_kib"):
        expected = per_series(nvlink, ("gpu", "link"), column)
        mine = {(r["gpu"], r["link"]): (r["increase"], r["seconds"]) for r in rated if r["counter"] == column}
        assert mine == pytest.approx(expected), column


@pytest.mark.parametrize("name", list(WINDOWS))
def test_link_faults_equal_the_rule_over_raw_rows(store: Path, name: str) -> None:
    window = WINDOWS[name]
    rule = AlertRules().link_errors
    rows = sorted(raw_rows(store, "nvlink", window.since_ms, window.until_ms), key=lambda r: r["t"])
    expected = {}
    for link in LINKS:
        mine = [r for r in rows if (r["gpu"], r["link"]) == link]
        fired = first_firing(
            [(r["t"], [r[c] for c in LINK_ERRORS]) for r in mine], int(rule.on), int(rule.window_s * 1000)
        )
        down = min((r["t"] for r in mine if r["state"] == 0), default=None)
        if fired is not None or down is not None:
            expected[link] = (min(t for t in (fired, down) if t is not None), down)
    with StoreReader(store) as reader:
        got = {(f["gpu"], f["link"]): (f["onset_ms"], f["down_ms"]) for f in link_faults(reader, window)}
    assert got == expected
    # The bursts across a minute and an hour boundary fire; the spread growth before the latter does not.
    assert expected[(0, 0)] == (T0 + (BURST - 1) * STEP_MS, None)
    assert expected[(1, 0)] == (T0 + (ACROSS_HOUR - 2) * STEP_MS, None)


def _per_step(
    rows: list[dict], keys: Sequence[str], column: str, step_ms: int
) -> dict[tuple, tuple[float, float]]:
    """Per series and step: (increase, seconds) of the consecutive valued pairs whose later sample
    falls in the step (a step starts at a multiple of step_ms), written here from the raw rows."""
    series: dict[tuple, list[tuple[int, int]]] = {}
    for r in rows:
        if r[column] is not None:
            series.setdefault(tuple(r[k] for k in keys), []).append((r["t"], r[column]))
    out: dict[tuple, tuple[float, float]] = {}
    for key, points in series.items():
        for (t0, before), (t1, now) in itertools.pairwise(sorted(points)):
            at = (*key, t1 // step_ms * step_ms)
            inc, seconds = out.get(at, (0, 0.0))
            out[at] = (inc + (now - before if now >= before else now), seconds + (t1 - t0) / 1000)
    return out


@pytest.mark.parametrize("name", list(WINDOWS))
def test_nvlink_steps_coarsened_equal_raw_rows(store: Path, name: str) -> None:
    """report.html rates NVLink per minute once; the summary's total and wider steps are sums of those."""
    since, until = WINDOWS[name].since_ms, WINDOWS[name].until_ms
    with StoreReader(store) as reader:
        minutes = link_increases(reader, since, until, 60_000)
    nvlink = raw_rows(store, "nvlink", since, until)
    whole = coarsened(minutes, None).to_pylist()
    wide = coarsened(minutes, 180_000).to_pylist()
    for column in DIRECTIONS:
        expected = per_series(nvlink, ("gpu", "link"), column)
        got = {(r["gpu"], r["link"]): (r["increase"], r["seconds"]) for r in whole if r["counter"] == column}
        assert got == pytest.approx(expected), column
        expected = _per_step(nvlink, ("gpu", "link"), column, 180_000)
        got = {
            (r["gpu"], r["link"], round(r["ts"].timestamp() * 1000)): (r["increase"], r["seconds"])
            for r in wide
            if r["counter"] == column
        }
        assert got == pytest.approx(expected), column


def test_the_summary_nvlink_total_from_steps_is_the_one_read_whole(store: Path) -> None:
    window = WINDOWS["day file to open hour"]
    with StoreReader(store) as reader:
        minutes = link_increases(reader, window.since_ms, window.until_ms, 60_000)
        read = summarize(reader, window)["nvlink"]
        shared = summarize(reader, window, nvlink_steps=minutes)["nvlink"]
    assert read["tb_s"] is not None and shared == pytest.approx(read)


@pytest.mark.parametrize(
    ("since", "until"),
    [
        (T0 + 10 * 3_600_000 + 20_000, T0 + 14 * 3_600_000 + 7_000),  # GPU 2's last tick in the raw edge
        (T0 + 10 * 3_600_000 + 45_000, T0 + 14 * 3_600_000 + 7_000),  # just after it
        (T0 + 9 * 3_600_000 + 30 * 60_000 + 7_000, T0 + 12 * 3_600_000),  # in 1 min and 1 h buckets
        (T0 + 10 * 3_600_000, T0 + 11 * 3_600_000 - 1),  # in one 1 h bucket only
    ],
)
def test_series_in_a_window_equal_raw_rows(store: Path, since: int, until: int) -> None:
    expected = len({r["gpu"] for r in raw_rows(store, "gpu", since, until)})
    with StoreReader(store) as reader:
        assert series_in(reader, "gpu", Window(since, until)) == expected


def test_a_counter_missing_in_the_raw_edge_is_a_gap_not_a_reset(store: Path) -> None:
    """GPU 1's energy is missing at 08:03:30, inside the raw rows of a window starting at 08:03:07: the
    pair across the gap (08:03:15 -> 08:03:45) counts, as in the raw rows."""
    gap = T0 + ENERGY_GAP * STEP_MS
    window = Window(gap - 23_000, T0 + 9 * 3_600_000 + 30 * 60_000 + 41_000)
    expected = per_series(raw_rows(store, "gpu", window.since_ms, window.until_ms), ("gpu",), "energy_mj")
    with StoreReader(store) as reader:
        summary = summarize(reader, window)
    assert summary["energy"]["joules"] == pytest.approx(sum(i for i, _ in expected.values()) / 1000)


@pytest.mark.parametrize(
    "window",
    [
        *WINDOWS.values(),
        Window(T0 + 3 * 3_600_000 + 10 * 60_000 + 7_000, T0 + 24 * 3_600_000),  # e2 from its first tick
        Window(T0 + 12 * 3_600_000 + 7 * 60_000 + 16_000, T0 + 19 * 3_600_000 + 4 * 60_000 + 44_000),
        Window(T0 + 10 * 3_600_000, T0 + 11 * 3_600_000 - 1),  # one 1 h bucket
    ],
)
def test_endpoint_spans_from_rollups_equal_raw_rows(store: Path, window: Window) -> None:
    """Each endpoint's first and last row, series and last named GPUs, read from the rollup buckets
    inside the window, are those of its raw rows: e2 joins and leaves mid-minute, restarts as another
    engine, moves GPUs and names none at its last tick."""
    rows = sorted(raw_rows(store, "serving", window.since_ms, window.until_ms), key=lambda r: r["t"])
    expected = {}
    for e in sorted({r["endpoint"] for r in rows}):
        mine = [r for r in rows if r["endpoint"] == e]
        named = [r["gpus"] for r in mine if r["gpus"] is not None]
        expected[e] = (
            mine[0]["t"],
            mine[-1]["t"],
            len({r["engine"] for r in mine}),
            named[-1] if named else None,
        )
    with StoreReader(store) as reader:
        got = {
            r["endpoint"]: (r["first"], r["last"], r["series"], r["gpus"])
            for r in endpoint_spans(reader, window)
        }
    assert got == expected
    assert "e2" in expected


@pytest.mark.parametrize(
    ("stripped", "name"),
    [
        # Alone: a span's files lack the columns, DuckDB cannot bind them.
        ({"serving_1m": ("day", "hour"), "serving_1h": ("day", "hour")}, "inside the day file"),
        # Beside a newer file (the open hour's day-file hours and the hour file share the 1 h span): NULL.
        ({"serving_1h": ("day",)}, "day file to open hour"),
    ],
)
def test_endpoint_spans_read_raw_where_rollups_predate_first_ms(
    store: Path, tmp_path: Path, stripped: dict[str, tuple[str, ...]], name: str
) -> None:
    """Rollup files written before first_ms/last_ms existed cannot say when a bucket's rows were: the
    spans are then the raw rows'."""
    old = tmp_path / "store"
    shutil.copytree(store, old)
    for table, levels in stripped.items():
        files = [e for e in read_manifest(old).of(table) if e.level in levels]
        assert {e.level for e in files} == set(levels)
        for entry in files:
            path = old / entry.path
            pq.write_table(pq.read_table(path).drop_columns(["first_ms", "last_ms"]), path)
    window = WINDOWS[name]
    rows = raw_rows(old, "serving", window.since_ms, window.until_ms)
    expected: dict[str, tuple[int, int]] = {}
    for r in rows:
        first, last = expected.get(r["endpoint"], (r["t"], r["t"]))
        expected[r["endpoint"]] = (min(first, r["t"]), max(last, r["t"]))
    with StoreReader(old) as reader:
        got = {r["endpoint"]: (r["first"], r["last"]) for r in endpoint_spans(reader, window)}
    assert got == expected
