"""pytest setup for the peer benchmark's tests (`.venv/bin/pytest bench/peers`; CI does not collect them)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # for bench.peers.servers
