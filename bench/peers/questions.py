"""The questions of the benchmark, exactly defined, and how each system is asked them.

Every answer is reduced to a canonical Answer, {series key: [(ts seconds, value), ...]}, so the
systems can be compared point for point (compare.py):

- q1 reads raw samples: ts is the sample's own time.
- q2 is a 1-minute mean: ts is the bucket's start b, the bucket holding the samples b .. b+59 s.
- q3, q4, q5 are one value per series over the window: ts is 0.

The window is [since, until) with 1 Hz samples at whole seconds, so its last sample is at
e = until - 1 s. Range selectors differ between the peers: Prometheus 2.x's `x[d]` at t holds the
samples in [t - d, t] (closed), VictoriaMetrics' (t - d, t] (open on the left, with the sample
just before it as the base of increase/rate). Each question is therefore sent with the range that
selects exactly its samples in each system, and evaluated where both ends of every window are
samples, so that neither Prometheus' extrapolation to the window edges nor VictoriaMetrics' base
sample changes the answer: increase() is then the reset-corrected sum over consecutive samples,
as ours is (see prometheus/promql/functions.go extrapolatedRate and VictoriaMetrics'
app/vmselect/promql/rollup.go).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from export import GROUPS

Answer = dict[str, list[tuple[float, float]]]
"""Series key (e.g. 'gpu=3' or 'gpu=3,link=7'; '' for a rack-wide value) -> points in time order."""


@dataclass(frozen=True)
class Window:
    """The benchmark window: [since_ms, until_ms), whole seconds."""

    since_ms: int
    until_ms: int

    @property
    def since_s(self) -> int:
        """The first sample's time, s."""
        return self.since_ms // 1000

    @property
    def last_s(self) -> int:
        """The last sample's time, s (the window ends one tick later)."""
        return self.until_ms // 1000 - 1


@dataclass(frozen=True)
class Question:
    """One question of the benchmark.

    Attributes:
        key: short id (q1..q5).
        title: what is asked.
        group: the exported group whose samples it reads.
        column: the store column it reads.
        skip_s: the question's window starts this many seconds after the benchmark window's start.
        precomputed: whether our store (and so each peer) has a precomputed way to answer it.
    """

    key: str
    title: str
    group: str
    column: str
    skip_s: int = 0
    precomputed: bool = True

    @property
    def metric(self) -> str:
        """The exported metric name of the column."""
        return next(f.name for f in GROUPS[self.group].families if f.column == self.column)

    def span(self, w: Window) -> tuple[int, int]:
        """(first, last) sample time in s that the question's window holds."""
        return w.since_s + self.skip_s, w.last_s


QUESTIONS: tuple[Question, ...] = (
    Question("q1", "last 5 min of every GPU's utilisation (raw samples)", "gpu", "util_gpu_pct", 0, False),
    Question("q2", "1-min mean utilisation of every GPU over the window", "gpu", "util_gpu_pct"),
    Question("q3", "rack generated tokens/s over the window", "serving", "generation_tokens"),
    Question("q4", "per-link NVLink symbol-error increase over the window", "nvlink", "symbol_errors"),
    Question("q5", "q4 over a window starting mid-minute (30 s in)", "nvlink", "symbol_errors", skip_s=30),
)


@dataclass(frozen=True)
class Query:
    """One HTTP question: path, parameters, and how to turn its JSON into the canonical Answer."""

    path: str
    params: dict[str, str]
    canon_ts: Callable[[float], float]

    @property
    def text(self) -> str:
        """The query expression as sent."""
        return self.params["query"]


def _s(t: float) -> str:
    return f"{t:.3f}"


def _zero(_: float) -> float:
    return 0.0


def raw_query(question: Question, w: Window, system: str) -> Query:
    """The question over raw samples, in PromQL (system 'prometheus') or MetricsQL ('victoria-metrics')."""
    vm = system == "victoria-metrics"
    first, last = question.span(w)
    name = question.metric
    if question.key == "q1":
        # The 300 samples until-300 .. e: [e-299, e] in Prometheus, (e-300, e] in VictoriaMetrics.
        rng = 300 if vm else 299
        return Query("/api/v1/query", {"query": f"{name}[{rng}s]", "time": _s(last)}, float)
    if question.key == "q2":
        # At t = b + 60, the samples b .. b+59: [t-1-59, t-1] / (t-1-60, t-1].
        rng = "1m" if vm else "59s"
        params = {
            "query": f"avg_over_time({name}[{rng}] offset 1s)",
            "start": _s(first + 60),
            "end": _s(last + 1),
            "step": "60",
        }
        return Query("/api/v1/query_range", params, lambda t: t - 60)
    fn = "rate" if question.key == "q3" else "increase"
    expr = f"{fn}({name}[{last - first}s])"
    if question.key == "q3":
        expr = f"sum({expr})"
    return Query("/api/v1/query", {"query": expr, "time": _s(last)}, _zero)


def from_prometheus_json(doc: Any, canon_ts: Callable[[float], float] = float) -> Answer:
    """The canonical answer of a Prometheus-API response (vector or matrix)."""
    if doc.get("status") != "success":
        raise ValueError(f"query failed: {doc.get('error')}")
    out: Answer = {}
    for item in doc["data"]["result"]:
        points = item["values"] if "values" in item else [item["value"]]
        out[series_key(item["metric"])] = [(canon_ts(float(t)), float(v)) for t, v in points]
    return out


def decode(body: bytes, query: Query) -> Answer:
    """HTTP body -> canonical Answer (what a peer's timing covers after the response)."""
    return from_prometheus_json(json.loads(body), query.canon_ts)


def series_key(labels: dict[str, str]) -> str:
    """The comparable key of a series: its entity labels (gpu, link), or '' for a rack-wide value."""
    return ",".join(f"{k}={labels[k]}" for k in ("gpu", "link") if k in labels)


def points(answer: Answer) -> int:
    """How many points an answer holds."""
    return sum(len(p) for p in answer.values())


def finite(answer: Answer) -> bool:
    """Whether every value is a number (an answer of NaNs compares equal to nothing)."""
    return all(math.isfinite(v) for pts in answer.values() for _, v in pts)
