"""Pieces of long raw spans from the compacted files' own row order: one streaming pass, no sort.

Compacted files hold their rows sorted by (time band, series keys, ts) (storage/row_order.py), so in a
scan each series' samples of a band come one after another in time order. One pass pairs every row
with the row before it (a streaming lag(), which DuckDB runs without sorting or partitioning) and groups
the rows by (series, band): a group whose rows were all neighbours in the scan, in rising time, is one
piece whose increase is the sum over its pairs by the one rule (storage.increase.step_sql).

That is checked, not assumed. A group of n rows with n - 1 rows linked to their predecessor (the same
series, the same band and step, a later time) is one chain of neighbours: n - 1 links between n rows
that each link only to the row just before are one run. Rows in any other order (the head's, which
come in tick order; a file rewritten in another order) fail the check; their bands are left to the
caller, which reads them as per-series lists (counter_rates.raw_pieces).

Against those lists over every row (one list per series, sorted, then a lambda over its neighbours), the
per-link error increase over an hour of nvlink rows takes about a third of the CPU and of the memory:
docs/benchmarks.md, fourteenth pass.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from storage.bands import table_band_ms
from storage.counter_rates import Relation, Span, merged, names
from storage.increase import step_sql
from storage.schemas import SORT_KEYS
from storage.sql_text import identifier, string_literal

if TYPE_CHECKING:
    import duckdb


def band_runs_sql(
    relation: Relation, table: str, column: str, spans: Sequence[Span], step_ms: int | None
) -> str:
    """SQL of one counter's pieces per (series, band, step) over raw spans of whole bands, in (series,
    band, step) order, with n (rows) and links (rows linked to the one before) for the check.

    Each span is its own scan with its own lag(): a streamed window runs on one thread, so a span per
    DuckDB thread (split_by_band) keeps every core busy.
    """
    parts = " UNION ALL ".join(f"({_span_runs(relation, table, column, s, step_ms)})" for s in spans)
    return f"SELECT * FROM ({parts}) ORDER BY ALL"


def _span_runs(relation: Relation, table: str, column: str, span: Span, step_ms: int | None) -> str:
    keys = SORT_KEYS[table]
    band = table_band_ms(table)
    value = identifier(column)
    rows = (
        f"SELECT {', '.join(identifier(k) for k in keys)}, epoch_ms(ts) AS t, {value} AS v "
        f"FROM {relation(table, span.lo, span.hi)} WHERE {value} IS NOT NULL"
    )
    # lag() over the empty window is streamed in scan order: no sort, no partition.
    previous = ", ".join(f"lag({identifier(c)}) OVER () AS {identifier('p_' + c)}" for c in [*keys, "t", "v"])
    same = [f"{identifier('p_' + k)} IS NOT DISTINCT FROM {identifier(k)}" for k in keys]
    same += [
        "p_t < t",
        f"p_t // {band} = t // {band}",
        *([f"p_t // {step_ms} = t // {step_ms}"] if step_ms else []),
    ]
    linked = (
        f"SELECT *, coalesce({' AND '.join(same)}, false) AS linked FROM (SELECT *, {previous} FROM ({rows}))"
    )
    group = [
        *(identifier(k) for k in keys),
        f"t // {band} AS band",
        *([f"t // {step_ms} AS step"] if step_ms else []),
    ]
    return (
        f"SELECT {', '.join(group)}, {string_literal(column)} AS counter, "
        "min(t) AS t0, arg_min(v, t) AS v0, max(t) AS t1, arg_max(v, t) AS v1, "
        f"coalesce(sum(CASE WHEN linked THEN {step_sql('v', 'p_v')} END), 0) AS inc, "
        f"count(*) AS n, count_if(linked) AS links FROM ({linked}) GROUP BY ALL"
    )


def split_by_band(span: Span, band_ms: int, parts: int) -> list[Span]:
    """`span` cut at band boundaries into up to `parts` spans of about equal length."""
    first, last = span.lo // band_ms, span.hi // band_ms
    bands = last - first + 1
    cuts = sorted({first + bands * i // parts for i in range(1, parts)} - {first})
    edges = [span.lo, *(c * band_ms for c in cuts), span.hi + 1]
    return [Span(span.kind, lo, hi - 1) for lo, hi in itertools.pairwise(edges) if hi > lo]


def band_pieces(
    con: duckdb.DuckDBPyConnection,
    relation: Relation,
    table: str,
    columns: str | Sequence[str],
    spans: Sequence[Span],
    step_ms: int | None,
) -> tuple[list[pa.Table], list[Span]]:
    """The pieces of raw spans whose rows came in band order, and the spans (whole bands) that did not.

    A band that fails the check for any counter is left out for every counter: the caller reads the
    returned spans another way, all counters at once.
    """
    import pyarrow.compute as pc

    band = table_band_ms(table)
    threads = int(con.sql("SELECT current_setting('threads')").fetchall()[0][0])
    pieces: list[pa.Table] = []
    left: list[Span] = []
    for span in spans:
        parts = split_by_band(span, band, threads)
        tables = [
            con.sql(band_runs_sql(relation, table, c, parts, step_ms)).to_arrow_table()
            for c in names(columns)
        ]
        bad = pa.array(sorted({b for rows in tables for b in _broken_bands(rows)}), pa.int64())
        left += [
            Span("raw", max(span.lo, b * band), min(span.hi, (b + 1) * band - 1)) for b in bad.to_pylist()
        ]
        for rows in tables:
            if len(bad):
                rows = rows.filter(pc.invert(pc.is_in(rows.column("band"), bad)))
            pieces.append(
                rows.drop_columns([c for c in ("band", "step", "n", "links") if c in rows.column_names])
            )
    return pieces, merged(left)


def _broken_bands(rows: pa.Table) -> list[int]:
    """The bands holding a group whose rows were not one chain of neighbours (links != n - 1)."""
    import pyarrow.compute as pc

    broken = pc.not_equal(rows.column("links"), pc.subtract(rows.column("n"), pa.scalar(1, pa.int64())))
    return rows.column("band").filter(broken).to_pylist()  # type: ignore[no-any-return]
