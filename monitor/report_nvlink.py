"""NVLink over a window of the store, by the live view's one computation (monitor.view.nvlink).

`monitor report`, report.html's NVLink chart and `monitor snapshot` read the rack's NVLink traffic
here. Each direction of each (gpu, link) in the nvlink table is its own counter series: StoreReader.rate
gives its rate over the window (or per step) by the one reset rule (storage.increase), from the 1 min /
1 h rollups where whole buckets fit. The per-link (TX, RX) rates then go through link_sums, the same
function the live header, heatmap and switch trays use: TX+RX per link, links above the line rate left
out as implausible, summed per GPU and rack, with the GPUs the sum covers.

The GPU table's all-link columns (nvlink_tx_kib / nvlink_rx_kib) are not read: NVML's total field can
answer 0 or NOT_SUPPORTED while the links count, and a figure made from them is not the header's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from collectors.rack import GPUS, LINKS_PER_GPU
from monitor.view.nvlink import KIB, NvlinkRates, link_sums
from storage.rack_total import RackTotal
from storage.reader import StoreReader

DIRECTIONS = ("tx_kib", "rx_kib")
"""The nvlink table's two traffic counters, in link_sums' (TX, RX) order."""


@dataclass(frozen=True, slots=True)
class NvlinkTotal:
    """The rack's NVLink traffic over a span: TX+RX in TB/s over the GPUs it covers, and what it leaves out.

    Attributes:
        total: TB/s, covered = GPUs with at least one link rate, of = the rack's GPUs in the window.
        implausible: links left out because a direction exceeded the line rate.
    """

    total: RackTotal
    implausible: int

    def as_dict(self) -> dict[str, Any]:
        """The JSON form `monitor report` and `monitor snapshot` print."""
        return {
            "tb_s": self.total.value,
            "covered": self.total.covered,
            "of": self.total.of,
            "implausible_links": self.implausible,
        }


def rack_total(rates: NvlinkRates, of: int) -> NvlinkTotal:
    """A span's NvlinkRates as the rack total in TB/s, covering rates.gpus of `of` GPUs."""
    return NvlinkTotal(RackTotal(rates.rack_tbps, rates.gpus, of), len(rates.implausible))


def epoch_ms_list(ts: pa.ChunkedArray) -> list[int]:
    """Epoch ms of a timestamp column, whatever its unit (its raw integers are not ms)."""
    return pc.cast(pc.cast(ts, pa.timestamp("ms", tz="UTC")), pa.int64()).to_pylist()


def link_increases(
    reader: StoreReader, since_ms: int, until_ms: int, step_ms: int | None = None, also: Sequence[str] = ()
) -> pa.Table:
    """Each link direction's increase and seconds over [since_ms, until_ms] (or per step): StoreReader.rates.

    Columns: gpu, link, counter (a DIRECTIONS name, or one of `also`: more nvlink counters a caller wants
    from the same read, report.html's error timeline), ts (the step's start, with step_ms), increase,
    seconds, rate. Every counter in one statement: the raw rows at the window's edges are decoded once.
    """
    return reader.rates("nvlink", (*DIRECTIONS, *also), since_ms, until_ms, step_ms=step_ms)


def of_counters(rated: pa.Table, counters: Sequence[str]) -> pa.Table:
    """The rows of a rates table (link_increases) whose counter is one of `counters`."""
    return rated.filter(pc.is_in(rated.column("counter"), value_set=pa.array(counters, pa.string())))


def coarsened(stepped: pa.Table, step_ms: int | None) -> pa.Table:
    """link_increases per step regrouped into steps of `step_ms` (a multiple of theirs), or into one row
    per series over the whole window (None).

    Exact, not an approximation: StoreReader.rates counts the pair of samples across a step boundary
    in the later step, so a series' increases and seconds over its steps add up to those over any
    union of them (integer counters: the sums are exact in doubles).
    """
    keys = ["gpu", "link", "counter"]
    columns = {k: stepped.column(k) for k in keys}
    if step_ms is not None:
        ms = pc.cast(pc.cast(stepped.column("ts"), pa.timestamp("ms", tz="UTC")), pa.int64())
        start = pc.multiply(pc.divide(ms, step_ms), step_ms)  # epoch ms >= 0: integer division floors
        columns["ts"] = pc.cast(pc.cast(start, pa.timestamp("ms", tz="UTC")), stepped.schema.field("ts").type)
        keys.append("ts")
    columns |= {"increase": stepped.column("increase"), "seconds": stepped.column("seconds")}
    summed = (
        pa.table(columns)
        .group_by(keys, use_threads=False)
        .aggregate([("increase", "sum"), ("seconds", "sum")])
    )
    increase, seconds = summed.column("increase_sum"), summed.column("seconds_sum")
    out = summed.select(keys).append_column("increase", increase).append_column("seconds", seconds)
    return out.append_column("rate", pc.divide(increase, seconds))


