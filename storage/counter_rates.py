"""Counter increases over a window from rollup buckets where whole and raw rows at the edges.

A window's increase is cut into pieces in time order: whole 1 h buckets, whole 1 min buckets, and raw
rows where no bucket fits (the window edges, the open hour's newest minutes that no rollup part holds
yet). Each piece gives, per series, its first and last sample (time, value) and its reset-corrected
increase inside; the pieces are chained per series (storage/pieces.py), the pair across two
neighbouring pieces corrected for a reset the same way. That is exactly the sum over consecutive raw
samples, so the answer equals a lag() over every raw row while reading a few hundred bucket rows and a
few minutes of raw ones.

A bucket is used only where its `<c>_inc` and first_ms/last_ms are set (see rollups.py); others (a
counter NULL at a bucket edge, files written before `_inc` existed) are read from raw rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from storage.increase import step_sql
from storage.layout import HOUR_MS, Manifest
from storage.rollups import OPEN_STEP, ROLLED_UP, ROLLUP_STEPS, open_rolled_until, rollup_name
from storage.schemas import SORT_KEYS
from storage.sql_text import identifier, string_literal

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

COARSEST_FIRST: tuple[tuple[str, int], ...] = tuple(sorted(ROLLUP_STEPS.items(), key=lambda kv: -kv[1]))
"""Rollup resolutions, widest bucket first: a window takes the coarsest buckets that fit it."""

Relation = Callable[[str, int, int], str]
"""StoreReader.relation: (table, since_ms, until_ms) -> a SQL relation."""


@dataclass(frozen=True)
class Span:
    """Part of a window read one way: kind 'raw' or a rollup step ('1m', '1h'); lo..hi ms inclusive."""

    kind: str
    lo: int
    hi: int


def rolled_until(manifest: Manifest, table: str) -> int:
    """Epoch ms before which every hour of `table` is compacted, so its rollups exist; 0 if none is."""
    sealed = manifest.sealed_through_ms
    if sealed is None or table not in ROLLED_UP:
        return 0
    bound = (sealed + 1) // HOUR_MS * HOUR_MS
    for f in manifest.of(table):
        # An hour still in segments or parts has no rollup yet, even when sealed_through passed it.
        if f.level in ("seg", "part"):
            bound = min(bound, f.min_ts // HOUR_MS * HOUR_MS)
    return bound


def rolled_bounds(manifest: Manifest, table: str) -> dict[str, int]:
    """Per rollup step, the epoch ms before which its buckets of `table` exist in files: every step's up to
    rolled_until, and the open hour's OPEN_STEP buckets past it as far as its rollup parts go."""
    hour = rolled_until(manifest, table)
    bounds = dict.fromkeys(ROLLUP_STEPS, hour)
    if hour and table in ROLLED_UP:
        bounds[OPEN_STEP] = open_rolled_until(manifest.of(rollup_name(table, OPEN_STEP)), hour)
    return bounds


