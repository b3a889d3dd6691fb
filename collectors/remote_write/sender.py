"""The remote-write sender: the store is its durable queue, read from a position kept in the store.

A thread of its own (recording never waits on it) reads what the store holds after the position,
oldest first, a bounded number of whole ticks at a time (sealed Parquet segments and, in the
recording process, the head), encodes the ticks as one WriteRequest, POSTs it, and only then moves
the position (a small file in the store root, replaced atomically). So while the receiver is down or
slow nothing is lost and memory stays bounded: the backlog stays on disk and drains in order when the
receiver is back, series by series in time order as the protocol wants.

Answers (remote-write spec 1.0, prometheus.io/docs/specs/remote_write_spec, "Retries & Backoff"):
- 2xx: sent; the position moves on.
- 5xx, 429, no answer (refused, reset, timeout, TLS): retried with exponential back-off (Retry-After
  honoured), the same batch, nothing dropped.
- 401, 403, 404, 405, 413, 3xx: the receiver or the URL is wrong, not the data: sending stops with one
  line saying why; the position is kept, so a restart with the fix resumes where it stopped.
- other 4xx (400: out of order, out of bounds, bad labels): the data is refused and would be refused
  again: the batch is dropped (counted and logged), as the spec says, and sending goes on.

A backlog older than `max_backlog` (the receiver's out-of-order window: Prometheus refuses samples
older than its head's newest minus 1 h without `out_of_order_time_window`) is skipped, said once in the
log; it stays in the local store for export, replay and report.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from collectors.remote_write.client import Answer, Client
from collectors.remote_write.series import ORDER_BY, SeriesEncoder
from collectors.remote_write.settings import RemoteWriteSettings
from collectors.remote_write.tap import TICK_TABLES, SealedTap
from collectors.remote_write.wire import compress
from storage.atomic import write_bytes
from storage.head import Head
from storage.reader import StoreReader

log = logging.getLogger("collectors.remote_write")

MAX_TICKS_PER_REQUEST = 600
FIRST_LOOK_S = 0.25
MIN_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
_STOP_CODES = {401: "unauthorized", 403: "forbidden", 404: "not found", 405: "method not allowed"}


@dataclass(frozen=True)
class SenderStatus:
    """Where the sender stands.

    Attributes:
        state: "starting", "ok", "retrying" (the batch is kept and tried again) or "stopped".
        message: one line for the log and the TUI, e.g. "remote-write: 401 unauthorized ...".
        sent_through_ms: every tick up to this time has been sent (or dropped); None: nothing yet.
        sent_samples / dropped_samples / skipped_s: totals of this process.
        requests / failures: requests answered 2xx, tries that failed.
    """

    state: str = "starting"
    message: str = "remote-write: starting"
    sent_through_ms: int | None = None
    sent_samples: int = 0
    dropped_samples: int = 0
    skipped_s: float = 0.0
    requests: int = 0
    failures: int = 0


class StopSending(Exception):
    """The receiver's answer means no retry can succeed until the config changes."""


class RetryLater(Exception):
    """No answer, or an answer that says try again; `after_s` is the receiver's Retry-After."""

    def __init__(self, message: str, after_s: float | None = None) -> None:
        super().__init__(message)
        self.after_s = after_s