def rates_by_step(
    rated: pa.Table, since_ms: int, until_ms: int, step_ms: int | None = None
) -> dict[int, NvlinkRates]:
    """link_increases (per step of step_ms, or over the window) summed by link_sums: one entry, or one
    per step.

    Returns:
        Keyed by the step's start (epoch ms) with step_ms, else by since_ms. A step has an entry when
        some link of the rack has a finite rate in it; its sums take the links with both directions.
    """
    usable = _usable_rates(rated, since_ms, step_ms)
    per_step: dict[int, dict[int, tuple[float, float]]] = {
        start: {} for start in pc.unique(usable.column("start")).to_pylist()
    }
    tx = usable.filter(pc.equal(usable.column("direction"), 0))
    rx = usable.filter(pc.equal(usable.column("direction"), 1))
    # Links in ascending key order within each step, as the rows came: link_sums adds them in this order.
    both = tx.join(rx, ["start", "key"], join_type="inner", left_suffix="_tx", right_suffix="_rx")
    both = both.sort_by([("start", "ascending"), ("key", "ascending")])
    columns = (both.column(c).to_pylist() for c in ("start", "key", "gbps_tx", "gbps_rx"))
    for start, key, up, down in zip(*columns, strict=True):
        per_step[start][key] = (up, down)
    span = step_ms or max(1, until_ms - since_ms)
    return {start: link_sums(links, span) for start, links in sorted(per_step.items())}


def _usable_rates(rated: pa.Table, since_ms: int, step_ms: int | None) -> pa.Table:
    """The rows of link_increases with a finite rate on a link of the rack: start (epoch ms), key
    (monitor.view.nvlink.link_key's), direction (index in DIRECTIONS) and the rate in GB/s."""
    gpu, link, rate = (rated.column(c) for c in ("gpu", "link", "rate"))
    on_rack = pc.and_(
        pc.and_(pc.greater_equal(gpu, 0), pc.less(gpu, GPUS)),
        pc.and_(pc.greater_equal(link, 0), pc.less(link, LINKS_PER_GPU)),
    )
    if step_ms:
        start = pc.cast(pc.cast(rated.column("ts"), pa.timestamp("ms", tz="UTC")), pa.int64())
    else:
        start = pa.repeat(pa.scalar(since_ms, pa.int64()), rated.num_rows)
    direction = pc.index_in(rated.column("counter"), value_set=pa.array(DIRECTIONS, pa.string()))
    table = pa.table(
        {
            "start": start,
            "key": pc.add(pc.multiply(gpu.cast(pa.int64()), LINKS_PER_GPU), link.cast(pa.int64())),
            "direction": direction,
            "gbps": pc.divide(pc.multiply(rate, float(KIB)), 1e9),
        }
    )
    finite = pc.fill_null(pc.is_finite(rate), False)
    return table.filter(pc.and_(pc.and_(pc.fill_null(on_rack, False), finite), pc.is_valid(direction)))


def nvlink_rates_over(
    reader: StoreReader, since_ms: int, until_ms: int, step_ms: int | None = None
) -> dict[int, NvlinkRates]:
    """Per-link rates over [since_ms, until_ms] summed by link_sums: one entry, or one per step (see
    rates_by_step)."""
    return rates_by_step(link_increases(reader, since_ms, until_ms, step_ms), since_ms, until_ms, step_ms)


def nvlink_total(
    reader: StoreReader, since_ms: int, until_ms: int, of: int, stepped: pa.Table | None = None
) -> NvlinkTotal:
    """The rack's NVLink TX+RX over the window: each link's rate over it, summed (of: the rack's GPUs).

    stepped: link_increases of this window per step, when the caller has them (report.html's NVLink
    timeline): the window's rates are summed from them (coarsened) instead of read again.
    """
    rated = link_increases(reader, since_ms, until_ms) if stepped is None else coarsened(stepped, None)
    rates = rates_by_step(rated, since_ms, until_ms).get(since_ms)
    if rates is None:
        return NvlinkTotal(RackTotal(None, 0, of), 0)
    return rack_total(rates, of)


Link = tuple[int, int]
"""A link of the rack: (gpu, link), as the nvlink table keys it."""


def links_sql(links: Iterable[Link]) -> str:
    """A SQL condition on the nvlink table's gpu and link columns that holds for exactly `links`.

    A row-value IN over (gpu, link) pairs (a hashed lookup, no composite number that could collide),
    behind a `gpu IN` that lets row groups whose gpu statistics miss every GPU named be skipped.
    FALSE for no link.
    """
    pairs = sorted({(int(g), int(k)) for g, k in links})
    if not pairs:
        return "FALSE"
    gpus = ", ".join(str(g) for g in sorted({g for g, _ in pairs}))
    return f"(gpu IN ({gpus}) AND (gpu, link) IN ({', '.join(f'({g}, {k})' for g, k in pairs)}))"
