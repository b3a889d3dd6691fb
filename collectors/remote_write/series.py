"""The store's rows as remote-write series: the agent's names and labels, plus `rack`, `tray`, `gpu`.

GPU metrics carry dcgm-exporter's names (collectors.agent_names.GPU_METRICS: the agent's page) and
labels, so dashboards and alerts built for dcgm-exporter read them unchanged:

- `gpu`: the GPU's place in its tray, 0..3 (module - 1), dcgm-exporter's tray-local index where the
  driver enumerates the modules in order; on a host not in a rack (tray 0) its NVML index.
- `UUID` (dcgm-exporter's spelling), `Hostname` where the rack config names the tray's host,
  `tray` (compute tray 1..18; 0 off-rack) and `rack` (the rack's name).

Per-link NVLink metrics are the agent's `rackmon_nvlink_*` with a `link` label; inference servers'
metrics carry the server's own family names (vLLM `vllm:...`, SGLang `sglang:...`, TensorRT-LLM,
Triton, Dynamo: collectors.mappings.engines) with `instance` (the [[server]] name) and the engine's
model label; histograms keep their buckets (`_bucket{le}`, `_count`, `_sum`). Where the store's column
is not the server's family itself (a token count read from a histogram's `_sum`, a histogram kept in
another unit), the name is `rackmon_serving_<column>` instead, so no series claims a meaning it lacks.
The collecting host's own row becomes `rackmon_host_<column>{host}`. Events and process lists are not
samples and are not sent.

Serving counters are the store's: running totals of per-series increases since the collector first
saw the endpoint (storage.schemas.SERVING), so rate() over them is the server's rate, summed over its
engines and ranks; their absolute value starts at the collector's start, not the server's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from collectors.agent_names import GPU_METRICS, GPU_STATE, NVLINK_METRICS
from collectors.mappings.engines import ENGINES
from collectors.rack import GPUS_PER_TRAY
from collectors.remote_write.wire import WriteRequest
from storage.schemas import COUNTERS, Q4_SCALE, TS

ORDER_BY: dict[str, str] = {
    "gpu": "gpu, ts",
    "nvlink": "gpu, link, ts",
    "serving": "endpoint, ts",
    "serving_hist": "endpoint, metric, le, ts",
    "host": "host, ts",
}
"""Rows read entity by entity, each in time order: a series' samples then arrive in time order."""

_SERVING_COLUMNS: dict[str, str] = {
    "prompt_tokens": "prompt_tokens",
    "generation_tokens": "generation_tokens",
    "cached_tokens": "cached_tokens",
    "requests_ok": "requests",
    "preemptions": "preemptions",
    "running": "running",
    "waiting": "waiting",
    "kv_cache_q4": "kv",
}
"""serving column -> the EngineSpec field naming the server's family for it."""
_SERVING_OWN = {"state": "rackmon_serving_state", "dup_samples": "rackmon_serving_duplicate_samples"}
"""serving columns of our own (storage.schemas.EndpointState; repeats of a series dropped from the page)."""
_WIRE_COLON = {"vllm": "vllm_", "sglang": "sglang_"}
"""Engines whose names are `engine:x` on the wire (canonical names spell it `engine_x`)."""


def _wire(engine: str, name: str) -> str:
    prefix = _WIRE_COLON.get(engine)
    if prefix is not None and name.startswith(prefix):
        return f"{engine}:{name[len(prefix) :]}"
    return name


def serving_name(engine: str, column: str) -> str:
    """The family a serving column is sent as: the server's own name where the column is that family."""
    spec = ENGINES.get(engine)
    names: tuple[str, ...] = getattr(spec, _SERVING_COLUMNS[column], ()) if spec is not None else ()
    counter = column in COUNTERS["serving"]
    if names and (not counter or names[0].endswith("_total")):
        return _wire(engine, names[0])
    return f"rackmon_serving_{column}_total" if counter else f"rackmon_serving_{column}"


def histogram_name(engine: str, metric: str) -> str:
    """The histogram family (without _bucket/_count/_sum) a serving_hist metric is sent as."""
    spec = ENGINES.get(engine)
    if spec is not None and spec.hist_scale == 1.0:
        for name, families in spec.hists:
            if name == metric and families:
                return _wire(engine, families[0])
    return f"rackmon_serving_{metric}_seconds"


def format_le(le: float) -> str:
    """A bucket bound as prometheus_client writes it (`0.005`, `1.0`, `+Inf`)."""
    return "+Inf" if le == float("inf") else repr(float(le))


@dataclass
class Batch:
    """One remote-write request being gathered: per series its label template and its samples."""

    series: list[tuple[bytes, list[Any], list[int]]] = field(default_factory=list)
    samples: int = 0

    def request(self) -> Any:
        """The WriteRequest: every series' labels in one parse, then its samples.

        Each template is a serialized WriteRequest holding one labels-only TimeSeries (made by the
        protobuf library once per series); serialized messages concatenated parse as one message
        whose repeated fields are appended in order (protobuf's documented merge rule), so a single
        C-level parse builds every series of the request with its labels.
        """
        request = WriteRequest.FromString(b"".join(template for template, _, _ in self.series))
        for series, (_, values, stamps) in zip(request.timeseries, self.series, strict=True):
            add = series.samples.add
            for value, stamp in zip(values, stamps, strict=True):
                add(value=value, timestamp=stamp)
        return request


