"""Checks that the extension ships what its code uses: CMake listings and .ui widget names.

Each check returns a list of problems (empty = consistent), so tests can also show that a check notices a
deliberately broken copy of the tree.
"""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Folders with a CMakeLists.txt that ships Python (the two modules and the shared package).
SHIPPING_FOLDERS = ("Common", "FastMRRecon", "IVIMEstimator")


def cmake_listing(cmake_file: Path) -> set[str]:
    """Files named in ``MODULE_PYTHON_SCRIPTS`` and ``MODULE_PYTHON_RESOURCES`` (``${MODULE_NAME}`` expanded)."""
    text = re.sub(r"#.*", "", cmake_file.read_text())
    name = re.search(r"set\(\s*MODULE_NAME\s+(\S+?)\s*\)", text)
    listed: set[str] = set()
    for block in re.findall(r"set\(\s*MODULE_PYTHON_(?:SCRIPTS|RESOURCES)(\s[^)]*)?\)", text):
        for token in block.split():
            listed.add(token.replace("${MODULE_NAME}", name.group(1) if name else "${MODULE_NAME}"))
    return listed


def shipped_files(folder: Path) -> set[str]:
    """Files that must ship: every .py outside Testing/, and every file under Resources/."""
    files = set()
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if not path.is_file() or "__pycache__" in relative.parts or relative.parts[0] == "Testing":
            continue
        if path.suffix == ".py" or relative.parts[0] == "Resources":
            files.add(relative.as_posix())
    return files


def cmake_problems(folder: Path) -> list[str]:
    """Unlisted files that should ship, and listed files that do not exist."""
    cmake = folder / "CMakeLists.txt"
    if not cmake.is_file():
        return [f"{folder.name}: no CMakeLists.txt"]
    listed, present = cmake_listing(cmake), shipped_files(folder)
    return [f"{folder.name}/{name} is not listed in {folder.name}/CMakeLists.txt" for name in sorted(present - listed)] + \
        [f"{folder.name}/CMakeLists.txt lists {name}, which does not exist" for name in sorted(listed - present)]


def ui_names(ui_file: Path) -> set[str]:
    """Object names defined in a Qt Designer file (widgets, layouts, spacers)."""
    root = ElementTree.parse(ui_file).getroot()
    return {element.get("name") for tag in ("widget", "layout", "spacer") for element in root.iter(tag)
            if element.get("name")}


def ui_parameter_names(ui_file: Path) -> set[str]:
    """Values of the ``SlicerParameterName`` dynamic properties in a .ui file."""
    root = ElementTree.parse(ui_file).getroot()
    return {prop.findtext("string") for prop in root.iter("property") if prop.get("name") == "SlicerParameterName"}


def ui_attributes_used(module_file: Path) -> set[str]:
    """Names used as ``self.ui.<name>`` in a module file."""
    return set(re.findall(r"self\.ui\.(\w+)", module_file.read_text()))


def parameter_node_fields(module_file: Path) -> set[str]:
    """Annotated fields of the ``@parameterNodeWrapper`` class in a module file."""
    for node in ast.walk(ast.parse(module_file.read_text())):
        if isinstance(node, ast.ClassDef) and any(
                getattr(d, "id", getattr(d, "attr", None)) == "parameterNodeWrapper" for d in node.decorator_list):
            return {statement.target.id for statement in node.body
                    if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)}
    return set()


def ui_problems(module_folder: Path) -> list[str]:
    """``self.ui.X`` names missing from the .ui, and SlicerParameterName values that are not parameters."""
    name = module_folder.name
    module_file, ui_file = module_folder / f"{name}.py", module_folder / "Resources" / "UI" / f"{name}.ui"
    defined = ui_names(ui_file)
    problems = [f"{name}.py uses self.ui.{attribute}, which {ui_file.name} does not define"
                for attribute in sorted(ui_attributes_used(module_file) - defined)]
    fields = parameter_node_fields(module_file)
    problems += [f"{ui_file.name} binds SlicerParameterName {parameter!r}, not a field of the parameter node"
                 for parameter in sorted(ui_parameter_names(ui_file) - fields)]
    return problems
