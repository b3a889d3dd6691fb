"""rack-monitor: the command line, the Textual app and the post-mortem tools."""

import os

# Arrow's buffers from the C library's allocator, not mimalloc: the live client and the recorder free a
# rack frame's buffers every tick from many poll threads, and mimalloc's per-thread heaps kept ~50 MB of
# them resident in the recorder (docs/benchmarks.md, issue 18). Read once, when pyarrow is first
# imported, so it is set here, before any monitor module imports pyarrow; an explicit setting wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

__version__ = "0.1.0"
