"""EngineSpec: where one inference engine keeps each serving column, in canonical family names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from collectors.promtext import Family

_COLUMNS = frozenset({"prompt_tokens", "generation_tokens", "cached_tokens", "requests_ok", "preemptions",
                      "running", "waiting", "kv_cache_q4"})  # fmt: skip
"""serving columns a `required` entry may name (any other entry is a family name)."""
Where = tuple[tuple[str, str], ...]
"""Label filters: (label, value) pairs a series must have."""


@dataclass(frozen=True)
class EngineSpec:
    """Where one engine keeps each serving column (canonical family names, aliases in order).

    Attributes:
        name: the engine as stored in serving.engine.
        prefixes: canonical name prefixes that identify the engine's page.
        model_labels: labels that name the model.
        prompt_tokens / generation_tokens / cached_tokens: counter families, or histograms of tokens
            per request (Triton, Dynamo), whose `_sum` is then the token counter.
        requests: counter family of finished requests (label filters in `requests_where`).
        running / waiting / kv: gauges (label filters in the *_where maps).
        waiting_extra: more gauge families whose series add to `waiting` (SGLang's other queues).
        hists: histogram families by serving_hist.metric (ttft, itl, e2e, queue, prefill).
        hist_scale: multiplies bounds and sums into seconds.
        rank_labels: labels of a scheduler rank whose gauges and histograms repeat what rank 0 says
            (SGLang's tensor/pipeline/expert ranks): one value per label set without them is kept.
        required: gauge or counter columns every page of this engine has series for from the
            server's start, or families it always prints; a page without them is PARTIAL (a page
            that parsed but lost them), its warning naming them and adding `hint`.
        hint: what a page without a required family most likely means.
        extra: other families an engine's own code reads (Dynamo's inflight and KV blocks).
    """

    name: str
    prefixes: tuple[str, ...]
    model_labels: tuple[str, ...]
    prompt_tokens: tuple[str, ...] = ()
    generation_tokens: tuple[str, ...] = ()
    cached_tokens: tuple[str, ...] = ()
    requests: tuple[str, ...] = ()
    requests_where: Where = ()
    preemptions: tuple[str, ...] = ()
    running: tuple[str, ...] = ()
    running_where: Where = ()
    waiting: tuple[str, ...] = ()
    waiting_where: Where = ()
    waiting_extra: tuple[str, ...] = ()
    kv: tuple[str, ...] = ()
    kv_where: Where = ()
    hists: tuple[tuple[str, tuple[str, ...]], ...] = ()
    hist_scale: float = 1.0
    rank_labels: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    hint: str = ""
    extra: tuple[str, ...] = ()

    def wanted(self) -> frozenset[str]:
        """Canonical names of every family this engine's mapping reads."""
        names = [
            *self.prompt_tokens,
            *self.generation_tokens,
            *self.cached_tokens,
            *self.requests,
            *self.preemptions,
            *self.running,
            *self.waiting,
            *self.waiting_extra,
            *self.kv,
            *self.extra,
            *(name for name in self.required if name not in _COLUMNS),
        ]
        for _, aliases in self.hists:
            names.extend(aliases)
        return frozenset(names)

    def absent(self, row: Mapping[str, object], index: Mapping[str, Family]) -> list[str]:
        """The required columns and families the page has no series for."""
        out = []
        for name in self.required:
            if name in _COLUMNS:
                if row[name] is None:
                    out.append(name)
            elif not any(True for _ in getattr(index.get(name), "samples", ())):
                out.append(name)
        return out

    def first_rank(self, labels: Mapping[str, str]) -> bool:
        """Whether a series is rank 0's (or has no rank labels): the one kept of a repeated series."""
        return all(labels.get(label, "0") == "0" for label in self.rank_labels)
