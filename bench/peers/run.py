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
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import systems
from compare import compare
from export import GROUPS, slices, store_samples, write_slice
from questions import QUESTIONS, Query, Window, raw_query
from report import markdown
from rules import precomputed_query, probe_phases, promtool_rules, rules_for, write_rules

from bench.peers.servers import (
    BenchError,
    proc_status_kib,
    prometheus,
    reset_peak_rss,
    tree_bytes,
    victoria_metrics,
)
from storage.layout import HOUR_MS, MANIFEST, read_manifest
from storage.reader import StoreReader
from storage.rollups import ROLLUP_STEPS, rollup_name

BLOCK_MS = 2 * HOUR_MS
"""promtool's default block length; slices are cut on its boundaries so each file is one block."""


def log(msg: str) -> None:
    """Progress on stderr."""
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def iso(ms: int) -> str:
    """An epoch-ms time as ISO 8601 UTC."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def prepare_store(args: argparse.Namespace) -> tuple[Path, Window]:
    """The store and the window: an existing --store, or a new backfill of --hours ending at --end.

    The backfill runs the sim scenario with its fault in the middle of the window, 30 s past a minute
    (`restart` by default: a tray's driver reload and its servers' restart put counter resets in
    the NVLink and serving counters that q3-q5 read, between rollup buckets' edges).
    """
    from monitor.backfill import SimFrames, backfill

    store = args.store or args.work / "store"
    reuse = store.exists() and any(store.iterdir())
    if args.end:
        until_s = int(datetime.fromisoformat(args.end).replace(tzinfo=UTC).timestamp())
    elif reuse:
        until_s = store_window(store, args.hours).until_ms // 1000
    else:
        until_s = int(time.time()) // 86_400 * 86_400  # the last UTC midnight: whole hours and days
    window = Window((until_s - args.hours * 3600) * 1000, until_s * 1000)
    if reuse:
        log(f"using the store in {store}, window {iso(window.since_ms)} .. {iso(window.until_ms)}")
        return store, window
    fault_at = args.hours * 1800 + 30
    log(f"backfilling {args.hours} h ({args.scenario} at +{fault_at} s, seed {args.seed}) into {store}")
    # One tick past the window seals its last hour, so the compactor turns it into an hour file as
    # it would on a live store; that tick is outside the window and not exported.
    result = backfill(
        store, args.hours * 3600 + 1, end_s=until_s,
        frames=lambda start: SimFrames(args.seed, args.scenario, start, 1.0, fast=True, fault_at=fault_at),
        on_progress=lambda done, total: log(f"backfill {done}/{total} ticks"),
    )  # fmt: skip
    log(f"backfill wrote {result.rows:,} rows in {result.seconds:.0f} s")
    return store, window


def store_window(store: Path, hours: int) -> Window:
    """The last `hours` of a store's compacted hours."""
    sealed = [f.max_ts for f in read_manifest(store).of("gpu") if f.level in ("hour", "day")]
    if not sealed:
        raise BenchError(f"{store} has no compacted hour of gpu rows; give --end")
    until_ms = (max(sealed) // HOUR_MS + 1) * HOUR_MS
    return Window(until_ms - hours * HOUR_MS, until_ms)


def our_bytes(store: Path, table: str, window: Window) -> dict[str, Any]:
    """Bytes the store keeps for the table's window: its files, its rollups, and their share of the manifest.

    Files are counted as the current code writes them (whatever levels and time bands the manifest
    lists) when they overlap the window; `outside` says whether any of them reaches beyond it.
    """
    manifest = read_manifest(store)
    last = window.until_ms - 1

    def overlapping(name: str) -> list[Any]:
        return manifest.overlapping(name, window.since_ms, last)

    files = overlapping(table)
    rollups = [f for step in ROLLUP_STEPS for f in overlapping(rollup_name(table, step))]
    mine = len(files) + len(rollups)
    share = (store / MANIFEST).stat().st_size * mine // max(1, len(manifest.files))
    return {
        "bytes": sum(f.bytes for f in files),
        "files": len(files),
        "levels": sorted({f.level for f in files}),
        "rollup_bytes": sum(f.bytes for f in rollups),
        "rollup_files": len(rollups),
        "manifest_share_bytes": share,
        "outside": any(f.min_ts < window.since_ms or f.max_ts > last for f in files + rollups),
    }


def run_ours(store: Path, group: str, window: Window, repeats: int, *extra: str) -> dict[str, Any]:
    """Run ours.py in a fresh process for one group and return its JSON report."""
    cmd = [sys.executable, str(Path(__file__).with_name("ours.py")), "--store", str(store), "--group", group]
    cmd += ["--since", str(window.since_ms), "--until", str(window.until_ms), "--repeats", str(repeats)]
    out = subprocess.run([*cmd, *extra], capture_output=True, text=True)
    if out.returncode != 0:
        raise BenchError(f"ours.py failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout)


def load_peers(
    group: str,
    store: Path,
    window: Window,
    work: Path,
    res: dict[str, Any],
    vm: Any,
    keep: bool,
    prometheus: bool = True,
) -> None:
    """Export the group slice by slice; backfill each into Prometheus blocks (unless `prometheus` is
    False: a size-only run) and import it into VM."""
    spec = GROUPS[group]
    text_dir = work / "text"
    text_dir.mkdir()
    with StoreReader(store) as reader:
        res["samples"]["store"] = store_samples(reader, group, window.since_ms, window.until_ms)
        res["samples"]["exported"] = 0
        for lo, hi in slices(window.since_ms, window.until_ms, BLOCK_MS):
            began = time.perf_counter()
            piece = write_slice(reader, group, lo, hi, text_dir / f"{spec.table}-{lo}.om")
            res["load"]["export_s"] += time.perf_counter() - began
            res["samples"]["exported"] += piece.samples
            if prometheus:
                res["load"]["promtool_s"] += systems.promtool_load(piece.path, work / "prometheus")
            res["load"]["vm_import_s"] += systems.vm_import(vm, piece.path)
            mib = piece.bytes / 2**20
            log(f"{group}: slice {iso(lo)} .. {iso(hi)}: {piece.samples:,} samples, {mib:.0f} MiB")
            if not keep:
                piece.path.unlink()


def ask_all(
    server: Any, runs: dict[str, tuple[Query, dict[str, str] | None]], repeats: int, measured: dict[str, Any]
) -> dict[str, Any]:
    """Ask a server its questions (name -> query, extra params), recording RSS before and peak during."""
    measured["rss_before_kib"] = proc_status_kib(server.pid, "VmRSS")
    measured["hwm_life_kib"] = proc_status_kib(server.pid, "VmHWM")
    reset_peak_rss(server.pid)
    out = {name: systems.ask(server, query, repeats, extra) for name, (query, extra) in runs.items()}
    measured["hwm_queries_kib"] = proc_status_kib(server.pid, "VmHWM")
    measured["hwm_life_kib"] = max(measured["hwm_life_kib"], measured["hwm_queries_kib"])
    return out


def size_group(group: str, store: Path, window: Window, args: argparse.Namespace) -> dict[str, Any]:
    """--size-only: load the group into VictoriaMetrics alone and measure its bytes beside ours.

    No Prometheus (promtool's backfill is the slow part of a long run) and no questions.
    """
    work = args.work / group
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    res: dict[str, Any] = {"samples": {}, "load": {"export_s": 0.0, "vm_import_s": 0.0}}
    with victoria_metrics(work / "victoria-metrics", work / "victoria-metrics.log") as vm:
        load_peers(group, store, window, work, res, vm, args.keep_text, prometheus=False)
        systems.vm_settle(vm)
        res["victoria-metrics"] = systems.vm_measure(vm, work / "victoria-metrics")
    res["samples"]["victoria-metrics"] = res["victoria-metrics"]["samples"]
    res["ours"] = our_bytes(store, GROUPS[group].table, window)
    return res


def size_table(results: dict[str, Any]) -> str:
    """The --size-only results as a Markdown table of bytes per exported sample."""
    lines = [
        f"Bytes per sample, {results['window']['hours']} h ({results['window']['since']} .. "
        f"{results['window']['until']}), {results['date']}, load {results['machine']['load_start']}",
        "",
        "| group | samples | ours raw | ours + rollups + manifest | VictoriaMetrics |",
        "|---|---|---|---|---|",
    ]
    for group, res in results["groups"].items():
        n, ours = res["samples"]["exported"], res["ours"]
        total = ours["bytes"] + ours["rollup_bytes"] + ours["manifest_share_bytes"]
        vm = res["victoria-metrics"]["bytes"] / max(1, res["samples"]["victoria-metrics"])
        lines.append(f"| {group} | {n:,} | {ours['bytes'] / n:.3f} | {total / n:.3f} | {vm:.3f} |")
    return "\n".join(lines) + "\n"


def run_group(group: str, store: Path, window: Window, args: argparse.Namespace) -> dict[str, Any]:
    """Export, load, compact, measure and ask one group in every system, then compare every answer."""
    work = args.work / group
    prev = args.reuse_peers.get(group) if args.reuse_peers else None
    if prev is None:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
    prom_dir, vm_dir = work / "prometheus", work / "victoria-metrics"
    res: dict[str, Any] = {"samples": {}, "load": {"export_s": 0.0, "promtool_s": 0.0, "vm_import_s": 0.0}}
    asked = [q for q in QUESTIONS if q.group == group]
    answers = Answers.of(group)
    keep = answers.keep

    if prev is not None:
        return rerun_group(group, store, window, args, prev)
    with victoria_metrics(vm_dir, work / "victoria-metrics.log") as vm:
        load_peers(group, store, window, work, res, vm, args.keep_text)
        systems.vm_settle(vm)
        res["victoria-metrics"] = measured = systems.vm_measure(vm, vm_dir)
        res["samples"]["victoria-metrics"] = measured["samples"]
        runs: dict[str, tuple[Query, dict[str, str] | None]] = {}
        for q in asked:
            query = raw_query(q, window, "victoria-metrics")
            runs[f"{q.key}/raw"] = (query, {"nocache": "1"})
            runs[f"{q.key}/cached"] = (query, None)  # its rollup result cache: filled by the warm-up run
        keep("victoria-metrics", ask_all(vm, runs, args.repeats, measured))
    rules = [r for r in rules_for(group)]
    with prometheus(prom_dir, work / "prometheus.log", max_samples=args.prom_max_samples) as prom:
        log(f"{group}: waiting for Prometheus' first compaction pass (about 2 min)")
        systems.prometheus_wait_compaction(prom)
        res["prometheus"] = measured = systems.prometheus_measure(prom_dir)
        res["samples"]["prometheus"] = measured["samples"]
        runs = {f"{q.key}/raw": (raw_query(q, window, "prometheus"), None) for q in asked}
        keep("prometheus", ask_all(prom, runs, args.repeats, measured))
        if rules:
            log(f"{group}: evaluating {len(rules)} recording rules over the history (promtool)")
            rules_path = work / "rules.yml"
            began = time.perf_counter()
            phases = probe_phases(prom, rules_path, rules, window.since_s, work)
            write_rules(rules_path, rules, phases)
            promtool_rules(
                prom, rules_path, work / "rule-blocks", window.since_s, window.until_ms // 1000 + 60
            )
            res["load"]["rules_s"] = time.perf_counter() - began
            res["load"]["rule_phases_ms"] = phases
            res["load"]["rules"] = rules_path.read_text()
    if rules:
        res["prometheus"]["rule_bytes"] = sum(tree_bytes(p) for p in (work / "rule-blocks").iterdir())
        for block in (work / "rule-blocks").iterdir():
            block.rename(prom_dir / block.name)
        with prometheus(prom_dir, work / "prometheus-rules.log", max_samples=args.prom_max_samples) as prom:
            # Overlapping blocks are merged by the first compaction; asked after it, as the raw phase was.
            systems.prometheus_wait_compaction(prom)
            measured = res["prometheus-rules"] = {}
            runs = {
                f"{q.key}/precomputed": (precomputed_query(q, window, phases), None)
                for q in asked
                if q.precomputed
            }
            keep("prometheus", ask_all(prom, runs, args.repeats, measured))
    return finish_group(group, store, window, args, res, answers)


@dataclass
class Answers:
    """Each question's answer and timing per system and variant ('victoria-metrics/cached')."""

    answers: dict[str, dict[str, Any]]
    timings: dict[str, dict[str, Any]]

    @classmethod
    def of(cls, group: str) -> Answers:
        """Empty, for the questions of `group`."""
        keys = [q.key for q in QUESTIONS if q.group == group]
        return cls({k: {} for k in keys}, {k: {} for k in keys})

    def keep(self, system: str, got: dict[str, Any]) -> None:
        """Take `system`'s results ('q2/raw' -> entry with its answer) apart into answer and timing."""
        for name, entry in got.items():
            key, variant = name.split("/")
            self.answers[key][f"{system}/{variant}"] = entry.pop("answer")
            self.timings[key][f"{system}/{variant}"] = entry


def finish_group(
    group: str,
    store: Path,
    window: Window,
    args: argparse.Namespace,
    res: dict[str, Any],
    answers: Answers,
) -> dict[str, Any]:
    """Our side (bytes, questions, memory), then every answer compared with ours from raw."""
    asked = [q for q in QUESTIONS if q.group == group]
    res["ours"] = our_bytes(store, GROUPS[group].table, window)
    ours = run_ours(store, group, window, args.repeats)
    res["ours"].update(
        idle_rss_kib=ours["idle_rss_kib"], peak_rss_kib=ours["peak_rss_kib"], settings=ours["settings"]
    )
    for key, variants in ours["questions"].items():
        answers.keep("ours", {f"{key}/{variant}": entry for variant, entry in variants.items()})
    res["questions"] = answers.timings
    res["checks"] = {}
    for q in asked:
        # The reference is ours over every raw row; every other answer must equal it point for point.
        ordered = dict(sorted(answers.answers[q.key].items(), key=lambda kv: kv[0] != "ours/raw"))
        verdict = compare(ordered)
        res["checks"][q.key] = {"agree": verdict.agree, "text": verdict.text, "points": verdict.points}
        log(f"{group}: {q.key} {verdict.text}")
    return res


def reused_groups(results: Path, work: Path) -> dict[str, dict[str, Any]]:
    """The groups an earlier run (its results JSON) loaded under `work` and left there, by name."""
    try:
        doc = json.loads(results.read_text())
    except (OSError, ValueError) as err:
        raise BenchError(f"--reuse-peers {results}: {err}") from err
    out = {
        group: dict(res, reused_from=str(results))
        for group, res in doc.get("groups", {}).items()
        if (work / group / "prometheus").is_dir() and (work / group / "victoria-metrics").is_dir()
    }
    if not out:
        raise BenchError(f"--reuse-peers: no group of {results} has its peers' data under {work}")
    return out


def rerun_group(
    group: str, store: Path, window: Window, args: argparse.Namespace, prev: dict[str, Any]
) -> dict[str, Any]:
    """Ask the peers an earlier run loaded again (--reuse-peers): no export, load or rule evaluation.

    The Prometheus data directory then holds the raw and the rule blocks, merged, so one server answers
    the raw and the precomputed questions. Sample counts, load times, Prometheus' bytes and the rule
    phases are the earlier run's (the result names it under `reused_from`); every answer, timing and
    memory figure is this run's, and every answer is compared again.
    """
    work = args.work / group
    prom_dir, vm_dir = work / "prometheus", work / "victoria-metrics"
    asked = [q for q in QUESTIONS if q.group == group]
    answers = Answers.of(group)
    keep = answers.keep

    res: dict[str, Any] = {k: prev[k] for k in ("samples", "load", "reused_from")}
    with victoria_metrics(vm_dir, work / "victoria-metrics-rerun.log") as vm:
        res["victoria-metrics"] = measured = systems.vm_measure(vm, vm_dir)
        runs: dict[str, tuple[Query, dict[str, str] | None]] = {}
        for q in asked:
            query = raw_query(q, window, "victoria-metrics")
            runs[f"{q.key}/raw"] = (query, {"nocache": "1"})
            runs[f"{q.key}/cached"] = (query, None)
        keep("victoria-metrics", ask_all(vm, runs, args.repeats, measured))
    with prometheus(prom_dir, work / "prometheus-rerun.log", max_samples=args.prom_max_samples) as prom:
        systems.prometheus_wait_compaction(prom)
        res["prometheus"] = {k: v for k, v in prev["prometheus"].items() if "kib" not in k}
        raw = {f"{q.key}/raw": (raw_query(q, window, "prometheus"), None) for q in asked}
        keep("prometheus", ask_all(prom, raw, args.repeats, res["prometheus"]))
        phases = prev["load"].get("rule_phases_ms")
        if phases:
            res["prometheus-rules"] = {}
            ruled = {
                f"{q.key}/precomputed": (precomputed_query(q, window, phases), None)
                for q in asked
                if q.precomputed
            }
            keep("prometheus", ask_all(prom, ruled, args.repeats, res["prometheus-rules"]))
    return finish_group(group, store, window, args, res, answers)


def main() -> int:
    """Run the benchmark; one line on stderr and exit 1 on a failure the user can act on."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=6, help="window length (default 6)")
    parser.add_argument("--end", help="window end, ISO UTC (default: the last UTC midnight)")
    parser.add_argument(
        "--work", type=Path, default=Path("/tmp/rack-monitor-peers"), help="scratch directory"
    )
    parser.add_argument("--store", type=Path, help="an existing store holding the window (else backfilled)")
    parser.add_argument(
        "--scenario", default="restart", help="sim scenario, its fault mid-window (default restart)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per query after one warm-up")
    parser.add_argument("--groups", default=",".join(GROUPS), help="which sample groups (default all)")
    parser.add_argument("--prom-max-samples", type=int, default=1_000_000_000, help="--query.max-samples")
    parser.add_argument("--keep-text", action="store_true", help="keep the OpenMetrics files")
    parser.add_argument("--out", type=Path, help="write results JSON here (and a .md beside it)")
    parser.add_argument(
        "--reuse-peers",
        type=Path,
        help="results JSON of the run that loaded the peers under --work: ask again without reloading",
    )
    parser.add_argument(
        "--size-only",
        action="store_true",
        help="bytes/sample only: load VictoriaMetrics alone, skip Prometheus and the questions",
    )
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so every `with` stops its server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        groups = [g.strip() for g in args.groups.split(",") if g.strip()]
        unknown = sorted(set(groups) - set(GROUPS))
        if unknown:
            raise BenchError(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
        if args.reuse_peers:
            args.reuse_peers = reused_groups(args.reuse_peers, args.work)
        systems.ensure_packages()
        args.work.mkdir(parents=True, exist_ok=True)
        store, window = prepare_store(args)
        results: dict[str, Any] = {
            "date": datetime.now(tz=UTC).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
            "machine": {"cores": os.cpu_count(), "load_start": os.getloadavg()},
            "window": {"hours": args.hours, "since": iso(window.since_ms), "until": iso(window.until_ms)},
            "scenario": args.scenario,
            "seed": args.seed,
            "repeats": args.repeats,
            "versions": systems.versions(),
            "groups": {},
        }
        for group in groups:
            log(f"{group}: start")
            run = size_group if args.size_only else run_group
            results["groups"][group] = run(group, store, window, args)
            results["groups"][group]["load_end"] = os.getloadavg()
        results["machine"]["load_end"] = os.getloadavg()
    except BenchError as err:
        print(f"bench/peers: {err}", file=sys.stderr)
        return 1
    text = size_table(results) if args.size_only else markdown(results)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
        args.out.with_suffix(".md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
