"""The fleet config: a [fleet] table naming each rack's own config file; errors are one line naming the
file (fleet or rack), the line and the field; a single-rack config reads as before."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from collectors.config import ConfigError, RackConfig, load_config
from collectors.fleet_config import FleetConfig, load_rack_or_fleet, write_fleet
from tests.cli.test_startup_failures import assert_one_clear_line
from tests.cli.test_store_commands import monitor


def rack_text(name: str, port: int) -> str:
    return (
        f'[rack]\nname = "{name}"\n\n[[tray]]\ntray = 1\nurl = "http://10.0.{port}.1:9401/metrics"\n\n'
        f'[[server]]\nname = "vllm-00"\nurl = "http://10.0.{port}.1:8000/metrics"\ngpus = [0]\n'
    )


@pytest.fixture
def racks(tmp_path: Path) -> Path:
    """rack01.toml and rack02.toml (in a sub-folder, as the fleet file names them relatively)."""
    (tmp_path / "racks").mkdir()
    (tmp_path / "racks" / "rack01.toml").write_text(rack_text("r01", 1))
    (tmp_path / "racks" / "rack02.toml").write_text(rack_text("r02", 2))
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_fleet_names_its_racks_files(racks: Path) -> None:
    path = write(
        racks / "fleet.toml", '[fleet]\nname = "hall-b"\nracks = ["racks/rack01.toml", "racks/rack02.toml"]\n'
    )
    fleet = load_rack_or_fleet(path)
    assert isinstance(fleet, FleetConfig)
    assert fleet.name == "hall-b"
    assert [r.name for r in fleet.racks] == ["r01", "r02"]
    # each rack is exactly what its own file gives `monitor collect --config`
    assert fleet.racks[1] == load_config(racks / "racks" / "rack02.toml")
    assert fleet.racks[0].trays[0].url == "http://10.0.1.1:9401/metrics"


def test_a_single_rack_config_reads_as_before(racks: Path) -> None:
    config = load_rack_or_fleet(racks / "racks" / "rack01.toml")
    assert isinstance(config, RackConfig) and config == load_config(racks / "racks" / "rack01.toml")


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("[fleet]\nracks = []\n", "fleet.toml:2", ["fleet.racks", "list of rack config files"]),
        ('[fleet]\nname = "x"\n', "fleet.toml:1", ["fleet.racks"]),
        ('[fleet]\nracks = ["racks/rack01.toml"]\nrack = "x"\n', "fleet.toml:3", ["fleet.rack", "unknown"]),
        (
            '[fleet]\nracks = ["racks/rack01.toml"]\n[[tray]]\ntray = 1\n',
            "fleet.toml:3",
            ["tray", "own files"],
        ),
        (
            '[fleet]\nracks = ["racks/rack01.toml", "racks/../racks/rack01.toml"]\n',
            "fleet.toml:2",
            ["fleet.racks[2]", "already racks[1]"],
        ),
        ('[fleet]\nracks = ["racks/missing.toml"]\n', "missing.toml", ["no such file"]),
    ],
)
def test_fleet_errors_are_one_line(racks: Path, text: str, where: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_rack_or_fleet(write(racks / "fleet.toml", text))
    message = str(err.value)
    assert "\n" not in message
    assert where in message, message
    for word in words:
        assert word in message, message


def test_a_bad_rack_file_is_named_at_its_own_line(racks: Path) -> None:
    bad = write(racks / "racks" / "rack02.toml", rack_text("r02", 2).replace("tray = 1", "tray = 19"))
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(str(bad))}:5: tray\[1\]\.tray: must be a compute tray 1\.\.18"
    ):
        load_rack_or_fleet(
            write(racks / "fleet.toml", '[fleet]\nracks = ["racks/rack01.toml", "racks/rack02.toml"]\n')
        )


def test_two_racks_with_one_name_are_refused(racks: Path) -> None:
    write(racks / "racks" / "rack02.toml", rack_text("r01", 2))
    with pytest.raises(ConfigError, match=r"'r01' is already the name of .*rack01\.toml"):
        load_rack_or_fleet(
            write(racks / "fleet.toml", '[fleet]\nracks = ["racks/rack01.toml", "racks/rack02.toml"]\n')
        )


def test_a_fleet_file_given_to_a_one_rack_command_says_so(racks: Path) -> None:
    path = write(racks / "fleet.toml", '[fleet]\nracks = ["racks/rack01.toml"]\n')
    with pytest.raises(ConfigError, match=r"fleet\.toml:1: fleet: this is a fleet config"):
        load_config(path)
    done = monitor("snapshot", "--config", str(path), "--out", str(racks / "snap"))
    assert_one_clear_line(done, "fleet.toml:1", "fleet config")


def test_the_tui_refuses_a_bad_fleet_in_one_line(racks: Path) -> None:
    path = write(racks / "fleet.toml", '[fleet]\nracks = ["racks/rack01.toml", "racks/nope.toml"]\n')
    assert_one_clear_line(monitor("--config", str(path)), "nope.toml", "no such file")


def test_written_fleet_reads_back(racks: Path) -> None:
    fleet = load_rack_or_fleet(
        write(
            racks / "fleet.toml", '[fleet]\nname = "f"\nracks = ["racks/rack01.toml", "racks/rack02.toml"]\n'
        )
    )
    assert isinstance(fleet, FleetConfig)
    (racks / "out").mkdir()
    written = write_fleet(racks / "out" / "copy.toml", fleet)
    assert [p.name for p in written] == ["copy-r01.toml", "copy-r02.toml"]
    again = load_rack_or_fleet(racks / "out" / "copy.toml")
    assert isinstance(again, FleetConfig)
    assert [(r.name, r.trays, r.servers) for r in again.racks] == [
        (r.name, r.trays, r.servers) for r in fleet.racks
    ]
