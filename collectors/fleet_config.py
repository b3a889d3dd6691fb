"""The fleet config (TOML): several racks, each named by its own rack config file.

    [fleet]
    name = "hall-b"                               # shown on the fleet screen (default: the file's stem)
    racks = ["rack01.toml", "rack02.toml"]        # rack config files, relative to this file

Each rack keeps the one file its recorder (`monitor collect --config rack01.toml`) and snapshot job
already use, so the fleet names those files rather than repeating 18 trays and 72 servers per rack:
one edit changes the recorder and every TUI at once, and a rack read another way (another source type
in its own file) joins the fleet without the fleet file changing. Every rack file is checked as
collectors.config checks it; errors name the rack file and its line, or the fleet file and its line.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from collectors.config import MAX_CONFIG_BYTES, RackConfig, load_config, parse_config
from collectors.config_check import Checker, ConfigError

MAX_RACKS = 256
"""More racks than one fleet screen can usefully list (and a guard against a generated list gone wrong)."""
_FLEET_FIELDS = ("name", "racks")


@dataclass(frozen=True)
class FleetConfig:
    """Several racks, in the order the fleet file names them.

    Attributes:
        name: the fleet's name.
        racks: each rack's config (its `path` is its own file).
        path: the fleet file.
    """

    name: str
    racks: tuple[RackConfig, ...]
    path: Path | None = None


def is_fleet_text(text: str) -> bool:
    """Whether TOML text is a fleet config (it has a [fleet] table); False for text that is not TOML."""
    try:
        return "fleet" in tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False


def parse_fleet(text: str, path: Path | str) -> FleetConfig:
    """Parse a fleet config and load every rack file it names (relative to the fleet file's folder).

    Raises:
        ConfigError: one line naming the file (fleet or rack), the line and the field.
    """
    path = Path(path)
    data = tomllib.loads(text)
    check = Checker(text, path)
    for key in data:
        if key != "fleet":
            check.fail(
                key, "a fleet config has only a [fleet] table (racks go in their own files)", key, None, None
            )
    fleet = data["fleet"]
    if not isinstance(fleet, dict):
        check.fail("fleet", "must be a table ([fleet])", None, None, "fleet")
    check.fields(fleet, _FLEET_FIELDS, "fleet", None)
    name = check.string(fleet, "name", "fleet", "fleet", None) or path.stem
    files = fleet.get("racks")
    if not isinstance(files, list) or not files or not all(isinstance(f, str) and f for f in files):
        check.fail(
            "fleet.racks", 'must be a list of rack config files, e.g. ["rack01.toml"]', "fleet", None, "racks"
        )
    if len(files) > MAX_RACKS:
        check.fail("fleet.racks", f"{len(files)} racks; at most {MAX_RACKS}", "fleet", None, "racks")
    racks: list[RackConfig] = []
    by_name: dict[str, Path] = {}
    by_file: dict[Path, int] = {}
    for i, file in enumerate(files):
        rack_path = (path.parent / file) if not Path(file).is_absolute() else Path(file)
        resolved = rack_path.resolve()
        if resolved in by_file:
            check.fail(
                f"fleet.racks[{i + 1}]",
                f"{file} is already racks[{by_file[resolved] + 1}]",
                "fleet",
                None,
                "racks",
            )
        by_file[resolved] = i
        if resolved == path.resolve():
            check.fail(f"fleet.racks[{i + 1}]", "names the fleet file itself", "fleet", None, "racks")
        rack = load_config(rack_path)  # its own errors name its own file and line
        if rack.name in by_name:
            raise ConfigError(
                f"{rack_path}: rack.name: {rack.name!r} is already the name of {by_name[rack.name]}; "
                "each rack of a fleet needs its own name"
            )
        by_name[rack.name] = rack_path
        racks.append(rack)
    return FleetConfig(name=name, racks=tuple(racks), path=path)


def load_rack_or_fleet(path: Path | str) -> RackConfig | FleetConfig:
    """The rack config or fleet config at `path` (a fleet file has a [fleet] table).

    Raises:
        ConfigError: the file cannot be read or is not a valid config (one line).
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
        text = data.decode("utf-8") if len(data) <= MAX_CONFIG_BYTES else ""
    except (OSError, UnicodeDecodeError):
        return load_config(path)  # its one-line error for an unreadable file
    if text and is_fleet_text(text):
        return parse_fleet(text, path)
    return load_config(path) if not text else parse_config(text, path)


def render_fleet(fleet: FleetConfig, rack_files: list[str]) -> str:
    """The fleet file's TOML, naming `rack_files` (relative to the fleet file) in order."""
    quoted = ", ".join('"' + f.replace("\\", "\\\\").replace('"', '\\"') + '"' for f in rack_files)
    name = fleet.name.replace("\\", "\\\\").replace('"', '\\"')
    return f'[fleet]\nname = "{name}"\nracks = [{quoted}]\n'


def write_fleet(path: Path | str, fleet: FleetConfig) -> list[Path]:
    """Write each rack's config beside the fleet file (`<stem>-<rack>.toml`), then the fleet file.

    Returns the rack files written, in order.

    Raises:
        ConfigError: a file cannot be written.
    """
    from collectors.config import write_config
    from storage.atomic import OutputError, write_bytes

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory")
    written: list[Path] = []
    for rack in fleet.racks:
        rack_path = path.with_name(f"{path.stem}-{rack.name}.toml")
        write_config(rack_path, rack)
        written.append(rack_path)
    try:
        write_bytes(path, render_fleet(fleet, [p.name for p in written]).encode())
    except OutputError as err:
        raise ConfigError(str(err)) from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot write: {err.strerror or err}") from None
    return written
