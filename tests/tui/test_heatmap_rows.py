"""The heatmap's pure row builder: layout, cells readable without colour, LOST/stale/selection marks."""

from __future__ import annotations

import pytest
from tui_frames import LOST_GPU, STALE_TRAY_GPUS, rack_frame, scenario_frames

from monitor.tui.widgets.heat_rows import HeatGeometry
from monitor.tui.widgets.heatmap import (
    EXPANDED_HEIGHT,
    LABEL_WIDTH,
    Heatmap,
    HeatmapStyles,
    cell_text,
    heat_rows,
)
from monitor.view import METRICS_BY_NAME, RackSnapshot, build_snapshot

UTIL = METRICS_BY_NAME["util"]
POWER = METRICS_BY_NAME["power"]


def heatmap_for(snapshot: RackSnapshot, *, width: int, height: int, metric=UTIL, selected=0):
    """A heatmap laid out for width x height showing `snapshot` (no app needed)."""
    heatmap = Heatmap()
    heatmap.set_geometry(width, height)
    heatmap.update_view(snapshot, metric, selected)
    return heatmap


def row_texts(heatmap: Heatmap) -> list[str]:
    return [heatmap.build_row(y).text for y in range(len(heatmap.rows))]


@pytest.fixture(scope="module")
def scenario() -> RackSnapshot:
    return build_snapshot(scenario_frames())


def test_rows_follow_the_physical_rack():
    collapsed = heat_rows(HeatGeometry(1, expanded=False))
    assert [r.kind for r in collapsed[:2]] == ["header", "compute"]
    assert [r.trays[0] for r in collapsed if r.kind == "compute"] == list(range(1, 19))
    switch_at = next(i for i, r in enumerate(collapsed) if r.kind == "switch")
    assert collapsed[switch_at - 1].trays == (10,)
    assert collapsed[switch_at + 1].trays == (11,)
    assert collapsed[switch_at].trays == tuple(range(1, 10))
    assert len(collapsed) == 22  # header, 18 trays, the switch trays, spacer and key

    expanded = heat_rows(HeatGeometry(1, expanded=True))
    assert len(expanded) == EXPANDED_HEIGHT
    switch_rows = [r.trays for r in expanded if r.kind == "switch"]
    assert switch_rows == [(n,) for n in range(1, 10)]
    kinds = [r.kind for r in expanded]
    assert kinds.index("switch") == 11 and kinds[-2:] == ["blank", "legend"]


def test_layout_is_chosen_from_the_size():
    narrow = heatmap_for(RackSnapshot.empty(), width=36, height=22)
    assert not narrow.expanded and narrow.cell_width == 8
    wide = heatmap_for(RackSnapshot.empty(), width=52, height=48)
    assert wide.expanded and wide.cell_width == 12


@pytest.mark.parametrize(("width", "height"), [(36, 19), (36, 22), (52, 48), (68, 45), (100, 75)])
def test_every_row_is_exactly_the_heatmap_width(scenario, width, height):
    heatmap = heatmap_for(scenario, width=width, height=height)
    for y in range(len(heatmap.rows)):
        strip = heatmap.build_row(y)
        assert strip.cell_length == width
        assert len(strip.text) == width


def test_compute_row_shows_a_value_in_every_cell(scenario):
    heatmap = heatmap_for(scenario, width=36, height=22, selected=71)
    texts = row_texts(heatmap)
    assert texts[0] == "Tray   G1      G2      G3      G4   "
    assert texts[2] == "T02    28%     35%     42%     49%  "
    heatmap.update_view(scenario, POWER, 71)
    assert heatmap.build_row(2).text == "T02   248W    265W    282W    299W  "


