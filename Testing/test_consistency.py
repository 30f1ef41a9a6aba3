"""The extension ships what its code uses: CMake listings, .ui widgets, top-level layout, Lib imports."""

from __future__ import annotations

import ast
import re
import shutil

import pytest
from consistency import (
    PATH_LINE_EDIT_DEFAULT_FILTERS,
    REPO,
    SHIPPING_FOLDERS,
    binding_problems,
    cmake_problems,
    install_collisions,
    installed_paths,
    node_selector_problems,
    path_line_edit_filters,
    ui_parameter_widgets,
    ui_problems,
    unbound_fields,
)

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
    for key in (
        "EXTENSION_HOMEPAGE",
        "EXTENSION_CATEGORY",
        "EXTENSION_CONTRIBUTORS",
        "EXTENSION_DESCRIPTION",
        "EXTENSION_ICONURL",
        "EXTENSION_SCREENSHOTURLS",
    ):
        assert re.search(rf'set\({key} "[^"]+"\)', text), key
    assert re.search(r'set\(EXTENSION_DEPENDS "PyTorch"\)', text)


@pytest.mark.parametrize("module", MODULES)
def test_module_folder_follows_the_scripted_template(module):
    folder = REPO / module
    for relative in (
        f"{module}.py",
        f"{module}Lib/__init__.py",
        f"Resources/UI/{module}.ui",
        f"Resources/Icons/{module}.png",
        "CMakeLists.txt",
        "Testing/Python/CMakeLists.txt",
    ):
        assert (folder / relative).is_file(), relative
    cmake = (folder / "CMakeLists.txt").read_text()
    assert (
        "slicerMacroBuildScriptedModule(" in cmake and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in cmake
    )
    classes = [
        node.name for node in ast.parse((folder / f"{module}.py").read_text()).body if isinstance(node, ast.ClassDef)
    ]
    assert classes == [module, f"{module}ParameterNode", f"{module}Widget", f"{module}Logic", f"{module}Test"]


def test_no_two_folders_install_the_same_path():
    """Every scripted module of the extension installs into the same qt-scripted-modules folder: two modules
    listing the same path (e.g. Resources/Models/manifest.json) would overwrite each other's file."""
    assert install_collisions([REPO / folder for folder in SHIPPING_FOLDERS]) == {}


@pytest.mark.parametrize("module", ["FastMRRecon", "IVIMEstimator"])
def test_each_modules_models_install_in_a_folder_named_after_it(module):
    paths = installed_paths(REPO / module / "CMakeLists.txt")
    models = {path for path in paths if path.startswith("Resources/Models/")}
    assert models and all(path.startswith(f"Resources/Models/{module}/") for path in models)


def test_two_modules_listing_the_same_file_is_noticed(tmp_path):
    for name in ("FastMRRecon", "IVIMEstimator"):
        (tmp_path / name).mkdir()
    (tmp_path / "FastMRRecon" / "CMakeLists.txt").write_text(
        "set(MODULE_NAME FastMRRecon)\nset(MODULE_PYTHON_SCRIPTS\n  ${MODULE_NAME}.py\n  shared.py\n  )\n"
        "set(MODULE_PYTHON_RESOURCES\n  Resources/Models/manifest.json\n  )\n"
        "slicerMacroBuildScriptedModule(NAME ${MODULE_NAME} SCRIPTS ${MODULE_PYTHON_SCRIPTS})\n"
    )
    (tmp_path / "IVIMEstimator" / "CMakeLists.txt").write_text(
        "set(MODULE_NAME IVIMEstimator)\n"
        "set(MODULE_PYTHON_SCRIPTS\n  ${MODULE_NAME}.py\n  shared.py  # a comment\n  )\n"
        "set(MODULE_PYTHON_RESOURCES\n  Resources/Models/manifest.json\n  Resources/Icons/${MODULE_NAME}.png\n  )\n"
        "slicerMacroBuildScriptedModule(NAME ${MODULE_NAME} SCRIPTS ${MODULE_PYTHON_SCRIPTS})\n"
    )
    folders = [tmp_path / "FastMRRecon", tmp_path / "IVIMEstimator"]
    assert install_collisions(folders) == {
        "Resources/Models/manifest.json": ["FastMRRecon", "IVIMEstimator"],
        "shared.py": ["FastMRRecon", "IVIMEstimator"],
    }
    cmake = tmp_path / "IVIMEstimator" / "CMakeLists.txt"  # WITH_SUBDIR: installed under IVIMEstimator/
    cmake.write_text(cmake.read_text().replace("${MODULE_PYTHON_SCRIPTS})", "${MODULE_PYTHON_SCRIPTS} WITH_SUBDIR)"))
    assert install_collisions(folders) == {}


