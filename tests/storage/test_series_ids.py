"""storage.pieces' series ids: equal exactly where the keys are equal (two nulls equal), and ascending in
the keys' order (each column ascending, nulls last), so chaining sorted by them returns rows in the
order callers relied on when it sorted the key strings. Expected orders come from Python's sorted()
over the key tuples, not from pyarrow."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from storage.pieces import _series_ids, _series_ids_sorted


def key_table(seed: int, rows: int) -> pa.Table:
    rng = random.Random(seed)

    def pick(values: list[object]) -> list[object]:
        return [rng.choice(values) for _ in range(rows)]

    return pa.table(
        {
            "endpoint": pa.array(pick(["vllm-10", "vllm-2", "vllm-1", "sglang-1", "", None]), pa.string()),
            "le": pa.array(pick([0.1, 0.025, 10.0, float("inf"), None]), pa.float64()),
            "link": pa.array(pick([3, 0, 17, None]), pa.int16()),
        }
    )


def python_order(table: pa.Table, keys: list[str]) -> list[tuple[object, ...]]:
    """The key tuples sorted by Python: each column ascending, None after every value."""
    tuples = list(zip(*(table.column(k).to_pylist() for k in keys), strict=True))
    return sorted(tuples, key=lambda t: tuple((v is None, v if v is not None else 0) for v in t))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ids", [_series_ids, _series_ids_sorted])
def test_ids_follow_the_keys_order_and_name_equal_keys_alike(seed: int, ids: object) -> None:
    table = key_table(seed, 400)
    keys = ["endpoint", "le", "link"]
    got = ids(table, keys).to_pylist()  # type: ignore[operator]
    tuples = list(zip(*(table.column(k).to_pylist() for k in keys), strict=True))
    by_key: dict[tuple[object, ...], int] = {}
    for key, series in zip(tuples, got, strict=True):
        assert by_key.setdefault(key, series) == series  # one id per key tuple
    assert len(set(by_key.values())) == len(by_key)  # and no two key tuples share one
    in_id_order = [key for _, key in sorted(zip(got, tuples, strict=True), key=lambda p: p[0])]
    assert in_id_order == python_order(table, keys)


def test_the_fallback_for_too_many_values_gives_the_same_order() -> None:
    table = key_table(9, 300)
    keys = ["endpoint", "le", "link"]
    fast, sorted_ = _series_ids(table, keys).to_pylist(), _series_ids_sorted(table, keys).to_pylist()
    assert sorted(range(300), key=lambda i: (fast[i], i)) == sorted(range(300), key=lambda i: (sorted_[i], i))
