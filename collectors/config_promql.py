"""The rack config's [promql] table: read the rack from a Prometheus-compatible query API, not its pages.

    [promql]
    url = "http://prometheus:9090"    # the query API's base URL (VictoriaMetrics: http://vm:8428)
    match = { rack = "gb300-a" }      # exact label matchers that select this rack's series
    lookback = 3.0                    # seconds: a series' newest sample within this counts (2-3 scrapes)
    hostname_label = "Hostname"       # the label naming a tray's host (dcgm-exporter's)
    server_label = "instance"         # the label naming an inference server: its URL's host:port
    tray_pattern = "-t(\\d+)$"        # optional: group 1 of this regex on the host = compute tray
    bearer_token_file = "/etc/rack-monitor/token"   # optional: Authorization: Bearer <file's text>
    [promql.trays]                    # optional: host -> compute tray (else tray_pattern, else [[tray]] host)
    "gb300-a-t01" = 1

[[server]] entries keep their meaning: the server whose URL is http://10.0.0.1:8000/metrics is the series
with instance="10.0.0.1:8000" (Prometheus' default `instance` label of a scrape target).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collectors.config_check import url_problem
from collectors.rack import COMPUTE_TRAYS

if TYPE_CHECKING:
    from collectors.config_check import Checker

_FIELDS = (
    "url",
    "match",
    "lookback",
    "hostname_label",
    "server_label",
    "tray_pattern",
    "trays",
    "bearer_token_file",
)
_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
DEFAULT_LOOKBACK_S = 3.0
"""A series' newest sample within this many seconds of the tick counts; older, its endpoint missed the tick.
Three 1 s scrapes; set it to 2-3 scrape intervals of the backend: every interval in the window adds one
sample per series to each tick's answer."""
MAX_LOOKBACK_S = 3600.0


@dataclass(frozen=True)
class PromqlConfig:
    """Where and how to read a rack from a Prometheus-compatible query API.

    Attributes:
        url: the API's base URL (…/api/v1/query is appended).
        match: exact label matchers selecting this rack's series, as (label, value) pairs.
        lookback_s: how old a series' newest sample may be at a tick.
        hostname_label: the label naming a tray's host.
        server_label: the label whose value is a [[server]] URL's host:port.
        tray_pattern: a regex whose group 1 on a host name is its compute tray, or None.
        trays: host -> compute tray, as (host, tray) pairs.
        bearer_token_file: a file holding a bearer token, or None.
    """

    url: str
    match: tuple[tuple[str, str], ...] = ()
    lookback_s: float = DEFAULT_LOOKBACK_S
    hostname_label: str = "Hostname"
    server_label: str = "instance"
    tray_pattern: str | None = None
    trays: tuple[tuple[str, int], ...] = ()
    bearer_token_file: Path | None = field(default=None)


def parse_promql(check: Checker, value: object) -> PromqlConfig | None:
    """[promql] checked field by field (None when the config has no such table)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        check.fail("promql", "must be a table ([promql])", None, None, "promql")
    check.fields(value, _FIELDS, "promql", None)
    url = check.string(value, "url", "promql", "promql", None)
    if url is None:
        check.fail("promql.url", "is missing (the query API's base URL)", "promql", None, None)
    problem = url_problem(url)
    if problem:
        check.fail("promql.url", f"{url!r} {problem}", "promql", None, "url")
    lookback = value.get("lookback", DEFAULT_LOOKBACK_S)
    if (
        isinstance(lookback, bool)
        or not isinstance(lookback, int | float)
        or not 0 < lookback <= MAX_LOOKBACK_S
    ):
        check.fail(
            "promql.lookback",
            f"must be seconds in (0, {MAX_LOOKBACK_S:g}], not {lookback!r}",
            "promql",
            None,
            "lookback",
        )
    labels = {
        key: _label(check, value, key, default)
        for key, default in (("hostname_label", "Hostname"), ("server_label", "instance"))
    }
    token = check.string(value, "bearer_token_file", "promql", "promql", None)
    return PromqlConfig(
        url=url.rstrip("/"),
        match=_match(check, value.get("match", {})),
        lookback_s=float(lookback),
        hostname_label=labels["hostname_label"],
        server_label=labels["server_label"],
        tray_pattern=_pattern(check, value),
        trays=_trays(check, value.get("trays", {})),
        bearer_token_file=None if token is None else Path(token),
    )


def _label(check: Checker, entry: Mapping[str, Any], key: str, default: str) -> str:
    name = check.string(entry, key, "promql", "promql", None) or default
    if not _LABEL_RE.fullmatch(name):
        check.fail(f"promql.{key}", f"{name!r} is not a Prometheus label name", "promql", None, key)
    return name


def _match(check: Checker, value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        check.fail("promql.match", 'must be a table of label = "value"', "promql", None, "match")
    pairs = []
    for label, text in value.items():
        if not _LABEL_RE.fullmatch(label) or label == "__name__":
            check.fail("promql.match", f"{label!r} is not a label to match on", "promql", None, "match")
        if not isinstance(text, str):
            check.fail(f"promql.match.{label}", f"must be a string, not {text!r}", "promql", None, "match")
        pairs.append((label, text))
    return tuple(pairs)


def _pattern(check: Checker, entry: Mapping[str, Any]) -> str | None:
    pattern = check.string(entry, "tray_pattern", "promql", "promql", None)
    if pattern is None:
        return None
    try:
        groups = re.compile(pattern).groups
    except re.error as err:
        check.fail("promql.tray_pattern", f"is not a regex: {err}", "promql", None, "tray_pattern")
    if groups < 1:
        check.fail(
            "promql.tray_pattern", "needs a group: (\\d+) for the tray", "promql", None, "tray_pattern"
        )
    return pattern


def _trays(check: Checker, value: object) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, dict):
        check.fail("promql.trays", 'must be a table of "host" = tray', "promql", None, "trays")
    seen: dict[int, str] = {}
    for host, tray in value.items():
        if isinstance(tray, bool) or not isinstance(tray, int) or not 1 <= tray <= COMPUTE_TRAYS:
            check.fail(
                f"promql.trays.{host}", f"must be a compute tray 1..{COMPUTE_TRAYS}, not {tray!r}",
                "promql.trays", None, host,
            )  # fmt: skip
        if tray in seen:
            check.fail(
                f"promql.trays.{host}", f"tray {tray} is already {seen[tray]!r}'s", "promql.trays", None, host
            )
        seen[tray] = host
    return tuple(value.items())


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_promql(promql: PromqlConfig | None) -> list[str]:
    """[promql] lines that parse_promql reads back to the same PromqlConfig (none without one)."""
    if promql is None:
        return []
    match = ", ".join(f"{k} = {_toml_str(v)}" for k, v in promql.match)
    out = [
        "[promql]",
        f"url = {_toml_str(promql.url)}",
        f"match = {{ {match} }}" if match else "match = {}",
        f"lookback = {promql.lookback_s!r}",
        f"hostname_label = {_toml_str(promql.hostname_label)}",
        f"server_label = {_toml_str(promql.server_label)}",
    ]
    if promql.tray_pattern is not None:
        out.append(f"tray_pattern = {_toml_str(promql.tray_pattern)}")
    if promql.bearer_token_file is not None:
        out.append(f"bearer_token_file = {_toml_str(str(promql.bearer_token_file))}")
    if promql.trays:
        out += ["", "[promql.trays]", *(f"{_toml_str(h)} = {t}" for h, t in promql.trays)]
    return [*out, ""]
