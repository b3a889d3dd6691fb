"""`monitor collect`: the headless recorder (systemd-friendly: logs on stderr, clean stop on SIGTERM).

It records a rack over HTTP (--config), the simulated rack (--sim), or this host's own GPUs through NVML
(--nvml: a compute tray's or an HGX board's recorder, no agent or config needed)."""

from __future__ import annotations

import gc
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from collectors.rack import TRAY_INDEX_BASE
from monitor.commands.local_nvml import TrayOption
from monitor.commands.options import StoreOption, TrayIndexBaseOption, check_scenario, resolve_store, seconds
from monitor.errors import UserError
from monitor.timespec import iso

if TYPE_CHECKING:
    from collectors.alert_rules import AlertRules
    from collectors.config import RackConfig
    from collectors.remote_write.client import Client
    from collectors.remote_write.sender import RemoteWriteSender
    from collectors.remote_write.settings import RemoteWriteSettings
    from storage.writer import StoreWriter

log = logging.getLogger("monitor.collect")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def command(
    config: Annotated[Path | None, typer.Option("--config", help="Rack config (TOML) to scrape.")] = None,
    sim: bool = typer.Option(False, "--sim", help="Record the simulated GB300 NVL72 instead."),
    nvml: bool = typer.Option(
        False,
        "--nvml",
        help="Record this host's own GPUs through NVML (a tray host's or an HGX host's recorder).",
    ),
    store: StoreOption = None,
    interval: str = typer.Option("1s", "--interval", help="Time between samples."),
    duration: str | None = typer.Option(None, "--duration", help="Stop after this long (default: run on)."),
    flush: str = typer.Option("10s", "--flush", help="Data sealed to disk at least this often."),
    scenario: str = typer.Option("steady", "--scenario", help="Sim scenario (with --sim)."),
    seed: int = typer.Option(0, "--seed", help="Sim seed (with --sim)."),
    tray: TrayOption = None,
    tray_index_base: TrayIndexBaseOption = TRAY_INDEX_BASE,
    remote_write: str | None = typer.Option(
        None,
        "--remote-write",
        help="Also send every recorded sample to this Prometheus remote-write URL "
        "(overrides [remote_write] url in the config).",
    ),
) -> None:
    """Record the rack (or with --nvml this host's GPUs) into a store until SIGTERM/SIGINT (or --duration),
    sealing a last segment."""
    if (config is not None) + sim + nvml != 1:
        raise UserError("pass exactly one of --config FILE, --sim or --nvml")
    if tray is not None and not nvml:
        raise UserError("--tray places this host's GPUs: it goes with --nvml")
    root = resolve_store(store)
    step = seconds(interval, "--interval")
    flush_s = seconds(flush, "--flush")
    run_for = seconds(duration, "--duration") if duration is not None else None
    rules = None
    outbound = None
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format=LOG_FORMAT)
    if config is not None:
        from monitor.commands.root import load_rack_config, scrape_source

        rack = load_rack_config(config)
        outbound = remote_write_target(rack, remote_write)
        source = scrape_source(rack, interval=step)
        sources: list[Any] = [source]
        log.info(
            "rack %s: %d endpoints, timeout %g s each, DOWN after %d missed scrapes",
            rack.name,
            len(rack.trays) + len(rack.servers),
            source.timeout_s,
            source.down_after,
        )
        rules = rack.alerts
    elif nvml:
        sources = [_nvml_source(tray, tray_index_base)]
    else:
        sources = _sim_sources(scenario, seed)
    if config is None and remote_write is not None:
        outbound = remote_write_target(None, remote_write)
    record(
        root,
        sources,
        interval_s=step,
        flush_s=flush_s,
        duration_s=run_for,
        rules=rules,
        remote_write=outbound,
    )


def remote_write_target(rack: RackConfig | None, url: str | None) -> RemoteWriteTarget | None:
    """Where to send: the config's [remote_write] with --remote-write's URL over its url, or None."""
    from collectors.config import ConfigError
    from collectors.remote_write.settings import RemoteWriteSettings

    settings = rack.remote_write if rack is not None else None
    try:
        if url is not None:
            settings = (settings or RemoteWriteSettings(url=url)).with_url(url)
    except ConfigError as err:
        raise UserError(str(err)) from None
    if settings is None:
        return None
    import socket

    name = rack.name if rack is not None else socket.gethostname()
    hosts = {t.tray: t.host for t in rack.trays} if rack is not None else {}
    target = RemoteWriteTarget(settings, name, hosts)
    target.client()  # an unreadable secret or TLS file: one line now, before recording starts
    return target


