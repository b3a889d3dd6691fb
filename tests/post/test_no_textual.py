"""export, report and snapshot start without Textual (fast, and on hosts with no terminal)."""

from __future__ import annotations

import subprocess
import sys

from tests.post.conftest import ROOT

MODULES = (
    "monitor.cli",
    "monitor.commands.export",
    "monitor.commands.report",
    "monitor.commands.snapshot",
    "monitor.bundle",
    "monitor.export",
    "monitor.report",
    "monitor.report_html",
    "monitor.report_suspects",
    "monitor.report_text",
    "monitor.snapshot",
    "monitor.timespec",
    "storage.atomic",
    "storage.sandbox",
)


def test_post_incident_commands_never_import_textual() -> None:
    code = (
        "import sys, importlib\n"
        f"for m in {MODULES!r}: importlib.import_module(m)\n"
        "from typer.testing import CliRunner\n"
        "from monitor.cli import app\n"
        "for cmd in ('export', 'report', 'snapshot'):\n"
        "    assert CliRunner().invoke(app, [cmd, '--help']).exit_code == 0\n"
        "print(sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
