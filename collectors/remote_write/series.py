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

TABLES_SENT: tuple[str, ...] = ("gpu", "nvlink", "serving", "serving_hist", "host")
"""The store tables whose samples are sent, in the order a request carries them."""

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
    """Turns store rows into WriteRequests; label sets are built once per series and reused.

    Args:
        rack: the `rack` label.
        hosts: compute tray -> host name (the `Hostname` label), from the rack config; may be empty.
        engines: endpoint -> engine, for endpoints whose serving rows are not in the same read
            (a histogram row names no engine); filled as serving rows are seen.
    """

    def __init__(self, rack: str, hosts: Mapping[int, str] | None = None) -> None:
        """Nothing is encoded until `encode`."""
        self.rack = rack
        self.hosts = dict(hosts or {})
        self.engines: dict[str, str] = {}
        self.models: dict[str, str] = {}
        self._templates: dict[tuple[Any, ...], bytes] = {}

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

    def _template(self, key: tuple[Any, ...], labels: Callable[[], LabelSet]) -> bytes:
        """The series' labels as a serialized one-series WriteRequest, built on first use."""
        template = self._templates.get(key)
        if template is None:
            request = WriteRequest()
            series = request.timeseries.add()
            for name, value in sorted(labels()):  # the spec wants labels sorted by name
                series.labels.add(name=name, value=value)
            template = self._templates[key] = request.SerializeToString()
        return template

    def _gpu_labels(
        self, name: str, gpu: int, tray: int, uuid: str | None, *extra: tuple[str, str]
    ) -> LabelSet:
        local = gpu % GPUS_PER_TRAY if tray else gpu
        labels = [("__name__", name), ("rack", self.rack), ("tray", str(tray)), ("gpu", str(local))]
        if uuid:
            labels.append(("UUID", uuid))
        host = self.hosts.get(tray)
        if host:
            labels.append(("Hostname", host))
        return (*labels, *extra)

    def _gpu(self, batch: Batch, table: pa.Table, uuids: dict[int, str], trays: dict[int, int]) -> None:
        ts, gpus = _ms(table), _col(table, "gpu")
        for g, u, t in zip(gpus, _col(table, "uuid"), _col(table, "tray"), strict=True):
            uuids[g], trays[g] = u, t
        runs = _runs(gpus)
        specs = [(GPU_STATE, "state", 1.0), *((m.name, m.column, float(m.scale)) for m in GPU_METRICS)]
        for name, column, scale in specs:
            values = _scaled(table, column, scale)
            for a, b in runs:
                g = gpus[a]
                key = ("gpu", name, g, uuids[g])
                labels = functools.partial(self._gpu_labels, name, g, trays[g], uuids[g])
                self._add(batch, key, labels, values, ts, a, b)

    def _nvlink(self, batch: Batch, table: pa.Table, uuids: dict[int, str], trays: dict[int, int]) -> None:
        ts, gpus, links = _ms(table), _col(table, "gpu"), _col(table, "link")
        runs = _runs(list(zip(gpus, links, strict=True)))
        for spec in NVLINK_METRICS:
            name, values = spec.name, _scaled(table, spec.column, float(spec.scale))
            for a, b in runs:
                g, link = gpus[a], links[a]
                tray = trays.get(g, g // GPUS_PER_TRAY + 1)
                extra = ("link", str(link))
                labels = functools.partial(self._gpu_labels, name, g, tray, uuids.get(g), extra)
                self._add(batch, ("nvlink", name, g, link, uuids.get(g)), labels, values, ts, a, b)

    def _add(
        self,
        batch: Batch,
        key: tuple[Any, ...],
        labels: Callable[[], LabelSet],
        values: list[Any],
        ts: list[int],
        a: int,
        b: int,
    ) -> None:
        """Rows a..b-1 (one series, in time order) of a column; null cells are no sample."""
        chunk, stamps = values[a:b], ts[a:b]
        if None in chunk:
            kept = [(v, t) for v, t in zip(chunk, stamps, strict=True) if v is not None]
            if not kept:
                return
            chunk, stamps = [v for v, _ in kept], [t for _, t in kept]
        batch.series.append((self._template(key, labels), chunk, stamps))
        batch.samples += len(chunk)

    def _serving_labels(self, name: str, endpoint: str, *extra: tuple[str, str]) -> LabelSet:
        labels = [("__name__", name), ("rack", self.rack), ("instance", endpoint)]
        engine = self.engines.get(endpoint, "")
        spec = ENGINES.get(engine)
        model = self.models.get(endpoint)
        if model:
            labels.append((spec.model_labels[0] if spec is not None else "model", model))
        return (*labels, *extra)

    def _serving(self, batch: Batch, table: pa.Table) -> None:
        ts, endpoints = _ms(table), _col(table, "endpoint")
        for e, engine, model in zip(endpoints, _col(table, "engine"), _col(table, "model"), strict=True):
            self.engines[e] = engine
            if model:
                self.models[e] = model
        runs = _runs(endpoints)
        for column in ("state", "dup_samples", *_SERVING_COLUMNS):
            values = _scaled(table, column, 1.0 / Q4_SCALE if column == "kv_cache_q4" else 1.0)
            for a, b in runs:
                e = endpoints[a]
                name = _SERVING_OWN.get(column) or serving_name(self.engines[e], column)
                labels = functools.partial(self._serving_labels, name, e)
                self._add(batch, ("serving", name, e), labels, values, ts, a, b)

    def _hist(self, batch: Batch, table: pa.Table) -> None:
        ts, endpoints, metrics = _ms(table), _col(table, "endpoint"), _col(table, "metric")
        les, counts, sums = _col(table, "le"), _col(table, "count"), _col(table, "sum_s")
        for a, b in _runs(list(zip(endpoints, metrics, les, strict=True))):
            endpoint, le = endpoints[a], les[a]
            family = histogram_name(self.engines.get(endpoint, ""), metrics[a])
            parts = [("_bucket", counts, (("le", format_le(le)),))]
            if le == float("inf"):
                parts += [("_count", counts, ()), ("_sum", sums, ())]
            for suffix, values, extra in parts:
                name = family + suffix
                labels = functools.partial(self._serving_labels, name, endpoint, *extra)
                self._add(batch, ("hist", name, endpoint, le), labels, values, ts, a, b)

    def _host(self, batch: Batch, table: pa.Table) -> None:
        ts, hosts = _ms(table), _col(table, "host")
        runs = _runs(hosts)
        for column in table.column_names:
            if column in ("ts", "host"):
                continue
            name = f"rackmon_host_{column}" + ("_total" if column in COUNTERS["host"] else "")
            values = _col(table, column)
            for a, b in runs:
                labels = functools.partial(_plain_labels, name, self.rack, hosts[a])
                self._add(batch, ("host", name, hosts[a]), labels, values, ts, a, b)


def _plain_labels(name: str, rack: str, host: str) -> LabelSet:
    return (("__name__", name), ("rack", rack), ("host", host))


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
