"""Command-line times: ISO 8601 with a zone, now-D, plain durations, and one-line refusals."""

from __future__ import annotations

import re

import pytest

from monitor.timespec import Window, iso, parse_instant, parse_window, store_window

NOW = 1_750_000_000.0


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2025-06-15T15:06:40Z", 1_750_000_000_000),
        ("2025-06-15T17:06:40+02:00", 1_750_000_000_000),
        ("2025-06-15T15:06:40.250Z", 1_750_000_000_250),
        ("now", 1_750_000_000_000),
        ("NOW - 2h", 1_750_000_000_000 - 7_200_000),
        ("now-90s", 1_750_000_000_000 - 90_000),
        ("2h", 1_750_000_000_000 - 7_200_000),
        ("500ms", 1_750_000_000_000 - 500),
    ],
)
def test_instants(text: str, ms: int) -> None:
    assert parse_instant(text, "--since", NOW) == ms


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2025-06-15T15:06:40", "give a zone"),
        ("yesterday", "bad --since 'yesterday'"),
        ("now-forever", "bad --since 'now-forever'"),
        ("now+2h", "bad --since 'now+2h'"),
        ("-5m", "bad --since '-5m'"),
    ],
)
def test_bad_instants(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_instant(text, "--since", NOW)


def test_windows() -> None:
    last = parse_window("2h", None, None, NOW)
    assert (last.since_ms, last.until_ms, last.seconds) == (1_749_992_800_000, 1_750_000_000_000, 7200.0)
    span = parse_window(None, "2025-06-15T15:00:00Z", "now-1m", NOW)
    assert iso(span.since_ms) == "2025-06-15T15:00:00Z" and iso(span.until_ms) == "2025-06-15T15:05:40Z"
    assert parse_window(None, "now-10m", None, NOW).until_ms == 1_750_000_000_000


@pytest.mark.parametrize(
    ("last", "since", "until", "message"),
    [
        (None, None, None, "no window given"),
        ("1h", "now-2h", None, "not both"),
        (None, None, "now", "--until needs --since"),
        (None, "now", "now-1h", "is not before"),
        ("0s", None, None, "bad --last"),
    ],
)
def test_bad_windows(last: str | None, since: str | None, until: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_window(last, since, until, NOW)


HELD = (1_749_999_000_000, 1_749_999_900_000)
"""A store whose rows span 2025-06-15T14:50:00Z .. 15:05:00Z, ended 100 s before NOW."""


def test_store_windows_default_to_the_store_and_count_back_from_its_end() -> None:
    assert store_window(None, None, None, HELD, NOW) == Window(*HELD, "the whole store")
    last = store_window("30m", None, None, HELD, NOW)
    assert (last.since_ms, last.until_ms) == (HELD[1] - 1_800_000, HELD[1])
    assert last.how == "last 30m of the store, ending 2025-06-15T15:05:00Z"
    since = store_window(None, "2025-06-15T15:00:00Z", None, HELD, NOW)
    assert (since.since_ms, since.until_ms, since.how) == (1_749_999_600_000, 1_750_000_000_000, "")
    assert store_window("1h", None, None, None, NOW) == parse_window("1h", None, None, NOW)


@pytest.mark.parametrize(
    ("last", "since", "held", "message"),
    [
        (None, None, None, "the store holds no GPU or serving rows"),
        ("1h", "now-2h", HELD, "not both"),
        ("soon", None, HELD, "bad --last"),
    ],
)
def test_bad_store_windows(
    last: str | None, since: str | None, held: tuple[int, int] | None, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        store_window(last, since, None, held, NOW)
