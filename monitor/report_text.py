"""`monitor report`'s text: the summary monitor.report computes, as Markdown, plain text or JSON.

Totals say what they cover (storage.rack_total): "last 81.1 kW (71/72 GPUs)", and ticks where not
every GPU reported are counted apart, never taken for the rack's range.
"""

from __future__ import annotations

import json
import math
from typing import Any

from collectors.rack import gpu_label

Summary = dict[str, Any]


def _partial_power(power: Summary) -> list[str]:
    """The line that says how many ticks were partial (and left out of min/mean/max), if any."""
    if not power["partial_ticks"]:
        return []
    return [
        f"- {power['partial_ticks']} partial ticks left out of the range (as few as "
        f"{power['least_covered']}/{power['of']} GPUs reported)"
    ]


def _nvlink(nvlink: Summary) -> str:
    """'0.9123 TB/s TX+RX (71/72 GPUs; 2 links implausible, left out)': the header's figure and rule."""
    text = f"{_f(nvlink['tb_s'], '.4g')} TB/s TX+RX ({nvlink['covered']}/{nvlink['of']} GPUs"
    n = nvlink["implausible_links"]
    if n:
        text += f"; {n} link{'s' if n != 1 else ''} implausible, left out"
    return text + ")"


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.0f} ms"


def _f(value: float | None, fmt: str = ",.0f") -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, fmt)


def _data_line(data: Summary) -> str:
    """What the window holds: GPU samples, serving rows, or serving rows only (never 'None .. None')."""
    serving = data.get("serving")
    served = f"{serving['endpoints']} endpoints, {serving['first']} .. {serving['last']}" if serving else ""
    if not data["gpus"]:
        return f"Data: serving rows only (no GPU rows): {served}." if serving else "Data: none."
    text = f"Data: {data['first']} .. {data['last']}, {data['ticks']} samples of {data['gpus']} GPUs"
    return text + (f"; serving rows of {served}." if serving else "; no serving rows.")


def _suspect_line(sus: Summary) -> str:
    """'- T13.G4 link 7 (GPU 51), onset 2025-06-15T15:04:21Z (link errors): evidence'.

    A suspect already there at the window's first sample: 'onset at or before <that> (the window's start)'.
    """
    what = sus.get("element") or sus["label"]
    if sus["kind"] != "tray":
        what += f" (GPU {sus['gpu']})"
    if sus.get("onset") and sus.get("onset_at_start"):
        what += f", onset at or before {sus['onset']} (the window's start)"
    elif sus.get("onset"):
        what += f", onset {sus['onset']}"
        if sus["kind"] == "tray" and sus.get("onset_of"):
            what += f" ({sus['onset_of']})"
    return f"- {what}: {sus['evidence']}"


def _link_down(down: Summary) -> str:
    """'T13.G4 link 7 down from 15:05:06Z (17/18 up)'; without per-link rows, the GPU and its count."""
    links = down.get("links") or []
    named = ", ".join(f"link {k['link']} down from {k['down'][11:]}" for k in links)
    return (
        f"{down['label']} {named} ({down['links_up_min']}/18 up)"
        if named
        else (f"{down['label']} ({down['links_up_min']}/18 up; no per-link rows to name the link)")
    )


def _gpu_lines(summary: Summary) -> list[str]:
    """Rack power, per-GPU power, temperature and NVLink; one line saying so where no GPU rows are."""
    if not summary["data"]["gpus"]:
        return ["- no GPU rows in this window: power, temperature and NVLink cannot be reported"]
    power, temp, energy = summary["power_kw"], summary["temperature_c"], summary["energy"]
    down = ", ".join(_link_down(d) for d in summary["links_down"]) or "none"
    return [
        f"- rack GPU power: {_f(power['min'], '.1f')} .. {_f(power['max'], '.1f')} kW over whole ticks "
        f"(mean {_f(energy['mean_power_kw'], '.1f')} kW, {_f(energy['joules'] / 3.6e6, '.2f')} kWh); "
        f"last {_f(power['last'], '.2f')} kW ({power['last_covered']}/{power['of']} GPUs)",
        *_partial_power(power),
        f"- per GPU: {_f(summary['gpu_power_w']['min'])} .. {_f(summary['gpu_power_w']['max'])} W",
        f"- temperature: {_f(temp['min'])} .. {_f(temp['max'])} C (hottest {temp['hottest']})",
        f"- NVLink: {_nvlink(summary['nvlink'])}; links down: {down}",
    ]


def render_markdown_lines(summary: Summary) -> list[str]:
    """The report as Markdown lines: '# ' title, '## ' sections, '- ' items."""
    s, data = summary["serving"], summary["data"]
    window = summary["window"]
    how = f" ({window['how']})" if window.get("how") else ""
    lines = [f"# Rack report {window['since']} .. {window['until']}{how}", _data_line(data)]
    lines.append("## Throughput")
    if s is None:
        lines.append(
            "- no serving rows in this window: tokens/s, latency and tokens per joule cannot be "
            "reported; GPU-side evidence (clocks, power, slowdown reasons) follows"
        )
    else:
        per = s["per_gpu"]
        slowest = ", ".join(f"{g['label']} {_f(g['tokens_per_s'])}" for g in per["slowest"])
        lines += [
            f"- sustained: {_f(s['tokens_per_s'])} generated tok/s (the sum of per-endpoint rates, "
            f"{s['tokens_covered']}/{s['tokens_of']} endpoints; {_f(s['generated_tokens'])} tokens "
            f"in {s['wall_s']:.0f} s)",
            f"- prompt: {_f(s['prompt_tokens_per_s'])} tok/s",
            f"- per GPU: median {_f(per['median'])} tok/s (MAD {_f(per['mad'])}); slowest: {slowest}",
            f"- tokens per joule: {_f(summary['energy']['tokens_per_joule'], '.2f')}",
        ]
        for metric, name in (("ttft", "TTFT"), ("itl", "ITL")):
            q = s["latency"][metric]
            lines.append(f"- {name}: p50 {_ms(q['p50'])}, p90 {_ms(q['p90'])}, p99 {_ms(q['p99'])}")
    lines.append("## Suspects")
    if not summary["suspects"]:
        lines.append("- none: no GPU or tray stands out against its peers")
    lines += [_suspect_line(sus) for sus in summary["suspects"]]
    lines += ["## Power and temperature", *_gpu_lines(summary), "## Events"]
    events = summary["events"]
    if not events["by_kind"]:
        lines.append("- none")
    lines += [f"- {kind}: {n}" for kind, n in events["by_kind"].items()]
    for x in events["xids"]:
        gpus = ", ".join(gpu_label(g) for g in x["gpus"] if g is not None)
        lines.append(f"- XID {x['code']}: {x['n']} ({gpus or 'no GPU'})")
    return lines


def render(summary: Summary, fmt: str) -> str:
    """The report as text, md or json."""
    if fmt == "json":
        return json.dumps(summary, indent=1, default=str) + "\n"
    lines = render_markdown_lines(summary)
    if fmt == "md":
        return "\n".join(lines) + "\n"
    text = []
    for line in lines:
        if line.startswith("## "):
            text += ["", line[3:].upper()]
        elif line.startswith("# "):
            text.append(line[2:])
        else:
            text.append("  " + line[2:] if line.startswith("- ") else line)
    return "\n".join(text) + "\n"
