"""Every command's help lists a boolean flag bare (`--sim`), never as an option taking a value.

typer's rich help printed `--sim <bool>` while `--sim true` is refused; the flags are read here from the
click command tree itself (independent of the help text), then looked up in each command's help.
"""

from __future__ import annotations

import re

import typer
from typer.testing import CliRunner

from monitor.cli import app


def commands() -> dict[str, typer.core.TyperCommand]:
    """'' (the root) and every subcommand, as click commands."""
    root = typer.main.get_command(app)
    return {"": root, **root.commands}  # type: ignore[attr-defined]


def test_every_boolean_flag_is_listed_without_a_value() -> None:
    runner = CliRunner()
    checked = 0
    for name, cmd in commands().items():
        result = runner.invoke(app, [*([name] if name else []), "--help"])
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.output, f"monitor {name} --help: {result.output}"
        for param in cmd.params:
            if getattr(param, "is_flag", False):
                for opt in param.opts:
                    # the flag, then spaces or its --no- twin, then its help: no value between
                    line = re.search(rf"^\s+{re.escape(opt)}(\s*/\s*--\S+)?\s+(\S+)", result.output, re.M)
                    assert line is not None, f"monitor {name} --help does not list {opt}"
                    assert not line.group(2).startswith("<"), f"monitor {name}: {line.group(0)}"
                    checked += 1
    assert checked >= 8  # collect --sim/--nvml, snapshot --sim/--check, export, demo, replay, sim flags


def test_a_flag_given_a_value_is_one_clear_error() -> None:
    result = CliRunner().invoke(app, ["collect", "--sim", "true"])
    assert result.exit_code == 2
    assert "unexpected extra argument" in result.output.lower()
    assert "Traceback" not in result.output
