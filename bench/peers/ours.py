"""Our side of the benchmark, run as its own process so its memory is the query process' alone.

    .venv/bin/python bench/peers/ours.py --store DIR --since MS --until MS --group gpu [--repeats 7]
        [--threads N] [--memory-limit 256MB] [--fetch arrow|rows|batches]

Prints one JSON document: per question and variant ('precomputed': the rollups where they hold the
answer, raw rows at the edges, as the product reads; 'raw': every raw row) the timings, the answer
(questions.Answer), and the process' resident memory after opening the store and at its peak. A
timing runs from the question to the canonical Python answer, as the peers' runs from the HTTP
request to theirs. Memory is read from /proc/self/status (VmRSS, VmHWM), not getrusage: ru_maxrss
survives execve, so a child forked from the big parent would report the parent's RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from questions import QUESTIONS, Answer, Question, Window
from timing import summary, timed

from bench.peers.servers import proc_status_kib
from storage.reader import StoreReader

Variant = Callable[[], Answer]
STREAM_ROWS = 8192
"""Rows per Arrow batch with --fetch batches (DuckDB's vector size is 2048)."""


def _rows(reader: StoreReader, sql: str, fetch: str) -> list[tuple[Any, ...]]:
    """A query's rows as tuples: DuckDB's own fetch, a whole Arrow table, or Arrow batches streamed."""
    if fetch == "rows":
        return reader.rows(sql)
    if fetch == "batches":
        reader.refresh()
        batches = reader.con.sql(sql).to_arrow_reader(STREAM_ROWS)
        return [tuple(r.values()) for batch in batches for r in batch.to_pylist()]
    return [tuple(r.values()) for r in reader.sql(sql).to_pylist()]


def _by_series(rows: list[tuple[Any, ...]], n_keys: int, names: tuple[str, ...]) -> Answer:
    out: Answer = {}
    keys: dict[tuple[Any, ...], list[tuple[float, float]]] = {}  # the series' list, by its key values
    for r in rows:
        entity = r[:n_keys]
        points = keys.get(entity)
        if points is None:
            label = ",".join(f"{n}={v}" for n, v in zip(names, entity, strict=True))
            points = keys[entity] = out.setdefault(label, [])
        points.append((float(r[n_keys]), float(r[n_keys + 1])))
    return out


def variants(reader: StoreReader, q: Question, w: Window, fetch: str) -> dict[str, Variant]:
    """The ways our store answers a question: name -> a call returning the canonical answer."""
    first, last = q.span(w)
    lo, hi = first * 1000, last * 1000
    if q.key == "q1":
        rel = reader.relation("gpu", (last - 299) * 1000, hi)
        sql = (
            f"SELECT gpu, epoch_ms(ts) // 1000, util_gpu_pct FROM {rel} "
            "WHERE util_gpu_pct IS NOT NULL ORDER BY 1, 2"
        )
        return {"raw": lambda: _by_series(_rows(reader, sql, fetch), 1, ("gpu",))}
    if q.key == "q2":
        raw = (
            f"SELECT gpu, epoch_ms(time_bucket(INTERVAL 1 MINUTE, ts)) // 1000 AS b, avg(util_gpu_pct) "
            f"FROM {reader.relation('gpu', lo, hi)} WHERE util_gpu_pct IS NOT NULL GROUP BY ALL ORDER BY 1, 2"
        )

        def rolled() -> Answer:
            # The product's path (the TUI's GPU history): buckets from the reader's rollup cache, current
            # to the newest row (StoreReader.rollup_table), like VictoriaMetrics' rollup result cache.
            buckets, _ = reader.rollup_table("gpu", "1m", lo, hi, ["util_gpu_pct_mean"])
            cols = [buckets.column(c).to_pylist() for c in ("gpu", "t", "util_gpu_pct_mean")]
            rows = [(g, t // 1000, v) for g, t, v in zip(*cols, strict=True) if v is not None]
            return _by_series(rows, 1, ("gpu",))

        return {"precomputed": rolled, "raw": lambda: _by_series(_rows(reader, raw, fetch), 1, ("gpu",))}
    keys = ("gpu", "link") if q.group == "nvlink" else ()
    # The question's window in ms, [first sample, until): the same samples as [first, last], and a
    # whole rollup bucket where the window is one (an hour's 1 h bucket ends 1 ms before `until`).
    end = w.until_ms - 1

    def counter(rollups: bool) -> Variant:
        def run() -> Answer:
            table = reader.rate(q.group, q.column, lo, end, rollups=rollups)
            if q.key == "q3":
                return {"": [(0.0, float(sum(r for r in table.column("rate").to_pylist() if r is not None)))]}
            cols = [table.column(k).to_pylist() for k in (*keys, "increase")]
            return {
                ",".join(f"{k}={v}" for k, v in zip(keys, row[:-1], strict=True)): [(0.0, float(row[-1]))]
                for row in zip(*cols, strict=True)
            }

        return run

    return {"precomputed": counter(True), "raw": counter(False)}


def main() -> None:
    """Run one group's questions and print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--since", type=int, required=True, help="window start, epoch ms (included)")
    parser.add_argument("--until", type=int, required=True, help="window end, epoch ms (excluded)")
    parser.add_argument("--group", required=True, choices=sorted({q.group for q in QUESTIONS}))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: StoreReader's)")
    parser.add_argument("--memory-limit", default=None, help="DuckDB memory_limit (default: StoreReader's)")
    parser.add_argument(
        "--fetch", choices=("arrow", "rows", "batches"), default="rows", help="how SQL rows reach Python"
    )
    parser.add_argument(
        "--only", default="", help="comma-separated variants to run (default all; q1 is raw in any case)"
    )
    args = parser.parse_args()
    window = Window(args.since, args.until)
    options: dict[str, Any] = {}
    if args.threads is not None:
        options["threads"] = args.threads
    if args.memory_limit is not None:
        options["memory_limit"] = args.memory_limit
    reader = StoreReader(args.store, **options)
    idle_kib = proc_status_kib(os.getpid(), "VmRSS")
    only = {v for v in args.only.split(",") if v}
    report: dict[str, Any] = {"idle_rss_kib": idle_kib, "questions": {}, "settings": reader.settings()}
    for question in QUESTIONS:
        if question.group != args.group:
            continue
        out = {}
        ways = variants(reader, question, window, args.fetch)
        for name, run in ways.items():
            # 'precomputed' alone is the product's path: q1 (raw samples) has no other way.
            product = name == "raw" and "precomputed" in only and "precomputed" not in ways
            if only and name not in only and not product:
                continue
            times, answer, cpu_s = timed(run, args.repeats)
            out[name] = {**summary(times, cpu_s), "answer": answer}
        report["questions"][question.key] = out
    report["peak_rss_kib"] = proc_status_kib(os.getpid(), "VmHWM")
    reader.close()
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
