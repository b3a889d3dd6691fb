"""Mappings from scraped exposition pages (agents, dcgm-exporter, inference servers) to the store's tables.

Pure functions and small stateful mappers: page text (or parsed families) + source info + tick time
in, Arrow record batches in storage.schemas' tables out. No HTTP here; the scrape source calls these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from collectors.lazy import lazy_attributes

if TYPE_CHECKING:
    from collectors.mappings.agent_page import AgentGpu, CounterCarry, XidTally, frame_to_agent_page
    from collectors.mappings.common import ColumnBuilder, MappingError
    from collectors.mappings.gpu import GpuPageMapper
    from collectors.mappings.serving import (
        ENGINES,
        ServingRows,
        add_serving,
        detect_engine,
        map_serving,
        serving_want,
    )

__all__ = [
    "ENGINES",
    "AgentGpu",
    "ColumnBuilder",
    "CounterCarry",
    "GpuPageMapper",
    "MappingError",
    "ServingRows",
    "XidTally",
    "add_serving",
    "detect_engine",
    "frame_to_agent_page",
    "map_serving",
    "serving_want",
]

_HOMES = {
    **dict.fromkeys(("AgentGpu", "CounterCarry", "XidTally", "frame_to_agent_page"), "agent_page"),
    **dict.fromkeys(("ColumnBuilder", "MappingError"), "common"),
    "GpuPageMapper": "gpu",
    **dict.fromkeys(
        ("ENGINES", "ServingRows", "add_serving", "detect_engine", "map_serving", "serving_want"), "serving"
    ),
}
"""Each public name's module, loaded on first use (PEP 562): importing any submodule runs this __init__
first, and the agent, which needs only agent_page and tray_arrow, should not hold the serving engines'
mappings and the page parser (2.3 MiB resident)."""

__getattr__ = lazy_attributes(__name__, _HOMES)
