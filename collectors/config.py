"""The rack config (TOML): which tray agents / dcgm-exporters and inference servers make up a rack.

    [rack]
    name = "gb300-a"          # shown in the TUI
    timeout = 2.0             # seconds one endpoint may take per tick (optional; default_timeout_s)
    down_after = 3            # consecutive missed scrapes before an endpoint is DOWN (optional)

    [[tray]]                  # one per compute tray: its `monitor agent` or dcgm-exporter
    tray = 1                  # compute tray 1..18
    host = "gb300-a-t01"      # optional; the URL's host by default
    url = "http://10.0.0.1:9401/metrics"

    [[server]]                # one per inference server
    name = "vllm-00"          # optional; host:port of the URL by default
    url = "http://10.0.0.1:8000/metrics"
    engine = "vllm"           # optional; detected from the page when left out
    gpus = ["T01.G1", 1]      # rack indices 0..71 or tray/module labels
    metrics_prefix = "nv_llm_http_service"  # optional, Dynamo frontends only: its DYN_METRICS_PREFIX

    [alerts]                  # optional; every rule is on with its default unless changed
    bell = true               # ring the terminal bell when an alert fires
    [alerts.temp_margin]      # a table per rule (collectors.alerts.AlertRules): on off for window enabled
    on = 5                    # fire at 5 C to slowdown...
    off = 8                   # ...clear at 8 C (hysteresis)
    for = 10                  # only after 10 s past `on`

    [keys]                    # optional; remap a key: action id = "key" (ids: `?` in the TUI)
    nvlink-view = "L"

    [promql]                  # optional: read the rack from a Prometheus-compatible query API instead of
    url = "http://prometheus:9090"   # its pages (collectors.config_promql, docs/fleet.md)

    [remote_write]            # optional; `monitor collect` sends what it records here
    url = "http://prometheus:9090/api/v1/write"   # keys: collectors.remote_write.settings

Everything is checked on load. A mistake is one ConfigError line naming the file, the line and the field
(tomllib reports no positions for valid TOML, so collectors.config_check finds the line in the text).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectors.alert_rules import AlertRules
from collectors.config_check import Checker, ConfigError
from collectors.config_promql import PromqlConfig, parse_promql, render_promql
from collectors.config_tables import parse_alerts, parse_keys, render_alerts
from collectors.config_targets import ServerTarget, TrayTarget, parse_gpu, parse_servers, parse_trays
from collectors.rack import gpu_label
from collectors.remote_write.settings import RemoteWriteSettings, parse_remote_write, render_remote_write

__all__ = [
    "DEFAULT_DOWN_AFTER",
    "DEFAULT_TIMEOUT_S",
    "MAX_CONFIG_BYTES",
    "ConfigError",
    "RackConfig",
    "ServerTarget",
    "TrayTarget",
    "default_timeout_s",
    "key_error",
    "load_config",
    "parse_config",
    "parse_gpu",
    "render_config",
    "write_config",
]

MIN_DEFAULT_TIMEOUT_S = 2.0
"""The default timeout's floor: on a loaded collector host (load 8-16 on 2 cores) `monitor doctor`
measured healthy answers of up to 493 ms, and a starved collector reads them later still; 2 s leaves
4x that before a healthy endpoint counts as a miss."""
MAX_DEFAULT_TIMEOUT_S = 10.0
"""The default timeout's ceiling: Prometheus' default scrape_timeout (10 s)."""
DEFAULT_DOWN_AFTER = 3
"""Consecutive missed scrapes before an endpoint is DOWN (a refusal or an error is DOWN at once)."""
MAX_CONFIG_BYTES = 1 << 20
"""A rack config is a few KiB; anything past 1 MiB is the wrong file (or /dev/zero)."""


def default_timeout_s(interval_s: float) -> float:
    """The timeout when the config sets none: one interval (Prometheus allows up to its scrape interval),
    at least MIN_DEFAULT_TIMEOUT_S and at most MAX_DEFAULT_TIMEOUT_S. At 1 Hz: 2 s."""
    return min(max(MIN_DEFAULT_TIMEOUT_S, interval_s), MAX_DEFAULT_TIMEOUT_S)


DEFAULT_TIMEOUT_S = default_timeout_s(1.0)
"""The default at the default 1 s interval (what `monitor sim --write-config` writes)."""

_RACK_FIELDS = ("name", "timeout", "down_after")
_TOP_LEVEL = ("rack", "tray", "server", "alerts", "keys", "promql", "remote_write")
_TOML_POS_RE = re.compile(r"\(at line (\d+), column \d+\)")


@dataclass(frozen=True)
class RackConfig:
    """A whole rack: its trays and inference servers."""

    name: str
    trays: tuple[TrayTarget, ...] = ()
    servers: tuple[ServerTarget, ...] = ()
    timeout_s: float | None = None
    """[rack] timeout: honoured as written; None: default_timeout_s() of the poll interval."""
    path: Path | None = None
    down_after: int = DEFAULT_DOWN_AFTER
    alerts: AlertRules = field(default_factory=AlertRules)
    keys: tuple[tuple[str, str], ...] = ()
    """[keys]: (action id, key) pairs remapping the TUI's keys."""
    key_lines: Mapping[str, int] = field(default_factory=dict, compare=False)
    """The line of each [keys] entry, so an action the TUI does not know is reported at its line."""
    promql: PromqlConfig | None = None
    """[promql]: read the rack from a Prometheus-compatible query API (collectors.promql_source)."""
    remote_write: RemoteWriteSettings | None = None
    """[remote_write]: where `monitor collect` sends what it records (collectors.remote_write.settings)."""

    def timeout_for(self, interval_s: float) -> float:
        """The per-endpoint timeout at this poll interval: the configured one, else the default."""
        return self.timeout_s if self.timeout_s is not None else default_timeout_s(interval_s)

    def gpus_of_server(self) -> dict[str, tuple[int, ...]]:
        """Server name -> the rack GPUs it runs on."""
        return {s.name: s.gpus for s in self.servers}


