"""Checks that the extension ships what its code uses: CMake listings and .ui widget names.

Each check returns a list of problems (empty = consistent), so tests can also show that a check notices a
deliberately broken copy of the tree.
"""

from __future__ import annotations

import ast
import importlib
import re
import typing
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


def installed_paths(cmake_file: Path) -> set[str]:
    """Where the files a CMakeLists.txt lists are installed, relative to Slicer's qt-scripted-modules folder.

    slicerMacroBuildScriptedModule (``CMake/SlicerMacroBuildScriptedModule.cmake`` at v5.8.1 and v5.10.0)
    gives every module the same destination, that folder (a sub-folder named after the source folder only
    with ``WITH_SUBDIR``), and ctkMacroCompilePythonScript (``CMake/ctkMacroCompilePythonScript.cmake`` in the
    CTK that Slicer pins at those tags) copies each listed file to ``<destination>/<path as listed>``."""
    text = re.sub(r"#.*", "", cmake_file.read_text())
    call = re.search(r"slicerMacroBuildScriptedModule\(([^)]*)\)", text)
    prefix = f"{cmake_file.parent.name}/" if call and re.search(r"\bWITH_SUBDIR\b", call.group(1)) else ""
    return {prefix + path for path in cmake_listing(cmake_file)}


def install_collisions(folders: list[Path]) -> dict[str, list[str]]:
    """Installed paths listed by more than one of ``folders``' CMakeLists.txt: one file would overwrite the
    other in the installed extension. ``{path: [folder names]}``, empty when none."""
    owners: dict[str, list[str]] = {}
    for folder in folders:
        for path in installed_paths(folder / "CMakeLists.txt"):
            owners.setdefault(path, []).append(folder.name)
    return {path: names for path, names in sorted(owners.items()) if len(names) > 1}


def shipped_files(folder: Path) -> set[str]:
    """Files that must ship: every .py outside Testing/, every file under Resources/, and every file of a Lib
    package (the reading station's pages live beside its code)."""
    files = set()
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if not path.is_file() or "__pycache__" in relative.parts or relative.parts[0] == "Testing":
            continue
        if path.suffix == ".py" or relative.parts[0] == "Resources" or relative.parts[0].endswith("Lib"):
            files.add(relative.as_posix())
    return files


def cmake_problems(folder: Path) -> list[str]:
    """Unlisted files that should ship, and listed files that do not exist."""
    cmake = folder / "CMakeLists.txt"
    if not cmake.is_file():
        return [f"{folder.name}: no CMakeLists.txt"]
    listed, present = cmake_listing(cmake), shipped_files(folder)
    return [
        f"{folder.name}/{name} is not listed in {folder.name}/CMakeLists.txt" for name in sorted(present - listed)
    ] + [f"{folder.name}/CMakeLists.txt lists {name}, which does not exist" for name in sorted(listed - present)]


def ui_names(ui_file: Path) -> set[str]:
    """Object names defined in a Qt Designer file (widgets, layouts, spacers)."""
    root = ElementTree.parse(ui_file).getroot()
    return {
        element.get("name")
        for tag in ("widget", "layout", "spacer")
        for element in root.iter(tag)
        if element.get("name")
    }


def ui_parameter_names(ui_file: Path) -> set[str]:
    """Values of the ``SlicerParameterName`` dynamic properties in a .ui file."""
    root = ElementTree.parse(ui_file).getroot()
    return {prop.findtext("string") for prop in root.iter("property") if prop.get("name") == "SlicerParameterName"}


#: ctkPathLineEdit's filters when a .ui sets none (``ctkPathLineEditPrivate`` constructor,
#: ``Libs/Widgets/ctkPathLineEdit.cpp`` in the CTK that Slicer pins at v5.8.1 and v5.10.0).
PATH_LINE_EDIT_DEFAULT_FILTERS = frozenset({"AllEntries", "NoDotAndDotDot", "Readable", "Executable"})


def path_line_edit_filters(ui_file: Path, name: str) -> set[str]:
    """The filter flags (``ctkPathLineEdit::Filter`` names) of the ctkPathLineEdit ``name`` in a .ui file.
    Its *browse* button asks for a file to save, which may be new, only with ``Writable`` (and ``Files`` or
    ``AllEntries``); otherwise for an existing file (``ctkPathLineEdit::browse``)."""
    for widget in ElementTree.parse(ui_file).getroot().iter("widget"):
        if widget.get("class") == "ctkPathLineEdit" and widget.get("name") == name:
            for prop in widget.findall("property"):
                if prop.get("name") == "filters":
                    flags = (prop.findtext("set") or "").split("|")
                    return {flag.strip().split("::")[-1] for flag in flags if flag.strip()}
            return set(PATH_LINE_EDIT_DEFAULT_FILTERS)
    raise KeyError(f"{ui_file.name} has no ctkPathLineEdit {name!r}")


