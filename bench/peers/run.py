"""Our store beside Prometheus and VictoriaMetrics, on the same samples: bytes/sample, query latency, memory.

    .venv/bin/python bench/peers/run.py --hours 6 [--work DIR] [--store DIR] [--repeats 7]

Run by hand (never by CI); see bench/peers/README.md. Steps, per group of samples (gpu, nvlink,
serving): write the store's samples as OpenMetrics text in 2 h slices (DuckDB over the sealed
Parquet), backfill each slice into Prometheus blocks with promtool and import it into
VictoriaMetrics, let both compact, then ask the four questions of each system and measure. Every
server binds 127.0.0.1 and is stopped on the way out, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import systems
from export import GROUPS, slices, store_samples, write_slice
from questions import QUESTIONS, Window, check
from report import markdown
from servers import BenchError, proc_status_kib, prometheus, reset_peak_rss, victoria_metrics

from storage.layout import HOUR_MS, read_manifest
from storage.reader import StoreReader

BLOCK_MS = 2 * HOUR_MS
"""promtool's default block length; slices are cut on its boundaries so each file is one block."""


def log(msg: str) -> None:
    """Progress on stderr."""
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def iso(ms: int) -> str:
    """An epoch-ms time as ISO 8601 UTC."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def prepare_store(args: argparse.Namespace) -> tuple[Path, Window]:
    """The store and the window: an existing --store, or a new backfill of --hours ending at --end."""
    from monitor.backfill import backfill

    store = args.store or args.work / "store"
    reuse = store.exists() and any(store.iterdir())
    if args.end:
        until_s = int(datetime.fromisoformat(args.end).replace(tzinfo=UTC).timestamp())
    elif reuse:
        # The end of the store's last compacted hour.
        sealed = [f.max_ts for f in read_manifest(store).of("gpu") if f.level in ("hour", "day")]
        if not sealed:
            raise BenchError(f"{store} has no compacted hour of gpu rows; give --end")
        until_s = (max(sealed) // HOUR_MS + 1) * HOUR_MS // 1000
    else:
        until_s = int(time.time()) // 86_400 * 86_400  # the last UTC midnight: whole hours and days
    window = Window((until_s - args.hours * 3600) * 1000, until_s * 1000)
    if reuse:
        log(f"using the store in {store}, window {iso(window.since_ms)} .. {iso(window.until_ms)}")
        return store, window
    log(f"backfilling {args.hours} h ({args.scenario}, seed {args.seed}) into {store}")
    # One tick past the window seals its last hour, so the compactor turns it into an hour file as
    # it would on a live store; that tick is outside the window and not exported.
    result = backfill(
        store, args.hours * 3600 + 1, scenario=args.scenario, seed=args.seed, end_s=until_s,
        on_progress=lambda done, total: log(f"backfill {done}/{total} ticks"),
    )  # fmt: skip
    log(f"backfill wrote {result.rows:,} rows in {result.seconds:.0f} s")
    return store, window


def our_bytes(store: Path, table: str, window: Window) -> dict[str, Any]:
    """Bytes of the table's files (and of its rollups) that lie inside the window, from the manifest."""
    manifest = read_manifest(store)

    def inside(name: str) -> list[Any]:
        return [f for f in manifest.of(name) if f.min_ts >= window.since_ms and f.max_ts < window.until_ms]

    files = inside(table)
    rollups = [f for step in ("1m", "1h") for f in inside(f"{table}_{step}")]
    return {
        "bytes": sum(f.bytes for f in files),
        "files": sorted({f.level for f in files}),
        "rollup_bytes": sum(f.bytes for f in rollups),
    }


