"""The store's samples as OpenMetrics text, written by DuckDB straight from the sealed Parquet files.

Each peer must get exactly the numbers our store holds, so nothing is re-simulated: every non-null
value of the exported columns becomes one sample, named and scaled as `monitor agent` publishes it
(collectors/agent_names.py: dcgm-exporter names, W for power, bytes for NVLink counters). A file
covers one time slice, holds each series contiguously in timestamp order and ends with `# EOF`, as
`promtool tsdb create-blocks-from openmetrics` requires; VictoriaMetrics' /api/v1/import/prometheus
reads the same file (it takes OpenMetrics' timestamps in seconds).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from collectors import agent_names as names
from storage.reader import StoreReader
from storage.schemas import Q4_SCALE


@dataclass(frozen=True)
class Family:
    """One exported metric: a store column under a page name.

    Attributes:
        name: the metric name in the text.
        column: the store column it carries.
        scale: text value = column value x scale (1024 for KiB -> B, 0.001 for mW -> W).
    """

    name: str
    column: str
    scale: float = 1


@dataclass(frozen=True)
class Group:
    """The exported part of one store table, measured on its own.

    Attributes:
        table: the store table.
        keys: the entity columns, in the order the table's files are sorted by.
        labels: SQL building the label set (without braces) from a row.
        families: the exported metrics, one per column.
    """

    table: str
    keys: tuple[str, ...]
    labels: str
    families: tuple[Family, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """The store columns whose values are the group's samples."""
        return tuple(f.column for f in self.families)


GROUPS: dict[str, Group] = {
    "gpu": Group(
        table="gpu",
        keys=("gpu",),
        labels="""'gpu="' || gpu || '",UUID="' || uuid || '"'""",
        families=(
            Family(names.GPU_STATE, "state"),
            *(Family(m.name, m.column, m.scale) for m in names.GPU_METRICS),
        ),
    ),
    "nvlink": Group(
        table="nvlink",
        keys=("gpu", "link"),
        labels="""'gpu="' || gpu || '",link="' || link || '"'""",
        families=tuple(Family(m.name, m.column, m.scale) for m in names.NVLINK_METRICS),
    ),
    "serving": Group(
        table="serving",
        keys=("endpoint", "engine"),
        labels=(
            """'endpoint="' || endpoint || '",engine="' || engine || '",model="' """
            """|| coalesce(model, '') || '"'"""
        ),
        families=(
            Family("rackmon_serving_state", "state"),
            Family("rackmon_serving_prompt_tokens_total", "prompt_tokens"),
            Family("rackmon_serving_generation_tokens_total", "generation_tokens"),
            Family("rackmon_serving_requests_total", "requests_ok"),
            Family("rackmon_serving_preemptions_total", "preemptions"),
            Family("rackmon_serving_running", "running"),
            Family("rackmon_serving_waiting", "waiting"),
            Family("rackmon_serving_kv_cache_usage_ratio", "kv_cache_q4", 1 / Q4_SCALE),
            # The names `monitor agent`'s remote write sends them under (collectors/remote_write/series.py).
            Family("rackmon_serving_cached_tokens_total", "cached_tokens"),
            Family("rackmon_serving_duplicate_samples", "dup_samples"),
        ),
    ),
}
"""What is exported, by group: every measured column of the gpu, nvlink and serving tables (the
descriptive ones, uuid, model, engine, become labels; tray and gpus follow from the keys), so the peers
hold the same values our files do. serving_hist, events, processes and host are not exported."""


def value_sql(family: Family) -> str:
    """SQL rendering one value in the text's unit, exactly (DuckDB prints doubles round-trip short)."""
    col = f'"{family.column}"'
    if family.scale == 1:
        return f"{col}::VARCHAR"
    if family.scale > 1:
        return f"({col}::BIGINT * {int(family.scale)})::VARCHAR"
    return f"({col} / {round(1 / family.scale)})::VARCHAR"


TS_SQL = (
    "(epoch_ms(ts) // 1000)::VARCHAR || CASE WHEN epoch_ms(ts) % 1000 = 0 THEN '' "
    "ELSE '.' || lpad((epoch_ms(ts) % 1000)::VARCHAR, 3, '0') END"
)
"""OpenMetrics timestamps are seconds; whole seconds print without a fraction."""


def family_sql(group: Group, family: Family, relation: str) -> str:
    """The query yielding one family's lines ('name{labels} value ts\\n'), series by series in ts order."""
    keys = ", ".join(group.keys)
    return (
        f"SELECT '{family.name}{{' || {group.labels} || '}} ' || {value_sql(family)} || ' ' || {TS_SQL} "
        f'|| chr(10) AS line FROM {relation} WHERE "{family.column}" IS NOT NULL '
        # The label set, not just the keys: a series whose labels change (a restarted server's
        # model unknown while it is down) is another series, and each must be contiguous.
        f"ORDER BY {keys}, {group.labels}, ts"
    )


def _line_bytes(column: pa.Array) -> memoryview:
    """The concatenated bytes of a string array whose values each end in a newline (no copy)."""
    width = 8 if pa.types.is_large_string(column.type) else 4
    offsets = memoryview(column.buffers()[1]).cast("q" if width == 8 else "i")
    first, last = offsets[column.offset], offsets[column.offset + len(column)]
    return memoryview(column.buffers()[2])[first:last]


@dataclass(frozen=True)
class Slice:
    """One exported file: [since_ms, until_ms) of one group.

    Attributes:
        group: the group name.
        since_ms: first ms included.
        until_ms: first ms excluded.
        path: the text file.
        samples: sample lines written.
        bytes: file size.
    """

    group: str
    since_ms: int
    until_ms: int
    path: Path
    samples: int
    bytes: int


def write_slice(reader: StoreReader, group: str, since_ms: int, until_ms: int, path: Path) -> Slice:
    """Write one group's samples with since_ms <= ts < until_ms to `path` as OpenMetrics text."""
    spec = GROUPS[group]
    relation = reader.relation(spec.table, since_ms, until_ms - 1)
    samples = 0
    with open(path, "wb") as out:
        for family in spec.families:
            batches = reader.con.sql(family_sql(spec, family, relation)).to_arrow_reader(1 << 20)
            for batch in batches:
                column = batch.column(0)
                samples += len(column)
                out.write(_line_bytes(column))
        out.write(b"# EOF\n")
    return Slice(group, since_ms, until_ms, path, samples, path.stat().st_size)


def slices(since_ms: int, until_ms: int, width_ms: int) -> Iterator[tuple[int, int]]:
    """[since, until) cut at multiples of width_ms (promtool's block boundaries for width = 2 h)."""
    lo = since_ms
    while lo < until_ms:
        hi = min(until_ms, (lo // width_ms + 1) * width_ms)
        yield lo, hi
        lo = hi


def store_samples(reader: StoreReader, group: str, since_ms: int, until_ms: int) -> int:
    """How many samples the store holds for a group in [since_ms, until_ms): its non-null values."""
    spec = GROUPS[group]
    relation = reader.relation(spec.table, since_ms, until_ms - 1)
    counts = " + ".join(f'count("{c}")' for c in spec.columns)
    return int(reader.con.sql(f"SELECT {counts} FROM {relation}").fetchall()[0][0])
