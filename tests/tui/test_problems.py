"""The problems list (monitor.view.problems) over the simulated rack, each scenario's fault checked
against the simulator's own record of where it put it (scenario.fault), not against the view's code.

The rack is polled through the real Poller and AlertRecorder on a manual clock (tests/tui/live_rack.py),
and the view is built the way the live app builds it: snapshot, serving snapshot, active alerts.
"""

from __future__ import annotations

from live_rack import FAULT_AT_S, LiveRack

from collectors.rack import GPUS, LINKS_PER_GPU, gpu_label
from monitor.view.alerts_view import AlertTracker
from monitor.view.builder import SnapshotBuilder
from monitor.view.problems import RackProblems, Rank, rack_problems
from monitor.view.serving import ServingBuilder

NAMED_WITHIN_S = 5
"""The issue's bound: a fault is named within 5 s of its first observable symptom."""


class Watch:
    """The live rack and the view the app would build from its head after each tick."""

    def __init__(self, scenario: str, seed: int = 7) -> None:
        self.live = LiveRack(scenario, seed)
        self.snapshots = SnapshotBuilder()
        self.serving = ServingBuilder()
        self.alerts = AlertTracker()
        self.snapshot_only: RackProblems | None = None
        """The problems the snapshot and serving view name by themselves (no alert), at the last tick."""

    @property
    def fault(self):
        fault = self.live.rack.scenario.fault
        assert fault is not None
        return fault

    async def tick(self, n: int = 1) -> RackProblems:
        for _ in range(n):
            await self.live.tick()
        head = self.live.head
        frames = head.latest(self.snapshots.frames_needed())
        self.alerts.update(head.frames(since_ms=self.alerts.seen_ms))
        snapshot = self.snapshots.build(frames)
        serving = self.serving.build(frames, snapshot)
        self.snapshot_only = rack_problems(snapshot, serving)
        return rack_problems(snapshot, serving, self.alerts.newest_first())

    async def until(self, named, ticks: int) -> tuple[int, RackProblems]:
        """Tick until `named(problems)` holds: (seconds after the fault began, the problems then)."""
        for t in range(1, ticks + 1):
            problems = await self.tick()
            if named(problems):
                return t - int(FAULT_AT_S), problems
        raise AssertionError(f"never named in {ticks} ticks: {[p.text for p in problems.problems]}")


async def test_a_healthy_rack_says_so_with_what_it_counts():
    watch = Watch("steady")
    try:
        for _ in range(30):
            problems = await watch.tick()
            assert problems.problems == (), [p.text for p in problems.problems]
        endpoints = len(watch.live.rack.workload.instances)
    finally:
        watch.live.stop()
    links = GPUS * LINKS_PER_GPU
    assert (
        problems.summary
        == f"no problems: {GPUS}/{GPUS} GPUs, {links}/{links} links, {endpoints}/{endpoints} endpoints"
    )


async def test_a_lost_gpu_is_the_first_problem_with_its_xid():
    watch = Watch("gpu-lost")
    try:
        label = gpu_label(watch.fault.gpu)
        after, problems = await watch.until(lambda ps: any(p.place == label for p in ps.problems), 20)
    finally:
        watch.live.stop()
    assert after <= NAMED_WITHIN_S
    first = problems.problems[0]
    assert (first.rank, first.place, first.gpu, first.view) == (
        Rank.GPU_LOST,
        label,
        watch.fault.gpu,
        "detail",
    )
    assert "XID 79" in first.text, first.text
    assert problems.gpus_ok == GPUS - 1
    # Its server answers but cannot serve: the serving view's fault, placed on the lost GPU.
    server = watch.live.rack.workload.instances[watch.fault.instance].name
    (line,) = [p for p in problems.problems if p.endpoint == server]
    assert (line.what, line.place) == ("gpu lost", f"{server} on {label}"), line.text


async def test_a_flapping_link_is_named_with_its_number_then_as_down():
    watch = Watch("nvlink-flap")
    try:
        gpu, link = watch.fault.gpu, watch.fault.link
        place = f"{gpu_label(gpu)} link {link}"
        after, problems = await watch.until(lambda ps: any(p.place == place for p in ps.problems), 20)
        assert after <= NAMED_WITHIN_S
        climbing = next(p for p in problems.problems if p.place == place)
        assert (climbing.rank, climbing.view, climbing.gpu, climbing.link) == (
            Rank.ERRORS,
            "nvlink",
            gpu,
            link,
        )
        # Named from the link's own counters, without waiting for the alert's window and its tick of lag.
        assert watch.snapshot_only is not None and watch.snapshot_only.problems == (climbing,)
        # The scenario takes the link down after flapping for flap_s.
        flap_s = watch.live.rack.scenario.flap_s
        problems = await watch.tick(int(flap_s) + 2)
    finally:
        watch.live.stop()
    down = problems.problems[0]
    assert (down.rank, down.place) == (Rank.LINK_DOWN, place), [p.text for p in problems.problems]
    assert f"{LINKS_PER_GPU - 1}/{LINKS_PER_GPU} up" in down.detail


