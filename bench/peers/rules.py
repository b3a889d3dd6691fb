"""Prometheus' equivalent of our rollups: recording rules over the loaded history, and questions of them.

Our store keeps per-GPU 1-minute means and per-bucket counter increases (1 min and 1 h). Prometheus
gets the same as recording rules, evaluated over the backfilled raw blocks by
`promtool tsdb create-blocks-from rules` (Prometheus docs, "Backfilling for Recording Rules"): a 1 min
group (mean utilisation, tokens and symbol-error increases) and a 1 h group (the two increases).

promtool evaluates a group at its own phase, not on the minute: Group.EvalTimestamp (rules/manager.go)
offsets every evaluation by a hash of the group's name and file modulo its interval. The phase is
found first (probe rules in groups of the same names, in a file at the same path), and the real
rules carry it as an `offset`, so the rule evaluated at m + phase covers exactly the bucket that ends
at the minute (hour) m, as our buckets do.

A precomputed increase over [first, last] is then tiled as ours is (storage/counter_rates.py): raw
samples from `first` to the next minute, whole hours from the hour rules, whole minutes from the
minute rules, raw samples from the last minute to `last`. Each piece's window starts and ends on
samples, so no piece is extrapolated, and neighbouring pieces share their boundary sample, so every
pair of consecutive samples is counted once.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from questions import Query, Question, Window, _s, _zero

from bench.peers.servers import BenchError, Server

STEPS = {"1m": 60, "1h": 3600}
"""Rule group -> interval, s."""


@dataclass(frozen=True)
class Rule:
    """One recording rule: its group, the recorded name, and the expression before the phase offset."""

    step: str
    record: str
    expr: str  # {off}: the group's phase; {off_1s}: the phase + 1 s


def rules_for(group: str) -> list[Rule]:
    """The recording rules matching our rollups, for the questions of one exported group."""
    from questions import QUESTIONS

    out: list[Rule] = []
    for q in QUESTIONS:
        if q.group != group or not q.precomputed:
            continue
        name = q.metric
        if q.key == "q2":
            # At m + phase: the samples m-60 .. m-1, our 1-minute bucket starting at m-60.
            out.append(Rule("1m", record_name(q, "1m"), f"avg_over_time({name}[59s] offset {{off_1s}})"))
        elif q.key in ("q3", "q4"):
            for step, seconds in STEPS.items():
                # At m + phase: the increase over the samples m-step .. m (both ends are samples).
                out.append(Rule(step, record_name(q, step), f"increase({name}[{seconds}s] offset {{off}})"))
    return out


def record_name(q: Question, step: str) -> str:
    """The recorded series' name (Prometheus' level:metric:operations convention)."""
    op = "avg" if q.key == "q2" else "increase"
    column = "symbol_errors" if q.key in ("q4", "q5") else q.column
    return f"rackmon:{column}:{op}{step}"


def write_rules(path: Path, rules: list[Rule], phases_ms: dict[str, int] | None) -> None:
    """The rules file; with phases None, one probe rule per group (vector(1)) to find the phases."""
    lines = ["groups:"]
    for step, seconds in STEPS.items():
        mine = [r for r in rules if r.step == step]
        if not mine:
            continue
        lines += [f"  - name: rackmon_{step}", f"    interval: {seconds}s", "    rules:"]
        if phases_ms is None:
            lines += [f"      - record: rackmon:probe:{step}", "        expr: vector(1)"]
            continue
        for r in mine:
            expr = r.expr.format(off=f"{phases_ms[step]}ms", off_1s=f"{phases_ms[step] + 1000}ms")
            lines += [f"      - record: {r.record}", f"        expr: {expr}"]
    path.write_text("\n".join(lines) + "\n")


def promtool_rules(server: Server, rules: Path, out: Path, start_s: int, end_s: int) -> None:
    """Evaluate a rules file over [start_s, end_s] against a running Prometheus into blocks under out."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = ["promtool", "tsdb", "create-blocks-from", "rules", f"--start={start_s}", f"--end={end_s}"]
    cmd += [f"--url=http://127.0.0.1:{server.port}", f"--output-dir={out}", "--quiet", str(rules)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"promtool rules failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")


