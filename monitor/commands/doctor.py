"""`monitor doctor`: what works here: NVML on this host, each endpoint of a rack config, terminal colours."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from collectors.nvml_errors import (
    NVML_EXCEPTIONS,
    Outcome,
    code_name,
    error_name,
    outcome_of,
    outcome_of_code,
)
from collectors.rack import TRAY_INDEX_BASE
from monitor.commands.options import TrayIndexBaseOption, check_tray_index_base, count
from monitor.errors import UserError

if TYPE_CHECKING:
    from collectors.config import RackConfig
    from collectors.fleet_config import FleetConfig
    from collectors.nvml_static import GpuFacts, GpuInfo


def command(
    config: Annotated[
        Path | None, typer.Option("--config", help="Rack or fleet config (TOML) to check.")
    ] = None,
    tray_index_base: TrayIndexBaseOption = TRAY_INDEX_BASE,
) -> None:
    """Check NVML here, every endpoint of --config (ok + latency + engine, stale, or why not), and colours.

    A fleet file (collectors.fleet_config) has each of its racks checked, then one verdict per rack."""
    lines, gpus_failed = nvml_lines(check_tray_index_base(tray_index_base))
    lines.append(terminal_line())
    if config is None:
        for line in lines:
            typer.echo(line)
        if lines[0].startswith("NVML: not available"):
            raise UserError("no NVIDIA driver here and no --config to check: nothing to monitor", exit_code=1)
        _fail_on_gpus(gpus_failed)
        return
    from collectors.fleet_config import FleetConfig
    from monitor.commands.root import load_rack_or_fleet_config

    loaded = load_rack_or_fleet_config(config)
    if isinstance(loaded, FleetConfig):
        _fleet(loaded, lines)
        _fail_on_gpus(gpus_failed)
        return
    rack_lines, problems = check_rack(loaded, config)
    for line in lines + rack_lines:
        typer.echo(line)
    if problems:
        raise UserError(f"{config}: {'; '.join(problems)}", exit_code=1)
    _fail_on_gpus(gpus_failed)


def check_rack(rack: RackConfig, path: Path) -> tuple[list[str], list[str]]:
    """Poll every source of one rack once: (its lines: header, keys, one per endpoint, the count; what
    fails it, each a few words; none when it passes)."""
    from monitor.commands.root import MAX_TIMEOUT_TICKS, scrape_source
    from storage.schemas import EndpointState

    keys = keys_line(rack)
    source = scrape_source(rack, interval=max(1.0, rack.timeout_for(1.0) / MAX_TIMEOUT_TICKS))
    try:
        source.poll(round(time.time() * 1000))
        statuses = source.statuses()
    finally:
        source.close()
    configured = {s.name: s.engine for s in rack.servers}
    lines = [
        f"rack {rack.name} ({path}): {count(len(rack.trays), 'tray')}, {count(len(rack.servers), 'server')}",
        keys,
    ]
    width = max((len(s.name) for s in statuses), default=0)
    failed = 0
    for status in statuses:
        lines.append(
            f"  {status.kind:<6} {status.name:<{width}}  {status.url}  {_verdict(status, configured)}"
        )
        failed += status.state != EndpointState.OK
    lines.append(f"{len(statuses) - failed} of {len(statuses)} endpoints answer")
    problems = [f"{failed} of {len(statuses)} endpoints do not answer"] if failed else []
    if keys.startswith(KEYS_REFUSED):
        problems.append("the TUI refuses its [keys] table (see above)")
    return lines, problems


def _fleet(fleet: FleetConfig, lines: list[str]) -> None:
    """Check every rack of a fleet as `doctor --config rack.toml` would, then one verdict line per rack.

    Raises:
        UserError: a rack failed (exit 1), naming how many and which.
    """
    verdicts: list[tuple[str, list[str]]] = []
    for rack in fleet.racks:
        path = rack.path or Path(rack.name)
        try:
            rack_lines, problems = check_rack(rack, path)
        except UserError as err:  # e.g. an unreadable token file: that rack fails, the others are checked
            rack_lines, problems = [f"rack {rack.name} ({path}): {err}"], [str(err)]
        lines += rack_lines
        verdicts.append((rack.name, problems))
    lines.append(f"fleet {fleet.name} ({fleet.path}): {count(len(fleet.racks), 'rack')}")
    width = max(len(name) for name, _ in verdicts)
    for name, problems in verdicts:
        lines.append(f"  {name:<{width}}  {'FAIL: ' + '; '.join(problems) if problems else 'ok'}")
    for line in lines:
        typer.echo(line)
    failing = [name for name, problems in verdicts if problems]
    if failing:
        raise UserError(
            f"{fleet.path}: {len(failing)} of {len(verdicts)} racks fail: {', '.join(failing)}", exit_code=1
        )


KEYS_REFUSED = "keys: refused: "


def keys_line(rack: RackConfig) -> str:
    """The config's [keys] checked by the TUI's own check (monitor.live.check_keymap), as one line."""
    from monitor.live import check_keymap

    try:
        keymap = check_keymap(rack)
    except UserError as err:
        return f"{KEYS_REFUSED}{err}"
    return f"keys: {count(len(keymap), 'key')} remapped, ok" if keymap else "keys: defaults"


def _fail_on_gpus(failed: int) -> None:
    """Exit non-zero when a local GPU failed its check (the lines above name each one)."""
    if failed:
        raise UserError(f"{failed} GPU(s) on this host failed the NVML check (named above)", exit_code=1)


def _verdict(status: Any, configured: dict[str, str | None]) -> str:
    """ok + latency (+ engine), stale, or the error."""
    from storage.schemas import EndpointState

    if status.state == EndpointState.OK:
        text = f"ok {status.latency_s * 1000:.1f} ms"
        if status.kind == "server":
            how = "configured" if configured.get(status.name) else "detected"
            text += f", engine {status.engine} ({how})"
        if status.reason:  # the page answered but lacked or repeated series (see the serving mapping)
            text += f"; warning: {status.reason}"
        return text
    if status.state == EndpointState.STALE:
        return f"stale: {status.reason}"
    return f"error: {status.reason}"


def nvml_lines(tray_index_base: int = TRAY_INDEX_BASE) -> tuple[list[str], int]:
    """NVML on this host and every GPU's check (see check_gpu), and how many GPUs failed.

    The `pynvml` module is looked up when called, so that a pynvml-compatible one (a simulated tray)
    put in its place is the one checked.

    Args:
        tray_index_base: what nvmlPlatformInfo.trayIndex reads for compute tray 1 (--tray-index-base).
    """
    import pynvml

    from collectors.nvml_static import gpu_infos, init_reason, nvml_available

    reason = nvml_available(pynvml)
    if reason is not None:
        return [f"NVML: not available ({reason})"], 0
    try:
        pynvml.nvmlInit()
    except NVML_EXCEPTIONS as exc:
        return [f"NVML: not available ({init_reason(exc)})"], 0
    try:
        driver = _ask(pynvml.nvmlSystemGetDriverVersion)
        count = pynvml.nvmlDeviceGetCount()
        checks = [check_gpu(pynvml, index, tray_index_base) for index in range(count)]
    except NVML_EXCEPTIONS as exc:
        return [f"NVML: works, but {error_name(exc)}"], 0
    finally:
        with contextlib.suppress(*NVML_EXCEPTIONS):
            pynvml.nvmlShutdown()
    try:  # place the GPUs as the collector does, to name them as every view does
        infos = gpu_infos([c.facts for c in checks], None)
        labels = [info.label for info in infos]
        for check, info in zip(checks, infos, strict=True):
            check.placed = _placed_text(info)
    except ValueError as exc:
        labels = [f"NVML{c.facts.nvml_index}" for c in checks]
        if checks:
            checks[0].failures.append(f"cannot place the GPUs in the rack: {exc}")
    failed = sum(1 for c in checks if c.failures)
    head = "ok" if not failed else f"{failed} of {count} GPUs FAIL"
    lines = [
        f"NVML: {head}, {count} GPUs, driver {driver or 'unknown'}, trayIndex counted from {tray_index_base}"
    ]
    width = max((len(label) for label in labels), default=0)
    for check, label in zip(checks, labels, strict=True):
        lines.append(f"  GPU {check.facts.nvml_index} {label:<{width}}  {check.verdict()}")
    return lines, failed


def _placed_text(info: GpuInfo) -> str:
    """Where the collector puts a GPU, and from what: 'tray 16 module 2 slot 25' or 'GPU3 (a board...)'."""
    if info.placed_by == "board":
        return f"{info.label}, a host of its own (no platform info, no --tray)"
    slot = f" slot {info.slot}" if info.slot is not None else ""
    how = "" if info.placed_by == "platform" else " (by the configured or the other GPUs' tray)"
    return f"tray {info.tray} module {info.module}{slot}{how}"


@dataclass
class GpuCheck:
    """One GPU's check: its static facts as the collector reads them at open, and what went wrong."""

    facts: GpuFacts
    placed: str = "not placed"
    """Where the collector puts the GPU (see _placed_text)."""
    fields: int = 0
    failures: list[str] = field(default_factory=list)
    """Lost, no handle, or an error the collector would mark the GPU ERROR for: each fails doctor."""
    warnings: list[str] = field(default_factory=list)
    """Answers that will never come (NOT_SUPPORTED...): the collector leaves those columns null."""

    def note(self, what: str, exc_or_code: BaseException | int) -> None:
        """File one failed call or field entry under failures or warnings by its NVML outcome."""
        if isinstance(exc_or_code, int):
            outcome, name = outcome_of_code(exc_or_code), code_name(exc_or_code)
        else:
            outcome, name = outcome_of(exc_or_code), error_name(exc_or_code)
        text = f"{name} from {what}"
        if outcome is Outcome.LOST:
            self.failures.insert(0, f"LOST: {text}")
        elif outcome is Outcome.UNSUPPORTED:
            self.warnings.append(text)
        else:
            self.failures.append(text)

    def verdict(self) -> str:
        """One line: UUID, the raw platform info and where that places the GPU, NVLinks, fields, then
        FAILED/warning with the NVML errors."""
        f = self.facts
        if f.raw_platform is not None:
            platform = f"platform {f.raw_platform.text()}"
        else:
            platform = f"platform info {f.platform_note or 'not read'}"
        if f.raw_platform is not None and f.platform is None and f.platform_note:
            platform += f" (outside the rack: {f.platform_note})"
        place = f"{platform} -> {self.placed}"
        parts = [f.uuid or "uuid unknown", place, f"{f.nvlink_count} NVLinks", f"{self.fields} fields"]
        text = "; ".join(parts)
        if self.failures:
            return f"FAILED: {'; '.join(self.failures + self.warnings)} ({text})"
        if self.warnings:
            return f"ok, warning: {'; '.join(self.warnings)} ({text})"
        return f"ok ({text})"


