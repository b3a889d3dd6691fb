"""The arena cap: applied on glibc Linux, left to an explicit MALLOC_ARENA_MAX (in a fresh process each)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = "from monitor.malloc_arenas import limit_malloc_arenas; print(limit_malloc_arenas())"


def probe(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_applied_unless_the_environment_says_otherwise() -> None:
    libc = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None
    assert probe() == ("True" if libc else "False")
    assert probe(MALLOC_ARENA_MAX="16") == "False"  # the operator's own setting wins
