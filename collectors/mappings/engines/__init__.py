"""The inference engines the serving mapping knows, one module each, every one naming the upstream
file and commit its names follow: vLLM, SGLang, TensorRT-LLM (trtllm-serve), Triton, Dynamo."""

from __future__ import annotations

from collectors.mappings.engines import dynamo, sglang, triton, trtllm, vllm
from collectors.mappings.engines.spec import EngineSpec

ENGINES: dict[str, EngineSpec] = {
    spec.name: spec for spec in (vllm.SPEC, sglang.SPEC, trtllm.SPEC, triton.SPEC, dynamo.SPEC)
}
"""Every engine the serving mapping knows, by serving.engine name."""

__all__ = ["ENGINES", "EngineSpec"]
