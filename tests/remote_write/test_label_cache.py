"""The encoder's label templates are bounded: GPUs swapped again and again (a new UUID is a new series) do
not grow the cache past its bound, and each request after the cache starts again is the request a fresh
encoder makes of the same rows."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa

from collectors.remote_write.series import ORDER_BY, SeriesEncoder
from monitor.backfill import backfill
from storage.reader import StoreReader


def test_swapped_gpus_do_not_grow_the_label_cache_past_its_bound(tmp_path: Path) -> None:
    root = tmp_path / "store"
    backfill(root, 2, end_s=int(time.time()) - 2, seed=6)
    with StoreReader(root) as reader:
        gpu = reader.sql(f"SELECT * FROM gpu ORDER BY {ORDER_BY['gpu']}")
    rows = gpu.num_rows  # 72 GPUs x 2 ticks
    encoder = SeriesEncoder("r9", max_entities=100)
    uuids = gpu.column("uuid").to_pylist()
    for swap in range(6):  # every GPU swapped each time: 72 new entities a request
        swapped = gpu.set_column(
            gpu.schema.get_field_index("uuid"),
            "uuid",
            pa.array([f"GPU-swap{swap}-{u}" for u in uuids], pa.string()),
        )
        body, samples = encoder.encode({"gpu": swapped})
        assert encoder.cached_entities <= 100
        assert (body, samples) == SeriesEncoder("r9").encode({"gpu": swapped})
        assert samples > rows
    # a stable rack stays cached: nothing is built again
    encoder.encode({"gpu": gpu})
    held = encoder.cached_entities
    encoder.encode({"gpu": gpu})
    assert encoder.cached_entities == held == 72
