"""How the NVML collector reacts to each NVML error: stop asking, mark the GPU lost, or retry next tick."""

from __future__ import annotations

from enum import Enum

import pynvml


class Outcome(Enum):
    """What one failed NVML call or field means for the collector."""

    UNSUPPORTED = "unsupported"
    """The answer will never come (not supported, no permission, driver older than the binding): remember
    it per (GPU, call) and never ask again; the column stays null."""
    LOST = "lost"
    """The GPU fell off the bus: one LOST row and gpu_lost event; only a back-off probe calls it again
    (collectors.nvml_recovery), and a GPU that answers then gets a gpu_recovered event."""
    RETRY = "retry"
    """Anything else (UNKNOWN, TIMEOUT, NO_DATA, NOT_READY...): null this tick, ask again next tick."""


UNSUPPORTED_CODES = frozenset(
    {
        pynvml.NVML_ERROR_NOT_SUPPORTED,
        pynvml.NVML_ERROR_FUNCTION_NOT_FOUND,
        pynvml.NVML_ERROR_NO_PERMISSION,
    }
)
LOST_CODES = frozenset({pynvml.NVML_ERROR_GPU_IS_LOST})

_CODE_NAMES = {
    getattr(pynvml, name): name.removeprefix("NVML_ERROR_")
    for name in dir(pynvml)
    if name.startswith("NVML_ERROR_") and isinstance(getattr(pynvml, name), int)
}


def outcome_of_code(code: int) -> Outcome:
    """The outcome of an nvmlReturn code (a whole call's or one field value's)."""
    if code in UNSUPPORTED_CODES:
        return Outcome.UNSUPPORTED
    if code in LOST_CODES:
        return Outcome.LOST
    return Outcome.RETRY


def outcome_of(exc: BaseException) -> Outcome:
    """The outcome of an exception raised by a pynvml call (NVMLError or NVMLLibraryMismatchError)."""
    if isinstance(exc, pynvml.NVMLLibraryMismatchError):
        return Outcome.UNSUPPORTED
    if isinstance(exc, pynvml.NVMLError):
        return outcome_of_code(exc.value)
    return Outcome.RETRY


def code_name(code: int) -> str:
    """'GPU_IS_LOST' for 15, 'UNKNOWN' for 999, or the number for a code pynvml does not know."""
    return _CODE_NAMES.get(code, str(code))


def error_name(exc: BaseException) -> str:
    """A short name for an NVML exception, for event details and `monitor doctor`."""
    if isinstance(exc, pynvml.NVMLError):
        return code_name(exc.value)
    return type(exc).__name__


NVML_EXCEPTIONS: tuple[type[BaseException], ...] = (pynvml.NVMLError, pynvml.NVMLLibraryMismatchError)
"""What a pynvml call raises for a driver answer (rather than a bug in the caller)."""