def plan(
    since_ms: int,
    until_ms: int,
    step_ms: int | None,
    rolled_ms: int | Mapping[str, int],
    banned: dict[str, set[int]] | None = None,
) -> list[Span]:
    """Cover [since_ms, until_ms] with rollup buckets (coarsest first) and raw spans, in time order.

    Args:
        since_ms: window start.
        until_ms: window end, inclusive.
        step_ms: a bucket never straddles a multiple of step_ms (each piece falls in one step).
        rolled_ms: buckets must end before this (see rolled_until), or per step (see rolled_bounds).
        banned: bucket starts per resolution that must not be used.
    """
    if isinstance(rolled_ms, int):
        rolled_ms = dict.fromkeys(ROLLUP_STEPS, rolled_ms)
    banned = banned or {}
    cuts = [since_ms]
    if step_ms:
        cuts += range((since_ms // step_ms + 1) * step_ms, until_ms + 1, step_ms)
    spans: list[Span] = []
    for lo, nxt in zip(cuts, [*cuts[1:], until_ms + 1], strict=True):
        spans += _cover(lo, nxt - 1, COARSEST_FIRST, rolled_ms, banned)
    return spans


def _cover(
    lo: int,
    hi: int,
    steps: Sequence[tuple[str, int]],
    rolled_ms: Mapping[str, int],
    banned: dict[str, set[int]],
) -> list[Span]:
    if not steps:
        return [Span("raw", lo, hi)]
    kind, ms = steps[0]
    out: list[Span] = []
    cursor = lo
    bucket = -(-lo // ms) * ms
    while bucket + ms - 1 <= min(hi, rolled_ms[kind] - 1):
        if bucket not in banned.get(kind, ()):
            if cursor < bucket:
                out += _cover(cursor, bucket - 1, steps[1:], rolled_ms, banned)
            out.append(Span(kind, bucket, bucket + ms - 1))
            cursor = bucket + ms
        bucket += ms
    if cursor <= hi:
        out += _cover(cursor, hi, steps[1:], rolled_ms, banned)
    return out


def span_relations(
    relation: Relation, manifest: Manifest, table: str, since_ms: int, until_ms: int
) -> list[tuple[Span, str]]:
    """[since_ms, until_ms] of `table` as relations in time order: each run of whole compacted hours or
    minutes as its rollup's buckets (a bucket row stamped with its start), raw rows where none fits.

    For questions whose answer a bucket row carries whole (which series had rows, their first and last
    times, their last dimensions): a day reads a few thousand bucket rows instead of millions of raw ones.
    """
    rolled = rolled_bounds(manifest, table)
    out = []
    for span in merged(plan(since_ms, until_ms, None, rolled)):
        if span.kind == "raw":
            out.append((span, relation(table, span.lo, span.hi)))
        else:
            last_start = span.hi - ROLLUP_STEPS[span.kind] + 1
            out.append((span, relation(rollup_name(table, span.kind), span.lo, last_start)))
    return out


def merged(spans: Sequence[Span]) -> list[Span]:
    """Neighbouring spans of one kind joined (one relation each to query)."""
    out: list[Span] = []
    for s in spans:
        if out and out[-1].kind == s.kind and out[-1].hi + 1 == s.lo:
            out[-1] = Span(s.kind, out[-1].lo, s.hi)
        else:
            out.append(s)
    return out


def has_increase(
    con: duckdb.DuckDBPyConnection, relation: Relation, table: str, column: str, span: Span
) -> bool:
    """Whether a rollup span's files (all of them) have the columns `_inc` came with."""
    rel = relation(rollup_name(table, span.kind), span.lo, span.hi)
    try:
        con.sql(f"SELECT first_ms, last_ms, {identifier(column + '_inc')} FROM {rel} LIMIT 1").fetchall()
    except missing_column_errors():
        return False
    return True


def missing_column_errors() -> tuple[type[BaseException], ...]:
    """DuckDB's errors for a file lacking a column (imported here: readers of the rollup cache never
    load DuckDB)."""
    import duckdb

    return (duckdb.BinderException, duckdb.InvalidInputException)


def names(columns: str | Sequence[str]) -> tuple[str, ...]:
    """One counter column or several, as a tuple."""
    return (columns,) if isinstance(columns, str) else tuple(columns)


def bucket_pieces(
    relation: Relation, table: str, column: str, span: Span, exact: bool, has_inc: bool = True, also: str = ""
) -> str:
    """SQL of the pieces (one per series and bucket) of a rollup span.

    Without exact, a bucket lacking `_inc` counts last - first (a reset inside it is missed, one
    between buckets is not) over [bucket start, bucket end - 1 ms]: the rollups' answer before `_inc`.
    has_inc False: the files have no `_inc`, first_ms or last_ms columns at all (see has_increase).
    `also`: more columns of the bucket rows to select (", expr AS name, ...").
    """
    ms = ROLLUP_STEPS[span.kind]
    keys = ", ".join(identifier(k) for k in SORT_KEYS[table])
    first, last, inc = (identifier(f"{column}_{end}") for end in ("first", "last", "inc"))
    rel = relation(rollup_name(table, span.kind), span.lo, span.hi - ms + 1)
    first_ms, last_ms = ("first_ms", "last_ms") if has_inc else ("NULL", "NULL")
    if not has_inc:
        inc = "NULL"
    fallback = step_sql(last, first)
    return (
        f"SELECT {keys}, {string_literal(column)} AS counter, "
        f"epoch_ms(ts) + coalesce({first_ms}, 0) AS t0, {first} AS v0, "
        f"epoch_ms(ts) + coalesce({last_ms}, {ms - 1}) AS t1, {last} AS v1, "
        f"{inc if exact else f'coalesce({inc}, {fallback})'} AS inc{also} "
        f"FROM {rel} WHERE {first} IS NOT NULL"
    )


def raw_pieces(
    relation: Relation, table: str, columns: str | Sequence[str], spans: Sequence[Span], step_ms: int | None
) -> str:
    """SQL of the pieces (one per series, counter, raw span and step) of raw spans, from their rows only.

    Several counters of one table are read in one scan (the rows' decode is most of the cost), each a
    series of its own from there on: `counter` names it. Each piece's values are gathered in time
    order into one list and its increase is step_sql over that list's neighbours: a sort per piece,
    not one window sort over every row with its keys (half the CPU on the open hour of serving_hist).
    One row per (entity, tick), so no two values of a series share a time.
    """
    keys = ", ".join(identifier(k) for k in SORT_KEYS[table])
    values = ", ".join(identifier(c) for c in names(columns))
    step = f"epoch_ms(ts) // {step_ms}" if step_ms else "0"
    rows = " UNION ALL ".join(
        f"SELECT {keys}, epoch_ms(ts) AS t, {s.lo} AS span, {step} AS step, {values} "
        f"FROM {relation(table, s.lo, s.hi)}"
        for s in spans
    )
    # UNPIVOT leaves NULL values out: a sample without the counter is a gap, as in storage.increase.
    unpivoted = f"UNPIVOT ({rows}) ON {values} INTO NAME counter VALUE v"
    if len(names(columns)) == 1:  # the same rows without UNPIVOT's cost (a tenth of serving_hist's)
        only = string_literal(names(columns)[0])
        unpivoted = f"SELECT *, {only} AS counter, {values} AS v FROM ({rows}) WHERE {values} IS NOT NULL"
    listed = (
        f"SELECT {keys}, counter, min(t) AS t0, max(t) AS t1, list(v ORDER BY t) AS vs "
        f"FROM ({unpivoted}) GROUP BY {keys}, counter, span, step"
    )
    # vs[2:][i] follows vs[i] (lists count from 1): each consecutive pair once, as lag() gave it.
    pairs = f"list_transform(vs[2:], lambda v, i: {step_sql('v', 'vs[i]')})"
    ends = "t0, vs[1] AS v0, t1, vs[-1] AS v1"
    return f"SELECT {keys}, counter, {ends}, coalesce(list_sum({pairs}), 0) AS inc FROM ({listed})"


def raw_rows(relation: Relation, table: str, columns: str | Sequence[str], spans: Sequence[Span]) -> str:
    """SQL of raw spans' rows: series keys, t (epoch ms) and the counters (see pieces.sample_pieces)."""
    keys = ", ".join(identifier(k) for k in SORT_KEYS[table])
    values = ", ".join(identifier(c) for c in names(columns))
    return " UNION ALL ".join(
        f"SELECT {keys}, epoch_ms(ts) AS t, {values} FROM {relation(table, s.lo, s.hi)}" for s in spans
    )


def checked_bucket_pieces(
    con: duckdb.DuckDBPyConnection, relation: Relation, table: str, columns: str | Sequence[str], span: Span
) -> tuple[set[int], list[pa.Table]]:
    """A rollup span's unusable bucket starts and, when there are none, its pieces (bucket_pieces, exact),
    in one statement a counter.

    A bucket is unusable where a counter has a first value but no `_inc`, first_ms or last_ms (a value
    NULL at the bucket's edge; see rollups.py): its raw rows are read instead. Files written before
    `_inc` existed lack the columns: every bucket of the span is unusable.
    """
    import pyarrow.compute as pc

    tables = []
    try:
        for c in names(columns):
            usable = f"first_ms IS NOT NULL AND last_ms IS NOT NULL AND {identifier(c + '_inc')} IS NOT NULL"
            also = f", epoch_ms(ts) AS bucket, {usable} AS usable"
            tables.append(
                con.sql(bucket_pieces(relation, table, c, span, exact=True, also=also)).to_arrow_table()
            )
    except missing_column_errors():
        return set(range(span.lo, span.hi + 1, ROLLUP_STEPS[span.kind])), []
    bad = {
        int(t)
        for rows in tables
        for t in rows.filter(pc.invert(rows.column("usable"))).column("bucket").to_pylist()
    }
    return bad, [] if bad else [rows.drop_columns(["bucket", "usable"]) for rows in tables]