def record(
    root: Path,
    sources: list[Any],
    *,
    interval_s: float,
    flush_s: float,
    duration_s: float | None,
    rules: AlertRules | None = None,
    remote_write: RemoteWriteTarget | None = None,
) -> None:
    """Poll `sources` plus this host every interval into the store at `root` until stopped.

    Args:
        root: the store directory.
        sources: collectors (Source protocol).
        interval_s: seconds between ticks.
        flush_s: data time per sealed segment.
        duration_s: stop after this long; None runs until SIGTERM or SIGINT.
        rules: alert rules evaluated on every frame and recorded as events (the defaults when None).
        remote_write: also send what is recorded there, from a thread of its own (None: do not).
    """
    from collectors.alert_recorder import AlertRecorder
    from collectors.poller import Poller
    from monitor.recording import Recording
    from storage.frame import Frame
    from storage.head import Head

    # Nothing here reads the head (the writer buffers what it has not sealed itself): the least one.
    head = Head(capacity=2)
    try:
        recording = Recording(root, head, flush_s=flush_s)
    except UserError:
        for s in sources:
            s.close()
        raise
    writer = recording.writer
    try:
        sender = remote_write.sender(root, writer) if remote_write is not None else None
    except UserError:
        recording.close()
        for s in sources:
            s.close()
        raise
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s, sealing the last segment", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    first = threading.Event()

    def store(frame: Frame) -> None:
        recording.sink(frame)
        if not first.is_set():
            first.set()
            log.info("first frame recorded (%d rows)", frame.rows)
            # What start-up built (modules, parsers' page shapes, counters' state) lives as long as the
            # recorder: out of the cyclic collector's generations, which then walk only what ticks make.
            gc.freeze()

    alerts = AlertRecorder(rules)
    poller = Poller([*sources, *recording.sources, alerts], head, interval=interval_s, sinks=[alerts, store])
    log.info("recording %s every %.3g s into %s", sources_text(sources), interval_s, root)
    began = time.monotonic()
    with recording:
        try:
            poller.start()
            if sender is not None:
                sender.start()
            stop.wait(duration_s)
        finally:
            poller.stop()
            if sender is not None:
                sender.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    status = writer.status
    sealed = status.sealed_through_ms
    log.info(
        "stopped after %.1f s; %s, %d file%s%s",
        time.monotonic() - began,
        f"sealed through {iso(sealed)}" if sealed is not None else "nothing sealed",
        status.files,
        "" if status.files == 1 else "s",
        f", last error: {status.last_error}" if status.last_error else "",
    )
    if sender is not None:
        sent = sender.status
        log.info(
            "remote-write: %d samples sent in %d requests, %d dropped; %s",
            sent.sent_samples,
            sent.requests,
            sent.dropped_samples,
            sent.message,
        )


@dataclass(frozen=True)
class RemoteWriteTarget:
    """What `collect` sends to: the receiver's settings, the `rack` label, and tray -> host names."""

    settings: RemoteWriteSettings
    rack: str
    hosts: dict[int, str]

    def sender(self, root: Path, writer: StoreWriter | None = None) -> RemoteWriteSender:
        """The sender over the recording's sealed segments; an unreadable secret or TLS file is a UserError.

        Not through the head: the recorder's holds 2 ticks, fewer than a segment's, so reading through it
        would move the position past ticks that are in neither (never sent). With the recording's
        `writer`, the seals it makes are tapped as they are written, and encoded from memory while the
        sender keeps up (collectors.remote_write.tap); a backlog is read from the store.
        """
        from collectors.remote_write.sender import RemoteWriteSender
        from collectors.remote_write.series import SeriesEncoder
        from collectors.remote_write.tap import SealedTap

        self.client()
        tap = None
        if writer is not None:
            tap = SealedTap(self.settings.tables, writer.live.current.sealed_through_ms)
            writer.seal_listeners.append(tap)
        sender = RemoteWriteSender(root, self.settings, SeriesEncoder(self.rack, self.hosts), tap=tap)
        if tap is not None:
            tap.on_seal = sender.wake
        return sender

    def client(self) -> Client:
        """The HTTP client (secrets and TLS files read now); UserError when one cannot be read."""
        from collectors.config import ConfigError
        from collectors.remote_write.client import Client

        try:
            return Client(self.settings)
        except ConfigError as err:
            raise UserError(str(err)) from None
        except (OSError, ValueError) as err:
            raise UserError(f"remote_write.tls_config: cannot set up TLS: {err}") from None


def sources_text(sources: list[Any]) -> str:
    """'1 source (rack-a)', '18 sources (tray01..tray18)': how many, and which, for the log."""
    names = [str(getattr(s, "name", "?")) for s in sources]
    count = f"{len(names)} source{'' if len(names) == 1 else 's'}"
    if not names:
        return count
    which = (
        names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}" if len(names) > 2 else ", ".join(names)
    )
    return f"{count} ({which})"


def _nvml_source(tray: int | None, tray_index_base: int) -> Any:
    """This host's NVML collector (one line and exit 1 where there is none), logged as what it found."""
    from monitor.commands.local_nvml import describe, open_local

    collector = open_local(
        tray, tray_index_base, why=": `monitor collect --nvml` records the GPUs of this host"
    )
    found = describe(collector, span=True)
    log.info("NVML on %s: %s, trayIndex counted from %d", collector.name, found, tray_index_base)
    return collector


def _sim_sources(scenario: str, seed: int) -> list[Any]:
    """One NVML collector per simulated tray, on the wall clock."""
    check_scenario(scenario)
    from collectors.nvml import NvmlCollector
    from collectors.sim import SimRack

    rack = SimRack(seed=seed, scenario=scenario)
    return [NvmlCollector(tray, name=f"tray{i + 1:02d}") for i, tray in enumerate(rack.trays)]
