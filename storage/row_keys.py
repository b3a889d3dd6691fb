"""One row per (table keys, ts): finding and dropping rows that repeat a key already held.

A table's keys are storage.schemas.SORT_KEYS (the entity of a row: a GPU, a link, an endpoint). Two
rows with the same keys and ts are the same sample twice; every reader would count it twice. The
poller drops repeats within a rack frame and the store writer refuses repeats across the frames it
holds, both through `first_rows`, keeping the first row of each key as Prometheus keeps the first
sample of a repeated series.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Collection, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from storage.frame import Frame
from storage.schemas import SORT_KEYS

KeyTuple = tuple[object, ...]

_FOUND_UNIQUE: deque[pa.RecordBatch] = deque(maxlen=16)
"""The last batches found without repeats (the very objects: a RecordBatch never changes). A rack frame's
batches are checked by the poller (unique_frame) and again, the same objects, by the store writer: the
second check is a lookup. 16: a frame's tables twice; they are held by the head meanwhile anyway."""
_FOUND_LOCK = threading.Lock()


def key_tuples(table: str, batch: pa.RecordBatch | pa.Table) -> Iterator[KeyTuple]:
    """Each row's (keys..., ts), in row order."""
    names = (*SORT_KEYS[table], "ts")
    return zip(*(batch.column(n).to_pylist() for n in names), strict=True)


def has_repeats(table: str, batch: pa.RecordBatch) -> bool:
    """Whether two rows of `batch` share their (keys, ts); vectorised, the cheap check for every tick."""
    keys = SORT_KEYS.get(table, ())
    if not keys or batch.num_rows < 2:
        return False
    with _FOUND_LOCK:
        if any(seen is batch for seen in _FOUND_UNIQUE):
            return False
    # Sorted, then each row against the next: not Table.group_by, whose Acero engine loads
    # pyarrow.dataset (~13 MB resident) into every process that stores a frame (issue 18).
    names = [*keys, "ts"]
    order = pc.sort_indices(batch, sort_keys=[(name, "ascending") for name in names])
    same: pa.Array | None = None
    for name in names:
        column = batch.column(name).take(order)
        later, earlier = column.slice(1), column.slice(0, len(column) - 1)
        equal = pc.fill_null(pc.equal(later, earlier), False)
        if column.null_count:  # two nulls are the same key, as group_by groups them
            equal = pc.or_(equal, pc.and_(pc.is_null(later), pc.is_null(earlier)))
        same = equal if same is None else pc.and_(same, equal)
    repeats = bool(pc.any(same).as_py())
    if not repeats:
        with _FOUND_LOCK:
            _FOUND_UNIQUE.append(batch)
    return repeats


def first_rows(
    table: str, batch: pa.RecordBatch, held: Collection[KeyTuple] = ()
) -> tuple[pa.RecordBatch, int]:
    """`batch` without the rows whose (keys, ts) is in `held` or repeats an earlier row; and how many went.

    Tables without keys (events: several per tick are normal) are returned whole.
    """
    if not SORT_KEYS.get(table) or (not held and not has_repeats(table, batch)):
        return batch, 0
    seen = set(held)
    keep: list[bool] = []
    for key in key_tuples(table, batch):
        keep.append(key not in seen)
        seen.add(key)
    dropped = keep.count(False)
    return (batch.filter(pa.array(keep)) if dropped else batch), dropped


def unique_frame(frame: Frame) -> tuple[Frame, dict[str, int]]:
    """The frame with each table's repeated (keys, ts) rows dropped; and the count dropped per table."""
    dropped: dict[str, int] = {}
    batches = dict(frame.batches)
    for name, batch in frame.batches.items():
        kept, n = first_rows(name, batch)
        if n:
            batches[name] = kept
            dropped[name] = n
    return (Frame(frame.ts_ms, batches) if dropped else frame), dropped
