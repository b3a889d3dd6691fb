"""The compactor: merges small segments into hourly and daily files, writes rollups, applies retention.

Small files cost at query time (~0.15 ms each per query) and compress worse, so flush segments are
merged: segments of the open hour into parts (with 1-minute rollups of its sealed minutes so far), a
complete hour into one hour file (plus its 1-minute and 1-hour rollups, which replace the open hour's),
a complete day's hour files into one day file. "Complete" is judged against the
manifest's sealed_through_ms, so no row can arrive later for a compacted hour.

Merged files are sorted by (time band, entity keys, ts) with row groups inside one band (see
segments.py), so a short window reads a band's row groups, not the whole hour or day: 10 minutes, 2 for
the big tables (SHORT_BANDED), an hour for the small ones (HOUR_BANDED). The open hour's sealed minutes
are rolled as its segments merge, or once they lag ROLL_LAG_MS, into one rollup part per hour.

Every swap is one manifest publication (outputs in, inputs out); inputs are deleted only after a
grace period, because a reader that loaded the previous manifest may still be scanning them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import pyarrow as pa

from storage.bands import table_band_ms, table_layout, table_schema
from storage.layout import DAY_MS, HOUR_MS, FileEntry, LiveManifest, file_relpath, unique_name
from storage.rollups import (
    OPEN_STEP,
    ROLLED_UP,
    ROLLUP_STEPS,
    ROLLUP_TABLES,
    compute_rollup,
    open_rolled_until,
    rollup_name,
)
from storage.row_order import banded_chunks, merged_chunks
from storage.schemas import TABLES, conform
from storage.segments import write_atomic

log = logging.getLogger("storage.compactor")

DAY = 86_400_000
DEFAULT_RETENTION_MS: dict[str, int] = {
    "gpu": 30 * DAY,
    "nvlink": 7 * DAY,
    "events": 365 * DAY,
    "processes": 30 * DAY,
    "serving": 30 * DAY,
    "serving_hist": 30 * DAY,
    "host": 30 * DAY,
    **{name: 90 * DAY for name in ROLLUP_TABLES if name.endswith("_1m")},
    **{name: 730 * DAY for name in ROLLUP_TABLES if name.endswith("_1h")},
}
"""How long each table's rows are kept, in ms of data time; raw NVLink is the bulk, so it goes first."""

ROLL_LAG_MS = 120_000
"""The open hour's sealed minutes are rolled once they are this far behind, merge or not: a recorder seals
every 10 s and merges every 30 seals, so without it "the last hour" read up to 5 minutes of raw rows at
its end (about 3 ms of CPU a second of the full rack), for one compaction child a minute or two more."""


def sealed_minutes_end(sealed: int, hour: int) -> int:
    """The end (epoch ms) of the open hour's last minute wholly at or before sealed_through_ms: no row can
    arrive later for a minute before it, the same rule that makes an hour complete."""
    step_ms = ROLLUP_STEPS[OPEN_STEP]
    return min(sealed + 1, hour + HOUR_MS) // step_ms * step_ms


