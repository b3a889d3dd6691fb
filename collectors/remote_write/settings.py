"""The rack config's [remote_write] table: where and how `monitor collect` sends what it records.

    [remote_write]
    url = "http://prometheus:9090/api/v1/write"   # the receiver's write URL (http or https)
    batch_size = 200000      # samples per request at most (whole ticks: one tick may exceed it)
    interval = 5             # seconds between sends while caught up
    timeout = 30             # seconds a request may take before it counts as failed
    max_backlog = 3600       # seconds: an older backlog is skipped (the receiver would refuse it)
    tables = ["gpu", "nvlink", "serving", "serving_hist", "host"]   # what is sent (default: all)
    bearer_token_file = "/etc/rack-monitor/rw-token"   # or [remote_write.basic_auth]
    [remote_write.headers]   # extra HTTP headers (X-Scope-OrgID for Mimir, ...)
    X-Scope-OrgID = "rack-a"
    [remote_write.basic_auth]
    username = "rack-a"
    password_file = "/etc/rack-monitor/rw-password"
    [remote_write.tls_config]
    ca_file = "/etc/rack-monitor/ca.pem"
    cert_file = "/etc/rack-monitor/client.pem"
    key_file = "/etc/rack-monitor/client-key.pem"
    insecure_skip_verify = false

Key names follow Prometheus' own remote_write configuration (prometheus.io/docs/prometheus/latest/
configuration/configuration/#remote_write), so an operator's existing settings carry over. Secrets are
read from files at start, never written into the config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collectors.config_check import ConfigError, url_problem

if TYPE_CHECKING:
    from collectors.config_check import Checker

TABLES_SENT: tuple[str, ...] = ("gpu", "nvlink", "serving", "serving_hist", "host")
"""The store tables whose samples are sent (collectors.remote_write.series maps them)."""
DEFAULT_BATCH_SIZE = 200_000
"""About 10 ticks of a full rack (19,800 samples a tick): a request of ~700 KB on the wire, far below every
receiver's request limit (VictoriaMetrics 32 MB), and 10 samples a series amortise each series' labels."""
DEFAULT_INTERVAL_S = 5.0
"""Prometheus' own remote_write batch_send_deadline is 5 s."""
DEFAULT_TIMEOUT_S = 30.0
"""Prometheus' remote_write remote_timeout default."""
DEFAULT_MAX_BACKLOG_S = 3600.0
"""Prometheus (without an out-of-order window) refuses samples older than its head's newest minus 1 h."""

_FIELDS = (
    "url",
    "headers",
    "basic_auth",
    "bearer_token_file",
    "tls_config",
    "batch_size",
    "interval",
    "timeout",
    "max_backlog",
    "tables",
)
_AUTH_FIELDS = ("username", "password_file")
_TLS_FIELDS = ("ca_file", "cert_file", "key_file", "insecure_skip_verify")
_RESERVED_HEADERS = frozenset(
    {"content-type", "content-encoding", "x-prometheus-remote-write-version", "content-length", "host"}
)


@dataclass(frozen=True)
class TlsSettings:
    """TLS towards the receiver: CA bundle, client certificate and key, or no verification at all."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class RemoteWriteSettings:
    """Where and how samples are sent (units: seconds and samples)."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    username: str | None = None
    password_file: str | None = None
    bearer_token_file: str | None = None
    tls: TlsSettings = field(default_factory=TlsSettings)
    batch_size: int = DEFAULT_BATCH_SIZE
    interval_s: float = DEFAULT_INTERVAL_S
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_backlog_s: float = DEFAULT_MAX_BACKLOG_S
    tables: tuple[str, ...] = TABLES_SENT
    """Store tables whose samples are sent (default: all of TABLES_SENT)."""

    def with_url(self, url: str) -> RemoteWriteSettings:
        """The same settings towards another URL (`monitor collect --remote-write URL`)."""
        problem = url_problem(url)
        if problem:
            raise ConfigError(f"--remote-write: {url!r} {problem}")
        return replace(self, url=url)

    def auth_header(self) -> str | None:
        """The Authorization header, its secret read from its file now (ConfigError if unreadable)."""
        import base64

        if self.bearer_token_file is not None:
            return f"Bearer {_secret(self.bearer_token_file, 'bearer_token_file')}"
        if self.username is not None:
            password = _secret(self.password_file, "basic_auth.password_file") if self.password_file else ""
            token = base64.b64encode(f"{self.username}:{password}".encode()).decode()
            return f"Basic {token}"
        return None