def ui_attributes_used(module_file: Path) -> set[str]:
    """Names used as ``self.ui.<name>`` in a module file."""
    return set(re.findall(r"self\.ui\.(\w+)", module_file.read_text()))


def parameter_node_fields(module_file: Path) -> set[str]:
    """Fields of the ``@parameterNodeWrapper`` class in a module file: annotated in its body, or added by a
    ``@settings_parameters(...)`` decorator (:func:`generated_parameter_types`)."""
    return set(parameter_node_types(module_file))


class _WithinRange:
    """Stand-in for parameterNodeWrapper's ``WithinRange``."""

    def __init__(self, minimum, maximum) -> None:
        self.minimum, self.maximum = minimum, maximum


class _Choice:
    """Stand-in for parameterNodeWrapper's ``Choice``."""

    def __init__(self, choices) -> None:
        self.choices = choices


def generated_parameter_types(module_file: Path, class_node: ast.ClassDef) -> dict[str, tuple[str, set[str]]]:
    """Field name -> (base type, validator names) of the fields a ``@settings_parameters(classes, ..., skip=...)``
    decorator (``FastMRICommon.settings``) adds to ``class_node``: the settings classes are imported from where
    the module file imports them, and ``parameter_annotations`` is run with stand-in validators."""
    from FastMRICommon.settings import parameter_annotations

    imported = {
        alias.asname or alias.name: statement.module
        for statement in ast.parse(module_file.read_text()).body
        if isinstance(statement, ast.ImportFrom)
        for alias in statement.names
    }
    fields: dict[str, tuple[str, set[str]]] = {}
    for decorator in class_node.decorator_list:
        if not (isinstance(decorator, ast.Call) and getattr(decorator.func, "id", "") == "settings_parameters"):
            continue
        listed = decorator.args[0]
        names = [element.id for element in (listed.elts if isinstance(listed, (ast.Tuple, ast.List)) else [listed])]
        classes = [getattr(importlib.import_module(imported[name]), name) for name in names]
        skip = next((ast.literal_eval(keyword.value) for keyword in decorator.keywords if keyword.arg == "skip"), ())
        annotations, _ = parameter_annotations(classes, _WithinRange, _Choice, skip)
        for name, annotation in annotations.items():
            base, *extras = typing.get_args(annotation) or (annotation,)
            validators = {"WithinRange" if isinstance(extra, _WithinRange) else "Choice" for extra in extras}
            fields[name] = (base.__name__, validators)
    return fields


def ui_problems(module_folder: Path) -> list[str]:
    """``self.ui.X`` names missing from the .ui, and SlicerParameterName values that are not parameters."""
    name = module_folder.name
    module_file, ui_file = module_folder / f"{name}.py", module_folder / "Resources" / "UI" / f"{name}.ui"
    defined = ui_names(ui_file)
    problems = [
        f"{name}.py uses self.ui.{attribute}, which {ui_file.name} does not define"
        for attribute in sorted(ui_attributes_used(module_file) - defined)
    ]
    fields = parameter_node_fields(module_file)
    problems += [
        f"{ui_file.name} binds SlicerParameterName {parameter!r}, not a field of the parameter node"
        for parameter in sorted(ui_parameter_names(ui_file) - fields)
    ]
    return problems


#: Widget classes that parameterNodeWrapper's GUI connectors bind to a field type in both Slicer 5.8 and 5.10
#: (``Base/Python/slicer/parameterNodeWrapper/guiConnectors.py`` at v5.8.0 and v5.10.0; they compare
#: ``type(widget)`` exactly, so subclasses do not count). A QComboBox / ctkComboBox represents an int, float,
#: str or bool field only with a ``Choice`` annotation; a ctkSliderWidget / qMRMLSliderWidget needs a bounded
#: float (``WithinRange``, or ``Minimum`` and ``Maximum``).
CONNECTOR_WIDGETS = {
    "bool": {"QCheckBox", "ctkCheckBox", "QPushButton"},
    "int": {"QSpinBox", "QSlider"},
    "float": {
        "QDoubleSpinBox",
        "ctkSliderWidget",
        "qMRMLSliderWidget",
        "ctkDoubleSlider",
        "ctkDoubleSpinBox",
        "qMRMLSpinBox",
    },
    "str": {"QLineEdit", "QLabel", "QTextEdit"},
    "node": {"qMRMLNodeComboBox"},
}
COMBO_BOXES = {"QComboBox", "ctkComboBox"}
SLIDER_WIDGETS = {"ctkSliderWidget", "qMRMLSliderWidget"}


