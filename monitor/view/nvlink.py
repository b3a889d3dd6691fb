"""NVLink, one computation: per-link rates, and the per-GPU, per-switch-chip and rack sums of those rates.

Every NVLink figure the monitor shows comes from `nvlink_rates`: the header's rack total, the heatmap's
per-GPU metric, the switch trays, the `l` matrix and its column totals, the GPU detail's links and its
chart, live and in replay. Each (gpu, link, direction) counter is its own series: its increase between
two frames follows the one reset rule (storage.increase), over the time between the two samples,
and only then are rates summed, so the rack total equals the sum over GPUs and the sum over switch chips
(link k of every GPU lands on switch chip k) by construction. The GPU table's all-link counters are not
used here: NVML's total field can answer 0 or NOT_SUPPORTED while the links count.

A per-direction rate above the link's line rate cannot be real (a counter glitch, a bad sample time):
it is flagged implausible, shown as such, and left out of every sum, which then says how many links it
leaves out. The matrix model below also tracks error growth and 'climbing' links: error counters (rx,
symbol, recovery) that grow in several samples of the window while the link is still up, the warning
before a link goes down (marin-community/marin#9086). No UI toolkit here.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow.compute as pc

from collectors.rack import CHIPS_PER_SWITCH_TRAY, GPUS, LINK_MBPS, LINKS_PER_GPU, SWITCH_TRAYS
from monitor.view.metrics import fmt_rate
from storage.frame import Frame
from storage.increase import step
from storage.schemas import NVLINK_ERRORS

KIB = 1024
NVLINK_INACTIVE = 0
"""NVML_NVLINK_STATE_INACTIVE: the link is down."""
LINK_ERROR_COLUMNS = NVLINK_ERRORS
CLIMBING_SAMPLES = 3
"""A link is climbing when its error counters grew in at least this many samples of the window."""
LINE_GBPS = LINK_MBPS / 1000
"""One link's line rate per direction in GB/s (NVLink 5: 53.125, what nvidia-smi reports)."""
LINK_MAX_GBPS = 2 * LINE_GBPS
"""One link's TX+RX ceiling in GB/s (106.25)."""
_N = GPUS * LINKS_PER_GPU


@dataclass(frozen=True, slots=True)
class LinkFrame:
    """One frame's nvlink rows, keyed gpu * 18 + link (only the links the frame has)."""

    ts_ms: int
    state: dict[int, int | None]
    tx: dict[int, int | None]
    rx: dict[int, int | None]
    errors: dict[int, tuple[int | None, ...]]
    """Per link, its error counters in LINK_ERROR_COLUMNS order."""


def link_key(gpu: int, link: int) -> int | None:
    """The key of link `link` of rack GPU `gpu` (gpu * 18 + link); None for a row outside the rack."""
    if not (0 <= gpu < GPUS and 0 <= link < LINKS_PER_GPU):
        return None
    return gpu * LINKS_PER_GPU + link


def link_frame(frame: Frame, gpu: int | None = None) -> LinkFrame | None:
    """A frame's nvlink rows (only GPU `gpu`'s when given); None when the frame has none."""
    nv = frame.batches.get("nvlink")
    if nv is None or not nv.num_rows:
        return None
    if gpu is not None:
        nv = nv.filter(pc.equal(nv.column("gpu"), gpu))
        if not nv.num_rows:
            return None
    state: dict[int, int | None] = {}
    tx: dict[int, int | None] = {}
    rx: dict[int, int | None] = {}
    errors: dict[int, tuple[int | None, ...]] = {}
    cols = nv.select(["gpu", "link", "state", "tx_kib", "rx_kib", *LINK_ERROR_COLUMNS]).to_pydict()
    for g, link, s, t, r, *errs in zip(*cols.values(), strict=True):
        i = link_key(g, link)
        if i is None:
            continue
        state[i], tx[i], rx[i], errors[i] = s, t, r, tuple(errs)
    return LinkFrame(frame.ts_ms, state, tx, rx, errors)