def parse_config(text: str, path: Path | str = "<config>") -> RackConfig:
    """Parse and validate rack config text.

    Raises:
        ConfigError: one line naming the file, line and field.
    """
    data = _load_toml(text, path)
    check = Checker(text, path)
    if "fleet" in data:  # collectors.fleet_config reads these; a one-rack command cannot
        check.fail(
            "fleet",
            "this is a fleet config (several racks); give one of its rack files to this command",
            "fleet",
            None,
            None,
        )
    for key in data:
        if key not in _TOP_LEVEL:
            check.fail(key, f"unknown table or key (expected: {', '.join(_TOP_LEVEL)})", key, None, None)
    name, timeout, down_after = _rack_table(check, data.get("rack", {}), path)
    trays = parse_trays(check, data.get("tray", []))
    servers = parse_servers(check, data.get("server", []))
    promql = parse_promql(check, data.get("promql"))
    if not trays and not servers and promql is None:
        check.fail(
            "tray",
            "the config names no [[tray]], no [[server]] and no [promql]: nothing to monitor",
            None,
            None,
            None,
        )
    keys, key_lines = parse_keys(check, data.get("keys", {}))
    return RackConfig(
        name=name,
        trays=tuple(trays),
        servers=tuple(servers),
        timeout_s=None if timeout is None else float(timeout),
        down_after=down_after,
        path=Path(str(path)),
        alerts=parse_alerts(check, data.get("alerts", {})),
        keys=keys,
        key_lines=key_lines,
        promql=promql,
        remote_write=parse_remote_write(check, data["remote_write"]) if "remote_write" in data else None,
    )


