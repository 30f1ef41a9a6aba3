"""The extension ships what its code uses: CMake listings, .ui widgets, top-level layout, Lib imports."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest

from consistency import REPO, SHIPPING_FOLDERS, cmake_problems, ui_problems

MODULES = ("FastMRRecon", "IVIMEstimator")


@pytest.mark.parametrize("folder", SHIPPING_FOLDERS)
def test_cmake_lists_every_shipped_file(folder):
    assert cmake_problems(REPO / folder) == []


@pytest.mark.parametrize("module", MODULES)
def test_module_uses_only_widgets_its_ui_defines(module):
    assert ui_problems(REPO / module) == []


def test_top_level_cmake_adds_every_shipping_folder_and_metadata():
    text = (REPO / "CMakeLists.txt").read_text()
    for folder in SHIPPING_FOLDERS:
        assert f"add_subdirectory({folder})" in text
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        assert re.search(rf'set\({key} "[^"]+"\)', text), key
    assert re.search(r'set\(EXTENSION_DEPENDS "PyTorch"\)', text)


@pytest.mark.parametrize("module", MODULES)
def test_module_folder_follows_the_scripted_template(module):
    folder = REPO / module
    for relative in (f"{module}.py", f"{module}Lib/__init__.py", f"Resources/UI/{module}.ui",
                     f"Resources/Icons/{module}.png", "CMakeLists.txt", "Testing/Python/CMakeLists.txt"):
        assert (folder / relative).is_file(), relative
    cmake = (folder / "CMakeLists.txt").read_text()
    assert "slicerMacroBuildScriptedModule(" in cmake and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in cmake
    classes = [node.name for node in ast.parse((folder / f"{module}.py").read_text()).body if isinstance(node, ast.ClassDef)]
    assert classes == [module, f"{module}ParameterNode", f"{module}Widget", f"{module}Logic", f"{module}Test"]


def test_removing_a_listed_file_is_noticed(tmp_path):
    copy = shutil.copytree(REPO / "FastMRRecon", tmp_path / "FastMRRecon")
    (copy / "FastMRReconLib" / "masks.py").unlink()
    (copy / "FastMRReconLib" / "unlisted_helper.py").write_text("x = 1\n")
    problems = cmake_problems(copy)
    assert any("lists FastMRReconLib/masks.py, which does not exist" in p for p in problems)
    assert any("FastMRReconLib/unlisted_helper.py is not listed" in p for p in problems)


def test_removing_a_ui_widget_is_noticed(tmp_path):
    copy = shutil.copytree(REPO / "IVIMEstimator", tmp_path / "IVIMEstimator")
    ui_file = copy / "Resources" / "UI" / "IVIMEstimator.ui"
    text = ui_file.read_text()
    start = text.index('<widget class="QLabel" name="seriesSummaryLabel">')
    ui_file.write_text(text[:start] + text[text.index("</widget>", start) + len("</widget>"):])
    assert ui_problems(copy) == ["IVIMEstimator.py uses self.ui.seriesSummaryLabel, which IVIMEstimator.ui does not define"]


def test_renaming_a_parameter_binding_is_noticed(tmp_path):
    copy = shutil.copytree(REPO / "FastMRRecon", tmp_path / "FastMRRecon")
    ui_file = copy / "Resources" / "UI" / "FastMRRecon.ui"
    ui_file.write_text(ui_file.read_text().replace("<string>acceleration</string>", "<string>accel</string>"))
    assert any("'accel'" in p for p in ui_problems(copy))


LIB_FOLDERS = ("Common/FastMRICommon", "FastMRRecon/FastMRReconLib", "IVIMEstimator/IVIMEstimatorLib")
FORBIDDEN = ("qt", "ctk", "slicer.ScriptedLoadableModule")


@pytest.mark.parametrize("lib", LIB_FOLDERS)
def test_libs_never_import_gui_modules(lib):
    offenders = []
    for path in (REPO / lib).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name}: {n}" for n in names if n in FORBIDDEN or n.startswith(("qt.", "ctk."))]
    assert offenders == []


@pytest.mark.parametrize("module", MODULES)
def test_module_files_compile(module):
    compile((REPO / module / f"{module}.py").read_text(), f"{module}.py", "exec")


def test_shared_code_has_one_home():
    """No module keeps its own copy of a shared file."""
    shared = {path.name for path in (REPO / "Common" / "FastMRICommon").glob("*.py")} - {"__init__.py", "cli.py"}
    for lib in LIB_FOLDERS[1:]:
        assert not shared & {path.name for path in (REPO / lib).glob("*.py")}, lib