def test_the_study_path_can_name_a_new_file():
    """Create study needs a file that does not exist yet: the path's browse dialog must be a save dialog."""
    ui_file = REPO / "FastMRRecon" / "Resources" / "UI" / "FastMRRecon.ui"
    filters = path_line_edit_filters(ui_file, "studyPathLineEdit")
    assert "Writable" in filters and {"Files", "AllEntries"} & filters
    assert "Writable" not in PATH_LINE_EDIT_DEFAULT_FILTERS  # without the property: an open dialog
    assert "Writable" not in path_line_edit_filters(ui_file, "modelPathLineEdit")  # a model is opened, not saved


def test_removing_a_listed_file_is_noticed(tmp_path):
    copy = shutil.copytree(REPO / "FastMRRecon", tmp_path / "FastMRRecon")
    (copy / "FastMRReconLib" / "kspace" / "masks.py").unlink()
    (copy / "FastMRReconLib" / "unlisted_helper.py").write_text("x = 1\n")
    problems = cmake_problems(copy)
    assert any("lists FastMRReconLib/kspace/masks.py, which does not exist" in p for p in problems)
    assert any("FastMRReconLib/unlisted_helper.py is not listed" in p for p in problems)


def test_removing_a_ui_widget_is_noticed(tmp_path):
    copy = shutil.copytree(REPO / "IVIMEstimator", tmp_path / "IVIMEstimator")
    ui_file = copy / "Resources" / "UI" / "IVIMEstimator.ui"
    text = ui_file.read_text()
    start = text.index('<widget class="QLabel" name="seriesSummaryLabel">')
    ui_file.write_text(text[:start] + text[text.index("</widget>", start) + len("</widget>") :])
    assert ui_problems(copy) == [
        "IVIMEstimator.py uses self.ui.seriesSummaryLabel, which IVIMEstimator.ui does not define"
    ]


def test_renaming_a_parameter_binding_is_noticed(tmp_path):
    copy = shutil.copytree(REPO / "FastMRRecon", tmp_path / "FastMRRecon")
    ui_file = copy / "Resources" / "UI" / "FastMRRecon.ui"
    ui_file.write_text(ui_file.read_text().replace("<string>acceleration</string>", "<string>accel</string>"))
    assert any("'accel'" in p for p in ui_problems(copy))


@pytest.mark.parametrize("module", MODULES)
def test_ui_bindings_are_widgets_parameterNodeWrapper_connects_to_the_field_types(module):
    assert binding_problems(REPO / module) == []


#: Parameter-node fields no widget shows: set by the logic only.
UNBOUND = {"FastMRRecon": {"roiTable"}, "IVIMEstimator": set()}


@pytest.mark.parametrize("module", MODULES)
def test_every_parameter_the_user_sets_has_a_widget(module):
    assert unbound_fields(REPO / module) == UNBOUND[module]


def test_the_reconstruct_options_have_their_widgets():
    widgets = ui_parameter_widgets(REPO / "FastMRRecon" / "Resources" / "UI" / "FastMRRecon.ui")
    assert {name: widgets.get(name) for name in ("strength", "setNoiseSD", "noiseSD", "changeMap")} == {
        "strength": ["QComboBox"],
        "setNoiseSD": ["QCheckBox"],
        "noiseSD": ["ctkDoubleSpinBox"],
        "changeMap": ["QCheckBox"],
    }


def test_wrong_widget_types_and_unbound_parameters_are_noticed(tmp_path):
    copy = shutil.copytree(REPO / "FastMRRecon", tmp_path / "FastMRRecon")
    ui_file, module_file = copy / "Resources" / "UI" / "FastMRRecon.ui", copy / "FastMRRecon.py"
    text = ui_file.read_text()
    text = text.replace('class="ctkDoubleSpinBox" name="noiseSDSpinBox"', 'class="QSpinBox" name="noiseSDSpinBox"')
    text = text.replace('class="QDoubleSpinBox" name="snrSpinBox"', 'class="ctkSliderWidget" name="snrSpinBox"')
    text = text.replace("<string>changeMap</string>", "<string>snr</string>")
    ui_file.write_text(text)
    source = module_file.read_text()
    # strength and snr written without their Choice / WithinRange instead of generated from the settings
    for old, new in (
        ('skip=("precision",)', 'skip=("precision", "strength", "snr")'),
        (
            '    readerName: str = ""\n',
            '    readerName: str = ""\n    strength: str = "medium"\n    snr: float = 30.0\n',
        ),
    ):
        assert old in source
        source = source.replace(old, new)
    module_file.write_text(source)
    problems = binding_problems(copy)
    assert len(problems) == 4, problems
    assert any("'noiseSD' (float WithinRange) to a QSpinBox" in p for p in problems)  # QSpinBox: int only
    assert any("'strength' (str) to a QComboBox" in p for p in problems)  # a combo box needs Choice
    assert any("'snr' (float) to a ctkSliderWidget" in p for p in problems)  # a slider needs a bounded float
    assert any("'snr' (float) to a QCheckBox" in p for p in problems)  # the change-map box, bound to snr
    assert unbound_fields(copy) == {"roiTable", "changeMap"}


