"""The NVLink matrix view model: 72 GPUs x 18 links, per-link rates, error growth, down and 'climbing' links.

Link k of every GPU lands on switch chip k, so the per-link column totals are per switch chip: a chip
in trouble reads as one column. A link whose error counters (rx, symbol, recovery) grow in several
separate samples of the window is flagged as climbing while it is still up: the warning that comes
before the link goes down (marin-community/marin#9086). No UI toolkit here.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from collectors.rack import GPUS, LINK_MBPS, LINKS_PER_GPU
from monitor.view.builder import KIB, LINK_ERROR_COLUMNS, counter_delta, counter_increase
from storage.frame import Frame

NVLINK_INACTIVE = 0
"""NVML_NVLINK_STATE_INACTIVE: the link is down."""
CLIMBING_SAMPLES = 3
"""A link is climbing when its error counters grew in at least this many samples of the window."""
LINK_MAX_GBPS = 2 * LINK_MBPS / 1000
"""One link's TX+RX ceiling in GB/s (106.25)."""

_Links = tuple[tuple[int | None, ...], tuple[int | None, ...], tuple[int | None, ...], tuple[int | None, ...]]
"""Per frame: states, tx KiB, rx KiB, summed error counters; each indexed gpu * 18 + link."""


@dataclass(frozen=True, slots=True)
class LinkView:
    """One link of one GPU.

    Attributes:
        state: NVML_NVLINK_STATE_* of the newest row (None: no row, e.g. the GPU is lost or stale).
        gbps: TX+RX over the newest pair of frames (None when not computable).
        errors: error-counter growth within the window (None without two samples).
        climbing: samples of the window in which the error counters grew.
    """

    state: int | None
    gbps: float | None
    errors: int | None
    climbing: int

    @property
    def down(self) -> bool:
        """The link reports inactive."""
        return self.state == NVLINK_INACTIVE

    @property
    def flagged(self) -> bool:
        """Up, but its error counters keep climbing: likely to go down."""
        return not self.down and self.climbing >= CLIMBING_SAMPLES


@dataclass(frozen=True, slots=True)
class LinkColumn:
    """Link k of every GPU, i.e. switch chip k: totals over the 72 GPUs."""

    link: int
    gbps: float | None
    down: int
    flagged: int
    errors: int
    reporting: int
    """GPUs with a row for this link in the newest frame."""


@dataclass(frozen=True, slots=True)
class NvlinkMatrix:
    """The whole matrix at one moment."""

    ts_ms: int | None
    window_s: float
    links: tuple[LinkView, ...]
    columns: tuple[LinkColumn, ...]

    @classmethod
    def empty(cls, window_s: float = 60.0) -> NvlinkMatrix:
        """Before any frame: no data anywhere."""
        blank = LinkView(None, None, None, 0)
        cols = tuple(LinkColumn(k, None, 0, 0, 0, 0) for k in range(LINKS_PER_GPU))
        return cls(None, window_s, (blank,) * (GPUS * LINKS_PER_GPU), cols)

    def link(self, gpu: int, link: int) -> LinkView:
        """Link `link` of rack GPU `gpu`."""
        return self.links[gpu * LINKS_PER_GPU + link]

    def gpu_links(self, gpu: int) -> tuple[LinkView, ...]:
        """The 18 links of one GPU."""
        return self.links[gpu * LINKS_PER_GPU : (gpu + 1) * LINKS_PER_GPU]

    @property
    def down(self) -> int:
        """Links down in the rack."""
        return sum(c.down for c in self.columns)

    @property
    def flagged(self) -> int:
        """Links flagged as climbing in the rack."""
        return sum(c.flagged for c in self.columns)


def summarise_links(frame: Frame) -> _Links | None:
    """One frame's nvlink rows as flat per-link tuples; None when the frame has no nvlink table."""
    nv = frame.batches.get("nvlink")
    if nv is None or not nv.num_rows:
        return None
    n = GPUS * LINKS_PER_GPU
    state: list[int | None] = [None] * n
    tx: list[int | None] = [None] * n
    rx: list[int | None] = [None] * n
    err: list[int | None] = [None] * n
    cols = nv.select(["gpu", "link", "state", "tx_kib", "rx_kib", *LINK_ERROR_COLUMNS]).to_pydict()
    for g, link, s, t, r, *errs in zip(*cols.values(), strict=True):
        if not (0 <= g < GPUS and 0 <= link < LINKS_PER_GPU):
            continue
        i = g * LINKS_PER_GPU + link
        state[i], tx[i], rx[i] = s, t, r
        known = [e for e in errs if e is not None]
        err[i] = sum(known) if known else None
    return tuple(state), tuple(tx), tuple(rx), tuple(err)


