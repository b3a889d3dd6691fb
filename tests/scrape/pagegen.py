"""Page and frame builders for the scrape tests and bench/bench_parse.py (deterministic, no randomness).

vllm_page writes what vLLM's prometheus_client writes (sorted labels, Go-style floats via
prometheus_client.utils.floatToGoString, `_created` gauge families, http/python/process families) with
vLLM's names and bucket bounds (shared/reference/serving.md section 1.2 and 10).
"""

from __future__ import annotations

from prometheus_client.utils import floatToGoString

from collectors.mappings.gpu import AgentGpu
from collectors.rack import LINKS_PER_GPU, compute_tray_slot, gpu_index
from storage.frame import Frame, batch_from_columns, batch_from_rows
from storage.schemas import TABLES, EventKind, GpuState

MODEL = "meta-llama/Llama-3.1-70B-Instruct"
TTFT_BOUNDS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1,
    2.5,
    5,
    7.5,
    10,
    20,
    40,
    80,
    160,
    640,
    2560,
)
ITL_BOUNDS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80)
E2E_BOUNDS = (0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680)
TOKEN_BOUNDS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 131072)
ITER_BOUNDS = (
    1,
    8,
    16,
    24,
    32,
    40,
    48,
    56,
    64,
    72,
    80,
    88,
    96,
    104,
    112,
    120,
    128,
    256,
    512,
    1024,
    2048,
    4096,
    8192,
    16384,
)


def agent_gpus(tray: int) -> list[AgentGpu]:
    """The 4 GPUs of a compute tray, with GB300-like identities."""
    return [
        AgentGpu(
            index=m - 1,
            uuid=f"GPU-{tray:02d}{m:02d}a1b2-c3d4-e5f6-0718-293a4b5c6d{m:02d}",
            tray=tray,
            module=m,
            slot=compute_tray_slot(tray),
            pci_bus_id=f"0000000{(m - 1) // 2 * 8}:{6 + (m - 1) % 2:02X}:00.0",
            serial=f"16525240{tray:02d}{(m + 1) // 2}",
        )
        for m in range(1, 5)
    ]


def tray_frame(tray: int, tick: int, *, lost_module: int | None = None, xid: int | None = None) -> Frame:
    """A tray's NVML frame at `tick` (seconds): 4 GPU rows, 72 link rows, an xid event if given."""
    ts_ms = 1_790_000_000_000 + tick * 1000
    gpus = agent_gpus(tray)
    rows = []
    for g in gpus:
        rack = gpu_index(tray, g.module)
        lost = g.module == lost_module
        base = {"ts": ts_ms, "gpu": rack, "uuid": g.uuid, "tray": tray}
        if lost:
            rows.append({**base, "state": int(GpuState.LOST)})
            continue
        rows.append(
            {
                **base,
                "state": int(GpuState.OK),
                "util_gpu_pct": (37 * rack + tick) % 101,
                "util_mem_pct": (11 * rack + tick) % 101,
                "mem_used_mib": 200_000 + rack * 7 + tick,
                "mem_total_mib": 284_208,
                "power_mw": 900_000 + rack * 1_237 + tick * 3,
                "power_limit_mw": 1_400_000,
                "energy_mj": 8_000_000_000_000 + rack * 1_000_003 + tick * 950_000,
                "temp_gpu_c": 55 + rack % 9,
                "temp_mem_c": None if rack % 5 == 0 else 60 + rack % 7,
                "temp_margin_c": 30 - rack % 9,
                "sm_clock_mhz": 1_965 + rack % 100,
                "mem_clock_mhz": 3_996,
                "clocks_event_reasons": 4 if tick % 2 else 0,
                "pstate": 0,
                "ecc_corrected": rack * 3 + tick // 10,
                "ecc_uncorrected": 0,
                "nvlink_tx_kib": 9_000_000_000_000 + rack * 17 + tick * 800_000_000,
                "nvlink_rx_kib": 8_999_999_999_000 + rack * 13 + tick * 790_000_000,
                "nvlink_up": 18 if tick % 3 else 17,
            }
        )
    links: dict[str, list[object]] = {k: [] for k in TABLES["nvlink"].names}
    for g in gpus:
        if g.module == lost_module:
            continue
        rack = gpu_index(tray, g.module)
        for link in range(LINKS_PER_GPU):
            links["ts"].append(ts_ms)
            links["gpu"].append(rack)
            links["link"].append(link)
            links["state"].append(0 if (tick % 3 == 0 and link == 5) else 1)
            links["tx_kib"].append(500_000_000_000 + rack * 1000 + link * 77 + tick * 44_000_000)
            links["rx_kib"].append(499_000_000_000 + rack * 1000 + link * 71 + tick * 43_900_000)
            links["rx_errors"].append(link % 3)
            links["symbol_errors"].append(0 if link else tick)
            links["recovery"].append(link // 9)
            links["recovery_failed"].append(None if link == 17 else 0)
    batches = {"gpu": batch_from_rows("gpu", rows), "nvlink": batch_from_columns("nvlink", links)}
    if xid is not None:
        rack = gpu_index(tray, 2)
        event = {"ts": ts_ms, "kind": EventKind.XID, "gpu": rack, "code": xid, "source": f"tray{tray}"}
        batches["events"] = batch_from_rows("events", [event])
    return Frame(ts_ms=ts_ms, batches=batches)


def _g(value: float) -> str:
    return floatToGoString(value)


def _family(
    out: list[str], name: str, kind: str, help_text: str, samples: list[tuple[str, str, float]]
) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} {kind}")
    out.extend(f"{n}{{{labels}}} {_g(v)}" if labels else f"{n} {_g(v)}" for n, labels, v in samples)


