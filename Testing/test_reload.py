"""``FastMRICommon.reload.forget_packages`` (what a module widget's ``onReload`` calls before Slicer re-runs the
module file), outside Slicer: a package on ``sys.path`` is imported, edited, forgotten and imported again."""

from __future__ import annotations

import importlib
import sys

import pytest

from FastMRICommon.reload import forget_packages


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package ``reloadme`` (with a subpackage) and a sibling ``reloadme_other`` on ``sys.path``."""
    root = tmp_path / "reloadme"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("from reloadme.sub.leaf import VALUE\n")
    (root / "sub" / "__init__.py").write_text("")
    (root / "sub" / "leaf.py").write_text("VALUE = 1\n")
    (tmp_path / "reloadme_other.py").write_text("NAME = 'other'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield root
    for name in [name for name in sys.modules if name.startswith("reloadme")]:
        del sys.modules[name]


def test_forgotten_packages_are_imported_afresh(package):
    import reloadme
    import reloadme_other

    old_leaf = sys.modules["reloadme.sub.leaf"]
    assert reloadme.VALUE == 1
    (package / "sub" / "leaf.py").write_text("VALUE = 22\n")  # edited; a new size (a .pyc is checked by size and mtime)
    importlib.invalidate_caches()
    assert forget_packages(["reloadme", "absent_package"]) == ["reloadme", "reloadme.sub", "reloadme.sub.leaf"]
    assert not any(name == "reloadme" or name.startswith("reloadme.") for name in sys.modules)
    assert sys.modules["reloadme_other"] is reloadme_other  # a longer name with the same start is not matched
    fresh = importlib.import_module("reloadme")
    assert fresh is not reloadme and fresh.VALUE == 22
    assert sys.modules["reloadme.sub.leaf"] is not old_leaf
    assert forget_packages([]) == []
