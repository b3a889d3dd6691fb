"""monitor export end to end: simulated history -> bundle -> DuckDB, StoreReader and monitor report."""

from __future__ import annotations

import csv
import json
import os
import re
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import duckdb
import pytest

from collectors.rack import GPUS
from collectors.sim.rack import SimRack
from monitor.export import export, parse_gpus
from monitor.report import summarize
from monitor.report_html import render_report
from monitor.timespec import Window
from storage.frame import Frame, batch_from_rows
from storage.reader import StoreReader
from storage.writer import StoreWriter
from tests.post.conftest import END_S, SEED, monitor, one_line_error

SINCE, UNTIL = "2025-06-15T15:00:00Z", "2025-06-15T15:10:00Z"
WINDOW = Window(1_749_999_600_000, 1_750_000_200_000)


@pytest.fixture(scope="module")
def bundle(straggler: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "incident"
    # Modes follow the umask (test_export_force.py); under 022 the bundle is 0644/0755.
    args = ["export", "--store", str(straggler), "--since", SINCE, "--until", UNTIL, "-o", str(out)]
    done = monitor(*args, umask=0o022)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr.startswith("monitor export: ")
    return out


def counts(con_sql: str, reader: StoreReader) -> dict[str, int]:
    return {
        t: reader.sql(con_sql.format(t=t)).column(0)[0].as_py()
        for t in ("gpu", "nvlink", "serving", "serving_hist")
    }


def test_bundle_holds_the_window_and_reads_as_a_store(straggler: Path, bundle: Path) -> None:
    with StoreReader(straggler) as source, StoreReader(bundle) as copy:
        expected = counts("SELECT count(*) FROM {t}", source)
        assert counts("SELECT count(*) FROM {t}", copy) == expected
        assert expected["gpu"] == 300 * GPUS and expected["serving"] > 0
    # DuckDB alone, no rack-monitor code: the Hive layout reads as is.
    con = duckdb.connect()
    rows = con.sql(
        f"SELECT count(*), count(DISTINCT gpu) FROM read_parquet('{bundle}/gpu/**/*.parquet')"
    ).fetchall()[0]
    assert rows == (300 * GPUS, GPUS)
    nv = con.execute(f"SELECT count(*) FROM read_parquet('{bundle}/nvlink/**/*.parquet')").fetchall()[0]
    assert nv == (300 * GPUS * 18,)


def test_bundle_manifest_and_file_modes(bundle: Path) -> None:
    doc = json.loads((bundle / "EXPORT.json").read_text())
    assert doc["format"] == "rack-monitor-export" and doc["tool"]["name"] == "rack-monitor"
    assert doc["window"] == {
        "since": SINCE,
        "until": UNTIL,
        "since_ms": WINDOW.since_ms,
        "until_ms": WINDOW.until_ms,
    }
    assert doc["data"]["last"] == "2025-06-15T15:06:40Z"
    assert doc["tables"]["gpu"]["rows"] == 300 * GPUS
    assert (
        doc["tables"]["gpu"]["units"]["power_mw"] == "mW"
        and doc["tables"]["gpu"]["units"]["temp_gpu_c"] == "degC"
    )
    assert doc["topology"]["gpus"][61]["label"] == "T16.G2" and len(doc["topology"]["physical_order"]) == 27
    with StoreReader(bundle) as reader:
        endpoints = set(reader.sql("SELECT DISTINCT endpoint FROM serving").column(0).to_pylist())
    assert len(endpoints) == 72 and endpoints <= set(doc["sources"])
    for path in bundle.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o022 == 0, (path, oct(mode))  # never group- or world-writable
        if path.is_file():
            assert mode & 0o111 == 0 and mode <= 0o644, (path, oct(mode))
    assert not [p for p in bundle.parent.iterdir() if p.name.startswith(".")], "temp leftovers"


def test_report_html_is_self_contained(bundle: Path) -> None:
    page = (bundle / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for remote in ("http://", "https://", "<script", "src=", "@import"):
        assert remote not in page
    assert page.count("<svg") == 8  # 4 timelines + 4 heatmaps
    assert "T11.G4 (GPU 43)" in page  # the straggler, named in the summary
    assert "Generated tokens/s" in page and "GPU temperature" in page


def _charts(page: str) -> list[ET.Element]:
    """Every <svg> of the page, parsed (each is a well-formed XML fragment)."""
    return [ET.fromstring(m.group(0)) for m in re.finditer(r"<svg\b.*?</svg>", page, re.S)]


def _plotted(svg: ET.Element) -> list[tuple[float, float]]:
    """The data coordinates of a chart: polyline points and circle centres."""
    out = []
    for line in svg.iter("polyline"):
        out += [(float(x), float(y)) for x, y in (p.split(",") for p in line.get("points", "").split())]
    out += [(float(c.get("cx", "nan")), float(c.get("cy", "nan"))) for c in svg.iter("circle")]
    return out


def test_report_html_points_lie_inside_their_axes(bundle: Path) -> None:
    page = (bundle / "report.html").read_text()
    timelines = [svg for svg in _charts(page) if svg.get("height") == "130"]
    titles = [svg.get("aria-label") for svg in timelines]
    assert titles == ["Generated tokens/s", "Rack GPU power", "NVLink traffic (TX+RX)", "NVLink errors"]
    # The plot area the timelines draw in: x from the left margin to 10 px short of the width, y
    # in the 90 px band under the title (hand-read from the page's layout, not from the code).
    for svg, title in zip(timelines, titles, strict=True):
        width = float(svg.get("width", "0"))
        points = _plotted(svg)
        if title != "NVLink errors":  # a steady straggler run has no link errors to draw
            assert len(points) >= 100, (title, len(points))  # 120 buckets over 5 minutes, none empty
        for x, y in points:
            assert 46 <= x <= width - 10 and 18 <= y <= 108, (title, x, y)


def test_report_on_the_bundle_names_the_straggler(bundle: Path) -> None:
    fault = SimRack(SEED, "straggler").scenario.fault
    assert fault is not None and fault.gpu is not None
    done = monitor("report", "--store", str(bundle), "--since", SINCE, "--until", UNTIL, "--format", "json")
    assert done.returncode == 0, done.stderr
    suspects = json.loads(done.stdout)["suspects"]
    assert [s["gpu"] for s in suspects if s["kind"] == "gpu"] == [fault.gpu]


def test_gpu_filter_keeps_those_gpus_and_their_endpoints(straggler: Path, tmp_path: Path) -> None:
    out = tmp_path / "two"
    result = export(straggler, out, WINDOW, gpus=parse_gpus("T02.G1,5"), tables=["gpu", "nvlink", "serving"])
    assert result.rows["gpu"] == 300 * 2 and result.rows["nvlink"] == 300 * 2 * 18
    with StoreReader(out) as reader:
        gpus = reader.sql("SELECT DISTINCT gpu FROM gpu ORDER BY gpu").column(0).to_pylist()
        endpoints = reader.sql("SELECT DISTINCT gpus FROM serving ORDER BY gpus").column(0).to_pylist()
        assert reader.sql("SELECT count(*) FROM serving_hist").column(0)[0].as_py() == 0
    assert gpus == [4, 5] and endpoints == ["4", "5"]


def test_gpu_filter_keeps_the_histograms_of_exactly_those_gpus_endpoints(
    straggler: Path, tmp_path: Path
) -> None:
    out = tmp_path / "hist"
    export(straggler, out, WINDOW, gpus=parse_gpus("T02.G1,5"), tables=["serving", "serving_hist"])
    with StoreReader(straggler) as source:
        span = (WINDOW.since_ms, WINDOW.until_ms)
        placed = source.sql(f"SELECT DISTINCT endpoint, gpus FROM {source.relation('serving', *span)}")
        # The simulator places one endpoint per GPU, its `gpus` label the GPU's index.
        wanted = sorted(e for e, g in zip(*placed.to_pydict().values(), strict=True) if g in ("4", "5"))
        rows = source.sql(
            f"SELECT endpoint, count(*) AS n FROM {source.relation('serving_hist', *span)} GROUP BY endpoint"
        )
        expected = {e: n for e, n in zip(*rows.to_pydict().values(), strict=True) if e in wanted}
    with StoreReader(out) as bundle:
        got = bundle.sql(
            "SELECT endpoint, count(*) AS n FROM serving_hist GROUP BY endpoint ORDER BY endpoint"
        )
    assert len(wanted) == 2 and dict(zip(*got.to_pydict().values(), strict=True)) == expected


def test_edge_files_are_cut_to_the_window(straggler: Path, tmp_path: Path) -> None:
    cut = Window(END_S * 1000 - 59_000, END_S * 1000 - 30_000)
    out = tmp_path / "cut"
    result = export(straggler, out, cut, tables=["gpu"], with_report=False)
    assert result.rows == {"gpu": 30 * GPUS}
    with StoreReader(out) as reader:
        assert reader.time_range("gpu") == (cut.since_ms, cut.until_ms)
        summary = summarize(reader, cut)
    assert summary["serving"] is None and summary["data"]["ticks"] == 30


def test_parse_gpus() -> None:
    assert parse_gpus("0, 8-10,T03.G2,t18") == (0, 8, 9, 10, 68, 69, 70, 71)
    for bad in ("72", "T19", "T03.G5", "10-8", "gpu3", ","):
        with pytest.raises(ValueError):
            parse_gpus(bad)


def formula_store(root: Path) -> None:
    """A store whose events carry cells a spreadsheet would run as formulas."""
    nasty = ['=HYPERLINK("http://x")', "+1+2", "-3", "@SUM(A1)", "\tTAB", "\rCR", "plain"]
    with StoreWriter(root, compaction="off") as writer:
        for i, detail in enumerate(nasty):
            rows = [
                {
                    "ts": END_S * 1000 + i,
                    "kind": "alert",
                    "gpu": i,
                    "link": None,
                    "code": -5,
                    "source": detail,
                    "detail": detail,
                }
            ]
            writer.append(Frame(END_S * 1000 + i, {"events": batch_from_rows("events", rows)}))


def test_csv_cells_cannot_run_as_formulas(tmp_path: Path) -> None:
    formula_store(tmp_path / "s")
    out = tmp_path / "csv"
    done = monitor(
        "export",
        "--store",
        str(tmp_path / "s"),
        "--since",
        "2025-06-15T15:00:00Z",
        "--until",
        "2025-06-15T15:10:00Z",
        "--format",
        "csv",
        "-o",
        str(out),
        "--tables",
        "events",
    )
    assert done.returncode == 0, done.stderr
    with open(out / "events.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    details = [r["detail"] for r in rows]
    assert details == ['\'=HYPERLINK("http://x")', "'+1+2", "'-3", "'@SUM(A1)", "'\tTAB", "'\rCR", "plain"]
    assert {r["code"] for r in rows} == {"-5"}  # numbers are numbers, not formulas
    assert all(r["source"] == r["detail"] for r in rows)
    with StoreReader(out) as reader:  # the Parquet beside it keeps the exact text
        assert (
            reader.sql("SELECT detail FROM events ORDER BY ts").column(0)[0].as_py()
            == '=HYPERLINK("http://x")'
        )


def test_json_lines_copy(straggler: Path, tmp_path: Path) -> None:
    out = tmp_path / "json"
    export(straggler, out, WINDOW, tables=["serving"], fmt="json", with_report=False)
    lines = (out / "serving.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert len(lines) == 300 * 72 and first["engine"] == "vllm" and first["ts"].startswith("2025-06-15")
    assert json.loads((out / "EXPORT.json").read_text())["tables"]["serving"]["json"] == "serving.jsonl"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--since", "yesterday"], "bad --since 'yesterday'"),
        (["--since", "2025-06-15T15:00:00"], "give a zone"),
        (["--since", UNTIL, "--until", SINCE], "is not before"),
        (["--last", "1h", "--since", SINCE], "not both"),
        (
            ["--since", "2024-01-01T00:00:00Z", "--until", "2024-01-02T00:00:00Z"],
            "no data between 2024-01-01T00:00:00Z",
        ),
        (["--since", SINCE, "--gpus", "T19.G1"], "unknown GPU 'T19.G1'"),
        (["--since", SINCE, "--tables", "gpus"], "unknown table gpus"),
        (["--since", SINCE, "--format", "xlsx"], "unknown format 'xlsx'"),
    ],
)
def test_bad_input_is_one_line(straggler: Path, tmp_path: Path, extra: list[str], message: str) -> None:
    done = monitor("export", "--store", str(straggler), *extra, "-o", str(tmp_path / "out"))
    one_line_error(done, message)
    assert not (tmp_path / "out").exists()


def test_bad_outputs_are_one_line(straggler: Path, tmp_path: Path) -> None:
    args = ["export", "--store", str(straggler), "--since", SINCE, "--until", UNTIL, "--tables", "events"]
    target = tmp_path / "real"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    one_line_error(monitor(*args, "-o", str(tmp_path / "link"), "--force"), "is a symlink; refusing")
    assert list(target.iterdir()) == []
    (tmp_path / "file").write_text("x")
    one_line_error(monitor(*args, "-o", str(tmp_path / "file" / "out")), "is not a directory")
    # /proc refuses new entries even to root, so this is unwritable whoever runs the test.
    one_line_error(
        monitor(*args, "-o", "/proc/rack-monitor-export"), "cannot write /proc/rack-monitor-export"
    )
    one_line_error(monitor(*args, "-o", str(straggler)), "is the store itself")
    one_line_error(monitor("export", "--since", SINCE, "-o", str(tmp_path / "o")), "no store given")
    one_line_error(
        monitor("export", "--store", str(tmp_path), "--since", SINCE, "-o", str(tmp_path / "o")),
        "is not a rack-monitor store",
    )
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")], "temp leftovers"


def test_a_cut_of_a_compacted_hour_keeps_the_stores_time_bands(tmp_path: Path) -> None:
    """Cut files must keep the store's layout (one time band per row group), or later window reads
    of the bundle scan every row group."""
    import pyarrow.parquet as pq

    from storage.bands import table_band_ms

    root, hour_ms = tmp_path / "store", 3_600_000
    start = 1_750_000_000_000 // hour_ms * hour_ms
    with StoreWriter(root, compaction="inline", flush_interval_s=600, grace_s=0) as writer:
        for tick in range(0, 70 * 60, 10):  # 70 minutes at 10 s: a whole hour, then the next one opens
            ts = start + tick * 1000
            rows = [
                {"ts": ts, "gpu": g, "uuid": f"GPU-{g}", "tray": 1, "state": 0, "power_mw": 300_000 + tick}
                for g in range(4)
            ]
            writer.append(Frame(ts, {"gpu": batch_from_rows("gpu", rows)}))
        writer.compact()
    with StoreReader(root) as reader:
        assert any(e.level != "segment" for e in reader.manifest.overlapping("gpu", start, start + hour_ms))
    cut = Window(start + 5 * 60_000, start + 25 * 60_000)  # 5 to 25 min: three 10-minute bands
    result = export(root, tmp_path / "cut", cut, tables=["gpu"], gpus=[1, 2], with_report=False)
    assert result.rows == {"gpu": 2 * (20 * 6 + 1)}
    files = list((tmp_path / "cut").rglob("cut-*.parquet"))
    assert {path.parent.parent.name for path in files} >= {"gpu", "gpu_1m"}
    for path in files:
        band = table_band_ms(path.parent.parent.name)  # rollups band by 600 buckets, raw by 10 minutes
        meta = pq.ParquetFile(path).metadata
        ts = meta.schema.names.index("ts")
        for rg in range(meta.num_row_groups):
            stats = meta.row_group(rg).column(ts).statistics
            lo, hi = (round(v.timestamp() * 1000) for v in (stats.min, stats.max))
            assert lo // band == hi // band, (path.name, rg)


def test_report_html_made_beside_the_cut_is_the_bundles_own(straggler: Path, tmp_path: Path) -> None:
    # Without --gpus or --tables report.html is read from the store while the files are cut; the
    # bundle holds exactly the window's rows, so the page must be the one its own rows give.
    window = Window((END_S - 240) * 1000 + 500, (END_S - 60) * 1000 + 500)  # mid-file at both ends
    out = export(straggler, tmp_path / "b", window)
    with StoreReader(out.out) as reader:
        own = render_report(reader, window, title=straggler.name)
    assert_same_page((out.out / "report.html").read_text(), own)


def assert_same_page(page: str, own: str) -> None:
    """Fail with where two pages first differ (pytest's diff of two 1 MB strings takes many minutes)."""
    at = next(
        (i for i, (a, b) in enumerate(zip(page, own, strict=False)) if a != b), min(len(page), len(own))
    )
    same = page == own
    assert same, f"pages differ at {at}: {page[at - 60 : at + 60]!r} vs {own[at - 60 : at + 60]!r}"