def probe_phases(
    server: Server, rules_path: Path, rules: list[Rule], start_s: int, work: Path
) -> dict[str, int]:
    """Each group's evaluation phase in ms (first evaluation time modulo the interval)."""
    write_rules(rules_path, rules, None)
    probe = work / "probe-blocks"
    promtool_rules(server, rules_path, probe, start_s, start_s + 2 * STEPS["1h"])
    (probe / "wal").mkdir(exist_ok=True)  # dump opens the directory as a TSDB, which needs one
    dump = subprocess.run(["promtool", "tsdb", "dump", str(probe)], capture_output=True, text=True)
    if dump.returncode != 0:
        raise BenchError(f"promtool tsdb dump failed: {dump.stderr.strip().splitlines()[-1:]}")
    phases: dict[str, int] = {}
    for m in re.finditer(r'rackmon:probe:(\w+)"\} \S+ (\d+)', dump.stdout):
        step, ts = m.group(1), int(m.group(2))
        phases.setdefault(step, ts % (STEPS[step] * 1000))
    missing = {r.step for r in rules} - set(phases)
    if missing:
        raise BenchError(f"no probe evaluation found for rule group(s) {sorted(missing)}")
    return phases


def tiles(first: int, last: int) -> list[tuple[str, int, int]]:
    """[first, last] (s) cut into ('raw' | '1m' | '1h', lo, hi) pieces sharing their boundaries.

    Whole hours where an hour fits (its end is a sample), whole minutes up to the next such hour or
    as far as they fit, raw samples elsewhere (a partial first minute, the last partial minute).
    """
    out: list[tuple[str, int, int]] = []
    t = first
    while t < last:
        if t % 3600 == 0 and t + 3600 <= last:
            hi = t + (last - t) // 3600 * 3600
            out.append(("1h", t, hi))
        elif t % 60 == 0 and t + 60 <= last:
            hi = t + (last - t) // 60 * 60
            hour = -(-t // 3600) * 3600
            if hour + 3600 <= last and hour < hi:
                hi = hour
            out.append(("1m", t, hi))
        else:
            hi = min((t // 60 + 1) * 60, last)
            out.append(("raw", t, hi))
        t = hi
    return out


def tiled_increase(
    metric: str, record: dict[str, str], first: int, last: int, phases_ms: dict[str, int]
) -> str:
    """PromQL for the per-series increase over [first, last] from rule buckets and raw edges."""
    parts = []
    for kind, lo, hi in tiles(first, last):
        if kind == "raw":
            parts.append(f"increase({metric}[{hi - lo}s] @ {hi})")
            continue
        step = STEPS[kind]
        n = (hi - lo) // step
        at = hi + phases_ms[kind] / 1000
        # The rule samples at lo+step .. hi (+ phase); 1 s of slack, never reaching the one at lo.
        parts.append(f"sum_over_time({record[kind]}[{(n - 1) * step + 1}s] @ {_s(at)})")
    return " + ".join(parts)


def precomputed_query(question: Question, w: Window, phases_ms: dict[str, int]) -> Query:
    """The question answered from the recorded series (the raw samples only at the window's edges)."""
    first, last = question.span(w)
    if question.key == "q2":
        phase = phases_ms["1m"] / 1000
        params = {
            "query": record_name(question, "1m"),
            "start": _s(first + 60 + phase),
            "end": _s(last + 1 + phase),
            "step": "60",
        }
        return Query("/api/v1/query_range", params, lambda t: round(t - phase) - 60)
    record = {step: record_name(question, step) for step in STEPS}
    expr = tiled_increase(question.metric, record, first, last, phases_ms)
    if question.key == "q3":
        expr = f"sum({expr}) / {last - first}"
    return Query("/api/v1/query", {"query": expr, "time": _s(last)}, _zero)
