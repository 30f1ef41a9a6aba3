"""Forgetting imported packages, so that the next import reads their files again (a module's *Reload*).

Slicer's *Reload* (``ScriptedLoadableModuleWidget.onReload`` -> ``slicer.util.reloadScriptedModule``, at
v5.10.0) re-executes only the module file; the packages it imports are answered from ``sys.modules`` and stay
as they were. Removing a package's entries first makes the re-executed file import it afresh, in its own
dependency order, with empty namespaces (``importlib.reload`` would keep stale names and reload a package
before the modules it imports).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable


def forget_packages(prefixes: Iterable[str]) -> list[str]:
    """Remove each name in ``prefixes`` and every ``name.*`` submodule from ``sys.modules``; return the removed
    names, sorted. Objects already imported from them keep working: only later imports read the files again."""
    prefixes = tuple(prefixes)
    removed = sorted(
        name
        for name in list(sys.modules)
        if any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)
    )
    for name in removed:
        del sys.modules[name]
    return removed