async def test_a_straggler_is_named_with_the_clock_the_simulator_runs_it_at():
    watch = Watch("straggler")
    try:
        gpu = watch.fault.gpu
        label = gpu_label(gpu)
        after, problems = await watch.until(lambda ps: any(p.place == label for p in ps.problems), 20)
        truth_mhz = watch.live.rack.gpus[gpu].sm_mhz
    finally:
        watch.live.stop()
    assert after <= NAMED_WITHIN_S
    (line,) = [p for p in problems.problems if p.place == label]
    assert "straggler" in line.text and f"SM clock {truth_mhz:,} vs" in line.text, line.text
    assert len(problems.problems) == 1, [p.text for p in problems.problems]


async def test_a_server_that_stopped_answering_is_named_on_its_gpu():
    watch = Watch("endpoint-down")
    try:
        inst = watch.live.rack.workload.instances[watch.fault.instance]
        after, problems = await watch.until(lambda ps: any(p.endpoint == inst.name for p in ps.problems), 20)
    finally:
        watch.live.stop()
    assert after <= NAMED_WITHIN_S
    (line,) = [p for p in problems.problems if p.endpoint == inst.name]
    on = gpu_label(inst.gpus[0])
    assert (line.place, line.view, line.what) == (f"{inst.name} on {on}", "serving", "down")
    # Its idle GPU is no straggler: the server is the one problem.
    assert len(problems.problems) == 1, [p.text for p in problems.problems]


async def test_a_serviced_tray_names_each_of_its_servers_then_recovers():
    watch = Watch("restart")
    try:
        names = {watch.live.rack.workload.instances[i].name for i in watch.live.rack.scenario.instances}
        _, problems = await watch.until(lambda ps: {p.endpoint for p in ps.problems} >= names, 10)
        later = await watch.tick(10)
    finally:
        watch.live.stop()
    assert {p.endpoint for p in problems.problems} == names
    assert later.problems == (), [p.text for p in later.problems]


async def test_a_tray_warming_away_from_the_rack_warns_long_before_any_gpu_nears_slowdown():
    watch = Watch("thermal")
    try:
        place = f"tray T{watch.fault.tray:02d}"
        after, problems = await watch.until(lambda ps: any(p.place == place for p in ps.problems), 70)
        # The simulator's own temperatures: every GPU still far from its slowdown temperature.
        least_margin = min(g.margin_c for g in watch.live.rack.gpus)
    finally:
        watch.live.stop()
    assert least_margin >= 10, least_margin
    (line,) = [p for p in problems.problems if p.place == place]
    assert (line.rank, line.what) == (Rank.THERMAL, "warming")
    assert line.gpu is not None and watch.live.rack.gpus[line.gpu].id.tray == watch.fault.tray
    assert problems.problems == (line,), [p.text for p in problems.problems]
    assert after < 60


def test_a_silent_tray_is_one_line_and_a_late_collector_and_a_stopped_recording_are_named():
    from tui_frames import LOST_GPU, STALE_TRAY_GPUS, rack_frame, scenario_frames

    from monitor.view.builder import build_snapshot
    from storage.schemas import EventKind

    frames = scenario_frames()
    late = {"kind": EventKind.COLLECTOR_LATE, "source": "tray07", "detail": "tick took 2.4 s"}
    stopped = {"kind": EventKind.RECORDING_STOPPED, "source": "store", "detail": "disk full"}
    frames.append(rack_frame(len(frames), missing=STALE_TRAY_GPUS, events=[late, stopped]))
    tracker = AlertTracker()
    tracker.update(frames)
    problems = rack_problems(build_snapshot(frames), None, tracker.newest_first())
    texts = [p.text for p in problems.problems]
    silent_tray = STALE_TRAY_GPUS[0] // 4 + 1  # the fixture's own record of which GPUs stopped answering
    assert f"tray T{silent_tray:02d} not answering: no reading for 5 s" in texts, texts
    assert not any(p.place.startswith(f"T{silent_tray:02d}.") for p in problems.problems), texts
    assert "tray07 late: tick took 2.4 s" in texts and "store recording stopped: disk full" in texts, texts
    assert problems.problems[-2:] and {p.rank for p in problems.problems[-2:]} == {Rank.COLLECTOR}
    # The appended tick has the lost GPU answering again; its XID 79 still counts within the XID window.
    assert problems.gpus_ok == GPUS - len(STALE_TRAY_GPUS)
    assert f"{gpu_label(LOST_GPU)} XID 79: GPU has fallen off the bus" in texts, texts
