"""The scraper's Accept header never invites quoted UTF-8 metric names, which text 0.0.4 cannot say.

Prometheus 3 servers write `{"a.b"} 1` only when asked for text 1.0.0 / OpenMetrics with
`escaping=allow-utf-8`, or when client_golang's default escaping was changed; the parser refuses such
names (collectors/promtext_syntax.split_sample), so an endpoint answering them would be DOWN.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import choose_encoder

from collectors.promtext import ExpositionParser
from collectors.scrape_http import ACCEPT


def clauses(header: str) -> list[tuple[str, dict[str, str]]]:
    """(media type, parameters) of each clause, as goautoneg.ParseAccept splits them."""
    out = []
    for clause in header.split(","):
        media, *params = (part.strip() for part in clause.split(";"))
        out.append((media, dict(p.split("=", 1) for p in params)))
    return out


def test_accept_asks_for_text_004_with_underscore_escaping_only():
    parsed = clauses(ACCEPT)
    assert [media for media, _ in parsed] == ["text/plain", "*/*"]
    text = parsed[0][1]
    # client_golang's NegotiateAccept takes the escaping named in a clause, else its global default
    # (prometheus/common expfmt/encode.go, d2417e2cbb82c4c81e4d28d55f354058169a9f08).
    assert text["version"] == "0.0.4" and text["escaping"] == "underscores"
    assert all(params.get("escaping") in (None, "underscores") for _, params in parsed)
    assert "openmetrics" not in ACCEPT


def test_a_utf8_named_metric_comes_back_underscored_and_parses():
    registry = CollectorRegistry()
    Gauge("kv.cache.usage", "a UTF-8 metric name", registry=registry).set(0.5)
    encode, content_type = choose_encoder(ACCEPT)  # prometheus_client's own negotiation
    assert content_type.startswith("text/plain; version=0.0.4")
    families = ExpositionParser().parse(encode(registry))
    assert [(s.name, s.value) for s in families["kv_cache_usage"].samples] == [("kv_cache_usage", 0.5)]
    # What it would have written had we invited UTF-8 names: refused, as the 0.0.4 format requires.
    utf8, _ = choose_encoder("text/plain;version=1.0.0;escaping=allow-utf-8")
    assert b'{"kv.cache.usage"} 0.5' in utf8(registry)