def node_field_classes(annotation: ast.expr) -> list[str] | None:
    """The node classes a parameter-node annotation names, in order: ``vtkMRMLX`` -> ["vtkMRMLX"];
    ``Union[vtkMRMLX, vtkMRMLY, None]`` or ``Optional[...]`` -> ["vtkMRMLX", "vtkMRMLY"] (None left out). None
    for any other annotation, ``vtkMRMLX | None`` included: Slicer 5.8's and 5.10's ``isNodeOrUnionOfNodes``
    (``Base/Python/slicer/parameterNodeWrapper/util.py``) tests ``typing.get_origin(t) == typing.Union``, which
    is false for PEP 604 unions, so no node-combobox connector would bind such a field."""
    members = _union_members(annotation)
    names = [
        _node_class_name(member)
        for member in (members if members is not None else [annotation])
        if not _is_none(member)
    ]
    return names if names and all(names) else None


def _node_class_name(expression: ast.expr) -> str | None:
    """``vtkMRMLX`` or ``slicer.vtkMRMLX`` -> "vtkMRMLX", else None."""
    name = getattr(expression, "id", getattr(expression, "attr", None))
    return name if isinstance(name, str) and name.startswith("vtkMRML") else None


def _is_none(expression: ast.expr) -> bool:
    return isinstance(expression, ast.Constant) and expression.value is None


def _union_members(annotation: ast.expr) -> list[ast.expr] | None:
    """The members of ``Union[...]`` / ``typing.Union[...]`` / ``Optional[X]`` (with None), else None."""
    if not isinstance(annotation, ast.Subscript):
        return None
    kind = getattr(annotation.value, "id", getattr(annotation.value, "attr", ""))
    members = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else [annotation.slice]
    if kind == "Union":
        return members
    if kind == "Optional":
        return members + [ast.Constant(None)]
    return None


def parameter_node_types(module_file: Path) -> dict[str, tuple[str, set[str]]]:
    """Field name -> (base type: bool / int / float / str / node / the annotation's text, names of the
    ``Annotated`` validators) of the ``@parameterNodeWrapper`` class in a module file (with the fields a
    ``@settings_parameters`` decorator adds: :func:`generated_parameter_types`)."""
    for node in ast.walk(ast.parse(module_file.read_text())):
        if isinstance(node, ast.ClassDef) and any(
            getattr(d, "id", getattr(d, "attr", None)) == "parameterNodeWrapper" for d in node.decorator_list
        ):
            fields = generated_parameter_types(module_file, node)
            for statement in node.body:
                if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
                    continue
                annotation, validators = statement.annotation, set()
                if isinstance(annotation, ast.Subscript) and getattr(annotation.value, "id", "") == "Annotated":
                    base, *extras = annotation.slice.elts
                    validators = {
                        getattr(extra.func, "id", getattr(extra.func, "attr", ""))
                        for extra in extras
                        if isinstance(extra, ast.Call)
                    }
                    annotation = base
                text = ast.unparse(annotation)
                fields[statement.target.id] = (
                    "node" if node_field_classes(annotation) is not None else text,
                    validators,
                )
            return fields
    return {}


def ui_parameter_widgets(ui_file: Path) -> dict[str, list[str]]:
    """SlicerParameterName value -> classes of the widgets bound to it in a .ui file."""
    bound: dict[str, list[str]] = {}
    for widget in ElementTree.parse(ui_file).getroot().iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound.setdefault(prop.findtext("string"), []).append(widget.get("class"))
    return bound


def binding_problems(module_folder: Path) -> list[str]:
    """Widgets bound to a parameter-node field of a type their connector cannot represent (CONNECTOR_WIDGETS)."""
    name = module_folder.name
    fields = parameter_node_types(module_folder / f"{name}.py")
    problems = []
    for parameter, classes in sorted(ui_parameter_widgets(module_folder / "Resources" / "UI" / f"{name}.ui").items()):
        if parameter not in fields:
            continue  # ui_problems reports it
        base, validators = fields[parameter]
        for widget_class in classes:
            if widget_class in COMBO_BOXES:
                ok = base in ("int", "float", "str", "bool") and "Choice" in validators
            else:
                ok = widget_class in CONNECTOR_WIDGETS.get(base, set())
                if ok and widget_class in SLIDER_WIDGETS:
                    ok = "WithinRange" in validators or {"Minimum", "Maximum"} <= validators
            if not ok:
                described = " ".join([base, *sorted(validators)])
                problems.append(
                    f"{name}.ui binds {parameter!r} ({described}) to a {widget_class}, which "
                    "parameterNodeWrapper cannot connect"
                )
    return problems


