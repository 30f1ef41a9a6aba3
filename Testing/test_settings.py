"""FastMRICommon.settings: one home per setting (default, range or choices, help) read by the command line,
the module's parameter node and the Lib's validation."""

from __future__ import annotations

import argparse
import typing
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from FastMRICommon.errors import InputError
from FastMRICommon.settings import (
    Setting,
    SettingField,
    add_arguments,
    argument_keywords,
    check_settings,
    check_value,
    from_arguments,
    from_parameters,
    parameter_annotations,
    setting,
    settings_field,
    settings_fields,
    settings_parameters,
)


@dataclass(frozen=True)
class Scan:
    """A settings class as the Libs write them."""

    center_fraction: float = setting(0.08, "fraction of central lines", minimum=0.01, maximum=0.5)
    coils: int = setting(8, "receive coils", minimum=1, maximum=32)
    mask: str = setting("equispaced", "line pattern", choices=("equispaced", "variable-density"))
    keep_phase: bool = setting(False, "keep the phase")
    noise_sd: float = setting(0.0, "noise SD", minimum=0.0, maximum=1e12, parameter="noiseSD", option="--sd")
    lower_only: float = setting(1.0, "at least 1", minimum=1.0)
    note: str = "not a setting"  # a plain field: ignored by everything here

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass(frozen=True)
class Other:
    roi_size: int = setting(4, "ROI side in pixels", minimum=2, maximum=32)


class WithinRange:
    """Stand-in for slicer.parameterNodeWrapper.WithinRange."""

    def __init__(self, minimum, maximum) -> None:
        self.minimum, self.maximum = minimum, maximum


class Choice:
    """Stand-in for slicer.parameterNodeWrapper.Choice."""

    def __init__(self, choices) -> None:
        self.choices = choices


# -- fields and names -------------------------------------------------------------------------------------------
def test_settings_fields_are_the_setting_fields_in_order_with_resolved_kinds():
    fields = settings_fields(Scan)
    assert [f.name for f in fields] == ["center_fraction", "coils", "mask", "keep_phase", "noise_sd", "lower_only"]
    assert [f.kind for f in fields] == [float, int, str, bool, float, float]  # "float" strings resolved
    assert fields[0].default == 0.08 and fields[0].setting == Setting("fraction of central lines", 0.01, 0.5)
    assert settings_field(Scan, "coils") is not None and settings_field(Scan, "coils").default == 8
    with pytest.raises(KeyError, match="Scan has no setting 'note'"):
        settings_field(Scan, "note")


def test_parameter_names_are_camel_case_and_options_kebab_case_unless_named():
    names = {f.name: (f.parameter_name, f.option) for f in settings_fields(Scan)}
    assert names["center_fraction"] == ("centerFraction", "--center-fraction")
    assert names["coils"] == ("coils", "--coils")
    assert names["keep_phase"] == ("keepPhase", "--keep-phase")
    assert names["noise_sd"] == ("noiseSD", "--sd")  # camelCase would say noiseSd
    assert SettingField("a_b_c", int, 0, Setting("x")).parameter_name == "aBC"


def test_describe_shows_choices_or_a_complete_range():
    fields = {f.name: f.setting for f in settings_fields(Scan)}
    assert fields["mask"].describe() == "line pattern (equispaced, variable-density)"
    assert fields["coils"].describe() == "receive coils (1-32)"  # ints as written
    assert fields["center_fraction"].describe() == "fraction of central lines (0.01-0.5)"
    assert fields["noise_sd"].describe() == "noise SD (0-1e+12)"
    assert fields["lower_only"].describe() == "at least 1"  # half a range is not shown
    assert Setting("seed", 0, 2**31 - 1).describe() == "seed (0-2147483647)"


def test_a_setting_whose_default_is_not_allowed_is_a_programming_error():
    with pytest.raises(ValueError, match="default of the setting 'x' is not allowed: .* between 1 and 2; got 3"):
        setting(3, "x", minimum=1, maximum=2)
    with pytest.raises(ValueError, match="must be one of a, b"):
        setting("c", "x", choices=("a", "b"))
    with pytest.raises(ValueError, match="choices or a range, not both"):
        setting("a", "x", minimum=0, choices=("a",))


