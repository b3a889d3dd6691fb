"""The rack topology: physical order, placement and link-to-switch mapping."""

import pytest

from collectors import rack


def test_physical_order_is_compute_1_10_switch_1_9_compute_11_18():
    units = rack.physical_order()
    assert len(units) == 27
    assert [(u.kind, u.number) for u in units[:10]] == [("compute", n) for n in range(1, 11)]
    assert [(u.kind, u.number) for u in units[10:19]] == [("switch", n) for n in range(1, 10)]
    assert [(u.kind, u.number) for u in units[19:]] == [("compute", n) for n in range(11, 19)]
    assert [u.slot for u in units] == list(range(1, 28))


def test_platform_tray_index_matches_the_gb300_capture():
    # qx-gb300.xml: tray_index 15, slot_number 25
    tray = rack.tray_from_platform(15)
    assert rack.compute_tray_slot(tray) == 25


def test_gpu_index_and_place_round_trip():
    seen = set()
    for tray in range(1, 19):
        for module in range(1, 5):
            index = rack.gpu_index(tray, module)
            assert rack.gpu_place(index) == (tray, module)
            seen.add(index)
    assert seen == set(range(72))
    assert rack.gpu_label(rack.gpu_index(16, 2)) == "T16.G2"


def test_link_k_lands_on_switch_chip_k():
    chips = [rack.switch_chip(k) for k in range(18)]
    assert len(set(chips)) == 18
    assert chips[0] == (1, 1) and chips[1] == (1, 2) and chips[17] == (9, 2)


@pytest.mark.parametrize(
    ("call", "arg"),
    [(rack.gpu_place, 72), (rack.switch_chip, 18), (rack.tray_from_platform, 18), (rack.check_tray, 0)],
)
def test_out_of_range_is_refused(call, arg):
    with pytest.raises(ValueError):
        call(arg)
