"""One HTTP(S) connection to a remote-write receiver: POST a compressed WriteRequest, get the answer.

A kept-alive connection (http.client) with a socket timeout, so a receiver that hangs costs at most
`timeout_s` per try; `abort()` shuts the socket from another thread so a stop never waits that long.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from collectors.remote_write.settings import RemoteWriteSettings
from collectors.remote_write.wire import CONTENT_ENCODING, CONTENT_TYPE, PROTOCOL_VERSION

USER_AGENT = "rack-monitor-remote-write/0.1"


@dataclass(frozen=True)
class Answer:
    """The receiver's answer to one request."""

    status: int
    reason: str
    body: str
    retry_after_s: float | None = None


def tls_context(settings: RemoteWriteSettings) -> ssl.SSLContext:
    """The TLS context of an https URL: the CA bundle (or the system's), a client certificate if given."""
    tls = settings.tls
    context = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file is not None:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class Client:
    """POSTs to the receiver's URL over one kept-alive connection.

    Raises ConfigError (from settings.auth_header / tls_context callers) at construction when a secret
    or TLS file cannot be read: that is a config mistake, reported at start.
    """

    def __init__(self, settings: RemoteWriteSettings) -> None:
        """Prepare the headers and TLS context; nothing connects until `post`."""
        parts = urlsplit(settings.url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout_s = settings.timeout_s
        self.context = tls_context(settings) if self.https else None
        self.headers = {
            "Content-Type": CONTENT_TYPE,
            "Content-Encoding": CONTENT_ENCODING,
            "X-Prometheus-Remote-Write-Version": PROTOCOL_VERSION,
            "User-Agent": USER_AGENT,
            **settings.headers,
        }
        auth = settings.auth_header()
        if auth is not None:
            self.headers["Authorization"] = auth
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def post(self, body: bytes) -> Answer:
        """Send one compressed request; OSError (refused, reset, timeout, TLS) when no answer came."""
        conn = self._connection()
        try:
            conn.request("POST", self.path, body=body, headers=self.headers)
            resp = conn.getresponse()
            text = resp.read(4096).decode("utf-8", "replace")
            if resp.will_close or not resp.isclosed():
                self.close()  # an answer not read to its end cannot share the connection
            return Answer(resp.status, resp.reason, text, _retry_after(resp.getheader("Retry-After")))
        except (OSError, http.client.HTTPException) as err:
            self.close()
            if isinstance(err, OSError):
                raise
            raise ConnectionError(f"bad HTTP answer: {err!r}") from None

    def _connection(self) -> http.client.HTTPConnection:
        with self._lock:
            if self._conn is None:
                if self.https:
                    self._conn = http.client.HTTPSConnection(
                        self.host, self.port, timeout=self.timeout_s, context=self.context
                    )
                else:
                    self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
            return self._conn

    def abort(self) -> None:
        """Shut the socket down from another thread: a request blocked on it fails at once."""
        with self._lock:
            sock = self._conn.sock if self._conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close the connection (the next post opens a new one)."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the delta-seconds form; an HTTP date is ignored)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