def error_growth(old: _Links, new: _Links) -> dict[int, int]:
    """Links whose error counters grew between two frames, with the growth (sparse: most links are clean)."""
    out: dict[int, int] = {}
    for i, (a, b) in enumerate(zip(old[3], new[3], strict=True)):
        if a is not None and b is not None and a != b:
            grown = counter_increase(a, b)
            if grown:
                out[i] = grown
    return out


class NvlinkBuilder:
    """Builds NvlinkMatrix from the newest frames, caching each frame's summary and each pair's growth."""

    def __init__(self, *, window_s: float = 60.0, interval_ms: int = 1000) -> None:
        """Errors and climbing over `window_s`; frames_needed() assumes frames `interval_ms` apart."""
        self.window_s = window_s
        self.window_ms = int(window_s * 1000)
        self.interval_ms = interval_ms
        self._frames: dict[int, _Links] = {}
        self._pairs: dict[tuple[int, int], dict[int, int]] = {}

    def frames_needed(self) -> int:
        """The window's frames plus one (the first pair needs a predecessor)."""
        return max(2, self.window_ms // max(1, self.interval_ms) + 1)

    def build(self, frames: Sequence[Frame]) -> NvlinkMatrix:
        """The matrix at the newest of `frames` (oldest first) that carries nvlink rows."""
        with_links: list[tuple[int, _Links]] = []
        for f in frames:
            cached = self._frames.get(f.ts_ms)
            if cached is None:
                summary = summarise_links(f)
                if summary is None:
                    continue
                cached = summary
            with_links.append((f.ts_ms, cached))
        if not with_links:
            return NvlinkMatrix.empty(self.window_s)
        newest_ts, newest = with_links[-1]
        with_links = [(ts, s) for ts, s in with_links if ts >= newest_ts - self.window_ms]
        self._frames = dict(with_links)
        pairs = []
        for (ta, a), (tb, b) in itertools.pairwise(with_links):
            growth = self._pairs.get((ta, tb))
            if growth is None:
                growth = error_growth(a, b)
            pairs.append(((ta, tb), growth))
        self._pairs = dict(pairs)
        errors: dict[int, int] = {}
        climbing: dict[int, int] = {}
        for _, growth in pairs:
            for i, g in growth.items():
                errors[i] = errors.get(i, 0) + g
                climbing[i] = climbing.get(i, 0) + 1
        prev = with_links[-2] if len(with_links) > 1 else None
        dt_ms = newest_ts - prev[0] if prev is not None else 0
        links = tuple(
            _link(i, newest, prev[1] if prev else None, dt_ms, errors.get(i, 0), climbing.get(i, 0))
            for i in range(GPUS * LINKS_PER_GPU)
        )
        return NvlinkMatrix(newest_ts, self.window_s, links, _columns(links))


def _link(i: int, newest: _Links, prev: _Links | None, dt_ms: int, errors: int, climbing: int) -> LinkView:
    """Link i (gpu * 18 + link) from the newest frame, its predecessor and the window's growth."""
    state = newest[0][i]
    gbps = None
    if prev is not None and state is not None and dt_ms > 0:
        dtx = counter_delta(prev[1][i], newest[1][i])
        drx = counter_delta(prev[2][i], newest[2][i])
        if dtx is not None and drx is not None:
            gbps = (dtx + drx) * KIB / (dt_ms / 1000) / 1e9
    known = prev is not None and newest[3][i] is not None
    return LinkView(state, gbps, errors if known else None, climbing)


def _columns(links: Sequence[LinkView]) -> tuple[LinkColumn, ...]:
    cols = []
    for k in range(LINKS_PER_GPU):
        column = links[k::LINKS_PER_GPU]
        rates = [v.gbps for v in column if v.gbps is not None]
        cols.append(
            LinkColumn(
                link=k,
                gbps=sum(rates) if rates else None,
                down=sum(v.down for v in column),
                flagged=sum(v.flagged for v in column),
                errors=sum(v.errors or 0 for v in column),
                reporting=sum(v.state is not None for v in column),
            )
        )
    return tuple(cols)
