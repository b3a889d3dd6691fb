"""Our side of the benchmark, run as its own process so its peak RSS is the query process' alone.

    .venv/bin/python bench/peers/ours.py --store DIR --since MS --until MS --group gpu [--repeats 7]

Prints one JSON document: per question and variant the timings, the answer (reduced as in
questions.Answer), and the process' resident memory before the first query and at its peak. Memory
is read from /proc/self/status (VmRSS, VmHWM), not getrusage: ru_maxrss survives execve, so a child
forked from the big parent would report the parent's RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from questions import QUESTIONS, Answer, Question, Window, summary, timed
from servers import proc_status_kib

from storage.reader import StoreReader


def _series(rows: list[dict[str, object]], keys: tuple[str, ...], ts_shift_s: float, value: str) -> Answer:
    out: Answer = {}
    for r in rows:
        key = ",".join(f"{k}={r[k]}" for k in keys)
        ts = r["ts"]
        stamp = ts.timestamp() if hasattr(ts, "timestamp") else float(ts)  # type: ignore[union-attr]
        out.setdefault(key, []).append((stamp + ts_shift_s, float(r[value])))  # type: ignore[arg-type]
    return out


def variants(
    reader: StoreReader, question: Question, w: Window
) -> dict[str, tuple[Callable[[], object], Callable[[object], Answer]]]:
    """The ways our store answers a question: name -> (query, reduce its result to an Answer)."""
    end_s = w.until_ms / 1000
    last = w.until_ms - 1
    if question.key == "q1":
        rel = reader.relation("gpu", w.until_ms - 300_000, last)
        sql = f"SELECT gpu, ts, util_gpu_pct AS v FROM {rel} WHERE util_gpu_pct IS NOT NULL ORDER BY gpu, ts"
        return {"raw": (lambda: reader.sql(sql), lambda t: _series(t.to_pylist(), ("gpu",), 0, "v"))}
    if question.key == "q2":
        raw = (
            f"SELECT gpu, time_bucket(INTERVAL 1 MINUTE, ts) AS ts, avg(util_gpu_pct) AS v "
            f"FROM {reader.relation('gpu', w.since_ms, last)} GROUP BY ALL ORDER BY gpu, ts"
        )
        rolled = (
            f"SELECT gpu, ts, util_gpu_pct_mean AS v FROM {reader.relation('gpu_1m', w.since_ms, last)} "
            "WHERE util_gpu_pct_mean IS NOT NULL ORDER BY gpu, ts"
        )

        def reduce(t: object) -> Answer:
            # A bucket [b, b+60) is labelled with its end, as a PromQL range query labels (t-1m, t].
            return _series(t.to_pylist(), ("gpu",), 60, "v")  # type: ignore[attr-defined]

        return {"raw": (lambda: reader.sql(raw), reduce), "rollup": (lambda: reader.sql(rolled), reduce)}
    if question.key == "q3":

        def tokens(resolution: str, rollups: bool = True) -> Callable[[], object]:
            return lambda: sum(
                r
                for r in reader.rate(
                    "serving", "generation_tokens", w.since_ms, last, resolution=resolution, rollups=rollups
                )
                .column("rate")
                .to_pylist()
                if r is not None
            )

        def reduce3(total: object) -> Answer:
            return {"": [(end_s, float(total))]}  # type: ignore[arg-type]

        # "raw" is the exact answer (whole rollup buckets where they hold it, raw rows at the edges);
        # "raw_rows" reads every raw row, as rate() did before the rollups kept increases.
        return {
            "raw": (tokens("raw"), reduce3),
            "raw_rows": (tokens("raw", rollups=False), reduce3),
            "rollup": (tokens("1h"), reduce3),
        }
    if question.key == "q4":

        def errors(resolution: str, rollups: bool = True) -> Callable[[], object]:
            return lambda: reader.rate(
                "nvlink", "symbol_errors", w.since_ms, last, resolution=resolution, rollups=rollups
            )

        def reduce4(t: object) -> Answer:
            rows = t.to_pylist()  # type: ignore[attr-defined]
            return {f"gpu={r['gpu']},link={r['link']}": [(end_s, float(r["increase"]))] for r in rows}

        return {
            "raw": (errors("raw"), reduce4),
            "raw_rows": (errors("raw", rollups=False), reduce4),
            "rollup": (errors("1h"), reduce4),
        }
    raise ValueError(question.key)


def main() -> None:
    """Run one group's questions and print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--since", type=int, required=True, help="window start, epoch ms (included)")
    parser.add_argument("--until", type=int, required=True, help="window end, epoch ms (excluded)")
    parser.add_argument("--group", required=True, choices=sorted({q.group for q in QUESTIONS}))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all cores)")
    args = parser.parse_args()
    window = Window(args.since, args.until)
    reader = StoreReader(args.store, threads=args.threads)
    idle_kib = proc_status_kib(os.getpid(), "VmRSS")
    report: dict[str, object] = {"idle_rss_kib": idle_kib, "questions": {}}
    for question in QUESTIONS:
        if question.group != args.group:
            continue
        out = {}
        for name, (run, reduce) in variants(reader, question, window).items():
            times, result = timed(run, args.repeats)
            out[name] = {**summary(times), "answer": reduce(result)}
        report["questions"][question.key] = out  # type: ignore[index]
    report["peak_rss_kib"] = proc_status_kib(os.getpid(), "VmHWM")
    reader.close()
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
