"""storage.row_keys.has_repeats (issue 18: a sort and compare, no Acero) against a set of Python tuples."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from storage.frame import batch_from_columns
from storage.row_keys import first_rows, has_repeats

T0 = 1_790_000_000_000


def hist_rows(rng: random.Random, n: int) -> pa.RecordBatch:
    """serving_hist rows (keys endpoint, metric, le), drawn from few values so that repeats happen."""
    return batch_from_columns(
        "serving_hist",
        {
            "ts": [T0 + 1000 * rng.randrange(2) for _ in range(n)],
            "endpoint": [f"vllm-{rng.randrange(3)}" for _ in range(n)],
            "metric": [rng.choice(["ttft", "itl"]) for _ in range(n)],
            "le": [rng.choice([0.1, 1.0, float("inf")]) for _ in range(n)],
            "count": [rng.randrange(100) for _ in range(n)],
            "sum_s": [None] * n,
        },
    )


@pytest.mark.parametrize("seed", range(40))
def test_has_repeats_is_true_exactly_when_two_rows_share_keys_and_time(seed: int) -> None:
    rng = random.Random(seed)
    batch = hist_rows(rng, rng.randrange(2, 12))
    cols = batch.to_pydict()
    keys = list(zip(cols["endpoint"], cols["metric"], cols["le"], cols["ts"], strict=True))
    assert has_repeats("serving_hist", batch) == (len(set(keys)) < len(keys))
    kept, dropped = first_rows("serving_hist", batch)
    assert dropped == len(keys) - len(set(keys))
    assert kept.num_rows == len(set(keys))


def test_rows_differing_only_in_time_are_not_repeats() -> None:
    rows = {"ts": [T0, T0 + 1000], "endpoint": ["a", "a"], "metric": ["ttft"] * 2, "le": [1.0, 1.0]}
    batch = batch_from_columns("serving_hist", {**rows, "count": [1, 2], "sum_s": [None, None]})
    assert not has_repeats("serving_hist", batch)
    same = batch_from_columns(
        "serving_hist", {**rows, "ts": [T0, T0], "count": [1, 2], "sum_s": [None, None]}
    )
    assert has_repeats("serving_hist", same)