# -- the Lib's validation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, value, message",
    [
        ("coils", 0, "coils must be between 1 and 32; got 0"),
        ("coils", 33, "coils must be between 1 and 32; got 33"),
        ("center_fraction", 0.6, "center fraction must be between 0.01 and 0.5; got 0.6"),
        ("center_fraction", float("nan"), "center fraction must be a number; got nan"),
        ("center_fraction", float("inf"), "center fraction must be between 0.01 and 0.5; got inf"),
        ("center_fraction", "0.1", "center fraction must be a number; got '0.1'"),
        ("coils", True, "coils must be a number; got True"),
        ("mask", "spiral", "mask must be one of equispaced, variable-density; got 'spiral'"),
        ("noise_sd", -1e-9, "noise sd must be between 0 and 1e\\+12"),
        ("lower_only", 0.5, "lower only must be between 1 and inf; got 0.5"),
    ],
)
def test_out_of_range_values_are_one_input_error_naming_the_setting(name, value, message):
    with pytest.raises(InputError, match=message):
        check_value(settings_field(Scan, name), value)
    with pytest.raises(InputError, match=message):
        Scan(**{name: value})  # check_settings in __post_init__


def test_allowed_values_pass_including_the_bounds():
    for name, value in (
        ("coils", 1),
        ("coils", 32),
        ("center_fraction", 0.01),
        ("center_fraction", 0.5),
        ("noise_sd", 0.0),
        ("lower_only", 1e300),
        ("mask", "variable-density"),
    ):
        check_value(settings_field(Scan, name), value)
    assert Scan(coils=32, center_fraction=0.5).coils == 32


# -- the command line ---------------------------------------------------------------------------------------------
def parser(**keywords) -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(prog="prog", exit_on_error=False)
    add_arguments(result, Scan, **keywords)
    return result


def test_add_arguments_gives_type_default_choices_and_help_from_the_fields():
    built = parser()
    actions = {action.dest: action for action in built._actions}
    assert set(actions) >= {"center_fraction", "coils", "mask", "keep_phase", "noise_sd", "lower_only"}
    assert "note" not in actions
    assert (
        actions["coils"].type is int
        and actions["coils"].default == 8
        and actions["coils"].option_strings == ["--coils"]
    )
    assert actions["mask"].choices == ("equispaced", "variable-density")
    assert actions["center_fraction"].help == "fraction of central lines (0.01-0.5); default 0.08"
    assert actions["coils"].help == "receive coils (1-32); default 8"
    assert actions["noise_sd"].option_strings == ["--sd"]  # the named option, stored under the field's name
    assert isinstance(actions["keep_phase"], argparse.BooleanOptionalAction)
    assert (
        argument_keywords(settings_field(Scan, "mask"))["help"]
        == "line pattern (equispaced, variable-density); default equispaced"
    )


def test_add_arguments_and_from_arguments_round_trip():
    assert from_arguments(Scan, parser().parse_args([])) == Scan()
    args = parser().parse_args(
        [
            "--center-fraction",
            "0.2",
            "--coils",
            "12",
            "--mask",
            "variable-density",
            "--keep-phase",
            "--sd",
            "3.5",
            "--lower-only",
            "2",
        ]
    )
    assert from_arguments(Scan, args) == Scan(0.2, 12, "variable-density", True, 3.5, 2.0)
    assert from_arguments(Scan, parser().parse_args(["--no-keep-phase"]), coils=4) == Scan(coils=4)
    with pytest.raises(InputError, match="coils must be between 1 and 32; got 40"):
        from_arguments(Scan, parser().parse_args(["--coils", "40"]))  # range: checked by the settings class
    with pytest.raises(argparse.ArgumentError):
        parser().parse_args(["--mask", "spiral"])  # choices: argparse's own usage error (exit 2)


def test_add_arguments_skip_only_and_required():
    assert {a.dest for a in parser(skip=("coils", "mask"))._actions} & {"coils", "mask"} == set()
    assert {a.dest for a in parser(only=("coils",))._actions} == {"help", "coils"}
    required = parser(only=("coils",), required=("coils",))
    with pytest.raises(SystemExit):  # argparse's usage error: "the following arguments are required: --coils"
        required.parse_args([])
    action = next(a for a in required._actions if a.dest == "coils")
    assert action.required and action.default is None and action.help == "receive coils (1-32)"
    assert required.parse_args(["--coils", "3"]).coils == 3


def test_from_parameters_reads_the_camel_case_names():
    parameters = SimpleNamespace(
        centerFraction=0.1, coils=4, mask="equispaced", keepPhase=True, noiseSD=2.0, lowerOnly=1.5
    )
    assert from_parameters(Scan, parameters) == Scan(0.1, 4, "equispaced", True, 2.0, 1.5)
    del parameters.lowerOnly  # a setting the node does not hold, given instead
    assert from_parameters(Scan, parameters, lower_only=3.0).lower_only == 3.0
    parameters.coils = 99
    with pytest.raises(InputError, match="coils must be between"):
        from_parameters(Scan, parameters, lower_only=3.0)