def run_ours(store: Path, group: str, window: Window, repeats: int) -> dict[str, Any]:
    """Run ours.py in a fresh process for one group and return its JSON report."""
    cmd = [sys.executable, str(Path(__file__).with_name("ours.py")), "--store", str(store), "--group", group]
    cmd += ["--since", str(window.since_ms), "--until", str(window.until_ms), "--repeats", str(repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise BenchError(f"ours.py failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout)


def run_group(group: str, store: Path, window: Window, args: argparse.Namespace) -> dict[str, Any]:
    """Export, load, compact, measure and query one group in every system."""
    spec = GROUPS[group]
    work = args.work / group
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    prom_dir, vm_dir, text_dir = work / "prometheus", work / "victoria-metrics", work / "text"
    text_dir.mkdir()
    reader = StoreReader(store)
    res: dict[str, Any] = {"samples": {}, "load": {"export_s": 0.0, "promtool_s": 0.0, "vm_import_s": 0.0}}
    res["samples"]["store"] = store_samples(reader, group, window.since_ms, window.until_ms)
    res["samples"]["exported"] = 0
    asked = [q for q in QUESTIONS if q.group == group]
    answers: dict[str, dict[str, Any]] = {q.key: {} for q in asked}
    timings: dict[str, dict[str, Any]] = {q.key: {} for q in asked}
    with victoria_metrics(vm_dir, work / "victoria-metrics.log") as vm:
        for lo, hi in slices(window.since_ms, window.until_ms, BLOCK_MS):
            began = time.perf_counter()
            piece = write_slice(reader, group, lo, hi, text_dir / f"{spec.table}-{lo}.om")
            res["load"]["export_s"] += time.perf_counter() - began
            res["samples"]["exported"] += piece.samples
            res["load"]["promtool_s"] += systems.promtool_load(piece.path, prom_dir)
            res["load"]["vm_import_s"] += systems.vm_import(vm, piece.path)
            mib = piece.bytes / 2**20
            log(f"{group}: slice {iso(lo)} .. {iso(hi)}: {piece.samples:,} samples, {mib:.0f} MiB of text")
            if not args.keep_text:
                piece.path.unlink()
        systems.vm_settle(vm)
        res["victoria-metrics"] = measured = systems.vm_measure(vm, vm_dir)
        res["samples"]["victoria-metrics"] = measured["samples"]
        _ask_server(
            vm, "victoria-metrics", asked, window, args.repeats, measured, answers, timings, {"nocache": "1"}
        )
    reader.close()
    with prometheus(prom_dir, work / "prometheus.log", max_samples=args.prom_max_samples) as prom:
        log(f"{group}: waiting for Prometheus' first compaction pass (about 2 min)")
        systems.prometheus_wait_compaction(prom)
        res["prometheus"] = measured = systems.prometheus_measure(prom_dir)
        res["samples"]["prometheus"] = measured["samples"]
        _ask_server(prom, "prometheus", asked, window, args.repeats, measured, answers, timings, None)
    res["ours"] = our_bytes(store, spec.table, window)
    ours = run_ours(store, group, window, args.repeats)
    res["ours"].update(idle_rss_kib=ours["idle_rss_kib"], peak_rss_kib=ours["peak_rss_kib"])
    for key, variants in ours["questions"].items():
        for variant, entry in variants.items():
            answers[key][f"ours/{variant}"] = entry.pop("answer")
            timings[key][f"ours/{variant}"] = entry
    res["questions"] = timings
    res["checks"] = {q.key: check(q, answers[q.key]) for q in asked}
    for q in asked:
        log(f"{group}: {q.key} answers {res['checks'][q.key]}")
    return res


def _ask_server(
    server: Any,
    name: str,
    asked: list[Any],
    window: Window,
    repeats: int,
    measured: dict[str, Any],
    answers: dict[str, dict[str, Any]],
    timings: dict[str, dict[str, Any]],
    extra: dict[str, str] | None,
) -> None:
    """Ask a server the group's questions, recording its RSS before and its peak during them."""
    measured["rss_before_kib"] = proc_status_kib(server.pid, "VmRSS")
    measured["hwm_life_kib"] = proc_status_kib(server.pid, "VmHWM")
    reset_peak_rss(server.pid)
    for q in asked:
        entry = systems.ask(server, q, window, repeats, extra)
        answers[q.key][name] = entry.pop("answer")
        timings[q.key][name] = entry
    measured["hwm_queries_kib"] = proc_status_kib(server.pid, "VmHWM")
    measured["hwm_life_kib"] = max(measured["hwm_life_kib"], measured["hwm_queries_kib"])


def main() -> int:
    """Run the benchmark; one line on stderr and exit 1 on a failure the user can act on."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=6, help="window length (default 6)")
    parser.add_argument("--end", help="window end, ISO UTC (default: the last UTC midnight)")
    parser.add_argument(
        "--work", type=Path, default=Path("/tmp/rack-monitor-peers"), help="scratch directory"
    )
    parser.add_argument("--store", type=Path, help="an existing store holding the window (else backfilled)")
    parser.add_argument("--scenario", default="nvlink-flap", help="sim scenario (default nvlink-flap)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per query after one warm-up")
    parser.add_argument("--groups", default=",".join(GROUPS), help="which sample groups (default all)")
    parser.add_argument("--prom-max-samples", type=int, default=1_000_000_000, help="--query.max-samples")
    parser.add_argument("--keep-text", action="store_true", help="keep the OpenMetrics files")
    parser.add_argument("--out", type=Path, help="write results JSON here (and a .md beside it)")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so every `with` stops its server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        groups = [g.strip() for g in args.groups.split(",") if g.strip()]
        unknown = sorted(set(groups) - set(GROUPS))
        if unknown:
            raise BenchError(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
        systems.ensure_packages()
        args.work.mkdir(parents=True, exist_ok=True)
        store, window = prepare_store(args)
        results: dict[str, Any] = {
            "window": {"hours": args.hours, "since": iso(window.since_ms), "until": iso(window.until_ms)},
            "scenario": args.scenario,
            "seed": args.seed,
            "repeats": args.repeats,
            "versions": systems.versions(),
            "groups": {},
        }
        for group in groups:
            log(f"{group}: start")
            results["groups"][group] = run_group(group, store, window, args)
    except BenchError as err:
        print(f"bench/peers: {err}", file=sys.stderr)
        return 1
    text = markdown(results)
    print(text)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
        args.out.with_suffix(".md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
