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

import functools
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from collectors.agent_names import GPU_METRICS, GPU_STATE, NVLINK_METRICS
from collectors.mappings.engines import ENGINES
from collectors.rack import GPUS_PER_TRAY
from collectors.remote_write.request import Laid, RequestBuilder, Series
from collectors.remote_write.runs import RunsMemo, TableRuns
from collectors.remote_write.wire import WriteRequest
from storage.schemas import COUNTERS, Q4_SCALE

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


LabelSet = tuple[tuple[str, str], ...]


MAX_CACHED_ENTITIES = 65_536
"""Entities whose label templates are kept (a rack has ~10,000: 72 GPUs, 1,296 links, 72 servers and
their histograms' buckets); past it, after series came and went, the cache starts again."""


class SeriesEncoder:
    """Turns store rows into WriteRequests; each entity's label sets are built once and reused.

    Args:
        rack: the `rack` label.
        hosts: compute tray -> host name (the `Hostname` label), from the rack config; may be empty.
        max_entities: entities whose label templates are kept at most (a collector runs for months
            while GPUs are swapped and servers change models: each is a new entity).
    """

    def __init__(
        self, rack: str, hosts: Mapping[int, str] | None = None, *, max_entities: int = MAX_CACHED_ENTITIES
    ) -> None:
        """Nothing is encoded until `encode`."""
        self.rack = rack
        self.max_entities = max_entities
        self.hosts = dict(hosts or {})
        self.engines: dict[str, str] = {}
        """endpoint -> engine, kept from serving rows (a histogram row names no engine)."""
        self.models: dict[str, str] = {}
        self._entities: dict[tuple[Any, ...], Series] = {}
        self._builder = RequestBuilder()
        self._runs = RunsMemo()
        self._part_keys: dict[str, tuple[list[tuple[Any, ...]], list[Hashable]]] = {}
        """Per table: its last runs' keys and their part keys (the same list while the keys are)."""
        self._held: dict[str, tuple[list[tuple[Any, ...]], Any, list[Series]]] = {}

    def encode(self, tables: Mapping[str, pa.Table]) -> tuple[bytes, int]:
        """Every sample of `tables` (rows in ORDER_BY order) as one serialized WriteRequest; (body, samples).

        The body is not compressed (wire.compress does that).
        """
        laid: list[Laid] = []
        gpus: dict[int, tuple[int, str | None]] = {}
        for name, lay in (
            ("serving", self._serving),
            ("gpu", functools.partial(self._gpu, gpus=gpus)),
            ("nvlink", functools.partial(self._nvlink, gpus=gpus)),
            ("serving_hist", self._hist),
            ("host", self._host),
        ):
            if name in tables:
                runs, series = lay(tables[name])
                held = self._part_keys.get(name)
                if held is None or held[0] is not runs.keys:
                    held = self._part_keys[name] = (runs.keys, [_part_of(name, key) for key in runs.keys])
                laid.append((name, runs, series, held[1]))
        body = self._builder.build(laid)
        if len(self._entities) > self.max_entities:
            # Built again from the rows on the next request: equal templates (the request's parts compare
            # series by value, so they are not rebuilt), only the entities still sent.
            self._entities.clear()
            self._held.clear()
        return body, self._builder.samples

    @property
    def cached_entities(self) -> int:
        """Entities whose label templates are held now."""
        return len(self._entities)

    def _series(self, key: tuple[Any, ...], label_sets: Callable[[], list[tuple[LabelSet, int]]]) -> Series:
        """One entity's series as (label template, value column), built on first use and kept.

        Each template is a serialized one-series WriteRequest with only its labels (see request.py).
        """
        series = self._entities.get(key)
        if series is None:
            series = []
            for labels, column in label_sets():
                request = WriteRequest()
                one = request.timeseries.add()
                for name, value in sorted(labels):  # the spec wants labels sorted by name
                    one.labels.add(name=name, value=value)
                series.append((request.SerializeToString(), column))
            self._entities[key] = series
        return series

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

    def _gpu(
        self, table: pa.Table, gpus: dict[int, tuple[int, str | None]]
    ) -> tuple[TableRuns, list[Series]]:
        """A GPU's series carry its UUID: the last one its rows name (a stand-in row of a GPU whose tray
        missed the tick may have none)."""
        specs = [(GPU_STATE, "state", 1.0), *((m.name, m.column, float(m.scale)) for m in GPU_METRICS)]
        runs = self._runs.runs("gpu", table, ("gpu",), [_scaled(table, c, s) for _, c, s in specs])
        uuids, trays = table.column("uuid").to_pylist(), table.column("tray").to_pylist()
        series = []
        for (g,), start, end in zip(runs.keys, runs.starts, runs.ends, strict=True):
            uuid = next((u for u in reversed(uuids[start:end]) if u), None)
            tray = trays[end - 1]
            gpus[g] = (tray, uuid)
            entity = self._entities.get(("gpu", g, tray, uuid))
            if entity is None:

                def label_sets(
                    g: int = g, tray: int = tray, uuid: str | None = uuid
                ) -> list[tuple[LabelSet, int]]:
                    base = self._gpu_labels(g, tray, uuid)
                    return [((("__name__", name), *base), i) for i, (name, _, _) in enumerate(specs)]

                entity = self._series(("gpu", g, tray, uuid), label_sets)
            series.append(entity)
        return runs, series

    def _nvlink(
        self, table: pa.Table, gpus: dict[int, tuple[int, str | None]]
    ) -> tuple[TableRuns, list[Series]]:
        runs = self._runs.runs(
            "nvlink",
            table,
            ("gpu", "link"),
            [_scaled(table, m.column, float(m.scale)) for m in NVLINK_METRICS],
        )
        return runs, self._memo("nvlink", runs.keys, dict(gpus), lambda: self._nvlink_series(runs.keys, gpus))

    def _nvlink_series(
        self, keys: list[tuple[Any, ...]], gpus: dict[int, tuple[int, str | None]]
    ) -> list[Series]:
        series = []
        for g, link in keys:
            tray, uuid = gpus.get(g, (g // GPUS_PER_TRAY + 1, None))
            entity = self._entities.get(("nvlink", g, link, tray, uuid))
            if entity is None:

                def label_sets(
                    g: int = g, link: int = link, tray: int = tray, uuid: str | None = uuid
                ) -> list[tuple[LabelSet, int]]:
                    base = self._gpu_labels(g, tray, uuid, ("link", str(link)))
                    return [((("__name__", m.name), *base), i) for i, m in enumerate(NVLINK_METRICS)]

                entity = self._series(("nvlink", g, link, tray, uuid), label_sets)
            series.append(entity)
        return series

    def _memo(
        self, table: str, keys: list[tuple[Any, ...]], context: Any, compute: Callable[[], list[Series]]
    ) -> list[Series]:
        """A table's series per run, as last time when its run keys and context are the same.

        A collector's requests repeat the same entities (a rack's 1,296 links, ~8,000 histogram
        buckets): comparing the key lists is one C-level pass instead of a lookup per run.
        """
        held = self._held.get(table)
        if held is not None and held[0] == keys and held[1] == context:
            return held[2]
        series = compute()
        self._held[table] = (keys, context, series)
        return series

    def _serving_labels(self, endpoint: str, *extra: tuple[str, str]) -> list[tuple[str, str]]:
        labels = [("rack", self.rack), ("instance", endpoint), *extra]
        spec = ENGINES.get(self.engines.get(endpoint, ""))
        model = self.models.get(endpoint)
        if model:
            labels.append((spec.model_labels[0] if spec is not None else "model", model))
        return labels

    def _serving(self, table: pa.Table) -> tuple[TableRuns, list[Series]]:
        names = ("state", "dup_samples", *_SERVING_COLUMNS)
        columns = [_scaled(table, c, 1.0 / Q4_SCALE if c == "kv_cache_q4" else 1.0) for c in names]
        runs = self._runs.runs("serving", table, ("endpoint",), columns)
        endpoints = table.column("endpoint").to_pylist()
        engines, models = table.column("engine").to_pylist(), table.column("model").to_pylist()
        for e, engine, model in zip(endpoints, engines, models, strict=True):
            self.engines[e] = engine
            if model:
                self.models[e] = model
        series = []
        for (e,) in runs.keys:

            def label_sets(e: str = e) -> list[tuple[LabelSet, int]]:
                base = self._serving_labels(e)
                families = [_SERVING_OWN.get(c) or serving_name(self.engines[e], c) for c in names]
                return [((("__name__", family), *base), i) for i, family in enumerate(families)]

            series.append(self._series(("serving", e, self.engines[e], self.models.get(e)), label_sets))
        return runs, series

    def _hist(self, table: pa.Table) -> tuple[TableRuns, list[Series]]:
        runs = self._runs.runs(
            "serving_hist",
            table,
            ("endpoint", "metric", "le"),
            [table.column("count"), table.column("sum_s")],
        )
        context = (dict(self.engines), dict(self.models))
        return runs, self._memo("serving_hist", runs.keys, context, lambda: self._hist_series(runs.keys))

    def _hist_series(self, keys: list[tuple[Any, ...]]) -> list[Series]:
        series = []
        for endpoint, metric, le in keys:
            engine, model = self.engines.get(endpoint, ""), self.models.get(endpoint)
            key = ("hist", endpoint, metric, le, engine, model)
            entity = self._entities.get(key)
            if entity is None:

                def label_sets(
                    endpoint: str = endpoint, metric: str = metric, le: float = le, engine: str = engine
                ) -> list[tuple[LabelSet, int]]:
                    family = histogram_name(engine, metric)
                    bucket = self._serving_labels(endpoint, ("le", format_le(le)))
                    sets = [((("__name__", family + "_bucket"), *bucket), 0)]
                    if le == float("inf"):  # the +Inf bucket is also the _count; its row carries the _sum
                        base = self._serving_labels(endpoint)
                        sets += [((("__name__", family + "_count"), *base), 0)]
                        sets += [((("__name__", family + "_sum"), *base), 1)]
                    return sets

                entity = self._series(key, label_sets)
            series.append(entity)
        return series

    def _host(self, table: pa.Table) -> tuple[TableRuns, list[Series]]:
        names = [c for c in table.column_names if c not in ("ts", "host")]
        runs = self._runs.runs("host", table, ("host",), [table.column(c) for c in names])
        series = []
        for (host,) in runs.keys:

            def label_sets(host: str = host) -> list[tuple[LabelSet, int]]:
                families = [f"rackmon_host_{c}" + ("_total" if c in COUNTERS["host"] else "") for c in names]
                return [
                    ((("__name__", f), ("rack", self.rack), ("host", host)), i)
                    for i, f in enumerate(families)
                ]

            series.append(self._series(("host", host, *names), label_sets))
        return runs, series


def _part_of(table: str, key: tuple[Any, ...]) -> Hashable:
    """The part of a request a run belongs to (request.RequestBuilder): what changes together when an
    endpoint misses a tick, so that only its part is rebuilt: a tray's GPUs and links, a server's
    histograms; a table of a row or a few per tick is one part."""
    if table in ("gpu", "nvlink"):
        return key[0] // GPUS_PER_TRAY
    if table == "serving_hist":
        return key[0]
    return 0


def _scaled(table: pa.Table, name: str, scale: float) -> pa.ChunkedArray:
    """A column's values x scale, computed by Arrow (nulls stay null).

    A scale below 1 is applied as a division (mW / 1000, not x 0.001): 1148312 mW is then exactly
    1148.312 W, the decimal a reader expects (x 0.001 gives 1148.3120000000001).
    """
    column = table.column(name)
    if scale == 1.0:
        return column
    column = column.cast(pa.float64())
    if scale < 1:  # (Arrow scalars: see request.RequestBuilder._fill)
        return pc.divide(column, pa.scalar(float(round(1 / scale)), pa.float64()))
    return pc.multiply(column, pa.scalar(scale, pa.float64()))
