"""A reader loads DuckDB only when a question needs SQL: opening a store and answering a counter increase
from whole rollup buckets stays in pyarrow (issue 14's memory: DuckDB is ~25 MiB resident before any
query). Checked in a fresh interpreter, where sys.modules says what was imported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from storage.layout import HOUR_MS
from storage.writer import StoreWriter
from tests.storage.synth import T0, frame

ROOT = Path(__file__).resolve().parents[2]


def test_a_rollup_backed_question_never_imports_duckdb(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with StoreWriter(store, flush_interval_s=600, compaction="inline", grace_s=0) as writer:
        for tick in range(2 * 360 + 10):  # two compacted hours, 10 s apart, then an open one
            writer.append(frame(tick, 10_000, gpus=3))
    script = textwrap.dedent(
        f"""
        import json, sys
        from storage.reader import StoreReader
        seen = []
        with StoreReader({str(store)!r}) as reader:
            seen.append("duckdb" in sys.modules)
            rows = reader.rates("gpu", ["energy_mj"], {T0}, {T0 + 2 * HOUR_MS - 1}).to_pylist()
            seen.append("duckdb" in sys.modules)
            reader.rows("SELECT count(*) FROM gpu")
            seen.append("duckdb" in sys.modules)
        print(json.dumps({{"seen": seen, "increase": [r["increase"] for r in rows]}}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    got = json.loads(done.stdout)
    assert got["seen"] == [False, False, True]  # SQL brings it in, and only SQL
    # synth's energy counter rises 600,000 mJ a tick: 719 steps inside the two hours, per GPU.
    assert got["increase"] == [719 * 600_000.0] * 3
