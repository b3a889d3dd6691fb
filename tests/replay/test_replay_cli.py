"""`monitor replay` refuses what it cannot replay in one line with a non-zero exit, and opens stores
and export bundles (PATH or $MONITOR_STORE)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.commands.replay import open_replay
from monitor.errors import UserError
from monitor.export import export
from monitor.timespec import Window
from storage.layout import MANIFEST, Manifest, write_manifest
from tests.replay.conftest import END_S, monitor


def one_line_error(done, contains: str) -> None:
    assert done.returncode != 0, done.stdout
    assert done.stderr.startswith("monitor: ") and done.stderr.count("\n") == 1, done.stderr
    assert contains in done.stderr, done.stderr


def test_missing_path(tmp_path):
    one_line_error(
        monitor("replay", str(tmp_path / "nowhere")), "is not a rack-monitor store (no such directory)"
    )


def test_a_directory_that_is_not_a_store(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    one_line_error(monitor("replay", str(tmp_path)), f"no {MANIFEST}")


def test_a_file_is_not_a_store(tmp_path):
    path = tmp_path / "a.parquet"
    path.write_bytes(b"PAR1")
    one_line_error(monitor("replay", str(path)), "is not a rack-monitor store")


def test_a_newer_store(tmp_path):
    doc = json.loads(Manifest().to_json())
    doc["version"] = 99
    (tmp_path / MANIFEST).write_text(json.dumps(doc))
    one_line_error(monitor("replay", str(tmp_path)), "written by a newer rack-monitor")


def test_an_empty_store(tmp_path):
    write_manifest(tmp_path, Manifest())
    one_line_error(monitor("replay", str(tmp_path)), "holds no frames to replay")


def test_no_path_and_no_environment():
    one_line_error(monitor("replay"), "no store given: pass PATH")


def test_monitor_store_is_honoured(tmp_path):
    gone = tmp_path / "from-env"
    one_line_error(monitor("replay", env={"MONITOR_STORE": str(gone)}), str(gone))


@pytest.mark.parametrize(
    ("args", "says"),
    [(["--speed", "3"], "bad --speed 3"), (["--at", "12:00"], "--at: 2025-06-15T12:00:00Z is outside")],
)
def test_bad_options(store, args, says):
    one_line_error(monitor("replay", str(store), *args), says)


def test_monitor_store_opens_when_path_is_omitted(store, monkeypatch):
    monkeypatch.setenv("MONITOR_STORE", str(store))
    opened = open_replay(None, at="end")
    try:
        assert opened.root == store and opened.subtitle == str(store)
        assert opened.session.state.cursor_ms == END_S * 1000
    finally:
        opened.reader.close()


def test_an_export_bundle_replays(store, tmp_path):
    window = Window((END_S - 100) * 1000, (END_S - 40) * 1000)
    bundle = tmp_path / "incident"
    export(store, bundle, window, with_report=False)
    opened = open_replay(bundle)
    try:
        state = opened.session.state
        assert opened.subtitle == "export 2025-06-15T15:05:00Z to 2025-06-15T15:06:00Z"
        assert window.since_ms <= state.first_ms and state.last_ms <= window.until_ms
        assert state.cursor_ms == state.first_ms  # with no --at, the bundle's own start
        opened.session.service(0.0)
        frames = opened.session.head.frames()
        assert frames and {"gpu", "nvlink", "serving"} <= set(frames[-1].batches)
    finally:
        opened.reader.close()


def test_open_replay_errors_are_user_errors(tmp_path):
    write_manifest(tmp_path, Manifest())
    with pytest.raises(UserError, match="holds no frames"):
        open_replay(Path(tmp_path))
