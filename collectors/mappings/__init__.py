"""Mappings from scraped exposition pages (agents, dcgm-exporter, inference servers) to the store's tables.

Pure functions and small stateful mappers: page text (or parsed families) + source info + tick time
in, Arrow record batches in storage.schemas' tables out. No HTTP here; the scrape source calls these.
"""

from __future__ import annotations

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
