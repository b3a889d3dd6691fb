"""The rack config's [alerts] and [keys] tables: parsed and checked with file/line/field errors, and rendered.

`check` is the config's Checker (collectors.config_check): its fail() raises a one-line ConfigError.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from collectors.alert_rules import RULE_DIRECTION, RULE_HELP, AlertRules, Threshold

if TYPE_CHECKING:
    from collectors.config_check import Checker

_RULE_FIELDS = ("on", "off", "for", "window", "enabled")
_KEY_ACTION_RE = re.compile(r"[a-z][a-z0-9_\-]*")


def parse_alerts(check: Checker, value: object) -> AlertRules:
    """[alerts]: bell, and one [alerts.<rule>] table per rule overriding its defaults."""
    if not isinstance(value, dict):
        check.fail("alerts", "must be a table ([alerts])", None, None, "alerts")
    rules = AlertRules()
    names = AlertRules.names()
    for key, entry in value.items():
        if key == "bell":
            if not isinstance(entry, bool):
                check.fail("alerts.bell", f"must be true or false, not {entry!r}", "alerts", None, "bell")
            rules = replace(rules, bell=entry)
            continue
        if key not in names:
            check.fail(
                f"alerts.{key}",
                f"unknown rule (expected bell or one of: {', '.join(names)})",
                f"alerts.{key}",
                None,
                None,
            )
        table = f"alerts.{key}"
        if not isinstance(entry, dict):
            check.fail(table, "must be a table ([alerts.<rule>])", "alerts", None, key)
        check.fields(entry, _RULE_FIELDS, table, None)
        rules = replace(rules, **{key: threshold(check, key, entry, rules.rule(key))})
    return rules


def threshold(check: Checker, rule: str, entry: Mapping[str, Any], default: Threshold) -> Threshold:
    table = f"alerts.{rule}"
    numbers: dict[str, float] = {}
    for name in ("on", "off", "for", "window"):
        v = entry.get(name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
            check.fail(f"{table}.{name}", f"must be a number >= 0, not {v!r}", table, None, name)
        numbers[name] = float(v)
    enabled = entry.get("enabled", default.enabled)
    if not isinstance(enabled, bool):
        check.fail(f"{table}.enabled", f"must be true or false, not {enabled!r}", table, None, "enabled")
    if "window" in numbers and numbers["window"] <= 0:
        check.fail(f"{table}.window", "must be seconds > 0", table, None, "window")
    t = Threshold(
        on=numbers.get("on", default.on),
        off=numbers.get("off", default.off),
        for_s=numbers.get("for", default.for_s),
        window_s=numbers.get("window", default.window_s),
        enabled=enabled,
    )
    high = RULE_DIRECTION[rule] == "high"
    if (high and t.off > t.on) or (not high and t.off < t.on):
        order = "<=" if high else ">="
        check.fail(
            f"{table}.off",
            f"must be {order} on ({t.on:g}) so the alert can clear ({rule}: {RULE_HELP[rule]})",
            table,
            None,
            "off" if "off" in entry else "on",
        )
    return t


def parse_keys(check: Checker, value: object) -> tuple[tuple[tuple[str, str], ...], dict[str, int]]:
    """[keys]: action id = "key" (or "key1,key2"); the ids themselves are checked by the TUI."""
    if not isinstance(value, dict):
        check.fail("keys", "must be a table ([keys])", None, None, "keys")
    pairs: list[tuple[str, str]] = []
    lines: dict[str, int] = {}
    for action, key in value.items():
        if not _KEY_ACTION_RE.fullmatch(action):
            check.fail(f"keys.{action}", "is not an action id (like metric-power)", "keys", None, action)
        if not isinstance(key, str) or not key.strip() or any(not k.strip() for k in key.split(",")):
            check.fail(
                f"keys.{action}",
                f'must be a key name like "L" or "ctrl+l", not {key!r}',
                "keys",
                None,
                action,
            )
        pairs.append((action, key.replace(" ", "")))
        lines[action] = check.locate.line("keys", None, action)
    return tuple(pairs), lines


def render_alerts(rules: AlertRules) -> list[str]:
    """[alerts] lines for the settings that differ from the defaults (none when all are default)."""
    default = AlertRules()
    if rules == default:
        return []
    out = ["[alerts]", f"bell = {'true' if rules.bell else 'false'}", ""]
    for name in AlertRules.names():
        t = rules.rule(name)
        if t != default.rule(name):
            out += [
                f"[alerts.{name}]",
                f"on = {t.on!r}",
                f"off = {t.off!r}",
                f"for = {t.for_s!r}",
                f"window = {t.window_s!r}",
                f"enabled = {'true' if t.enabled else 'false'}",
                "",
            ]
    return out