def position_path(root: Path, url: str) -> Path:
    """The position file of one receiver in a store (a root file: table folders are the writer's)."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return root / f"REMOTE_WRITE-{digest}.json"


def read_position(root: Path, url: str) -> int | None:
    """The position kept for `url`: every tick up to it was sent; None when there is none."""
    try:
        doc = json.loads(position_path(root, url).read_text(encoding="utf-8"))
        return int(doc["sent_through_ms"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class RemoteWriteSender:
    """Sends the store's samples to one receiver from a thread of its own.

    Args:
        root: the store directory.
        settings: the receiver and how to reach it.
        encoder: names and labels (rack name, tray hosts).
        head: the recording's head, to send ticks before they are sealed; None: sealed segments only.
        tap: the recording writer's newest seals (sealed segments only, so not with `head`): ticks it
            holds are encoded from memory instead of read back from the store.
        clock: wall-clock seconds (tests move it).
    """

    def __init__(
        self,
        root: Path,
        settings: RemoteWriteSettings,
        encoder: SeriesEncoder,
        head: Head | None = None,
        *,
        tap: SealedTap | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Prepare the client (ConfigError when a secret or TLS file cannot be read); nothing runs yet."""
        if head is not None and tap is not None:
            raise ValueError("a sender reads either through the head or from a tap of the seals, not both")
        self.root = Path(root)
        self.settings = settings
        self.encoder = encoder
        self.head = head
        self.tap = tap
        self.clock = clock
        self.client = Client(settings)
        self.min_backoff_s = MIN_BACKOFF_S
        self.max_backoff_s = MAX_BACKOFF_S
        self._status = SenderStatus(sent_through_ms=read_position(self.root, settings.url))
        self._status_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._reader: StoreReader | None = None
        self._samples_per_tick = 0
        self.tapped_requests = 0
        """Requests encoded from the tap (the rest, `read_requests`, were read from the store)."""
        self.read_requests = 0

    @property
    def status(self) -> SenderStatus:
        """A snapshot of the sender's state."""
        with self._status_lock:
            return self._status

    def _set(self, **changes: Any) -> None:
        with self._status_lock:
            before = self._status
            self._status = replace(before, **changes)
            after = self._status
        # One line per change of state or of message; retries of the same problem (whose message only
        # counts the back-off up) are not repeated.
        retries = "retrying in" in before.message and "retrying in" in after.message
        if after.state != before.state or (after.message != before.message and not retries):
            healthy = after.message.startswith("remote-write: sending to")
            log.log(logging.INFO if healthy else logging.WARNING, "%s", after.message)

    def start(self) -> None:
        """Start sending in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="remote-write", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look for something to send now rather than at the next `interval` (a seal has just landed)."""
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop: a request in flight is aborted (its batch is sent again next time); the position is kept."""
        self._stop.set()
        self._wake.set()
        self.client.abort()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.client.close()

    def _run(self) -> None:
        backoff = self.min_backoff_s
        try:
            while not self._stop.is_set():
                self._wake.clear()  # a wake from here on (a seal landing while sending) is kept
                try:
                    sent_any = self.send_once()
                except RetryLater as err:
                    if self._stop.is_set():
                        break  # a stop aborted the request: not a receiver problem
                    wait = min(self.max_backoff_s, err.after_s if err.after_s is not None else backoff)
                    self._set(state="retrying", message=f"{err} (retrying in {wait:.3g} s)",
                              failures=self.status.failures + 1)  # fmt: skip
                    backoff = min(self.max_backoff_s, backoff * 2)
                    self._stop.wait(wait)
                    continue
                except StopSending as err:
                    self._set(state="stopped", message=str(err), failures=self.status.failures + 1)
                    return
                except Exception as err:  # the store, not the receiver: said, and tried again later
                    log.exception("remote-write: reading the store failed")
                    self._set(state="retrying", message=f"remote-write: cannot read the store: {err}")
                    self._stop.wait(self.max_backoff_s)
                    continue
                backoff = self.min_backoff_s
                if not sent_any:
                    # Until the first tick is there, look often: a new recording's first frame is
                    # a second away, and its first send should not wait a whole interval more.
                    first = self.status.state == "starting" or self.status.sent_samples == 0
                    if not self._stop.is_set():  # stop() sets both: a stop while sending ends here
                        self._wake.wait(
                            min(FIRST_LOOK_S, self.settings.interval_s) if first else self.settings.interval_s
                        )
        finally:
            if self._reader is not None:
                self._reader.close()

    def send_once(self) -> bool:
        """Send the next batch of whole ticks, if any; True when something was sent (or dropped).

        Raises:
            RetryLater: no answer, or a 5xx/429: the same batch is tried again later.
            StopSending: an answer that a retry cannot change (401, 404, ...).
        """
        if self.tap is None:
            self._open_reader()  # an unreadable store: RetryLater before anything else
        position = self._start_position()
        ticks = 1  # until the first request says how many samples a tick holds
        if self._samples_per_tick:
            ticks = max(1, min(MAX_TICKS_PER_REQUEST, self.settings.batch_size // self._samples_per_tick))
        batch = self._next_batch(position, ticks)
        if batch is None:
            if self.status.state == "starting":
                self._set(state="ok", message=f"remote-write: sending to {self.settings.url}")
            return False
        hi, tables = batch
        raw, samples = self.encoder.encode(tables)
        n_ticks = _tick_count(tables)
        self._samples_per_tick = max(1, samples // max(1, n_ticks))
        body = compress(raw)
        answer = self._post(body)
        self._settle(answer, hi, samples)
        return True

    def _next_batch(self, position: int, ticks: int) -> tuple[int, dict[str, pa.Table]] | None:
        """The next `ticks` ticks after `position` (or fewer) as (the last one's time, each table's rows
        in ORDER_BY order): from the tap while it holds them, else read from the store; None: none yet."""
        if self.tap is not None:
            taken = self.tap.take(position, ticks)
            if taken is not None:
                self.tapped_requests += 1
                return taken
            if self.tap.caught_up(position):
                return None
        reader = self._open_reader()
        reader.refresh()  # the file list the relations below name: the newest manifest's
        hi = self._last_tick(reader, position, ticks)
        if hi is None:
            return None
        self.read_requests += 1
        return hi, {
            t: reader.sql(f"SELECT * FROM {reader.relation(t, position + 1, hi)} ORDER BY {ORDER_BY[t]}")
            for t in self.settings.tables
        }

    def _post(self, body: bytes) -> Answer:
        url = self.settings.url
        try:
            answer = self.client.post(body)
        except TimeoutError:
            raise RetryLater(f"remote-write: {url} did not answer in {self.settings.timeout_s:g} s") from None
        except OSError as err:
            if self._stop.is_set():
                raise RetryLater("remote-write: stopping") from None
            raise RetryLater(f"remote-write: cannot reach {url}: {_why(err)}") from None
        code = answer.status
        if code == 429 or code >= 500:
            raise RetryLater(
                f"remote-write: {code} {answer.reason} from {url}{_detail(answer)}", answer.retry_after_s
            )
        return answer

    def _settle(self, answer: Answer, hi: int, samples: int) -> None:
        """Move the position after a 2xx (or a refused batch); stop on an answer no retry can change."""
        code, url, st = answer.status, self.settings.url, self.status
        resume = f"restart to resume from {_iso(st.sent_through_ms)}" if st.sent_through_ms else "restart"
        if code in _STOP_CODES:
            hint = {
                401: "check bearer_token_file / basic_auth",
                403: "the credentials may not write here",
                404: "is this the receiver's write path, e.g. /api/v1/write?",
                405: "is this the receiver's write path, e.g. /api/v1/write?",
            }[code]
            raise StopSending(
                f"remote-write: {code} {_STOP_CODES[code]} at {url} ({hint}); "
                f"stopped, nothing dropped: {resume}"
            )
        if code == 413:
            raise StopSending(f"remote-write: 413 request too large for {url}: lower batch_size; {resume}")
        if 300 <= code < 400 or code < 200:
            raise StopSending(
                f"remote-write: {code} {answer.reason} from {url}: give the final write URL; {resume}"
            )
        if 200 <= code < 300:
            self._save(hi)
            self._set(state="ok", message=f"remote-write: sending to {url}", sent_through_ms=hi,
                      sent_samples=st.sent_samples + samples, requests=st.requests + 1)  # fmt: skip
            return
        self._save(hi)
        self._set(
            state="ok",
            message=f"remote-write: {code} {answer.reason} from {url}{_detail(answer)}; "
            f"{samples} samples dropped (refused data is not retried)",
            sent_through_ms=hi,
            dropped_samples=st.dropped_samples + samples,
            failures=st.failures + 1,
        )

    def _save(self, hi: int) -> None:
        doc = {"url": self.settings.url, "sent_through_ms": hi, "sent_through": _iso(hi)}
        write_bytes(position_path(self.root, self.settings.url), json.dumps(doc).encode() + b"\n")

    def _open_reader(self) -> StoreReader:
        if self._reader is None:
            try:
                self._reader = StoreReader(self.root, head=self.head, threads=1)
            except Exception as err:  # a store not created yet, or unreadable: said, and tried again
                raise RetryLater(f"remote-write: cannot read the store {self.root}: {err}") from None
        return self._reader

    def _start_position(self) -> int:
        """The position, moved past any backlog older than max_backlog (said once, in the log)."""
        oldest = int((self.clock() - self.settings.max_backlog_s) * 1000)
        position = self.status.sent_through_ms
        if position is None:
            self._set(sent_through_ms=oldest)
            return oldest
        if position < oldest:
            skipped = (oldest - position) / 1000
            log.warning(
                "remote-write: skipping %.0f s of backlog (%s .. %s) older than max_backlog %g s: "
                "the receiver would refuse it; it stays in the local store",
                skipped, _iso(position), _iso(oldest), self.settings.max_backlog_s,
            )  # fmt: skip
            self._set(sent_through_ms=oldest, skipped_s=self.status.skipped_s + skipped)
            return oldest
        return position

    def _last_tick(self, reader: StoreReader, position: int, ticks: int) -> int | None:
        """The time of the `ticks`-th recorded tick after `position` (or the newest, if fewer)."""
        union = " UNION ALL ".join(f"SELECT ts FROM {reader.relation(t, position + 1)}" for t in TICK_TABLES)
        found = reader.sql(
            f"SELECT max(t) AS hi FROM "
            f"(SELECT DISTINCT epoch_ms(ts) AS t FROM ({union}) ORDER BY t LIMIT {ticks})"
        ).column("hi")[0]
        return None if found.as_py() is None else int(found.as_py())


def _tick_count(tables: dict[str, pa.Table]) -> int:
    stamps: set[Any] = set()
    for t in TICK_TABLES:
        if t in tables and tables[t].num_rows:
            stamps.update(tables[t].column("ts").unique().to_pylist())
    return len(stamps)


def _detail(answer: Answer) -> str:
    first = answer.body.strip().splitlines()[0][:200] if answer.body.strip() else ""
    return f": {first}" if first else ""


def _why(err: OSError) -> str:
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    text = err.strerror or str(err) or type(err).__name__
    return text