def _load_toml(text: str, path: Path | str) -> dict[str, Any]:
    """The TOML document; a syntax error is one ConfigError line with its position."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        match = _TOML_POS_RE.search(message)
        line = f":{match.group(1)}" if match else ""
        raise ConfigError(f"{path}{line}: not valid TOML: {_TOML_POS_RE.sub('', message).strip()}") from None
    except RecursionError:
        # tomllib recurses once per nested array or inline table; a rack config nests two deep.
        raise ConfigError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None


def _rack_table(check: Checker, rack: object, path: Path | str) -> tuple[str, Any, Any]:
    """[rack]'s name (the file's stem by default), timeout and down_after, each checked."""
    if not isinstance(rack, dict):
        check.fail("rack", "must be a table ([rack])", None, None, "rack")
    check.fields(rack, _RACK_FIELDS, "rack", None)
    name = check.string(rack, "name", "rack", "rack", None) or Path(str(path)).stem
    timeout = rack.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 60
    ):
        check.fail("rack.timeout", f"must be seconds in (0, 60], not {timeout!r}", "rack", None, "timeout")
    down_after = rack.get("down_after", DEFAULT_DOWN_AFTER)
    if isinstance(down_after, bool) or not isinstance(down_after, int) or not 1 <= down_after <= 100:
        check.fail(
            "rack.down_after",
            f"must be a count of missed scrapes in 1..100, not {down_after!r}",
            "rack",
            None,
            "down_after",
        )
    return name, timeout, down_after


def key_error(config: RackConfig, action: str, problem: str) -> ConfigError:
    """A ConfigError about [keys] entry `action`, at its line in the config file."""
    line = config.key_lines.get(action, 0)
    where = f"{config.path}:{line}" if line else str(config.path or "<config>")
    return ConfigError(f"{where}: keys.{action}: {problem}")


def load_config(path: Path | str) -> RackConfig:
    """Read and validate a rack config file.

    Raises:
        ConfigError: the file cannot be read or is not a valid rack config (one line).
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            # Bounded: a device (/dev/zero) or a huge file must not read forever or fill memory.
            data = file.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB; a rack config is a few KiB "
                "(is this the right file?)"
            )
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a rack config file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None
    return parse_config(text, path)


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(config: RackConfig) -> str:
    """The config as TOML text that parse_config reads back to the same RackConfig (path aside)."""
    out = ["[rack]", f"name = {_toml_str(config.name)}"]
    if config.timeout_s is not None:
        out.append(f"timeout = {config.timeout_s!r}")
    out += [f"down_after = {config.down_after}", ""]
    for tray in config.trays:
        out += [
            "[[tray]]",
            f"tray = {tray.tray}",
            f"host = {_toml_str(tray.host)}",
            f"url = {_toml_str(tray.url)}",
            "",
        ]
    for server in config.servers:
        out += ["[[server]]", f"name = {_toml_str(server.name)}", f"url = {_toml_str(server.url)}"]
        if server.engine is not None:
            out.append(f"engine = {_toml_str(server.engine)}")
        if server.metrics_prefix is not None:
            out.append(f"metrics_prefix = {_toml_str(server.metrics_prefix)}")
        out += [f"gpus = [{', '.join(_toml_str(gpu_label(g)) for g in server.gpus)}]", ""]
    out += render_promql(config.promql)
    out += render_alerts(config.alerts)
    if config.keys:
        out += ["[keys]", *(f"{action} = {_toml_str(key)}" for action, key in config.keys), ""]
    out += render_remote_write(config.remote_write)
    return "\n".join(out)


def write_config(path: Path | str, config: RackConfig) -> None:
    """Write the config atomically (temp file, fsync, rename, fsync the directory), never through a symlink.

    Raises:
        ConfigError: the path is a symlink or a directory, or cannot be written.
    """
    from storage.atomic import OutputError, write_bytes

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory")
    try:
        write_bytes(path, render_config(config).encode())
    except OutputError as err:
        raise ConfigError(str(err)) from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot write: {err.strerror or err}") from None
