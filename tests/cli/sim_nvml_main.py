"""`python -m tests.cli.sim_nvml_main ARGS...`: the real `monitor` console entry point on a simulated driver.

Only the GPU driver is simulated: before the CLI starts, a SimRack's host (env SIM_NVML_HOST: "hgx" for an
8-GPU H100 board without platform info, "tray:N" for GB300 compute tray N; SIM_NVML_SEED, default 0) is put
in place of the `pynvml` module, as tests/cli/test_doctor_nvml.py does in-process. The collector modules
bind the real pynvml first, for its constants and structs, exactly as they would on a GPU host.
"""

from __future__ import annotations

import os
import sys

import collectors.nvml  # noqa: F401  (bind the real pynvml in every collector module before the swap)
from collectors.sim import SimRack


def sim_host(spec: str, seed: int) -> object:
    """The pynvml stand-in named by `spec` ('hgx' or 'tray:N') over a wall-clock SimRack."""
    rack = SimRack(seed=seed)
    if spec == "hgx":
        return rack.hgx_host()
    kind, _, number = spec.partition(":")
    if kind != "tray" or not number.isdigit():
        raise SystemExit(f"SIM_NVML_HOST must be 'hgx' or 'tray:N', not {spec!r}")
    return rack.tray_of(int(number))


if __name__ == "__main__":
    sys.modules["pynvml"] = sim_host(os.environ["SIM_NVML_HOST"], int(os.environ.get("SIM_NVML_SEED", "0")))
    from monitor.cli import main

    sys.argv = ["monitor", *sys.argv[1:]]
    main()