def _secret(path: str, key: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ConfigError(f"remote_write.{key}: cannot read {path}: {err.strerror or err}") from None


def parse_remote_write(check: Checker, value: object) -> RemoteWriteSettings:
    """[remote_write]: checked key by key; a mistake is one ConfigError at its line."""
    table = "remote_write"
    if not isinstance(value, dict):
        check.fail(table, "must be a table ([remote_write])", None, None, table)
    check.fields(value, _FIELDS, table, None)
    url = check.string(value, "url", table, table, None)
    if url is None:
        check.fail(f"{table}.url", "is missing (the receiver's write URL)", table, None, None)
    problem = url_problem(url)
    if problem:
        check.fail(f"{table}.url", f"{url!r} {problem}", table, None, "url")
    username, password_file = _basic_auth(check, value.get("basic_auth"))
    bearer = check.string(value, "bearer_token_file", table, table, None)
    if bearer is not None and username is not None:
        check.fail(f"{table}.bearer_token_file", "give basic_auth or a bearer token, not both", table, None,
                   "bearer_token_file")  # fmt: skip
    return RemoteWriteSettings(
        url=url,
        headers=_headers(check, value.get("headers", {})),
        username=username,
        password_file=password_file,
        bearer_token_file=bearer,
        tls=_tls(check, value.get("tls_config", {})),
        batch_size=int(_number(check, value, "batch_size", DEFAULT_BATCH_SIZE, 1, 10_000_000, integer=True)),
        interval_s=_number(check, value, "interval", DEFAULT_INTERVAL_S, 0.05, 3600),
        timeout_s=_number(check, value, "timeout", DEFAULT_TIMEOUT_S, 0.1, 600),
        max_backlog_s=_number(check, value, "max_backlog", DEFAULT_MAX_BACKLOG_S, 1, 10 * 365 * 86_400),
        tables=_tables(check, value.get("tables", list(TABLES_SENT))),
    )


def _tables(check: Checker, value: object) -> tuple[str, ...]:
    """`tables`: a non-empty list of store tables to send, each once."""
    problem = None
    if not isinstance(value, list) or not value:
        problem = f"must be a non-empty list of tables, not {value!r}"
    else:
        for name in value:
            if name not in TABLES_SENT:
                problem = f"{name!r} is not a table that is sent (one of: {', '.join(TABLES_SENT)})"
                break
        if problem is None and len(set(value)) != len(value):
            problem = "names a table twice"
    if problem is not None:
        check.fail("remote_write.tables", problem, "remote_write", None, "tables")
    return tuple(name for name in TABLES_SENT if name in value)  # type: ignore[operator]


def _number(
    check: Checker,
    entry: Mapping[str, Any],
    key: str,
    default: float,
    lo: float,
    hi: float,
    *,
    integer: bool = False,
) -> float:
    value = entry.get(key, default)
    kinds = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kinds) or not lo <= value <= hi:
        what = "a whole number" if integer else "a number"
        check.fail(f"remote_write.{key}", f"must be {what} in {lo:g}..{hi:g}, not {value!r}", "remote_write",
                   None, key)  # fmt: skip
    return float(value)


def _headers(check: Checker, value: object) -> dict[str, str]:
    table = "remote_write.headers"
    if not isinstance(value, dict):
        check.fail(table, 'must be a table of header = "value"', "remote_write", None, "headers")
    headers: dict[str, str] = {}
    for name, text in value.items():
        if not isinstance(text, str) or "\n" in text or "\r" in text:
            check.fail(f"{table}.{name}", f"must be a one-line string, not {text!r}", table, None, name)
        if name.lower() in _RESERVED_HEADERS or name.lower() == "authorization":
            why = (
                "use bearer_token_file or basic_auth"
                if name.lower() == "authorization"
                else "set by the sender"
            )
            check.fail(f"{table}.{name}", f"cannot be set here ({why})", table, None, name)
        headers[name] = text
    return headers


def _basic_auth(check: Checker, value: object) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    table = "remote_write.basic_auth"
    if not isinstance(value, dict):
        check.fail(table, "must be a table ([remote_write.basic_auth])", "remote_write", None, "basic_auth")
    check.fields(value, _AUTH_FIELDS, table, None)
    username = check.string(value, "username", table, table, None)
    if username is None:
        check.fail(f"{table}.username", "is missing", table, None, None)
    return username, check.string(value, "password_file", table, table, None)


def _tls(check: Checker, value: object) -> TlsSettings:
    table = "remote_write.tls_config"
    if not isinstance(value, dict):
        check.fail(table, "must be a table ([remote_write.tls_config])", "remote_write", None, "tls_config")
    check.fields(value, _TLS_FIELDS, table, None)
    insecure = value.get("insecure_skip_verify", False)
    if not isinstance(insecure, bool):
        check.fail(f"{table}.insecure_skip_verify", f"must be true or false, not {insecure!r}", table, None,
                   "insecure_skip_verify")  # fmt: skip
    files = {
        key: check.string(value, key, table, table, None) for key in ("ca_file", "cert_file", "key_file")
    }
    if (files["cert_file"] is None) != (files["key_file"] is None):
        check.fail(f"{table}.cert_file", "cert_file and key_file go together", table, None, "cert_file")
    return TlsSettings(insecure_skip_verify=insecure, **files)


def render_remote_write(settings: RemoteWriteSettings | None) -> list[str]:
    """[remote_write] lines that parse_remote_write reads back to `settings` (none when None)."""
    if settings is None:
        return []
    q = _toml_str
    out = ["[remote_write]", f"url = {q(settings.url)}", f"batch_size = {settings.batch_size}"]
    out += [f"interval = {settings.interval_s!r}", f"timeout = {settings.timeout_s!r}"]
    out += [f"max_backlog = {settings.max_backlog_s!r}"]
    if settings.tables != TABLES_SENT:
        out.append(f"tables = [{', '.join(q(t) for t in settings.tables)}]")
    if settings.bearer_token_file is not None:
        out.append(f"bearer_token_file = {q(settings.bearer_token_file)}")
    if settings.headers:
        out += ["[remote_write.headers]", *(f"{q(k)} = {q(v)}" for k, v in settings.headers.items())]
    if settings.username is not None:
        out += ["[remote_write.basic_auth]", f"username = {q(settings.username)}"]
        if settings.password_file is not None:
            out.append(f"password_file = {q(settings.password_file)}")
    if settings.tls != TlsSettings():
        out.append("[remote_write.tls_config]")
        for key in ("ca_file", "cert_file", "key_file"):
            if getattr(settings.tls, key) is not None:
                out.append(f"{key} = {q(getattr(settings.tls, key))}")
        out.append(f"insecure_skip_verify = {'true' if settings.tls.insecure_skip_verify else 'false'}")
    return [*out, ""]


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