class Compactor:
    """Merges, rolls up and expires the files of one store; run by its one writer.

    Args:
        live: the writer's manifest.
        grace_s: seconds a superseded file stays on disk for readers that still use it.
        retention_ms: per-table retention overrides (data time), on top of DEFAULT_RETENTION_MS.
        merge_segments: segments of the open hour merged into one part once this many exist.
        roll_lag_ms: the open hour's sealed minutes are rolled once this far behind (ROLL_LAG_MS).
    """

    def __init__(
        self,
        live: LiveManifest,
        *,
        grace_s: float = 60.0,
        retention_ms: Mapping[str, int] | None = None,
        merge_segments: int = 30,
        roll_lag_ms: int = ROLL_LAG_MS,
    ) -> None:
        """Compact the store behind `live`."""
        self.live = live
        self.root: Path = live.root
        self.grace_s = grace_s
        self.retention_ms = {**DEFAULT_RETENTION_MS, **(retention_ms or {})}
        self.merge_segments = merge_segments
        self.roll_lag_ms = roll_lag_ms
        self._seq = 0
        self._failing = False

    def run_once(self) -> int:
        """Do every merge, rollup and expiry that is due; return how many files were written or dropped.

        A failure (e.g. a full disk) is logged once, leaves the store as it was, and is retried on
        the next call.
        """
        done = 0
        try:
            done += self._compact_hours()
            done += self._compact_days()
            done += self._expire()
            done += self.live.purge()
        except OSError as err:
            if not self._failing:
                log.error("store %s: compaction failed, will retry: %s", self.root, err)
            self._failing = True
            return done
        if self._failing:
            log.warning("store %s: compaction works again", self.root)
        self._failing = False
        return done

    def due(self) -> bool:
        """Whether run_once would merge, roll up or expire anything now (purges aside), by the manifest.

        The same conditions as _compact_hours, _compact_days and _expire, without reading a file: a writer
        asks this after every seal and starts a compaction process only when it says yes.
        """
        manifest = self.live.current
        sealed = manifest.sealed_through_ms
        if sealed is None:
            return False
        open_segs: dict[tuple[str, int], list[FileEntry]] = defaultdict(list)
        days: dict[tuple[str, int], list[FileEntry]] = defaultdict(list)
        for f in manifest.files:
            if f.table in self.retention_ms and f.max_ts < sealed - self.retention_ms[f.table]:
                return True
            hour = f.min_ts // HOUR_MS * HOUR_MS
            if f.level in ("seg", "part") and sealed >= hour + HOUR_MS - 1:
                return True
            if f.level == "seg":
                open_segs[(f.table, hour)].append(f)
            if f.level in ("hour", "day"):
                days[(f.table, f.min_ts // DAY_MS * DAY_MS)].append(f)
        if any(len(segs) >= self.merge_segments for segs in open_segs.values()):
            return True
        if any(self._roll_lags(table, hour, segs, sealed) for (table, hour), segs in open_segs.items()):
            return True
        return any(
            sealed >= day + DAY_MS - 1 and not (len(files) == 1 and files[0].level == "day")
            for (_, day), files in days.items()
        )

    def _merge(self, table: str, inputs: Sequence[FileEntry], level: str, at_ms: int) -> FileEntry:
        keys, counters = table_layout(table)
        schema = table_schema(table)
        self._seq += 1
        rel = file_relpath(table, at_ms, unique_name(level, at_ms, self._seq))
        chunks = merged_chunks([self.root / f.path for f in inputs], schema, keys, table_band_ms(table))
        return write_atomic(
            self.root, rel, chunks, table=table, level=level, schema=schema, keys=keys, counters=counters
        )

    def _write(self, table: str, rows: pa.Table, level: str, at_ms: int) -> FileEntry:
        keys, counters = table_layout(table)
        self._seq += 1
        rel = file_relpath(table, at_ms, unique_name(level, at_ms, self._seq))
        return write_atomic(
            self.root,
            rel,
            banded_chunks(rows, keys, table_band_ms(table)),
            table=table,
            level=level,
            schema=table_schema(table),
            keys=keys,
            counters=counters,
        )

    def relayout(self, tables: Collection[str] | None = None) -> int:
        """Rewrite every hour and day file in the current layout; return how many were rewritten.

        For stores compacted before files were banded (or before a footer or encoding change): their
        files stay readable as they are, but short windows read all of them. Each file is swapped in
        its own manifest publication. `tables` limits the rewrite to those tables (None: all).
        """
        done = 0
        for f in list(self.live.current.files):
            if f.level not in ("hour", "day") or (tables is not None and f.table not in tables):
                continue
            unit = HOUR_MS if f.level == "hour" else DAY_MS
            self._publish([self._merge(f.table, [f], f.level, f.min_ts // unit * unit)], [f.path])
            done += 1
        return done

    def _compact_hours(self) -> int:
        manifest = self.live.current
        sealed = manifest.sealed_through_ms
        groups: dict[tuple[str, int], list[FileEntry]] = defaultdict(list)
        for f in manifest.files:
            if f.level in ("seg", "part") and f.table in TABLES:  # rollup parts go with their raw hour
                groups[(f.table, f.min_ts // HOUR_MS * HOUR_MS)].append(f)
        done = 0
        for (table, hour), files in sorted(groups.items(), key=lambda kv: kv[0][1]):
            complete = sealed is not None and sealed >= hour + HOUR_MS - 1
            if complete:
                done += self._seal_hour(table, hour, files)
            else:
                done += self._merge_open_hour(table, hour, files, sealed)
        return done

    def _merge_open_hour(self, table: str, hour: int, files: list[FileEntry], sealed: int | None) -> int:
        """Merge the open hour's segments into a part once there are enough, with the OPEN_STEP rollups of
        the minutes sealed since the last merge, in one publication."""
        segs = [f for f in files if f.level == "seg"]
        if len(segs) < self.merge_segments:
            return self._roll_lagging_minutes(table, hour, files, sealed)
        part = self._merge(table, segs, "part", hour)
        sources = [self.root / f.path for f in files if f.level == "part"] + [self.root / part.path]
        try:
            rolled, folded = self._roll_open_minutes(table, hour, sources, sealed)
        except OSError:
            (self.root / part.path).unlink(missing_ok=True)
            raise
        self._publish([part, *rolled], [f.path for f in segs] + folded)
        return 1 + len(rolled)

    def _roll_lags(self, table: str, hour: int, segs: Sequence[FileEntry], sealed: int | None) -> bool:
        """Whether the open hour's segments hold sealed minutes that are not rolled and lag roll_lag_ms.

        Only segments count (a part's minutes were rolled as it merged): a segment whose rows skip the
        unrolled minutes (a gap) may ask for a roll that finds nothing, until it merges into a part.
        """
        if table not in ROLLED_UP or sealed is None or not segs:
            return False
        lo = open_rolled_until(self.live.current.of(rollup_name(table, OPEN_STEP)), hour)
        hi = sealed_minutes_end(sealed, hour)
        return hi - lo >= self.roll_lag_ms and any(f.max_ts >= lo and f.min_ts < hi for f in segs)

    def _roll_lagging_minutes(self, table: str, hour: int, files: list[FileEntry], sealed: int | None) -> int:
        """Between merges: the open hour's sealed minutes rolled from its parts and segments once they lag
        (_roll_lags), published alone; the segments stay for the next merge."""
        if not self._roll_lags(table, hour, [f for f in files if f.level == "seg"], sealed):
            return 0
        rolled, folded = self._roll_open_minutes(table, hour, [self.root / f.path for f in files], sealed)
        if not rolled:
            return 0
        self._publish(rolled, folded)
        return len(rolled)

    def _publish(self, added: list[FileEntry], removed: list[str]) -> None:
        """One manifest publication: `added` in, `removed` out; on a failure the new files are deleted."""
        try:
            self.live.commit(added, removed, grace_s=self.grace_s)
        except OSError:
            for f in added:
                (self.root / f.path).unlink(missing_ok=True)
            raise

    def _open_parts(self, name: str, hour: int) -> list[FileEntry]:
        """A rollup table's 'part' files of the open hour starting at `hour` (its rolled minutes)."""
        return [
            f for f in self.live.current.of(name) if f.level == "part" and hour <= f.min_ts < hour + HOUR_MS
        ]

    def _roll_open_minutes(
        self, table: str, hour: int, sources: list[Path], sealed: int | None
    ) -> tuple[list[FileEntry], list[str]]:
        """The open hour's OPEN_STEP buckets from where its rollup parts end to the last sealed minute,
        written with the buckets of the hour's rollup parts so far as one part: (added, parts it replaces).

        Only minutes wholly at or before sealed_through_ms: no row can arrive later for them, the same
        rule that makes an hour complete. One part an hour, not one a roll: a reader of "the last hour"
        opens each rollup file (2 to 3 ms a file and table), and a roll comes every couple of minutes."""
        if table not in ROLLED_UP or sealed is None:
            return [], []
        name, step_ms = rollup_name(table, OPEN_STEP), ROLLUP_STEPS[OPEN_STEP]
        lo = open_rolled_until(self.live.current.of(name), hour)
        hi = sealed_minutes_end(sealed, hour)
        if hi <= lo:
            return [], []
        rolled = compute_rollup(table, step_ms, sources, between=(lo, hi))
        if not rolled.num_rows:
            return [], []
        parts = self._open_parts(name, hour)
        if parts:
            import pyarrow.parquet as pq  # the child compactor's: a writer that only seals never folds

            schema = table_schema(name)
            kept = [conform(pq.read_table(self.root / f.path), schema) for f in parts]
            rolled = pa.concat_tables([*kept, conform(rolled, schema)])
        return [self._write(name, rolled, "part", hour)], [f.path for f in parts]

    def _seal_hour(self, table: str, hour: int, files: list[FileEntry]) -> int:
        """Merge an hour's segments and parts into one hour file and write its rollups."""
        hour_file = self._merge(table, files, "hour", hour)
        added = [hour_file]
        if table in ROLLED_UP:
            rows = self.root / hour_file.path
            for step in ROLLUP_STEPS:
                rolled = self._hour_rollup(table, step, rows, hour)
                added.append(self._write(rollup_name(table, step), rolled, "hour", hour))
        # The open hour's rollup parts go in the same publication as the hour's rollups that replace them.
        replaced = [f.path for f in files] + [
            f.path for step in ROLLUP_STEPS for f in self._open_parts(rollup_name(table, step), hour)
        ]
        self._publish(added, replaced)
        return len(added)

    def _hour_rollup(self, table: str, step: str, hour_file: Path, hour: int) -> pa.Table:
        """An hour's buckets of `step` from its hour file; for OPEN_STEP, only the minutes its rollup parts
        lack: the parts rolled the same raw rows (sealed, so unchanged since) as they were sealed."""
        step_ms = ROLLUP_STEPS[step]
        if step != OPEN_STEP:
            return compute_rollup(table, step_ms, hour_file)
        name = rollup_name(table, step)
        parts = self._open_parts(name, hour)
        rest = compute_rollup(
            table, step_ms, hour_file, between=(open_rolled_until(parts, hour), hour + HOUR_MS)
        )
        if not parts:
            return rest
        import pyarrow.parquet as pq  # here: only a store with rollup parts needs it

        rolled = [conform(pq.read_table(self.root / f.path), rest.schema) for f in parts]
        return pa.concat_tables([*rolled, rest])

    def _compact_days(self) -> int:
        manifest = self.live.current
        sealed = manifest.sealed_through_ms
        if sealed is None:
            return 0
        groups: dict[tuple[str, int], list[FileEntry]] = defaultdict(list)
        for f in manifest.files:
            if f.level in ("hour", "day"):
                groups[(f.table, f.min_ts // DAY_MS * DAY_MS)].append(f)
        done = 0
        for (table, day), files in sorted(groups.items(), key=lambda kv: kv[0][1]):
            open_rows = any(
                f.level in ("seg", "part") and f.table == table and day <= f.min_ts < day + DAY_MS
                for f in manifest.files
            )
            if sealed < day + DAY_MS - 1 or open_rows:
                continue
            if len(files) == 1 and files[0].level == "day":
                continue
            self._publish([self._merge(table, files, "day", day)], [f.path for f in files])
            done += 1
        return done

    def _expire(self) -> int:
        manifest = self.live.current
        sealed = manifest.sealed_through_ms
        if sealed is None:
            return 0
        old = [
            f.path
            for f in manifest.files
            if f.table in self.retention_ms and f.max_ts < sealed - self.retention_ms[f.table]
        ]
        if old:
            self.live.commit([], old, grace_s=self.grace_s)
            log.info("store %s: %d files past retention", self.root, len(old))
        return len(old)
