"""The benchmark's results as Markdown tables (printed, and written for docs/benchmarks.md)."""

from __future__ import annotations

from typing import Any

from questions import QUESTIONS

SYSTEMS = ("ours", "prometheus", "victoria-metrics")
TITLES = {"ours": "rack-monitor store", "prometheus": "Prometheus", "victoria-metrics": "VictoriaMetrics"}


def _bps(entry: dict[str, Any] | None, samples: int) -> str:
    if not entry or not samples:
        return "-"
    return f"{entry['bytes'] / samples:.3f}"


def _mib(n: float | None) -> str:
    return "-" if n is None else f"{n / 1024:.0f}"


def _ms(entry: dict[str, Any] | None) -> str:
    return "-" if not entry else f"{entry['median_ms']:.1f}"


def markdown(results: dict[str, Any]) -> str:
    """Tables for sizes, latencies and memory, plus the exact queries, from run.py's results."""
    groups: dict[str, Any] = results["groups"]
    out = [
        f"Window: {results['window']['hours']} h of 1 Hz data, {results['window']['since']} .. "
        f"{results['window']['until']} (scenario {results['scenario']}, seed {results['seed']}); "
        f"{results['repeats']} timed runs after one warm-up, median.",
        "",
        "### Bytes on disk per sample (after compaction)",
        "",
        "| Samples of | Samples (store = exported = Prometheus = VM?) | rack-monitor | + rollups "
        "| Prometheus | VictoriaMetrics |",
        "|---|---|---|---|---|---|",
    ]
    for name, g in groups.items():
        counts = g["samples"]
        same = len({counts.get(s) for s in ("store", "exported", "prometheus", "victoria-metrics")}) == 1
        ours = g.get("ours", {})
        with_rollups = {"bytes": ours.get("bytes", 0) + ours.get("rollup_bytes", 0)} if ours else None
        out.append(
            f"| {name} | {counts.get('store', 0):,} ({'yes' if same else 'NO: ' + str(counts)}) "
            f"| {_bps(ours, counts.get('store', 0))} | {_bps(with_rollups, counts.get('store', 0))} "
            f"| {_bps(g.get('prometheus'), counts.get('store', 0))} "
            f"| {_bps(g.get('victoria-metrics'), counts.get('store', 0))} |"
        )
    out += [
        "",
        "### Query latency, median ms",
        "",
        "Servers: HTTP request to decoded JSON on loopback; ours: SQL through StoreReader to Arrow.",
        "",
        "| Question | rack-monitor, raw | rack-monitor, rollups | Prometheus | VictoriaMetrics | answers |",
        "|---|---|---|---|---|---|",
    ]
    for q in QUESTIONS:
        g = groups.get(q.group)
        if not g:
            continue
        timings = g.get("questions", {}).get(q.key, {})
        out.append(
            f"| {q.key}: {q.title} | {_ms(timings.get('ours/raw'))} | {_ms(timings.get('ours/rollup'))} "
            f"| {_ms(timings.get('prometheus'))} | {_ms(timings.get('victoria-metrics'))} "
            f"| {g.get('checks', {}).get(q.key, '-')} |"
        )
    out += [
        "",
        "### Memory, MiB (VmRSS before the questions, VmHWM during them and over the process' life)",
        "",
        "| Data loaded | rack-monitor idle / peak | Prometheus before queries / in queries / lifetime "
        "| VictoriaMetrics before queries / in queries / lifetime |",
        "|---|---|---|---|",
    ]
    for name, g in groups.items():
        cells = []
        ours = g.get("ours", {})
        cells.append(f"{_mib(ours.get('idle_rss_kib'))} / {_mib(ours.get('peak_rss_kib'))}" if ours else "-")
        for s in ("prometheus", "victoria-metrics"):
            e = g.get(s)
            cells.append(
                f"{_mib(e['rss_before_kib'])} / {_mib(e['hwm_queries_kib'])} / {_mib(e['hwm_life_kib'])}"
                if e
                else "-"
            )
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    out += ["", "### Loading", "", "| Data | export s | promtool s | Prometheus blocks | VM import s |"]
    out.append("|---|---|---|---|---|")
    for name, g in groups.items():
        load = g.get("load", {})
        blocks = ", ".join(g.get("prometheus", {}).get("blocks", [])) or "-"
        out.append(
            f"| {name} | {load.get('export_s', 0):.0f} | {load.get('promtool_s', 0):.0f} | {blocks} "
            f"| {load.get('vm_import_s', 0):.0f} |"
        )
    out += ["", "### Queries as sent", ""]
    for q in QUESTIONS:
        g = groups.get(q.group, {})
        e = g.get("questions", {}).get(q.key, {}).get("prometheus") or g.get("questions", {}).get(
            q.key, {}
        ).get("victoria-metrics")
        if e:
            out.append(f"- {q.key}: `{e['path']}` `{e['query']}`")
    out += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()), ""]
    return "\n".join(out)
