"""The rack config's targets: [[tray]] exporters and [[server]] inference servers, parsed and checked.

Split from collectors.config (which re-exports TrayTarget, ServerTarget and parse_gpu) so that the file
format's top level reads apart from the rules each entry follows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from collectors.config_check import Checker
from collectors.mappings.serving import ENGINES
from collectors.rack import COMPUTE_TRAYS, GPUS, gpu_index, gpu_label

__all__ = ["ServerTarget", "TrayTarget", "parse_gpu", "parse_servers", "parse_trays"]

_TRAY_FIELDS = ("tray", "host", "url")
_SERVER_FIELDS = ("name", "url", "engine", "gpus", "metrics_prefix")
_METRIC_PREFIX_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
"""A metric name prefix: what a Prometheus metric name may start with."""
_GPU_LABEL_RE = re.compile(r"T(\d{1,2})\.G(\d)")


@dataclass(frozen=True)
class TrayTarget:
    """One compute tray's exporter (`monitor agent` or dcgm-exporter).

    Attributes:
        tray: compute tray 1..18 (places GPUs whose page has no rackmon_gpu_info).
        host: the tray's host name, shown in events.
        url: the /metrics URL.
    """

    tray: int
    host: str
    url: str


@dataclass(frozen=True)
class ServerTarget:
    """One inference server's /metrics endpoint.

    Attributes:
        name: the endpoint's name (serving.endpoint).
        url: the /metrics URL (TensorRT-LLM serves /prometheus/metrics).
        engine: a key of collectors.mappings.ENGINES, or None to detect it from the first page.
        gpus: rack GPU indices 0..71 it runs on.
        metrics_prefix: a Dynamo frontend's DYN_METRICS_PREFIX, which replaces `dynamo_frontend` in
            its metric names (collectors.mappings.engines.dynamo); None: the default names.
    """

    name: str
    url: str
    engine: str | None = None
    gpus: tuple[int, ...] = ()
    metrics_prefix: str | None = None


def parse_gpu(value: object) -> int:
    """A rack GPU index from an int 0..71 or a label like 'T03.G2'; ValueError says what is wrong."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a GPU")
    if isinstance(value, int):
        if not 0 <= value < GPUS:
            raise ValueError(f"GPU index {value} is not 0..{GPUS - 1}")
        return value
    if isinstance(value, str):
        match = _GPU_LABEL_RE.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"{value!r} is neither a rack index 0..{GPUS - 1} nor a label like 'T03.G2'")
        return gpu_index(int(match.group(1)), int(match.group(2)))
    raise ValueError(f"{value!r} is not a GPU (use a rack index or a label like 'T03.G2')")


def _entries(check: Checker, value: object, table: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        check.fail(table, f"must be an array of tables ([[{table}]])", None, None, table)
    return list(value)  # type: ignore[arg-type]


def parse_trays(check: Checker, value: object) -> list[TrayTarget]:
    """The [[tray]] entries: each tray once, each URL once."""
    trays: list[TrayTarget] = []
    seen: dict[int, int] = {}
    urls: dict[str, int] = {}
    for i, entry in enumerate(_entries(check, value, "tray")):
        label = f"tray[{i + 1}]"
        check.fields(entry, _TRAY_FIELDS, "tray", i)
        number = entry.get("tray", i + 1)
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= COMPUTE_TRAYS:
            check.fail(
                f"{label}.tray",
                f"must be a compute tray 1..{COMPUTE_TRAYS}, not {number!r}",
                "tray",
                i,
                "tray",
            )
        if number in seen:
            check.fail(
                f"{label}.tray", f"tray {number} is already tray[{seen[number] + 1}]", "tray", i, "tray"
            )
        seen[number] = i
        url = check.url(entry, label, "tray", i)
        if url in urls:
            check.fail(f"{label}.url", f"{url} is already tray[{urls[url] + 1}]'s URL", "tray", i, "url")
        urls[url] = i
        host = check.string(entry, "host", label, "tray", i) or urlsplit(url).hostname or url
        trays.append(TrayTarget(tray=number, host=host, url=url))
    return trays


def parse_servers(check: Checker, value: object) -> list[ServerTarget]:
    """The [[server]] entries: names unique, each GPU on one server, engines known."""
    servers: list[ServerTarget] = []
    names: dict[str, int] = {}
    owner: dict[int, int] = {}
    for i, entry in enumerate(_entries(check, value, "server")):
        label = f"server[{i + 1}]"
        check.fields(entry, _SERVER_FIELDS, "server", i)
        url = check.url(entry, label, "server", i)
        parts = urlsplit(url)
        name = check.string(entry, "name", label, "server", i) or f"{parts.hostname}:{parts.port or 80}"
        if name in names:
            check.fail(f"{label}.name", f"{name!r} is already server[{names[name] + 1}]", "server", i, "name")
        names[name] = i
        engine = check.string(entry, "engine", label, "server", i)
        if engine is not None and engine not in ENGINES:
            check.fail(
                f"{label}.engine", f"{engine!r} is not one of: {', '.join(ENGINES)}", "server", i, "engine"
            )
        raw = entry.get("gpus", [])
        if not isinstance(raw, list):
            check.fail(f"{label}.gpus", f"must be a list of GPUs, not {raw!r}", "server", i, "gpus")
        gpus: list[int] = []
        for item in raw:
            try:
                gpu = parse_gpu(item)
            except ValueError as err:
                check.fail(f"{label}.gpus", str(err), "server", i, "gpus")
            if gpu in owner:
                where = "this server" if owner[gpu] == i else f"server[{owner[gpu] + 1}]"
                check.fail(
                    f"{label}.gpus", f"GPU {gpu_label(gpu)} is already used by {where}", "server", i, "gpus"
                )
            owner[gpu] = i
            gpus.append(gpu)
        prefix = _metrics_prefix(check, entry, label, i, engine)
        if prefix is not None:
            engine = "dynamo"
        servers.append(
            ServerTarget(name=name, url=url, engine=engine, gpus=tuple(gpus), metrics_prefix=prefix)
        )
    return servers


def _metrics_prefix(
    check: Checker, entry: Mapping[str, Any], label: str, i: int, engine: str | None
) -> str | None:
    """A [[server]]'s metrics_prefix: a metric-name prefix, for a Dynamo frontend only."""
    prefix = check.string(entry, "metrics_prefix", label, "server", i)
    if prefix is None:
        return None
    field = f"{label}.metrics_prefix"
    if not _METRIC_PREFIX_RE.fullmatch(prefix):
        check.fail(field, f"{prefix!r} is not a metric name prefix", "server", i, "metrics_prefix")
    if engine not in (None, "dynamo"):
        problem = f"only a Dynamo frontend has one (DYN_METRICS_PREFIX); this server's engine is {engine!r}"
        check.fail(field, problem, "server", i, "metrics_prefix")
    return prefix