def test_the_recon_logic_passes_the_noise_options_through():
    """The module logic's reconstruct (ReconModuleLogic, the base of the module file's FastMRReconLogic) reads the
    parameter node's fields and hands them to the Lib."""
    module = ast.parse((REPO / "FastMRRecon" / "FastMRRecon.py").read_text())
    widget_logic = next(
        node for node in module.body if isinstance(node, ast.ClassDef) and node.name == "FastMRReconLogic"
    )
    assert "ReconModuleLogic" in [ast.unparse(base) for base in widget_logic.bases]
    tree = ast.parse((REPO / "FastMRRecon" / "FastMRReconLib" / "module_logic.py").read_text())
    logic = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "ReconModuleLogic")
    method = next(node for node in logic.body if isinstance(node, ast.FunctionDef) and node.name == "reconstruct")
    calls = {ast.unparse(node.func): node for node in ast.walk(method) if isinstance(node, ast.Call)}
    keywords = {k.arg: ast.unparse(k.value) for k in calls["reconstruct_volume_node"].keywords}
    assert [ast.unparse(a) for a in calls["noise_arguments"].args] == [
        "parameters.strength",
        "parameters.noiseSD if parameters.setNoiseSD else None",
    ]
    checked = next(
        node for node in ast.walk(method) if isinstance(node, ast.Assign) and node.value is calls["noise_arguments"]
    )
    assert ast.unparse(checked.targets[0]) == f"({keywords['noise_sd']}, {keywords['strength']})"
    assert keywords["change_map"] == "parameters.changeMap"
    assert {"output", "progress", "cancel"} <= set(keywords)


LIB_FOLDERS = ("Common/FastMRICommon", "FastMRRecon/FastMRReconLib", "IVIMEstimator/IVIMEstimatorLib")
FORBIDDEN = ("qt", "ctk", "slicer.ScriptedLoadableModule")


@pytest.mark.parametrize("lib", LIB_FOLDERS)
def test_libs_never_import_gui_modules(lib):
    offenders = []
    for path in (REPO / lib).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
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


@pytest.mark.parametrize("module", MODULES)
def test_node_selectors_name_classes_slicer_can_instantiate(module):
    """Every field bound to a node selector names concrete classes (Slicer's connector instantiates them to set
    the selector's node types), as typing.Union with None when there are several, matching the .ui."""
    assert node_selector_problems(REPO / module) == []


def test_abstract_unlisted_and_pep604_node_annotations_are_noticed(tmp_path):
    copy = shutil.copytree(REPO / "IVIMEstimator", tmp_path / "IVIMEstimator")
    module_file = copy / "IVIMEstimator.py"
    source = module_file.read_text()
    mask = "maskNode: Union[vtkMRMLLabelMapVolumeNode, vtkMRMLSegmentationNode, None]"
    region = "statsRegion: Union[vtkMRMLLabelMapVolumeNode, vtkMRMLSegmentationNode, None]"
    series = source[source.index("    inputSeries: ") : source.index("    bvalues: str")]
    assert mask in source and region in source
    source = source.replace(series, "    inputSeries: slicer.vtkMRMLNode\n")
    source = source.replace(mask, "maskNode: Union[vtkMRMLLabelMapVolumeNode, vtkMRMLSegmentationNode]")
    pep604 = "statsRegion: vtkMRMLLabelMapVolumeNode | vtkMRMLSegmentationNode | None"
    module_file.write_text(source.replace(region, pep604))
    problems = node_selector_problems(copy)
    assert any("inputSeries: vtkMRMLNode() fails" in p and "abstract" in p for p in problems), problems
    assert any("lists nodeTypes" in p and "'inputSeries'" in p for p in problems), problems
    assert any("maskNode" in p and "lacks None" in p for p in problems), problems
    assert any("'statsRegion'" in p and "cannot connect" in p for p in binding_problems(copy))
