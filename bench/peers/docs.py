"""Regenerate the peers figures in docs/benchmarks.md from run.py's (and memory.py's) results JSON.

    .venv/bin/python bench/peers/docs.py bench/peers/results/1h-2026-12-06.json [more runs ...] \\
        [--memory bench/peers/results/memory-1h-2026-12-06.json ...] [--doc docs/benchmarks.md]

Everything between the markers `<!-- peers:begin -->` and `<!-- peers:end -->` is replaced; the
prose around them is left as written. Each run's tables carry its date, commit, versions and load.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import markdown

BEGIN, END = "<!-- peers:begin -->", "<!-- peers:end -->"
DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"


def levers(memory: dict[str, Any], source: str) -> list[str]:
    """memory.py's results as a table: idle / peak MiB and the slowest question per setting and group."""
    settings: dict[str, Any] = memory["settings"]
    groups = list(next(iter(settings.values())))
    la = "/".join(f"{x:.1f}" for x in memory.get("load_start", ()))
    out = [
        f"Memory levers (`{source}`, load average {la} at the start): idle / peak MiB of the query process "
        "(slowest question's median ms; CPU ms of one run of every question, where recorded):",
        "",
        "| Setting | " + " | ".join(groups) + " |",
        "|---|" + "---|" * len(groups),
    ]
    for label, row in settings.items():
        cells = [
            f"{r['idle_kib'] / 1024:.0f} / {r['peak_kib'] / 1024:.0f} ({r['slowest_ms']:.0f} ms"
            + (f", CPU {r['cpu_ms']:.0f} ms)" if r.get("cpu_ms") is not None else ")")
            for r in row.values()
        ]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    out += ["", "Interpreter RSS after the query path's imports, MiB:", ""]
    out += [f"- {name}: {kib / 1024:.0f}" for name, kib in memory["imports_kib"].items()]
    return out


def section(runs: list[Path], memory: list[Path]) -> str:
    """The generated text for the markers."""
    out: list[str] = []
    for path in runs:
        results = json.loads(path.read_text())
        out += [f"#### {results['window']['hours']} h (`{path.as_posix()}`)", "", markdown(results), ""]
    for path in memory:
        out += [*levers(json.loads(path.read_text()), path.as_posix()), ""]
    return "\n".join(out)


def main() -> int:
    """Rewrite the marked part of the doc; one line and exit 1 when the markers are missing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="run.py --out JSON files, in the order to show")
    parser.add_argument("--memory", type=Path, action="append", default=[], help="memory.py --out JSON")
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args()
    text = args.doc.read_text()
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        print(f"bench/peers/docs.py: {args.doc} needs one {BEGIN} ... {END} pair", file=sys.stderr)
        return 1
    for p in [*args.runs, *args.memory]:
        if not p.is_file():
            print(f"bench/peers/docs.py: no results file {p}", file=sys.stderr)
            return 1
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    args.doc.write_text(f"{head}{BEGIN}\n\n{section(args.runs, args.memory)}\n{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
