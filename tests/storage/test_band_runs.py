"""storage.band_runs: long raw spans read by band from the compacted files' row order, and the check that
sends every band whose rows came in another order (segments in tick order, a shuffled file) back to the
per-series lists.

Expected increases come from the per-series loop of test_rate_vs_raw_loop over plain SQL rows; the
bands a span must leave are worked out here from the manifest (which files are segments).
"""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from storage import band_runs
from storage.bands import table_band_ms
from storage.counter_rates import Span
from storage.layout import HOUR_MS, read_manifest
from storage.pieces import chain, conformed
from storage.reader import StoreReader
from tests.storage.synth import T0
from tests.storage.test_rate_vs_raw_loop import expected, write_store

BAND = table_band_ms("gpu")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bands") / "store"
    write_store(root, nulls=True)
    return root


def pieces_and_left(store: Path, since: int, until: int, step: int | None = None) -> tuple[dict, list[Span]]:
    """band_pieces over [since, until] chained per GPU (and step), and the spans it left."""
    with StoreReader(store) as reader:
        pieces, left = band_runs.band_pieces(
            reader.con, reader.relation, "gpu", ["energy_mj"], [Span("raw", since, until)], step
        )
        table = chain([conformed(p, "gpu") for p in pieces], "gpu", ["energy_mj"], step)
    got = {
        (r["gpu"], int(r["ts"].timestamp() * 1000) if step else 0): (r["increase"], r["seconds"])
        for r in table.to_pylist()
    }
    return got, left


def assert_equal(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key, (inc, sec) in want.items():
        assert math.isclose(got[key][0], inc, rel_tol=1e-12) and got[key][1] == pytest.approx(sec)


@pytest.mark.parametrize("step", [None, 60_000, 300_000])
def test_compacted_hours_are_read_whole_by_band(store: Path, step: int | None) -> None:
    since, until = T0 + 35_000, T0 + 2 * HOUR_MS - 1  # mid-band start: a band cut by the span
    got, left = pieces_and_left(store, since, until, step)
    assert left == []  # every band passed the check: nothing went back to the lists
    assert_equal(got, expected(store, since, until, step))


def shuffle(root: Path, path: str, seed: int) -> None:
    """Rewrite one file with its rows in a random order."""
    table = pq.read_table(root / path)
    order = list(range(table.num_rows))
    random.Random(seed).shuffle(order)
    pq.write_table(table.take(order), root / path)


def test_a_shuffled_file_leaves_its_bands_and_only_those(tmp_path: Path) -> None:
    """Rows in no order fail the check in every band of their file: nothing is trusted from them, and
    the other hour is still read by band (a mutation that drops the check answers wrongly here:
    tests/mutations/run.py band-runs-unchecked)."""
    root = tmp_path / "shuffled"
    write_store(root, nulls=True)
    first, second = sorted(
        (f for f in read_manifest(root).of("gpu") if f.level == "hour"), key=lambda f: f.min_ts
    )
    shuffle(root, second.path, seed=5)
    since = first.min_ts + 35_000
    got, left = pieces_and_left(root, since, second.max_ts)
    assert [(s.lo, s.hi) for s in left] == [(second.min_ts, second.max_ts)]
    assert_equal(got, expected(root, since, second.min_ts - 1, None))


def test_split_by_band_cuts_only_at_band_edges() -> None:
    span = Span("raw", 30_000, 3_599_999)
    assert band_runs.split_by_band(span, 120_000, 2) == [
        Span("raw", 30_000, 1_799_999),
        Span("raw", 1_800_000, 3_599_999),
    ]
    assert band_runs.split_by_band(Span("raw", 5, 100), 120_000, 4) == [Span("raw", 5, 100)]
    parts = band_runs.split_by_band(Span("raw", 0, 10 * 120_000 - 1), 120_000, 3)
    assert [p.lo % 120_000 for p in parts] == [0, 0, 0]
    assert parts[0].lo == 0 and parts[-1].hi == 10 * 120_000 - 1
    assert all(a.hi + 1 == b.lo for a, b in itertools.pairwise(parts))
