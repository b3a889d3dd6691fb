"""`monitor [--config rack.toml]`: the TUI on a rack over the network, or on this host's GPUs through NVML."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from collectors.rack import TRAY_INDEX_BASE
from monitor.commands.options import count
from monitor.errors import UserError

if TYPE_CHECKING:
    from collectors.config import RackConfig
    from collectors.fleet_config import FleetConfig
    from collectors.promql_source import PromQLSource
    from collectors.scrape import ScrapeSource

NO_DRIVER_HINT = (
    "try `monitor demo` for a simulated GB300 NVL72, or `monitor --config rack.toml` for a rack over HTTP"
)


def load_rack_config(path: Path) -> RackConfig:
    """The validated rack config at `path`; a bad file is one UserError line naming file, line and field."""
    from collectors.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as err:
        raise UserError(str(err)) from None


def load_rack_or_fleet_config(path: Path) -> RackConfig | FleetConfig:
    """The validated rack or fleet config at `path` (collectors.fleet_config); a bad file is one UserError."""
    from collectors.config import ConfigError
    from collectors.fleet_config import load_rack_or_fleet

    try:
        return load_rack_or_fleet(path)
    except ConfigError as err:
        raise UserError(str(err)) from None


def _run_fleet(fleet: FleetConfig, interval: float, store: Path | None) -> None:
    """The fleet screen over every rack of `fleet`, each scraped as `monitor --config rack.toml` would."""
    from monitor.live import run_fleet

    if store is not None:
        raise UserError(
            "--store records one rack: run `monitor collect --config RACK.toml --store DIR` per rack"
        )
    for rack in fleet.racks:
        scrape_timeout(rack, interval)  # a bad timeout is refused before anything starts
    run_fleet(
        fleet.racks,
        lambda config, every: [scrape_source(config, every)],
        fleet_name=fleet.name,
        interval=interval,
        subtitle=str(fleet.path),
    )


MAX_TIMEOUT_TICKS = 10
"""A configured timeout may span at most this many poll intervals: frames wait for a silent endpoint
that long (they are emitted in time order), so a longer one would hold the live view back."""


def scrape_timeout(config: RackConfig, interval: float) -> float:
    """The per-endpoint timeout at `interval`: the config's, honoured as written, or the default.

    Raises:
        UserError: the configured timeout spans more than MAX_TIMEOUT_TICKS intervals (one line).
    """
    timeout = config.timeout_for(interval)
    if config.timeout_s is not None and timeout > MAX_TIMEOUT_TICKS * interval:
        where = f"{config.path}: " if config.path is not None else ""
        raise UserError(
            f"{where}rack.timeout = {timeout:g} s is more than {MAX_TIMEOUT_TICKS} poll intervals of "
            f"{interval:g} s: every frame would wait up to that long for a silent endpoint; "
            f"lower the timeout or raise --interval"
        )
    return timeout


def scrape_source(config: RackConfig, interval: float) -> ScrapeSource | PromQLSource:
    """The source of a rack config, timed for `interval`: its pages, or its [promql] query API."""
    if config.promql is not None:
        from collectors.promql_source import PromQLSource

        try:
            return PromQLSource.from_config(config, timeout_s=scrape_timeout(config, interval))
        except OSError as err:
            raise UserError(f"{config.path}: promql.bearer_token_file: cannot read: {err}") from None
    from collectors.scrape import ScrapeSource

    return ScrapeSource.from_config(config, timeout_s=scrape_timeout(config, interval))


def run(
    config_path: Path | None,
    interval: float,
    store: Path | None = None,
    *,
    tray: int | None = None,
    tray_index_base: int = TRAY_INDEX_BASE,
) -> None:
    """Run the live TUI on the configured rack, or on the local GPUs; never on simulated data.

    With `store`, everything seen is also recorded there. On the local GPUs the view holds only the GPUs
    this host has (its tray, or its board), from the collector's static facts.
    """
    from monitor.live import run_live

    if interval <= 0:
        raise UserError("--interval must be positive")
    if config_path is not None:
        from collectors.fleet_config import FleetConfig

        config = load_rack_or_fleet_config(config_path)
        if isinstance(config, FleetConfig):
            _run_fleet(config, interval, store)
            return
        source = scrape_source(config, interval)
        trays, servers = count(len(config.trays), "tray"), count(len(config.servers), "server")
        if config.promql is not None:  # the trays are whatever the backend holds under its matchers
            trays = f"PromQL {config.promql.url}"
        subtitle = f"{trays}, {servers} · {config_path}"
        run_live(
            [source],
            interval=interval,
            title=config.name,
            subtitle=subtitle,
            config=config,
            store=store,
            record=store is not None,
        )
        return
    from monitor.commands.local_nvml import describe, open_local
    from monitor.view.layout import host_layout

    collector = open_local(tray, tray_index_base, why=f"; {NO_DRIVER_HINT}")
    run_live(
        [collector],
        interval=interval,
        title="rack-monitor",
        subtitle=f"{collector.name} · {describe(collector)} · local NVML",
        store=store,
        record=store is not None,
        layout=host_layout(collector.gpus),
    )
