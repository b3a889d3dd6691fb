"""One simulated GPU's 18 NVLink 5 links: per-link state, throughput counters and error counters."""

from __future__ import annotations

import random
from typing import Literal

from collectors.rack import COMPUTE_TRAYS, LINK_MBPS, LINKS_PER_GPU

NvlinkTotal = Literal["ok", "zero", "not-supported"]
"""How one GPU's all-links throughput fields answer: the sum of the links, 0, or NVML_ERROR_NOT_SUPPORTED
(NVIDIA's own mock NVML answers the last two while its per-link counters move)."""
RackNvlinkTotal = Literal["mixed", "ok", "zero", "not-supported"]
"""A rack's choice: one NvlinkTotal for every tray, or "mixed": some trays NOT_SUPPORTED, the rest ok."""
NVLINK_TOTAL_MODES: tuple[RackNvlinkTotal, ...] = ("mixed", "ok", "zero", "not-supported")
MIXED_UNSUPPORTED_TRAYS = 6
"""Trays of a "mixed" rack whose all-link total answers NOT_SUPPORTED (a third: both paths in every run)."""


def total_modes_by_tray(
    mode: RackNvlinkTotal, seed: int, trays: int = COMPUTE_TRAYS
) -> dict[int, NvlinkTotal]:
    """Compute tray 1..trays -> how its GPUs answer the all-links total; "mixed" picks trays by seed."""
    if mode != "mixed":
        return dict.fromkeys(range(1, trays + 1), mode)
    unsupported = set(
        random.Random(f"nvlink-total-{seed}").sample(range(1, trays + 1), MIXED_UNSUPPORTED_TRAYS)
    )
    return {t: "not-supported" if t in unsupported else "ok" for t in range(1, trays + 1)}


LINK_KIB_S_MAX = LINK_MBPS * 1_000_000 / 1024
"""The per-link, per-direction ceiling (53,125 MB/s) in KiB/s, the unit of NVML's throughput fields."""

RAW_OVERHEAD = 1.06
"""RAW (fields 140/141) counts protocol headers on top of the DATA payload (138/139)."""


