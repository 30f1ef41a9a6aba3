"""Package attributes imported on first use (PEP 562 module ``__getattr__``).

Slicer loads a scripted module before torch may be installed, so a Lib package must not import torch when it
is imported; the names that need it are resolved from their submodule when first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, names: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(``__getattr__``, ``__dir__``) for ``package`` that import each of ``names`` (name -> submodule) when
    first asked for and keep it in the package's namespace."""
    module_globals = vars(importlib.import_module(package))

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{names[name]}", package), name)
        module_globals[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(module_globals) | set(names))

    return __getattr__, __dir__
