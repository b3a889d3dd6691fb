"""The benchmark's results JSON as Markdown tables (printed by run.py; docs.py puts them in the docs)."""

from __future__ import annotations

from typing import Any

from questions import QUESTIONS

PRECOMPUTED = (
    ("ours/precomputed", "rack-monitor (rollups + raw edges)"),
    ("prometheus/precomputed", "Prometheus (recording rules + raw edges)"),
    ("victoria-metrics/cached", "VictoriaMetrics (cache on)"),
)
RAW = (
    ("ours/raw", "rack-monitor (every raw row)"),
    ("prometheus/raw", "Prometheus"),
    ("victoria-metrics/raw", "VictoriaMetrics (nocache=1)"),
)


def _bps(n_bytes: int | None, samples: int) -> str:
    return "-" if not n_bytes or not samples else f"{n_bytes / samples:.3f}"


def _mib(kib: float | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.0f}"


def _ms(entry: dict[str, Any] | None, field: str = "median_ms") -> str:
    value = entry.get(field) if entry else None
    return "-" if value is None else f"{value:.1f}"


def _best(cells: list[str]) -> list[str]:
    """Bold the smallest number of a row."""
    nums = [float(c) if c not in ("-", "") else None for c in cells]
    known = [n for n in nums if n is not None]
    if len(known) < 2:
        return cells
    low = min(known)
    return [f"**{c}**" if n == low else c for c, n in zip(cells, nums, strict=True)]


def sizes(results: dict[str, Any]) -> list[str]:
    """Bytes on disk per sample, every system, with and without its precomputation."""
    out = [
        "| Samples of | samples (store = exported = Prometheus = VM) | rack-monitor raw files "
        "| rack-monitor + rollups + manifest share | Prometheus blocks | Prometheus + rule blocks "
        "| VictoriaMetrics |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, g in results["groups"].items():
        counts = g["samples"]
        n = counts.get("store", 0)
        same = len({counts.get(s) for s in ("store", "exported", "prometheus", "victoria-metrics")}) == 1
        ours, prom, vm = g.get("ours", {}), g.get("prometheus", {}), g.get("victoria-metrics", {})
        everything = ours.get("bytes", 0) + ours.get("rollup_bytes", 0) + ours.get("manifest_share_bytes", 0)
        prom_all = prom.get("bytes", 0) + prom.get("rule_bytes", 0)
        cells = _best(
            [
                _bps(ours.get("bytes"), n),
                _bps(everything, n),
                _bps(prom.get("bytes"), n),
                _bps(prom_all, n),
                _bps(vm.get("bytes"), n),
            ]
        )
        out.append(
            f"| {name} | {n:,} ({'yes' if same else 'NO: ' + str(counts)}) | " + " | ".join(cells) + " |"
        )
    return out


def latency(
    results: dict[str, Any], columns: tuple[tuple[str, str], ...], field: str = "median_ms"
) -> list[str]:
    """Median wall ms (or mean CPU ms) per question for some variants, and whether all answers agreed."""
    out = [
        "| Question | " + " | ".join(title for _, title in columns) + " | answers (all 6 compared) |",
        "|---|" + "---|" * (len(columns) + 1),
    ]
    for q in QUESTIONS:
        g = results["groups"].get(q.group)
        if not g:
            continue
        timings = g.get("questions", {}).get(q.key, {})
        if not any(timings.get(v) for v, _ in columns):
            continue
        cells = _best([_ms(timings.get(v), field) for v, _ in columns])
        check = g.get("checks", {}).get(q.key, {})
        verdict = "agree" if check.get("agree") else "**DIFFER**"
        out.append(f"| {q.key}: {q.title} | " + " | ".join(cells) + f" | {verdict} |")
    return out


def memory(results: dict[str, Any]) -> list[str]:
    """RSS of each system's serving process: before the questions and the peak while answering."""
    out = [
        "| Data loaded | rack-monitor query process: idle / peak | Prometheus raw: before / in queries "
        "| Prometheus with rules: before / in queries | VictoriaMetrics: before / in queries / lifetime |",
        "|---|---|---|---|---|",
    ]
    for name, g in results["groups"].items():
        ours = g.get("ours", {})
        cells = [f"{_mib(ours.get('idle_rss_kib'))} / {_mib(ours.get('peak_rss_kib'))}"]
        for key in ("prometheus", "prometheus-rules"):
            e = g.get(key) or {}
            cells.append(f"{_mib(e.get('rss_before_kib'))} / {_mib(e.get('hwm_queries_kib'))}")
        e = g.get("victoria-metrics") or {}
        vm = [_mib(e.get(k)) for k in ("rss_before_kib", "hwm_queries_kib", "hwm_life_kib")]
        cells.append(" / ".join(vm))
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


def checks(results: dict[str, Any]) -> list[str]:
    """Each question's strict comparison, one line each."""
    out = []
    for q in QUESTIONS:
        g = results["groups"].get(q.group)
        if g and q.key in g.get("checks", {}):
            out.append(f"- {q.key}: {g['checks'][q.key]['text']}")
    return out


def queries(results: dict[str, Any]) -> list[str]:
    """The queries as sent to each peer."""
    out = []
    for q in QUESTIONS:
        g = results["groups"].get(q.group, {})
        for variant in ("prometheus/raw", "victoria-metrics/raw", "prometheus/precomputed"):
            e = g.get("questions", {}).get(q.key, {}).get(variant)
            if e:
                out.append(f"- {q.key} {variant}: `{e['path']}` `{e['query']}`")
    return out


def header(results: dict[str, Any]) -> list[str]:
    """Which run this is: window, data, date, commit, versions, load."""
    w, m = results["window"], results.get("machine", {})
    load = m.get("load_start"), m.get("load_end")
    fmt = "/".join
    loads = " to ".join(fmt(f"{x:.1f}" for x in la) for la in load if la)
    return [
        f"Run of {results.get('date', '?')}: {w['hours']} h of 1 Hz data, {w['since']} .. {w['until']} "
        f"(scenario {results['scenario']} with its fault mid-window, seed {results['seed']}); "
        f"{results['repeats']} timed runs after one warm-up, median; load average (1/5/15 min) {loads} "
        f"on {m.get('cores', '?')} cores.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()) + ".",
        f"Command: `{results.get('command', '?')}`",
    ]


def markdown(results: dict[str, Any]) -> str:
    """Every table of one run."""
    out = [*header(results), "", "Bytes on disk per sample:", "", *sizes(results)]
    out += ["", "Latency, precomputed vs precomputed (median ms, question to Python value):", ""]
    out += latency(results, PRECOMPUTED)
    out += ["", "Latency, raw vs raw (median ms, question to Python value):", "", *latency(results, RAW)]
    cpu = "CPU ms per question (user + sys, mean of the timed runs; the peers: server and client process)"
    out += ["", f"{cpu}, precomputed:", "", *latency(results, PRECOMPUTED, "cpu_ms")]
    out += ["", f"{cpu}, raw:", "", *latency(results, RAW, "cpu_ms")]
    out += ["", "Memory, MiB:", "", *memory(results), "", "Strict comparison of every answer:", ""]
    out += checks(results)
    out += ["", "Queries as sent:", "", *queries(results), ""]
    return "\n".join(out)
