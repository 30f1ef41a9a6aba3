"""Shared pytest fixtures: a real MRML scene (slicer-core) and the optional ../shared data."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

requires_shared = pytest.mark.skipif(
    not (SHARED / "data").is_dir(),
    reason=f"{SHARED} is absent (a user's clone has no ../shared); this test needs its data",
)


@pytest.fixture
def scene():
    """A fresh, real vtkMRMLScene."""
    import slicer

    return slicer.vtkMRMLScene()


def script(name: str) -> str:
    """The console script installed beside this Python (the project's venv), else the one on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        pytest.fail(f"console script {name!r} is not installed: run `make test` (pip install -e .)")
    return found


def run_command(name: str, *args: str) -> subprocess.CompletedProcess:
    """Run a console script as a user would; capture its output."""
    return subprocess.run([script(name), *args], capture_output=True, text=True, timeout=600)


@pytest.fixture
def run_cli():
    return run_command


def placing_scene(scene):
    """The selection and interaction nodes Slicer's application logic adds, and the markups logic."""
    import slicer

    application = slicer.vtkMRMLApplicationLogic()
    application.SetMRMLScene(scene)
    markups = slicer.vtkSlicerMarkupsLogic()
    markups.SetMRMLScene(scene)
    return application, markups
