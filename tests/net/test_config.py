"""The rack config: parsing, one-line errors naming file, line and field, round trip, atomic writing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from collectors.config import (
    ConfigError,
    RackConfig,
    ServerTarget,
    TrayTarget,
    load_config,
    parse_config,
    parse_gpu,
    render_config,
    write_config,
)

GOOD = """\
[rack]
name = "gb300-a"
timeout = 0.4

[[tray]]
tray = 1
host = "t01"
url = "http://10.0.0.1:9401/metrics"

[[tray]]
tray = 2
url = "http://10.0.0.2:9400"

[[server]]
name = "vllm-a"
url = "http://10.0.0.1:8000/metrics"
engine = "vllm"
gpus = ["T01.G1", 1]

[[server]]
url = "https://10.0.0.2:8000/prometheus/metrics"
gpus = [4, 5, 6, 7]
"""


def test_a_good_config() -> None:
    config = parse_config(GOOD, "rack.toml")
    assert config.name == "gb300-a" and config.timeout_s == 0.4
    assert config.trays == (
        TrayTarget(1, "t01", "http://10.0.0.1:9401/metrics"),
        TrayTarget(2, "10.0.0.2", "http://10.0.0.2:9400/metrics"),
    )
    assert config.servers[0] == ServerTarget("vllm-a", "http://10.0.0.1:8000/metrics", "vllm", (0, 1))
    assert config.servers[1].name == "10.0.0.2:8000" and config.servers[1].engine is None
    assert config.gpus_of_server()["10.0.0.2:8000"] == (4, 5, 6, 7)


def test_render_reads_back() -> None:
    config = parse_config(GOOD, "rack.toml")
    again = parse_config(render_config(config), "rack.toml")
    assert again == config


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("tray = 2\n", "tray = 2\nulr = 'x'\n"), "rack.toml:12: tray[2].ulr: unknown field"),
        (
            ('url = "http://10.0.0.2:9400"', 'url = "ftp://10.0.0.2"'),
            "rack.toml:12: tray[2].url: 'ftp://10.0.0.2'",
        ),
        (
            ('url = "http://10.0.0.2:9400"', 'url = "http://:9400"'),
            "rack.toml:12: tray[2].url: 'http://:9400' has no host",
        ),
        (
            ("gpus = [4, 5, 6, 7]", "gpus = [4, 5, 1]"),
            "rack.toml:22: server[2].gpus: GPU T01.G2 is already used by server[1]",
        ),
        (('gpus = ["T01.G1", 1]', 'gpus = ["T19.G1"]'), "rack.toml:18: server[1].gpus:"),
        (('gpus = ["T01.G1", 1]', "gpus = [72]"), "rack.toml:18: server[1].gpus: GPU index 72 is not 0..71"),
        (("tray = 2\n", "tray = 1\n"), "rack.toml:11: tray[2].tray: tray 1 is already tray[1]"),
        (('engine = "vllm"', 'engine = "tgi"'), "rack.toml:17: server[1].engine: 'tgi' is not one of"),
        (("timeout = 0.4", "timeout = -1"), "rack.toml:3: rack.timeout: must be seconds"),
        (("[rack]", "[rakc]"), "rack.toml:1: rakc: unknown table or key"),
        (
            ('name = "vllm-a"', 'name = "10.0.0.2:8000"'),
            "rack.toml:20: server[2].name: '10.0.0.2:8000' is already",
        ),
        (("timeout = 0.4", "timeout = = 0.4"), "rack.toml:3: not valid TOML"),
    ],
)
def test_mistakes_name_file_line_and_field(edit: tuple[str, str], expected: str) -> None:
    text = GOOD.replace(*edit, 1)
    assert text != GOOD
    with pytest.raises(ConfigError) as err:
        parse_config(text, "rack.toml")
    message = str(err.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_missing_url_and_empty_config() -> None:
    with pytest.raises(ConfigError, match=r"^r.toml:1: tray\[1\].url: is missing"):
        parse_config("[[tray]]\ntray = 1\n", "r.toml")
    with pytest.raises(ConfigError, match="nothing to monitor"):
        parse_config('[rack]\nname = "x"\n', "r.toml")


def test_gpu_labels() -> None:
    assert parse_gpu("T03.G2") == 9
    assert parse_gpu(71) == 71
    for bad in ("T00.G1", "T03.G5", "G1", True, 1.5, -1):
        with pytest.raises(ValueError):
            parse_gpu(bad)


def test_load_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_write_is_atomic_and_never_through_a_symlink(tmp_path: Path) -> None:
    config = RackConfig("r", trays=(TrayTarget(1, "h", "http://127.0.0.1:1/metrics"),))
    target = tmp_path / "rack.toml"
    write_config(target, config)
    assert load_config(target).trays == config.trays
    assert [p.name for p in tmp_path.iterdir()] == ["rack.toml"]  # no temp file left behind
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    link = tmp_path / "link.toml"
    os.symlink(victim, link)
    with pytest.raises(ConfigError, match="symlink"):
        write_config(link, config)
    assert victim.read_text() == "keep me"
    with pytest.raises(ConfigError, match="cannot write"):
        write_config(tmp_path / "missing-dir" / "rack.toml", config)