def unbound_fields(module_folder: Path) -> set[str]:
    """Parameter-node fields that no widget of the module's .ui is bound to."""
    name = module_folder.name
    return set(parameter_node_types(module_folder / f"{name}.py")) - set(
        ui_parameter_widgets(module_folder / "Resources" / "UI" / f"{name}.ui")
    )


def slicer_class_aliases(module_file: Path) -> dict[str, tuple[str, str]]:
    """Module-level ``Name = getattr(slicer, "Name", Fallback)``: node classes the module uses when the running
    Slicer has them (e.g. MultiVolumeExplorer's), else the fallback. ``{Name: (Name as looked up, Fallback)}``."""
    aliases = {}
    for statement in ast.parse(module_file.read_text()).body:
        if (
            isinstance(statement, ast.Assign)
            and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name)
            and isinstance(statement.value, ast.Call)
            and getattr(statement.value.func, "id", "") == "getattr"
            and len(statement.value.args) == 3
            and getattr(statement.value.args[0], "id", "") == "slicer"
            and isinstance(statement.value.args[1], ast.Constant)
        ):
            aliases[statement.targets[0].id] = (statement.value.args[1].value, ast.unparse(statement.value.args[2]))
    return aliases


def ui_node_types(ui_file: Path) -> dict[str, list[str]]:
    """SlicerParameterName value -> the ``nodeTypes`` of the qMRMLNodeComboBox bound to it in a .ui file."""
    types = {}
    for widget in ElementTree.parse(ui_file).getroot().iter("widget"):
        if widget.get("class") != "qMRMLNodeComboBox":
            continue
        properties = {prop.get("name"): prop for prop in widget.findall("property")}
        if "SlicerParameterName" in properties:
            listed = properties.get("nodeTypes")
            types[properties["SlicerParameterName"].findtext("string")] = (
                [] if listed is None else [item.text for item in listed.iter("string")]
            )
    return types


def node_selector_problems(module_folder: Path) -> list[str]:
    """Node-selector fields that would fail in Slicer 5.8 / 5.10 (``Base/Python/slicer/parameterNodeWrapper``:
    ``guiConnectors.qMRMLNodeComboBoxToNodeConnector`` sets ``nodeTypes`` to ``getNodeTypes(annotation)``,
    which instantiates every class of the annotation, replacing the .ui's list; ``serializers.UnionSerializer``
    refuses None unless the Union holds None). For each field bound to a qMRMLNodeComboBox: every class must
    exist in slicer-core and be instantiable (not abstract), with a fallback that is when the module looks it
    up with ``getattr(slicer, ...)``; a Union of several classes must include None; the .ui's nodeTypes must
    be the annotation's classes, in order."""
    import slicer

    name = module_folder.name
    module_file, ui_file = module_folder / f"{name}.py", module_folder / "Resources" / "UI" / f"{name}.ui"
    aliases = slicer_class_aliases(module_file)
    annotations = {}
    for node in ast.walk(ast.parse(module_file.read_text())):
        if isinstance(node, ast.ClassDef) and any(
            getattr(d, "id", getattr(d, "attr", None)) == "parameterNodeWrapper" for d in node.decorator_list
        ):
            annotations = {
                statement.target.id: statement.annotation
                for statement in node.body
                if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
            }
    problems = []
    for parameter, listed in sorted(ui_node_types(ui_file).items()):
        classes = node_field_classes(annotations[parameter]) if parameter in annotations else None
        if classes is None:
            continue  # not a node field: ui_problems / binding_problems report it
        members = _union_members(annotations[parameter])
        if members is not None and not any(_is_none(member) for member in members):
            problems.append(
                f"{name}.{parameter}: {ast.unparse(annotations[parameter])} lacks None, so choosing None "
                "in its selector raises"
            )
        for class_name in classes:
            looked_up, created = (class_name, class_name) if class_name not in aliases else aliases[class_name]
            if looked_up != class_name:
                problems.append(
                    f"{name}.{parameter}: {class_name} is getattr(slicer, {looked_up!r}, ...): use one name"
                )
            node_class = getattr(slicer, created, None)
            if node_class is None:
                problems.append(f"{name}.{parameter}: slicer-core has no {created}")
                continue
            try:
                instance = node_class()
            except TypeError as error:
                problems.append(
                    f"{name}.{parameter}: {created}() fails ({error}): the selector's connector "
                    "instantiates every annotated class"
                )
                continue
            if instance.GetClassName() != created:
                problems.append(f"{name}.{parameter}: {created}() is a {instance.GetClassName()}")
        if listed != classes:
            problems.append(
                f"{name}.ui lists nodeTypes {listed} for {parameter!r}, but the connector sets them to "
                f"the annotation's classes {classes}"
            )
    return problems
