"""monitor report over a recorded store: its own window by default, --last counted back from its end, a
serving-only store said as such, and every suspect with its onset (to the second) and exact element,
the same in the text, the JSON and report.html.

Expected onsets come from the simulator's fault schedule (collectors.sim.scenarios: each fault begins
`fault_at` seconds after the rack's first tick; the NVLink flap takes its link down `flap_s` later).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest

from collectors.rack import gpu_label
from collectors.sim.rack import SimRack
from collectors.sim.scenarios import NvlinkFlap, Thermal
from monitor.export import export
from monitor.report import summarize
from monitor.report_html import render_report
from monitor.report_text import render_markdown_lines
from monitor.timespec import Window, iso
from storage.reader import StoreReader
from tests.post.conftest import END_S, SEED, monitor, one_line_error

END = iso(END_S * 1000)


def first_tick_s(seconds: int) -> int:
    """The backfill's first tick (conftest.history: `seconds` ticks at 1 s ending at END_S)."""
    return END_S - seconds + 1


def scenario(name: str):
    return SimRack(SEED, name).scenario


def report_json(store: Path, *args: str) -> dict:
    done = monitor("report", "--store", str(store), *args, "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_without_a_window_the_report_covers_the_whole_store(straggler: Path) -> None:
    done = monitor("report", "--store", str(straggler))
    assert done.returncode == 0, done.stderr
    start = iso(first_tick_s(300) * 1000)
    assert done.stdout.splitlines()[0] == f"Rack report {start} .. {END} (the whole store)"


def test_last_counts_back_from_the_end_of_a_store_that_has_ended(straggler: Path) -> None:
    summary = report_json(straggler, "--last", "30s")
    assert summary["window"] == {
        "since": iso((END_S - 30) * 1000),
        "until": END,
        "how": f"last 30s of the store, ending {END}",
    }
    assert summary["data"]["first"] == iso((END_S - 30) * 1000) and summary["data"]["last"] == END
    text = monitor("report", "--store", str(straggler), "--last", "30s").stdout
    assert f"(last 30s of the store, ending {END})" in text.splitlines()[0]


def test_a_bundle_reports_its_own_window(straggler: Path, tmp_path: Path) -> None:
    window = Window((END_S - 100) * 1000, (END_S - 40) * 1000)
    bundle = tmp_path / "incident"
    export(straggler, bundle, window, with_report=False)
    summary = report_json(bundle)
    assert (summary["data"]["first"], summary["data"]["last"]) == (iso(window.since_ms), iso(window.until_ms))
    assert summary["window"]["how"] == "the whole store"


def test_a_store_of_serving_rows_only_says_what_it_holds(steady: Path, tmp_path: Path) -> None:
    window = Window((END_S - 60) * 1000, END_S * 1000)
    bundle = tmp_path / "serving-only"
    export(steady, bundle, window, tables=["serving"], with_report=False)
    done = monitor("report", "--store", str(bundle))
    assert done.returncode == 0, done.stderr
    since, until = iso(window.since_ms), iso(window.until_ms)
    assert (
        done.stdout.splitlines()[1]
        == f"Data: serving rows only (no GPU rows): 72 endpoints, {since} .. {until}."
    )
    assert "None" not in done.stdout


def test_a_store_with_nothing_to_report_on_says_so_in_one_line(straggler: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "events-only"
    whole = Window(first_tick_s(300) * 1000, END_S * 1000)
    export(straggler, bundle, whole, tables=["events"], with_report=False)
    one_line_error(monitor("report", "--store", str(bundle)), "holds no GPU or serving rows")


@pytest.mark.parametrize(("name", "seconds"), [("straggler", 300), ("gpu_lost", 150)])
def test_a_gpu_suspect_has_its_onset_to_the_second(name: str, seconds: int, request) -> None:
    store: Path = request.getfixturevalue(name)
    sim = scenario(name.replace("_", "-"))
    began = iso(round((first_tick_s(seconds) + sim.fault_at) * 1000))
    summary = report_json(store)
    assert [(s["kind"], s["gpu"], s["onset"]) for s in summary["suspects"]] == [("gpu", sim.fault.gpu, began)]
    text = monitor("report", "--store", str(store)).stdout
    assert f"  {gpu_label(sim.fault.gpu)} (GPU {sim.fault.gpu}), onset {began}: " in text


def test_a_thermal_tray_has_its_onset_inside_the_coolant_ramp(thermal: Path) -> None:
    sim = scenario("thermal")
    start = first_tick_s(360) + sim.fault_at
    [suspect] = report_json(thermal)["suspects"]
    assert (suspect["kind"], suspect["tray"]) == ("tray", sim.fault.tray)
    assert iso(start * 1000) <= suspect["onset"] <= iso(round(start + Thermal.ramp_s) * 1000)
    assert suspect["onset_of"].startswith(f"T{sim.fault.tray:02d}.G")


def test_a_flapping_link_is_named_by_its_number_with_onset_and_down_time(nvlink_flap: Path) -> None:
    sim = scenario("nvlink-flap")
    gpu, link = sim.fault.gpu, sim.fault.link
    flap = first_tick_s(200) + sim.fault_at
    down = iso(round(flap + NvlinkFlap.flap_s) * 1000)
    summary = report_json(nvlink_flap)
    [suspect] = summary["suspects"]
    assert (suspect["kind"], suspect["gpu"], suspect["link"]) == ("link", gpu, link)
    assert suspect["element"] == f"{gpu_label(gpu)} link {link}"
    assert suspect["onset"] == iso(round(flap) * 1000)
    assert summary["links_down"] == [
        {"gpu": gpu, "label": gpu_label(gpu), "links_up_min": 17, "links": [{"link": link, "down": down}]}
    ]
    text = monitor("report", "--store", str(nvlink_flap)).stdout
    assert f"links down: {gpu_label(gpu)} link {link} down from {down[11:]} (17/18 up)" in text
    assert (
        f"  {gpu_label(gpu)} link {link} (GPU {gpu}), onset {iso(round(flap) * 1000)}: errors climbing"
        in text
    )


def test_report_html_carries_the_same_suspects_and_onsets(nvlink_flap: Path, straggler: Path) -> None:
    for store in (nvlink_flap, straggler):
        with StoreReader(store) as reader:
            window = Window(first_tick_s(200) * 1000, END_S * 1000)
            summary = summarize(reader, window)
            page = render_report(reader, window)
        lines = [
            line for line in render_markdown_lines(summary) if "onset " in line or "links down: " in line
        ]
        assert lines and all(s["onset"] for s in summary["suspects"])
        for line in lines:
            assert f"<li>{html.escape(line[2:], quote=True)}</li>" in page


def test_export_takes_its_window_as_report_does(straggler: Path, tmp_path: Path) -> None:
    """`export --last` on an ended store counts back from its end too; no option is the whole store."""
    last = tmp_path / "last"
    done = monitor("export", "--store", str(straggler), "--last", "30s", "--no-report", "-o", str(last))
    assert done.returncode == 0, done.stderr
    held = report_json(last)["data"]
    assert (held["first"], held["last"]) == (iso((END_S - 30) * 1000), END)

    whole = tmp_path / "whole"
    done = monitor("export", "--store", str(straggler), "--no-report", "-o", str(whole))
    assert done.returncode == 0, done.stderr
    held = report_json(whole)["data"]
    assert (held["first"], held["last"]) == (iso(first_tick_s(300) * 1000), END)


@pytest.mark.parametrize(("name", "seconds"), [("straggler", 300), ("gpu_lost", 150)])
def test_a_fault_already_there_at_the_windows_start_says_so(name: str, seconds: int, request) -> None:
    """A window that opens inside the fault: its onset is 'at or before' the window's first sample."""
    store: Path = request.getfixturevalue(name)
    sim = scenario(name.replace("_", "-"))
    began_s = first_tick_s(seconds) + sim.fault_at
    since = iso(round(began_s + 20) * 1000)  # 20 s into the fault: the window's first tick
    summary = report_json(store, "--since", since, "--until", END)
    [suspect] = summary["suspects"]
    assert (suspect["kind"], suspect["gpu"]) == ("gpu", sim.fault.gpu)
    assert (suspect["onset"], suspect["onset_at_start"]) == (since, True)
    text = monitor("report", "--store", str(store), "--since", since, "--until", END).stdout
    gpu = f"{gpu_label(sim.fault.gpu)} (GPU {sim.fault.gpu})"
    assert f"  {gpu}, onset at or before {since} (the window's start): " in text
    with StoreReader(store) as reader:
        window = Window(round(began_s + 20) * 1000, END_S * 1000)
        page = render_report(reader, window)
    assert f"onset at or before {since} (the window&#x27;s start)" in page
    # The same store from before the fault: its onset is the time it began, not the window's edge.
    [whole] = report_json(store)["suspects"]
    assert (whole["onset"], whole["onset_at_start"]) == (iso(round(began_s) * 1000), False)


def test_a_link_already_flapping_at_the_windows_start_says_so(nvlink_flap: Path) -> None:
    sim = scenario("nvlink-flap")
    flap = first_tick_s(200) + sim.fault_at
    since = iso(round(flap + 10) * 1000)  # 10 s into the flap: errors grew before the window
    [suspect] = report_json(nvlink_flap, "--since", since, "--until", END)["suspects"]
    assert (suspect["kind"], suspect["gpu"], suspect["link"]) == ("link", sim.fault.gpu, sim.fault.link)
    assert (suspect["onset"], suspect["onset_at_start"]) == (since, True)
    assert f"errors climbing from {since[11:]} (the window's start) or before" in suspect["evidence"]
