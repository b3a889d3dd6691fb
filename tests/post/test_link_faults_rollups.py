"""Link faults over a window that spans a compacted hour (read through its 1 min rollups) and the open hour.

monitor.report_links narrows the exact lag() query to the links and minutes that may hold a fault; one
it missed would vanish from the report. The faults here are placed by hand, so the expected links and
onsets are known without the code under test: a link erring in the compacted hour, one going down
there (no errors), one erring in the open hour, and two that must not count (a counter restart to 0,
and growth below the alert rule's three samples in 60 s).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from monitor.report_links import link_faults
from monitor.timespec import Window
from storage.frame import Frame, batch_from_columns
from storage.reader import StoreReader
from tests.post.store_fixtures import write_store
from tests.storage.synth import T0, gpu_batch

STEP_MS = 5_000
TICKS = 80 * 60_000 // STEP_MS  # the hour T0 .. T0+1h compacted, 20 minutes open after it
GPUS, LINKS = 4, 18
ERRING = {(1, 3): ("symbol_errors", 100), (0, 0): ("recovery", 850), (2, 8): ("rx_errors", 300)}
"""(gpu, link) -> (counter, first tick it grows); (2, 8) grows at two samples only."""
DOWN = ((3, 11), 400)
RESTART = ((2, 7), 500)


def _errors(gpu: int, link: int, column: str, tick: int) -> int:
    value = 5
    if (gpu, link) == RESTART[0] and column == "rx_errors":
        return 0 if tick >= RESTART[1] else 9  # a restart to zero: no new errors
    counter, start = ERRING.get((gpu, link), ("", 0))
    if column == counter and tick >= start:
        grows = 2 if (gpu, link) == (2, 8) else 4
        value += min(tick - start + 1, grows)
    return value


def _frame(tick: int) -> Frame:
    ts = T0 + tick * STEP_MS
    keys = [(g, k) for g in range(GPUS) for k in range(LINKS)]
    columns: dict[str, list] = {
        "ts": [ts] * len(keys),
        "gpu": [g for g, _ in keys],
        "link": [k for _, k in keys],
        "state": [0 if (g, k) == DOWN[0] and tick == DOWN[1] else 1 for g, k in keys],
        "tx_kib": [tick * 1000] * len(keys),
        "rx_kib": [tick * 1000] * len(keys),
    }
    for c in ("rx_errors", "symbol_errors", "recovery", "recovery_failed"):
        columns[c] = [_errors(g, k, c, tick) for g, k in keys]
    nvlink = batch_from_columns("nvlink", columns)
    assert nvlink.schema.field("state").type == pa.int8()
    return Frame(ts, {"gpu": gpu_batch(ts, tick, GPUS), "nvlink": nvlink})


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_store(tmp_path_factory.mktemp("links") / "store", (_frame(tick) for tick in range(TICKS)))


def test_links_erring_or_down_in_rollups_and_raw_rows_are_found(store: Path) -> None:
    window = Window(T0 + 30_500, T0 + (TICKS - 3) * STEP_MS + 700)
    with StoreReader(store) as reader:
        assert reader.manifest.of("nvlink_1m"), "the first hour must be compacted"
        found = link_faults(reader, window)
    got = {(f["gpu"], f["link"]): (f["onset_ms"], f["down_ms"]) for f in found}
    at = lambda tick: T0 + tick * STEP_MS  # noqa: E731
    # Growth counts from the first sample whose counter rose: the first tick of the run.
    assert got == {
        (1, 3): (at(100), None),
        (3, 11): (at(400), at(400)),
        (0, 0): (at(850), None),
    }
    errors = {(f["gpu"], f["link"]): f["errors"] for f in found}
    assert errors[(1, 3)]["symbol_errors"] == 4 and errors[(0, 0)]["recovery"] == 4
