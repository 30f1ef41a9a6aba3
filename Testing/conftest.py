"""Shared pytest fixtures: a real MRML scene (slicer-core) and the optional ../shared data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

requires_shared = pytest.mark.skipif(
    not (SHARED / "data").is_dir(),
    reason=f"{SHARED} is absent (a user's clone has no ../shared); this test needs its data")


@pytest.fixture
def scene():
    """A fresh, real vtkMRMLScene."""
    import slicer

    return slicer.vtkMRMLScene()
