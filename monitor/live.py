"""Run the live TUI over a set of sources: head + poller thread + RackApp, torn down in order.

The terminal options every TUI command shares are monitor.terminal's (applied before Textual is imported).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from collectors.alert_recorder import AlertRecorder
from collectors.alert_rules import AlertRules
from collectors.clock import Clock
from collectors.poller import Poller, Sink
from collectors.source import Source
from monitor.errors import UserError
from monitor.terminal import apply_terminal_options
from storage.head import thinning_head

if TYPE_CHECKING:
    from collectors.config import RackConfig
    from monitor.view.layout import GpuLayout


def check_keymap(config: RackConfig | None) -> dict[str, str]:
    """The config's [keys] as a keymap, every action checked against the TUI's bindings.

    The one check of [keys]: the TUI calls it before it starts, and `monitor doctor` calls it too, so a
    config doctor passes is one the TUI takes.

    Raises:
        UserError: an action the TUI does not have, named at its line in the config.
    """
    if config is None or not config.keys:
        return {}
    from collectors.config import key_error
    from monitor.tui.app import RackApp

    known = RackApp.binding_ids()
    for action, _key in config.keys:
        if action not in known:
            raise UserError(
                str(key_error(config, action, f"unknown action (one of: {', '.join(sorted(known))})"))
            )
    return dict(config.keys)


def run_live(
    sources: Sequence[Source],
    *,
    clock: Clock | None = None,
    interval: float = 1.0,
    title: str = "rack-monitor",
    subtitle: str = "",
    sinks: Sequence[Sink] = (),
    max_fps: int | None = None,
    config: RackConfig | None = None,
    alerts: AlertRules | None = None,
    store: Path | None = None,
    record: bool = False,
    layout: GpuLayout | None = None,
) -> None:
    """Poll `sources` every `interval` seconds in a thread and show the rack until the user quits.

    Collection never runs on the UI's event loop: the poller thread appends frames to the head and
    the app's worker waits on the head. Alerts (the config's [alerts], else `alerts`, else the
    defaults) are evaluated on every rack frame and recorded as events in the next frame.
    With `record`, every frame also goes into the store at `store` (which the app reads for history).
    `layout` is the GPUs that exist (monitor.view.layout: this host's in local mode; the rack by default).
    """
    if max_fps is not None:
        apply_terminal_options(max_fps=max_fps)
    try:
        keymap = check_keymap(config)
    except BaseException:
        # The sources already hold HTTP connections and threads: a refused config must not leak them.
        for source in sources:
            source.close()
        raise
    from monitor.tui.app import RackApp
    from monitor.tui.hangup import Teardown, run_until_hangup

    rules = config.alerts if config is not None else (alerts or AlertRules())
    recorder = AlertRecorder(rules)
    head = thinning_head()
    recording = None
    if record:
        if store is None:
            raise ValueError("recording needs a store directory")
        from monitor.recording import Recording, StoreBusy

        try:
            recording = Recording(store, head)
        except StoreBusy:
            # A collector already records this store: show its history, record nothing twice.
            subtitle = f"{subtitle} · history from {store} (recorded by another process)"
        except BaseException:
            # The sources already hold sessions and threads; a failed start must not leak them.
            for source in sources:
                source.close()
            raise
    extra_sources = recording.sources if recording else []
    extra_sinks = [recording.sink] if recording else []
    poller = Poller(
        [*sources, *extra_sources, recorder],
        head,
        interval=interval,
        clock=clock,
        sinks=[recorder, *extra_sinks, *sinks],
    )
    from monitor.view.layout import RACK

    app = RackApp(
        head,
        interval=interval,
        title=title,
        subtitle=subtitle,
        store=store,
        keymap=keymap,
        bell=rules.bell,
        layout=layout or RACK,
    )
    poller.start()
    run_until_hangup(app, Teardown(poller.stop, *([recording.close] if recording is not None else [])))


def run_fleet(
    configs: Sequence[RackConfig],
    make_sources: Callable[[RackConfig, float], Sequence[Source]],
    *,
    fleet_name: str,
    clock: Clock | None = None,
    interval: float = 1.0,
    subtitle: str = "",
    max_fps: int | None = None,
) -> None:
    """Poll every rack of a fleet in its own poller and show the fleet screen until the user quits.

    Each rack's sources come from `make_sources(config, interval)` (monitor.fleet.Fleet); its alerts are
    its own config's [alerts]. Recording stays per rack (`monitor collect --config rackNN.toml`).
    """
    if max_fps is not None:
        apply_terminal_options(max_fps=max_fps)
    from monitor.fleet import make_fleet
    from monitor.tui.fleet_app import FleetApp
    from monitor.tui.hangup import Teardown, run_until_hangup

    fleet = make_fleet(configs, make_sources, interval=interval, clock=clock)
    app = FleetApp(fleet, fleet_name=fleet_name, interval=interval, title=fleet_name, subtitle=subtitle)
    fleet.start()
    run_until_hangup(app, Teardown(fleet.stop))