class _CallLog:
    """The NVML module as collectors.nvml_static.read_facts sees it, noting every call that raised."""

    def __init__(self, nvml: Any, check: GpuCheck) -> None:
        self._nvml = nvml
        self._check = check

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._nvml, name)
        if not (name.startswith("nvml") and callable(value)):
            return value

        def logged(*args: Any, **kwargs: Any) -> Any:
            try:
                return value(*args, **kwargs)
            except NVML_EXCEPTIONS as exc:
                self._check.note(name, exc)
                raise

        return logged


def check_gpu(nvml: Any, index: int, tray_index_base: int = TRAY_INDEX_BASE) -> GpuCheck:
    """Check one GPU as the collector uses it: its handle and static facts (platform info, NVLink count)
    read by the collector's own read_facts, then one nvmlDeviceGetFieldValues with the collector's
    per-tick request. Every failed call and field entry is noted with its NVML error."""
    from collectors.nvml_fields import FieldPlan, decode_field_values
    from collectors.nvml_static import GpuFacts, read_facts

    check = GpuCheck(GpuFacts(index, None))
    check.facts = read_facts(_CallLog(nvml, check), index, tray_index_base)
    handle = check.facts.handle
    if handle is None or check.facts.lost:
        return check
    request = FieldPlan.build(check.facts.nvlink_count).request
    try:
        raw = nvml.nvmlDeviceGetFieldValues(handle, request)
    except NVML_EXCEPTIONS as exc:
        check.note("nvmlDeviceGetFieldValues", exc)
        return check
    _values, rets = decode_field_values(raw)
    check.fields = len(rets)
    failed: dict[tuple[int, int], int] = {}
    for (field_id, _scope), ret in zip(request, rets, strict=True):
        if ret:
            failed[(field_id, ret)] = failed.get((field_id, ret), 0) + 1
    for (field_id, ret), entries in failed.items():
        check.note(f"field {field_id} ({entries} of {len(request)} entries)", ret)
    return check


def _ask(fn: Any) -> Any:
    """fn(), or None where NVML does not answer."""
    try:
        return fn()
    except NVML_EXCEPTIONS:
        return None


def terminal_line() -> str:
    """The colours and size this terminal offers the TUI (what Rich, under Textual, detects)."""
    from rich.console import Console

    console = Console()
    size = shutil.get_terminal_size(fallback=(80, 24))
    env = ", ".join(f"{k}={os.environ[k]}" for k in ("TERM", "COLORTERM", "NO_COLOR") if k in os.environ)
    system = console.color_system
    if not console.is_terminal:
        colours = "not a terminal (the TUI needs one)"
    elif system is None:
        colours = "no colour (the TUI marks states with glyphs)"
    else:
        colours = {"truecolor": "24-bit colour", "256": "256 colours", "standard": "16 colours"}.get(
            system, system
        )
    return f"terminal: {colours}, {size.columns}x{size.lines}" + (f" ({env})" if env else "")