LabelSet = tuple[tuple[str, str], ...]


class SeriesEncoder:
    """Turns store rows into WriteRequests; each entity's label sets are built once and reused.

    Args:
        rack: the `rack` label.
        hosts: compute tray -> host name (the `Hostname` label), from the rack config; may be empty.
    """

    def __init__(self, rack: str, hosts: Mapping[int, str] | None = None) -> None:
        """Nothing is encoded until `encode`."""
        self.rack = rack
        self.hosts = dict(hosts or {})
        self.engines: dict[str, str] = {}
        """endpoint -> engine, kept from serving rows (a histogram row names no engine)."""
        self.models: dict[str, str] = {}
        self._entities: dict[tuple[Any, ...], list[bytes]] = {}

    def encode(self, tables: Mapping[str, pa.Table]) -> tuple[Any, int]:
        """One WriteRequest with every sample of `tables` (rows in ORDER_BY order); (request, samples)."""
        batch = Batch()
        if "serving" in tables:
            self._serving(batch, tables["serving"])
        uuids: dict[int, str] = {}
        trays: dict[int, int] = {}
        if "gpu" in tables:
            self._gpu(batch, tables["gpu"], uuids, trays)
        if "nvlink" in tables:
            self._nvlink(batch, tables["nvlink"], uuids, trays)
        if "serving_hist" in tables:
            self._hist(batch, tables["serving_hist"])
        if "host" in tables:
            self._host(batch, tables["host"])
        return batch.request(), batch.samples

    def _templates(self, key: tuple[Any, ...], label_sets: Callable[[], list[LabelSet]]) -> list[bytes]:
        """One entity's series (one per column it sends) as label templates, built on first use.

        Each template is a serialized one-series WriteRequest with only its labels (see Batch.request).
        """
        templates = self._entities.get(key)
        if templates is None:
            templates = []
            for labels in label_sets():
                request = WriteRequest()
                series = request.timeseries.add()
                for name, value in sorted(labels):  # the spec wants labels sorted by name
                    series.labels.add(name=name, value=value)
                templates.append(request.SerializeToString())
            self._entities[key] = templates
        return templates

    def _gpu_labels(
        self, gpu: int, tray: int, uuid: str | None, *extra: tuple[str, str]
    ) -> list[tuple[str, str]]:
        local = gpu % GPUS_PER_TRAY if tray else gpu
        labels = [("rack", self.rack), ("tray", str(tray)), ("gpu", str(local)), *extra]
        if uuid:
            labels.append(("UUID", uuid))
        host = self.hosts.get(tray)
        if host:
            labels.append(("Hostname", host))
        return labels

    def _gpu(self, batch: Batch, table: pa.Table, uuids: dict[int, str], trays: dict[int, int]) -> None:
        ts, gpus = _ms(table), _col(table, "gpu")
        for g, u, t in zip(gpus, _col(table, "uuid"), _col(table, "tray"), strict=True):
            uuids[g], trays[g] = u, t
        specs = [(GPU_STATE, "state", 1.0), *((m.name, m.column, float(m.scale)) for m in GPU_METRICS)]
        columns = [_scaled(table, column, scale) for _, column, scale in specs]
        for a, b in _runs(gpus):
            g = gpus[a]

            def label_sets(g: int = g) -> list[LabelSet]:
                base = self._gpu_labels(g, trays[g], uuids[g])
                return [(("__name__", name), *base) for name, _, _ in specs]

            templates = self._templates(("gpu", g, trays[g], uuids[g]), label_sets)
            _add_runs(batch, templates, columns, ts, a, b)

    def _nvlink(self, batch: Batch, table: pa.Table, uuids: dict[int, str], trays: dict[int, int]) -> None:
        ts, gpus, links = _ms(table), _col(table, "gpu"), _col(table, "link")
        columns = [_scaled(table, spec.column, float(spec.scale)) for spec in NVLINK_METRICS]
        for a, b in _runs(list(zip(gpus, links, strict=True))):
            g, link = gpus[a], links[a]
            tray = trays.get(g, g // GPUS_PER_TRAY + 1)

            def label_sets(g: int = g, link: int = link, tray: int = tray) -> list[LabelSet]:
                base = self._gpu_labels(g, tray, uuids.get(g), ("link", str(link)))
                return [(("__name__", spec.name), *base) for spec in NVLINK_METRICS]

            templates = self._templates(("nvlink", g, link, tray, uuids.get(g)), label_sets)
            _add_runs(batch, templates, columns, ts, a, b)

    def _serving_labels(self, endpoint: str, *extra: tuple[str, str]) -> list[tuple[str, str]]:
        labels = [("rack", self.rack), ("instance", endpoint), *extra]
        spec = ENGINES.get(self.engines.get(endpoint, ""))
        model = self.models.get(endpoint)
        if model:
            labels.append((spec.model_labels[0] if spec is not None else "model", model))
        return labels

    def _serving(self, batch: Batch, table: pa.Table) -> None:
        ts, endpoints = _ms(table), _col(table, "endpoint")
        for e, engine, model in zip(endpoints, _col(table, "engine"), _col(table, "model"), strict=True):
            self.engines[e] = engine
            if model:
                self.models[e] = model
        names = ("state", "dup_samples", *_SERVING_COLUMNS)
        columns = [_scaled(table, c, 1.0 / Q4_SCALE if c == "kv_cache_q4" else 1.0) for c in names]
        for a, b in _runs(endpoints):
            e = endpoints[a]

            def label_sets(e: str = e) -> list[LabelSet]:
                base = self._serving_labels(e)
                families = [_SERVING_OWN.get(c) or serving_name(self.engines[e], c) for c in names]
                return [(("__name__", family), *base) for family in families]

            templates = self._templates(("serving", e, self.engines[e], self.models.get(e)), label_sets)
            _add_runs(batch, templates, columns, ts, a, b)

    def _hist(self, batch: Batch, table: pa.Table) -> None:
        ts, endpoints, metrics = _ms(table), _col(table, "endpoint"), _col(table, "metric")
        les, counts, sums = _col(table, "le"), _col(table, "count"), _col(table, "sum_s")
        for a, b in _runs(list(zip(endpoints, metrics, les, strict=True))):
            endpoint, metric, le = endpoints[a], metrics[a], les[a]
            engine = self.engines.get(endpoint, "")
            top = le == float("inf")

            def label_sets(
                endpoint: str = endpoint,
                metric: str = metric,
                le: float = le,
                engine: str = engine,
                top: bool = top,
            ) -> list[LabelSet]:
                family = histogram_name(engine, metric)
                sets = [
                    (("__name__", family + "_bucket"), *self._serving_labels(endpoint, ("le", format_le(le))))
                ]
                if top:  # the +Inf bucket is also the histogram's _count; its row carries the _sum
                    base = self._serving_labels(endpoint)
                    sets += [(("__name__", family + "_count"), *base), (("__name__", family + "_sum"), *base)]
                return sets

            key = ("hist", endpoint, metric, le, engine, self.models.get(endpoint))
            templates = self._templates(key, label_sets)
            _add_runs(batch, templates, [counts, counts, sums] if top else [counts], ts, a, b)

    def _host(self, batch: Batch, table: pa.Table) -> None:
        ts, hosts = _ms(table), _col(table, "host")
        names = [c for c in table.column_names if c not in ("ts", "host")]
        columns = [_col(table, c) for c in names]
        for a, b in _runs(hosts):
            host = hosts[a]

            def label_sets(host: str = host) -> list[LabelSet]:
                families = [f"rackmon_host_{c}" + ("_total" if c in COUNTERS["host"] else "") for c in names]
                return [(("__name__", f), ("rack", self.rack), ("host", host)) for f in families]

            _add_runs(batch, self._templates(("host", host, *names), label_sets), columns, ts, a, b)


def _add_runs(
    batch: Batch, templates: list[bytes], columns: list[list[Any]], ts: list[int], a: int, b: int
) -> None:
    """Rows a..b-1 of one entity (in time order): a series per column; null cells are no sample."""
    stamps = ts[a:b]
    for template, values in zip(templates, columns, strict=True):
        chunk = values[a:b]
        times = stamps
        if None in chunk:
            kept = [(v, t) for v, t in zip(chunk, stamps, strict=True) if v is not None]
            if not kept:
                continue
            chunk, times = [v for v, _ in kept], [t for _, t in kept]
        batch.series.append((template, chunk, times))
        batch.samples += len(chunk)


def _runs(keys: list[Any]) -> list[tuple[int, int]]:
    """[start, end) of each run of equal keys (rows come sorted by entity, then time)."""
    runs: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            runs.append((start, i))
            start = i
    return runs


def _col(table: pa.Table, name: str) -> list[Any]:
    return table.column(name).to_pylist()


def _scaled(table: pa.Table, name: str, scale: float) -> list[Any]:
    """A column's values x scale, computed by Arrow (nulls stay null).

    A scale below 1 is applied as a division (mW / 1000, not x 0.001): 1148312 mW is then exactly
    1148.312 W, the decimal a reader expects (x 0.001 gives 1148.3120000000001).
    """
    column = table.column(name)
    if scale == 1.0:
        return column.to_pylist()
    column = column.cast(pa.float64())
    if scale < 1:
        return pc.divide(column, float(round(1 / scale))).to_pylist()
    return pc.multiply(column, scale).to_pylist()


def _ms(table: pa.Table) -> list[int]:
    """The ts column as epoch milliseconds (DuckDB hands TIMESTAMPTZ back in microseconds)."""
    return table.column("ts").cast(TS).cast(pa.int64()).to_pylist()
