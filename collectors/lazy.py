"""Package attributes loaded on first use (PEP 562), for packages whose parts cost memory to import."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: each name in `homes` is imported from its submodule the first
    time it is asked for, then kept in the package's namespace (later lookups never come here).

    Args:
        package: the package's __name__.
        homes: public name -> the submodule (relative to the package) that defines it.
    """
    namespace = vars(sys.modules[package])

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{home}"), name)
        namespace[name] = value
        return value

    return __getattr__
