"""Metric names, labels and units of the `monitor agent` page (a tray's /metrics).

A DCGM name is used only where DCGM's field reads the same NVML source with the same meaning and
unit (DCGM's dcgmlib/dcgm_fields.h and DcgmCacheManager.cpp, NVIDIA/DCGM; dcgm-exporter's
etc/default-counters.csv for the Prometheus type), so dashboards and alerts written for dcgm-exporter
read the agent's page unchanged. Everything else is a `rackmon_*` name. The table of every family,
its unit, NVML source and upstream definition (and where it could not be confirmed) is
docs/agent-metrics.md; tests/net/test_agent_counters.py holds it equal to the page.

Labels are dcgm-exporter's: `gpu` (the tray-local NVML index), `UUID`, `pci_bus_id`, `device`,
`modelName`, `Hostname`. Byte counters are exported in bytes (Prometheus base unit) although NVML and
the store count KiB, which is exact both ways (x1024).

Counters never go backwards within one agent process (collectors.mappings.agent_page.CounterCarry):
NVML's counters restart from 0 when the GPU is reset or the driver reloaded, and the agent carries the
pre-reset total on top. Each GPU metric maps to one column of the store's `gpu` table: page value =
column value x scale.
"""

from __future__ import annotations

from dataclasses import dataclass

# Labels (dcgm-exporter's spelling; `Hostname` is what dcgm-exporter <= 4.5.3-4.8.2 writes).
LABEL_GPU = "gpu"
LABEL_UUID = "UUID"
LABEL_PCI_BUS_ID = "pci_bus_id"
LABEL_DEVICE = "device"
LABEL_MODEL = "modelName"
LABEL_HOSTNAME = "Hostname"
LABEL_LINK = "link"
"""NVLink index 0..17 on per-link metrics (link k lands on switch chip k)."""
LABEL_XID = "xid"

# Labels of rackmon_gpu_info only.
LABEL_TRAY = "tray"
"""Compute tray 1..18 (nvmlPlatformInfo.trayIndex + 1)."""
LABEL_MODULE = "module"
"""nvmlPlatformInfo.moduleId, 1..4."""
LABEL_SLOT = "slot"
"""Physical slot from the top of the rack (nvmlPlatformInfo.slotNumber)."""
LABEL_SERIAL = "serial"

GPU_INFO = "rackmon_gpu_info"
"""Info gauge, always 1: identity and rack place of one GPU (labels above + tray, module, slot, serial)."""
GPU_STATE = "rackmon_gpu_state"
"""Gauge: storage.schemas.GpuState of the GPU (0 ok, 1 lost, 3 error); other GPU metrics are absent
while it is not 0."""
XID_LAST = "DCGM_FI_DEV_XID_ERRORS"
"""Gauge (dcgm-exporter semantics): the last XID the GPU reported, 0 if none since the agent started."""
XID_COUNT = "rackmon_xid_errors_total"
"""Counter by `xid` label: XID events seen since the agent started (a new xid label appears at 1)."""


@dataclass(frozen=True)
class MetricSpec:
    """One metric on the agent page and the store column it carries.

    Attributes:
        name: the metric name on the page.
        type: "gauge" or "counter".
        help: the HELP text (says the unit).
        column: the column of the store table (gpu or nvlink) it maps to.
        scale: page value = column value x scale (0.001 for mW -> W, 1024 for KiB -> bytes).
        aliases: other names read back for this column on any page: what older agents exported,
            or a dcgm-exporter field close enough to stand in (docs/agent-metrics.md says how close).
        agent_aliases: names read back only from an older `monitor agent` page (one that carries
            rackmon_gpu_info): on a dcgm-exporter page the same name means another quantity.
    """

    name: str
    type: str
    help: str
    column: str
    scale: float = 1
    aliases: tuple[str, ...] = ()
    agent_aliases: tuple[str, ...] = ()


