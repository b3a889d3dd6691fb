"""NVIDIA Dynamo frontend: names of ai-dynamo/dynamo `lib/runtime/src/metrics/prometheus_names.rs`
(commit 04070c75, module frontend_service) as `lib/llm/src/http/service/metrics.rs` (commit 0014908a)
registers them: `{prefix}_{name}` with prefix `dynamo_frontend`, or the value of the frontend's
DYN_METRICS_PREFIX environment variable (sanitised; added for NIM's `nv_llm_http_service`).

Read and where it goes:
- generation_tokens <- output_tokens_total (counter, updated per token); where a build has none,
  the `_sum` of the output_sequence_tokens histogram (output tokens per finished request): the same
  tokens, counted when each request ends.
- prompt_tokens <- the `_sum` of input_sequence_tokens; cached_tokens <- the `_sum` of cached_tokens
  (prefix-cache hit tokens per request).
- The page is PARTIAL without disconnected_clients (ALWAYS below): that is a frontend whose names
  carry a DYN_METRICS_PREFIX the config does not name.
- requests_ok <- requests_total{status="success"}; waiting <- queued_requests (HTTP queue until the
  first token); running = inflight_requests - queued_requests.
- KV use <- worker_active_decode_blocks{worker_id, dp_rank, worker_type} (always named
  `dynamo_frontend_`: the KV router's gauges ignore DYN_METRICS_PREFIX) over model_total_kv_blocks
  (`{prefix}_`, one worker's pool, by model): each worker's share, averaged over workers as other
  engines' KV use is. With several models of different pool sizes a worker's pool is unknown (the
  worker gauges carry no model label), so the column stays empty rather than guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from collectors.mappings.common import canonical
from collectors.mappings.engines.spec import EngineSpec
from collectors.promtext import Family, Labels

PREFIX = "dynamo_frontend"
"""The frontend's own metric prefix (name_prefix::FRONTEND)."""
INFLIGHT = "dynamo_frontend_inflight_requests"
ACTIVE_BLOCKS = "dynamo_frontend_worker_active_decode_blocks"
TOTAL_BLOCKS = "dynamo_frontend_model_total_kv_blocks"
ALWAYS = "dynamo_frontend_disconnected_clients"
"""An unlabelled IntGauge every frontend page prints (metrics.rs client_disconnect_gauge); labelled
families stay off the page until their first series."""

SPEC = EngineSpec(
    name="dynamo",
    prefixes=(PREFIX + "_",),
    model_labels=("model",),
    prompt_tokens=("dynamo_frontend_input_sequence_tokens",),
    generation_tokens=("dynamo_frontend_output_tokens_total", "dynamo_frontend_output_sequence_tokens"),
    cached_tokens=("dynamo_frontend_cached_tokens",),
    requests=("dynamo_frontend_requests_total",),
    requests_where=(("status", "success"),),
    waiting=("dynamo_frontend_queued_requests",),
    hists=(
        ("ttft", ("dynamo_frontend_time_to_first_token_seconds",)),
        ("itl", ("dynamo_frontend_inter_token_latency_seconds",)),
        ("e2e", ("dynamo_frontend_request_duration_seconds",)),
    ),
    extra=(INFLIGHT, ACTIVE_BLOCKS, TOTAL_BLOCKS),
    required=(ALWAYS,),
    # the KV router's gauges keep `dynamo_frontend_`, so a prefixed page is still detected as Dynamo
    hint="a frontend started with DYN_METRICS_PREFIX needs metrics_prefix in its [[server]] entry",
)

Series = list[tuple[Labels, float]]
GaugeReader = Callable[[str, Family | None], Series]
"""Reads a gauge column's finite series off a family (serving._PageCheck.gauge)."""


def unprefixed(index: Mapping[str, Family], prefix: str) -> dict[str, Family]:
    """The page's families with the configured DYN_METRICS_PREFIX read as `dynamo_frontend`.

    `index` is by canonical name; a family under the frontend's own name wins over a renamed one.
    """
    head = canonical(prefix) + "_"
    out = dict(index)
    for name, family in index.items():
        if name.startswith(head):
            out.setdefault(PREFIX + "_" + name[len(head) :], family)
    return out


def wire_name(name: str, prefix: str | None) -> str:
    """A canonical page name as the mapping reads it (a prefixed frontend name under dynamo_frontend)."""
    if prefix is not None:
        head = canonical(prefix) + "_"
        if name.startswith(head):
            return PREFIX + "_" + name[len(head) :]
    return name


def running(index: Mapping[str, Family], read: GaugeReader, waiting: Series) -> Series:
    """Requests past the first token: inflight (HTTP handler to last token) minus queued."""
    inflight = read("inflight", index.get(INFLIGHT))
    if not inflight:
        return []
    return [(Labels(), sum(v for _, v in inflight) - sum(v for _, v in waiting))]


def kv_use(index: Mapping[str, Family], read: GaugeReader) -> list[float]:
    """Each worker's KV-pool share in use (0..1), when the pool size is unambiguous."""
    active = read("kv_active", index.get(ACTIVE_BLOCKS))
    pools = {v for _, v in read("kv_pool", index.get(TOTAL_BLOCKS)) if v > 0}
    if not active or len(pools) != 1:
        return []
    (pool,) = pools
    return [min(blocks / pool, 1.0) for _, blocks in active]