def _hist(
    out: list[str],
    name: str,
    help_text: str,
    bounds: tuple[float, ...],
    engines: int,
    tick: int,
    scale: float,
    created: float,
) -> None:
    samples: list[tuple[str, str, float]] = []
    for e in range(engines):
        cum = 0.0
        for i, le in enumerate(bounds):
            cum += scale * (i + 1) * (len(bounds) - i) + tick * (i % 3)
            samples.append((f"{name}_bucket", f'engine="{e}",le="{_g(float(le))}",model_name="{MODEL}"', cum))
        cum += scale + tick
        samples.append((f"{name}_bucket", f'engine="{e}",le="+Inf",model_name="{MODEL}"', cum))
        samples.append((f"{name}_count", f'engine="{e}",model_name="{MODEL}"', cum))
        samples.append((f"{name}_sum", f'engine="{e}",model_name="{MODEL}"', cum * 0.2371))
    _family(out, name, "histogram", help_text, samples)
    created_samples = [
        (f"{name}_created", f'engine="{e}",model_name="{MODEL}"', created) for e in range(engines)
    ]
    _family(out, f"{name}_created", "gauge", help_text, created_samples)


def vllm_page(tick: int = 0, engines: int = 1) -> str:
    """A full vLLM (V1, >= 0.11) /metrics page, ~350 lines per engine, values advancing with `tick`."""
    created = 1.7957213885347493e09
    out: list[str] = []
    for name in (
        "python_gc_objects_collected_total",
        "python_gc_objects_uncollectable_total",
        "python_gc_collections_total",
    ):
        _family(
            out,
            name,
            "counter",
            "Objects collected during gc",
            [(name, f'generation="{g}"', 1000.0 * g + tick) for g in range(3)],
        )
    _family(
        out,
        "python_info",
        "gauge",
        "Python platform information",
        [
            (
                "python_info",
                'implementation="CPython",major="3",minor="12",patchlevel="3",version="3.12.3"',
                1.0,
            )
        ],
    )
    for name, v in (
        ("process_virtual_memory_bytes", 7.1e10),
        ("process_resident_memory_bytes", 3.2e9),
        ("process_start_time_seconds", 1.79572e9),
        ("process_cpu_seconds_total", 4412.5 + tick),
        ("process_open_fds", 212.0),
        ("process_max_fds", 1048576.0),
    ):
        _family(
            out,
            name,
            "counter" if name.endswith("_total") else "gauge",
            name.replace("_", " "),
            [(name, "", v)],
        )
    http = [
        ("http_requests_total", f'handler="{h}",method="POST",status="2xx"', 20000.0 + tick)
        for h in ("/v1/completions", "/v1/chat/completions")
    ]
    _family(
        out, "http_requests_total", "counter", "Total number of requests by method, status and handler.", http
    )
    lbl = [f'engine="{e}",model_name="{MODEL}"' for e in range(engines)]
    _family(
        out,
        "vllm:num_requests_running",
        "gauge",
        "Number of requests in model execution batches.",
        [("vllm:num_requests_running", x, 212.0 + e) for e, x in enumerate(lbl)],
    )
    _family(
        out,
        "vllm:num_requests_waiting",
        "gauge",
        "Number of requests waiting to be processed.",
        [("vllm:num_requests_waiting", x, 9.0 + e) for e, x in enumerate(lbl)],
    )
    _family(
        out,
        "vllm:kv_cache_usage_perc",
        "gauge",
        "KV-cache usage. 1 means 100 percent usage.",
        [("vllm:kv_cache_usage_perc", x, 0.8123 - 0.1 * e) for e, x in enumerate(lbl)],
    )
    counters = (
        (
            "vllm:prefix_cache_queries_total",
            "Prefix cache queries, in terms of number of queried tokens.",
            1.8996224e07,
        ),
        (
            "vllm:prefix_cache_hits_total",
            "Prefix cache hits, in terms of number of cached tokens.",
            8.11264e06,
        ),
        ("vllm:num_preemptions_total", "Cumulative number of preemption from the engine.", 41.0),
        ("vllm:prompt_tokens_total", "Number of prefill tokens processed.", 1.9004387e07),
        ("vllm:generation_tokens_total", "Number of generation tokens processed.", 6.020117e06),
    )
    for name, help_text, v in counters:
        _family(
            out,
            name,
            "counter",
            help_text,
            [(name, x, v + tick * 15_000 * (e + 1)) for e, x in enumerate(lbl)],
        )
        base = name[: -len("_total")]
        _family(out, f"{base}_created", "gauge", help_text, [(f"{base}_created", x, created) for x in lbl])
    by_source = [
        ("vllm:prompt_tokens_by_source_total", f'engine="{e}",model_name="{MODEL}",source="{s}"', 1e6)
        for e in range(engines)
        for s in ("local_compute", "local_cache_hit")
    ]
    _family(out, "vllm:prompt_tokens_by_source_total", "counter", "Prompt tokens by source.", by_source)
    reasons = (("stop", 16420.0), ("length", 3301.0), ("abort", 67.0), ("error", 0.0))
    success = [
        ("vllm:request_success_total", f'engine="{e}",finished_reason="{r}",model_name="{MODEL}"', v + tick)
        for e in range(engines)
        for r, v in reasons
    ]
    _family(
        out, "vllm:request_success_total", "counter", "Count of successfully processed requests.", success
    )
    _family(
        out,
        "vllm:request_success_created",
        "gauge",
        "Count of successfully processed requests.",
        [("vllm:request_success_created", x.replace("_total", "_created"), created) for _, x, _ in success],
    )
    hists = (
        (
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            TTFT_BOUNDS,
            90.0,
        ),
        (
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            ITL_BOUNDS,
            31000.0,
        ),
        (
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            ITL_BOUNDS,
            90.0,
        ),
        (
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            E2E_BOUNDS,
            90.0,
        ),
        (
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            E2E_BOUNDS,
            90.0,
        ),
        (
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase.",
            E2E_BOUNDS,
            90.0,
        ),
        ("vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase.", E2E_BOUNDS, 90.0),
        ("vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase.", E2E_BOUNDS, 90.0),
        ("vllm:request_prompt_tokens", "Number of prefill tokens processed.", TOKEN_BOUNDS, 90.0),
        ("vllm:request_generation_tokens", "Number of generation tokens processed.", TOKEN_BOUNDS, 90.0),
        (
            "vllm:request_params_max_tokens",
            "Histogram of the max_tokens request parameter.",
            TOKEN_BOUNDS,
            90.0,
        ),
        ("vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", ITER_BOUNDS, 500.0),
    )
    for name, help_text, bounds, scale in hists:
        _hist(out, name, help_text, bounds, engines, tick, scale, created)
    out.append("")
    return "\n".join(out)