GPU_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", "util_gpu_pct"),
    MetricSpec("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %).", "util_mem_pct"),
    MetricSpec(
        "rackmon_gpu_memory_used_mib",
        "gauge",
        "Memory used, driver-reserved memory included (in MiB; nvmlDeviceGetMemoryInfo v1).",
        "mem_used_mib",
        aliases=("DCGM_FI_DEV_FB_USED",),
    ),
    MetricSpec("DCGM_FI_DEV_FB_TOTAL", "gauge", "Framebuffer memory total (in MiB).", "mem_total_mib"),
    MetricSpec("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", "power_mw", 0.001),
    MetricSpec(
        "DCGM_FI_DEV_ENFORCED_POWER_LIMIT",
        "gauge",
        "Effective power limit that the driver enforces (in W).",
        "power_limit_mw",
        0.001,
        aliases=("DCGM_FI_DEV_POWER_MGMT_LIMIT",),
    ),
    MetricSpec(
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "counter",
        "Total energy consumption since boot (in mJ).",
        "energy_mj",
    ),
    MetricSpec("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", "temp_gpu_c"),
    MetricSpec("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C).", "temp_mem_c"),
    MetricSpec(
        "rackmon_gpu_temp_margin_celsius",
        "gauge",
        "Distance to the slowdown temperature, T.Limit (in C).",
        "temp_margin_c",
    ),
    MetricSpec("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz).", "sm_clock_mhz"),
    MetricSpec("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz).", "mem_clock_mhz"),
    MetricSpec(
        "DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
        "gauge",
        "Current clock event reasons (bitmask of nvmlClocksEventReason*).",
        "clocks_event_reasons",
    ),
    MetricSpec("DCGM_FI_DEV_PSTATE", "gauge", "Performance state, 0 (P0) to 15.", "pstate"),
    MetricSpec(
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
        "counter",
        "Total number of single-bit (corrected) volatile ECC errors.",
        "ecc_corrected",
    ),
    MetricSpec(
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "counter",
        "Total number of double-bit (uncorrected) volatile ECC errors.",
        "ecc_uncorrected",
    ),
    MetricSpec(
        "rackmon_gpu_nvlink_data_tx_bytes_total",
        "counter",
        "NVLink data payload transmitted over all links (in B; NVML field 138, KiB x 1024).",
        "nvlink_tx_kib",
        1024,
        agent_aliases=("DCGM_FI_DEV_NVLINK_TX_BYTES_TOTAL",),
    ),
    MetricSpec(
        "rackmon_gpu_nvlink_data_rx_bytes_total",
        "counter",
        "NVLink data payload received over all links (in B; NVML field 139, KiB x 1024).",
        "nvlink_rx_kib",
        1024,
        agent_aliases=("DCGM_FI_DEV_NVLINK_RX_BYTES_TOTAL",),
    ),
    MetricSpec("rackmon_gpu_nvlink_links_active", "gauge", "NVLink links in state active.", "nvlink_up"),
)
"""Per-GPU metrics, one column of the `gpu` table each."""

FB_FREE = "DCGM_FI_DEV_FB_FREE"
FB_RESERVED = "DCGM_FI_DEV_FB_RESERVED"
"""dcgm-exporter's default page has FB_FREE/FB_USED/FB_RESERVED but no FB_TOTAL: total is their sum."""

NVLINK_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "rackmon_nvlink_state",
        "gauge",
        "NVLink state (NVML_NVLINK_STATE_*: 0 inactive, 1 active, 2 sleep, 3 no traffic).",
        "state",
    ),
    MetricSpec(
        "rackmon_nvlink_data_tx_bytes_total",
        "counter",
        "NVLink data payload transmitted on this link (in B).",
        "tx_kib",
        1024,
    ),
    MetricSpec(
        "rackmon_nvlink_data_rx_bytes_total",
        "counter",
        "NVLink data payload received on this link (in B).",
        "rx_kib",
        1024,
    ),
    MetricSpec("rackmon_nvlink_rx_errors_total", "counter", "NVLink receive errors.", "rx_errors"),
    MetricSpec(
        "rackmon_nvlink_symbol_errors_total", "counter", "NVLink receive symbol errors.", "symbol_errors"
    ),
    MetricSpec("rackmon_nvlink_recovery_total", "counter", "NVLink link recovery events.", "recovery"),
    MetricSpec(
        "rackmon_nvlink_recovery_failed_total",
        "counter",
        "NVLink link recovery events that failed.",
        "recovery_failed",
    ),
)
"""Per-link metrics (labels gpu, UUID, link), one column of the `nvlink` table each."""

DCGM_BLANK_MIN = 9.2e18
"""DCGM writes 'no value' as int64 sentinels near 2**63 (e.g. 9223372036854775794): treat as null."""