def direction_gbps(old: int | None, new: int | None, dt_ms: int) -> float | None:
    """One direction's rate in GB/s (decimal, as link speeds are quoted) from two KiB counter samples."""
    inc = step(old, new)
    if inc is None or dt_ms <= 0:
        return None
    return inc * KIB / (dt_ms / 1000) / 1e9


@dataclass(frozen=True, slots=True)
class NvlinkRates:
    """NVLink rates between two frames: per link, and its sums per GPU, per switch chip and rack.

    Attributes:
        dt_ms: the time between the two samples.
        links: TX+RX GB/s of each link with a plausible rate (key gpu * 18 + link).
        implausible: links whose rate in either direction exceeds the line rate (left out of every sum).
        gpu_gbps: per GPU, the sum of its links' rates (None: no link of it has a rate).
        chip_gbps: per switch chip k, the sum of link k over the GPUs (None: none has a rate).
        rack_gbps: the sum over GPUs (None when no link has a rate).
        gpus: GPUs with at least one link rate: what the rack total covers.
    """

    dt_ms: int
    links: dict[int, float]
    implausible: frozenset[int]
    gpu_gbps: tuple[float | None, ...]
    chip_gbps: tuple[float | None, ...]
    rack_gbps: float | None
    gpus: int

    @property
    def rack_tbps(self) -> float | None:
        """The rack total in TB/s."""
        return None if self.rack_gbps is None else self.rack_gbps / 1000

    def tray_gbps(self, tray: int) -> float | None:
        """Switch tray `tray` (0-based): the sum of its chips."""
        chips = self.chip_gbps[tray * CHIPS_PER_SWITCH_TRAY : (tray + 1) * CHIPS_PER_SWITCH_TRAY]
        known = [c for c in chips if c is not None]
        return sum(known) if known else None

    def gpu_implausible(self, gpu: int) -> int:
        """Links of `gpu` left out of its sum as implausible."""
        return sum(1 for i in self.implausible if i // LINKS_PER_GPU == gpu)


def rack_nvlink_text(rates: NvlinkRates, of: int = GPUS) -> str:
    """'0.90 TB/s', plus what it leaves out: '(71/72 GPUs)', '(2 links implausible, left out)'.

    Args:
        of: the GPUs the total should cover (the rack's 72, or the host's own in local mode).
    """
    text = "--" if rates.rack_tbps is None else f"{fmt_rate(rates.rack_tbps).strip()}"
    text += " TB/s"
    if rates.rack_tbps is not None and rates.gpus < of:
        text += f" ({rates.gpus}/{of} GPUs)"
    if rates.implausible:
        n = len(rates.implausible)
        text += f" ({n} link{'s' if n != 1 else ''} implausible, left out)"
    return text


def nvlink_rates(old: LinkFrame, new: LinkFrame) -> NvlinkRates:
    """The rates between two frames' nvlink rows (old before new), each direction rated, then link_sums."""
    dt = new.ts_ms - old.ts_ms
    per_link: dict[int, tuple[float, float]] = {}
    for i, tx in new.tx.items():
        if i not in old.tx:
            continue
        up = direction_gbps(old.tx[i], tx, dt)
        down = direction_gbps(old.rx.get(i), new.rx.get(i), dt)
        if up is not None and down is not None:
            per_link[i] = (up, down)
    return link_sums(per_link, dt)


def link_sums(per_link: Mapping[int, tuple[float, float]], dt_ms: int) -> NvlinkRates:
    """The one rule from per-link rates to every NVLink figure: per link, GPU, switch chip and rack.

    A link's figure is TX+RX, the sum of its two directions, as the header and nvidia-smi's per-link
    view show it and as NVIDIA quotes NVLink bandwidth (1.8 TB/s per GB300 GPU is 18 links x 2
    directions x 50 GB/s; 130 TB/s per NVL72 is 72 such GPUs), so a rack figure reads against the
    rack's rated NVLink bandwidth. A link with either direction above the line rate is implausible
    and left out of every sum. Live views pass the rates between two frames; report, report.html and
    snapshot each series' rate over a window (monitor.report_nvlink).

    Args:
        per_link: per link (key gpu * 18 + link), its (TX, RX) rate in GB/s; only links with both.
        dt_ms: the time the rates are over.
    """
    links: dict[int, float] = {}
    implausible: set[int] = set()
    gpu_sum: list[float | None] = [None] * GPUS
    chip_sum: list[float | None] = [None] * LINKS_PER_GPU
    for i, (up, down) in per_link.items():
        if up > LINE_GBPS or down > LINE_GBPS:
            implausible.add(i)
            continue
        both = links[i] = up + down
        g, k = divmod(i, LINKS_PER_GPU)
        gpu_sum[g] = (gpu_sum[g] or 0.0) + both
        chip_sum[k] = (chip_sum[k] or 0.0) + both
    known = [v for v in gpu_sum if v is not None]
    return NvlinkRates(
        dt_ms=dt_ms,
        links=links,
        implausible=frozenset(implausible),
        gpu_gbps=tuple(gpu_sum),
        chip_gbps=tuple(chip_sum),
        rack_gbps=sum(known) if known else None,
        gpus=len(known),
    )


def error_growth(old: LinkFrame, new: LinkFrame) -> dict[int, int]:
    """Links whose error counters grew between two frames, with the growth (sparse: most are clean).

    Each counter is its own series (a reset of one is not growth of the others)."""
    out: dict[int, int] = {}
    for i, errs in new.errors.items():
        before = old.errors.get(i)
        if before is None or before == errs:
            continue
        grown = int(sum(step(a, b) or 0 for a, b in zip(before, errs, strict=True)))
        if grown:
            out[i] = grown
    return out


@dataclass(frozen=True, slots=True)
class LinkView:
    """One link of one GPU.

    Attributes:
        state: NVML_NVLINK_STATE_* of the newest row (None: no row, e.g. the GPU is lost or stale).
        gbps: TX+RX over the newest pair of frames (None when not computable or implausible).
        errors: error-counter growth within the window (None without two samples).
        climbing: samples of the window in which the error counters grew.
        implausible: the newest rate exceeded the line rate (shown as such, not as a number).
    """

    state: int | None
    gbps: float | None
    errors: int | None
    climbing: int
    implausible: bool = False

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
    implausible: int = 0
    """Links of this column left out of `gbps` as implausible."""


@dataclass(frozen=True, slots=True)
class NvlinkMatrix:
    """The whole matrix at one moment."""

    ts_ms: int | None
    window_s: float
    links: tuple[LinkView, ...]
    columns: tuple[LinkColumn, ...]
    rates: NvlinkRates | None = None
    """The newest pair's rates (the sums the header and heatmap show too)."""

    @classmethod
    def empty(cls, window_s: float = 60.0) -> NvlinkMatrix:
        """Before any frame: no data anywhere."""
        blank = LinkView(None, None, None, 0)
        cols = tuple(LinkColumn(k, None, 0, 0, 0, 0) for k in range(LINKS_PER_GPU))
        return cls(None, window_s, (blank,) * _N, cols)

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


class NvlinkBuilder:
    """Builds NvlinkMatrix from the newest frames, caching each frame's rows and each pair's growth."""

    def __init__(self, *, window_s: float = 60.0, interval_ms: int = 1000, gpu: int | None = None) -> None:
        """Errors and climbing over `window_s`; frames_needed() assumes frames `interval_ms` apart.

        With `gpu`, only that GPU's links are read (the detail view's cheap path); the rest read as no data.
        """
        self.window_s = window_s
        self.window_ms = int(window_s * 1000)
        self.interval_ms = interval_ms
        self.gpu = gpu
        self._frames: dict[int, LinkFrame] = {}
        self._pairs: dict[tuple[int, int], dict[int, int]] = {}

    def frames_needed(self) -> int:
        """The window's frames plus one (the first pair needs a predecessor)."""
        return max(2, self.window_ms // max(1, self.interval_ms) + 1)

    def build(self, frames: Sequence[Frame]) -> NvlinkMatrix:
        """The matrix at the newest of `frames` (oldest first) that carries nvlink rows."""
        with_links: list[LinkFrame] = []
        for f in frames:
            cached = self._frames.get(f.ts_ms) or link_frame(f, self.gpu)
            if cached is not None:
                with_links.append(cached)
        if not with_links:
            return NvlinkMatrix.empty(self.window_s)
        newest = with_links[-1]
        with_links = [s for s in with_links if s.ts_ms >= newest.ts_ms - self.window_ms]
        self._frames = {s.ts_ms: s for s in with_links}
        pairs: dict[tuple[int, int], dict[int, int]] = {}
        for a, b in itertools.pairwise(with_links):
            key = (a.ts_ms, b.ts_ms)
            pairs[key] = self._pairs.get(key) or error_growth(a, b)
        self._pairs = pairs
        errors: dict[int, int] = {}
        climbing: dict[int, int] = {}
        for growth in pairs.values():
            for i, g in growth.items():
                errors[i] = errors.get(i, 0) + g
                climbing[i] = climbing.get(i, 0) + 1
        prev = with_links[-2] if len(with_links) > 1 else None
        rates = nvlink_rates(prev, newest) if prev is not None else None
        links = tuple(
            LinkView(
                newest.state.get(i),
                rates.links.get(i) if rates else None,
                errors.get(i, 0) if prev is not None and i in newest.errors else None,
                climbing.get(i, 0),
                rates is not None and i in rates.implausible,
            )
            for i in range(_N)
        )
        return NvlinkMatrix(newest.ts_ms, self.window_s, links, _columns(links, rates), rates)


def _columns(links: Sequence[LinkView], rates: NvlinkRates | None) -> tuple[LinkColumn, ...]:
    cols = []
    for k in range(LINKS_PER_GPU):
        column = links[k::LINKS_PER_GPU]
        cols.append(
            LinkColumn(
                link=k,
                gbps=rates.chip_gbps[k] if rates else None,
                down=sum(v.down for v in column),
                flagged=sum(v.flagged for v in column),
                errors=sum(v.errors or 0 for v in column),
                reporting=sum(v.state is not None for v in column),
                implausible=sum(v.implausible for v in column),
            )
        )
    return tuple(cols)


def gpu_nvlink_series(frames: Sequence[Frame], gpu: int) -> list[tuple[int, float | None]]:
    """One GPU's TX+RX GB/s at each frame (oldest first) from its frame and the one before: its chart."""
    out: list[tuple[int, float | None]] = []
    prev: LinkFrame | None = None
    for frame in frames:
        cur = link_frame(frame, gpu)
        gbps = None
        if cur is not None and prev is not None and cur.ts_ms > prev.ts_ms:
            gbps = nvlink_rates(prev, cur).gpu_gbps[gpu]
        if cur is not None:
            prev = cur
        out.append((frame.ts_ms, gbps))
    return out


__all__ = [
    "CLIMBING_SAMPLES",
    "LINE_GBPS",
    "LINK_MAX_GBPS",
    "SWITCH_TRAYS",
    "LinkColumn",
    "LinkFrame",
    "LinkView",
    "NvlinkBuilder",
    "NvlinkMatrix",
    "NvlinkRates",
    "error_growth",
    "gpu_nvlink_series",
    "link_frame",
    "link_key",
    "link_sums",
    "nvlink_rates",
    "rack_nvlink_text",
]
