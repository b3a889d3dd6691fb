"""A Dynamo frontend started with DYN_METRICS_PREFIX: named in its [[server]] entry, scraped over loopback."""

from __future__ import annotations

import pytest

from collectors.config import ConfigError, parse_config, render_config
from collectors.scrape import ScrapeSource
from storage.schemas import EndpointState
from tests.serving.conftest import LivePages
from tests.serving.test_engine_names import dynamo_traffic
from tests.serving.upstream_nvidia import Dynamo

T0 = 1_790_000_000_000
TEXT = "text/plain; version=0.0.4; charset=utf-8"


def config(url: str, extra: str = 'metrics_prefix = "nv_llm_http_service"') -> str:
    return f'[rack]\nname = "r"\n\n[[server]]\nname = "frontend"\nurl = "{url}"\n{extra}\n'


def test_a_prefixed_frontend_named_in_the_config_is_read(live: LivePages) -> None:
    rack = parse_config(config(live.url("dyn")))
    (server,) = rack.servers
    assert (server.engine, server.metrics_prefix) == ("dynamo", "nv_llm_http_service")
    assert parse_config(render_config(rack)).servers == rack.servers
    frontend = Dynamo(prefix="nv_llm_http_service")
    change = dynamo_traffic(frontend)
    source = ScrapeSource.from_config(rack, timeout_s=5)
    try:
        live.pages["dyn"] = (frontend.page(), TEXT)
        source.poll(T0)
        change()
        live.pages["dyn"] = (frontend.page(), TEXT)
        (row,) = source.poll(T0 + 1000).table("serving").to_pylist()
        (status,) = source.statuses()
    finally:
        source.close()
    assert (status.state, status.reason, row["state"]) == (EndpointState.OK, "", EndpointState.OK)
    assert (row["engine"], row["generation_tokens"], row["running"], row["kv_cache_q4"]) == (
        "dynamo",
        512,
        6,
        4000,
    )


def test_a_prefixed_frontend_the_config_does_not_name_says_so(live: LivePages) -> None:
    rack = parse_config(config(live.url("dyn"), ""))
    frontend = Dynamo(prefix="nv_llm_http_service")
    dynamo_traffic(frontend)()
    live.pages["dyn"] = (frontend.page(), TEXT)
    source = ScrapeSource.from_config(rack, timeout_s=5)
    try:
        (row,) = source.poll(T0).table("serving").to_pylist()
        (status,) = source.statuses()
    finally:
        source.close()
    assert row["state"] == EndpointState.PARTIAL and "metrics_prefix" in status.reason


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('engine = "vllm"\nmetrics_prefix = "nv_llm"', "only a Dynamo frontend has one"),
        ('metrics_prefix = "9-bad"', "'9-bad' is not a metric name prefix"),
        ("metrics_prefix = 3", "must be a non-empty string"),
    ],
)
def test_a_bad_metrics_prefix_is_one_line_naming_the_field(extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config("http://127.0.0.1:8000/metrics", extra), "rack.toml")
    assert str(caught.value).startswith("rack.toml:") and "server[1].metrics_prefix" in str(caught.value)
    assert message in str(caught.value) and "\n" not in str(caught.value)
