"""Which engine wrote a page, and the parser filter that keeps only the families its mapping reads.

The engines themselves (where each keeps its figures, and the upstream source each follows) are in
collectors.mappings.engines; collectors.mappings.serving maps a page with them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

from collectors.mappings.common import canonical
from collectors.mappings.engines import ENGINES, EngineSpec
from collectors.mappings.engines.dynamo import wire_name
from collectors.promtext import Family

__all__ = ["ENGINES", "EngineSpec", "detect_engine", "serving_want"]

_DETECT_ORDER = ("dynamo", "vllm", "sglang", "trtllm", "triton")
"""A Dynamo frontend page may carry engine families too; a worker page has engine families only."""
_WIRE_PREFIXES = {
    "dynamo": ("dynamo_frontend_",),
    "vllm": ("vllm:", "vllm_"),
    "sglang": ("sglang:", "sglang_"),
    "trtllm": ("trtllm_", "trtllm:"),
    "triton": ("nv_inference_", "nv_trt_llm_"),
}


def detect_engine(page: str | Mapping[str, Family]) -> str | None:
    """The engine that wrote a page, from its metric prefixes (None if it is no serving page).

    A Dynamo frontend started with DYN_METRICS_PREFIX carries none of these: its [[server]] entry
    names the prefix (collectors.config), which makes it a Dynamo page.
    """
    if isinstance(page, str):
        for engine in _DETECT_ORDER:
            for prefix in _WIRE_PREFIXES[engine]:
                if page.startswith(prefix) or f"\n{prefix}" in page or f"# TYPE {prefix}" in page:
                    return engine
        return None
    names = [canonical(name) for name in page]
    for engine in _DETECT_ORDER:
        if any(name.startswith(ENGINES[engine].prefixes) for name in names):
            return engine
    return None


@functools.cache
def serving_want(engine: str, metrics_prefix: str | None = None) -> Callable[[str], bool]:
    """A promtext `want` filter that keeps only the families the engine's mapping reads.

    `metrics_prefix`: a Dynamo frontend's DYN_METRICS_PREFIX, whose names are read as
    `dynamo_frontend_` ones.
    """
    wanted = ENGINES[engine].wanted()
    decided: dict[str, bool] = {}

    def want(name: str) -> bool:
        keep = decided.get(name)
        if keep is None:
            if len(decided) > 10_000:
                decided.clear()
            keep = decided[name] = wire_name(canonical(name), metrics_prefix) in wanted
        return keep

    return want