class LinkSet:
    """The 18 links of one GPU.

    Throughput is kept as one aggregate counter per direction plus a static share per link, so a rack
    step costs O(1) per GPU instead of O(18): a link's counter is its base plus its share of what the
    aggregate gained since the last rebase. Shares change only when a link goes down (its traffic then
    moves to the others), which rebases every link first so no counter ever goes back.

    Reads are continuous in time, as a real link's byte counter is: `phase` (0..1, set by the rack to
    how far the read time lies past the last step) places a read between the previous step's counters
    and the current ones (one step behind, so no read ever needs a step not yet taken). Counters that
    jumped a whole step at the step boundary made a reader whose tick straddled the boundary see no
    traffic in one interval and two intervals' worth in the next: 0, then 2x, on a steady link.
    """

    __slots__ = (
        "_base_rx",
        "_base_tx",
        "_mark_rx",
        "_mark_tx",
        "_prev_rx",
        "_prev_tx",
        "_reloaded_rx",
        "_reloaded_tx",
        "_shares",
        "_weights",
        "active",
        "phase",
        "rcv_errors",
        "recovery",
        "recovery_failed",
        "recovery_ok",
        "rx_kib",
        "symbol_errors",
        "total_mode",
        "tx_kib",
    )

    def __init__(self, rng: random.Random, base_kib: float) -> None:
        """Links all up, with a small static per-link imbalance and counters starting at `base_kib`."""
        self._weights = [1.0 + 0.03 * (rng.random() - 0.5) * 2 for _ in range(LINKS_PER_GPU)]
        self.active = [True] * LINKS_PER_GPU
        self.tx_kib = base_kib
        self.rx_kib = base_kib * (1.0 + 0.002 * rng.random())
        self._shares = self._normalised()
        self._base_tx = [self.tx_kib * s for s in self._shares]
        self._base_rx = [self.rx_kib * s for s in self._shares]
        self._mark_tx = self.tx_kib
        self._mark_rx = self.rx_kib
        self._prev_tx = self.tx_kib
        self._prev_rx = self.rx_kib
        self._reloaded_tx = self._reloaded_rx = 0.0
        self.phase = 0.0
        self.total_mode: NvlinkTotal = "ok"
        self.symbol_errors = [0] * LINKS_PER_GPU
        self.rcv_errors = [0] * LINKS_PER_GPU
        self.recovery = [0] * LINKS_PER_GPU
        self.recovery_ok = [0] * LINKS_PER_GPU
        self.recovery_failed = [0] * LINKS_PER_GPU

    def _normalised(self) -> list[float]:
        total = sum(w for w, up in zip(self._weights, self.active, strict=True) if up)
        return [w / total if up else 0.0 for w, up in zip(self._weights, self.active, strict=True)]

    @property
    def up_count(self) -> int:
        """Links in NVML_NVLINK_STATE_ACTIVE."""
        return sum(self.active)

    def capacity_kib_s(self) -> float:
        """The most the active links can carry per direction, KiB/s."""
        return self.up_count * LINK_KIB_S_MAX * min(self._shares_balance(), 1.0)

    def _shares_balance(self) -> float:
        # The busiest link saturates first: scale the aggregate ceiling by the imbalance.
        top = max(self._shares)
        return 1.0 / (top * self.up_count) if top > 0 else 0.0

    def begin_step(self) -> None:
        """A new step starts: the counters so far become the ones reads start from."""
        self._prev_tx = self.tx_kib
        self._prev_rx = self.rx_kib

    def carry(self, tx_kib: float, rx_kib: float) -> None:
        """Add one step's aggregate traffic (already limited to capacity)."""
        self.tx_kib += tx_kib
        self.rx_kib += rx_kib

    def link_tx(self, link: int) -> float:
        """Cumulative DATA KiB sent on `link` at the end of the current step."""
        return self._base_tx[link] + self._shares[link] * (self.tx_kib - self._mark_tx)

    def link_rx(self, link: int) -> float:
        """Cumulative DATA KiB received on `link` at the end of the current step."""
        return self._base_rx[link] + self._shares[link] * (self.rx_kib - self._mark_rx)

    def read_tx(self) -> float:
        """The aggregate DATA KiB sent, as a read at `phase` sees it."""
        return self._prev_tx + (self.tx_kib - self._prev_tx) * self.phase

    def read_rx(self) -> float:
        """The aggregate DATA KiB received, as a read at `phase` sees it."""
        return self._prev_rx + (self.rx_kib - self._prev_rx) * self.phase

    def read_link_tx(self, link: int) -> float:
        """DATA KiB sent on `link`, as a read at `phase` sees it."""
        return self._base_tx[link] + self._shares[link] * (self.read_tx() - self._mark_tx)

    def read_link_rx(self, link: int) -> float:
        """DATA KiB received on `link`, as a read at `phase` sees it."""
        return self._base_rx[link] + self._shares[link] * (self.read_rx() - self._mark_rx)

    def carried_kib(self) -> float:
        """Ground truth: DATA KiB carried, sent plus received, as a read now sees it, counting what the
        counters carried before a driver reload set them back to 0."""
        return self._reloaded_tx + self._reloaded_rx + self.read_tx() + self.read_rx()

    def reload(self) -> None:
        """A driver reload: every throughput and error counter of every link starts again from 0.

        Call it between steps or at the start of one (before begin_step): reads after it count from 0.
        """
        self._reloaded_tx += self.tx_kib
        self._reloaded_rx += self.rx_kib
        self.tx_kib = self.rx_kib = 0.0
        self._prev_tx = self._prev_rx = self._mark_tx = self._mark_rx = 0.0
        self._base_tx = [0.0] * LINKS_PER_GPU
        self._base_rx = [0.0] * LINKS_PER_GPU
        for counters in (
            self.symbol_errors,
            self.rcv_errors,
            self.recovery,
            self.recovery_ok,
            self.recovery_failed,
        ):
            counters[:] = [0] * LINKS_PER_GPU

    def set_active(self, link: int, up: bool) -> None:
        """Bring a link down or up; its traffic share moves to (or back from) the other links."""
        if self.active[link] == up:
            return
        self._base_tx = [self.link_tx(k) for k in range(LINKS_PER_GPU)]
        self._base_rx = [self.link_rx(k) for k in range(LINKS_PER_GPU)]
        self._mark_tx = self._prev_tx = self.tx_kib
        self._mark_rx = self._prev_rx = self.rx_kib
        self.active[link] = up
        self._shares = self._normalised() if any(self.active) else [0.0] * LINKS_PER_GPU

    def recover(self, link: int, *, failed: bool) -> None:
        """Count one Up -> recovery transition, ending Up again or declared down."""
        self.recovery[link] += 1
        if failed:
            self.recovery_failed[link] += 1
        else:
            self.recovery_ok[link] += 1