def test_lost_and_stale_cells_read_without_colour(scenario):
    heatmap = heatmap_for(scenario, width=36, height=22)
    lost_row = heatmap.build_row(heatmap.rows.index(next(r for r in heatmap.rows if r.trays == (16,))))
    assert lost_row.text == "T16    16%    LOST     30%     37%  "
    stale_row = heatmap.build_row(3)
    assert stale_row.text == "T03    ?4s     ?4s     ?4s     ?4s  "
    styles = HeatmapStyles.plain()
    lost_segment = next(s for s in lost_row if "LOST" in s.text)
    assert lost_segment.style == styles.lost and lost_segment.style.reverse
    assert all(s.style == styles.stale for s in list(stale_row)[1:])
    assert scenario.gpu(LOST_GPU).label == "T16.G2"
    assert set(STALE_TRAY_GPUS) == {8, 9, 10, 11}


def test_no_data_and_missing_values_have_glyphs():
    snap = build_snapshot([rack_frame(0, overrides={0: {"util_gpu_pct": None}})])
    assert cell_text(snap.gpu(0), UTIL) == "--"
    assert cell_text(RackSnapshot.empty().gpu(0), UTIL) == "·"


def test_selected_cell_is_bracketed(scenario):
    heatmap = heatmap_for(scenario, width=36, height=22, selected=5)
    assert heatmap.build_row(2).text == "T02    28%  [  35% ]   42%     49%  "
    selected = next(s for s in heatmap.build_row(2) if s.text.startswith("["))
    assert selected.style.underline and selected.style.bold


def test_collapsed_switch_row_aggregates_every_switch_tray(scenario):
    heatmap = heatmap_for(scenario, width=36, height=22)
    y = next(i for i, r in enumerate(heatmap.rows) if r.kind == "switch")
    strip = heatmap.build_row(y)
    # Padding goes when the row is tight; the figures stay.
    assert strip.text == "SW  1206/1296 up  4.65 TB/s  15 err "
    alarms = [s.text.strip() for s in strip if s.style == HeatmapStyles.plain().alarm]
    assert alarms == ["1206/1296 up", "15 err"]


def test_expanded_switch_rows_name_their_chips(scenario):
    heatmap = heatmap_for(scenario, width=52, height=48)
    switch_rows = [y for y, r in enumerate(heatmap.rows) if r.kind == "switch"]
    first = heatmap.build_row(switch_rows[0]).text
    assert first.startswith("SW1 chips  1-2   134/144 up   0.52 TB/s     0 err")
    third = heatmap.build_row(switch_rows[2]).text
    assert "15 err" in third  # link 4 of T05.G1 lands on chip 5, switch tray 3


def test_legend_shows_each_buckets_lower_bound():
    heatmap = heatmap_for(RackSnapshot.empty(), width=52, height=48)
    legend = heatmap.build_row(len(heatmap.rows) - 1)
    assert legend.text.split() == ["%", "0", "10", "20", "30", "40", "50", "60", "70", "80", "90"]
    assert legend.text.startswith("%".ljust(LABEL_WIDTH))  # the unit, where the tray labels are


def test_only_changed_rows_are_repainted(scenario):
    heatmap = heatmap_for(scenario, width=36, height=22, selected=0)
    assert heatmap.update_view(scenario, UTIL, 0) == []
    # Moving the selection from T01.G1 to T02.G1 touches exactly those two rows.
    assert heatmap.update_view(scenario, UTIL, 4) == [1, 2]
    # A new frame where one GPU's utilisation changed repaints that tray only.
    frames = [*scenario_frames()[:-1], scenario_frames()[-1]]
    changed = build_snapshot(
        [
            *frames[:-1],
            rack_frame(
                5,
                overrides={70: {"util_gpu_pct": 1}},
                missing=STALE_TRAY_GPUS,
                states={LOST_GPU: 1},
                link_overrides={(16, 4): {"rx_errors": 15}},
            ),
        ]
    )
    rows = heatmap.update_view(changed, UTIL, 4)
    assert [heatmap.rows[y].trays for y in rows] == [(18,)]


def test_legend_numbers_stay_apart_on_wide_scales():
    heatmap = heatmap_for(RackSnapshot.empty(), width=52, height=48, metric=METRICS_BY_NAME["nvlink"])
    legend = heatmap.build_row(len(heatmap.rows) - 1).text
    # 4-digit bounds do not fit a 4-column swatch with a space: every other bucket is labelled
    assert legend.split() == ["GB/s", "0", "400", "800", "1200", "1600"]