# -- the parameter node ---------------------------------------------------------------------------------------------
def test_parameter_annotations_use_the_given_validators():
    annotations, defaults = parameter_annotations((Scan, Other), WithinRange, Choice, skip=("keep_phase",))
    assert list(annotations) == ["centerFraction", "coils", "mask", "noiseSD", "lowerOnly", "roiSize"]
    assert defaults == {
        "centerFraction": 0.08,
        "coils": 8,
        "mask": "equispaced",
        "noiseSD": 0.0,
        "lowerOnly": 1.0,
        "roiSize": 4,
    }
    base, extra = typing.get_args(annotations["coils"])
    assert base is int and isinstance(extra, WithinRange) and (extra.minimum, extra.maximum) == (1, 32)
    base, extra = typing.get_args(annotations["mask"])
    assert base is str and isinstance(extra, Choice) and extra.choices == ["equispaced", "variable-density"]
    assert annotations["lowerOnly"] is float  # half a range: no WithinRange (the wrapper needs both bounds)
    with pytest.raises(ValueError, match="two settings are named roiSize"):
        parameter_annotations((Other, Other), WithinRange, Choice)


def test_settings_parameters_puts_annotations_and_defaults_on_the_class_for_the_wrapper():
    """What slicer.parameterNodeWrapper reads (wrapper.py at v5.10.0, _processClass): typing.get_type_hints with
    include_extras, and class attributes as defaults; written annotations are strings here (this file has
    ``from __future__ import annotations``) and are resolved in the module's globals."""

    @settings_parameters((Other,), WithinRange, Choice)
    class Node:
        volume: SimpleNamespace
        name: str = ""

    hints = typing.get_type_hints(Node, include_extras=True)
    assert list(hints) == ["volume", "name", "roiSize"]
    assert hints["volume"] is SimpleNamespace and hints["name"] is str
    base, extra = typing.get_args(hints["roiSize"])
    assert base is int and isinstance(extra, WithinRange) and (extra.minimum, extra.maximum) == (2, 32)
    assert Node.roiSize == 4 and Node.name == "" and not hasattr(Node, "volume")  # volume: the wrapper's default

    with pytest.raises(ValueError, match="writes roiSize, which its settings classes define"):

        @settings_parameters((Other,), WithinRange, Choice)
        class Clash:
            roiSize: int = 3

    annotations, defaults = parameter_annotations((Other,), WithinRange, Choice)
    made = type(
        "Made",
        (),
        {"__annotations__": {"volume": "SimpleNamespace", **annotations}, "__module__": __name__, **defaults},
    )
    assert typing.get_type_hints(made, include_extras=True)["volume"] is SimpleNamespace and made.roiSize == 4


def test_the_modules_settings_classes_make_its_parameter_node_fields():
    """FastMRRecon's parameter node: the names and defaults its .ui and scenes use."""
    from FastMRReconLib.kspace.simulate import SimulationSettings
    from FastMRReconLib.metrics import RoiSettings
    from FastMRReconLib.model.settings import ReconstructionSettings

    annotations, defaults = parameter_annotations(
        (ReconstructionSettings, SimulationSettings, RoiSettings), WithinRange, Choice, skip=("precision",)
    )
    assert defaults == {
        "device": "auto",
        "strength": "medium",
        "setNoiseSD": False,
        "noiseSD": 0.0,
        "changeMap": False,
        "acceleration": 2.0,
        "mask": "equispaced",
        "centerFraction": 0.08,
        "coils": 8,
        "averages": 1,
        "snr": 30.0,
        "resolutionRows": 1.0,
        "resolutionColumns": 1.0,
        "combine": "sense",
        "seed": 0,
        "roiSize": 4,
    }
    ranges = {
        name: (extra.minimum, extra.maximum)
        for name, annotation in annotations.items()
        for extra in typing.get_args(annotation)[1:]
        if isinstance(extra, WithinRange)
    }
    assert ranges["acceleration"] == (1.0, 16.0) and ranges["roiSize"] == (2, 32) and ranges["seed"][0] == 0
    with pytest.raises(InputError, match="noise sd must be between"):
        ReconstructionSettings(noise_sd=-1.0)
    with pytest.raises(InputError, match="noise SD must be a positive number"):
        ReconstructionSettings(set_noise_sd=True).noise_arguments()  # 0 is the node's unset value
    assert ReconstructionSettings(strength="high", set_noise_sd=True, noise_sd=4.0).noise_arguments() == (4.0, 1.5)
    assert ReconstructionSettings(noise_sd=4.0).noise_arguments() == (None, 1.0)  # not set: measured
