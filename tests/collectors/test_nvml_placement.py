"""Placing a host's GPUs in the rack from platform info or the configured tray, else as a board of its own."""

import pynvml
import pytest

from collectors.nvml_static import GpuFacts, gpu_infos, place, read_uchar
from collectors.rack import BOARD_TRAY, gpu_index


def facts(n, platform=None):
    """n GPUs as read at open; platform[i] is (tray, module, slot) or None."""
    platform = platform or [None] * n
    return [GpuFacts(i, handle=object(), uuid=f"GPU-{i}", platform=platform[i]) for i in range(n)]


def test_platform_info_wins_over_configuration():
    gpus = facts(4, [(16, 2, 25), (16, 1, 25), (16, 4, 25), (16, 3, 25)])
    assert [(g, how) for g, _, _, how, _ in place(gpus, tray=3)] == [
        (gpu_index(16, m), "platform") for m in (2, 1, 4, 3)
    ]


def test_configured_tray_places_by_nvml_index():
    assert [p[:4] for p in place(facts(4), tray=7)] == [
        (gpu_index(7, i + 1), 7, i + 1, "config") for i in range(4)
    ]


def test_without_platform_or_tray_the_host_is_a_board_keyed_by_nvml_index():
    # An 8-GPU H100 node is not in a rack: no tray, its key the NVML index, named as nvidia-smi does.
    infos = gpu_infos(facts(8), tray=None)
    assert [(g.gpu, g.tray, g.placed_by, g.label) for g in infos] == [
        (i, BOARD_TRAY, "board", f"GPU{i}") for i in range(8)
    ]


def test_an_unplaced_gpu_takes_the_module_its_siblings_leave_free():
    gpus = facts(4, [(9, 2, 9), (9, 1, 9), None, (9, 3, 9)])
    infos = gpu_infos(gpus, tray=None)
    assert (infos[2].gpu, infos[2].module, infos[2].placed_by) == (gpu_index(9, 4), 4, "config")
    assert infos[0].slot == 9 and infos[2].slot is None


def test_a_tray_given_for_an_eight_gpu_host_is_one_line_saying_what_to_do():
    with pytest.raises(ValueError, match="this host has 8 GPUs and a GB300 compute tray holds 4") as err:
        place(facts(8), tray=2)
    assert "\n" not in str(err.value) and "leave the tray out" in str(err.value)


def test_two_gpus_on_one_place_are_refused():
    with pytest.raises(ValueError, match=r"both map to rack position T05\.G1"):
        place(facts(2, [(5, 1, 5), (5, 1, 5)]), tray=None)


def test_unsigned_char_members_are_read_as_bytes_even_above_0x7f():
    info = pynvml.c_nvmlPlatformInfo_v2_t()
    info.trayIndex = b"\x0f"
    info.moduleId = b"\x02"
    info.slotNumber = b"\x99"  # pynvml's own accessor would fail to decode this as UTF-8
    assert (read_uchar(info, "trayIndex"), read_uchar(info, "moduleId"), read_uchar(info, "slotNumber")) == (
        15,
        2,
        0x99,
    )
    with pytest.raises(UnicodeDecodeError):
        _ = info.slotNumber
