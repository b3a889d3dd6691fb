"""The four questions, asked of each system in its own language, timed the same way and cross-checked.

Every answer is reduced to {series key: [(ts seconds, value), ...]} so the systems can be compared:
the servers' answers are JSON over HTTP (timed from request to decoded JSON), ours is Arrow from
SQL through StoreReader (timed from the call to the materialised table).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from export import GROUPS

Answer = dict[str, list[tuple[float, float]]]
"""Series key (e.g. 'gpu=3' or 'gpu=3,link=7') -> points in time order."""


@dataclass(frozen=True)
class Window:
    """The benchmark window: [since_ms, until_ms), whole seconds; queries evaluate at until_ms."""

    since_ms: int
    until_ms: int

    @property
    def seconds(self) -> int:
        """The window's length in seconds."""
        return (self.until_ms - self.since_ms) // 1000

    @property
    def range(self) -> str:
        """The window as a PromQL/MetricsQL duration ('6h', '86400s')."""
        s = self.seconds
        return f"{s // 3600}h" if s % 3600 == 0 else f"{s}s"


@dataclass(frozen=True)
class Question:
    """One question of the benchmark.

    Attributes:
        key: short id (q1..q4).
        title: what is asked.
        group: the exported group whose samples it reads.
        tolerance: how far the systems' answers may differ, and why (see check()).
    """

    key: str
    title: str
    group: str
    tolerance: str


UTIL = next(f.name for f in GROUPS["gpu"].families if f.column == "util_gpu_pct")
TOKENS = next(f.name for f in GROUPS["serving"].families if f.column == "generation_tokens")
LINK_ERRORS = next(f.name for f in GROUPS["nvlink"].families if f.column == "symbol_errors")

QUESTIONS: tuple[Question, ...] = (
    Question("q1", "last 5 min of every GPU's utilisation (raw samples)", "gpu", "identical values"),
    Question("q2", "1-min mean utilisation of every GPU over the window", "gpu", "mean within 1 %"),
    Question("q3", "rack generated tokens/s over the window", "serving", "within 0.1 %"),
    Question("q4", "per-link NVLink symbol-error increase over the window", "nvlink", "within 0.1 %"),
)


def promql(question: Question, window: Window) -> tuple[str, dict[str, str]]:
    """(API path, parameters) of a question in PromQL; MetricsQL accepts the same expressions."""
    end = f"{window.until_ms / 1000:.3f}"
    if question.key == "q1":
        return "/api/v1/query", {"query": f"{UTIL}[5m]", "time": end}
    if question.key == "q2":
        start = f"{window.since_ms / 1000 + 60:.3f}"
        return "/api/v1/query_range", {
            "query": f"avg_over_time({UTIL}[1m])",
            "start": start,
            "end": end,
            "step": "60",
        }
    if question.key == "q3":
        return "/api/v1/query", {"query": f"sum(rate({TOKENS}[{window.range}]))", "time": end}
    if question.key == "q4":
        return "/api/v1/query", {"query": f"increase({LINK_ERRORS}[{window.range}])", "time": end}
    raise ValueError(question.key)


def series_key(labels: dict[str, str]) -> str:
    """The comparable key of a series: its entity labels (gpu, link), or '' for a rack-wide value."""
    return ",".join(f"{k}={labels[k]}" for k in ("gpu", "link") if k in labels)


def from_prometheus_json(doc: Any) -> Answer:
    """The answer of a Prometheus-API response (vector or matrix)."""
    if doc.get("status") != "success":
        raise ValueError(f"query failed: {doc.get('error')}")
    data = doc["data"]
    out: Answer = {}
    for item in data["result"]:
        points = item["values"] if "values" in item else [item["value"]]
        out[series_key(item["metric"])] = [(float(t), float(v)) for t, v in points]
    return out


def timed(run: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """One warm-up call, then `repeats` timed calls; returns (seconds per call, the last result)."""
    result = run()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - began)
    return times, result


def summary(times: list[float]) -> dict[str, float]:
    """Median, min and max of timed runs, in ms."""
    return {
        "median_ms": statistics.median(times) * 1000,
        "min_ms": min(times) * 1000,
        "max_ms": max(times) * 1000,
        "runs": len(times),
    }


def _points(answer: Answer) -> int:
    return sum(len(p) for p in answer.values())


def _mean(answer: Answer) -> float:
    values = [v for pts in answer.values() for _, v in pts]
    return sum(values) / len(values) if values else math.nan


def check(question: Question, answers: dict[str, Answer]) -> str:
    """Whether the systems' answers agree within the question's tolerance; a one-line verdict.

    q1 compares raw values at every (series, ts) present in two systems (range ends differ by one
    sample between Prometheus 2.x, closed, and VictoriaMetrics, open on the left). q2's 1-minute
    windows are aligned differently by each system, so only the overall mean is compared. q3 and q4
    differ by Prometheus' extrapolation to the window edges (about one sample interval in the window).
    """
    names = sorted(answers)
    if len(names) < 2:
        return "only one system answered"
    base = answers[names[0]]
    problems = []
    for other in names[1:]:
        ans = answers[other]
        if question.key == "q1":
            ref = {(k, t): v for k, pts in base.items() for t, v in pts}
            diff = sum(1 for k, pts in ans.items() for t, v in pts if (k, t) in ref and ref[k, t] != v)
            common = sum(1 for k, pts in ans.items() for t, _ in pts if (k, t) in ref)
            if diff or common == 0:
                problems.append(f"{other}: {diff} of {common} common samples differ")
        elif question.key == "q2":
            a, b = _mean(base), _mean(ans)
            if not math.isclose(a, b, rel_tol=0.01):
                problems.append(f"{other}: mean {b:.4f} vs {a:.4f}")
        else:
            keys = set(base) | set(ans)
            bad = [
                k
                for k in keys
                if k not in base
                or k not in ans
                or not math.isclose(base[k][-1][1], ans[k][-1][1], rel_tol=1e-3, abs_tol=1e-6)
            ]
            if bad:
                problems.append(f"{other}: {len(bad)} of {len(keys)} series differ (e.g. {sorted(bad)[0]!r})")
    counts = ", ".join(f"{n} {_points(answers[n])} pts" for n in names)
    return ("agree" if not problems else "DIFFER: " + "; ".join(problems)) + f" ({counts})"
